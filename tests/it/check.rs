//! `check` on the real control plane: every verdict produced by a real sequence of operations.

use serde_json::{Value, json};

use crate::common::*;

// check's verdicts need a deploy tool's owner of replicas, and a forced server-side apply as
// `kustomize-controller` is exactly the entry Flux leaves (tests/fixtures/flux-real-owns-replicas
// is the real controller's): classifying it is what is tested here. Flux's own behaviour, and
// check on objects the real controller applies, are in flux.rs.

fn workload<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the report: {report:#}"))
}

fn methods(w: &Value) -> Vec<String> {
    let mut found: Vec<String> =
        w["hazards"].as_array().unwrap().iter().map(|h| h["method"].as_str().unwrap().to_string()).collect();
    found.sort();
    found
}

#[tokio::test]
async fn flux_owner_with_an_idle_hpa_needs_a_strip_and_viewer_can_see_it() {
    let ns = TestNamespace::new("check-flux").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(5))).await;
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 2, 10)).await;

    for kubeconfig in [admin_kubeconfig(), viewer_kubeconfig()] {
        let (report, code) = plugin_json(&ns, &kubeconfig, &["check"]);
        assert_eq!(code, 1, "action needed: {report:#}");
        let web = workload(&report, "web");
        assert_eq!(web["verdict"], "strip-needed");
        assert_eq!(web["replicas"]["spec"], 5);
        assert_eq!(web["replicaOwners"][0]["manager"], "kustomize-controller");
        assert_eq!(web["replicaOwners"][0]["mechanism"], "flux-kustomize");
        assert_eq!(methods(web), vec!["managed-fields"]);
        assert_eq!(web["next"], format!("kubectl hpa-migrate strip -n {} deployment/web --pause-flux", ns.name));
        assert_eq!(web["autoscalers"][0]["kind"], "HorizontalPodAutoscaler");
        assert!(web["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("no usable metrics")));
    }
}

#[tokio::test]
async fn an_hpa_that_rescaled_owns_replicas_and_is_safe() {
    let ns = TestNamespace::new("check-rescaled").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(1))).await;
    rescaling_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 3, 6), "web", 3).await;

    let (report, code) = plugin_json(&ns, &admin_kubeconfig(), &["check", "deploy/web"]);
    assert_eq!(code, 0, "{report:#}");
    let web = workload(&report, "web");
    assert_eq!(web["verdict"], "safe");
    assert_eq!(
        web["replicaOwners"],
        json!([{
            "manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
            "apiVersion": "apps/v1", "mechanism": "autoscaler"
        }])
    );
    assert!(web["autoscalers"][0]["hpa"]["lastScaleTime"].is_string());
}

#[tokio::test]
async fn client_side_apply_needs_the_annotation_and_the_entry_stripped() {
    let ns = TestNamespace::new("check-csa").await;
    let manifest = serde_json::to_string(&deployment_manifest("web", Some(4))).unwrap();
    assert_success(&ns.kubectl(&["apply", "-f", "-"], Some(&manifest)), "kubectl apply");
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 2, 8)).await;

    let (report, code) = plugin_json(&ns, &admin_kubeconfig(), &["check", "deployment", "web"]);
    assert_eq!(code, 1);
    let web = workload(&report, "web");
    assert_eq!(web["verdict"], "strip-needed");
    assert_eq!(methods(web), vec!["last-applied", "managed-fields"]);
    assert_eq!(web["deploy"]["lastAppliedReplicas"], 4);
}

/// The real HPA controller ignores the version and the case of the target's kind; `check`
/// must match the same way or it would call a working HPA missing.
#[tokio::test]
async fn an_hpa_with_an_old_version_and_lowercase_kind_still_targets_the_deployment() {
    let ns = TestNamespace::new("check-forgiving").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(1))).await;
    let mut hpa = hpa_manifest("web", "Deployment", "web", 2, 6);
    hpa["spec"]["scaleTargetRef"] = json!({"apiVersion": "apps/v1beta2", "kind": "deployment", "name": "web"});
    rescaling_hpa(&ns, &hpa, "web", 2).await;

    let (report, code) = plugin_json(&ns, &admin_kubeconfig(), &["check"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(workload(&report, "web")["verdict"], "safe");
    assert_eq!(report["warnings"], json!([]));
}

/// An HPA whose target does not exist: the real controller reports AbleToScale=False, and
/// `check` names it. The captured HPA feeds the unit test of the not-ready verdict.
#[tokio::test]
async fn an_hpa_without_its_workload_cannot_scale_and_is_reported() {
    let ns = TestNamespace::new("check-orphan").await;
    ns.apply("kubectl", &hpa_manifest("ghost", "Deployment", "ghost", 2, 6)).await;
    hpa_conditions(&ns, "ghost", |c| {
        c.iter().any(|c| c.0 == "AbleToScale" && c.1 == "False" && c.2 == "FailedGetScale")
    })
    .await;
    let hpa = kube::Api::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>::namespaced(
        ns.client.clone(),
        &ns.name,
    )
    .get("ghost")
    .await
    .unwrap();
    capture_fixture("hpa-target-missing", &serde_json::to_value(hpa).unwrap());

    let (report, code) = plugin_json(&ns, &admin_kubeconfig(), &["check"]);
    assert_eq!(code, 0, "an orphaned autoscaler is a warning; no workload needs action");
    assert_eq!(
        report["warnings"],
        json!([format!(
            "hpa/ghost in {} targets Deployment/ghost, which does not exist (AbleToScale=False: FailedGetScale)",
            ns.name
        )])
    );
}

/// Any resource with a /scale subresource, resolved through discovery. An HPA over a target
/// whose scale has no selector cannot act (InvalidSelector) until the selector is there.
#[tokio::test]
async fn a_custom_scale_resource_is_resolved_through_discovery() {
    install_crd("tests/cluster/rollout-crd.yaml", "rollouts.argoproj.io").await;
    let ns = TestNamespace::new("check-rollout").await;
    let rollout = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}
    });
    // Deployed by the real Argo CD (server-side), as Rollouts are.
    let _app = crate::argocd::ArgoApp::synced_server_side(&ns, &[rollout]).await;
    let mut hpa = hpa_manifest("web", "Rollout", "web", 2, 6);
    hpa["spec"]["scaleTargetRef"]["apiVersion"] = json!("argoproj.io/v1alpha1");
    ns.apply("kubectl", &hpa).await;
    hpa_conditions(&ns, "web", |c| c.iter().any(|c| c.2 == "InvalidSelector")).await;

    let (report, code) = plugin_json(&ns, &viewer_kubeconfig(), &["check", "rollouts.argoproj.io/web"]);
    assert_eq!(code, 1);
    let web = workload(&report, "web");
    assert_eq!((web["kind"].as_str(), web["apiVersion"].as_str()), (Some("Rollout"), Some("argoproj.io/v1alpha1")));
    assert_eq!(web["verdict"], "autoscaler-not-ready");
    assert!(web["reason"].as_str().unwrap().contains("InvalidSelector"), "{}", web["reason"]);

    let status = json!({"status": {"replicas": 3, "selector": "app=web"}}).to_string();
    let patched = ns.kubectl(&["patch", "rollout/web", "--subresource=status", "--type=merge", "-p", &status], None);
    assert_success(&patched, "setting the Rollout's selector");
    hpa_conditions(&ns, "web", |c| c.iter().any(|c| c.2.starts_with("FailedGet"))).await;
    let (report, code) = plugin_json(&ns, &admin_kubeconfig(), &["check"]);
    assert_eq!(code, 1);
    let web = workload(&report, "web");
    assert_eq!(web["verdict"], "strip-needed", "{web:#}");
    assert_eq!(web["replicaOwners"][0]["mechanism"], "argo-cd");
    assert_eq!(web["next"], format!("kubectl hpa-migrate strip -n {} rollouts.argoproj.io/web", ns.name));
}

#[tokio::test]
async fn two_hpas_over_one_deployment_are_ambiguous() {
    let ns = TestNamespace::new("check-ambiguous").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(3))).await;
    ns.apply("kubectl", &hpa_manifest("web", "Deployment", "web", 2, 6)).await;
    ns.apply("kubectl", &hpa_manifest("web-too", "Deployment", "web", 2, 6)).await;
    let conditions =
        hpa_conditions(&ns, "web", |c| c.iter().any(|c| c.0 == "ScalingActive" && c.2 == "AmbiguousSelector")).await;
    assert!(conditions.iter().any(|c| c.1 == "False"), "the real controller flags both: {conditions:?}");

    let (report, code) = plugin_json(&ns, &admin_kubeconfig(), &["check"]);
    assert_eq!(code, 1);
    let web = workload(&report, "web");
    assert_eq!(web["verdict"], "ambiguous-autoscalers");
    assert_eq!(web["autoscalers"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_statefulset_owned_by_flux_needs_a_strip() {
    let ns = TestNamespace::new("check-sts").await;
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "ingester"},
        "spec": {
            "replicas": 3, "serviceName": "ingester",
            "selector": {"matchLabels": {"app": "ingester"}},
            "template": {"metadata": {"labels": {"app": "ingester"}},
                         "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}
        }
    });
    ns.apply("kustomize-controller", &sts).await;
    judged_hpa(&ns, &hpa_manifest("ingester", "StatefulSet", "ingester", 3, 6)).await;

    let (report, code) = plugin_json(&ns, &viewer_kubeconfig(), &["check", "sts/ingester"]);
    assert_eq!(code, 1);
    let ingester = workload(&report, "ingester");
    assert_eq!(ingester["kind"], "StatefulSet");
    assert_eq!(ingester["verdict"], "strip-needed");
    assert_eq!(ingester["next"], format!("kubectl hpa-migrate strip -n {} statefulset/ingester --pause-flux", ns.name));
}

#[tokio::test]
async fn workloads_without_an_autoscaler_show_up_with_all_workloads() {
    let ns = TestNamespace::new("check-missing").await;
    ns.apply("kustomize-controller", &deployment_manifest("lonely", Some(2))).await;

    let (report, code) = plugin_json(&ns, &admin_kubeconfig(), &["check"]);
    assert_eq!((code, report["workloads"].as_array().unwrap().len()), (0, 0), "nothing is targeted");

    let (report, code) = plugin_json(&ns, &admin_kubeconfig(), &["check", "--all-workloads"]);
    assert_eq!(code, 1);
    let lonely = workload(&report, "lonely");
    assert_eq!(lonely["verdict"], "autoscaler-missing");
    assert_eq!(
        lonely["next"],
        format!(
            "add the autoscaler to the change that removes replicas, and check that change before deploying it: \
             kubectl hpa-migrate preflight -n {} -f MANIFESTS",
            ns.name
        )
    );
}

#[tokio::test]
async fn bad_input_is_one_line_with_a_distinct_exit_code() {
    let ns = TestNamespace::new("check-errors").await;
    let admin = admin_kubeconfig();
    let cases: [(&[&str], i32, &str); 5] = [
        (&["check", "frobnicators/x"], 2, "does not know the resource type \"frobnicators\""),
        (&["check", "configmap/x"], 2, "has no /scale subresource"),
        (&["check", "deploy/missing"], 4, "\"missing\" not found"),
        (&["check", "deployment"], 2, "names a type but no workload"),
        (&["check", "-A", "deploy/web"], 2, "cannot be named across all namespaces"),
    ];
    for (args, code, message) in cases {
        let output = ns.plugin(&admin, args);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {}", stderr(&output));
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{args:?} should fail on one line: {err}");
        assert!(err.starts_with("error: ") && err.contains(message), "{args:?}: {err}");
        assert!(stdout(&output).is_empty());
    }

    let unreachable = std::env::temp_dir().join(format!("{}-unreachable.kubeconfig", ns.name));
    let text = std::fs::read_to_string(&admin).unwrap();
    let server = text.lines().find(|l| l.trim_start().starts_with("server:")).unwrap().trim().to_string();
    std::fs::write(&unreachable, text.replace(&server, "server: https://127.0.0.1:1")).unwrap();
    let output = ns.plugin(&unreachable, &["check"]);
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    assert!(stderr(&output).contains("cannot reach the API server"), "{}", stderr(&output));
}

#[tokio::test]
async fn text_output_is_a_plain_table_without_a_terminal() {
    let ns = TestNamespace::new("check-text").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(5))).await;
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 2, 10)).await;
    let output = ns.plugin(&admin_kubeconfig(), &["check"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.starts_with(" NAMESPACE"), "{text}");
    assert!(text.contains("strip-needed"));
    assert!(!text.contains('\u{1b}'), "no escape codes off a terminal");
}
