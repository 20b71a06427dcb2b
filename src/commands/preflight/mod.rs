//! `preflight`: what the next deploy of these manifests does to every workload's replicas,
//! before it runs, and the order of steps that keeps the count.
//!
//! Server-side appliers are asked of the API server itself: a dry-run apply of the manifest as
//! the tool's field manager, forced as the tool forces, so ownership and defaulting are the
//! server's own. Three-way merges (client-side kubectl and Argo CD, Helm 3) are computed from
//! the configuration they merge with, and the replicas they send are dry-run too, so defaulting
//! and admission (the guard) are the server's. Nothing is persisted.
//!
//! The verb resolves its arguments once into [`Options`] (the manifests read, `-l` applied)
//! before connecting, then runs [`report`]: `read` resolves the manifests' workloads and reads
//! them and the inventory around them, `predict` dry-runs each apply (its pure parts are in
//! `core::preflight`), `render` prints.

mod predict;
mod read;
mod render;

use futures::{StreamExt, TryStreamExt};
use kube::Client;
use serde::Serialize;

pub use self::read::read_inputs;
pub use self::render::{COLUMNS, render_sections, render_text, table_rows};
use crate::cli::{OutputFormat, PreflightArgs};
use crate::commands::flags::{ScopeFlags, not_honoured};
use crate::core::manifest::Document;
use crate::core::preflight::{AutoscalerView, Forecast, Step};
use crate::core::tools::Tool;
use crate::error::{ExitStatus, Result};
use crate::output::Printer;

/// Reads and dry runs at once: as for `check`'s named targets, well under the API server's
/// `--max-requests-inflight` and its priority-and-fairness share for one client.
const REQUESTS_IN_FLIGHT: usize = 16;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreflightReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub summary: Summary,
    pub workloads: Vec<Prediction>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub total: usize,
    pub drops: usize,
    pub keeps: usize,
    pub refused: usize,
    pub pinned: usize,
    pub new: usize,
    pub unknown: usize,
    /// Objects of the manifests `-l` left out, as `kubectl apply -l` would not apply them.
    pub left_out: usize,
}

/// What the deploy does to one workload of the manifests.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prediction {
    pub namespace: String,
    pub kind: String,
    pub api_version: String,
    pub name: String,
    /// The file (and document) the manifest came from.
    pub source: String,
    /// The tool that applies it (`--as`, or told from the live object).
    pub tool: Option<String>,
    /// What the tool was told from.
    pub evidence: Option<String>,
    /// How the tool writes the object.
    pub apply: Option<String>,
    /// `server dry run`, or why the prediction had to be made locally.
    pub computed_by: Option<String>,
    pub current: Option<i64>,
    pub predicted: Option<i64>,
    pub outcome: Forecast,
    pub cause: String,
    pub autoscalers: Vec<AutoscalerView>,
    /// In order: what keeps the count (only for `drops`), by handing replicas over first.
    pub steps: Vec<Step>,
    /// In order: the short path, on a cluster that serves MutatingAdmissionPolicy, for an
    /// applier whose pinned write hands replicas over by itself (empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pin_steps: Vec<Step>,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub target: String,
}

/// What `preflight` was asked for, checked before connecting: the manifests read, those `-l`
/// selects kept (as `kubectl apply -l` applies only those), and how to report.
#[derive(Debug)]
pub struct Options {
    documents: Vec<Document>,
    /// The selector and how many objects of the manifests it left out.
    left_out: Option<(String, usize)>,
    requested: Option<Tool>,
    output: OutputFormat,
}

impl Options {
    /// The prediction for these options' manifests in the cluster of `client`.
    pub async fn report(&self, client: &Client, default_namespace: &str) -> Result<PreflightReport> {
        let mut report = report(client, self.documents.clone(), default_namespace, self.requested.clone()).await?;
        report.summary.left_out = self.left_out.as_ref().map_or(0, |(_, count)| *count);
        Ok(report)
    }

    pub fn output(&self) -> OutputFormat {
        self.output
    }

    pub fn resolve(args: PreflightArgs, flags: &ScopeFlags) -> Result<Self> {
        if flags.all_namespaces {
            return Err(not_honoured(
                "preflight",
                "-A",
                "it takes namespaces from the manifests and -n, as kubectl apply does: drop -A",
            ));
        }
        let mut documents = read_inputs(&args.filenames, args.recursive)?;
        let left_out = flags.selector.as_ref().map(|selector| {
            let before = documents.len();
            documents.retain(|document| selector.matches_object(&document.object));
            (selector.to_string(), before - documents.len())
        });
        Ok(Self { documents, left_out, requested: args.as_tool.as_deref().map(Tool::parse), output: args.output })
    }
}

/// Predicts the deploy of the options' manifests; `default_namespace` is where objects without
/// a namespace land (`-n`, else the context's).
pub async fn run(client: &Client, default_namespace: &str, options: &Options, printer: &Printer) -> Result<ExitStatus> {
    let report = options.report(client, default_namespace).await?;
    match options.output {
        OutputFormat::Text => printer.data(&render_text(&report, printer))?,
        format => printer.document(format, &report)?,
    }
    if report.workloads.is_empty() {
        match &options.left_out {
            Some((selector, _)) => printer.note(&format!(
                "No Deployment, StatefulSet or other workload with /scale among the objects -l {selector} selects."
            )),
            None => printer.note("No Deployment, StatefulSet or other workload with /scale in the manifests."),
        }
    }
    Ok(report.exit_status())
}

impl PreflightReport {
    /// Action needed when a workload drops; inconclusive when none does but one is unknown.
    pub fn exit_status(&self) -> ExitStatus {
        let s = &self.summary;
        if s.drops > 0 {
            ExitStatus::ActionNeeded
        } else if s.unknown > 0 {
            ExitStatus::Inconclusive
        } else {
            ExitStatus::Success
        }
    }
}

/// The prediction for every workload of `documents`.
pub async fn report(
    client: &Client,
    documents: Vec<Document>,
    default_namespace: &str,
    requested: Option<Tool>,
) -> Result<PreflightReport> {
    let items = read::resolve_items(client, &documents, default_namespace).await?;
    let items = read::read_live(client, items).await?;
    let context = read::read_context(client, &items, documents, default_namespace, requested).await?;
    let workloads: Vec<Prediction> = futures::stream::iter(&items)
        .map(|item| predict::predict(client, item, &context))
        .buffered(REQUESTS_IN_FLIGHT)
        .try_collect()
        .await?;
    let count = |outcome: Forecast| workloads.iter().filter(|w| w.outcome == outcome).count();
    let summary = Summary {
        total: workloads.len(),
        drops: count(Forecast::Drops),
        keeps: count(Forecast::Keeps),
        refused: count(Forecast::Refused),
        pinned: count(Forecast::Pinned),
        new: count(Forecast::New),
        unknown: count(Forecast::Unknown),
        left_out: 0,
    };
    Ok(PreflightReport { api_version: super::check::REPORT_API_VERSION, kind: "PreflightReport", summary, workloads })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::selector::LabelSelector;

    const MANIFESTS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web, tier: front}}
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {app: web}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, labels: {app: api}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
";

    fn resolved(selector: Option<&str>, all_namespaces: bool) -> Result<Options> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("next.yaml");
        std::fs::write(&file, MANIFESTS).unwrap();
        let args = PreflightArgs { filenames: vec![file], recursive: false, as_tool: None, output: OutputFormat::Json };
        let flags = ScopeFlags {
            all_namespaces,
            selector: selector.map(|s| LabelSelector::parse(s).unwrap()),
            ..Default::default()
        };
        Options::resolve(args, &flags)
    }

    fn kept(options: &Options) -> Vec<String> {
        options.documents.iter().map(|d| format!("{}/{}", d.kind(), d.name())).collect()
    }

    #[test]
    fn selector_keeps_the_objects_kubectl_apply_l_would_apply() {
        let options = resolved(Some("app=web"), false).unwrap();
        assert_eq!(kept(&options), ["Deployment/web", "Service/web"]);
        assert_eq!(options.left_out, Some(("app=web".to_string(), 2)));

        let options = resolved(Some("app in (web,api),tier!=front"), false).unwrap();
        assert_eq!(kept(&options), ["Service/web", "Deployment/api"]);
        let options = resolved(Some("!app"), false).unwrap();
        assert_eq!(kept(&options), ["HorizontalPodAutoscaler/web"], "an object without labels has none");

        let options = resolved(None, false).unwrap();
        assert_eq!((options.documents.len(), options.left_out), (4, None));
    }

    #[test]
    fn all_namespaces_is_refused_before_reading_anything() {
        let error = resolved(None, true).unwrap_err();
        assert_eq!(error.exit_status(), ExitStatus::Usage);
        assert!(error.to_string().starts_with("preflight does not take -A: "), "{error}");
    }
}
