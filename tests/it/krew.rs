//! Distribution through krew, with krew's own tools: `plugin.yaml` passes the validator krew-index
//! runs, and the archive `cargo xtask dist` packs installs with `kubectl krew install`, runs as
//! `kubectl hpa-migrate` against the control plane, shows in `kubectl plugin list` and uninstalls.
//! The krew tools come from `cargo xtask tools krew`; `cargo xtask test` builds both first.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{admin_kubeconfig, assert_success, dist_dir, kubectl_bin, repo_root, run_hermetic, tools_bin};

const PLUGIN: &str = "hpa-migrate";
const BIN: &str = "kubectl-hpa_migrate";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where plugins keep finding their system tools when PATH is cut down to krew's bin directory.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The host as krew's `os`/`arch` labels name it: the platform `cargo xtask dist` packs.
fn host_platform() -> (&'static str, &'static str) {
    let os = if std::env::consts::OS == "macos" { "darwin" } else { std::env::consts::OS };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    (os, arch)
}

fn archive_name() -> String {
    let (os, arch) = host_platform();
    format!("kubectl-hpa-migrate_v{VERSION}_{os}_{arch}.tar.gz")
}

/// The archive `cargo xtask dist` packed for this version and host.
fn archive() -> PathBuf {
    let path = dist_dir().join(archive_name());
    assert!(path.is_file(), "{} is missing: run `cargo xtask dist` (`cargo xtask test` runs it first)", path.display());
    path
}

/// A krew tool built into `target/tools/bin`.
fn tool(name: &str) -> PathBuf {
    let path = tools_bin().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask tools krew` (`cargo xtask test` builds it first)",
        path.display()
    );
    path
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn plugin_manifest() -> Value {
    yaml(&repo_root().join("plugin.yaml"))
}

/// The platform entries of a manifest.
fn platforms(manifest: &Value) -> &Vec<Value> {
    manifest.pointer("/spec/platforms").and_then(Value::as_array).expect("spec.platforms is a list")
}

/// `plugin.yaml`'s platform entry for the host, checked against the archive's sha256 so that a
/// stale checksum fails here with the command that fixes it.
fn host_entry(manifest: &Value) -> &Value {
    let (os, arch) = host_platform();
    let entry = platforms(manifest)
        .iter()
        .find(|p| p["selector"]["matchLabels"] == json!({"os": os, "arch": arch}))
        .unwrap_or_else(|| panic!("plugin.yaml has no platform for {os}/{arch}"));
    let recorded =
        std::fs::read_to_string(archive().with_extension("gz.sha256")).expect("reading the archive's .sha256");
    let actual = recorded.split_whitespace().next().unwrap_or_default();
    assert_eq!(
        entry["sha256"].as_str(),
        Some(actual),
        "plugin.yaml's {os}/{arch} sha256 is not the archive's: run `cargo xtask dist`"
    );
    entry
}

/// Writes `manifest` as `<dir>/hpa-migrate.yaml`: krew's validator takes the plugin name from
/// the file name. JSON is YAML, so the document can be written as JSON.
fn write_named_manifest(dir: &Path, manifest: &Value) -> PathBuf {
    let path = dir.join(format!("{PLUGIN}.yaml"));
    std::fs::write(&path, serde_json::to_vec_pretty(manifest).unwrap()).unwrap();
    path
}

fn output_text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The manifest as krew-index would receive it: the version, name and binary krew relies on,
/// and krew's own validator on all six platforms (structure, selectors, no overlaps).
#[test]
fn plugin_manifest_passes_krews_validator() {
    let manifest = plugin_manifest();
    assert_eq!(manifest["metadata"]["name"], PLUGIN);
    assert_eq!(manifest["spec"]["version"], format!("v{VERSION}"), "plugin.yaml describes the crate's version");
    let mut selectors: Vec<String> = platforms(&manifest)
        .iter()
        .map(|p| {
            let labels = &p["selector"]["matchLabels"];
            let (os, arch) = (labels["os"].as_str().unwrap(), labels["arch"].as_str().unwrap());
            let exe = if os == "windows" { ".exe" } else { "" };
            assert_eq!(p["bin"], format!("{BIN}{exe}"), "{os}/{arch} runs the binary kubectl looks for");
            let archive = format!("kubectl-hpa-migrate_v{VERSION}_{os}_{arch}.tar.gz");
            let uri =
                format!("https://github.com/hpa-migrate/kubectl-hpa-migrate/releases/download/v{VERSION}/{archive}");
            assert_eq!(p["uri"], uri, "{os}/{arch} downloads this version's release asset");
            assert_eq!(p["files"], json!([{"from": format!("{BIN}{exe}"), "to": "."}, {"from": "LICENSE", "to": "."}]));
            format!("{os}/{arch}")
        })
        .collect();
    selectors.sort();
    assert_eq!(
        selectors,
        ["darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64", "windows/amd64", "windows/arm64"]
    );
    host_entry(&manifest);

    let dir = tempfile::tempdir().unwrap();
    let path = write_named_manifest(dir.path(), &manifest);
    let mut command = Command::new(tool("validate-krew-manifest"));
    command.arg("-manifest").arg(&path).arg("-skip-install");
    let output = run_hermetic(command, None);
    assert_success(&output, "validate-krew-manifest -skip-install on plugin.yaml");
    let (_, stderr) = output_text(&output);
    assert!(stderr.contains("structural validation OK"), "{stderr}");
    assert!(stderr.contains("no overlapping spec.platform[].selector"), "{stderr}");
}

/// A one-request-at-a-time HTTP server on 127.0.0.1 that answers every GET with one file, so
/// krew's validator can download the archive as it would from the release.
struct FileServer {
    port: u16,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    fn start(body: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a local port");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (served_count, stopping) = (served.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // The request line and headers end with an empty line.
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let mut stream = reader.into_inner();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body)).is_ok() {
                    served_count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self { port, served, stop, thread: Some(thread) }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The validator's full run, install included: the host's platform of `plugin.yaml`, its URI
/// pointed at the archive served from 127.0.0.1, installs through `kubectl krew` with its
/// checksum verified and LICENSE extracted.
#[test]
fn validator_installs_the_archive_from_its_uri() {
    let mut manifest = plugin_manifest();
    let mut entry = host_entry(&manifest).clone();
    let server = FileServer::start(std::fs::read(archive()).unwrap());
    entry["uri"] = json!(format!("http://127.0.0.1:{}/{}", server.port, archive_name()));
    manifest["spec"]["platforms"] = json!([entry]);

    let dir = tempfile::tempdir().unwrap();
    let path = write_named_manifest(dir.path(), &manifest);
    let mut command = Command::new(tool("validate-krew-manifest"));
    command.arg("-manifest").arg(&path);
    // The validator runs `kubectl krew install`: kubectl and kubectl-krew come from PATH.
    let kubectl_dir = kubectl_bin().parent().unwrap().to_path_buf();
    command.env_clear().env("PATH", join_path(&[&kubectl_dir, &tools_bin()]));
    let output = run_hermetic(command, None);
    assert_success(&output, "validate-krew-manifest with install");
    let (_, stderr) = output_text(&output);
    assert!(stderr.contains("all 1 spec.platforms installed fine"), "{stderr}");
    assert_eq!(server.served.load(Ordering::Relaxed), 1, "krew downloaded the archive from its uri once");
}

fn join_path(dirs: &[&Path]) -> String {
    let mut parts: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    parts.push(SYSTEM_PATH.to_string());
    parts.join(":")
}

/// A krew installation of its own: KREW_ROOT, an empty local index (so nothing reaches for the
/// network), and kubectl run with PATH cut down to krew's bin directory, as a user's shell has it.
struct KrewRoot {
    root: tempfile::TempDir,
}

impl KrewRoot {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("creating KREW_ROOT");
        // `krew uninstall` insists on an index; an empty git repository is one that has no plugins.
        let index = root.path().join("index/default");
        std::fs::create_dir_all(&index).unwrap();
        let mut git = Command::new("git");
        git.args(["init", "--quiet"]).arg(&index).env_clear().env("PATH", SYSTEM_PATH);
        assert_success(&run_hermetic(git, None), "git init of an empty krew index");
        Self { root }
    }

    fn bin_dir(&self) -> PathBuf {
        self.root.path().join("bin")
    }

    /// The real kubectl with nothing inherited but this KREW_ROOT, PATH = krew's bin directory
    /// (plus `extra`) and the system directories; `run_hermetic` gives it a temporary HOME.
    fn kubectl(&self, extra_path: Option<&Path>, args: &[&str]) -> Output {
        let bin = self.bin_dir();
        let mut dirs = vec![bin.as_path()];
        dirs.extend(extra_path);
        let mut command = Command::new(kubectl_bin());
        command
            .args(args)
            .env_clear()
            .env("PATH", join_path(&dirs))
            .env("KREW_ROOT", self.root.path())
            .env("KREW_NO_UPGRADE_CHECK", "1");
        run_hermetic(command, None)
    }

    /// `kubectl krew ...`, with the krew binary found on PATH as kubectl finds any plugin.
    fn krew(&self, args: &[&str]) -> Output {
        let mut all = vec!["krew"];
        all.extend_from_slice(args);
        self.kubectl(Some(&tools_bin()), &all)
    }
}

/// The path a user takes: `kubectl krew install` of the release archive, then the plugin run
/// through kubectl against the control plane, listed by `kubectl plugin list`, and uninstalled.
#[test]
fn krew_installs_the_archive_and_kubectl_runs_the_plugin() {
    let manifest_path = repo_root().join("plugin.yaml");
    host_entry(&plugin_manifest());
    let archive = archive();
    tool("kubectl-krew");
    let krew = KrewRoot::new();

    let install = krew.krew(&[
        "install",
        &format!("--manifest={}", manifest_path.display()),
        &format!("--archive={}", archive.display()),
    ]);
    assert_success(&install, "kubectl krew install --manifest --archive");
    let (_, stderr) = output_text(&install);
    assert!(stderr.contains(&format!("Installed plugin: {PLUGIN}")), "{stderr}");
    let link = krew.bin_dir().join(BIN);
    assert!(link.is_file(), "krew links {} into its bin directory", link.display());
    let store = krew.root.path().join("store").join(PLUGIN).join(format!("v{VERSION}"));
    assert!(store.join("LICENSE").is_file(), "krew installs LICENSE beside the binary");

    let list = krew.krew(&["list"]);
    assert_success(&list, "kubectl krew list");
    // A plugin installed from a manifest file belongs to no index: krew lists it as `detached/NAME`.
    assert!(output_text(&list).0.lines().any(|line| line.trim() == format!("detached/{PLUGIN}")), "{list:?}");

    let help = krew.kubectl(None, &[PLUGIN, "--help"]);
    assert_success(&help, "kubectl hpa-migrate --help");
    let (stdout, _) = output_text(&help);
    assert!(stdout.contains("Usage: kubectl hpa-migrate"), "{stdout}");
    assert!(stdout.contains("check"), "{stdout}");

    let kubeconfig = admin_kubeconfig();
    let kubeconfig = kubeconfig.to_str().unwrap();
    let check = krew.kubectl(None, &[PLUGIN, "--kubeconfig", kubeconfig, "check", "-A"]);
    // Other tests' namespaces come and go, so a workload somewhere may need action (exit 1).
    assert!(matches!(check.status.code(), Some(0 | 1)), "kubectl hpa-migrate check -A: {check:?}");
    let check_json = krew.kubectl(None, &[PLUGIN, "--kubeconfig", kubeconfig, "check", "-A", "-o", "json"]);
    let report: Value = serde_json::from_slice(&check_json.stdout)
        .unwrap_or_else(|e| panic!("check -A -o json through kubectl printed no JSON ({e}): {check_json:?}"));
    assert_eq!(report["kind"], "CheckReport");

    let plugins = krew.kubectl(None, &["plugin", "list"]);
    assert_success(&plugins, "kubectl plugin list");
    let (stdout, stderr) = output_text(&plugins);
    assert!(
        stdout.lines().any(|line| Path::new(line.trim()) == link),
        "kubectl plugin list shows {}: {stdout}",
        link.display()
    );
    assert!(
        !format!("{stdout}{stderr}").to_lowercase().contains("warning"),
        "kubectl plugin list warns:\n{stdout}{stderr}"
    );

    let uninstall = krew.krew(&["uninstall", PLUGIN]);
    assert_success(&uninstall, "kubectl krew uninstall");
    assert!(!link.exists() && !store.exists(), "krew removes the link and the installed files");
    let gone = krew.kubectl(None, &[PLUGIN, "--help"]);
    assert!(!gone.status.success(), "kubectl no longer finds the plugin: {gone:?}");
}

/// `krew-manifest`, rendered as the krew release bot renders it on a tag (the URL's `{{ .TagName }}`
/// filled in, `uri:` and a 4-space-indented `sha256:` in place of `addURIAndSha`), is `plugin.yaml`.
#[test]
fn release_template_renders_to_the_plugin_manifest() {
    let manifest = plugin_manifest();
    let tag = format!("v{VERSION}");
    let template = std::fs::read_to_string(repo_root().join("krew-manifest")).expect("reading krew-manifest");
    let mut rendered = String::new();
    let mut calls = 0;
    for line in template.lines() {
        let trimmed = line.trim();
        if let Some(call) =
            trimmed.strip_prefix("{{ addURIAndSha \"").and_then(|rest| rest.strip_suffix("\" .TagName }}"))
        {
            calls += 1;
            let uri = call.replace("{{ .TagName }}", &tag);
            let sha256 = platforms(&manifest)
                .iter()
                .find(|p| p["uri"] == uri)
                .and_then(|p| p["sha256"].as_str())
                .unwrap_or_else(|| panic!("krew-manifest's {uri} is not a uri of plugin.yaml"));
            // Quoted, as the all-zero placeholders of plugin.yaml must be to stay strings.
            let sha256 = serde_json::to_string(sha256).unwrap();
            rendered.push_str(&format!(
                "{}uri: {uri}\n    sha256: {sha256}\n",
                &line[..line.len() - line.trim_start().len()]
            ));
        } else {
            assert!(!trimmed.contains("addURIAndSha"), "unexpected template call: {line}");
            rendered.push_str(&line.replace("{{ .TagName }}", &tag));
            rendered.push('\n');
        }
    }
    assert_eq!(calls, 6, "one addURIAndSha per platform");
    assert!(!rendered.contains("{{"), "krew-manifest uses only .TagName and addURIAndSha:\n{rendered}");
    let rendered: Value =
        serde_saphyr::from_str(&rendered).unwrap_or_else(|e| panic!("rendered krew-manifest: {e}\n{rendered}"));
    assert_eq!(rendered, manifest, "krew-manifest and plugin.yaml describe the same plugin");
}
