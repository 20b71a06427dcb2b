//! `preflight` checked against what really happens. Per mechanism: predict the next deploy,
//! run it on a control workload without the tool and judge every stored version (a predicted
//! drop must happen, to the exact count), then follow the printed steps literally on a twin
//! workload and deploy the same change: the count must not move. Each scenario appends its row
//! to the prediction matrix (`target/preflight-matrix.txt`, printed by `cargo xtask test`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::argocd::ArgoApp;
use crate::common::*;
use crate::gitops::FluxRepo;
use crate::tools::{Helm, chart, decode_release_record, release_record};

/// The next deploy's manifests as one multi-document file (JSON documents are YAML).
pub(crate) struct Manifests {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Manifests {
    pub(crate) fn new(documents: &[Value]) -> Self {
        let text: Vec<String> = documents.iter().map(Value::to_string).collect();
        Self::text(&text.join("\n---\n"))
    }

    fn text(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("next.yaml");
        std::fs::write(&path, text).unwrap();
        Self { _dir: dir, path }
    }

    pub(crate) fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

fn preflight_as(ns: &TestNamespace, kubeconfig: &Path, manifests: &Manifests, extra: &[&str]) -> (Value, i32) {
    let mut args = vec!["preflight", "-f", manifests.arg()];
    args.extend_from_slice(extra);
    plugin_json(ns, kubeconfig, &args)
}

pub(crate) fn preflight(ns: &TestNamespace, manifests: &Manifests, extra: &[&str]) -> (Value, i32) {
    preflight_as(ns, &admin_kubeconfig(), manifests, extra)
}

pub(crate) fn prediction<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no prediction for {name}: {report:#}"))
}

fn predicted(report: &Value, name: &str) -> (i64, String) {
    let p = prediction(report, name);
    (p["predicted"].as_i64().unwrap_or(-1), p["outcome"].as_str().unwrap().to_string())
}

/// The lowest count the Deployment had in any version stored since `since`, or now.
async fn lowest_since(ns: &TestNamespace, name: &str, since: &str) -> i64 {
    let stored = ns.replicas_stored_since(name, since).await;
    let now = spec_replicas(&ns.deployment_value(name).await).unwrap();
    stored.into_iter().chain([now]).min().unwrap()
}

/// Appends a row to the matrix: scenario, prediction, what happened, and after the advice.
fn matrix_row(scenario: &str, predicted: (i64, &str), actual: i64, after_advice: &str) {
    let row =
        format!("| {scenario:<52} | {:>2} ({:<5}) | {actual:>2} | {after_advice:<28} |", predicted.0, predicted.1);
    eprintln!("{row}");
    let path = preflight_matrix();
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{row}");
    }
}

/// Runs one of our steps exactly as printed (`kubectl hpa-migrate ARGS...`).
pub(crate) fn run_step(step: &str) -> i32 {
    let args: Vec<&str> = step.strip_prefix("kubectl hpa-migrate ").expect("a step of ours").split(' ').collect();
    let mut command = Command::new(plugin_bin());
    command.arg("--kubeconfig").arg(admin_kubeconfig()).args(&args);
    let output = run_hermetic(command, None);
    let code = output.status.code().unwrap_or(-1);
    assert_eq!(code, 0, "{step}: {}{}", stdout(&output), stderr(&output));
    code
}

/// Follows the steps of a prediction in order: ours run as printed, `deploy` for the deploy.
/// Returns the exit code of the last step (verify, which must pass).
pub(crate) async fn follow(prediction: &Value, deploy: impl AsyncFnOnce()) -> i32 {
    let mut deploy = Some(deploy);
    let mut last = 0;
    for step in prediction["steps"].as_array().expect("steps") {
        match (step.get("run").and_then(Value::as_str), step.get("deploy")) {
            (Some(command), _) => last = run_step(command),
            (None, Some(_)) => (deploy.take().expect("one deploy step"))().await,
            other => panic!("a step is run or deploy: {other:?}"),
        }
    }
    assert!(deploy.is_none(), "the steps include the deploy: {prediction:#}");
    last
}

fn kubectl_ok(ns: &TestNamespace, args: &[&str]) {
    let output = ns.kubectl(args, None);
    assert_success(&output, &args.join(" "));
}

fn kubectl_apply(ns: &TestNamespace, extra: &[&str], documents: &[Value]) {
    let manifests = Manifests::new(documents);
    let mut args = vec!["apply", "-f", manifests.arg()];
    args.extend_from_slice(extra);
    kubectl_ok(ns, &args);
}

/// The next deploy of a workload whose chart toggles autoscaling: no replicas, an HPA.
pub(crate) fn autoscaled(name: &str) -> Vec<Value> {
    vec![deployment_manifest(name, None), hpa(name)]
}

fn hpa(name: &str) -> Value {
    hpa_manifest(name, "Deployment", name, 2, 10)
}

/// kubectl (server-side or client-side), deploying the change that removes replicas and adds
/// the HPA: the control drops to 1, the twin that follows the steps keeps 5.
async fn same_change_story(label: &str, prefix: &str, apply_flags: &[&str], autoscaler: fn(&str) -> Value) {
    let ns = TestNamespace::new(prefix).await;
    for name in ["web", "safe"] {
        kubectl_apply(&ns, apply_flags, &[deployment_manifest(name, Some(5))]);
    }
    let next: Vec<Value> = ["web", "safe"].iter().flat_map(|n| [deployment_manifest(n, None), autoscaler(n)]).collect();
    let label = format!("{label}: replicas out + HPA in, one change");
    drop_predicted_and_kept_by_the_steps(&ns, &label, &next, async || kubectl_apply(&ns, apply_flags, &next)).await;
}

/// `next` removes replicas from `web` and `safe` (at 5) and adds their autoscaler: preflight
/// predicts both drop (the server's dry run, and the reader's local computation), the control
/// `web` drops when `deploy` deploys it, and `safe`, whose steps are followed with `deploy` as
/// the deploy step, keeps 5. Appends the row; returns the first prediction.
async fn drop_predicted_and_kept_by_the_steps(
    ns: &TestNamespace,
    label: &str,
    next: &[Value],
    deploy: impl AsyncFnOnce(),
) -> Value {
    let manifests = Manifests::new(next);
    let (report, code) = preflight(ns, &manifests, &[]);
    assert_eq!(code, 1, "{report:#}");
    for name in ["web", "safe"] {
        assert_eq!(predicted(&report, name), (1, "drops".into()), "{report:#}");
        assert_eq!(prediction(&report, name)["computedBy"], "server dry run");
        assert_eq!(prediction(&report, name)["autoscalers"][0]["live"], false, "{report:#}");
    }
    // The reader role cannot send dry runs: the prediction is made locally, and is the same.
    let (as_viewer, viewer_code) = preflight_as(ns, &viewer_kubeconfig(), &manifests, &[]);
    assert_eq!((viewer_code, predicted(&as_viewer, "safe")), (1, (1, "drops".into())), "{as_viewer:#}");
    assert!(prediction(&as_viewer, "safe")["computedBy"].as_str().unwrap().starts_with("locally"), "{as_viewer:#}");

    let since = (ns.resource_version("web").await, ns.resource_version("safe").await);
    let verified = follow(prediction(&report, "safe"), deploy).await;
    let (control, twin) = (lowest_since(ns, "web", &since.0).await, lowest_since(ns, "safe", &since.1).await);
    assert_eq!(control, 1, "the control dropped as predicted");
    ns.assert_kept_since("safe", &since.1, 5).await;
    matrix_row(label, (1, "drops"), control, &format!("kept {twin} (verify {verified})"));
    let (again, code) = preflight(ns, &manifests, &[]);
    assert_eq!((code, predicted(&again, "safe")), (0, (5, "keeps".into())), "{again:#}");
    report
}

#[tokio::test]
async fn kubectl_server_side_change_that_adds_the_hpa() {
    same_change_story("kubectl --server-side", "pf-ssa", &["--server-side"], hpa).await;
}

#[tokio::test]
async fn kubectl_client_side_change_that_adds_the_hpa() {
    same_change_story("kubectl (client-side)", "pf-csa", &[], hpa).await;
}

/// The real Argo CD syncing one commit that removes replicas and adds the HPA for the two
/// Deployments of one Application (with `spec`'s sync options): the control drops to 1; for the
/// twin, the printed steps, with the commit and its sync as the deploy, keep 5.
async fn argocd_commit_story(label: &str, prefix: &str, spec: Value) {
    let ns = TestNamespace::new(prefix).await;
    let app =
        ArgoApp::new(&ns, spec, &[deployment_manifest("web", Some(5)), deployment_manifest("safe", Some(5))]).await;
    app.sync().await;
    let next: Vec<Value> = ["web", "safe"].iter().flat_map(|n| autoscaled(n)).collect();
    let label = format!("{label}: replicas out + HPA in, one commit");
    let report = drop_predicted_and_kept_by_the_steps(&ns, &label, &next, async || {
        app.commit(&next);
        app.sync().await;
    })
    .await;
    assert_eq!(prediction(&report, "safe")["tool"], "argocd", "{report:#}");
    eprintln!("{label}: steps {}", prediction(&report, "safe")["steps"]);
}

#[tokio::test]
async fn argocd_client_side_commit_that_adds_the_hpa() {
    argocd_commit_story("Argo CD (real), default sync", "pf-argo-csa", json!({})).await;
}

#[tokio::test]
async fn argocd_server_side_commit_that_adds_the_hpa() {
    let spec = json!({"syncPolicy": {"syncOptions": ["ServerSideApply=true"]}});
    argocd_commit_story("Argo CD (real), ServerSideApply=true", "pf-argo-ssa", spec).await;
}

/// `ignoreDifferences` on /spec/replicas without `RespectIgnoreDifferences=true` changes only
/// Argo CD's diff: the sync still sends `replicas: null`, and preflight, which reads the object,
/// predicts it.
#[tokio::test]
async fn argocd_ignore_differences_alone_commit_that_adds_the_hpa() {
    let rule = json!({"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]});
    let spec = json!({"ignoreDifferences": [rule]});
    argocd_commit_story("Argo CD (real), ignoreDifferences alone", "pf-argo-ignore", spec).await;
}

/// An Application Argo CD synced client-side, switched to `ServerSideApply=true` in the same
/// change that removes replicas and adds the HPA: preflight reads the Application, predicts a
/// server-side sync (whose migration of the client-side entry drops the control), and the
/// steps keep the twin.
#[tokio::test]
async fn argocd_switch_to_server_side_with_the_commit_that_adds_the_hpa() {
    let ns = TestNamespace::new("pf-argo-switch").await;
    let app =
        ArgoApp::new(&ns, json!({}), &[deployment_manifest("web", Some(5)), deployment_manifest("safe", Some(5))])
            .await;
    app.sync().await;
    app.set_spec(json!({"syncPolicy": {"syncOptions": ["ServerSideApply=true"]}})).await;
    let next: Vec<Value> = ["web", "safe"].iter().flat_map(|n| autoscaled(n)).collect();
    let label = "Argo CD (real), switched to ServerSideApply=true: replicas out + HPA in";
    let report = drop_predicted_and_kept_by_the_steps(&ns, label, &next, async || {
        app.commit(&next);
        app.sync().await;
    })
    .await;
    let safe = prediction(&report, "safe");
    assert!(safe["evidence"].as_str().unwrap().ends_with("(ServerSideApply=true)"), "{safe:#}");
    assert!(safe["apply"].as_str().unwrap().contains("migrating argocd-controller"), "{safe:#}");
}

/// Deployments an operator created (an Update entry as `legacy-operator` owns replicas), then
/// taken into an Application that synced them client-side (its entry owns the last-applied
/// annotation, not replicas, whose value it did not change) and switched to
/// `ServerSideApply=true`. The Application's `client-side-apply-migration-manager` annotation
/// (argo-cd v3.2.11 reads it from the Application) names whose entry the sync makes Argo CD's.
async fn synced_over_legacy_operator(ns: &TestNamespace, migration_manager: Option<&str>) -> ArgoApp {
    let documents = [deployment_manifest("web", Some(5)), deployment_manifest("safe", Some(5))];
    for document in &documents {
        let created =
            ns.kubectl(&["create", "-f", "-", "--field-manager=legacy-operator"], Some(&document.to_string()));
        assert_success(&created, "creating as legacy-operator");
    }
    let app = ArgoApp::new(ns, json!({}), &documents).await;
    if let Some(manager) = migration_manager {
        app.annotate("argocd.argoproj.io/client-side-apply-migration-manager", manager).await;
    }
    app.sync().await;
    for name in ["web", "safe"] {
        let owners = replica_managers(&ns.deployment_value(name).await);
        assert_eq!(
            owners,
            vec![("legacy-operator".into(), "Update".into(), None)],
            "{name} after the client-side sync"
        );
    }
    app.set_spec(json!({"syncPolicy": {"syncOptions": ["ServerSideApply=true"]}})).await;
    app
}

/// With the annotation naming `legacy-operator`, the first server-side sync applies the commit
/// client-side as that manager first (its three-way merge with the last-applied annotation
/// sends `replicas: null`) and migrates its entry: the control drops to 1. preflight reads the
/// Application's annotation, predicts the drop, and its steps (strip takes the operator's
/// entry as Argo CD's) keep the twin, through that sync and the next.
#[tokio::test]
async fn argocd_migration_manager_named_by_the_application_drops_its_entry() {
    let ns = TestNamespace::new("pf-argo-legacy").await;
    let app = synced_over_legacy_operator(&ns, Some("legacy-operator")).await;
    let next: Vec<Value> = ["web", "safe"].iter().flat_map(|n| autoscaled(n)).collect();
    let label = "Argo CD (real), migration manager named on the Application";
    let report = drop_predicted_and_kept_by_the_steps(&ns, label, &next, async || {
        app.commit(&next);
        app.sync().await;
    })
    .await;
    let safe = prediction(&report, "safe");
    assert!(safe["apply"].as_str().unwrap().contains("legacy-operator"), "{safe:#}");
    // The next commit's sync: measured before strip took the operator's entry as Argo CD's, the
    // twin kept 5 through the first sync and dropped to 1 at this one.
    let since = ns.resource_version("safe").await;
    let mut touched = next.clone();
    for document in touched.iter_mut().filter(|d| d["kind"] == "Deployment") {
        document["metadata"]["labels"] = json!({"touched": "again"});
    }
    app.commit(&touched);
    app.sync().await;
    ns.assert_kept_since("safe", &since, 5).await;
}

/// The same objects and switch without the annotation: the sync migrates only the default
/// manager's entry (none here) and the owners of the last-applied annotation (Argo CD's own),
/// so `legacy-operator` keeps replicas, as preflight predicts.
#[tokio::test]
async fn argocd_default_migration_manager_leaves_an_operators_entry() {
    let ns = TestNamespace::new("pf-argo-default-mgr").await;
    let app = synced_over_legacy_operator(&ns, None).await;
    let next: Vec<Value> = ["web", "safe"].iter().flat_map(|n| autoscaled(n)).collect();
    let (report, code) = preflight(&ns, &Manifests::new(&next), &[]);
    assert_eq!((code, predicted(&report, "web")), (0, (5, "keeps".into())), "{report:#}");
    let since = ns.resource_version("web").await;
    app.commit(&next);
    app.sync().await;
    ns.assert_kept_since("web", &since, 5).await;
    matrix_row("Argo CD (real), default migration manager, operator-owned", (5, "keeps"), 5, "");
}

/// An Application with `RespectIgnoreDifferences=true` and an `ignoreDifferences` rule for
/// /spec/replicas (`group: apps`): the commit that removes replicas keeps the HPA's 7, and
/// preflight, reading the Application, predicts it.
#[tokio::test]
async fn argocd_respect_ignore_differences_keeps_the_count_as_predicted() {
    let ns = TestNamespace::new("pf-argo-respect").await;
    let rule = json!({"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]});
    let spec = json!({"ignoreDifferences": [rule], "syncPolicy": {"syncOptions": ["RespectIgnoreDifferences=true"]}});
    let app = ArgoApp::new(&ns, spec, &[deployment_manifest("web", Some(5))]).await;
    app.sync().await;
    let autoscaler = hpa_manifest("web", "Deployment", "web", 7, 10);
    rescaling_hpa(&ns, &autoscaler, "web", 7).await;
    let next = [deployment_manifest("web", None), autoscaler];
    let (report, code) = preflight(&ns, &Manifests::new(&next), &[]);
    assert_eq!((code, predicted(&report, "web")), (0, (7, "keeps".into())), "{report:#}");
    assert!(
        prediction(&report, "web")["evidence"].as_str().unwrap().contains("RespectIgnoreDifferences"),
        "{report:#}"
    );
    let since = ns.resource_version("web").await;
    app.commit(&next);
    app.sync().await;
    ns.assert_kept_since("web", &since, 7).await;
    matrix_row("Argo CD (real), RespectIgnoreDifferences=true, replicas ignored", (7, "keeps"), 7, "");
}

/// Deployments created by `kubectl apply` (5, an HPA at 3..10 in charge), then adopted by an
/// Application with `ServerSideApply=true` whose Git leaves replicas out: its first sync
/// migrates kubectl's client-side entry into `argocd-controller`'s and drops the control to 1
/// (tests/it/argocd.rs measures the chain); `preflight --as argocd` predicts the drop, and the
/// twin that follows its steps, with the Application's creation and first sync as the deploy,
/// keeps 5.
#[tokio::test]
async fn argocd_server_side_adoption_of_kubectl_applied_objects() {
    let ns = TestNamespace::new("pf-argo-adopt").await;
    for name in ["web", "safe"] {
        kubectl_apply(&ns, &[], &[deployment_manifest(name, Some(5))]);
        judged_hpa(&ns, &hpa_manifest(name, "Deployment", name, 3, 10)).await;
    }
    let next: Vec<Value> = ["web", "safe"]
        .iter()
        .flat_map(|n| [deployment_manifest(n, None), hpa_manifest(n, "Deployment", n, 3, 10)])
        .collect();
    let manifests = Manifests::new(&next);
    let (report, code) = preflight(&ns, &manifests, &["--as", "argocd"]);
    assert_eq!(code, 1, "{report:#}");
    for name in ["web", "safe"] {
        assert_eq!(predicted(&report, name), (1, "drops".into()), "{report:#}");
    }
    eprintln!("steps {}", prediction(&report, "safe")["steps"]);
    let since = (ns.resource_version("web").await, ns.resource_version("safe").await);
    let spec = json!({"syncPolicy": {"syncOptions": ["ServerSideApply=true"]}});
    let mut adopted = None;
    let verified = follow(prediction(&report, "safe"), async || {
        let app = ArgoApp::new(&ns, spec, &next).await;
        app.sync().await;
        adopted = Some(app);
    })
    .await;
    let control = lowest_since(&ns, "web", &since.0).await;
    assert_eq!(control, 1, "the control dropped as predicted");
    ns.assert_kept_since("safe", &since.1, 5).await;
    matrix_row(
        "Argo CD (real), ServerSideApply=true adopting kubectl-applied objects",
        (1, "drops"),
        control,
        &format!("kept 5 (verify {verified})"),
    );
}

/// KEDA: the ScaledObject arrives with the change; the real operator creates its HPA only after
/// the apply, so the drop comes first.
#[tokio::test]
async fn keda_scaled_object_in_the_same_change() {
    crate::keda::require_operator();
    install_keda_crd().await;
    let scaled_object = |name: &str| crate::keda::scaled_object(name, name, 2, 10);
    same_change_story("KEDA (real operator), kubectl --server-side", "pf-keda", &["--server-side"], scaled_object)
        .await;
}

/// A chart whose `autoscaling.enabled` toggle drops replicas and adds the HPA in one upgrade:
/// the control release drops to 1, the twin that follows the steps keeps 5.
async fn chart_toggle_story(label: &str, ns: &TestNamespace, helm: &Helm) {
    for release in ["web", "safe"] {
        helm.ok(&["install", release, &chart("autoscaled")]);
    }
    let toggle = ["--set", "autoscaling.enabled=true"];
    let chart = chart("autoscaled");
    for release in ["web", "safe"] {
        let rendered = helm.ok(&[&["template", release, &chart][..], &toggle].concat());
        let manifests = Manifests::text(&rendered);
        let (report, code) = preflight(ns, &manifests, &[]);
        assert_eq!((code, predicted(&report, release)), (1, (1, "drops".into())), "{report:#}");
        let p = prediction(&report, release);
        assert_eq!(p["tool"], "helm");
        assert_eq!(p["autoscalers"][0]["name"], format!("hpa/{release}"));
        assert_eq!(p["autoscalers"][0]["live"], false, "the HPA arrives with the upgrade");
        let since = ns.resource_version(release).await;
        let upgrade = [&["upgrade", release, &chart][..], &toggle].concat();
        if release == "web" {
            helm.ok(&upgrade);
            let control = lowest_since(ns, release, &since).await;
            assert_eq!(control, 1, "the control release dropped as predicted");
            matrix_row(&format!("{label}: chart autoscaling toggle"), (1, "drops"), control, "");
        } else {
            let verified = follow(p, async || {
                helm.ok(&upgrade);
            })
            .await;
            ns.assert_kept_since(release, &since, 5).await;
            matrix_row(
                &format!("{label}: chart autoscaling toggle, steps followed"),
                (1, "drops"),
                5,
                &format!("kept 5 (verify {verified})"),
            );
        }
    }
}

#[tokio::test]
async fn helm3_chart_autoscaling_toggle() {
    let ns = TestNamespace::new("pf-helm3").await;
    chart_toggle_story("Helm 3", &ns, &Helm::v3(&ns)).await;
}

#[tokio::test]
async fn helm4_chart_autoscaling_toggle() {
    let ns = TestNamespace::new("pf-helm4").await;
    chart_toggle_story("Helm 4", &ns, &Helm::v4(&ns)).await;
}

/// Helm 4's `helm upgrade --server-side=true` of a release that applied client-side (installed
/// with `--server-side=false`, or by Helm 3) first migrates `helm`'s Update entry into its Apply
/// entry, then applies: the chart's autoscaling toggle leaves replicas out and the field goes.
/// `--as helm-server-side` predicts that drop (the dry run of the apply alone keeps 5), and its
/// steps, followed with the same upgrade, keep the count.
#[tokio::test]
async fn helm4_switch_from_client_side_to_server_side_migrates_and_drops() {
    let ns = TestNamespace::new("pf-helm-switch").await;
    let (helm3, helm4) = (Helm::v3(&ns), Helm::v4(&ns));
    let chart = chart("autoscaled");
    helm3.ok(&["install", "moved", &chart]);
    for release in ["web", "safe"] {
        helm4.ok(&["install", release, &chart, "--server-side=false"]);
    }
    for release in ["moved", "web", "safe"] {
        let owners = replica_managers(&ns.deployment_value(release).await);
        assert_eq!(owners, vec![("helm".into(), "Update".into(), None)], "{release} applied client-side");
    }
    let toggle = ["--set", "autoscaling.enabled=true"];
    fn upgrade<'a>(release: &'a str, chart: &'a str, toggle: &[&'a str]) -> Vec<&'a str> {
        [&["upgrade", release, chart, "--server-side=true"][..], toggle].concat()
    }
    for release in ["moved", "web", "safe"] {
        let rendered = helm4.ok(&[&["template", release, &chart][..], &toggle].concat());
        let manifests = Manifests::text(&rendered);
        let (report, code) = preflight(&ns, &manifests, &["--as", "helm-server-side"]);
        assert_eq!((code, predicted(&report, release)), (1, (1, "drops".into())), "{report:#}");
        let p = prediction(&report, release);
        assert!(p["apply"].as_str().unwrap().contains("after migrating helm's entry into its own"), "{p:#}");
        let since = ns.resource_version(release).await;
        if release == "safe" {
            let verified = follow(p, async || {
                helm4.ok(&upgrade(release, &chart, &toggle));
            })
            .await;
            ns.assert_kept_since(release, &since, 5).await;
            matrix_row(
                "Helm 4 client-side -> --server-side=true, steps followed",
                (1, "drops"),
                5,
                &format!("kept 5 (verify {verified})"),
            );
            continue;
        }
        helm4.ok(&upgrade(release, &chart, &toggle));
        let control = lowest_since(&ns, release, &since).await;
        assert_eq!(control, 1, "{release}: the switch dropped as predicted");
        let record = decode_release_record(&release_record(&ns, "secret", release, 2));
        assert_eq!(record["apply_method"], "ssa", "{release}: the upgrade switched the release");
        let scenario = if release == "moved" {
            "Helm 3 release -> Helm 4 --server-side=true"
        } else {
            "Helm 4 client-side release -> --server-side=true"
        };
        matrix_row(scenario, (1, "drops"), control, "");
    }
}

/// The real kustomize-controller reconciling one commit that removes replicas and adds the HPA
/// for two Deployments: the control drops; for the twin, strip --pause-flux, the commit,
/// resume and Flux's next reconcile keep 5.
#[tokio::test]
async fn flux_commit_that_adds_the_hpa() {
    let ns = TestNamespace::new("pf-flux").await;
    let repo =
        FluxRepo::new(&ns, "shop", &[deployment_manifest("web", Some(5)), deployment_manifest("safe", Some(5))]).await;
    let next: Vec<Value> = ["web", "safe"].iter().flat_map(|n| autoscaled(n)).collect();
    let manifests = Manifests::new(&next);
    let (report, code) = preflight(&ns, &manifests, &[]);
    assert_eq!(code, 1, "{report:#}");
    for name in ["web", "safe"] {
        assert_eq!(predicted(&report, name), (1, "drops".into()), "{report:#}");
        assert_eq!(prediction(&report, name)["tool"], "flux");
    }
    let since = (ns.resource_version("web").await, ns.resource_version("safe").await);
    let steps: Vec<Value> = prediction(&report, "safe")["steps"].as_array().unwrap().clone();
    assert_eq!(steps.len(), 4, "{steps:#?}");
    run_step(steps[0]["run"].as_str().unwrap());
    assert!(steps[1].get("deploy").is_some());
    repo.commit(&next).await;
    run_step(steps[2]["run"].as_str().unwrap());
    // Flux applies the resumed object at its next reconcile: the interval, here on request.
    repo.reconcile().await;
    let verified = run_step(steps[3]["run"].as_str().unwrap());
    let control = lowest_since(&ns, "web", &since.0).await;
    assert_eq!(control, 1, "the control dropped as predicted");
    ns.assert_kept_since("safe", &since.1, 5).await;
    matrix_row(
        "Flux (real): replicas out + HPA in, one commit",
        (1, "drops"),
        control,
        &format!("kept 5 (verify {verified})"),
    );
}

/// Predicted keeps: a co-owner of replicas (the docs' handover manager), an HPA that already
/// rescaled (so it owns the field); and the same rescaled HPA under client-side apply, whose
/// three-way merge deletes replicas whoever owns it.
#[tokio::test]
async fn co_owners_and_a_rescaled_hpa() {
    let ns = TestNamespace::new("pf-owners").await;
    kubectl_apply(
        &ns,
        &["--server-side"],
        &[deployment_manifest("shared", Some(5)), deployment_manifest("rescaled", Some(5))],
    );
    kubectl_apply(&ns, &[], &[deployment_manifest("csa", Some(5))]);
    ns.apply("handover-to-hpa", &replicas_only("apps/v1", "Deployment", "shared", 5)).await;
    for name in ["rescaled", "csa"] {
        rescaling_hpa(&ns, &hpa_manifest(name, "Deployment", name, 6, 10), name, 6).await;
    }
    let server_side = Manifests::new(&[deployment_manifest("shared", None), deployment_manifest("rescaled", None)]);
    let client_side = Manifests::new(&[deployment_manifest("csa", None)]);
    let (report, code) = preflight(&ns, &server_side, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(predicted(&report, "shared"), (5, "keeps".into()));
    assert_eq!(predicted(&report, "rescaled"), (6, "keeps".into()));
    let (csa_report, csa_code) = preflight(&ns, &client_side, &[]);
    assert_eq!((csa_code, predicted(&csa_report, "csa")), (1, (1, "drops".into())), "{csa_report:#}");

    let since: Vec<String> =
        futures::future::join_all(["shared", "rescaled", "csa"].map(|n| ns.resource_version(n))).await;
    kubectl_ok(&ns, &["apply", "--server-side", "-f", server_side.arg()]);
    kubectl_ok(&ns, &["apply", "-f", client_side.arg()]);
    let shared = lowest_since(&ns, "shared", &since[0]).await;
    let rescaled = lowest_since(&ns, "rescaled", &since[1]).await;
    let csa = lowest_since(&ns, "csa", &since[2]).await;
    assert_eq!((shared, rescaled, csa), (5, 6, 1));
    matrix_row("kubectl --server-side: handover manager co-owns", (5, "keeps"), shared, "");
    matrix_row("kubectl --server-side: HPA already rescaled to 6", (6, "keeps"), rescaled, "");
    matrix_row("kubectl (client-side): HPA already rescaled to 6", (1, "drops"), csa, "");
}

/// A `kubectl patch` of replicas on an object Flux manages: the dry run of Flux's apply alone
/// keeps the field (kubectl-patch owns it), but the real kustomize-controller first takes that
/// entry over, and then drops the workload. preflight predicts the drop.
#[tokio::test]
async fn flux_takes_over_a_kubectl_patch_before_it_applies() {
    let ns = TestNamespace::new("pf-takeover").await;
    let repo =
        FluxRepo::new(&ns, "shop", &[deployment_manifest("web", Some(5)), deployment_manifest("safe", Some(5))]).await;
    for name in ["web", "safe"] {
        kubectl_ok(&ns, &["patch", "deployment", name, "--type=merge", "-p", r#"{"spec":{"replicas":6}}"#]);
    }
    let next = [deployment_manifest("web", None), deployment_manifest("safe", None)];
    let manifests = Manifests::new(&next);
    let (report, code) = preflight(&ns, &manifests, &[]);
    assert_eq!((code, predicted(&report, "web")), (1, (1, "drops".into())), "{report:#}");
    let steps: Vec<String> = prediction(&report, "safe")["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_string))
        .collect();
    let since = (ns.resource_version("web").await, ns.resource_version("safe").await);
    // No autoscaler, live or in the commit: strip needs --force, and there is nothing to verify.
    assert!(steps[0].ends_with("--pause-flux --force --yes"), "{steps:?}");
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(prediction(&report, "safe")["warnings"].to_string().contains("nothing scales it"), "{report:#}");
    run_step(&steps[0]);
    repo.commit(&next).await;
    run_step(&steps[1]);
    repo.reconcile().await;
    let control = lowest_since(&ns, "web", &since.0).await;
    assert_eq!(control, 1, "the control dropped as predicted");
    ns.assert_kept_since("safe", &since.1, 6).await;
    matrix_row(
        "Flux (real): kubectl patch owner taken over",
        (1, "drops"),
        control,
        "kept 6 (no autoscaler to verify)",
    );
}

/// kubectl's own switch from client-side to server-side apply, with an HPA in charge: the
/// server's dry run of the server-side apply alone keeps replicas (kubectl-client-side-apply
/// still owns them), but kubectl then migrates that entry into its own and sends the patch
/// again, which removes the field in that same command (measured: 5 -> 1 -> 3). preflight
/// `--as kubectl-server-side` predicts the drop, and its steps keep the count.
#[tokio::test]
async fn kubectl_switch_from_client_side_to_server_side_migrates_and_drops() {
    let ns = TestNamespace::new("pf-csa-to-ssa").await;
    for name in ["web", "safe"] {
        kubectl_apply(&ns, &[], &[deployment_manifest(name, Some(5))]);
        judged_hpa(&ns, &hpa_manifest(name, "Deployment", name, 3, 10)).await;
    }
    let next = [deployment_manifest("web", None), deployment_manifest("safe", None)];
    let manifests = Manifests::new(&next);
    let (report, code) = preflight(&ns, &manifests, &["--as", "kubectl-server-side"]);
    assert_eq!(code, 1, "{report:#}");
    for name in ["web", "safe"] {
        assert_eq!(predicted(&report, name), (1, "drops".into()), "{report:#}");
        let apply = prediction(&report, name)["apply"].as_str().unwrap().to_string();
        assert!(apply.contains("migrating kubectl-client-side-apply's entry"), "{apply}");
    }
    let since = (ns.resource_version("web").await, ns.resource_version("safe").await);
    let deploy = || kubectl_apply(&ns, &["--server-side"], &next);
    let verified = follow(prediction(&report, "safe"), async || deploy()).await;
    let control = lowest_since(&ns, "web", &since.0).await;
    assert_eq!(control, 1, "the control dropped as predicted (kubectl's re-sent patch)");
    ns.assert_kept_since("safe", &since.1, 5).await;
    matrix_row(
        "kubectl client-side -> --server-side, HPA in charge",
        (1, "drops"),
        control,
        &format!("kept 5 (verify {verified})"),
    );
    let (again, code) = preflight(&ns, &manifests, &["--as", "kubectl-server-side"]);
    assert_eq!((code, predicted(&again, "safe")), (0, (5, "keeps".into())), "{again:#}");
}

/// What preflight cannot tell, what is new, and bad input: one line, a distinct exit code,
/// nothing written.
#[tokio::test]
async fn unknown_tools_new_workloads_and_bad_input() {
    let ns = TestNamespace::new("pf-input").await;
    ns.apply("someone", &deployment_manifest("bare", Some(3))).await;
    let manifests = Manifests::new(&[deployment_manifest("bare", None), deployment_manifest("fresh", None)]);
    let (report, code) = preflight(&ns, &manifests, &[]);
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(prediction(&report, "bare")["outcome"], "unknown");
    assert!(prediction(&report, "bare")["cause"].as_str().unwrap().contains("--as"));
    assert_eq!(predicted(&report, "fresh"), (1, "new".into()));
    // Told which tool, the server answers: `someone` owns replicas and would be its only owner.
    let (report, code) = preflight(&ns, &manifests, &["--as", "someone"]);
    assert_eq!((code, predicted(&report, "bare")), (1, (1, "drops".into())), "{report:#}");
    assert_eq!(spec_replicas(&ns.deployment_value("bare").await), Some(3), "a dry run changes nothing");
    assert_eq!(ns.kubectl(&["get", "deployment", "fresh"], None).status.code(), Some(1), "nothing is created");

    let bad = Manifests::text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {}\n");
    for (args, expected) in
        [(vec!["preflight", "-f", bad.arg()], 2), (vec!["preflight", "-f", "/nonexistent/next.yaml"], 2)]
    {
        let output = ns.plugin(&admin_kubeconfig(), &args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(expected), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line: {err}");
    }
    assert_eq!(ns.plugin(&admin_kubeconfig(), &["preflight"]).status.code(), Some(2), "-f is required");
    let mut all_namespaces = Command::new(plugin_bin());
    all_namespaces.arg("--kubeconfig").arg(admin_kubeconfig()).args(["preflight", "-A", "-f", manifests.arg()]);
    let all = run_hermetic(all_namespaces, None);
    assert_eq!(all.status.code(), Some(2), "{}", stderr(&all));
}

/// `-l` keeps only the objects `kubectl apply -l` would apply. Measured before: `preflight -l
/// app=zzz -f web.yaml` still predicted web's drop and exited 1. Here each workload and its HPA
/// carry `app: NAME`; only the selected one is predicted, and the rest is counted as left out.
#[tokio::test]
async fn selector_predicts_only_what_kubectl_apply_l_applies() {
    let ns = TestNamespace::new("pf-selector").await;
    let labelled = |mut document: Value, app: &str| {
        document["metadata"]["labels"] = json!({"app": app});
        document
    };
    for name in ["web", "api"] {
        kubectl_apply(&ns, &["--server-side"], &[labelled(deployment_manifest(name, Some(5)), name)]);
    }
    let next: Vec<Value> = ["web", "api"]
        .iter()
        .flat_map(|name| [labelled(deployment_manifest(name, None), name), labelled(hpa(name), name)])
        .collect();
    let manifests = Manifests::new(&next);

    let (report, code) = preflight(&ns, &manifests, &[]);
    let summary = (code, &report["summary"]["drops"], &report["summary"]["leftOut"]);
    assert_eq!(summary, (1, &json!(2), &json!(0)), "{report:#}");

    let (report, code) = preflight(&ns, &manifests, &["-l", "app=web"]);
    assert_eq!(code, 1, "{report:#}");
    let names: Vec<&str> =
        report["workloads"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web"], "{report:#}");
    assert_eq!(predicted(&report, "web"), (1, "drops".into()), "{report:#}");
    assert_eq!(report["summary"]["leftOut"], 2, "api's Deployment and HPA: {report:#}");

    let (report, code) = preflight(&ns, &manifests, &["-l", "app=zzz"]);
    assert_eq!(code, 0, "nothing selected, nothing drops: {report:#}");
    assert_eq!((report["workloads"].as_array().unwrap().len(), &report["summary"]["leftOut"]), (0, &json!(4)));

    let text = ns.plugin(&admin_kubeconfig(), &["preflight", "-f", manifests.arg(), "-l", "app in (api)"]);
    assert_eq!(text.status.code(), Some(1), "{}", stderr(&text));
    assert!(
        stdout(&text)
            .contains("1 workload(s): 1 drop, 0 keep, 0 refused, 0 new, 0 unknown; 2 object(s) left out by -l\n"),
        "{}",
        stdout(&text)
    );

    let bad = ns.plugin(&admin_kubeconfig(), &["preflight", "-f", manifests.arg(), "-l", "a in ("]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("invalid label selector 'a in ('"), "{}", stderr(&bad));
    assert_eq!(spec_replicas(&ns.deployment_value("web").await), Some(5), "a dry run changes nothing");
}
