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

/// What `check` reads of an Argo CD Application (`applications.argoproj.io`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub namespace: String,
    pub name: String,
    /// Automated sync is on (`spec.syncPolicy.automated`, unless its `enabled` is false) with
    /// `selfHeal`: the controller re-syncs whenever a live object differs from Git.
    pub self_heal: bool,
}

impl Application {
    pub fn from_value(object: &serde_json::Value) -> Option<Self> {
        let automated = object.pointer("/spec/syncPolicy/automated").filter(|a| a.is_object());
        let enabled = automated.is_some_and(|a| a.get("enabled").and_then(serde_json::Value::as_bool) != Some(false));
        let self_heal = automated.and_then(|a| a.get("selfHeal")).and_then(serde_json::Value::as_bool) == Some(true);
        Some(Self {
            namespace: object.pointer("/metadata/namespace")?.as_str()?.to_string(),
            name: object.pointer("/metadata/name")?.as_str()?.to_string(),
            self_heal: enabled && self_heal,
        })
    }

    /// Whether a tracking id names this Application. Its first part is the Application's name
    /// when the Application lives in Argo CD's own namespace, `NAMESPACE_NAME` otherwise
    /// (argo-cd v3.2.11 `util/argo.AppInstanceName`); Argo CD's namespace is not known here, so
    /// a bare name matches an Application of that name in any namespace.
    pub fn tracks(&self, tracking_id: &str) -> bool {
        let instance = tracking_id.split(':').next().unwrap_or_default();
        instance == self.name
            || instance.strip_prefix(self.namespace.as_str()).and_then(|rest| rest.strip_prefix('_'))
                == Some(self.name.as_str())
    }

    /// The warning of a workload this Application syncs with selfHeal while Argo CD owns its
    /// replicas and an autoscaler is in charge.
    pub fn self_heal_warning(&self) -> String {
        format!(
            "Argo CD Application {}/{} syncs automatically with selfHeal while Argo CD owns replicas: it puts Git's \
             count back after every scale of the autoscaler (measured on Argo CD v3.2.11: 2, 6, 18 s apart); turn its \
             automated sync off for the handover",
            self.namespace, self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fixtures::load;

    #[test]
    fn self_heal_is_read_from_a_real_application() {
        // Captured from the real Argo CD v3.2.11 (tests/it/argocd.rs, selfHeal against an HPA).
        let app = Application::from_value(&load("argocd-application-self-heal")).unwrap();
        assert!(app.self_heal, "{app:?}");
        assert_eq!(app.namespace, "argocd");
        let mut off = load("argocd-application-self-heal");
        off["spec"]["syncPolicy"]["automated"]["enabled"] = false.into();
        assert!(!Application::from_value(&off).unwrap().self_heal);
        off["spec"]["syncPolicy"] = serde_json::json!({"automated": {"prune": true}});
        assert!(!Application::from_value(&off).unwrap().self_heal);
    }

    #[test]
    fn tracking_ids_name_applications_with_or_without_their_namespace() {
        let app = Application { namespace: "team".into(), name: "shop".into(), self_heal: true };
        assert!(app.tracks("shop:apps/Deployment:prod/web"));
        assert!(app.tracks("team_shop:apps/Deployment:prod/web"));
        assert!(!app.tracks("other_shop:apps/Deployment:prod/web"));
        assert!(!app.tracks("shopping:apps/Deployment:prod/web"));
    }
}
