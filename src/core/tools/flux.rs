//! Flux: what its controllers leave on the objects they manage, which objects they skip, and
//! the entries kustomize-controller takes over before it applies.

use super::Traces;
use crate::core::ownership::ReplicaOwner;

pub const KUSTOMIZE_MANAGER: &str = "kustomize-controller";
pub const HELM_MANAGER: &str = "helm-controller";
/// `disabled` (label or annotation, any case) makes kustomize-controller skip the object; this
/// tool's pause (`strip --pause-flux`, `resume`).
pub const RECONCILE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/reconcile";
/// The value of [`RECONCILE_ANNOTATION`] this tool writes to pause Flux.
pub const PAUSED: &str = "disabled";
/// `Ignore` skips the object, `IfNotPresent` only creates it, `Merge` skips the takeover.
pub const SSA_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/ssa";
pub const KUSTOMIZATION_NAME_LABEL: &str = "kustomize.toolkit.fluxcd.io/name";
pub const KUSTOMIZATION_NAMESPACE_LABEL: &str = "kustomize.toolkit.fluxcd.io/namespace";
pub const HELMRELEASE_NAME_LABEL: &str = "helm.toolkit.fluxcd.io/name";
pub const HELMRELEASE_NAMESPACE_LABEL: &str = "helm.toolkit.fluxcd.io/namespace";

/// Whether this tool's pause is on the object (`reconcile: disabled` as this tool writes it).
pub fn is_paused(object: &impl Traces) -> bool {
    object.annotation(RECONCILE_ANNOTATION) == Some(PAUSED)
}

/// Whether Flux's kustomize-controller takes this entry over before each apply of an object it
/// manages: it merges the entries of managers whose name starts with `kubectl` (Update or
/// Apply), `before-first-apply` (Update) or `kustomize-controller` (Update; its own writes from
/// before server-side apply) into its own `kustomize-controller` Apply entry (fluxcd/pkg `ssa`
/// cleanup options as kustomize-controller v1.9 sets them; names are matched by prefix, and only
/// entries of the main resource: `/scale` writes such as `kubectl scale` are left alone).
/// Measured on the real controller: replicas owned by `kubectl-patch` dropped to 1 at the next
/// reconcile of a manifest without them.
pub fn takes_over(owner: &ReplicaOwner) -> bool {
    if owner.subresource.is_some() {
        return false;
    }
    let name = owner.manager.as_str();
    match owner.operation.as_str() {
        "Update" => ["kubectl", "before-first-apply", KUSTOMIZE_MANAGER].iter().any(|p| name.starts_with(p)),
        "Apply" => name.starts_with("kubectl"),
        _ => false,
    }
}

/// Why Flux will not apply this object at all (`None`: it will). kustomize-controller skips
/// objects whose manifest or live copy says `reconcile: disabled` or `ssa: Ignore`, and
/// `ssa: IfNotPresent` only creates (fluxcd/pkg `ssa` shouldSkipApply); label or annotation,
/// any case.
pub fn skips(manifest: &impl Traces, live: &impl Traces) -> Option<String> {
    let says = |object: &dyn Fn(&str) -> Option<String>| {
        [RECONCILE_ANNOTATION, SSA_ANNOTATION].into_iter().find_map(|key| {
            let value = object(key)?;
            let skipped = match key {
                RECONCILE_ANNOTATION => value == PAUSED,
                _ => value == "ignore" || value == "ifnotpresent",
            };
            skipped.then(|| format!("Flux skips this object ({key}: {value})"))
        })
    };
    let read =
        |object: &dyn Traces, key: &str| object.annotation(key).or_else(|| object.label(key)).map(str::to_lowercase);
    says(&|key| read(manifest, key)).or_else(|| says(&|key| read(live, key)))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::core::ownership::ReplicaOwner;
    use crate::core::tools::{DEFAULT_HANDOVER_MANAGER, classify};

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
            assert!(takes_over(&owner(manager, operation, None)), "{manager} ({operation})");
        }
        for (manager, operation, subresource) in [
            ("kubectl", "Update", Some("scale")),
            ("kube-controller-manager", "Update", Some("scale")),
            ("kustomize-controller", "Apply", None),
            (DEFAULT_HANDOVER_MANAGER, "Apply", None),
            ("helm", "Update", None),
            ("before-first-apply", "Apply", None),
            ("tanka", "Apply", None),
        ] {
            assert!(!takes_over(&owner(manager, operation, subresource)), "{manager} ({operation})");
        }
    }

    fn object(annotations: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "web", "annotations": annotations, "labels": labels}})
    }

    #[test]
    fn flux_skips_disabled_and_ignored_objects_whichever_side_says_it() {
        let plain = object(json!({}), json!({}));
        assert_eq!(skips(&plain, &plain), None);
        let paused = object(json!({RECONCILE_ANNOTATION: "disabled"}), json!({}));
        assert!(skips(&plain, &paused).is_some());
        assert!(is_paused(&paused) && !is_paused(&plain));
        let ignored = object(json!({}), json!({SSA_ANNOTATION: "Ignore"}));
        assert_eq!(
            skips(&ignored, &plain).as_deref(),
            Some("Flux skips this object (kustomize.toolkit.fluxcd.io/ssa: ignore)")
        );
        let create_only = object(json!({SSA_ANNOTATION: "IfNotPresent"}), json!({}));
        assert!(skips(&create_only, &plain).is_some());
        let merge = object(json!({SSA_ANNOTATION: "Merge"}), json!({}));
        assert_eq!(skips(&merge, &plain), None, "Merge applies (without the takeover)");
    }
}
