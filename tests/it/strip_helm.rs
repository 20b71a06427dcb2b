//! `strip` on Helm releases, with the real Helm 3 and Helm 4 CLIs: without strip, an upgrade of
//! a chart that no longer sets replicas drops the workload to 1; with strip first, it keeps its
//! count.

use serde_json::{Value, json};

use crate::common::*;
use crate::tools::*;

fn strip(ns: &TestNamespace, args: &[&str]) -> (Value, i32) {
    let (report, code, stderr) = strip_as(ns, &admin_kubeconfig(), args);
    assert!(!report.is_null(), "strip {args:?} printed no JSON (exit {code}):\n{stderr}");
    (report, code)
}

async fn install_with_hpa(ns: &TestNamespace, helm: &Helm, release: &str) {
    helm.ok(&["install", release, &chart("web")]);
    judged_hpa(ns, &hpa_manifest(release, "Deployment", release, 2, 10)).await;
}

/// Installs `control` and `web` with HPAs, and shows the failure on `control`: an upgrade of
/// the chart without replicas drops it to 1.
async fn control_drops_without_strip(ns: &TestNamespace, helm: &Helm) {
    for release in ["control", "web"] {
        install_with_hpa(ns, helm, release).await;
    }
    let before = ns.resource_version("control").await;
    upgrade_without_replicas(helm, "control");
    ns.assert_dropped_since("control", &before).await;
}

/// Upgrades `release` without replicas and checks that no stored version went below 5.
async fn upgrade_keeps_five(ns: &TestNamespace, helm: &Helm, release: &str) {
    let before = ns.resource_version(release).await;
    upgrade_without_replicas(helm, release);
    ns.assert_kept_since(release, &before, 5).await;
}

fn upgrade_without_replicas(helm: &Helm, release: &str) {
    helm.ok(&["upgrade", release, &chart("web"), "--set", "replicas=null"]);
}

/// Everything in the release JSON but the manifest, which loses exactly one line.
fn assert_only_replicas_left_the_record(before: &Value, after: &Value) {
    let mut expected = before.clone();
    let manifest = before["manifest"].as_str().unwrap().replacen("  replicas: 5\n", "", 1);
    expected["manifest"] = json!(manifest);
    assert_eq!(after, &expected);
}

async fn helm3_story(driver: &'static str) {
    let ns = TestNamespace::new(&format!("strip-helm3-{driver}")).await;
    let helm = Helm::v3(&ns).with_driver(driver);
    control_drops_without_strip(&ns, &helm).await;

    let (check, _) = plugin_json(&ns, &admin_kubeconfig(), &["check", "deploy/web"]);
    let web = &check["workloads"][0];
    assert_eq!(web["verdict"], "strip-needed", "{web:#}");
    assert_eq!(web["deploy"]["helm"]["driver"], if driver == "secret" { "secret" } else { "configmap" });
    assert_eq!(web["deploy"]["helm"]["manifestReplicas"], 5);

    let record_before = decode_release_record(&release_record(&ns, driver, "web", 1));
    let (report, code) = strip(&ns, &["deploy/web"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["results"][0]["methods"], json!(["managed-fields", "helm-release"]));
    let record_after = decode_release_record(&release_record(&ns, driver, "web", 1));
    assert_only_replicas_left_the_record(&record_before, &record_after);

    let (check, code) = plugin_json(&ns, &admin_kubeconfig(), &["check", "deploy/web"]);
    assert_eq!((code, check["workloads"][0]["verdict"].as_str()), (0, Some("safe")), "{check:#}");
    upgrade_keeps_five(&ns, &helm, "web").await;
}

#[tokio::test]
async fn helm3_release_strip_keeps_the_workload_at_its_count() {
    helm3_story("secret").await;
}

#[tokio::test]
async fn helm3_release_strip_works_with_the_configmap_driver() {
    helm3_story("configmap").await;
}

#[tokio::test]
async fn helm3_release_strip_can_be_dry_run_and_restored() {
    let ns = TestNamespace::new("strip-helm3-restore").await;
    let helm = Helm::v3(&ns);
    install_with_hpa(&ns, &helm, "web").await;
    let original = release_record(&ns, "secret", "web", 1);

    let (report, code) = strip(&ns, &["deploy/web", "--method", "helm-release", "--dry-run"]);
    assert_eq!((code, report["results"][0]["outcome"].as_str()), (0, Some("dry-run")), "{report:#}");
    let after_dry_run = release_record(&ns, "secret", "web", 1);
    assert_eq!(after_dry_run["metadata"]["resourceVersion"], original["metadata"]["resourceVersion"]);

    let (report, code) = strip(&ns, &["deploy/web", "--method", "helm-release"]);
    assert_eq!(code, 0, "{report:#}");
    let backup = report["results"][0]["backups"][0].as_str().unwrap().to_string();
    assert_ne!(release_record(&ns, "secret", "web", 1)["data"], original["data"]);

    assert_success(&ns.plugin(&admin_kubeconfig(), &["restore", &backup, "--yes"]), "restore");
    assert_eq!(release_record(&ns, "secret", "web", 1)["data"], original["data"], "the exact stored bytes are back");
}

/// Helm 4 applies server-side (manager `helm`, Apply): stripping its managedFields entry
/// prevents the drop, and the stored release manifest plays no part.
#[tokio::test]
async fn helm4_managed_fields_strip_keeps_the_workload_at_its_count() {
    let ns = TestNamespace::new("strip-helm4").await;
    let helm = Helm::v4(&ns);
    control_drops_without_strip(&ns, &helm).await;

    let (check, _) = plugin_json(&ns, &admin_kubeconfig(), &["check", "deploy/web"]);
    let web = &check["workloads"][0];
    assert_eq!(web["deploy"]["helm"]["applyMethod"], "ssa");
    assert_eq!(web["hazards"].as_array().unwrap().len(), 1, "only the Apply entry: {web:#}");

    let (report, code) = strip(&ns, &["deploy/web"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["results"][0]["methods"], json!(["managed-fields"]));
    upgrade_keeps_five(&ns, &helm, "web").await;
}
