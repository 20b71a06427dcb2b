//! The pure core: no I/O, unit-tested on objects captured from a real API server.

pub mod attribution;
pub mod autoscaler;
pub mod deploy;
pub mod gojson;
pub mod guard;
pub mod helm;
pub mod manifest;
pub mod ownership;
pub mod patch;
pub mod preflight;
pub mod selector;
pub mod timeline;
pub mod tools;
pub mod verdict;
pub mod workload;

use self::autoscaler::{Hpa, ScaledObject};
use self::helm::ReleaseRecords;
use self::verdict::Assessment;
use self::workload::Workload;

/// What the analysis of one workload reads, besides the workload itself. Everything comes from
/// one LIST per kind and scope, never a GET per workload.
#[derive(Debug, Default)]
pub struct Cluster<'a> {
    pub hpas: &'a [Hpa],
    pub scaled_objects: &'a [ScaledObject],
    /// Deployed Helm release records.
    pub helm_records: Option<&'a ReleaseRecords>,
    /// Extra managers to treat as handover owners (`strip --field-manager`).
    pub handover_managers: &'a [String],
    /// Argo CD Applications, listed when a workload carries a tracking id.
    pub argocd_applications: &'a [tools::argocd::Application],
}

/// Runs the whole analysis of one workload.
pub fn analyze(workload: &Workload, cluster: &Cluster<'_>) -> Assessment {
    let entries = workload.metadata.managed_fields.as_deref().unwrap_or_default();
    let owners = ownership::replica_owners(entries, cluster.handover_managers);
    let helm = helm::release_of(workload).map(|release| {
        let record = cluster.helm_records.unwrap_or(&ReleaseRecords::NotRead).find(&release);
        deploy::helm_info(workload, release, record)
    });
    let mut info = deploy::deploy_info(workload, &owners, helm);
    info.argocd_application = info
        .argocd_tracking_id
        .as_deref()
        .and_then(|id| cluster.argocd_applications.iter().find(|a| a.tracks(id)))
        .cloned();
    let hazards = deploy::hazards(&owners, &info);
    let autoscalers = autoscaler::autoscalers_for(workload, cluster.hpas, cluster.scaled_objects);
    verdict::assess(workload, owners, info, hazards, autoscalers)
}

/// The analysis on objects captured from the real control plane (`cargo xtask fixtures`).
#[cfg(test)]
pub(crate) mod fixtures {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use serde_json::Value;

    use super::autoscaler::Hpa;
    use super::workload::{Workload, WorkloadKind};

    pub fn load(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    pub fn deployment(name: &str) -> Workload {
        Workload::from_object(WorkloadKind::deployment(), load(name)).unwrap()
    }

    /// A captured HPA, moved into `namespace` and pointed at `target`.
    pub fn hpa(name: &str, namespace: &str, target: &str) -> Hpa {
        let mut value = load(name);
        value["metadata"]["namespace"] = namespace.into();
        value["spec"]["scaleTargetRef"]["name"] = target.into();
        serde_json::from_value::<HorizontalPodAutoscaler>(value).unwrap().into()
    }
}

#[cfg(test)]
mod tests {
    use super::autoscaler::AutoscalerKind;
    use super::deploy::{HazardSource, StripMethod};
    use super::fixtures::{deployment, hpa};
    use super::tools::Mechanism;
    use super::verdict::Verdict;
    use super::*;

    fn analyze_with(workload: &Workload, hpas: &[Hpa]) -> Assessment {
        analyze(workload, &Cluster { hpas, ..Cluster::default() })
    }

    fn rescaled_hpa_for(workload: &Workload) -> Hpa {
        hpa("hpa-min3-rescaled", workload.namespace(), workload.name())
    }

    #[test]
    fn flux_owner_with_an_hpa_in_charge_needs_a_strip() {
        let workload = deployment("flux-ssa-owns-replicas");
        let assessment = analyze_with(&workload, &[rescaled_hpa_for(&workload)]);
        assert_eq!(assessment.verdict, Verdict::StripNeeded);
        assert_eq!(assessment.hazards.len(), 1);
        assert_eq!(assessment.hazards[0].mechanism, Mechanism::FluxKustomize);
        assert_eq!(assessment.hazards[0].method, StripMethod::ManagedFields);
        assert!(assessment.next.ends_with(&format!("strip -n {} deployment/web --pause-flux", workload.namespace())));
        assert!(assessment.warnings.iter().any(|w| w.contains("Flux owns replicas")));
        assert!(assessment.warnings.iter().any(|w| w.contains("no usable metrics")));
    }

    #[test]
    fn hpa_that_rescaled_owns_replicas_and_is_safe() {
        let workload = deployment("hpa-rescaled");
        let assessment = analyze_with(&workload, &[rescaled_hpa_for(&workload)]);
        assert_eq!(assessment.verdict, Verdict::Safe, "{}", assessment.reason);
        assert_eq!(assessment.replica_owners.len(), 1);
        let owner = &assessment.replica_owners[0];
        assert_eq!((owner.manager.as_str(), owner.mechanism), ("kube-controller-manager", Mechanism::Autoscaler));
        assert_eq!(owner.subresource.as_deref(), Some("scale"));
    }

    #[test]
    fn client_side_apply_needs_both_the_annotation_and_the_entry_stripped() {
        let workload = deployment("kubectl-csa-owns-replicas");
        let assessment = analyze_with(&workload, &[rescaled_hpa_for(&workload)]);
        assert_eq!(assessment.verdict, Verdict::StripNeeded);
        assert_eq!(assessment.strip_methods(), vec![StripMethod::ManagedFields, StripMethod::LastApplied]);
        let annotation = assessment.hazards.iter().find(|h| h.source == HazardSource::LastAppliedAnnotation).unwrap();
        assert_eq!(annotation.mechanism, Mechanism::KubectlClientSide);
        assert_eq!(assessment.deploy.last_applied_replicas, Some(5.into()));
        assert!(!assessment.next.contains("--pause-flux"));
    }

    #[test]
    fn a_handover_owner_is_not_a_hazard() {
        let workload = deployment("handover-sole-owner");
        let assessment = analyze_with(&workload, &[rescaled_hpa_for(&workload)]);
        assert_eq!(assessment.verdict, Verdict::Safe);
        assert_eq!(assessment.replica_owners[0].mechanism, Mechanism::Handover);
    }

    #[test]
    fn an_applier_sharing_replicas_with_a_handover_owner_is_covered() {
        let workload = deployment("flux-and-handover-share-replicas");
        let assessment = analyze_with(&workload, &[rescaled_hpa_for(&workload)]);
        assert_eq!(assessment.verdict, Verdict::Safe, "{}", assessment.reason);
        assert_eq!(assessment.replica_owners.len(), 2);
        assert!(assessment.hazards.is_empty());
        assert!(
            assessment.warnings.iter().any(|w| w.contains("shares it with handover-to-hpa")),
            "{:?}",
            assessment.warnings
        );
    }

    #[test]
    fn no_autoscaler_is_missing() {
        let assessment = analyze_with(&deployment("hpa-rescaled"), &[]);
        assert_eq!(assessment.verdict, Verdict::AutoscalerMissing);
        assert!(assessment.next.contains("kubectl autoscale"));
    }

    #[test]
    fn no_autoscaler_beside_a_deploy_tool_points_to_preflight() {
        let assessment = analyze_with(&deployment("flux-real-owns-replicas"), &[]);
        assert_eq!(assessment.verdict, Verdict::AutoscalerMissing);
        assert!(
            assessment
                .next
                .ends_with(&format!("kubectl hpa-migrate preflight -n {} -f MANIFESTS", assessment.namespace)),
            "{}",
            assessment.next
        );
    }

    #[test]
    fn an_hpa_in_another_namespace_does_not_count() {
        let workload = deployment("hpa-rescaled");
        let assessment = analyze_with(&workload, &[hpa("hpa-min3-rescaled", "elsewhere", "web")]);
        assert_eq!(assessment.verdict, Verdict::AutoscalerMissing);
    }

    #[test]
    fn two_hpas_are_ambiguous() {
        let workload = deployment("hpa-rescaled");
        let mut second = rescaled_hpa_for(&workload);
        second.state.name = "web-2".into();
        let assessment = analyze_with(&workload, &[rescaled_hpa_for(&workload), second]);
        assert_eq!(assessment.verdict, Verdict::AmbiguousAutoscalers);
        assert_eq!(assessment.autoscalers.len(), 2);
    }

    #[test]
    fn an_hpa_without_status_is_not_ready() {
        let workload = deployment("hpa-rescaled");
        let fresh = hpa("hpa-min3", workload.namespace(), workload.name());
        let assessment = analyze_with(&workload, &[fresh]);
        assert_eq!(assessment.verdict, Verdict::AutoscalerNotReady);
        assert!(assessment.reason.contains("no status yet"));
    }

    #[test]
    fn able_to_scale_false_blocks() {
        // Captured from the real controller while its target did not exist yet.
        let workload = deployment("hpa-rescaled");
        let broken = hpa("hpa-target-missing", workload.namespace(), workload.name());
        let assessment = analyze_with(&workload, &[broken]);
        assert_eq!(assessment.verdict, Verdict::AutoscalerNotReady);
        assert!(assessment.reason.contains("AbleToScale=False (FailedGetScale)"));
    }

    #[test]
    fn a_keda_scaled_object_and_its_hpa_are_one_autoscaler() {
        let workload = deployment("hpa-rescaled");
        let namespace = workload.namespace();
        let scaled_object = serde_json::json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "web", "namespace": namespace, "uid": "so-uid"},
            "spec": {"scaleTargetRef": {"name": "web"}, "minReplicaCount": 3},
            "status": {"hpaName": "keda-hpa-web", "conditions": [{"type": "Ready", "status": "True"}]}
        });
        let mut keda_hpa = rescaled_hpa_for(&workload);
        keda_hpa.state.name = "keda-hpa-web".into();
        keda_hpa.scaled_object_owner = Some("web".into());
        let scaled_objects = [ScaledObject::from_value(&scaled_object)];
        let cluster =
            Cluster { hpas: std::slice::from_ref(&keda_hpa), scaled_objects: &scaled_objects, ..Cluster::default() };
        let assessment = analyze(&workload, &cluster);
        assert_eq!(assessment.verdict, Verdict::Safe, "{}", assessment.reason);
        assert_eq!(assessment.autoscalers.len(), 1);
        assert_eq!(assessment.autoscalers[0].kind, AutoscalerKind::ScaledObject);
        assert_eq!(assessment.autoscalers[0].hpa.as_ref().unwrap().name, "keda-hpa-web");

        let mut paused = scaled_object;
        paused["metadata"]["annotations"] = serde_json::json!({"autoscaling.keda.sh/paused": "true"});
        let scaled_objects = [ScaledObject::from_value(&paused)];
        let cluster =
            Cluster { hpas: std::slice::from_ref(&keda_hpa), scaled_objects: &scaled_objects, ..Cluster::default() };
        assert_eq!(analyze(&workload, &cluster).verdict, Verdict::AutoscalerNotReady);
    }
}
