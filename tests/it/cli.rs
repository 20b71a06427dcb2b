//! The command line as people meet it: help, completion through the real kubectl, output on
//! pipes and terminals, request logging.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use clap::CommandFactory;
use hpa_migrate::cli::Cli;

use crate::common::*;
use crate::terminal::Terminal;

// The workloads here are made by a forced server-side apply as `kustomize-controller`, not the
// real Flux: these tests are about help, completion and output, and only need an Apply entry
// named kustomize-controller; Flux's takeover is tested with the real controller in flux.rs.

/// Runs the plugin with `args` (no kubeconfig given), as `run_hermetic` does.
fn plugin(args: &[&str]) -> Output {
    let mut command = Command::new(plugin_bin());
    command.args(args);
    run_hermetic(command, None)
}

#[test]
fn help_starts_with_the_about_text_and_names_the_kubectl_command() {
    let output = plugin(&["--help"]);
    assert_success(&output, "--help");
    let help = stdout(&output);
    let about = Cli::command().get_about().expect("the CLI has an about text").to_string();
    // Help is wrapped to the terminal's width: compare the first paragraph word by word.
    let first_paragraph = help.split("\n\n").next().unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(first_paragraph, about, "{help}");
    assert!(help.contains("\nUsage: kubectl hpa-migrate [OPTIONS] "), "{help}");
    assert!(!help.contains("kubectl-hpa_migrate"), "the file name is not the command: {help}");
    assert!(!help.contains("__complete"), "the internal verb is hidden: {help}");
    assert!(stderr(&output).is_empty());

    let output = plugin(&["strip", "--help"]);
    assert_success(&output, "strip --help");
    assert!(
        stdout(&output).contains("\nUsage: kubectl hpa-migrate strip [OPTIONS] [TARGET]...\n"),
        "{}",
        stdout(&output)
    );
}

/// A namespace with one Deployment that no autoscaler targets: `check --all-workloads` has a
/// coloured verdict to print, at once.
async fn one_unscaled_workload(prefix: &str) -> TestNamespace {
    let ns = TestNamespace::new(prefix).await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(2))).await;
    ns
}

#[tokio::test]
async fn verbose_logs_requests_on_stderr_and_leaves_stdout_alone() {
    let ns = one_unscaled_workload("cli-verbose").await;
    // Both runs must see the same object: no status write from the controller in between.
    settled(&ns, "web").await;
    let quiet = ns.plugin(&admin_kubeconfig(), &["check", "--all-workloads", "-o", "json"]);
    let verbose = ns.plugin(&admin_kubeconfig(), &["-v", "check", "--all-workloads", "-o", "json"]);
    assert_eq!(quiet.status.code(), Some(1), "{}", stderr(&quiet));
    assert_eq!(verbose.status.code(), Some(1));
    assert_eq!(stdout(&verbose), stdout(&quiet), "-v adds nothing to stdout");
    assert!(stderr(&quiet).is_empty(), "{}", stderr(&quiet));

    let log = stderr(&verbose);
    let listed = format!("/apis/apps/v1/namespaces/{}/deployments", ns.name);
    assert!(log.lines().any(|l| l.contains("GET") && l.contains(&listed)), "the LIST is logged: {log}");
    assert!(log.lines().any(|l| l.contains("horizontalpodautoscalers")), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour when stderr is not a terminal: {log}");
    assert!(!stdout(&quiet).contains('\u{1b}'));
}

/// Spawns the plugin with its stdout a pipe whose reading end is already closed, as in
/// `kubectl hpa-migrate check | head -0`, and waits for it.
fn into_a_closed_pipe(kubeconfig: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(plugin_bin());
    if let Some(kubeconfig) = kubeconfig {
        command.arg("--kubeconfig").arg(kubeconfig);
    }
    command.args(args).env_remove("KUBECONFIG").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawning the plugin");
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn a_closed_pipe_ends_output_quietly() {
    let output = into_a_closed_pipe(None, &["completion", "bash"]);
    assert_eq!((output.status.code(), stderr(&output)), (Some(0), String::new()));

    // A workload the HPA already rescaled is `safe`: check has a report to print and exits 0.
    let ns = TestNamespace::new("cli-pipe").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(1))).await;
    rescaling_hpa(&ns, &hpa_manifest("web", "Deployment", "web", 2, 4), "web", 2).await;
    for format in ["text", "json"] {
        let output = into_a_closed_pipe(Some(&admin_kubeconfig()), &["-n", &ns.name, "check", "-o", format]);
        assert_eq!((output.status.code(), stderr(&output)), (Some(0), String::new()), "-o {format}");
    }
}

/// Runs the plugin with its stdout and stderr on a terminal until it exits, and returns what
/// the screen shows, colours included as escape codes.
fn on_a_terminal(env: &str, args: &[&str]) -> String {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    Terminal::start(&format!("env {env} '{}' {}", plugin_bin().display(), quoted.join(" "))).screen_at_exit()
}

#[tokio::test]
async fn colour_on_a_terminal_unless_no_color_says_otherwise() {
    let ns = one_unscaled_workload("cli-color").await;
    let kubeconfig = admin_kubeconfig();
    let check = ["--kubeconfig", kubeconfig.to_str().unwrap(), "-n", &ns.name, "check", "--all-workloads"];

    let screen = on_a_terminal("", &check);
    assert!(screen.contains("autoscaler-missing"), "{screen}");
    assert!(screen.contains("\u{1b}[31m"), "the verdict is red on a terminal: {screen:?}");

    let screen = on_a_terminal("NO_COLOR=1", &check);
    assert!(screen.contains("autoscaler-missing"), "{screen}");
    assert!(!screen.contains('\u{1b}'), "NO_COLOR: {screen:?}");

    let mut flagged = vec!["--no-color", "-v"];
    flagged.extend_from_slice(&check);
    let screen = on_a_terminal("", &flagged);
    assert!(screen.contains("autoscaler-missing") && screen.contains("GET"), "{screen}");
    assert!(!screen.contains('\u{1b}'), "--no-color, request log included: {screen:?}");

    let missing = ["--kubeconfig", kubeconfig.to_str().unwrap(), "-n", &ns.name, "check", "deploy/nope"];
    let screen = on_a_terminal("", &missing);
    assert!(screen.contains("not found"), "{screen}");
    assert!(screen.contains('\u{1b}'), "the error label is coloured on a terminal: {screen:?}");
    let screen = on_a_terminal("NO_COLOR=1", &missing);
    assert!(!screen.contains('\u{1b}'), "{screen:?}");
}

/// A PATH directory holding the plugin and its completion helper, as an install leaves them.
fn install_dir(with_helper: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(plugin_bin(), dir.path().join("kubectl-hpa_migrate")).unwrap();
    if with_helper {
        let helper = repo_root().join("completion/kubectl_complete-hpa_migrate");
        std::os::unix::fs::symlink(helper, dir.path().join("kubectl_complete-hpa_migrate")).unwrap();
    }
    dir
}

/// `kubectl __complete hpa-migrate WORDS...`, the entry point kubectl's shell scripts call on
/// TAB: the candidates' values and the directive line.
fn kubectl_completes(dir: &Path, words: &[&str]) -> (Vec<String>, String) {
    let output = Command::new(kubectl_bin())
        .args(["__complete", "hpa-migrate"])
        .args(words)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
        .env("HOME", dir)
        .env("KUBECONFIG", admin_kubeconfig())
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl");
    assert_success(&output, &format!("kubectl __complete hpa-migrate {words:?}"));
    let text = stdout(&output);
    let mut lines: Vec<&str> = text.lines().collect();
    let directive = lines.pop().unwrap_or_default().to_string();
    (lines.iter().map(|l| l.split('\t').next().unwrap().to_string()).collect(), directive)
}

#[test]
fn kubectl_completes_the_verbs_through_the_helper() {
    let dir = install_dir(true);
    let (found, directive) = kubectl_completes(dir.path(), &[""]);
    let verbs: Vec<String> =
        Cli::command().get_subcommands().filter(|v| !v.is_hide_set()).map(|v| v.get_name().to_string()).collect();
    for verb in ["check", "strip", "restore", "resume", "completion"] {
        assert!(verbs.iter().any(|v| v == verb), "{verb} is a verb");
    }
    for verb in &verbs {
        assert!(found.contains(verb), "{verb}: {found:?}");
    }
    assert!(!found.iter().any(|v| v.starts_with("__")), "{found:?}");
    assert_eq!(directive, ":4", "no file names among the verbs");

    let (found, _) = kubectl_completes(dir.path(), &["check", "--all-"]);
    assert_eq!(found, vec!["--all-workloads", "--all-namespaces", "--all-contexts"]);
    let (found, _) = kubectl_completes(dir.path(), &["strip", "deploy/web", "--method", "h"]);
    assert_eq!(found, vec!["helm-release", "handover"]);
    let (_, directive) = kubectl_completes(dir.path(), &["restore", ""]);
    assert_eq!(directive, ":0", "a backup file: the shell offers file names");

    let without = install_dir(false);
    let (found, _) = kubectl_completes(without.path(), &[""]);
    assert!(found.is_empty(), "without the helper kubectl knows nothing of the verbs: {found:?}");
}

#[tokio::test]
async fn kubectl_completes_workloads_and_namespaces_from_the_cluster() {
    let ns = TestNamespace::new("cli-complete").await;
    ns.apply("kustomize-controller", &deployment_manifest("web", Some(2))).await;
    let sts = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}
        }
    });
    ns.apply("kustomize-controller", &sts).await;
    let dir = install_dir(true);
    let dir = dir.path();
    let n = ns.name.as_str();

    let (found, _) = kubectl_completes(dir, &["-n", n, "check", ""]);
    assert_eq!(found, vec!["deployment/web", "statefulset/db"]);
    let (found, _) = kubectl_completes(dir, &["strip", "--namespace", n, "sts/"]);
    assert_eq!(found, vec!["sts/db"]);
    let (found, _) = kubectl_completes(dir, &["-n", n, "strip", "deployment", ""]);
    assert_eq!(found, vec!["web"]);
    let (found, _) = kubectl_completes(dir, &["-n", n, "check", "deployment/web", ""]);
    assert_eq!(found, vec!["statefulset/db"], "a workload already named is not offered again");
    let (found, _) = kubectl_completes(dir, &["-n", &n[..n.len() - 2]]);
    assert!(found.contains(&n.to_string()), "{found:?}");
}
