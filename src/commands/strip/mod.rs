//! `strip`: hand `.spec.replicas` over to the autoscaler. Per object: plan from `check`'s
//! analysis, show the diff, confirm, back up, send one guarded patch, re-read and confirm; on a
//! conflict re-read and re-plan, and go ahead only if the plan is what the user confirmed.
//!
//! The verb resolves its arguments once into [`Options`] (refusing what it cannot honour before
//! any request), then runs the engine, [`strip`], which takes a [`StripOptions`] and knows
//! nothing of flags (`migrate` calls it too): `plan` decides (pure), `write` changes the
//! cluster, `render` prints.

mod plan;
mod render;
mod write;

use std::path::PathBuf;

use futures::StreamExt;
use kube::Client;
use serde::Serialize;

pub use self::render::render_results;
use crate::cli::{OutputFormat, StripArgs, StripMethodArg};
use crate::commands::flags::ScopeFlags;
use crate::commands::{Target, check, parse_targets};
use crate::core::deploy::StripMethod;
use crate::core::verdict::Assessment;
use crate::error::{Error, ExitStatus, Result};
use crate::inventory::{Inventory, Query};
use crate::kubeio::{self, NamespaceScope};
use crate::output::Printer;

/// What `strip` was asked for, checked before connecting.
#[derive(Debug)]
pub struct Options {
    pub strip: StripOptions,
    pub output: OutputFormat,
}

impl Options {
    /// Workloads named or selected with `-l`; `--field-manager` only with the methods it
    /// narrows.
    pub fn resolve(args: StripArgs, flags: &ScopeFlags) -> Result<Self> {
        let targets = parse_targets(&args.targets)?;
        flags.refuse_named_across_all_namespaces(&targets)?;
        if targets.is_empty() && flags.selector.is_none() {
            return Err(Error::Usage(
                "name the workloads to strip (TARGET...), or select them with -l SELECTOR; `check` lists what needs it"
                    .into(),
            ));
        }
        refuse_flags_that_do_not_apply(&args)?;
        let method = match args.method {
            StripMethodArg::Auto => None,
            StripMethodArg::ManagedFields => Some(StripMethod::ManagedFields),
            StripMethodArg::LastApplied => Some(StripMethod::LastApplied),
            StripMethodArg::HelmRelease => Some(StripMethod::HelmRelease),
            StripMethodArg::Handover => Some(StripMethod::Handover),
        };
        Ok(Self {
            strip: StripOptions {
                targets,
                method,
                field_managers: args.field_managers,
                dry_run: args.dry_run,
                yes: args.yes,
                backup_dir: args.backups.dir(),
                pause: args.pause,
                force: args.force,
                plans_to_stdout: args.output == OutputFormat::Text,
            },
            output: args.output,
        })
    }
}

/// `--field-manager` narrows managed-fields to the named managers and names the handover
/// manager; for the other methods it would narrow nothing, so it is refused rather than ignored.
fn refuse_flags_that_do_not_apply(args: &StripArgs) -> Result<()> {
    if args.field_managers.is_empty() {
        return Ok(());
    }
    match args.method {
        StripMethodArg::LastApplied | StripMethodArg::HelmRelease => Err(Error::Usage(format!(
            "--field-manager does not apply to --method {}: it names managedFields entries (--method managed-fields, or auto) or the handover manager (--method handover)",
            match args.method {
                StripMethodArg::LastApplied => "last-applied",
                _ => "helm-release",
            }
        ))),
        StripMethodArg::Handover if args.field_managers.len() > 1 => {
            Err(Error::Usage("--method handover takes one --field-manager: the manager that takes replicas".into()))
        }
        _ => Ok(()),
    }
}

/// What the engine strips and how. Built by [`Options::resolve`] from the command line, or by
/// another verb (`migrate`).
#[derive(Debug, Clone)]
pub struct StripOptions {
    /// Named workloads (in the scope's namespace); empty: those the selector picks.
    pub targets: Vec<Target>,
    /// One method for every workload; `None`: the methods `check` found for each.
    pub method: Option<StripMethod>,
    /// With managed-fields (or auto): strip only these managers, each of which must own replicas.
    /// With handover: the one manager that takes replicas (default
    /// [`DEFAULT_HANDOVER_MANAGER`](crate::core::tools::DEFAULT_HANDOVER_MANAGER)).
    pub field_managers: Vec<String>,
    /// Send every write as a server-side dry run: nothing is persisted, no backup is written.
    pub dry_run: bool,
    /// Go ahead without asking.
    pub yes: bool,
    pub backup_dir: PathBuf,
    /// Also pause the deploy tool that reconciles each object, so it cannot take replicas back.
    pub pause: bool,
    /// Strip even when no autoscaler is in charge.
    pub force: bool,
    /// Where the diffs go: stdout (the text report), or stderr beside a JSON or YAML report.
    pub plans_to_stdout: bool,
}

impl StripOptions {
    /// The managers `check` must count as handover owners (`--method handover --field-manager`).
    fn handover_managers(&self) -> Vec<String> {
        if self.method == Some(StripMethod::Handover) { self.field_managers.clone() } else { Vec::new() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StripOutcome {
    Changed,
    DryRun,
    NothingToDo,
    Refused,
    Failed,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectResult {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub methods: Vec<StripMethod>,
    pub outcome: StripOutcome,
    pub message: String,
    pub backups: Vec<PathBuf>,
    pub attempts: u32,
    #[serde(skip)]
    exit: ExitStatus,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StripReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub dry_run: bool,
    pub results: Vec<ObjectResult>,
}

pub async fn run(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    options: &Options,
    printer: &Printer,
) -> Result<ExitStatus> {
    let report = strip(client, scope, selector, &options.strip, printer).await?;
    match options.output {
        OutputFormat::Text => printer.data(&render_results(&report, printer))?,
        format => printer.document(format, &report)?,
    }
    Ok(exit_status(&report.results))
}

/// Plans, shows, confirms and carries out the strip of the workloads `options` names (or
/// `selector` picks) in `scope`; returns what happened per object. Nothing is written before
/// the user confirms (or `yes`), and no object is changed without its backup on disk.
pub async fn strip(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    options: &StripOptions,
    printer: &Printer,
) -> Result<StripReport> {
    let planned = plan(client, scope, selector, options).await?;
    if planned.plans.is_empty() {
        return Ok(report_of(options, planned.results));
    }
    planned.show(options, printer, "")?;
    if !options.dry_run {
        printer.confirm(options.yes, &format!("Apply these changes to {} object(s)?", planned.changes()))?;
    }
    Ok(planned.execute(client, options, printer).await)
}

/// A strip planned and allowed (the API server said every change may be made), not yet shown
/// nor confirmed: what [`Planned::execute`] will change, and the objects it leaves alone.
pub struct Planned {
    plans: Vec<plan::ObjectPlan>,
    results: Vec<ObjectResult>,
}

impl Planned {
    /// How many objects the strip changes.
    pub fn changes(&self) -> usize {
        self.plans.len()
    }

    /// Shows the diffs (stdout; stderr beside a JSON or YAML report), after `heading` when
    /// there are any.
    pub fn show(&self, options: &StripOptions, printer: &Printer, heading: &str) -> Result<()> {
        if self.plans.is_empty() {
            return Ok(());
        }
        let diffs: String = heading.to_string()
            + &self.plans.iter().map(|p| render::render_plan(p, printer, options.plans_to_stdout)).collect::<String>();
        if options.plans_to_stdout {
            printer.data(&diffs)
        } else {
            printer.note(diffs.trim_end());
            Ok(())
        }
    }

    /// Carries out the plans (a server-side dry run with `dry_run`), up to
    /// [`kubeio::IN_FLIGHT`] objects at once; what happened per object.
    pub async fn execute(self, client: &Client, options: &StripOptions, printer: &Printer) -> StripReport {
        let Planned { plans, mut results } = self;
        let progress = render::progress_bar(printer, plans.len());
        let executed: Vec<ObjectResult> = futures::stream::iter(plans)
            .map(|plan| {
                let progress = progress.clone();
                async move {
                    let result = write::execute(client, plan, options.dry_run, &options.backup_dir).await;
                    if let Some(bar) = &progress {
                        bar.inc(1);
                    }
                    result
                }
            })
            .buffer_unordered(kubeio::IN_FLIGHT)
            .collect()
            .await;
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        results.extend(executed);
        report_of(options, results)
    }
}

/// Plans the strip of what `options` name and asks the API server whether each change may be
/// made (exit 5 before anything is shown if not); changes nothing.
pub async fn plan(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    options: &StripOptions,
) -> Result<Planned> {
    let query =
        Query { scope, selector, targets: &options.targets, all_workloads: false, backup_dir: &options.backup_dir };
    let inventory = Inventory::collect(client, &query).await?;

    let mut results = Vec::new();
    let mut plans = Vec::new();
    // Each plan reads its object afresh; the reads run side by side, the plans stay in order.
    let planned: Vec<_> = futures::stream::iter(inventory.assess(&options.handover_managers()))
        .map(|assessment| plan_object(client, assessment, options, &inventory))
        .buffered(kubeio::IN_FLIGHT)
        .collect()
        .await;
    for plan in planned {
        match plan? {
            Ok(plan) => plans.push(plan),
            Err(result) => results.push(result),
        }
    }
    if !plans.is_empty() {
        write::ensure_permissions(client, &plans).await?;
    }
    Ok(Planned { plans, results })
}

/// Decides what to do to one workload, reading it only if the assessment leaves something to
/// do. `Ok(Err(result))` when there is nothing to do, or the workload is refused.
async fn plan_object(
    client: &Client,
    assessment: Assessment,
    options: &StripOptions,
    inventory: &Inventory,
) -> Result<std::result::Result<plan::ObjectPlan, ObjectResult>> {
    let chosen = match plan::choose(&assessment, options) {
        Ok(chosen) => chosen,
        Err(left) => return Ok(Err(left.result(&assessment))),
    };
    let api = kubeio::workload_api(client, &assessment.workload_kind, &assessment.namespace);
    let before = kubeio::get_object(&api, &assessment.name).await.map_err(|e| {
        kubeio::classify_error(e, "get", &assessment.workload_kind.plural, &namespace_scope(&assessment))
    })?;
    Ok(plan::plan(&assessment, before, chosen, options, &inventory.helm_records)
        .map_err(|left| left.result(&assessment)))
}

fn namespace_scope(assessment: &Assessment) -> NamespaceScope {
    NamespaceScope::Namespace(assessment.namespace.clone())
}

fn result_for(assessment: &Assessment, outcome: StripOutcome, message: String, exit: ExitStatus) -> ObjectResult {
    ObjectResult {
        namespace: assessment.namespace.clone(),
        kind: assessment.kind.clone(),
        name: assessment.name.clone(),
        methods: Vec::new(),
        outcome,
        message,
        backups: Vec::new(),
        attempts: 0,
        exit,
    }
}

fn report_of(options: &StripOptions, mut results: Vec<ObjectResult>) -> StripReport {
    results.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    StripReport { api_version: check::REPORT_API_VERSION, kind: "StripReport", dry_run: options.dry_run, results }
}

/// Zero when every object ended well; otherwise the failures' own code when they share one.
pub fn exit_status(results: &[ObjectResult]) -> ExitStatus {
    let mut failures =
        results.iter().filter(|r| matches!(r.outcome, StripOutcome::Failed | StripOutcome::Refused)).map(|r| r.exit);
    match failures.next() {
        None => ExitStatus::Success,
        Some(first) if failures.all(|e| e == first) => first,
        Some(_) => ExitStatus::Failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Verb;

    fn resolve(line: &str) -> Result<Options> {
        let cli =
            crate::cli::parse_from(line.split_whitespace().map(Into::into)).unwrap_or_else(|e| panic!("{line}: {e}"));
        let Some(Verb::Strip(args)) = cli.verb else { panic!("{line}: not strip") };
        Options::resolve(args, &ScopeFlags::resolve(&cli.kube)?)
    }

    fn usage(line: &str) -> String {
        let error = resolve(line).unwrap_err();
        assert_eq!(error.exit_status(), ExitStatus::Usage, "{line}: {error}");
        error.to_string()
    }

    #[test]
    fn what_strip_cannot_honour_is_refused_before_connecting() {
        assert!(usage("x strip").starts_with("name the workloads to strip"));
        assert!(usage("x strip -A deploy/web").contains("cannot be named across all namespaces"));
        assert!(
            usage("x strip deploy/web --method last-applied --field-manager helm")
                .starts_with("--field-manager does not apply to --method last-applied")
        );
        assert!(
            usage("x strip deploy/web --method helm-release --field-manager helm").contains("--method helm-release")
        );
        assert!(
            usage("x strip deploy/web --method handover --field-manager a --field-manager b").contains("takes one")
        );
    }

    #[test]
    fn the_engine_gets_typed_options() {
        let options =
            resolve("x strip -n shop deploy/web --method managed-fields --field-manager helm --pause-flux -o json")
                .unwrap();
        let strip = &options.strip;
        assert_eq!(strip.targets, vec![Target { type_name: "deploy".into(), name: "web".into() }]);
        assert_eq!(
            (strip.method, strip.field_managers.as_slice()),
            (Some(StripMethod::ManagedFields), ["helm".to_string()].as_slice())
        );
        assert!(strip.pause && !strip.plans_to_stdout && !strip.dry_run && !strip.force);
        assert_eq!(options.output, OutputFormat::Json);

        assert!(resolve("x strip deploy/web --pause").unwrap().strip.pause, "--pause-flux is its alias");
        let selected = resolve("x strip -l app=web").unwrap();
        assert!(selected.strip.targets.is_empty() && selected.strip.method.is_none() && selected.strip.plans_to_stdout);
    }
}
