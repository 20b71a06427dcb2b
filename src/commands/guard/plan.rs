//! What `guard on` writes, decided before anything is written. Pure: no I/O.

use std::time::Duration;

use serde::Serialize;

use crate::core::guard::{self, Entry, Mark, Mode};
use crate::core::verdict::{Assessment, Verdict};
use crate::core::workload::AppsKind;
use crate::error::{Error, Result};

/// One workload `guard on` marks.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Guarded {
    pub namespace: String,
    pub kind: AppsKind,
    pub name: String,
    pub replicas: Option<i64>,
    pub floor: i64,
    pub mode: Mode,
    pub autoscaler: Option<String>,
    /// The mark before (restored if the guard does not become active).
    #[serde(skip)]
    pub(super) previous: Option<Mark>,
    /// How long after the policy was written the API server first refused (warned about, pinned) a drop.
    pub active_after: Duration,
}

impl Guarded {
    /// `deployment/web`, as a target is written.
    pub(super) fn target(&self) -> String {
        format!("{}/{}", self.kind.command_name(), self.name)
    }

    fn entry(&self) -> Entry {
        Entry {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            floor: self.floor,
            autoscaler: self.autoscaler.clone(),
        }
    }

    fn is(&self, kind: AppsKind, namespace: &str, name: &str) -> bool {
        self.kind == kind && self.namespace == namespace && self.name == name
    }
}

/// What `guard on` would write for each assessment, or, if any of them cannot be guarded, why
/// not (for all of them, before anything is written).
pub(super) fn plan_guards(assessments: &[Assessment], floor: Option<i64>, mode: Mode) -> Result<Vec<Guarded>> {
    let mut plans = Vec::new();
    let mut refusals = Vec::new();
    for a in assessments {
        match plan_guard(a, floor, mode) {
            Ok(plan) => plans.push(plan),
            Err(refusal) => refusals.push(refusal),
        }
    }
    if !refusals.is_empty() {
        return Err(Error::GuardRefused(format!("nothing was changed: {}", refusals.join("; "))));
    }
    Ok(plans)
}

/// The guard of one workload: its kind must have a policy, and its floor is `floor` or the
/// minimum of the one autoscaler in charge. `Err` says why it cannot be guarded.
fn plan_guard(a: &Assessment, floor: Option<i64>, mode: Mode) -> std::result::Result<Guarded, String> {
    let target = format!("{}/{}", a.namespace, a.target());
    let Some(kind) = AppsKind::of(&a.workload_kind) else {
        return Err(format!(
            "{target}: the guard covers Deployments and StatefulSets; {} would need a rule of its own",
            a.workload_kind.command_name()
        ));
    };
    let in_charge = match (a.verdict, a.autoscalers.as_slice()) {
        (Verdict::Safe | Verdict::StripNeeded, [autoscaler]) => Ok((autoscaler.label(), autoscaler.lowest_replicas())),
        (verdict, _) => Err(format!("{}: {}", verdict.as_str(), a.reason)),
    };
    let (floor, autoscaler) = guard::choose_floor(floor, in_charge, a.replicas.spec).map_err(|e| e.explain(&target))?;
    Ok(Guarded {
        namespace: a.namespace.clone(),
        kind,
        name: a.name.clone(),
        replicas: a.replicas.spec,
        floor,
        mode,
        autoscaler,
        previous: a.guard.clone(),
        active_after: Duration::ZERO,
    })
}

/// The modes whose policies `guard on` rewrites for `plans`: deny and warn always (a workload
/// moves out of them), pin when a plan is pin or moves out of it. A guard that has nothing to do
/// with pin never reads MutatingAdmissionPolicy, which a cluster older than 1.36 does not serve.
pub(super) fn modes_touched(plans: &[Guarded]) -> Vec<Mode> {
    let pin = plans.iter().any(|p| p.mode == Mode::Pin || p.previous.as_ref().is_some_and(|m| m.mode == Mode::Pin));
    Mode::ALL.into_iter().filter(|m| *m != Mode::Pin || pin).collect()
}

/// The entries of `kind`'s `mode` policy once the plans are written: each planned workload of
/// that kind is listed by the policy of its mode (with its new floor) and by no other, so a
/// workload guarded in the other mode moves over. Other workloads' entries are kept.
pub(super) fn entries_with(entries: &[Entry], plans: &[Guarded], kind: AppsKind, mode: Mode) -> Vec<Entry> {
    plans.iter().filter(|p| p.kind == kind).fold(entries.to_vec(), |entries, plan| {
        if plan.mode == mode {
            guard::with_entry(&entries, plan.entry())
        } else {
            guard::without_entry(&entries, &plan.namespace, &plan.name)
        }
    })
}

/// The entries of `kind`'s policy with each planned workload's entry as it was `before` the
/// plans were written (or none); entries of other workloads, written since by others, are kept.
pub(super) fn entries_restored(now: &[Entry], plans: &[Guarded], kind: AppsKind, before: &[Entry]) -> Vec<Entry> {
    plans.iter().filter(|p| p.kind == kind).fold(now.to_vec(), |now, plan| {
        let now = guard::without_entry(&now, &plan.namespace, &plan.name);
        match before.iter().find(|e| plan.is(kind, &e.namespace, &e.name)) {
            Some(previous) => guard::with_entry(&now, previous.clone()),
            None => now,
        }
    })
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::*;
    use crate::core::fixtures::{deployment, hpa};
    use crate::core::workload::{Workload, WorkloadKind};
    use crate::core::{Cluster, analyze};
    use crate::error::ExitStatus;

    /// A captured workload as `check` assesses it, with the captured HPA (minReplicas 3) in
    /// charge of it when `with_hpa`.
    pub fn assessed(workload: &Workload, with_hpa: bool) -> Assessment {
        let hpas =
            if with_hpa { vec![hpa("hpa-min3-rescaled", workload.namespace(), workload.name())] } else { vec![] };
        analyze(workload, &Cluster { hpas: &hpas, ..Cluster::default() })
    }

    /// The captured `hpa-rescaled` Deployment (3 replicas, `hpa/web` in charge, minimum 3).
    pub fn web() -> Assessment {
        assessed(&deployment("hpa-rescaled"), true)
    }

    fn stateful_set(name: &str, replicas: i64) -> Assessment {
        let object = json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"replicas": replicas},
        });
        assessed(&Workload::from_object(WorkloadKind::stateful_set(), object).unwrap(), false)
    }

    fn refusal(assessments: &[Assessment], floor: Option<i64>) -> String {
        let error = plan_guards(assessments, floor, Mode::Deny).unwrap_err();
        assert_eq!(error.exit_status(), ExitStatus::Usage, "{error}");
        error.to_string()
    }

    fn entry(namespace: &str, name: &str, floor: i64) -> Entry {
        Entry { namespace: namespace.into(), name: name.into(), floor, autoscaler: None }
    }

    #[test]
    fn the_floor_is_the_minimum_of_the_autoscaler_in_charge() {
        let web = web();
        let plans = plan_guards(std::slice::from_ref(&web), None, Mode::Warn).unwrap();
        let [plan] = plans.as_slice() else { panic!("{plans:?}") };
        assert_eq!((plan.kind, plan.floor, plan.mode), (AppsKind::Deployment, 3, Mode::Warn));
        assert_eq!((plan.namespace.as_str(), plan.target()), (web.namespace.as_str(), "deployment/web".into()));
        assert_eq!((plan.replicas, plan.autoscaler.as_deref()), (Some(3), Some("hpa/web")));
        assert_eq!(plan.previous, None);
        assert_eq!(plan.active_after, Duration::ZERO);
    }

    #[test]
    fn a_workload_that_needs_a_strip_can_be_guarded_before_it() {
        let flux = assessed(&deployment("flux-ssa-owns-replicas"), true);
        assert_eq!(flux.verdict, Verdict::StripNeeded);
        assert_eq!(plan_guards(&[flux], None, Mode::Deny).unwrap()[0].floor, 3);
    }

    #[test]
    fn an_explicit_floor_wins_and_keeps_the_autoscaler_in_charge() {
        let plan = &plan_guards(&[web()], Some(2), Mode::Deny).unwrap()[0];
        assert_eq!((plan.floor, plan.autoscaler.as_deref()), (2, Some("hpa/web")));
        let lonely = &plan_guards(&[stateful_set("db", 2)], Some(2), Mode::Deny).unwrap()[0];
        assert_eq!((lonely.kind, lonely.floor, lonely.autoscaler.as_deref()), (AppsKind::StatefulSet, 2, None));
    }

    #[test]
    fn one_workload_that_cannot_be_guarded_plans_nothing_and_every_refusal_is_told() {
        let refused = refusal(&[web(), stateful_set("db", 2)], None);
        assert!(
            refused.starts_with("nothing was changed: shop/statefulset/db: no autoscaler is in charge ("),
            "{refused}"
        );
        assert!(refused.ends_with("pass --floor N to guard it anyway"), "{refused}");

        let refused = refusal(&[web(), stateful_set("db", 2)], Some(6));
        let web = web();
        let below = |target: &str, replicas: i64| {
            format!(
                "{target} runs {replicas} replica(s), below the floor of 6: scale it up first, or pass a lower --floor"
            )
        };
        assert_eq!(
            refused,
            format!(
                "nothing was changed: {}; {}",
                below(&format!("{}/deployment/web", web.namespace), 3),
                below("shop/statefulset/db", 2)
            )
        );
    }

    #[test]
    fn only_deployments_and_statefulsets_are_planned() {
        let mut rollout = web();
        rollout.workload_kind = WorkloadKind {
            group: "argoproj.io".into(),
            version: "v1alpha1".into(),
            kind: "Rollout".into(),
            plural: "rollouts".into(),
        };
        let refused = refusal(&[rollout], Some(2));
        assert!(
            refused.ends_with(
                "/rollouts.argoproj.io/web: the guard covers Deployments and StatefulSets; rollouts.argoproj.io would need a rule of its own"
            ),
            "{refused}"
        );
    }

    #[test]
    fn the_previous_mark_is_kept_for_a_roll_back() {
        let mut web = web();
        let mark = Mark { mode: Mode::Warn, floor: Some(2), autoscaler: None, pinned: None };
        web.guard = Some(mark.clone());
        assert_eq!(plan_guards(&[web], None, Mode::Deny).unwrap()[0].previous, Some(mark));
    }

    #[test]
    fn a_plan_lists_its_workload_in_its_mode_only_and_leaves_others_alone() {
        let web = web();
        let plans = plan_guards(std::slice::from_ref(&web), None, Mode::Deny).unwrap();
        let ns = web.namespace.as_str();
        let other = entry("other", "api", 2);
        let stale = entry(ns, "web", 7);
        let mut listed = entry(ns, "web", 3);
        listed.autoscaler = Some("hpa/web".into());

        let deny = entries_with(&[other.clone(), stale.clone()], &plans, AppsKind::Deployment, Mode::Deny);
        assert_eq!(deny, vec![listed, other.clone()], "sorted: the fixture's namespace is hpa-owns-...");
        let warn = entries_with(&[stale.clone(), other.clone()], &plans, AppsKind::Deployment, Mode::Warn);
        assert_eq!(warn, vec![other.clone()]);
        let statefulsets = entries_with(std::slice::from_ref(&stale), &plans, AppsKind::StatefulSet, Mode::Deny);
        assert_eq!(statefulsets, vec![stale], "a Deployment's plan does not touch the StatefulSets' policy");
    }

    #[test]
    fn a_roll_back_restores_the_planned_workloads_entries_only() {
        let web = web();
        let plans = plan_guards(std::slice::from_ref(&web), None, Mode::Deny).unwrap();
        let ns = web.namespace.as_str();
        let written = entries_with(&[], &plans, AppsKind::Deployment, Mode::Deny);
        let added_since = entry("other", "api", 2);
        let now = guard::with_entry(&written, added_since.clone());

        assert_eq!(entries_restored(&now, &plans, AppsKind::Deployment, &[]), vec![added_since.clone()]);
        let before = entry(ns, "web", 4);
        assert_eq!(
            entries_restored(&now, &plans, AppsKind::Deployment, std::slice::from_ref(&before)),
            vec![before, added_since]
        );
    }
}
