//! The guided migration, driven in a real terminal (tmux: send-keys, capture-pane) end to end
//! on the local control plane.

use serde_json::{Value, json};

use crate::common::*;
use crate::gitops::FluxRepo;
use crate::terminal::Terminal;

fn flow_command(ns: &TestNamespace) -> String {
    format!(
        "{} --kubeconfig {} -n {} migrate deploy/web --timeout 90s --backup-dir {}",
        plugin_bin().display(),
        admin_kubeconfig().display(),
        ns.name,
        std::env::temp_dir().join(format!("hpa-migrate-backups-{}", ns.name)).display()
    )
}

fn with_label(mut manifest: Value, revision: &str) -> Value {
    manifest["metadata"]["labels"] = json!({"rev": revision});
    manifest
}

#[tokio::test]
async fn the_guided_flow_migrates_a_flux_workload() {
    // It guards the workload for the migration window: one guard test at a time.
    let _guard = crate::guard::ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("flow-flux").await;
    let repo = FluxRepo::new(&ns, "shop", &[with_label(deployment_manifest("web", Some(5)), "1")]).await;
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 2, 10)).await;

    let terminal = Terminal::start(&flow_command(&ns));
    terminal.wait_for("Select workloads to migrate").await;
    terminal.keys(&["Enter"]);
    // This cluster serves guard on --pin and Flux applies server-side: the short path is offered.
    terminal.wait_for("Pin these workloads for the migration window instead of stripping").await;
    terminal.keys(&["n"]);
    terminal.wait_for("Guard these workloads for the migration window").await;
    terminal.keys(&["y"]);
    terminal.wait_for("the guard is lifted at the end").await;
    assert_eq!(ns.deployment_value("web").await["metadata"]["labels"]["hpa-migrate.io/guard"], "deny");
    terminal.wait_for("Pause their reconciliation first").await;
    terminal.keys(&["y"]);
    terminal.wait_for("Apply these changes to 1 object(s)?").await;
    terminal.keys(&["y"]);
    terminal.wait_for("Resume Flux reconciliation now").await;
    let paused = ns.deployment_value("web").await;
    assert_eq!(paused["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"], "disabled");
    assert!(replica_managers(&paused).is_empty(), "stripped before the source changes");
    terminal.keys(&["y", "Enter"]);
    terminal.wait_for("Deploy now.").await;

    // The commit without replicas, and the real kustomize-controller's reconcile.
    repo.commit(&[with_label(deployment_manifest("web", None), "2")]).await;
    terminal.wait_for("EXIT=").await;
    let screen = terminal.screen();
    assert!(screen.contains("web: 5 -> 5 replicas (minimum while watching 5), now safe"), "{screen}");
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(screen.contains("Lifted the guard of 1 workload(s)."), "{screen}");
    let after = ns.deployment_value("web").await;
    assert_eq!(spec_replicas(&after), Some(5));
    assert!(after["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"].is_null(), "Flux resumed");
    assert!(after["metadata"]["labels"].get("hpa-migrate.io/guard").is_none(), "the guard was lifted");
}

/// The short path: pinned, nothing paused nor stripped, the real kustomize-controller applies the
/// commit without replicas, the count stays in every stored version, and the pin is lifted.
#[tokio::test]
async fn the_guided_flow_pins_a_flux_workload_with_no_pause_and_no_strip() {
    let _guard = crate::guard::ONE_AT_A_TIME.lock().await;
    let ns = TestNamespace::new("flow-pin").await;
    let repo = FluxRepo::new(&ns, "shop", &[with_label(deployment_manifest("web", Some(5)), "1")]).await;
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 2, 10)).await;
    settled(&ns, "web").await;
    let since = ns.resource_version("web").await;

    let terminal = Terminal::start(&flow_command(&ns));
    terminal.wait_for("Select workloads to migrate").await;
    terminal.keys(&["Enter"]);
    terminal.wait_for("Pin these workloads for the migration window instead of stripping").await;
    terminal.keys(&["y"]);
    terminal.wait_for("Deploy now.").await;
    let screen = terminal.screen();
    assert!(screen.contains("Pinned 1 workload(s)"), "{screen}");
    assert!(!screen.contains("Guard these workloads") && !screen.contains("Pause their reconciliation"), "{screen}");
    assert!(!screen.contains("Apply these changes"), "no strip: {screen}");
    assert_eq!(ns.deployment_value("web").await["metadata"]["labels"]["hpa-migrate.io/guard"], "pin");

    repo.commit(&[with_label(deployment_manifest("web", None), "2")]).await;
    terminal.wait_for("EXIT=").await;
    let screen = terminal.screen();
    assert!(screen.contains("web: 5 -> 5 replicas (minimum while watching 5), now safe"), "{screen}");
    assert!(screen.contains("EXIT=0") && screen.contains("Lifted the guard of 1 workload(s)."), "{screen}");
    ns.assert_kept_since("web", &since, 5).await;
    let after = ns.deployment_value("web").await;
    assert!(replica_managers(&after).is_empty(), "{:#}", after["metadata"]["managedFields"]);
    let left: Vec<&String> = after["metadata"]["labels"]
        .as_object()
        .into_iter()
        .chain(after["metadata"]["annotations"].as_object())
        .flat_map(|m| m.keys())
        .filter(|k| k.starts_with("hpa-migrate.io/"))
        .collect();
    assert!(left.is_empty(), "the pin and its evidence were lifted: {left:?}");
}

#[tokio::test]
async fn the_guided_flow_migrates_a_client_side_apply_workload() {
    let ns = TestNamespace::new("flow-csa").await;
    let apply = |manifest: Value| {
        let text = serde_json::to_string(&manifest).unwrap();
        assert_success(&ns.kubectl(&["apply", "-f", "-"], Some(&text)), "kubectl apply");
    };
    apply(with_label(deployment_manifest("web", Some(4)), "1"));
    judged_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 2, 10)).await;

    let terminal = Terminal::start(&flow_command(&ns));
    terminal.wait_for("Select workloads to migrate").await;
    terminal.keys(&["Enter"]);
    terminal.wait_for("Guard these workloads for the migration window").await;
    terminal.keys(&["n"]);
    terminal.wait_for("Apply these changes to 1 object(s)?").await;
    assert!(!terminal.screen().contains("Pause their reconciliation"), "no Flux, no pause question");
    terminal.keys(&["y"]);
    terminal.wait_for("Deploy now.").await;
    assert!(terminal.screen().contains("then `kubectl apply -f` it as usual"), "{}", terminal.screen());

    apply(with_label(deployment_manifest("web", None), "2"));
    terminal.wait_for("EXIT=").await;
    let screen = terminal.screen();
    assert!(screen.contains("web: 4 -> 4 replicas (minimum while watching 4), now safe"), "{screen}");
    assert_eq!(spec_replicas(&ns.deployment_value("web").await), Some(4));
}

#[tokio::test]
async fn without_a_terminal_the_flow_prints_the_commands_instead() {
    let ns = TestNamespace::new("flow-noterm").await;
    let output = ns.plugin(&admin_kubeconfig(), &["migrate", "deploy/web"]);
    assert_eq!(output.status.code(), Some(8), "{}", stderr(&output));
    let commands = stdout(&output);
    assert!(
        commands.contains(&format!("kubectl hpa-migrate strip -n {} deploy/web --pause-flux --yes", ns.name)),
        "{commands}"
    );
    assert!(stderr(&output).contains("needs a terminal"));

    let output = ns.plugin(&admin_kubeconfig(), &[]);
    assert_eq!(output.status.code(), Some(2), "no command and no terminal: {}", stderr(&output));
}
