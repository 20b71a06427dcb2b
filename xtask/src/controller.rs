//! What the controllers the plane runs beside itself (kustomize-controller, the KEDA
//! operator) share: their state directory, the readiness of their health port, applying their
//! setup manifests, a kubeconfig with their service-account token, and stopping them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::{self, Paths};

pub fn state_dir(paths: &Paths, component: &str) -> PathBuf {
    paths.state.join(component)
}

pub fn health_port_file(paths: &Paths, component: &str) -> PathBuf {
    state_dir(paths, component).join("health-port")
}

/// True when the component's process is alive and its health endpoint answers.
pub fn is_running(paths: &Paths, component: &str) -> bool {
    cluster::read_pid(&paths.pid_file(component)).is_some_and(cluster::process_alive)
        && fs::read_to_string(health_port_file(paths, component))
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
            .is_some_and(ready)
}

/// controller-runtime's `/readyz` on the health address answers 200.
pub fn ready(port: u16) -> bool {
    answers(port, "/readyz")
}

/// A GET of `path` on 127.0.0.1:`port` answers 200.
pub fn answers(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

/// `kubectl apply -f -` of `yaml` as the admin.
pub fn apply_stdin(paths: &Paths, yaml: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new(paths.kubectl())
        .arg("--kubeconfig")
        .arg(&paths.admin_kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl")?;
    child.stdin.take().expect("stdin is piped").write_all(yaml.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("kubectl apply failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// The admin kubeconfig's server and CA with a component's service-account token.
pub fn write_kubeconfig_like_admin(paths: &Paths, path: &Path, user: &str, token: &str) -> Result<()> {
    let admin = fs::read_to_string(&paths.admin_kubeconfig)?;
    let field = |name: &str| {
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .with_context(|| format!("no `{name}` in {}", paths.admin_kubeconfig.display()))
    };
    let (server, ca) = (field("server:")?, field("certificate-authority-data:")?);
    fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
             users:\n- name: {user}\n  user:\n    token: {token}\n\
             contexts:\n- name: local\n  context:\n    cluster: local\n    user: {user}\n\
             current-context: local\n"
        ),
    )?;
    Ok(())
}

/// Stops the component if it runs (before the plane, whose API server it talks to).
pub fn stop(paths: &Paths, component: &str, label: &str) {
    let pid_file = paths.pid_file(component);
    if let Some(pid) = cluster::read_pid(&pid_file) {
        if cluster::process_alive(pid) {
            cluster::stop_process(pid);
            eprintln!("xtask: {label} stopped");
        }
        let _ = fs::remove_file(&pid_file);
    }
}

/// Waits up to 90 s for a started component's `/readyz`; fails with its log's tail if it exits
/// or never gets ready (killing it then), and reports how long the start took.
pub fn await_ready(
    paths: &Paths,
    component: &str,
    label: &str,
    child: &mut Child,
    health_port: u16,
    started: Instant,
) -> Result<()> {
    fs::write(health_port_file(paths, component), health_port.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{label} exited ({status}) while starting\n{}", cluster::log_tail(paths, component));
        }
        if ready(health_port) {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out waiting for {label}'s /readyz\n{}", cluster::log_tail(paths, component));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "xtask: {label} up in {:.1}s (log: {})",
        started.elapsed().as_secs_f64(),
        paths.log_file(component).display()
    );
    Ok(())
}
