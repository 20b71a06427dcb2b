//! The real Flux kustomize-controller beside the control plane: built from the pinned Go module
//! in `tests/tools/flux/` (a module that requires kustomize-controller and carries over its
//! replace directives, since `go install ...@version` refuses a module with replaces), run
//! outside the cluster with a service account bound to `cluster-admin` (what Flux's own install
//! grants it), the Kustomization CRD from its module and the source CRDs (GitRepository,
//! OCIRepository, Bucket, ExternalArtifact) from source-controller's module, and its ports on
//! free 127.0.0.1 ports.
//!
//! No source-controller runs: kustomize-controller only reads its source's
//! `status.artifact` (url, revision, digest) and downloads the tarball from that URL, so the
//! tests serve tarballs themselves and write the GitRepository status as source-controller
//! would (tests/it/gitops.rs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::{self, Paths};
use crate::controller;
use crate::gobuild::{GoBinary, GoModule, required_version};
use crate::workspace_root;

const MODULE: &str = "github.com/fluxcd/kustomize-controller";
/// kustomize-controller's dependency on the source API; the CRDs live in the main module of
/// the same version (the API module ships only Go types).
const SOURCE_API_MODULE: &str = "github.com/fluxcd/source-controller/api";
const SOURCE_MODULE: &str = "github.com/fluxcd/source-controller";
/// The component name: binary, pid and log file under target/cluster. It is also the field
/// manager the controller applies with, as on real clusters.
pub const COMPONENT: &str = "kustomize-controller";
/// The controller's RUNTIME_NAMESPACE and its service account's namespace, as Flux installs it.
pub const NAMESPACE: &str = "flux-system";

fn module_dir() -> PathBuf {
    workspace_root().join("tests/tools/flux")
}

pub fn module(paths: &Paths) -> Result<GoModule<'static>> {
    const BINARIES: &[GoBinary] = &[GoBinary { package: MODULE, name: COMPONENT }];
    Ok(GoModule {
        label: "kustomize-controller",
        dir: module_dir(),
        binaries: BINARIES,
        ldflags: "-s -w".into(),
        out_dir: paths.bin.clone(),
    })
}

pub fn build(paths: &Paths) -> Result<()> {
    module(paths)?.ensure_built()
}

/// The directory of `module@version` in the module cache, downloading it if needed. Run outside
/// any module (the system temp dir), so the pinned go.mod/go.sum are never touched.
fn module_source(module: &str, version: &str) -> Result<PathBuf> {
    let output = Command::new("go")
        .current_dir(std::env::temp_dir())
        .env("GO111MODULE", "on")
        .args(["mod", "download", "-json", &format!("{module}@{version}")])
        .output()
        .context("running `go mod download`")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "`go mod download {module}@{version}` failed: {}{}",
            text.trim(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let info: serde_json::Value = serde_json::from_str(&text).context("reading `go mod download -json`")?;
    info["Dir"].as_str().map(PathBuf::from).with_context(|| format!("no Dir for {module}@{version}: {text}"))
}

/// The CRD files the controller needs: its own Kustomization and the sources it watches.
fn crd_files() -> Result<Vec<PathBuf>> {
    controller_crd_files(
        &module_dir(),
        MODULE,
        "kustomize.toolkit.fluxcd.io_kustomizations",
        &["gitrepositories", "ocirepositories", "buckets", "externalartifacts"],
    )
}

/// A Flux controller's CRD files at the versions its pinned module (`module_dir`) requires: its
/// own (`own`, a file name under `config/crd/bases/` of `controller`'s module) and the
/// source-controller kinds (plural names) it watches.
pub(crate) fn controller_crd_files(
    module_dir: &Path,
    controller: &str,
    own: &str,
    sources: &[&str],
) -> Result<Vec<PathBuf>> {
    let go_mod = module_dir.join("go.mod");
    let controller_dir = module_source(controller, &required_version(&go_mod, controller)?)?;
    let source = module_source(SOURCE_MODULE, &required_version(&go_mod, SOURCE_API_MODULE)?)?;
    let mut files = vec![controller_dir.join(format!("config/crd/bases/{own}.yaml"))];
    for kind in sources {
        files.push(source.join(format!("config/crd/bases/source.toolkit.fluxcd.io_{kind}.yaml")));
    }
    Ok(files)
}

/// Starts the controller on the running plane unless it already runs (the API server is left
/// alone, so tests running elsewhere on the plane are not disturbed).
pub fn ensure_running(paths: &Paths) -> Result<()> {
    ensure_controller_running(
        paths,
        COMPONENT,
        &crd_files()?,
        &["kustomizations.kustomize.toolkit.fluxcd.io", "gitrepositories.source.toolkit.fluxcd.io"],
    )
}

/// Starts a Flux controller (`component`, also its binary, its service account and its field
/// manager) unless it already runs: its CRDs applied server-side and `established` waited for,
/// a service account in `flux-system` bound to `cluster-admin`, and the flags both
/// kustomize-controller and helm-controller take, tuned for tests.
pub(crate) fn ensure_controller_running(
    paths: &Paths,
    component: &str,
    crds: &[PathBuf],
    established: &[&str],
) -> Result<()> {
    if controller::is_running(paths, component) {
        return Ok(());
    }
    controller::stop(paths, component, component);
    let started = Instant::now();
    let dir = controller::state_dir(paths, component);
    fs::create_dir_all(&dir)?;

    for crd in crds {
        cluster::kubectl(paths, &["apply", "--server-side", "-f"], Some(crd))?;
    }
    controller::apply_stdin(paths, &identity_manifests(component))?;
    for crd in established {
        cluster::kubectl(
            paths,
            &["wait", "--for=condition=Established", &format!("crd/{crd}"), "--timeout=60s"],
            None,
        )?;
    }
    let token = cluster::kubectl(paths, &["create", "token", component, "-n", NAMESPACE, "--duration=87600h"], None)?;
    let kubeconfig = dir.join("kubeconfig");
    controller::write_kubeconfig_like_admin(paths, &kubeconfig, component, token.trim())?;

    let health_port = cluster::free_port()?;
    let metrics_port = cluster::free_port()?;
    let mut child = cluster::spawn(paths, component, |c| {
        // The controller has no --kubeconfig flag: controller-runtime reads KUBECONFIG.
        c.env("KUBECONFIG", &kubeconfig)
            .env("RUNTIME_NAMESPACE", NAMESPACE)
            // Its artifacts go to the system temp dir; keep them with the plane's state.
            .env("TMPDIR", &dir)
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
            .arg(format!("--health-addr=127.0.0.1:{health_port}"))
            .arg("--watch-all-namespaces=true")
            // Tests run many Flux objects at once; the default 4 would queue them.
            .arg("--concurrent=8")
            // An object created before its source has an artifact retries this soon.
            .arg("--requeue-dependency=2s")
            // A tarball the test server no longer serves fails fast instead of retrying 9 times.
            .arg("--http-retry=2")
            .arg("--kube-api-qps=100")
            .arg("--kube-api-burst=200")
            .arg("--log-level=info");
    })?;
    controller::await_ready(paths, component, component, &mut child, health_port, started)
}

/// The namespace, the controller's service account and its binding to `cluster-admin` (Flux's
/// install binds kustomize-controller's and helm-controller's accounts to `cluster-admin` too:
/// they apply whatever Git or a chart holds). A binding per controller, so that applying one
/// never drops the other's subject.
fn identity_manifests(component: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {component}\n  namespace: {NAMESPACE}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: cluster-reconciler-{component}\n\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\n\
         subjects:\n- kind: ServiceAccount\n  name: {component}\n  namespace: {NAMESPACE}\n"
    )
}

/// Stops the controller if it runs (before the plane, whose API server it talks to).
pub fn stop(paths: &Paths) {
    controller::stop(paths, COMPONENT, "kustomize-controller");
}

/// The demo's Git: each commit packed into a tar.gz, served from 127.0.0.1 by a thread of this
/// process, and announced by writing the GitRepository's status as source-controller does
/// (artifact url, revision, digest, lastUpdateTime; a Ready condition). kustomize-controller
/// downloads the tarball and checks its digest. The server lives as long as this process.
pub struct LocalGit {
    port: u16,
    files: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>,
    commits: std::cell::Cell<u32>,
}

impl LocalGit {
    pub fn start() -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the local Git server")?;
        let port = listener.local_addr()?.port();
        let files: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>> = Default::default();
        let served = files.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let files = served.clone();
                std::thread::spawn(move || serve(&files, stream));
            }
        });
        Ok(Self { port, files, commits: std::cell::Cell::new(0) })
    }

    /// Packs `files` (name, content), serves the tarball and writes the status of GitRepository
    /// `namespace/name`. Returns the revision, `main@sha1:<id>`.
    pub fn push(&self, paths: &Paths, namespace: &str, name: &str, files: &[(&str, String)]) -> Result<String> {
        use sha2::{Digest, Sha256};
        let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut archive = tar::Builder::new(encoder);
        for (file, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            archive.append_data(&mut header, file, content.as_bytes())?;
        }
        let tarball = archive.into_inner()?.finish()?;
        let digest = format!("{:x}", Sha256::digest(&tarball));
        self.commits.set(self.commits.get() + 1);
        let id = format!("{:x}", Sha256::digest(format!("{namespace}/{name}/{}/{digest}", self.commits.get())));
        let id = &id[..40];
        let revision = format!("main@sha1:{id}");
        let path = format!("gitrepository/{namespace}/{name}/{id}.tar.gz");
        let size = tarball.len();
        self.files.lock().expect("the file map").insert(path.clone(), tarball);
        let time = utc_now();
        let status = serde_json::json!({"status": {
            "observedGeneration": 1,
            "artifact": {
                "path": path, "url": format!("http://127.0.0.1:{}/{path}", self.port), "revision": revision,
                "digest": format!("sha256:{digest}"), "lastUpdateTime": time, "size": size
            },
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Succeeded", "observedGeneration": 1,
                "lastTransitionTime": time, "message": format!("stored artifact for revision '{revision}'")
            }]
        }});
        cluster::kubectl(
            paths,
            &[
                "patch",
                "gitrepository",
                name,
                "-n",
                namespace,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        )?;
        Ok(revision)
    }
}

/// One HTTP/1.1 GET per connection, answered and closed.
fn serve(files: &std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>, mut stream: std::net::TcpStream) {
    use std::io::{BufRead, Write};
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(clone) = stream.try_clone() else { return };
    let mut reader = std::io::BufReader::new(clone);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 0) && header.trim() != "" {
        header.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or_default().trim_start_matches('/');
    let body = files.lock().ok().and_then(|f| f.get(path).cloned());
    let response = match body {
        Some(bytes) => [
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", bytes.len()).into_bytes(),
            bytes,
        ]
        .concat(),
        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&response);
}

/// Now as RFC 3339 in UTC, to the second (what metav1.Time holds).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}
