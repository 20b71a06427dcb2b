//! `strip` and `restore` on the real control plane: for each method, the full story (without
//! strip the deploy tool's next apply drops the workload to 1; with strip first it keeps its
//! count), the guards, dry run, RBAC and restore.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::gitops::FluxRepo;

// The Flux stories here run the real kustomize-controller (`FluxRepo`). The other tests only need
// some server-side applier that owns replicas to strip (the guards, RBAC, confirmation, the race):
// for those a forced apply as `kustomize-controller` is that owner, and the Flux controller's own
// behaviour plays no part.

/// Runs `strip ... -o json --yes` as the admin with a backup directory of the test's own.
fn strip(ns: &TestNamespace, args: &[&str]) -> (Value, i32, String) {
    let (report, code, stderr) = strip_as(ns, &admin_kubeconfig(), args);
    assert!(!report.is_null(), "strip {args:?} printed no JSON (exit {code}):\n{stderr}");
    (report, code, stderr)
}

fn outcome(report: &Value) -> &str {
    report["results"][0]["outcome"].as_str().unwrap_or_default()
}

async fn idle_hpa(ns: &TestNamespace, target: &str, min: i64) {
    judged_hpa(ns, &hpa_manifest(target, "Deployment", target, min, 10)).await;
}

fn managers_of(object: &Value) -> Vec<String> {
    replica_managers(object).into_iter().map(|(manager, _, _)| manager).collect()
}

#[tokio::test]
async fn managed_fields_strip_keeps_a_flux_workload_at_its_count() {
    let ns = TestNamespace::new("strip-flux").await;
    let git = |control: Option<i64>, web: Option<i64>| {
        vec![deployment_manifest("control", control), deployment_manifest("web", web)]
    };
    let repo = FluxRepo::new(&ns, "shop", &git(Some(5), Some(5))).await;
    for name in ["control", "web"] {
        idle_hpa(&ns, name, 2).await;
    }
    // Without strip: Flux's next apply without replicas drops the workload to 1.
    let since = ns.resource_version("control").await;
    repo.commit(&git(None, Some(5))).await;
    ns.assert_dropped_since("control", &since).await;

    let before = ns.deployment_value("web").await;
    let (report, code, err) = strip(&ns, &["deploy/web", "--pause-flux"]);
    assert_eq!(code, 0, "{report:#}\n{err}");
    assert_eq!(outcome(&report), "changed");
    assert_eq!(report["results"][0]["methods"], json!(["managed-fields"]));
    let backup = PathBuf::from(report["results"][0]["backups"][0].as_str().unwrap());
    assert!(backup.is_file(), "a backup is written before the change");

    let stripped = ns.deployment_value("web").await;
    assert!(managers_of(&stripped).is_empty(), "nobody owns replicas now: {:?}", replica_managers(&stripped));
    assert_eq!(stripped["spec"], before["spec"]);
    // The pause annotation bumps a Deployment's generation (annotations are copied onto its
    // ReplicaSets); the spec, and so the pods, stay as they are.
    assert_eq!(stripped["metadata"]["generation"], before["metadata"]["generation"].as_i64().unwrap() + 1);
    assert_eq!(stripped["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"], "disabled");
    let (check, code) = plugin_json(&ns, &admin_kubeconfig(), &["check", "deploy/web"]);
    assert_eq!((code, check["workloads"][0]["verdict"].as_str()), (0, Some("safe")), "{check:#}");

    let since = ns.resource_version("web").await;
    repo.commit(&git(None, None)).await;
    let (report, code, _) = strip(&ns, &["deploy/web"]);
    assert_eq!((code, outcome(&report)), (0, "nothing-to-do"), "{report:#}");

    let resumed = ns.plugin(&admin_kubeconfig(), &["resume", "deploy/web"]);
    assert_success(&resumed, "resume");
    repo.reconcile().await;
    ns.assert_kept_since("web", &since, 5).await;
    assert!(
        ns.deployment_value("web").await["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"].is_null()
    );
}

#[tokio::test]
async fn managed_fields_strip_covers_kubectl_server_side_apply() {
    let ns = TestNamespace::new("strip-ssa").await;
    let apply = |replicas: Option<i64>| {
        let manifest = serde_json::to_string(&deployment_manifest("web", replicas)).unwrap();
        assert_success(
            &ns.kubectl(&["apply", "--server-side", "-f", "-"], Some(&manifest)),
            "kubectl apply --server-side",
        );
    };
    apply(Some(4));
    idle_hpa(&ns, "web", 2).await;
    assert_eq!(managers_of(&ns.deployment_value("web").await), vec!["kubectl"]);

    let (report, code, err) = strip(&ns, &["deployment", "web"]);
    assert_eq!((code, outcome(&report)), (0, "changed"), "{report:#}\n{err}");
    apply(None);
    assert_eq!(spec_replicas(&ns.deployment_value("web").await), Some(4));
}

#[tokio::test]
async fn last_applied_strip_keeps_a_client_side_apply_workload_at_its_count() {
    let ns = TestNamespace::new("strip-csa").await;
    let apply = |name: &str, replicas: Option<i64>| {
        let manifest = serde_json::to_string(&deployment_manifest(name, replicas)).unwrap();
        assert_success(&ns.kubectl(&["apply", "-f", "-"], Some(&manifest)), "kubectl apply");
    };
    for name in ["control", "web"] {
        apply(name, Some(4));
        idle_hpa(&ns, name, 2).await;
    }
    let before = ns.resource_version("control").await;
    apply("control", None);
    ns.assert_dropped_since("control", &before).await;

    let (report, code, err) = strip(&ns, &["deploy/web"]);
    assert_eq!((code, outcome(&report)), (0, "changed"), "{report:#}\n{err}");
    assert_eq!(report["results"][0]["methods"], json!(["managed-fields", "last-applied"]));
    let stripped = ns.deployment_value("web").await;
    let annotation =
        stripped["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap();
    assert!(!annotation.contains("replicas"), "{annotation}");

    let before = ns.resource_version("web").await;
    apply("web", None);
    ns.assert_kept_since("web", &before, 4).await;
}

#[tokio::test]
async fn handover_adds_a_second_owner_that_keeps_replicas() {
    let ns = TestNamespace::new("strip-handover").await;
    let repo = FluxRepo::new(&ns, "shop", &[deployment_manifest("web", Some(6))]).await;
    idle_hpa(&ns, "web", 2).await;

    let (report, code, err) = strip(&ns, &["deploy/web", "--method", "handover"]);
    assert_eq!((code, outcome(&report)), (0, "changed"), "{report:#}\n{err}");
    let mut owners = managers_of(&ns.deployment_value("web").await);
    owners.sort();
    assert_eq!(owners, vec!["hpa-migrate-handover", "kustomize-controller"]);
    let (check, code) = plugin_json(&ns, &admin_kubeconfig(), &["check", "deploy/web"]);
    assert_eq!((code, check["workloads"][0]["verdict"].as_str()), (0, Some("safe")), "{check:#}");

    // No pause needed: the handover manager keeps replicas whatever Flux applies, and its name
    // is not one Flux takes over. Measured: Flux does not even apply this commit, since its dry
    // run differs from the live object only in managedFields (its drift check compares labels,
    // annotations and the object without them), so its claim stays until it next applies web for
    // another change; shared with the handover owner, that claim is no hazard.
    let since = ns.resource_version("web").await;
    repo.commit(&[deployment_manifest("web", None)]).await;
    ns.assert_kept_since("web", &since, 6).await;
    let mut owners = managers_of(&ns.deployment_value("web").await);
    owners.sort();
    assert_eq!(owners, vec!["hpa-migrate-handover", "kustomize-controller"]);
    let mut changed = deployment_manifest("web", None);
    changed["metadata"]["labels"] = json!({"rev": "3"});
    repo.commit(&[changed]).await;
    ns.assert_kept_since("web", &since, 6).await;
    assert_eq!(managers_of(&ns.deployment_value("web").await), vec!["hpa-migrate-handover"]);

    let output = ns.plugin(
        &admin_kubeconfig(),
        &["strip", "--yes", "deploy/web", "--method", "handover", "--field-manager", "kubectl-x"],
    );
    assert_eq!(output.status.code(), Some(2), "a kubectl-prefixed handover manager is refused: {}", stdout(&output));
}

#[tokio::test]
async fn dry_run_changes_nothing_and_restore_puts_everything_back() {
    let ns = TestNamespace::new("strip-restore").await;
    let manifest = serde_json::to_string(&deployment_manifest("web", Some(3))).unwrap();
    assert_success(&ns.kubectl(&["apply", "-f", "-"], Some(&manifest)), "kubectl apply");
    idle_hpa(&ns, "web", 2).await;
    let original = settled(&ns, "web").await;

    let (report, code, err) = strip(&ns, &["deploy/web", "--dry-run"]);
    assert_eq!((code, outcome(&report)), (0, "dry-run"), "{report:#}\n{err}");
    assert_eq!(report["results"][0]["backups"], json!([]), "a dry run writes no backup");
    let after_dry_run = ns.deployment_value("web").await;
    assert_eq!(after_dry_run["metadata"]["resourceVersion"], original["metadata"]["resourceVersion"]);

    let (report, code, _) = strip(&ns, &["deploy/web"]);
    assert_eq!((code, outcome(&report)), (0, "changed"));
    let backup = report["results"][0]["backups"][0].as_str().unwrap().to_string();
    let stripped = settled(&ns, "web").await;
    assert_ne!(stripped["metadata"]["managedFields"], original["metadata"]["managedFields"]);

    let restore_dry = ns.plugin(&admin_kubeconfig(), &["restore", &backup, "--dry-run"]);
    assert_success(&restore_dry, "restore --dry-run");
    assert_eq!(
        ns.deployment_value("web").await["metadata"]["resourceVersion"],
        stripped["metadata"]["resourceVersion"]
    );

    let restored = ns.plugin(&admin_kubeconfig(), &["restore", &backup, "--yes"]);
    assert_success(&restored, "restore");
    let now = ns.deployment_value("web").await;
    let key = "kubectl.kubernetes.io/last-applied-configuration";
    assert_eq!(now["metadata"]["annotations"][key], original["metadata"]["annotations"][key]);
    // The deployment controller's status entry is not ours: it moves whenever the controller
    // writes status (after the restore too, since the annotation change bumped the generation).
    let sorted = |v: &Value| {
        let mut entries: Vec<String> =
            v.as_array().unwrap().iter().filter(|e| e["subresource"] != "status").map(|e| e.to_string()).collect();
        entries.sort();
        entries
    };
    assert_eq!(
        sorted(&now["metadata"]["managedFields"]),
        sorted(&original["metadata"]["managedFields"]),
        "the exact original set"
    );
    assert_eq!(now["spec"], original["spec"]);
}

#[tokio::test]
async fn without_a_terminal_or_yes_nothing_changes() {
    let ns = TestNamespace::new("strip-noconfirm").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(3))).await;
    idle_hpa(&ns, "web", 2).await;
    let before = settled(&ns, "web").await;
    let output =
        ns.plugin(&admin_kubeconfig(), &["strip", "deploy/web", "--backup-dir", backup_dir(&ns).to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(8), "{}", stderr(&output));
    assert!(stderr(&output).contains("re-run with --yes"), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("managedFields entry kustomize-controller (Apply)"),
        "the diff is shown: {}",
        stdout(&output)
    );
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&before));
}

#[tokio::test]
async fn the_read_only_viewer_is_refused_and_nothing_changes() {
    let ns = TestNamespace::new("strip-viewer").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(3))).await;
    idle_hpa(&ns, "web", 2).await;
    let before = settled(&ns, "web").await;
    let output = ns.plugin(&viewer_kubeconfig(), &["strip", "--yes", "deploy/web"]);
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!("error: forbidden: needs patch on deployments.apps in namespace \"{}\"", ns.name)),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&before));
}

#[tokio::test]
async fn strip_refuses_while_no_autoscaler_is_in_charge() {
    let ns = TestNamespace::new("strip-refuse").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(3))).await;
    let (report, code, _) = strip(&ns, &["deploy/web"]);
    assert_eq!((code, outcome(&report)), (1, "refused"), "{report:#}");
    assert!(report["results"][0]["message"].as_str().unwrap().contains("autoscaler-missing"));
    assert_eq!(managers_of(&ns.deployment_value("web").await), vec!["kustomize-controller"]);
}

/// While strip runs again and again, another writer keeps applying with other managers, so
/// entries are re-sorted and the resourceVersion moves. No entry but the intended one may ever
/// change, and no field may be lost.
// A multi-threaded runtime: the writer task must keep writing while the test waits on the
// strip process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_make_strip_touch_the_wrong_entry() {
    const RUNS: usize = 100;
    let ns = TestNamespace::new("strip-race").await;
    let flux = deployment_manifest("web", Some(5));
    ns.apply("kustomize-controller", &flux).await;
    idle_hpa(&ns, "web", 2).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let client = ns.client.clone();
        let namespace = ns.name.clone();
        tokio::spawn(async move {
            let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::namespaced(client, &namespace);
            let mut writes = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for manager in ["writer-a", "writer-b", "writer-c"] {
                    let body = json!({
                        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
                        "annotations": {format!("{manager}/seq"): writes.to_string()}}
                    });
                    let params = kube::api::PatchParams::apply(manager);
                    api.patch("web", &params, &kube::api::Patch::Apply(&body)).await.expect("writer apply");
                    writes += 1;
                    // About 40 writes a second: far busier than any real object, and enough to
                    // land between a strip's read and its patch.
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
            writes
        })
    };

    let mut retried = 0;
    let mut conflicts = 0;
    for run in 0..RUNS {
        // Flux takes replicas back (same value: shared), so every run has something to strip.
        ns.apply("kustomize-controller", &flux).await;
        let (report, code, err) = strip(&ns, &["deploy/web"]);
        let result = &report["results"][0];
        match code {
            0 => assert_eq!(result["outcome"], "changed", "run {run}: {report:#}"),
            7 => conflicts += 1,
            _ => panic!("run {run}: exit {code}: {report:#}\n{err}"),
        }
        if result["attempts"].as_u64().unwrap_or(0) > 1 {
            retried += 1;
        }
        let object = ns.deployment_value("web").await;
        let entries = object["metadata"]["managedFields"].as_array().unwrap();
        let entry = |manager: &str| entries.iter().find(|e| e["manager"] == manager).cloned();
        if code == 0 {
            let flux_entry = entry("kustomize-controller").expect("the Flux entry keeps its other fields");
            assert!(flux_entry.pointer("/fieldsV1/f:spec/f:replicas").is_none(), "run {run}");
            assert!(flux_entry.pointer("/fieldsV1/f:spec/f:template").is_some(), "run {run}: Flux lost a field");
            assert!(flux_entry.pointer("/fieldsV1/f:spec/f:selector").is_some(), "run {run}: Flux lost a field");
        }
        for manager in ["writer-a", "writer-b", "writer-c"] {
            if let Some(e) = entry(manager) {
                let annotation = format!("f:{manager}/seq");
                assert_eq!(
                    e["fieldsV1"],
                    json!({"f:metadata": {"f:annotations": {annotation: {}}}}),
                    "run {run}: {manager}'s entry was modified"
                );
            }
        }
        assert_eq!(spec_replicas(&object), Some(5), "run {run}");
        assert_eq!(object["spec"]["template"], ns.deployment_value("web").await["spec"]["template"]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = tokio::time::timeout(Duration::from_secs(30), writer).await.unwrap().unwrap();
    eprintln!(
        "{RUNS} strips against {writes} concurrent writes: {retried} needed a retry, {conflicts} gave up cleanly"
    );
    assert!(writes > RUNS as u64, "the writer really ran concurrently ({writes} writes)");
    assert!(conflicts < RUNS / 2, "most runs get through ({conflicts} gave up)");
    assert!(retried + conflicts > 0, "the writer never raced a strip: the guard was not exercised");
}

/// After a strip, a deploy tool that still sends replicas takes them back; `check` knows there
/// was a strip (from its backup) and says what happened.
#[tokio::test]
async fn check_warns_when_the_deploy_tool_takes_replicas_back_after_a_strip() {
    let ns = TestNamespace::new("strip-reclaim").await;
    let repo = FluxRepo::new(&ns, "shop", &[deployment_manifest("web", Some(4))]).await;
    idle_hpa(&ns, "web", 2).await;
    // The default backup directory, under the test's own HOME. No --pause-flux: Flux's next
    // apply, with Git still setting replicas, takes them back. (Measured: a reconcile of the same
    // commit does not apply, as the dry run differs from the live object only in managedFields;
    // a commit that changes anything else in the object does.)
    let output = ns.plugin(&admin_kubeconfig(), &["strip", "--yes", "deploy/web"]);
    assert_success(&output, "strip");
    repo.reconcile().await;
    assert!(managers_of(&ns.deployment_value("web").await).is_empty(), "the same commit changes nothing");
    let mut changed = deployment_manifest("web", Some(4));
    changed["metadata"]["labels"] = json!({"rev": "2"});
    repo.commit(&[changed]).await;
    assert_eq!(managers_of(&ns.deployment_value("web").await), vec!["kustomize-controller"]);

    let (report, code) = plugin_json(&ns, &admin_kubeconfig(), &["check", "deploy/web"]);
    assert_eq!(code, 1);
    let warnings = report["workloads"][0]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().starts_with("kustomize-controller took replicas back after the strip of")),
        "{warnings:#?}"
    );
}
