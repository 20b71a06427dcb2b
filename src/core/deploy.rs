//! The deploy mechanisms around a workload and which of them would reset `.spec.replicas` once
//! `replicas` is deleted from its manifests (a *hazard*).

use serde::Serialize;
use serde_json::Value;

use super::helm::{ReleaseKey, ReleaseRecord};
use super::ownership::ReplicaOwner;
use super::tools::kubectl::LAST_APPLIED_ANNOTATION;
use super::tools::pause::HelmReleaseRef;
use super::tools::{Mechanism, argocd, flux};
use super::workload::Workload;

/// How a hazard is removed; the names are `strip --method` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StripMethod {
    ManagedFields,
    LastApplied,
    HelmRelease,
    Handover,
}

impl StripMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            StripMethod::ManagedFields => "managed-fields",
            StripMethod::LastApplied => "last-applied",
            StripMethod::HelmRelease => "helm-release",
            StripMethod::Handover => "handover",
        }
    }
}

/// Where a hazard lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HazardSource {
    ManagedFields,
    LastAppliedAnnotation,
    HelmRelease,
}

/// A deploy mechanism that still owns `.spec.replicas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hazard {
    pub mechanism: Mechanism,
    pub source: HazardSource,
    /// The managedFields manager, annotation or release record.
    pub owner: String,
    pub detail: String,
    pub method: StripMethod,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxInfo {
    /// `namespace/name` of the Kustomization or HelmRelease whose labels the object carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kustomization: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helm_release: Option<String>,
    /// `kustomize.toolkit.fluxcd.io/reconcile: disabled` is set on the object.
    pub reconcile_disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmInfo {
    pub release: String,
    pub namespace: String,
    /// `secret` or `configmap`, when the deployed record was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<super::helm::Driver>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The replicas the deployed release manifest sets for this object, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_replicas: Option<Value>,
    /// Helm 4's apply method of the release (`ssa`: upgrades are server-side applies, and the
    /// stored manifest plays no part).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply_method: Option<String>,
    /// Set when the record could not be read (missing, forbidden, undecodable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What the object says about the tools that deploy it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flux: Option<FluxInfo>,
    /// The Argo CD tracking id (`app:group/Kind:namespace/name`), when annotation tracking is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argocd_tracking_id: Option<String>,
    /// The Argo CD Application that tracking id names, when it was read (the inventory adds it).
    #[serde(skip)]
    pub argocd_application: Option<argocd::Application>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmInfo>,
    /// The replicas recorded in the last-applied annotation (client-side apply), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_applied_replicas: Option<Value>,
}

/// The replicas value in the last-applied annotation, if the annotation sets one.
pub fn last_applied_replicas(workload: &Workload) -> Option<Value> {
    let text = workload.annotation(LAST_APPLIED_ANNOTATION)?;
    let applied: Value = serde_json::from_str(text).ok()?;
    applied.pointer("/spec/replicas").filter(|v| !v.is_null()).cloned()
}

pub fn flux_info(workload: &Workload, owners: &[ReplicaOwner]) -> Option<FluxInfo> {
    let pair = |name: &str, namespace: &str| {
        workload.label(name).map(|n| format!("{}/{n}", workload.label(namespace).unwrap_or(workload.namespace())))
    };
    let info = FluxInfo {
        kustomization: pair(flux::KUSTOMIZATION_NAME_LABEL, flux::KUSTOMIZATION_NAMESPACE_LABEL),
        helm_release: HelmReleaseRef::of(workload).map(|release| release.to_string()),
        reconcile_disabled: flux::is_paused(workload),
    };
    let managed_by_flux = owners.iter().any(|o| o.mechanism.is_flux());
    (info.kustomization.is_some() || info.helm_release.is_some() || info.reconcile_disabled || managed_by_flux)
        .then_some(info)
}

pub fn deploy_info(workload: &Workload, owners: &[ReplicaOwner], helm: Option<HelmInfo>) -> DeployInfo {
    DeployInfo {
        flux: flux_info(workload, owners),
        argocd_tracking_id: workload.annotation(argocd::TRACKING_ANNOTATION).map(str::to_string),
        argocd_application: None,
        helm,
        last_applied_replicas: last_applied_replicas(workload),
    }
}

/// Builds the Helm part of [`DeployInfo`] from the release record found for the workload.
pub fn helm_info(workload: &Workload, release: ReleaseKey, record: Result<Option<&ReleaseRecord>, String>) -> HelmInfo {
    let mut info = HelmInfo {
        release: release.name,
        namespace: release.namespace,
        driver: None,
        revision: None,
        manifest_replicas: None,
        apply_method: None,
        problem: None,
    };
    match record {
        Ok(Some(record)) => {
            info.driver = Some(record.driver);
            info.revision = Some(record.revision);
            info.manifest_replicas = record.replicas_for(workload);
            info.apply_method = record.apply_method.clone();
        }
        Ok(None) => info.problem = Some("no deployed release record found (Secret or ConfigMap)".into()),
        Err(problem) => info.problem = Some(problem),
    }
    info
}

/// Every mechanism that would reset replicas if `replicas` were deleted from its manifests.
///
/// - An entry of a deploy tool that owns replicas, Apply or Update: appliers drop a field they
///   solely own when it leaves their manifest; client-side-apply and Helm 3 Update entries turn
///   into Apply owners when the tool migrates to server-side apply (kubectl's and Argo CD's
///   client-side-apply upgrade), so they are stripped too.
/// - On an object a Flux Kustomization applies (its labels), the entries Flux takes over before
///   each apply ([`flux::takes_over`]: `kubectl patch`, `kubectl edit`, client-side
///   `kubectl apply`, `before-first-apply`...): they are Flux's at its next reconcile.
/// - Any other manager that *applies* replicas: it would drop the field the same way.
///   An applier that shares ownership with the autoscaler or a handover manager is no hazard:
///   when it stops sending the field, the co-owner keeps it (server-side apply only removes a
///   field no one else owns). [`covered_appliers`] names those for a warning.
/// - The last-applied annotation with replicas: the three-way merge sends `replicas: null`.
/// - A Helm 3 release manifest with replicas: Helm sends `replicas: null`.
pub fn hazards(owners: &[ReplicaOwner], info: &DeployInfo) -> Vec<Hazard> {
    let covered = covered_appliers(owners);
    let flux_applies = info.flux.as_ref().is_some_and(|f| f.kustomization.is_some());
    // A HelmRelease upgrades the object: Helm's entries and record are helm-controller's
    // (measured: it takes over a release the Helm 3 CLI installed and upgrades it client-side).
    let helm_controller = info.flux.as_ref().is_some_and(|f| f.helm_release.is_some());
    let helm_mechanism = if helm_controller { Mechanism::FluxHelm } else { Mechanism::Helm };
    // An operator's Update entry the Application names (argocd.argoproj.io/client-side-apply-
    // migration-manager) is Argo CD's at its next server-side sync (measured on v3.2.11: a
    // later sync dropped 5 -> 1 through it, after a strip that had left it alone).
    let argo_migrates = |o: &ReplicaOwner| {
        let application = info.argocd_application.as_ref()?;
        let manager = application.migration_manager.as_deref()?;
        (!o.mechanism.is_deploy_tool() && o.is_object_update_by(manager)).then_some(application)
    };
    let mut found: Vec<Hazard> = owners
        .iter()
        .filter(|o| !covered.contains(o))
        .filter_map(|o| {
            let detail = format!("managedFields entry {} owns .spec.replicas", o.label());
            let detail = match dormant(o, info) {
                Some(why) => format!("{detail}; {why}"),
                None => detail,
            };
            let (mechanism, detail) =
                if flux_applies && o.mechanism != Mechanism::FluxKustomize && flux::takes_over(o) {
                    let taken = format!(
                        "{detail}; Flux's kustomize-controller merges that entry into its own before each apply of this object"
                    );
                    (Mechanism::FluxKustomize, taken)
                } else if o.mechanism == Mechanism::Helm {
                    (helm_mechanism, detail)
                } else if let Some(application) = argo_migrates(o) {
                    let taken = format!(
                        "{detail}; Argo CD Application {}/{} names it its client-side-apply migration manager: a \
                         server-side sync makes that entry argocd-controller's",
                        application.namespace, application.name
                    );
                    (Mechanism::ArgoCd, taken)
                } else if o.mechanism.is_deploy_tool()
                    || (matches!(o.mechanism, Mechanism::Other | Mechanism::ScaleWriter) && o.is_apply())
                {
                    (o.mechanism, detail)
                } else {
                    return None;
                };
            Some(Hazard {
                mechanism,
                source: HazardSource::ManagedFields,
                owner: o.manager.clone(),
                detail,
                method: StripMethod::ManagedFields,
            })
        })
        .collect();
    if let Some(replicas) = &info.last_applied_replicas {
        let argocd = info.argocd_tracking_id.is_some() || owners.iter().any(|o| o.mechanism == Mechanism::ArgoCd);
        found.push(Hazard {
            mechanism: if argocd { Mechanism::ArgoCd } else { Mechanism::KubectlClientSide },
            source: HazardSource::LastAppliedAnnotation,
            owner: LAST_APPLIED_ANNOTATION.to_string(),
            detail: format!("the last-applied-configuration annotation sets replicas: {replicas}; client-side apply would send replicas: null"),
            method: StripMethod::LastApplied,
        });
    }
    if let Some(helm) = &info.helm
        && let Some(replicas) = &helm.manifest_replicas
        && helm.apply_method.as_deref() != Some("ssa")
    {
        found.push(Hazard {
            mechanism: helm_mechanism,
            source: HazardSource::HelmRelease,
            owner: format!("{}/{} revision {}", helm.namespace, helm.release, helm.revision.unwrap_or_default()),
            detail: format!(
                "the deployed Helm release manifest sets replicas: {replicas}; helm upgrade of a chart without it sends replicas: null"
            ),
            method: StripMethod::HelmRelease,
        });
    }
    found
}

/// Why an Update owner of replicas leaves them alone at its own tool's next deploy yet is still
/// a hazard: its tool's record no longer sets replicas (as after a deploy without them that
/// `guard on --pin` kept: the write changed no value, so the entry kept the field), but a switch
/// to server-side apply turns the entry into an applier's, which then drops them. `None` when the
/// record still sets them (the hazard is then the record's too) or is unknown.
fn dormant(owner: &ReplicaOwner, info: &DeployInfo) -> Option<&'static str> {
    if owner.is_apply() {
        return None;
    }
    match owner.mechanism {
        Mechanism::KubectlClientSide if info.last_applied_replicas.is_none() => Some(
            "the last-applied annotation no longer sets replicas, so the next client-side apply leaves them alone, \
             but a switch to --server-side (or Flux taking the entry over) makes the entry an applier's that drops them",
        ),
        Mechanism::Helm
            if info
                .helm
                .as_ref()
                .is_some_and(|h| h.revision.is_some() && h.problem.is_none() && h.manifest_replicas.is_none()) =>
        {
            Some(
                "the deployed release manifest no longer sets replicas, so the next client-side upgrade leaves them \
                 alone, but an upgrade that applies server-side makes the entry an applier's that drops them",
            )
        }
        _ => None,
    }
}

/// Appliers whose ownership of replicas is shared with the autoscaler or a handover manager.
pub fn covered_appliers(owners: &[ReplicaOwner]) -> Vec<&ReplicaOwner> {
    let co_owned = owners.iter().any(|o| matches!(o.mechanism, Mechanism::Autoscaler | Mechanism::Handover));
    if !co_owned {
        return Vec::new();
    }
    owners
        .iter()
        .filter(|o| o.is_apply() && !matches!(o.mechanism, Mechanism::Autoscaler | Mechanism::Handover))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::core::fixtures::{deployment, hpa};
    use crate::core::tools::{Mechanism, pause};
    use crate::core::verdict::Verdict;
    use crate::core::{Cluster, analyze};

    use super::StripMethod;

    /// Captured from the real kustomize-controller (tests/it/flux.rs): Flux applied the object,
    /// then `kubectl patch` set replicas, so `kubectl-patch` (Update) owns them.
    const PATCHED: &str = "flux-managed-kubectl-patch-owns-replicas";

    fn assess(workload: &crate::core::workload::Workload) -> crate::core::verdict::Assessment {
        let hpas = [hpa("hpa-min3-rescaled", workload.namespace(), workload.name())];
        analyze(workload, &Cluster { hpas: &hpas, ..Cluster::default() })
    }

    #[test]
    fn the_real_controller_s_entry_is_flux_s() {
        let workload = deployment("flux-real-owns-replicas");
        let assessment = assess(&workload);
        assert_eq!(assessment.verdict, Verdict::StripNeeded);
        assert_eq!(assessment.hazards[0].mechanism, Mechanism::FluxKustomize);
        assert_eq!(
            assessment.deploy.flux.as_ref().and_then(|f| f.kustomization.as_deref()),
            Some(format!("{}/shop", workload.namespace()).as_str())
        );
    }

    #[test]
    fn a_kubectl_patch_owner_on_an_object_flux_applies_is_flux_s() {
        let workload = deployment(PATCHED);
        let assessment = assess(&workload);
        assert_eq!(assessment.verdict, Verdict::StripNeeded, "{}", assessment.reason);
        assert_eq!(assessment.replica_owners[0].mechanism, Mechanism::Manual);
        let hazard = &assessment.hazards[0];
        assert_eq!((hazard.owner.as_str(), hazard.mechanism), ("kubectl-patch", Mechanism::FluxKustomize));
        assert_eq!(hazard.method, StripMethod::ManagedFields);
        assert!(hazard.detail.contains("merges that entry into its own"), "{}", hazard.detail);
        assert!(assessment.next.ends_with("--pause-flux"), "{}", assessment.next);
    }

    /// Captured after `kubectl apply` without replicas under `guard on --pin` (guard_pin.rs): the
    /// count was kept, last-applied lost replicas, the client-side entry still owns them.
    #[test]
    fn after_a_pinned_client_side_apply_the_entry_still_owning_replicas_is_a_hazard_on_a_switch_only() {
        let workload = deployment("pin-after-client-side-apply");
        let assessment = assess(&workload);
        assert_eq!(assessment.deploy.last_applied_replicas, None);
        assert_eq!(assessment.verdict, Verdict::StripNeeded, "{}", assessment.reason);
        let [hazard] = assessment.hazards.as_slice() else { panic!("{:?}", assessment.hazards) };
        assert_eq!(
            (hazard.owner.as_str(), hazard.mechanism),
            ("kubectl-client-side-apply", Mechanism::KubectlClientSide)
        );
        assert!(hazard.detail.contains("the next client-side apply leaves them alone, but a switch to --server-side"));
        let mark = assessment.guard.as_ref().unwrap();
        assert_eq!(mark.pinned.as_ref().map(|p| p.replicas), Some(5));
    }

    /// Captured after a pinned forced apply, a pinned switch to `kubectl apply --server-side`, a
    /// pinned real Flux reconcile and a pinned Helm 4 upgrade: nobody owns replicas any more.
    #[test]
    fn after_a_pinned_server_side_apply_nobody_owns_replicas_and_it_is_safe() {
        for name in
            ["pin-after-forced-apply", "pin-after-switch-to-server-side", "pin-after-flux", "pin-after-helm4-toggle"]
        {
            let assessment = assess(&deployment(name));
            assert_eq!(assessment.replica_owners, [], "{name}");
            assert_eq!(assessment.verdict, Verdict::Safe, "{name}: {}", assessment.reason);
            assert_eq!(assessment.replicas.spec, Some(5), "{name}");
        }
    }

    #[test]
    fn the_same_owner_on_an_object_flux_does_not_apply_is_a_person_s() {
        let mut workload = deployment(PATCHED);
        workload.metadata.labels = None;
        let assessment = assess(&workload);
        assert_eq!(assessment.verdict, Verdict::Safe, "{}", assessment.reason);
        assert!(assessment.hazards.is_empty());
    }

    /// Captured from the real helm-controller v1.6.4 (tests/it/helm_controller.rs): a release it
    /// installed server-side, and one installed client-side.
    #[test]
    fn helm_controller_s_entries_are_its_hazards_and_its_pause_is_the_helmrelease_s() {
        for fixture in ["helm-controller-deployment", "helm-controller-csa-deployment"] {
            let workload = deployment(fixture);
            let assessment = assess(&workload);
            assert_eq!(assessment.verdict, Verdict::StripNeeded, "{fixture}: {}", assessment.reason);
            assert!(assessment.hazards.iter().all(|h| h.mechanism == Mechanism::FluxHelm), "{:?}", assessment.hazards);
            assert!(assessment.next.ends_with("--pause-flux"), "{fixture}: {}", assessment.next);
            let release = pause::HelmReleaseRef { namespace: workload.namespace().into(), name: "web".into() };
            assert_eq!(assessment.pauses(), vec![pause::Pause::HelmRelease(release)], "{fixture}");
            let namespace = workload.namespace();
            let suspend = format!("flux suspend helmrelease web -n {namespace}");
            assert!(assessment.warnings.iter().any(|w| w.contains(&suspend)), "{fixture}: {:?}", assessment.warnings);
        }
    }

    #[test]
    fn an_operators_entry_the_application_names_its_migration_manager_is_argo_cds() {
        use crate::core::fixtures::load;
        use crate::core::tools::argocd::{Application, MIGRATION_MANAGER_ANNOTATION};
        use crate::core::workload::{Workload, WorkloadKind};
        // Captured after a default sync of the real Argo CD; an operator's Update entry is
        // given replicas, as `kubectl create --field-manager=legacy-operator` leaves it.
        let mut object = load("argocd-client-side-deployment");
        for entry in object["metadata"]["managedFields"].as_array_mut().unwrap() {
            if let Some(spec) = entry.pointer_mut("/fieldsV1/f:spec").and_then(|s| s.as_object_mut()) {
                spec.remove("f:replicas");
            }
        }
        let operator = serde_json::json!({"manager": "legacy-operator", "operation": "Update", "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}});
        object["metadata"]["managedFields"].as_array_mut().unwrap().push(operator);
        let workload = Workload::from_object(WorkloadKind::deployment(), object).unwrap();
        let mut application = load("argocd-application-self-heal");
        application["metadata"]["name"] = "argo-csa-0-805613".into();
        let plain = [Application::from_value(&application).unwrap()];
        application["metadata"]["annotations"] = serde_json::json!({MIGRATION_MANAGER_ANNOTATION: "legacy-operator"});
        let naming = [Application::from_value(&application).unwrap()];
        let operator_hazards = |applications: &[Application]| {
            let assessment = analyze(&workload, &Cluster { argocd_applications: applications, ..Cluster::default() });
            assessment.hazards.into_iter().filter(|h| h.owner == "legacy-operator").collect::<Vec<_>>()
        };
        assert!(operator_hazards(&plain).is_empty(), "an Update entry of an unknown manager is no hazard by itself");
        let named = operator_hazards(&naming);
        assert_eq!(named.len(), 1, "{named:?}");
        assert_eq!(named[0].mechanism, Mechanism::ArgoCd);
        assert_eq!(named[0].method, StripMethod::ManagedFields);
    }
}
