//! Who owns `.spec.replicas`, from `metadata.managedFields`, and which deploy mechanism each
//! owner is.
//!
//! A `fieldsV1` value is a set encoded as nested objects: `{"f:spec": {"f:replicas": {}}}`. A
//! key whose value is `{}` is itself a member, and a key that holds members is one as well
//! when it carries a `".": {}` marker. See the Server-Side Apply docs, "Field management".

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde::Serialize;
use serde_json::Value;

/// The path of `.spec.replicas` inside a `fieldsV1` set.
pub const REPLICAS_PATH: [&str; 2] = ["f:spec", "f:replicas"];

/// The deploy mechanism (or controller) a managedFields manager belongs to. Serialized names
/// are part of the JSON output schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// The HPA controller (kube-controller-manager through `/scale`) or KEDA.
    Autoscaler,
    /// Flux kustomize-controller: forced server-side apply.
    FluxKustomize,
    /// Flux helm-controller: Helm's semantics.
    FluxHelm,
    /// Argo CD: client-side apply by default, server-side with `ServerSideApply=true`.
    ArgoCd,
    /// Helm: Helm 3 updates (three-way merge), Helm 4 applies.
    Helm,
    /// `kubectl apply --server-side`.
    KubectlServerSide,
    /// `kubectl apply` (client-side, with the last-applied annotation).
    KubectlClientSide,
    /// A person: `kubectl scale`, `kubectl edit`, `kubectl patch`.
    Manual,
    /// The temporary owner `strip --method handover` adds, as the Kubernetes docs prescribe.
    Handover,
    /// A manager this tool does not recognise.
    Other,
}

impl Mechanism {
    /// A tool that deploys manifests: removing `replicas` from them can reset the field.
    pub fn is_deploy_tool(self) -> bool {
        matches!(
            self,
            Mechanism::FluxKustomize
                | Mechanism::FluxHelm
                | Mechanism::ArgoCd
                | Mechanism::Helm
                | Mechanism::KubectlServerSide
                | Mechanism::KubectlClientSide
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            Mechanism::Autoscaler => "autoscaler",
            Mechanism::FluxKustomize => "Flux (kustomize-controller)",
            Mechanism::FluxHelm => "Flux (helm-controller)",
            Mechanism::ArgoCd => "Argo CD",
            Mechanism::Helm => "Helm",
            Mechanism::KubectlServerSide => "kubectl apply --server-side",
            Mechanism::KubectlClientSide => "kubectl apply (client-side)",
            Mechanism::Manual => "manual kubectl",
            Mechanism::Handover => "handover",
            Mechanism::Other => "other",
        }
    }
}

/// The manager name `strip --method handover` uses unless told otherwise. It must not start
/// with `kubectl`: Flux takes such entries over (merges them into its own) before each apply.
pub const DEFAULT_HANDOVER_MANAGER: &str = "hpa-migrate-handover";

/// The temporary manager name the Kubernetes docs use in "Transferring ownership"; people who
/// followed the docs by hand have it.
pub const DOCS_HANDOVER_MANAGER: &str = "handover-to-hpa";

/// One managedFields entry that owns `.spec.replicas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaOwner {
    pub manager: String,
    pub operation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    pub mechanism: Mechanism,
}

impl ReplicaOwner {
    pub fn is_apply(&self) -> bool {
        self.operation == "Apply"
    }

    /// `manager (Operation[, /subresource])`, as the text output shows it.
    pub fn label(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{} ({}, /{sub})", self.manager, self.operation),
            None => format!("{} ({})", self.manager, self.operation),
        }
    }
}

/// Classifies a managedFields entry by its manager name, operation and subresource.
pub fn classify(manager: &str, operation: &str, subresource: Option<&str>, handover_managers: &[String]) -> Mechanism {
    let via_scale = subresource == Some("scale");
    if handover_managers.iter().any(|m| m == manager)
        || [DEFAULT_HANDOVER_MANAGER, DOCS_HANDOVER_MANAGER].contains(&manager)
    {
        return Mechanism::Handover;
    }
    match manager {
        // The HPA controller writes through /scale with the controller manager's user agent.
        "kube-controller-manager" if via_scale => Mechanism::Autoscaler,
        // The KEDA operator writes with no field manager, so its user agent names it: `keda`,
        // the binary's name in KEDA's images (measured on v2.21.0). It changes workloads only
        // through /scale (paused-replicas, activation, deactivation, raising to minReplicaCount).
        // (`keda-operator` is its HPAs' `app.kubernetes.io/managed-by` label, not a manager.)
        "keda" if via_scale => Mechanism::Autoscaler,
        "kustomize-controller" => Mechanism::FluxKustomize,
        "helm-controller" => Mechanism::FluxHelm,
        "argocd-controller" | "argocd-application-controller" | "argocd-server" => Mechanism::ArgoCd,
        "helm" => Mechanism::Helm,
        "kubectl-client-side-apply" | "before-first-apply" => Mechanism::KubectlClientSide,
        "kubectl" if operation == "Apply" => Mechanism::KubectlServerSide,
        "kubectl" | "kubectl-edit" | "kubectl-patch" | "kubectl-scale" | "kubectl-set" | "kubectl-label"
        | "kubectl-annotate" => Mechanism::Manual,
        _ => Mechanism::Other,
    }
}

/// Whether Flux's kustomize-controller takes this entry over before each apply of an object it
/// manages: it merges the entries of managers whose name starts with `kubectl` (Update or
/// Apply), `before-first-apply` (Update) or `kustomize-controller` (Update; its own writes from
/// before server-side apply) into its own `kustomize-controller` Apply entry (fluxcd/pkg `ssa`
/// cleanup options as kustomize-controller v1.9 sets them; names are matched by prefix, and only
/// entries of the main resource: `/scale` writes such as `kubectl scale` are left alone).
/// Measured on the real controller: replicas owned by `kubectl-patch` dropped to 1 at the next
/// reconcile of a manifest without them.
pub fn flux_takes_over(owner: &ReplicaOwner) -> bool {
    if owner.subresource.is_some() {
        return false;
    }
    let name = owner.manager.as_str();
    match owner.operation.as_str() {
        "Update" => ["kubectl", "before-first-apply", "kustomize-controller"].iter().any(|p| name.starts_with(p)),
        "Apply" => name.starts_with("kubectl"),
        _ => false,
    }
}

/// Every managedFields entry whose set contains `.spec.replicas`, classified.
pub fn replica_owners(entries: &[ManagedFieldsEntry], handover_managers: &[String]) -> Vec<ReplicaOwner> {
    entries
        .iter()
        .filter(|entry| entry.fields_v1.as_ref().is_some_and(|f| fields_contain(&f.0, &REPLICAS_PATH)))
        .map(|entry| {
            let manager = entry.manager.clone().unwrap_or_default();
            let operation = entry.operation.clone().unwrap_or_default();
            let mechanism = classify(&manager, &operation, entry.subresource.as_deref(), handover_managers);
            ReplicaOwner {
                manager,
                operation,
                subresource: entry.subresource.clone().filter(|s| !s.is_empty()),
                api_version: entry.api_version.clone(),
                time: entry.time.as_ref().map(|t| t.0.to_string()),
                mechanism,
            }
        })
        .collect()
}

/// Whether the `fieldsV1` set contains the field at `path` (each step a `f:` key).
pub fn fields_contain(fields: &Value, path: &[&str]) -> bool {
    let mut node = fields;
    for step in path {
        match node.get(step) {
            Some(child) => node = child,
            None => return false,
        }
    }
    node.is_object()
}

/// Removes the field at `path` from a `fieldsV1` set and then every parent left empty: an
/// empty `f:spec: {}` would otherwise claim ownership of all of `.spec`. Returns whether the
/// field was there.
pub fn remove_field(fields: &mut Value, path: &[&str]) -> bool {
    fn remove(node: &mut Value, path: &[&str]) -> bool {
        let Some(map) = node.as_object_mut() else { return false };
        let Some((first, rest)) = path.split_first() else { return false };
        if rest.is_empty() {
            return map.shift_remove(*first).is_some();
        }
        let Some(child) = map.get_mut(*first) else { return false };
        let removed = remove(child, rest);
        // A parent is only a member in its own right through its "." marker; emptied of its
        // children it must go, or it would claim the whole subtree.
        if removed && child.as_object().is_some_and(|m| m.is_empty()) {
            map.shift_remove(*first);
        }
        removed
    }
    remove(fields, path)
}

/// The canonical form of a `fieldsV1` set for comparison: a node holding nothing but its "."
/// marker is the same member as an empty node. (Seen on the real server: when a field moves to
/// another manager, `{".": {}, "f:x": {}}` is written back as `{}`, not `{".": {}}`.)
pub fn canonical_fields(fields: &Value) -> Value {
    match fields {
        Value::Object(map) => {
            if map.len() == 1 && map.get(".").is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty())) {
                return Value::Object(serde_json::Map::new());
            }
            Value::Object(map.iter().map(|(k, v)| (k.clone(), canonical_fields(v))).collect())
        }
        other => other.clone(),
    }
}

/// Whether a `fieldsV1` set is empty: an entry holding it owns nothing and must be dropped.
pub fn fields_empty(fields: &Value) -> bool {
    fields.as_object().is_none_or(|m| m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_real_keda_operator_owns_replicas_through_scale_as_keda() {
        // Captured after `autoscaling.keda.sh/paused-replicas: "3"` on a Deployment at 5 that
        // kubectl applied: KEDA's /scale write took replicas from kubectl.
        let workload = crate::core::fixtures::deployment("keda-paused-replicas-deployment");
        let owners = replica_owners(workload.metadata.managed_fields.as_deref().unwrap(), &[]);
        assert_eq!(owners.len(), 1, "{owners:?}");
        assert_eq!((owners[0].manager.as_str(), owners[0].subresource.as_deref()), ("keda", Some("scale")));
        assert_eq!(owners[0].mechanism, Mechanism::Autoscaler);
        assert_eq!(classify("keda-operator", "Update", Some("scale"), &[]), Mechanism::Other, "a label, not a manager");
    }

    #[test]
    fn contains_replicas_only_when_the_leaf_is_there() {
        assert!(fields_contain(&json!({"f:spec": {"f:replicas": {}}}), &REPLICAS_PATH));
        assert!(!fields_contain(&json!({"f:spec": {"f:template": {}}}), &REPLICAS_PATH));
        assert!(!fields_contain(&json!({"f:spec": {}}), &REPLICAS_PATH));
        assert!(!fields_contain(&json!({}), &REPLICAS_PATH));
    }

    #[test]
    fn removing_the_last_child_removes_the_empty_parent() {
        let mut fields = json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}}});
        assert!(remove_field(&mut fields, &REPLICAS_PATH));
        assert_eq!(fields, json!({"f:metadata": {"f:labels": {"f:app": {}}}}));
    }

    #[test]
    fn removing_keeps_siblings_and_markers() {
        let mut fields = json!({"f:spec": {".": {}, "f:replicas": {}, "f:paused": {}}});
        assert!(remove_field(&mut fields, &REPLICAS_PATH));
        assert_eq!(fields, json!({"f:spec": {".": {}, "f:paused": {}}}));
    }

    #[test]
    fn removing_a_missing_field_changes_nothing() {
        let mut fields = json!({"f:spec": {"f:paused": {}}});
        assert!(!remove_field(&mut fields, &REPLICAS_PATH));
        assert_eq!(fields, json!({"f:spec": {"f:paused": {}}}));
    }

    #[test]
    fn a_lone_marker_is_the_same_member_as_an_empty_node() {
        let written = json!({"f:metadata": {"f:annotations": {".": {}}}, "f:spec": {".": {}, "f:paused": {}}});
        assert_eq!(
            canonical_fields(&written),
            json!({"f:metadata": {"f:annotations": {}}, "f:spec": {".": {}, "f:paused": {}}})
        );
    }

    #[test]
    fn an_entry_with_only_replicas_becomes_empty() {
        let mut fields = json!({"f:spec": {"f:replicas": {}}});
        remove_field(&mut fields, &REPLICAS_PATH);
        assert!(fields_empty(&fields));
    }

    fn owner(manager: &str, operation: &str, subresource: Option<&str>) -> ReplicaOwner {
        ReplicaOwner {
            manager: manager.into(),
            operation: operation.into(),
            subresource: subresource.map(str::to_string),
            api_version: Some("apps/v1".into()),
            time: None,
            mechanism: classify(manager, operation, subresource, &[]),
        }
    }

    #[test]
    fn flux_takes_over_kubectl_and_before_first_apply_entries_but_not_scale_writes() {
        for (manager, operation) in [
            ("kubectl-patch", "Update"),
            ("kubectl-edit", "Update"),
            ("kubectl-client-side-apply", "Update"),
            ("kubectl-rollout", "Update"),
            ("kubectl", "Update"),
            ("kubectl", "Apply"),
            ("kubectl-handover", "Apply"),
            ("before-first-apply", "Update"),
            ("kustomize-controller", "Update"),
        ] {
            assert!(flux_takes_over(&owner(manager, operation, None)), "{manager} ({operation})");
        }
        for (manager, operation, subresource) in [
            ("kubectl", "Update", Some("scale")),
            ("kube-controller-manager", "Update", Some("scale")),
            ("kustomize-controller", "Apply", None),
            (DEFAULT_HANDOVER_MANAGER, "Apply", None),
            ("helm", "Update", None),
            ("before-first-apply", "Apply", None),
        ] {
            assert!(!flux_takes_over(&owner(manager, operation, subresource)), "{manager} ({operation})");
        }
    }

    #[test]
    fn classification_follows_manager_operation_and_subresource() {
        let none: &[String] = &[];
        assert_eq!(classify("kube-controller-manager", "Update", Some("scale"), none), Mechanism::Autoscaler);
        assert_eq!(classify("kube-controller-manager", "Update", None, none), Mechanism::Other);
        assert_eq!(classify("kustomize-controller", "Apply", None, none), Mechanism::FluxKustomize);
        assert_eq!(classify("kubectl", "Apply", None, none), Mechanism::KubectlServerSide);
        assert_eq!(classify("kubectl", "Update", Some("scale"), none), Mechanism::Manual);
        assert_eq!(classify("kubectl-client-side-apply", "Update", None, none), Mechanism::KubectlClientSide);
        assert_eq!(classify("argocd-controller", "Apply", None, none), Mechanism::ArgoCd);
        assert_eq!(classify("helm", "Update", None, none), Mechanism::Helm);
        assert_eq!(classify(DEFAULT_HANDOVER_MANAGER, "Apply", None, none), Mechanism::Handover);
        assert_eq!(classify("my-handover", "Apply", None, &["my-handover".to_string()]), Mechanism::Handover);
        assert_eq!(classify("terraform", "Apply", None, none), Mechanism::Other);
    }
}
