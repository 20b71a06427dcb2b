//! The text report of verify.

use super::{VerifyOutcome, VerifyReport};
use crate::core::timeline::{Cause, ReplicaDrop};
use crate::output::count;

pub fn render_text(report: &VerifyReport) -> String {
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
            h.drops.iter().for_each(|drop| out.push_str(&drop_line(drop)));
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
            l.drops.iter().for_each(|drop| out.push_str(&drop_line(drop)));
        }
        out.push_str(&format!("  end state: {} ({})\n", r.end_state.verdict.as_str(), r.end_state.reason));
    }
    out
}

fn outcome_name(outcome: VerifyOutcome) -> &'static str {
    match outcome {
        VerifyOutcome::Pass => "pass",
        VerifyOutcome::Inconclusive => "inconclusive",
        VerifyOutcome::AtRisk => "at-risk",
        VerifyOutcome::Drop => "drop",
    }
}

fn drop_line(drop: &ReplicaDrop) -> String {
    format!("  drop {} -> {} at {}: {}\n", drop.from, drop.to, drop.time, cause_text(&drop.cause))
}

pub(super) fn cause_text(cause: &Cause) -> String {
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
