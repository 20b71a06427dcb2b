//! `verify`: prove, from history and by watching live, that replicas never dropped to the
//! floor, and say honestly when the evidence cannot tell.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use serde::Serialize;
use serde_json::Value;

use crate::cli::{OutputFormat, VerifyArgs};
use crate::commands::{check, parse_targets};
use crate::core::timeline::{self, Cause, Drop, EventRecord, Subjects, Timeline, WorkloadType};
use crate::core::verdict::{Assessment, Verdict};
use crate::error::{Error, ExitStatus, Result};
use crate::kubeio::{self, NamespaceScope};
use crate::output::{Printer, count};

/// The documented result identifiers of `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// No drop, the evidence covers the period, and the end state is sound.
    Pass,
    /// The evidence does not cover the period, or is missing: nothing is proven.
    Inconclusive,
    /// No drop seen, but the end state would let the next deploy reset replicas.
    AtRisk,
    /// Replicas dropped to the floor or below, and no autoscaler ordered it.
    Drop,
}

impl Outcome {
    fn exit(self) -> ExitStatus {
        match self {
            Outcome::Pass => ExitStatus::Success,
            Outcome::Inconclusive => ExitStatus::Inconclusive,
            Outcome::AtRisk | Outcome::Drop => ExitStatus::ActionNeeded,
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
    pub drops: Vec<Drop>,
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
    pub drops: Vec<Drop>,
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
    pub outcome: Outcome,
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

pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let parsed: SignedDuration =
        text.parse().map_err(|e| format!("`{text}` is not a duration (write it as 90s, 10m, 1h30m): {e}"))?;
    Duration::try_from(parsed).map_err(|_| format!("`{text}` must not be negative"))
}

pub async fn run(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    args: &VerifyArgs,
    printer: &Printer,
) -> Result<ExitStatus> {
    let targets = parse_targets(&args.targets)?;
    if targets.is_empty() && selector.is_none() {
        return Err(Error::Usage("name the workloads to verify (TARGET...), or select them with -l SELECTOR".into()));
    }
    let report = check::collect(client, scope, selector, &targets, false, &[]).await?;
    if let Some(unsupported) = report.workloads.iter().find(|a| workload_type(a).is_none()) {
        return Err(Error::Usage(format!(
            "{}: verify reads Deployment and StatefulSet events only; watch it with kubectl get -w",
            unsupported.target()
        )));
    }
    let history_wanted = args.since.is_some() || args.watch.is_none();
    let results = futures::future::try_join_all(
        report.workloads.iter().map(|a| verify_workload(client, a, args, history_wanted, printer)),
    )
    .await?;
    let exit = results.iter().map(|r| r.outcome).max().map(Outcome::exit).unwrap_or(ExitStatus::Success);
    let report = VerifyReport { api_version: check::REPORT_API_VERSION, kind: "VerifyReport", results };
    match args.output {
        OutputFormat::Text => printer.data(&render_text(&report))?,
        format => printer.document(format, &report)?,
    }
    Ok(exit)
}

fn workload_type(assessment: &Assessment) -> Option<WorkloadType> {
    match (assessment.workload_kind.group.as_str(), assessment.kind.as_str()) {
        ("apps", "Deployment") => Some(WorkloadType::Deployment),
        ("apps", "StatefulSet") => Some(WorkloadType::StatefulSet),
        _ => None,
    }
}

/// The HPAs and ScaledObjects whose events can explain a change of the workload.
fn autoscaler_names(assessment: &Assessment) -> (Vec<String>, Vec<String>) {
    let hpas = assessment.autoscalers.iter().filter_map(|a| a.hpa.as_ref().map(|h| h.name.clone())).collect();
    let scaled_objects =
        assessment.autoscalers.iter().filter_map(|a| a.keda.as_ref().map(|k| k.scaled_object.clone())).collect();
    (hpas, scaled_objects)
}

async fn verify_workload(
    client: &Client,
    assessment: &Assessment,
    args: &VerifyArgs,
    history_wanted: bool,
    printer: &Printer,
) -> Result<WorkloadResult> {
    let floor = args.floor;
    let live = match args.watch {
        Some(duration) => Some(watch(client, assessment, duration.0, floor, printer, std::future::pending()).await?),
        None => None,
    };
    let history = if history_wanted { Some(history(client, assessment, args).await?) } else { None };
    let end_state = end_state(client, assessment, floor).await?;

    let history_failures = history.iter().flat_map(|h| h.drops.iter()).filter(|d| d.is_failure());
    let live_failures = live.iter().flat_map(|l| l.drops.iter()).filter(|d| d.is_failure());
    let failures: Vec<&Drop> = history_failures.chain(live_failures).collect();
    let mut inconclusive = Vec::new();
    if let Some(h) = &history {
        if !h.covered {
            inconclusive.push(format!(
                "the period starts at {} but the evidence reaches back only to {} (Events expire after --event-ttl {})",
                h.from, h.evidence_from, args.event_ttl
            ));
        }
        if h.timeline.events == 0 {
            inconclusive.push(
                "no scaling events about the workload in the period: Events are best effort, so nothing proves replicas held (watch it with --watch)".into(),
            );
        }
        if h.timeline.initial.is_none() && h.timeline.events > 0 {
            inconclusive.push("an old event format without the size before the change: the start is unknown".into());
        }
        inconclusive.extend(h.timeline.gaps.iter().cloned());
    }
    if let Some(l) = &live
        && l.unresolved_gaps > 0
    {
        inconclusive.push(format!("{} watch gap(s) could not be ruled out", l.unresolved_gaps));
    }
    let (outcome, reason) = if let Some(first) = failures.first() {
        (
            Outcome::Drop,
            format!(
                "replicas dropped from {} to {} at {}, and no autoscaler ordered it: {}",
                first.from, first.to, first.time, first.evidence
            ),
        )
    } else if !end_state.ok {
        (Outcome::AtRisk, end_state.problems.join("; "))
    } else if !inconclusive.is_empty() {
        (Outcome::Inconclusive, inconclusive.join("; "))
    } else {
        (Outcome::Pass, format!("replicas never went to {floor} or below in the period, and {}", end_state.reason))
    };
    Ok(WorkloadResult {
        namespace: assessment.namespace.clone(),
        kind: assessment.kind.clone(),
        name: assessment.name.clone(),
        outcome,
        reason,
        floor,
        history,
        live,
        end_state,
    })
}

async fn list_events(client: &Client, namespace: &str) -> Result<Vec<EventRecord>> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let scope = NamespaceScope::Namespace(namespace.to_string());
    let events = kubeio::list_all(&api, &ListParams::default())
        .await
        .map_err(|e| kubeio::classify_error(e, "list", "events", &scope))?;
    Ok(events.iter().filter_map(EventRecord::from_event).collect())
}

/// The current size of each ReplicaSet the Deployment owns, or the StatefulSet's replicas.
async fn current_sizes(
    client: &Client,
    assessment: &Assessment,
    kind: WorkloadType,
    object: &Value,
) -> Result<BTreeMap<String, i64>> {
    let scope = NamespaceScope::Namespace(assessment.namespace.clone());
    match kind {
        WorkloadType::StatefulSet => {
            let replicas = object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or_default();
            Ok(BTreeMap::from([(assessment.name.clone(), replicas)]))
        }
        WorkloadType::Deployment => {
            let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
            let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &assessment.namespace);
            let sets = kubeio::list_all(&api, &ListParams::default())
                .await
                .map_err(|e| kubeio::classify_error(e, "list", "replicasets.apps", &scope))?;
            Ok(sets
                .into_iter()
                .filter(|rs| rs.metadata.owner_references.iter().flatten().any(|o| o.uid == uid))
                .map(|rs| {
                    (rs.metadata.name.unwrap_or_default(), i64::from(rs.spec.and_then(|s| s.replicas).unwrap_or(0)))
                })
                .collect())
        }
    }
}

async fn history(client: &Client, assessment: &Assessment, args: &VerifyArgs) -> Result<History> {
    let kind = workload_type(assessment).expect("checked before");
    let now = Timestamp::now();
    let ttl = SignedDuration::try_from(args.event_ttl.0).unwrap_or(SignedDuration::MAX);
    let api = kubeio::workload_api(client, &assessment.workload_kind, &assessment.namespace);
    let object = kubeio::get_object(&api, &assessment.name).await.map_err(|e| Error::api("reading the workload", e))?;
    let created = object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<Timestamp>().ok())
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let evidence_from = created.max(now - ttl);
    let from = match &args.since {
        Some(since) => now - SignedDuration::try_from(since.0).unwrap_or(SignedDuration::MAX),
        None => evidence_from,
    };
    // A period that starts before the workload existed is covered from its creation on.
    let covered = from.max(created) >= evidence_from;
    let (events, current) = futures::try_join!(
        list_events(client, &assessment.namespace),
        current_sizes(client, assessment, kind, &object)
    )?;
    let (hpas, scaled_objects) = autoscaler_names(assessment);
    let subjects = Subjects {
        workload_type: kind,
        name: &assessment.name,
        hpas: &hpas,
        scaled_objects: &scaled_objects,
        created: Some(created),
    };
    let timeline = timeline::rebuild(&events, &subjects, &current, from, now);
    let drops = timeline::drops(&timeline, args.floor);
    Ok(History { from, to: now, evidence_from, covered, timeline, drops })
}

/// The workload's state at the end: at or above the floor, an autoscaler in charge, no deploy
/// mechanism owning replicas (`check`'s analysis, read fresh).
async fn end_state(client: &Client, assessment: &Assessment, floor: i64) -> Result<EndState> {
    let scope = NamespaceScope::Namespace(assessment.namespace.clone());
    let target =
        crate::commands::Target { type_name: assessment.workload_kind.command_name(), name: assessment.name.clone() };
    let report = check::collect(client, &scope, None, std::slice::from_ref(&target), false, &[]).await?;
    let now = report.workloads.into_iter().next().ok_or_else(|| Error::NotFound {
        kind: assessment.workload_kind.command_name(),
        name: assessment.name.clone(),
        namespace: assessment.namespace.clone(),
    })?;
    let mut problems = Vec::new();
    if now.replicas.spec.is_some_and(|r| r <= floor) {
        problems.push(format!(
            "the workload is at {} replicas now, at or below the floor {floor}",
            now.replicas.spec.unwrap_or_default()
        ));
    }
    match now.verdict {
        Verdict::Safe => {}
        Verdict::StripNeeded => {
            problems.push(format!("{}; the next deploy without replicas would reset it: {}", now.reason, now.next))
        }
        _ => problems.push(format!("{} ({})", now.reason, now.verdict.as_str())),
    }
    Ok(EndState {
        verdict: now.verdict,
        reason: now.reason.clone(),
        replicas: now.replicas.spec,
        ok: problems.is_empty(),
        problems,
    })
}

struct WatchState {
    spec: Option<i64>,
    status: Option<i64>,
    ready: Option<i64>,
    generation: Option<i64>,
}

fn state_of(object: &Value) -> WatchState {
    let int = |p: &str| object.pointer(p).and_then(Value::as_i64);
    WatchState {
        spec: int("/spec/replicas"),
        status: int("/status/replicas"),
        ready: int("/status/readyReplicas").or(int("/status/replicas").map(|_| 0)),
        generation: int("/metadata/generation"),
    }
}

fn lower(current: &mut Option<i64>, value: Option<i64>) {
    if let Some(value) = value {
        *current = Some(current.map_or(value, |c| c.min(value)));
    }
}

/// Watches the workload for `duration` from a known resourceVersion, with bookmarks; stops at
/// the first drop no autoscaler ordered. A 410 Gone or a broken watch is a gap: the object is
/// re-listed, and the gap is ruled out only if its generation did not move across it (every
/// change of spec.replicas bumps it). `stop` ends the watch early (the guided flow's "the
/// deploy was seen").
pub async fn watch(
    client: &Client,
    assessment: &Assessment,
    duration: Duration,
    floor: i64,
    printer: &Printer,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Live> {
    let mut stop = std::pin::pin!(stop);
    let api = kubeio::workload_api(client, &assessment.workload_kind, &assessment.namespace);
    let scope = NamespaceScope::Namespace(assessment.namespace.clone());
    let fields = format!("metadata.name={}", assessment.name);
    let started = Timestamp::now();
    let deadline = tokio::time::Instant::now() + duration;
    let relist = || async {
        let list = api
            .list(&ListParams::default().fields(&fields))
            .await
            .map_err(|e| kubeio::classify_error(e, "list", &assessment.workload_kind.plural, &scope))?;
        let object = list.items.into_iter().next().map(|o| serde_json::to_value(o).unwrap_or(Value::Null));
        Ok::<_, Error>((list.metadata.resource_version.unwrap_or_default(), object))
    };
    let (mut version, object) = relist().await?;
    let Some(object) = object else {
        return Err(Error::NotFound {
            kind: assessment.workload_kind.command_name(),
            name: assessment.name.clone(),
            namespace: assessment.namespace.clone(),
        });
    };
    let mut state = state_of(&object);
    let mut minimum = Minimum::default();
    lower(&mut minimum.spec, state.spec);
    lower(&mut minimum.status, state.status);
    lower(&mut minimum.ready, state.ready);
    let mut gaps = Vec::new();
    let mut unresolved_gaps = 0;
    let mut drops = Vec::new();
    let bar = live_line(printer, assessment);
    let label = format!("{}/{}", assessment.namespace, assessment.target());

    'watching: while tokio::time::Instant::now() < deadline {
        let remaining = deadline - tokio::time::Instant::now();
        let params = WatchParams::default().fields(&fields).timeout(remaining.as_secs().clamp(1, 290) as u32);
        let stream = match api.watch(&params, &version).await {
            Ok(stream) => stream,
            Err(e) => {
                gaps.push(format!("could not watch at {}: {e}", Timestamp::now()));
                let (gap_version, resolved) = close_gap(&relist, &mut state, &mut gaps).await?;
                version = gap_version;
                unresolved_gaps += usize::from(!resolved);
                continue;
            }
        };
        let mut stream = std::pin::pin!(stream.into_stream());
        loop {
            let next = tokio::select! {
                () = &mut stop => break 'watching,
                next = tokio::time::timeout_at(deadline, stream.next()) => next,
            };
            let event = match next {
                Err(_) => break 'watching,
                Ok(None) => break,
                Ok(Some(event)) => event,
            };
            match event {
                Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => {
                    let value = serde_json::to_value(&object).unwrap_or(Value::Null);
                    if let Some(v) = object.metadata.resource_version.clone() {
                        version = v;
                    }
                    let next_state = state_of(&value);
                    lower(&mut minimum.spec, next_state.spec);
                    lower(&mut minimum.status, next_state.status);
                    lower(&mut minimum.ready, next_state.ready);
                    if let (Some(before), Some(after)) = (state.spec, next_state.spec)
                        && before > floor
                        && after <= floor
                    {
                        let drop = attribute_live_drop(client, assessment, before, after).await?;
                        let failure = drop.is_failure();
                        drops.push(drop);
                        if failure {
                            break 'watching;
                        }
                    }
                    state = next_state;
                    if let Some(bar) = &bar {
                        bar.set_message(format!(
                            "{label}: replicas {} (status {}, ready {}), minimum {}",
                            count(state.spec),
                            count(state.status),
                            count(state.ready),
                            count(minimum.spec)
                        ));
                    }
                }
                Ok(WatchEvent::Bookmark(bookmark)) => version = bookmark.metadata.resource_version,
                Ok(WatchEvent::Deleted(_)) => {
                    gaps.push(format!("the workload was deleted at {}", Timestamp::now()));
                    unresolved_gaps += 1;
                    break 'watching;
                }
                Ok(WatchEvent::Error(status)) => {
                    gaps.push(format!(
                        "the watch ended with {} {} at {}",
                        status.code,
                        status.reason,
                        Timestamp::now()
                    ));
                    let (gap_version, resolved) = close_gap(&relist, &mut state, &mut gaps).await?;
                    version = gap_version;
                    unresolved_gaps += usize::from(!resolved);
                    continue 'watching;
                }
                Err(e) => {
                    gaps.push(format!("the watch broke at {}: {e}", Timestamp::now()));
                    let (gap_version, resolved) = close_gap(&relist, &mut state, &mut gaps).await?;
                    version = gap_version;
                    unresolved_gaps += usize::from(!resolved);
                    continue 'watching;
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(Live { started, ended: Timestamp::now(), minimum, gaps, unresolved_gaps, drops })
}

/// Re-lists after a gap. The gap is ruled out when the generation did not move across it.
async fn close_gap<F, Fut>(relist: &F, state: &mut WatchState, gaps: &mut Vec<String>) -> Result<(String, bool)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(String, Option<Value>)>>,
{
    let (version, object) = relist().await?;
    let Some(object) = object else {
        gaps.push("the workload is gone after the gap".into());
        return Ok((version, false));
    };
    let after = state_of(&object);
    let resolved = after.generation.is_some() && after.generation == state.generation;
    gaps.push(if resolved {
        "ruled out: the generation did not move across the gap, so spec.replicas did not change".into()
    } else {
        format!(
            "not ruled out: the generation moved from {} to {} across the gap",
            count(state.generation),
            count(after.generation)
        )
    });
    *state = after;
    Ok((version, resolved))
}

/// Looks for the autoscaler's order of this size among the latest events; the HPA controller
/// records its event just after it writes the scale, so give it a moment.
async fn attribute_live_drop(client: &Client, assessment: &Assessment, from: i64, to: i64) -> Result<Drop> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = Timestamp::now();
    let events = list_events(client, &assessment.namespace).await?;
    let (hpas, scaled_objects) = autoscaler_names(assessment);
    let kind = workload_type(assessment).unwrap_or(WorkloadType::Deployment);
    let subjects = Subjects {
        workload_type: kind,
        name: &assessment.name,
        hpas: &hpas,
        scaled_objects: &scaled_objects,
        created: None,
    };
    let recent = timeline::rebuild(&events, &subjects, &BTreeMap::new(), now - SignedDuration::from_secs(30), now);
    let cause = Cause::of(recent.orders.iter().rev().find(|o| o.size == to));
    Ok(Drop {
        time: now,
        from,
        to,
        cause,
        evidence: format!("watch: {}/{} spec.replicas {from} -> {to}", assessment.namespace, assessment.target()),
    })
}

fn live_line(printer: &Printer, assessment: &Assessment) -> Option<indicatif::ProgressBar> {
    if !printer.stderr_is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
        bar.set_style(style);
    }
    bar.set_message(format!("{}/{}: watching", assessment.namespace, assessment.target()));
    bar.enable_steady_tick(Duration::from_millis(250));
    Some(bar)
}

fn render_text(report: &VerifyReport) -> String {
    let mut out = String::new();
    for r in &report.results {
        out.push_str(&format!("{}/{}/{}: {}\n", r.namespace, r.kind.to_lowercase(), r.name, outcome_name(r.outcome)));
        out.push_str(&format!("  {}\n", r.reason));
        if let Some(h) = &r.history {
            out.push_str(&format!(
                "  history {} .. {} (evidence reaches back to {}{})\n",
                h.from,
                h.to,
                h.evidence_from,
                if h.covered { "" } else { "; period NOT covered" }
            ));
            if let Some(initial) = h.timeline.initial {
                out.push_str(&format!(
                    "    {:<30} {initial:>4}  (before the first event in the period)\n",
                    h.from.to_string()
                ));
            }
            for point in &h.timeline.points {
                out.push_str(&format!("    {:<30} {:>4}  {}\n", point.time.to_string(), point.replicas, point.source));
            }
            for drop in &h.drops {
                out.push_str(&format!(
                    "  drop {} -> {} at {}: {}\n",
                    drop.from,
                    drop.to,
                    drop.time,
                    cause_text(&drop.cause)
                ));
            }
        }
        if let Some(l) = &r.live {
            out.push_str(&format!(
                "  watched {} .. {}: minimum replicas {} (status {}, ready {})\n",
                l.started,
                l.ended,
                count(l.minimum.spec),
                count(l.minimum.status),
                count(l.minimum.ready)
            ));
            for gap in &l.gaps {
                out.push_str(&format!("    gap: {gap}\n"));
            }
            for drop in &l.drops {
                out.push_str(&format!(
                    "  drop {} -> {} at {}: {}\n",
                    drop.from,
                    drop.to,
                    drop.time,
                    cause_text(&drop.cause)
                ));
            }
        }
        out.push_str(&format!("  end state: {} ({})\n", r.end_state.verdict.as_str(), r.end_state.reason));
    }
    out
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "pass",
        Outcome::Inconclusive => "inconclusive",
        Outcome::AtRisk => "at-risk",
        Outcome::Drop => "drop",
    }
}

fn cause_text(cause: &Cause) -> String {
    match cause {
        Cause::Autoscaler { hpa, reason } => format!("ordered by {hpa} ({reason}); not a failure"),
        Cause::KedaIdle { scaled_object } => {
            format!("{scaled_object} went idle (KEDA scales to zero by design); not a failure")
        }
        Cause::Unordered => "no autoscaler ordered it: a deploy tool or a person reset replicas".into(),
    }
}
