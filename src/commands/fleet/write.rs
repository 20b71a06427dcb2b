//! The writing verbs across contexts (`strip`, `guard on`, `guard off`), as an SRE changing a
//! fleet expects:
//!
//! - every context is planned first, at once (its reads, `check`'s analysis, the permission
//!   checks), and nothing is written anywhere unless every context planned, or `--keep-going`
//!   lets the others go on;
//! - `strip` shows every context's diff, then asks once (`--yes` without a terminal;
//!   `--dry-run` asks nothing and persists nothing); `guard` asks nothing, as in one context;
//! - contexts are written one after another in the kubeconfig's order, so a failure stops the
//!   rollout where it happened: the contexts after the first that fails are not run (and say
//!   so) unless `--keep-going`.

use std::future::Future;

use super::merge::{self, headings_in_context};
use super::read::{print_document, succeeded, texts};
use super::{Cluster, Context, Failure, Fleet, Outcome, worst_of};
use crate::cli::OutputFormat;
use crate::commands::guard::{self, GuardOptions};
use crate::commands::strip;
use crate::error::{Error, ExitStatus, Result};

/// Every context planned: each context's connection and plan, or the error that ended it.
type Planned<'c, P> = Vec<Outcome<'c, (Cluster, P)>>;

/// The contexts written (or not run), in the contexts' order, and the worst exit status.
struct Written<'c, T> {
    outcomes: Vec<Outcome<'c, T>>,
    exit: ExitStatus,
}

/// Writes the planned contexts one after another with `apply` (see the module's doc); prints
/// the failures and the contexts not run on stderr. The exit status is the worst of the
/// contexts that failed to plan or were written.
async fn in_turn<'c, P, T, F, Fut>(
    fleet: &Fleet<'_>,
    planned: Planned<'c, P>,
    keep_going: bool,
    apply: F,
    exit: impl Fn(&T) -> ExitStatus,
) -> Written<'c, T>
where
    F: Fn(&'c Context, Cluster, P) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let unplanned: Vec<String> = planned.iter().filter(|o| o.result.is_err()).map(|o| o.context.name.clone()).collect();
    let mut stopped_by = (!unplanned.is_empty() && !keep_going)
        .then(|| format!("context {} could not be planned (--keep-going writes the others)", unplanned.join(", ")));
    let mut outcomes = Vec::new();
    for outcome in planned {
        let context = outcome.context;
        let result = match (outcome.result, &stopped_by) {
            (Err(failure), _) => Err(failure),
            (Ok(_), Some(reason)) => {
                Err(Failure::NotRun(format!("{reason}; nothing was changed in context {}", context.name)))
            }
            (Ok((cluster, plan)), None) => {
                let result = apply(context, cluster, plan).await.map_err(Failure::Error);
                let failed = result.as_ref().map_or(true, |report| exit(report) != ExitStatus::Success);
                if failed && !keep_going {
                    stopped_by = Some(format!("context {} failed first (--keep-going goes on after it)", context.name));
                }
                result
            }
        };
        outcomes.push(Outcome { context, result });
    }
    let exit = worst_of(&outcomes, fleet.printer, &exit);
    Written { outcomes, exit }
}

pub(super) async fn strip(fleet: &Fleet<'_>, options: &strip::Options, keep_going: bool) -> Result<ExitStatus> {
    let planned = fleet
        .each(|_, cluster| async move {
            let selector = fleet.flags.selector_text();
            let plan = strip::plan(&cluster.connection.client, &cluster.scope, selector, &options.strip).await?;
            Ok((cluster, plan))
        })
        .await;
    let ready: Vec<(&Context, &strip::Planned)> =
        planned.iter().filter_map(|o| o.result.as_ref().ok().map(|(_, plan)| (o.context, plan))).collect();
    let all_planned = ready.len() == planned.len();
    let changes: usize = ready.iter().map(|(_, plan)| plan.changes()).sum();
    if all_planned || keep_going {
        for (context, plan) in &ready {
            plan.show(&options.strip, fleet.printer, &format!("context {} ({}):\n", context.name, context.server))?;
        }
        if !options.strip.dry_run && changes > 0 {
            let contexts = ready.iter().filter(|(_, plan)| plan.changes() > 0).count();
            let question = format!("Apply these changes to {changes} object(s) in {contexts} context(s)?");
            fleet.printer.confirm(options.strip.yes, &question)?;
        }
    }
    let written = in_turn(
        fleet,
        planned,
        keep_going,
        |_, cluster, plan: strip::Planned| async move {
            Ok(plan.execute(&cluster.connection.client, &options.strip, fleet.printer).await)
        },
        |report: &strip::StripReport| strip::exit_status(&report.results),
    )
    .await;
    match options.output {
        OutputFormat::Text => {
            let text = texts(&written.outcomes, |report, context| {
                headings_in_context(&strip::render_results(report, fleet.printer), &context.name)
            });
            fleet.printer.data(&text)?;
        }
        format => print_document(fleet, format, "StripReport", &written.outcomes)?,
    }
    Ok(written.exit)
}

/// What `guard on` or `guard off` does in one context, once planned.
enum GuardChange {
    On(Vec<guard::Guarded>),
    Off(guard::Lifted),
}

pub(super) async fn guard(fleet: &Fleet<'_>, options: &GuardOptions, keep_going: bool) -> Result<ExitStatus> {
    let selector = fleet.flags.selector_text();
    let planned = fleet
        .each(|_, cluster| async move {
            let client = &cluster.connection.client;
            let scope = &cluster.scope;
            let workloads = match options {
                GuardOptions::On { targets, floor, mode } => {
                    guard::ensure_served(client, *mode).await?;
                    let workloads = guard::assessed(client, scope, selector, targets, floor.is_some()).await?;
                    if workloads.is_empty() {
                        return Err(Error::Usage(format!("no workload matches {}", selector.unwrap_or_default())));
                    }
                    workloads
                }
                GuardOptions::Off { targets, .. } if targets.is_empty() && selector.is_none() => Vec::new(),
                GuardOptions::Off { targets, .. } => guard::assessed(client, scope, selector, targets, true).await?,
                GuardOptions::Status { .. } => unreachable!("guard status is a read"),
            };
            Ok((cluster, workloads))
        })
        .await;
    let written = in_turn(
        fleet,
        planned,
        keep_going,
        |_, cluster, workloads| async move {
            let client = &cluster.connection.client;
            match options {
                GuardOptions::On { floor, mode, .. } => {
                    guard::protect(client, &workloads, *floor, *mode).await.map(GuardChange::On)
                }
                GuardOptions::Off { uninstall, .. } => {
                    guard::lift(client, &workloads, *uninstall).await.map(GuardChange::Off)
                }
                GuardOptions::Status { .. } => unreachable!("guard status is a read"),
            }
        },
        |_| ExitStatus::Success,
    )
    .await;
    let changes = succeeded(&written.outcomes);
    let guarded = changes.iter().filter_map(|(context, change)| match change {
        GuardChange::On(guarded) => Some((context, guarded)),
        GuardChange::Off(_) => None,
    });
    let rows = guarded
        .clone()
        .flat_map(|(context, guarded)| guard::on_rows(guarded).into_iter().map(|row| (context.as_str(), row)));
    let mut text = if matches!(options, GuardOptions::On { .. }) && !changes.is_empty() {
        merge::table(&guard::COLUMNS, rows) + "\n"
    } else {
        String::new()
    };
    for (context, guarded) in guarded {
        text.push_str(&headings_in_context(&guard::on_notes(guarded), context));
    }
    for (context, change) in &changes {
        if let GuardChange::Off(lifted) = change {
            for warning in &lifted.warnings {
                fleet.printer.warn(&format!("{context}: {warning}"));
            }
            text.push_str(&headings_in_context(&guard::render_off(lifted), context));
        }
    }
    fleet.printer.data(&text)?;
    Ok(written.exit)
}
