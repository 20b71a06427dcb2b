//! The real Argo CD (v3.2.11: its repo-server and application controller, run beside the plane
//! by xtask/src/argocd.rs) and `.spec.replicas`: what a default (client-side) sync and a
//! `ServerSideApply=true` sync write, its client-side-apply migration on the first server-side
//! sync, `ignoreDifferences` with and without `RespectIgnoreDifferences=true`, a rule without
//! `group`, and `automated.selfHeal` against an HPA. Each test asserts what was measured (so a
//! changed Argo CD fails it), prints the figures, and docs/measured/argocd.md writes them down.
//!
//! Git is a local repository per test, named to Argo CD as a `file://` URL. No argocd-server
//! runs: a sync is the `.operation` argocd-server writes on the Application (the source, the
//! revision, and the Application's own sync options), and the tests wait for the controller to
//! report that operation finished in `.status.operationState`.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::common::*;
use crate::gitops::resource;

/// The namespace of Argo CD's settings and Applications (xtask/src/argocd.rs).
const ARGOCD_NAMESPACE: &str = "argocd";
const FIELD_MANAGER: &str = "argocd-controller";
const TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The controller runs: `cargo xtask cluster up` starts it (and the tests cannot).
pub fn require_argocd() {
    let pid = cluster().pid_file("argocd-application-controller");
    let alive = std::fs::read_to_string(&pid)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
    assert!(alive, "Argo CD is not running: `cargo xtask cluster up` starts it beside the control plane");
}

/// A Git repository of the test's own holding `manifests.yaml`, and the Application `name` (in
/// namespace argocd) that deploys it into the test's namespace. Deleted when dropped (the
/// namespace's objects go with the namespace: the Application has no finalizer).
pub struct ArgoApp {
    pub name: String,
    repo: tempfile::TempDir,
    apps: Api<DynamicObject>,
}

impl ArgoApp {
    /// Commits `documents` and creates the Application with `spec`'s keys over the defaults
    /// (project `default`, the repository at `main`, path `.`, the test's namespace on the
    /// in-cluster destination; no automated sync). Nothing is synced yet.
    pub async fn new(ns: &TestNamespace, spec: Value, documents: &[Value]) -> ArgoApp {
        require_argocd();
        let repo = tempfile::tempdir().unwrap();
        git(repo.path(), &["init", "-q", "-b", "main"]);
        let apps = Api::namespaced_with(
            ns.client.clone(),
            ARGOCD_NAMESPACE,
            &resource("argoproj.io", "v1alpha1", "Application", "applications"),
        );
        let app = ArgoApp { name: ns.name.clone(), repo, apps };
        app.commit(documents);
        let mut full = json!({
            "project": "default",
            "source": {"repoURL": format!("file://{}", app.repo.path().display()), "path": ".", "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": ns.name},
        });
        for (key, value) in spec.as_object().unwrap() {
            full[key] = value.clone();
        }
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": app.name, "namespace": ARGOCD_NAMESPACE},
            "spec": full,
        }))
        .unwrap();
        app.apps.create(&PostParams::default(), &object).await.expect("creating the Application");
        app
    }

    /// An Application with `ServerSideApply=true` that has synced `documents` once.
    pub async fn synced_server_side(ns: &TestNamespace, documents: &[Value]) -> ArgoApp {
        let app = Self::new(ns, json!({"syncPolicy": {"syncOptions": ["ServerSideApply=true"]}}), documents).await;
        app.sync().await;
        app
    }

    /// Commits `documents` as `manifests.yaml` (the whole repository); returns the commit id.
    pub fn commit(&self, documents: &[Value]) -> String {
        let text: Vec<String> = documents.iter().map(Value::to_string).collect();
        std::fs::write(self.repo.path().join("manifests.yaml"), text.join("\n---\n")).unwrap();
        git(self.repo.path(), &["add", "-A"]);
        git(
            self.repo.path(),
            &["-c", "user.name=test", "-c", "user.email=test@127.0.0.1", "commit", "-q", "-m", "change"],
        );
        git(self.repo.path(), &["rev-parse", "HEAD"]).trim().to_string()
    }

    pub async fn application(&self) -> Value {
        serde_json::to_value(self.apps.get(&self.name).await.expect("reading the Application")).unwrap()
    }

    /// Merge-patches the Application's spec (sync options, ignoreDifferences, automation).
    pub async fn set_spec(&self, spec: Value) {
        self.apps
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(json!({"spec": spec})))
            .await
            .expect("patching the Application");
    }

    /// Sets an annotation on the Application (as `argocd.argoproj.io/...` options are set).
    pub async fn annotate(&self, key: &str, value: &str) {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.apps.patch(&self.name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("annotating");
    }

    /// Syncs the last commit as argocd-server's Sync does (the operation carries the source,
    /// the revision and the Application's sync options) and waits until the controller reports
    /// that operation done; it must have succeeded. Returns the operation state.
    pub async fn sync(&self) -> Value {
        static REQUESTS: AtomicU32 = AtomicU32::new(0);
        let revision = git(self.repo.path(), &["rev-parse", "HEAD"]).trim().to_string();
        let app = self.application().await;
        let request = format!("{}-{}", self.name, REQUESTS.fetch_add(1, Ordering::Relaxed));
        let operation = json!({"operation": {
            "sync": {
                "source": app["spec"]["source"],
                "revision": revision,
                "syncOptions": app.pointer("/spec/syncPolicy/syncOptions").cloned().unwrap_or(json!([])),
            },
            "initiatedBy": {"username": "hpa-migrate-tests"},
            "info": [{"name": "request", "value": request}],
        }});
        self.apps
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(operation))
            .await
            .expect("requesting the sync");
        let state = eventually(Duration::from_secs(180), &format!("Argo CD to sync {}", self.name), || async {
            let state = self.application().await.pointer("/status/operationState").cloned()?;
            let ours =
                state.pointer("/operation/info").and_then(Value::as_array)?.iter().any(|i| i["value"] == request);
            let done = matches!(state["phase"].as_str(), Some("Succeeded" | "Failed" | "Error"));
            (ours && done).then_some(state)
        })
        .await;
        assert_eq!(state["phase"], "Succeeded", "the sync of {revision}: {state:#}");
        assert_eq!(state["syncResult"]["revision"], revision.as_str(), "{state:#}");
        state
    }

    /// Asks the controller to compare with Git's latest commit now, as `argocd app get --refresh`
    /// does (the `argocd.argoproj.io/refresh` annotation); with automated sync on, it then syncs.
    pub async fn refresh(&self) {
        let refresh = json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}});
        self.apps.patch(&self.name, &PatchParams::default(), &Patch::Merge(refresh)).await.expect("refreshing");
    }

    /// The tracking id Argo CD writes on a namespaced object it deploys.
    pub fn tracking_id(&self, ns: &TestNamespace, group_kind: &str, name: &str) -> String {
        format!("{}:{group_kind}:{}/{name}", self.name, ns.name)
    }
}

impl Drop for ArgoApp {
    fn drop(&mut self) {
        let _ = kubectl(
            &admin_kubeconfig(),
            &["delete", "applications.argoproj.io", &self.name, "-n", ARGOCD_NAMESPACE, "--wait=false"],
            None,
        );
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git").current_dir(dir).args(args).output().expect("running git");
    assert_success(&output, &format!("git {}", args.join(" ")));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// (manager, operation, subresource) of every managedFields entry but the controllers' status
/// writes.
fn managers(object: &Value) -> Vec<(String, String, Option<String>)> {
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subresource"] != "status")
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_string(),
                e["operation"].as_str().unwrap().to_string(),
                e.get("subresource").and_then(Value::as_str).map(str::to_string),
            )
        })
        .collect()
}

fn owner(manager: &str, operation: &str) -> (String, String, Option<String>) {
    (manager.to_string(), operation.to_string(), None)
}

/// For each stored version: its replicas and the managers that own them.
fn replicas_and_owners(versions: &[Value]) -> Vec<(i64, Vec<String>)> {
    versions
        .iter()
        .map(|v| {
            (spec_replicas(v).unwrap(), replica_managers(v).into_iter().map(|(m, o, _)| format!("{m}/{o}")).collect())
        })
        .collect()
}

/// An HPA over `name` at `min`..=`max`, judged (and, when the Deployment is below `min`, having
/// scaled it).
async fn hpa_at(ns: &TestNamespace, name: &str, min: i64, max: i64) {
    let hpa = hpa_manifest(name, "Deployment", name, min, max);
    let current = spec_replicas(&ns.deployment_value(name).await).unwrap();
    if current < min || current > max {
        rescaling_hpa(ns, &hpa, name, current.clamp(min, max)).await;
    } else {
        judged_hpa(ns, &hpa).await;
    }
}

/// Puts an HPA (`min`..=10) in charge of `web`, then commits `web` without replicas (and the
/// HPA) and syncs: every count that sync stored.
async fn sync_without_replicas(ns: &TestNamespace, app: &ArgoApp, min: i64) -> Vec<i64> {
    hpa_at(ns, "web", min, 10).await;
    let since = ns.resource_version("web").await;
    app.commit(&[deployment_manifest("web", None), hpa_manifest("web", "Deployment", "web", min, 10)]);
    app.sync().await;
    ns.replicas_stored_since("web", &since).await
}

/// Fact 1: a default sync is a client-side apply as `argocd-controller` (Update) that writes the
/// tracking id as an annotation, inside last-applied too; removing replicas from Git then
/// drops the workload to 1 (the three-way merge sends `replicas: null`).
#[tokio::test]
async fn default_sync_applies_client_side_as_argocd_controller() {
    let ns = TestNamespace::new("argo-csa").await;
    let app = ArgoApp::new(&ns, json!({}), &[deployment_manifest("web", Some(5))]).await;
    app.sync().await;
    let web = ns.deployment_value("web").await;
    capture_fixture("argocd-client-side-deployment", &web);
    let tracking = app.tracking_id(&ns, "apps/Deployment", "web");
    assert_eq!(web["metadata"]["annotations"][TRACKING_ANNOTATION], tracking.as_str(), "{web:#}");
    let last_applied: Value =
        serde_json::from_str(web["metadata"]["annotations"][LAST_APPLIED].as_str().expect("last-applied")).unwrap();
    assert_eq!(last_applied["metadata"]["annotations"][TRACKING_ANNOTATION], tracking.as_str(), "{last_applied:#}");
    assert_eq!(last_applied["spec"]["replicas"], 5);
    assert!(web["metadata"]["labels"].get("app.kubernetes.io/instance").is_none(), "no instance label: {web:#}");
    assert_eq!(managers(&web), vec![owner(FIELD_MANAGER, "Update")], "{web:#}");
    assert_eq!(replica_managers(&web), vec![owner(FIELD_MANAGER, "Update")]);

    let stored = sync_without_replicas(&ns, &app, 3).await;
    eprintln!("default sync of a commit without replicas: stored {stored:?}");
    assert_eq!(stored.first(), Some(&1), "the sync itself stored 1: {stored:?}");
}

/// Fact 2: with `ServerSideApply=true` a sync is a server-side apply as `argocd-controller`
/// (Apply), no last-applied annotation, and it is forced: a `kubectl patch` of replicas is
/// overwritten and loses its claim. Removing replicas from Git then drops the workload to 1.
#[tokio::test]
async fn server_side_sync_is_a_forced_apply_as_argocd_controller() {
    let ns = TestNamespace::new("argo-ssa").await;
    let app = ArgoApp::synced_server_side(&ns, &[deployment_manifest("web", Some(5))]).await;
    let web = ns.deployment_value("web").await;
    capture_fixture("argocd-server-side-deployment", &web);
    assert_eq!(managers(&web), vec![owner(FIELD_MANAGER, "Apply")], "{web:#}");
    assert_eq!(replica_managers(&web), vec![owner(FIELD_MANAGER, "Apply")]);
    assert!(web["metadata"]["annotations"].get(LAST_APPLIED).is_none(), "{web:#}");
    let tracking = app.tracking_id(&ns, "apps/Deployment", "web");
    assert_eq!(web["metadata"]["annotations"][TRACKING_ANNOTATION], tracking.as_str());

    let patched = ns.kubectl(&["patch", "deployment", "web", "--type=merge", "-p", r#"{"spec":{"replicas":3}}"#], None);
    assert_success(&patched, "kubectl patch");
    assert!(replica_managers(&ns.deployment_value("web").await).contains(&owner("kubectl-patch", "Update")));
    let since = ns.resource_version("web").await;
    app.sync().await;
    let stored = ns.replicas_stored_since("web", &since).await;
    let web = ns.deployment_value("web").await;
    eprintln!("server-side sync over a kubectl patch of 3: stored {stored:?}, owners {:?}", replica_managers(&web));
    assert_eq!((stored.last(), replica_managers(&web)), (Some(&5), vec![owner(FIELD_MANAGER, "Apply")]));

    let stored = sync_without_replicas(&ns, &app, 3).await;
    eprintln!("server-side sync of a commit without replicas: stored {stored:?}");
    assert_eq!(stored.first(), Some(&1), "the sync itself stored 1: {stored:?}");
}

/// `web` created by `kubectl apply` (client-side, 5) with an HPA (3..10) in charge, then
/// adopted by an Application with `options` whose Git has it without replicas, synced once:
/// for each version that sync stored, its replicas and their owners; and the appliers after.
async fn first_server_side_sync_of_a_kubectl_applied_object(
    prefix: &str,
    options: Value,
) -> (Vec<(i64, Vec<String>)>, Vec<(String, String, Option<String>)>) {
    let ns = TestNamespace::new(prefix).await;
    let created = ns.kubectl(&["apply", "-f", "-"], Some(&deployment_manifest("web", Some(5)).to_string()));
    assert_success(&created, "kubectl apply");
    hpa_at(&ns, "web", 3, 10).await;
    let next = [deployment_manifest("web", None), hpa_manifest("web", "Deployment", "web", 3, 10)];
    let since = ns.resource_version("web").await;
    let app = ArgoApp::new(&ns, json!({"syncPolicy": {"syncOptions": options}}), &next).await;
    app.sync().await;
    let history = replicas_and_owners(&ns.stored_since("web", &since).await);
    let web = ns.deployment_value("web").await;
    eprintln!("{prefix}: {options}: stored (replicas, owners) {history:?}; appliers after {:?}", managers(&web));
    capture_fixture(&format!("argocd-{}-deployment", prefix.trim_start_matches("argo-")), &web);
    (history, managers(&web))
}

/// The owners of replicas in stored order, each run of equal owners once.
fn owner_runs(history: &[(i64, Vec<String>)]) -> Vec<Vec<String>> {
    let mut runs: Vec<Vec<String>> = Vec::new();
    for (_, owners) in history {
        if runs.last() != Some(owners) {
            runs.push(owners.clone());
        }
    }
    runs
}

/// Who owned replicas, in order, through the first server-side sync of an object
/// `kubectl-client-side-apply` owned: that manager, then `argocd-controller`'s Apply entry
/// (kubectl's own client-side-apply upgrade, `csaupgrade`, moves every Update manager of the
/// last-applied annotation into it), then nobody (the re-sent apply leaves replicas out).
fn migrated_owner_runs() -> Vec<Vec<String>> {
    vec![vec!["kubectl-client-side-apply/Update".into()], vec![format!("{FIELD_MANAGER}/Apply")], vec![]]
}

/// Fact 3: the first server-side sync of an object `kubectl apply` created: Argo CD's
/// client-side-apply migration (on by default) first applies the new manifest client-side as
/// `kubectl-client-side-apply` (its three-way merge already stores 1), then kubectl's apply code
/// moves that entry into `argocd-controller`'s Apply entry and re-applies, forced, which leaves
/// replicas to nobody. The workload drops to 1 in that one sync.
#[tokio::test]
async fn first_server_side_sync_of_a_kubectl_applied_object_migrates_and_drops() {
    let (history, appliers) =
        first_server_side_sync_of_a_kubectl_applied_object("argo-migrate", json!(["ServerSideApply=true"])).await;
    assert_eq!(history.first().map(|h| h.0), Some(1), "the first patch stored 1: {history:?}");
    assert_eq!(owner_runs(&history), migrated_owner_runs(), "{history:?}");
    assert_eq!(appliers, vec![owner(FIELD_MANAGER, "Apply")], "migrated");
}

/// Fact 3c: the same with `ClientSideApplyMigration=false`: Argo CD's own migration step is
/// skipped (the first stored version still has 5, owned by `kubectl-client-side-apply`), but the
/// apply it runs is kubectl's, whose `csaupgrade` migrates that entry all the same and re-sends
/// the patch: 5 -> 1 in the same sync.
#[tokio::test]
async fn first_server_side_sync_without_argos_migration() {
    let options = json!(["ServerSideApply=true", "ClientSideApplyMigration=false"]);
    let (history, appliers) = first_server_side_sync_of_a_kubectl_applied_object("argo-nomigrate", options).await;
    assert_eq!(history.first().map(|h| h.0), Some(5), "the apply alone kept 5: {history:?}");
    assert_eq!(history.iter().map(|h| h.0).min(), Some(1), "then dropped in the same sync: {history:?}");
    assert_eq!(owner_runs(&history), migrated_owner_runs(), "{history:?}");
    assert_eq!(appliers, vec![owner(FIELD_MANAGER, "Apply")], "migrated all the same");
}

/// Fact 3b: an object Argo CD synced client-side, its Application switched to
/// `ServerSideApply=true`, Git unchanged (replicas 5): what the switch writes, version by
/// version, and who owns replicas after it.
#[tokio::test]
async fn switching_an_application_to_server_side_apply() {
    let ns = TestNamespace::new("argo-switch").await;
    let app = ArgoApp::new(&ns, json!({}), &[deployment_manifest("web", Some(5))]).await;
    app.sync().await;
    hpa_at(&ns, "web", 3, 10).await;
    app.set_spec(json!({"syncPolicy": {"syncOptions": ["ServerSideApply=true"]}})).await;
    let since = ns.resource_version("web").await;
    app.sync().await;
    let history = replicas_and_owners(&ns.stored_since("web", &since).await);
    let web = ns.deployment_value("web").await;
    eprintln!("switch to server-side, replicas still in Git: {history:?}; managers after {:?}", managers(&web));
    assert!(history.iter().all(|h| h.0 == 5), "kept 5: {history:?}");
    capture_fixture("argocd-switched-deployment", &web);

    let stored = sync_without_replicas(&ns, &app, 3).await;
    eprintln!("then a commit without replicas: stored {stored:?}");
    assert_eq!(stored.first(), Some(&1), "{stored:?}");
}

/// The Deployment `web` at 5 in Git, synced by an Application with `spec`, scaled to 7 by an
/// HPA (min 7); then a commit without replicas (and with the HPA) is synced. Returns every
/// count stored by that sync.
async fn hpa_at_seven_then_replicas_removed(prefix: &str, spec: Value) -> Vec<i64> {
    let ns = TestNamespace::new(prefix).await;
    let app = ArgoApp::new(&ns, spec, &[deployment_manifest("web", Some(5))]).await;
    app.sync().await;
    let stored = sync_without_replicas(&ns, &app, 7).await;
    eprintln!("{prefix}: {spec}: stored {stored:?}", spec = app.application().await["spec"]);
    stored
}

fn ignore_replicas(group: Option<&str>) -> Value {
    let mut rule = json!({"kind": "Deployment", "jsonPointers": ["/spec/replicas"]});
    if let Some(group) = group {
        rule["group"] = json!(group);
    }
    json!([rule])
}

/// Fact 4: `ignoreDifferences` on /spec/replicas alone changes the diff, not the sync: the
/// commit without replicas still drops the workload from the HPA's 7 to 1.
#[tokio::test]
async fn ignore_differences_alone_still_sends_gits_replicas() {
    let stored =
        hpa_at_seven_then_replicas_removed("argo-ignore", json!({"ignoreDifferences": ignore_replicas(Some("apps"))}))
            .await;
    assert_eq!(stored.first(), Some(&1), "{stored:?}");
}

/// Fact 5: with `RespectIgnoreDifferences=true` the live value of an ignored field is copied
/// into what is applied: nothing drops, client-side and server-side.
#[tokio::test]
async fn respect_ignore_differences_keeps_the_live_count() {
    for (prefix, options) in [
        ("argo-respect-csa", json!(["RespectIgnoreDifferences=true"])),
        ("argo-respect-ssa", json!(["RespectIgnoreDifferences=true", "ServerSideApply=true"])),
    ] {
        let spec = json!({"ignoreDifferences": ignore_replicas(Some("apps")), "syncPolicy": {"syncOptions": options}});
        let stored = hpa_at_seven_then_replicas_removed(prefix, spec).await;
        assert!(stored.iter().all(|&r| r == 7), "{prefix}: kept 7: {stored:?}");
    }
}

/// Fact 6: a rule without `group` does not match `apps` Deployments (argo-cd#28590): with
/// `RespectIgnoreDifferences=true` the commit without replicas still drops to 1.
#[tokio::test]
async fn an_ignore_rule_without_group_does_not_match_deployments() {
    let spec = json!({
        "ignoreDifferences": ignore_replicas(None),
        "syncPolicy": {"syncOptions": ["RespectIgnoreDifferences=true"]},
    });
    let stored = hpa_at_seven_then_replicas_removed("argo-nogroup", spec).await;
    assert_eq!(stored.first(), Some(&1), "{stored:?}");
}

/// When `argocd-controller` last wrote the object (its entry's time, to the second).
fn applied_at(object: &Value) -> jiff::Timestamp {
    let entries = object["metadata"]["managedFields"].as_array().unwrap();
    let entry = entries.iter().find(|e| e["manager"] == FIELD_MANAGER).expect("argocd-controller's entry");
    entry["time"].as_str().unwrap().parse().unwrap()
}

/// Fact 7: `automated.selfHeal` with replicas in Git fights the HPA: Git says 7, the HPA (5..5)
/// scales to 5, Argo CD puts 7 back, again and again.
#[tokio::test]
async fn self_heal_with_replicas_in_git_fights_the_hpa() {
    let ns = TestNamespace::new("argo-selfheal").await;
    let app = ArgoApp::new(&ns, json!({}), &[deployment_manifest("web", Some(7))]).await;
    app.sync().await;
    let since = ns.resource_version("web").await;
    app.set_spec(json!({"syncPolicy": {"automated": {"selfHeal": true}}})).await;
    ns.apply("kubectl", &hpa_manifest("web", "Deployment", "web", 5, 5)).await;
    let reverts = eventually(Duration::from_secs(180), "Argo CD to revert the HPA four times", || async {
        let versions = ns.stored_since("web", &since).await;
        let reverts: Vec<jiff::Timestamp> = versions
            .windows(2)
            .filter(|w| (spec_replicas(&w[0]), spec_replicas(&w[1])) == (Some(5), Some(7)))
            .map(|w| applied_at(&w[1]))
            .collect();
        (reverts.len() >= 4).then_some(reverts)
    })
    .await;
    capture_fixture("argocd-application-self-heal", &app.application().await);
    let warned = |report: &Value| report["workloads"][0]["warnings"].to_string().contains("with selfHeal");
    let (report, _) = plugin_json(&ns, &admin_kubeconfig(), &["check", "deploy/web"]);
    assert!(warned(&report), "check warns of the fight: {report:#}");
    app.set_spec(json!({"syncPolicy": null})).await;
    let (report, _) = plugin_json(&ns, &admin_kubeconfig(), &["check", "deploy/web"]);
    assert!(!warned(&report), "automated sync off, no warning: {report:#}");
    let gaps: Vec<i64> = reverts.windows(2).map(|w| w[1].as_second() - w[0].as_second()).collect();
    eprintln!("selfHeal against an HPA at 5 with 7 in Git: reverts to 7 at {reverts:?}, {gaps:?} s apart");
    // The self-heal backoff, 2 s x 3^n: measured 2, 6, 18 s apart on a quiet machine. Each gap
    // also holds the HPA's next scale, which load delays, so only the backoff's floor is held
    // (the times are to the second).
    for (gap, backoff) in gaps.iter().zip([2, 6, 18]) {
        assert!(*gap >= backoff - 1, "a revert came sooner than the self-heal backoff allows: gaps {gaps:?}");
    }
}

/// The record `strip --pause` leaves on the Application (src/core/tools/pause.rs).
const AUTOMATED_RECORD: &str = "hpa-migrate.io/automated-sync-from";

/// Fact 12, the pause: `web` at 5 in Git, an HPA (3..10) in charge, the Application syncing
/// automatically (`automated: {}`, then with `selfHeal`). `strip --pause` takes `automated` off
/// (recorded exactly) and strips; a commit without replicas, refreshed, is seen (OutOfSync at
/// that commit) and not applied; `resume` puts `automated` back exactly, the controller syncs the
/// commit by itself, and every stored version kept 5. The second resumes the workloads `-l`
/// selects.
#[tokio::test]
async fn paused_automated_sync_applies_nothing_and_resume_keeps_the_count() {
    let labelled = |replicas| {
        let mut web = deployment_manifest("web", replicas);
        web["metadata"]["labels"] = json!({"app": "web"});
        web
    };
    let resumes: [&[&str]; 2] = [&["resume", "deploy/web"], &["resume", "-l", "app=web"]];
    for ((prefix, automated), resume) in
        [("argo-pause", json!({})), ("argo-pause-heal", json!({"selfHeal": true}))].into_iter().zip(resumes)
    {
        let ns = TestNamespace::new(prefix).await;
        let app = ArgoApp::new(&ns, json!({}), &[labelled(Some(5))]).await;
        app.sync().await;
        app.set_spec(json!({"syncPolicy": {"automated": automated}})).await;
        hpa_at(&ns, "web", 3, 10).await;
        let since = ns.resource_version("web").await;

        let (report, code) = plugin_json(&ns, &admin_kubeconfig(), &["check", "deploy/web"]);
        let next = report["workloads"][0]["next"].as_str().unwrap_or_default().to_string();
        assert_eq!((code, next.ends_with(" --pause")), (1, true), "check advises the pause: {report:#}");
        let (report, code, err) = strip_as(&ns, &admin_kubeconfig(), &["deploy/web", "--pause"]);
        assert_eq!(code, 0, "{report:#}\n{err}");
        let shown = format!("Argo CD Application argocd/{}: spec.syncPolicy (resume puts it back)", app.name);
        assert!(err.contains(&shown), "the diff shows the pause: {err}");
        eprintln!("{prefix}: strip --pause showed:\n{err}");
        let message = report["results"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("automated sync off"), "{report:#}");
        let paused = app.application().await;
        assert_eq!(paused.pointer("/spec/syncPolicy/automated"), None, "{paused:#}");
        let record = paused["metadata"]["annotations"][AUTOMATED_RECORD].as_str().expect("the record");
        assert_eq!(serde_json::from_str::<Value>(record).unwrap(), automated);

        let commit = app.commit(&[labelled(None), hpa_manifest("web", "Deployment", "web", 3, 10)]);
        app.refresh().await;
        eventually(Duration::from_secs(120), "Argo CD to see the commit", || async {
            let status = app.application().await["status"]["sync"].clone();
            (status["revision"] == commit.as_str() && status["status"] == "OutOfSync").then_some(())
        })
        .await;
        // Automated sync (and self-heal) would start within seconds of the comparison.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let operation = app.application().await.pointer("/status/operationState/syncResult/revision").cloned();
        assert_ne!(operation, Some(json!(commit)), "{prefix}: nothing synced while paused");
        let stored_while_paused = ns.replicas_stored_since("web", &since).await;

        let resumed = ns.plugin(&admin_kubeconfig(), resume);
        assert_success(&resumed, "resume");
        assert!(stdout(&resumed).contains("syncs automatically again"), "{}", stdout(&resumed));
        let resumed = app.application().await;
        assert_eq!(resumed["spec"]["syncPolicy"]["automated"], automated, "exactly what it was");
        assert!(resumed["metadata"]["annotations"].get(AUTOMATED_RECORD).is_none(), "{resumed:#}");
        app.refresh().await;
        let state = eventually(Duration::from_secs(180), "Argo CD to sync the commit by itself", || async {
            let state = app.application().await.pointer("/status/operationState").cloned()?;
            let ours = state.pointer("/syncResult/revision") == Some(&json!(commit));
            (ours && state["phase"] == "Succeeded").then_some(state)
        })
        .await;
        let stored = ns.replicas_stored_since("web", &since).await;
        let web = ns.deployment_value("web").await;
        eprintln!(
            "{prefix}: automated {automated}: stored while paused {stored_while_paused:?}; after resume, synced by {} \
             and stored {stored:?}; owners {:?}",
            state["operation"]["initiatedBy"],
            replica_managers(&web)
        );
        assert!(stored.iter().all(|&r| r == 5), "{prefix}: kept 5 in every stored version: {stored:?}");
        assert_eq!(state["operation"]["initiatedBy"]["automated"], true, "{state:#}");
        assert!(!replica_managers(&web).iter().any(|(m, _, _)| m == FIELD_MANAGER), "{web:#}");
    }
}
