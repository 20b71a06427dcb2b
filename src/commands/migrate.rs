//! The guided migration: the whole procedure in the right order, in a terminal. Every step is
//! derived from the live state (`check`'s analysis), never from a local state file, so running
//! it again picks up where it stopped.

use std::io::IsTerminal;
use std::time::Duration;

use console::Style;
use dialoguer::{Confirm, MultiSelect, Select};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::DynamicObject;
use kube::runtime::{WatchStreamExt, watcher};

use crate::cli::MigrateArgs;
use crate::commands::{Target, check, guard, parse_targets, strip, verify};
use crate::core::guard::Mode;
use crate::core::tools::pause::Pause;
use crate::core::tools::{self, Mechanism};
use crate::core::verdict::{Assessment, Verdict};
use crate::error::{Error, ExitStatus, Result};
use crate::inventory::Query;
use crate::kubeio::{self, NamespaceScope};
use crate::output::{Printer, count};

fn query<'a>(scope: &'a NamespaceScope, targets: &'a [Target], backup_dir: &'a std::path::Path) -> Query<'a> {
    Query { scope, selector: None, targets, all_workloads: false, backup_dir }
}

/// How long after the deploy tool's apply is seen the watch goes on, to see its effect settle.
const SETTLE: Duration = Duration::from_secs(5);

/// What every step of the flow works with.
struct Flow<'a> {
    client: &'a Client,
    printer: &'a Printer,
    args: &'a MigrateArgs,
    selector: Option<&'a str>,
    theme: dialoguer::theme::ColorfulTheme,
    term: console::Term,
    backup_dir: std::path::PathBuf,
}

/// Either go on with a value, or end the flow with an exit status.
type Step<T> = std::result::Result<T, ExitStatus>;

/// The guided flow; `selector` (`-l`) narrows the workloads offered to pick from.
pub async fn run(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    args: &MigrateArgs,
    printer: &Printer,
) -> Result<ExitStatus> {
    let interactive = std::io::stdin().is_terminal() && printer.stderr_is_terminal();
    if !interactive {
        printer.data(&equivalent_commands(scope, selector, &args.targets))?;
        return Err(Error::NotConfirmed(
            "the guided migration needs a terminal; the equivalent non-interactive commands are printed above".into(),
        ));
    }
    let flow = Flow {
        client,
        printer,
        args,
        selector,
        theme: dialoguer::theme::ColorfulTheme::default(),
        term: console::Term::stderr(),
        backup_dir: args.backups.dir(),
    };
    let targets = parse_targets(&args.targets)?;
    flow.heading("1. Workloads");
    let (scope, chosen) = match flow.pick_workloads(scope, &targets).await? {
        Ok(picked) => picked,
        Err(status) => return Ok(status),
    };
    flow.heading("2. Findings");
    let migrating = match flow.findings(&chosen) {
        Ok(migrating) => migrating,
        Err(status) => return Ok(status),
    };
    let pinned = flow.offer_pin(&migrating).await?;
    let guarded = pinned || flow.offer_guard(&migrating).await?;
    let pause = !pinned && flow.ask_pause(&migrating)?;
    let backups = if pinned {
        Vec::new()
    } else {
        match flow.strip(&scope, &migrating, pause).await? {
            Ok(backups) => backups,
            Err(status) => return Ok(status),
        }
    };
    flow.heading("5. Change your source");
    let now = flow.change_source(&scope, &migrating, pause).await?;
    let lives = flow.watch_deploy(&now).await?;
    flow.heading("7. Summary");
    flow.summary(&scope, &migrating, &lives, &backups, guarded).await
}

impl Flow<'_> {
    fn heading(&self, text: &str) {
        self.printer.note(&format!("\n{}", self.printer.paint_err(Style::new().bold().cyan(), text)));
    }

    /// What step 1 offers: the workloads of `scope` (named, or those autoscalers target) that
    /// `-l` selects.
    fn picking<'q>(&'q self, scope: &'q NamespaceScope, targets: &'q [Target]) -> Query<'q> {
        Query { selector: self.selector, ..query(scope, targets, &self.backup_dir) }
    }

    fn confirm(&self, prompt: &str) -> Result<bool> {
        Confirm::with_theme(&self.theme).with_prompt(prompt).default(true).interact_on(&self.term).map_err(prompt_error)
    }

    /// Step 1: the namespace (with -A) and the workloads, from check's report.
    async fn pick_workloads(
        &self,
        scope: &NamespaceScope,
        targets: &[Target],
    ) -> Result<Step<(NamespaceScope, Vec<Assessment>)>> {
        let mut scope = scope.clone();
        if scope == NamespaceScope::All && targets.is_empty() {
            let everything = check::report(self.client, &self.picking(&scope, &[])).await?;
            let mut namespaces: Vec<String> = everything.workloads.iter().map(|a| a.namespace.clone()).collect();
            namespaces.dedup();
            if namespaces.is_empty() {
                self.printer
                    .note("No workload in any namespace is targeted by an HPA or ScaledObject: nothing to migrate.");
                return Ok(Err(ExitStatus::Success));
            }
            let chosen = Select::with_theme(&self.theme)
                .with_prompt("Namespace")
                .items(&namespaces)
                .default(0)
                .interact_on(&self.term)
                .map_err(prompt_error)?;
            scope = NamespaceScope::Namespace(namespaces[chosen].clone());
        }
        let report = check::report(self.client, &self.picking(&scope, targets)).await?;
        if report.workloads.is_empty() {
            self.printer.note(
                "No workload here is targeted by an HPA or ScaledObject: create the autoscaler first (check --all-workloads).",
            );
            return Ok(Err(ExitStatus::Success));
        }
        let labels: Vec<String> = report
            .workloads
            .iter()
            .map(|a| format!("{:<40} {}", format!("{}/{}", a.namespace, a.target()), a.verdict.as_str()))
            .collect();
        let defaults: Vec<bool> = report.workloads.iter().map(|a| a.verdict != Verdict::Safe).collect();
        let picked = MultiSelect::with_theme(&self.theme)
            .with_prompt("Select workloads to migrate (space toggles, enter confirms)")
            .items(&labels)
            .defaults(&defaults)
            .interact_on(&self.term)
            .map_err(prompt_error)?;
        let chosen: Vec<Assessment> = picked.into_iter().map(|i| report.workloads[i].clone()).collect();
        if chosen.is_empty() {
            self.printer.note("Nothing selected.");
            return Ok(Err(ExitStatus::Success));
        }
        Ok(Ok((scope, chosen)))
    }

    /// Step 2: the findings, a sentence each; the workloads whose autoscaler can take over go on.
    fn findings(&self, chosen: &[Assessment]) -> Step<Vec<Assessment>> {
        let printer = self.printer;
        for a in chosen {
            printer.note(&format!(
                "{}/{}: {}",
                a.namespace,
                a.target(),
                printer.paint_err(Style::new().bold(), a.verdict.as_str())
            ));
            printer.note(&format!("  {}", explain(a)));
            for warning in &a.warnings {
                printer.note(&format!("  warning: {warning}"));
            }
        }
        let ready = |a: &&Assessment| matches!(a.verdict, Verdict::Safe | Verdict::StripNeeded);
        for a in chosen.iter().filter(|a| !ready(a)) {
            printer.note(&format!("Skipping {}/{} until its autoscaler is fixed: {}", a.namespace, a.target(), a.next));
        }
        let migrating: Vec<Assessment> = chosen.iter().filter(ready).cloned().collect();
        if migrating.is_empty() { Err(ExitStatus::ActionNeeded) } else { Ok(migrating) }
    }

    /// The short path, where the cluster serves MutatingAdmissionPolicy and every workload's deploy
    /// tool applies server-side (a pinned server-side apply hands replicas over in the same write;
    /// three-way mergers keep owning them, so they still need the strip): until the end of the
    /// flow the API server keeps the live count of a deploy that would drop it, so there is
    /// nothing to pause or strip. Returns whether the workloads were pinned.
    async fn offer_pin(&self, migrating: &[Assessment]) -> Result<bool> {
        if !migrating.iter().all(pin_hands_over) || !guard::pin_served(self.client).await? {
            return Ok(false);
        }
        if !self.confirm("Pin these workloads for the migration window instead of stripping (the API server keeps the live count of a deploy without replicas; no Flux pause, no strip)?")? {
            return Ok(false);
        }
        self.protect(migrating, Mode::Pin, "Pinned", "the pin", "not pinned").await
    }

    /// The guard for the migration window: until the end of the flow the API server refuses any
    /// deploy that would drop these workloads below their autoscaler's minimum.
    async fn offer_guard(&self, migrating: &[Assessment]) -> Result<bool> {
        if !self.confirm("Guard these workloads for the migration window (the API server refuses any deploy that would drop them below their autoscaler's minimum)?")? {
            return Ok(false);
        }
        self.protect(migrating, Mode::Deny, "Guarded", "the guard", "not guarded").await
    }

    /// Guards the workloads in `mode` and says so; a failure is only a warning (the flow goes on
    /// unguarded). Returns whether they were guarded.
    async fn protect(
        &self,
        migrating: &[Assessment],
        mode: Mode,
        done: &str,
        what: &str,
        failed: &str,
    ) -> Result<bool> {
        match guard::protect(self.client, migrating, None, mode).await {
            Ok(guarded) => {
                self.printer.note(&format!(
                    "{done} {} workload(s); {what} is lifted at the end once the hand-over is done.",
                    guarded.len()
                ));
                Ok(true)
            }
            Err(error) => {
                self.printer.warn(&format!("{failed}: {error}"));
                Ok(false)
            }
        }
    }

    /// Step 3, pause first, so the deploy tool's next apply cannot take replicas back; the
    /// prompt names each tool's own pause (the annotation for a Kustomization, the HelmRelease's
    /// suspend, the Argo CD Application's automated sync).
    fn ask_pause(&self, migrating: &[Assessment]) -> Result<bool> {
        let unpaused: Vec<&Assessment> = migrating.iter().filter(|a| needs_pause(a)).collect();
        let mut pauses: Vec<String> = unpaused.iter().flat_map(|a| a.pauses()).map(|p| p.describe()).collect();
        pauses.sort();
        pauses.dedup();
        if pauses.is_empty() {
            return Ok(false);
        }
        let tools = tools_named(unpaused.iter().copied());
        self.heading(&format!("3. {tools}"));
        self.confirm(&format!(
            "Replicas of {} workload(s) are owned by {tools}. Pause their reconciliation first ({})?",
            unpaused.len(),
            pauses.join("; ")
        ))
    }

    /// Step 4: strip, as `strip` does: diff, confirmation, backup. Returns the backups written.
    async fn strip(
        &self,
        scope: &NamespaceScope,
        migrating: &[Assessment],
        pause: bool,
    ) -> Result<Step<Vec<std::path::PathBuf>>> {
        let to_strip: Vec<Assessment> = migrating
            .iter()
            .filter(|a| a.verdict == Verdict::StripNeeded || (pause && needs_pause(a)))
            .cloned()
            .collect();
        if to_strip.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        self.heading("4. Strip");
        let strip_options = strip::StripOptions {
            targets: targets_of(&to_strip),
            method: None,
            field_managers: Vec::new(),
            dry_run: false,
            yes: false,
            backup_dir: self.backup_dir.clone(),
            pause,
            force: false,
            plans_to_stdout: true,
        };
        let stripped = strip::strip(self.client, scope, None, &strip_options, self.printer).await?;
        self.printer.note(strip::render_results(&stripped, self.printer).trim_end());
        let status = strip::exit_status(&stripped.results);
        if status != ExitStatus::Success {
            self.printer
                .note("Stopping: fix the failures above and run `kubectl hpa-migrate` again; it picks up from the live state.");
            return Ok(Err(status));
        }
        Ok(Ok(stripped.results.iter().flat_map(|r| r.backups.clone()).collect()))
    }

    /// Step 5: what to change in the source of each workload; with Flux paused, wait for the merge
    /// and resume it. Returns the report the deploy is watched from.
    async fn change_source(
        &self,
        scope: &NamespaceScope,
        migrating: &[Assessment],
        paused_here: bool,
    ) -> Result<check::CheckReport> {
        for a in migrating {
            self.printer.note(&format!("{}/{}:", a.namespace, a.target()));
            for line in source_instructions(a) {
                self.printer.note(&format!("  - {line}"));
            }
        }
        let now = check::report(self.client, &query(scope, &targets_of(migrating), &self.backup_dir)).await?;
        // A HelmRelease's suspend is not on the workload: those step 3 suspended are resumed too
        // (resume leaves a HelmRelease it did not suspend as it is).
        let suspended = |a: &Assessment| paused_here && a.pauses().iter().any(|p| matches!(p, Pause::HelmRelease(_)));
        let auto_sync_off =
            |a: &Assessment| a.deploy.argocd_application.as_ref().is_some_and(|app| app.paused_by_strip);
        let paused: Vec<&Assessment> =
            now.workloads.iter().filter(|a| a.flux_paused() || suspended(a) || auto_sync_off(a)).collect();
        if !paused.is_empty() {
            let tools = tools_named(paused.iter().copied());
            self.printer
                .note(&format!("{tools} is paused for these objects: merge the change in Git, then come back here."));
            Confirm::with_theme(&self.theme)
                .with_prompt(format!("Is the change merged? Resume {tools} reconciliation now"))
                .default(true)
                .wait_for_newline(true)
                .interact_on(&self.term)
                .map_err(prompt_error)?;
            let paused: Vec<Assessment> = paused.into_iter().cloned().collect();
            crate::commands::resume::resume_targets(self.client, scope, &targets_of(&paused), self.printer).await?;
        }
        Ok(now)
    }

    /// Step 6: watch through the deploy, until each deploy tool's next apply is seen (its
    /// managedFields entry time moves), Enter is pressed, or the timeout.
    async fn watch_deploy(&self, now: &check::CheckReport) -> Result<Vec<verify::Live>> {
        // Read where each deploy tool stands before saying "deploy now", so no apply is missed.
        let baselines = futures::future::join_all(now.workloads.iter().map(|a| current_stamps(self.client, a))).await;
        self.heading("6. Watching through the deploy");
        self.printer.note(&format!(
            "Deploy now. Watching until the deploy tool's apply is seen on every workload, Enter is pressed, or {} pass.",
            self.args.timeout
        ));
        // A detached thread: a blocking task would keep the runtime, and so the process, alive
        // waiting for a line nobody types once the watch has ended on its own.
        let (pressed, enter) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                let _ = pressed.send(());
            }
        });
        let lines = verify::LiveLines::new(self.printer);
        let enter = futures::future::FutureExt::shared(futures::future::FutureExt::map(enter, |_| ()));
        let watches = now.workloads.iter().zip(baselines).map(|(a, baseline)| {
            let stop = futures::future::select(Box::pin(apply_seen(self.client, a, baseline)), enter.clone());
            verify::watch(self.client, a, self.args.timeout.0, self.args.floor, &lines, async move {
                stop.await;
            })
        });
        futures::future::try_join_all(watches).await
    }

    /// Step 7: each workload before and after, the backups, and the guard lifted once all is done.
    async fn summary(
        &self,
        scope: &NamespaceScope,
        migrating: &[Assessment],
        lives: &[verify::Live],
        backups: &[std::path::PathBuf],
        guarded: bool,
    ) -> Result<ExitStatus> {
        let printer = self.printer;
        let after = check::report(self.client, &query(scope, &targets_of(migrating), &self.backup_dir)).await?;
        let mut status = ExitStatus::Success;
        for (a, live) in after.workloads.iter().zip(lives) {
            let before = migrating
                .iter()
                .find(|m| m.namespace == a.namespace && m.kind == a.kind && m.name == a.name)
                .and_then(|m| m.replicas.spec);
            let dropped = live.drops.iter().any(|d| d.is_failure());
            let line = format!(
                "{}/{}: {} -> {} replicas (minimum while watching {}), now {}{}",
                a.namespace,
                a.target(),
                count(before),
                count(a.replicas.spec),
                count(live.minimum.spec),
                a.verdict.as_str(),
                if dropped { "; DROPPED" } else { "" }
            );
            let style =
                if dropped || a.verdict != Verdict::Safe { Style::new().red().bold() } else { Style::new().green() };
            printer.note(&printer.paint_err(style, &line));
            if dropped || a.verdict != Verdict::Safe {
                status = ExitStatus::ActionNeeded;
                printer.note(&format!("  next: {}", a.next));
            }
        }
        for path in backups {
            printer.note(&format!("backup: {}", path.display()));
        }
        // The guard is lifted once the hand-over is done; while something still needs action it
        // stays (no prompt here: the watch's reader of Enter may still hold the terminal's input).
        if guarded && status == ExitStatus::Success {
            let lifted = guard::lift(self.client, migrating, false).await?;
            printer.note(&format!("Lifted the guard of {} workload(s).", lifted.unguarded.len()));
        } else if guarded {
            let names: Vec<String> = migrating.iter().map(Assessment::target).collect();
            let ns = scope.namespace().unwrap_or_default();
            printer.note(&format!(
                "The guard stays on until the above is fixed: kubectl hpa-migrate guard off -n {ns} {}",
                names.join(" ")
            ));
        }
        Ok(status)
    }
}

fn prompt_error(error: dialoguer::Error) -> Error {
    Error::NotConfirmed(format!("the prompt was interrupted ({error}); nothing more was changed"))
}

fn targets_of(assessments: &[Assessment]) -> Vec<crate::commands::Target> {
    assessments
        .iter()
        .map(|a| crate::commands::Target { type_name: a.workload_kind.command_name(), name: a.name.clone() })
        .collect()
}

/// One sentence on what the verdict means for this workload.
fn explain(a: &Assessment) -> String {
    match a.verdict {
        Verdict::Safe => {
            "The autoscaler is in charge and nothing would reset replicas: removing them from the source is safe now."
                .into()
        }
        Verdict::StripNeeded => format!(
            "The autoscaler is in charge, but {} still own(s) replicas, so deleting them from the source would reset the workload to the default of 1.",
            a.hazards.iter().map(|h| h.owner.clone()).collect::<Vec<_>>().join(", ")
        ),
        Verdict::AutoscalerMissing => {
            "Nothing autoscales this workload: create an HPA or ScaledObject before handing replicas over.".into()
        }
        Verdict::AutoscalerNotReady => format!("The autoscaler cannot act yet: {}.", a.reason),
        Verdict::AmbiguousAutoscalers => "Several autoscalers fight over this workload: keep one.".into(),
    }
}

/// Whether a deploy tool that owns the workload's replicas is not paused yet and has a pause.
fn needs_pause(a: &Assessment) -> bool {
    let flux = a.flux_owns_replicas() && !a.flux_paused();
    let argo_owns = a.replica_owners.iter().any(|o| o.mechanism == Mechanism::ArgoCd);
    let argo = argo_owns && a.pauses().iter().any(|p| matches!(p, Pause::ArgoCdAutoSync(_)));
    flux || argo
}

/// "Flux", "Argo CD", or both: the tools that deploy these workloads.
fn tools_named<'a>(workloads: impl Iterator<Item = &'a Assessment>) -> &'static str {
    let (mut flux, mut argo) = (false, false);
    for a in workloads {
        flux |= a.deploy.flux.is_some();
        argo |= a.deploy.argocd_tracking_id.is_some();
    }
    match (flux, argo) {
        (false, true) => "Argo CD",
        (true, true) => "Flux and Argo CD",
        _ => "Flux",
    }
}

/// What to change in the workload's source, per deploy mechanism found.
pub fn source_instructions(a: &Assessment) -> Vec<String> {
    let kind = &a.kind;
    let mut lines = Vec::new();
    let owns =
        |m: Mechanism| a.replica_owners.iter().any(|o| o.mechanism == m) || a.hazards.iter().any(|h| h.mechanism == m);
    if owns(Mechanism::FluxKustomize) || a.deploy.flux.as_ref().is_some_and(|f| f.kustomization.is_some()) {
        let kustomization =
            a.deploy.flux.as_ref().and_then(|f| f.kustomization.clone()).unwrap_or_else(|| "its Kustomization".into());
        lines.push(format!(
            "Flux ({kustomization}): delete `replicas:` from the {kind} in Git (and from any Kustomize patch or `replicas:` transformer), commit and push"
        ));
    }
    if owns(Mechanism::FluxHelm) || a.deploy.flux.as_ref().is_some_and(|f| f.helm_release.is_some()) {
        lines.push("Flux HelmRelease: stop setting replicas in the release's values (see Helm below); Flux upgrades with Helm's rules".into());
    }
    if owns(Mechanism::ArgoCd) || a.deploy.argocd_tracking_id.is_some() {
        lines.push(format!(
            "Argo CD: delete `replicas:` from the {kind} in Git and sync; with ServerSideApply=true nothing else is needed, and for client-side sync the strip removed it from the last-applied annotation"
        ));
    }
    if let Some(helm) = &a.deploy.helm {
        lines.push(format!(
            "Helm release {}/{}: stop rendering replicas (for the mimir-distributed chart, enable the component's `kedaAutoscaling`; otherwise drop the replicas value), then `helm upgrade`",
            helm.namespace, helm.release
        ));
    }
    if owns(Mechanism::KubectlClientSide) {
        lines
            .push(format!("kubectl: delete `replicas:` from the {kind} manifest, then `kubectl apply -f` it as usual"));
    }
    if owns(Mechanism::KubectlServerSide) {
        lines.push(format!(
            "kubectl: delete `replicas:` from the {kind} manifest, then `kubectl apply --server-side -f` it as usual"
        ));
    }
    if lines.is_empty() {
        lines.push(format!("delete `replicas:` from the {kind}'s manifest wherever it is kept, and deploy as usual"));
    }
    lines
}

/// Each deploy tool's managedFields entry of a workload, with the time of its last write.
type DeployStamps = Vec<(Option<String>, Option<Time>)>;

fn deploy_stamps(object: &DynamicObject) -> DeployStamps {
    object
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| {
            let manager = e.manager.as_deref().unwrap_or_default();
            let operation = e.operation.as_deref().unwrap_or_default();
            tools::classify(manager, operation, e.subresource.as_deref(), &[]).is_deploy_tool()
        })
        .map(|e| (e.manager.clone(), e.time.clone()))
        .collect()
}

/// Where each deploy tool stands on the workload now (`None` if it cannot be read).
async fn current_stamps(client: &Client, a: &Assessment) -> Option<DeployStamps> {
    let api = kubeio::workload_api(client, &a.workload_kind, &a.namespace);
    api.get(&a.name).await.ok().as_ref().map(deploy_stamps)
}

/// Resolves once a deploy tool's managedFields entry of the workload changes time (its next
/// apply), then lets the effect settle. The runtime's watcher, with its backoff, reconnects
/// through an API server restart; its first list catches an apply made before it started.
async fn apply_seen(client: &Client, a: &Assessment, baseline: Option<DeployStamps>) {
    let Some(baseline) = baseline else { return std::future::pending().await };
    let api = kubeio::workload_api(client, &a.workload_kind, &a.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", a.name));
    let mut changes = std::pin::pin!(watcher::watcher(api, config).default_backoff().applied_objects());
    while let Some(change) = changes.next().await {
        if change.is_ok_and(|object| deploy_stamps(&object) != baseline) {
            tokio::time::sleep(SETTLE).await;
            return;
        }
    }
}

/// Whether `guard on --pin` alone hands this workload's replicas over at its next deploy: nothing
/// owns them but server-side appliers (measured: a pinned server-side apply leaves no owner).
fn pin_hands_over(a: &Assessment) -> bool {
    let applies = |manager: &str| a.replica_owners.iter().any(|o| o.manager == manager && o.is_apply());
    a.hazards.iter().all(|h| h.source == crate::core::deploy::HazardSource::ManagedFields && applies(&h.owner))
}

/// The non-interactive equivalent of the guided flow.
fn equivalent_commands(scope: &NamespaceScope, selector: Option<&str>, targets: &[String]) -> String {
    let selected = selector.map(|s| format!(" -l '{s}'")).unwrap_or_default();
    let ns = match scope.namespace() {
        Some(ns) => format!("-n {ns}{selected}"),
        None => format!("-A{selected}"),
    };
    let named = match (targets.is_empty(), selector) {
        (true, Some(_)) => selected.trim_start().to_string(),
        (true, None) => "TARGET...".to_string(),
        (false, _) => format!("{}{selected}", targets.join(" ")),
    };
    let ns_one = scope.namespace().map(|ns| format!("-n {ns}")).unwrap_or_else(|| "-n NAMESPACE".into());
    format!(
        "kubectl hpa-migrate check {ns}\n\
         kubectl hpa-migrate guard on {ns_one} {named}\n\
         kubectl hpa-migrate strip {ns_one} {named} --dry-run\n\
         kubectl hpa-migrate strip {ns_one} {named} --pause-flux --yes\n\
         # remove `replicas` from the source (Git, chart values, manifests); once merged:\n\
         kubectl hpa-migrate resume {ns_one} {named}\n\
         kubectl hpa-migrate verify {ns_one} {named} --watch 10m\n\
         kubectl hpa-migrate guard off {ns_one} {named}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fixtures::load;

    #[test]
    fn pin_alone_hands_over_only_what_server_side_appliers_own() {
        let analyzed = |fixture: &str| {
            let workload = crate::core::workload::Workload::from_object(
                crate::core::workload::WorkloadKind::deployment(),
                load(fixture),
            )
            .unwrap();
            let hpas = [crate::core::fixtures::hpa("hpa-min3-rescaled", workload.namespace(), workload.name())];
            crate::core::analyze(&workload, &crate::core::Cluster { hpas: &hpas, ..Default::default() })
        };
        assert!(pin_hands_over(&analyzed("flux-ssa-owns-replicas")));
        assert!(pin_hands_over(&analyzed("pin-after-forced-apply")), "nothing owns them");
        assert!(!pin_hands_over(&analyzed("kubectl-csa-owns-replicas")));
        assert!(!pin_hands_over(&analyzed("pin-after-client-side-apply")));
    }

    #[test]
    fn the_equivalent_commands_keep_the_selector() {
        let scope = NamespaceScope::Namespace("shop".into());
        let text = equivalent_commands(&scope, Some("app=web"), &[]);
        assert!(text.contains("check -n shop -l 'app=web'\n"), "{text}");
        assert!(text.contains("strip -n shop -l 'app=web' --dry-run"), "{text}");
        assert!(text.contains("resume -n shop -l 'app=web'\n"), "{text}");
        let named = equivalent_commands(&NamespaceScope::All, None, &["deploy/web".into()]);
        assert!(named.contains("check -A\n") && named.contains("strip -n NAMESPACE deploy/web --dry-run"), "{named}");
    }

    #[test]
    fn only_deploy_tools_stamp_the_workload() {
        // Captured from the real plane: Flux's apply, then the HPA controller through /scale
        // and the controller manager's status writes.
        let object: DynamicObject = serde_json::from_value(load("hpa-rescaled")).unwrap();
        let stamps = deploy_stamps(&object);
        assert_eq!(stamps.len(), 1, "{stamps:?}");
        assert_eq!(stamps[0].0.as_deref(), Some("kustomize-controller"));
        assert!(stamps[0].1.is_some(), "the apply's time");
    }
}
