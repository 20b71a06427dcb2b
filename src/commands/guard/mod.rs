//! `guard`: a safety net inside the API server for the migration window. `guard on` installs
//! (once per cluster, versioned by name) a ValidatingAdmissionPolicy per guarded kind and mode
//! (with `--pin`, a MutatingAdmissionPolicy) and its binding, marks each target with its floor,
//! and confirms with a server-side dry run that a drop below the floor is really refused (or
//! comes back with the live count); `guard off` removes the mark (and the policy
//! objects once nothing is guarded); `guard status` lists what is guarded.
//!
//! The verb resolves its arguments once into [`GuardOptions`], refusing bad input before any
//! request, then runs: `plan` decides, `on`, `off` and `status` talk to the API server (through
//! `policy`, `mark` and `probe`), `render` prints.

mod mark;
mod off;
mod on;
mod plan;
mod policy;
mod probe;
mod render;
mod status;

use clap::{Args, Subcommand};
use kube::Client;

pub use self::off::{Lifted, lift};
pub use self::on::protect;
pub use self::plan::Guarded;
pub use self::policy::{ensure_served, pin_served};
pub use self::render::{COLUMNS, NOTHING_GUARDED, on_notes, on_rows, render_off, status_notes, status_rows};
pub use self::status::{EnforcedGuard, GuardedWorkload, PolicyState, StatusReport, status_report};
use crate::cli::OutputFormat;
use crate::commands::{Target, parse_targets};
use crate::core::guard::Mode;
use crate::core::verdict::Assessment;
use crate::error::{Error, ExitStatus, Result};
use crate::kubeio::NamespaceScope;
use crate::output::Printer;

#[derive(Debug, Args)]
pub struct GuardArgs {
    #[command(subcommand)]
    pub action: GuardAction,
}

#[derive(Debug, Subcommand)]
pub enum GuardAction {
    /// Refuse (or, with --pin, keep the live count of) any write that drops a workload below its floor, inside the API server
    On(GuardOnArgs),
    /// Remove the guard from workloads (and the policy once nothing is guarded)
    Off(GuardOffArgs),
    /// List guarded workloads, their floors and modes, and the policies' state
    Status(GuardStatusArgs),
}

#[derive(Debug, Args)]
pub struct GuardOnArgs {
    /// Deployments or StatefulSets, as for `check`. Without TARGET, -l SELECTOR picks the
    /// workloads autoscalers target (all matching workloads with --floor)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Refuse writes below N replicas (default: the minReplicas of the autoscaler in charge)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=999_999_999))]
    pub floor: Option<i64>,

    /// Let the writes through and send every client a warning instead (a rehearsal)
    #[arg(long, conflicts_with = "pin")]
    pub warn: bool,

    /// Let a write of the workload that would drop it below its floor through with the live
    /// count kept (MutatingAdmissionPolicy, Kubernetes 1.36+): a deploy without replicas then
    /// needs no other step. /scale writes (the HPA, KEDA, kubectl scale) are left alone
    #[arg(long)]
    pub pin: bool,
}

#[derive(Debug, Args)]
pub struct GuardOffArgs {
    /// Guarded workloads, as for `check`; or -l SELECTOR
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Also delete the policies and bindings, even if other workloads are still marked
    #[arg(long)]
    pub uninstall: bool,
}

#[derive(Debug, Args)]
pub struct GuardStatusArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// What one `guard` invocation does, resolved from its arguments. Only built by
/// [`GuardOptions::resolve`], so every value here has been checked.
#[derive(Debug, PartialEq, Eq)]
pub enum GuardOptions {
    On {
        targets: Vec<Target>,
        floor: Option<i64>,
        mode: Mode,
    },
    Off {
        /// Empty with `uninstall` and no selector: only the policy objects go.
        targets: Vec<Target>,
        uninstall: bool,
    },
    Status {
        output: OutputFormat,
    },
}

impl GuardOptions {
    /// The options `args` ask for (with the global `-l SELECTOR`), or a usage error, before any
    /// request is sent.
    pub fn resolve(args: &GuardArgs, selector: Option<&str>) -> Result<Self> {
        match &args.action {
            GuardAction::On(on) => {
                let targets = parse_targets(&on.targets)?;
                if targets.is_empty() && selector.is_none() {
                    return Err(Error::Usage("name the workloads to guard: TARGET... or -l SELECTOR".into()));
                }
                let mode = match (on.warn, on.pin) {
                    (true, _) => Mode::Warn,
                    (_, true) => Mode::Pin,
                    _ => Mode::Deny,
                };
                Ok(GuardOptions::On { targets, floor: on.floor, mode })
            }
            GuardAction::Off(off) => {
                let targets = parse_targets(&off.targets)?;
                if targets.is_empty() && selector.is_none() && !off.uninstall {
                    return Err(Error::Usage(
                        "name the workloads to unguard: TARGET... or -l SELECTOR (or --uninstall to remove the policies)"
                            .into(),
                    ));
                }
                Ok(GuardOptions::Off { targets, uninstall: off.uninstall })
            }
            // guard status reports the policies and every workload they guard in scope.
            GuardAction::Status(_) if selector.is_some() => Err(crate::commands::flags::not_honoured(
                "guard status",
                "-l",
                "it lists every guarded workload in scope; filter its -o json output instead",
            )),
            GuardAction::Status(status) => Ok(GuardOptions::Status { output: status.output }),
        }
    }
}

/// The assessments of the targets (`all_workloads`: whether an autoscaler needs to target them).
pub(crate) async fn assessed(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    targets: &[Target],
    all_workloads: bool,
) -> Result<Vec<Assessment>> {
    let backup_dir = crate::backup::default_dir();
    let query = crate::inventory::Query { scope, selector, targets, all_workloads, backup_dir: &backup_dir };
    crate::inventory::assessed(client, &query).await
}

pub async fn run(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    options: GuardOptions,
    printer: &Printer,
) -> Result<ExitStatus> {
    match options {
        GuardOptions::On { targets, floor, mode } => {
            ensure_served(client, mode).await?;
            let workloads = assessed(client, scope, selector, &targets, floor.is_some()).await?;
            if workloads.is_empty() {
                return Err(Error::Usage(format!("no workload matches {}", selector.unwrap_or_default())));
            }
            let guarded = protect(client, &workloads, floor, mode).await?;
            printer.data(&render::render_on(&guarded))?;
            Ok(ExitStatus::Success)
        }
        GuardOptions::Off { targets, uninstall } => {
            let workloads = if targets.is_empty() && selector.is_none() {
                Vec::new()
            } else {
                assessed(client, scope, selector, &targets, true).await?
            };
            let lifted = lift(client, &workloads, uninstall).await?;
            printer.data(&render::render_off(&lifted))?;
            for warning in &lifted.warnings {
                printer.warn(warning);
            }
            Ok(ExitStatus::Success)
        }
        GuardOptions::Status { output } => {
            let report = status_report(client, scope).await?;
            match output {
                OutputFormat::Text => printer.data(&render::render_status(&report))?,
                format => printer.document(format, &report)?,
            }
            Ok(report.exit_status())
        }
    }
}

impl StatusReport {
    /// Action needed when the marks and the policies disagree.
    pub fn exit_status(&self) -> ExitStatus {
        if self.problems.is_empty() { ExitStatus::Success } else { ExitStatus::ActionNeeded }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Verb;
    use crate::error::ExitStatus;

    fn resolve(line: &str) -> Result<GuardOptions> {
        let cli =
            crate::cli::parse_from(line.split_whitespace().map(Into::into)).unwrap_or_else(|e| panic!("{line}: {e}"));
        let Some(Verb::Guard(args)) = cli.verb else { panic!("{line}: not guard") };
        GuardOptions::resolve(&args, cli.kube.selector.as_deref())
    }

    fn usage(line: &str) -> String {
        let error = resolve(line).unwrap_err();
        assert_eq!(error.exit_status(), ExitStatus::Usage, "{line}: {error}");
        error.to_string()
    }

    fn web() -> Vec<Target> {
        vec![Target { type_name: "deploy".into(), name: "web".into() }]
    }

    #[test]
    fn guard_on_guards_named_or_selected_workloads_in_deny_mode_unless_warn() {
        assert_eq!(
            resolve("hpa-migrate guard on deploy/web").unwrap(),
            GuardOptions::On { targets: web(), floor: None, mode: Mode::Deny }
        );
        assert_eq!(
            resolve("hpa-migrate guard on deploy/web --warn --floor 2").unwrap(),
            GuardOptions::On { targets: web(), floor: Some(2), mode: Mode::Warn }
        );
        assert_eq!(
            resolve("hpa-migrate -l app=web guard on").unwrap(),
            GuardOptions::On { targets: vec![], floor: None, mode: Mode::Deny }
        );
        assert_eq!(
            resolve("hpa-migrate guard on deploy/web --pin").unwrap(),
            GuardOptions::On { targets: web(), floor: None, mode: Mode::Pin }
        );
    }

    #[test]
    fn guard_on_pin_and_warn_together_is_a_usage_error() {
        let line = "hpa-migrate guard on deploy/web --pin --warn";
        let error = crate::cli::parse_from(line.split_whitespace().map(Into::into)).unwrap_err();
        assert!(error.to_string().contains("cannot be used with"), "{error}");
    }

    #[test]
    fn guard_on_or_off_without_a_workload_is_a_usage_error() {
        assert_eq!(usage("hpa-migrate guard on"), "name the workloads to guard: TARGET... or -l SELECTOR");
        assert_eq!(
            usage("hpa-migrate guard off"),
            "name the workloads to unguard: TARGET... or -l SELECTOR (or --uninstall to remove the policies)"
        );
        assert!(usage("hpa-migrate guard off deploy/web/x").contains("write targets as TYPE/NAME"));
        assert!(usage("hpa-migrate guard on deployment").contains("names a type but no workload"));
    }

    #[test]
    fn guard_off_uninstall_needs_no_workload() {
        assert_eq!(
            resolve("hpa-migrate guard off --uninstall").unwrap(),
            GuardOptions::Off { targets: vec![], uninstall: true }
        );
        assert_eq!(
            resolve("hpa-migrate guard off deploy/web").unwrap(),
            GuardOptions::Off { targets: web(), uninstall: false }
        );
    }

    #[test]
    fn guard_status_prints_text_unless_asked_otherwise() {
        assert_eq!(resolve("hpa-migrate guard status").unwrap(), GuardOptions::Status { output: OutputFormat::Text });
        assert_eq!(
            resolve("hpa-migrate guard status -o json").unwrap(),
            GuardOptions::Status { output: OutputFormat::Json }
        );
    }
}
