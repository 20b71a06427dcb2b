//! The real Flux helm-controller (v1.6.4, which embeds the Helm 4 SDK; run beside the plane by
//! xtask/src/helm_controller.rs) and `.spec.replicas`: what it writes on install and upgrade,
//! what its drift detection, `driftDetection.ignore` and `suspend` do, and what it does with a
//! release record edited outside it. Each test asserts what was measured (so a changed
//! controller fails it), prints the figures, and docs/measured/helm-controller.md writes them
//! down.
//!
//! No source-controller runs: the chart under tests/charts/ is packed and served from
//! 127.0.0.1 (gitops.rs), and a HelmChart's status is written as source-controller writes it;
//! the HelmRelease names that HelmChart in `spec.chartRef`, so helm-controller downloads the
//! tarball and checks its digest. Its waits are off (`disableWait`): the plane runs no kubelet,
//! so no pod ever gets ready.

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::common::*;
use crate::gitops::{announce_artifact, resource, tar_gz};
use crate::tools::{chart, decode_release_record, release_record};

/// `helm create`'s autoscaling toggle: replicas 5 while off; on, no replicas and an HPA.
const CHART: &str = "autoscaled";
/// The HelmRelease, its Helm release and the Deployment are all named this.
const RELEASE: &str = "web";
const FIELD_MANAGER: &str = "helm-controller";
/// What helm-controller logs when the stored release no longer matches its digest in history.
const UNMANAGED_LOG: &str = "release not managed by controller";
/// kustomize-controller's pause, which helm-controller does not read.
const PAUSE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/reconcile";
/// What `strip --pause-flux` leaves on a HelmRelease it suspended.
const SUSPENDED_FROM: &str = "hpa-migrate.io/suspended-from";

/// The chart directory as `helm package` lays it out: a tar.gz whose entries sit under
/// `<chart>/`.
fn pack_chart(name: &str) -> Vec<u8> {
    let dir = std::path::PathBuf::from(chart(name));
    let mut pending = vec![dir.clone()];
    let mut files = Vec::new();
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { pending.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    tar_gz(files.into_iter().map(|path| {
        let inside = std::path::Path::new(name).join(path.strip_prefix(&dir).unwrap());
        (inside.to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
    }))
}

/// The HelmRelease `web` of the test's namespace, installing the chart into that namespace.
struct FluxHelmRelease<'a> {
    ns: &'a TestNamespace,
}

impl<'a> FluxHelmRelease<'a> {
    /// The chart's HelmChart with its artifact, then the HelmRelease with `values` (and `spec`'s
    /// keys over the defaults: an hour's interval, so that only the test's changes and reconcile
    /// requests make it act; waits off), installed as revision 1.
    async fn install(ns: &'a TestNamespace, values: Value, spec: Value) -> FluxHelmRelease<'a> {
        Self::deploy(ns, values, spec, 1).await
    }

    /// As `install`, waiting for `revision` (a release already in storage is taken over with an
    /// upgrade).
    async fn deploy(ns: &'a TestNamespace, values: Value, spec: Value, revision: i64) -> FluxHelmRelease<'a> {
        let charts = Api::<DynamicObject>::namespaced_with(
            ns.client.clone(),
            &ns.name,
            &resource("source.toolkit.fluxcd.io", "v1", "HelmChart", "helmcharts"),
        );
        let helm_chart: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmChart",
            "metadata": {"name": CHART},
            "spec": {"chart": CHART, "sourceRef": {"kind": "HelmRepository", "name": "charts"}, "interval": "60m"}
        }))
        .unwrap();
        charts.create(&PostParams::default(), &helm_chart).await.unwrap_or_else(|e| panic!("creating HelmChart: {e}"));
        let path = format!("helmchart/{}/{CHART}/{CHART}-0.1.0.tgz", ns.name);
        announce_artifact(&charts, CHART, &path, pack_chart(CHART), "0.1.0").await;

        let mut full_spec = json!({
            "interval": "60m", "releaseName": RELEASE,
            "chartRef": {"kind": "HelmChart", "name": CHART},
            "install": {"disableWait": true}, "upgrade": {"disableWait": true},
            "values": values
        });
        for (key, value) in spec.as_object().unwrap() {
            full_spec[key] = value.clone();
        }
        let release = FluxHelmRelease { ns };
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": RELEASE}, "spec": full_spec
        }))
        .unwrap();
        release
            .api()
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("creating HelmRelease: {e}"));
        release.wait_revision(revision).await;
        release
    }

    fn api(&self) -> Api<DynamicObject> {
        let resource = resource("helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases");
        Api::namespaced_with(self.ns.client.clone(), &self.ns.name, &resource)
    }

    async fn object(&self) -> Value {
        serde_json::to_value(self.api().get(RELEASE).await.unwrap()).unwrap()
    }

    /// A merge patch of the spec (what a commit changing the HelmRelease in Git leads to).
    async fn patch_spec(&self, spec: Value) {
        self.api()
            .patch(RELEASE, &PatchParams::default(), &Patch::Merge(&json!({"spec": spec})))
            .await
            .unwrap_or_else(|e| panic!("patching the HelmRelease spec: {e}"));
    }

    /// Waits until the HelmRelease is Ready at its generation with release `revision` deployed
    /// as the latest in its history.
    async fn wait_revision(&self, revision: i64) -> Value {
        self.wait_for(&format!("HelmRelease {RELEASE} to deploy revision {revision}"), |object| {
            let latest = &object["status"]["history"][0];
            ready(object) && latest["version"] == revision && latest["status"] == "deployed"
        })
        .await
    }

    /// The chart's autoscaling toggle committed (with `spec`'s other changes, if any) and
    /// deployed as `revision`: `.spec.replicas` of every version of the Deployment stored
    /// meanwhile, and the HelmRelease then.
    async fn toggle(&self, spec: Value, revision: i64) -> (Vec<i64>, Value) {
        let before = self.ns.resource_version(RELEASE).await;
        let mut change = json!({"values": {"autoscaling": {"enabled": true}}});
        for (key, value) in spec.as_object().unwrap() {
            change[key] = value.clone();
        }
        self.patch_spec(change).await;
        let object = self.wait_revision(revision).await;
        (self.ns.replicas_stored_since(RELEASE, &before).await, object)
    }

    /// `flux reconcile helmrelease web`: the request annotation, then the controller's answer
    /// (it records the request as handled at the end of the reconcile it ran for it, whatever
    /// that did; suspended too). Returns the HelmRelease then.
    async fn reconcile(&self) -> Value {
        // Nanoseconds, so that two requests in the same second differ.
        let requested = jiff::Timestamp::now().to_string();
        let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": requested}}});
        self.api()
            .patch(RELEASE, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("requesting a reconcile: {e}"));
        self.wait_for(&format!("HelmRelease {RELEASE} to handle the request {requested}"), |object| {
            object["status"]["lastHandledReconcileAt"] == requested.as_str()
                && object["status"]["observedGeneration"] == object["metadata"]["generation"]
        })
        .await
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let object = self.object().await;
            if done(&object) {
                return object;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after 120 s waiting for {what}; status: {:#}",
                object["status"]
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The stored Helm release of `revision`, decoded.
    fn record(&self, revision: u32) -> Value {
        decode_release_record(&release_record(self.ns, "secret", RELEASE, revision))
    }
}

fn ready(object: &Value) -> bool {
    object["status"]["observedGeneration"] == object["metadata"]["generation"]
        && object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The Deployment's `replicas` line in a stored release manifest, if it has one.
fn manifest_replicas(record: &Value) -> Option<String> {
    let manifest = record["manifest"].as_str().expect("a release record has a manifest");
    manifest.lines().find(|l| l.trim_start().starts_with("replicas:")).map(|l| l.trim().to_string())
}

fn kubectl_scale(ns: &TestNamespace, replicas: u32) {
    let output = ns.kubectl(&["scale", &format!("deploy/{RELEASE}"), &format!("--replicas={replicas}")], None);
    assert_success(&output, "kubectl scale");
}

/// The messages helm-controller logged about the HelmRelease of `ns` that contain `text`.
fn controller_logged(ns: &TestNamespace, text: &str) -> Vec<String> {
    let log = std::fs::read_to_string(cluster().log_file(FIELD_MANAGER)).unwrap_or_default();
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["namespace"] == ns.name.as_str())
        .filter_map(|entry| entry["msg"].as_str().map(str::to_string))
        .filter(|msg| msg.contains(text))
        .collect()
}

fn owners(object: &Value) -> Vec<(String, String, Option<String>)> {
    replica_managers(object)
}

fn helm_controller_applies() -> Vec<(String, String, Option<String>)> {
    vec![(FIELD_MANAGER.to_string(), "Apply".to_string(), None)]
}

/// Install and upgrade: server-side apply as `helm-controller`, forced (an upgrade takes back
/// replicas that `kubectl scale` had moved to its own entry), and the release record says
/// `ssa`.
#[tokio::test]
async fn install_and_upgrade_apply_server_side_forced_as_helm_controller() {
    let ns = TestNamespace::new("hc-apply").await;
    let release = FluxHelmRelease::install(&ns, json!({}), json!({})).await;
    let deployment = ns.deployment_value(RELEASE).await;
    let installed = release.record(1);
    println!(
        "install: replicas {:?}, owners of replicas {:?}, record apply_method {}, managedFields {:#}",
        spec_replicas(&deployment),
        owners(&deployment),
        installed["apply_method"],
        deployment["metadata"]["managedFields"]
    );
    assert_eq!(spec_replicas(&deployment), Some(5));
    assert_eq!(owners(&deployment), helm_controller_applies());
    assert_eq!(installed["apply_method"], "ssa");
    capture_fixture("helm-controller-deployment", &deployment);
    capture_fixture("helm-controller-release-record", &release_record(&ns, "secret", RELEASE, 1));
    capture_fixture("helm-controller-helmrelease", &release.object().await);

    kubectl_scale(&ns, 3);
    let scaled = ns.deployment_value(RELEASE).await;
    println!("after kubectl scale: owners of replicas {:?}", owners(&scaled));
    assert_eq!(owners(&scaled), vec![("kubectl".to_string(), "Update".to_string(), Some("scale".to_string()))]);

    let before = ns.resource_version(RELEASE).await;
    release.patch_spec(json!({"values": {"image": "registry.invalid/app:2"}})).await;
    release.wait_revision(2).await;
    let upgraded = ns.deployment_value(RELEASE).await;
    let stored = ns.replicas_stored_since(RELEASE, &before).await;
    println!(
        "upgrade rendering replicas 5 over a kubectl scale to 3: stored {stored:?}, owners {:?}, record apply_method {}",
        owners(&upgraded),
        release.record(2)["apply_method"]
    );
    assert_eq!(spec_replicas(&upgraded), Some(5), "the upgrade forced replicas back");
    assert_eq!(owners(&upgraded), helm_controller_applies());
    assert_eq!(release.record(2)["apply_method"], "ssa", "upgrades keep the release's apply method");
}

/// The chart's autoscaling toggle (no replicas, an HPA, in one upgrade): server-side apply
/// drops the field it alone owned, so the Deployment goes 5 -> 1 before the new HPA acts.
#[tokio::test]
async fn autoscaling_toggle_upgrade_drops_the_workload_to_one() {
    let ns = TestNamespace::new("hc-toggle").await;
    let release = FluxHelmRelease::install(&ns, json!({}), json!({})).await;
    let (stored, _) = release.toggle(json!({}), 2).await;
    println!("autoscaling toggle upgrade: stored replicas {stored:?}");
    assert_eq!(stored.iter().min(), Some(&1), "dropped to 1 in a stored version: {stored:?}");
}

/// `driftDetection.mode: enabled`: a reconcile puts back replicas scaled by hand (through
/// `/scale`, as the HPA writes them), in place, without a new release.
#[tokio::test]
async fn drift_detection_reverts_replicas_scaled_by_hand() {
    let ns = TestNamespace::new("hc-drift").await;
    let release = FluxHelmRelease::install(&ns, json!({}), json!({"driftDetection": {"mode": "enabled"}})).await;
    kubectl_scale(&ns, 3);
    let before = ns.resource_version(RELEASE).await;
    let object = release.reconcile().await;
    let corrected = ns.deployment_value(RELEASE).await;
    let stored = ns.replicas_stored_since(RELEASE, &before).await;
    println!(
        "drift detection after kubectl scale to 3: stored {stored:?}, owners {:?}, history versions {:?}",
        owners(&corrected),
        versions(&object)
    );
    assert_eq!(spec_replicas(&corrected), Some(5), "drift correction put replicas back");
    assert_eq!(versions(&object), vec![1], "corrected in place, no new release");
    assert_eq!(owners(&corrected), vec![(FIELD_MANAGER.to_string(), "Update".to_string(), None)]);
    capture_fixture("helm-controller-drift-corrected-deployment", &corrected);

    // The correction's Update entry is not the upgrade's Apply entry: the toggle leaves it.
    let (stored, _) = release.toggle(json!({}), 2).await;
    let toggled = ns.deployment_value(RELEASE).await;
    println!("toggle after a drift correction: stored {stored:?}, owners {:?}", owners(&toggled));
    assert_kept(&stored, &toggled, 5);
}

/// Drift detection against an HPA: the HPA's scale (through `/scale`) is drift too, and a
/// reconcile puts the chart's count back over it until the HPA's next sync.
#[tokio::test]
async fn drift_detection_reverts_the_hpas_scale() {
    let ns = TestNamespace::new("hc-drift-hpa").await;
    let release = FluxHelmRelease::install(&ns, json!({}), json!({"driftDetection": {"mode": "enabled"}})).await;
    rescaling_hpa(&ns, &hpa_manifest(RELEASE, "Deployment", RELEASE, 7, 10), RELEASE, 7).await;
    let before = ns.resource_version(RELEASE).await;
    release.reconcile().await;
    let stored = ns.replicas_stored_since(RELEASE, &before).await;
    println!("drift detection with the HPA at 7: stored {stored:?}");
    // The Deployment controller's status writes at 7 may come first.
    assert!(stored.contains(&5), "the reconcile put the chart's 5 over the HPA's 7: {stored:?}");
}

/// `driftDetection.ignore` of `/spec/replicas`: a reconcile leaves replicas scaled by hand; an
/// upgrade still renders and forces them.
#[tokio::test]
async fn drift_detection_ignoring_replicas_leaves_them_until_an_upgrade() {
    let ns = TestNamespace::new("hc-ignore").await;
    let drift = json!({"mode": "enabled", "ignore": [{"paths": ["/spec/replicas"], "target": {"kind": "Deployment"}}]});
    let release = FluxHelmRelease::install(&ns, json!({}), json!({"driftDetection": drift})).await;
    kubectl_scale(&ns, 3);
    let before = ns.resource_version(RELEASE).await;
    release.reconcile().await;
    let stored = ns.replicas_stored_since(RELEASE, &before).await;
    println!("ignored replicas, reconcile after kubectl scale to 3: stored {stored:?}");
    ns.assert_kept_since(RELEASE, &before, 3).await;

    let before = ns.resource_version(RELEASE).await;
    release.patch_spec(json!({"values": {"image": "registry.invalid/app:2"}})).await;
    release.wait_revision(2).await;
    let stored = ns.replicas_stored_since(RELEASE, &before).await;
    let upgraded = ns.deployment_value(RELEASE).await;
    println!("ignored replicas, upgrade rendering 5: stored {stored:?}, owners {:?}", owners(&upgraded));
    assert_eq!(spec_replicas(&upgraded), Some(5), "the ignore rule does not reach upgrades");
}

/// `spec.suspend: true`: a changed HelmRelease is marked observed and nothing is applied; the
/// upgrade held back runs on resume.
#[tokio::test]
async fn suspended_release_applies_no_upgrade_until_resumed() {
    let ns = TestNamespace::new("hc-suspend").await;
    let release = FluxHelmRelease::install(&ns, json!({}), json!({})).await;
    release.patch_spec(json!({"suspend": true})).await;
    release.reconcile().await;
    let before = ns.resource_version(RELEASE).await;
    release.patch_spec(json!({"values": {"autoscaling": {"enabled": true}}})).await;
    let object = release.reconcile().await;
    let stored = ns.replicas_stored_since(RELEASE, &before).await;
    println!("suspended, toggle committed: stored {stored:?}, history versions {:?}", versions(&object));
    assert_eq!(versions(&object), vec![1], "no upgrade while suspended");
    ns.assert_kept_since(RELEASE, &before, 5).await;

    release.patch_spec(json!({"suspend": false})).await;
    release.wait_revision(2).await;
    let stored = ns.replicas_stored_since(RELEASE, &before).await;
    println!("resumed: stored {stored:?}");
    assert_eq!(stored.iter().min(), Some(&1), "the held-back toggle dropped it on resume: {stored:?}");
}

/// `strip --method helm-release` edits the stored release: helm-controller finds its digest
/// changed ("not managed by controller"), clears its history and upgrades, which writes a new
/// record with replicas and forces them onto the Deployment again.
#[tokio::test]
async fn release_record_stripped_outside_is_upgraded_back() {
    let ns = TestNamespace::new("hc-record").await;
    let release = FluxHelmRelease::install(&ns, json!({}), json!({})).await;
    rescaling_hpa(&ns, &hpa_manifest(RELEASE, "Deployment", RELEASE, 7, 10), RELEASE, 7).await;
    let (report, code, stderr) =
        strip_as(&ns, &admin_kubeconfig(), &[&format!("deploy/{RELEASE}"), "--method", "helm-release"]);
    println!("strip --method helm-release: exit {code}, {report:#}\n{stderr}");
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(manifest_replicas(&release.record(1)), None, "strip took replicas out of the stored release");

    let before = ns.resource_version(RELEASE).await;
    let object = release.reconcile().await;
    let upgraded = release.record(2);
    let history = versions(&object);
    let logged = controller_logged(&ns, UNMANAGED_LOG);
    let after = ns.deployment_value(RELEASE).await;
    let stored = ns.replicas_stored_since(RELEASE, &before).await;
    println!(
        "reconcile after the record edit: history versions {history:?}, logged {logged:?}, \
         new record replicas {:?}, stored {stored:?}, owners {:?}",
        manifest_replicas(&upgraded),
        owners(&after)
    );
    assert_eq!(logged, vec![format!("{UNMANAGED_LOG}: release not observed to be made for object")]);
    assert_eq!(history, vec![2], "history cleared, then the upgrade");
    assert_eq!(manifest_replicas(&upgraded).as_deref(), Some("replicas: 5"));
    assert!(stored.contains(&5), "the upgrade forced 5 over the HPA's 7: {stored:?}");
}

/// The handover that holds on helm-controller v1.6 (Helm 4, server-side): with the
/// HelmRelease suspended, `strip` takes `f:replicas` out of helm-controller's managedFields
/// entry; the toggle then applies without replicas and the count stays.
#[tokio::test]
async fn managed_fields_strip_while_suspended_keeps_the_count_through_the_toggle() {
    let ns = TestNamespace::new("hc-handover").await;
    let (release, methods) = install_and_strip(&ns, json!({}), true).await;
    assert_eq!(methods, json!(["managed-fields"]));

    let (stored, _) = release.toggle(json!({"suspend": false}), 2).await;
    let after = ns.deployment_value(RELEASE).await;
    println!("toggle after the strip: stored {stored:?}, owners {:?}", owners(&after));
    assert_kept(&stored, &after, 5);
}

/// The same managed-fields strip on a server-side release, resumed before the values change:
/// the reconcile finds the release in sync (the record was not touched) and applies nothing,
/// and the toggle after it keeps the count.
#[tokio::test]
async fn managed_fields_strip_survives_a_resume_before_the_toggle() {
    let ns = TestNamespace::new("hc-resume-first").await;
    let (release, methods) = install_and_strip(&ns, json!({}), true).await;
    assert_eq!(methods, json!(["managed-fields"]));
    let before = ns.resource_version(RELEASE).await;
    release.patch_spec(json!({"suspend": false})).await;
    let object = release.reconcile().await;
    let stored = ns.replicas_stored_since(RELEASE, &before).await;
    println!("resumed before the toggle: stored {stored:?}, history versions {:?}", versions(&object));
    assert_eq!(versions(&object), vec![1], "in sync: no upgrade");
    assert_kept(&stored, &ns.deployment_value(RELEASE).await, 5);

    let (stored, _) = release.toggle(json!({}), 2).await;
    println!("toggle after the resume: stored {stored:?}");
    assert_kept(&stored, &ns.deployment_value(RELEASE).await, 5);
}

/// `install.serverSideApply: false` (what releases made before Helm 4 have): a client-side
/// release (manager `helm-controller`, Update, record `csa`) whose upgrades keep that method.
/// Its three-way merge drops the workload on the toggle; with the release record stripped
/// while suspended (README's guide), the toggle keeps the count although the edited record
/// makes the controller call the release unmanaged.
#[tokio::test]
async fn client_side_release_keeps_its_count_when_the_record_is_stripped_while_suspended() {
    let client_side = json!({"install": {"disableWait": true, "serverSideApply": false}});
    let control = TestNamespace::new("hc-csa-control").await;
    let release = FluxHelmRelease::install(&control, json!({}), client_side.clone()).await;
    let deployment = control.deployment_value(RELEASE).await;
    println!(
        "client-side install: owners {:?}, record apply_method {}",
        owners(&deployment),
        release.record(1)["apply_method"]
    );
    assert_eq!(owners(&deployment), vec![(FIELD_MANAGER.to_string(), "Update".to_string(), None)]);
    assert_eq!(release.record(1)["apply_method"], "csa");
    capture_fixture("helm-controller-csa-deployment", &deployment);
    let (stored, _) = release.toggle(json!({}), 2).await;
    println!(
        "client-side toggle, no strip: stored {stored:?}, record apply_method {}",
        release.record(2)["apply_method"]
    );
    assert_eq!(stored.iter().min(), Some(&1), "dropped to 1: {stored:?}");
    assert_eq!(release.record(2)["apply_method"], "csa", "upgrades keep the release's apply method");

    let ns = TestNamespace::new("hc-csa-strip").await;
    let (release, methods) = install_and_strip(&ns, client_side, true).await;
    assert_eq!(methods, json!(["managed-fields", "helm-release"]));

    let (stored, object) = release.toggle(json!({"suspend": false}), 2).await;
    let logged = controller_logged(&ns, UNMANAGED_LOG);
    println!(
        "client-side toggle after the strip: stored {stored:?}, history versions {:?}, logged {logged:?}",
        versions(&object)
    );
    assert_eq!(logged.len(), 1, "the edited record made it unmanaged: {logged:?}");
    assert_eq!(versions(&object), vec![2], "history cleared");
    assert_kept(&stored, &ns.deployment_value(RELEASE).await, 5);
}

/// The same strip of a client-side release, not suspended: the next reconcile (an interval, a
/// `flux reconcile`) finds the record edited, upgrades with the values still rendering
/// replicas and stores them again, so the toggle after it drops the workload to 1.
#[tokio::test]
async fn client_side_record_strip_is_undone_by_a_reconcile_before_the_toggle() {
    let ns = TestNamespace::new("hc-csa-undone").await;
    let client_side = json!({"install": {"disableWait": true, "serverSideApply": false}});
    let (release, methods) = install_and_strip(&ns, client_side, false).await;
    assert_eq!(methods, json!(["managed-fields", "helm-release"]));

    let object = release.reconcile().await;
    let rewritten = release.record(2);
    println!(
        "reconcile after the strip: history versions {:?}, new record replicas {:?}",
        versions(&object),
        manifest_replicas(&rewritten)
    );
    assert_eq!(versions(&object), vec![2], "unmanaged: history cleared, upgraded");
    assert_eq!(manifest_replicas(&rewritten).as_deref(), Some("replicas: 5"), "the record has replicas again");

    let (stored, _) = release.toggle(json!({}), 3).await;
    println!("toggle after that reconcile: stored {stored:?}");
    assert_eq!(stored.iter().min(), Some(&1), "the strip was undone, the toggle dropped it: {stored:?}");
}

/// The release installed with `spec`, an HPA (2 to 10, so it writes nothing) judged, the
/// HelmRelease suspended if `suspend`, then `strip deploy/web` with the methods it picks;
/// returns the release and those methods.
async fn install_and_strip(ns: &TestNamespace, spec: Value, suspend: bool) -> (FluxHelmRelease<'_>, Value) {
    let release = FluxHelmRelease::install(ns, json!({}), spec).await;
    judged_hpa(ns, &hpa_manifest(RELEASE, "Deployment", RELEASE, 2, 10)).await;
    if suspend {
        release.patch_spec(json!({"suspend": true})).await;
        release.reconcile().await;
    }
    let (report, code, stderr) = strip_as(ns, &admin_kubeconfig(), &[&format!("deploy/{RELEASE}")]);
    println!("strip (auto): exit {code}, {report:#}\n{stderr}");
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    (release, report["results"][0]["methods"].clone())
}

/// `strip --pause-flux` on what a HelmRelease deploys suspends the HelmRelease (helm-controller
/// ignores the annotation that pauses kustomize-controller); the values change that reaches it
/// meanwhile is held back, and `resume` puts back the suspend it had (none), after which the
/// toggle runs: every version of the Deployment stored from the strip on keeps the count.
#[tokio::test]
async fn pause_flux_suspends_the_helm_release_and_resume_puts_back_its_suspend() {
    let ns = TestNamespace::new("hc-pause").await;
    let release = FluxHelmRelease::install(&ns, json!({}), json!({})).await;
    judged_hpa(&ns, &hpa_manifest(RELEASE, "Deployment", RELEASE, 2, 10)).await;
    let before = ns.resource_version(RELEASE).await;
    let (report, code, stderr) = strip_as(&ns, &admin_kubeconfig(), &[&format!("deploy/{RELEASE}"), "--pause-flux"]);
    println!("strip --pause-flux: exit {code}, {report:#}\n{stderr}");
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    let message = report["results"][0]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(&format!("HelmRelease {}/{RELEASE} suspended", ns.name)), "{message}");
    let suspended = release.object().await;
    assert_eq!(suspended["spec"]["suspend"], true, "{:#}", suspended["spec"]);
    let deployment = ns.deployment_value(RELEASE).await;
    assert!(deployment["metadata"]["annotations"][PAUSE_ANNOTATION].is_null(), "no kustomize-controller pause");

    release.patch_spec(json!({"values": {"autoscaling": {"enabled": true}}})).await;
    let held_back = release.reconcile().await;
    assert_eq!(versions(&held_back), vec![1], "suspended: no upgrade");

    let output = ns.plugin(&admin_kubeconfig(), &["resume", &format!("deploy/{RELEASE}")]);
    assert_success(&output, "resume");
    println!("resume: {}", stdout(&output));
    assert!(stdout(&output).contains(&format!("resumed HelmRelease {}/{RELEASE}", ns.name)), "{}", stdout(&output));
    let resumed = release.wait_revision(2).await;
    assert_eq!(resumed["spec"].get("suspend"), None, "put back as it was: unset");
    assert!(resumed["metadata"]["annotations"][SUSPENDED_FROM].is_null(), "marker removed");
    let stored = ns.replicas_stored_since(RELEASE, &before).await;
    println!("strip, held-back toggle, resume: stored {stored:?}");
    assert_kept(&stored, &ns.deployment_value(RELEASE).await, 5);
}

/// A HelmRelease someone suspended before the strip stays suspended through `strip
/// --pause-flux` and `resume`: only who suspended it resumes it.
#[tokio::test]
async fn a_helm_release_suspended_before_the_strip_stays_suspended_after_resume() {
    let ns = TestNamespace::new("hc-user-suspend").await;
    let (release, _) = install_and_strip(&ns, json!({}), true).await;
    let (report, code, stderr) = strip_as(&ns, &admin_kubeconfig(), &[&format!("deploy/{RELEASE}"), "--pause-flux"]);
    let message = report["results"][0]["message"].as_str().unwrap_or_default();
    println!("strip --pause-flux of a suspended release: exit {code}, {message}\n{stderr}");
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert!(message.contains("is suspended already: left as it is"), "{message}");

    let output = ns.plugin(&admin_kubeconfig(), &["resume", &format!("deploy/{RELEASE}")]);
    assert_success(&output, "resume");
    println!("resume: {}", stdout(&output));
    assert!(stdout(&output).contains("not by strip --pause; left suspended"), "{}", stdout(&output));
    let object = release.object().await;
    assert_eq!(object["spec"]["suspend"], true);
    assert!(object["metadata"]["annotations"][SUSPENDED_FROM].is_null());
}

/// A release installed by the Helm 3 CLI (a record without `apply_method`, as helm-controller
/// up to v1.4 wrote them too), then given a HelmRelease: the controller finds it in storage
/// with no history of its own, calls it unmanaged and upgrades it, client-side; the toggle then
/// drops the workload to 1 by the three-way merge.
#[tokio::test]
async fn a_helm3_release_is_taken_over_and_stays_client_side() {
    let ns = TestNamespace::new("hc-helm3").await;
    crate::tools::Helm::v3(&ns).ok(&["install", RELEASE, &chart(CHART)]);
    let helm3_record = decode_release_record(&release_record(&ns, "secret", RELEASE, 1));
    assert_eq!(helm3_record.get("apply_method"), None, "Helm 3 records have no apply method");

    let release = FluxHelmRelease::deploy(&ns, json!({}), json!({}), 2).await;
    let taken_over = release.record(2);
    let deployment = ns.deployment_value(RELEASE).await;
    let logged = controller_logged(&ns, UNMANAGED_LOG);
    println!(
        "Helm 3 release taken over: logged {logged:?}, record v2 apply_method {}, owners {:?}",
        taken_over["apply_method"],
        owners(&deployment)
    );
    assert_eq!(logged, vec![format!("{UNMANAGED_LOG}: found existing release in storage")]);
    assert_eq!(taken_over["apply_method"], "csa");
    assert_eq!(owners(&deployment), vec![("helm".to_string(), "Update".to_string(), None)], "nothing to change");

    let (stored, _) = release.toggle(json!({}), 3).await;
    println!(
        "toggle of the taken-over release: stored {stored:?}, record v3 apply_method {}",
        release.record(3)["apply_method"]
    );
    assert_eq!(stored.iter().min(), Some(&1), "dropped to 1: {stored:?}");
}

/// Checks that every stored version kept `count` and the Deployment (as read after them) has
/// it.
fn assert_kept(stored: &[i64], deployment: &Value, count: i64) {
    assert!(stored.iter().all(|&r| r == count), "left {count} in a stored version: {stored:?}");
    assert_eq!(spec_replicas(deployment), Some(count), "kept {count}");
}

/// The release versions in the HelmRelease's `status.history`, newest first.
fn versions(object: &Value) -> Vec<i64> {
    object["status"]["history"].as_array().into_iter().flatten().filter_map(|s| s["version"].as_i64()).collect()
}
