//! The guard's admission policy objects on the API server (ValidatingAdmissionPolicy for deny
//! and warn, MutatingAdmissionPolicy for pin): whether they are served, whether the user may
//! write them, and their entries, read and rewritten under optimistic concurrency. The objects
//! themselves are built in [`crate::core::guard`].

use std::collections::BTreeSet;

use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::Value;

use super::plan::Guarded;
use crate::core::guard::{self, Entry, Mode};
use crate::core::workload::AppsKind;
use crate::error::{Error, Result, api_code};
use crate::kubeio::{self, NamespaceScope};
use crate::retry::{self, Attempt};

const GROUP: &str = "admissionregistration.k8s.io";

/// One mode per admission policy API: validating (deny and warn share it) and mutating (pin).
pub(super) const POLICY_APIS: [Mode; 2] = [Mode::Deny, Mode::Pin];

/// Attempts at rewriting a policy's entries: one policy per kind and mode serves the whole
/// cluster, so every `guard on` and `off` in every namespace writes the same object.
const POLICY_WRITE_ATTEMPTS: u32 = 8;

/// Stops with a one-line error, before anything is written, on a cluster that does not serve
/// the admission policy API `mode` runs on: ValidatingAdmissionPolicy (Kubernetes 1.30) for deny
/// and warn, MutatingAdmissionPolicy (1.36) for pin.
pub async fn ensure_served(client: &Client, mode: Mode) -> Result<()> {
    let unavailable = || {
        Error::AdmissionPolicyUnavailable(match mode {
            Mode::Deny | Mode::Warn => {
                "this cluster does not serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy \
                 (GA in Kubernetes 1.30), which the guard runs on; nothing was changed"
                    .into()
            }
            Mode::Pin => "this cluster does not serve admissionregistration.k8s.io/v1 MutatingAdmissionPolicy \
                 (GA in Kubernetes 1.36), which guard on --pin runs on; nothing was changed; \
                 guard on without --pin refuses a deploy that would drop replicas instead"
                .into(),
        })
    };
    if serves(client, mode).await? { Ok(()) } else { Err(unavailable()) }
}

/// Whether the cluster serves the admission policy API `mode` runs on (and its bindings).
pub(super) async fn serves(client: &Client, mode: Mode) -> Result<bool> {
    match client.list_api_group_resources(&format!("{GROUP}/v1")).await {
        Ok(list) => {
            let served = |name: &str| list.resources.iter().any(|r| r.name == name);
            Ok(served(mode.policy_resource()) && served(mode.binding_resource()))
        }
        Err(e) if api_code(&e) == Some(404) => Ok(false),
        Err(e) => Err(Error::api(format!("discovery of {GROUP}/v1"), e)),
    }
}

/// Whether the cluster serves MutatingAdmissionPolicy, so that `guard on --pin` can run.
pub async fn pin_served(client: &Client) -> Result<bool> {
    serves(client, Mode::Pin).await
}

/// The modes whose policies a `guard off` or `guard status` reads: deny and warn, and pin where
/// the cluster serves MutatingAdmissionPolicy.
pub(super) async fn modes_served(client: &Client) -> Result<Vec<Mode>> {
    let pin = serves(client, Mode::Pin).await?;
    Ok(Mode::ALL.into_iter().filter(|m| *m != Mode::Pin || pin).collect())
}

/// `validatingadmissionpolicies.admissionregistration.k8s.io`, as errors name it.
pub(super) fn resource_name(mode: Mode, binding: bool) -> String {
    format!("{}.{GROUP}", if binding { mode.binding_resource() } else { mode.policy_resource() })
}

pub(super) fn policy_error(error: kube::Error, verb: &str, resource: &str) -> Error {
    kubeio::classify_error(error, verb, resource, &NamespaceScope::All)
}

/// One right `guard on` needs: (verb, API group, resource, namespace; empty for cluster-wide).
type Right = (&'static str, &'static str, String, String);

/// What `guard on` writes for `plans`: a patch of each workload (its mark), and the policies and
/// bindings of `modes`, which are cluster-wide.
fn rights_needed(plans: &[Guarded], modes: &[Mode]) -> BTreeSet<Right> {
    let mut needed: BTreeSet<Right> =
        plans.iter().map(|p| ("patch", "apps", p.kind.plural().to_string(), p.namespace.clone())).collect();
    for mode in POLICY_APIS.iter().filter(|api| modes.iter().any(|m| m.policy_resource() == api.policy_resource())) {
        for verb in ["get", "create", "update", "delete"] {
            needed.insert((verb, GROUP, mode.policy_resource().into(), String::new()));
        }
        for verb in ["get", "create", "delete"] {
            needed.insert((verb, GROUP, mode.binding_resource().into(), String::new()));
        }
    }
    needed
}

/// Asks the API server (SelfSubjectAccessReview) whether the user may do what `guard on` is
/// about to do, so a refusal stops it before anything is written.
pub(super) async fn check_rights(client: &Client, plans: &[Guarded], modes: &[Mode]) -> Result<()> {
    for (verb, group, resource, namespace) in rights_needed(plans, modes) {
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

fn admission_api(client: &Client, mode: Mode, binding: bool) -> Api<DynamicObject> {
    let (kind, plural) = if binding {
        (format!("{}Binding", mode.policy_kind()), mode.binding_resource())
    } else {
        (mode.policy_kind().to_string(), mode.policy_resource())
    };
    let gvk = GroupVersionKind::gvk(GROUP, "v1", &kind);
    Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// The policies of `mode`'s admission policy API.
pub(super) fn policy_api(client: &Client, mode: Mode) -> Api<DynamicObject> {
    admission_api(client, mode, false)
}

/// The bindings of `mode`'s admission policy API.
pub(super) fn binding_api(client: &Client, mode: Mode) -> Api<DynamicObject> {
    admission_api(client, mode, true)
}

/// The entries of one kind and mode's policy (none when it does not exist).
pub(super) async fn read_entries(client: &Client, kind: AppsKind, mode: Mode) -> Result<Vec<Entry>> {
    let found = policy_api(client, mode)
        .get_opt(&kind.policy_name(mode))
        .await
        .map_err(|e| policy_error(e, "get", &resource_name(mode, false)))?;
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
    let policies = policy_api(client, mode);
    let existing = policies.get_opt(&name).await.map_err(|e| policy_error(e, "get", &resource_name(mode, false)))?;
    let existing_value = existing.as_ref().map(|p| serde_json::to_value(p).unwrap_or_default());
    let entries = existing_value.as_ref().map(guard::entries_of).unwrap_or_default();
    let wanted = change(&entries);
    let written = if wanted.is_empty() {
        delete_binding(client, mode, &name).await?;
        let Some(existing) = existing else { return Ok(Attempt::Done(())) };
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: existing.metadata.resource_version,
                uid: None,
            }),
            ..Default::default()
        };
        policies.delete(&name, &params).await.map(|_| ())
    } else {
        let post = PostParams { field_manager: Some(guard::FIELD_MANAGER.into()), ..Default::default() };
        let mut body: DynamicObject =
            serde_json::from_value(guard::policy(kind, mode, &wanted)).expect("the policy is an object");
        let result = match &existing {
            None => policies.create(&post, &body).await.map(|_| ()),
            Some(_) if wanted == entries && existing_value.as_ref().is_some_and(|v| same_spec(v, &body)) => Ok(()),
            Some(current) => {
                body.metadata.resource_version = current.metadata.resource_version.clone();
                policies.replace(&name, &post, &body).await.map(|_| ())
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
        Err(e) => Err(policy_error(e, "write", &resource_name(mode, false))),
    }
}

/// Whether a stored policy already has the spec `body` would write (so nothing needs writing).
fn same_spec(stored: &Value, body: &DynamicObject) -> bool {
    let wanted = serde_json::to_value(body).unwrap_or_default();
    stored.get("spec") == wanted.get("spec")
}

async fn ensure_binding(client: &Client, kind: AppsKind, mode: Mode) -> Result<(), kube::Error> {
    let name = kind.policy_name(mode);
    let bindings = binding_api(client, mode);
    if bindings.get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let body: DynamicObject = serde_json::from_value(guard::binding(kind, mode)).expect("the binding is an object");
    let post = PostParams { field_manager: Some(guard::FIELD_MANAGER.into()), ..Default::default() };
    match bindings.create(&post, &body).await {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == Some(409) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn delete_binding(client: &Client, mode: Mode, name: &str) -> Result<()> {
    match binding_api(client, mode).delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == Some(404) => Ok(()),
        Err(e) => Err(policy_error(e, "delete", &resource_name(mode, true))),
    }
}

/// One guard policy object in the cluster.
pub(super) struct PolicyObject {
    /// Which admission policy API it belongs to (one of [`POLICY_APIS`]).
    pub api: Mode,
    pub binding: bool,
    pub name: String,
}

/// Every guard policy object in the cluster (any version), bindings first; an API the cluster
/// does not serve has none.
pub(super) async fn list_policy_objects(client: &Client) -> Result<Vec<PolicyObject>> {
    let params = ListParams::default().labels(&guard::policy_selector(None));
    let mut objects = Vec::new();
    for binding in [true, false] {
        for api in POLICY_APIS {
            let listed = match kubeio::list_all(&admission_api(client, api, binding), &params).await {
                Ok(listed) => listed,
                Err(e) if api_code(&e) == Some(404) => Vec::new(),
                Err(e) => return Err(policy_error(e, "list", &resource_name(api, binding))),
            };
            objects.extend(
                listed
                    .into_iter()
                    .filter_map(|o| o.metadata.name)
                    .filter(|name| name.starts_with(guard::POLICY_PREFIX))
                    .map(|name| PolicyObject { api, binding, name }),
            );
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::super::plan::{plan_guards, tests::web};
    use super::*;

    fn stored(kind: AppsKind, mode: Mode, entries: &[Entry]) -> (Value, DynamicObject) {
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
        let needed = rights_needed(&plans, &[Mode::Deny, Mode::Warn]);
        let namespaced: Vec<&Right> = needed.iter().filter(|(_, _, _, ns)| !ns.is_empty()).collect();
        assert_eq!(namespaced, vec![&("patch", "apps", "deployments".to_string(), web.namespace.clone())]);
        let cluster_wide = |resource: &str| -> Vec<&str> {
            needed.iter().filter(|(_, _, r, ns)| r == resource && ns.is_empty()).map(|(verb, ..)| *verb).collect()
        };
        assert_eq!(cluster_wide("validatingadmissionpolicies"), ["create", "delete", "get", "update"]);
        assert_eq!(cluster_wide("validatingadmissionpolicybindings"), ["create", "delete", "get"]);
    }
}
