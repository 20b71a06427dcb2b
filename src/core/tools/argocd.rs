//! Argo CD: its managers, its tracking annotation, and the client-side-apply migration of its
//! server-side sync.

use super::Traces;
use crate::core::ownership::ReplicaOwner;

/// The application controller's manager (measured on v3.2.11: `argocd-controller`, Update for a
/// default sync, Apply with `ServerSideApply=true`). The other two are older or other
/// components' names for the same writes.
pub const CONTROLLER_MANAGER: &str = "argocd-controller";
pub const MANAGERS: [&str; 3] = [CONTROLLER_MANAGER, "argocd-application-controller", "argocd-server"];
/// Annotation tracking (v3's default): `APP:group/Kind:namespace/name`.
pub const TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
/// Names the client-side manager a server-side sync migrates (default `kubectl-client-side-apply`).
pub const MIGRATION_MANAGER_ANNOTATION: &str = "argocd.argoproj.io/client-side-apply-migration-manager";

/// The manager whose entries a server-side sync migrates into `argocd-controller`'s Apply entry
/// before it applies (its client-side-apply migration, on by default): a patch as that manager,
/// an unforced managed-fields upgrade, then the forced apply. Measured on the real Argo CD
/// v3.2.11: on an object first created by `kubectl apply`, that chain handed replicas to
/// `argocd-controller` and dropped them 5 -> 1 in one sync.
pub fn migration_manager(object: &impl Traces) -> String {
    object.annotation(MIGRATION_MANAGER_ANNOTATION).unwrap_or(super::kubectl::CLIENT_SIDE_MANAGER).to_string()
}

/// Whether `owner` is the entry a server-side sync migrates.
pub fn migrates(owner: &ReplicaOwner, migration_manager: &str) -> bool {
    owner.operation == "Update" && owner.subresource.is_none() && owner.manager == migration_manager
}
