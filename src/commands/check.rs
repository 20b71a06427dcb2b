//! `check`: per workload, who owns `.spec.replicas`, which autoscaler targets it and whether it
//! can act, a verdict, and the exact next command.

use std::collections::{BTreeMap, BTreeSet};

use comfy_table::{Cell, Table, presets};
use console::Style;
use kube::Client;
use serde::Serialize;

use crate::cli::{CheckArgs, OutputFormat};
use crate::commands::{Target, parse_targets};
use crate::core::autoscaler::{self, Autoscaler};
use crate::core::verdict::{Assessment, Verdict};
use crate::core::workload::{Workload, WorkloadKind};
use crate::core::{self, helm};
use crate::error::{Error, ExitStatus, Result};
use crate::kubeio::{self, NamespaceScope};
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
    let report = collect(client, scope, selector, &targets, args.all_workloads, &[]).await?;
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

/// Reads what the analysis needs (one LIST per kind and scope) and analyses each workload.
pub async fn collect(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    targets: &[Target],
    all_workloads: bool,
    handover_managers: &[String],
) -> Result<CheckReport> {
    if !targets.is_empty() && *scope == NamespaceScope::All {
        return Err(Error::Usage(
            "a workload cannot be named across all namespaces: drop -A and pass -n NAMESPACE".to_string(),
        ));
    }
    let mut target_kinds: BTreeMap<String, WorkloadKind> = BTreeMap::new();
    for target in targets {
        if !target_kinds.contains_key(&target.type_name) {
            let kind = kubeio::resolve_kind(client, &target.type_name).await?;
            target_kinds.insert(target.type_name.clone(), kind);
        }
    }

    let (hpas, scaled_objects) =
        futures::try_join!(kubeio::list_hpas(client, scope), kubeio::list_scaled_objects(client, scope))?;
    let keda_installed = scaled_objects.is_some();
    let scaled_objects = scaled_objects.unwrap_or_default();

    let mut kinds: Vec<WorkloadKind> = Vec::new();
    let mut add_kind = |kind: WorkloadKind| {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    };
    if targets.is_empty() {
        if all_workloads {
            add_kind(WorkloadKind::deployment());
            add_kind(WorkloadKind::stateful_set());
        }
        for (api_version, kind) in autoscaler_target_types(&hpas, &scaled_objects) {
            if let Some(resolved) = resolve_target_type(client, &api_version, &kind).await? {
                add_kind(resolved);
            }
        }
    } else {
        target_kinds.values().cloned().for_each(add_kind);
    }

    let lists =
        futures::future::try_join_all(kinds.iter().map(|kind| kubeio::list_workloads(client, kind, scope, selector)))
            .await?;
    let listed: Vec<Workload> = lists.into_iter().flatten().collect();

    let mut warnings = Vec::new();
    if targets.is_empty() && selector.is_none() {
        warnings = orphaned_autoscalers(&hpas, &scaled_objects, &listed);
    }

    let workloads: Vec<Workload> = if targets.is_empty() {
        listed
            .into_iter()
            .filter(|w| {
                all_workloads
                    || hpas.iter().any(|h| autoscaler::hpa_targets(h, w))
                    || scaled_objects.iter().any(|so| autoscaler::scaled_object_targets(so, w))
            })
            .collect()
    } else {
        let mut chosen = Vec::new();
        for target in targets {
            let kind = &target_kinds[&target.type_name];
            let found = listed.iter().find(|w| &w.kind == kind && w.name() == target.name);
            match found {
                Some(w) if !chosen.iter().any(|c: &Workload| c.kind == w.kind && c.name() == w.name()) => {
                    chosen.push(w.clone())
                }
                Some(_) => {}
                None => {
                    return Err(Error::NotFound {
                        kind: kind.command_name(),
                        name: target.name.clone(),
                        namespace: scope.namespace().unwrap_or_default().to_string(),
                    });
                }
            }
        }
        chosen
    };

    let releases: BTreeSet<(String, String)> =
        workloads.iter().filter_map(helm::release_of).map(|(name, ns)| (ns, name)).collect();
    let helm_records = if releases.is_empty() {
        None
    } else {
        Some(kubeio::helm_records(client, &releases, *scope == NamespaceScope::All).await)
    };

    let cluster = core::Cluster {
        hpas: &hpas,
        scaled_objects: &scaled_objects,
        helm_records: helm_records.as_ref(),
        handover_managers,
    };
    let strips = crate::backup::latest_of(
        &crate::backup::default_dir(),
        workloads.iter().filter_map(|w| {
            let meta = &w.metadata;
            Some((meta.namespace.as_deref()?, w.kind.kind.as_str(), meta.name.as_deref()?, meta.uid.as_deref()?))
        }),
    );
    let mut assessments: Vec<Assessment> = workloads
        .iter()
        .map(|w| {
            let mut assessment = core::analyze(w, &cluster);
            let stripped = w.metadata.uid.as_ref().and_then(|uid| strips.get(uid));
            if let Some((backup, path)) = stripped
                && !assessment.hazards.is_empty()
            {
                assessment.warnings.push(format!(
                    "{} took replicas back after the strip of {} (backup {}): the deploy tool still sends replicas; \
                     remove them from its source, pause it, then strip again",
                    assessment.hazards.iter().map(|h| h.owner.as_str()).collect::<Vec<_>>().join(", "),
                    backup.created,
                    path.display()
                ));
            }
            assessment
        })
        .collect();
    assessments.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    let safe = assessments.iter().filter(|a| a.verdict == Verdict::Safe).count();
    Ok(CheckReport {
        api_version: REPORT_API_VERSION,
        kind: "CheckReport",
        keda_installed,
        summary: Summary { total: assessments.len(), safe, needs_action: assessments.len() - safe },
        warnings,
        workloads: assessments,
    })
}

/// Autoscalers whose target is not among the listed workloads: they scale nothing.
fn orphaned_autoscalers(
    hpas: &[k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler],
    scaled_objects: &[serde_json::Value],
    workloads: &[Workload],
) -> Vec<String> {
    let mut found = Vec::new();
    for scaled_object in scaled_objects {
        if !workloads.iter().any(|w| autoscaler::scaled_object_targets(scaled_object, w)) {
            let text = |p: &str| scaled_object.pointer(p).and_then(|v| v.as_str()).unwrap_or_default();
            found.push(format!(
                "scaledobject/{} in {} targets {}/{}, which does not exist",
                text("/metadata/name"),
                text("/metadata/namespace"),
                scaled_object.pointer("/spec/scaleTargetRef/kind").and_then(|v| v.as_str()).unwrap_or("Deployment"),
                text("/spec/scaleTargetRef/name")
            ));
        }
    }
    for hpa in hpas.iter().filter(|h| autoscaler::owning_scaled_object(h).is_none()) {
        if !workloads.iter().any(|w| autoscaler::hpa_targets(hpa, w)) {
            let target = &hpa.spec.scale_target_ref;
            let state = autoscaler::hpa_state(hpa);
            let able = state.conditions.iter().find(|c| c.type_ == "AbleToScale" && c.status == "False");
            found.push(format!(
                "hpa/{} in {} targets {}/{}, which does not exist{}",
                state.name,
                hpa.metadata.namespace.as_deref().unwrap_or_default(),
                target.kind,
                target.name,
                able.map(|c| format!(" (AbleToScale=False: {})", c.reason.as_deref().unwrap_or_default()))
                    .unwrap_or_default()
            ));
        }
    }
    found
}

/// The distinct (apiVersion, kind) pairs autoscalers point at.
fn autoscaler_target_types(
    hpas: &[k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler],
    scaled_objects: &[serde_json::Value],
) -> BTreeSet<(String, String)> {
    let from_hpas = hpas
        .iter()
        .map(|h| &h.spec)
        .map(|s| (s.scale_target_ref.api_version.clone().unwrap_or_default(), s.scale_target_ref.kind.clone()));
    let from_keda = scaled_objects.iter().map(|so| {
        let text = |key: &str| so.pointer(&format!("/spec/scaleTargetRef/{key}")).and_then(|v| v.as_str());
        (text("apiVersion").unwrap_or("apps/v1").to_string(), text("kind").unwrap_or("Deployment").to_string())
    });
    from_hpas.chain(from_keda).collect()
}

/// Resolves an autoscaler's target type; `None` when the type does not exist (the autoscaler
/// then targets nothing, which its own conditions report).
async fn resolve_target_type(client: &Client, api_version: &str, kind: &str) -> Result<Option<WorkloadKind>> {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    match (group, kind) {
        ("apps", "Deployment") => Ok(Some(WorkloadKind::deployment())),
        ("apps", "StatefulSet") => Ok(Some(WorkloadKind::stateful_set())),
        _ => {
            let type_name = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
            match kubeio::resolve_kind(client, &type_name).await {
                Ok(resolved) => Ok(Some(resolved)),
                Err(Error::UnknownResourceType(_) | Error::NoScaleSubresource(_)) => Ok(None),
                Err(other) => Err(other),
            }
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
