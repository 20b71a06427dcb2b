//! The facts the tool is built on, pinned down on the real control plane (shared/domain.md).

use std::time::Duration;

use crate::common::*;

// These pin down the API server's server-side-apply rules themselves (a forced apply that stops
// sending a field it alone owns, a co-owner keeping it): any applier shows them, and the manager
// is named `kustomize-controller` so that the captured fixtures read like Flux's. What the real
// Flux controller does on top (takeover, drift check, pause, suspend, ignore) is in flux.rs.

/// Flux-style forced server-side apply: deleting `replicas` from the manifest resets it to 1.
#[tokio::test]
async fn ssa_apply_without_replicas_defaults_to_one() {
    let ns = TestNamespace::new("ssa-drop").await;
    let applied = ns.apply("kustomize-controller", &deployment_manifest("web", Some(5))).await;
    assert_eq!(spec_replicas(&applied), Some(5));
    assert_eq!(replica_managers(&applied), vec![("kustomize-controller".into(), "Apply".into(), None)]);
    capture_fixture("flux-ssa-owns-replicas", &applied);

    let reapplied = ns.apply("kustomize-controller", &deployment_manifest("web", None)).await;
    assert_eq!(spec_replicas(&reapplied), Some(1), "the API server defaults the removed field to 1");
    assert!(replica_managers(&reapplied).is_empty());
}

/// A second owner of `replicas` (the docs' handover manager) keeps the field when the first
/// applier drops it.
#[tokio::test]
async fn second_owner_keeps_replicas() {
    let ns = TestNamespace::new("ssa-shared").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(5))).await;
    let shared = ns.apply("handover-to-hpa", &replicas_only("apps/v1", "Deployment", "web", 5)).await;
    let mut owners = replica_managers(&shared);
    owners.sort();
    assert_eq!(
        owners,
        vec![("handover-to-hpa".into(), "Apply".into(), None), ("kustomize-controller".into(), "Apply".into(), None)]
    );
    capture_fixture("flux-and-handover-share-replicas", &shared);

    let reapplied = ns.apply("kustomize-controller", &deployment_manifest("web", None)).await;
    assert_eq!(spec_replicas(&reapplied), Some(5));
    assert_eq!(replica_managers(&reapplied), vec![("handover-to-hpa".into(), "Apply".into(), None)]);
    capture_fixture("handover-sole-owner", &reapplied);
}

/// The real HPA controller enforces minReplicas without metrics, and then owns replicas
/// through the scale subresource as kube-controller-manager.
#[tokio::test]
async fn hpa_controller_owns_replicas_after_rescale() {
    let ns = TestNamespace::new("hpa-owns").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(1))).await;
    let hpa = ns.apply("kubectl", &hpa_manifest("web", "Deployment", "web", 3, 6)).await;
    capture_fixture("hpa-min3", &hpa);

    let scaled = eventually(Duration::from_secs(60), "the HPA to scale web to 3", || async {
        let object = ns.deployment_value("web").await;
        (spec_replicas(&object) == Some(3)).then_some(object)
    })
    .await;
    assert_eq!(
        replica_managers(&scaled),
        vec![("kube-controller-manager".into(), "Update".into(), Some("scale".into()))],
        "the HPA's scale update takes replicas from the applier"
    );
    let entry =
        scaled["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["subresource"] == "scale").unwrap();
    assert_eq!(entry["apiVersion"], "apps/v1", "the scale entry carries the parent's apiVersion");
    capture_fixture("hpa-rescaled", &scaled);

    let hpa = kube::Api::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>::namespaced(
        ns.client.clone(),
        &ns.name,
    );
    let rescaled_hpa = eventually(Duration::from_secs(30), "the HPA to report it has no metrics", || async {
        let hpa = hpa.get("web").await.ok()?;
        let status = hpa.status.as_ref()?;
        status.last_scale_time.as_ref()?;
        let scaling_active = status.conditions.as_ref()?.iter().find(|c| c.type_ == "ScalingActive")?;
        // The local control plane has no metrics API: the HPA holds its bounds all the same.
        (scaling_active.status == "False").then(|| serde_json::to_value(&hpa).unwrap())
    })
    .await;
    capture_fixture("hpa-min3-rescaled", &rescaled_hpa);
}

/// Client-side `kubectl apply`: the three-way merge sends `replicas: null` and the server
/// defaults it to 1.
#[tokio::test]
async fn client_side_apply_without_replicas_defaults_to_one() {
    let ns = TestNamespace::new("csa-drop").await;
    let with = serde_json::to_string(&deployment_manifest("web", Some(5))).unwrap();
    assert_success(&ns.kubectl(&["apply", "-f", "-"], Some(&with)), "kubectl apply with replicas");
    let applied = ns.deployment_value("web").await;
    assert_eq!(spec_replicas(&applied), Some(5));
    let last_applied = applied["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("client-side apply records the last-applied annotation");
    assert!(last_applied.contains("\"replicas\":5"));
    assert_eq!(replica_managers(&applied), vec![("kubectl-client-side-apply".into(), "Update".into(), None)]);
    capture_fixture("kubectl-csa-owns-replicas", &applied);

    let without = serde_json::to_string(&deployment_manifest("web", None)).unwrap();
    assert_success(&ns.kubectl(&["apply", "-f", "-"], Some(&without)), "kubectl apply without replicas");
    assert_eq!(spec_replicas(&ns.deployment_value("web").await), Some(1));
}
