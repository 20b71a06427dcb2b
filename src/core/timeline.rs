//! A workload's replica timeline, rebuilt from Events, and the judgement of `verify`.
//!
//! The rule, precisely: the workload's desired replicas are the sum of its ReplicaSets' sizes
//! (Deployment: every `ScalingReplicaSet` event moves one ReplicaSet from a to b), or the
//! number of its Pods (StatefulSet: `SuccessfulCreate`/`SuccessfulDelete` of Pod `<name>-<i>`).
//! A *drop* is a step of that total from above `floor` to `floor` or below. Judging the total
//! means a rollout (old ReplicaSet down while the new one goes up) is no drop. A drop is the
//! autoscaler's own when an HPA `SuccessfulRescale` to that size (or KEDA deactivating the
//! target, or pausing it at `autoscaling.keda.sh/paused-replicas`) is seen within a few seconds
//! before it; otherwise no autoscaler ordered it, and that is the failure this tool exists to
//! prevent.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::workload::AppsKind;

/// An Event as the analysis needs it, whatever API version it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub involved_kind: String,
    pub involved_name: String,
    pub reason: String,
    pub message: String,
    pub first: Timestamp,
    pub last: Timestamp,
    pub count: i64,
    /// Orders events created in the same second (the API server's write order).
    pub sequence: u64,
}

impl EventRecord {
    pub fn from_event(event: &k8s_openapi::api::core::v1::Event) -> Option<Self> {
        let micro = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>| t.as_ref().map(|t| t.0);
        let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| t.as_ref().map(|t| t.0);
        let series = event.series.as_ref();
        let first = time(&event.first_timestamp).or(micro(&event.event_time))?;
        let last = series
            .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
            .or(time(&event.last_timestamp))
            .unwrap_or(first);
        let count = series.and_then(|s| s.count).or(event.count).unwrap_or(1).max(1);
        Some(Self {
            involved_kind: event.involved_object.kind.clone().unwrap_or_default(),
            involved_name: event.involved_object.name.clone().unwrap_or_default(),
            reason: event.reason.clone().unwrap_or_default(),
            message: event.message.clone().unwrap_or_default(),
            first,
            last,
            count: i64::from(count),
            sequence: event.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or_default(),
        })
    }

    /// The times this event is known to have happened: once, or first and last of a series
    /// (the ones between are not placed; `count` says how many there were).
    fn occurrences(&self) -> Vec<Timestamp> {
        if self.count > 1 && self.last != self.first { vec![self.first, self.last] } else { vec![self.last] }
    }
}

/// What an event says about replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// The deployment controller scaled ReplicaSet `rs` from `from` (unknown in old formats) to `to`.
    ScaledReplicaSet { rs: String, from: Option<i64>, to: i64 },
    /// The HPA controller set a new size.
    HpaRescale { new_size: i64, reason: String },
    /// The StatefulSet controller created or deleted Pod `<set>-<ordinal>`.
    StatefulSetPod { created: bool, ordinal: i64 },
    /// KEDA scaled the target down because its triggers went idle: "Deactivated apps/v1.Deployment
    /// ns/web from 2 to 0" (KEDA v2.21 `scaleToZeroOrIdle`), `to` the size it set.
    KedaDeactivated { to: Option<i64> },
    /// KEDA paused the ScaledObject ("ScaledObject is paused"): with `paused-replicas` it then
    /// deletes the HPA and scales the target to that count itself, without an event of its own.
    KedaPaused,
    /// The event recorder folded several different events into one: individual ones are lost.
    Combined,
}

fn number(text: &str) -> Option<i64> {
    text.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok()
}

/// Parses the messages current and recent Kubernetes versions write:
/// `Scaled down replica set web-1 from 5 to 1` (1.32+), `... to 1 from 5` (older) and
/// `... to 1` (older still); `New size: 3; reason: ...`; `Delete Pod web-4 in StatefulSet web successful`.
pub fn parse(event: &EventRecord, workload_name: &str) -> Option<Evidence> {
    let message = event.message.as_str();
    if message.starts_with("(combined from similar events)") {
        return Some(Evidence::Combined);
    }
    match event.reason.as_str() {
        "ScalingReplicaSet" => {
            let rest = message
                .strip_prefix("Scaled up replica set ")
                .or_else(|| message.strip_prefix("Scaled down replica set "))?;
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                [rs, "from", from, "to", to] => {
                    Some(Evidence::ScaledReplicaSet { rs: rs.to_string(), from: number(from), to: number(to)? })
                }
                [rs, "to", to, "from", from] => {
                    Some(Evidence::ScaledReplicaSet { rs: rs.to_string(), from: number(from), to: number(to)? })
                }
                [rs, "to", to] => Some(Evidence::ScaledReplicaSet { rs: rs.to_string(), from: None, to: number(to)? }),
                _ => None,
            }
        }
        "SuccessfulRescale" => {
            let rest = message.strip_prefix("New size: ")?;
            let (size, reason) = rest.split_once(';').unwrap_or((rest, ""));
            Some(Evidence::HpaRescale {
                new_size: size.trim().parse().ok()?,
                reason: reason.trim().trim_start_matches("reason:").trim().to_string(),
            })
        }
        "SuccessfulCreate" | "SuccessfulDelete" if event.involved_kind == "StatefulSet" => {
            let created = event.reason == "SuccessfulCreate";
            // "Create Pod web-3 in StatefulSet web successful" (the verb is title-cased).
            let verb = if created { "create pod " } else { "delete pod " };
            let rest = message.get(verb.len()..).filter(|_| message.to_lowercase().starts_with(verb))?;
            let pod = rest.split_whitespace().next()?;
            let ordinal = pod.strip_prefix(workload_name)?.strip_prefix('-')?.parse().ok()?;
            Some(Evidence::StatefulSetPod { created, ordinal })
        }
        "KEDAScaleTargetDeactivated" => {
            let to = message.rsplit_once(" to ").and_then(|(_, to)| number(to));
            Some(Evidence::KedaDeactivated { to })
        }
        "ScaledObjectPaused" => Some(Evidence::KedaPaused),
        _ => None,
    }
}

/// One step of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    pub time: Timestamp,
    /// The workload's total desired replicas after this step.
    pub replicas: i64,
    /// What the step is known from: `event Deployment/web ScalingReplicaSet: ...`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", rename_all_fields = "camelCase", tag = "by")]
pub enum Cause {
    /// An HPA set this size.
    Autoscaler { hpa: String, reason: String },
    /// KEDA scaled an idle workload to its idle size (idleReplicaCount, else 0), by design.
    KedaIdle { scaled_object: String },
    /// KEDA scaled the workload to the ScaledObject's `paused-replicas`, as asked.
    KedaPaused { scaled_object: String, replicas: i64 },
    /// No autoscaler ordered it: a deploy tool or a person reset replicas.
    Unordered,
    /// Seen live, but the evidence that would tell whether an autoscaler ordered it did not
    /// come in time (see [`super::attribution`]): not proven either way.
    Unresolved { reason: String },
}

impl Cause {
    /// The cause of a drop: the autoscaler order that explains it, if one was found.
    pub fn of(order: Option<&Order>) -> Self {
        match order {
            Some(o) => match o.action {
                Action::HpaRescale => Cause::Autoscaler { hpa: o.by.clone(), reason: o.reason.clone() },
                Action::KedaDeactivation => Cause::KedaIdle { scaled_object: o.by.clone() },
                Action::KedaPausedReplicas => Cause::KedaPaused { scaled_object: o.by.clone(), replicas: o.size },
            },
            None => Cause::Unordered,
        }
    }
}

/// What kind of autoscaler order it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// An HPA's `SuccessfulRescale`.
    HpaRescale,
    /// KEDA's `KEDAScaleTargetDeactivated`.
    KedaDeactivation,
    /// KEDA's `ScaledObjectPaused` with `paused-replicas` set.
    KedaPausedReplicas,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaDrop {
    pub time: Timestamp,
    pub from: i64,
    pub to: i64,
    pub cause: Cause,
    pub evidence: String,
    /// For a drop seen live: when and from what its cause was decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided: Option<super::attribution::Decided>,
}

impl ReplicaDrop {
    pub fn is_failure(&self) -> bool {
        self.cause == Cause::Unordered
    }
}

/// An autoscaler's order seen in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub time: Timestamp,
    /// The HPA or ScaledObject that gave it.
    pub by: String,
    /// The size ordered (for KEDA deactivating the target, the size its event names).
    pub size: i64,
    pub reason: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// The total before the first step in the window, as the events imply it.
    pub initial: Option<i64>,
    pub points: Vec<Point>,
    pub minimum: Option<i64>,
    /// Autoscaler orders (HPA rescales, KEDA deactivations and pauses) in the window.
    pub orders: Vec<Order>,
    /// Events about the workload itself seen in the window.
    pub events: usize,
    /// Reasons the evidence is incomplete (combined events, unplaced repeats).
    pub gaps: Vec<String>,
}

/// The objects whose events speak about the workload.
pub struct Subjects<'a> {
    pub workload_type: AppsKind,
    pub name: &'a str,
    /// HPAs targeting the workload (for a ScaledObject, the HPA it owns).
    pub hpas: &'a [String],
    pub scaled_objects: &'a [ScaledObjectSubject],
    /// When the workload was created: before it, its size is no state worth a minimum.
    pub created: Option<Timestamp>,
}

/// A ScaledObject targeting the workload, and the sizes KEDA sets itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaledObjectSubject {
    pub name: String,
    /// What KEDA deactivates the target to when its triggers go idle: `idleReplicaCount` when
    /// set, else `minReplicaCount` (KEDA v2.21 `getIdleOrMinimumReplicaCount`; it deactivates
    /// only when one of them allows it, so that is 0). Its event names the size; this is the
    /// fallback for a message without it.
    pub idle_size: i64,
    /// `autoscaling.keda.sh/paused-replicas` as it is now: the count KEDA scaled the target to
    /// when it paused it. (A pause lifted since cannot be sized: its drop stays unexplained.)
    pub paused_replicas: Option<i64>,
}

/// Rebuilds the timeline over events in `[from, to]`. `current` is the current size of each
/// ReplicaSet (Deployment) or the current replicas (StatefulSet, key = workload name): a
/// ReplicaSet with no event in the window kept its size throughout.
pub fn rebuild(
    events: &[EventRecord],
    subjects: &Subjects<'_>,
    current: &BTreeMap<String, i64>,
    from: Timestamp,
    to: Timestamp,
) -> Timeline {
    let Sorted { own, mut orders, mut gaps } = Sorted::out_of(events, subjects, from, to);
    let mut replay = Replay::at_start(subjects, current, &own);
    let initial = replay.initial_known.then(|| replay.total());
    let points: Vec<Point> = own.iter().filter_map(|step| replay.apply(step)).collect();
    gaps.extend(replay.unevented_changes(current));
    let existed_at_start = subjects.created.is_some_and(|created| created < from);
    let minimum = initial.filter(|_| existed_at_start).into_iter().chain(points.iter().map(|p| p.replicas)).min();
    orders.sort_by_key(|o| o.time);
    Timeline { initial, points, minimum, orders, events: own.len(), gaps }
}

/// Which of the subjects an event is about.
#[derive(Clone, Copy)]
enum About<'s> {
    Workload,
    Hpa,
    ScaledObject(&'s ScaledObjectSubject),
}

impl<'s> About<'s> {
    fn of(event: &EventRecord, subjects: &Subjects<'s>) -> Option<Self> {
        let own_kind = match subjects.workload_type {
            AppsKind::Deployment => "Deployment",
            AppsKind::StatefulSet => "StatefulSet",
        };
        match event.involved_kind.as_str() {
            kind if kind == own_kind && event.involved_name == subjects.name => Some(About::Workload),
            "HorizontalPodAutoscaler" if subjects.hpas.contains(&event.involved_name) => Some(About::Hpa),
            "ScaledObject" => {
                subjects.scaled_objects.iter().find(|so| so.name == event.involved_name).map(About::ScaledObject)
            }
            _ => None,
        }
    }
}

/// A change of the workload's own, at one of its event's occurrences.
struct OwnStep<'e> {
    time: Timestamp,
    event: &'e EventRecord,
    evidence: Evidence,
}

/// The window's events sorted by what they tell: the workload's own changes in the order they
/// happened, the autoscalers' orders, and the gaps in the evidence.
struct Sorted<'e> {
    own: Vec<OwnStep<'e>>,
    orders: Vec<Order>,
    gaps: Vec<String>,
}

impl<'e> Sorted<'e> {
    fn out_of(events: &'e [EventRecord], subjects: &Subjects<'_>, from: Timestamp, to: Timestamp) -> Self {
        let mut sorted = Sorted { own: Vec::new(), orders: Vec::new(), gaps: Vec::new() };
        for event in events {
            let Some(about) = About::of(event, subjects) else { continue };
            let Some(evidence) = parse(event, subjects.name) else { continue };
            for time in event.occurrences().into_iter().filter(|t| *t >= from && *t <= to) {
                sorted.place(event, about, &evidence, time);
            }
            if event.count > 2 && matches!(about, About::Workload | About::Hpa) {
                sorted.gaps.push(format!(
                    "{} '{}' happened {} times between {} and {}; only the first and last are placed",
                    event.reason, event.message, event.count, event.first, event.last
                ));
            }
        }
        sorted.own.sort_by_key(|step| (step.time, step.event.sequence));
        sorted
    }

    /// Files one occurrence of an event by what it says and whom it is about.
    fn place(&mut self, event: &'e EventRecord, about: About<'_>, evidence: &Evidence, time: Timestamp) {
        match (evidence, about) {
            (Evidence::Combined, _) => self.gaps.push(format!(
                "events about {}/{} were combined by the event recorder at {time}: individual changes are lost",
                event.involved_kind, event.involved_name
            )),
            (Evidence::HpaRescale { new_size, reason }, About::Hpa) => self.orders.push(Order {
                time,
                by: format!("hpa/{}", event.involved_name),
                size: *new_size,
                reason: reason.clone(),
                action: Action::HpaRescale,
            }),
            (Evidence::KedaDeactivated { to }, About::ScaledObject(so)) => self.orders.push(Order {
                time,
                by: format!("scaledobject/{}", so.name),
                size: to.unwrap_or(so.idle_size),
                reason: event.message.clone(),
                action: Action::KedaDeactivation,
            }),
            (Evidence::KedaPaused, About::ScaledObject(so)) => {
                if let Some(replicas) = so.paused_replicas {
                    self.orders.push(Order {
                        time,
                        by: format!("scaledobject/{}", so.name),
                        size: replicas,
                        reason: format!("{}; autoscaling.keda.sh/paused-replicas: {replicas}", event.message),
                        action: Action::KedaPausedReplicas,
                    })
                }
            }
            (Evidence::ScaledReplicaSet { .. } | Evidence::StatefulSetPod { .. }, About::Workload) => {
                self.own.push(OwnStep { time, event, evidence: evidence.clone() })
            }
            _ => {}
        }
    }
}

/// The workload's size as the replay goes: each ReplicaSet's size (Deployment), or which Pod
/// ordinals exist (StatefulSet).
struct Replay {
    workload_type: AppsKind,
    sizes: BTreeMap<String, i64>,
    alive: BTreeMap<i64, bool>,
    /// False when an old-format event leaves a ReplicaSet's size before it unknown.
    initial_known: bool,
}

impl Replay {
    /// The state at the window's start: each ReplicaSet's `from` in its first event, or its
    /// current size when no event in the window touched it.
    fn at_start(subjects: &Subjects<'_>, current: &BTreeMap<String, i64>, own: &[OwnStep<'_>]) -> Self {
        let mut replay = Replay {
            workload_type: subjects.workload_type,
            sizes: current.clone(),
            alive: BTreeMap::new(),
            initial_known: true,
        };
        match subjects.workload_type {
            AppsKind::Deployment => {
                let mut seen = std::collections::BTreeSet::new();
                for step in own {
                    if let Evidence::ScaledReplicaSet { rs, from, .. } = &step.evidence
                        && seen.insert(rs.clone())
                    {
                        match from {
                            Some(from) => {
                                replay.sizes.insert(rs.clone(), *from);
                            }
                            None => replay.initial_known = false,
                        }
                    }
                }
            }
            AppsKind::StatefulSet => {
                // Replay backwards from the current Pods: a create means the Pod was not there
                // before it, a delete means it was.
                let replicas = current.get(subjects.name).copied().unwrap_or_default();
                for ordinal in 0..replicas {
                    replay.alive.insert(ordinal, true);
                }
                for step in own.iter().rev() {
                    if let Evidence::StatefulSetPod { created, ordinal } = step.evidence {
                        replay.alive.insert(ordinal, !created);
                    }
                }
            }
        }
        replay
    }

    fn total(&self) -> i64 {
        match self.workload_type {
            AppsKind::Deployment => self.sizes.values().sum::<i64>(),
            AppsKind::StatefulSet => self.alive.values().filter(|a| **a).count() as i64,
        }
    }

    /// Applies one change of the workload's own: the timeline's point after it.
    fn apply(&mut self, step: &OwnStep<'_>) -> Option<Point> {
        match &step.evidence {
            Evidence::ScaledReplicaSet { rs, to, .. } => {
                self.sizes.insert(rs.clone(), *to);
            }
            Evidence::StatefulSetPod { created, ordinal } => {
                self.alive.insert(*ordinal, *created);
            }
            _ => return None,
        }
        let event = step.event;
        Some(Point {
            time: step.time,
            replicas: self.total(),
            source: format!(
                "event {}/{} {}: {}",
                event.involved_kind, event.involved_name, event.reason, event.message
            ),
        })
    }

    /// The replay must end where the ReplicaSets are now. If not, a change has no event: the
    /// controllers record events asynchronously (seconds later under load, and drop them when
    /// their queue is full), so the timeline would miss it.
    fn unevented_changes(&self, current: &BTreeMap<String, i64>) -> Vec<String> {
        if !matches!(self.workload_type, AppsKind::Deployment) {
            return Vec::new();
        }
        self.sizes
            .iter()
            .filter_map(|(rs, replayed)| {
                let now = current.get(rs).filter(|now| *now != replayed)?;
                Some(format!(
                    "the events leave ReplicaSet {rs} at {replayed} but it is at {now}: a change has no event \
                     (yet: the controller records them asynchronously; run verify again in a few seconds)"
                ))
            })
            .collect()
    }
}

/// How long before a drop an autoscaler's order may be seen and still explain it.
pub const ATTRIBUTION_WINDOW: SignedDuration = SignedDuration::from_secs(10);

/// Every step of the total from above `floor` to `floor` or below, with its cause.
pub fn drops(timeline: &Timeline, floor: i64) -> Vec<ReplicaDrop> {
    let mut found = Vec::new();
    let mut previous = timeline.initial;
    for point in &timeline.points {
        if let Some(before) = previous
            && before > floor
            && point.replicas <= floor
        {
            let order = timeline.orders.iter().rev().find(|o| {
                o.time <= point.time + SignedDuration::from_secs(1)
                    && o.time >= point.time - ATTRIBUTION_WINDOW
                    && o.size == point.replicas
            });
            let cause = Cause::of(order);
            found.push(ReplicaDrop {
                time: point.time,
                from: before,
                to: point.replicas,
                cause,
                evidence: point.source.clone(),
                decided: None,
            });
        }
        previous = Some(point.replicas);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fixtures::load;

    /// The events of the real failure: Flux drops web from 5 to 1, the HPA (min 3) brings it back.
    fn captured() -> (Vec<EventRecord>, BTreeMap<String, i64>) {
        captured_history("flux-drop")
    }

    /// The Events and ReplicaSets a test on the real plane captured (`capture_history`).
    fn captured_history(name: &str) -> (Vec<EventRecord>, BTreeMap<String, i64>) {
        let events: Vec<k8s_openapi::api::core::v1::Event> =
            serde_json::from_value(load(&format!("events-{name}"))["items"].clone()).unwrap();
        let records = events.iter().filter_map(EventRecord::from_event).collect();
        let sets = load(&format!("replicasets-{name}"));
        let current = sets["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|rs| (rs["metadata"]["name"].as_str().unwrap().to_string(), rs["spec"]["replicas"].as_i64().unwrap()))
            .collect();
        (records, current)
    }

    fn window(events: &[EventRecord]) -> (Timestamp, Timestamp) {
        let first = events.iter().map(|e| e.first).min().unwrap();
        let last = events.iter().map(|e| e.last).max().unwrap();
        (first - SignedDuration::from_secs(60), last + SignedDuration::from_secs(1))
    }

    fn subjects() -> Subjects<'static> {
        static HPAS: [String; 0] = [];
        Subjects { workload_type: AppsKind::Deployment, name: "web", hpas: &HPAS, scaled_objects: &[], created: None }
    }

    fn rebuild_with_hpa(events: &[EventRecord], current: &BTreeMap<String, i64>) -> Timeline {
        let hpas = ["web".to_string()];
        let subjects = Subjects { hpas: &hpas, ..subjects() };
        let (from, to) = window(events);
        rebuild(events, &subjects, current, from, to)
    }

    #[test]
    fn the_captured_failure_reads_five_one_three() {
        let (events, current) = captured();
        let timeline = rebuild_with_hpa(&events, &current);
        let replicas: Vec<i64> = timeline.points.iter().map(|p| p.replicas).collect();
        assert_eq!(timeline.initial, Some(0));
        assert_eq!(replicas, vec![5, 1, 3]);
        assert_eq!(timeline.orders.len(), 1, "the HPA's rescale to 3");
        let found = drops(&timeline, 1);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].from, found[0].to, &found[0].cause), (5, 1, &Cause::Unordered));
        assert!(found[0].is_failure());
    }

    #[test]
    fn a_higher_floor_sees_the_same_drop_and_no_other() {
        let (events, current) = captured();
        let found = drops(&rebuild_with_hpa(&events, &current), 3);
        assert_eq!(found.iter().map(|d| (d.from, d.to)).collect::<Vec<_>>(), vec![(5, 1)]);
    }

    #[test]
    fn older_message_formats_give_the_same_timeline() {
        let (events, current) = captured();
        let older: Vec<EventRecord> = events
            .iter()
            .cloned()
            .map(|mut e| {
                // Before 1.32: "Scaled down replica set web-x to 1 from 5".
                if let Some(Evidence::ScaledReplicaSet { rs, from: Some(from), to }) = parse(&e, "web") {
                    let direction = if e.message.contains(" up ") { "up" } else { "down" };
                    e.message = format!("Scaled {direction} replica set {rs} to {to} from {from}");
                }
                e
            })
            .collect();
        let replicas: Vec<i64> = rebuild_with_hpa(&older, &current).points.iter().map(|p| p.replicas).collect();
        assert_eq!(replicas, vec![5, 1, 3]);
    }

    #[test]
    fn a_drop_the_hpa_ordered_is_not_a_failure() {
        let (mut events, current) = captured();
        let drop = events.iter().find(|e| e.message.contains("from 5 to 1")).unwrap().clone();
        let mut order = events.iter().find(|e| e.reason == "SuccessfulRescale").unwrap().clone();
        order.message = "New size: 1; reason: All metrics below target".into();
        order.first = drop.first - SignedDuration::from_secs(1);
        order.last = order.first;
        events.push(order);
        let found = drops(&rebuild_with_hpa(&events, &current), 1);
        assert!(matches!(&found[0].cause, Cause::Autoscaler { hpa, .. } if hpa == "hpa/web"), "{found:?}");
        assert!(!found[0].is_failure());
    }

    fn keda_subject(idle_size: i64, paused_replicas: Option<i64>) -> [ScaledObjectSubject; 1] {
        [ScaledObjectSubject { name: "web".into(), idle_size, paused_replicas }]
    }

    fn keda_drops(
        events: &[EventRecord],
        current: &BTreeMap<String, i64>,
        so: &[ScaledObjectSubject],
    ) -> Vec<ReplicaDrop> {
        let subjects = Subjects { scaled_objects: so, ..subjects() };
        let (from, to) = window(events);
        drops(&rebuild(events, &subjects, current, from, to), 1)
    }

    /// The real operator with minReplicaCount 0: "Deactivated apps/v1.Deployment ns/web from 2 to
    /// 0", then the Deployment's 2 -> 0.
    #[test]
    fn keda_deactivating_the_target_is_its_order_not_a_failure() {
        let (events, current) = captured_history("keda-idle");
        let found = keda_drops(&events, &current, &keda_subject(0, None));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].from, found[0].to), (2, 0));
        assert_eq!(found[0].cause, Cause::KedaIdle { scaled_object: "scaledobject/web".into() });
        assert!(!found[0].is_failure());
        assert_eq!(
            serde_json::to_value(&found[0].cause).unwrap(),
            serde_json::json!({"by": "keda-idle", "scaledObject": "scaledobject/web"})
        );
        // Without the ScaledObject among the subjects, the same drop is unexplained.
        assert_eq!(keda_drops(&events, &current, &[])[0].cause, Cause::Unordered);
    }

    /// With idleReplicaCount 1, KEDA deactivates to 1, not 0: the size comes from its event, and
    /// from the ScaledObject when the message does not name it.
    #[test]
    fn keda_deactivates_to_its_idle_size() {
        let (events, current) = captured_history("keda-idle");
        let to_one = |message_names_it: bool| -> Vec<EventRecord> {
            events
                .iter()
                .cloned()
                .map(|mut e| {
                    if e.reason == "KEDAScaleTargetDeactivated" {
                        e.message = if message_names_it {
                            e.message.replace("from 2 to 0", "from 2 to 1")
                        } else {
                            "Deactivated apps/v1.Deployment".into()
                        };
                    } else if e.message.contains("from 2 to 0") {
                        e.message = e.message.replace("from 2 to 0", "from 2 to 1");
                    }
                    e
                })
                .collect()
        };
        let current: BTreeMap<String, i64> = current.into_keys().map(|rs| (rs, 1)).collect();
        let found = keda_drops(&to_one(true), &current, &keda_subject(0, None));
        assert_eq!((found[0].to, &found[0].cause), (1, &Cause::KedaIdle { scaled_object: "scaledobject/web".into() }));
        let found = keda_drops(&to_one(false), &current, &keda_subject(1, None));
        assert!(!found[0].is_failure(), "{found:?}");
        let found = keda_drops(&to_one(false), &current, &keda_subject(0, None));
        assert!(found[0].is_failure(), "deactivated to 0, yet it went to 1: {found:?}");
    }

    /// The real operator paused at `paused-replicas: 1`: "ScaledObject is paused", then the
    /// Deployment's 5 -> 1 with no event of KEDA's own for the scale.
    #[test]
    fn keda_scaling_to_paused_replicas_is_its_order_not_a_failure() {
        let (events, current) = captured_history("keda-paused-replicas");
        let found = keda_drops(&events, &current, &keda_subject(0, Some(1)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].from, found[0].to), (5, 1));
        assert_eq!(found[0].cause, Cause::KedaPaused { scaled_object: "scaledobject/web".into(), replicas: 1 });
        assert_eq!(
            serde_json::to_value(&found[0].cause).unwrap(),
            serde_json::json!({"by": "keda-paused", "scaledObject": "scaledobject/web", "replicas": 1})
        );
        // A pause lifted since (no paused-replicas now) cannot be sized: the drop stays unexplained.
        assert!(keda_drops(&events, &current, &keda_subject(0, None))[0].is_failure());
        // Nor does a pause at another count explain it.
        assert!(keda_drops(&events, &current, &keda_subject(0, Some(3)))[0].is_failure());
    }

    #[test]
    fn combined_events_are_a_gap() {
        let (mut events, current) = captured();
        let mut combined = events[0].clone();
        combined.involved_kind = "Deployment".into();
        combined.involved_name = "web".into();
        combined.reason = "ScalingReplicaSet".into();
        combined.message = "(combined from similar events): Scaled up replica set web-1 from 0 to 2".into();
        events.push(combined);
        assert_eq!(rebuild_with_hpa(&events, &current).gaps.len(), 1);
    }

    #[test]
    fn a_replica_set_that_moved_after_its_last_event_is_a_gap() {
        let (events, mut current) = captured();
        assert!(rebuild_with_hpa(&events, &current).gaps.is_empty(), "the captured replay ends at the current sizes");
        let (rs, size) = current.iter_mut().next().unwrap();
        *size += 2;
        let rs = rs.clone();
        let gaps = rebuild_with_hpa(&events, &current).gaps;
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!(gaps[0].contains(&format!("ReplicaSet {rs} at 3 but it is at 5")), "{gaps:?}");
    }

    #[test]
    fn events_outside_the_window_are_not_evidence() {
        let (events, current) = captured();
        let last = events.iter().map(|e| e.last).max().unwrap();
        let timeline = rebuild(
            &events,
            &subjects(),
            &current,
            last + SignedDuration::from_secs(1),
            last + SignedDuration::from_secs(60),
        );
        assert_eq!(timeline.events, 0);
        assert_eq!(timeline.initial, Some(3), "with no event in the window, each ReplicaSet kept its current size");
    }

    #[test]
    fn statefulset_pods_are_counted_backwards_from_now() {
        let event = |reason: &str, verb: &str, ordinal: i64, sequence: u64| EventRecord {
            involved_kind: "StatefulSet".into(),
            involved_name: "db".into(),
            reason: reason.into(),
            message: format!("{verb} Pod db-{ordinal} in StatefulSet db successful"),
            first: Timestamp::UNIX_EPOCH + SignedDuration::from_secs(100),
            last: Timestamp::UNIX_EPOCH + SignedDuration::from_secs(100),
            count: 1,
            sequence,
        };
        let events = vec![
            event("SuccessfulDelete", "Delete", 2, 1),
            event("SuccessfulDelete", "Delete", 1, 2),
            event("SuccessfulCreate", "Create", 1, 3),
        ];
        let subjects = Subjects { workload_type: AppsKind::StatefulSet, name: "db", ..subjects() };
        let current = BTreeMap::from([("db".to_string(), 2)]);
        let timeline = rebuild(
            &events,
            &subjects,
            &current,
            Timestamp::UNIX_EPOCH,
            Timestamp::UNIX_EPOCH + SignedDuration::from_secs(200),
        );
        assert_eq!(timeline.initial, Some(3));
        assert_eq!(timeline.points.iter().map(|p| p.replicas).collect::<Vec<_>>(), vec![2, 1, 2]);
        assert_eq!(drops(&timeline, 1).len(), 1);
    }
}
