//! `verify`: prove, from history and by watching live, that replicas never dropped to the
//! floor, and say honestly when the evidence cannot tell.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;
use serde_json::Value;

use crate::cli::{OutputFormat, VerifyArgs};
use crate::commands::{check, parse_targets};
use crate::core::attribution::{self, Attribution, Decided, LiveDrop, Witness};
use crate::core::timeline::{self, Cause, Drop, EventRecord, ScaledObjectSubject, Subjects, Timeline, WorkloadType};
use crate::core::verdict::{Assessment, Verdict};
use crate::core::workload::{Workload, WorkloadKind};
use crate::error::{Error, ExitStatus, Result};
use crate::inventory::{Inventory, Query};
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
    let backup_dir = args.backups.dir();
    let query = Query { scope, selector, targets: &targets, all_workloads: false, backup_dir: &backup_dir };
    let (assessments, workloads) = read_verifiable(client, &query).await?;
    let lives = match args.watch {
        Some(duration) => Some(
            futures::future::try_join_all(
                assessments.iter().map(|a| watch(client, a, duration.0, args.floor, printer, std::future::pending())),
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
    let exit = results.iter().map(|r| r.outcome).max().map(Outcome::exit).unwrap_or(ExitStatus::Success);
    let report = VerifyReport { api_version: check::REPORT_API_VERSION, kind: "VerifyReport", results };
    match args.output {
        OutputFormat::Text => printer.data(&render_text(&report))?,
        format => printer.document(format, &report)?,
    }
    Ok(exit)
}

/// A workload by namespace, kind and name.
type WorkloadKey = (String, WorkloadKind, String);

/// The workloads to verify, assessed, and of the first read what the history needs (uid,
/// creation) by kind and name; the rest of the inventory goes. Kinds verify cannot read the
/// events of are a usage error.
async fn read_verifiable(
    client: &Client,
    query: &Query<'_>,
) -> Result<(Vec<Assessment>, BTreeMap<WorkloadKey, Workload>)> {
    let inventory = Inventory::collect(client, query).await?;
    let assessments = inventory.assess(&[]);
    if let Some(unsupported) = assessments.iter().find(|a| workload_type(a).is_none()) {
        return Err(Error::Usage(format!(
            "{}: verify reads Deployment and StatefulSet events only; watch it with kubectl get -w",
            unsupported.target()
        )));
    }
    let workloads = inventory
        .workloads
        .into_iter()
        .map(|w| ((w.namespace().to_string(), w.kind.clone(), w.name().to_string()), w))
        .collect();
    Ok((assessments, workloads))
}

/// Each workload's result from its history and live watch (either may be absent) and its end state.
fn judge_all(
    assessments: &[Assessment],
    histories: Option<Vec<History>>,
    lives: Option<Vec<Live>>,
    end_states: Vec<EndState>,
    args: &VerifyArgs,
) -> Vec<WorkloadResult> {
    let mut lives = lives.map(Vec::into_iter);
    let mut histories = histories.map(Vec::into_iter);
    assessments
        .iter()
        .zip(end_states)
        .map(|(a, end_state)| {
            let live = lives.as_mut().and_then(Iterator::next);
            let history = histories.as_mut().and_then(Iterator::next);
            judge(a, history, live, end_state, args)
        })
        .collect()
}

fn workload_type(assessment: &Assessment) -> Option<WorkloadType> {
    match (assessment.workload_kind.group.as_str(), assessment.kind.as_str()) {
        ("apps", "Deployment") => Some(WorkloadType::Deployment),
        ("apps", "StatefulSet") => Some(WorkloadType::StatefulSet),
        _ => None,
    }
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
        workload_type: WorkloadType,
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

/// The verdict of one workload from what was seen; pure.
fn judge(
    assessment: &Assessment,
    history: Option<History>,
    live: Option<Live>,
    end_state: EndState,
    args: &VerifyArgs,
) -> WorkloadResult {
    let drops = || history.iter().flat_map(|h| h.drops.iter()).chain(live.iter().flat_map(|l| l.drops.iter()));
    let inconclusive = inconclusive_reasons(history.as_ref(), live.as_ref(), args);
    let (outcome, reason) = if let Some(first) = drops().find(|d| d.is_failure()) {
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
        (Outcome::Pass, pass_reason(drops(), args.floor, &end_state))
    };
    WorkloadResult {
        namespace: assessment.namespace.clone(),
        kind: assessment.kind.clone(),
        name: assessment.name.clone(),
        outcome,
        reason,
        floor: args.floor,
        history,
        live,
        end_state,
    }
}

/// Why the evidence cannot prove that replicas held: history that does not reach back over the
/// period, no scaling event at all, an old event format, gaps in the replay, watch gaps not
/// ruled out.
fn inconclusive_reasons(history: Option<&History>, live: Option<&Live>, args: &VerifyArgs) -> Vec<String> {
    let mut inconclusive = Vec::new();
    if let Some(h) = history {
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
    if let Some(l) = live {
        if l.unresolved_gaps > 0 {
            inconclusive.push(format!("{} watch gap(s) could not be ruled out", l.unresolved_gaps));
        }
        for drop in &l.drops {
            if let Cause::Unresolved { reason } = &drop.cause {
                inconclusive
                    .push(format!("the drop {} -> {} at {} is unresolved: {reason}", drop.from, drop.to, drop.time));
            }
        }
    }
    inconclusive
}

/// A pass, in words: replicas never reached the floor, or only as an autoscaler ordered.
fn pass_reason<'a>(drops: impl Iterator<Item = &'a Drop>, floor: i64, end_state: &EndState) -> String {
    let ordered: Vec<String> =
        drops.map(|d| format!("{} -> {} at {}: {}", d.from, d.to, d.time, cause_text(&d.cause))).collect();
    let how = if ordered.is_empty() {
        format!("replicas never went to {floor} or below in the period")
    } else {
        format!("replicas went to {floor} or below only as an autoscaler ordered ({})", ordered.join("; "))
    };
    format!("{how}, and {}", end_state.reason)
}

/// The Events and ReplicaSets of the namespaces the workloads are in: one LIST per kind and
/// namespace, however many workloads are verified, filtered locally.
struct Evidence {
    events: BTreeMap<String, Vec<EventRecord>>,
    replica_sets: BTreeMap<String, Vec<ReplicaSet>>,
}

impl Evidence {
    async fn read(client: &Client, assessments: &[Assessment]) -> Result<Self> {
        let namespaces: std::collections::BTreeSet<&str> = assessments.iter().map(|a| a.namespace.as_str()).collect();
        let with_deployments: std::collections::BTreeSet<&str> = assessments
            .iter()
            .filter(|a| workload_type(a) == Some(WorkloadType::Deployment))
            .map(|a| a.namespace.as_str())
            .collect();
        let events = futures::future::try_join_all(
            namespaces.iter().map(|ns| async move { Ok::<_, Error>((ns.to_string(), list_events(client, ns).await?)) }),
        );
        let replica_sets = futures::future::try_join_all(with_deployments.iter().map(|ns| async move {
            let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
            let sets = kubeio::list_reduced(&api, &ListParams::default(), reduce_replica_set).await.map_err(|e| {
                kubeio::classify_error(e, "list", "replicasets.apps", &NamespaceScope::Namespace(ns.to_string()))
            })?;
            Ok::<_, Error>((ns.to_string(), sets))
        }));
        let (events, replica_sets) = futures::try_join!(events, replica_sets)?;
        Ok(Self { events: events.into_iter().collect(), replica_sets: replica_sets.into_iter().collect() })
    }
}

/// Of a ReplicaSet, what [`current_sizes`] reads: its name, owners and size.
fn reduce_replica_set(set: ReplicaSet) -> Option<ReplicaSet> {
    let metadata =
        ObjectMeta { name: set.metadata.name, owner_references: set.metadata.owner_references, ..Default::default() };
    let spec = set.spec.map(|s| ReplicaSetSpec { replicas: s.replicas, ..Default::default() });
    Some(ReplicaSet { metadata, spec, status: None })
}

/// The namespace's Events as records, each page reduced as it arrives.
async fn list_events(client: &Client, namespace: &str) -> Result<Vec<EventRecord>> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let scope = NamespaceScope::Namespace(namespace.to_string());
    kubeio::list_reduced(&api, &ListParams::default(), |event| EventRecord::from_event(&event))
        .await
        .map_err(|e| kubeio::classify_error(e, "list", "events", &scope))
}

/// The current size of each ReplicaSet the Deployment owns, or the StatefulSet's replicas.
fn current_sizes(
    assessment: &Assessment,
    kind: WorkloadType,
    uid: &str,
    replica_sets: &[ReplicaSet],
) -> BTreeMap<String, i64> {
    match kind {
        WorkloadType::StatefulSet => {
            BTreeMap::from([(assessment.name.clone(), assessment.replicas.status.unwrap_or_default())])
        }
        WorkloadType::Deployment => replica_sets
            .iter()
            .filter(|rs| rs.metadata.owner_references.iter().flatten().any(|o| o.uid == uid))
            .map(|rs| {
                let size = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                (rs.metadata.name.clone().unwrap_or_default(), i64::from(size))
            })
            .collect(),
    }
}

fn history(assessment: &Assessment, workload: Option<&Workload>, evidence: &Evidence, args: &VerifyArgs) -> History {
    let kind = workload_type(assessment).expect("checked before");
    let now = Timestamp::now();
    let ttl = SignedDuration::try_from(args.event_ttl.0).unwrap_or(SignedDuration::MAX);
    let metadata = workload.map(|w| &w.metadata);
    let created = metadata.and_then(|m| m.creation_timestamp.as_ref()).map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH);
    let uid = metadata.and_then(|m| m.uid.as_deref()).unwrap_or_default();
    let evidence_from = created.max(now - ttl);
    let from = match &args.since {
        Some(since) => now - SignedDuration::try_from(since.0).unwrap_or(SignedDuration::MAX),
        None => evidence_from,
    };
    // A period that starts before the workload existed is covered from its creation on.
    let covered = from.max(created) >= evidence_from;
    let events = evidence.events.get(&assessment.namespace).map(Vec::as_slice).unwrap_or_default();
    let sets = evidence.replica_sets.get(&assessment.namespace).map(Vec::as_slice).unwrap_or_default();
    let current = current_sizes(assessment, kind, uid, sets);
    let explainers = Explainers::of(assessment);
    let subjects = explainers.subjects(assessment, kind, Some(created));
    let timeline = timeline::rebuild(events, &subjects, &current, from, now);
    let drops = timeline::drops(&timeline, args.floor);
    History { from, to: now, evidence_from, covered, timeline, drops }
}

/// Each workload's state at the end: at or above the floor, an autoscaler in charge, no deploy
/// mechanism owning replicas (`check`'s analysis, read fresh, once for all of them).
async fn end_states(
    client: &Client,
    assessments: &[Assessment],
    backup_dir: &std::path::Path,
    floor: i64,
) -> Result<Vec<EndState>> {
    let mut by_namespace: BTreeMap<&str, Vec<crate::commands::Target>> = BTreeMap::new();
    for a in assessments {
        by_namespace
            .entry(a.namespace.as_str())
            .or_default()
            .push(crate::commands::Target { type_name: a.workload_kind.command_name(), name: a.name.clone() });
    }
    let mut now: Vec<Assessment> = Vec::new();
    for (namespace, targets) in &by_namespace {
        let scope = NamespaceScope::Namespace(namespace.to_string());
        let query = Query { scope: &scope, selector: None, targets, all_workloads: false, backup_dir };
        now.extend(check::report(client, &query).await?.workloads);
    }
    assessments
        .iter()
        .map(|a| {
            let current = now
                .iter()
                .find(|n| n.namespace == a.namespace && n.kind == a.kind && n.name == a.name)
                .ok_or_else(|| Error::NotFound {
                    kind: a.workload_kind.command_name(),
                    name: a.name.clone(),
                    namespace: a.namespace.clone(),
                })?;
            Ok(end_state(current, floor))
        })
        .collect()
}

fn end_state(now: &Assessment, floor: i64) -> EndState {
    let mut problems = Vec::new();
    let mut reason = now.reason.clone();
    // A ScaledObject in charge that KEDA has scaled to its idle size (0, or idleReplicaCount):
    // at the floor by design, and KEDA activates it again.
    let idle = now
        .autoscalers
        .iter()
        .filter_map(|a| a.keda.as_ref())
        .find(|k| !k.paused && k.idle_size().is_some() && k.idle_size() == now.replicas.spec);
    match now.replicas.spec {
        Some(r) if r <= floor && now.verdict == Verdict::Safe && idle.is_some() => {
            let keda = idle.expect("matched");
            reason = format!(
                "{reason}; at {r}, ScaledObject {}'s idle size, while its triggers are idle",
                keda.scaled_object
            );
        }
        Some(r) if r <= floor => {
            problems.push(format!("the workload is at {r} replicas now, at or below the floor {floor}"))
        }
        _ => {}
    }
    match now.verdict {
        Verdict::Safe => {}
        Verdict::StripNeeded => {
            problems.push(format!("{}; the next deploy without replicas would reset it: {}", now.reason, now.next))
        }
        _ => problems.push(format!("{} ({})", now.reason, now.verdict.as_str())),
    }
    EndState { verdict: now.verdict, reason, replicas: now.replicas.spec, ok: problems.is_empty(), problems }
}

struct WatchState {
    spec: Option<i64>,
    status: Option<i64>,
    ready: Option<i64>,
    generation: Option<i64>,
}

fn state_of(object: &DynamicObject) -> WatchState {
    let int = |p: &str| object.data.pointer(p).and_then(Value::as_i64);
    WatchState {
        spec: int("/spec/replicas"),
        status: int("/status/replicas"),
        ready: int("/status/readyReplicas").or(int("/status/replicas").map(|_| 0)),
        generation: object.metadata.generation,
    }
}

fn lower(current: &mut Option<i64>, value: Option<i64>) {
    if let Some(value) = value {
        *current = Some(current.map_or(value, |c| c.min(value)));
    }
}

/// What the live watch has seen so far.
#[derive(Default)]
struct Watched {
    state: Option<WatchState>,
    minimum: Minimum,
    gaps: Vec<String>,
    unresolved_gaps: usize,
    drops: Vec<Drop>,
    /// When the connection broke and why, until the watch is back.
    open_gap: Option<(Timestamp, String)>,
    /// The object a re-list under way has returned so far.
    relisted: Option<DynamicObject>,
    /// Drops seen live whose cause the evidence does not tell yet.
    pending: Vec<LiveDrop>,
    /// What has been seen of the workload's autoscalers: HPA statuses and Events.
    witness: Witness,
    /// The HPAs a re-list under way of their watch has returned so far.
    hpas_relisted: BTreeSet<String>,
}

/// The workload watched, the floor its drops are judged against, the autoscalers that may
/// explain them and the client that reads their evidence.
struct WatchTarget<'a> {
    client: &'a Client,
    assessment: &'a Assessment,
    floor: i64,
    explainers: Explainers,
}

impl<'a> WatchTarget<'a> {
    fn new(client: &'a Client, assessment: &'a Assessment, floor: i64) -> Self {
        Self { client, assessment, floor, explainers: Explainers::of(assessment) }
    }

    fn subjects(&self) -> Subjects<'_> {
        let kind = workload_type(self.assessment).unwrap_or(WorkloadType::Deployment);
        self.explainers.subjects(self.assessment, kind, None)
    }
}

/// What the autoscalers' watches told: an HPA's change (by the name watched) or an Event.
enum Witnessed {
    Hpa(String, Box<watcher::Result<watcher::Event<HorizontalPodAutoscaler>>>),
    Event(EventRecord),
}

/// What the watch loop does after an event.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// Nothing new about the object yet (a broken connection, a re-list under way).
    Continue,
    /// The object's state was observed.
    Observed,
    /// The watch is over: a drop no autoscaler ordered, or the workload is gone.
    Stop,
}

impl Watched {
    /// Handles one event of the `watcher` stream by the gap rules of [`watch`].
    async fn on_event(
        &mut self,
        event: watcher::Result<watcher::Event<DynamicObject>>,
        target: &WatchTarget<'_>,
    ) -> Result<Flow> {
        let object = match event {
            Err(error) => {
                self.broke(&error, target.assessment)?;
                return Ok(Flow::Continue);
            }
            Ok(watcher::Event::Init) => {
                self.relisted = None;
                return Ok(Flow::Continue);
            }
            Ok(watcher::Event::InitApply(object)) => {
                self.relisted = Some(object);
                return Ok(Flow::Continue);
            }
            Ok(watcher::Event::InitDone) => {
                let Some(object) = self.relisted.take() else {
                    return self.gone_after_relist(target.assessment);
                };
                self.close_gap(&state_of(&object), target).await?;
                // A failure always stops the watch, so one here is the Events' in the gap.
                if self.drops.iter().any(Drop::is_failure) {
                    return Ok(Flow::Stop);
                }
                object
            }
            Ok(watcher::Event::Apply(object)) => {
                self.resumed();
                object
            }
            Ok(watcher::Event::Delete(_)) => {
                self.gaps.push(format!("the workload was deleted at {}", Timestamp::now()));
                self.unresolved_gaps += 1;
                return Ok(Flow::Stop);
            }
        };
        Ok(self.changed(&object, target))
    }

    /// A broken connection opens a gap (once, until the watch is back); an error no reconnect
    /// can cure (the workload's API or the right to watch it gone) ends the watch.
    fn broke(&mut self, error: &watcher::Error, assessment: &Assessment) -> Result<()> {
        if let Some(fatal) = fatal_watch_error(error, &assessment.workload_kind.plural, &namespace_of(assessment)) {
            return Err(fatal);
        }
        if self.open_gap.is_none() {
            self.gaps.push(format!("the watch broke at {}: {error}", Timestamp::now()));
            self.open_gap = Some((Timestamp::now(), error.to_string()));
        }
        Ok(())
    }

    /// A watch resumed from its last resourceVersion: the API server replays every change since,
    /// so an open gap is ruled out.
    fn resumed(&mut self) {
        if let Some((since, _)) = self.open_gap.take() {
            self.gaps.push(format!(
                "ruled out: the watch resumed after the gap from {since} at its last resourceVersion, and the API server replayed every change since"
            ));
        }
    }

    /// A re-list that found no workload: never there is [`Error::NotFound`], gone since ends
    /// the watch with an unresolved gap.
    fn gone_after_relist(&mut self, assessment: &Assessment) -> Result<Flow> {
        if self.state.is_none() {
            return Err(Error::NotFound {
                kind: assessment.workload_kind.command_name(),
                name: assessment.name.clone(),
                namespace: assessment.namespace.clone(),
            });
        }
        self.gaps.push(format!("the workload is gone after a re-list at {}", Timestamp::now()));
        self.unresolved_gaps += 1;
        Ok(Flow::Stop)
    }

    /// Observes the object's new state; a step from above the floor to it is a drop, pending
    /// until the evidence decides it ([`Watched::decide_pending`]).
    fn changed(&mut self, object: &DynamicObject, target: &WatchTarget<'_>) -> Flow {
        if let Some((from, to)) = self.observe(state_of(object))
            && from > target.floor
            && to <= target.floor
        {
            self.pending.push(LiveDrop { seen: Timestamp::now(), from, to });
        }
        Flow::Observed
    }

    /// Records what an autoscaler's watch told. An HPA watch refused for good (credentials,
    /// RBAC) ends the watch like the workload's; other errors are retried by the watcher.
    fn witnessed(&mut self, witnessed: Witnessed, target: &WatchTarget<'_>) -> Result<()> {
        let now = Timestamp::now();
        let (name, event) = match witnessed {
            Witnessed::Event(record) => {
                self.witness.record_event(record, &target.subjects());
                return Ok(());
            }
            Witnessed::Hpa(name, event) => (name, event),
        };
        match *event {
            Err(error) => {
                let namespace = namespace_of(target.assessment);
                if let Some(fatal) = fatal_watch_error(&error, "horizontalpodautoscalers.autoscaling", &namespace) {
                    return Err(fatal);
                }
            }
            Ok(watcher::Event::Init) => {
                self.hpas_relisted.remove(&name);
            }
            Ok(watcher::Event::InitApply(hpa)) => {
                self.hpas_relisted.insert(name);
                self.witness.record_hpa(&hpa, now);
            }
            Ok(watcher::Event::InitDone) => {
                if !self.hpas_relisted.contains(&name) {
                    self.witness.record_absent(&name, now);
                }
            }
            Ok(watcher::Event::Apply(hpa)) => self.witness.record_hpa(&hpa, now),
            Ok(watcher::Event::Delete(_)) => self.witness.record_absent(&name, now),
        }
        Ok(())
    }

    /// Decides the pending drops the evidence now tells. A drop no autoscaler ordered stops
    /// the watch.
    fn decide_pending(&mut self, target: &WatchTarget<'_>) -> Flow {
        let subjects = target.subjects();
        let now = Timestamp::now();
        let mut flow = Flow::Observed;
        let mut still_pending = Vec::new();
        for drop in std::mem::take(&mut self.pending) {
            match attribution::decide(&drop, &subjects, &self.witness, now) {
                Attribution::Decided(cause, decided) => {
                    if cause == Cause::Unordered {
                        flow = Flow::Stop;
                    }
                    self.drops.push(live_drop(target.assessment, &drop, cause, decided));
                }
                Attribution::Pending => still_pending.push(drop),
            }
        }
        self.pending = still_pending;
        flow
    }

    /// When the wait for the pending drops' evidence ends: [`STATUS_CATCH_UP`] after the latest
    /// of them, and not before now.
    fn catch_up_deadline(&self) -> tokio::time::Instant {
        let now = Timestamp::now();
        let until = self.pending.iter().map(|d| d.seen + STATUS_CATCH_UP).max().unwrap_or(now);
        let left = Duration::try_from(until.duration_since(now)).unwrap_or_default();
        tokio::time::Instant::now() + left
    }

    /// The drops still pending after the wait: unresolved, neither a pass nor a failure.
    fn give_up_pending(&mut self, target: &WatchTarget<'_>) {
        let now = Timestamp::now();
        for drop in std::mem::take(&mut self.pending) {
            let (cause, decided) = attribution::unresolved(&drop, &self.witness, now, STATUS_CATCH_UP);
            self.drops.push(live_drop(target.assessment, &drop, cause, decided));
        }
    }

    fn observe(&mut self, next: WatchState) -> Option<(i64, i64)> {
        lower(&mut self.minimum.spec, next.spec);
        lower(&mut self.minimum.status, next.status);
        lower(&mut self.minimum.ready, next.ready);
        let step = match (self.state.as_ref().and_then(|s| s.spec), next.spec) {
            (Some(before), Some(after)) => Some((before, after)),
            _ => None,
        };
        self.state = Some(next);
        step
    }

    /// Closes an open gap (if any) on the object as re-read: by the generation rule, else by
    /// the Events.
    async fn close_gap(&mut self, after: &WatchState, target: &WatchTarget<'_>) -> Result<()> {
        if let Some(since) = self.close_gap_by_generation(after) {
            self.rule_in(drops_in_gap(target, since).await?);
        }
        Ok(())
    }

    /// Closes an open gap on the object as re-listed: ruled out when its generation did not
    /// move across it (every change of spec.replicas bumps it). Otherwise returns when the gap
    /// began, for the Events to rule it in.
    fn close_gap_by_generation(&mut self, after: &WatchState) -> Option<Timestamp> {
        let (since, _) = self.open_gap.take()?;
        let before = self.state.as_ref().and_then(|s| s.generation);
        if before.is_some() && before == after.generation {
            self.gaps.push(format!(
                "ruled out: the generation did not move across the gap from {since}, so spec.replicas did not change"
            ));
            return None;
        }
        self.gaps.push(format!(
            "the generation moved from {} to {} across the gap from {since}",
            count(before),
            count(after.generation)
        ));
        Some(since)
    }

    /// Rules a gap in from the Events: a drop they show in it is reported like one seen live;
    /// without one the gap stays unresolved (Events are best effort).
    fn rule_in(&mut self, drops: Vec<Drop>) {
        if drops.is_empty() {
            self.unresolved_gaps += 1;
            self.gaps.push("not ruled out: the Events show no drop in the gap, but they are best effort".into());
        } else {
            self.gaps.push(format!("ruled in: the Events show {} drop(s) in the gap", drops.len()));
            for drop in &drops {
                lower(&mut self.minimum.spec, Some(drop.to));
            }
            self.drops.extend(drops);
        }
    }

    /// A gap still open when the window ends (no event since the connection broke): reads the
    /// object once more to close it, or finds the server still unreachable.
    async fn close_gap_at_end(&mut self, api: &Api<DynamicObject>, target: &WatchTarget<'_>) -> Result<()> {
        if self.open_gap.is_none() {
            return Ok(());
        }
        let assessment = target.assessment;
        let object = api.get(&assessment.name).await.map_err(|e| {
            kubeio::classify_error(e, "get", &assessment.workload_kind.plural, &namespace_of(assessment))
        })?;
        let after = state_of(&object);
        self.close_gap(&after, target).await?;
        self.observe(after);
        Ok(())
    }

    /// The live line: the workload's replicas as last seen, and the minimum so far.
    fn show(&self, bar: &indicatif::ProgressBar, label: &str) {
        if let Some(state) = &self.state {
            bar.set_message(format!(
                "{label}: replicas {} (status {}, ready {}), minimum {}",
                count(state.spec),
                count(state.status),
                count(state.ready),
                count(self.minimum.spec)
            ));
        }
    }

    fn into_live(mut self, started: Timestamp, ended: Timestamp) -> Live {
        self.drops.sort_by_key(|d| d.time);
        Live {
            started,
            ended,
            minimum: self.minimum,
            gaps: self.gaps,
            unresolved_gaps: self.unresolved_gaps,
            drops: self.drops,
        }
    }
}

/// Watches the workload for `duration` through kube-runtime's `watcher`, which reconnects with
/// backoff when the connection breaks (an API server restart) and re-lists after `410 Gone`,
/// and beside it the HPAs that may explain a drop (and, once a drop is pending, the namespace's
/// Events). A drop is decided by evidence ([`attribution`]): the watch stops at the first one
/// no autoscaler ordered. A broken connection opens a gap: a watch that resumes from its last
/// resourceVersion replays every change since, so nothing was missed; a re-list closes it by
/// the generation rule. A server still unreachable when the window ends is
/// [`Error::Unreachable`]. `stop` ends the watch early (the guided flow's "the deploy was
/// seen"). Drops still pending when the window ends wait up to [`STATUS_CATCH_UP`] after they
/// were seen for their evidence, and are reported unresolved without it.
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
    let config = watcher::Config::default().fields(&format!("metadata.name={}", assessment.name));
    let mut stream = std::pin::pin!(watcher::watcher(api.clone(), config).backoff(ReconnectBackoff::new()));
    let started = Timestamp::now();
    let deadline = tokio::time::Instant::now() + duration;
    let target = WatchTarget::new(client, assessment, floor);
    let mut hpas = hpa_watches(client, &assessment.namespace, &target.explainers.hpas);
    let mut events = None;
    let mut seen = Watched::default();
    let bar = live_line(printer, assessment);
    let label = format!("{}/{}", assessment.namespace, assessment.target());

    loop {
        if events.is_none() && !seen.pending.is_empty() {
            events = Some(namespace_events(client, &assessment.namespace).boxed());
        }
        let flow = tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep_until(deadline) => break,
            event = stream.next() => match event {
                Some(event) => seen.on_event(event, &target).await?,
                None => break,
            },
            witnessed = next_witnessed(&mut hpas, &mut events) => {
                seen.witnessed(witnessed, &target)?;
                Flow::Continue
            }
        };
        if let (Flow::Observed, Some(bar)) = (&flow, &bar) {
            seen.show(bar, &label);
        }
        if flow == Flow::Stop || seen.decide_pending(&target) == Flow::Stop {
            break;
        }
    }
    let ended = Timestamp::now();
    seen.close_gap_at_end(&api, &target).await?;
    if !seen.pending.is_empty() {
        if let Some(bar) = &bar {
            bar.set_message(format!(
                "{label}: a drop seen, waiting for its autoscaler's status to tell who ordered it"
            ));
        }
        if events.is_none() {
            events = Some(namespace_events(client, &assessment.namespace).boxed());
        }
        let until = seen.catch_up_deadline();
        while !seen.pending.is_empty() {
            tokio::select! {
                () = tokio::time::sleep_until(until) => break,
                witnessed = next_witnessed(&mut hpas, &mut events) => seen.witnessed(witnessed, &target)?,
            }
            seen.decide_pending(&target);
        }
        seen.give_up_pending(&target);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(seen.into_live(started, ended))
}

/// How long a drop seen live may wait for the evidence that decides it (counted from the drop,
/// waited for once the window is over). The HPA controller reconciles every HPA once per sync
/// period (`--horizontal-pod-autoscaler-sync-period`, 15 s by default) and writes its status in
/// that reconcile through its own client, not behind its event recorder: one period brings
/// either its order or a `currentReplicas` of the new size. Two periods cover a reconcile
/// already under way when the drop landed and a busy work queue; the attribution window covers
/// the status write on a loaded API server. A controller that cannot reconcile (stopped,
/// unable to read the target) leaves the drop unresolved: neither a pass nor a false alarm.
const STATUS_CATCH_UP: Duration = Duration::from_secs(2 * 15 + 10);

/// The workload's HPAs, each watched by name (a ScaledObject's HPA may not exist yet), with
/// the same reconnection backoff as the workload's watch.
fn hpa_watches(client: &Client, namespace: &str, names: &[String]) -> SelectAll<BoxStream<'static, HpaWatchItem>> {
    futures::stream::select_all(names.iter().map(|name| {
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let name = name.clone();
        watcher::watcher(api, config)
            .backoff(ReconnectBackoff::new())
            .map(move |event| (name.clone(), Box::new(event)))
            .boxed()
    }))
}

type HpaWatchItem = (String, Box<watcher::Result<watcher::Event<HorizontalPodAutoscaler>>>);

/// The next thing the autoscalers' watches tell; never ready while neither has anything.
async fn next_witnessed(
    hpas: &mut SelectAll<BoxStream<'static, HpaWatchItem>>,
    events: &mut Option<BoxStream<'_, EventRecord>>,
) -> Witnessed {
    let next_event = async {
        match events {
            Some(events) => events.next().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        Some((name, event)) = hpas.next() => Witnessed::Hpa(name, event),
        Some(record) = next_event => Witnessed::Event(record),
        else => std::future::pending().await,
    }
}

/// A drop seen live, with its decided cause.
fn live_drop(assessment: &Assessment, drop: &LiveDrop, cause: Cause, decided: Decided) -> Drop {
    let LiveDrop { seen, from, to } = *drop;
    Drop {
        time: seen,
        from,
        to,
        cause,
        evidence: format!("watch: {}/{} spec.replicas {from} -> {to}", assessment.namespace, assessment.target()),
        decided: Some(decided),
    }
}

/// The watch's reconnection backoff: jittered, 250 ms doubling to 2 s and no limit on attempts
/// (the window bounds them), so a watch is back within about 2 s of the API server.
struct ReconnectBackoff(backon::ExponentialBackoff);

impl ReconnectBackoff {
    fn new() -> Self {
        use backon::BackoffBuilder;
        let builder = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .without_max_times();
        Self(builder.build())
    }
}

impl Iterator for ReconnectBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        self.0.next()
    }
}

impl kube::runtime::utils::Backoff for ReconnectBackoff {
    fn reset(&mut self) {
        *self = Self::new();
    }
}

/// The drops the Events show from `since` on (with the attribution window before it, so an
/// order just before the gap still explains a drop in it). Events are written after the fact,
/// so this waits up to the attribution window for them, returning as soon as a drop is seen.
async fn drops_in_gap(target: &WatchTarget<'_>, since: Timestamp) -> Result<Vec<Drop>> {
    let subjects = target.subjects();
    let from = since - timeline::ATTRIBUTION_WINDOW;
    let drops_in = |events: &[EventRecord]| {
        let seen = timeline::rebuild(events, &subjects, &BTreeMap::new(), from, Timestamp::now());
        timeline::drops(&seen, target.floor).into_iter().filter(|d| d.time >= since).collect::<Vec<_>>()
    };
    let found = first_in_events(target.client, &target.assessment.namespace, attribution_wait(), |events| {
        Some(drops_in(events)).filter(|drops| !drops.is_empty())
    });
    Ok(found.await.unwrap_or_default())
}

/// The first thing `find` finds in the namespace's Events, as they are listed and then arrive
/// (each look sees every Event so far), or `None` once `wait` is over.
async fn first_in_events<T>(
    client: &Client,
    namespace: &str,
    wait: Duration,
    mut find: impl FnMut(&[EventRecord]) -> Option<T>,
) -> Option<T> {
    let mut events = std::pin::pin!(namespace_events(client, namespace));
    let mut known: Vec<EventRecord> = Vec::new();
    tokio::time::timeout(wait, async {
        while let Some(event) = events.next().await {
            known.push(event);
            if let Some(found) = find(&known) {
                return Some(found);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// The namespace's Events as they are listed and then arrive, through the runtime's watcher.
fn namespace_events(client: &Client, namespace: &str) -> impl futures::Stream<Item = EventRecord> + Send + use<> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    watcher::watcher(api, watcher::Config::default())
        .backoff(ReconnectBackoff::new())
        .applied_objects()
        .filter_map(|event| std::future::ready(event.ok().as_ref().and_then(EventRecord::from_event)))
}

fn attribution_wait() -> Duration {
    Duration::try_from(timeline::ATTRIBUTION_WINDOW).unwrap_or(Duration::from_secs(10))
}

fn namespace_of(assessment: &Assessment) -> NamespaceScope {
    NamespaceScope::Namespace(assessment.namespace.clone())
}

/// Watch errors that waiting will not cure: rejected credentials and RBAC refusals end the
/// watch at once; anything else (a refused connection, a restart, 410) is retried.
fn fatal_watch_error(error: &watcher::Error, resource: &str, namespace: &NamespaceScope) -> Option<Error> {
    let status = match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status,
        _ => return None,
    };
    matches!(status.code, 401 | 403).then(|| {
        let source = kube::Error::Api(status.clone());
        kubeio::classify_error(source, "watch", resource, namespace)
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
            format!("{scaled_object} went idle (KEDA scales an idle workload down by design); not a failure")
        }
        Cause::KedaPaused { scaled_object, replicas } => {
            format!(
                "{scaled_object} was paused at autoscaling.keda.sh/paused-replicas {replicas} (KEDA scaled it); not a failure"
            )
        }
        Cause::Unordered => "no autoscaler ordered it: a deploy tool or a person reset replicas".into(),
        Cause::Unresolved { reason } => format!("unresolved: {reason}"),
    }
}
