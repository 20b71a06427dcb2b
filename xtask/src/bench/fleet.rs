//! `bench fleet`: `check --all-contexts` across 20 contexts, each defaulting to a namespace of
//! its own of 500 workloads, against each of those contexts checked alone (`check --context
//! NAME`), interleaved in one run. The figure is the fleet's wall time over the slowest single
//! context's: running the contexts at once should cost little more than the slowest of them.
//!
//! All 20 contexts point at the one local plane (as the bench user), so the plane serves 20
//! checks at once where a real fleet's clusters would each serve one: the ratio is an upper
//! bound of what a fleet of real clusters costs.

use std::fmt::Write as _;
use std::fs;
use std::process::Command;

use anyhow::{Result, bail};

use super::{Bench, Measurement, on_plane, seed};
use crate::cluster::Paths;

const CONTEXTS: usize = 20;
const SIZE: usize = 500;
const RUNS: usize = 3;
/// `check`'s exit codes when every workload was read: ok, action needed.
const CHECKED: &[i32] = &[0, 1];

fn namespace(index: usize) -> String {
    format!("bench-fleet-{index:02}")
}

pub fn fleet(paths: &Paths, keep: bool) -> Result<()> {
    let namespaces: Vec<String> = (0..CONTEXTS).map(namespace).collect();
    let names: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    on_plane(paths, &names, keep, || {
        let bench = Bench::new(paths)?;
        for namespace in &namespaces {
            seed(bench.paths, &bench.out_dir, namespace, SIZE)?;
        }
        let kubeconfig = bench.out_dir.join("fleet.kubeconfig");
        fs::write(&kubeconfig, with_contexts(&fs::read_to_string(&bench.kubeconfig)?, &namespaces)?)?;
        let plugin = |args: Vec<&str>| {
            let mut command = Command::new(&bench.plugin);
            command.arg("--kubeconfig").arg(&kubeconfig).args(args);
            command
        };
        let all = || plugin(vec!["check", "--all-contexts"]);
        let singles: Vec<Box<dyn Fn() -> Command + '_>> = namespaces
            .iter()
            .map(|name| Box::new(move || plugin(vec!["check", "--context", name])) as Box<dyn Fn() -> Command>)
            .collect();
        let mut commands: Vec<(&dyn Fn() -> Command, &[i32])> = vec![(&all, CHECKED)];
        commands.extend(singles.iter().map(|single| (single.as_ref(), CHECKED)));
        eprintln!("xtask: check across {CONTEXTS} contexts of {SIZE} workloads, and each alone, {RUNS} runs each");
        let measured = bench.interleaved(RUNS, &commands)?;
        let (fleet, alone) = measured.split_first().expect("the fleet and the singles");
        let Some((slowest, context)) = alone.iter().zip(&namespaces).max_by_key(|(m, _)| m.wall) else {
            bail!("no single-context run")
        };
        bench.write("fleet.md", &render(fleet, slowest, context))
    })
}

/// The bench kubeconfig with one context per namespace (its default namespace), on the same
/// cluster and user.
fn with_contexts(kubeconfig: &str, namespaces: &[String]) -> Result<String> {
    let Some((head, contexts)) = kubeconfig.split_once("\ncontexts:\n") else {
        bail!("the bench kubeconfig has no contexts")
    };
    let field =
        |name: &str| contexts.lines().find_map(|l| l.trim_start().strip_prefix(name).map(|v| v.trim().to_string()));
    let (Some(cluster), Some(user)) = (field("cluster:"), field("user:")) else {
        bail!("the bench kubeconfig's context names no cluster or user")
    };
    let mut text = format!("{head}\ncontexts:\n");
    for namespace in namespaces {
        let _ = writeln!(
            text,
            "- name: {namespace}\n  context:\n    cluster: {cluster}\n    user: {user}\n    namespace: {namespace}"
        );
    }
    let _ = writeln!(text, "current-context: {}", namespaces[0]);
    Ok(text)
}

fn render(fleet: &Measurement, slowest: &Measurement, context: &str) -> String {
    let mut out = String::from("| run | wall (median of 3) | CPU | requests | peak RSS |\n|---|---:|---:|---:|---:|\n");
    let mut row = |name: String, m: &Measurement| {
        let _ = writeln!(
            out,
            "| {name} | {:.3} s | {:.3} s | {} | {:.1} MiB |",
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.requests,
            m.rss_mib()
        );
    };
    row(format!("check --all-contexts ({CONTEXTS} x {SIZE} workloads)"), fleet);
    row(format!("check --context {context} (the slowest of the {CONTEXTS} alone)"), slowest);
    let _ = writeln!(out, "\nfleet / slowest single: {:.2}x", fleet.wall.as_secs_f64() / slowest.wall.as_secs_f64());
    out
}
