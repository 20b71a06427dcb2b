//! A kube-apiserver of a test's own, to stop and start again: the plane's flags on the plane's
//! etcd, certificates and tokens (so objects, users and service-account tokens are shared, and
//! the plane's controllers act on what a test creates through it), on a port of its own. The
//! arguments are the template `cargo xtask cluster up` writes (`fault-apiserver.args`, which
//! also says which flags must differ from the plane's). Stopping it leaves the shared API server,
//! and every other test, alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

pub struct FaultApiServer {
    pub port: u16,
    /// The admin kubeconfig, pointed at this instance.
    pub kubeconfig: PathBuf,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
    /// Starts so far, to name each run's log.
    runs: u32,
}

impl FaultApiServer {
    /// Starts an instance on a free port and waits until it is ready.
    pub fn start_new() -> Self {
        Self::start_with(&[])
    }

    /// Starts an instance with `extra` arguments after the template's (a later flag wins, e.g.
    /// `--runtime-config` turning an API off) and waits until it is ready.
    pub fn start_with(extra: &[&str]) -> Self {
        let template_path = cluster().fault_apiserver_args();
        let template = std::fs::read_to_string(&template_path).unwrap_or_else(|e| {
            panic!(
                "{} ({e}): the plane predates it; `cargo xtask cluster up` writes it without restarting the plane",
                template_path.display()
            )
        });
        let dir = tempfile::Builder::new().prefix("hpa-migrate-fault-apiserver-").tempdir().unwrap();
        let port = free_port();
        let args = template
            .lines()
            .filter(|l| !l.is_empty())
            .map(|a| a.replace("{port}", &port.to_string()).replace("{dir}", dir.path().to_str().unwrap()))
            .chain(extra.iter().map(|a| a.to_string()))
            .collect();
        let kubeconfig = dir.path().join("admin.kubeconfig");
        point_kubeconfig_at(&admin_kubeconfig(), port, &kubeconfig);
        let mut server = Self { port, kubeconfig, dir, args, child: None, runs: 0 };
        server.start();
        server
    }

    /// `kubeconfig` (any user of the plane) pointed at this instance; written next to it.
    pub fn kubeconfig_for(&self, kubeconfig: &Path, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        point_kubeconfig_at(kubeconfig, self.port, &path);
        path
    }

    /// Starts it again on the same port and waits for /readyz. Returns how long that took.
    pub fn start(&mut self) -> Duration {
        assert!(self.child.is_none(), "the fault API server is already running");
        let started = Instant::now();
        self.runs += 1;
        // Its own audit log per run, so a test can tell what a command sent after a restart.
        let _ = std::fs::remove_file(self.audit_log());
        let log = std::fs::File::create(self.log_file()).unwrap();
        // Killed with the test process however that ends (a test binary killed by a timeout
        // would otherwise leave it running). The parent is the thread that spawns it: start
        // it from the test's own thread, never from a blocking-pool thread that may exit.
        let mut command = Command::new("setpriv");
        command.args(["--pdeathsig", "KILL", "--"]).arg(cluster().kube_apiserver()).args(&self.args);
        command.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        self.child = Some(command.spawn().expect("starting the fault kube-apiserver"));
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.ready() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("the fault kube-apiserver exited ({status}):\n{}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "the fault kube-apiserver was not ready in 90 s:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        }
        started.elapsed()
    }

    /// SIGTERM, as an upgrade or a failover stops it, then SIGKILL after a grace period, as the
    /// kubelet does: requests in flight drain and the listener closes at once, but
    /// kube-apiserver holds open watches until its own shutdown timeout (about a minute), so
    /// without the SIGKILL a "3 s restart" would last a minute. Returns how long it took.
    pub fn stop(&mut self) -> Duration {
        const GRACE: Duration = Duration::from_secs(5);
        let started = Instant::now();
        let mut child = self.child.take().expect("the fault API server is not running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM {}", child.id());
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > GRACE {
                child.kill().unwrap();
                child.wait().unwrap();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        started.elapsed()
    }

    /// SIGKILL, as a crash: requests in flight get no answer, whether or not they were stored.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the fault API server is not running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn ready(&self) -> bool {
        let output = kubectl(&self.kubeconfig, &["get", "--raw", "/readyz", "--request-timeout=2s"], None);
        output.status.success() && output.stdout.starts_with(b"ok")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join(format!("kube-apiserver-{}.log", self.runs))
    }

    /// The current run's audit log (the plane's policy: requests of admin, viewer, stripper).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    /// Audit events of the current run whose verb and request URI match, from `user_agent`.
    pub fn requests(&self, user_agent: &str, verb: &str, uri_contains: &str) -> usize {
        let text = std::fs::read_to_string(self.audit_log()).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| {
                e["verb"] == verb
                    && e["userAgent"].as_str().is_some_and(|a| a.starts_with(user_agent))
                    && e["requestURI"].as_str().is_some_and(|u| u.contains(uri_contains))
            })
            .count()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for FaultApiServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes `kubeconfig` to `to` with its server on 127.0.0.1:`port` (same CA, same user).
pub fn point_kubeconfig_at(kubeconfig: &Path, port: u16, to: &Path) {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap_or_else(|| panic!("no server in {}", kubeconfig.display()));
    std::fs::write(to, text.replace(server, &format!("https://127.0.0.1:{port}"))).unwrap();
}
