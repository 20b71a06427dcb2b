//! Who owns `.spec.replicas`, from `metadata.managedFields`; which deploy mechanism each owner
//! is, [`crate::core::tools`] says.
//!
//! A `fieldsV1` value is a set encoded as nested objects: `{"f:spec": {"f:replicas": {}}}`. A
//! key whose value is `{}` is itself a member, and a key that holds members is one as well
//! when it carries a `".": {}` marker. See the Server-Side Apply docs, "Field management".

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde::Serialize;
use serde_json::Value;

use super::tools::{Mechanism, classify};

/// The path of `.spec.replicas` inside a `fieldsV1` set.
pub const REPLICAS_PATH: [&str; 2] = ["f:spec", "f:replicas"];

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

    /// An Update entry of `manager` on the object itself (not a subresource): what client-go's
    /// `csaupgrade` folds into an Apply entry, as kubectl's, Argo CD's and Helm 4's migrations
    /// to server-side apply run it.
    pub fn is_object_update_by(&self, manager: &str) -> bool {
        self.operation == "Update" && self.subresource.is_none() && self.manager == manager
    }

    /// `manager (Operation[, /subresource])`, as the text output shows it.
    pub fn label(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{} ({}, /{sub})", self.manager, self.operation),
            None => format!("{} ({})", self.manager, self.operation),
        }
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
}
