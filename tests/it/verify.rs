//! `verify` on the real control plane: the real failure reproduced and found, the clean path
//! passing, live watching, missing evidence, rollouts and StatefulSets.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::background::Running;
use crate::common::*;

// verify reads Events and ReplicaSets, whoever changed replicas: here the drops are made by a
// forced server-side apply as `kustomize-controller` (one request, so each test controls exactly
// when the drop lands, as the live watch tests need). The same drop made by the real Flux
// controller, found by verify, is in flux.rs.

fn verify(ns: &TestNamespace, args: &[&str]) -> (Value, i32) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    plugin_json(ns, &admin_kubeconfig(), &all)
}

fn replicas_in_timeline(result: &Value) -> Vec<i64> {
    result["history"]["timeline"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["replicas"].as_i64().unwrap())
        .collect()
}

/// Flux-style workload at 5 with an HPA (min 3) that is judged but idle.
async fn flux_workload_with_hpa(ns: &TestNamespace) {
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(5))).await;
    judged_hpa(ns, &hpa_manifest("web", "Deployment", "web", 3, 10)).await;
    recorded_event(ns, "web", "from 0 to 5").await;
}

fn strip_yes(ns: &TestNamespace) {
    let dir = std::env::temp_dir().join(format!("hpa-migrate-backups-{}", ns.name));
    let output =
        ns.plugin(&admin_kubeconfig(), &["strip", "--yes", "deploy/web", "--backup-dir", dir.to_str().unwrap()]);
    assert_success(&output, "strip");
}

#[tokio::test]
async fn the_real_failure_is_found_in_history() {
    let ns = TestNamespace::new("verify-drop").await;
    // The HPA allows 1 until the drop has reached the ReplicaSet, then requires 3. With a
    // minimum of 3 from the start, the HPA (2 s sync here) can restore 3 before the deployment
    // controller acts on the 1; the controller then sees only 5 -> 3 and no pod is lost. With
    // the default 15 s sync the drop reaches the ReplicaSet, which is the failure to find.
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(5))).await;
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 1, 10)).await;
    recorded_event(&ns, "web", "from 0 to 5").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", None)).await;
    recorded_event(&ns, "web", "from 5 to 1").await;
    rescaling_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 3, 10), "web", 3).await;
    recorded_event(&ns, "web", "from 1 to 3").await;
    recorded_event(&ns, "web", "New size: 3").await;

    let (report, code) = verify(&ns, &["deploy/web", "--since", "10m"]);
    let result = &report["results"][0];
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(result["outcome"], "drop");
    assert!(replicas_in_timeline(result).ends_with(&[5, 1, 3]), "timeline: {:?}", replicas_in_timeline(result));
    let drop = &result["history"]["drops"][0];
    assert_eq!((drop["from"].as_i64(), drop["to"].as_i64()), (Some(5), Some(1)));
    assert_eq!(drop["cause"]["by"], "unordered");
    assert!(
        result["history"]["timeline"]["orders"].as_array().unwrap().iter().any(|o| o["size"] == 3),
        "the HPA's order back to 3"
    );
    capture_history(&ns, "flux-drop");
}

#[tokio::test]
async fn the_clean_path_passes() {
    let ns = TestNamespace::new("verify-clean").await;
    flux_workload_with_hpa(&ns).await;
    strip_yes(&ns);
    ns.apply("kustomize-controller", &deployment_manifest("web", None)).await;
    assert_eq!(spec_replicas(&ns.deployment_value("web").await), Some(5));

    let (report, code) = verify(&ns, &["deploy/web", "--since", "10m"]);
    assert_eq!(code, 0, "{report:#}");
    let result = &report["results"][0];
    assert_eq!(result["outcome"], "pass");
    assert_eq!(result["history"]["covered"], true);
    assert_eq!(result["endState"]["verdict"], "safe");
}

#[tokio::test]
async fn a_deploy_tool_that_still_owns_replicas_is_at_risk() {
    let ns = TestNamespace::new("verify-risk").await;
    flux_workload_with_hpa(&ns).await;
    let (report, code) = verify(&ns, &["deploy/web", "--since", "10m"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["results"][0]["outcome"], "at-risk");
    assert!(report["results"][0]["reason"].as_str().unwrap().contains("next deploy"), "{report:#}");
}

#[tokio::test]
async fn a_live_watch_reports_the_drop_as_it_happens() {
    let ns = TestNamespace::new("verify-live-drop").await;
    flux_workload_with_hpa(&ns).await;
    let watcher =
        Running::spawn(&admin_kubeconfig(), Some(&ns.name), &["verify", "deploy/web", "--watch", "120s", "-o", "json"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dropped_at = Instant::now();
    ns.apply("kustomize-controller", &deployment_manifest("web", None)).await;
    let (output, _) = watcher.finish(Duration::from_secs(150)).await;
    let elapsed = dropped_at.elapsed();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&output)));
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let result = &report["results"][0];
    assert_eq!(result["outcome"], "drop");
    assert_eq!(result["live"]["minimum"]["spec"], 1);
    // The HPA (min 3) reconciles after the drop without having ordered it: its status (current
    // 1, desired 3) decides the drop unordered, and the watch stops there.
    let drop = &result["live"]["drops"][0];
    assert_eq!(drop["cause"]["by"], "unordered", "{report:#}");
    assert_eq!(drop["decided"]["by"], "hpa-status", "{report:#}");
    eprintln!("the deploy's drop was decided {:.1} s after it: {}", elapsed.as_secs_f64(), drop["decided"]["evidence"]);
    assert!(elapsed < Duration::from_secs(60), "stopped at the drop, not at the end of the 120 s window ({elapsed:?})");
}

#[tokio::test]
async fn a_live_watch_of_a_steady_workload_passes_after_the_duration() {
    let ns = TestNamespace::new("verify-live-steady").await;
    flux_workload_with_hpa(&ns).await;
    strip_yes(&ns);
    let started = Instant::now();
    let (report, code) = verify(&ns, &["deploy/web", "--watch", "5s"]);
    assert_eq!(code, 0, "{report:#}");
    assert!(started.elapsed() >= Duration::from_secs(5));
    let result = &report["results"][0];
    assert_eq!(result["outcome"], "pass");
    assert_eq!(result["live"]["minimum"]["spec"], 5);
    assert!(result.get("history").is_none(), "without --since only the live period is judged");
}

#[tokio::test]
async fn no_events_in_the_period_is_inconclusive() {
    let ns = TestNamespace::new("verify-noevents").await;
    flux_workload_with_hpa(&ns).await;
    strip_yes(&ns);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (report, code) = verify(&ns, &["deploy/web", "--since", "1s"]);
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(report["results"][0]["outcome"], "inconclusive");
    assert!(report["results"][0]["reason"].as_str().unwrap().contains("no scaling events"));
}

/// What a kubelet would do: mark every Pod running and ready, so rollouts make progress.
async fn mark_pods_ready(client: kube::Client, namespace: String, until: Instant) {
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    while Instant::now() < until {
        for pod in pods.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
            if !ready {
                let status =
                    json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
                let name = pod.metadata.name.unwrap_or_default();
                let _ = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_rolling_update_is_not_a_drop() {
    let ns = TestNamespace::new("verify-rollout").await;
    let until = Instant::now() + Duration::from_secs(120);
    let kubelet = tokio::spawn(mark_pods_ready(ns.client.clone(), ns.name.clone(), until));
    // Surge all at once: a 25% surge takes more than ten scaling steps for 5 replicas, and the
    // event recorder combines similar events beyond ten in ten minutes (verify is then
    // inconclusive, by design).
    let mut manifest = deployment_manifest("web", Some(5));
    manifest["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}});
    ns.apply("kustomize-controller", &manifest).await;
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 3, 10)).await;
    recorded_event(&ns, "web", "from 0 to 5").await;
    strip_yes(&ns);
    let mut next = manifest;
    next["spec"].as_object_mut().unwrap().remove("replicas");
    next["spec"]["template"]["spec"]["containers"][0]["image"] = json!("registry.invalid/app:2");
    ns.apply("kustomize-controller", &next).await;
    eventually(Duration::from_secs(90), "the rollout to finish", || async {
        let d = ns.deployment_value("web").await;
        let status = &d["status"];
        // Until the controller has observed the new template, the status is the old one's.
        let observed = status["observedGeneration"] == d["metadata"]["generation"];
        (observed && status["updatedReplicas"] == 5 && status["replicas"] == 5 && status["readyReplicas"] == 5)
            .then_some(())
    })
    .await;
    kubelet.abort();
    // The last step of the rollout; the recorder writes events in order, so all are in.
    recorded_event(&ns, "web", " to 0").await;

    let (report, code) = verify(&ns, &["deploy/web", "--since", "10m"]);
    let result = &report["results"][0];
    let sets: Vec<String> = result["history"]["timeline"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["source"].as_str().map(|s| s.split_whitespace().nth(7).unwrap_or_default().to_string()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(sets.len() >= 2, "the rollout moved two ReplicaSets: {report:#}");
    assert!(replicas_in_timeline(result).iter().skip(1).all(|r| *r >= 4), "{:?}", replicas_in_timeline(result));
    assert_eq!((code, result["outcome"].as_str()), (0, Some("pass")), "{report:#}");
}

#[tokio::test]
async fn a_statefulset_scaled_down_is_a_drop() {
    let ns = TestNamespace::new("verify-sts").await;
    let sts = |replicas: Option<i64>| {
        let mut object = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "ingester"},
            "spec": {
                "serviceName": "ingester", "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": "ingester"}},
                "template": {"metadata": {"labels": {"app": "ingester"}},
                             "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}
            }
        });
        if let Some(replicas) = replicas {
            object["spec"]["replicas"] = json!(replicas);
        }
        object
    };
    ns.apply("kustomize-controller", &sts(Some(4))).await;
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    eventually(Duration::from_secs(60), "4 ingester Pods", || async {
        (pods.list(&ListParams::default()).await.ok()?.items.len() == 4).then_some(())
    })
    .await;
    ns.apply("kustomize-controller", &sts(None)).await;
    eventually(Duration::from_secs(60), "1 ingester Pod", || async {
        (pods
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count()
            == 1)
            .then_some(())
    })
    .await;

    recorded_event(&ns, "ingester", "Delete Pod ingester-1 ").await;
    let (report, code) = verify(&ns, &["sts/ingester", "--since", "10m"]);
    let result = &report["results"][0];
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(result["outcome"], "drop");
    assert_eq!(result["history"]["drops"][0]["to"], 1);
    assert_eq!(result["history"]["timeline"]["minimum"], 1);
}

/// The same name in two namespaces, verified in one run across namespaces: each workload's
/// history is checked against its own ReplicaSets (found by its uid), not against those of the
/// first workload of that name the read found. In the second namespace an Event is missing (the
/// scale-down to 4 is deleted), so its ReplicaSets disagree with the replayed Events and the
/// answer must be `inconclusive`; checked against the other workload's uid, no ReplicaSet is
/// found, nothing disagrees and it passes (a false pass).
#[tokio::test]
async fn same_name_in_two_namespaces_each_is_checked_against_its_own_replica_sets() {
    let first = TestNamespace::new("verify-pair-a").await;
    let second = TestNamespace::new("verify-pair-b").await;
    let pair = format!("{}-{}", first.name, second.name);
    for ns in [&first, &second] {
        let labelled = |replicas| {
            let mut manifest = deployment_manifest("web", replicas);
            manifest["metadata"]["labels"]["verify-pair"] = json!(pair);
            manifest
        };
        ns.apply("kustomize-controller", &labelled(Some(5))).await;
        judged_hpa(ns, &hpa_manifest("web", "Deployment", "web", 3, 10)).await;
        recorded_event(ns, "web", "from 0 to 5").await;
        strip_yes(ns);
        ns.apply("kustomize-controller", &labelled(None)).await;
    }
    assert_success(&second.kubectl(&["scale", "deploy/web", "--replicas=4"], None), "kubectl scale");
    recorded_event(&second, "web", "from 5 to 4").await;
    delete_events_saying(&second, "web", "from 5 to 4").await;

    let mut command = std::process::Command::new(plugin_bin());
    let selector = format!("verify-pair={pair}");
    command
        .arg("--kubeconfig")
        .arg(admin_kubeconfig())
        .args(["verify", "-A", "-l", &selector, "--since", "10m", "-o", "json"]);
    let output = run_hermetic(command, None);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&output)));
    let results = report["results"].as_array().unwrap();
    let outcomes: Vec<(&str, &str)> =
        results.iter().map(|r| (r["namespace"].as_str().unwrap(), r["outcome"].as_str().unwrap())).collect();
    assert_eq!(outcomes, [(first.name.as_str(), "pass"), (second.name.as_str(), "inconclusive")], "{report:#}");
    let reason = results[1]["reason"].as_str().unwrap();
    assert!(reason.contains("ReplicaSet") && reason.contains("at 4"), "{reason}");
}

async fn delete_events_saying(ns: &TestNamespace, name: &str, text: &str) {
    use k8s_openapi::api::core::v1::Event;
    let events = Api::<Event>::namespaced(ns.client.clone(), &ns.name);
    for event in events.list(&ListParams::default()).await.unwrap() {
        if event.involved_object.name.as_deref() == Some(name)
            && event.message.as_deref().is_some_and(|m| m.contains(text))
        {
            let _ = events.delete(event.metadata.name.as_deref().unwrap(), &Default::default()).await;
        }
    }
}
