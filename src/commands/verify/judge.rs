//! Each workload's outcome from what verify saw: its history, its live watch and its end state.
//! Pure.

use super::render::cause_text;
use super::{EndState, History, Live, VerifyOutcome, WorkloadResult};
use crate::cli::VerifyArgs;
use crate::core::timeline::{Cause, ReplicaDrop};
use crate::core::verdict::{Assessment, Verdict};

/// Each workload's result from its history and live watch (either may be absent) and its end state.
pub(super) fn judge_all(
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
            VerifyOutcome::Drop,
            format!(
                "replicas dropped from {} to {} at {}, and no autoscaler ordered it: {}",
                first.from, first.to, first.time, first.evidence
            ),
        )
    } else if !end_state.ok {
        (VerifyOutcome::AtRisk, end_state.problems.join("; "))
    } else if !inconclusive.is_empty() {
        (VerifyOutcome::Inconclusive, inconclusive.join("; "))
    } else {
        (VerifyOutcome::Pass, pass_reason(drops(), args.floor, &end_state))
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
fn pass_reason<'a>(drops: impl Iterator<Item = &'a ReplicaDrop>, floor: i64, end_state: &EndState) -> String {
    let ordered: Vec<String> =
        drops.map(|d| format!("{} -> {} at {}: {}", d.from, d.to, d.time, cause_text(&d.cause))).collect();
    let how = if ordered.is_empty() {
        format!("replicas never went to {floor} or below in the period")
    } else {
        format!("replicas went to {floor} or below only as an autoscaler ordered ({})", ordered.join("; "))
    };
    format!("{how}, and {}", end_state.reason)
}

pub(super) fn end_state(now: &Assessment, floor: i64) -> EndState {
    let mut problems = Vec::new();
    let mut reason = now.reason.clone();
    // A pinned write stored no lower count (the watch and the history saw none): name it.
    if let Some(pinned) = now.guard.as_ref().and_then(|g| g.pinned.as_ref()) {
        reason = format!("{reason}; {} (no drop)", pinned.describe());
    }
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

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::cli::{Verb, parse_from};
    use crate::commands::verify::Minimum;
    use crate::core::attribution::{Basis, Decided};
    use crate::core::fixtures::{deployment, hpa};
    use crate::core::{Cluster, analyze};

    fn args(extra: &[&str]) -> VerifyArgs {
        let line = ["kubectl-hpa_migrate", "verify", "deploy/web"].iter().chain(extra).map(Into::into);
        match parse_from(line).unwrap().verb {
            Some(Verb::Verify(args)) => args,
            other => panic!("{other:?}"),
        }
    }

    /// A captured workload with the captured HPA (min 3) targeting it.
    fn assessed(fixture: &str) -> Assessment {
        let workload = deployment(fixture);
        let hpas = [hpa("hpa-min3-rescaled", workload.namespace(), workload.name())];
        analyze(&workload, &Cluster { hpas: &hpas, ..Cluster::default() })
    }

    fn live_with(cause: Cause) -> Live {
        let at = Timestamp::UNIX_EPOCH;
        let decided = Decided { at, by: Basis::HpaStatus, evidence: "status".into() };
        let drop = ReplicaDrop { time: at, from: 5, to: 1, cause, evidence: "watch".into(), decided: Some(decided) };
        Live {
            started: at,
            ended: at,
            minimum: Minimum::default(),
            gaps: Vec::new(),
            unresolved_gaps: 0,
            drops: vec![drop],
        }
    }

    fn judged(live: Live) -> WorkloadResult {
        let a = assessed("hpa-rescaled");
        let args = args(&["--watch", "30s"]);
        judge(&a, None, Some(live), end_state(&a, args.floor), &args)
    }

    #[test]
    fn the_captured_safe_workload_has_a_sound_end_state() {
        let a = assessed("hpa-rescaled");
        let end = end_state(&a, 1);
        assert!(end.ok, "{end:?}");
        assert!(!end_state(&a, 3).ok, "at 3 replicas, a floor of 3 is reached");
    }

    #[test]
    fn an_unordered_live_drop_is_the_failure() {
        let result = judged(live_with(Cause::Unordered));
        assert_eq!(result.outcome, VerifyOutcome::Drop);
        assert!(result.reason.contains("no autoscaler ordered it"), "{}", result.reason);
    }

    #[test]
    fn a_drop_the_hpa_ordered_passes() {
        let result = judged(live_with(Cause::Autoscaler { hpa: "hpa/web".into(), reason: "desired 1".into() }));
        assert_eq!(result.outcome, VerifyOutcome::Pass, "{}", result.reason);
        assert!(result.reason.contains("only as an autoscaler ordered"), "{}", result.reason);
    }

    #[test]
    fn an_unresolved_live_drop_is_inconclusive_never_a_pass_nor_a_drop() {
        let result = judged(live_with(Cause::Unresolved { reason: "the autoscaler's status did not catch up".into() }));
        assert_eq!(result.outcome, VerifyOutcome::Inconclusive);
        assert!(result.reason.contains("is unresolved: the autoscaler's status did not catch up"), "{}", result.reason);
        assert_eq!(
            serde_json::to_value(&result.live.as_ref().unwrap().drops[0].cause).unwrap(),
            serde_json::json!({"by": "unresolved", "reason": "the autoscaler's status did not catch up"})
        );
    }

    #[test]
    fn a_deploy_tool_still_owning_replicas_is_at_risk() {
        let a = assessed("flux-ssa-owns-replicas");
        let args = args(&["--watch", "30s"]);
        let mut live = live_with(Cause::Unordered);
        live.drops.clear();
        let result = judge(&a, None, Some(live), end_state(&a, args.floor), &args);
        assert_eq!(result.outcome, VerifyOutcome::AtRisk, "{}", result.reason);
    }

    #[test]
    fn results_follow_the_assessments_in_order() {
        let assessments = [assessed("hpa-rescaled"), assessed("flux-ssa-owns-replicas")];
        let end_states = assessments.iter().map(|a| end_state(a, 1)).collect();
        let lives = vec![live_with(Cause::Unordered), live_with(Cause::Unordered)];
        let results = judge_all(&assessments, None, Some(lives), end_states, &args(&["--watch", "1s"]));
        assert_eq!(
            results.iter().map(|r| r.namespace.as_str()).collect::<Vec<_>>(),
            vec![assessments[0].namespace.as_str(), assessments[1].namespace.as_str()]
        );
    }
}
