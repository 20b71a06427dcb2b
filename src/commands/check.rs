//! `check`: per workload, who owns `.spec.replicas`, which autoscaler targets it and whether it
//! can act, a verdict, and the exact next command.

use std::fmt::Write as _;
use std::io;

use console::Style;
use kube::Client;
use serde::Serialize;

use crate::cli::{CheckArgs, OutputFormat};
use crate::commands::parse_targets;
use crate::core::autoscaler::Autoscaler;
use crate::core::verdict::{Assessment, Verdict};
use crate::error::{ExitStatus, Result};
use crate::inventory::{self, Analysis, Inventory, Query};
use crate::kubeio::NamespaceScope;
use crate::output::{self, Printer};

/// The `-o json|yaml` document. Field names are a stable, documented schema. `check` writes its
/// workloads as [`Streamed`], the other commands hold them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport<W = Vec<Assessment>> {
    pub api_version: &'static str,
    pub kind: &'static str,
    /// Whether the KEDA ScaledObject CRD is installed (ScaledObjects were looked for).
    pub keda_installed: bool,
    pub summary: Summary,
    /// Findings that belong to no workload, such as an autoscaler whose target does not exist.
    pub warnings: Vec<String>,
    pub workloads: W,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub total: usize,
    pub safe: usize,
    pub needs_action: usize,
}

impl Summary {
    fn of(verdicts: impl Iterator<Item = Verdict>) -> Self {
        let mut summary = Summary::default();
        for verdict in verdicts {
            summary.add(verdict);
        }
        summary
    }

    fn add(&mut self, verdict: Verdict) {
        self.total += 1;
        if verdict == Verdict::Safe {
            self.safe += 1;
        } else {
            self.needs_action += 1;
        }
    }
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
    let inventory = inventory::read(client, &query).await?;
    // Each assessment is written (or, for text, reduced to its row and section) as it is made
    // and dropped: the reports of 10,000 workloads are never held at once.
    let analysis = inventory.analysis(&[]);
    let needs_action = match args.output {
        OutputFormat::Text => {
            let mut text = TextReport::new(printer);
            analysis.assessments().for_each(|a| text.add(&a, None));
            let needs_action = text.summary.needs_action;
            printer.data_with(|out| text.write(&inventory.warnings, out))?;
            needs_action
        }
        format => {
            // The summary comes before the workloads in the document: a first pass counts it.
            let summary = Summary::of(analysis.assessments().map(|a| a.verdict));
            let needs_action = summary.needs_action;
            printer.document(format, &CheckReport::header(&inventory, summary, Streamed(&analysis)))?;
            needs_action
        }
    };
    if inventory.workloads.is_empty() {
        printer.note(&empty_message(scope, args.all_workloads));
    }
    Ok(if needs_action == 0 { ExitStatus::Success } else { ExitStatus::ActionNeeded })
}

pub(crate) fn empty_message(scope: &NamespaceScope, all_workloads: bool) -> String {
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

/// Reads the inventory the query asks for and reports on it.
pub async fn report(client: &Client, query: &Query<'_>) -> Result<CheckReport> {
    Ok(CheckReport::of(inventory::read(client, query).await?, &[]))
}

impl<W> CheckReport<W> {
    fn header(inventory: &Inventory, summary: Summary, workloads: W) -> Self {
        CheckReport {
            api_version: REPORT_API_VERSION,
            kind: "CheckReport",
            keda_installed: inventory.keda_installed,
            summary,
            warnings: inventory.warnings.clone(),
            workloads,
        }
    }
}

impl CheckReport {
    /// Action needed when any workload is not `safe`.
    pub fn exit_status(&self) -> ExitStatus {
        if self.summary.needs_action == 0 { ExitStatus::Success } else { ExitStatus::ActionNeeded }
    }

    /// The report of every workload in the inventory, dropping each workload once it is
    /// analysed; pure.
    pub fn of(inventory: Inventory, handover_managers: &[String]) -> Self {
        let (assessments, inventory) = inventory.into_assessments(handover_managers);
        let summary = Summary::of(assessments.iter().map(|a| a.verdict));
        CheckReport::header(&inventory, summary, assessments)
    }
}

/// The workloads of a report, serialized as each is assessed.
pub struct Streamed<'a>(&'a Analysis<'a>);

impl Serialize for Streamed<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.assessments())
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
    let mut text = TextReport::new(printer);
    report.workloads.iter().for_each(|a| text.add(a, None));
    let mut out = Vec::new();
    text.write(&report.warnings, &mut out).expect("writing to memory");
    String::from_utf8(out).expect("the report is text")
}

/// The human report built one assessment at a time: of each, its table row (the column widths
/// are known only at the end) and its section below the table, as text. Assessments from
/// several contexts (`commands::fleet`) are added with their context: the table then leads with
/// a CONTEXT column and each section names it.
pub(crate) struct TextReport<'p> {
    printer: &'p Printer,
    rows: Vec<Row>,
    sections: String,
    summary: Summary,
}

struct Row {
    context: Option<String>,
    cells: Vec<String>,
    /// The `guard` mark's summary, if the workload is guarded.
    guard: Option<String>,
}

impl<'p> TextReport<'p> {
    pub(crate) fn new(printer: &'p Printer) -> Self {
        Self { printer, rows: Vec::new(), sections: String::new(), summary: Summary::default() }
    }

    pub(crate) fn add(&mut self, a: &Assessment, context: Option<&str>) {
        let printer = self.printer;
        self.summary.add(a.verdict);
        self.rows.push(Row {
            context: context.map(str::to_string),
            cells: vec![
                a.namespace.clone(),
                a.target(),
                replicas_cell(a),
                owners_cell(a),
                autoscaler_cell(&a.autoscalers),
                printer.paint(verdict_style(a.verdict), a.verdict.as_str()),
            ],
            guard: a.guard.as_ref().map(|g| g.summary()),
        });
        let pinned = a.guard.as_ref().and_then(|g| g.pinned.as_ref());
        if a.verdict == Verdict::Safe && a.warnings.is_empty() && pinned.is_none() {
            return;
        }
        let out = &mut self.sections;
        let in_context = context.map(|c| format!("{c}: ")).unwrap_or_default();
        let heading = format!("{in_context}{}/{}: {}", a.namespace, a.target(), a.verdict.as_str());
        let _ = writeln!(out, "\n{}", printer.paint(verdict_style(a.verdict), &heading));
        let _ = writeln!(out, "  {}", a.reason);
        for hazard in &a.hazards {
            let _ = writeln!(out, "  - {} [{}]", hazard.detail, hazard.method.as_str());
        }
        for warning in &a.warnings {
            let _ = writeln!(out, "  {} {warning}", printer.paint(Style::new().yellow(), "warning:"));
        }
        if let Some(pinned) = pinned {
            let _ = writeln!(out, "  pinned: {}", pinned.describe());
        }
        let _ = writeln!(out, "  next: {}", printer.paint(Style::new().bold(), &a.next));
    }

    pub(crate) fn write(self, warnings: &[String], out: &mut dyn io::Write) -> io::Result<()> {
        if self.rows.is_empty() && warnings.is_empty() {
            return Ok(());
        }
        // The GUARD column only appears when a workload is guarded (`guard on`).
        let guarded = self.rows.iter().any(|r| r.guard.is_some());
        let in_contexts = self.rows.iter().any(|r| r.context.is_some());
        let mut header = vec!["NAMESPACE", "WORKLOAD", "REPLICAS", "OWNERS", "AUTOSCALER", "VERDICT"];
        if in_contexts {
            header.insert(0, "CONTEXT");
        }
        if guarded {
            header.push("GUARD");
        }
        let rows: Vec<Vec<String>> = self
            .rows
            .into_iter()
            .map(|mut row| {
                if in_contexts {
                    row.cells.insert(0, row.context.unwrap_or_default());
                }
                if guarded {
                    row.cells.push(row.guard.unwrap_or_else(|| "-".into()));
                }
                row.cells
            })
            .collect();
        output::write_columns(out, &header, &rows)?;
        out.write_all(self.sections.as_bytes())?;
        let warning_label = self.printer.paint(Style::new().yellow(), "warning:");
        for warning in warnings {
            write!(out, "\n{warning_label} {warning}")?;
        }
        if !warnings.is_empty() {
            writeln!(out)?;
        }
        let s = &self.summary;
        writeln!(out, "\n{} workload(s): {} safe, {} need action", s.total, s.safe, s.needs_action)
    }
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
