//! The writes of a confirmed strip: per object, the workload's guarded JSON patch, the Helm
//! release record's, and the handover's server-side apply, each backed up first, retried on a
//! conflict through `retry.rs` only while the re-plan is what the user confirmed, and confirmed
//! on the object as stored.

use std::path::{Path, PathBuf};

use kube::Client;
use serde_json::Value;

use super::plan::{ObjectPlan, owns_replicas};
use super::{ObjectResult, StripOutcome, namespace_scope, result_for};
use crate::backup::{Backup, ObjectRef};
use crate::core::helm;
use crate::core::patch::{self, EntryIdentity, HelmChange, Mismatch, WorkloadChange};
use crate::core::tools::flux::RECONCILE_ANNOTATION as FLUX_RECONCILE_ANNOTATION;
use crate::core::tools::kubectl::LAST_APPLIED_ANNOTATION;
use crate::core::tools::pause::{self, ApplicationRef, HelmReleaseRef};
use crate::core::workload::Workload;
use crate::error::{Error, ExitStatus, Result};
use crate::kubeio::{self, NamespaceScope};
use crate::retry::{self, Attempt};

/// Fails before anything is shown or changed if the identity may not patch what the plans touch.
pub(super) async fn ensure_permissions(client: &Client, plans: &[ObjectPlan]) -> Result<()> {
    let mut needed: Vec<(String, String, String, String)> = Vec::new();
    for plan in plans {
        let namespace = plan.assessment.namespace.clone();
        if plan.workload_change.is_some() || plan.handover_manager.is_some() {
            needed.push(("patch".into(), plan.kind.group.clone(), plan.kind.plural.clone(), namespace));
        }
        if let Some(change) = &plan.helm_change {
            needed.push(("patch".into(), String::new(), change.driver.resource().into(), change.namespace.clone()));
        }
        if let Some(release) = &plan.suspend {
            needed.push(("patch".into(), HELM_RELEASE_GROUP.into(), "helmreleases".into(), release.namespace.clone()));
        }
        if let Some(application) = &plan.auto_sync_off {
            needed.push(("patch".into(), ARGOCD_GROUP.into(), "applications".into(), application.namespace.clone()));
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

pub(super) async fn execute(client: &Client, plan: ObjectPlan, dry_run: bool, backup_dir: &Path) -> ObjectResult {
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
    // First, so that neither helm-controller nor Argo CD applies anything once replicas
    // leaves their entries.
    if let Some(release) = &plan.suspend {
        messages.push(suspend_helm_release(client, release, dry_run).await?);
    }
    if let Some(application) = &plan.auto_sync_off {
        messages.push(pause_application(client, application, dry_run).await?);
    }
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

const HELM_RELEASE_GROUP: &str = "helm.toolkit.fluxcd.io";

/// Suspends the HelmRelease (`spec.suspend: true`, with the marker saying what it was, so that
/// `resume` puts exactly that back), unless it is suspended already: then it is left as it is.
/// No backup file: the marker on the HelmRelease is the record, and `resume` the undo.
async fn suspend_helm_release(client: &Client, release: &HelmReleaseRef, dry_run: bool) -> Result<String> {
    let pause = ToolPause {
        api: kubeio::helm_release_api(client, &release.namespace),
        name: &release.name,
        resource: format!("helmreleases.{HELM_RELEASE_GROUP}"),
        label: format!("HelmRelease {release}"),
        plan: pause::plan_suspend,
        paused: pause::suspended_by_strip,
        done: ("suspended", "is suspended already: left as it is", "spec.suspend is not true after the patch"),
    };
    pause.write(&release.namespace, dry_run).await
}

const ARGOCD_GROUP: &str = "argoproj.io";

/// Turns the Application's automated sync off (`spec.syncPolicy.automated` removed, recorded
/// exactly in [`pause::AUTOMATED_ANNOTATION`], so that `resume` puts exactly that back), unless
/// it is off already: then it is left as it is. No backup file: the record on the Application is
/// the backup, and `resume` the undo.
async fn pause_application(client: &Client, application: &ApplicationRef, dry_run: bool) -> Result<String> {
    let pause = ToolPause {
        api: kubeio::argocd_application_api(client, &application.namespace),
        name: &application.name,
        resource: format!("applications.{ARGOCD_GROUP}"),
        label: format!("Argo CD Application {application}"),
        plan: pause::plan_pause_automated,
        paused: pause::automated_paused_by_strip,
        done: (
            "automated sync off",
            "syncs automatically no more: left as it is",
            "spec.syncPolicy.automated is still there after the patch",
        ),
    };
    pause.write(&application.namespace, dry_run).await
}

/// The pause of a deploy tool's own object (a HelmRelease, an Application): one guarded JSON
/// patch, re-planned on a conflict, confirmed on the object as stored.
struct ToolPause<'a> {
    api: kube::Api<kube::api::DynamicObject>,
    name: &'a str,
    resource: String,
    label: String,
    plan: fn(&Value) -> std::result::Result<Option<json_patch::Patch>, patch::PlanError>,
    paused: fn(&Value) -> bool,
    /// What to say when done, when paused already, and when the stored object is not paused.
    done: (&'static str, &'static str, &'static str),
}

impl ToolPause<'_> {
    async fn write(&self, namespace: &str, dry_run: bool) -> Result<String> {
        let scope = NamespaceScope::Namespace(namespace.to_string());
        let Self { api, name, resource, label, plan, paused, done: (done, already, unconfirmed) } = self;
        let scope = &scope;
        retry::on_conflict(label, |_| async move {
            let before =
                kubeio::get_object(api, name).await.map_err(|e| kubeio::classify_error(e, "get", resource, scope))?;
            let planned = plan(&before).map_err(|source| Error::Plan { target: label.clone(), source })?;
            let Some(patch) = planned else {
                return Ok(Attempt::Done(format!("{label} {already}")));
            };
            match kubeio::json_patch(api, name, patch, dry_run).await {
                Ok(written) if paused(&written) => {
                    let what = format!("{label} {done}");
                    Ok(Attempt::Done(if dry_run { format!("dry run: {what}") } else { what }))
                }
                Ok(_) => Err(Error::Unconfirmed { target: label.clone(), why: unconfirmed.to_string() }),
                Err(error) if retry::is_conflict(&error) => Ok(Attempt::Conflict),
                Err(error) => Err(kubeio::classify_error(error, "patch", resource, scope)),
            }
        })
        .await
    }
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
