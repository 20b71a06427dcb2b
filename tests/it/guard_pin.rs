//! `guard on --pin` on the real control plane: the API server's MutatingAdmissionPolicy keeps the
//! live count of every deploy that would drop a guarded workload below its floor (a forced
//! server-side apply, `kubectl apply` client-side, server-side and the switch between them, a
//! real Flux reconcile, Helm 3 and Helm 4 upgrades of a chart's autoscaling toggle), in every
//! stored version; the deploy succeeds; the HPA and KEDA still scale through `/scale`, which pin
//! leaves alone; `guard off` leaves nothing behind; a cluster without MutatingAdmissionPolicy gets
//! one line and exit 4.
//!
//! Every test holds [`ONE_AT_A_TIME`]: the policies are cluster-scoped and shared with deny's.

use serde_json::{Value, json};

use crate::apiserver::FaultApiServer;
use crate::common::*;
use crate::gitops::FluxRepo;
use crate::guard::{
    ONE_AT_A_TIME, guard_ok, manifest_file, marked, try_apply, wait_for_replicas, web_owned_by_a_forced_apply,
};
use crate::tools::*;

const PINNED_REPLICAS: &str = "hpa-migrate.io/pinned-replicas";
const PINNED_AT: &str = "hpa-migrate.io/pinned-at";

/// What `guard on --pin` prints once its dry run without replicas came back with the live count.
const CONFIRMED: &str = "a server-side dry run without replicas was pinned at the live count";

/// The guard policy objects (any mode) that list a workload of `ns`. Other engineers' tests may
/// guard their own namespaces on the same plane at the same time, so a test compares these, not
/// the cluster's whole set.
fn policies_listing(ns: &TestNamespace) -> Vec<String> {
    let output = kubectl(
        &admin_kubeconfig(),
        &[
            "get",
            "validatingadmissionpolicies,mutatingadmissionpolicies",
            "-l",
            "app.kubernetes.io/managed-by=kubectl-hpa-migrate",
            "-o",
            "json",
        ],
        None,
    );
    assert_success(&output, "listing the guard's policies");
    let list: Value = serde_json::from_slice(&output.stdout).unwrap();
    let lists_ns = |policy: &&Value| {
        let entries = policy["metadata"]["annotations"]["hpa-migrate.io/guarded"].as_str().unwrap_or("[]");
        let entries: Vec<Value> = serde_json::from_str(entries).unwrap();
        entries.iter().any(|e| e["namespace"] == ns.name.as_str())
    };
    list["items"].as_array().unwrap().iter().filter(lists_ns).map(|p| p["metadata"]["name"].to_string()).collect()
}

/// The pin evidence on an object: (count kept, time).
fn evidence(object: &Value) -> (Option<&str>, Option<&str>) {
    let annotations = &object["metadata"]["annotations"];
    (annotations[PINNED_REPLICAS].as_str(), annotations[PINNED_AT].as_str())
}

/// Checks that the last write was pinned at `count`: kept in every version stored since `since`,
/// and stamped with the count and an RFC 3339 time.
async fn assert_pinned_since(ns: &TestNamespace, name: &str, since: &str, count: i64) -> Value {
    ns.assert_kept_since(name, since, count).await;
    let object = ns.deployment_value(name).await;
    let (kept, at) = evidence(&object);
    assert_eq!(kept, Some(count.to_string().as_str()), "{:#}", object["metadata"]);
    assert!(at.is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()), "{:#}", object["metadata"]);
    object
}

/// The labels and annotations a guard writes, the mark's and pin's evidence.
fn guard_metadata(object: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    for field in ["labels", "annotations"] {
        if let Some(map) = object["metadata"][field].as_object() {
            keys.extend(map.keys().filter(|k| k.starts_with("hpa-migrate.io/")).cloned());
        }
    }
    keys
}

fn check_json(ns: &TestNamespace, target: &str) -> Value {
    let (report, _) = plugin_json(ns, &admin_kubeconfig(), &["check", target]);
    report["workloads"][0].clone()
}

/// `guard off` removes the policy objects, the mark and the evidence: what is left of the
/// workload's labels and annotations is what the deploys wrote.
async fn guard_off_leaves_nothing(ns: &TestNamespace, target: &str, policies_before: &[String]) {
    let off = guard_ok(ns, &["off", target]);
    assert!(off.contains(&format!("unguarded {}/", ns.name)), "{off}");
    let object = ns.deployment_value(target.rsplit('/').next().unwrap()).await;
    assert_eq!(guard_metadata(&object), Vec::<String>::new(), "{:#}", object["metadata"]);
    assert!(!marked(&object));
    let managers: Vec<&str> = object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert!(!managers.contains(&"hpa-migrate-guard"), "{managers:?}");
    assert_eq!(policies_listing(ns), policies_before);
}

/// A forced server-side apply without replicas (Flux's write) and `kubectl apply --server-side`:
/// both pinned at 5 and nobody owns replicas after; the HPA still scales within its bounds, and
/// `kubectl scale` (through /scale) is not pinned.
#[tokio::test]
async fn pin_keeps_the_count_of_a_forced_apply_and_kubectl_server_side_and_the_hpa_still_scales() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("pin-ssa").await;
    let before = web_owned_by_a_forced_apply(&ns).await;
    let policies = policies_listing(&ns);

    let on = guard_ok(&ns, &["on", "deploy/web", "--pin"]);
    assert!(on.contains(CONFIRMED), "{on}");
    assert!(on.contains(" 5         3      pin   hpa/web"), "{on}");
    settled(&ns, "web").await;
    let since = ns.resource_version("web").await;

    let applied = try_apply(&ns, "kustomize-controller", &deployment_manifest("web", None)).await.expect("pinned");
    assert_eq!(spec_replicas(&applied), Some(5), "the apply's answer shows the count kept");
    let pinned = assert_pinned_since(&ns, "web", &since, 5).await;
    assert_eq!(replica_managers(&pinned), [], "the forced apply's entry lost replicas in the same write");
    capture_fixture("pin-after-forced-apply", &pinned);
    let web = check_json(&ns, "deploy/web");
    assert_eq!(web["verdict"], "safe", "{web:#}");
    assert_eq!(web["guard"]["mode"], "pin", "{web:#}");
    assert_eq!(web["guard"]["pinned"]["replicas"], 5, "{web:#}");

    // The evidence, in check's text, guard status and verify, which sees no drop.
    let said = "was pinned at 5 at ";
    let text = stdout(&ns.plugin(&admin_kubeconfig(), &["check", "deploy/web"]));
    assert!(
        text.contains("pin >= 3")
            && text.contains(&format!("  pinned: a deploy without replicas (or below the floor) {said}")),
        "{text}"
    );
    let status = stdout(&ns.plugin(&admin_kubeconfig(), &["guard", "status"]));
    assert!(status.contains(&format!("{}/deployment/web: a deploy", ns.name)) && status.contains(said), "{status}");
    let (report, code) = plugin_json(&ns, &admin_kubeconfig(), &["verify", "deploy/web", "--since", "10m"]);
    let result = &report["results"][0];
    assert_eq!((code, result["outcome"].as_str()), (0, Some("pass")), "{report:#}");
    assert!(result["reason"].as_str().unwrap().contains(said), "{report:#}");

    // The same apply again, and kubectl's own server-side apply: still 5.
    try_apply(&ns, "kustomize-controller", &deployment_manifest("web", None)).await.expect("pinned");
    let file = manifest_file(&ns, "web-ssa", &deployment_manifest("web", None));
    let ssa = ns.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", file.to_str().unwrap()], None);
    assert_success(&ssa, "kubectl apply --server-side without replicas");
    ns.assert_kept_since("web", &since, 5).await;
    assert_eq!(replica_managers(&ns.deployment_value("web").await), []);

    // The HPA scales through /scale within its bounds: pin does not match /scale.
    ns.apply("kubectl", &hpa_manifest("web", "Deployment", "web", 7, 10)).await;
    wait_for_replicas(&ns, "web", 7).await;
    ns.apply("kubectl", &hpa_manifest("web", "Deployment", "web", 3, 4)).await;
    wait_for_replicas(&ns, "web", 4).await;
    // Nobody owned replicas after the pin, and the HPA's /scale writes record no owner then.
    assert_eq!(replica_managers(&ns.deployment_value("web").await), []);
    // Nor `kubectl scale` below the floor: a person's (or an autoscaler's) own decision.
    let scaled_at = ns.resource_version("web").await;
    assert_success(&ns.kubectl(&["scale", "deploy/web", "--replicas=2"], None), "kubectl scale");
    assert!(ns.replicas_stored_since("web", &scaled_at).await.contains(&2), "kubectl scale was let through");
    wait_for_replicas(&ns, "web", 3).await;

    guard_off_leaves_nothing(&ns, "deploy/web", &policies).await;
    let after = ns.deployment_value("web").await;
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
}

/// `kubectl apply` client-side without replicas: pinned, last-applied loses replicas while
/// `kubectl-client-side-apply` still owns them; then the switch to `--server-side` (which first
/// migrates that owner into `kubectl`'s Apply entry and re-sends): pinned too.
#[tokio::test]
async fn pin_keeps_the_count_of_client_side_apply_and_of_the_switch_to_server_side() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("pin-csa").await;
    let with = manifest_file(&ns, "with", &deployment_manifest("web", Some(5)));
    let without = manifest_file(&ns, "without", &deployment_manifest("web", None));
    assert_success(&ns.kubectl(&["apply", "-f", with.to_str().unwrap()], None), "kubectl apply");
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 2, 10)).await;
    settled(&ns, "web").await;
    let policies = policies_listing(&ns);
    guard_ok(&ns, &["on", "deploy/web", "--pin"]);
    let since = ns.resource_version("web").await;

    assert_success(&ns.kubectl(&["apply", "-f", without.to_str().unwrap()], None), "kubectl apply without replicas");
    let pinned = assert_pinned_since(&ns, "web", &since, 5).await;
    let last_applied: Value = serde_json::from_str(
        pinned["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(last_applied["spec"].get("replicas"), None);
    assert_eq!(
        replica_managers(&pinned),
        [("kubectl-client-side-apply".to_string(), "Update".to_string(), None)],
        "the client-side entry still owns replicas"
    );
    capture_fixture("pin-after-client-side-apply", &pinned);
    let web = check_json(&ns, "deploy/web");
    assert_eq!(web["verdict"], "strip-needed", "{web:#}");
    assert!(web["hazards"].to_string().contains("the next client-side apply leaves them alone"), "{web:#}");

    let switch = ns.kubectl(&["apply", "--server-side", "-f", without.to_str().unwrap()], None);
    assert_success(&switch, "the switch to kubectl apply --server-side");
    ns.assert_kept_since("web", &since, 5).await;
    let switched = ns.deployment_value("web").await;
    capture_fixture("pin-after-switch-to-server-side", &switched);
    let after_switch = replica_managers(&switched);

    // A second client-side-then-server-side round changes nothing either.
    assert_success(&ns.kubectl(&["apply", "--server-side", "-f", without.to_str().unwrap()], None), "again");
    ns.assert_kept_since("web", &since, 5).await;
    guard_off_leaves_nothing(&ns, "deploy/web", &policies).await;
    eprintln!("replicas owners after the switch: {after_switch:?}");
}

/// The real kustomize-controller applying a commit without replicas while it owns them: the
/// Kustomization stays Ready at the new commit, the rest of the commit is applied, and the count
/// is kept in every stored version; the next commit too.
#[tokio::test]
async fn pin_keeps_the_count_through_a_real_flux_reconcile_and_the_kustomization_stays_ready() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("pin-flux").await;
    let settings =
        |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"v": v}});
    let setting = || stdout(&ns.kubectl(&["get", "configmap", "settings", "-o", "jsonpath={.data.v}"], None));
    let repo = FluxRepo::new(&ns, "shop", &[deployment_manifest("web", Some(5)), settings("1")]).await;
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 3, 10)).await;
    settled(&ns, "web").await;
    let policies = policies_listing(&ns);
    guard_ok(&ns, &["on", "deploy/web", "--pin"]);
    let since = ns.resource_version("web").await;

    let revision = repo.commit(&[deployment_manifest("web", None), settings("2")]).await;
    let kustomization = repo.kustomization().await;
    assert_eq!(kustomization["status"]["lastAppliedRevision"].as_str(), Some(revision.as_str()));
    assert_eq!(setting(), "2", "the whole commit is applied");
    let pinned = assert_pinned_since(&ns, "web", &since, 5).await;
    capture_fixture("pin-after-flux", &pinned);
    let after_flux = replica_managers(&pinned);
    assert!(marked(&pinned), "the controller's apply kept the mark");

    repo.commit(&[deployment_manifest("web", None), settings("3")]).await;
    assert_eq!(setting(), "3");
    ns.assert_kept_since("web", &since, 5).await;
    guard_off_leaves_nothing(&ns, "deploy/web", &policies).await;
    eprintln!("replicas owners after Flux: {after_flux:?}");
}

/// Helm's upgrade of the chart's autoscaling toggle (no replicas and an HPA in one upgrade):
/// the release succeeds with the count kept, and the next upgrade too.
async fn helm_toggle_is_pinned(helm: &Helm, ns: &TestNamespace, fixture: &str) {
    let chart = chart("autoscaled");
    helm.ok(&["install", "web", &chart]);
    settled(ns, "web").await;
    let policies = policies_listing(ns);
    // No autoscaler before the toggle: the floor is given.
    guard_ok(ns, &["on", "deploy/web", "--pin", "--floor", "2"]);
    let since = ns.resource_version("web").await;

    helm.ok(&["upgrade", "web", &chart, "--set", "autoscaling.enabled=true"]);
    let pinned = assert_pinned_since(ns, "web", &since, 5).await;
    capture_fixture(fixture, &pinned);
    capture_fixture(&format!("{fixture}-release-secret"), &release_record(ns, "secret", "web", 2));
    let after_toggle = replica_managers(&pinned);
    helm.ok(&["upgrade", "web", &chart, "--set", "autoscaling.enabled=true", "--set", "image=registry.invalid/app:2"]);
    ns.assert_kept_since("web", &since, 5).await;
    let history: Value = serde_json::from_str(&helm.ok(&["history", "web", "-o", "json"])).unwrap();
    let statuses: Vec<&str> = history.as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["superseded", "superseded", "deployed"], "{history:#}");
    guard_off_leaves_nothing(ns, "deploy/web", &policies).await;
    eprintln!("replicas owners after the toggle: {after_toggle:?}");
}

#[tokio::test]
async fn pin_keeps_the_count_through_a_helm3_upgrade_of_the_autoscaling_toggle() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("pin-helm3").await;
    helm_toggle_is_pinned(&Helm::v3(&ns), &ns, "pin-after-helm3-toggle").await;
}

#[tokio::test]
async fn pin_keeps_the_count_through_a_helm4_upgrade_of_the_autoscaling_toggle() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("pin-helm4").await;
    helm_toggle_is_pinned(&Helm::v4(&ns), &ns, "pin-after-helm4-toggle").await;
}

/// The real KEDA operator under pin: `paused-replicas` and an idle scale to 0 (below the floor)
/// go through /scale, which pin leaves alone.
#[tokio::test]
async fn pin_leaves_keda_paused_replicas_and_its_idle_scale_to_zero_alone() {
    crate::keda::require_operator();
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("pin-keda").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(5))).await;
    ns.apply("kubectl", &crate::keda::scaled_object("web", "web", 2, 9)).await;
    crate::keda::keda_hpa(&ns, "keda-hpa-web").await;
    settled(&ns, "web").await;
    let policies = policies_listing(&ns);
    guard_ok(&ns, &["on", "deploy/web", "--pin"]);
    let since = ns.resource_version("web").await;
    try_apply(&ns, "kustomize-controller", &deployment_manifest("web", None)).await.expect("pinned");
    assert_pinned_since(&ns, "web", &since, 5).await;

    let paused = ns.kubectl(&["annotate", "scaledobject/web", "autoscaling.keda.sh/paused-replicas=3"], None);
    assert_success(&paused, "pausing at 3");
    crate::keda::deployment_at(&ns, "web", 3).await;
    let unpaused = ns.kubectl(&["annotate", "scaledobject/web", "autoscaling.keda.sh/paused-replicas-"], None);
    assert_success(&unpaused, "unpausing");
    crate::keda::keda_hpa(&ns, "keda-hpa-web").await;

    let mut idle = crate::keda::scaled_object("web", "web", 2, 9);
    idle["spec"]["idleReplicaCount"] = json!(0);
    ns.apply("kubectl", &idle).await;
    crate::keda::deployment_at(&ns, "web", 0).await;
    guard_off_leaves_nothing(&ns, "deploy/web", &policies).await;
}

/// A StatefulSet: a forced apply without replicas keeps its count (its own policy), `guard status`
/// lists the pin, and `guard off` leaves nothing.
#[tokio::test]
async fn pin_keeps_the_count_of_a_statefulset() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("pin-sts").await;
    ns.apply("kustomize-controller", &crate::guard::statefulset("db", Some(3))).await;
    judged_hpa(&ns, &hpa_manifest("db", "StatefulSet", "db", 2, 6)).await;
    let on = guard_ok(&ns, &["on", "sts/db", "--pin"]);
    assert!(on.contains(CONFIRMED), "{on}");

    let applied = try_apply(&ns, "kustomize-controller", &crate::guard::statefulset("db", None)).await.expect("pinned");
    assert_eq!(spec_replicas(&applied), Some(3));
    assert_eq!(evidence(&applied).0, Some("3"));
    let status = guard_ok(&ns, &["status"]);
    assert!(status.contains("hpa-migrate-guard-v1-statefulsets-pin: installed and bound"), "{status}");
    assert!(status.contains(&format!("{}/statefulset/db: a deploy", ns.name)), "{status}");
    guard_ok(&ns, &["off", "sts/db"]);
    let live = ns.kubectl(&["get", "sts/db", "-o", "json"], None);
    let live: Value = serde_json::from_slice(&live.stdout).unwrap();
    assert_eq!(guard_metadata(&live), Vec::<String>::new());
    assert_eq!(policies_listing(&ns), Vec::<String>::new());
}

/// preflight on a cluster that serves MutatingAdmissionPolicy: a server-side deploy of the
/// chart-toggle change (replicas out, the HPA in) drops, and besides the strip path it offers the
/// short path, which, followed literally, keeps 5 in every stored version and verify passes;
/// with the pin on, preflight says `pinned`.
#[tokio::test]
async fn preflight_offers_the_short_path_and_following_it_literally_keeps_the_count() {
    use crate::preflight::{Manifests, autoscaled, follow, prediction, preflight, run_step};
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("pin-preflight").await;
    let with = manifest_file(&ns, "with", &deployment_manifest("web", Some(5)));
    let ssa = ["apply", "--server-side", "-f"];
    assert_success(&ns.kubectl(&[&ssa[..], &[with.to_str().unwrap()]].concat(), None), "kubectl apply --server-side");
    settled(&ns, "web").await;
    let policies = policies_listing(&ns);
    let next = Manifests::new(&autoscaled("web"));
    let (report, code) = preflight(&ns, &next, &[]);
    let web = prediction(&report, "web");
    assert_eq!((code, web["outcome"].as_str(), web["predicted"].as_i64()), (1, Some("drops"), Some(1)), "{report:#}");
    assert!(!web["steps"].as_array().unwrap().is_empty(), "the strip path stays: {report:#}");
    let short: Vec<Value> = web["pinSteps"].as_array().expect("the short path").clone();
    assert_eq!(
        short[0]["run"],
        format!("kubectl hpa-migrate guard on -n {} deployment/web --pin --floor 2", ns.name),
        "{report:#}"
    );
    assert_eq!(short[3]["run"], format!("kubectl hpa-migrate guard off -n {} deployment/web", ns.name));
    let text = stdout(&ns.plugin(&admin_kubeconfig(), &["preflight", "-f", next.arg()]));
    assert!(text.contains("the short path (this cluster serves guard on --pin), in order:"), "{text}");
    assert!(text.contains("or, handing replicas over first:"), "{text}");

    let since = ns.resource_version("web").await;
    run_step(short[0]["run"].as_str().unwrap());
    let (pinned, code) = preflight(&ns, &next, &[]);
    let web = prediction(&pinned, "web");
    assert_eq!((code, web["outcome"].as_str(), web["predicted"].as_i64()), (0, Some("pinned"), Some(5)), "{pinned:#}");
    assert!(web["cause"].as_str().unwrap().contains("guard on --pin keeps the live count (5)"), "{pinned:#}");
    assert_eq!(pinned["summary"]["pinned"], 1);
    let rest = json!({"steps": short[1..]});
    let verified = follow(&rest, async || {
        assert_success(&ns.kubectl(&[&ssa[..], &[next.arg()]].concat(), None), "the deploy, server-side");
    })
    .await;
    assert_eq!(verified, 0);
    ns.assert_kept_since("web", &since, 5).await;
    assert_eq!(policies_listing(&ns), policies);
    assert_eq!(guard_metadata(&ns.deployment_value("web").await), Vec::<String>::new());
}

/// A cluster that does not serve MutatingAdmissionPolicy (a kube-apiserver of the test's own
/// with both resources turned off): `guard on --pin` stops with one line naming deny, exit 4, and
/// sends no write; deny, `status` and `off` still work there.
#[tokio::test]
async fn without_mutating_admission_policy_pin_is_one_line_exit_4_and_deny_still_works() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("pin-no-map").await;
    let before = web_owned_by_a_forced_apply(&ns).await;
    let policies = policies_listing(&ns);
    let server = FaultApiServer::start_with(&[
        "--runtime-config=admissionregistration.k8s.io/v1/mutatingadmissionpolicies=false,\
         admissionregistration.k8s.io/v1/mutatingadmissionpolicybindings=false",
        "--disable-admission-plugins=MutatingAdmissionPolicy",
    ]);
    let served = kubectl(&server.kubeconfig, &["api-resources", "--api-group=admissionregistration.k8s.io"], None);
    assert_success(&served, "discovery");
    assert!(!stdout(&served).contains("mutatingadmissionpolic"), "{}", stdout(&served));
    assert!(stdout(&served).contains("validatingadmissionpolicies"), "{}", stdout(&served));

    let output = ns.plugin(&server.kubeconfig, &["guard", "on", "deploy/web", "--pin"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{err}");
    assert!(err.contains("does not serve admissionregistration.k8s.io/v1 MutatingAdmissionPolicy"), "{err}");
    assert!(err.contains("nothing was changed; guard on without --pin refuses"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for verb in ["create", "update", "patch", "delete"] {
        assert_eq!(server.requests("kubectl-hpa-migrate", verb, ""), 0, "guard sent a {verb}");
    }
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&before));
    assert_eq!(policies_listing(&ns), policies);

    // The alternative the error names works on that server, and so do status and off.
    let on = ns.plugin(&server.kubeconfig, &["guard", "on", "deploy/web"]);
    assert_success(&on, "guard on (deny) without MutatingAdmissionPolicy");
    let status = ns.plugin(&server.kubeconfig, &["guard", "status"]);
    assert_success(&status, "guard status without MutatingAdmissionPolicy");
    assert!(!stdout(&status).contains("-pin"), "{}", stdout(&status));
    assert_success(&ns.plugin(&server.kubeconfig, &["guard", "off", "deploy/web"]), "guard off");
    assert_eq!(user_state(&ns.deployment_value("web").await), user_state(&before));
    assert_eq!(policies_listing(&ns), policies);
}

/// A cluster that serves the API but does not run the admission plugin: the dry run is not
/// pinned, so after the activation timeout everything written is rolled back, exit 9.
#[tokio::test]
async fn a_pin_the_api_server_does_not_enforce_is_rolled_back_and_exits_9() {
    crate::guard::an_unenforced_guard_is_rolled_back(
        "pin-no-plugin",
        "MutatingAdmissionPolicy",
        &["guard", "on", "deploy/web", "--pin"],
        "a dry run without replicas was let through",
    )
    .await;
}
