//! What `preflight` prints as text.

use comfy_table::{Cell, Table, presets};
use console::Style;

use super::PreflightReport;
use crate::core::preflight::{Forecast, Step};
use crate::output::Printer;

fn outcome_style(outcome: Forecast) -> Style {
    match outcome {
        Forecast::Keeps | Forecast::New => Style::new().green(),
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
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(["NAMESPACE", "WORKLOAD", "TOOL", "REPLICAS", "OUTCOME"]);
    for p in &report.workloads {
        table.add_row([
            Cell::new(&p.namespace),
            Cell::new(&p.target),
            Cell::new(p.tool.as_deref().unwrap_or("-")),
            Cell::new(format!("{} -> {}", crate::output::count(p.current), crate::output::count(p.predicted))),
            Cell::new(printer.paint(outcome_style(p.outcome), p.outcome.as_str())),
        ]);
    }
    let mut out = String::new();
    for line in table.to_string().lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
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
        if !p.steps.is_empty() {
            out.push_str("  to keep the count, in order:\n");
            for (n, step) in p.steps.iter().enumerate() {
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
        "\n{} workload(s): {} drop, {} keep, {} refused, {} new, {} unknown{left_out}\n",
        s.total, s.drops, s.keeps, s.refused, s.new, s.unknown
    ));
    out
}
