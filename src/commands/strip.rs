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

use crate::backup::{self, Backup, ObjectRef};
use crate::cli::{OutputFormat, StripArgs, StripMethodArg};
use crate::commands::check;
use crate::commands::parse_targets;
use crate::core::deploy::{FLUX_RECONCILE_ANNOTATION, HazardSource, LAST_APPLIED_ANNOTATION, StripMethod};
use crate::core::helm::{self, Driver};
use crate::core::ownership::{self, DEFAULT_HANDOVER_MANAGER, Mechanism};
use crate::core::patch::{self, EntryIdentity, HelmChange, PlanError, WorkloadChange};
use crate::core::verdict::{Assessment, Verdict};
use crate::core::workload::{Workload, WorkloadKind};
use crate::error::{Error, ExitStatus, Result, api_code};
use crate::kubeio::{self, NamespaceScope};
use crate::output::{self, Printer, yaml};

/// How often a conflicting write is retried before giving up.
const MAX_ATTEMPTS: u32 = 5;
/// Objects changed at once.
const CONCURRENCY: usize = 4;

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
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
    pub outcome: Outcome,
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
    let targets = parse_targets(&args.targets)?;
    if targets.is_empty() && selector.is_none() {
        return Err(Error::Usage(
            "name the workloads to strip (TARGET...), or select them with -l SELECTOR; `check` lists what needs it"
                .into(),
        ));
    }
    let handover_managers = handover_managers(args);
    let report = check::collect(client, scope, selector, &targets, false, &handover_managers).await?;
    let helm_records = read_helm_records(client, &report.workloads, *scope == NamespaceScope::All).await;

    let mut results = Vec::new();
    let mut plans = Vec::new();
    for assessment in report.workloads {
        match plan_object(client, assessment, args, &helm_records).await {
            Ok(Ok(plan)) => plans.push(plan),
            Ok(Err(result)) => results.push(result),
            Err(error) => return Err(error),
        }
    }
    if plans.is_empty() {
        return Ok(report_of(args, results));
    }
    ensure_permissions(client, &plans).await?;

    let diff_to_stdout = args.output == OutputFormat::Text;
    let diffs: String = plans.iter().map(|p| render_plan(p, printer, diff_to_stdout)).collect();
    if diff_to_stdout {
        printer.data(&diffs)?;
    } else {
        printer.note(diffs.trim_end());
    }
    if !args.dry_run {
        printer.confirm(args.yes, &format!("Apply these changes to {} object(s)?", plans.len()))?;
    }

    let backup_dir = args.backup_dir.clone().unwrap_or_else(backup::default_dir);
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
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    results.extend(executed);
    Ok(report_of(args, results))
}

fn handover_managers(args: &StripArgs) -> Vec<String> {
    if args.method == StripMethodArg::Handover { args.field_managers.clone() } else { Vec::new() }
}

async fn read_helm_records(
    client: &Client,
    workloads: &[Assessment],
    all_namespaces: bool,
) -> std::result::Result<Vec<helm::ReleaseRecord>, String> {
    let releases: std::collections::BTreeSet<(String, String)> = workloads
        .iter()
        .filter_map(|a| a.deploy.helm.as_ref())
        .filter(|h| h.manifest_replicas.is_some())
        .map(|h| (h.namespace.clone(), h.release.clone()))
        .collect();
    if releases.is_empty() {
        return Ok(Vec::new());
    }
    kubeio::helm_records(client, &releases, all_namespaces).await
}

fn result_for(assessment: &Assessment, outcome: Outcome, message: String, exit: ExitStatus) -> ObjectResult {
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
    helm_records: &std::result::Result<Vec<helm::ReleaseRecord>, String>,
) -> Result<std::result::Result<ObjectPlan, ObjectResult>> {
    let in_charge = matches!(assessment.verdict, Verdict::StripNeeded | Verdict::Safe);
    if !in_charge && !args.force {
        let message = format!(
            "refused: {} ({}); the autoscaler must be in charge before replicas is handed over: {} (or --force)",
            assessment.reason,
            assessment.verdict.as_str(),
            assessment.next
        );
        return Ok(Err(result_for(&assessment, Outcome::Refused, message, ExitStatus::ActionNeeded)));
    }
    let methods: Vec<StripMethod> = match args.method {
        StripMethodArg::Auto => assessment.strip_methods(),
        StripMethodArg::ManagedFields => vec![StripMethod::ManagedFields],
        StripMethodArg::LastApplied => vec![StripMethod::LastApplied],
        StripMethodArg::HelmRelease => vec![StripMethod::HelmRelease],
        StripMethodArg::Handover => vec![StripMethod::Handover],
    };
    let managers: Vec<String> = if !methods.contains(&StripMethod::ManagedFields) {
        Vec::new()
    } else if args.method == StripMethodArg::ManagedFields && !args.field_managers.is_empty() {
        args.field_managers.clone()
    } else {
        let mut names: Vec<String> = assessment
            .hazards
            .iter()
            .filter(|h| h.source == HazardSource::ManagedFields)
            .map(|h| h.owner.clone())
            .collect();
        names.dedup();
        names
    };
    let api = kubeio::workload_api(client, &assessment.workload_kind, &assessment.namespace);
    let before = kubeio::get_object(&api, &assessment.name).await.map_err(|e| {
        kubeio::classify_error(e, "get", &assessment.workload_kind.plural, &namespace_scope(&assessment))
    })?;
    let pause_flux = args.pause_flux;
    let last_applied = methods.contains(&StripMethod::LastApplied);
    let workload_change = match WorkloadChange::plan(&before, &managers, last_applied, pause_flux) {
        Ok(change) => Some(change).filter(|c| !c.is_empty()),
        Err(error) => return Ok(Err(refusal(&assessment, &error))),
    };
    let helm_change = if methods.contains(&StripMethod::HelmRelease) {
        match plan_helm(&assessment, &before, helm_records) {
            Ok(change) => change,
            Err(message) => return Ok(Err(result_for(&assessment, Outcome::Refused, message, ExitStatus::Failure))),
        }
    } else {
        None
    };
    let handover_manager = methods
        .contains(&StripMethod::Handover)
        .then(|| args.field_managers.first().cloned().unwrap_or_else(|| DEFAULT_HANDOVER_MANAGER.to_string()));
    if let Some(manager) = &handover_manager
        && manager.starts_with("kubectl")
    {
        let message = format!(
            "refused: handover manager {manager} starts with `kubectl`; Flux deletes such entries before each apply"
        );
        return Ok(Err(result_for(&assessment, Outcome::Refused, message, ExitStatus::Usage)));
    }
    let handover_needed = handover_manager.as_ref().is_some_and(|m| !owns_replicas(&before, m));
    if workload_change.is_none() && helm_change.is_none() && !handover_needed {
        let message = match assessment.verdict {
            Verdict::Safe => "nothing to do: no deploy mechanism owns replicas".to_string(),
            _ => {
                format!("nothing to do for method {}", methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","))
            }
        };
        return Ok(Err(result_for(&assessment, Outcome::NothingToDo, message, ExitStatus::Success)));
    }
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
    }))
}

fn refusal(assessment: &Assessment, error: &PlanError) -> ObjectResult {
    let exit = match error {
        PlanError::AutoscalerEntry(_) => ExitStatus::Usage,
        _ => ExitStatus::Failure,
    };
    result_for(assessment, Outcome::Refused, format!("refused: {error}"), exit)
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
    records: &std::result::Result<Vec<helm::ReleaseRecord>, String>,
) -> std::result::Result<Option<HelmChange>, String> {
    let Some(info) = &assessment.deploy.helm else {
        return Err("refused: the workload has no Helm release annotations (meta.helm.sh/release-name)".into());
    };
    if info.manifest_replicas.is_none() {
        return Ok(None);
    }
    let records = records.as_ref().map_err(|e| format!("cannot read the Helm release record: {e}"))?;
    let record = records
        .iter()
        .find(|r| r.release == info.release && r.namespace == info.namespace)
        .ok_or_else(|| format!("no deployed record of Helm release {}/{}", info.namespace, info.release))?;
    let workload =
        Workload::from_object(assessment.workload_kind.clone(), object.clone()).map_err(|e| e.to_string())?;
    HelmChange::plan(record, &workload).map(Some).map_err(|e| format!("refused: {e}"))
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
            let resource = match change.driver {
                Driver::Secret => "secrets",
                Driver::ConfigMap => "configmaps",
            };
            needed.push(("patch".into(), String::new(), resource.into(), change.namespace.clone()));
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
    let mut result = result_for(&plan.assessment, Outcome::Changed, String::new(), ExitStatus::Success);
    result.methods = plan.methods.clone();
    let outcome = execute_steps(client, &plan, dry_run, backup_dir, &mut result).await;
    match outcome {
        Ok(messages) => {
            result.outcome = if dry_run { Outcome::DryRun } else { Outcome::Changed };
            result.message = messages.join("; ");
        }
        Err(error) => {
            result.outcome = Outcome::Failed;
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

fn is_conflict(error: &kube::Error) -> bool {
    matches!(api_code(error), Some(409 | 422))
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

fn write_error(context: &str, scope: &NamespaceScope, resource: &str, error: kube::Error) -> Error {
    match api_code(&error) {
        Some(403) => kubeio::classify_error(error, "patch", resource, scope),
        _ => Error::api(context.to_string(), error),
    }
}

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
    for attempt in 1..=MAX_ATTEMPTS {
        result.attempts = attempt;
        let before = if attempt == 1 {
            plan.before.clone()
        } else {
            kubeio::get_object(&api, name)
                .await
                .map_err(|e| Error::api(format!("re-reading {}", plan.assessment.target()), e))?
        };
        let change = WorkloadChange::plan(&before, &plan.managers, plan.last_applied, plan.pause_flux)
            .map_err(|e| Error::Failed(format!("re-planning after a concurrent change: {e}")))?;
        if change.is_empty() {
            return Ok("nothing left to do: the change is already in place".into());
        }
        if !change.same_edits(confirmed) {
            return Err(Error::Conflict(format!(
                "{} changed in a way that changes the plan; nothing was changed: re-run to review the new diff",
                plan.assessment.target()
            )));
        }
        if !dry_run {
            let mut backup =
                Backup::new(change_names(&change), object_ref(plan, &before), change.resource_version.clone());
            if change.managed_fields.is_some() {
                backup.managed_fields = before.pointer("/metadata/managedFields").cloned();
            }
            for (key, touched) in [
                (LAST_APPLIED_ANNOTATION, change.last_applied.is_some()),
                (FLUX_RECONCILE_ANNOTATION, change.pause_flux),
            ] {
                if touched {
                    let old = before.pointer(&patch::annotation_path(key)).cloned().unwrap_or(Value::Null);
                    backup.annotations.insert(key.to_string(), old);
                }
            }
            let path = backup.write(backup_dir)?;
            if !result.backups.contains(&path) {
                result.backups.push(path);
            }
        }
        let answer = kubeio::json_patch(&api, name, change.patch(&before), dry_run).await;
        let written = match answer {
            Ok(written) => written,
            Err(error) if is_conflict(&error) => {
                // Nothing was changed by this attempt, so its backup describes no change.
                if let Some(path) = result.backups.pop() {
                    let _ = std::fs::remove_file(path);
                }
                if attempt == MAX_ATTEMPTS {
                    return Err(Error::Conflict(format!(
                        "{} kept changing; gave up after {MAX_ATTEMPTS} attempts and nothing was changed",
                        plan.assessment.target()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                continue;
            }
            Err(error) => {
                return Err(write_error(
                    &format!("patching {}", plan.assessment.target()),
                    &scope,
                    &plan.kind.plural,
                    error,
                ));
            }
        };
        // What our write produced, exactly: the server's answer is the object as stored by
        // this patch (or as a dry run would store it), before anyone else writes again.
        patch::confirm_workload(&before, &written, &change.expected()).map_err(|why| {
            Error::Failed(format!("{}: the change could not be confirmed: {why}", plan.assessment.target()))
        })?;
        if dry_run {
            if written.pointer("/metadata/resourceVersion") != before.pointer("/metadata/resourceVersion") {
                return Err(Error::Failed("the dry run moved the resourceVersion".into()));
            }
        } else {
            // And re-read: the change must still hold (other writers may have written since,
            // but none may have taken replicas back).
            let after = kubeio::get_object(&api, name)
                .await
                .map_err(|e| Error::api(format!("re-reading {}", plan.assessment.target()), e))?;
            patch::confirm_still_stripped(&after, &change)
                .map_err(|why| Error::Failed(format!("{}: {why}", plan.assessment.target())))?;
        }
        return Ok(describe_workload_change(&change, dry_run));
    }
    unreachable!("the loop returns on its last attempt")
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
    let resource = match confirmed.driver {
        Driver::Secret => "secrets",
        Driver::ConfigMap => "configmaps",
    };
    let workload =
        Workload::from_object(plan.kind.clone(), plan.before.clone()).map_err(|e| Error::Failed(e.to_string()))?;
    for attempt in 1..=MAX_ATTEMPTS {
        let record_object = kubeio::get_object(&api, &confirmed.object_name)
            .await
            .map_err(|e| Error::api(format!("reading Helm record {}", confirmed.object_name), e))?;
        let record = decode_record(confirmed, &record_object)?;
        let change = HelmChange::plan(&record, &workload).map_err(|e| Error::Failed(e.to_string()))?;
        if change.old_json != confirmed.old_json || change.new_json != confirmed.new_json {
            return Err(Error::Conflict(format!(
                "Helm record {}/{} changed since it was read; nothing was changed: re-run to review the new diff",
                confirmed.namespace, confirmed.object_name
            )));
        }
        if !dry_run {
            let reference = ObjectRef {
                api_version: "v1".into(),
                kind: if confirmed.driver == Driver::Secret { "Secret" } else { "ConfigMap" }.into(),
                resource: resource.into(),
                namespace: confirmed.namespace.clone(),
                name: confirmed.object_name.clone(),
                uid: record_object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().into(),
            };
            let mut backup = Backup::new(vec!["helm-release".into()], reference, change.resource_version.clone());
            backup.release_payload = Some(String::from_utf8_lossy(&change.old_payload).into_owned());
            let path = backup.write(backup_dir)?;
            result.backups.push(path);
        }
        match kubeio::json_patch(&api, &confirmed.object_name, change.patch(), dry_run).await {
            Ok(written) => {
                let stored = if dry_run {
                    written
                } else {
                    kubeio::get_object(&api, &confirmed.object_name)
                        .await
                        .map_err(|e| Error::api("re-reading the Helm record", e))?
                };
                let after = decode_record(confirmed, &stored)?;
                if after.json != change.new_json {
                    return Err(Error::Failed("the Helm release record is not as planned after the change".into()));
                }
                let what =
                    format!("replicas removed from Helm release {} revision {}", record.release, record.revision);
                return Ok(if dry_run { format!("dry run: {what}") } else { what });
            }
            Err(error) if is_conflict(&error) && attempt < MAX_ATTEMPTS => continue,
            Err(error) if is_conflict(&error) => {
                return Err(Error::Conflict("the Helm release record kept changing; nothing was changed".into()));
            }
            Err(error) => return Err(write_error("patching the Helm release record", &scope, resource, error)),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

fn decode_record(confirmed: &HelmChange, object: &Value) -> Result<helm::ReleaseRecord> {
    helm::ReleaseRecord::from_object(confirmed.driver, object)
        .map_err(|e| Error::Failed(format!("decoding the Helm release record: {e}")))
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
    for attempt in 1..=MAX_ATTEMPTS {
        result.attempts = result.attempts.max(attempt);
        let before = kubeio::get_object(&api, name).await.map_err(|e| Error::api("re-reading the workload", e))?;
        let Some(replicas) = before.pointer("/spec/replicas").and_then(Value::as_i64) else {
            return Err(Error::Failed("the workload has no spec.replicas to hand over".into()));
        };
        let resource_version = patch::resource_version(&before).map_err(|e| Error::Failed(e.to_string()))?;
        let body = patch::handover_object(&plan.kind, &plan.assessment.namespace, name, replicas, &resource_version);
        match kubeio::apply(&api, name, manager, &body, dry_run).await {
            Ok(written) => {
                let after = if dry_run {
                    written
                } else {
                    kubeio::get_object(&api, name).await.map_err(|e| Error::api("re-reading", e))?
                };
                confirm_handover(&before, &after, manager)?;
                let what = format!("{manager} now co-owns replicas ({replicas})");
                return Ok(if dry_run { format!("dry run: {what}") } else { what });
            }
            Err(error) if is_conflict(&error) && attempt < MAX_ATTEMPTS => continue,
            Err(error) if is_conflict(&error) => {
                return Err(Error::Conflict(format!(
                    "{} kept changing; nothing was changed",
                    plan.assessment.target()
                )));
            }
            Err(error) => return Err(write_error("applying the handover", &scope, &plan.kind.plural, error)),
        }
    }
    unreachable!("the loop returns on its last attempt")
}

fn confirm_handover(before: &Value, after: &Value, manager: &str) -> Result<()> {
    if before.get("spec") != after.get("spec") {
        return Err(Error::Failed("the handover changed the workload's spec".into()));
    }
    if !owns_replicas(after, manager) {
        return Err(Error::Failed(format!("{manager} does not own replicas after the handover")));
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
        return Err(Error::Failed("the handover changed another manager's entry".into()));
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
    let flux_owner = plan
        .assessment
        .replica_owners
        .iter()
        .any(|o| matches!(o.mechanism, Mechanism::FluxKustomize | Mechanism::FluxHelm));
    let paused = plan.assessment.deploy.flux.as_ref().is_some_and(|f| f.reconcile_disabled);
    if flux_owner && !paused && !plan.pause_flux {
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
        results.iter().filter(|r| matches!(r.outcome, Outcome::Failed | Outcome::Refused)).map(|r| r.exit);
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
            Outcome::Changed => ("changed", Style::new().green()),
            Outcome::DryRun => ("dry-run", Style::new().cyan()),
            Outcome::NothingToDo => ("unchanged", Style::new().dim()),
            Outcome::Refused => ("refused", Style::new().yellow().bold()),
            Outcome::Failed => ("failed", Style::new().red().bold()),
        };
        let kind = r.kind.to_lowercase();
        out.push_str(&format!("{} {}/{kind}/{}: {}\n", printer.paint(style, label), r.namespace, r.name, r.message));
        for path in &r.backups {
            out.push_str(&format!("  backup: {}\n", path.display()));
        }
    }
    out
}

/// `resume`: removes the Flux pause annotation `strip --pause-flux` set.
pub async fn resume(
    client: &Client,
    scope: &NamespaceScope,
    targets: &[String],
    printer: &Printer,
) -> Result<ExitStatus> {
    let targets = parse_targets(targets)?;
    if targets.is_empty() {
        return Err(Error::Usage("name the workloads to resume (TARGET...)".into()));
    }
    let Some(namespace) = scope.namespace() else {
        return Err(Error::Usage(
            "a workload cannot be named across all namespaces: drop -A and pass -n NAMESPACE".into(),
        ));
    };
    for target in targets {
        let kind = kubeio::resolve_kind(client, &target.type_name).await?;
        let api = kubeio::workload_api(client, &kind, namespace);
        let label = format!("{namespace}/{}/{}", kind.command_name(), target.name);
        let mut done = false;
        for _ in 0..MAX_ATTEMPTS {
            let object = kubeio::get_object(&api, &target.name).await.map_err(|e| match api_code(&e) {
                Some(404) => Error::NotFound {
                    kind: kind.command_name(),
                    name: target.name.clone(),
                    namespace: namespace.into(),
                },
                _ => kubeio::classify_error(e, "get", &kind.plural, scope),
            })?;
            if object.pointer(&patch::annotation_path(FLUX_RECONCILE_ANNOTATION)).is_none() {
                printer.data(&format!("unchanged {label}: Flux reconciliation is not paused\n"))?;
                done = true;
                break;
            }
            let resource_version = patch::resource_version(&object).map_err(|e| Error::Failed(e.to_string()))?;
            let patch = patch::annotation_patch(&resource_version, &object, FLUX_RECONCILE_ANNOTATION, None);
            match kubeio::json_patch(&api, &target.name, patch, false).await {
                Ok(_) => {
                    let after =
                        kubeio::get_object(&api, &target.name).await.map_err(|e| Error::api("re-reading", e))?;
                    let expected =
                        patch::Expected { annotations: vec![(FLUX_RECONCILE_ANNOTATION, None)], ..Default::default() };
                    patch::confirm_workload(&object, &after, &expected).map_err(Error::Failed)?;
                    printer.data(&format!("resumed {label}: Flux reconciles it again\n"))?;
                    done = true;
                    break;
                }
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(write_error("removing the pause annotation", scope, &kind.plural, e)),
            }
        }
        if !done {
            return Err(Error::Conflict(format!("{label} kept changing; nothing was changed")));
        }
    }
    Ok(ExitStatus::Success)
}
