//! `guard status`: the marked workloads and the policies' entries, side by side, and where they
//! disagree.

use kube::Client;
use serde::Serialize;
use serde_json::Value;

use super::policy::{binding_api, ensure_served, modes_served, policy_api, policy_error, resource_name};
use crate::commands::check;
use crate::core::guard::{self, Entry, Mark, Mode};
use crate::core::workload::AppsKind;
use crate::error::Result;
use crate::kubeio::{self, NamespaceScope};

/// `guard status -o json|yaml`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub policies: Vec<PolicyState>,
    pub workloads: Vec<GuardedWorkload>,
    /// Where the marks and the policies disagree.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyState {
    pub name: String,
    pub kind: AppsKind,
    pub mode: Mode,
    pub installed: bool,
    pub bound: bool,
    /// How many workloads it guards, in every namespace.
    pub guarded: usize,
    /// The API server's type-checking warnings about the policy's CEL.
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardedWorkload {
    pub namespace: String,
    pub kind: AppsKind,
    pub name: String,
    pub replicas: Option<i64>,
    /// What the policy enforces (null: no policy lists it).
    pub enforced: Option<EnforcedGuard>,
    /// The mark on the workload (null: not marked).
    pub mark: Option<Mark>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnforcedGuard {
    pub mode: Mode,
    pub floor: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<String>,
}

/// What one guarded kind looks like on the API server: its marked workloads in scope and, per
/// mode, its policy with the entries the policy lists.
struct KindState {
    kind: AppsKind,
    marked: Vec<GuardedWorkload>,
    policies: Vec<(PolicyState, Vec<Entry>)>,
}

pub async fn status_report(client: &Client, scope: &NamespaceScope) -> Result<StatusReport> {
    ensure_served(client, Mode::Deny).await?;
    let modes = modes_served(client).await?;
    let mut kinds = Vec::new();
    for kind in AppsKind::ALL {
        let marked = kubeio::list_workloads(client, &kind.workload_kind(), scope, Some(guard::GUARD_LABEL)).await?;
        let marked = marked
            .iter()
            .map(|workload| GuardedWorkload {
                namespace: workload.namespace().to_string(),
                kind,
                name: workload.name().to_string(),
                replicas: workload.replicas.spec,
                enforced: None,
                mark: Mark::of(workload),
            })
            .collect();
        let mut policies = Vec::new();
        for &mode in &modes {
            policies.push(policy_state(client, kind, mode).await?);
        }
        kinds.push(KindState { kind, marked, policies });
    }
    Ok(assemble(kinds, scope.namespace()))
}

/// The report of what was read: each workload in scope with its mark and what a policy
/// enforces on it, sorted; the problems are the unbound policies, then every disagreement.
fn assemble(kinds: Vec<KindState>, namespace: Option<&str>) -> StatusReport {
    let mut policies = Vec::new();
    let mut workloads: Vec<GuardedWorkload> = Vec::new();
    let mut problems = Vec::new();
    for KindState { kind, marked, policies: states } in kinds {
        workloads.extend(marked);
        for (state, entries) in states {
            if state.installed && !state.bound {
                let does = if state.mode == Mode::Pin { "pins" } else { "refuses" };
                problems.push(format!("{} has no binding, so it {does} nothing; run guard on again", state.name));
            }
            let in_scope = entries.iter().filter(|e| namespace.is_none_or(|ns| ns == e.namespace));
            for entry in in_scope {
                add_enforced(&mut workloads, kind, state.mode, entry);
            }
            policies.push(state);
        }
    }
    problems.extend(workloads.iter().filter_map(disagreement));
    workloads.sort_by(|a, b| (&a.namespace, a.kind, &a.name).cmp(&(&b.namespace, b.kind, &b.name)));
    StatusReport { api_version: check::REPORT_API_VERSION, kind: "GuardStatus", policies, workloads, problems }
}

/// One kind and mode's policy and binding as the API server has them, with the policy's entries.
async fn policy_state(client: &Client, kind: AppsKind, mode: Mode) -> Result<(PolicyState, Vec<Entry>)> {
    let name = kind.policy_name(mode);
    let policy = policy_api(client, mode)
        .get_opt(&name)
        .await
        .map_err(|e| policy_error(e, "get", &resource_name(mode, false)))?;
    let bound = binding_api(client, mode)
        .get_opt(&name)
        .await
        .map_err(|e| policy_error(e, "get", &resource_name(mode, true)))?
        .is_some();
    let value = policy.as_ref().map(|p| serde_json::to_value(p).unwrap_or_default());
    let entries = value.as_ref().map(guard::entries_of).unwrap_or_default();
    let warnings = value
        .as_ref()
        .and_then(|v| v.pointer("/status/typeChecking/expressionWarnings"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|w| {
            format!("{}: {}", w["fieldRef"].as_str().unwrap_or_default(), w["warning"].as_str().unwrap_or_default())
        })
        .collect();
    let state = PolicyState { name, kind, mode, installed: policy.is_some(), bound, guarded: entries.len(), warnings };
    Ok((state, entries))
}

/// Records what a policy entry enforces on its workload, listing the workload if no mark did.
fn add_enforced(workloads: &mut Vec<GuardedWorkload>, kind: AppsKind, mode: Mode, entry: &Entry) {
    let enforced = EnforcedGuard { mode, floor: entry.floor, autoscaler: entry.autoscaler.clone() };
    match workloads.iter_mut().find(|w| w.kind == kind && w.namespace == entry.namespace && w.name == entry.name) {
        Some(w) => w.enforced = Some(enforced),
        None => workloads.push(GuardedWorkload {
            namespace: entry.namespace.clone(),
            kind,
            name: entry.name.clone(),
            replicas: None,
            enforced: Some(enforced),
            mark: None,
        }),
    }
}

/// Where a workload's mark and what the policies enforce on it disagree.
fn disagreement(w: &GuardedWorkload) -> Option<String> {
    let label = format!("{}/{}/{}", w.namespace, w.kind.command_name(), w.name);
    match (&w.enforced, &w.mark) {
        (None, Some(_)) => Some(format!("{label} is marked, but no guard policy lists it: it is not guarded")),
        (Some(_), None) => Some(format!("{label} is guarded, but its mark is gone (check does not show it)")),
        (Some(e), Some(m)) if m.floor != Some(e.floor) || m.mode != e.mode => Some(format!(
            "{label}: the mark says {} but the policy enforces {} >= {}",
            m.summary(),
            e.mode.as_str(),
            e.floor
        )),
        _ => None,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn workload(namespace: &str, kind: AppsKind, name: &str, mark: Option<Mark>) -> GuardedWorkload {
        GuardedWorkload {
            namespace: namespace.into(),
            kind,
            name: name.into(),
            replicas: Some(5),
            enforced: None,
            mark,
        }
    }

    fn mark(mode: Mode, floor: i64) -> Option<Mark> {
        Some(Mark { mode, floor: Some(floor), autoscaler: Some("hpa/web".into()), pinned: None })
    }

    fn entry(namespace: &str, name: &str, floor: i64) -> Entry {
        Entry { namespace: namespace.into(), name: name.into(), floor, autoscaler: Some("hpa/web".into()) }
    }

    fn policy(kind: AppsKind, mode: Mode, bound: bool, entries: Vec<Entry>) -> (PolicyState, Vec<Entry>) {
        let state = PolicyState {
            name: kind.policy_name(mode),
            kind,
            mode,
            installed: !entries.is_empty(),
            bound,
            guarded: entries.len(),
            warnings: vec![],
        };
        (state, entries)
    }

    /// Deployments: `shop/web` marked and enforced alike, `shop/api` enforced with its mark
    /// gone, `other/batch` enforced out of a `-n shop` scope, `shop/old` marked but listed by no
    /// policy; StatefulSets: `shop/db` marked warn >= 2, enforced deny >= 3 by an unbound policy.
    fn cluster() -> Vec<KindState> {
        vec![
            KindState {
                kind: AppsKind::Deployment,
                marked: vec![
                    workload("shop", AppsKind::Deployment, "web", mark(Mode::Deny, 3)),
                    workload("shop", AppsKind::Deployment, "old", mark(Mode::Deny, 2)),
                ],
                policies: vec![
                    policy(
                        AppsKind::Deployment,
                        Mode::Deny,
                        true,
                        vec![entry("other", "batch", 1), entry("shop", "api", 2), entry("shop", "web", 3)],
                    ),
                    policy(AppsKind::Deployment, Mode::Warn, false, vec![]),
                ],
            },
            KindState {
                kind: AppsKind::StatefulSet,
                marked: vec![workload("shop", AppsKind::StatefulSet, "db", mark(Mode::Warn, 2))],
                policies: vec![
                    policy(AppsKind::StatefulSet, Mode::Deny, false, vec![entry("shop", "db", 3)]),
                    policy(AppsKind::StatefulSet, Mode::Warn, false, vec![]),
                ],
            },
        ]
    }

    /// The report of [`cluster`] in namespace `shop`.
    pub fn shop_report() -> StatusReport {
        assemble(cluster(), Some("shop"))
    }

    fn listed(report: &StatusReport) -> Vec<String> {
        let shown = |w: &GuardedWorkload| {
            let enforced = w.enforced.as_ref().map(|e| format!("{} >= {}", e.mode.as_str(), e.floor));
            format!(
                "{}/{}/{} {:?} {:?}",
                w.namespace,
                w.kind.command_name(),
                w.name,
                enforced,
                w.mark.as_ref().map(Mark::summary)
            )
        };
        report.workloads.iter().map(shown).collect()
    }

    #[test]
    fn in_a_namespace_the_marks_and_the_entries_in_it_are_matched_and_sorted() {
        let report = shop_report();
        assert_eq!(
            listed(&report),
            [
                "shop/deployment/api Some(\"deny >= 2\") None",
                "shop/deployment/old None Some(\"deny >= 2\")",
                "shop/deployment/web Some(\"deny >= 3\") Some(\"deny >= 3\")",
                "shop/statefulset/db Some(\"deny >= 3\") Some(\"warn >= 2\")",
            ]
        );
        assert_eq!((report.api_version, report.kind), (check::REPORT_API_VERSION, "GuardStatus"));
        let policies: Vec<(&str, usize)> = report.policies.iter().map(|p| (p.name.as_str(), p.guarded)).collect();
        assert_eq!(
            policies,
            [
                ("hpa-migrate-guard-v1-deployments-deny", 3),
                ("hpa-migrate-guard-v1-deployments-warn", 0),
                ("hpa-migrate-guard-v1-statefulsets-deny", 1),
                ("hpa-migrate-guard-v1-statefulsets-warn", 0),
            ],
            "a policy counts its entries in every namespace"
        );
    }

    #[test]
    fn the_problems_are_unbound_policies_then_disagreements_in_the_order_found() {
        let report = shop_report();
        assert_eq!(
            report.problems,
            [
                "hpa-migrate-guard-v1-statefulsets-deny has no binding, so it refuses nothing; run guard on again",
                "shop/deployment/old is marked, but no guard policy lists it: it is not guarded",
                "shop/deployment/api is guarded, but its mark is gone (check does not show it)",
                "shop/statefulset/db: the mark says warn >= 2 but the policy enforces deny >= 3",
            ]
        );
    }

    #[test]
    fn across_namespaces_every_entry_is_listed() {
        let report = assemble(cluster(), None);
        assert_eq!(listed(&report)[0], "other/deployment/batch Some(\"deny >= 1\") None");
        assert_eq!(report.workloads.len(), 5);
        assert!(
            report.problems.contains(
                &"other/deployment/batch is guarded, but its mark is gone (check does not show it)".to_string()
            )
        );
    }

    #[test]
    fn a_mark_with_no_valid_floor_disagrees_with_any_policy() {
        let mut web = workload(
            "shop",
            AppsKind::Deployment,
            "web",
            Some(Mark { mode: Mode::Deny, floor: None, autoscaler: None, pinned: None }),
        );
        web.enforced = Some(EnforcedGuard { mode: Mode::Deny, floor: 3, autoscaler: None });
        assert_eq!(
            disagreement(&web).unwrap(),
            "shop/deployment/web: the mark says deny (no valid floor) but the policy enforces deny >= 3"
        );
        web.mark = mark(Mode::Deny, 3);
        assert_eq!(disagreement(&web), None);
    }

    #[test]
    fn an_entry_is_matched_to_the_marked_workload_of_its_own_kind() {
        let mut workloads = vec![workload("shop", AppsKind::StatefulSet, "web", mark(Mode::Deny, 3))];
        add_enforced(&mut workloads, AppsKind::Deployment, Mode::Deny, &entry("shop", "web", 3));
        assert_eq!(workloads.len(), 2, "a Deployment's entry is not a StatefulSet's");
        assert!(workloads[0].enforced.is_none());
        assert_eq!(
            (workloads[1].kind, workloads[1].replicas, workloads[1].mark.is_none()),
            (AppsKind::Deployment, None, true)
        );
    }
}
