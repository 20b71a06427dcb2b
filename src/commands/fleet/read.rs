//! The read verbs across contexts: every context at once, each verb's own report per context,
//! merged for rendering.

use serde::Serialize;

use super::merge::{self, command_in_context, headings_in_context};
use super::{Fleet, Outcome, worst_of};
use crate::cli::{CheckArgs, OutputFormat, VerifyArgs};
use crate::commands::{check, guard, parse_targets, preflight, verify};
use crate::core::preflight::Step;
use crate::error::{ExitStatus, Result};
use crate::inventory::Query;

pub(super) async fn check(fleet: &Fleet<'_>, args: &CheckArgs) -> Result<ExitStatus> {
    let targets = parse_targets(&args.targets)?;
    let backup_dir = args.backups.dir();
    let (targets, backup_dir) = (&targets, &backup_dir);
    let outcomes = fleet
        .each(|context, cluster| async move {
            let scope = &cluster.scope;
            let selector = fleet.flags.selector_text();
            let query = Query { scope, selector, targets, all_workloads: args.all_workloads, backup_dir };
            let mut report = check::report(&cluster.connection.client, &query).await?;
            for assessment in &mut report.workloads {
                assessment.next = command_in_context(&assessment.next, &context.name);
            }
            let empty = report.workloads.is_empty().then(|| check::empty_message(scope, args.all_workloads));
            Ok((report, empty))
        })
        .await;
    // Said in the contexts' order, not as they finish.
    for outcome in &outcomes {
        if let Ok((_, Some(empty))) = &outcome.result {
            fleet.printer.note(&format!("{}: {empty}", outcome.context.name));
        }
    }
    let outcomes: Vec<Outcome<'_, check::CheckReport>> = outcomes
        .into_iter()
        .map(|o| Outcome { context: o.context, result: o.result.map(|(report, _)| report) })
        .collect();
    let exit = worst_of(&outcomes, fleet.printer, check::CheckReport::exit_status);
    match args.output {
        OutputFormat::Text => {
            let mut text = check::TextReport::new(fleet.printer);
            let mut warnings = Vec::new();
            for outcome in &outcomes {
                let Ok(report) = &outcome.result else { continue };
                let name = outcome.context.name.as_str();
                report.workloads.iter().for_each(|a| text.add(a, Some(name)));
                warnings.extend(report.warnings.iter().map(|w| format!("{name}: {w}")));
            }
            fleet.printer.data_with(|out| text.write(&warnings, out))?;
        }
        format => print_document(fleet, format, "CheckReport", &outcomes)?,
    }
    Ok(exit)
}

pub(super) async fn verify(fleet: &Fleet<'_>, args: &VerifyArgs) -> Result<ExitStatus> {
    let outcomes = fleet
        .each(|_, cluster| async move {
            let selector = fleet.flags.selector_text();
            verify::report(&cluster.connection.client, &cluster.scope, selector, args, fleet.printer).await
        })
        .await;
    let exit = worst_of(&outcomes, fleet.printer, verify::VerifyReport::exit_status);
    match args.output {
        OutputFormat::Text => {
            let text =
                texts(&outcomes, |report, context| headings_in_context(&verify::render_text(report), &context.name));
            fleet.printer.data(&text)?;
        }
        format => print_document(fleet, format, "VerifyReport", &outcomes)?,
    }
    Ok(exit)
}

pub(super) async fn preflight(fleet: &Fleet<'_>, options: &preflight::Options) -> Result<ExitStatus> {
    let outcomes = fleet
        .each(|context, cluster| async move {
            let mut report = options.report(&cluster.connection.client, &cluster.connection.namespace).await?;
            for step in report.workloads.iter_mut().flat_map(|w| w.steps.iter_mut()) {
                if let Step::Run(command) = step {
                    *command = command_in_context(command, &context.name);
                }
            }
            Ok(report)
        })
        .await;
    let exit = worst_of(&outcomes, fleet.printer, preflight::PreflightReport::exit_status);
    match options.output() {
        OutputFormat::Text => {
            let reports = succeeded(&outcomes);
            let mut text = merge::table(
                &preflight::COLUMNS,
                reports.iter().flat_map(|(context, report)| {
                    preflight::table_rows(report, fleet.printer).into_iter().map(|row| (context.as_str(), row))
                }),
            );
            for (context, report) in &reports {
                text.push_str(&headings_in_context(&preflight::render_sections(report, fleet.printer), context));
            }
            fleet.printer.data(&text)?;
        }
        format => print_document(fleet, format, "PreflightReport", &outcomes)?,
    }
    Ok(exit)
}

pub(super) async fn guard_status(fleet: &Fleet<'_>, output: OutputFormat) -> Result<ExitStatus> {
    let outcomes = fleet
        .each(|_, cluster| async move { guard::status_report(&cluster.connection.client, &cluster.scope).await })
        .await;
    let exit = worst_of(&outcomes, fleet.printer, guard::StatusReport::exit_status);
    match output {
        OutputFormat::Text => {
            let reports = succeeded(&outcomes);
            let rows: Vec<(&str, Vec<String>)> = reports
                .iter()
                .flat_map(|(context, report)| guard::status_rows(report).into_iter().map(|row| (context.as_str(), row)))
                .collect();
            let mut text =
                if rows.is_empty() { guard::NOTHING_GUARDED.to_string() } else { merge::table(&guard::COLUMNS, rows) };
            for (context, report) in &reports {
                text.push('\n');
                text.push_str(&headings_in_context(&guard::status_notes(report), context));
            }
            fleet.printer.data(&text)?;
        }
        format => print_document(fleet, format, "GuardStatus", &outcomes)?,
    }
    Ok(exit)
}

/// The reports of the contexts whose run succeeded, with the context's name.
pub(super) fn succeeded<'o, T>(outcomes: &'o [Outcome<'_, T>]) -> Vec<(&'o String, &'o T)> {
    outcomes.iter().filter_map(|o| o.result.as_ref().ok().map(|report| (&o.context.name, report))).collect()
}

/// The text of every context whose run succeeded, one after another, a blank line between.
pub(super) fn texts<T>(outcomes: &[Outcome<'_, T>], render: impl Fn(&T, &super::Context) -> String) -> String {
    let rendered: Vec<String> =
        outcomes.iter().filter_map(|o| o.result.as_ref().ok().map(|report| render(report, o.context))).collect();
    rendered.join("\n")
}

pub(super) fn print_document<T: Serialize>(
    fleet: &Fleet<'_>,
    format: OutputFormat,
    kind: &str,
    outcomes: &[Outcome<'_, T>],
) -> Result<()> {
    fleet.printer.document(format, &merge::document(kind, outcomes)?)
}
