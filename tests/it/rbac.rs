//! The RBAC roles in deploy/rbac/ are what the verbs need: the control plane's `viewer` holds
//! exactly reader.yaml and `stripper` exactly strip.yaml (bound by `cargo xtask cluster up`),
//! and each runs its verbs end to end. A request a verb sends that its role does not grant
//! fails here.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::*;
use crate::tools::*;

// The workload to strip is made by a forced server-side apply as `kustomize-controller`, not the
// real Flux: these tests are about the roles, and only need an Apply entry named
// kustomize-controller; Flux's takeover is tested with the real controller in flux.rs.

/// Every (apiGroup, resource, verb) a ClusterRole in the repo grants.
fn grants(path: &str) -> BTreeSet<(String, String, String)> {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let role: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"));
    assert_eq!(role["kind"], "ClusterRole", "{path}");
    let strings =
        |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect() };
    let mut found = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    found.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    found
}

#[test]
fn the_strip_role_is_the_reader_role_plus_patch_on_what_strip_changes() {
    let reader = grants("deploy/rbac/reader.yaml");
    let strip = grants("deploy/rbac/strip.yaml");
    let missing: Vec<_> = reader.difference(&strip).collect();
    assert!(missing.is_empty(), "strip runs check first; strip.yaml lacks {missing:?}");
    let extra: BTreeSet<(&str, &str, &str)> =
        strip.difference(&reader).map(|(g, r, v)| (g.as_str(), r.as_str(), v.as_str())).collect();
    let expected = BTreeSet::from([
        ("apps", "deployments", "patch"),
        ("apps", "statefulsets", "patch"),
        ("argoproj.io", "rollouts", "patch"),
        ("", "secrets", "patch"),
        ("", "configmaps", "patch"),
        // --pause-flux reads and suspends the HelmRelease of what helm-controller deploys.
        ("helm.toolkit.fluxcd.io", "helmreleases", "get"),
        ("helm.toolkit.fluxcd.io", "helmreleases", "patch"),
        // --pause turns the automated sync of an Argo CD Application off, resume puts it back.
        ("argoproj.io", "applications", "get"),
        ("argoproj.io", "applications", "patch"),
    ]);
    assert_eq!(extra, expected);
}

fn verdict(report: &Value) -> &str {
    report["workloads"][0]["verdict"].as_str().unwrap_or_default()
}

/// `kubectl auth can-i VERB RESOURCE` as the stripper, in the test's namespace.
fn stripper_can(ns: &TestNamespace, verb: &str, resource: &str) -> bool {
    let output = kubectl(&stripper_kubeconfig(), &["auth", "can-i", verb, resource, "-n", &ns.name], None);
    match stdout(&output).trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl auth can-i {verb} {resource}: {other} {}", stderr(&output)),
    }
}

#[tokio::test]
async fn the_stripper_strips_resumes_and_restores_and_the_viewer_only_checks() {
    let ns = TestNamespace::new("rbac-flux").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(5))).await;
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 2, 10)).await;
    let before = settled(&ns, "web").await;

    // The viewer sees what needs doing, and may change nothing, not even as a dry run.
    let (report, code) = plugin_json(&ns, &viewer_kubeconfig(), &["check", "deploy/web"]);
    assert_eq!((code, verdict(&report)), (1, "strip-needed"), "{report:#}");
    for dry_run in [true, false] {
        let args: &[&str] = if dry_run { &["deploy/web", "--dry-run"] } else { &["deploy/web"] };
        let (_, code, err) = strip_as(&ns, &viewer_kubeconfig(), args);
        assert_eq!(code, 5, "dry run {dry_run}: {err}");
        assert!(err.contains("forbidden: needs patch on deployments.apps"), "{err}");
    }
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&before));

    // The stripper runs the whole migration with nothing but strip.yaml.
    let stripper = stripper_kubeconfig();
    let (report, code) = plugin_json(&ns, &stripper, &["check", "deploy/web"]);
    assert_eq!((code, verdict(&report)), (1, "strip-needed"), "{report:#}");

    let (report, code, err) = strip_as(&ns, &stripper, &["deploy/web", "--dry-run"]);
    assert_eq!((code, report["results"][0]["outcome"].as_str()), (0, Some("dry-run")), "{report:#}\n{err}");
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&before));

    let (report, code, err) = strip_as(&ns, &stripper, &["deploy/web", "--pause-flux"]);
    assert_eq!((code, report["results"][0]["outcome"].as_str()), (0, Some("changed")), "{report:#}\n{err}");
    let backup = report["results"][0]["backups"][0].as_str().unwrap().to_string();
    let (report, code) = plugin_json(&ns, &stripper, &["check", "deploy/web"]);
    assert_eq!((code, verdict(&report)), (0, "safe"), "{report:#}");

    assert_success(&ns.plugin(&stripper, &["resume", "deploy/web"]), "resume as the stripper");
    assert_success(&ns.plugin(&stripper, &["restore", &backup, "--yes"]), "restore as the stripper");
    let restored = ns.deployment_value("web").await;
    assert_eq!(replica_managers(&restored), vec![("kustomize-controller".into(), "Apply".into(), None)]);

    // What the role grants beyond reading, asked of the server itself: patch, never more.
    assert!(stripper_can(&ns, "create", "selfsubjectaccessreviews.authorization.k8s.io"));
    for resource in ["deployments.apps", "statefulsets.apps", "secrets", "configmaps"] {
        assert!(stripper_can(&ns, "patch", resource), "patch {resource}");
        for verb in ["create", "update", "delete"] {
            assert!(!stripper_can(&ns, verb, resource), "{verb} {resource}");
        }
    }
    assert!(!stripper_can(&ns, "patch", "horizontalpodautoscalers.autoscaling"));
}

/// The helm-release method patches the release records: Secrets, or ConfigMaps with Helm's
/// configmap driver.
#[tokio::test]
async fn the_stripper_strips_helm3_release_records_of_both_drivers() {
    let ns = TestNamespace::new("rbac-helm").await;
    for driver in ["secret", "configmap"] {
        let release = format!("web-{driver}");
        Helm::v3(&ns).with_driver(driver).ok(&["install", &release, &chart("web")]);
        ns.apply("kubectl", &hpa_manifest(&release, "Deployment", &release, 2, 10)).await;
        hpa_conditions(&ns, &release, judged).await;

        let target = format!("deploy/{release}");
        let (report, code, err) = strip_as(&ns, &stripper_kubeconfig(), &[&target]);
        assert_eq!(code, 0, "{driver}: {report:#}\n{err}");
        assert_eq!(report["results"][0]["methods"], serde_json::json!(["managed-fields", "helm-release"]));
        let (report, code) = plugin_json(&ns, &stripper_kubeconfig(), &["check", &target]);
        assert_eq!((code, verdict(&report)), (0, "safe"), "{driver}: {report:#}");
    }
}
