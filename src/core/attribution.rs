//! Who ordered a drop of replicas seen live, decided by evidence, never by a timer.
//!
//! The HPA controller writes its status in the same reconcile as its scale (k8s.io/kubernetes
//! `pkg/controller/podautoscaler/horizontal.go`: `reconcileAutoscaler` scales through `/scale`,
//! then `setStatus` stamps `lastScaleTime` and `desiredReplicas` and `updateStatusIfNeeded`
//! writes them), and every later reconcile (one per sync period, 15 s by default) rewrites
//! `currentReplicas` with the target's `spec.replicas` as it read it. That evidence arrives with
//! the change. The controller's Events do not: they queue behind its event recorder (client-go
//! `tools/record`) and may come arbitrarily late, or never. So a drop seen live is:
//! - ordered when a status of one of the workload's HPAs shows `desiredReplicas` equal to the new
//!   size with a `lastScaleTime` near the drop, or when an autoscaler's Event ordered that size
//!   near it (KEDA's own orders, idle and paused, show only in Events);
//! - unordered when no autoscaler existed to order it, or when an HPA reconciled after the drop
//!   (its `currentReplicas` is the new size, or it rescaled later to another size) and neither
//!   its statuses nor the Events seen hold an order for it;
//! - pending otherwise: the caller waits for more evidence, and after a bounded wait reports the
//!   drop [`unresolved`].

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use serde::Serialize;

use super::timeline::{self, ATTRIBUTION_WINDOW, Cause, EventRecord, Subjects};

/// A drop is stamped when the watch delivers it, which on a loaded API server is seconds after
/// the scale; an order may be stamped that much earlier than the attribution window allows.
const RECEIPT_SLACK: SignedDuration = SignedDuration::from_secs(5);

/// A step of `spec.replicas` to the floor or below, as the live watch received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDrop {
    pub seen: Timestamp,
    pub from: i64,
    pub to: i64,
}

impl LiveDrop {
    /// Whether an order stamped at `time` is near enough to the drop to explain it.
    fn near(&self, time: Timestamp) -> bool {
        time >= self.seen - ATTRIBUTION_WINDOW - RECEIPT_SLACK && time <= self.seen + ATTRIBUTION_WINDOW
    }
}

/// One status of an HPA, as the watch received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HpaStatus {
    pub hpa: String,
    pub received: Timestamp,
    pub current: Option<i64>,
    pub desired: i64,
    pub last_scale: Option<Timestamp>,
}

impl HpaStatus {
    /// The HPA's status; `None` while the controller has not reconciled it yet (no
    /// `currentReplicas` and no `lastScaleTime`).
    pub fn of(hpa: &HorizontalPodAutoscaler, received: Timestamp) -> Option<Self> {
        let status = hpa.status.as_ref()?;
        let current = status.current_replicas.map(i64::from);
        let last_scale = status.last_scale_time.as_ref().map(|t| t.0);
        if current.is_none() && last_scale.is_none() {
            return None;
        }
        Some(Self {
            hpa: hpa.metadata.name.clone().unwrap_or_default(),
            received,
            current,
            desired: i64::from(status.desired_replicas),
            last_scale,
        })
    }

    fn describe(&self) -> String {
        format!(
            "hpa/{}'s status: currentReplicas {}, desiredReplicas {}, lastScaleTime {}",
            self.hpa,
            self.current.map_or("unset".to_string(), |c| c.to_string()),
            self.desired,
            self.last_scale.map_or("unset".to_string(), |t| t.to_string())
        )
    }
}

/// Whether a watched HPA exists, as its watch last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Its watch has not listed it yet.
    Unknown,
    Present,
    /// Not there since this time (for an HPA its first list did not find, since that list).
    Absent {
        since: Timestamp,
    },
}

/// What the live watch has seen of the workload's autoscalers so far.
#[derive(Debug, Clone, Default)]
pub struct Witness {
    /// Every status received, in order.
    pub statuses: Vec<HpaStatus>,
    /// Each watched HPA by name; one without an entry is [`Presence::Unknown`].
    pub presence: BTreeMap<String, Presence>,
    /// The Events about the workload's HPAs and ScaledObjects received so far.
    pub events: Vec<EventRecord>,
}

impl Witness {
    /// Keeps an Event if it is about one of the subjects' autoscalers.
    pub fn record_event(&mut self, event: EventRecord, subjects: &Subjects<'_>) {
        let about_autoscaler = match event.involved_kind.as_str() {
            "HorizontalPodAutoscaler" => subjects.hpas.contains(&event.involved_name),
            "ScaledObject" => subjects.scaled_objects.iter().any(|so| so.name == event.involved_name),
            _ => false,
        };
        if about_autoscaler {
            self.events.push(event);
        }
    }

    /// An HPA seen (listed or changed): present, with its status if it has one.
    pub fn record_hpa(&mut self, hpa: &HorizontalPodAutoscaler, received: Timestamp) {
        let name = hpa.metadata.name.clone().unwrap_or_default();
        self.statuses.extend(HpaStatus::of(hpa, received));
        self.presence.insert(name, Presence::Present);
    }

    /// An HPA deleted, or not found by a (re-)list.
    pub fn record_absent(&mut self, name: &str, since: Timestamp) {
        self.presence.insert(name.to_string(), Presence::Absent { since });
    }
}

/// What decided a drop's cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// An HPA's status: its order, or its reconcile after the drop without one.
    HpaStatus,
    /// An autoscaler's Event.
    Event,
    /// No autoscaler existed to order it.
    NoAutoscaler,
    /// The wait for evidence ended without any.
    WaitOver,
}

/// When and from what a live drop's cause was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decided {
    pub at: Timestamp,
    pub by: Basis,
    pub evidence: String,
}

/// A live drop's attribution so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    Decided(Cause, Decided),
    /// The evidence does not tell yet.
    Pending,
}

/// Attributes a drop from what has been seen by `now` (see the module's rules). Pure.
pub fn decide(drop: &LiveDrop, subjects: &Subjects<'_>, witness: &Witness, now: Timestamp) -> Attribution {
    let decided = |cause, by, evidence| Attribution::Decided(cause, Decided { at: now, by, evidence });
    let ordered_by_status = witness.statuses.iter().find_map(|s| {
        let at = s.last_scale.filter(|t| s.desired == drop.to && drop.near(*t))?;
        Some((s, at))
    });
    if let Some((status, at)) = ordered_by_status {
        let reason = format!("desiredReplicas {} at lastScaleTime {at} (its status)", status.desired);
        let cause = Cause::Autoscaler { hpa: format!("hpa/{}", status.hpa), reason };
        return decided(cause, Basis::HpaStatus, status.describe());
    }
    if let Some(order) = event_order(drop, subjects, witness) {
        let evidence = format!("event of {} at {}: {}", order.by, order.time, order.reason);
        return decided(Cause::of(Some(&order)), Basis::Event, evidence);
    }
    if subjects.hpas.is_empty() && subjects.scaled_objects.is_empty() {
        return decided(Cause::Unordered, Basis::NoAutoscaler, "no HPA or ScaledObject targets the workload".into());
    }
    // KEDA's own scales (to its idle size, to paused-replicas) show in no HPA status: only its
    // Event can tell them from a deploy's.
    let keda_may_have =
        subjects.scaled_objects.iter().any(|so| so.idle_size == drop.to || so.paused_replicas == Some(drop.to));
    if keda_may_have {
        return Attribution::Pending;
    }
    if let Some(status) = witness.statuses.iter().find(|s| reconciled_after(s, drop)) {
        let evidence =
            format!("{}, received after the drop: it reconciled without ordering {}", status.describe(), drop.to);
        return decided(Cause::Unordered, Basis::HpaStatus, evidence);
    }
    let all_gone_before = subjects
        .hpas
        .iter()
        .all(|name| matches!(witness.presence.get(name), Some(Presence::Absent { since }) if *since <= drop.seen));
    if all_gone_before {
        let evidence = format!("no HPA of the workload existed when it dropped ({})", subjects.hpas.join(", "));
        return decided(Cause::Unordered, Basis::NoAutoscaler, evidence);
    }
    Attribution::Pending
}

/// A drop still pending after the caller's wait of `waited`: neither an order nor a reconcile
/// after it came, so whether an autoscaler ordered it is not known.
pub fn unresolved(drop: &LiveDrop, witness: &Witness, now: Timestamp, waited: Duration) -> (Cause, Decided) {
    let last = witness.statuses.last().map_or("no HPA status was received".to_string(), HpaStatus::describe);
    let reason = format!(
        "the autoscaler's status did not catch up: no HPA status showed an order for {} or a reconcile after the drop, \
         and no autoscaler event ordered it, within {} s of the drop (last seen: {last})",
        drop.to,
        waited.as_secs()
    );
    let decided = Decided { at: now, by: Basis::WaitOver, evidence: reason.clone() };
    (Cause::Unresolved { reason }, decided)
}

/// A status that shows the HPA reconciled after the drop: it read the new size as its current
/// one, or it rescaled later to another size.
fn reconciled_after(status: &HpaStatus, drop: &LiveDrop) -> bool {
    let read_new_size = status.received >= drop.seen && status.current == Some(drop.to);
    let rescaled_later = status.desired != drop.to && status.last_scale.is_some_and(|t| t > drop.seen);
    read_new_size || rescaled_later
}

/// The autoscalers' Event ordering the drop's size near it, if one was seen.
fn event_order(drop: &LiveDrop, subjects: &Subjects<'_>, witness: &Witness) -> Option<timeline::Order> {
    let from = drop.seen - ATTRIBUTION_WINDOW - RECEIPT_SLACK;
    let to = drop.seen + ATTRIBUTION_WINDOW;
    let seen = timeline::rebuild(&witness.events, subjects, &BTreeMap::new(), from, to);
    seen.orders.into_iter().rev().find(|o| o.size == drop.to && drop.near(o.time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fixtures::load;
    use crate::core::timeline::ScaledObjectSubject;
    use crate::core::workload::AppsKind;

    const HPAS: &[String] = &[];

    fn subjects<'a>(hpas: &'a [String], scaled_objects: &'a [ScaledObjectSubject]) -> Subjects<'a> {
        Subjects { workload_type: AppsKind::Deployment, name: "web", hpas, scaled_objects, created: None }
    }

    fn web() -> Vec<String> {
        vec!["web".to_string()]
    }

    /// The HPA captured on the real plane after it rescaled web to 3 (lastScaleTime 15:52:23Z).
    fn captured() -> HorizontalPodAutoscaler {
        serde_json::from_value(load("hpa-min3-rescaled")).unwrap()
    }

    fn rescaled_at(hpa: &HorizontalPodAutoscaler) -> Timestamp {
        hpa.status.as_ref().unwrap().last_scale_time.as_ref().unwrap().0
    }

    fn secs(n: i64) -> SignedDuration {
        SignedDuration::from_secs(n)
    }

    fn with_status(
        mut hpa: HorizontalPodAutoscaler,
        current: i32,
        desired: i32,
        last_scale: Timestamp,
    ) -> HorizontalPodAutoscaler {
        let status = hpa.status.as_mut().unwrap();
        status.current_replicas = Some(current);
        status.desired_replicas = desired;
        status.last_scale_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(last_scale));
        hpa
    }

    fn cause_and_basis(attribution: Attribution) -> Option<(Cause, Basis)> {
        match attribution {
            Attribution::Decided(cause, decided) => Some((cause, decided.by)),
            Attribution::Pending => None,
        }
    }

    #[test]
    fn the_captured_rescale_explains_a_drop_to_its_size_at_that_time() {
        let hpa = captured();
        let at = rescaled_at(&hpa);
        let drop = LiveDrop { seen: at + SignedDuration::from_millis(400), from: 5, to: 3 };
        let mut witness = Witness::default();
        witness.record_hpa(&hpa, drop.seen + secs(1));
        let hpas = web();
        let (cause, basis) = cause_and_basis(decide(&drop, &subjects(&hpas, &[]), &witness, drop.seen)).unwrap();
        assert!(matches!(&cause, Cause::Autoscaler { hpa, .. } if hpa == "hpa/web"), "{cause:?}");
        assert_eq!(basis, Basis::HpaStatus);
        // The status received before the drop's own watch event counts as well.
        let mut early = Witness::default();
        early.record_hpa(&hpa, drop.seen - secs(1));
        assert!(matches!(
            decide(&drop, &subjects(&hpas, &[]), &early, drop.seen),
            Attribution::Decided(Cause::Autoscaler { .. }, _)
        ));
    }

    /// The status the real HPA controller wrote in the reconcile that scaled web 5 -> 1
    /// (maxReplicas 1), captured on the plane by the late-event fault test: with its Event
    /// rejected, this status is all there is, and it is enough.
    #[test]
    fn the_plane_captured_order_to_one_explains_the_drop_without_its_event() {
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(load("hpa-max1-ordered")).unwrap();
        let status = HpaStatus::of(&hpa, rescaled_at(&hpa)).unwrap();
        assert_eq!((status.current, status.desired), (Some(5), 1), "the scale's reconcile: read 5, ordered 1");
        let drop = LiveDrop { seen: rescaled_at(&hpa) + SignedDuration::from_millis(215), from: 5, to: 1 };
        let mut witness = Witness::default();
        witness.record_hpa(&hpa, drop.seen + SignedDuration::from_millis(20));
        let hpas = web();
        let (cause, basis) = cause_and_basis(decide(&drop, &subjects(&hpas, &[]), &witness, drop.seen)).unwrap();
        assert!(matches!(&cause, Cause::Autoscaler { hpa, .. } if hpa == "hpa/web"), "{cause:?}");
        assert_eq!(basis, Basis::HpaStatus);
        // Its currentReplicas (5) is not the new size: no reconcile after a deploy's drop to 1.
        let mut later = witness.clone();
        later.statuses[0].last_scale = Some(drop.seen - secs(60));
        assert_eq!(decide(&drop, &subjects(&hpas, &[]), &later, drop.seen), Attribution::Pending);
    }

    #[test]
    fn an_old_rescale_or_another_size_orders_nothing() {
        let hpa = captured();
        let at = rescaled_at(&hpa);
        let hpas = web();
        let mut witness = Witness::default();
        witness.record_hpa(&hpa, at);
        // A minute later, with nothing since: not its order, and no reconcile after the drop yet.
        let later = LiveDrop { seen: at + secs(60), from: 5, to: 3 };
        assert_eq!(decide(&later, &subjects(&hpas, &[]), &witness, later.seen), Attribution::Pending);
        let other_size = LiveDrop { seen: at, from: 5, to: 1 };
        assert_eq!(decide(&other_size, &subjects(&hpas, &[]), &witness, other_size.seen), Attribution::Pending);
    }

    /// A deploy's drop 5 -> 1 under an HPA with minReplicas 3: its next reconcile reads 1 and
    /// scales back to 3 (currentReplicas 1, desiredReplicas 3, a later lastScaleTime).
    #[test]
    fn a_reconcile_after_the_drop_without_its_order_decides_it_unordered() {
        let hpa = captured();
        let dropped = rescaled_at(&hpa) + secs(100);
        let drop = LiveDrop { seen: dropped, from: 5, to: 1 };
        let hpas = web();
        let mut witness = Witness::default();
        witness.record_hpa(&hpa, rescaled_at(&hpa));
        assert_eq!(decide(&drop, &subjects(&hpas, &[]), &witness, dropped), Attribution::Pending);
        witness.record_hpa(&with_status(hpa.clone(), 1, 3, dropped + secs(2)), dropped + secs(2));
        let (cause, basis) =
            cause_and_basis(decide(&drop, &subjects(&hpas, &[]), &witness, dropped + secs(2))).unwrap();
        assert_eq!((cause, basis), (Cause::Unordered, Basis::HpaStatus));
        // A reconcile that only read the new size (an HPA whose minimum allows 1) tells as much.
        let mut at_minimum = Witness::default();
        at_minimum.record_hpa(&with_status(hpa, 1, 1, rescaled_at(&captured())), dropped + secs(2));
        assert!(matches!(
            decide(&drop, &subjects(&hpas, &[]), &at_minimum, dropped),
            Attribution::Decided(Cause::Unordered, _)
        ));
    }

    /// The HPA's own order 5 -> 1 (maxReplicas 1): its status is written in the same reconcile,
    /// and its next one reads 1 with the same lastScaleTime; neither is a reconcile without order.
    #[test]
    fn the_hpas_order_wins_over_its_later_reconciles() {
        let ordered = rescaled_at(&captured()) + secs(100);
        let drop = LiveDrop { seen: ordered + SignedDuration::from_millis(300), from: 5, to: 1 };
        let hpas = web();
        let mut witness = Witness::default();
        witness.record_hpa(&with_status(captured(), 1, 1, ordered), drop.seen + secs(15));
        let (cause, _) = cause_and_basis(decide(&drop, &subjects(&hpas, &[]), &witness, drop.seen)).unwrap();
        assert!(matches!(cause, Cause::Autoscaler { .. }), "{cause:?}");
    }

    #[test]
    fn no_autoscaler_at_all_is_unordered_at_once() {
        let drop = LiveDrop { seen: Timestamp::UNIX_EPOCH + secs(1000), from: 5, to: 1 };
        let decided = cause_and_basis(decide(&drop, &subjects(HPAS, &[]), &Witness::default(), drop.seen));
        assert_eq!(decided, Some((Cause::Unordered, Basis::NoAutoscaler)));
    }

    #[test]
    fn an_hpa_gone_before_the_drop_explains_nothing_one_gone_after_leaves_it_pending() {
        let drop = LiveDrop { seen: Timestamp::UNIX_EPOCH + secs(1000), from: 5, to: 1 };
        let hpas = web();
        let mut witness = Witness::default();
        assert_eq!(decide(&drop, &subjects(&hpas, &[]), &witness, drop.seen), Attribution::Pending, "not listed yet");
        witness.record_absent("web", drop.seen - secs(1));
        let decided = cause_and_basis(decide(&drop, &subjects(&hpas, &[]), &witness, drop.seen));
        assert_eq!(decided, Some((Cause::Unordered, Basis::NoAutoscaler)));
        witness.record_absent("web", drop.seen + secs(1));
        assert_eq!(decide(&drop, &subjects(&hpas, &[]), &witness, drop.seen), Attribution::Pending);
    }

    #[test]
    fn an_hpa_without_status_yet_tells_nothing() {
        let mut hpa: HorizontalPodAutoscaler = serde_json::from_value(load("hpa-min3")).unwrap();
        hpa.metadata.name = Some("web".into());
        assert_eq!(HpaStatus::of(&hpa, Timestamp::UNIX_EPOCH), None, "{:?}", hpa.status);
        let mut witness = Witness::default();
        witness.record_hpa(&hpa, Timestamp::UNIX_EPOCH);
        assert_eq!(witness.presence.get("web"), Some(&Presence::Present));
        let drop = LiveDrop { seen: Timestamp::UNIX_EPOCH + secs(1), from: 5, to: 1 };
        assert_eq!(decide(&drop, &subjects(&web(), &[]), &witness, drop.seen), Attribution::Pending);
    }

    fn event(kind: &str, name: &str, reason: &str, message: &str, at: Timestamp) -> EventRecord {
        EventRecord {
            involved_kind: kind.into(),
            involved_name: name.into(),
            reason: reason.into(),
            message: message.into(),
            first: at,
            last: at,
            count: 1,
            sequence: 1,
        }
    }

    #[test]
    fn an_hpa_event_decides_before_any_status() {
        let drop = LiveDrop { seen: Timestamp::UNIX_EPOCH + secs(1000), from: 5, to: 1 };
        let hpas = web();
        let subjects = subjects(&hpas, &[]);
        let mut witness = Witness::default();
        let order = event(
            "HorizontalPodAutoscaler",
            "web",
            "SuccessfulRescale",
            "New size: 1; reason: All metrics below target",
            drop.seen,
        );
        witness.record_event(
            event("HorizontalPodAutoscaler", "other", "SuccessfulRescale", "New size: 1; reason: x", drop.seen),
            &subjects,
        );
        assert!(witness.events.is_empty(), "another HPA's event is not kept");
        witness.record_event(order, &subjects);
        let (cause, basis) = cause_and_basis(decide(&drop, &subjects, &witness, drop.seen)).unwrap();
        assert_eq!(cause, Cause::Autoscaler { hpa: "hpa/web".into(), reason: "All metrics below target".into() });
        assert_eq!(basis, Basis::Event);
    }

    /// KEDA's idle scale 2 -> 0 shows in no HPA status (its HPA reads 0 and stops): only its
    /// Event decides it, from the real operator's captured events.
    #[test]
    fn a_drop_to_kedas_idle_size_waits_for_its_event() {
        let events: Vec<k8s_openapi::api::core::v1::Event> =
            serde_json::from_value(load("events-keda-idle")["items"].clone()).unwrap();
        let deactivated = events
            .iter()
            .filter_map(EventRecord::from_event)
            .find(|e| e.reason == "KEDAScaleTargetDeactivated")
            .unwrap();
        let drop = LiveDrop { seen: deactivated.first + secs(1), from: 2, to: 0 };
        let keda_hpa = vec!["keda-hpa-web".to_string()];
        let so = [ScaledObjectSubject { name: deactivated.involved_name.clone(), idle_size: 0, paused_replicas: None }];
        let subjects = subjects(&keda_hpa, &so);
        let mut witness = Witness::default();
        witness
            .record_hpa(&with_status(captured_named("keda-hpa-web"), 0, 0, drop.seen - secs(600)), drop.seen + secs(2));
        assert_eq!(
            decide(&drop, &subjects, &witness, drop.seen),
            Attribution::Pending,
            "its HPA's status is no verdict"
        );
        witness.record_event(deactivated, &subjects);
        let (cause, basis) = cause_and_basis(decide(&drop, &subjects, &witness, drop.seen)).unwrap();
        assert!(matches!(cause, Cause::KedaIdle { .. }), "{cause:?}");
        assert_eq!(basis, Basis::Event);
    }

    fn captured_named(name: &str) -> HorizontalPodAutoscaler {
        let mut hpa = captured();
        hpa.metadata.name = Some(name.into());
        hpa
    }

    #[test]
    fn a_drop_still_pending_after_the_wait_is_unresolved_not_a_failure() {
        let drop = LiveDrop { seen: Timestamp::UNIX_EPOCH + secs(1000), from: 5, to: 1 };
        let mut witness = Witness::default();
        witness.record_hpa(&captured(), drop.seen - secs(30));
        let (cause, decided) = unresolved(&drop, &witness, drop.seen + secs(40), Duration::from_secs(40));
        assert!(matches!(&cause, Cause::Unresolved { reason } if reason.contains("did not catch up")), "{cause:?}");
        assert_eq!(decided.by, Basis::WaitOver);
        let as_drop = timeline::ReplicaDrop {
            time: drop.seen,
            from: 5,
            to: 1,
            cause,
            evidence: String::new(),
            decided: Some(decided),
        };
        assert!(!as_drop.is_failure());
    }
}
