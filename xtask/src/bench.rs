//! `cargo xtask bench`: the plugin against what it replaces or is bound by, side by side in one
//! run on the local control plane. Tables go to `target/bench/`.
//!
//! - `bench check`: `check -A` against the per-object loop of the Mimir migration procedure
//!   (grafana/mimir#7367: `kubectl get -o json` and `jq` per workload) at N = 100 and 1,000.
//! - `bench check-all`, `bench targets`, `bench strip`, `bench scale` (all three): see
//!   [`scale`].
//! - `bench preflight`: see [`preflight`].
//! - `bench fleet`: see [`fleet`].
//!
//! Figures: wall time (median of the tool's runs; a loop runs once), API requests and peak RSS
//! (from wait4's rusage, the largest process of the run). Requests are counted in the plane's
//! audit log: every measured command runs with a kubeconfig that impersonates one user
//! ([`BENCH_USER`]), so the count is of that command alone even while the controllers, tests
//! of other sessions and the HPA controller's syncs call the same API server (a diff of
//! `apiserver_request_total` on `/metrics` counts all of them).

mod fleet;
mod preflight;
mod scale;

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::{self, Paths};
use crate::workspace_root;

pub use fleet::fleet;
pub use preflight::preflight;
pub use scale::{check_all, scale, strip, targets};

const NAMESPACE: &str = "bench-check";
const SIZES: [usize; 2] = [100, 1000];
const TOOL_RUNS: usize = 5;
/// The user every measured command impersonates (as `system:masters`, what admin is).
const BENCH_USER: &str = "hpa-migrate-bench";
/// Objects per `kubectl apply` file when seeding, and how many applies run at once.
const SEED_CHUNK: usize = 500;
const SEED_APPLIES_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Measurement {
    wall: Duration,
    /// User plus system CPU time of the process: on a shared plane, steadier than wall.
    cpu: Duration,
    requests: usize,
    lists: usize,
    peak_rss_kib: i64,
}

impl Measurement {
    fn rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }

    /// The median wall time of several runs, their median CPU time, and the largest peak RSS of
    /// them.
    fn median(mut runs: Vec<Measurement>) -> Measurement {
        let peak_rss_kib = runs.iter().map(|m| m.peak_rss_kib).max().unwrap_or_default();
        let mut cpus: Vec<Duration> = runs.iter().map(|m| m.cpu).collect();
        cpus.sort();
        runs.sort_by_key(|m| m.wall);
        Measurement { peak_rss_kib, cpu: cpus[cpus.len() / 2], ..runs[runs.len() / 2] }
    }
}

/// What every bench needs: the release binaries, the output directory and the impersonating
/// kubeconfig.
struct Bench<'a> {
    paths: &'a Paths,
    plugin: PathBuf,
    lists: PathBuf,
    out_dir: PathBuf,
    home: PathBuf,
    kubeconfig: PathBuf,
}

impl<'a> Bench<'a> {
    fn new(paths: &'a Paths) -> Result<Self> {
        eprintln!("xtask: building the release binary and the raw-LIST measurer");
        crate::cargo(
            &["build", "--locked", "--release", "--bin", "kubectl-hpa_migrate", "--example", "bench_lists"],
            &[],
        )?;
        // Where cargo put them: CARGO_TARGET_DIR when set (a worktree's own), else target/.
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
        let release = target.join("release");
        let out_dir = workspace_root().join("target/bench");
        let home = out_dir.join("home");
        fs::create_dir_all(&home)?;
        let kubeconfig = out_dir.join("bench.kubeconfig");
        let admin = fs::read_to_string(&paths.admin_kubeconfig)?;
        let Some(token_line) = admin.lines().find(|l| l.trim_start().starts_with("token:")) else {
            bail!("no token in {}", paths.admin_kubeconfig.display());
        };
        let impersonating = format!("{token_line}\n    as: {BENCH_USER}\n    as-groups: [\"system:masters\"]");
        fs::write(&kubeconfig, admin.replacen(token_line, &impersonating, 1))?;
        Ok(Self {
            paths,
            plugin: release.join("kubectl-hpa_migrate"),
            lists: release.join("examples/bench_lists"),
            out_dir,
            home,
            kubeconfig,
        })
    }

    /// The plugin with the bench kubeconfig and `args`.
    fn plugin(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.plugin);
        command.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        command
    }

    /// The raw-LIST measurer (`examples/bench_lists.rs`) with the bench kubeconfig and `args`.
    fn raw_lists(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.lists);
        command.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        command
    }

    /// kubectl as the bench user, in `namespace`, for shell loops.
    fn kubectl_line(&self, namespace: &str) -> String {
        format!("{} --kubeconfig {} -n {namespace}", self.paths.kubectl().display(), self.kubeconfig.display())
    }

    /// Runs `command` to its end and measures it; exit codes other than `ok_codes` fail.
    fn measure(&self, mut command: Command, ok_codes: &[i32]) -> Result<Measurement> {
        let audit = self.paths.state.join("audit.log");
        let offset = fs::metadata(&audit).map(|m| m.len()).unwrap_or(0);
        let stderr_path = self.out_dir.join("last-run.stderr");
        command
            .env("HOME", &self.home)
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr_path)?);
        let started = Instant::now();
        let child = command.spawn().with_context(|| format!("starting {command:?}"))?;
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // wait4 reports the peak RSS of the child and of the descendants it waited for.
        let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        let wall = started.elapsed();
        if waited < 0 || !libc::WIFEXITED(status) || !ok_codes.contains(&libc::WEXITSTATUS(status)) {
            let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            bail!(
                "{command:?} failed (wait status {status}): {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        // The audit log is written as each request completes; give the last line time to land.
        std::thread::sleep(Duration::from_millis(500));
        let (requests, lists) = count_requests(&audit, offset)?;
        let cpu = timeval(usage.ru_utime) + timeval(usage.ru_stime);
        Ok(Measurement { wall, cpu, requests, lists, peak_rss_kib: usage.ru_maxrss })
    }

    /// Runs each of `commands` `runs` times, interleaved so that all see the same load.
    fn interleaved(&self, runs: usize, commands: &[(&dyn Fn() -> Command, &[i32])]) -> Result<Vec<Measurement>> {
        let mut all: Vec<Vec<Measurement>> = vec![Vec::new(); commands.len()];
        for _ in 0..runs {
            for ((command, ok), measured) in commands.iter().zip(&mut all) {
                measured.push(self.measure(command(), ok)?);
            }
        }
        Ok(all.into_iter().map(Measurement::median).collect())
    }

    fn write(&self, name: &str, report: &str) -> Result<()> {
        println!("{report}");
        let path = self.out_dir.join(name);
        fs::write(&path, report)?;
        eprintln!("xtask: written to {}", path.display());
        Ok(())
    }
}

fn timeval(time: libc::timeval) -> Duration {
    Duration::from_secs(time.tv_sec as u64) + Duration::from_micros(time.tv_usec as u64)
}

/// Runs `body` with the plane up, deleting `namespaces` afterwards unless `keep`.
fn on_plane(paths: &Paths, namespaces: &[&str], keep: bool, body: impl FnOnce() -> Result<()>) -> Result<()> {
    let started_here = cluster::up(paths)?;
    let result = body();
    if !keep {
        for namespace in namespaces {
            let _ = cluster::kubectl(
                paths,
                &["delete", "namespace", namespace, "--wait=false", "--ignore-not-found"],
                None,
            );
        }
    }
    if started_here {
        cluster::down(paths)?;
    }
    result
}

pub fn check(paths: &Paths) -> Result<()> {
    on_plane(paths, &[NAMESPACE], false, || run(paths))
}

fn run(paths: &Paths) -> Result<()> {
    let bench = Bench::new(paths)?;
    let _ = cluster::kubectl(paths, &["delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true"], None);
    let mut rows = Vec::new();
    for size in SIZES {
        seed(paths, &bench.out_dir, NAMESPACE, size)?;
        eprintln!("xtask: N={size}: `check -A`, {TOOL_RUNS} runs");
        let check = || bench.plugin(&["check", "-A", "-o", "json"]);
        let [tool] = bench.interleaved(TOOL_RUNS, &[(&check, &[0, 1])])?[..] else { unreachable!() };
        eprintln!("xtask: N={size}: the per-object kubectl + jq loop (one run; slow by nature)");
        let loop_ = bench.measure(bash(&check_loop(&bench.kubectl_line(NAMESPACE), size)), &[0])?;
        rows.push((size, tool, loop_));
    }
    bench.write("check.md", &render(&rows))
}

fn bash(script: &str) -> Command {
    let mut command = Command::new("bash");
    command.arg("-c").arg(script);
    command
}

/// Makes `namespace` hold `web-0` .. `web-{size-1}` (Deployments applied by
/// `kustomize-controller`, a Flux-style forced server-side apply, each with an HPA), creating
/// only those missing, and waits for the HPA controller to judge every HPA. The Deployments are
/// at 0 replicas: the HPA controller then reports ScalingDisabled without fetching metrics, and
/// no pod runs, so thousands of HPAs do not load the two cores the measurement runs on (the
/// commands read and analyse the same objects either way). Not the real controller: the bench
/// measures reading and stripping, which only need an Apply entry named kustomize-controller,
/// and is not evidence of what Flux does; Flux's takeover is tested with the real controller in
/// tests/it/flux.rs.
fn seed(paths: &Paths, out_dir: &Path, namespace: &str, size: usize) -> Result<()> {
    let existing = cluster::kubectl(paths, &["get", "namespace", namespace, "--ignore-not-found", "-o", "name"], None)?;
    if existing.trim().is_empty() {
        cluster::kubectl(paths, &["create", "namespace", namespace], None)?;
    }
    let have = cluster::kubectl(paths, &["get", "deployments", "-n", namespace, "-o", "name"], None)?.lines().count();
    if have < size {
        eprintln!("xtask: {namespace}: creating workloads {have}..{size} with HPAs");
    }
    let chunks: Vec<(usize, usize)> =
        (have..size).step_by(SEED_CHUNK).map(|from| (from, (from + SEED_CHUNK).min(size))).collect();
    for batch in chunks.chunks(SEED_APPLIES_IN_FLIGHT) {
        let children = batch
            .iter()
            .map(|&(from, to)| {
                let file = out_dir.join(format!("{namespace}-{from}-{to}.yaml"));
                fs::write(&file, workloads_yaml(namespace, from, to))?;
                Command::new(paths.kubectl())
                    .arg("--kubeconfig")
                    .arg(&paths.admin_kubeconfig)
                    .args(["apply", "--server-side", "--force-conflicts", "--field-manager=kustomize-controller", "-f"])
                    .arg(&file)
                    .stdout(Stdio::null())
                    .spawn()
                    .context("running kubectl apply")
            })
            .collect::<Result<Vec<_>>>()?;
        for mut child in children {
            if !child.wait()?.success() {
                bail!("seeding {namespace} failed");
            }
        }
    }
    wait_for_hpas(paths, namespace, size)
}

fn workloads_yaml(namespace: &str, from: usize, to: usize) -> String {
    let mut yaml = String::new();
    for i in from..to {
        let _ = write!(
            yaml,
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\n  namespace: {namespace}\nspec:\n  replicas: 0\n  \
             selector:\n    matchLabels: {{app: web-{i}}}\n  template:\n    metadata:\n      labels: {{app: web-{i}}}\n    spec:\n      \
             containers: [{{name: app, image: registry.invalid/app:1}}]\n\
             ---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web-{i}\n  namespace: {namespace}\nspec:\n  \
             scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web-{i}}}\n  minReplicas: 2\n  maxReplicas: 4\n"
        );
    }
    yaml
}

/// Waits until the HPA controller has judged every HPA, so every side sees a steady cluster.
fn wait_for_hpas(paths: &Paths, namespace: &str, expected: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let judged = cluster::kubectl(
            paths,
            &[
                "get",
                "hpa",
                "-n",
                namespace,
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[0].type}{\"\\n\"}{end}",
            ],
            None,
        )?
        .lines()
        .filter(|l| !l.is_empty())
        .count();
        if judged >= expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {judged} of {expected} HPAs in {namespace} have status after 600s");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// What a person following the Mimir procedure does for each workload: read the object with
/// its managedFields and the HPA, and pick the answers out with jq.
fn check_loop(kubectl: &str, size: usize) -> String {
    format!(
        "set -euo pipefail\nfor i in $(seq 0 {last}); do\n  \
         {kubectl} get deployment/web-$i -o json --show-managed-fields | jq -r '[.metadata.managedFields[] | select(.fieldsV1[\"f:spec\"][\"f:replicas\"] != null) | .manager] | join(\",\")' >/dev/null\n  \
         {kubectl} get hpa/web-$i -o json | jq -r '[.status.conditions[]? | \"\\(.type)=\\(.status)\"] | join(\",\")' >/dev/null\n\
         done\n",
        last = size - 1
    )
}

/// Requests (and LISTs among them) the bench user made after `offset` in the audit log.
fn count_requests(audit: &PathBuf, offset: u64) -> Result<(usize, usize)> {
    let mut file = fs::File::open(audit).with_context(|| format!("opening {}", audit.display()))?;
    file.seek(SeekFrom::Start(offset))?;
    let user = format!("\"impersonatedUser\":{{\"username\":\"{BENCH_USER}\"");
    let mut counts = (0, 0);
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        if line.contains("\"stage\":\"ResponseComplete\"") && line.contains(&user) {
            counts.0 += 1;
            if line.contains("\"verb\":\"list\"") {
                counts.1 += 1;
            }
        }
    }
    Ok(counts)
}

fn render(rows: &[(usize, Measurement, Measurement)]) -> String {
    let mut out = String::from(
        "| workloads | check -A wall | kubectl+jq loop wall | speed-up | check requests | loop requests | check peak RSS | loop peak RSS (largest process) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (workloads, tool, baseline) in rows {
        let _ = writeln!(
            out,
            "| {workloads} | {:.3} s | {:.1} s | {:.0}x | {} | {} | {:.1} MiB | {:.1} MiB |",
            tool.wall.as_secs_f64(),
            baseline.wall.as_secs_f64(),
            baseline.wall.as_secs_f64() / tool.wall.as_secs_f64(),
            tool.requests,
            baseline.requests,
            tool.rss_mib(),
            baseline.rss_mib(),
        );
    }
    out
}
