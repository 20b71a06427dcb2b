//! `guard` on the real control plane: the API server itself refuses every deploy that would
//! drop a guarded workload below its floor (forced server-side apply, client-side apply, Helm 3,
//! Helm 4, `kubectl scale`, a real Flux reconcile), lets the HPA scale within its bounds, warns
//! instead with `--warn`, lets the same deploy through after a strip, and `guard off` leaves the
//! cluster as it was.
//!
//! The guard's policies are cluster-scoped and one test's `guard off` may delete a policy another
//! test is about to use, so every test that guards (here and the guided flow's) holds
//! [`ONE_AT_A_TIME`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::apiserver::FaultApiServer;
use crate::common::*;
use crate::gitops::FluxRepo;
use crate::tools::*;

// Deploys here are forced server-side applies as `kustomize-controller` (and the other real
// tools), not the real Flux, except in the Flux test: the guard judges the write, whoever sends
// it, so they only need an Apply entry named kustomize-controller; Flux's takeover is tested with
// the real controller in flux.rs, and its refused reconcile in
// `a_guarded_deployment_refuses_a_real_flux_reconcile_without_replicas`.

pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const GUARD_LABEL: &str = "hpa-migrate.io/guard";

/// The start of every refusal and warning the guard sends.
fn refusal(ns: &TestNamespace, target: &str) -> String {
    format!("hpa-migrate guard: {target} in namespace {}: this write sets replicas to", ns.name)
}

/// Server-side apply as `manager`, forced like Flux, returning the API server's answer.
pub(crate) async fn try_apply(ns: &TestNamespace, manager: &str, object: &Value) -> Result<Value, kube::Error> {
    let kind = object["kind"].as_str().unwrap();
    let gvk = kube::api::GroupVersionKind::gvk("apps", "v1", kind);
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()));
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &resource);
    let name = object["metadata"]["name"].as_str().unwrap();
    api.patch(name, &PatchParams::apply(manager).force(), &Patch::Apply(object))
        .await
        .map(|o| serde_json::to_value(o).unwrap())
}

pub(crate) fn guard(ns: &TestNamespace, args: &[&str]) -> std::process::Output {
    let mut all = vec!["guard"];
    all.extend_from_slice(args);
    ns.plugin(&admin_kubeconfig(), &all)
}

pub(crate) fn guard_ok(ns: &TestNamespace, args: &[&str]) -> String {
    let output = guard(ns, args);
    assert_success(&output, &format!("guard {}", args.join(" ")));
    stdout(&output)
}

/// The guard's policies and bindings (validating and mutating) in the cluster, by name.
pub(crate) fn policy_objects() -> Vec<String> {
    let output = kubectl(
        &admin_kubeconfig(),
        &[
            "get",
            "validatingadmissionpolicies,validatingadmissionpolicybindings,\
             mutatingadmissionpolicies,mutatingadmissionpolicybindings",
            "-l",
            "app.kubernetes.io/managed-by=kubectl-hpa-migrate",
            "-o",
            "name",
        ],
        None,
    );
    assert_success(&output, "listing the guard's policy objects");
    stdout(&output).lines().map(str::to_string).collect()
}

pub(crate) fn marked(object: &Value) -> bool {
    object["metadata"]["labels"].get(GUARD_LABEL).is_some()
}

pub(crate) fn statefulset(name: &str, replicas: Option<i64>) -> Value {
    let mut object = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}
        }
    });
    if let Some(replicas) = replicas {
        object["spec"]["replicas"] = json!(replicas);
    }
    object
}

pub(crate) fn manifest_file(ns: &TestNamespace, name: &str, object: &Value) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{}-{name}.json", ns.name));
    std::fs::write(&path, object.to_string()).unwrap();
    path
}

pub(crate) async fn wait_for_replicas(ns: &TestNamespace, name: &str, replicas: i64) {
    eventually(Duration::from_secs(60), &format!("{name} at {replicas} replicas"), || async {
        (spec_replicas(&ns.deployment_value(name).await) == Some(replicas)).then_some(())
    })
    .await;
}

/// `web` at 5 with replicas owned by a forced server-side apply as `kustomize-controller`, and an
/// HPA of minimum 3 that has judged it; returns it settled.
pub(crate) async fn web_owned_by_a_forced_apply(ns: &TestNamespace) -> Value {
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(5))).await;
    judged_hpa(ns, &hpa_manifest("web", "Deployment", "web", 3, 10)).await;
    settled(ns, "web").await
}

#[tokio::test]
async fn a_guarded_deployment_refuses_a_forced_apply_and_kubectl_scale_and_the_hpa_still_scales() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("guard-ssa").await;
    web_owned_by_a_forced_apply(&ns).await;

    let on = guard_ok(&ns, &["on", "deploy/web"]);
    assert!(on.contains("a server-side dry run setting 2 replicas was refused"), "{on}");
    let guarded = settled(&ns, "web").await;
    let since = ns.resource_version("web").await;

    // preflight's dry run goes through admission too: it predicts the refusal, not a drop.
    let next = manifest_file(&ns, "web-next", &deployment_manifest("web", None));
    let (report, code) = plugin_json(&ns, &admin_kubeconfig(), &["preflight", "-f", next.to_str().unwrap()]);
    let web = &report["workloads"][0];
    assert_eq!((code, web["outcome"].as_str(), web["predicted"].as_i64()), (0, Some("refused"), Some(5)), "{report:#}");
    assert!(web["cause"].as_str().unwrap().contains("hpa-migrate guard: "), "{report:#}");

    // Flux's forced apply of the manifest without replicas: refused, nothing changed.
    let error = try_apply(&ns, "kustomize-controller", &deployment_manifest("web", None)).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&refusal(&ns, "deployment/web")), "{message}");
    assert!(message.contains("1 (from 5), below its floor of 3 (hpa/web is in charge)"), "{message}");
    assert!(
        message.contains(&format!("kubectl hpa-migrate check -n {} deployment/web, then strip", ns.name)),
        "{message}"
    );
    assert_eq!(kube_code(&error), Some(403));
    ns.assert_kept_since("web", &since, 5).await;
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&guarded));

    // `kubectl scale` goes through /scale: refused as well.
    let scale = ns.kubectl(&["scale", "deploy/web", "--replicas=1"], None);
    assert!(!scale.status.success());
    assert!(stderr(&scale).contains(&refusal(&ns, "deployment/web")), "{}", stderr(&scale));
    ns.assert_kept_since("web", &since, 5).await;

    // Flux re-applying its manifest (with replicas, without the mark) leaves the mark alone.
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(5))).await;
    assert!(marked(&ns.deployment_value("web").await), "a forced apply as kustomize-controller kept the mark");

    // The HPA scales through /scale within its bounds: up to a raised minimum, down to a lowered
    // maximum that is still at or above the floor.
    ns.apply("kubectl", &hpa_manifest("web", "Deployment", "web", 7, 10)).await;
    wait_for_replicas(&ns, "web", 7).await;
    ns.apply("kubectl", &hpa_manifest("web", "Deployment", "web", 3, 4)).await;
    wait_for_replicas(&ns, "web", 4).await;
    let scaled = ns.deployment_value("web").await;
    assert!(
        replica_managers(&scaled).contains(&("kube-controller-manager".into(), "Update".into(), Some("scale".into()))),
        "the HPA wrote the scale: {:?}",
        replica_managers(&scaled)
    );

    // `check` shows the guard, in its report and its table.
    let (report, _) = plugin_json(&ns, &admin_kubeconfig(), &["check", "deploy/web"]);
    assert_eq!(report["workloads"][0]["guard"], json!({"mode": "deny", "floor": 3, "autoscaler": "hpa/web"}));
    let text = stdout(&ns.plugin(&admin_kubeconfig(), &["check", "deploy/web"]));
    assert!(text.contains("GUARD") && text.contains("deny >= 3"), "{text}");

    guard_ok(&ns, &["off", "deploy/web"]);
}

fn kube_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[tokio::test]
async fn a_guarded_deployment_refuses_client_side_apply_and_keeps_its_mark() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("guard-csa").await;
    let with = manifest_file(&ns, "with", &deployment_manifest("web", Some(5)));
    let without = manifest_file(&ns, "without", &deployment_manifest("web", None));
    assert_success(&ns.kubectl(&["apply", "-f", with.to_str().unwrap()], None), "kubectl apply");
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 2, 10)).await;
    settled(&ns, "web").await;
    guard_ok(&ns, &["on", "deploy/web"]);

    // Client-side apply of the manifest (no mark in it) leaves the mark alone.
    assert_success(&ns.kubectl(&["apply", "-f", with.to_str().unwrap()], None), "kubectl apply again");
    assert!(marked(&ns.deployment_value("web").await), "client-side apply kept the mark");
    let guarded = settled(&ns, "web").await;
    let since = ns.resource_version("web").await;

    let apply = ns.kubectl(&["apply", "-f", without.to_str().unwrap()], None);
    assert!(!apply.status.success(), "{}", stdout(&apply));
    assert!(stderr(&apply).contains(&refusal(&ns, "deployment/web")), "{}", stderr(&apply));
    ns.assert_kept_since("web", &since, 5).await;
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&guarded));
    guard_ok(&ns, &["off", "deploy/web"]);
}

/// The real kustomize-controller reconciling a commit without replicas on a guarded Deployment
/// it owns replicas on: its apply is refused, the Kustomization's Ready condition carries the
/// guard's message (its dry run is already refused), and no stored version of the Deployment
/// changed; nor does anything else of the commit (a ConfigMap): the controller dry-runs every
/// object before it applies any. (Without the guard the same commit drops it:
/// `flux::a_commit_without_replicas_while_flux_owns_them_drops_and_verify_says_so`.)
#[tokio::test]
async fn a_guarded_deployment_refuses_a_real_flux_reconcile_without_replicas() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("guard-flux").await;
    let settings =
        |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"v": v}});
    let setting = || stdout(&ns.kubectl(&["get", "configmap", "settings", "-o", "jsonpath={.data.v}"], None));
    let repo = FluxRepo::new(&ns, "shop", &[deployment_manifest("web", Some(5)), settings("1")]).await;
    let applied = repo.kustomization().await["status"]["lastAppliedRevision"].clone();
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 3, 10)).await;
    settled(&ns, "web").await;
    assert_eq!(
        replica_managers(&ns.deployment_value("web").await),
        vec![("kustomize-controller".into(), "Apply".into(), None)]
    );
    guard_ok(&ns, &["on", "deploy/web"]);
    let guarded = settled(&ns, "web").await;
    let since = ns.resource_version("web").await;

    let message = repo.commit_failing(&[deployment_manifest("web", None), settings("2")]).await;
    assert!(message.contains("ValidatingAdmissionPolicy 'hpa-migrate-guard-v1-deployments-deny'"), "{message}");
    assert!(message.contains(&refusal(&ns, "deployment/web")), "{message}");
    assert!(message.contains("1 (from 5), below its floor of 3 (hpa/web is in charge)"), "{message}");
    assert_eq!(repo.kustomization().await["status"]["lastAppliedRevision"], applied);
    ns.assert_kept_since("web", &since, 5).await;
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&guarded));
    assert_eq!(setting(), "1", "the rest of the refused commit is not applied either");

    // A commit with replicas applies again, and the controller's apply leaves the mark alone.
    repo.commit(&[deployment_manifest("web", Some(5)), settings("2")]).await;
    ns.assert_kept_since("web", &since, 5).await;
    assert_eq!(setting(), "2");
    assert!(marked(&ns.deployment_value("web").await), "the real controller's apply kept the mark");
    guard_ok(&ns, &["off", "deploy/web"]);
}

/// Helm reports the refusal and records the upgrade as a failed revision; the deployed revision
/// and the live object stay as they were.
async fn helm_upgrade_is_refused(helm: &Helm, ns: &TestNamespace) {
    helm.ok(&["install", "web", &chart("web")]);
    judged_hpa(ns, &hpa_manifest("web", "Deployment", "web", 2, 10)).await;
    settled(ns, "web").await;
    guard_ok(ns, &["on", "deploy/web"]);
    let guarded = settled(ns, "web").await;
    let since = ns.resource_version("web").await;

    let upgrade = helm.run(&["upgrade", "web", &chart("web"), "--set", "replicas=null"]);
    assert!(!upgrade.status.success(), "{}", stdout(&upgrade));
    let err = stderr(&upgrade);
    assert!(err.contains("UPGRADE FAILED") || err.contains("upgrade failed"), "{err}");
    assert!(err.contains(&refusal(ns, "deployment/web")), "{err}");
    ns.assert_kept_since("web", &since, 5).await;
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&guarded));

    let history: Value = serde_json::from_str(&helm.ok(&["history", "web", "-o", "json"])).unwrap();
    let statuses: Vec<(i64, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["revision"].as_i64().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, vec![(1, "deployed"), (2, "failed")], "{history:#}");

    // After strip, the same upgrade passes under the guard and replicas stay.
    let backups = std::env::temp_dir().join(format!("hpa-migrate-backups-{}", ns.name));
    let strip =
        ns.plugin(&admin_kubeconfig(), &["strip", "deploy/web", "--yes", "--backup-dir", backups.to_str().unwrap()]);
    assert_success(&strip, "strip under the guard");
    settled(ns, "web").await;
    let since = ns.resource_version("web").await;
    helm.ok(&["upgrade", "web", &chart("web"), "--set", "replicas=null"]);
    ns.assert_kept_since("web", &since, 5).await;
    guard_ok(ns, &["off", "deploy/web"]);
}

#[tokio::test]
async fn a_guarded_deployment_refuses_a_helm3_upgrade_without_replicas() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("guard-helm3").await;
    helm_upgrade_is_refused(&Helm::v3(&ns), &ns).await;
}

#[tokio::test]
async fn a_guarded_deployment_refuses_a_helm4_upgrade_without_replicas() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("guard-helm4").await;
    helm_upgrade_is_refused(&Helm::v4(&ns), &ns).await;
}

#[tokio::test]
async fn a_guarded_statefulset_refuses_a_forced_apply_and_kubectl_scale() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("guard-sts").await;
    ns.apply("kustomize-controller", &statefulset("db", Some(3))).await;
    judged_hpa(&ns, &hpa_manifest("db", "StatefulSet", "db", 2, 6)).await;
    guard_ok(&ns, &["on", "sts/db"]);

    let error = try_apply(&ns, "kustomize-controller", &statefulset("db", None)).await.unwrap_err();
    assert!(error.to_string().contains(&refusal(&ns, "statefulset/db")), "{error}");
    let scale = ns.kubectl(&["scale", "sts/db", "--replicas=1"], None);
    assert!(stderr(&scale).contains(&refusal(&ns, "statefulset/db")), "{}", stderr(&scale));
    let live = ns.kubectl(&["get", "sts/db", "-o", "jsonpath={.spec.replicas}"], None);
    assert_eq!(stdout(&live), "3");

    let status = guard_ok(&ns, &["status"]);
    assert!(status.contains("statefulset/db") && status.contains("hpa-migrate-guard-v1-statefulsets-deny"), "{status}");
    guard_ok(&ns, &["off", "sts/db"]);
}

#[tokio::test]
async fn warn_lets_the_drop_through_and_kubectl_prints_the_warning() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("guard-warn").await;
    web_owned_by_a_forced_apply(&ns).await;
    let on = guard_ok(&ns, &["on", "deploy/web", "--warn"]);
    assert!(on.contains("let through with the guard's warning"), "{on}");
    let since = ns.resource_version("web").await;

    let without = manifest_file(&ns, "without", &deployment_manifest("web", None));
    let apply = ns.kubectl(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=kustomize-controller",
            "-f",
            without.to_str().unwrap(),
        ],
        None,
    );
    assert_success(&apply, "the rehearsal's apply");
    let err = stderr(&apply);
    assert!(
        err.contains(
            "Warning: Validation failed for ValidatingAdmissionPolicy 'hpa-migrate-guard-v1-deployments-warn'"
        ),
        "{err}"
    );
    assert!(err.contains(&refusal(&ns, "deployment/web")), "{err}");
    ns.assert_dropped_since("web", &since).await;
    // The HPA brings it back to its minimum: a write up from below the floor passes.
    wait_for_replicas(&ns, "web", 3).await;
    guard_ok(&ns, &["off", "deploy/web"]);
}

#[tokio::test]
async fn after_strip_the_same_deploy_passes_under_the_guard_with_no_drop() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("guard-strip").await;
    web_owned_by_a_forced_apply(&ns).await;
    guard_ok(&ns, &["on", "deploy/web"]);
    assert!(try_apply(&ns, "kustomize-controller", &deployment_manifest("web", None)).await.is_err());

    let backups = std::env::temp_dir().join(format!("hpa-migrate-backups-{}", ns.name));
    let strip =
        ns.plugin(&admin_kubeconfig(), &["strip", "deploy/web", "--yes", "--backup-dir", backups.to_str().unwrap()]);
    assert_success(&strip, "strip under the guard");
    settled(&ns, "web").await;
    let since = ns.resource_version("web").await;
    try_apply(&ns, "kustomize-controller", &deployment_manifest("web", None))
        .await
        .expect("the deploy passes after strip");
    ns.assert_kept_since("web", &since, 5).await;
    guard_ok(&ns, &["off", "deploy/web"]);
}

#[tokio::test]
async fn guard_off_leaves_the_cluster_as_it_was() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("guard-off").await;
    let before = web_owned_by_a_forced_apply(&ns).await;
    // No other guard test runs now; a crashed run may have left a guard of a workload deleted
    // since (its namespace), which this removes.
    guard_ok(&ns, &["off", "--uninstall"]);
    assert_eq!(policy_objects(), Vec::<String>::new());

    guard_ok(&ns, &["on", "deploy/web"]);
    let on = ns.deployment_value("web").await;
    assert!(marked(&on));
    assert_eq!(on["metadata"]["annotations"]["hpa-migrate.io/guard-floor"], "3");
    let managers: Vec<&str> =
        on["metadata"]["managedFields"].as_array().unwrap().iter().map(|e| e["manager"].as_str().unwrap()).collect();
    assert!(managers.contains(&"hpa-migrate-guard"), "{managers:?}");
    assert_eq!(policy_objects().len(), 2, "one policy and its binding");

    let off = guard_ok(&ns, &["off", "deploy/web"]);
    assert!(off.contains(&format!("unguarded {}/deployment/web", ns.name)), "{off}");
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&before));
    assert_eq!(policy_objects(), Vec::<String>::new());
    // And the deploy it refused goes through again, dropping as it would without the guard.
    let since = ns.resource_version("web").await;
    try_apply(&ns, "kustomize-controller", &deployment_manifest("web", None)).await.expect("unguarded");
    ns.assert_dropped_since("web", &since).await;
}

#[tokio::test]
async fn bad_input_is_one_line_a_distinct_exit_code_and_changes_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("guard-bad").await;
    ns.apply("kustomize-controller", &deployment_manifest("lonely", Some(5))).await;
    let web = web_owned_by_a_forced_apply(&ns).await;
    let lonely = settled(&ns, "lonely").await;
    let policies = policy_objects();

    for (args, code, says) in [
        (&["on", "deploy/lonely"][..], 2, "no autoscaler is in charge (autoscaler-missing"),
        (&["on", "deploy/web", "deploy/lonely"], 2, "pass --floor N to guard it anyway"),
        (&["on", "deploy/nope"], 4, "deployment \"nope\" not found"),
        (&["on", "deploy/web", "--floor", "0"], 2, "0 is not in 1..=999999999"),
        (&["on", "deploy/web", "--floor", "6"], 2, "runs 5 replica(s), below the floor of 6"),
        (&["on"], 2, "name the workloads to guard"),
    ] {
        let output = guard(&ns, args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "guard {args:?}: {err}");
        assert!(err.contains(says), "guard {args:?}: {err}");
        if !args.contains(&"0") {
            assert_eq!(err.trim_end().lines().count(), 1, "guard {args:?}: one line: {err}");
        }
        assert!(stdout(&output).is_empty(), "guard {args:?}");
    }
    assert_eq!(user_state(&ns.deployment_value("lonely").await), user_state(&lonely));
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&web));
    assert_eq!(policy_objects(), policies);

    // With --floor, a workload no autoscaler targets can be guarded.
    guard_ok(&ns, &["on", "deploy/lonely", "--floor", "4"]);
    let error = try_apply(&ns, "kustomize-controller", &deployment_manifest("lonely", None)).await.unwrap_err();
    assert!(error.to_string().contains("below its floor of 4. A deploy"), "{error}");
    guard_ok(&ns, &["off", "deploy/lonely"]);
}

/// A cluster that does not serve ValidatingAdmissionPolicy: a kube-apiserver of the test's own on
/// the plane's etcd, once with both resources disabled by `--runtime-config` (what a cluster older
/// than 1.30 serves: admissionregistration.k8s.io/v1 without them), once with the whole group
/// version off (discovery answers 404). The admission plugins that read what is turned off are
/// off too (with them on, their informers never sync and the server never becomes ready).
/// `guard on` and `guard status` stop with one line and exit 4, and send no write.
#[tokio::test]
async fn without_the_admission_policy_api_guard_is_one_line_exit_4_and_changes_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("guard-no-vap").await;
    let before = web_owned_by_a_forced_apply(&ns).await;
    let policies = policy_objects();
    let without_resources: &[&str] = &[
        "--runtime-config=admissionregistration.k8s.io/v1/validatingadmissionpolicies=false,\
         admissionregistration.k8s.io/v1/validatingadmissionpolicybindings=false",
        "--disable-admission-plugins=ValidatingAdmissionPolicy",
    ];
    let without_version: &[&str] = &[
        "--runtime-config=admissionregistration.k8s.io/v1=false",
        "--disable-admission-plugins=ValidatingAdmissionPolicy,MutatingAdmissionPolicy,\
         ValidatingAdmissionWebhook,MutatingAdmissionWebhook",
    ];
    for (extra, webhooks_served) in [(without_resources, true), (without_version, false)] {
        let server = FaultApiServer::start_with(extra);
        let served = kubectl(&server.kubeconfig, &["api-resources", "--api-group=admissionregistration.k8s.io"], None);
        assert_success(&served, "discovery on the server without the policy API");
        let served = stdout(&served);
        assert!(!served.contains("validatingadmissionpolic"), "{extra:?}: {served}");
        assert_eq!(served.contains("validatingwebhookconfigurations"), webhooks_served, "{extra:?}: {served}");

        for args in [&["guard", "on", "deploy/web"][..], &["guard", "on", "deploy/web", "--warn"], &["guard", "status"]]
        {
            let output = ns.plugin(&server.kubeconfig, args);
            let err = stderr(&output);
            assert_eq!(output.status.code(), Some(4), "{extra:?} {args:?}: {err}");
            assert!(
                err.contains("this cluster does not serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy"),
                "{extra:?} {args:?}: {err}"
            );
            assert!(err.contains("nothing was changed"), "{extra:?} {args:?}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{extra:?} {args:?}: one line: {err}");
            assert!(stdout(&output).is_empty(), "{extra:?} {args:?}");
        }
        for verb in ["create", "update", "patch", "delete"] {
            assert_eq!(server.requests("kubectl-hpa-migrate", verb, ""), 0, "{extra:?}: guard sent a {verb}");
        }
    }
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&before));
    assert_eq!(policy_objects(), policies);
}

/// A cluster that serves the policy API but does not enforce it (the admission plugin off):
/// `guard on` writes the policy and the mark, sees its dry run pass, and after the activation
/// timeout rolls everything back and exits 9 with one line.
#[tokio::test]
async fn a_policy_the_api_server_does_not_enforce_is_rolled_back_and_exits_9() {
    an_unenforced_guard_is_rolled_back(
        "guard-no-plugin",
        "ValidatingAdmissionPolicy",
        &["guard", "on", "deploy/web"],
        "a dry run setting 2 replicas was let through",
    )
    .await;
}

/// `guard on ARGS` on a kube-apiserver of the test's own with the admission `plugin` off: it
/// exits 9 with one line saying its dry run (`answer`) was not answered by the guard, and leaves
/// the workload and the policy objects as they were, though it did write.
pub(crate) async fn an_unenforced_guard_is_rolled_back(prefix: &str, plugin: &str, args: &[&str], answer: &str) {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new(prefix).await;
    let before = web_owned_by_a_forced_apply(&ns).await;
    let policies = policy_objects();
    let server = FaultApiServer::start_with(&[&format!("--disable-admission-plugins={plugin}")]);

    let output = ns.plugin(&server.kubeconfig, args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(9), "{err}");
    assert!(
        err.contains(&format!("the guard did not become active for {}/deployment/web within 20 s", ns.name)),
        "{err}"
    );
    assert!(err.contains(&format!("({answer}); what guard on wrote was rolled back")), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    let created = format!("/{}ies", plugin.to_lowercase().trim_end_matches('y'));
    assert!(server.requests("kubectl-hpa-migrate", "create", &created) > 0, "it did write");
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&before));
    assert_eq!(policy_objects(), policies);
}

/// A kubeconfig for a ServiceAccount of the test's namespace, with a token from TokenRequest.
fn service_account_kubeconfig(ns: &TestNamespace, account: &str) -> PathBuf {
    assert_success(&ns.kubectl(&["create", "serviceaccount", account], None), "creating the ServiceAccount");
    let token = ns.kubectl(&["create", "token", account, "--duration=1h"], None);
    assert_success(&token, "requesting a token");
    let text = std::fs::read_to_string(admin_kubeconfig()).unwrap();
    let mut config: Value = serde_saphyr::from_str(&text).unwrap();
    config["users"][0]["user"] = json!({"token": stdout(&token).trim()});
    let path = std::env::temp_dir().join(format!("{}-{account}.kubeconfig", ns.name));
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    path
}

fn can_i(kubeconfig: &Path, ns: &TestNamespace, verb: &str, resource: &str) -> bool {
    let output = kubectl(kubeconfig, &["auth", "can-i", verb, resource, "-n", &ns.name], None);
    stdout(&output).trim() == "yes"
}

/// deploy/rbac/guard.yaml is what guard needs: a ServiceAccount bound to exactly that role
/// guards and unguards; the viewer (reader.yaml) is refused before anything is written.
#[tokio::test]
async fn the_guard_role_guards_and_the_viewer_is_refused() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("guard-rbac").await;
    let role = repo_root().join("deploy/rbac/guard.yaml");
    assert_success(
        &kubectl(&admin_kubeconfig(), &["apply", "-f", role.to_str().unwrap()], None),
        "installing guard.yaml",
    );
    let binding = format!("hpa-migrate-guard-{}", ns.name);
    let subject = format!("--serviceaccount={}:guardian", ns.name);
    assert_success(
        &kubectl(
            &admin_kubeconfig(),
            &["create", "clusterrolebinding", &binding, "--clusterrole=hpa-migrate-guard", &subject],
            None,
        ),
        "binding the role",
    );
    let guardian = service_account_kubeconfig(&ns, "guardian");
    let before = web_owned_by_a_forced_apply(&ns).await;
    let policies = policy_objects();

    let viewer = ns.plugin(&viewer_kubeconfig(), &["guard", "on", "deploy/web"]);
    assert_eq!(viewer.status.code(), Some(5), "{}", stderr(&viewer));
    assert!(stderr(&viewer).contains("grant the role in deploy/rbac/guard.yaml"), "{}", stderr(&viewer));
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&before));
    assert_eq!(policy_objects(), policies);

    let on = ns.plugin(&guardian, &["guard", "on", "deploy/web"]);
    assert_success(&on, "guard on as the guardian");
    assert!(try_apply(&ns, "kustomize-controller", &deployment_manifest("web", None)).await.is_err());
    assert_success(&ns.plugin(&guardian, &["guard", "status"]), "guard status as the guardian");
    assert_success(&ns.plugin(&guardian, &["guard", "off", "deploy/web"]), "guard off as the guardian");
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&before));
    assert!(policy_objects().is_empty(), "the last guard removed its policy: {:?}", policy_objects());

    // Beyond reading: patch on workloads, and the guard's policy objects; never more.
    assert!(can_i(&guardian, &ns, "patch", "deployments.apps"));
    for (verb, resource) in [
        ("create", "deployments.apps"),
        ("delete", "deployments.apps"),
        ("patch", "horizontalpodautoscalers.autoscaling"),
        ("patch", "validatingadmissionpolicies.admissionregistration.k8s.io"),
        ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("patch", "mutatingadmissionpolicies.admissionregistration.k8s.io"),
        ("update", "validatingadmissionpolicybindings.admissionregistration.k8s.io"),
    ] {
        assert!(!can_i(&guardian, &ns, verb, resource), "{verb} {resource}");
    }
    let _ = kubectl(&admin_kubeconfig(), &["delete", "clusterrolebinding", &binding], None);
}
