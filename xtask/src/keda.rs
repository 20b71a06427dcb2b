//! The real KEDA operator beside the control plane: built from the pinned Go module in
//! `tests/tools/keda/` as a binary named `keda` (the name the official images give it, so its
//! user agent, and so the managedFields manager of what it writes, is `keda` as on real
//! clusters), run outside the cluster with its own service account, KEDA's own RBAC and CRDs
//! from the module's `config/*`, the certificates its metrics gRPC service insists on, and its
//! ports on free 127.0.0.1 ports. The metrics adapter is not run: the operator alone creates
//! and manages the HPAs and scales to and from zero.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair};

use crate::cluster::{self, Paths};
use crate::controller;
use crate::gobuild::{GoBinary, GoModule, required_version};
use crate::workspace_root;

const MODULE: &str = "github.com/kedacore/keda/v2";
/// The component name: binary, pid and log file under target/cluster.
pub const COMPONENT: &str = "keda";
/// KEDA_CLUSTER_OBJECT_NAMESPACE and the service account's namespace, as KEDA's RBAC names it.
pub const NAMESPACE: &str = "keda";

fn module_dir() -> PathBuf {
    workspace_root().join("tests/tools/keda")
}

pub fn module(paths: &Paths) -> Result<GoModule<'static>> {
    const BINARIES: &[GoBinary] = &[GoBinary { package: "github.com/kedacore/keda/v2/cmd/operator", name: COMPONENT }];
    let dir = module_dir();
    let version = required_version(&dir.join("go.mod"), MODULE)?;
    // KEDA's Makefile stamps these two; the module proxy carries no commit id.
    let ldflags = format!(
        "-s -w -X {MODULE}/version.Version={} -X {MODULE}/version.GitCommit=0000000000000000000000000000000000000000",
        version.trim_start_matches('v')
    );
    Ok(GoModule { label: "keda operator", dir, binaries: BINARIES, ldflags, out_dir: paths.bin.clone() })
}

pub fn build(paths: &Paths) -> Result<()> {
    module(paths)?.ensure_built()
}

/// Where the KEDA module's source is in the module cache (its `config/` holds CRDs and RBAC).
fn source_dir() -> Result<PathBuf> {
    crate::gobuild::module_source(&module_dir(), MODULE)
}

fn state_dir(paths: &Paths) -> PathBuf {
    controller::state_dir(paths, COMPONENT)
}

pub fn is_running(paths: &Paths) -> bool {
    controller::is_running(paths, COMPONENT)
}

/// Starts the operator on the running plane unless it already runs (the API server is left
/// alone, so tests running elsewhere on the plane are not disturbed).
pub fn ensure_running(paths: &Paths) -> Result<()> {
    if is_running(paths) {
        return Ok(());
    }
    stop(paths);
    let started = Instant::now();
    let source = source_dir()?;
    let dir = state_dir(paths);
    fs::create_dir_all(&dir)?;

    // KEDA's CRDs and its own RBAC, as its release manifests install them.
    cluster::kubectl(paths, &["apply", "--server-side", "-f"], Some(&source.join("config/crd/bases")))?;
    cluster::kubectl(paths, &["create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml"], None)
        .and_then(|yaml| controller::apply_stdin(paths, &yaml))?;
    cluster::kubectl(paths, &["apply", "-n", NAMESPACE, "-f"], Some(&source.join("config/rbac/role.yaml")))?;
    cluster::kubectl(paths, &["apply", "-n", NAMESPACE, "-f"], Some(&source.join("config/rbac/role_binding.yaml")))?;
    cluster::kubectl(
        paths,
        &["create", "serviceaccount", "keda-operator", "-n", NAMESPACE, "--dry-run=client", "-o", "yaml"],
        None,
    )
    .and_then(|yaml| controller::apply_stdin(paths, &yaml))?;
    cluster::kubectl(
        paths,
        &["wait", "--for=condition=Established", "crd/scaledobjects.keda.sh", "--timeout=60s"],
        None,
    )?;
    let token =
        cluster::kubectl(paths, &["create", "token", "keda-operator", "-n", NAMESPACE, "--duration=87600h"], None)?;
    let kubeconfig = dir.join("keda.kubeconfig");
    controller::write_kubeconfig_like_admin(paths, &kubeconfig, "keda-operator", token.trim())?;

    let cert_dir = dir.join("certs");
    fs::create_dir_all(&cert_dir)?;
    generate_certs(&cert_dir)?;

    let health_port = cluster::free_port()?;
    let metrics_port = cluster::free_port()?;
    let grpc_port = cluster::free_port()?;
    let mut child = cluster::spawn(paths, COMPONENT, |c| {
        c.env("KUBECONFIG", &kubeconfig)
            .env("WATCH_NAMESPACE", "")
            .env("KEDA_CLUSTER_OBJECT_NAMESPACE", NAMESPACE)
            .env("POD_NAMESPACE", NAMESPACE)
            .arg(format!("--health-probe-bind-address=127.0.0.1:{health_port}"))
            .arg(format!("--metrics-bind-address=127.0.0.1:{metrics_port}"))
            .arg(format!("--metrics-service-bind-address=127.0.0.1:{grpc_port}"))
            .arg(format!("--cert-dir={}", cert_dir.display()))
            .arg(format!("--ca-dir={}", cert_dir.display()))
            .arg("--leader-elect=false")
            .arg("--enable-cert-rotation=false")
            .arg("--enable-webhook-patching=false")
            .arg("--enable-apiservice-patching=false")
            // The plane is shared by many parallel tests: KEDA's default 20 qps would queue.
            .arg("--kube-api-qps=100")
            .arg("--kube-api-burst=200")
            .arg("--zap-log-level=info");
    })?;
    controller::await_ready(paths, COMPONENT, "the KEDA operator", &mut child, health_port, started)
}

/// `ca.crt`, `tls.crt` and `tls.key` for the operator's metrics gRPC service (mutual TLS with
/// the metrics adapter, which does not run here; the operator refuses to start without them).
fn generate_certs(dir: &Path) -> Result<()> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "keda-local-ca");
    ca_params.distinguished_name = name;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "keda-operator".to_string(),
        format!("keda-operator.{NAMESPACE}.svc"),
    ])?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "keda-operator");
    params.distinguished_name = name;
    let cert = params.signed_by(&key, &issuer)?;
    fs::write(dir.join("ca.crt"), ca_cert.pem())?;
    fs::write(dir.join("tls.crt"), cert.pem())?;
    fs::write(dir.join("tls.key"), key.serialize_pem())?;
    Ok(())
}

/// Stops the operator if it runs (before the plane, whose API server it talks to).
pub fn stop(paths: &Paths) {
    controller::stop(paths, COMPONENT, "KEDA operator");
}
