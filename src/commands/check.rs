//! `check`: per workload, who owns `.spec.replicas`, which autoscaler targets it and whether it
//! can act, a verdict, and the exact next command.

use comfy_table::{Cell, Table, presets};
use console::Style;
use kube::Client;
use serde::Serialize;

use crate::cli::{CheckArgs, OutputFormat};
use crate::commands::parse_targets;
use crate::core::autoscaler::Autoscaler;
use crate::core::verdict::{Assessment, Verdict};
use crate::error::{ExitStatus, Result};
use crate::inventory::{Inventory, Query};
use crate::kubeio::NamespaceScope;
use crate::output::Printer;

/// The `-o json|yaml` document. Field names are a stable, documented schema.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    /// Whether the KEDA ScaledObject CRD is installed (ScaledObjects were looked for).
    pub keda_installed: bool,
    pub summary: Summary,
    /// Findings that belong to no workload, such as an autoscaler whose target does not exist.
    pub warnings: Vec<String>,
    pub workloads: Vec<Assessment>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub total: usize,
    pub safe: usize,
    pub needs_action: usize,
}

pub const REPORT_API_VERSION: &str = "hpa-migrate.io/v1alpha1";

pub async fn run(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    args: &CheckArgs,
    printer: &Printer,
) -> Result<ExitStatus> {
    let targets = parse_targets(&args.targets)?;
    let backup_dir = args.backups.dir();
    let query =
        Query { scope, selector, targets: &targets, all_workloads: args.all_workloads, backup_dir: &backup_dir };
    let report = report(client, &query).await?;
    match args.output {
        OutputFormat::Text => printer.data(&render_text(&report, printer))?,
        format => printer.document(format, &report)?,
    }
    if report.workloads.is_empty() {
        printer.note(&empty_message(scope, args.all_workloads));
    }
    Ok(if report.summary.needs_action == 0 { ExitStatus::Success } else { ExitStatus::ActionNeeded })
}

fn empty_message(scope: &NamespaceScope, all_workloads: bool) -> String {
    let where_ = match scope.namespace() {
        Some(ns) => format!("in namespace {ns}"),
        None => "in any namespace".to_string(),
    };
    if all_workloads {
        format!("No Deployments or StatefulSets found {where_}.")
    } else {
        format!(
            "No workload targeted by an HPA or ScaledObject {where_}; use --all-workloads to check every Deployment and StatefulSet."
        )
    }
}

/// Reads the inventory the query asks for and reports on it, waiting out a short API server
/// outage (a read changes nothing, so it is safe to repeat).
pub async fn report(client: &Client, query: &Query<'_>) -> Result<CheckReport> {
    let inventory = crate::retry::while_unreachable(|| Inventory::collect(client, query)).await?;
    Ok(CheckReport::of(inventory, &[]))
}

impl CheckReport {
    /// The report of every workload in the inventory, dropping each workload once it is
    /// analysed; pure.
    pub fn of(inventory: Inventory, handover_managers: &[String]) -> Self {
        let (assessments, inventory) = inventory.into_assessments(handover_managers);
        let safe = assessments.iter().filter(|a| a.verdict == Verdict::Safe).count();
        CheckReport {
            api_version: REPORT_API_VERSION,
            kind: "CheckReport",
            keda_installed: inventory.keda_installed,
            summary: Summary { total: assessments.len(), safe, needs_action: assessments.len() - safe },
            warnings: inventory.warnings.clone(),
            workloads: assessments,
        }
    }
}

fn verdict_style(verdict: Verdict) -> Style {
    match verdict {
        Verdict::Safe => Style::new().green(),
        Verdict::StripNeeded => Style::new().yellow().bold(),
        _ => Style::new().red().bold(),
    }
}

fn replicas_cell(assessment: &Assessment) -> String {
    let r = &assessment.replicas;
    let show = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    format!("{} ({} ready)", show(r.spec), show(r.ready))
}

fn owners_cell(assessment: &Assessment) -> String {
    if assessment.replica_owners.is_empty() {
        return "<none>".to_string();
    }
    assessment.replica_owners.iter().map(|o| o.manager.clone()).collect::<Vec<_>>().join(",")
}

fn autoscaler_cell(autoscalers: &[Autoscaler]) -> String {
    if autoscalers.is_empty() {
        return "<none>".to_string();
    }
    autoscalers
        .iter()
        .map(|a| match a.min_replicas().zip(a.hpa.as_ref().map(|h| h.max_replicas)) {
            Some((min, max)) => format!("{} ({min}-{max})", a.label()),
            None => a.label(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The human report: a table, then for every workload that is not `safe` (or has warnings)
/// the reason, warnings and next command.
pub fn render_text(report: &CheckReport, printer: &Printer) -> String {
    if report.workloads.is_empty() && report.warnings.is_empty() {
        return String::new();
    }
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    // The GUARD column only appears when a workload is guarded (`guard on`).
    let guarded = report.workloads.iter().any(|a| a.guard.is_some());
    let mut header = vec!["NAMESPACE", "WORKLOAD", "REPLICAS", "OWNERS", "AUTOSCALER", "VERDICT"];
    if guarded {
        header.push("GUARD");
    }
    table.set_header(header);
    for a in &report.workloads {
        let mut row = vec![
            Cell::new(&a.namespace),
            Cell::new(a.target()),
            Cell::new(replicas_cell(a)),
            Cell::new(owners_cell(a)),
            Cell::new(autoscaler_cell(&a.autoscalers)),
            Cell::new(printer.paint(verdict_style(a.verdict), a.verdict.as_str())),
        ];
        if guarded {
            row.push(Cell::new(a.guard.as_ref().map(|g| g.summary()).unwrap_or_else(|| "-".into())));
        }
        table.add_row(row);
    }
    let mut out = String::new();
    for line in table.to_string().lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for a in &report.workloads {
        if a.verdict == Verdict::Safe && a.warnings.is_empty() {
            continue;
        }
        out.push('\n');
        let heading = format!("{}/{}: {}", a.namespace, a.target(), a.verdict.as_str());
        out.push_str(&printer.paint(verdict_style(a.verdict), &heading));
        out.push('\n');
        out.push_str(&format!("  {}\n", a.reason));
        for hazard in &a.hazards {
            out.push_str(&format!("  - {} [{}]\n", hazard.detail, hazard.method.as_str()));
        }
        for warning in &a.warnings {
            out.push_str(&format!("  {} {warning}\n", printer.paint(Style::new().yellow(), "warning:")));
        }
        out.push_str(&format!("  next: {}\n", printer.paint(Style::new().bold(), &a.next)));
    }
    for warning in &report.warnings {
        out.push_str(&format!("\n{} {warning}", printer.paint(Style::new().yellow(), "warning:")));
    }
    if !report.warnings.is_empty() {
        out.push('\n');
    }
    let s = &report.summary;
    out.push_str(&format!("\n{} workload(s): {} safe, {} need action\n", s.total, s.safe, s.needs_action));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core;
    use crate::core::fixtures::{deployment, hpa};

    fn report(names: &[&str]) -> CheckReport {
        let mut workloads = Vec::new();
        let mut hpas = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mut workload = deployment(name);
            workload.metadata.namespace = Some("shop".into());
            workload.metadata.name = Some(format!("app-{i}"));
            hpas.push(hpa("hpa-min3-rescaled", "shop", workload.name()));
            workloads.push(workload);
        }
        let cluster = core::Cluster { hpas: &hpas, ..core::Cluster::default() };
        let assessments: Vec<Assessment> = workloads.iter().map(|w| core::analyze(w, &cluster)).collect();
        let safe = assessments.iter().filter(|a| a.verdict == Verdict::Safe).count();
        CheckReport {
            api_version: REPORT_API_VERSION,
            kind: "CheckReport",
            keda_installed: false,
            summary: Summary { total: assessments.len(), safe, needs_action: assessments.len() - safe },
            warnings: vec!["hpa/old in shop targets Deployment/gone, which does not exist".into()],
            workloads: assessments,
        }
    }

    #[test]
    fn text_report() {
        let report =
            report(&["flux-ssa-owns-replicas", "hpa-rescaled", "kubectl-csa-owns-replicas", "handover-sole-owner"]);
        insta::assert_snapshot!(render_text(&report, &Printer::plain()));
    }

    #[test]
    fn text_report_has_no_escape_codes_without_a_terminal() {
        let report = report(&["flux-ssa-owns-replicas"]);
        assert!(!render_text(&report, &Printer::plain()).contains('\u{1b}'));
    }
}
