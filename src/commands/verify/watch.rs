//! `verify --watch`: the workload watched live beside its HPAs, a drop decided by the evidence
//! as it arrives ([`attribution`]), and watch gaps ruled out or in.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Event;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use super::{Explainers, Live, Minimum, workload_type};
use crate::core::attribution::{self, Attribution, Decided, LiveDrop, Witness};
use crate::core::timeline::{self, Cause, EventRecord, ReplicaDrop, Subjects};
use crate::core::verdict::Assessment;
use crate::core::workload::AppsKind;
use crate::error::{Error, Result};
use crate::kubeio::{self, NamespaceScope};
use crate::output::{Printer, count};

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
    drops: Vec<ReplicaDrop>,
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
/// explain them.
struct WatchTarget<'a> {
    assessment: &'a Assessment,
    floor: i64,
    explainers: Explainers,
}

impl<'a> WatchTarget<'a> {
    fn new(assessment: &'a Assessment, floor: i64) -> Self {
        Self { assessment, floor, explainers: Explainers::of(assessment) }
    }

    fn subjects(&self) -> Subjects<'_> {
        let kind = workload_type(self.assessment).unwrap_or(AppsKind::Deployment);
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
    /// Handles one event of the `watcher` stream by the gap rules of [`watch`] (`client` reads
    /// the Events of a gap the generation rule cannot close).
    async fn on_event(
        &mut self,
        event: watcher::Result<watcher::Event<DynamicObject>>,
        target: &WatchTarget<'_>,
        client: &Client,
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
                self.close_gap(&state_of(&object), target, client).await?;
                // A failure always stops the watch, so one here is the Events' in the gap.
                if self.drops.iter().any(ReplicaDrop::is_failure) {
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
    async fn close_gap(&mut self, after: &WatchState, target: &WatchTarget<'_>, client: &Client) -> Result<()> {
        if let Some(since) = self.close_gap_by_generation(after) {
            self.rule_in(drops_in_gap(client, target, since).await?);
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
    fn rule_in(&mut self, drops: Vec<ReplicaDrop>) {
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
    async fn close_gap_at_end(
        &mut self,
        api: &Api<DynamicObject>,
        target: &WatchTarget<'_>,
        client: &Client,
    ) -> Result<()> {
        if self.open_gap.is_none() {
            return Ok(());
        }
        let assessment = target.assessment;
        let object = api.get(&assessment.name).await.map_err(|e| {
            kubeio::classify_error(e, "get", &assessment.workload_kind.plural, &namespace_of(assessment))
        })?;
        let after = state_of(&object);
        self.close_gap(&after, target, client).await?;
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
    lines: &LiveLines,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Live> {
    let mut stop = std::pin::pin!(stop);
    let api = kubeio::workload_api(client, &assessment.workload_kind, &assessment.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", assessment.name));
    let mut stream = std::pin::pin!(watcher::watcher(api.clone(), config).backoff(ReconnectBackoff::new()));
    let started = Timestamp::now();
    let deadline = tokio::time::Instant::now() + duration;
    let target = WatchTarget::new(assessment, floor);
    let mut hpas = hpa_watches(client, &assessment.namespace, &target.explainers.hpas);
    let mut events = None;
    let mut seen = Watched::default();
    let bar = live_line(lines, assessment);
    let label = format!("{}/{}", assessment.namespace, assessment.target());

    loop {
        if events.is_none() && !seen.pending.is_empty() {
            events = Some(namespace_events(client, &assessment.namespace).boxed());
        }
        let flow = tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep_until(deadline) => break,
            event = stream.next() => match event {
                Some(event) => seen.on_event(event, &target, client).await?,
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
    seen.close_gap_at_end(&api, &target, client).await?;
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
fn live_drop(assessment: &Assessment, drop: &LiveDrop, cause: Cause, decided: Decided) -> ReplicaDrop {
    let LiveDrop { seen, from, to } = *drop;
    ReplicaDrop {
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
async fn drops_in_gap(client: &Client, target: &WatchTarget<'_>, since: Timestamp) -> Result<Vec<ReplicaDrop>> {
    let subjects = target.subjects();
    let from = since - timeline::ATTRIBUTION_WINDOW;
    let drops_in = |events: &[EventRecord]| {
        let seen = timeline::rebuild(events, &subjects, &BTreeMap::new(), from, Timestamp::now());
        timeline::drops(&seen, target.floor).into_iter().filter(|d| d.time >= since).collect::<Vec<_>>()
    };
    let found = first_in_events(client, &target.assessment.namespace, attribution_wait(), |events| {
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

/// The live lines of the workloads watched side by side, one each, drawn together on a
/// terminal (none elsewhere).
pub struct LiveLines(Option<indicatif::MultiProgress>);

impl LiveLines {
    pub fn new(printer: &Printer) -> Self {
        Self(printer.stderr_is_terminal().then(indicatif::MultiProgress::new))
    }
}

fn live_line(lines: &LiveLines, assessment: &Assessment) -> Option<indicatif::ProgressBar> {
    let bar = lines.0.as_ref()?.add(indicatif::ProgressBar::new_spinner());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
        bar.set_style(style);
    }
    bar.set_message(format!("{}/{}: watching", assessment.namespace, assessment.target()));
    bar.enable_steady_tick(Duration::from_millis(250));
    Some(bar)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    use super::*;
    use crate::core::attribution::Basis;
    use crate::core::fixtures::{deployment, hpa, load};
    use crate::core::{Cluster, analyze};

    /// The captured Deployment `web`, with the captured HPA (min 3) targeting it, or alone.
    fn assessed(with_hpa: bool) -> Assessment {
        let workload = deployment("hpa-rescaled");
        let hpas = [hpa("hpa-min3-rescaled", workload.namespace(), workload.name())];
        let hpas: &[_] = if with_hpa { &hpas } else { &[] };
        analyze(&workload, &Cluster { hpas, ..Cluster::default() })
    }

    fn object(replicas: i64, generation: i64) -> DynamicObject {
        DynamicObject {
            types: None,
            metadata: ObjectMeta { name: Some("web".into()), generation: Some(generation), ..Default::default() },
            data: json!({"spec": {"replicas": replicas}, "status": {"replicas": replicas, "readyReplicas": replicas}}),
        }
    }

    /// The captured HPA, its status as the controller writes it in the reconcile that scales.
    fn hpa_status(current: i32, desired: i32, last_scale: Timestamp) -> HorizontalPodAutoscaler {
        let mut hpa: HorizontalPodAutoscaler = serde_json::from_value(load("hpa-min3-rescaled")).unwrap();
        let status = hpa.status.as_mut().unwrap();
        status.current_replicas = Some(current);
        status.desired_replicas = desired;
        status.last_scale_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(last_scale));
        hpa
    }

    /// The workload seen at 5, then at 1: a drop to the floor.
    fn drop_five_to_one(seen: &mut Watched, target: &WatchTarget<'_>) {
        seen.changed(&object(5, 1), target);
        seen.changed(&object(1, 2), target);
    }

    fn hpa_event(event: watcher::Event<HorizontalPodAutoscaler>) -> Witnessed {
        Witnessed::Hpa("web".into(), Box::new(Ok(event)))
    }

    #[test]
    fn a_step_to_the_floor_is_pending_others_are_not_drops() {
        let a = assessed(true);
        let target = WatchTarget::new(&a, 1);
        let mut seen = Watched::default();
        assert_eq!(seen.changed(&object(5, 1), &target), Flow::Observed);
        assert_eq!(seen.changed(&object(3, 2), &target), Flow::Observed);
        assert!(seen.pending.is_empty(), "5 -> 3 stays above the floor");
        seen.changed(&object(1, 3), &target);
        assert_eq!(seen.pending.iter().map(|d| (d.from, d.to)).collect::<Vec<_>>(), vec![(3, 1)]);
        seen.changed(&object(0, 4), &target);
        assert_eq!(seen.pending.len(), 1, "1 -> 0 starts at the floor: no new drop");
        assert_eq!(seen.minimum.spec, Some(0));
    }

    #[test]
    fn without_an_autoscaler_a_drop_is_unordered_at_once_and_stops_the_watch() {
        let a = assessed(false);
        let target = WatchTarget::new(&a, 1);
        let mut seen = Watched::default();
        drop_five_to_one(&mut seen, &target);
        assert_eq!(seen.decide_pending(&target), Flow::Stop);
        assert!(seen.pending.is_empty());
        let decided = seen.drops[0].decided.as_ref().unwrap();
        assert_eq!((&seen.drops[0].cause, decided.by), (&Cause::Unordered, Basis::NoAutoscaler));
    }

    #[test]
    fn the_hpas_status_decides_its_own_order_and_the_watch_goes_on() {
        let a = assessed(true);
        let target = WatchTarget::new(&a, 1);
        let mut seen = Watched::default();
        seen.witnessed(hpa_event(watcher::Event::Init), &target).unwrap();
        seen.witnessed(hpa_event(watcher::Event::InitApply(hpa_status(5, 5, Timestamp::UNIX_EPOCH))), &target).unwrap();
        seen.witnessed(hpa_event(watcher::Event::InitDone), &target).unwrap();
        drop_five_to_one(&mut seen, &target);
        assert_eq!(seen.decide_pending(&target), Flow::Observed);
        assert_eq!(seen.pending.len(), 1, "an old status tells nothing");
        seen.witnessed(hpa_event(watcher::Event::Apply(hpa_status(5, 1, Timestamp::now()))), &target).unwrap();
        assert_eq!(seen.decide_pending(&target), Flow::Observed);
        assert!(matches!(&seen.drops[0].cause, Cause::Autoscaler { hpa, .. } if hpa == "hpa/web"), "{:?}", seen.drops);
        assert_eq!(seen.drops[0].decided.as_ref().map(|d| d.by), Some(Basis::HpaStatus));
    }

    #[test]
    fn an_hpa_reconcile_after_a_deploys_drop_decides_it_unordered() {
        let a = assessed(true);
        let target = WatchTarget::new(&a, 1);
        let mut seen = Watched::default();
        seen.witnessed(hpa_event(watcher::Event::InitApply(hpa_status(5, 5, Timestamp::UNIX_EPOCH))), &target).unwrap();
        drop_five_to_one(&mut seen, &target);
        assert_eq!(seen.decide_pending(&target), Flow::Observed);
        let rescaled_back = Timestamp::now() + jiff::SignedDuration::from_secs(1);
        seen.witnessed(hpa_event(watcher::Event::Apply(hpa_status(1, 3, rescaled_back))), &target).unwrap();
        assert_eq!(seen.decide_pending(&target), Flow::Stop);
        assert_eq!(seen.drops[0].cause, Cause::Unordered);
    }

    #[test]
    fn an_hpa_the_list_does_not_find_is_absent_a_deleted_one_too() {
        let a = assessed(true);
        let target = WatchTarget::new(&a, 1);
        let mut seen = Watched::default();
        seen.witnessed(hpa_event(watcher::Event::Init), &target).unwrap();
        seen.witnessed(hpa_event(watcher::Event::InitDone), &target).unwrap();
        assert!(matches!(seen.witness.presence.get("web"), Some(attribution::Presence::Absent { .. })));
        seen.witnessed(hpa_event(watcher::Event::Apply(hpa_status(5, 5, Timestamp::UNIX_EPOCH))), &target).unwrap();
        assert_eq!(seen.witness.presence.get("web"), Some(&attribution::Presence::Present));
        seen.witnessed(hpa_event(watcher::Event::Delete(hpa_status(5, 5, Timestamp::UNIX_EPOCH))), &target).unwrap();
        assert!(matches!(seen.witness.presence.get("web"), Some(attribution::Presence::Absent { .. })));
    }

    #[test]
    fn a_drop_still_pending_at_the_end_is_unresolved() {
        let a = assessed(true);
        let target = WatchTarget::new(&a, 1);
        let mut seen = Watched::default();
        drop_five_to_one(&mut seen, &target);
        seen.decide_pending(&target);
        assert!(seen.catch_up_deadline() > tokio::time::Instant::now() + Duration::from_secs(30));
        seen.give_up_pending(&target);
        assert!(matches!(seen.drops[0].cause, Cause::Unresolved { .. }), "{:?}", seen.drops);
        assert!(!seen.drops[0].is_failure());
    }

    #[test]
    fn a_gap_is_ruled_out_by_a_resumed_watch_or_an_unmoved_generation() {
        let a = assessed(true);
        let mut seen = Watched::default();
        seen.observe(state_of(&object(5, 7)));
        let error = watcher::Error::NoResourceVersion;
        seen.broke(&error, &a).unwrap();
        seen.broke(&error, &a).unwrap();
        assert_eq!(seen.gaps.len(), 1, "one gap until the watch is back: {:?}", seen.gaps);
        seen.resumed();
        assert!(seen.open_gap.is_none() && seen.gaps[1].starts_with("ruled out: the watch resumed"), "{:?}", seen.gaps);
        seen.broke(&error, &a).unwrap();
        assert_eq!(seen.close_gap_by_generation(&state_of(&object(5, 7))), None);
        seen.broke(&error, &a).unwrap();
        assert!(seen.close_gap_by_generation(&state_of(&object(1, 8))).is_some(), "moved: the Events must tell");
        seen.rule_in(Vec::new());
        assert_eq!(seen.unresolved_gaps, 1);
    }
}
