//! Argo CD: its managers, its tracking annotation, and the client-side-apply migration of its
//! server-side sync.

use super::Traces;

/// The application controller's manager (measured on v3.2.11: `argocd-controller`, Update for a
/// default sync, Apply with `ServerSideApply=true`). The other two are older or other
/// components' names for the same writes.
pub const CONTROLLER_MANAGER: &str = "argocd-controller";
pub const MANAGERS: [&str; 3] = [CONTROLLER_MANAGER, "argocd-application-controller", "argocd-server"];
/// Annotation tracking (v3's default): `APP:group/Kind:namespace/name`.
pub const TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
/// On an Application: names the manager its server-side syncs migrate (argo-cd v3.2.11
/// `controller/sync.go` reads it from the Application, not from the objects it syncs).
pub const MIGRATION_MANAGER_ANNOTATION: &str = "argocd.argoproj.io/client-side-apply-migration-manager";
/// The manager a server-side sync migrates when the Application names none.
pub const DEFAULT_MIGRATION_MANAGER: &str = super::kubectl::CLIENT_SIDE_MANAGER;
/// The sync option that turns Argo CD's own migration step off (gitops-engine
/// `SyncOptionDisableClientSideApplyMigration`).
const NO_MIGRATION_OPTION: &str = "ClientSideApplyMigration=false";

/// The managers whose Update entries a server-side sync of `object` folds into
/// `argocd-controller`'s Apply entry. Two steps do it, measured on the real Argo CD v3.2.11
/// (5 -> 1 in one sync): Argo CD's client-side-apply migration (on by default) first applies
/// the manifest client-side as `migration_manager` when the object has an entry of that
/// manager, which makes it the owner of the last-applied annotation (gitops-engine
/// `performClientSideApplyMigration`); then the apply it runs is kubectl's, whose `csaupgrade`
/// migrates every Update owner of that annotation and applies again ([`super::kubectl`]).
pub fn migrated_by_server_side_sync(object: &impl Traces, migration_manager: Option<&str>) -> Vec<String> {
    let mut managers = super::kubectl::client_side_managers(object);
    let argo_step = migration_manager
        .filter(|m| object.managed_fields().iter().any(|e| e.manager.as_deref() == Some(*m)))
        .filter(|m| !managers.iter().any(|listed| listed == m));
    managers.extend(argo_step.map(str::to_string));
    managers
}

/// What `check` reads of an Argo CD Application (`applications.argoproj.io`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub namespace: String,
    pub name: String,
    /// Automated sync is on (`spec.syncPolicy.automated`, unless its `enabled` is false) with
    /// `selfHeal`: the controller re-syncs whenever a live object differs from Git.
    pub self_heal: bool,
    /// Automated sync is on (`spec.syncPolicy.automated`, unless its `enabled` is false): the
    /// controller syncs every new commit by itself. `strip --pause` turns it off.
    pub automated: bool,
    /// `spec.syncPolicy.automated` as read, when it is set.
    pub automated_policy: Option<serde_json::Value>,
    /// `strip --pause` turned its automated sync off ([`super::pause::AUTOMATED_ANNOTATION`]
    /// records what it was) and it is still off: `resume` puts it back.
    pub paused_by_strip: bool,
    /// `spec.syncPolicy.syncOptions` (argocd-server's sync and the automated sync both use
    /// them), e.g. `ServerSideApply=true`.
    pub sync_options: Vec<String>,
    /// `spec.ignoreDifferences` rules whose `jsonPointers` name `/spec/replicas`.
    pub replicas_ignored_for: Vec<IgnoreRule>,
    /// The manager its server-side syncs migrate first ([`MIGRATION_MANAGER_ANNOTATION`], else
    /// [`DEFAULT_MIGRATION_MANAGER`]); `None` with `ClientSideApplyMigration=false`.
    pub migration_manager: Option<String>,
}

/// Which objects an `ignoreDifferences` rule covers; an empty name or namespace matches any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreRule {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl IgnoreRule {
    /// Argo CD compares the group as written: a rule without `group` does not match `apps`
    /// Deployments (measured on v3.2.11, tests/it/argocd.rs).
    pub fn covers(&self, group: &str, kind: &str, namespace: &str, name: &str) -> bool {
        self.group == group
            && self.kind == kind
            && (self.name.is_empty() || self.name == name)
            && (self.namespace.is_empty() || self.namespace == namespace)
    }
}

impl Application {
    pub fn from_value(object: &serde_json::Value) -> Option<Self> {
        let automated = object.pointer("/spec/syncPolicy/automated").filter(|a| a.is_object());
        let enabled = automated.is_some_and(|a| a.get("enabled").and_then(serde_json::Value::as_bool) != Some(false));
        let self_heal = automated.and_then(|a| a.get("selfHeal")).and_then(serde_json::Value::as_bool) == Some(true);
        let text = |rule: &serde_json::Value, key: &str| {
            rule.get(key).and_then(serde_json::Value::as_str).unwrap_or_default().to_string()
        };
        let strings = |value: Option<&serde_json::Value>| -> Vec<String> {
            value
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        let rules = object.pointer("/spec/ignoreDifferences").and_then(serde_json::Value::as_array);
        let replicas_ignored_for = rules
            .into_iter()
            .flatten()
            .filter(|rule| strings(rule.get("jsonPointers")).iter().any(|p| p == "/spec/replicas"))
            .map(|rule| IgnoreRule {
                group: text(rule, "group"),
                kind: text(rule, "kind"),
                name: text(rule, "name"),
                namespace: text(rule, "namespace"),
            })
            .collect();
        let sync_options = strings(object.pointer("/spec/syncPolicy/syncOptions"));
        let named = object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(MIGRATION_MANAGER_ANNOTATION))
            .and_then(serde_json::Value::as_str)
            .filter(|m| !m.is_empty());
        let migration_manager = (!sync_options.iter().any(|o| o == NO_MIGRATION_OPTION))
            .then(|| named.unwrap_or(DEFAULT_MIGRATION_MANAGER).to_string());
        Some(Self {
            namespace: object.pointer("/metadata/namespace")?.as_str()?.to_string(),
            name: object.pointer("/metadata/name")?.as_str()?.to_string(),
            self_heal: enabled && self_heal,
            automated: enabled,
            automated_policy: automated.cloned(),
            paused_by_strip: super::pause::automated_paused_by_strip(object),
            sync_options,
            replicas_ignored_for,
            migration_manager,
        })
    }

    fn has_option(&self, option: &str) -> bool {
        self.sync_options.iter().any(|o| o == option)
    }

    /// `ServerSideApply=true`: its syncs apply server-side, forced, as `argocd-controller`.
    pub fn server_side(&self) -> bool {
        self.has_option("ServerSideApply=true")
    }

    /// Whether its syncs copy the live `.spec.replicas` of this object into what they apply:
    /// `RespectIgnoreDifferences=true` and an `ignoreDifferences` rule for `/spec/replicas`
    /// that covers it (measured: the count was kept, client-side and server-side).
    pub fn keeps_live_replicas(&self, group: &str, kind: &str, namespace: &str, name: &str) -> bool {
        self.has_option("RespectIgnoreDifferences=true")
            && self.replicas_ignored_for.iter().any(|rule| rule.covers(group, kind, namespace, name))
    }

    pub fn reference(&self) -> super::pause::ApplicationRef {
        super::pause::ApplicationRef { namespace: self.namespace.clone(), name: self.name.clone() }
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
             automated sync off for the handover (strip --pause does, resume puts it back)",
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
    fn ignore_rules_for_replicas_count_with_respect_ignore_differences_only() {
        let mut object = load("argocd-application-self-heal");
        object["spec"]["ignoreDifferences"] = serde_json::json!([
            {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]},
            {"kind": "StatefulSet", "jsonPointers": ["/spec/replicas"]},
            {"group": "apps", "kind": "Deployment", "name": "other", "jsonPointers": ["/spec/template"]}
        ]);
        let app = Application::from_value(&object).unwrap();
        assert!(!app.keeps_live_replicas("apps", "Deployment", "shop", "web"), "without the sync option");
        object["spec"]["syncPolicy"]["syncOptions"] = serde_json::json!(["RespectIgnoreDifferences=true"]);
        let app = Application::from_value(&object).unwrap();
        assert!(app.keeps_live_replicas("apps", "Deployment", "shop", "web"));
        assert!(!app.keeps_live_replicas("apps", "StatefulSet", "shop", "web"), "no group, no match");
        assert!(!app.server_side());
    }

    #[test]
    fn the_migration_manager_is_the_applications_and_its_entries_migrate_with_kubectls() {
        let mut application = load("argocd-application-self-heal");
        let default = Application::from_value(&application).unwrap();
        assert_eq!(default.migration_manager.as_deref(), Some(DEFAULT_MIGRATION_MANAGER));
        application["metadata"]["annotations"] = serde_json::json!({MIGRATION_MANAGER_ANNOTATION: "legacy-operator"});
        let named = Application::from_value(&application).unwrap();
        assert_eq!(named.migration_manager.as_deref(), Some("legacy-operator"));
        application["spec"]["syncPolicy"]["syncOptions"] = serde_json::json!([NO_MIGRATION_OPTION]);
        assert_eq!(Application::from_value(&application).unwrap().migration_manager, None);

        // Captured after a default (client-side) sync: argocd-controller's Update entry owns the
        // last-applied annotation, so kubectl's csaupgrade migrates it whatever the manager.
        let mut object = load("argocd-client-side-deployment");
        let kubectls = vec![CONTROLLER_MANAGER.to_string()];
        assert_eq!(migrated_by_server_side_sync(&object, Some(DEFAULT_MIGRATION_MANAGER)), kubectls);
        assert_eq!(migrated_by_server_side_sync(&object, Some("legacy-operator")), kubectls, "no such entry");
        let entry = serde_json::json!({"manager": "legacy-operator", "operation": "Update", "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}});
        object["metadata"]["managedFields"].as_array_mut().unwrap().push(entry);
        let both = migrated_by_server_side_sync(&object, Some("legacy-operator"));
        assert_eq!(both, vec![CONTROLLER_MANAGER.to_string(), "legacy-operator".to_string()]);
        assert_eq!(migrated_by_server_side_sync(&object, None), kubectls, "ClientSideApplyMigration=false");
    }

    #[test]
    fn tracking_ids_name_applications_with_or_without_their_namespace() {
        let app = Application {
            namespace: "team".into(),
            name: "shop".into(),
            self_heal: true,
            automated: true,
            automated_policy: None,
            paused_by_strip: false,
            sync_options: Vec::new(),
            replicas_ignored_for: Vec::new(),
            migration_manager: None,
        };
        assert!(app.tracks("shop:apps/Deployment:prod/web"));
        assert!(app.tracks("team_shop:apps/Deployment:prod/web"));
        assert!(!app.tracks("other_shop:apps/Deployment:prod/web"));
        assert!(!app.tracks("shopping:apps/Deployment:prod/web"));
    }
}
