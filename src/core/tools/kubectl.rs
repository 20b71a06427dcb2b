//! kubectl: its managers, and what its server-side apply does to the entries of its client-side
//! apply.

use super::{Mechanism, Traces};
use crate::core::ownership;

/// `kubectl apply` (client-side) writes as this manager (operation Update) and keeps the
/// last-applied annotation.
pub const CLIENT_SIDE_MANAGER: &str = "kubectl-client-side-apply";
/// `kubectl apply --server-side` applies as this manager unless `--field-manager` says otherwise.
pub const SERVER_SIDE_MANAGER: &str = "kubectl";
/// The annotation of client-side apply: the three-way merge's previous configuration.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The last-applied annotation inside a `fieldsV1` set.
const LAST_APPLIED_PATH: [&str; 3] =
    ["f:metadata", "f:annotations", "f:kubectl.kubernetes.io/last-applied-configuration"];

/// Whether the manager is one of kubectl's (`kubectl`, `kubectl-patch`, ...).
pub fn is_manager(manager: &str) -> bool {
    manager.starts_with("kubectl")
}

/// kubectl's managers (and any other name, as [`Mechanism::Other`]).
pub(super) fn classify(manager: &str, operation: &str) -> Mechanism {
    match manager {
        CLIENT_SIDE_MANAGER | "before-first-apply" => Mechanism::KubectlClientSide,
        SERVER_SIDE_MANAGER if operation == "Apply" => Mechanism::KubectlServerSide,
        "kubectl" | "kubectl-edit" | "kubectl-patch" | "kubectl-scale" | "kubectl-set" | "kubectl-label"
        | "kubectl-annotate" => Mechanism::Manual,
        _ => Mechanism::Other,
    }
}

/// The managers a server-side `kubectl apply` migrates into its own Apply entry: the Update
/// entries that own the last-applied annotation (client-go `csaupgrade.FindFieldsOwners`, as
/// kubectl's `migrateToSSAIfNecessary` calls it after its server-side patch: k8s.io/kubectl v0.36.3
/// pkg/cmd/apply/apply.go). It then sends the
/// patch again, so a field those entries owned and the manifest leaves out is removed in that
/// same command: measured on the plane, a Deployment applied client-side at 5 went 5 -> 1 -> 3
/// on its first `kubectl apply --server-side` of a manifest without replicas. Tanka's
/// server-side strategy is that same kubectl command.
pub fn client_side_managers(object: &impl Traces) -> Vec<String> {
    object
        .managed_fields()
        .iter()
        .filter(|e| e.operation.as_deref() == Some("Update") && e.subresource.as_deref().unwrap_or_default().is_empty())
        .filter(|e| e.fields_v1.as_ref().is_some_and(|f| ownership::fields_contain(&f.0, &LAST_APPLIED_PATH)))
        .filter_map(|e| e.manager.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fixtures::load;

    #[test]
    fn the_client_side_entry_that_owns_last_applied_is_migrated() {
        // Captured after `kubectl apply` (client-side) of a Deployment with replicas.
        let object = load("kubectl-csa-owns-replicas");
        let managers = client_side_managers(&object);
        assert_eq!(managers, vec![CLIENT_SIDE_MANAGER.to_string()]);
        let owners = ownership::replica_owners(&object.managed_fields(), &[]);
        assert!(owners.iter().any(|o| o.is_object_update_by(&managers[0])), "{owners:?}");
        // A server-side applier's object has no client-side entry to migrate.
        assert!(client_side_managers(&load("flux-ssa-owns-replicas")).is_empty());
    }
}
