//! `verify`: prove, from history and by watching live, that replicas never dropped to the
//! floor, and say honestly when the evidence cannot tell. `read` collects from the API server,
//! `watch` watches live, `judge` decides each workload's outcome (pure), `render` prints it.

mod judge;
mod read;
mod render;
mod watch;

use jiff::Timestamp;
use serde::Serialize;

use crate::cli::{OutputFormat, VerifyArgs};
use crate::commands::{Target, check, parse_targets};
use crate::core::timeline::{ReplicaDrop, ScaledObjectSubject, Subjects, Timeline};
use crate::core::verdict::{Assessment, Verdict};
use crate::core::workload::AppsKind;
use crate::core::workload::WorkloadKind;
use crate::error::{Error, ExitStatus, Result};
use crate::inventory::Query;
use crate::kubeio::NamespaceScope;
use crate::output::Printer;
use kube::Client;

pub use watch::{LiveLines, watch};

use judge::judge_all;
use read::{Evidence, end_states, history, read_verifiable};
pub use render::render_text;

/// The documented result identifiers of `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyOutcome {
    /// No drop, the evidence covers the period, and the end state is sound.
    Pass,
    /// The evidence does not cover the period, or is missing: nothing is proven.
    Inconclusive,
    /// No drop seen, but the end state would let the next deploy reset replicas.
    AtRisk,
    /// Replicas dropped to the floor or below, and no autoscaler ordered it.
    Drop,
}

impl VerifyOutcome {
    fn exit(self) -> ExitStatus {
        match self {
            VerifyOutcome::Pass => ExitStatus::Success,
            VerifyOutcome::Inconclusive => ExitStatus::Inconclusive,
            VerifyOutcome::AtRisk | VerifyOutcome::Drop => ExitStatus::ActionNeeded,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// The period asked for (`--since`, or as far back as the evidence reaches).
    pub from: Timestamp,
    pub to: Timestamp,
    /// How far back the evidence can reach: Events expire after `--event-ttl`, and nothing
    /// predates the workload.
    pub evidence_from: Timestamp,
    pub covered: bool,
    pub timeline: Timeline,
    pub drops: Vec<ReplicaDrop>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Minimum {
    pub spec: Option<i64>,
    pub status: Option<i64>,
    pub ready: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Live {
    pub started: Timestamp,
    pub ended: Timestamp,
    pub minimum: Minimum,
    /// Watch interruptions (410 Gone, broken connections) and whether they were ruled out.
    pub gaps: Vec<String>,
    pub unresolved_gaps: usize,
    pub drops: Vec<ReplicaDrop>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndState {
    pub verdict: Verdict,
    pub reason: String,
    pub replicas: Option<i64>,
    pub ok: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadResult {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub outcome: VerifyOutcome,
    pub reason: String,
    pub floor: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<History>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Live>,
    pub end_state: EndState,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub results: Vec<WorkloadResult>,
}

pub async fn run(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    args: &VerifyArgs,
    printer: &Printer,
) -> Result<ExitStatus> {
    let report = report(client, scope, selector, args, printer).await?;
    match args.output {
        OutputFormat::Text => printer.data(&render_text(&report))?,
        format => printer.document(format, &report)?,
    }
    Ok(report.exit_status())
}

impl VerifyReport {
    /// The exit status of the worst outcome (none: success).
    pub fn exit_status(&self) -> ExitStatus {
        self.results.iter().map(|r| r.outcome).max().map(VerifyOutcome::exit).unwrap_or(ExitStatus::Success)
    }
}

/// Judges the workloads `args` name, printing only the live lines of `--watch` on a terminal.
pub async fn report(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    args: &VerifyArgs,
    printer: &Printer,
) -> Result<VerifyReport> {
    let targets = targets(args, selector)?;
    let backup_dir = args.backups.dir();
    let query = Query { scope, selector, targets: &targets, all_workloads: false, backup_dir: &backup_dir };
    let (assessments, workloads) = read_verifiable(client, &query).await?;
    let lines = LiveLines::new(printer);
    let lives = match args.watch {
        Some(duration) => Some(
            futures::future::try_join_all(
                assessments.iter().map(|a| watch(client, a, duration.0, args.floor, &lines, std::future::pending())),
            )
            .await?,
        ),
        None => None,
    };
    let history_wanted = args.since.is_some() || args.watch.is_none();
    // The evidence and the fresh read of the end states, both after the watch, side by side.
    let evidence =
        async { if history_wanted { Evidence::read(client, &assessments).await.map(Some) } else { Ok(None) } };
    let (evidence, end_states) =
        futures::try_join!(evidence, end_states(client, &assessments, &backup_dir, args.floor))?;
    let histories = evidence.map(|evidence| {
        assessments
            .iter()
            .map(|a| {
                let workload = workloads.get(&(a.namespace.clone(), a.workload_kind.clone(), a.name.clone()));
                history(a, workload, &evidence, args)
            })
            .collect::<Vec<_>>()
    });
    let results = judge_all(&assessments, histories, lives, end_states, args);
    Ok(VerifyReport { api_version: check::REPORT_API_VERSION, kind: "VerifyReport", results })
}

/// The workloads `args` name, once the input is checked (verify names its workloads); nothing
/// is read.
pub fn targets(args: &VerifyArgs, selector: Option<&str>) -> Result<Vec<Target>> {
    let targets = parse_targets(&args.targets)?;
    if targets.is_empty() && selector.is_none() {
        return Err(Error::Usage("name the workloads to verify (TARGET...), or select them with -l SELECTOR".into()));
    }
    Ok(targets)
}

/// A workload by namespace, kind and name.
type WorkloadKey = (String, WorkloadKind, String);

/// The kind verify replays the history of (`None`: a kind it cannot read the Events of).
fn workload_type(assessment: &Assessment) -> Option<AppsKind> {
    AppsKind::of(&assessment.workload_kind)
}

/// The HPAs and ScaledObjects whose events can explain a change of the workload, owned so that
/// the [`Subjects`] the timeline matches Events against can borrow them.
struct Explainers {
    hpas: Vec<String>,
    scaled_objects: Vec<ScaledObjectSubject>,
}

impl Explainers {
    fn of(assessment: &Assessment) -> Self {
        // A ScaledObject's HPA counts even when it does not exist now (KEDA deletes it while paused).
        let mut hpas: Vec<String> = assessment
            .autoscalers
            .iter()
            .flat_map(|a| {
                a.hpa.as_ref().map(|h| h.name.clone()).into_iter().chain(a.keda.as_ref().map(|k| k.hpa_name.clone()))
            })
            .collect();
        hpas.sort();
        hpas.dedup();
        let scaled_objects = assessment
            .autoscalers
            .iter()
            .filter_map(|a| a.keda.as_ref())
            .map(|k| ScaledObjectSubject {
                name: k.scaled_object.clone(),
                idle_size: k.idle_size().unwrap_or(0),
                paused_replicas: k.paused_count(),
            })
            .collect();
        Self { hpas, scaled_objects }
    }

    fn subjects<'a>(
        &'a self,
        assessment: &'a Assessment,
        workload_type: AppsKind,
        created: Option<Timestamp>,
    ) -> Subjects<'a> {
        Subjects {
            workload_type,
            name: &assessment.name,
            hpas: &self.hpas,
            scaled_objects: &self.scaled_objects,
            created,
        }
    }
}
