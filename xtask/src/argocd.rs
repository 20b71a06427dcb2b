//! The real Argo CD beside the control plane: `argocd-repo-server` and
//! `argocd-application-controller` of v3.2.11, built from the pinned Go module in
//! `tests/tools/argocd/` (one binary, `argocd`, which picks its component from the name it is
//! run as: the components are symlinks to it), and the Redis they cache in (`./redis` of the same
//! module, an in-memory miniredis as `argocd --core` runs). Nothing else of Argo CD runs: no
//! argocd-server, so tests trigger a sync by writing `.operation` on the Application, as
//! argocd-server does.
//!
//! The controller runs outside the cluster with `ARGOCD_FAKE_IN_CLUSTER=true`: the in-cluster
//! destination (`https://kubernetes.default.svc`) then uses `KUBECONFIG`, a token of its own
//! service account bound to `cluster-admin` (Argo CD's install grants it every verb on every
//! resource). Its settings are the `argocd-cm` ConfigMap and `argocd-secret` Secret, labelled
//! `app.kubernetes.io/part-of=argocd` (it exits without that label), and an AppProject `default`
//! that allows any repository and destination. Git repositories are local directories the
//! tests create and name as `file://` URLs.

use std::fs;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::{self, Paths};
use crate::controller;
use crate::gobuild::{GoBinary, GoModule, required_version};
use crate::workspace_root;

const MODULE: &str = "github.com/argoproj/argo-cd/v3";
/// The binary every Argo CD component runs from, and the namespace of its settings and
/// Applications, as Argo CD's install names them.
pub const NAMESPACE: &str = "argocd";
const BINARY: &str = "argocd";
const REDIS: &str = "argocd-redis";
const REPO_SERVER: &str = "argocd-repo-server";
const CONTROLLER: &str = "argocd-application-controller";

fn module_dir() -> PathBuf {
    workspace_root().join("tests/tools/argocd")
}

pub fn module(paths: &Paths) -> GoModule<'static> {
    const BINARIES: &[GoBinary] = &[
        GoBinary { package: "github.com/argoproj/argo-cd/v3/cmd", name: BINARY },
        GoBinary { package: "hpa-migrate/tests/tools/argocd/redis", name: REDIS },
    ];
    GoModule {
        label: "argo cd",
        dir: module_dir(),
        binaries: BINARIES,
        // argo-cd's Makefile stamps its version the same way; the module proxy has no commit.
        ldflags: format!("-s -w -X {MODULE}/common.version={}", version().unwrap_or_default().trim_start_matches('v')),
        out_dir: paths.bin.clone(),
    }
}

fn version() -> Result<String> {
    required_version(&module_dir().join("go.mod"), MODULE)
}

pub fn build(paths: &Paths) -> Result<()> {
    module(paths).ensure_built()
}

/// The pieces' pid files live under the names they run as; all three up and answering.
pub fn is_running(paths: &Paths) -> bool {
    [REDIS, REPO_SERVER, CONTROLLER]
        .iter()
        .all(|c| cluster::read_pid(&paths.pid_file(c)).is_some_and(cluster::process_alive))
        && health_port(paths, CONTROLLER).is_some_and(|port| controller::answers(port, "/healthz"))
}

fn health_port(paths: &Paths, component: &str) -> Option<u16> {
    fs::read_to_string(controller::health_port_file(paths, component)).ok()?.trim().parse().ok()
}

/// Starts Redis, the repo-server and the application controller on the running plane unless
/// they all run (whatever runs of them is stopped first; the API server is left alone).
pub fn ensure_running(paths: &Paths) -> Result<()> {
    if is_running(paths) {
        return Ok(());
    }
    stop(paths);
    let started = Instant::now();
    let dir = controller::state_dir(paths, CONTROLLER);
    fs::create_dir_all(&dir)?;
    for component in [REPO_SERVER, CONTROLLER] {
        let link = paths.bin.join(component);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(BINARY, &link).with_context(|| format!("linking {}", link.display()))?;
    }

    let crds = module_source()?.join("manifests/crds");
    for crd in ["application-crd.yaml", "appproject-crd.yaml"] {
        // Server-side: the Application CRD is too big for the last-applied annotation.
        cluster::kubectl(paths, &["apply", "--server-side", "-f"], Some(&crds.join(crd)))?;
    }
    for crd in ["applications.argoproj.io", "appprojects.argoproj.io"] {
        await_established(paths, crd)?;
    }
    controller::apply_stdin(paths, SETTINGS)?;
    let token = cluster::kubectl(paths, &["create", "token", CONTROLLER, "-n", NAMESPACE, "--duration=87600h"], None)?;
    let kubeconfig = dir.join("kubeconfig");
    controller::write_kubeconfig_like_admin(paths, &kubeconfig, CONTROLLER, token.trim())?;

    let redis_port = cluster::free_port()?;
    let mut redis = cluster::spawn(paths, REDIS, |c| {
        c.arg(redis_port.to_string());
    })?;
    await_listening(paths, REDIS, &mut redis, || std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_ok())?;

    let repo_port = cluster::free_port()?;
    let repo_metrics_port = cluster::free_port()?;
    let mut repo_server = cluster::spawn(paths, REPO_SERVER, |c| {
        // Git checkouts go to the temp dir; GnuPG would need a keyring under /app/config.
        c.env("TMPDIR", &dir)
            .env("ARGOCD_GPG_ENABLED", "false")
            .arg("--address=127.0.0.1")
            .arg(format!("--port={repo_port}"))
            .arg("--metrics-address=127.0.0.1")
            .arg(format!("--metrics-port={repo_metrics_port}"))
            .arg("--disable-tls")
            .arg(format!("--redis=127.0.0.1:{redis_port}"))
            .arg("--logformat=text");
    })?;
    await_listening(paths, REPO_SERVER, &mut repo_server, || controller::answers(repo_metrics_port, "/healthz"))?;

    let metrics_port = cluster::free_port()?;
    let mut app_controller = cluster::spawn(paths, CONTROLLER, |c| {
        c.env("KUBECONFIG", &kubeconfig)
            .env("ARGOCD_FAKE_IN_CLUSTER", "true")
            .env("TMPDIR", &dir)
            .arg(format!("--namespace={NAMESPACE}"))
            .arg(format!("--repo-server=127.0.0.1:{repo_port}"))
            .arg("--repo-server-plaintext")
            .arg(format!("--redis=127.0.0.1:{redis_port}"))
            // The metrics and health listener binds every interface (hard-coded in
            // controller/appcontroller.go, "0.0.0.0:%d"): only 127.0.0.1 may ever connect to it;
            // the port is a free one, and nothing here serves it beyond this machine.
            .arg(format!("--metrics-port={metrics_port}"))
            .arg("--logformat=text");
    })?;
    fs::write(controller::health_port_file(paths, CONTROLLER), metrics_port.to_string())?;
    await_listening(paths, CONTROLLER, &mut app_controller, || controller::answers(metrics_port, "/healthz"))?;
    eprintln!(
        "xtask: Argo CD {} (repo-server, application controller, Redis) up in {:.1}s (logs: {})",
        version()?,
        started.elapsed().as_secs_f64(),
        paths.log_file(CONTROLLER).display()
    );
    Ok(())
}

/// Waits up to 90 s for `ready`; fails with the component's log tail if it exits first.
fn await_listening(paths: &Paths, component: &str, child: &mut Child, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ready() {
        if let Some(status) = child.try_wait()? {
            bail!("{component} exited ({status}) while starting\n{}", cluster::log_tail(paths, component));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out waiting for {component}\n{}", cluster::log_tail(paths, component));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// Waits up to 60 s for the CRD's `Established` condition. Neither `kubectl wait` nor a
/// jsonpath filter on the conditions: right after a create, before the API server has written
/// any status, both fail ("`.status.conditions` accessor error", "<nil> is not array or slice")
/// instead of waiting; measured on `cluster up` with Argo CD.
fn await_established(paths: &Paths, crd: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let crd_json = cluster::kubectl(paths, &["get", &format!("crd/{crd}"), "-o=json"], None)?;
        let crd_value: serde_json::Value =
            serde_json::from_str(&crd_json).with_context(|| format!("reading CRD {crd}"))?;
        let established = crd_value
            .pointer("/status/conditions")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        if established {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("CRD {crd} was not established within 60 s");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// argo-cd's source in the module cache, at the version the module pins (its CRDs).
fn module_source() -> Result<PathBuf> {
    crate::gobuild::module_source(&module_dir(), MODULE)
}

/// The namespace, the controller's identity (bound to `cluster-admin`), its settings and the
/// `default` AppProject, allowing every repository, destination and kind.
const SETTINGS: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: argocd
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: argocd-application-controller
  namespace: argocd
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: argocd-application-controller
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
- kind: ServiceAccount
  name: argocd-application-controller
  namespace: argocd
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/part-of: argocd
---
apiVersion: v1
kind: Secret
metadata:
  name: argocd-secret
  namespace: argocd
  labels:
    app.kubernetes.io/part-of: argocd
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: default
  namespace: argocd
spec:
  sourceRepos: ['*']
  destinations:
  - server: '*'
    namespace: '*'
  clusterResourceWhitelist:
  - group: '*'
    kind: '*'
";

/// Stops the controller, then the repo-server and Redis (before the plane).
pub fn stop(paths: &Paths) {
    for component in [CONTROLLER, REPO_SERVER, REDIS] {
        controller::stop(paths, component, component);
    }
}
