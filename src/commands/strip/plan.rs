//! What `strip` does to one workload, decided from its assessment and the object as read, and
//! why a workload is left as it is. Pure: no I/O.

use serde_json::Value;

use super::{ObjectResult, StripOptions, StripOutcome, result_for};
use crate::core::deploy::{HazardSource, StripMethod};
use crate::core::helm::{ReleaseKey, ReleaseRecords};
use crate::core::ownership;
use crate::core::patch::{HelmChange, PlanError, WorkloadChange};
use crate::core::tools::DEFAULT_HANDOVER_MANAGER;
use crate::core::tools::pause::{ApplicationRef, HelmReleaseRef, Pause};
use crate::core::verdict::{Assessment, Verdict};
use crate::core::workload::{Workload, WorkloadKind};
use crate::error::ExitStatus;

/// What will be done to one workload.
#[derive(Debug, Clone)]
pub(super) struct ObjectPlan {
    pub assessment: Assessment,
    pub kind: WorkloadKind,
    pub before: Value,
    pub managers: Vec<String>,
    pub last_applied: bool,
    /// Pause kustomize-controller: its annotation, in the workload's patch.
    pub pause_flux: bool,
    /// Suspend the HelmRelease that deploys the workload, before anything else is written.
    pub suspend: Option<HelmReleaseRef>,
    /// Turn off the automated sync of the Argo CD Application that syncs the workload, before
    /// anything else is written.
    pub auto_sync_off: Option<ApplicationRef>,
    pub handover_manager: Option<String>,
    pub workload_change: Option<WorkloadChange>,
    pub helm_change: Option<HelmChange>,
    pub methods: Vec<StripMethod>,
    /// What was asked but left alone, and why; added to the result's message.
    pub notes: Vec<String>,
}

/// Why a workload is left as it is: refused, or nothing to do.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Left {
    pub outcome: StripOutcome,
    pub message: String,
    pub exit: ExitStatus,
}

impl Left {
    fn refused(message: String, exit: ExitStatus) -> Self {
        Self { outcome: StripOutcome::Refused, message, exit }
    }

    pub fn result(self, assessment: &Assessment) -> ObjectResult {
        result_for(assessment, self.outcome, self.message, self.exit)
    }
}

/// What is decided before the object is read: the methods, and the managers they strip.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Chosen {
    pub methods: Vec<StripMethod>,
    pub managers: Vec<String>,
}

/// The methods and managers for this workload, or why it is refused (its autoscaler is not in
/// charge, or `--field-manager` names a manager that does not own replicas).
pub(super) fn choose(assessment: &Assessment, options: &StripOptions) -> Result<Chosen, Left> {
    unless_in_charge(assessment, options.force)?;
    let methods = chosen_methods(assessment, options).map_err(|message| Left::refused(message, ExitStatus::Usage))?;
    let managers = managers_to_strip(assessment, options, &methods);
    Ok(Chosen { methods, managers })
}

/// The plan for the workload as read (`before`), or why there is nothing to do or it is refused.
pub(super) fn plan(
    assessment: &Assessment,
    before: Value,
    chosen: Chosen,
    options: &StripOptions,
    helm_records: &ReleaseRecords,
) -> Result<ObjectPlan, Left> {
    let Chosen { methods, managers } = chosen;
    let pauses = if options.pause { assessment.pauses() } else { Vec::new() };
    let pause_flux = pauses.contains(&Pause::FluxKustomization);
    let suspend = pauses.iter().find_map(|pause| match pause {
        Pause::HelmRelease(release) => Some(release.clone()),
        _ => None,
    });
    let auto_sync_off = pauses.into_iter().find_map(|pause| match pause {
        Pause::ArgoCdAutoSync(application) => Some(application),
        _ => None,
    });
    let last_applied = methods.contains(&StripMethod::LastApplied);
    let workload_change = match WorkloadChange::plan(&before, &managers, last_applied, pause_flux) {
        Ok(change) => Some(change).filter(|c| !c.is_empty()),
        Err(error) => return Err(refusal(&error)),
    };
    let helm_change =
        if methods.contains(&StripMethod::HelmRelease) { plan_helm(assessment, &before, helm_records)? } else { None };
    let handover_manager = handover_manager(options, &methods);
    if let Some(manager) = &handover_manager {
        unless_flux_leaves_it(manager)?;
    }
    let handover_needed = handover_manager.as_ref().is_some_and(|m| !owns_replicas(&before, m));
    if workload_change.is_none()
        && helm_change.is_none()
        && !handover_needed
        && suspend.is_none()
        && auto_sync_off.is_none()
    {
        return Err(nothing_to_do(assessment, &methods));
    }
    let mut notes = Vec::new();
    if options.pause && !pause_flux && suspend.is_none() && auto_sync_off.is_none() {
        notes.push(if let Some(application) = &assessment.deploy.argocd_application {
            format!(
                "not paused: Argo CD Application {} does not sync automatically{} (a sync someone asks for still applies Git)",
                application.reference(),
                if application.paused_by_strip { " (an earlier strip --pause turned it off)" } else { "" }
            )
        } else if assessment.deploy.argocd_tracking_id.is_some() {
            "not paused: Argo CD tracks it, but its Application could not be read (list applications.argoproj.io); turn its automated sync off yourself"
                .to_string()
        } else if assessment.flux_owns_replicas() {
            "not paused for Flux: helm-controller owns replicas, but no helm.toolkit.fluxcd.io labels name its HelmRelease: suspend it yourself (flux suspend helmrelease)"
                .to_string()
        } else {
            "not paused: neither Flux nor Argo CD manages it (no kustomize.toolkit.fluxcd.io or helm.toolkit.fluxcd.io labels, no Flux owner of replicas, no Argo CD tracking id)"
                .to_string()
        });
    }
    notes.extend(left_alone(assessment, &methods, &managers));
    Ok(ObjectPlan {
        kind: assessment.workload_kind.clone(),
        assessment: assessment.clone(),
        before,
        managers,
        last_applied,
        pause_flux,
        suspend,
        auto_sync_off,
        handover_manager: handover_manager.filter(|_| handover_needed),
        workload_change,
        helm_change,
        methods,
        notes,
    })
}

/// The refusal of a workload whose autoscaler is not in charge (without `--force`): replicas
/// handed over then would stay wherever the API server defaults it.
fn unless_in_charge(assessment: &Assessment, force: bool) -> Result<(), Left> {
    let in_charge = matches!(assessment.verdict, Verdict::StripNeeded | Verdict::Safe);
    if in_charge || force {
        return Ok(());
    }
    let message = format!(
        "refused: {} ({}); the autoscaler must be in charge before replicas is handed over: {} (or --force)",
        assessment.reason,
        assessment.verdict.as_str(),
        assessment.next
    );
    Err(Left::refused(message, ExitStatus::ActionNeeded))
}

/// The manager that takes replicas over with the handover method: the first `--field-manager`,
/// else the default.
fn handover_manager(options: &StripOptions, methods: &[StripMethod]) -> Option<String> {
    methods
        .contains(&StripMethod::Handover)
        .then(|| options.field_managers.first().cloned().unwrap_or_else(|| DEFAULT_HANDOVER_MANAGER.to_string()))
}

/// The refusal of a `kubectl*` handover manager: Flux takes such entries over before each
/// apply, so the next reconcile would undo the handover.
fn unless_flux_leaves_it(manager: &str) -> Result<(), Left> {
    if !manager.starts_with("kubectl") {
        return Ok(());
    }
    let message = format!(
        "refused: handover manager {manager} starts with `kubectl`; Flux takes such entries over before each apply"
    );
    Err(Left::refused(message, ExitStatus::Usage))
}

fn nothing_to_do(assessment: &Assessment, methods: &[StripMethod]) -> Left {
    let message = match assessment.verdict {
        Verdict::Safe => "nothing to do: no deploy mechanism owns replicas".to_string(),
        _ => format!("nothing to do for method {}", methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")),
    };
    Left { outcome: StripOutcome::NothingToDo, message, exit: ExitStatus::Success }
}

/// The methods for this workload. With `--field-manager`, `auto` narrows to managed-fields of
/// the named managers; naming a manager that does not own replicas is refused (nothing
/// changes), so a typo never strips someone else.
fn chosen_methods(assessment: &Assessment, options: &StripOptions) -> Result<Vec<StripMethod>, String> {
    let narrowed = !options.field_managers.is_empty() && options.method != Some(StripMethod::Handover);
    if narrowed {
        let owners: Vec<&str> = assessment.replica_owners.iter().map(|o| o.manager.as_str()).collect();
        let unknown: Vec<&String> = options.field_managers.iter().filter(|m| !owners.contains(&m.as_str())).collect();
        if !unknown.is_empty() {
            return Err(format!(
                "refused: --field-manager {} does not own replicas here (owners: {}); nothing was changed",
                unknown.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "),
                if owners.is_empty() { "none".to_string() } else { owners.join(", ") }
            ));
        }
        return Ok(vec![StripMethod::ManagedFields]);
    }
    Ok(match options.method {
        None => assessment.strip_methods(),
        Some(method) => vec![method],
    })
}

/// The managedFields entries to strip: the named ones, else every deploy tool's.
fn managers_to_strip(assessment: &Assessment, options: &StripOptions, methods: &[StripMethod]) -> Vec<String> {
    if !methods.contains(&StripMethod::ManagedFields) {
        return Vec::new();
    }
    if !options.field_managers.is_empty() {
        return options.field_managers.clone();
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

fn refusal(error: &PlanError) -> Left {
    let exit = match error {
        PlanError::AutoscalerEntry(_) => ExitStatus::Usage,
        _ => ExitStatus::Failure,
    };
    Left::refused(format!("refused: {error}"), exit)
}

/// Whether `manager` owns `.spec.replicas` in the object's managedFields.
pub(super) fn owns_replicas(object: &Value, manager: &str) -> bool {
    let entries = object.pointer("/metadata/managedFields").cloned().unwrap_or(Value::Null);
    let entries: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> =
        serde_json::from_value(entries).unwrap_or_default();
    ownership::replica_owners(&entries, &[]).iter().any(|o| o.manager == manager)
}

/// The edit of the deployed Helm release record (`None`: its manifest sets no replicas).
fn plan_helm(assessment: &Assessment, object: &Value, records: &ReleaseRecords) -> Result<Option<HelmChange>, Left> {
    let Some(info) = &assessment.deploy.helm else {
        return Err(Left::refused(
            "refused: --method helm-release, but the workload is in no Helm release (no meta.helm.sh/release-name annotation)"
                .into(),
            ExitStatus::Usage,
        ));
    };
    if info.manifest_replicas.is_none() {
        return Ok(None);
    }
    let failed = |message: String| Left::refused(message, ExitStatus::Failure);
    let release = ReleaseKey { namespace: info.namespace.clone(), name: info.release.clone() };
    let record = records
        .find(&release)
        .map_err(|problem| failed(format!("cannot read the Helm release record: {problem}")))?
        .ok_or_else(|| failed(format!("no deployed record of Helm release {}/{}", info.namespace, info.release)))?;
    let workload = Workload::from_object(assessment.workload_kind.clone(), object.clone())
        .map_err(|e| failed(format!("the workload does not decode: {e}")))?;
    HelmChange::plan(record, &workload).map(Some).map_err(|e| failed(format!("refused: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fixtures::{deployment, hpa, load};
    use crate::core::helm::{Driver, ReleaseRecord};
    use crate::core::{Cluster, analyze};

    fn options() -> StripOptions {
        StripOptions {
            targets: Vec::new(),
            method: None,
            field_managers: Vec::new(),
            dry_run: false,
            yes: true,
            backup_dir: "/nonexistent".into(),
            pause: false,
            force: false,
            plans_to_stdout: true,
        }
    }

    /// The captured workload, assessed with an HPA in charge (or with none).
    fn assessed(fixture: &str, with_hpa: bool) -> (Assessment, Value) {
        let workload = deployment(fixture);
        let hpas =
            if with_hpa { vec![hpa("hpa-min3-rescaled", workload.namespace(), workload.name())] } else { vec![] };
        let records = ReleaseRecords::NotRead;
        (
            analyze(&workload, &Cluster { hpas: &hpas, helm_records: Some(&records), ..Cluster::default() }),
            load(fixture),
        )
    }

    fn planned(fixture: &str, options: &StripOptions) -> Result<ObjectPlan, Left> {
        let (assessment, object) = assessed(fixture, true);
        plan(&assessment, object, choose(&assessment, options)?, options, &ReleaseRecords::NotRead)
    }

    #[test]
    fn auto_strips_the_flux_entry_and_pauses_only_when_asked() {
        let plan = planned("flux-real-owns-replicas", &options()).unwrap();
        assert_eq!(
            (plan.methods.as_slice(), plan.managers.as_slice()),
            ([StripMethod::ManagedFields].as_slice(), ["kustomize-controller".to_string()].as_slice())
        );
        let change = plan.workload_change.as_ref().unwrap();
        assert!(change.managed_fields.is_some() && !change.pause_flux && plan.notes.is_empty());

        let paused = planned("flux-real-owns-replicas", &StripOptions { pause: true, ..options() }).unwrap();
        assert!(paused.pause_flux && paused.workload_change.unwrap().pause_flux);
    }

    #[test]
    fn a_helm_release_s_object_is_paused_by_suspending_the_helm_release_not_by_the_annotation() {
        for fixture in ["helm-controller-deployment", "helm-controller-csa-deployment"] {
            let paused = planned(fixture, &StripOptions { pause: true, ..options() }).unwrap();
            let namespace = paused.assessment.namespace.clone();
            assert_eq!(paused.suspend, Some(HelmReleaseRef { namespace, name: "web".into() }), "{fixture}");
            assert!(!paused.pause_flux && !paused.workload_change.unwrap().pause_flux, "{fixture}");
            assert!(paused.notes.is_empty(), "{fixture}: {:?}", paused.notes);
            assert_eq!(planned(fixture, &options()).unwrap().suspend, None, "{fixture}: only when asked");
        }
    }

    #[test]
    fn an_argo_cd_object_is_paused_by_its_application_s_automated_sync_only_while_it_is_on() {
        let (mut assessment, object) = assessed("argocd-client-side-deployment", true);
        let mut application =
            crate::core::tools::argocd::Application::from_value(&load("argocd-application-self-heal"))
                .expect("captured from the real Argo CD");
        assessment.deploy.argocd_application = Some(application.clone());
        let pausing = StripOptions { pause: true, ..options() };
        let plan_with = |assessment: &Assessment, options: &StripOptions| {
            plan(assessment, object.clone(), choose(assessment, options).unwrap(), options, &ReleaseRecords::NotRead)
                .unwrap()
        };
        let paused = plan_with(&assessment, &pausing);
        assert_eq!(paused.auto_sync_off, Some(application.reference()));
        assert!(!paused.pause_flux && paused.suspend.is_none() && paused.notes.is_empty(), "{:?}", paused.notes);
        assert_eq!(plan_with(&assessment, &options()).auto_sync_off, None, "only when asked");

        application.automated = false;
        assessment.deploy.argocd_application = Some(application);
        let manual = plan_with(&assessment, &pausing);
        assert_eq!(manual.auto_sync_off, None, "automation the user had off stays off");
        assert!(manual.notes[0].contains("does not sync automatically"), "{:?}", manual.notes);
    }

    #[test]
    fn a_pause_asked_for_an_object_flux_does_not_manage_is_a_note() {
        let plan = planned("kubectl-csa-owns-replicas", &StripOptions { pause: true, ..options() }).unwrap();
        assert!(!plan.pause_flux);
        assert!(plan.notes[0].starts_with("not paused: neither Flux nor Argo CD"), "{:?}", plan.notes);
    }

    #[test]
    fn client_side_apply_strips_the_entry_and_the_annotation_unless_narrowed() {
        let plan = planned("kubectl-csa-owns-replicas", &options()).unwrap();
        assert_eq!(plan.methods, vec![StripMethod::ManagedFields, StripMethod::LastApplied]);
        assert!(plan.last_applied && plan.notes.is_empty());

        let narrowed = StripOptions { method: Some(StripMethod::ManagedFields), ..options() };
        let plan = planned("kubectl-csa-owns-replicas", &narrowed).unwrap();
        assert!(!plan.last_applied);
        assert_eq!(plan.notes.len(), 1);
        assert!(plan.notes[0].starts_with("left alone (not named): "), "{:?}", plan.notes);
        assert!(plan.notes[0].contains("last-applied"), "{:?}", plan.notes);
    }

    #[test]
    fn a_field_manager_that_owns_no_replicas_is_refused_and_names_the_owners() {
        let typo = StripOptions { field_managers: vec!["kustomize-controler".into()], ..options() };
        let left = planned("flux-real-owns-replicas", &typo).unwrap_err();
        assert_eq!((left.outcome, left.exit), (StripOutcome::Refused, ExitStatus::Usage));
        assert_eq!(
            left.message,
            "refused: --field-manager kustomize-controler does not own replicas here (owners: kustomize-controller); nothing was changed"
        );
        let named = StripOptions { field_managers: vec!["kustomize-controller".into()], ..options() };
        assert_eq!(planned("flux-real-owns-replicas", &named).unwrap().managers, vec!["kustomize-controller"]);
    }

    #[test]
    fn without_an_autoscaler_in_charge_it_is_refused_unless_forced() {
        let (assessment, object) = assessed("flux-real-owns-replicas", false);
        let left = choose(&assessment, &options()).unwrap_err();
        assert_eq!((left.outcome, left.exit), (StripOutcome::Refused, ExitStatus::ActionNeeded));
        assert!(left.message.contains("the autoscaler must be in charge") && left.message.ends_with("(or --force)"));

        let forced = StripOptions { force: true, ..options() };
        let chosen = choose(&assessment, &forced).unwrap();
        assert!(plan(&assessment, object, chosen, &forced, &ReleaseRecords::NotRead).is_ok());
    }

    #[test]
    fn handover_is_refused_for_a_kubectl_manager_and_done_once() {
        let kubectl = StripOptions {
            method: Some(StripMethod::Handover),
            field_managers: vec!["kubectl-mine".into()],
            ..options()
        };
        let left = planned("flux-real-owns-replicas", &kubectl).unwrap_err();
        assert_eq!(left.exit, ExitStatus::Usage);
        assert!(left.message.contains("starts with `kubectl`"), "{}", left.message);

        let handover = StripOptions { method: Some(StripMethod::Handover), ..options() };
        let plan = planned("flux-real-owns-replicas", &handover).unwrap();
        assert_eq!(plan.handover_manager.as_deref(), Some(DEFAULT_HANDOVER_MANAGER));
        assert!(plan.workload_change.is_none());

        let owned = StripOptions { field_managers: vec!["handover-to-hpa".into()], ..handover };
        let left = planned("handover-sole-owner", &owned).unwrap_err();
        assert_eq!(left.outcome, StripOutcome::NothingToDo, "handover-to-hpa already owns replicas");
    }

    #[test]
    fn the_helm_release_method_edits_the_deployed_record() {
        let workload = deployment("helm3-deployment");
        let record = ReleaseRecord::from_object(Driver::Secret, &load("helm3-release-secret")).unwrap();
        let records = ReleaseRecords::Read(vec![record]);
        let hpas = [hpa("hpa-min3-rescaled", workload.namespace(), workload.name())];
        let assessment =
            analyze(&workload, &Cluster { hpas: &hpas, helm_records: Some(&records), ..Cluster::default() });
        let only_record = StripOptions { method: Some(StripMethod::HelmRelease), ..options() };
        let chosen = choose(&assessment, &only_record).unwrap();
        let plan = plan(&assessment, load("helm3-deployment"), chosen, &only_record, &records).unwrap();
        let change = plan.helm_change.as_ref().unwrap();
        assert_eq!((change.object_name.as_str(), change.revision), ("sh.helm.release.v1.web.v1", 1));
        assert!(change.old_document.contains("replicas: 5") && !change.new_document.contains("replicas"));
        assert!(plan.workload_change.is_none());

        let unread = choose(&assessment, &only_record).unwrap();
        let left = super::plan(&assessment, load("helm3-deployment"), unread, &only_record, &ReleaseRecords::NotRead)
            .unwrap_err();
        assert_eq!(left.exit, ExitStatus::Failure);
        assert!(left.message.starts_with("cannot read the Helm release record"), "{}", left.message);

        let (not_helm, object) = assessed("flux-real-owns-replicas", true);
        let chosen = choose(&not_helm, &only_record).unwrap();
        let left = super::plan(&not_helm, object, chosen, &only_record, &records).unwrap_err();
        assert_eq!(left.exit, ExitStatus::Usage);
        assert!(left.message.contains("in no Helm release"), "{}", left.message);
    }

    #[test]
    fn a_workload_the_autoscaler_alone_owns_has_nothing_to_do() {
        let left = planned("hpa-rescaled", &options()).unwrap_err();
        assert_eq!(
            left,
            Left {
                outcome: StripOutcome::NothingToDo,
                message: "nothing to do: no deploy mechanism owns replicas".into(),
                exit: ExitStatus::Success
            }
        );
    }
}
