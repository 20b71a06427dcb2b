//! `cargo xtask`: the project's own automation (control plane, test suite, fixtures).

mod argocd;
mod bench;
mod cluster;
mod controller;
mod demo;
mod dist;
mod flux;
mod gobuild;
mod helm;
mod helm_controller;
mod keda;
mod krew;
mod layout;
mod pki;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  cluster up       build (if needed) and start the local control plane
  cluster down     stop the local control plane, leaving nothing running
  cluster env      print `export KUBECONFIG=...` for the admin kubeconfig
  cluster build    build the control-plane binaries only
  cluster flaky-apiserver [DOWN [UP]]
                   a second kube-apiserver on the plane's etcd, stopped for DOWN s every UP s
  tools helm       build the Helm 3 and Helm 4 CLIs the integration tests run
  tools krew       build kubectl-krew and validate-krew-manifest for the distribution tests
  dist [--target TRIPLE]
                   release build and krew archive under target/dist/; updates plugin.yaml's sha256
  demo [--keep]    the story on the control plane: a Flux-deployed Mimir namespace, one workload
                   dropping to 1 without the tool, the others migrated with check, strip, verify;
                   --keep leaves the plane and the namespace up to explore
  bench check      `check -A` against the per-object kubectl + jq loop, N = 100 and 1,000
  bench check-all [--keep]
                   `check -A` (text, json) against the raw paginated LISTs, N = 1,000 to 10,000
  bench targets [--keep]
                   in a namespace of 10,000: check TARGET, strip TARGET, verify of 1, 20, 100
  bench strip [--keep]
                   strip of 1,000 against the per-object kubectl get, jq, kubectl patch loop
  bench scale [--keep]
                   check-all, targets and strip in one run; --keep leaves the namespaces
  bench preflight [--keep]
                   preflight of 1,000 workloads in one file against kubectl's dry-run apply of it
  bench fleet [--keep]
                   check across 20 contexts (a namespace of 500 each) against the slowest one alone
  test             formatting, clippy, unit tests, then integration tests on the control plane
  fixtures         re-capture tests/fixtures/ from the real control plane";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(error) = run(&args) {
        eprintln!("xtask: error: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: &[&str]) -> Result<()> {
    let paths = cluster::Paths::in_workspace(&workspace_root());
    match args {
        ["cluster", "up"] => cluster::up(&paths).map(drop),
        ["cluster", "down"] => cluster::down(&paths),
        ["cluster", "env"] => {
            cluster::env(&paths);
            Ok(())
        }
        ["cluster", "build"] => cluster::build(&paths),
        ["cluster", "flaky-apiserver", times @ ..] if times.len() <= 2 => {
            let secs = |i: usize, default: u64| times.get(i).map_or(Ok(default), |t| t.parse().context("seconds"));
            cluster::flaky_apiserver(&paths, secs(0, 3)?, secs(1, 20)?)
        }
        ["test"] => test(&paths),
        ["bench", "check"] => bench::check(&paths),
        ["bench", which @ ("check-all" | "targets" | "strip" | "scale" | "preflight" | "fleet"), flags @ ..]
            if flags.is_empty() || flags == ["--keep"] =>
        {
            let keep = !flags.is_empty();
            match *which {
                "check-all" => bench::check_all(&paths, keep),
                "targets" => bench::targets(&paths, keep),
                "strip" => bench::strip(&paths, keep),
                "preflight" => bench::preflight(&paths, keep),
                "fleet" => bench::fleet(&paths, keep),
                _ => bench::scale(&paths, keep),
            }
        }
        ["demo"] => demo::demo(&paths, false),
        ["demo", "--keep"] => demo::demo(&paths, true),
        ["tools", "krew"] => krew::build(),
        ["dist"] => dist::dist(None),
        ["dist", "--target", triple] => dist::dist(Some(triple)),
        ["tools", "helm"] => helm::build(),
        ["fixtures"] => {
            helm::build()?;
            with_cluster(&paths, || {
                cargo(
                    &[
                        "test",
                        "--locked",
                        "--test",
                        "it",
                        "--",
                        "foundation::",
                        "helm::",
                        "keda::",
                        "flux::",
                        "helm_controller::",
                    ],
                    &[("HPA_MIGRATE_UPDATE_FIXTURES", "1")],
                )
            })
        }
        ["-h" | "--help" | "help"] | [] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("unknown command `{}`\n{USAGE}", args.join(" ")),
    }
}

fn test(paths: &cluster::Paths) -> Result<()> {
    let started = Instant::now();
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(&["clippy", "--locked", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])?;
    cargo(&["test", "--locked", "--workspace", "--lib", "--bins"], &[])?;
    // Build the test binary before the plane starts so compilation and the plane do not
    // compete for the two cores while tests wait on controllers.
    cargo(&["test", "--locked", "--test", "it", "--no-run"], &[])?;
    // The krew tests install the release archive that `dist` packs, with the real krew.
    krew::build()?;
    dist::dist(None)?;
    helm::build()?;
    with_cluster(paths, || {
        // Integration tests mostly wait on controllers, so run more of them than there are cores.
        let matrix = layout::preflight_matrix(&workspace_root());
        let _ = std::fs::remove_file(&matrix);
        cargo(&["test", "--locked", "--test", "it"], &[("RUST_TEST_THREADS", "8")])?;
        // The preflight tests' predictions against what each deploy really did.
        if let Ok(rows) = std::fs::read_to_string(&matrix) {
            eprintln!(
                "xtask: preflight predictions checked against the real deploys (scenario | predicted | \
                 lowest count the deploy left | the same deploy after following the printed steps):\n{rows}"
            );
        }
        // The README's main command, on the plane the tests just used.
        demo::demo(paths, false)
    })?;
    eprintln!("xtask: all checks passed in {}s", started.elapsed().as_secs());
    Ok(())
}

/// Runs `body` with the control plane up, stopping it afterwards if this call started it.
fn with_cluster(paths: &cluster::Paths, body: impl FnOnce() -> Result<()>) -> Result<()> {
    let started_here = cluster::up(paths)?;
    let result = body();
    if started_here {
        cluster::down(paths)?;
    }
    result
}

/// What `cargo run` sets for xtask itself, besides `CARGO_PKG_*`.
const CARGO_RUN_VARS: [&str; 5] =
    ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_BIN_NAME", "CARGO_PRIMARY_PACKAGE"];

fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut command = Command::new(cargo);
    // `cargo run` gives xtask its own package's variables; build scripts that watch one (ring
    // watches CARGO_MANIFEST_DIR) would otherwise rebuild on every switch between a plain
    // `cargo build` and `cargo xtask`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CARGO_PKG_") || CARGO_RUN_VARS.contains(&name.as_str()) {
            command.env_remove(name);
        }
    }
    let status = command
        .current_dir(workspace_root())
        .args(args)
        .envs(envs.iter().copied())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}
