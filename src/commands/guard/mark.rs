//! The mark on a guarded workload (a label and annotations, see [`crate::core::guard`]):
//! written and removed as the guard's own field manager.

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::core::guard::{self};
use crate::core::patch;
use crate::core::workload::AppsKind;
use crate::error::Result;
use crate::kubeio::{self, NamespaceScope};
use crate::retry::{self, Attempt};

pub(super) fn workload_api(client: &Client, kind: AppsKind, namespace: &str) -> Api<DynamicObject> {
    kubeio::workload_api(client, &kind.workload_kind(), namespace)
}

/// Writes the mark as the guard's own field manager (forced: the mark is ours).
pub(super) async fn apply_mark(
    client: &Client,
    kind: AppsKind,
    namespace: &str,
    name: &str,
    body: &Value,
) -> Result<()> {
    workload_api(client, kind, namespace)
        .patch(name, &PatchParams::apply(guard::FIELD_MANAGER).force(), &Patch::Apply(body))
        .await
        .map(|_| ())
        .map_err(|e| {
            kubeio::classify_error(
                e,
                "patch",
                &format!("{}.apps", kind.plural()),
                &NamespaceScope::Namespace(namespace.into()),
            )
        })
}

/// Removes the mark; returns whether there was one. Applying nothing as the guard's manager
/// drops what it alone owns; if someone else also set the label or annotations (a `kubectl
/// label` of the same value), a JSON patch guarded by the resourceVersion removes what is left,
/// re-read and retried through [`retry::on_conflict`] when the workload moved in between.
pub(super) async fn unmark(client: &Client, kind: AppsKind, namespace: &str, name: &str) -> Result<bool> {
    let scope = NamespaceScope::Namespace(namespace.into());
    let resource = format!("{}.apps", kind.plural());
    let api = workload_api(client, kind, namespace);
    let read = || async {
        kubeio::get_object(&api, name).await.map_err(|e| kubeio::classify_error(e, "get", &resource, &scope))
    };
    let before = read().await?;
    let had_entry = before
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|entries| entries.iter().any(|e| e["manager"] == guard::FIELD_MANAGER));
    let marked = mark_keys(&before).next().is_some();
    if had_entry {
        api.patch(
            name,
            &PatchParams::apply(guard::FIELD_MANAGER).force(),
            &Patch::Apply(guard::unmark_body(kind, name)),
        )
        .await
        .map_err(|e| kubeio::classify_error(e, "patch", &resource, &scope))?;
    }
    let (api, read, resource, scope) = (&api, &read, &resource, &scope);
    retry::on_conflict_within(
        retry::MAX_ATTEMPTS,
        |_| async move {
            let now = read().await?;
            let Some(patch) = removal(&now) else { return Ok(Attempt::Done(())) };
            match kubeio::json_patch(api, name, patch, false).await {
                Ok(_) => Ok(Attempt::Done(())),
                Err(e) if retry::is_conflict(&e) => Ok(Attempt::Conflict),
                Err(e) => Err(kubeio::classify_error(e, "patch", resource, scope)),
            }
        },
        || format!("{namespace}/{}/{name} kept changing; its guard mark is still there", kind.command_name()),
    )
    .await?;
    Ok(marked || had_entry)
}

/// The JSON patch that removes what is left of the mark on `object`, applied only to the
/// resourceVersion it was read at; `None` when no part of the mark is left.
fn removal(object: &Value) -> Option<json_patch::Patch> {
    let left: Vec<json_patch::jsonptr::PointerBuf> = mark_keys(object).collect();
    if left.is_empty() {
        return None;
    }
    let resource_version = object["metadata"]["resourceVersion"].as_str().unwrap_or_default();
    let mut operations = vec![patch::op::test_resource_version(resource_version)];
    operations.extend(left.into_iter().map(patch::op::remove));
    Some(json_patch::Patch(operations))
}

/// The JSON pointers of the mark's label and annotations present on an object, and of the
/// evidence pin mode stamped (nobody owns it: the API server does not record admission's writes).
fn mark_keys(object: &Value) -> impl Iterator<Item = json_patch::jsonptr::PointerBuf> + '_ {
    [
        ("labels", guard::GUARD_LABEL),
        ("annotations", guard::FLOOR_ANNOTATION),
        ("annotations", guard::AUTOSCALER_ANNOTATION),
        ("annotations", guard::PINNED_REPLICAS_ANNOTATION),
        ("annotations", guard::PINNED_AT_ANNOTATION),
    ]
    .into_iter()
    .filter(|(field, key)| object["metadata"][field].get(key).is_some())
    .map(|(field, key)| patch::op::at(["metadata", field, key]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fixtures::load;
    use crate::core::guard::Mode;
    use serde_json::json;

    /// A captured Deployment carrying the mark `guard on` writes, and an unrelated label.
    fn marked(autoscaler: Option<&str>) -> Value {
        let mut object = load("hpa-rescaled");
        let mark = guard::mark_body(AppsKind::Deployment, "web", Mode::Deny, 3, autoscaler);
        let metadata = object["metadata"].as_object_mut().unwrap();
        metadata.entry("labels").or_insert(json!({}))[guard::GUARD_LABEL] =
            mark["metadata"]["labels"][guard::GUARD_LABEL].clone();
        metadata.entry("labels").or_insert(json!({}))["team"] = json!("shop");
        metadata.insert("annotations".into(), mark["metadata"]["annotations"].clone());
        object
    }

    #[test]
    fn the_mark_is_found_by_escaped_json_pointers() {
        let keys: Vec<String> = mark_keys(&marked(Some("hpa/web"))).map(|p| p.to_string()).collect();
        assert_eq!(
            keys,
            [
                "/metadata/labels/hpa-migrate.io~1guard",
                "/metadata/annotations/hpa-migrate.io~1guard-floor",
                "/metadata/annotations/hpa-migrate.io~1guard-autoscaler",
            ]
        );
        assert_eq!(mark_keys(&marked(None)).count(), 2, "no autoscaler annotation without an autoscaler");
        assert_eq!(mark_keys(&load("hpa-rescaled")).count(), 0);
    }

    #[test]
    fn the_removal_touches_the_mark_only_and_only_at_the_version_read() {
        let object = marked(Some("hpa/web"));
        let patch = removal(&object).unwrap();
        assert_eq!(
            serde_json::to_value(&patch).unwrap()[0],
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": object["metadata"]["resourceVersion"]})
        );
        assert!(object["metadata"]["resourceVersion"].is_string());
        let mut unmarked = object.clone();
        json_patch::patch(&mut unmarked, &patch).unwrap();
        assert_eq!(mark_keys(&unmarked).count(), 0);
        assert_eq!(unmarked["metadata"]["labels"]["team"], "shop");
        assert_eq!(unmarked["spec"], object["spec"]);
        assert!(removal(&unmarked).is_none());
    }
}
