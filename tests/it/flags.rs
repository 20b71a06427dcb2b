//! Every verb honours or refuses each kubectl flag it is given, and refuses before connecting:
//! these run the built binary with a kubeconfig that does not exist (or whose server is a closed
//! port), so a refusal is exit 2 with one line, and a flag that is taken goes on to load the
//! kubeconfig (exit 10). Only the last test, of what `resume -l` changes, needs the plane.

use std::path::{Path, PathBuf};
use std::process::Command;

use hpa_migrate::backup::{Backup, ObjectRef};

use crate::common::*;

const USAGE: i32 = 2;
const NOT_CONFIRMED: i32 = 8;
/// The kubeconfig could not be loaded: the flags were taken and the verb went on to connect.
const WENT_ON_TO_CONNECT: i32 = 10;

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn plugin_with(kubeconfig: &Path, args: &[&str]) -> Outcome {
    let mut command = Command::new(plugin_bin());
    command.arg("--kubeconfig").arg(kubeconfig).args(args);
    let output = run_hermetic(command, None);
    Outcome { code: output.status.code().unwrap_or(-1), stdout: stdout(&output), stderr: stderr(&output) }
}

fn no_kubeconfig() -> PathBuf {
    std::env::temp_dir().join("hpa-migrate-flags-test").join("no-such-kubeconfig")
}

fn without_cluster(args: &[&str]) -> Outcome {
    plugin_with(&no_kubeconfig(), args)
}

/// Asserts `args` are refused before connecting with one line that contains `says`.
fn refused(args: &[&str], says: &str) {
    let outcome = without_cluster(args);
    assert_eq!(outcome.code, USAGE, "{args:?} must be a usage error: {}", outcome.stderr);
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line: {}", outcome.stderr);
    assert!(lines[0].contains(says), "{args:?}: {}", lines[0]);
    assert!(outcome.stdout.is_empty(), "{args:?}: {}", outcome.stdout);
}

/// Asserts `args` are taken: the verb went on to load the (missing) kubeconfig.
fn taken(args: &[&str]) {
    let outcome = without_cluster(args);
    assert_eq!(outcome.code, WENT_ON_TO_CONNECT, "{args:?} must be taken: {}", outcome.stderr);
}

/// A manifest file and a backup of `shop/deployment/web`, in a directory of the test's own.
struct Inputs {
    _dir: tempfile::TempDir,
    manifest: String,
    backup: String,
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, deployment_manifest("web", Some(3)).to_string()).unwrap();
    let object = ObjectRef {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        resource: "deployments".into(),
        namespace: "shop".into(),
        name: "web".into(),
        uid: "0d7c3f7e-0000-4000-8000-000000000000".into(),
    };
    let backup = Backup::new(vec!["managed-fields".into()], object, "1".into()).write(dir.path()).unwrap();
    Inputs { manifest: manifest.display().to_string(), backup: backup.display().to_string(), _dir: dir }
}

/// Every verb that connects, with arguments that are otherwise valid.
fn every_verb(inputs: &Inputs) -> Vec<Vec<&str>> {
    vec![
        vec!["check"],
        vec!["strip", "deploy/web", "--yes"],
        vec!["verify", "deploy/web"],
        vec!["migrate"],
        vec!["restore", &inputs.backup, "--yes"],
        vec!["resume", "deploy/web"],
        vec!["preflight", "-f", &inputs.manifest],
        vec!["guard", "on", "deploy/web"],
        vec!["guard", "off", "deploy/web"],
        vec!["guard", "status"],
    ]
}

#[test]
fn every_verb_refuses_an_empty_namespace_and_a_bad_selector_before_connecting() {
    let inputs = inputs();
    for verb in every_verb(&inputs) {
        refused(&[verb.as_slice(), &["-n", ""]].concat(), "-n needs a namespace name");
        refused(&[verb.as_slice(), &["-l", "a in ("]].concat(), "invalid label selector 'a in ('");
        refused(&[verb.as_slice(), &["-l", ""]].concat(), "-l needs a selector");
    }
}

#[test]
fn check_strip_verify_and_guard_take_a_selector_and_refuse_targets_across_namespaces() {
    for verb in [&["check"][..], &["strip", "--yes"], &["verify"], &["guard", "on"], &["guard", "off"]] {
        taken(&[verb, &["-l", "app in (web,api),tier!=cache"]].concat());
    }
    for verb in [&["check"][..], &["strip", "--yes"], &["verify"], &["migrate"], &["guard", "on"], &["guard", "off"]] {
        refused(&[verb, &["-A", "deploy/web"]].concat(), "cannot be named across all namespaces");
    }
    taken(&["check", "-A", "-l", "app=web"]);
    // guard status lists every guarded workload in scope: a selector would be dropped.
    refused(&["guard", "status", "-l", "app=web"], "guard status does not take -l");
    taken(&["guard", "status", "-A"]);
}

#[test]
fn preflight_takes_a_selector_and_refuses_all_namespaces() {
    let inputs = inputs();
    taken(&["preflight", "-f", &inputs.manifest, "-l", "app=web"]);
    taken(&["preflight", "-f", &inputs.manifest, "-n", "shop"]);
    refused(&["preflight", "-f", &inputs.manifest, "-A"], "preflight does not take -A");
}

#[test]
fn restore_refuses_what_conflicts_with_its_backup() {
    let inputs = inputs();
    let backup = inputs.backup.as_str();
    refused(&["restore", backup, "-A"], "restore does not take -A: the backup is of shop/deployment/web");
    refused(&["restore", backup, "-l", "app=web"], "restore does not take -l");
    refused(&["restore", backup, "-n", "other"], "-n other: the backup is of shop/deployment/web");
    taken(&["restore", backup, "-n", "shop", "--yes"]);
    taken(&["restore", backup, "--yes"]);
}

#[test]
fn resume_takes_targets_or_a_selector() {
    refused(&["resume"], "name the workloads to resume (TARGET...), or select them with -l SELECTOR");
    refused(&["resume", "-A", "deploy/web"], "cannot be named across all namespaces");
    taken(&["resume", "-l", "app=web"]);
    taken(&["resume", "-A", "-l", "app=web"]);
    taken(&["resume", "deploy/web", "-l", "app=web"]);
}

/// Without a terminal, `migrate` prints the equivalent commands before any request: a server
/// on a closed port is never asked, and the commands carry the selector.
#[test]
fn migrate_without_a_terminal_keeps_the_selector_in_the_equivalent_commands() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let outcome = plugin_with(&kubeconfig, &["migrate", "-n", "shop", "-l", "app=web"]);
    assert_eq!(outcome.code, NOT_CONFIRMED, "{}", outcome.stderr);
    for line in ["check -n shop -l 'app=web'", "strip -n shop -l 'app=web' --dry-run", "resume -n shop -l 'app=web'"] {
        assert!(outcome.stdout.contains(line), "{line}: {}", outcome.stdout);
    }
}

#[test]
fn completion_prints_its_script_and_refuses_kubectl_flags() {
    refused(&["completion", "bash"], "completion does not take --kubeconfig");
    let mut command = Command::new(plugin_bin());
    command.args(["completion", "bash", "-n", "shop"]);
    let output = run_hermetic(command, None);
    assert_eq!(output.status.code(), Some(USAGE), "{}", stderr(&output));
    assert!(stderr(&output).contains("completion does not take -n"), "{}", stderr(&output));
    let mut command = Command::new(plugin_bin());
    command.args(["completion", "bash"]);
    assert_success(&run_hermetic(command, None), "completion bash");
}

/// `resume -l` resumes the paused workloads it selects, and only those (on the plane).
#[tokio::test]
async fn resume_with_a_selector_resumes_the_paused_workloads_it_selects() {
    const PAUSE: &str = "kustomize.toolkit.fluxcd.io/reconcile";
    let ns = TestNamespace::new("flags-resume").await;
    for (name, team) in [("web", "shop"), ("cart", "shop"), ("api", "core")] {
        let mut manifest = deployment_manifest(name, Some(2));
        manifest["metadata"]["labels"] = serde_json::json!({"team": team});
        manifest["metadata"]["annotations"] = serde_json::json!({PAUSE: "disabled"});
        ns.apply("kustomize-controller", &manifest).await;
    }
    let output = ns.plugin(&admin_kubeconfig(), &["resume", "-l", "team=shop"]);
    assert_success(&output, "resume -l team=shop");
    for (name, paused) in [("web", false), ("cart", false), ("api", true)] {
        let annotation = &ns.deployment_value(name).await["metadata"]["annotations"][PAUSE];
        assert_eq!(!annotation.is_null(), paused, "{name}: {}", stdout(&output));
        assert_eq!(stdout(&output).contains(&format!("resumed {}/deployment/{name}", ns.name)), !paused);
    }
    let again = ns.plugin(&admin_kubeconfig(), &["resume", "-l", "team=shop"]);
    assert_success(&again, "resume -l again");
    assert!(stderr(&again).contains("nothing to resume"), "{}", stderr(&again));
}
