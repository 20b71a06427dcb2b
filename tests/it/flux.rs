//! The real Flux kustomize-controller (v1.9.6, built from its Go module and started with the
//! plane) deploying commits of the local Git of `gitops.rs`. Each story is told twice: without
//! the tool the workload drops (judged on every stored version, not one read that races the
//! HPA), and with it the workload keeps its count.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::gitops::{FluxRepo, flux_labels};

const PAUSE: &str = "kustomize.toolkit.fluxcd.io/reconcile";

fn check(ns: &TestNamespace, target: &str) -> (Value, i32) {
    let (report, code) = plugin_json(ns, &admin_kubeconfig(), &["check", target]);
    (report["workloads"][0].clone(), code)
}

fn strip(ns: &TestNamespace, args: &[&str]) -> Value {
    let (report, code, err) = strip_as(ns, &admin_kubeconfig(), args);
    assert_eq!((code, report["results"][0]["outcome"].as_str()), (0, Some("changed")), "{report:#}\n{err}");
    report
}

fn verify(ns: &TestNamespace, target: &str) -> (Value, i32) {
    let (report, code) = plugin_json(ns, &admin_kubeconfig(), &["verify", target, "--since", "10m"]);
    (report["results"][0].clone(), code)
}

fn resume(ns: &TestNamespace, target: &str) {
    assert_success(&ns.plugin(&admin_kubeconfig(), &["resume", target]), "resume");
}

fn hazard_owners(w: &Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = w["hazards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["owner"].as_str().unwrap().to_string(), h["mechanism"].as_str().unwrap().to_string()))
        .collect();
    found.sort();
    found
}

/// Git holds `names` at `replicas` (None: without `replicas`).
fn manifests(names: &[(&str, Option<i64>)]) -> Vec<Value> {
    names.iter().map(|(name, replicas)| deployment_manifest(name, *replicas)).collect()
}

/// `names` committed at 5 and each given an idle HPA (min `min`, already judged), with the
/// Kustomization idle: a reconcile of the setup's still due would re-apply Git's 5 over a
/// change by hand the test makes next, and take replicas over.
async fn deployed<'a>(ns: &'a TestNamespace, names: &[&str], min: i64) -> FluxRepo<'a> {
    let all: Vec<(&str, Option<i64>)> = names.iter().map(|n| (*n, Some(5))).collect();
    let repo = FluxRepo::new(ns, "shop", &manifests(&all)).await;
    for name in names {
        judged_hpa(ns, &hpa_manifest(name, "Deployment", name, min, 10)).await;
    }
    repo.reconcile().await;
    repo
}

#[tokio::test]
async fn the_real_controller_owns_what_it_applies_and_labels_it() {
    let ns = TestNamespace::new("flux-owner").await;
    deployed(&ns, &["web"], 2).await;
    let web = ns.deployment_value("web").await;
    assert_eq!(replica_managers(&web), vec![("kustomize-controller".into(), "Apply".into(), None)]);
    assert_eq!(flux_labels(&web), (Some("shop"), Some(ns.name.as_str())));
    capture_fixture("flux-real-owns-replicas", &web);
    let (w, code) = check(&ns, "deploy/web");
    assert_eq!((code, w["verdict"].as_str()), (1, Some("strip-needed")), "{w:#}");
    assert_eq!(w["deploy"]["flux"]["kustomization"], format!("{}/shop", ns.name));
    assert_eq!(w["next"], format!("kubectl hpa-migrate strip -n {} deployment/web --pause-flux", ns.name));
}

/// The seed's procedure: strip --pause-flux, the commit without replicas, resume, reconcile.
#[tokio::test]
async fn the_documented_procedure_keeps_the_count_and_verify_passes() {
    let ns = TestNamespace::new("flux-procedure").await;
    let repo = deployed(&ns, &["control", "web"], 2).await;
    recorded_event(&ns, "web", "from 0 to 5").await;

    // Without the tool: the commit without replicas drops the workload.
    let before = ns.resource_version("control").await;
    repo.commit(&manifests(&[("control", None), ("web", Some(5))])).await;
    ns.assert_dropped_since("control", &before).await;

    let (w, _) = check(&ns, "deploy/web");
    assert_eq!(w["verdict"], "strip-needed", "{w:#}");
    strip(&ns, &["deploy/web", "--pause-flux"]);
    let before = ns.resource_version("web").await;
    repo.commit(&manifests(&[("control", None), ("web", None)])).await;
    resume(&ns, "deploy/web");
    repo.reconcile().await;
    ns.assert_kept_since("web", &before, 5).await;
    let web = ns.deployment_value("web").await;
    assert!(replica_managers(&web).is_empty(), "{:?}", replica_managers(&web));
    assert!(web["metadata"]["annotations"][PAUSE].is_null(), "resumed");
    assert_eq!(check(&ns, "deploy/web").0["verdict"], "safe");

    let (result, code) = verify(&ns, "deploy/web");
    assert_eq!((code, result["outcome"].as_str()), (0, Some("pass")), "{result:#}");
}

/// Replicas leave Git while Flux still owns them and reconciles: the drop, and verify finds it.
#[tokio::test]
async fn a_commit_without_replicas_while_flux_owns_them_drops_and_verify_says_so() {
    let ns = TestNamespace::new("flux-drop").await;
    // The HPA allows 1 until the drop has reached the ReplicaSet (see verify.rs), then 3.
    let repo = deployed(&ns, &["web"], 1).await;
    recorded_event(&ns, "web", "from 0 to 5").await;
    let (result, code) = verify(&ns, "deploy/web");
    assert_eq!((code, result["outcome"].as_str()), (1, Some("at-risk")), "{result:#}");

    let before = ns.resource_version("web").await;
    repo.commit(&manifests(&[("web", None)])).await;
    ns.assert_dropped_since("web", &before).await;
    recorded_event(&ns, "web", "from 5 to 1").await;
    // The HPA's order back to 3 is not waited for: the drop to 1 is found from the Deployment's
    // own events, and on the loaded CI plane that HPA event twice had not arrived after 120 s.
    rescaling_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 3, 10), "web", 3).await;
    recorded_event(&ns, "web", "from 1 to 3").await;

    let (result, code) = verify(&ns, "deploy/web");
    assert_eq!((code, result["outcome"].as_str()), (1, Some("drop")), "{result:#}");
    let drop = &result["history"]["drops"][0];
    assert_eq!((drop["from"].as_i64(), drop["to"].as_i64()), (Some(5), Some(1)), "{result:#}");
}

/// How a person changes replicas on a Flux-managed object, and the manager it leaves.
#[derive(Clone, Copy, Debug)]
enum ByHand {
    Patch,
    Edit,
    ClientSideApply,
    BeforeFirstApply,
}

/// Sets `name` to 6 the way `how` does; returns the managedFields manager that owns replicas.
async fn change_by_hand(ns: &TestNamespace, name: &str, how: ByHand) -> String {
    let target = format!("deployment/{name}");
    match how {
        ByHand::Patch => {
            let output = ns.kubectl(&["patch", &target, "-p", r#"{"spec":{"replicas":6}}"#], None);
            assert_success(&output, "kubectl patch");
        }
        ByHand::Edit => {
            let dir = tempfile::tempdir().unwrap();
            let editor = dir.path().join("editor.sh");
            // kubectl edit writes the object as YAML; spec comes before status.
            std::fs::write(&editor, "#!/bin/sh\nsed -i '0,/^  replicas: 5$/s//  replicas: 6/' \"$1\"\n").unwrap();
            std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            let mut command = std::process::Command::new(kubectl_bin());
            command
                .arg("--kubeconfig")
                .arg(admin_kubeconfig())
                .args(["-n", &ns.name, "edit", &target])
                .env("EDITOR", &editor)
                .env("KUBE_EDITOR", &editor);
            assert_success(&run_hermetic(command, None), "kubectl edit");
        }
        ByHand::ClientSideApply => {
            let manifest = serde_json::to_string(&deployment_manifest(name, Some(6))).unwrap();
            assert_success(&ns.kubectl(&["apply", "-f", "-"], Some(&manifest)), "kubectl apply");
        }
        ByHand::BeforeFirstApply => {
            // What an object written before managedFields existed looks like: with them
            // cleared, the next server-side apply (here someone adding a label) gives every
            // field already there to `before-first-apply`.
            let output = ns.kubectl(&["patch", &target, "-p", r#"{"spec":{"replicas":6}}"#], None);
            assert_success(&output, "kubectl patch");
            let clear = r#"[{"op":"replace","path":"/metadata/managedFields","value":[{}]}]"#;
            assert_success(
                &ns.kubectl(&["patch", &target, "--type=json", "-p", clear], None),
                "clearing managedFields",
            );
            let label = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "labels": {"team": "shop"}}});
            ns.apply("ops", &label).await;
        }
    }
    let owners = replica_managers(&ns.deployment_value(name).await);
    assert_eq!(owners.len(), 1, "{how:?}: {owners:?}");
    assert_eq!(spec_replicas(&ns.deployment_value(name).await), Some(6));
    owners[0].0.clone()
}

/// Flux, before each apply, merges the entries of `kubectl*` (Update), `kubectl` (Apply) and
/// `before-first-apply` managers into its own: on an object it manages those owners are Flux's.
async fn taken_over(how: ByHand, manager: &str) {
    let ns = TestNamespace::new(&format!("flux-takeover-{}", manager.trim_start_matches("kubectl-"))).await;
    let repo = deployed(&ns, &["control", "web"], 2).await;
    for name in ["control", "web"] {
        assert_eq!(change_by_hand(&ns, name, how).await, manager);
    }
    if let ByHand::Patch = how {
        capture_fixture("flux-managed-kubectl-patch-owns-replicas", &ns.deployment_value("web").await);
    }

    // Without the tool: Flux's next apply of a manifest without replicas takes the entry over
    // and drops the field it now owns alone.
    let before = ns.resource_version("control").await;
    repo.commit(&manifests(&[("control", None), ("web", Some(5))])).await;
    ns.assert_dropped_since("control", &before).await;

    // The Git commit above still sets web to 5: Flux took web's entry over too and set 5. So the
    // hand change is done again, and it is the state check has to judge.
    let (w, code) = check(&ns, "deploy/web");
    assert_eq!(w["replicaOwners"][0]["manager"], "kustomize-controller", "{w:#}");
    assert_eq!(code, 1);
    assert_eq!(change_by_hand(&ns, "web", how).await, manager);
    let (w, code) = check(&ns, "deploy/web");
    assert_eq!((code, w["verdict"].as_str()), (1, Some("strip-needed")), "{w:#}");
    assert!(hazard_owners(&w).contains(&(manager.to_string(), "flux-kustomize".to_string())), "{w:#}");
    assert_eq!(w["next"], format!("kubectl hpa-migrate strip -n {} deployment/web --pause-flux", ns.name));

    strip(&ns, &["deploy/web", "--pause-flux"]);
    let before = ns.resource_version("web").await;
    repo.commit(&manifests(&[("control", None), ("web", None)])).await;
    resume(&ns, "deploy/web");
    repo.reconcile().await;
    ns.assert_kept_since("web", &before, 6).await;
    assert_eq!(check(&ns, "deploy/web").0["verdict"], "safe");
}

#[tokio::test]
async fn kubectl_patch_on_a_flux_object_is_flux_s() {
    taken_over(ByHand::Patch, "kubectl-patch").await;
}

#[tokio::test]
async fn kubectl_edit_on_a_flux_object_is_flux_s() {
    taken_over(ByHand::Edit, "kubectl-edit").await;
}

#[tokio::test]
async fn client_side_apply_on_a_flux_object_is_flux_s() {
    taken_over(ByHand::ClientSideApply, "kubectl-client-side-apply").await;
}

#[tokio::test]
async fn before_first_apply_on_a_flux_object_is_flux_s() {
    taken_over(ByHand::BeforeFirstApply, "before-first-apply").await;
}

/// `kubectl scale` writes through `/scale`: Flux leaves that entry alone, and it keeps replicas.
#[tokio::test]
async fn kubectl_scale_is_not_taken_over() {
    let ns = TestNamespace::new("flux-scale").await;
    let repo = deployed(&ns, &["web"], 2).await;
    assert_success(&ns.kubectl(&["scale", "deployment/web", "--replicas=6"], None), "kubectl scale");
    let owners = replica_managers(&ns.deployment_value("web").await);
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].2.as_deref(), Some("scale"), "{owners:?}");
    let (w, code) = check(&ns, "deploy/web");
    assert_eq!((code, w["verdict"].as_str()), (0, Some("safe")), "{w:#}");

    let before = ns.resource_version("web").await;
    repo.commit(&manifests(&[("web", None)])).await;
    ns.assert_kept_since("web", &before, 6).await;
    assert_eq!(replica_managers(&ns.deployment_value("web").await), owners);
}

/// The Kustomization's own `spec.suspend: true` pauses everything it applies: strip without
/// `--pause-flux`, commit, resume the Kustomization.
#[tokio::test]
async fn a_suspended_kustomization_is_a_pause_too() {
    let ns = TestNamespace::new("flux-suspend").await;
    let repo = deployed(&ns, &["control", "web"], 2).await;
    repo.set_suspended(true).await;
    let (w, _) = check(&ns, "deploy/web");
    assert_eq!(w["verdict"], "strip-needed", "{w:#}");
    let (report, code, err) = strip_as(&ns, &admin_kubeconfig(), &["deploy/web"]);
    assert_eq!(code, 0, "{report:#}\n{err}");

    let before = (ns.resource_version("control").await, ns.resource_version("web").await);
    let revision = repo.push(&manifests(&[("control", None), ("web", None)])).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_ne!(repo.kustomization().await["status"]["lastAppliedRevision"], revision, "suspended: nothing applied");
    assert_eq!(spec_replicas(&ns.deployment_value("control").await), Some(5));

    repo.set_suspended(false).await;
    repo.wait_applied(&revision, None).await;
    ns.assert_dropped_since("control", &before.0).await;
    ns.assert_kept_since("web", &before.1, 5).await;
    assert_eq!(check(&ns, "deploy/web").0["verdict"], "safe");
}

/// `.spec.ignore` on `/spec/replicas`, measured on v1.9.6. Flux leaves the path out of drift
/// detection, and when it does apply an object (for another change) it copies the live value of
/// an ignored path it owns alone into its payload, with a JSON patch `replace`: on a manifest
/// without `replicas` that patch fails ("replace operation does not apply: doc is missing key:
/// /spec/replicas") and the whole Kustomization stops applying. Flux keeps owning replicas, so
/// removing the rule later drops the workload. So the rule is no alternative to the strip: check
/// says strip-needed, and after the strip both the commit and removing the rule are safe.
#[tokio::test]
async fn an_ignore_rule_on_replicas_is_no_alternative_to_the_strip() {
    let ns = TestNamespace::new("flux-ignore").await;
    let manifests = |name: &str, image: &str| {
        let mut manifest = deployment_manifest(name, None);
        manifest["spec"]["template"]["spec"]["containers"][0]["image"] = json!(format!("registry.invalid/app:{image}"));
        vec![manifest]
    };
    // One Kustomization each: a failing apply stops every object of its Kustomization.
    let control = FluxRepo::new(&ns, "control", &[deployment_manifest("control", Some(5))]).await;
    let web = FluxRepo::new(&ns, "web", &[deployment_manifest("web", Some(5))]).await;
    for (repo, name) in [(&control, "control"), (&web, "web")] {
        judged_hpa(&ns, &hpa_manifest(name, "Deployment", name, 2, 10)).await;
        repo.set_ignore(Some(&["/spec/replicas"])).await;
        repo.reconcile().await;
    }

    // Without the tool: replicas leave Git along with an image change, and Flux cannot apply.
    let before = ns.resource_version("control").await;
    let message = control.commit_failing(&manifests("control", "2")).await;
    assert!(message.contains("doc is missing key: /spec/replicas"), "{message}");
    let object = ns.deployment_value("control").await;
    assert_eq!(object["spec"]["template"]["spec"]["containers"][0]["image"], "registry.invalid/app:1");
    assert_eq!(replica_managers(&object), vec![("kustomize-controller".into(), "Apply".into(), None)]);
    let (w, code) = check(&ns, "deploy/control");
    assert_eq!((code, w["verdict"].as_str()), (1, Some("strip-needed")), "{w:#}");
    // And the rule removed, the commit applies and drops the workload.
    control.set_ignore(None).await;
    control.reconcile().await;
    ns.assert_dropped_since("control", &before).await;

    // With the tool: strip, and the same commit applies and keeps the count, rule or not.
    strip(&ns, &["deploy/web", "--pause-flux"]);
    resume(&ns, "deploy/web");
    let before = ns.resource_version("web").await;
    web.commit(&manifests("web", "2")).await;
    let object = ns.deployment_value("web").await;
    assert_eq!(object["spec"]["template"]["spec"]["containers"][0]["image"], "registry.invalid/app:2");
    web.set_ignore(None).await;
    web.reconcile().await;
    ns.assert_kept_since("web", &before, 5).await;
    assert_eq!(check(&ns, "deploy/web").0["verdict"], "safe");
}

/// The takeover rule holds only where Flux applies: the same `kubectl-patch` owner on an object
/// without Flux's labels is a person's change, and check calls it safe.
#[tokio::test]
async fn a_kubectl_patch_owner_outside_flux_is_not_flux_s() {
    let ns = TestNamespace::new("flux-not-managed").await;
    let manifest = serde_json::to_string(&deployment_manifest("web", Some(5))).unwrap();
    assert_success(&ns.kubectl(&["create", "-f", "-"], Some(&manifest)), "kubectl create");
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 2, 10)).await;
    assert_eq!(change_by_hand(&ns, "web", ByHand::Patch).await, "kubectl-patch");
    let (w, code) = check(&ns, "deploy/web");
    assert_eq!((code, w["verdict"].as_str()), (0, Some("safe")), "{w:#}");
}
