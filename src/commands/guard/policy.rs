//! The guard's ValidatingAdmissionPolicy objects on the API server: whether they are served,
//! whether the user may write them, and their entries, read and rewritten under optimistic
//! concurrency. The objects themselves are built in [`crate::core::guard`].

use std::collections::BTreeSet;

use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::Value;

use super::plan::Guarded;
use crate::core::guard::{self, Entry, Mode};
use crate::core::workload::AppsKind;
use crate::error::{Error, Result, api_code};
use crate::kubeio::{self, NamespaceScope};
use crate::retry::{self, Attempt};

pub(super) const POLICIES: &str = "validatingadmissionpolicies.admissionregistration.k8s.io";
pub(super) const BINDINGS: &str = "validatingadmissionpolicybindings.admissionregistration.k8s.io";

/// Attempts at rewriting a policy's entries: one policy per kind and mode serves the whole
/// cluster, so every `guard on` and `off` in every namespace writes the same object.
const POLICY_WRITE_ATTEMPTS: u32 = 8;

/// Stops with a one-line error, before anything is written, on a cluster without
/// ValidatingAdmissionPolicy (Kubernetes older than 1.30).
pub async fn ensure_served(client: &Client) -> Result<()> {
    let unavailable = || {
        Error::AdmissionPolicyUnavailable(
            "this cluster does not serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (GA in Kubernetes 1.30), \
             which the guard runs on; nothing was changed"
                .into(),
        )
    };
    match client.list_api_group_resources("admissionregistration.k8s.io/v1").await {
        Ok(list) => {
            let served = |name: &str| list.resources.iter().any(|r| r.name == name);
            if served("validatingadmissionpolicies") && served("validatingadmissionpolicybindings") {
                Ok(())
            } else {
                Err(unavailable())
            }
        }
        Err(e) if api_code(&e) == Some(404) => Err(unavailable()),
        Err(e) => Err(Error::api("discovery of admissionregistration.k8s.io/v1", e)),
    }
}

pub(super) fn policy_error(error: kube::Error, verb: &str, resource: &str) -> Error {
    kubeio::classify_error(error, verb, resource, &NamespaceScope::All)
}

/// One right `guard on` needs: (verb, API group, resource, namespace; empty for cluster-wide).
type Right = (&'static str, &'static str, String, String);

/// What `guard on` writes for `plans`: a patch of each workload (its mark), and the policies and
/// bindings, which are cluster-wide.
fn rights_needed(plans: &[Guarded]) -> BTreeSet<Right> {
    let mut needed: BTreeSet<Right> =
        plans.iter().map(|p| ("patch", "apps", p.kind.plural().to_string(), p.namespace.clone())).collect();
    for verb in ["get", "create", "update", "delete"] {
        needed.insert((verb, "admissionregistration.k8s.io", "validatingadmissionpolicies".into(), String::new()));
    }
    for verb in ["get", "create", "delete"] {
        needed.insert((
            verb,
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings".into(),
            String::new(),
        ));
    }
    needed
}

/// Asks the API server (SelfSubjectAccessReview) whether the user may do what `guard on` is
/// about to do, so a refusal stops it before anything is written.
pub(super) async fn check_rights(client: &Client, plans: &[Guarded]) -> Result<()> {
    for (verb, group, resource, namespace) in rights_needed(plans) {
        if !kubeio::can_i(client, verb, group, &resource, &namespace).await? {
            let scope = if namespace.is_empty() {
                " (cluster-wide)".to_string()
            } else {
                format!(" in namespace \"{namespace}\"")
            };
            return Err(Error::Forbidden {
                verb: verb.to_string(),
                resource: format!("{resource}.{group}"),
                scope,
                message: "nothing was changed; grant the role in deploy/rbac/guard.yaml".into(),
            });
        }
    }
    Ok(())
}

pub(super) fn policy_api(client: &Client) -> Api<ValidatingAdmissionPolicy> {
    Api::all(client.clone())
}

pub(super) fn binding_api(client: &Client) -> Api<ValidatingAdmissionPolicyBinding> {
    Api::all(client.clone())
}

/// The entries of one kind and mode's policy (none when it does not exist).
pub(super) async fn read_entries(client: &Client, kind: AppsKind, mode: Mode) -> Result<Vec<Entry>> {
    let found =
        policy_api(client).get_opt(&kind.policy_name(mode)).await.map_err(|e| policy_error(e, "get", POLICIES))?;
    Ok(found.map(|p| guard::entries_of(&serde_json::to_value(p).unwrap_or_default())).unwrap_or_default())
}

/// Rewrites the entries of one kind and mode's policy with `change`: creates the policy and its
/// binding for the first entry, deletes both when none is left. A read-modify-write on the
/// policy's resourceVersion; when someone else wrote in between, it re-reads and applies
/// `change` again, at most [`POLICY_WRITE_ATTEMPTS`] times, then [`Error::Conflict`].
pub(super) async fn update_entries(
    client: &Client,
    kind: AppsKind,
    mode: Mode,
    change: impl Fn(&[Entry]) -> Vec<Entry>,
) -> Result<()> {
    let change = &change;
    retry::on_conflict_within(
        POLICY_WRITE_ATTEMPTS,
        |_| async move { write_entries(client, kind, mode, change).await },
        || {
            format!(
                "{} kept changing while the guard was updating it; nothing more was changed",
                kind.policy_name(mode)
            )
        },
    )
    .await
}

/// One attempt of [`update_entries`]: [`Attempt::Conflict`] when the policy moved since it was read.
async fn write_entries(
    client: &Client,
    kind: AppsKind,
    mode: Mode,
    change: &impl Fn(&[Entry]) -> Vec<Entry>,
) -> Result<Attempt<()>> {
    let name = kind.policy_name(mode);
    let existing = policy_api(client).get_opt(&name).await.map_err(|e| policy_error(e, "get", POLICIES))?;
    let existing_value = existing.as_ref().map(|p| serde_json::to_value(p).unwrap_or_default());
    let entries = existing_value.as_ref().map(guard::entries_of).unwrap_or_default();
    let wanted = change(&entries);
    let written = if wanted.is_empty() {
        delete_binding(client, &name).await?;
        let Some(existing) = existing else { return Ok(Attempt::Done(())) };
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: existing.metadata.resource_version,
                uid: None,
            }),
            ..Default::default()
        };
        policy_api(client).delete(&name, &params).await.map(|_| ())
    } else {
        let post = PostParams { field_manager: Some(guard::FIELD_MANAGER.into()), ..Default::default() };
        let mut body: ValidatingAdmissionPolicy = serde_json::from_value(guard::policy(kind, mode, &wanted))
            .expect("the policy is a ValidatingAdmissionPolicy");
        let result = match &existing {
            None => policy_api(client).create(&post, &body).await.map(|_| ()),
            Some(_) if wanted == entries && existing_value.as_ref().is_some_and(|v| same_spec(v, &body)) => Ok(()),
            Some(current) => {
                body.metadata.resource_version = current.metadata.resource_version.clone();
                policy_api(client).replace(&name, &post, &body).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => ensure_binding(client, kind, mode).await,
            Err(e) => Err(e),
        }
    };
    match written {
        Ok(()) => Ok(Attempt::Done(())),
        // A stale resourceVersion, or a policy created by someone else since it was read.
        Err(e) if api_code(&e) == Some(409) => Ok(Attempt::Conflict),
        Err(e) => Err(policy_error(e, "write", POLICIES)),
    }
}

/// Whether a stored policy already has the spec `body` would write (so nothing needs writing).
fn same_spec(stored: &Value, body: &ValidatingAdmissionPolicy) -> bool {
    let wanted = serde_json::to_value(body).unwrap_or_default();
    stored.get("spec") == wanted.get("spec")
}

async fn ensure_binding(client: &Client, kind: AppsKind, mode: Mode) -> Result<(), kube::Error> {
    let name = kind.policy_name(mode);
    if binding_api(client).get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let body: ValidatingAdmissionPolicyBinding =
        serde_json::from_value(guard::binding(kind, mode)).expect("the binding is a ValidatingAdmissionPolicyBinding");
    let post = PostParams { field_manager: Some(guard::FIELD_MANAGER.into()), ..Default::default() };
    match binding_api(client).create(&post, &body).await {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == Some(409) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn delete_binding(client: &Client, name: &str) -> Result<()> {
    match binding_api(client).delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == Some(404) => Ok(()),
        Err(e) => Err(policy_error(e, "delete", BINDINGS)),
    }
}

/// Every guard policy object in the cluster (any version): (is a binding, name).
pub(super) async fn list_policy_objects(client: &Client) -> Result<Vec<(bool, String)>> {
    let params = ListParams::default().labels(&guard::policy_selector(None));
    let bindings =
        kubeio::list_all(&binding_api(client), &params).await.map_err(|e| policy_error(e, "list", BINDINGS))?;
    let policies =
        kubeio::list_all(&policy_api(client), &params).await.map_err(|e| policy_error(e, "list", POLICIES))?;
    let name = |meta: &kube::api::ObjectMeta| meta.name.clone().unwrap_or_default();
    Ok(bindings
        .iter()
        .map(|b| (true, name(&b.metadata)))
        .chain(policies.iter().map(|p| (false, name(&p.metadata))))
        .filter(|(_, n)| n.starts_with(guard::POLICY_PREFIX))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::plan::{plan_guards, tests::web};
    use super::*;

    fn stored(kind: AppsKind, mode: Mode, entries: &[Entry]) -> (Value, ValidatingAdmissionPolicy) {
        let value = guard::policy(kind, mode, entries);
        (value.clone(), serde_json::from_value(value).unwrap())
    }

    #[test]
    fn a_policy_with_the_same_entries_needs_no_write_and_a_changed_one_does() {
        let one = [Entry { namespace: "shop".into(), name: "web".into(), floor: 3, autoscaler: None }];
        let (value, body) = stored(AppsKind::Deployment, Mode::Deny, &one);
        assert!(same_spec(&value, &body));
        let (_, two_floors) = stored(AppsKind::Deployment, Mode::Deny, &[Entry { floor: 4, ..one[0].clone() }]);
        assert!(!same_spec(&value, &two_floors));
        let (_, statefulsets) = stored(AppsKind::StatefulSet, Mode::Deny, &one);
        assert!(!same_spec(&value, &statefulsets));
    }

    #[test]
    fn guard_on_needs_to_patch_each_namespace_s_workloads_and_write_the_policies_cluster_wide() {
        let web = web();
        let plans = plan_guards(std::slice::from_ref(&web), None, Mode::Deny).unwrap();
        let needed = rights_needed(&plans);
        let namespaced: Vec<&Right> = needed.iter().filter(|(_, _, _, ns)| !ns.is_empty()).collect();
        assert_eq!(namespaced, vec![&("patch", "apps", "deployments".to_string(), web.namespace.clone())]);
        let cluster_wide = |resource: &str| -> Vec<&str> {
            needed.iter().filter(|(_, _, r, ns)| r == resource && ns.is_empty()).map(|(verb, ..)| *verb).collect()
        };
        assert_eq!(cluster_wide("validatingadmissionpolicies"), ["create", "delete", "get", "update"]);
        assert_eq!(cluster_wide("validatingadmissionpolicybindings"), ["create", "delete", "get"]);
    }
}
