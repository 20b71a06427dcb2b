//! The real KEDA operator (v2.21.0, built from Go modules as `keda` and started beside the plane
//! by `cargo xtask cluster up`): the HPA it creates, its conditions as `check` reads them, its
//! pauses, scale to zero, taking over an existing HPA, and `verify` attributing its scaling.
//!
//! No test writes `keda-hpa-*` itself: the operator does. Triggers are `cron` windows (no
//! external system): an idle window makes KEDA's scale loop see an inactive trigger, and the HPA
//! it creates gets an External metric that this plane cannot serve (no metrics adapter), so the
//! HPA reports ScalingActive=False but still enforces minReplicas and maxReplicas.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// A cron window that never opens while tests run (00:00-00:01 on January 1st, UTC).
fn idle_trigger() -> Value {
    json!({"type": "cron", "metadata": {"timezone": "Etc/UTC", "start": "0 0 1 1 *", "end": "1 0 1 1 *", "desiredReplicas": "5"}})
}

pub fn scaled_object(name: &str, target: &str, min: i64, max: i64) -> Value {
    json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": target},
            "minReplicaCount": min, "maxReplicaCount": max,
            // KEDA's scale loop polls every 30 s by default; the tests wait on it.
            "pollingInterval": 1,
            "triggers": [idle_trigger()]
        }
    })
}

/// The operator runs: `cargo xtask cluster up` starts it (and the tests cannot).
pub fn require_operator() {
    let pid = std::fs::read_to_string(cluster().pid_file("keda")).unwrap_or_default();
    let alive = !pid.trim().is_empty() && std::path::Path::new(&format!("/proc/{}", pid.trim())).exists();
    assert!(alive, "the KEDA operator is not running: `cargo xtask cluster up` starts it beside the control plane");
}

fn get(ns: &TestNamespace, kind: &str, name: &str) -> Option<Value> {
    let output = ns.kubectl(&["get", kind, name, "-o", "json", "--show-managed-fields"], None);
    output.status.success().then(|| serde_json::from_slice(&output.stdout).unwrap())
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == type_)
}

fn condition_status(object: &Value, type_: &str) -> Option<String> {
    condition(object, type_).and_then(|c| c["status"].as_str()).map(str::to_string)
}

/// Waits until the ScaledObject's condition `type_` has `status`, and returns the object.
async fn scaled_object_condition(ns: &TestNamespace, name: &str, type_: &str, status: &str) -> Value {
    eventually(Duration::from_secs(60), &format!("ScaledObject {name} {type_}={status}"), || async {
        get(ns, "scaledobject", name).filter(|so| condition_status(so, type_).as_deref() == Some(status))
    })
    .await
}

/// Waits until the HPA exists and the HPA controller has judged it; returns it.
pub(crate) async fn keda_hpa(ns: &TestNamespace, name: &str) -> Value {
    eventually(Duration::from_secs(60), &format!("the KEDA operator to create HPA {name}"), || async {
        get(ns, "hpa", name)
    })
    .await;
    hpa_conditions(ns, name, judged).await;
    get(ns, "hpa", name).unwrap()
}

async fn hpa_gone(ns: &TestNamespace, name: &str) {
    eventually(Duration::from_secs(60), &format!("HPA {name} to be deleted"), || async {
        get(ns, "hpa", name).is_none().then_some(())
    })
    .await;
}

pub(crate) async fn deployment_at(ns: &TestNamespace, name: &str, replicas: i64) -> Value {
    eventually(Duration::from_secs(60), &format!("{name} at {replicas} replicas"), || async {
        let deployment = ns.deployment_value(name).await;
        (spec_replicas(&deployment) == Some(replicas)).then_some(deployment)
    })
    .await
}

fn workload<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the report: {report:#}"))
}

fn check(ns: &TestNamespace) -> (Value, i32) {
    plugin_json(ns, &admin_kubeconfig(), &["check"])
}

fn verify(ns: &TestNamespace, args: &[&str]) -> (Value, i32) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    plugin_json(ns, &admin_kubeconfig(), &all)
}

/// verify of deploy/web over the last 10 minutes: its result, exit code and first drop, which
/// it checks goes from `from` to `to`.
fn first_drop(ns: &TestNamespace, from: i64, to: i64) -> (Value, i32, Value) {
    let (report, code) = verify(ns, &["deploy/web", "--since", "10m"]);
    let result = report["results"][0].clone();
    let drop = result["history"]["drops"][0].clone();
    assert_eq!((drop["from"].as_i64(), drop["to"].as_i64()), (Some(from), Some(to)), "{report:#}");
    (result, code, drop)
}

fn managers(object: &Value) -> Vec<(String, String, Option<String>)> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or_default().to_string(),
                e["operation"].as_str().unwrap_or_default().to_string(),
                e.get("subresource").and_then(Value::as_str).map(str::to_string),
            )
        })
        .collect()
}

fn keda_scale_owner() -> (String, String, Option<String>) {
    ("keda".to_string(), "Update".to_string(), Some("scale".to_string()))
}

#[tokio::test]
async fn the_operator_creates_its_hpa_and_check_reads_its_conditions() {
    require_operator();
    let ns = TestNamespace::new("keda-hpa").await;
    ns.apply("kubectl", &deployment_manifest("web", Some(3))).await;
    ns.apply("kubectl", &scaled_object("web", "web", 2, 9)).await;

    let hpa = keda_hpa(&ns, "keda-hpa-web").await;
    // Written by the operator with no field manager of its own: its user agent, `keda`.
    assert_eq!(managers(&hpa).iter().filter(|m| m.2.is_none()).map(|m| m.0.as_str()).collect::<Vec<_>>(), ["keda"]);
    assert_eq!(managers(&hpa)[0].1, "Update");
    let owner = &hpa["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str(), owner["controller"].as_bool()),
        (Some("ScaledObject"), Some("web"), Some(true))
    );
    assert_eq!((hpa["spec"]["minReplicas"].as_i64(), hpa["spec"]["maxReplicas"].as_i64()), (Some(2), Some(9)));
    assert_eq!(hpa["spec"]["metrics"][0]["type"], "External", "a cron trigger is an External metric");
    // No metrics adapter: the HPA cannot read it, but bounds still hold.
    let active = hpa["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "ScalingActive").unwrap();
    assert_eq!(
        (active["status"].as_str(), active["reason"].as_str()),
        (Some("False"), Some("FailedGetExternalMetric"))
    );

    let so = scaled_object_condition(&ns, "web", "Ready", "True").await;
    assert_eq!(so["status"]["hpaName"], "keda-hpa-web");
    capture_fixture("keda-scaledobject-ready", &so);
    capture_fixture("keda-hpa", &hpa);

    let (report, code) = check(&ns);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["kedaInstalled"], true);
    let web = workload(&report, "web");
    assert_eq!(web["verdict"], "strip-needed", "kubectl still applies replicas: {web:#}");
    let autoscalers = web["autoscalers"].as_array().unwrap();
    assert_eq!(autoscalers.len(), 1, "the ScaledObject and its HPA are one autoscaler: {web:#}");
    assert_eq!(autoscalers[0]["kind"], "ScaledObject");
    assert_eq!(autoscalers[0]["hpa"]["name"], "keda-hpa-web");
    assert_eq!(autoscalers[0]["keda"]["minReplicaCount"], 2);
    let ready = autoscalers[0]["keda"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!(ready["status"], "True");
    // An idle trigger makes it Active=False: KEDA's word that it would not scale out, not a block.
    let reported = autoscalers[0]["keda"]["conditions"].to_string();
    for expected in
        [r#""type":"Active","status":"False","reason":"ScalerNotActive""#, r#""type":"Paused","status":"False""#]
    {
        assert!(reported.contains(expected), "{expected} in {reported}");
    }
    assert!(web["warnings"].to_string().contains("FailedGetExternalMetric"), "{web:#}");

    // A configured name instead of keda-hpa-<name>.
    ns.apply("kubectl", &deployment_manifest("api", Some(2))).await;
    let mut named = scaled_object("api", "api", 2, 4);
    named["spec"]["advanced"] = json!({"horizontalPodAutoscalerConfig": {"name": "api-autoscaler"}});
    ns.apply("kubectl", &named).await;
    keda_hpa(&ns, "api-autoscaler").await;
    let so = scaled_object_condition(&ns, "api", "Ready", "True").await;
    assert_eq!(so["status"]["hpaName"], "api-autoscaler");
    assert!(get(&ns, "hpa", "keda-hpa-api").is_none());
    let (report, _) = check(&ns);
    let api = workload(&report, "api");
    assert_eq!(api["autoscalers"].as_array().unwrap().len(), 1, "{api:#}");
    assert_eq!(api["autoscalers"][0]["hpa"]["name"], "api-autoscaler");
    assert_eq!(api["verdict"], "strip-needed", "{api:#}");
}

#[tokio::test]
async fn paused_replicas_deletes_the_hpa_and_keda_takes_replicas_through_scale() {
    require_operator();
    let ns = TestNamespace::new("keda-paused-replicas").await;
    ns.apply("kubectl", &deployment_manifest("web", Some(5))).await;
    ns.apply("kubectl", &scaled_object("web", "web", 2, 9)).await;
    keda_hpa(&ns, "keda-hpa-web").await;
    scaled_object_condition(&ns, "web", "Ready", "True").await;
    let before = ns.resource_version("web").await;

    let paused = ns.kubectl(&["annotate", "scaledobject/web", "autoscaling.keda.sh/paused-replicas=3"], None);
    assert_success(&paused, "pausing at 3");
    hpa_gone(&ns, "keda-hpa-web").await;
    let deployment = deployment_at(&ns, "web", 3).await;
    // KEDA scaled through /scale as `keda`: it owns replicas now, and kubectl's apply no longer does.
    assert_eq!(replica_managers(&deployment), [keda_scale_owner()], "{:#}", deployment["metadata"]["managedFields"]);
    let stored = ns.replicas_stored_since("web", &before).await;
    assert!(stored.iter().all(|r| [5, 3].contains(r)), "5 then 3, never lower: {stored:?}");
    let so = scaled_object_condition(&ns, "web", "Paused", "True").await;
    assert_eq!(so["status"]["pausedReplicaCount"], 3);
    capture_fixture("keda-scaledobject-paused-replicas", &so);
    capture_fixture("keda-paused-replicas-deployment", &deployment);

    let (report, code) = check(&ns);
    assert_eq!(code, 1, "{report:#}");
    let web = workload(&report, "web");
    assert_eq!(web["verdict"], "autoscaler-not-ready", "{web:#}");
    assert!(web["reason"].as_str().unwrap().contains("autoscaling.keda.sh/paused-replicas"), "{web:#}");
    assert_eq!(
        web["next"],
        format!(
            "kubectl annotate -n {} scaledobject/web autoscaling.keda.sh/paused- autoscaling.keda.sh/paused-replicas-",
            ns.name
        )
    );

    // Unpaused: the HPA is back, and since KEDA took replicas no deploy tool owns them.
    let unpaused = ns.kubectl(&["annotate", "scaledobject/web", "autoscaling.keda.sh/paused-replicas-"], None);
    assert_success(&unpaused, "unpausing");
    keda_hpa(&ns, "keda-hpa-web").await;
    scaled_object_condition(&ns, "web", "Paused", "False").await;
    let (report, code) = check(&ns);
    let web = workload(&report, "web");
    assert_eq!((code, web["verdict"].as_str()), (0, Some("safe")), "{web:#}");
    // So the manifest without replicas keeps 3.
    let since = ns.resource_version("web").await;
    ns.apply("kubectl", &deployment_manifest("web", None)).await;
    ns.assert_kept_since("web", &since, 3).await;
}

#[tokio::test]
async fn paused_deletes_the_hpa_and_keeps_replicas_and_false_is_not_paused() {
    require_operator();
    let ns = TestNamespace::new("keda-paused").await;
    ns.apply("kubectl", &deployment_manifest("web", Some(4))).await;
    ns.apply("kubectl", &scaled_object("web", "web", 2, 9)).await;
    keda_hpa(&ns, "keda-hpa-web").await;
    scaled_object_condition(&ns, "web", "Ready", "True").await;
    let before = ns.resource_version("web").await;

    let paused = ns.kubectl(&["annotate", "scaledobject/web", "autoscaling.keda.sh/paused=true"], None);
    assert_success(&paused, "pausing");
    hpa_gone(&ns, "keda-hpa-web").await;
    let so = scaled_object_condition(&ns, "web", "Paused", "True").await;
    capture_fixture("keda-scaledobject-paused", &so);
    ns.assert_kept_since("web", &before, 4).await;
    let (report, _) = check(&ns);
    let web = workload(&report, "web");
    assert_eq!(web["verdict"], "autoscaler-not-ready", "{web:#}");
    assert!(web["next"].as_str().unwrap().contains("autoscaling.keda.sh/paused-"));

    // KEDA reads the value as a Go bool: "False" (or "0") does not pause it.
    let overwrite =
        ns.kubectl(&["annotate", "--overwrite", "scaledobject/web", "autoscaling.keda.sh/paused=False"], None);
    assert_success(&overwrite, "setting paused=False");
    keda_hpa(&ns, "keda-hpa-web").await;
    let so = scaled_object_condition(&ns, "web", "Paused", "False").await;
    capture_fixture("keda-scaledobject-paused-false", &so);
    let (report, _) = check(&ns);
    let web = workload(&report, "web");
    assert_eq!(web["verdict"], "strip-needed", "KEDA is not paused: {web:#}");
}

#[tokio::test]
async fn min_replica_count_zero_scales_an_idle_workload_to_zero_and_verify_says_keda_did() {
    require_operator();
    let ns = TestNamespace::new("keda-zero").await;
    ns.apply("kubectl", &deployment_manifest("web", Some(2))).await;
    recorded_event(&ns, "web", "from 0 to 2").await;
    let before = ns.resource_version("web").await;
    ns.apply("kubectl", &scaled_object("web", "web", 0, 5)).await;

    // Never active and no initial cooldown: KEDA deactivates the target at once, through /scale.
    // A Scale's `replicas` is omitted when 0, so the server records that write as removing the
    // field: kubectl's apply loses it and nobody owns replicas at 0 (not even `keda`).
    let deployment = deployment_at(&ns, "web", 0).await;
    assert_eq!(replica_managers(&deployment), [], "{:#}", deployment["metadata"]["managedFields"]);
    let stored = ns.replicas_stored_since("web", &before).await;
    assert!(stored.iter().all(|r| [2, 0].contains(r)), "straight from 2 to 0: {stored:?}");
    recorded_event(&ns, "web", "Deactivated apps/v1.Deployment").await;
    recorded_event(&ns, "web", "from 2 to 0").await;
    let hpa = keda_hpa(&ns, "keda-hpa-web").await;
    assert_eq!(hpa["spec"]["minReplicas"], 1, "the HPA's minimum is 1 when KEDA's is 0");
    let hpa = eventually(Duration::from_secs(60), "the HPA to disable itself at 0", || async {
        get(&ns, "hpa", "keda-hpa-web")
            .filter(|h| condition(h, "ScalingActive").is_some_and(|c| c["reason"] == "ScalingDisabled"))
    })
    .await;
    let so = scaled_object_condition(&ns, "web", "Active", "False").await;
    capture_fixture("keda-scaledobject-idle", &so);
    capture_fixture("keda-hpa-scaling-disabled", &hpa);
    capture_fixture("keda-idle-deployment", &deployment);

    // KEDA is in charge at 0 by design, and it owns replicas: removing them is safe.
    let (report, code) = check(&ns);
    let web = workload(&report, "web");
    assert_eq!((code, web["verdict"].as_str()), (0, Some("safe")), "{web:#}");
    assert!(web["warnings"].to_string().contains("minReplicaCount 0"), "{web:#}");

    capture_history(&ns, "keda-idle");

    // KEDA's own drop is not the failure, and idling at 0 is no risk: verify passes.
    let (result, code, drop) = first_drop(&ns, 2, 0);
    assert_eq!(drop["cause"], json!({"by": "keda-idle", "scaledObject": "scaledobject/web"}), "{result:#}");
    assert_eq!((code, result["outcome"].as_str()), (0, Some("pass")), "{result:#}");
    assert!(result["endState"]["reason"].as_str().unwrap().contains("ScaledObject web's idle size"), "{result:#}");
}

/// `idleReplicaCount: 0` with a minimum of 2: KEDA idles the target at 0 (not at its minimum),
/// and verify attributes it and passes as with `minReplicaCount: 0`.
#[tokio::test]
async fn idle_replica_count_idles_at_it_below_the_minimum_and_verify_passes() {
    require_operator();
    let ns = TestNamespace::new("keda-idle-count").await;
    ns.apply("kubectl", &deployment_manifest("web", Some(3))).await;
    recorded_event(&ns, "web", "from 0 to 3").await;
    let mut so = scaled_object("web", "web", 2, 5);
    so["spec"]["idleReplicaCount"] = json!(0);
    ns.apply("kubectl", &so).await;
    deployment_at(&ns, "web", 0).await;
    recorded_event(&ns, "web", "Deactivated apps/v1.Deployment").await;
    recorded_event(&ns, "web", "from 3 to 0").await;
    eventually(Duration::from_secs(60), "the HPA to disable itself at 0", || async {
        get(&ns, "hpa", "keda-hpa-web")
            .filter(|h| condition(h, "ScalingActive").is_some_and(|c| c["reason"] == "ScalingDisabled"))
    })
    .await;

    let (report, code) = check(&ns);
    assert_eq!((code, workload(&report, "web")["verdict"].as_str()), (0, Some("safe")), "{report:#}");
    assert_eq!(workload(&report, "web")["autoscalers"][0]["keda"]["idleReplicaCount"], 0, "{report:#}");
    let (result, code, drop) = first_drop(&ns, 3, 0);
    assert_eq!(drop["cause"]["by"], "keda-idle", "{result:#}");
    assert_eq!((code, result["outcome"].as_str()), (0, Some("pass")), "{result:#}");

    // A guard at the minimum, 2, would refuse KEDA's own deactivation to 0: refused before
    // anything is written, as for minReplicaCount 0. (No policy is written: no guard lock needed.)
    let guard = ns.plugin(&admin_kubeconfig(), &["guard", "on", "deploy/web"]);
    assert_eq!(guard.status.code(), Some(2), "{}", stderr(&guard));
    assert!(
        stderr(&guard).contains("may scale to 0 (its minimum, or KEDA's idleReplicaCount, is 0)"),
        "{}",
        stderr(&guard)
    );
}

/// `paused-replicas` below the floor: KEDA pauses (the event "ScaledObject is paused"), deletes
/// the HPA and scales the target itself, with no event of its own for the scale. verify
/// attributes that drop to the pause, not to a deploy tool; the end state (paused, nobody in
/// charge, at the floor) is still at risk.
#[tokio::test]
async fn paused_replicas_below_the_floor_is_keda_s_scale_and_not_a_drop() {
    require_operator();
    let ns = TestNamespace::new("keda-paused-low").await;
    ns.apply("kubectl", &deployment_manifest("web", Some(5))).await;
    recorded_event(&ns, "web", "from 0 to 5").await;
    ns.apply("kubectl", &scaled_object("web", "web", 2, 9)).await;
    keda_hpa(&ns, "keda-hpa-web").await;
    scaled_object_condition(&ns, "web", "Ready", "True").await;

    let paused = ns.kubectl(&["annotate", "scaledobject/web", "autoscaling.keda.sh/paused-replicas=1"], None);
    assert_success(&paused, "pausing at 1");
    deployment_at(&ns, "web", 1).await;
    recorded_event(&ns, "web", "ScaledObject is paused").await;
    recorded_event(&ns, "web", "from 5 to 1").await;
    capture_history(&ns, "keda-paused-replicas");

    let (result, code, drop) = first_drop(&ns, 5, 1);
    assert_eq!(
        drop["cause"],
        json!({"by": "keda-paused", "scaledObject": "scaledobject/web", "replicas": 1}),
        "{result:#}"
    );
    assert_eq!((code, result["outcome"].as_str()), (1, Some("at-risk")), "{result:#}");
}

#[tokio::test]
async fn a_scaled_object_takes_over_an_existing_hpa() {
    require_operator();
    let ns = TestNamespace::new("keda-takeover").await;
    ns.apply("kubectl", &deployment_manifest("web", Some(3))).await;
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 2, 6)).await;

    let mut so = scaled_object("web", "web", 2, 8);
    so["metadata"]["annotations"] = json!({"scaledobject.keda.sh/transfer-hpa-ownership": "true"});
    so["spec"]["advanced"] = json!({"horizontalPodAutoscalerConfig": {"name": "web"}});
    ns.apply("kubectl", &so).await;
    let hpa = eventually(Duration::from_secs(60), "KEDA to take over HPA web", || async {
        get(&ns, "hpa", "web").filter(|h| h["metadata"]["ownerReferences"][0]["kind"] == "ScaledObject")
    })
    .await;
    assert_eq!(hpa["spec"]["maxReplicas"], 8, "KEDA rewrote the HPA from the ScaledObject");
    assert!(managers(&hpa).iter().any(|m| m.0 == "keda" && m.1 == "Update"), "{:?}", managers(&hpa));
    assert!(get(&ns, "hpa", "keda-hpa-web").is_none(), "no second HPA");
    scaled_object_condition(&ns, "web", "Ready", "True").await;
    let (report, _) = check(&ns);
    let web = workload(&report, "web");
    let autoscalers = web["autoscalers"].as_array().unwrap();
    assert_eq!(autoscalers.len(), 1, "{web:#}");
    assert_eq!(
        (autoscalers[0]["kind"].as_str(), autoscalers[0]["hpa"]["name"].as_str()),
        (Some("ScaledObject"), Some("web"))
    );
    assert_eq!(web["verdict"], "strip-needed", "{web:#}");

    // The annotation is read only by KEDA's admission webhook (which refuses, without it, a
    // ScaledObject over a workload an HPA already targets); the operator itself takes over
    // whatever HPA the ScaledObject names, annotation or not. No webhook runs here.
    ns.apply("kubectl", &deployment_manifest("db", Some(3))).await;
    judged_hpa(&ns, &hpa_manifest("db", "Deployment", "db", 2, 6)).await;
    let mut so = scaled_object("db", "db", 2, 7);
    so["spec"]["advanced"] = json!({"horizontalPodAutoscalerConfig": {"name": "db"}});
    ns.apply("kubectl", &so).await;
    eventually(Duration::from_secs(60), "KEDA to take over HPA db without the annotation", || async {
        get(&ns, "hpa", "db")
            .filter(|h| h["metadata"]["ownerReferences"][0]["kind"] == "ScaledObject" && h["spec"]["maxReplicas"] == 7)
    })
    .await;

    // Without naming it, KEDA creates keda-hpa-web beside it: two autoscalers over one workload.
    ns.apply("kubectl", &deployment_manifest("api", Some(3))).await;
    judged_hpa(&ns, &hpa_manifest("api", "Deployment", "api", 2, 6)).await;
    ns.apply("kubectl", &scaled_object("api", "api", 2, 8)).await;
    keda_hpa(&ns, "keda-hpa-api").await;
    let (report, _) = check(&ns);
    let api = workload(&report, "api");
    assert_eq!(api["verdict"], "ambiguous-autoscalers", "{api:#}");
}

#[tokio::test]
async fn with_keda_in_charge_the_drop_is_found_and_the_strip_prevents_it() {
    require_operator();
    let ns = TestNamespace::new("keda-verify").await;
    // As in verify::the_real_failure_is_found_in_history: a minimum of 1 until the drop has
    // reached the ReplicaSet, then 3.
    ns.apply("kubectl", &deployment_manifest("web", Some(5))).await;
    recorded_event(&ns, "web", "from 0 to 5").await;
    ns.apply("kubectl", &scaled_object("web", "web", 1, 10)).await;
    keda_hpa(&ns, "keda-hpa-web").await;
    scaled_object_condition(&ns, "web", "Ready", "True").await;
    let before = ns.resource_version("web").await;
    ns.apply("kubectl", &deployment_manifest("web", None)).await;
    ns.assert_dropped_since("web", &before).await;
    recorded_event(&ns, "web", "from 5 to 1").await;
    ns.apply("kubectl", &scaled_object("web", "web", 3, 10)).await;
    deployment_at(&ns, "web", 3).await;
    recorded_event(&ns, "web", "from 1 to 3").await;

    let (report, code) = verify(&ns, &["deploy/web", "--since", "10m"]);
    let result = &report["results"][0];
    assert_eq!((code, result["outcome"].as_str()), (1, Some("drop")), "{report:#}");
    let drop = &result["history"]["drops"][0];
    assert_eq!((drop["from"].as_i64(), drop["to"].as_i64()), (Some(5), Some(1)), "{report:#}");
    assert_eq!(drop["cause"]["by"], "unordered", "{report:#}");

    // The same with the tool: strip, then the manifest without replicas keeps 6.
    ns.apply("kubectl", &deployment_manifest("api", Some(6))).await;
    recorded_event(&ns, "api", "from 0 to 6").await;
    ns.apply("kubectl", &scaled_object("api", "api", 2, 10)).await;
    keda_hpa(&ns, "keda-hpa-api").await;
    scaled_object_condition(&ns, "api", "Ready", "True").await;
    let dir = std::env::temp_dir().join(format!("hpa-migrate-backups-{}", ns.name));
    let output =
        ns.plugin(&admin_kubeconfig(), &["strip", "--yes", "deploy/api", "--backup-dir", dir.to_str().unwrap()]);
    assert_success(&output, "strip");
    let since = ns.resource_version("api").await;
    ns.apply("kubectl", &deployment_manifest("api", None)).await;
    ns.assert_kept_since("api", &since, 6).await;
    let (report, code) = verify(&ns, &["deploy/api", "--since", "10m"]);
    assert_eq!((code, report["results"][0]["outcome"].as_str()), (0, Some("pass")), "{report:#}");
}

#[tokio::test]
async fn a_trigger_that_cannot_be_read_leaves_the_hpa_holding_its_bounds() {
    require_operator();
    let ns = TestNamespace::new("keda-trigger-error").await;
    ns.apply("kubectl", &deployment_manifest("web", Some(1))).await;
    let mut so = scaled_object("web", "web", 2, 6);
    // Nothing listens on port 1: every poll of this trigger fails at once.
    so["spec"]["triggers"] = json!([{"type": "prometheus", "metadata": {"serverAddress": "http://127.0.0.1:1", "query": "up", "threshold": "1"}}]);
    ns.apply("kubectl", &so).await;
    let so = scaled_object_condition(&ns, "web", "Ready", "False").await;
    assert_eq!(condition(&so, "Ready").unwrap()["reason"], "TriggerError", "{so:#}");
    capture_fixture("keda-scaledobject-trigger-error", &so);
    // The HPA stays and still enforces minReplicas: 1 -> 2.
    let hpa = keda_hpa(&ns, "keda-hpa-web").await;
    capture_fixture("keda-hpa-trigger-error", &hpa);
    deployment_at(&ns, "web", 2).await;

    let (report, _) = check(&ns);
    let web = workload(&report, "web");
    // Raising it, the HPA controller took replicas from kubectl's apply: in charge, and safe.
    assert_eq!(web["verdict"], "safe", "{web:#}");
    assert_eq!(web["replicaOwners"][0]["manager"], "kube-controller-manager", "{web:#}");
    assert!(web["warnings"].to_string().contains("TriggerError"), "{web:#}");
}
