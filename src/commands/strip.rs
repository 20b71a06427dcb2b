//! `strip`: hand `.spec.replicas` over to the autoscaler. Per object: plan from `check`'s
//! analysis, show the diff, confirm, back up, send one guarded patch, re-read and confirm; on a
//! conflict re-read and re-plan, and go ahead only if the plan is what the user confirmed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use console::Style;
use futures::StreamExt;
use kube::Client;
use serde::Serialize;
use serde_json::Value;

use crate::backup::{Backup, ObjectRef};
use crate::cli::{OutputFormat, StripArgs, StripMethodArg};
use crate::commands::{Target, check, parse_targets};
use crate::core::deploy::{HazardSource, StripMethod};
use crate::core::helm::{self, ReleaseKey};
use crate::core::ownership;
use crate::core::patch::{self, EntryIdentity, HelmChange, Mismatch, PlanError, WorkloadChange};
use crate::core::tools::DEFAULT_HANDOVER_MANAGER;
use crate::core::tools::flux::RECONCILE_ANNOTATION as FLUX_RECONCILE_ANNOTATION;
use crate::core::tools::kubectl::LAST_APPLIED_ANNOTATION;
use crate::core::verdict::{Assessment, Verdict};
use crate::core::workload::{Workload, WorkloadKind};
use crate::error::{Error, ExitStatus, Result};
use crate::inventory::{Inventory, Query};
use crate::kubeio::{self, NamespaceScope};
use crate::output::{self, Printer, yaml};
use crate::retry::{self, Attempt};

/// What will be done to one workload.
#[derive(Debug, Clone)]
struct ObjectPlan {
    assessment: Assessment,
    kind: WorkloadKind,
    before: Value,
    managers: Vec<String>,
    last_applied: bool,
    pause_flux: bool,
    handover_manager: Option<String>,
    workload_change: Option<WorkloadChange>,
    helm_change: Option<HelmChange>,
    methods: Vec<StripMethod>,
    /// What was asked but left alone, and why; added to the result's message.
    notes: Vec<String>,
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
    args: &StripArgs,
    printer: &Printer,
) -> Result<ExitStatus> {
    let report = strip(client, scope, selector, args, printer).await?;
    match args.output {
        OutputFormat::Text => printer.data(&render_results(&report, printer))?,
        format => printer.document(format, &report)?,
    }
    Ok(exit_status(&report.results))
}

/// Plans, shows, confirms and carries out the strip; returns what happened per object.
pub async fn strip(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    args: &StripArgs,
    printer: &Printer,
) -> Result<StripReport> {
    let planned = plan(client, scope, selector, args).await?;
    if planned.plans.is_empty() {
        return Ok(report_of(args, planned.results));
    }
    planned.show(args, printer, "")?;
    if !args.dry_run {
        printer.confirm(args.yes, &format!("Apply these changes to {} object(s)?", planned.changes()))?;
    }
    Ok(planned.execute(client, args, printer).await)
}

/// A strip planned and allowed (the API server said every change may be made), not yet shown
/// nor confirmed: what [`Planned::execute`] will change, and the objects it leaves alone.
pub struct Planned {
    plans: Vec<ObjectPlan>,
    results: Vec<ObjectResult>,
}

impl Planned {
    /// How many objects the strip changes.
    pub fn changes(&self) -> usize {
        self.plans.len()
    }

    /// Shows the diffs (stdout; stderr with `-o json|yaml`), after `heading` when there are any.
    pub fn show(&self, args: &StripArgs, printer: &Printer, heading: &str) -> Result<()> {
        if self.plans.is_empty() {
            return Ok(());
        }
        let diff_to_stdout = args.output == OutputFormat::Text;
        let diffs: String = heading.to_string()
            + &self.plans.iter().map(|p| render_plan(p, printer, diff_to_stdout)).collect::<String>();
        if diff_to_stdout {
            printer.data(&diffs)
        } else {
            printer.note(diffs.trim_end());
            Ok(())
        }
    }

    /// Carries out the plans (a server-side dry run with `--dry-run`), up to
    /// [`kubeio::IN_FLIGHT`] objects at once; what happened per object.
    pub async fn execute(self, client: &Client, args: &StripArgs, printer: &Printer) -> StripReport {
        let Planned { plans, mut results } = self;
        let backup_dir = args.backups.dir();
        let progress = progress_bar(printer, plans.len());
        let executed: Vec<ObjectResult> = futures::stream::iter(plans)
            .map(|plan| {
                let backup_dir = backup_dir.clone();
                let progress = progress.clone();
                async move {
                    let result = execute(client, plan, args.dry_run, &backup_dir).await;
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
        report_of(args, results)
    }
}

/// Plans the strip of what `args` name and asks the API server whether each change may be made
/// (exit 5 before anything is shown if not); changes nothing.
pub async fn plan(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    args: &StripArgs,
) -> Result<Planned> {
    let targets = targets(args, selector)?;
    let backup_dir = args.backups.dir();
    let query = Query { scope, selector, targets: &targets, all_workloads: false, backup_dir: &backup_dir };
    let inventory = Inventory::collect(client, &query).await?;

    let mut results = Vec::new();
    let mut plans = Vec::new();
    // Each plan reads its object afresh; the reads run side by side, the plans stay in order.
    let planned: Vec<_> = futures::stream::iter(inventory.assess(&handover_managers(args)))
        .map(|assessment| plan_object(client, assessment, args, &inventory))
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
        ensure_permissions(client, &plans).await?;
    }
    Ok(Planned { plans, results })
}

/// The workloads `args` name, once the input is checked (a strip names its workloads, and its
/// flags apply to its method); nothing is read.
pub fn targets(args: &StripArgs, selector: Option<&str>) -> Result<Vec<Target>> {
    let targets = parse_targets(&args.targets)?;
    if targets.is_empty() && selector.is_none() {
        return Err(Error::Usage(
            "name the workloads to strip (TARGET...), or select them with -l SELECTOR; `check` lists what needs it"
                .into(),
        ));
    }
    refuse_flags_that_do_not_apply(args)?;
    Ok(targets)
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

fn handover_managers(args: &StripArgs) -> Vec<String> {
    if args.method == StripMethodArg::Handover { args.field_managers.clone() } else { Vec::new() }
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

/// Decides what to do to one workload. `Ok(Err(result))` when there is nothing to do, or the
/// workload is refused.
async fn plan_object(
    client: &Client,
    assessment: Assessment,
    args: &StripArgs,
    inventory: &Inventory,
) -> Result<std::result::Result<ObjectPlan, ObjectResult>> {
    if let Some(refused) = unless_in_charge(&assessment, args) {
        return Ok(Err(refused));
    }
    let methods = match chosen_methods(&assessment, args) {
        Ok(methods) => methods,
        Err(message) => return Ok(Err(result_for(&assessment, StripOutcome::Refused, message, ExitStatus::Usage))),
    };
    let managers = managers_to_strip(&assessment, args, &methods);
    let api = kubeio::workload_api(client, &assessment.workload_kind, &assessment.namespace);
    let before = kubeio::get_object(&api, &assessment.name).await.map_err(|e| {
        kubeio::classify_error(e, "get", &assessment.workload_kind.plural, &namespace_scope(&assessment))
    })?;
    let pause_flux = args.pause_flux && assessment.flux_manages();
    let last_applied = methods.contains(&StripMethod::LastApplied);
    let workload_change = match WorkloadChange::plan(&before, &managers, last_applied, pause_flux) {
        Ok(change) => Some(change).filter(|c| !c.is_empty()),
        Err(error) => return Ok(Err(refusal(&assessment, &error))),
    };
    let helm_change = if methods.contains(&StripMethod::HelmRelease) {
        match plan_helm(&assessment, &before, inventory) {
            Ok(change) => change,
            Err((message, exit)) => return Ok(Err(result_for(&assessment, StripOutcome::Refused, message, exit))),
        }
    } else {
        None
    };
    let handover_manager = handover_manager(args, &methods);
    if let Some(refused) = handover_manager.as_deref().and_then(|m| unless_flux_leaves_it(&assessment, m)) {
        return Ok(Err(refused));
    }
    let handover_needed = handover_manager.as_ref().is_some_and(|m| !owns_replicas(&before, m));
    if workload_change.is_none() && helm_change.is_none() && !handover_needed {
        return Ok(Err(nothing_to_do(&assessment, &methods)));
    }
    let mut notes = Vec::new();
    if args.pause_flux && !pause_flux {
        notes.push(
            "not paused for Flux: Flux does not manage it (no kustomize.toolkit.fluxcd.io or helm.toolkit.fluxcd.io labels, no Flux owner of replicas)"
                .to_string(),
        );
    }
    notes.extend(left_alone(&assessment, &methods, &managers));
    Ok(Ok(ObjectPlan {
        kind: assessment.workload_kind.clone(),
        assessment,
        before,
        managers,
        last_applied,
        pause_flux,
        handover_manager: handover_manager.filter(|_| handover_needed),
        workload_change,
        helm_change,
        methods,
        notes,
    }))
}

/// The refusal of a workload whose autoscaler is not in charge (without `--force`): replicas
/// handed over then would stay wherever the API server defaults it.
fn unless_in_charge(assessment: &Assessment, args: &StripArgs) -> Option<ObjectResult> {
    let in_charge = matches!(assessment.verdict, Verdict::StripNeeded | Verdict::Safe);
    (!in_charge && !args.force).then(|| {
        let message = format!(
            "refused: {} ({}); the autoscaler must be in charge before replicas is handed over: {} (or --force)",
            assessment.reason,
            assessment.verdict.as_str(),
            assessment.next
        );
        result_for(assessment, StripOutcome::Refused, message, ExitStatus::ActionNeeded)
    })
}

/// The manager that takes replicas over with the handover method: the first `--field-manager`,
/// else the default.
fn handover_manager(args: &StripArgs, methods: &[StripMethod]) -> Option<String> {
    methods
        .contains(&StripMethod::Handover)
        .then(|| args.field_managers.first().cloned().unwrap_or_else(|| DEFAULT_HANDOVER_MANAGER.to_string()))
}

/// The refusal of a `kubectl*` handover manager: Flux takes such entries over before each
/// apply, so the next reconcile would undo the handover.
fn unless_flux_leaves_it(assessment: &Assessment, manager: &str) -> Option<ObjectResult> {
    manager.starts_with("kubectl").then(|| {
        let message = format!(
            "refused: handover manager {manager} starts with `kubectl`; Flux takes such entries over before each apply"
        );
        result_for(assessment, StripOutcome::Refused, message, ExitStatus::Usage)
    })
}

fn nothing_to_do(assessment: &Assessment, methods: &[StripMethod]) -> ObjectResult {
    let message = match assessment.verdict {
        Verdict::Safe => "nothing to do: no deploy mechanism owns replicas".to_string(),
        _ => format!("nothing to do for method {}", methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")),
    };
    result_for(assessment, StripOutcome::NothingToDo, message, ExitStatus::Success)
}

/// The methods for this workload. With `--field-manager`, `auto` narrows to managed-fields of
/// the named managers; naming a manager that does not own replicas is refused (nothing
/// changes), so a typo never strips someone else.
fn chosen_methods(assessment: &Assessment, args: &StripArgs) -> std::result::Result<Vec<StripMethod>, String> {
    let narrowed = !args.field_managers.is_empty() && args.method != StripMethodArg::Handover;
    if narrowed {
        let owners: Vec<&str> = assessment.replica_owners.iter().map(|o| o.manager.as_str()).collect();
        let unknown: Vec<&String> = args.field_managers.iter().filter(|m| !owners.contains(&m.as_str())).collect();
        if !unknown.is_empty() {
            return Err(format!(
                "refused: --field-manager {} does not own replicas here (owners: {}); nothing was changed",
                unknown.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "),
                if owners.is_empty() { "none".to_string() } else { owners.join(", ") }
            ));
        }
        return Ok(vec![StripMethod::ManagedFields]);
    }
    Ok(match args.method {
        StripMethodArg::Auto => assessment.strip_methods(),
        StripMethodArg::ManagedFields => vec![StripMethod::ManagedFields],
        StripMethodArg::LastApplied => vec![StripMethod::LastApplied],
        StripMethodArg::HelmRelease => vec![StripMethod::HelmRelease],
        StripMethodArg::Handover => vec![StripMethod::Handover],
    })
}

/// The managedFields entries to strip: the named ones, else every deploy tool's.
fn managers_to_strip(assessment: &Assessment, args: &StripArgs, methods: &[StripMethod]) -> Vec<String> {
    if !methods.contains(&StripMethod::ManagedFields) {
        return Vec::new();
    }
    if !args.field_managers.is_empty() {
        return args.field_managers.clone();
    }
    let mut names: Vec<String> = assessment
        .hazards
        .iter()
        .filter(|h| h.source == HazardSource::ManagedFields)
        .map(|h| h.owner.clone())
        .collect();
    names.dedup();
    names
}

/// Hazards the chosen methods leave in place (a narrowed strip), said so the report is honest.
fn left_alone(assessment: &Assessment, methods: &[StripMethod], managers: &[String]) -> Vec<String> {
    assessment
        .hazards
        .iter()
        .filter(|h| match h.source {
            HazardSource::ManagedFields => {
                methods.contains(&StripMethod::ManagedFields) && !managers.contains(&h.owner)
            }
            HazardSource::LastAppliedAnnotation => !methods.contains(&StripMethod::LastApplied),
            HazardSource::HelmRelease => !methods.contains(&StripMethod::HelmRelease),
        })
        .map(|h| format!("left alone (not named): {}", h.detail))
        .collect()
}

fn refusal(assessment: &Assessment, error: &PlanError) -> ObjectResult {
    let exit = match error {
        PlanError::AutoscalerEntry(_) => ExitStatus::Usage,
        _ => ExitStatus::Failure,
    };
    result_for(assessment, StripOutcome::Refused, format!("refused: {error}"), exit)
}

fn namespace_scope(assessment: &Assessment) -> NamespaceScope {
    NamespaceScope::Namespace(assessment.namespace.clone())
}

fn owns_replicas(object: &Value, manager: &str) -> bool {
    let entries = object.pointer("/metadata/managedFields").cloned().unwrap_or(Value::Null);
    let entries: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> =
        serde_json::from_value(entries).unwrap_or_default();
    ownership::replica_owners(&entries, &[]).iter().any(|o| o.manager == manager)
}

fn plan_helm(
    assessment: &Assessment,
    object: &Value,
    inventory: &Inventory,
) -> std::result::Result<Option<HelmChange>, (String, ExitStatus)> {
    let Some(info) = &assessment.deploy.helm else {
        return Err((
            "refused: --method helm-release, but the workload is in no Helm release (no meta.helm.sh/release-name annotation)"
                .into(),
            ExitStatus::Usage,
        ));
    };
    if info.manifest_replicas.is_none() {
        return Ok(None);
    }
    let release = ReleaseKey { namespace: info.namespace.clone(), name: info.release.clone() };
    let record = inventory
        .helm_records
        .find(&release)
        .map_err(|problem| (format!("cannot read the Helm release record: {problem}"), ExitStatus::Failure))?
        .ok_or_else(|| {
            (format!("no deployed record of Helm release {}/{}", info.namespace, info.release), ExitStatus::Failure)
        })?;
    let workload = Workload::from_object(assessment.workload_kind.clone(), object.clone())
        .map_err(|e| (format!("the workload does not decode: {e}"), ExitStatus::Failure))?;
    HelmChange::plan(record, &workload).map(Some).map_err(|e| (format!("refused: {e}"), ExitStatus::Failure))
}

/// Fails before anything is shown or changed if the identity may not patch what the plans touch.
async fn ensure_permissions(client: &Client, plans: &[ObjectPlan]) -> Result<()> {
    let mut needed: Vec<(String, String, String, String)> = Vec::new();
    for plan in plans {
        let namespace = plan.assessment.namespace.clone();
        if plan.workload_change.is_some() || plan.handover_manager.is_some() {
            needed.push(("patch".into(), plan.kind.group.clone(), plan.kind.plural.clone(), namespace));
        }
        if let Some(change) = &plan.helm_change {
            needed.push(("patch".into(), String::new(), change.driver.resource().into(), change.namespace.clone()));
        }
    }
    needed.sort();
    needed.dedup();
    for (verb, group, resource, namespace) in needed {
        if !kubeio::can_i(client, &verb, &group, &resource, &namespace).await? {
            let qualified = if group.is_empty() { resource.clone() } else { format!("{resource}.{group}") };
            return Err(Error::Forbidden {
                verb,
                resource: qualified,
                scope: format!(" in namespace \"{namespace}\""),
                message: "nothing was changed; grant the role in deploy/rbac/strip.yaml".into(),
            });
        }
    }
    Ok(())
}

fn progress_bar(printer: &Printer, count: usize) -> Option<indicatif::ProgressBar> {
    if count < 2 || !printer.stderr_is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(count as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} stripping [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

async fn execute(client: &Client, plan: ObjectPlan, dry_run: bool, backup_dir: &Path) -> ObjectResult {
    let mut result = result_for(&plan.assessment, StripOutcome::Changed, String::new(), ExitStatus::Success);
    result.methods = plan.methods.clone();
    let outcome = execute_steps(client, &plan, dry_run, backup_dir, &mut result).await;
    match outcome {
        Ok(mut messages) => {
            result.outcome = if dry_run { StripOutcome::DryRun } else { StripOutcome::Changed };
            messages.extend(plan.notes.iter().cloned());
            result.message = messages.join("; ");
        }
        Err(error) => {
            result.outcome = StripOutcome::Failed;
            result.exit = error.exit_status();
            result.message = error.to_string();
        }
    }
    result
}

async fn execute_steps(
    client: &Client,
    plan: &ObjectPlan,
    dry_run: bool,
    backup_dir: &Path,
    result: &mut ObjectResult,
) -> Result<Vec<String>> {
    let mut messages = Vec::new();
    if let Some(confirmed) = &plan.workload_change {
        messages.push(apply_workload_change(client, plan, confirmed, dry_run, backup_dir, result).await?);
    }
    if let Some(confirmed) = &plan.helm_change {
        messages.push(apply_helm_change(client, plan, confirmed, dry_run, backup_dir, result).await?);
    }
    if let Some(manager) = &plan.handover_manager {
        messages.push(apply_handover(client, plan, manager, dry_run, result).await?);
    }
    Ok(messages)
}

fn object_ref(plan: &ObjectPlan, object: &Value) -> ObjectRef {
    ObjectRef {
        api_version: plan.kind.api_version(),
        kind: plan.kind.kind.clone(),
        resource: plan.kind.plural.clone(),
        namespace: plan.assessment.namespace.clone(),
        name: plan.assessment.name.clone(),
        uid: object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string(),
    }
}

fn unconfirmed(plan: &ObjectPlan, why: impl std::fmt::Display) -> Error {
    Error::Unconfirmed { target: plan.assessment.target(), why: why.to_string() }
}

/// The backup of exactly what `change` touches on `before`.
fn workload_backup(plan: &ObjectPlan, change: &WorkloadChange, before: &Value) -> Backup {
    let mut backup = Backup::new(change_names(change), object_ref(plan, before), change.resource_version.clone());
    if change.managed_fields.is_some() {
        backup.managed_fields = before.pointer("/metadata/managedFields").cloned();
    }
    for (key, touched) in
        [(LAST_APPLIED_ANNOTATION, change.last_applied.is_some()), (FLUX_RECONCILE_ANNOTATION, change.pause_flux)]
    {
        if touched {
            let old = before.pointer(&patch::annotation_path(key)).cloned().unwrap_or(Value::Null);
            backup.annotations.insert(key.to_string(), old);
        }
    }
    backup
}

/// One guarded JSON patch per attempt: re-read (after the first), re-plan, go ahead only with
/// the confirmed plan, back up, write, confirm the stored object, re-read.
async fn apply_workload_change(
    client: &Client,
    plan: &ObjectPlan,
    confirmed: &WorkloadChange,
    dry_run: bool,
    backup_dir: &Path,
    result: &mut ObjectResult,
) -> Result<String> {
    let api = kubeio::workload_api(client, &plan.kind, &plan.assessment.namespace);
    let scope = namespace_scope(&plan.assessment);
    let name = &plan.assessment.name;
    let target = plan.assessment.target();
    let reread = || async {
        kubeio::get_object(&api, name).await.map_err(|e| kubeio::classify_error(e, "get", &plan.kind.plural, &scope))
    };
    let backups = std::cell::RefCell::new(std::mem::take(&mut result.backups));
    let attempts = std::cell::Cell::new(0);
    let (api, scope, target, backups, attempts, reread) = (&api, &scope, &target, &backups, &attempts, &reread);
    let outcome = retry::on_conflict(target, |attempt| async move {
        attempts.set(attempt);
        let before = if attempt == 1 { plan.before.clone() } else { reread().await? };
        let change = WorkloadChange::plan(&before, &plan.managers, plan.last_applied, plan.pause_flux)
            .map_err(|source| Error::Plan { target: target.clone(), source })?;
        if change.is_empty() {
            return Ok(Attempt::Done("nothing left to do: the change is already in place".to_string()));
        }
        if !change.same_edits(confirmed) {
            return Err(Error::Conflict(format!(
                "{target} changed in a way that changes the plan; nothing was changed: re-run to review the new diff"
            )));
        }
        // Written before the change, so no object is ever changed without its backup on disk.
        let backup = if dry_run { None } else { Some(workload_backup(plan, &change, &before).write(backup_dir)?) };
        let written = match kubeio::json_patch(api, name, change.patch(&before), dry_run).await {
            Ok(written) => written,
            Err(error) if retry::is_conflict(&error) => {
                // Nothing was changed by this attempt, so its backup describes no change.
                if let Some(path) = backup {
                    let _ = std::fs::remove_file(path);
                }
                return Ok(Attempt::Conflict);
            }
            Err(error) => return Err(kubeio::classify_error(error, "patch", &plan.kind.plural, scope)),
        };
        backups.borrow_mut().extend(backup);
        // What our write produced, exactly: the server's answer is the object as stored by
        // this patch (or as a dry run would store it), before anyone else writes again.
        patch::confirm_workload(&before, &written, &change.expected()).map_err(|why| unconfirmed(plan, why))?;
        if dry_run {
            if written.pointer("/metadata/resourceVersion") != before.pointer("/metadata/resourceVersion") {
                return Err(unconfirmed(plan, "the dry run moved the resourceVersion"));
            }
        } else {
            // And re-read: the change must still hold (other writers may have written since,
            // but none may have taken replicas back).
            patch::confirm_still_stripped(&reread().await?, &change).map_err(|why| unconfirmed(plan, why))?;
        }
        Ok(Attempt::Done(describe_workload_change(&change, dry_run)))
    })
    .await;
    result.backups = backups.take();
    result.attempts = attempts.get();
    outcome
}

fn change_names(change: &WorkloadChange) -> Vec<String> {
    let mut names = Vec::new();
    if change.managed_fields.is_some() {
        names.push("managed-fields".to_string());
    }
    if change.last_applied.is_some() {
        names.push("last-applied".to_string());
    }
    if change.pause_flux {
        names.push("pause-flux".to_string());
    }
    names
}

fn describe_workload_change(change: &WorkloadChange, dry_run: bool) -> String {
    let mut parts = Vec::new();
    if let Some(plan) = &change.managed_fields {
        let managers: Vec<String> = plan.edits.iter().map(|e| e.identity.label()).collect();
        parts.push(format!("{} no longer own(s) replicas", managers.join(", ")));
    }
    if change.last_applied.is_some() {
        parts.push("replicas removed from the last-applied annotation".into());
    }
    if change.pause_flux {
        parts.push("Flux reconciliation paused".into());
    }
    let text = parts.join(", ");
    if dry_run { format!("dry run: {text} (server-side dry run, nothing persisted)") } else { text }
}

async fn apply_helm_change(
    client: &Client,
    plan: &ObjectPlan,
    confirmed: &HelmChange,
    dry_run: bool,
    backup_dir: &Path,
    result: &mut ObjectResult,
) -> Result<String> {
    let api = kubeio::release_record_api(client, confirmed.driver, &confirmed.namespace);
    let scope = NamespaceScope::Namespace(confirmed.namespace.clone());
    let resource = confirmed.driver.resource();
    let label = format!("Helm record {}/{}", confirmed.namespace, confirmed.object_name);
    let read = || async {
        let object = kubeio::get_object(&api, &confirmed.object_name)
            .await
            .map_err(|e| kubeio::classify_error(e, "get", resource, &scope))?;
        let record = helm::ReleaseRecord::from_object(confirmed.driver, &object)
            .map_err(|source| Error::HelmRecord { name: confirmed.object_name.clone(), source })?;
        Ok::<_, Error>((object, record))
    };
    let workload = Workload::from_object(plan.kind.clone(), plan.before.clone())
        .map_err(|e| Error::json(format!("decoding {}", plan.assessment.target()), e))?;
    let backups = std::cell::RefCell::new(std::mem::take(&mut result.backups));
    let (api, scope, label, backups, read, workload) = (&api, &scope, &label, &backups, &read, &workload);
    let outcome = retry::on_conflict(label, |_| async move {
        let (record_object, record) = read().await?;
        let change =
            HelmChange::plan(&record, workload).map_err(|source| Error::Plan { target: label.clone(), source })?;
        if change.old_json != confirmed.old_json || change.new_json != confirmed.new_json {
            return Err(Error::Conflict(format!(
                "{label} changed since it was read; nothing was changed: re-run to review the new diff"
            )));
        }
        let backup = if dry_run { None } else { Some(back_up_record(&record_object, &change, backup_dir)?) };
        let written = match kubeio::json_patch(api, &confirmed.object_name, change.patch(), dry_run).await {
            Ok(written) => written,
            Err(error) if retry::is_conflict(&error) => {
                if let Some(path) = backup {
                    let _ = std::fs::remove_file(path);
                }
                return Ok(Attempt::Conflict);
            }
            Err(error) => return Err(kubeio::classify_error(error, "patch", resource, scope)),
        };
        backups.borrow_mut().extend(backup);
        let stored = if dry_run {
            helm::ReleaseRecord::from_object(confirmed.driver, &written)
                .map_err(|source| Error::HelmRecord { name: confirmed.object_name.clone(), source })?
        } else {
            read().await?.1
        };
        if stored.json != change.new_json {
            return Err(unconfirmed(plan, "the Helm release record is not as planned after the change"));
        }
        let what = format!("replicas removed from Helm release {} revision {}", record.release, record.revision);
        Ok(Attempt::Done(if dry_run { format!("dry run: {what}") } else { what }))
    })
    .await;
    result.backups = backups.take();
    outcome
}

/// Writes the backup of a Helm release record about to change: its reference, the
/// resourceVersion the change is guarded by, and the release payload as it was.
fn back_up_record(record_object: &Value, change: &HelmChange, backup_dir: &Path) -> Result<PathBuf> {
    let (kind, resource) = (change.driver.kind(), change.driver.resource());
    let reference = ObjectRef {
        api_version: "v1".into(),
        kind: kind.into(),
        resource: resource.into(),
        namespace: change.namespace.clone(),
        name: change.object_name.clone(),
        uid: record_object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().into(),
    };
    let mut backup = Backup::new(vec!["helm-release".into()], reference, change.resource_version.clone());
    backup.release_payload = Some(String::from_utf8_lossy(&change.old_payload).into_owned());
    backup.write(backup_dir)
}

async fn apply_handover(
    client: &Client,
    plan: &ObjectPlan,
    manager: &str,
    dry_run: bool,
    result: &mut ObjectResult,
) -> Result<String> {
    let api = kubeio::workload_api(client, &plan.kind, &plan.assessment.namespace);
    let scope = namespace_scope(&plan.assessment);
    let name = &plan.assessment.name;
    let attempts = std::cell::Cell::new(result.attempts);
    let target = plan.assessment.target();
    let (api, scope, attempts) = (&api, &scope, &attempts);
    let outcome = retry::on_conflict(&target, |attempt| async move {
        attempts.set(attempts.get().max(attempt));
        let read = || async {
            kubeio::get_object(api, name).await.map_err(|e| kubeio::classify_error(e, "get", &plan.kind.plural, scope))
        };
        let before = read().await?;
        let Some(replicas) = before.pointer("/spec/replicas").and_then(Value::as_i64) else {
            return Err(unconfirmed(plan, "the workload has no spec.replicas to hand over"));
        };
        let resource_version = patch::resource_version(&before)
            .map_err(|source| Error::Plan { target: plan.assessment.target(), source })?;
        let body = patch::handover_object(&plan.kind, &plan.assessment.namespace, name, replicas, &resource_version);
        match kubeio::apply(api, name, manager, &body, dry_run).await {
            Ok(written) => {
                let after = if dry_run { written } else { read().await? };
                confirm_handover(&before, &after, manager).map_err(|why| unconfirmed(plan, why))?;
                let what = format!("{manager} now co-owns replicas ({replicas})");
                Ok(Attempt::Done(if dry_run { format!("dry run: {what}") } else { what }))
            }
            Err(error) if retry::is_conflict(&error) => Ok(Attempt::Conflict),
            Err(error) => Err(kubeio::classify_error(error, "patch", &plan.kind.plural, scope)),
        }
    })
    .await;
    result.attempts = attempts.get();
    outcome
}

fn confirm_handover(before: &Value, after: &Value, manager: &str) -> std::result::Result<(), Mismatch> {
    if before.get("spec") != after.get("spec") {
        return Err(Mismatch("the handover changed the workload's spec".into()));
    }
    if !owns_replicas(after, manager) {
        return Err(Mismatch(format!("{manager} does not own replicas after the handover")));
    }
    let others = |object: &Value| -> Vec<(EntryIdentity, Value)> {
        object
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| (EntryIdentity::of(e), e.get("fieldsV1").cloned().unwrap_or(Value::Null)))
            .filter(|(i, _)| i.manager != manager)
            .collect()
    };
    let after_entries = others(after);
    if others(before).iter().any(|entry| !after_entries.contains(entry)) {
        return Err(Mismatch("the handover changed another manager's entry".into()));
    }
    Ok(())
}

/// The human diff of one plan: managedFields entries as YAML, annotations, the Helm document.
fn render_plan(plan: &ObjectPlan, printer: &Printer, to_stdout: bool) -> String {
    let paint =
        |style: Style, text: &str| if to_stdout { printer.paint(style, text) } else { printer.paint_err(style, text) };
    let mut out = format!(
        "{} {}/{} ({})\n",
        paint(Style::new().bold(), "strip"),
        plan.assessment.namespace,
        plan.assessment.target(),
        plan.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
    );
    let diff = |title: &str, before: &str, after: &str| -> String {
        format!("  {}\n{}", paint(Style::new().cyan(), title), output::diff_lines(before, after, paint))
    };
    if let Some(change) = &plan.workload_change {
        if let Some(fields) = &change.managed_fields {
            for edit in &fields.edits {
                let before = yaml(&edit.old_fields);
                let after = edit.new_fields.as_ref().map(yaml).unwrap_or_else(|| "(entry removed)\n".into());
                out.push_str(&diff(&format!("managedFields entry {}", edit.identity.label()), &before, &after));
            }
        }
        if let Some(last) = &change.last_applied {
            out.push_str(&diff(
                &format!("annotation {LAST_APPLIED_ANNOTATION}"),
                &pretty(&last.old),
                &pretty(&last.new),
            ));
        }
        if change.pause_flux {
            out.push_str(&diff("annotations", "", &format!("{FLUX_RECONCILE_ANNOTATION}: disabled\n")));
        }
    }
    if let Some(change) = &plan.helm_change {
        let title = format!(
            "Helm release record {}/{} (revision {}): manifest of this object",
            change.namespace, change.object_name, change.revision
        );
        out.push_str(&diff(&title, &change.old_document, &change.new_document));
    }
    if let Some(manager) = &plan.handover_manager {
        let replicas = plan.before.pointer("/spec/replicas").cloned().unwrap_or(Value::Null);
        out.push_str(&diff(
            &format!("server-side apply as {manager}"),
            "",
            &format!(
                "apiVersion: {}\nkind: {}\nspec:\n  replicas: {replicas}\n",
                plan.kind.api_version(),
                plan.kind.kind
            ),
        ));
    }
    if plan.assessment.flux_owns_replicas() && !plan.assessment.flux_paused() && !plan.pause_flux {
        out.push_str(&format!(
            "  {} Flux owns replicas and this object is not paused: Flux's next forced apply re-takes ownership; \
             add --pause-flux, or remove replicas from Git first\n",
            paint(Style::new().yellow().bold(), "warning:")
        ));
    }
    out.push('\n');
    out
}

fn pretty(json_text: &str) -> String {
    serde_json::from_str::<Value>(json_text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .map(|s| s + "\n")
        .unwrap_or_else(|| json_text.to_string())
}

fn report_of(args: &StripArgs, mut results: Vec<ObjectResult>) -> StripReport {
    results.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    StripReport { api_version: check::REPORT_API_VERSION, kind: "StripReport", dry_run: args.dry_run, results }
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

pub fn render_results(report: &StripReport, printer: &Printer) -> String {
    let mut out = String::new();
    for r in &report.results {
        let (label, style) = match r.outcome {
            StripOutcome::Changed => ("changed", Style::new().green()),
            StripOutcome::DryRun => ("dry-run", Style::new().cyan()),
            StripOutcome::NothingToDo => ("unchanged", Style::new().dim()),
            StripOutcome::Refused => ("refused", Style::new().yellow().bold()),
            StripOutcome::Failed => ("failed", Style::new().red().bold()),
        };
        let kind = r.kind.to_lowercase();
        out.push_str(&format!("{} {}/{kind}/{}: {}\n", printer.paint(style, label), r.namespace, r.name, r.message));
        for path in &r.backups {
            out.push_str(&format!("  backup: {}\n", path.display()));
        }
    }
    out
}
