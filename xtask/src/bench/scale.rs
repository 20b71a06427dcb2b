//! The scale benches (issue 12): every command against the raw requests it cannot do without,
//! measured with the plugin's own client (`examples/bench_lists.rs`) in the same run.
//!
//! - `bench check-all`: `check -A` (text and `-o json`) at 1,000, 5,000 and 10,000 workloads
//!   against the raw paginated LISTs of Deployments, HPAs and ScaledObjects.
//! - `bench targets`: in a namespace of 10,000, `check TARGET` and `strip TARGET` against the
//!   target's GET plus the HPA and ScaledObject LISTs; `verify` of 1, 20 and 100 named workloads
//!   against their GETs plus the LISTs of HPAs, ScaledObjects, Events and ReplicaSets.
//! - `bench strip`: `strip` of 1,000 named workloads against the per-object loop of the seed's
//!   script (two `kubectl get`, `jq`, one `kubectl patch` each), in two namespaces of 1,000.
//! - `bench scale`: the three on one seeded namespace.
//!
//! `strip` runs with `--force`: at 0 replicas the HPA reports ScalingDisabled, which `strip`
//! refuses as no autoscaler in charge; `--force` lifts that refusal only (backups, the
//! resourceVersion and entry tests of the patch, the re-read and its confirmation all still run).
//! The loop checks what the seed's script checks, AbleToScale.
//!
//! Every bench deletes its namespaces at the end unless given `--keep` (then a later bench
//! reuses what is seeded).

use std::cell::Cell;
use std::fmt::Write as _;
use std::process::Command;

use anyhow::Result;

use super::{Bench, Measurement, bash, on_plane, seed};
use crate::cluster::Paths;

const SCALE_NAMESPACE: &str = "bench-scale";
const STRIP_NAMESPACE: &str = "bench-strip";
const LOOP_NAMESPACE: &str = "bench-strip-loop";
const CHECK_ALL_SIZES: [usize; 3] = [1000, 5000, 10_000];
const TARGETS_SIZE: usize = 10_000;
const VERIFY_COUNTS: [usize; 3] = [1, 20, 100];
const STRIP_SIZE: usize = 1000;
const RUNS: usize = 3;
/// What `check -A` reads (the kinds the HPAs point at are Deployments).
const CHECK_KINDS: [&str; 3] =
    ["apps/v1/deployments", "autoscaling/v2/horizontalpodautoscalers", "keda.sh/v1alpha1/scaledobjects"];
const AUTOSCALER_KINDS: [&str; 2] = ["autoscaling/v2/horizontalpodautoscalers", "keda.sh/v1alpha1/scaledobjects"];
/// `check`'s exit codes when every workload was read: ok, action needed.
const CHECKED: &[i32] = &[0, 1];
/// `verify`'s: pass, drop or at risk, inconclusive (no scaling Events at 0 replicas).
const VERIFIED: &[i32] = &[0, 1, 3];

/// One row: a command, its limit (`None`: compared with a loop or nothing).
pub(super) struct Row {
    pub bench: String,
    pub workloads: usize,
    pub ours: Measurement,
    pub limit: Option<Measurement>,
}

pub fn check_all(paths: &Paths, keep: bool) -> Result<()> {
    on_plane(paths, &[SCALE_NAMESPACE], keep, || check_all_on(&Bench::new(paths)?))
}

pub fn targets(paths: &Paths, keep: bool) -> Result<()> {
    on_plane(paths, &[SCALE_NAMESPACE], keep, || targets_on(&Bench::new(paths)?))
}

pub fn strip(paths: &Paths, keep: bool) -> Result<()> {
    on_plane(paths, &[STRIP_NAMESPACE, LOOP_NAMESPACE], keep, || strip_on(&Bench::new(paths)?))
}

pub fn scale(paths: &Paths, keep: bool) -> Result<()> {
    on_plane(paths, &[SCALE_NAMESPACE, STRIP_NAMESPACE, LOOP_NAMESPACE], keep, || {
        let bench = Bench::new(paths)?;
        check_all_on(&bench)?;
        targets_on(&bench)?;
        strip_on(&bench)
    })
}

fn check_all_on(bench: &Bench) -> Result<()> {
    let mut rows = Vec::new();
    for size in CHECK_ALL_SIZES {
        seed(bench.paths, &bench.out_dir, SCALE_NAMESPACE, size)?;
        eprintln!("xtask: N={size}: raw LISTs, `check -A`, `check -A -o json`, {RUNS} runs each, interleaved");
        let raw = || bench.raw_lists(&[&["-A"][..], &CHECK_KINDS].concat());
        let text = || bench.plugin(&["check", "-A"]);
        let json = || bench.plugin(&["check", "-A", "-o", "json"]);
        let [limit, text, json] = bench.interleaved(RUNS, &[(&raw, &[0]), (&text, CHECKED), (&json, CHECKED)])?[..]
        else {
            unreachable!()
        };
        rows.push(Row { bench: "check -A".into(), workloads: size, ours: text, limit: Some(limit) });
        rows.push(Row { bench: "check -A -o json".into(), workloads: size, ours: json, limit: Some(limit) });
    }
    bench.write("check-all.md", &render(&rows))
}

fn targets_on(bench: &Bench) -> Result<()> {
    let ns = SCALE_NAMESPACE;
    seed(bench.paths, &bench.out_dir, ns, TARGETS_SIZE)?;
    let mut rows = Vec::new();
    let raw_reads = |names: &[String]| {
        let gets: Vec<String> = names.iter().map(|n| format!("apps/v1/deployments/{n}")).collect();
        let args: Vec<&str> =
            ["-n", ns].into_iter().chain(AUTOSCALER_KINDS).chain(gets.iter().map(String::as_str)).collect();
        bench.raw_lists(&args)
    };
    let one = ["web-5000".to_string()];
    eprintln!("xtask: {ns}: `check TARGET`, {RUNS} runs");
    let check = || bench.plugin(&["check", "-n", ns, "deploy/web-5000"]);
    let reads = || raw_reads(&one);
    let [limit, check] = bench.interleaved(RUNS, &[(&reads, &[0]), (&check, CHECKED)])?[..] else { unreachable!() };
    rows.push(Row { bench: "check TARGET".into(), workloads: TARGETS_SIZE, ours: check, limit: Some(limit) });

    eprintln!("xtask: {ns}: `strip TARGET` (a different workload each run), {RUNS} runs");
    let backups = bench.out_dir.join("backups");
    let next = Cell::new(6000);
    let strip = || {
        let target = format!("deploy/web-{}", next.replace(next.get() + 1));
        let mut command = bench.plugin(&["strip", "-n", ns, "-y", "--force", &target, "--backup-dir"]);
        command.arg(&backups);
        command
    };
    let [limit, strip] = bench.interleaved(RUNS, &[(&reads, &[0]), (&strip, &[0])])?[..] else { unreachable!() };
    rows.push(Row { bench: "strip TARGET".into(), workloads: TARGETS_SIZE, ours: strip, limit: Some(limit) });

    for count in VERIFY_COUNTS {
        eprintln!("xtask: {ns}: `verify` of {count} named workloads, {RUNS} runs");
        let names: Vec<String> = (0..count).map(|i| format!("web-{}", i * (TARGETS_SIZE / count))).collect();
        let targets: Vec<String> = names.iter().map(|n| format!("deploy/{n}")).collect();
        let verify = || {
            let mut command = bench.plugin(&["verify", "-n", ns]);
            command.args(&targets);
            command
        };
        let limit = || {
            let mut command = raw_reads(&names);
            command.args(["/v1/events", "apps/v1/replicasets"]);
            command
        };
        let [limit, verify] = bench.interleaved(RUNS, &[(&limit, &[0]), (&verify, VERIFIED)])?[..] else {
            unreachable!()
        };
        rows.push(Row {
            bench: format!("verify of {count}"),
            workloads: TARGETS_SIZE,
            ours: verify,
            limit: Some(limit),
        });
    }
    bench.write("targets.md", &render(&rows))
}

fn strip_on(bench: &Bench) -> Result<()> {
    seed(bench.paths, &bench.out_dir, STRIP_NAMESPACE, STRIP_SIZE)?;
    seed(bench.paths, &bench.out_dir, LOOP_NAMESPACE, STRIP_SIZE)?;
    eprintln!("xtask: `strip` of {STRIP_SIZE} named workloads (one run: it changes them)");
    let mut command: Command = bench.plugin(&["strip", "-n", STRIP_NAMESPACE, "-y", "--force", "--backup-dir"]);
    command.arg(bench.out_dir.join("backups")).args((0..STRIP_SIZE).map(|i| format!("deploy/web-{i}")));
    let ours = bench.measure(command, &[0])?;
    eprintln!("xtask: the per-object kubectl get, jq, kubectl patch loop of {STRIP_SIZE} (one run; slow by nature)");
    let loop_ = bench.measure(bash(&strip_loop(&bench.kubectl_line(LOOP_NAMESPACE), STRIP_SIZE)), &[0])?;
    let mut report = render(&[Row { bench: "strip".into(), workloads: STRIP_SIZE, ours, limit: Some(loop_) }]);
    let _ = writeln!(
        report,
        "\nlimit: the per-object loop (kubectl get, jq, kubectl patch); speed-up {:.0}x",
        loop_.wall.as_secs_f64() / ours.wall.as_secs_f64()
    );
    bench.write("strip.md", &report)
}

/// The seed's script per workload: read it with its managedFields and find the deploy tool's
/// entry that owns replicas, read the HPA and check that it can scale, then remove replicas
/// from that entry with a JSON patch (a `test` op first, so a moved entry is not touched).
fn strip_loop(kubectl: &str, size: usize) -> String {
    format!(
        "set -euo pipefail\nfor i in $(seq 0 {last}); do\n  \
         idx=$({kubectl} get deployment/web-$i -o json --show-managed-fields | jq -r '.metadata.managedFields | to_entries[] | select(.value.manager == \"kustomize-controller\" and .value.fieldsV1[\"f:spec\"][\"f:replicas\"] != null) | .key' | head -n1)\n  \
         {kubectl} get hpa/web-$i -o json | jq -e '.status.conditions[]? | select(.type == \"AbleToScale\" and .status == \"True\")' >/dev/null\n  \
         {kubectl} patch deployment/web-$i --type=json -p \"[{{\\\"op\\\":\\\"test\\\",\\\"path\\\":\\\"/metadata/managedFields/$idx/manager\\\",\\\"value\\\":\\\"kustomize-controller\\\"}},{{\\\"op\\\":\\\"remove\\\",\\\"path\\\":\\\"/metadata/managedFields/$idx/fieldsV1/f:spec/f:replicas\\\"}}]\" >/dev/null\n\
         done\n",
        last = size - 1
    )
}

pub(super) fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| bench | workloads | our wall | limit wall | ratio | our CPU | limit CPU | CPU ratio | requests (LISTs) | limit requests (LISTs) | peak RSS | limit peak RSS |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let ours = &row.ours;
        let limit = |f: &dyn Fn(&Measurement) -> String| row.limit.as_ref().map_or("-".into(), f);
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} s | {} | {} | {:.3} s | {} | {} | {} ({}) | {} | {:.1} MiB | {} |",
            row.bench,
            row.workloads,
            ours.wall.as_secs_f64(),
            limit(&|l| format!("{:.3} s", l.wall.as_secs_f64())),
            limit(&|l| format!("{:.2}x", ours.wall.as_secs_f64() / l.wall.as_secs_f64())),
            ours.cpu.as_secs_f64(),
            limit(&|l| format!("{:.3} s", l.cpu.as_secs_f64())),
            limit(&|l| format!("{:.2}x", ours.cpu.as_secs_f64() / l.cpu.as_secs_f64())),
            ours.requests,
            ours.lists,
            limit(&|l| format!("{} ({})", l.requests, l.lists)),
            ours.rss_mib(),
            limit(&|l| format!("{:.1} MiB", l.rss_mib())),
        );
    }
    out
}
