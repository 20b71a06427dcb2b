//! `cargo xtask bench check`: `check -A` against the per-object loop of the Mimir migration
//! procedure (grafana/mimir#7367: `kubectl get -o json` and `jq` per workload), side by side in
//! one run on the local control plane, at N = 100 and N = 1,000 workloads with HPAs.
//!
//! Figures: wall time (median of the tool's runs; the loop runs once), API requests (counted in
//! the API server's audit log by user agent) and peak RSS (from wait4's rusage).

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::{self, Paths};
use crate::workspace_root;

const NAMESPACE: &str = "bench-check";
const SIZES: [usize; 2] = [100, 1000];
const TOOL_RUNS: usize = 5;
const TOOL_USER_AGENT: &str = "kubectl-hpa-migrate/";
const KUBECTL_USER_AGENT: &str = "kubectl/";

struct Measurement {
    wall: Duration,
    requests: usize,
    peak_rss_kib: i64,
}

struct Row {
    workloads: usize,
    tool: Measurement,
    baseline: Measurement,
}

pub fn check(paths: &Paths) -> Result<()> {
    let started_here = cluster::up(paths)?;
    let result = run(paths);
    let _ = cluster::kubectl(paths, &["delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found"], None);
    if started_here {
        cluster::down(paths)?;
    }
    result
}

fn run(paths: &Paths) -> Result<()> {
    eprintln!("xtask: building the release binary");
    crate::cargo(&["build", "--locked", "--release", "--bin", "kubectl-hpa_migrate"], &[])?;
    let plugin = workspace_root().join("target/release/kubectl-hpa_migrate");
    let out_dir = workspace_root().join("target/bench");
    fs::create_dir_all(&out_dir)?;
    let home = out_dir.join("home");
    fs::create_dir_all(&home)?;

    let _ = cluster::kubectl(paths, &["delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true"], None);
    cluster::kubectl(paths, &["create", "namespace", NAMESPACE], None)?;

    let mut rows = Vec::new();
    let mut created = 0;
    for size in SIZES {
        eprintln!("xtask: creating workloads {created}..{size} with HPAs");
        create_workloads(paths, &out_dir, created, size)?;
        created = size;
        wait_for_hpas(paths, size)?;

        eprintln!("xtask: N={size}: `check -A`, {TOOL_RUNS} runs");
        let mut runs = Vec::new();
        for _ in 0..TOOL_RUNS {
            let mut command = Command::new(&plugin);
            command.arg("--kubeconfig").arg(&paths.admin_kubeconfig).args(["check", "-A", "-o", "json"]);
            runs.push(measure(paths, command, &home, TOOL_USER_AGENT)?);
        }
        runs.sort_by_key(|m| m.wall);
        let median = &runs[runs.len() / 2];
        let tool = Measurement {
            wall: median.wall,
            requests: median.requests,
            peak_rss_kib: runs.iter().map(|m| m.peak_rss_kib).max().unwrap_or_default(),
        };

        eprintln!("xtask: N={size}: the per-object kubectl + jq loop (one run; slow by nature)");
        let script = baseline_script(paths, size);
        let mut command = Command::new("bash");
        command.arg("-c").arg(script);
        let baseline = measure(paths, command, &home, KUBECTL_USER_AGENT)?;
        rows.push(Row { workloads: size, tool, baseline });
    }

    let report = render(&rows);
    println!("{report}");
    let path = out_dir.join("check.md");
    fs::write(&path, &report)?;
    eprintln!("xtask: written to {}", path.display());
    Ok(())
}

/// Deployments applied by `kustomize-controller` (a Flux-style forced server-side apply), each
/// with an HPA. The Deployments are at 0 replicas: the HPA controller then reports
/// ScalingDisabled without fetching metrics, so a thousand HPAs synced every 2 s do not load
/// the two cores the measurement runs on (check reads and analyses the same objects either way).
fn create_workloads(paths: &Paths, out_dir: &Path, from: usize, to: usize) -> Result<()> {
    let mut yaml = String::new();
    for i in from..to {
        write!(
            yaml,
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\n  namespace: {NAMESPACE}\nspec:\n  replicas: 0\n  \
             selector:\n    matchLabels: {{app: web-{i}}}\n  template:\n    metadata:\n      labels: {{app: web-{i}}}\n    spec:\n      \
             containers: [{{name: app, image: registry.invalid/app:1}}]\n\
             ---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web-{i}\n  namespace: {NAMESPACE}\nspec:\n  \
             scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web-{i}}}\n  minReplicas: 2\n  maxReplicas: 4\n"
        )?;
    }
    let file = out_dir.join(format!("workloads-{from}-{to}.yaml"));
    fs::write(&file, yaml)?;
    cluster::kubectl(
        paths,
        &["apply", "--server-side", "--force-conflicts", "--field-manager=kustomize-controller", "-f"],
        Some(&file),
    )?;
    Ok(())
}

/// Waits until the HPA controller has judged every HPA, so both sides see a steady cluster.
fn wait_for_hpas(paths: &Paths, expected: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let judged = cluster::kubectl(
            paths,
            &[
                "get",
                "hpa",
                "-n",
                NAMESPACE,
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
            bail!("only {judged} of {expected} HPAs have status after 300s");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// What a person following the Mimir procedure does for each workload: read the object with
/// its managedFields and the HPA, and pick the answers out with jq.
fn baseline_script(paths: &Paths, size: usize) -> String {
    let kubectl =
        format!("{} --kubeconfig {} -n {NAMESPACE}", paths.kubectl().display(), paths.admin_kubeconfig.display());
    format!(
        "set -euo pipefail\nfor i in $(seq 0 {last}); do\n  \
         {kubectl} get deployment/web-$i -o json --show-managed-fields | jq -r '[.metadata.managedFields[] | select(.fieldsV1[\"f:spec\"][\"f:replicas\"] != null) | .manager] | join(\",\")' >/dev/null\n  \
         {kubectl} get hpa/web-$i -o json | jq -r '[.status.conditions[]? | \"\\(.type)=\\(.status)\"] | join(\",\")' >/dev/null\n\
         done\n",
        last = size - 1
    )
}

fn measure(paths: &Paths, mut command: Command, home: &Path, user_agent: &str) -> Result<Measurement> {
    let audit = paths.state.join("audit.log");
    let offset = fs::metadata(&audit).map(|m| m.len()).unwrap_or(0);
    command.env("HOME", home).env_remove("KUBECONFIG").stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let child = command.spawn().context("starting a benchmark run")?;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 reports the peak RSS of the child and of the descendants it waited for.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if waited < 0 || !libc::WIFEXITED(status) || ![0, 1].contains(&libc::WEXITSTATUS(status)) {
        bail!("benchmark run failed (wait status {status})");
    }
    std::thread::sleep(Duration::from_millis(500));
    Ok(Measurement { wall, requests: count_requests(&audit, offset, user_agent)?, peak_rss_kib: usage.ru_maxrss })
}

fn count_requests(audit: &PathBuf, offset: u64, user_agent: &str) -> Result<usize> {
    let mut file = fs::File::open(audit).with_context(|| format!("opening {}", audit.display()))?;
    file.seek(SeekFrom::Start(offset))?;
    let needle = format!("\"userAgent\":\"{user_agent}");
    Ok(BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|line| line.contains("\"stage\":\"ResponseComplete\"") && line.contains(&needle))
        .count())
}

fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workloads | check -A wall | kubectl+jq loop wall | speed-up | check requests | loop requests | check peak RSS | loop peak RSS (largest process) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {:.3} s | {:.1} s | {:.0}x | {} | {} | {:.1} MiB | {:.1} MiB |",
            row.workloads,
            row.tool.wall.as_secs_f64(),
            row.baseline.wall.as_secs_f64(),
            row.baseline.wall.as_secs_f64() / row.tool.wall.as_secs_f64(),
            row.tool.requests,
            row.baseline.requests,
            row.tool.peak_rss_kib as f64 / 1024.0,
            row.baseline.peak_rss_kib as f64 / 1024.0,
        );
    }
    out
}
