//! `bench preflight`: `preflight` of one file of 1,000 Deployments (the next deploy: their
//! manifests without `replicas`) against `kubectl apply --server-side --dry-run=server` of the
//! same file as the same forced field manager, on a namespace where they are live.
//!
//! kubectl sends one dry-run apply per object, one after another; preflight reads each object,
//! the namespace's autoscalers once, and sends the same dry runs, 16 at a time.

use std::fmt::Write as _;
use std::fs;

use anyhow::Result;

use super::scale::{Row, render};
use super::{Bench, on_plane, seed};
use crate::cluster::Paths;

const NAMESPACE: &str = "bench-preflight";
const SIZE: usize = 1000;
const RUNS: usize = 3;
/// preflight's exit codes when every workload was predicted: no drop, a drop.
const PREDICTED: &[i32] = &[0, 1];

pub fn preflight(paths: &Paths, keep: bool) -> Result<()> {
    on_plane(paths, &[NAMESPACE], keep, || {
        let bench = Bench::new(paths)?;
        seed(bench.paths, &bench.out_dir, NAMESPACE, SIZE)?;
        let file = bench.out_dir.join("preflight-next.yaml");
        fs::write(&file, next_deploy(SIZE))?;
        let file = file.to_string_lossy().into_owned();
        eprintln!("xtask: {NAMESPACE}: kubectl dry-run apply and preflight of {SIZE} workloads, {RUNS} runs each");
        let kubectl = || {
            let mut command = std::process::Command::new(bench.paths.kubectl());
            command.arg("--kubeconfig").arg(&bench.kubeconfig).args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=kustomize-controller",
                "--dry-run=server",
                "-n",
                NAMESPACE,
                "-f",
                &file,
            ]);
            command
        };
        let ours = || bench.plugin(&["preflight", "-n", NAMESPACE, "--as", "flux", "-o", "json", "-f", &file]);
        let [limit, ours] = bench.interleaved(RUNS, &[(&kubectl, &[0]), (&ours, PREDICTED)])?[..] else {
            unreachable!()
        };
        let rows = [Row { bench: "preflight -f (1 file)".into(), workloads: SIZE, ours, limit: Some(limit) }];
        bench.write("preflight.md", &render(&rows))
    })
}

/// The seeded Deployments as the next deploy sends them: without `replicas`.
fn next_deploy(size: usize) -> String {
    let mut yaml = String::new();
    for i in 0..size {
        let _ = write!(
            yaml,
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\nspec:\n  \
             selector:\n    matchLabels: {{app: web-{i}}}\n  template:\n    metadata:\n      labels: {{app: web-{i}}}\n    spec:\n      \
             containers: [{{name: app, image: registry.invalid/app:1}}]\n"
        );
    }
    yaml
}
