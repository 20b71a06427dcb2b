//! A real local control plane: etcd, kube-apiserver and kube-controller-manager built from the
//! pinned Go modules in `tests/cluster/` and started on free 127.0.0.1 ports.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::gobuild::{GoBinary, GoModule, required_version};
pub use crate::layout::Paths;
use crate::workspace_root;

const COMPONENTS: [&str; 3] = ["etcd", "kube-apiserver", "kube-controller-manager"];

/// Controllers the tool's behaviour depends on; nothing else runs, to keep the plane light.
const CONTROLLERS: &str = "deployment-controller,replicaset-controller,statefulset-controller,\
horizontal-pod-autoscaler-controller,serviceaccount-controller,serviceaccount-token-controller,\
garbage-collector-controller,namespace-controller,root-ca-certificate-publisher-controller,\
clusterrole-aggregation-controller";

pub fn control_plane_module(paths: &Paths) -> Result<GoModule<'static>> {
    const BINARIES: &[GoBinary] = &[
        GoBinary { package: "go.etcd.io/etcd/server/v3", name: "etcd" },
        GoBinary { package: "k8s.io/kubernetes/cmd/kube-apiserver", name: "kube-apiserver" },
        GoBinary { package: "k8s.io/kubernetes/cmd/kube-controller-manager", name: "kube-controller-manager" },
        GoBinary { package: "k8s.io/kubernetes/cmd/kubectl", name: "kubectl" },
    ];
    let dir = workspace_root().join("tests/cluster");
    let kube_version = required_version(&dir.join("go.mod"), "k8s.io/kubernetes")?;
    let etcd_version = required_version(&dir.join("go.mod"), "go.etcd.io/etcd/server/v3")?;
    let mut parts = kube_version.trim_start_matches('v').split('.');
    let (major, minor) = (parts.next().unwrap_or("1"), parts.next().unwrap_or("0"));
    // kubectl reports the client version from client-go, the servers from component-base.
    let mut ldflags = String::from("-s -w");
    for package in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
        ldflags.push_str(&format!(
            " -X {package}.gitVersion={kube_version} -X {package}.gitMajor={major} -X {package}.gitMinor={minor} \
             -X {package}.gitTreeState=clean -X {package}.gitCommit=0000000000000000000000000000000000000000 \
             -X {package}.buildDate=1970-01-01T00:00:00Z"
        ));
    }
    ldflags.push_str(&format!(" -X go.etcd.io/etcd/api/v3/version.GitSHA={etcd_version}"));
    Ok(GoModule { label: "control plane", dir, binaries: BINARIES, ldflags, out_dir: paths.bin.clone() })
}

/// Builds the plane and, in parallel with it, the controllers beside it. The plane's
/// Kubernetes modules are at other versions than the controllers', so the two builds share
/// little and each fills the other's idle time (the long single-threaded links). The
/// controllers build one after another: KEDA, kustomize-controller and helm-controller use the
/// same client-go and controller-runtime, and each reuses what the one before left in the Go
/// build cache instead of compiling it a second time at the same moment. Argo CD builds after
/// the plane in the plane's thread: its Kubernetes modules (v0.34) are neither the plane's nor
/// the controllers' either, and the controllers' thread is the longer one without it.
pub fn build(paths: &Paths) -> Result<()> {
    std::thread::scope(|scope| {
        let plane =
            scope.spawn(|| control_plane_module(paths)?.ensure_built().and_then(|()| crate::argocd::build(paths)));
        let controllers = crate::keda::build(paths)
            .and_then(|()| crate::flux::build(paths))
            .and_then(|()| crate::helm_controller::build(paths));
        plane.join().expect("the control plane's build thread does not panic").and(controllers)
    })
}

/// True when every component's process is alive and the API server answers `/readyz`.
pub fn is_up(paths: &Paths) -> bool {
    COMPONENTS.iter().all(|c| read_pid(&paths.pid_file(c)).is_some_and(process_alive))
        && paths.admin_kubeconfig.is_file()
        && readyz(paths)
}

fn readyz(paths: &Paths) -> bool {
    Command::new(paths.kubectl())
        .arg("--kubeconfig")
        .arg(&paths.admin_kubeconfig)
        .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"ok"))
}

/// Starts the control plane. Returns false if it was already up (nothing started, or a stale
/// plane restarted in place, which the caller did not start either).
pub fn up(paths: &Paths) -> Result<bool> {
    build(paths)?;
    let was_up = is_up(paths);
    if was_up {
        if paths.stripper_kubeconfig.is_file() {
            backfill_apiserver_args(paths)?;
            eprintln!("xtask: the control plane is already up ({})", paths.admin_kubeconfig.display());
            crate::keda::ensure_running(paths)?;
            crate::flux::ensure_running(paths)?;
            crate::helm_controller::ensure_running(paths)?;
            crate::argocd::ensure_running(paths)?;
            return Ok(false);
        }
        // Token users are read at start: a plane started before the `stripper` user existed
        // cannot gain it while running.
        eprintln!("xtask: the running control plane has no `stripper` user; restarting it");
    }
    // A half-dead plane from an earlier run: stop what is left and start clean.
    down(paths)?;
    let started = Instant::now();
    match start(paths) {
        Ok(()) => {
            eprintln!(
                "xtask: control plane up in {:.1}s; export KUBECONFIG={}",
                started.elapsed().as_secs_f64(),
                paths.admin_kubeconfig.display()
            );
            crate::keda::ensure_running(paths)?;
            crate::flux::ensure_running(paths)?;
            crate::helm_controller::ensure_running(paths)?;
            crate::argocd::ensure_running(paths)?;
            Ok(!was_up)
        }
        Err(error) => {
            let _ = down(paths);
            Err(error)
        }
    }
}

fn start(paths: &Paths) -> Result<()> {
    let plane = Plane::prepare(paths)?;
    let mut children: Vec<(&str, Child)> = Vec::new();
    if let Err(error) = plane.start_components(&mut children) {
        for (_, child) in children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        return Err(error);
    }
    Ok(())
}

/// What the components of a plane being started share: its ports, certificates and files.
struct Plane<'a> {
    paths: &'a Paths,
    pki: PathBuf,
    certs: crate::pki::Pki,
    etcd_client: u16,
    etcd_peer: u16,
    apiserver_port: u16,
    tokens: PathBuf,
    audit_policy: PathBuf,
    controller_manager_kubeconfig: PathBuf,
}

impl<'a> Plane<'a> {
    /// Generates the certificates, picks the ports and writes the users' credentials.
    fn prepare(paths: &'a Paths) -> Result<Self> {
        fs::create_dir_all(&paths.state)?;
        let pki = paths.state.join("pki");
        fs::create_dir_all(&pki)?;
        let certs = crate::pki::generate(&pki)?;
        let plane = Plane {
            paths,
            pki,
            certs,
            etcd_client: free_port()?,
            etcd_peer: free_port()?,
            apiserver_port: free_port()?,
            tokens: paths.state.join("tokens.csv"),
            audit_policy: paths.state.join("audit-policy.yaml"),
            controller_manager_kubeconfig: paths.state.join("controller-manager.kubeconfig"),
        };
        plane.write_credentials()?;
        Ok(plane)
    }

    /// The token file of the users, the audit policy, and each user's kubeconfig.
    fn write_credentials(&self) -> Result<()> {
        let paths = self.paths;
        let server = format!("https://127.0.0.1:{}", self.apiserver_port);
        let admin_token = random_token();
        let viewer_token = random_token();
        let stripper_token = random_token();
        let controller_manager_token = random_token();
        fs::write(
            &self.tokens,
            format!(
                "{admin_token},admin,admin,\"system:masters\"\n\
                 {viewer_token},viewer,viewer\n\
                 {stripper_token},stripper,stripper\n\
                 {controller_manager_token},system:kube-controller-manager,system:kube-controller-manager\n"
            ),
        )?;
        fs::write(&self.audit_policy, AUDIT_POLICY)?;

        let ca = &self.certs.ca_pem;
        write_kubeconfig(&paths.admin_kubeconfig, &server, ca, "admin", &admin_token)?;
        write_kubeconfig(&paths.viewer_kubeconfig, &server, ca, "viewer", &viewer_token)?;
        write_kubeconfig(&paths.stripper_kubeconfig, &server, ca, "stripper", &stripper_token)?;
        write_kubeconfig(
            &self.controller_manager_kubeconfig,
            &server,
            ca,
            "system:kube-controller-manager",
            &controller_manager_token,
        )
    }

    /// etcd, then the API server and the RBAC the tests' users need, then the controller
    /// manager, each waited for before the next.
    fn start_components(&self, children: &mut Vec<(&'static str, Child)>) -> Result<()> {
        self.start_etcd(children)?;
        self.start_apiserver(children)?;
        for manifest in [
            "deploy/rbac/reader.yaml",
            "tests/cluster/viewer-binding.yaml",
            "deploy/rbac/strip.yaml",
            "tests/cluster/stripper-binding.yaml",
        ] {
            kubectl(self.paths, &["apply", "-f"], Some(&workspace_root().join(manifest)))?;
        }
        self.start_controller_manager(children)
    }

    fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_client)
    }

    fn start_etcd(&self, children: &mut Vec<(&'static str, Child)>) -> Result<()> {
        let paths = self.paths;
        let etcd_url = self.etcd_url();
        let peer_url = format!("http://127.0.0.1:{}", self.etcd_peer);
        children.push((
            "etcd",
            spawn(paths, "etcd", |c| {
                c.arg("--name=default")
                    .arg(format!("--data-dir={}", paths.state.join("etcd").display()))
                    .arg(format!("--listen-client-urls={etcd_url}"))
                    .arg(format!("--advertise-client-urls={etcd_url}"))
                    .arg(format!("--listen-peer-urls={peer_url}"))
                    .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                    .arg(format!("--initial-cluster=default={peer_url}"))
                    // A throw-away test store: durability buys nothing and fsync costs seconds.
                    .arg("--unsafe-no-fsync=true")
                    .arg("--log-level=warn");
            })?,
        ));
        let etcd_client = self.etcd_client;
        wait_for(children, paths, Duration::from_secs(30), "etcd to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", etcd_client)).is_ok()
        })
    }

    fn apiserver_args(&self) -> Vec<String> {
        let certs = &self.certs;
        [
            format!("--etcd-servers={}", self.etcd_url()),
            "--bind-address=127.0.0.1".into(),
            // The machine has no default route; the apiserver otherwise fails to pick an address.
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", self.apiserver_port),
            format!("--cert-dir={}", self.pki.display()),
            format!("--tls-cert-file={}", certs.serving_cert.display()),
            format!("--tls-private-key-file={}", certs.serving_key.display()),
            format!("--client-ca-file={}", certs.ca_cert.display()),
            format!("--token-auth-file={}", self.tokens.display()),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", certs.service_account_public_key.display()),
            format!("--service-account-signing-key-file={}", certs.service_account_key.display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            format!("--audit-policy-file={}", self.audit_policy.display()),
            format!("--audit-log-path={}", self.paths.state.join("audit.log").display()),
            "--audit-log-format=json".into(),
            "--profiling=false".into(),
            // The tests judge every stored version of a Deployment by watching from the
            // resourceVersion read before a deploy. The watch cache keeps only a short window
            // (a loaded run got 410 "too old resource version"), and etcd forgets what it
            // compacts: Deployments are watched from etcd, which keeps its whole history.
            "--watch-cache-sizes=deployments.apps#0".into(),
            "--etcd-compaction-interval=0".into(),
        ]
        .into()
    }

    fn start_apiserver(&self, children: &mut Vec<(&'static str, Child)>) -> Result<()> {
        let paths = self.paths;
        let apiserver_args = self.apiserver_args();
        write_apiserver_args(paths, &apiserver_args)?;
        children.push((
            "kube-apiserver",
            spawn(paths, "kube-apiserver", |c| {
                c.args(&apiserver_args);
            })?,
        ));
        wait_for(children, paths, Duration::from_secs(90), "kube-apiserver /readyz", || readyz(paths))
    }

    fn start_controller_manager(&self, children: &mut Vec<(&'static str, Child)>) -> Result<()> {
        let paths = self.paths;
        let kubeconfig = self.controller_manager_kubeconfig.display();
        children.push((
            "kube-controller-manager",
            spawn(paths, "kube-controller-manager", |c| {
                c.arg(format!("--kubeconfig={kubeconfig}"))
                    .arg(format!("--authentication-kubeconfig={kubeconfig}"))
                    .arg(format!("--authorization-kubeconfig={kubeconfig}"))
                    .arg("--bind-address=127.0.0.1")
                    .arg("--secure-port=0")
                    .arg("--use-service-account-credentials=true")
                    .arg(format!("--service-account-private-key-file={}", self.certs.service_account_key.display()))
                    .arg(format!("--root-ca-file={}", self.certs.ca_cert.display()))
                    .arg(format!("--controllers={CONTROLLERS}"))
                    // Tests wait for the HPA controller; the default 15 s would make them slow.
                    // Every test HPA lacks metrics and records two warnings per sync, which the
                    // HPA controller's event recorder writes one by one: at a 1 s sync and the
                    // default 20 requests/s per controller client its queue overflowed under the
                    // test suite and dropped SuccessfulRescale events that tests wait for.
                    .arg("--horizontal-pod-autoscaler-sync-period=2s")
                    .arg("--kube-api-qps=200")
                    .arg("--kube-api-burst=400")
                    .arg("--leader-elect=false");
            })?,
        ));
        // Pods can only be created once the namespace's `default` ServiceAccount exists, which
        // proves the controller manager is running and writing.
        wait_for(children, paths, Duration::from_secs(90), "the default ServiceAccount", || {
            kubectl(paths, &["get", "serviceaccount", "default", "-n", "default"], None).is_ok()
        })
    }
}

/// Polls `ready` until it holds; fails early, with the log tail, if a component exits.
fn wait_for(
    children: &mut [(&str, Child)],
    paths: &Paths,
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        for (name, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited ({status}) while waiting for {what}\n{}", log_tail(paths, name));
            }
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let (name, _) = children.last().expect("at least one component started");
            bail!("timed out after {}s waiting for {what}\n{}", timeout.as_secs(), log_tail(paths, name));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub(crate) fn log_tail(paths: &Paths, component: &str) -> String {
    let text = fs::read_to_string(paths.log_file(component)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    format!("--- last lines of {} ---\n{tail}", paths.log_file(component).display())
}

pub(crate) fn spawn(paths: &Paths, component: &str, configure: impl FnOnce(&mut Command)) -> Result<Child> {
    let log = fs::File::create(paths.log_file(component))?;
    let mut command = Command::new(paths.bin.join(component));
    configure(&mut command);
    command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // A session of its own: the plane outlives `cargo xtask cluster up` and ignores the
    // terminal's Ctrl-C; `cluster down` stops it by pid.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = command.spawn().with_context(|| format!("starting {component}"))?;
    fs::write(paths.pid_file(component), child.id().to_string())?;
    Ok(child)
}

pub fn kubectl(paths: &Paths, args: &[&str], file: Option<&Path>) -> Result<String> {
    let mut command = Command::new(paths.kubectl());
    command.arg("--kubeconfig").arg(&paths.admin_kubeconfig).args(args);
    if let Some(file) = file {
        command.arg(file);
    }
    let output = command.output().context("running kubectl")?;
    if !output.status.success() {
        bail!("kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Stops every component (controller manager first, etcd last) and waits for them to exit.
pub fn down(paths: &Paths) -> Result<()> {
    crate::keda::stop(paths);
    crate::flux::stop(paths);
    crate::argocd::stop(paths);
    crate::helm_controller::stop(paths);
    let mut stopped = 0;
    for component in COMPONENTS.iter().rev() {
        let pid_file = paths.pid_file(component);
        if let Some(pid) = read_pid(&pid_file) {
            if process_alive(pid) {
                stop_process(pid);
                stopped += 1;
            }
            let _ = fs::remove_file(&pid_file);
        }
    }
    if stopped > 0 {
        eprintln!("xtask: control plane stopped ({stopped} processes)");
    }
    if paths.state.exists() {
        fs::remove_dir_all(&paths.state).with_context(|| format!("removing {}", paths.state.display()))?;
    }
    Ok(())
}

pub(crate) fn stop_process(pid: i32) {
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if process_alive(pid) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
        while process_alive(pid) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub(crate) fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(crate) fn process_alive(pid: i32) -> bool {
    // A zombie still answers kill(0); it is not running, so look at its state too.
    let status = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = status.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
    let signalable = unsafe { libc::kill(pid, 0) == 0 };
    signalable && state.is_some_and(|s| s != "Z")
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_kubeconfig(path: &Path, server: &str, ca_pem: &str, user: &str, token: &str) -> Result<()> {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let context = "hpa-migrate-local";
    fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {context}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
             users:\n- name: {user}\n  user:\n    token: {token}\n\
             contexts:\n- name: {context}\n  context:\n    cluster: {context}\n    user: {user}\n    namespace: default\n\
             current-context: {context}\n"
        ),
    )?;
    Ok(())
}

/// Records who called the API server (the users the tests act as, so controllers do not drown
/// it): the benchmark counts requests per user agent from it.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: [admin, viewer, stripper]
- level: None
";

pub fn env(paths: &Paths) {
    println!("export KUBECONFIG={}", paths.admin_kubeconfig.display());
}

/// Records the plane's kube-apiserver arguments, and from them those of a second instance that
/// can be stopped and started without touching the plane's (see [`fault_apiserver_args`]).
fn write_apiserver_args(paths: &Paths, args: &[String]) -> Result<()> {
    fs::write(paths.apiserver_args(), args.join("\n") + "\n")?;
    fs::write(paths.fault_apiserver_args(), fault_apiserver_args(args).join("\n") + "\n")?;
    Ok(())
}

/// A plane started before the argument files existed: read them from the running process.
fn backfill_apiserver_args(paths: &Paths) -> Result<()> {
    if paths.fault_apiserver_args().is_file() {
        return Ok(());
    }
    let pid = read_pid(&paths.pid_file("kube-apiserver")).context("the kube-apiserver pid file")?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).context("reading the kube-apiserver command line")?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .skip(1)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into())
        .collect();
    write_apiserver_args(paths, &args)
}

/// A second kube-apiserver beside the plane's: same etcd, certificates, tokens and service
/// account keys (so every kubeconfig works against it with only the port changed), but
///
/// - its own `--secure-port` (`{port}`);
/// - its own audit log (`{dir}`): two processes rotating one file interleave lines, and the
///   benchmark counts requests from the plane's;
/// - no endpoint reconciler: both advertise 127.0.0.1, and each would rewrite the `kubernetes`
///   Service's endpoints to its own port;
/// - no identity lease: its name is derived from the host name, so both would hold the same
///   `kube-system` Lease and the second would delete it on every stop (the peer proxy depends on
///   the lease and goes too).
fn fault_apiserver_args(plane: &[String]) -> Vec<String> {
    let mut args: Vec<String> = plane
        .iter()
        .map(|arg| match arg.split_once('=') {
            Some(("--secure-port", _)) => "--secure-port={port}".to_string(),
            Some(("--audit-log-path", _)) => "--audit-log-path={dir}/audit.log".to_string(),
            _ => arg.clone(),
        })
        .collect();
    args.push("--endpoint-reconciler-type=none".into());
    args.push("--feature-gates=APIServerIdentity=false,UnknownVersionInteroperabilityProxy=false".into());
    args
}

/// `cluster flaky-apiserver [DOWN [UP]]`: a second kube-apiserver (as the fault tests run it) on
/// a free port, stopped (SIGTERM) for DOWN seconds every UP seconds (default 3 and 20) until
/// Ctrl-C, to reproduce by hand what an API server restart does to a command. The plane's own
/// API server is left alone.
pub fn flaky_apiserver(paths: &Paths, down_secs: u64, up_secs: u64) -> Result<()> {
    if !is_up(paths) {
        bail!("the control plane is not up: run `cargo xtask cluster up`");
    }
    backfill_apiserver_args(paths)?;
    let dir = paths.state.join("flaky-apiserver");
    fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let template = fs::read_to_string(paths.fault_apiserver_args())?;
    let args: Vec<String> = template
        .lines()
        .map(|a| a.replace("{port}", &port.to_string()).replace("{dir}", &dir.display().to_string()))
        .collect();
    let admin = fs::read_to_string(&paths.admin_kubeconfig)?;
    let kubeconfig = dir.join("admin.kubeconfig");
    let server = admin.lines().find_map(|l| l.trim().strip_prefix("server: ")).context("a server in the kubeconfig")?;
    fs::write(&kubeconfig, admin.replace(server, &format!("https://127.0.0.1:{port}")))?;
    eprintln!(
        "xtask: second kube-apiserver on port {port}, down {down_secs}s every {up_secs}s until Ctrl-C; \
         export KUBECONFIG={}",
        kubeconfig.display()
    );
    loop {
        let log = fs::File::create(dir.join("kube-apiserver.log"))?;
        let mut command = Command::new(paths.kube_apiserver());
        command.args(&args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // It goes when this command goes, however it is stopped.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command.spawn().context("starting the second kube-apiserver")?;
        eprintln!("xtask: started (pid {})", child.id());
        std::thread::sleep(Duration::from_secs(up_secs));
        stop_process(child.id() as i32);
        let _ = child.wait();
        eprintln!("xtask: stopped for {down_secs}s");
        std::thread::sleep(Duration::from_secs(down_secs));
    }
}
