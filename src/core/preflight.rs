//! `preflight`'s pure half: how the deploy tool will apply a manifest to a live workload, what
//! it sends for `.spec.replicas`, how to read the server's dry run of it, and the steps that
//! keep the count. The I/O half (`commands::preflight`) sends the dry runs; which tool it is,
//! [`crate::core::tools`] says.

use serde::Serialize;
use serde_json::Value;

use super::helm::{self, ReleaseRecord};
use super::manifest::Document;
use super::ownership::{self, ReplicaOwner};
use super::tools::kubectl::LAST_APPLIED_ANNOTATION;
use super::tools::{Tool, Traces, Untraced, argocd, flux, helm as helm_cli, kubectl};

/// What an apply that removes `.spec.replicas` leaves: the API server defaults the field of
/// Deployments, StatefulSets, ReplicaSets (and Argo Rollouts) to 1.
pub const DEFAULT_REPLICAS: i64 = 1;

/// Entries a tool merges into its own Apply entry around its apply: the apply then removes a
/// field they owned and its manifest leaves out, though a dry run of the apply alone keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "by")]
pub enum Takeover {
    None,
    /// kustomize-controller, before each apply: [`flux::takes_over`].
    Flux,
    /// `kubectl apply --server-side` (and Tanka's server-side strategy), after its patch:
    /// [`kubectl::client_side_managers`], then the patch again.
    KubectlClientSide {
        managers: Vec<String>,
    },
    /// Argo CD's server-side sync, around its apply: [`argocd::migrated_by_server_side_sync`].
    ArgoCdServerSideSync {
        managers: Vec<String>,
    },
    /// Helm 4's first server-side upgrade of a release that applied client-side, before its
    /// apply: [`helm_cli::switch_migrates`].
    HelmClientSide {
        manager: String,
    },
}

impl Takeover {
    /// Whether `owner`'s entry is the applier's once the apply is over.
    pub fn absorbs(&self, owner: &ReplicaOwner) -> bool {
        match self {
            Takeover::None => false,
            Takeover::Flux => flux::takes_over(owner),
            Takeover::KubectlClientSide { managers } | Takeover::ArgoCdServerSideSync { managers } => {
                managers.iter().any(|m| owner.is_object_update_by(m))
            }
            Takeover::HelmClientSide { manager } => owner.is_object_update_by(manager),
        }
    }

    fn describe(&self) -> String {
        match self {
            Takeover::None => String::new(),
            Takeover::Flux => ", after taking over kubectl* entries".into(),
            Takeover::KubectlClientSide { managers } => {
                format!(", then migrating {}'s entry into its own and applying again", managers.join(", "))
            }
            Takeover::ArgoCdServerSideSync { managers } => {
                format!(", migrating {}'s entry into its own around it", managers.join(", "))
            }
            Takeover::HelmClientSide { manager } => format!(", after migrating {manager}'s entry into its own"),
        }
    }
}

/// How the tool writes the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Apply {
    /// Server-side apply as `manager`, with the entries it takes over around it.
    ServerSide { manager: String, force: bool, takeover: Takeover },
    /// Client-side apply: a three-way merge with the last-applied annotation (kubectl, and Argo
    /// CD's default sync). A field in the annotation and not in the manifest is sent as null.
    ClientSide { manager: String },
    /// Helm 3 (and Helm 4 on a release installed client-side): a three-way merge with the
    /// deployed release's stored manifest; a field in it and not in the new manifest is null.
    HelmThreeWay { release: String, revision: i64 },
}

impl Apply {
    pub fn describe(&self) -> String {
        match self {
            Apply::ServerSide { manager, force, takeover } => {
                format!("apply server-side as {manager}{}{}", if *force { ", forced" } else { "" }, takeover.describe())
            }
            Apply::ClientSide { .. } => "apply client-side (a three-way merge with the last-applied annotation)".into(),
            Apply::HelmThreeWay { release, revision } => {
                format!("upgrade with a three-way merge against release {release} revision {revision}")
            }
        }
    }
}

/// The tool that applies a workload next, how it applies, and the evidence it was told by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applier {
    pub tool: Tool,
    pub apply: Apply,
    pub evidence: String,
}

/// Why preflight cannot tell how the next deploy writes a workload: its outcome is `unknown`
/// and the user is asked for `--as`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undetermined {
    #[error(transparent)]
    Untraced(#[from] Untraced),
    #[error("the deployed record of Helm release {release} was not found")]
    HelmRecordMissing { release: String },
    #[error("the Helm release records could not be read: {problem}")]
    HelmRecordsUnreadable { problem: String },
}

/// How `tool` writes `live`. Helm needs the deployed release record (`Err` when it is missing):
/// its `apply_method` says whether Helm 4 applies server-side.
pub fn applier(
    tool: Tool,
    evidence: String,
    live: &Value,
    helm_record: Result<Option<&ReleaseRecord>, String>,
) -> Result<Applier, Undetermined> {
    let server_side =
        |manager: &str, force: bool, takeover: Takeover| Apply::ServerSide { manager: manager.into(), force, takeover };
    let kubectl_upgrade = || {
        let managers = kubectl::client_side_managers(live);
        if managers.is_empty() { Takeover::None } else { Takeover::KubectlClientSide { managers } }
    };
    let apply = match &tool {
        Tool::Flux => server_side(flux::KUSTOMIZE_MANAGER, true, Takeover::Flux),
        Tool::KubectlServerSide => server_side(kubectl::SERVER_SIDE_MANAGER, false, kubectl_upgrade()),
        Tool::Tanka => server_side(super::tools::TANKA_MANAGER, false, kubectl_upgrade()),
        Tool::Manager(manager) => server_side(manager, true, Takeover::None),
        Tool::Kubectl => Apply::ClientSide { manager: kubectl::CLIENT_SIDE_MANAGER.into() },
        // Argo CD applies server-side, forced, as argocd-controller once the application has
        // ServerSideApply=true; its entry says which mode last synced the object.
        // Without its Application, the default migration manager ([`under_application`] reads
        // the Application's).
        Tool::Argocd if live.has_entry(argocd::CONTROLLER_MANAGER, "Apply") => server_side(
            argocd::CONTROLLER_MANAGER,
            true,
            argo_sync_takeover(live, Some(argocd::DEFAULT_MIGRATION_MANAGER)),
        ),
        Tool::Argocd => Apply::ClientSide { manager: argocd::CONTROLLER_MANAGER.into() },
        Tool::Helm | Tool::HelmServerSide => {
            let release = live.annotation(helm::RELEASE_NAME_ANNOTATION).unwrap_or_default();
            let record = match helm_record {
                Ok(Some(record)) => record,
                Ok(None) => return Err(Undetermined::HelmRecordMissing { release: release.to_string() }),
                Err(problem) => return Err(Undetermined::HelmRecordsUnreadable { problem }),
            };
            let method = record.apply_method.as_deref();
            match (&tool, helm_cli::switch_migrates(method)) {
                // Helm 4 upgrades as the release was installed (server-side, unforced by
                // default) unless told --server-side=true.
                (_, false) => server_side(helm_cli::MANAGER, false, Takeover::None),
                (Tool::HelmServerSide, true) => server_side(
                    helm_cli::MANAGER,
                    false,
                    Takeover::HelmClientSide { manager: helm_cli::MANAGER.into() },
                ),
                _ => Apply::HelmThreeWay { release: record.release.clone(), revision: record.revision },
            }
        }
    };
    Ok(Applier { tool, apply, evidence })
}

/// How Argo CD syncs `live` under `application`, the Application that tracks it: with
/// `ServerSideApply=true` a sync is a forced apply as `argocd-controller` even if the object was
/// last synced client-side, and the entries [`argocd::migrated_by_server_side_sync`] names for
/// the Application's migration manager become its own around the apply (measured on v3.2.11,
/// with and without `ClientSideApplyMigration=false`: 5 -> 1 in that one sync).
pub fn under_application(applier: Applier, application: &argocd::Application, live: &Value) -> Applier {
    let named = format!("{}, Application {}/{}", applier.evidence, application.namespace, application.name);
    let takeover = argo_sync_takeover(live, application.migration_manager.as_deref());
    match applier.apply {
        Apply::ClientSide { .. } if application.server_side() => Applier {
            apply: Apply::ServerSide { manager: argocd::CONTROLLER_MANAGER.into(), force: true, takeover },
            evidence: format!("{named} (ServerSideApply=true)"),
            ..applier
        },
        Apply::ServerSide { manager, force, .. } if manager == argocd::CONTROLLER_MANAGER => {
            Applier { apply: Apply::ServerSide { manager, force, takeover }, evidence: named, ..applier }
        }
        _ => Applier { evidence: named, ..applier },
    }
}

fn argo_sync_takeover(live: &Value, migration_manager: Option<&str>) -> Takeover {
    let managers = argocd::migrated_by_server_side_sync(live, migration_manager);
    if managers.is_empty() { Takeover::None } else { Takeover::ArgoCdServerSideSync { managers } }
}

/// The manifest as Argo CD applies it when its Application keeps the live replicas
/// ([`argocd::Application::keeps_live_replicas`]): the live value copied in.
pub fn with_live_replicas(manifest: &Value, live: &Value) -> Value {
    let mut applied = manifest.clone();
    if let Some(replicas) = live.pointer("/spec/replicas") {
        applied["spec"]["replicas"] = replicas.clone();
    }
    applied
}

/// What a three-way merge sends for `.spec.replicas`.
#[derive(Debug, Clone, PartialEq)]
pub enum Sends {
    /// The manifest sets it.
    Value(Value),
    /// The previous configuration had it and the manifest does not: deleted (sent as null).
    Null,
    /// Neither has it: the live value is left alone.
    Nothing,
}

fn replicas_of(object: &Value) -> Option<&Value> {
    object.pointer("/spec/replicas").filter(|v| !v.is_null())
}

pub fn three_way_sends(previous: Option<&Value>, manifest: &Value) -> Sends {
    match (replicas_of(manifest), previous.and_then(replicas_of)) {
        (Some(value), _) => Sends::Value(value.clone()),
        (None, Some(_)) => Sends::Null,
        (None, None) => Sends::Nothing,
    }
}

/// The previous configuration a three-way merge compares the manifest with.
pub fn previous_configuration(apply: &Apply, live: &Value, record: Option<&ReleaseRecord>) -> Option<Value> {
    match apply {
        Apply::ClientSide { .. } => {
            live.annotation(LAST_APPLIED_ANNOTATION).and_then(|text| serde_json::from_str(text).ok())
        }
        Apply::HelmThreeWay { .. } => {
            let record = record?;
            let kind = live.pointer("/kind").and_then(Value::as_str).unwrap_or_default();
            let name = live.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            let namespace = live.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
            helm::manifest_documents(&record.manifest).into_iter().find(|doc| {
                let text = |p: &str| doc.pointer(p).and_then(Value::as_str);
                text("/kind") == Some(kind)
                    && text("/metadata/name") == Some(name)
                    && text("/metadata/namespace").unwrap_or(&record.namespace) == namespace
            })
        }
        Apply::ServerSide { .. } => None,
    }
}

fn owners(object: &Value) -> Vec<ReplicaOwner> {
    ownership::replica_owners(&object.managed_fields(), &[])
}

/// Whether `owner` is the applier's own entry once the apply is over (its own, or one it
/// takes over around the apply).
fn applier_owns(owner: &ReplicaOwner, manager: &str, takeover: &Takeover) -> bool {
    (owner.manager == manager && owner.operation == "Apply" && owner.subresource.is_none()) || takeover.absorbs(owner)
}

/// Replicas after a server-side apply, read from the server's dry run of it (`response`, the
/// object the server would store). The dry run cannot see a takeover, which is a separate write
/// around the apply: when the manifest leaves replicas out and every remaining owner is an
/// entry the applier takes over, the field has no other owner once it applies, and is removed.
pub fn after_server_side(response: &Value, manifest: &Value, manager: &str, takeover: &Takeover) -> Option<i64> {
    let replicas = replicas_of(response).and_then(Value::as_i64);
    if *takeover == Takeover::None || replicas_of(manifest).is_some() {
        return replicas;
    }
    let remaining = owners(response);
    if !remaining.is_empty() && remaining.iter().all(|o| applier_owns(o, manager, takeover)) {
        return Some(DEFAULT_REPLICAS);
    }
    replicas
}

/// Replicas after a server-side apply, computed from the live object's managedFields when the
/// server's dry run cannot be had (RBAC refuses `patch`): a field the applier alone owns and the
/// manifest leaves out is removed; one another manager also owns stays.
pub fn after_server_side_locally(live: &Value, manifest: &Value, manager: &str, takeover: &Takeover) -> Option<i64> {
    if let Some(value) = replicas_of(manifest) {
        return value.as_i64();
    }
    let current = replicas_of(live).and_then(Value::as_i64);
    let owners = owners(live);
    let (mine, others): (Vec<&ReplicaOwner>, Vec<&ReplicaOwner>) =
        owners.iter().partition(|o| applier_owns(o, manager, takeover));
    if !mine.is_empty() && others.is_empty() { Some(DEFAULT_REPLICAS) } else { current }
}

/// An autoscaler of a workload, live or arriving with the manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerView {
    /// `hpa/NAME` or `scaledobject/NAME`.
    pub name: String,
    pub min_replicas: Option<i64>,
    pub live: bool,
    pub in_manifests: bool,
    /// Live and able to act (`check` would not call it blocked).
    pub in_charge: bool,
    /// Why it cannot act, when live and blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}

impl AutoscalerView {
    /// Arrives with this deploy: created in the same apply, so it cannot act before the drop.
    pub fn arrives(&self) -> bool {
        self.in_manifests && !self.live
    }
}

/// The autoscalers among `documents` that target the workload `(group, kind, name)` in
/// `namespace` (`default_namespace` for documents without one).
pub fn manifest_autoscalers(
    documents: &[Document],
    default_namespace: &str,
    workload: (&str, &str, &str, &str),
) -> Vec<AutoscalerView> {
    let (namespace, group, kind, name) = workload;
    documents
        .iter()
        .filter(|doc| doc.namespace(default_namespace) == namespace)
        .filter_map(|doc| {
            let (label, min, reference_kind_default) = match (doc.group(), doc.kind()) {
                ("autoscaling", "HorizontalPodAutoscaler") => {
                    ("hpa", doc.object.pointer("/spec/minReplicas").and_then(Value::as_i64).or(Some(1)), "")
                }
                ("keda.sh", "ScaledObject") => (
                    "scaledobject",
                    doc.object.pointer("/spec/minReplicaCount").and_then(Value::as_i64).or(Some(0)),
                    "Deployment",
                ),
                _ => return None,
            };
            let reference = doc.object.pointer("/spec/scaleTargetRef")?;
            let text = |key: &str| reference.get(key).and_then(Value::as_str);
            let reference_kind = text("kind").unwrap_or(reference_kind_default);
            let reference_group = text("apiVersion")
                .map(|v| v.rsplit_once('/').map(|(g, _)| g).unwrap_or(""))
                .unwrap_or(if label == "scaledobject" { "apps" } else { "" });
            (text("name") == Some(name) && reference_kind == kind && reference_group == group).then(|| AutoscalerView {
                name: format!("{label}/{}", doc.name()),
                min_replicas: min,
                live: false,
                in_manifests: true,
                in_charge: false,
                blocked: None,
            })
        })
        .collect()
}

/// Merges the live autoscalers into those of the manifests (the same name is one autoscaler).
pub fn merge_autoscalers(mut from_manifests: Vec<AutoscalerView>, live: Vec<AutoscalerView>) -> Vec<AutoscalerView> {
    for view in live {
        match from_manifests.iter_mut().find(|m| m.name == view.name) {
            Some(existing) => {
                existing.live = true;
                existing.in_charge = view.in_charge;
                existing.blocked = view.blocked;
                existing.min_replicas = existing.min_replicas.or(view.min_replicas);
            }
            None => from_manifests.push(view),
        }
    }
    from_manifests
}

/// What the deploy does to one workload's replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forecast {
    /// The count stays (or rises).
    Keeps,
    /// The count falls: the deploy is unsafe.
    Drops,
    /// The API server would refuse the write (a conflict, or an admission policy such as the
    /// guard): the deploy fails and the count stays.
    Refused,
    /// The write goes through with the live count kept by `guard on --pin`.
    Pinned,
    /// Not live yet: the deploy creates it.
    New,
    /// Cannot be told; the cause says what is missing.
    Unknown,
}

impl Forecast {
    pub fn as_str(self) -> &'static str {
        match self {
            Forecast::Keeps => "keeps",
            Forecast::Drops => "drops",
            Forecast::Refused => "refused",
            Forecast::Pinned => "pinned",
            Forecast::New => "new",
            Forecast::Unknown => "unknown",
        }
    }
}

/// One step of the plan: a command of ours to run as printed, or the deploy itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    Run(String),
    Deploy(String),
}

impl Step {
    pub fn text(&self) -> &str {
        match self {
            Step::Run(command) | Step::Deploy(command) => command,
        }
    }
}

/// The steps, in order, that make the deploy keep the count of a workload it would drop.
/// `target` is `deployment/web`; `omits_replicas`: the manifest leaves replicas out (else the
/// manifest itself lowers them, and only editing it helps).
pub fn safe_steps(
    tool: &Tool,
    namespace: &str,
    target: &str,
    omits_replicas: bool,
    autoscalers: &[AutoscalerView],
) -> Vec<Step> {
    if !omits_replicas {
        return vec![Step::Deploy(
            "remove `replicas` from this workload's manifest (the autoscaler owns it), then run preflight again".into(),
        )];
    }
    let mut strip = format!("kubectl hpa-migrate strip -n {namespace} {target}");
    if *tool == Tool::Flux {
        // Between the strip and the new revision Flux would re-apply the old one, replicas included.
        strip.push_str(" --pause-flux");
    }
    if !autoscalers.iter().any(|a| a.in_charge) {
        // The autoscaler comes with this same deploy: the hand-over has to happen before it exists.
        strip.push_str(" --force");
    }
    strip.push_str(" --yes");
    let mut steps = vec![Step::Run(strip), Step::Deploy(tool.deploy_step().into())];
    if *tool == Tool::Flux {
        steps.push(Step::Run(format!("kubectl hpa-migrate resume -n {namespace} {target}")));
    }
    if autoscalers.is_empty() {
        // Nothing would scale it afterwards, so there is no hand-over for verify to prove.
        return steps;
    }
    // Watched for a while: an autoscaler that arrives with the deploy reports its first status
    // only at its first sync (15 s by default), and verify judges the end state with it.
    steps.push(Step::Run(format!("kubectl hpa-migrate verify -n {namespace} {target} --since 15m --watch 45s")));
    steps
}

/// The short path on a cluster that serves MutatingAdmissionPolicy, for a server-side applier
/// of a manifest without replicas: pin the live count, deploy, verify, lift the pin. A pinned
/// server-side apply hands replicas over in the same write (measured: afterwards no entry owns
/// them), so nothing is stripped. `None` when no floor of at least 2 is known (the autoscaler in
/// charge, else the one arriving with the deploy): a floor of 1 does not catch the default of 1.
pub fn pin_steps(
    tool: &Tool,
    namespace: &str,
    target: &str,
    autoscalers: &[AutoscalerView],
    current: Option<i64>,
) -> Option<Vec<Step>> {
    let autoscaler = autoscalers.iter().find(|a| a.in_charge).or_else(|| autoscalers.iter().find(|a| a.arrives()))?;
    let floor = autoscaler.min_replicas.filter(|min| *min >= 2 && current.is_some_and(|c| c >= *min))?;
    Some(vec![
        Step::Run(format!("kubectl hpa-migrate guard on -n {namespace} {target} --pin --floor {floor}")),
        Step::Deploy(tool.deploy_step().into()),
        Step::Run(format!("kubectl hpa-migrate verify -n {namespace} {target} --since 15m --watch 45s")),
        Step::Run(format!("kubectl hpa-migrate guard off -n {namespace} {target}")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fixtures::load;

    const FLUX: &str = flux::KUSTOMIZE_MANAGER;
    use serde_json::json;

    fn manifest(replicas: Option<i64>) -> Value {
        let mut object =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {}});
        if let Some(n) = replicas {
            object["spec"]["replicas"] = n.into();
        }
        object
    }

    #[test]
    fn an_application_with_server_side_apply_syncs_a_client_side_object_server_side() {
        // Captured after a default (client-side) sync of the real Argo CD v3.2.11.
        let live = load("argocd-client-side-deployment");
        let detected = applier(Tool::Argocd, "tracking id".into(), &live, Ok(None)).unwrap();
        assert_eq!(detected.apply, Apply::ClientSide { manager: argocd::CONTROLLER_MANAGER.into() });
        let mut application = load("argocd-application-self-heal");
        let plain = argocd::Application::from_value(&application).unwrap();
        assert_eq!(under_application(detected.clone(), &plain, &live).apply, detected.apply);
        application["spec"]["syncPolicy"]["syncOptions"] = json!(["ServerSideApply=true"]);
        let server_side = argocd::Application::from_value(&application).unwrap();
        let switched = under_application(detected, &server_side, &live);
        let takeover = Takeover::ArgoCdServerSideSync { managers: vec![argocd::CONTROLLER_MANAGER.into()] };
        let expected = Apply::ServerSide { manager: argocd::CONTROLLER_MANAGER.into(), force: true, takeover };
        assert_eq!(switched.apply, expected);
        assert!(switched.evidence.ends_with("(ServerSideApply=true)"), "{}", switched.evidence);
        assert_eq!(with_live_replicas(&manifest(None), &json!({"spec": {"replicas": 7}})), manifest(Some(7)));
    }

    #[test]
    fn three_way_merges_delete_what_the_previous_configuration_had() {
        let previous = manifest(Some(5));
        assert_eq!(three_way_sends(Some(&previous), &manifest(None)), Sends::Null);
        assert_eq!(three_way_sends(Some(&previous), &manifest(Some(3))), Sends::Value(3.into()));
        assert_eq!(three_way_sends(Some(&manifest(None)), &manifest(None)), Sends::Nothing);
        assert_eq!(three_way_sends(None, &manifest(None)), Sends::Nothing);
    }

    #[test]
    fn helm_without_its_record_cannot_be_told() {
        let helm = load("helm3-deployment");
        let error = applier(Tool::Helm, String::new(), &helm, Ok(None)).unwrap_err();
        assert_eq!(error, Undetermined::HelmRecordMissing { release: "web".into() });
    }

    #[test]
    fn helm_server_side_upgrade_of_a_client_side_release_migrates_helms_entry_first() {
        use crate::core::helm::Driver;
        // Captured after a Helm 3 install (helm's Update entry owns replicas; no apply_method)
        // and a Helm 4 server-side install (apply_method ssa).
        let (helm3, helm4) = (load("helm3-deployment"), load("helm4-deployment"));
        let record3 = ReleaseRecord::from_object(Driver::Secret, &load("helm3-release-secret")).unwrap();
        let record4 = ReleaseRecord::from_object(Driver::Secret, &load("helm4-release-secret")).unwrap();
        let migrating = Takeover::HelmClientSide { manager: helm_cli::MANAGER.into() };
        let switched = applier(Tool::HelmServerSide, String::new(), &helm3, Ok(Some(&record3))).unwrap();
        assert_eq!(
            switched.apply,
            Apply::ServerSide { manager: "helm".into(), force: false, takeover: migrating.clone() }
        );
        // Without --server-side=true the upgrade stays a three-way merge against the record.
        let merged = applier(Tool::Helm, String::new(), &helm3, Ok(Some(&record3))).unwrap();
        assert_eq!(merged.apply, Apply::HelmThreeWay { release: "web".into(), revision: 1 });
        // The dry run of the apply alone keeps replicas (helm's Update entry still owns them);
        // the migration makes them the apply's, which removes them.
        assert_eq!(after_server_side(&helm3, &manifest(None), "helm", &Takeover::None), Some(5));
        assert_eq!(after_server_side(&helm3, &manifest(None), "helm", &migrating), Some(DEFAULT_REPLICAS));
        assert_eq!(after_server_side_locally(&helm3, &manifest(None), "helm", &migrating), Some(DEFAULT_REPLICAS));
        // A release already server-side has nothing to migrate.
        let already = applier(Tool::HelmServerSide, String::new(), &helm4, Ok(Some(&record4))).unwrap();
        assert_eq!(already.apply, Apply::ServerSide { manager: "helm".into(), force: false, takeover: Takeover::None });
    }

    #[test]
    fn flux_takes_over_kubectl_entries_the_dry_run_leaves_owning_replicas() {
        // The dry run of Flux's apply kept replicas because `kubectl-patch` still owns it; Flux
        // merges that entry into its own first, so the real apply removes the field.
        let response = json!({"metadata": {"managedFields": [
            {"manager": "kubectl-patch", "operation": "Update", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}}]}, "spec": {"replicas": 6}});
        assert_eq!(after_server_side(&response, &manifest(None), FLUX, &Takeover::Flux), Some(1));
        assert_eq!(after_server_side(&response, &manifest(None), "kubectl", &Takeover::None), Some(6));
        // An owner written through /scale (kubectl scale, the HPA) is not taken over.
        let scaled = json!({"metadata": {"managedFields": [
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]}, "spec": {"replicas": 6}});
        assert_eq!(after_server_side(&scaled, &manifest(None), FLUX, &Takeover::Flux), Some(6));
        // Nobody owns it (after a strip): nothing to take over, the count stays.
        assert_eq!(
            after_server_side(&json!({"spec": {"replicas": 6}}), &manifest(None), FLUX, &Takeover::Flux),
            Some(6)
        );
    }

    #[test]
    fn local_server_side_prediction_on_a_captured_object() {
        let flux = load("flux-ssa-owns-replicas");
        assert_eq!(after_server_side_locally(&flux, &manifest(None), FLUX, &Takeover::Flux), Some(1));
        assert_eq!(after_server_side_locally(&flux, &manifest(Some(4)), FLUX, &Takeover::Flux), Some(4));
        let rescaled = load("hpa-rescaled");
        let current = rescaled.pointer("/spec/replicas").and_then(Value::as_i64);
        assert_eq!(after_server_side_locally(&rescaled, &manifest(None), FLUX, &Takeover::Flux), current);
    }

    #[test]
    fn kubectl_s_first_server_side_apply_migrates_the_client_side_owner_and_drops() {
        // Captured after `kubectl apply` (client-side) at 5: the dry run of a server-side apply
        // without replicas leaves kubectl-client-side-apply owning them; kubectl then migrates
        // that entry into its own and applies again, which removes the field.
        let live = load("kubectl-csa-owns-replicas");
        let Applier { apply, .. } = applier(Tool::KubectlServerSide, String::new(), &live, Ok(None)).unwrap();
        let Apply::ServerSide { manager, takeover, .. } = &apply else { panic!("{apply:?}") };
        assert_eq!(takeover, &Takeover::KubectlClientSide { managers: vec![kubectl::CLIENT_SIDE_MANAGER.into()] });
        assert_eq!(after_server_side(&live, &manifest(None), manager, takeover), Some(DEFAULT_REPLICAS));
        assert_eq!(after_server_side_locally(&live, &manifest(None), manager, takeover), Some(DEFAULT_REPLICAS));
        assert!(apply.describe().contains("then migrating kubectl-client-side-apply's entry"), "{}", apply.describe());
        // Tanka's server-side strategy is the same kubectl command under its own manager.
        let tanka = applier(Tool::Tanka, String::new(), &live, Ok(None)).unwrap();
        assert!(
            matches!(&tanka.apply, Apply::ServerSide { manager, takeover: Takeover::KubectlClientSide { .. }, .. } if manager == "tanka")
        );
        // An object only ever applied server-side has no client-side entry to migrate.
        let server_side = load("flux-ssa-owns-replicas");
        let plain = applier(Tool::KubectlServerSide, String::new(), &server_side, Ok(None)).unwrap();
        assert!(matches!(plain.apply, Apply::ServerSide { takeover: Takeover::None, .. }));
    }

    #[test]
    fn autoscalers_in_the_manifests_are_matched_by_their_target() {
        let text = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n  minReplicas: 3\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n---\napiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: api, namespace: other}\nspec:\n  scaleTargetRef: {name: web}\n";
        let docs = crate::core::manifest::parse(text, "t").unwrap();
        let found = manifest_autoscalers(&docs, "shop", ("shop", "apps", "Deployment", "web"));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].name.as_str(), found[0].min_replicas, found[0].arrives()), ("hpa/web", Some(3), true));
        let keda = manifest_autoscalers(&docs, "shop", ("other", "apps", "Deployment", "web"));
        assert_eq!((keda[0].name.as_str(), keda[0].min_replicas), ("scaledobject/api", Some(0)));
    }

    /// `hpa/web` of minimum 2, arriving with the deploy.
    fn arriving_hpa() -> AutoscalerView {
        AutoscalerView {
            name: "hpa/web".into(),
            min_replicas: Some(2),
            live: false,
            in_manifests: true,
            in_charge: false,
            blocked: None,
        }
    }

    #[test]
    fn steps_hand_over_before_the_deploy_and_pause_flux_around_it() {
        let arriving = vec![arriving_hpa()];
        let steps = safe_steps(&Tool::Flux, "shop", "deployment/web", true, &arriving);
        let texts: Vec<&str> = steps.iter().map(Step::text).collect();
        assert_eq!(texts[0], "kubectl hpa-migrate strip -n shop deployment/web --pause-flux --force --yes");
        assert!(matches!(steps[1], Step::Deploy(_)));
        assert_eq!(texts[2], "kubectl hpa-migrate resume -n shop deployment/web");
        let live = vec![AutoscalerView { live: true, in_charge: true, ..arriving[0].clone() }];
        let steps = safe_steps(&Tool::Helm, "shop", "deployment/web", true, &live);
        assert_eq!(steps[0].text(), "kubectl hpa-migrate strip -n shop deployment/web --yes");
        assert_eq!(steps.len(), 3);
    }

    #[test]
    fn the_short_path_pins_at_the_autoscaler_s_minimum_deploys_verifies_and_lifts() {
        let arriving = arriving_hpa();
        let steps = pin_steps(&Tool::Flux, "shop", "deployment/web", std::slice::from_ref(&arriving), Some(5)).unwrap();
        let texts: Vec<&str> = steps.iter().map(Step::text).collect();
        assert_eq!(texts[0], "kubectl hpa-migrate guard on -n shop deployment/web --pin --floor 2");
        assert!(matches!(steps[1], Step::Deploy(_)));
        assert_eq!(texts[2], "kubectl hpa-migrate verify -n shop deployment/web --since 15m --watch 45s");
        assert_eq!(texts[3], "kubectl hpa-migrate guard off -n shop deployment/web");
        let in_charge = AutoscalerView { live: true, in_charge: true, min_replicas: Some(3), ..arriving.clone() };
        let steps = pin_steps(&Tool::Flux, "shop", "deployment/web", &[arriving.clone(), in_charge], Some(5)).unwrap();
        assert!(steps[0].text().ends_with("--floor 3"), "the autoscaler in charge first");
        // A floor of 1 does not catch a drop to the default of 1; none known, or above the count.
        let one = AutoscalerView { min_replicas: Some(1), ..arriving.clone() };
        assert_eq!(pin_steps(&Tool::Flux, "shop", "deployment/web", &[one], Some(5)), None);
        assert_eq!(pin_steps(&Tool::Flux, "shop", "deployment/web", &[], Some(5)), None);
        assert_eq!(pin_steps(&Tool::Flux, "shop", "deployment/web", &[arriving], Some(1)), None);
    }
}
