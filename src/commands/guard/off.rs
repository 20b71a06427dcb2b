//! `guard off`: removes workloads' entries and marks, and with `--uninstall` the policy objects.

use std::collections::BTreeSet;

use kube::Client;
use kube::api::DeleteParams;
use serde::Serialize;

use super::mark::{unmark, workload_api};
use super::policy::{
    PolicyObject, binding_api, list_policy_objects, modes_served, policy_api, policy_error, read_entries,
    resource_name, update_entries,
};
use super::probe::confirm_lifted;
use crate::core::guard::{self, Entry, Mode};
use crate::core::verdict::Assessment;
use crate::core::workload::AppsKind;
use crate::error::{Error, Result, api_code};
use crate::kubeio::{self, NamespaceScope};

/// What `guard off` did.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifted {
    /// `namespace/kind/name` of every workload whose guard was removed.
    pub unguarded: Vec<String>,
    /// Named but not guarded.
    pub not_guarded: Vec<String>,
    /// Policy objects deleted by `--uninstall`.
    pub removed: Vec<String>,
    pub warnings: Vec<String>,
}

/// A workload `guard off` removes the guard from.
#[derive(Debug, PartialEq, Eq)]
struct LiftTarget {
    kind: AppsKind,
    namespace: String,
    name: String,
    /// Whether `check` saw its mark.
    marked: bool,
}

/// Removes the guard from the assessed workloads (their entries and marks); a policy left with
/// no entry is deleted with its binding. With `uninstall`, every workload any guard policy lists
/// is unmarked too and every guard policy object is deleted.
pub async fn lift(client: &Client, assessments: &[Assessment], uninstall: bool) -> Result<Lifted> {
    let mut lifted = Lifted::default();
    let mut targets = lift_targets(assessments, &mut lifted);
    let modes = modes_served(client).await?;
    if uninstall {
        for kind in AppsKind::ALL {
            for &mode in &modes {
                add_listed(&mut targets, kind, read_entries(client, kind, mode).await?);
            }
        }
    }
    for kind in AppsKind::ALL {
        let ours: Vec<&LiftTarget> = targets.iter().filter(|t| t.kind == kind).collect();
        if ours.is_empty() {
            continue;
        }
        let listed = remove_entries(client, kind, &modes, &ours, &mut lifted).await?;
        remove_marks(client, kind, &ours, &listed, &mut lifted).await?;
    }
    if uninstall {
        delete_policy_objects(client, &mut lifted).await?;
        warn_of_stray_marks(client, &mut lifted).await;
    }
    Ok(lifted)
}

/// The assessed workloads of a kind the guard covers; the others are recorded as not guarded.
fn lift_targets(assessments: &[Assessment], lifted: &mut Lifted) -> Vec<LiftTarget> {
    let mut targets = Vec::new();
    for a in assessments {
        match AppsKind::of(&a.workload_kind) {
            Some(kind) => targets.push(LiftTarget {
                kind,
                namespace: a.namespace.clone(),
                name: a.name.clone(),
                marked: a.guard.is_some(),
            }),
            None => lifted.not_guarded.push(format!("{}/{}", a.namespace, a.target())),
        }
    }
    targets
}

/// Adds the workloads a policy of `kind` lists to the targets, once each (`--uninstall`).
fn add_listed(targets: &mut Vec<LiftTarget>, kind: AppsKind, entries: Vec<Entry>) {
    for entry in entries {
        if !targets.iter().any(|t| t.kind == kind && t.namespace == entry.namespace && t.name == entry.name) {
            targets.push(LiftTarget { kind, namespace: entry.namespace, name: entry.name, marked: false });
        }
    }
}

/// Removes the targets' entries from the kind's policies of every mode in `modes`; returns the
/// (namespace, name) of every workload they listed before.
async fn remove_entries(
    client: &Client,
    kind: AppsKind,
    modes: &[Mode],
    ours: &[&LiftTarget],
    lifted: &mut Lifted,
) -> Result<BTreeSet<(String, String)>> {
    let mut listed = BTreeSet::new();
    for &mode in modes {
        let entries = read_entries(client, kind, mode).await?;
        listed.extend(entries.iter().map(|e| (e.namespace.clone(), e.name.clone())));
        // Entries of workloads that no longer exist (deleted with their namespace while
        // guarded) go too: they would refuse a new workload of the same name.
        let gone = gone_entries(client, kind, &entries).await?;
        for entry in &gone {
            lifted.warnings.push(format!(
                "removed the guard of {}/{}/{}, which no longer exists",
                entry.namespace,
                kind.command_name(),
                entry.name
            ));
        }
        update_entries(client, kind, mode, |entries| {
            let kept = gone.iter().fold(entries.to_vec(), |e, g| guard::without_entry(&e, &g.namespace, &g.name));
            ours.iter().fold(kept, |entries, t| guard::without_entry(&entries, &t.namespace, &t.name))
        })
        .await?;
    }
    Ok(listed)
}

/// The entries whose workload does not exist any more.
async fn gone_entries(client: &Client, kind: AppsKind, entries: &[Entry]) -> Result<Vec<Entry>> {
    let mut gone = Vec::new();
    for entry in entries {
        let api = workload_api(client, kind, &entry.namespace);
        match api.get_opt(&entry.name).await {
            Ok(Some(_)) => {}
            Ok(None) => gone.push(entry.clone()),
            Err(e) => {
                return Err(kubeio::classify_error(
                    e,
                    "get",
                    &format!("{}.apps", kind.plural()),
                    &NamespaceScope::Namespace(entry.namespace.clone()),
                ));
            }
        }
    }
    Ok(gone)
}

/// Removes the targets' marks and sorts them into unguarded (confirmed by a dry run where it
/// can be) and not guarded.
async fn remove_marks(
    client: &Client,
    kind: AppsKind,
    ours: &[&LiftTarget],
    listed: &BTreeSet<(String, String)>,
    lifted: &mut Lifted,
) -> Result<()> {
    for LiftTarget { namespace, name, marked, .. } in ours.iter().copied() {
        let label = format!("{namespace}/{}/{name}", kind.command_name());
        let had_mark = match unmark(client, kind, namespace, name).await {
            Ok(had) => had,
            // A workload deleted while guarded: its entry is gone, there is no mark to remove.
            Err(Error::Api { source, .. }) if api_code(&source) == Some(404) => false,
            Err(other) => return Err(other),
        };
        if *marked || had_mark || listed.contains(&(namespace.clone(), name.clone())) {
            if let Err(unconfirmed) = confirm_lifted(client, kind, namespace, name).await {
                lifted.warnings.push(unconfirmed.to_string());
            }
            lifted.unguarded.push(label);
        } else {
            lifted.not_guarded.push(label);
        }
    }
    Ok(())
}

/// Deletes every guard policy object (`--uninstall`).
async fn delete_policy_objects(client: &Client, lifted: &mut Lifted) -> Result<()> {
    // Bindings first: a binding without its policy is an error the API server reports.
    for PolicyObject { api, binding, name } in list_policy_objects(client).await? {
        let objects = if binding { binding_api(client, api) } else { policy_api(client, api) };
        match objects.delete(&name, &DeleteParams::default()).await {
            Ok(_) => lifted.removed.push(name),
            Err(e) if api_code(&e) == Some(404) => {}
            Err(e) => return Err(policy_error(e, "delete", &resource_name(api, binding))),
        }
    }
    Ok(())
}

/// Warns of workloads still labelled after `--uninstall` (best effort: a failed list says nothing).
async fn warn_of_stray_marks(client: &Client, lifted: &mut Lifted) {
    for kind in AppsKind::ALL {
        if let Ok(marked) =
            kubeio::list_workloads(client, &kind.workload_kind(), &NamespaceScope::All, Some(guard::GUARD_LABEL)).await
            && !marked.is_empty()
        {
            lifted.warnings.push(format!(
                "{} {} still carry the {} label of a guard no policy lists (it guards nothing): {}",
                marked.len(),
                kind.plural(),
                guard::GUARD_LABEL,
                marked.iter().map(|w| format!("{}/{}", w.namespace(), w.target())).collect::<Vec<_>>().join(", ")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::tests::web;
    use super::*;
    use crate::core::guard::Mark;
    use crate::core::workload::WorkloadKind;

    fn entry(namespace: &str, name: &str) -> Entry {
        Entry { namespace: namespace.into(), name: name.into(), floor: 3, autoscaler: None }
    }

    #[test]
    fn a_kind_without_a_policy_is_not_guarded_and_a_marked_workload_is_remembered_as_marked() {
        let mut marked = web();
        marked.guard = Some(Mark { mode: Mode::Deny, floor: Some(3), autoscaler: None, pinned: None });
        let mut rollout = web();
        rollout.workload_kind.group = "argoproj.io".into();
        rollout.workload_kind.plural = "rollouts".into();
        let mut lifted = Lifted::default();
        let targets = lift_targets(&[marked.clone(), rollout, web()], &mut lifted);
        let target =
            |marked| LiftTarget { kind: AppsKind::Deployment, namespace: web().namespace, name: "web".into(), marked };
        assert_eq!(targets, [target(true), target(false)]);
        assert_eq!(lifted.not_guarded, [format!("{}/rollouts.argoproj.io/web", marked.namespace)]);
        assert_eq!(web().workload_kind, WorkloadKind::deployment());
    }

    #[test]
    fn uninstall_adds_each_listed_workload_once() {
        let mut lifted = Lifted::default();
        let mut targets = lift_targets(&[web()], &mut lifted);
        let named = web().namespace;
        add_listed(&mut targets, AppsKind::Deployment, vec![entry(&named, "web"), entry("shop", "api")]);
        add_listed(&mut targets, AppsKind::Deployment, vec![entry("shop", "api")]);
        add_listed(&mut targets, AppsKind::StatefulSet, vec![entry(&named, "web")]);
        let listed: Vec<(AppsKind, &str, &str, bool)> =
            targets.iter().map(|t| (t.kind, t.namespace.as_str(), t.name.as_str(), t.marked)).collect();
        assert_eq!(
            listed,
            [
                (AppsKind::Deployment, named.as_str(), "web", false),
                (AppsKind::Deployment, "shop", "api", false),
                (AppsKind::StatefulSet, named.as_str(), "web", false),
            ]
        );
    }
}
