//! What `strip` prints: the diff of each plan, the progress of the writes, the results.

use std::time::Duration;

use console::Style;
use serde_json::Value;

use super::plan::ObjectPlan;
use super::{StripOutcome, StripReport};
use crate::core::tools::Mechanism;
use crate::core::tools::flux::RECONCILE_ANNOTATION as FLUX_RECONCILE_ANNOTATION;
use crate::core::tools::kubectl::LAST_APPLIED_ANNOTATION;
use crate::output::{self, Printer, yaml};

/// The human diff of one plan: managedFields entries as YAML, annotations, the Helm document.
pub(super) fn render_plan(plan: &ObjectPlan, printer: &Printer, to_stdout: bool) -> String {
    let paint =
        |style: Style, text: &str| if to_stdout { printer.paint(style, text) } else { printer.paint_err(style, text) };
    let mut out = format!(
        "{} {}/{} ({})\n",
        paint(Style::new().bold(), "strip"),
        plan.assessment.namespace,
        plan.assessment.target(),
        plan.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
    );
    let diff = |title: &str, before: &str, after: &str| -> String {
        format!("  {}\n{}", paint(Style::new().cyan(), title), output::diff_lines(before, after, paint))
    };
    if let Some(release) = &plan.suspend {
        let title = format!("HelmRelease {release} (left as it is if suspended already)");
        out.push_str(&diff(&title, "", "spec:\n  suspend: true\n"));
    }
    if let Some(application) = &plan.auto_sync_off {
        let automated = application_automated(plan).map(|a| yaml(&serde_json::json!({"automated": a})));
        let title = format!("Argo CD Application {application}: spec.syncPolicy (resume puts it back)");
        out.push_str(&diff(&title, &automated.unwrap_or_default(), ""));
    }
    if let Some(change) = &plan.workload_change {
        if let Some(fields) = &change.managed_fields {
            for edit in &fields.edits {
                let before = yaml(&edit.old_fields);
                let after = edit.new_fields.as_ref().map(yaml).unwrap_or_else(|| "(entry removed)\n".into());
                out.push_str(&diff(&format!("managedFields entry {}", edit.identity.label()), &before, &after));
            }
        }
        if let Some(last) = &change.last_applied {
            out.push_str(&diff(
                &format!("annotation {LAST_APPLIED_ANNOTATION}"),
                &pretty(&last.old),
                &pretty(&last.new),
            ));
        }
        if change.pause_flux {
            out.push_str(&diff("annotations", "", &format!("{FLUX_RECONCILE_ANNOTATION}: disabled\n")));
        }
    }
    if let Some(change) = &plan.helm_change {
        let title = format!(
            "Helm release record {}/{} (revision {}): manifest of this object",
            change.namespace, change.object_name, change.revision
        );
        out.push_str(&diff(&title, &change.old_document, &change.new_document));
    }
    if let Some(manager) = &plan.handover_manager {
        let replicas = plan.before.pointer("/spec/replicas").cloned().unwrap_or(Value::Null);
        out.push_str(&diff(
            &format!("server-side apply as {manager}"),
            "",
            &format!(
                "apiVersion: {}\nkind: {}\nspec:\n  replicas: {replicas}\n",
                plan.kind.api_version(),
                plan.kind.kind
            ),
        ));
    }
    let owned_by = |mechanism: Mechanism| plan.assessment.replica_owners.iter().any(|o| o.mechanism == mechanism);
    let warning = paint(Style::new().yellow().bold(), "warning:");
    if owned_by(Mechanism::FluxKustomize) && !plan.assessment.flux_paused() && !plan.pause_flux {
        out.push_str(&format!(
            "  {warning} Flux owns replicas and this object is not paused: Flux's next forced apply re-takes ownership; \
             add --pause-flux, or remove replicas from Git first\n"
        ));
    }
    if owned_by(Mechanism::FluxHelm) && plan.suspend.is_none() {
        let release = plan.assessment.deploy.flux.as_ref().and_then(|f| f.helm_release.as_deref());
        let release = release.map_or("its HelmRelease".to_string(), |r| format!("HelmRelease {r}"));
        out.push_str(&format!(
            "  {warning} helm-controller owns replicas: unless {release} is suspended, its next upgrade \
             re-takes them; add --pause-flux (it suspends the HelmRelease), or stop rendering replicas first\n"
        ));
    }
    let automated = plan.assessment.deploy.argocd_application.as_ref().is_some_and(|a| a.automated);
    if owned_by(Mechanism::ArgoCd) && automated && plan.auto_sync_off.is_none() {
        out.push_str(&format!(
            "  {warning} Argo CD owns replicas and its Application syncs automatically: its next sync of a commit that \
             still sets replicas re-takes them; add --pause, or remove replicas from Git first\n"
        ));
    }
    out.push('\n');
    out
}

/// The `automated` sync policy of the Application as `check` read it (the pause re-reads it).
fn application_automated(plan: &ObjectPlan) -> Option<&Value> {
    plan.assessment.deploy.argocd_application.as_ref()?.automated_policy.as_ref()
}

fn pretty(json_text: &str) -> String {
    serde_json::from_str::<Value>(json_text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .map(|s| s + "\n")
        .unwrap_or_else(|| json_text.to_string())
}

pub fn render_results(report: &StripReport, printer: &Printer) -> String {
    let mut out = String::new();
    for r in &report.results {
        let (label, style) = match r.outcome {
            StripOutcome::Changed => ("changed", Style::new().green()),
            StripOutcome::DryRun => ("dry-run", Style::new().cyan()),
            StripOutcome::NothingToDo => ("unchanged", Style::new().dim()),
            StripOutcome::Refused => ("refused", Style::new().yellow().bold()),
            StripOutcome::Failed => ("failed", Style::new().red().bold()),
        };
        let kind = r.kind.to_lowercase();
        out.push_str(&format!("{} {}/{kind}/{}: {}\n", printer.paint(style, label), r.namespace, r.name, r.message));
        for path in &r.backups {
            out.push_str(&format!("  backup: {}\n", path.display()));
        }
    }
    out
}

pub(super) fn progress_bar(printer: &Printer, count: usize) -> Option<indicatif::ProgressBar> {
    if count < 2 || !printer.stderr_is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(count as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} stripping [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}
