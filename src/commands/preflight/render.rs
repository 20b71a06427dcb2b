//! What `preflight` prints as text.

use console::Style;

use super::PreflightReport;
use crate::core::preflight::{Forecast, Step};
use crate::output::Printer;

fn outcome_style(outcome: Forecast) -> Style {
    match outcome {
        Forecast::Keeps | Forecast::New | Forecast::Pinned => Style::new().green(),
        Forecast::Refused | Forecast::Unknown => Style::new().yellow().bold(),
        Forecast::Drops => Style::new().red().bold(),
    }
}

/// The human report: a table, then for every workload that does not simply keep its count the
/// cause, the autoscalers' part and the steps in order.
pub fn render_text(report: &PreflightReport, printer: &Printer) -> String {
    if report.workloads.is_empty() {
        return String::new();
    }
    let mut out = Vec::new();
    crate::output::write_columns(&mut out, &COLUMNS, &table_rows(report, printer)).expect("writing to memory");
    String::from_utf8(out).expect("the table is text") + &render_sections(report, printer)
}

/// The columns of the text report's table.
pub const COLUMNS: [&str; 5] = ["NAMESPACE", "WORKLOAD", "TOOL", "REPLICAS", "OUTCOME"];

/// The text report's table rows, one per workload.
pub fn table_rows(report: &PreflightReport, printer: &Printer) -> Vec<Vec<String>> {
    report
        .workloads
        .iter()
        .map(|p| {
            vec![
                p.namespace.clone(),
                p.target.clone(),
                p.tool.as_deref().unwrap_or("-").to_string(),
                format!("{} -> {}", crate::output::count(p.current), crate::output::count(p.predicted)),
                printer.paint(outcome_style(p.outcome), p.outcome.as_str()),
            ]
        })
        .collect()
}

/// What the text report says below its table: per workload that does not simply keep its
/// count, the cause, the autoscalers' part and the steps; then the summary.
pub fn render_sections(report: &PreflightReport, printer: &Printer) -> String {
    let mut out = String::new();
    for p in &report.workloads {
        if matches!(p.outcome, Forecast::Keeps | Forecast::New) && p.warnings.is_empty() {
            continue;
        }
        out.push('\n');
        let heading = format!("{}/{}: {}", p.namespace, p.target, p.outcome.as_str());
        out.push_str(&printer.paint(outcome_style(p.outcome), &heading));
        out.push('\n');
        if let Some(apply) = &p.apply {
            out.push_str(&format!(
                "  {} will {apply} ({})\n",
                p.tool.as_deref().unwrap_or("-"),
                p.evidence.as_deref().unwrap_or("-")
            ));
        }
        out.push_str(&format!("  {}\n", p.cause));
        for warning in &p.warnings {
            out.push_str(&format!("  {} {warning}\n", printer.paint(Style::new().yellow(), "warning:")));
        }
        let paths = [
            (&p.pin_steps, "to keep the count, the short path (this cluster serves guard on --pin), in order:"),
            (
                &p.steps,
                if p.pin_steps.is_empty() {
                    "to keep the count, in order:"
                } else {
                    "or, handing replicas over first:"
                },
            ),
        ];
        for (steps, heading) in paths.into_iter().filter(|(steps, _)| !steps.is_empty()) {
            out.push_str(&format!("  {heading}\n"));
            for (n, step) in steps.iter().enumerate() {
                let text = match step {
                    Step::Run(command) => printer.paint(Style::new().bold(), command),
                    Step::Deploy(what) => format!("then: {what}"),
                };
                out.push_str(&format!("    {}. {text}\n", n + 1));
            }
        }
    }
    let s = &report.summary;
    let left_out = if s.left_out > 0 { format!("; {} object(s) left out by -l", s.left_out) } else { String::new() };
    out.push_str(&format!(
        "\n{} workload(s): {} drop, {} keep, {} refused, {}{} new, {} unknown{left_out}\n",
        s.total,
        s.drops,
        s.keeps,
        s.refused,
        if s.pinned > 0 { format!("{} pinned, ", s.pinned) } else { String::new() },
        s.new,
        s.unknown
    ));
    out
}
