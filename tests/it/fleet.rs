//! One command across several kubeconfig contexts, on the real plane: a kubeconfig of the
//! test's own whose contexts point at the plane (each with its own default namespace), at a
//! closed port, and at the plane with a token it rejects.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube::config::{Context, Kubeconfig, NamedContext};
use serde_json::Value;

use crate::common::*;

/// A kubeconfig with `fleet-a`, `fleet-b`, `fleet-c` (admin, each defaulting to its namespace),
/// `fleet-down` (a closed port) and `fleet-rejected` (a token the plane rejects).
struct Fleet {
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    namespaces: Vec<TestNamespace>,
}

impl Fleet {
    async fn new(prefix: &str) -> Self {
        let mut namespaces = Vec::new();
        for letter in ["a", "b", "c"] {
            namespaces.push(TestNamespace::new(&format!("{prefix}-{letter}")).await);
        }
        let admin = Kubeconfig::read_from(admin_kubeconfig()).expect("the admin kubeconfig");
        let plane = admin.clusters[0].clone();
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut down = plane.clone();
        down.name = "closed-port".into();
        down.cluster.as_mut().unwrap().server = Some(format!("https://127.0.0.1:{closed_port}"));
        let mut rejected_user = admin.auth_infos[0].clone();
        rejected_user.name = "rejected".into();
        rejected_user.auth_info.as_mut().unwrap().token = Some("not-a-token-the-plane-knows".to_string().into());
        let context = |name: &str, cluster: &str, user: &str, namespace: &str| NamedContext {
            name: name.into(),
            context: Some(Context {
                cluster: cluster.into(),
                user: Some(user.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let admin_user = admin.auth_infos[0].name.clone();
        let mut contexts: Vec<NamedContext> = ["a", "b", "c"]
            .iter()
            .zip(&namespaces)
            .map(|(letter, ns)| context(&format!("fleet-{letter}"), &plane.name, &admin_user, &ns.name))
            .collect();
        contexts.push(context("fleet-down", "closed-port", &admin_user, "default"));
        contexts.push(context("fleet-rejected", &plane.name, "rejected", "default"));
        let kubeconfig = Kubeconfig {
            clusters: vec![plane, down],
            auth_infos: vec![admin.auth_infos[0].clone(), rejected_user],
            contexts,
            current_context: Some("fleet-a".into()),
            ..Default::default()
        };
        let dir = tempfile::Builder::new().prefix("hpa-migrate-fleet-").tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
        Fleet { _dir: dir, kubeconfig: path, namespaces }
    }

    fn ns(&self, letter: usize) -> &TestNamespace {
        &self.namespaces[letter]
    }

    /// The plugin with this kubeconfig and no `-n`: each context's own namespace.
    fn plugin(&self, args: &[&str]) -> Output {
        plugin_with(&self.kubeconfig, args)
    }

    fn json(&self, args: &[&str]) -> (Value, i32, String) {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-o", "json"]);
        let output = self.plugin(&all);
        let document = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}); stderr: {}", stderr(&output)));
        (document, output.status.code().unwrap_or(-1), stderr(&output))
    }

    /// A Deployment `web` owned by Flux with an HPA that has judged it (strip-needed) in
    /// each namespace of `letters`; in the others, a `web` without an autoscaler.
    async fn web(&self, autoscaled: &[usize]) {
        for (index, ns) in self.namespaces.iter().enumerate() {
            ns.apply("kustomize-controller", &deployment_manifest("web", Some(4))).await;
            if autoscaled.contains(&index) {
                judged_hpa(ns, &hpa_manifest("web", "Deployment", "web", 2, 8)).await;
            }
        }
    }
}

fn plugin_with(kubeconfig: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(plugin_bin());
    command.arg("--kubeconfig").arg(kubeconfig).args(args);
    run_hermetic(command, None)
}

fn contexts(report: &Value) -> Vec<(String, Option<String>)> {
    report["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["error"].as_str().map(str::to_string)))
        .collect()
}

fn owned_by_flux(object: &Value) -> bool {
    replica_managers(object).iter().any(|(manager, _, _)| manager == "kustomize-controller")
}

#[tokio::test]
async fn check_runs_every_context_and_reports_the_unreachable_and_the_rejected() {
    let fleet = Fleet::new("fleet-check").await;
    fleet.web(&[0, 1, 2]).await;

    let (report, code, errors) = fleet.json(&["check", "--all-contexts"]);
    assert_eq!(code, 11, "the worst: rejected credentials (11) over unreachable (6) and action needed (1): {errors}");
    let listed = contexts(&report);
    let names: Vec<&str> = listed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["fleet-a", "fleet-b", "fleet-c", "fleet-down", "fleet-rejected"]);
    assert!(listed[..3].iter().all(|(_, error)| error.is_none()), "{report:#}");
    assert!(listed[3].1.as_deref().unwrap().contains("cannot reach the API server"), "{report:#}");
    assert!(listed[4].1.as_deref().unwrap().contains("401 Unauthorized"), "{report:#}");
    assert_eq!(report["contexts"][0]["cluster"], "hpa-migrate-local");
    assert!(report["contexts"][3]["server"].as_str().unwrap().starts_with("https://127.0.0.1:"));
    let workloads = report["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 3, "{report:#}");
    for (workload, letter) in workloads.iter().zip(0..) {
        let (context, ns) = (format!("fleet-{}", ["a", "b", "c"][letter]), &fleet.ns(letter).name);
        assert_eq!(
            (&workload["context"], &workload["namespace"]),
            (&Value::from(context.clone()), &Value::from(ns.clone()))
        );
        assert_eq!(workload["verdict"], "strip-needed");
        assert_eq!(
            workload["next"],
            format!("kubectl hpa-migrate strip --context {context} -n {ns} deployment/web --pause-flux")
        );
    }
    assert_eq!(report["summary"]["total"], 3);
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "one line per failed context: {errors}");
    assert!(lines[0].starts_with("error: context fleet-down (https://127.0.0.1:"), "{errors}");
    assert!(lines[1].starts_with("error: context fleet-rejected (https://127.0.0.1:"), "{errors}");

    // Text: one table, led by a CONTEXT column; each section names its context.
    let output = fleet.plugin(&["check", "--context", "fleet-a,fleet-b", "--context", "fleet-down"]);
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    let text = stdout(&output);
    let header = text.lines().next().unwrap();
    assert!(header.starts_with(" CONTEXT  NAMESPACE"), "{text}");
    assert!(text.contains(&format!("\nfleet-b: {}/deployment/web: strip-needed", fleet.ns(1).name)), "{text}");
    assert!(text.contains("2 workload(s): 0 safe, 2 need action"), "{text}");
    assert!(!text.contains(" fleet-c ") && !text.contains("fleet-c:"), "{text}");
}

#[tokio::test]
async fn globs_select_contexts_and_one_context_is_unchanged() {
    let fleet = Fleet::new("fleet-globs").await;
    fleet.web(&[0, 1, 2]).await;

    let (report, code, _) = fleet.json(&["check", "--context", "fleet-[ab]"]);
    assert_eq!(code, 1);
    let names: Vec<String> = contexts(&report).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["fleet-a", "fleet-b"]);

    let nothing = fleet.plugin(&["check", "--context", "prod-*"]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(nothing.stdout.is_empty());
    assert!(
        stderr(&nothing)
            .starts_with("error: --context 'prod-*' matches no context of the kubeconfig (it has: fleet-a,")
    );

    // One context, however it is named, is today's command byte for byte.
    let today = fleet.ns(2).plugin(&admin_kubeconfig(), &["check"]);
    for args in [&["check", "--context", "fleet-c"][..], &["check", "--context", "*-c"]] {
        let one = fleet.plugin(args);
        assert_eq!((stdout(&one), one.status.code()), (stdout(&today), today.status.code()), "{args:?}");
    }
    // --keep-going means nothing to a read.
    let keep_going = fleet.plugin(&["check", "--all-contexts", "--keep-going"]);
    assert_eq!(keep_going.status.code(), Some(2), "{}", stderr(&keep_going));
}

#[tokio::test]
async fn strip_plans_everywhere_then_writes_in_turn_and_stops_at_the_first_failure() {
    let fleet = Fleet::new("fleet-strip").await;
    // fleet-b's web has no autoscaler: strip refuses it.
    fleet.web(&[0, 2]).await;
    let backups = tempfile::tempdir().unwrap();
    let strip = ["strip", "deploy/web", "--yes", "--backup-dir", backups.path().to_str().unwrap()];

    // A context that cannot be planned stops everything before any write.
    let mut args = strip.to_vec();
    args.extend(["--context", "fleet-a,fleet-down"]);
    let (report, code, errors) = fleet.json(&args);
    assert_eq!(code, 6, "{errors}");
    assert!(contexts(&report)[0].1.as_deref().unwrap().starts_with("not run: context fleet-down could not be planned"));
    assert!(owned_by_flux(&fleet.ns(0).deployment_value("web").await), "nothing was written in fleet-a");

    // Without a terminal, several contexts need --yes like one.
    let unconfirmed = fleet.plugin(&["strip", "deploy/web", "--context", "fleet-[abc]"]);
    assert_eq!(unconfirmed.status.code(), Some(8), "{}", stderr(&unconfirmed));

    // a is written, b refuses, so c is not run.
    let mut args = strip.to_vec();
    args.extend(["--context", "fleet-a,fleet-b,fleet-c"]);
    let (report, code, errors) = fleet.json(&args);
    assert_eq!(code, 1, "b's refusal: {errors}");
    let results: Vec<(&str, &str)> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["context"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(results, [("fleet-a", "changed"), ("fleet-b", "refused")], "{report:#}");
    let c = &contexts(&report)[2];
    assert!(c.1.as_deref().unwrap().starts_with("not run: context fleet-b failed first"), "{report:#}");
    assert!(errors.contains("context fleet-c: not run: context fleet-b failed first"), "{errors}");
    assert!(!owned_by_flux(&fleet.ns(0).deployment_value("web").await));
    assert!(owned_by_flux(&fleet.ns(2).deployment_value("web").await), "fleet-c was not run");

    // --keep-going goes on after b.
    let mut args = strip.to_vec();
    args.extend(["--context", "fleet-b,fleet-c", "--keep-going"]);
    let output = fleet.plugin(&args);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("context fleet-c (https://"), "the diff is headed by its context: {text}");
    assert!(text.contains(&format!("fleet-c: changed {}/deployment/web", fleet.ns(2).name)), "{text}");
    assert!(text.contains(&format!("fleet-b: refused {}/deployment/web", fleet.ns(1).name)), "{text}");
    assert!(!owned_by_flux(&fleet.ns(2).deployment_value("web").await));

    let nothing_named = fleet.plugin(&["strip", "--yes", "--context", "fleet-a,fleet-b"]);
    assert_eq!(nothing_named.status.code(), Some(2));
    assert_eq!(stderr(&nothing_named).lines().count(), 1, "refused once, not per context: {}", stderr(&nothing_named));

    let refused = fleet.plugin(&["resume", "deploy/web", "--context", "fleet-a,fleet-b"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).starts_with("error: resume runs in one context"), "{}", stderr(&refused));
}

#[tokio::test]
async fn guard_on_and_off_across_contexts() {
    let fleet = Fleet::new("fleet-guard").await;
    fleet.web(&[0, 1]).await;

    let down = fleet.plugin(&["guard", "on", "deploy/web", "--context", "fleet-a,fleet-down"]);
    assert_eq!(down.status.code(), Some(6), "{}", stderr(&down));
    assert!(!fleet.ns(0).deployment_value("web").await["metadata"]["labels"].to_string().contains("guard"));

    let on = fleet.plugin(&["guard", "on", "deploy/web", "--context", "fleet-a,fleet-b"]);
    assert_success(&on, "guard on in two contexts");
    let text = stdout(&on);
    let table: Vec<&str> = text.lines().take(3).collect();
    assert!(table[0].starts_with(" CONTEXT  NAMESPACE"), "{text}");
    for (line, letter) in table[1..].iter().zip([0, 1]) {
        let cells: Vec<&str> = line.split_whitespace().take(3).collect();
        let context = format!("fleet-{}", ["a", "b"][letter]);
        assert_eq!(cells, [context.as_str(), fleet.ns(letter).name.as_str(), "deployment/web"], "{text}");
    }
    assert!(text.contains(&format!("\nfleet-b: guarded {}/deployment/web: a server-side dry run", fleet.ns(1).name)));

    let status = fleet.plugin(&["guard", "status", "--context", "fleet-a,fleet-b"]);
    let text = stdout(&status);
    assert!(text.starts_with(" CONTEXT  NAMESPACE"), "{text}");
    assert!(text.contains("\nfleet-b: policy hpa-migrate-guard-"), "{text}");

    let (status, code, _) = fleet.json(&["guard", "status", "--context", "fleet-a,fleet-b"]);
    assert_eq!(code, 0, "{status:#}");
    let guarded: Vec<(&str, &str)> = status["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["context"].as_str().unwrap(), w["namespace"].as_str().unwrap()))
        .collect();
    assert_eq!(guarded, [("fleet-a", fleet.ns(0).name.as_str()), ("fleet-b", fleet.ns(1).name.as_str())]);

    let off = fleet.plugin(&["guard", "off", "deploy/web", "--context", "fleet-a,fleet-b"]);
    assert_success(&off, "guard off in two contexts");
    assert_eq!(
        stdout(&off),
        format!(
            "fleet-a: unguarded {}/deployment/web\nfleet-b: unguarded {}/deployment/web\n",
            fleet.ns(0).name,
            fleet.ns(1).name
        )
    );
}

#[tokio::test]
async fn verify_and_preflight_name_the_context_of_every_result() {
    let fleet = Fleet::new("fleet-verify").await;
    fleet.web(&[0, 1]).await;

    let (report, code, errors) = fleet.json(&["verify", "deploy/web", "--context", "fleet-a,fleet-b,fleet-down"]);
    assert_eq!(code, 6, "unreachable is worse than any verdict: {errors}");
    let results: Vec<(&str, &str)> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["context"].as_str().unwrap(), r["namespace"].as_str().unwrap()))
        .collect();
    assert_eq!(results, [("fleet-a", fleet.ns(0).name.as_str()), ("fleet-b", fleet.ns(1).name.as_str())]);
    assert!(contexts(&report)[2].1.as_deref().unwrap().contains("cannot reach the API server"), "{report:#}");
    assert_eq!(errors.lines().count(), 1, "{errors}");

    let text = stdout(&fleet.plugin(&["verify", "deploy/web", "--context", "fleet-a,fleet-b"]));
    assert!(text.starts_with(&format!("fleet-a: {}/deployment/web: ", fleet.ns(0).name)), "{text}");
    assert!(text.contains(&format!("\nfleet-b: {}/deployment/web: ", fleet.ns(1).name)), "{text}");

    // The same manifest, without replicas, against both: each prediction's steps name its context.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("web.json");
    std::fs::write(&manifest, deployment_manifest("web", None).to_string()).unwrap();
    let args = ["preflight", "-f", manifest.to_str().unwrap(), "--as", "flux", "--context", "fleet-a,fleet-b"];
    let (report, code, errors) = fleet.json(&args);
    assert_eq!(code, 1, "the drop: {errors}");
    assert_eq!(report["summary"]["drops"], 2, "{report:#}");
    for (workload, letter) in report["workloads"].as_array().unwrap().iter().zip(["a", "b"]) {
        assert_eq!(workload["context"], format!("fleet-{letter}"));
        assert_eq!(workload["outcome"], "drops");
        let first_step = workload["steps"][0].to_string();
        assert!(first_step.contains(&format!("strip --context fleet-{letter} -n ")), "{first_step}");
    }
    let text = stdout(&fleet.plugin(&args));
    assert!(text.starts_with(" CONTEXT  NAMESPACE"), "{text}");
    assert!(text.contains(&format!("\nfleet-b: {}/deployment/web: drops", fleet.ns(1).name)), "{text}");
}
