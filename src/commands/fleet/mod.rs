//! One command across several clusters: `--context` repeated, a comma list or shell-style
//! globs (`'prod-*'`), or `--all-contexts`.
//!
//! Design. Every verb runs as parse -> resolve options -> connect -> run ([`super::dispatch`]).
//! The fan-out sits at the connect seam, after the options are resolved (and a bad flag
//! refused) once for every context:
//!
//! 1. [`resolve`] turns the flags into the contexts, matched against the kubeconfig's
//!    (a pattern matching nothing is a usage error, exit 2). One context, however it was named,
//!    is [`Contexts::One`] and runs exactly as without this module, byte for byte.
//! 2. [`refuse`] refuses, before anything connects, what cannot run in several contexts
//!    (`--cluster`, `--user`; `migrate`, `resume`, `restore`), and [`run`] the input every
//!    context would refuse alike (a `strip` or `verify` that names no workload), once.
//! 3. Each context gets its own connection ([`crate::client::open`]: its own credentials,
//!    server, timeouts and namespace default; `-n`/`-A`/`-l` apply to every context) and its own
//!    run of the verb, which keeps its per-cluster request bound ([`crate::kubeio::IN_FLIGHT`]).
//!    Read verbs (`check`, `verify`, `preflight`, `guard status`) run every context at once,
//!    [`CONTEXTS_IN_FLIGHT`] at most (`verify --watch`: all, so each watches the same window)
//!    (`read.rs`); each verb hands back its report value instead of printing it.
//! 4. The reports are merged for rendering (`merge.rs`): text leads one table with a CONTEXT
//!    column (`check`, `preflight`, `guard on`, `guard status`) and names the context on every
//!    line about a workload below it (and on `verify`'s, `strip`'s and `guard off`'s lines, which
//!    have no table); `-o json|yaml` puts
//!    `context` on every workload/result and a top-level `contexts: [{name, cluster, server,
//!    error?}]`. A context that fails (unreachable, 401/403, a timeout) is reported there and in
//!    one line on stderr; the others are still run. The exit code is the worst of the
//!    contexts' ([`ExitStatus::worst`]).
//! 5. Writing verbs (`write.rs`: `strip`, `guard on/off`) plan in every context first and write
//!    nothing anywhere unless every context planned (or `--keep-going`); `strip` then shows
//!    every context's diff under one confirmation (`--yes` without a terminal). They write one
//!    context after another, in the kubeconfig's order, and stop at the first context that
//!    fails unless `--keep-going`: the contexts not run are reported as such.

mod contexts;
mod merge;
mod read;
mod write;

use std::future::Future;

use futures::StreamExt;
use serde::Serialize;

pub use self::contexts::{Context, Contexts, resolve};
use crate::cli::{FleetArgs, KubeArgs};
use crate::client::{self, Connection};
use crate::commands::flags::{ScopeFlags, VerbOptions};
use crate::commands::guard::GuardOptions;
use crate::error::{Error, ExitStatus, Result};
use crate::kubeio::NamespaceScope;
use crate::output::Printer;

/// Contexts run at once by a read verb. Each is another cluster (or another identity), so this
/// bounds only this process's sockets and memory, not any one API server's load: every context
/// keeps its own per-cluster bound. 32 runs a fleet of that size in one round.
pub const CONTEXTS_IN_FLIGHT: usize = 32;

/// Refuses, before anything connects, what the verb cannot do with `contexts`: `--keep-going`
/// outside the writing verbs; with several contexts, `--cluster`/`--user` (they would point
/// every context at one cluster or identity) and the verbs that work in one context.
pub fn refuse(options: &VerbOptions, kube: &KubeArgs, fleet: &FleetArgs, contexts: &Contexts) -> Result<()> {
    let verb = verb_name(options);
    let writes = matches!(
        options,
        VerbOptions::Strip(_) | VerbOptions::Guard(GuardOptions::On { .. } | GuardOptions::Off { .. })
    );
    if fleet.keep_going && !writes {
        let instead = if matches!(options, VerbOptions::Migrate(_) | VerbOptions::Restore(_) | VerbOptions::Resume(_)) {
            "it runs in one context; drop it"
        } else {
            "a read runs in every context whatever another does; drop it"
        };
        return Err(crate::commands::flags::not_honoured(verb, "--keep-going", instead));
    }
    if !matches!(contexts, Contexts::Many(_)) {
        return Ok(());
    }
    for (flag, given) in [("--cluster", kube.cluster.is_some()), ("--user", kube.user.is_some())] {
        if given {
            return Err(Error::Usage(format!(
                "{flag} would point every context at one {}: drop it with several contexts, or give one --context",
                &flag[2..]
            )));
        }
    }
    if matches!(options, VerbOptions::Migrate(_) | VerbOptions::Restore(_) | VerbOptions::Resume(_)) {
        return Err(Error::Usage(format!(
            "{verb} runs in one context: give one --context and run it once per context (several contexts: check, verify, preflight, guard, strip)"
        )));
    }
    Ok(())
}

/// `completion SHELL` prints a fixed script: a context flag given to it would change nothing.
pub fn refuse_fleet_flags(verb: &str, fleet: &FleetArgs) -> Result<()> {
    for (flag, given) in [("--all-contexts", fleet.all_contexts), ("--keep-going", fleet.keep_going)] {
        if given {
            return Err(crate::commands::flags::not_honoured(verb, flag, "the script reads no cluster; drop it"));
        }
    }
    Ok(())
}

fn verb_name(options: &VerbOptions) -> &'static str {
    match options {
        VerbOptions::Check(_) => "check",
        VerbOptions::Strip(_) => "strip",
        VerbOptions::Verify(_) => "verify",
        VerbOptions::Migrate(_) => "migrate",
        VerbOptions::Restore(_) => "restore",
        VerbOptions::Resume(_) => "resume",
        VerbOptions::Preflight(_) => "preflight",
        VerbOptions::Guard(GuardOptions::On { .. }) => "guard on",
        VerbOptions::Guard(GuardOptions::Off { .. }) => "guard off",
        VerbOptions::Guard(GuardOptions::Status { .. }) => "guard status",
    }
}

/// Runs the verb in every context (two or more; [`refuse`] has passed) and prints the merged
/// report; the worst context's exit status.
pub async fn run(
    contexts: &[Context],
    kube: &KubeArgs,
    fleet: &FleetArgs,
    flags: &ScopeFlags,
    options: VerbOptions,
    printer: &Printer,
) -> Result<ExitStatus> {
    // A watch window is the same period in every context: every context watches at once.
    let in_flight = match &options {
        VerbOptions::Verify(args) if args.watch.is_some() => contexts.len(),
        _ => CONTEXTS_IN_FLIGHT,
    };
    // Input every context would refuse alike is refused once, before connecting.
    if let VerbOptions::Verify(args) = &options {
        crate::commands::verify::targets(args, flags.selector_text())?;
    }
    let fleet_run = Fleet { contexts, kube, flags, printer, in_flight };
    match options {
        VerbOptions::Check(args) => read::check(&fleet_run, &args).await,
        VerbOptions::Verify(args) => read::verify(&fleet_run, &args).await,
        VerbOptions::Preflight(options) => read::preflight(&fleet_run, &options).await,
        VerbOptions::Guard(GuardOptions::Status { output }) => read::guard_status(&fleet_run, output).await,
        VerbOptions::Strip(args) => write::strip(&fleet_run, &args, fleet.keep_going).await,
        VerbOptions::Guard(options) => write::guard(&fleet_run, &options, fleet.keep_going).await,
        VerbOptions::Migrate(_) | VerbOptions::Restore(_) | VerbOptions::Resume(_) => {
            unreachable!("refused before connecting")
        }
    }
}

/// What every context's run shares.
struct Fleet<'a> {
    contexts: &'a [Context],
    kube: &'a KubeArgs,
    flags: &'a ScopeFlags,
    printer: &'a Printer,
    /// Contexts run at once.
    in_flight: usize,
}

/// One context's connection, and the namespaces the verb looks at there.
struct Cluster {
    connection: Connection,
    scope: NamespaceScope,
}

impl Fleet<'_> {
    /// Connects to `context` as the command would to that one context.
    async fn connect(&self, context: &Context) -> Result<Cluster> {
        let kube = KubeArgs { context: vec![context.name.clone()], ..self.kube.clone() };
        let connection = client::open(&kube).await?;
        let scope = if self.flags.all_namespaces {
            NamespaceScope::All
        } else {
            NamespaceScope::Namespace(connection.namespace.clone())
        };
        Ok(Cluster { connection, scope })
    }

    /// Runs `work` in every context, `in_flight` at a time; the outcomes in the
    /// contexts' order.
    async fn each<'c, T, F, Fut>(&'c self, work: F) -> Vec<Outcome<'c, T>>
    where
        F: Fn(&'c Context, Cluster) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let work = &work;
        futures::stream::iter(self.contexts)
            .map(|context| async move {
                let result = match self.connect(context).await {
                    Ok(cluster) => work(context, cluster).await,
                    Err(error) => Err(error),
                };
                Outcome { context, result: result.map_err(Failure::Error) }
            })
            .buffered(self.in_flight)
            .collect()
            .await
    }
}

/// What one context's run came to.
struct Outcome<'c, T> {
    context: &'c Context,
    result: std::result::Result<T, Failure>,
}

/// Why a context has no report.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// Its run failed: its exit status counts.
    #[error("{0}")]
    Error(Error),
    /// A writing verb did not run it, because another context failed first.
    #[error("not run: {0}")]
    NotRun(String),
}

/// A context as `-o json|yaml` lists it, with the error that ended its run.
#[derive(Debug, Serialize)]
struct ContextEntry<'c> {
    #[serde(flatten)]
    context: &'c Context,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl<'c, T> Outcome<'c, T> {
    fn entry(&self) -> ContextEntry<'c> {
        ContextEntry { context: self.context, error: self.result.as_ref().err().map(ToString::to_string) }
    }
}

/// Prints each failed context's error as one line on stderr (its detail with `-v` goes to the
/// logs), and each context not run, and returns the worst exit status of the contexts run,
/// `exit` giving a report's own.
fn worst_of<'a, 'c: 'a, T: 'a>(
    outcomes: impl IntoIterator<Item = &'a Outcome<'c, T>>,
    printer: &Printer,
    exit: impl Fn(&T) -> ExitStatus,
) -> ExitStatus {
    outcomes.into_iter().fold(ExitStatus::Success, |worst, outcome| match &outcome.result {
        Ok(report) => worst.worst(exit(report)),
        Err(Failure::Error(error)) => {
            report_failure(outcome.context, error, printer);
            worst.worst(error.exit_status())
        }
        Err(not_run @ Failure::NotRun(_)) => {
            printer.note(&format!("context {}: {not_run}", outcome.context.name));
            worst
        }
    })
}

/// One line on stderr for a context whose run failed.
fn report_failure(context: &Context, error: &Error, printer: &Printer) {
    let label = printer.paint_err(console::Style::new().red().bold(), "error:");
    printer.note(&format!("{label} context {} ({}): {error}", context.name, context.server));
    tracing::debug!("context {}: {}", context.name, error.detail());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(line: &str) -> (VerbOptions, KubeArgs, FleetArgs) {
        let cli = crate::cli::parse_from(line.split_whitespace().map(Into::into)).unwrap_or_else(|e| panic!("{e}"));
        let flags = ScopeFlags::resolve(&cli.kube).unwrap();
        (VerbOptions::resolve(cli.verb.unwrap(), &flags).unwrap(), cli.kube, cli.fleet)
    }

    fn refused(line: &str, contexts: &Contexts) -> Option<String> {
        let (options, kube, fleet) = options(line);
        refuse(&options, &kube, &fleet, contexts).err().map(|e| {
            assert_eq!(e.exit_status(), ExitStatus::Usage, "{e}");
            e.to_string()
        })
    }

    #[test]
    fn what_cannot_run_in_several_contexts_is_refused_before_connecting() {
        let context = |name: &str| Context { name: name.into(), cluster: "c".into(), server: String::new() };
        let many = Contexts::Many(vec![context("a"), context("b")]);
        let one = Contexts::One(Some("a".into()));
        assert_eq!(refused("hpa-migrate check --all-contexts", &many), None);
        assert_eq!(refused("hpa-migrate strip deploy/web --keep-going", &many), None);
        assert_eq!(refused("hpa-migrate strip deploy/web --keep-going", &one), None);
        assert_eq!(
            refused("hpa-migrate check --keep-going", &many).unwrap(),
            "check does not take --keep-going: a read runs in every context whatever another does; drop it"
        );
        assert_eq!(
            refused("hpa-migrate --cluster c check", &many).unwrap(),
            "--cluster would point every context at one cluster: drop it with several contexts, or give one --context"
        );
        assert_eq!(refused("hpa-migrate --cluster c check", &one), None);
        assert!(refused("hpa-migrate resume deploy/web", &many).unwrap().starts_with("resume runs in one context"));
        assert!(refused("hpa-migrate guard status --keep-going", &one).unwrap().contains("--keep-going"));
        assert!(refuse_fleet_flags("completion", &FleetArgs { all_contexts: true, keep_going: false }).is_err());
    }
}
