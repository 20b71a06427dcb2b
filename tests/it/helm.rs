//! What Helm 3 and Helm 4 really do with `.spec.replicas`, pinned down with the real CLIs
//! (built from `tests/tools/`) and the local chart `tests/charts/web` (replicas 5 unless the
//! value is null).

use serde_json::Value;

use crate::common::*;
use crate::tools::*;

const RELEASE: &str = "web";

/// The `helm.sh/helm/vN` version `tests/tools/helmN/go.mod` pins.
fn pinned_version(major: u8) -> String {
    let go_mod = repo_root().join(format!("tests/tools/helm{major}/go.mod"));
    let text = std::fs::read_to_string(&go_mod).unwrap();
    let module = format!("helm.sh/helm/v{major} ");
    let line = text.lines().find_map(|l| l.trim().strip_prefix(&module)).expect("go.mod requires Helm");
    line.split_whitespace().next().unwrap().to_string()
}

/// Installs the chart (replicas 5) and returns the Deployment, checked to be at 5 with `helm`
/// as the only owner of replicas, through `operation` (Update for Helm 3, Apply for Helm 4).
async fn install(ns: &TestNamespace, helm: &Helm, operation: &str) -> Value {
    helm.ok(&["install", RELEASE, &chart("web")]);
    let installed = ns.deployment_value(RELEASE).await;
    assert_eq!(spec_replicas(&installed), Some(5));
    assert_eq!(replica_managers(&installed), vec![("helm".into(), operation.into(), None)]);
    installed
}

/// Upgrades to revision 2 with `replicas` unset in the values, as a chart does once an
/// autoscaler owns the count.
fn upgrade_without_replicas(helm: &Helm) {
    helm.ok(&["upgrade", RELEASE, &chart("web"), "--set", "replicas=null"]);
}

fn manifest(release: &Value) -> &str {
    release["manifest"].as_str().expect("the release JSON has a manifest")
}

/// Checks the record of revision `revision` by the facts the tool relies on: name, the Helm
/// labels, and a payload whose manifest sets replicas 5 (revision 1) or none (revision 2).
fn check_record(record: &Value, revision: u32, status: &str) -> Value {
    assert_eq!(record["metadata"]["name"], release_record_name(RELEASE, revision));
    let labels = &record["metadata"]["labels"];
    assert_eq!(labels["owner"], "helm");
    assert_eq!(labels["name"], RELEASE);
    assert_eq!(labels["status"], status);
    assert_eq!(labels["version"], revision.to_string());
    let release = decode_release_record(record);
    assert_eq!(release["name"], RELEASE);
    assert_eq!(release["version"], revision);
    if revision == 1 {
        let sets_five = manifest(&release).lines().any(|line| line.trim() == "replicas: 5");
        assert!(sets_five, "revision 1 renders replicas 5:\n{}", manifest(&release));
    } else {
        assert!(!manifest(&release).contains("replicas"), "the upgrade renders no replicas:\n{}", manifest(&release));
    }
    release
}

#[tokio::test]
async fn built_helm_reports_the_pinned_version() {
    let ns = TestNamespace::new("helm-version").await;
    for (major, helm) in [(3, Helm::v3(&ns)), (4, Helm::v4(&ns))] {
        let short = helm.ok(&["version", "--short"]);
        let version = short.trim().split('+').next().unwrap();
        assert_eq!(version, pinned_version(major), "`helm version --short` printed {short:?}");
    }
}

/// Helm 3: the Deployment is created by an Update as `helm`; the release Secret holds the
/// manifest with replicas 5; an upgrade whose manifest drops replicas resets the live object to 1.
#[tokio::test]
async fn helm3_upgrade_without_replicas_defaults_to_one() {
    let ns = TestNamespace::new("helm3-drop").await;
    let helm = Helm::v3(&ns);
    let installed = install(&ns, &helm, "Update").await;
    assert_eq!(installed["metadata"]["annotations"][hpa_migrate::core::helm::RELEASE_NAME_ANNOTATION], RELEASE);
    capture_fixture("helm3-deployment", &installed);

    let record = release_record(&ns, "secret", RELEASE, 1);
    assert_eq!(record["type"], "helm.sh/release.v1");
    check_record(&record, 1, "deployed");
    capture_fixture("helm3-release-secret", &record);

    upgrade_without_replicas(&helm);
    check_record(&release_record(&ns, "secret", RELEASE, 1), 1, "superseded");
    check_record(&release_record(&ns, "secret", RELEASE, 2), 2, "deployed");
    let upgraded = ns.deployment_value(RELEASE).await;
    assert_eq!(spec_replicas(&upgraded), Some(1), "Helm 3's three-way merge sends replicas: null");
    assert_eq!(replica_managers(&upgraded), vec![("helm".into(), "Update".into(), None)]);
}

/// Helm 3 with `HELM_DRIVER=configmap`: the same record, in a ConfigMap of the same name, and
/// the same drop.
#[tokio::test]
async fn helm3_configmap_driver_stores_the_same_record() {
    let ns = TestNamespace::new("helm3-configmap").await;
    let helm = Helm::v3(&ns).with_driver("configmap");
    install(&ns, &helm, "Update").await;
    let record = release_record(&ns, "configmap", RELEASE, 1);
    check_record(&record, 1, "deployed");
    capture_fixture("helm3-release-configmap", &record);
    let secrets = ns.kubectl(&["get", "secrets", "-l", "owner=helm", "-o", "name"], None);
    assert_success(&secrets, "listing Helm secrets");
    assert!(secrets.stdout.is_empty(), "the configmap driver writes no Secret");

    upgrade_without_replicas(&helm);
    check_record(&release_record(&ns, "configmap", RELEASE, 2), 2, "deployed");
    assert_eq!(spec_replicas(&ns.deployment_value(RELEASE).await), Some(1));
}

/// Helm 4 installs with server-side apply as `helm`, records the apply method in the release,
/// and an upgrade without replicas drops the field it alone owns.
#[tokio::test]
async fn helm4_installs_with_server_side_apply_and_drops_on_upgrade() {
    let ns = TestNamespace::new("helm4-ssa").await;
    let helm = Helm::v4(&ns);
    let installed = install(&ns, &helm, "Apply").await;
    capture_fixture("helm4-deployment", &installed);

    let record = release_record(&ns, "secret", RELEASE, 1);
    assert_eq!(record["type"], "helm.sh/release.v1", "Helm 4 keeps Helm 3's record type");
    let release = check_record(&record, 1, "deployed");
    assert_eq!(release["apply_method"], "ssa");
    capture_fixture("helm4-release-secret", &record);

    upgrade_without_replicas(&helm);
    let release = check_record(&release_record(&ns, "secret", RELEASE, 2), 2, "deployed");
    assert_eq!(release["apply_method"], "ssa", "the upgrade follows the release's apply method");
    let upgraded = ns.deployment_value(RELEASE).await;
    assert_eq!(spec_replicas(&upgraded), Some(1), "server-side apply removes the field helm alone owned");
    assert!(replica_managers(&upgraded).is_empty());
}

/// Helm 3 with a second owner of replicas: the handover manager's server-side apply does not
/// protect the field, because Helm 3's patch sets `replicas: null` outright.
#[tokio::test]
async fn helm3_drops_replicas_despite_a_second_owner() {
    let ns = TestNamespace::new("helm3-shared").await;
    let helm = Helm::v3(&ns);
    install(&ns, &helm, "Update").await;
    let shared = ns.apply("hpa-migrate-handover", &replicas_only("apps/v1", "Deployment", RELEASE, 5)).await;
    let mut owners = replica_managers(&shared);
    owners.sort();
    assert_eq!(
        owners,
        vec![("helm".into(), "Update".into(), None), ("hpa-migrate-handover".into(), "Apply".into(), None)]
    );

    upgrade_without_replicas(&helm);
    let upgraded = ns.deployment_value(RELEASE).await;
    assert_eq!(spec_replicas(&upgraded), Some(1), "managedFields do not protect replicas from Helm 3");
    // The update changed the value, so Helm took the field (now the defaulted 1) and the
    // handover manager, left with nothing, was deleted.
    assert_eq!(replica_managers(&upgraded), vec![("helm".into(), "Update".into(), None)]);
    let managers = upgraded["metadata"]["managedFields"].as_array().unwrap();
    assert!(managers.iter().all(|e| e["manager"] != "hpa-migrate-handover"), "{managers:#?}");
}

/// Helm 4 with a second owner of replicas: server-side apply keeps the field the handover
/// manager still owns, and Helm's entry lets go of it. The handover procedure works for Helm 4.
#[tokio::test]
async fn helm4_keeps_replicas_a_second_owner_holds() {
    let ns = TestNamespace::new("helm4-shared").await;
    let helm = Helm::v4(&ns);
    install(&ns, &helm, "Apply").await;
    ns.apply("hpa-migrate-handover", &replicas_only("apps/v1", "Deployment", RELEASE, 5)).await;

    upgrade_without_replicas(&helm);
    let upgraded = ns.deployment_value(RELEASE).await;
    assert_eq!(spec_replicas(&upgraded), Some(5));
    assert_eq!(replica_managers(&upgraded), vec![("hpa-migrate-handover".into(), "Apply".into(), None)]);
}

/// Helm 4 applies unforced: once a scale update owns replicas, an upgrade that still sets
/// them fails with a conflict (the revision is recorded as failed) and the count stays.
#[tokio::test]
async fn helm4_upgrade_conflicts_with_a_scale_owner() {
    let ns = TestNamespace::new("helm4-conflict").await;
    let helm = Helm::v4(&ns);
    install(&ns, &helm, "Apply").await;
    assert_success(&ns.kubectl(&["scale", "deployment", RELEASE, "--replicas=3"], None), "kubectl scale");
    assert_eq!(
        replica_managers(&ns.deployment_value(RELEASE).await),
        vec![("kubectl".into(), "Update".into(), Some("scale".into()))]
    );

    let output = helm.run(&["upgrade", RELEASE, &chart("web")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the upgrade should conflict; stderr: {stderr}");
    assert!(stderr.contains("conflict") && stderr.contains(".spec.replicas"), "stderr: {stderr}");
    assert_eq!(release_record(&ns, "secret", RELEASE, 2)["metadata"]["labels"]["status"], "failed");
    assert_eq!(spec_replicas(&ns.deployment_value(RELEASE).await), Some(3));
}
