//! The thin I/O layer over kube-rs: resolving resource types, and listing what the analysis
//! reads. Every read is a paginated LIST per kind and scope, so the number of requests does not
//! grow with the number of workloads.

use std::collections::BTreeSet;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, ObjectList};
use kube::discovery::{self, Discovery, Scope};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::core::autoscaler::{Hpa, ScaledObject};
use crate::core::helm::{self, Driver, ReleaseKey, ReleaseRecord, ReleaseRecords};
use crate::core::ownership;
use crate::core::tools::argocd;
use crate::core::workload::{Workload, WorkloadKind};
use crate::error::{Error, Result, api_code};

/// Objects per LIST page: kubectl's default `--chunk-size`. A page is decoded and reduced to
/// what the analysis reads before the next is asked for, so memory follows the page, not the
/// namespace; larger pages would save few round trips (10,000 objects are 20 pages) and cost
/// the API server more memory per request.
pub const PAGE_SIZE: u32 = 500;

/// Requests one command has in flight at most (named targets read, objects stripped). The API
/// server serves 400 non-mutating and 200 mutating requests at once by default
/// (`--max-requests-inflight`, `--max-mutating-requests-inflight`), and under API Priority and
/// Fairness a plugin shares the flow of the user running it (the `global-default` or
/// `workload-low` level, a few dozen seats): a bound this small leaves room for the user's other
/// clients and the controllers, and is already past the point where round trips, not the
/// server, set the pace.
pub const IN_FLIGHT: usize = 16;

/// Which namespaces a command looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceScope {
    Namespace(String),
    All,
}

impl NamespaceScope {
    pub fn namespace(&self) -> Option<&str> {
        match self {
            NamespaceScope::Namespace(ns) => Some(ns),
            NamespaceScope::All => None,
        }
    }
}

pub fn api_resource(kind: &WorkloadKind) -> ApiResource {
    ApiResource {
        group: kind.group.clone(),
        version: kind.version.clone(),
        api_version: kind.api_version(),
        kind: kind.kind.clone(),
        plural: kind.plural.clone(),
    }
}

fn dynamic_api(client: &Client, resource: &ApiResource, scope: &NamespaceScope) -> Api<DynamicObject> {
    match scope {
        NamespaceScope::Namespace(ns) => Api::namespaced_with(client.clone(), ns, resource),
        NamespaceScope::All => Api::all_with(client.clone(), resource),
    }
}

fn typed_api<K>(client: &Client, scope: &NamespaceScope) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    match scope {
        NamespaceScope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        NamespaceScope::All => Api::all(client.clone()),
    }
}

/// Turns a kube error into ours, naming the verb and resource for RBAC refusals.
pub fn classify_error(error: kube::Error, verb: &str, resource: &str, scope: &NamespaceScope) -> Error {
    if api_code(&error) == Some(403) {
        return Error::forbidden(verb, resource, scope.namespace(), error);
    }
    Error::api(format!("{verb} {resource}"), error)
}

/// As [`classify_error`] for a LIST with a label selector: the server refuses a selector it
/// cannot parse with 400 Bad Request, which is the user's input to fix.
fn list_error(error: kube::Error, resource: &str, scope: &NamespaceScope, selector: Option<&str>) -> Error {
    match (&error, selector) {
        (kube::Error::Api(status), Some(selector)) if status.code == 400 => {
            Error::InvalidSelector { selector: selector.to_string(), message: status.message.clone() }
        }
        _ => classify_error(error, "list", resource, scope),
    }
}

/// A workload as the analysis keeps it: of its managedFields only the entries that own
/// replicas, and of their field sets only that they own replicas (the rest, status writers and
/// the whole spec an applier owns, is most of an object's size; `strip` plans on a fresh GET).
fn reduce_workload(kind: &WorkloadKind, object: DynamicObject) -> Workload {
    let mut metadata = object.metadata;
    if let Some(entries) = metadata.managed_fields.as_mut() {
        entries.retain(|e| {
            e.fields_v1.as_ref().is_some_and(|f| ownership::fields_contain(&f.0, &ownership::REPLICAS_PATH))
        });
        // Kept for the whole command: without the room of the entries dropped.
        entries.shrink_to_fit();
        for entry in entries {
            entry.fields_v1 = Some(FieldsV1(serde_json::json!({"f:spec": {"f:replicas": {}}})));
        }
    }
    Workload::from_parts(kind.clone(), metadata, &object.data)
}

/// GETs one workload; `None` when it does not exist.
pub async fn get_workload(
    client: &Client,
    kind: &WorkloadKind,
    namespace: &str,
    name: &str,
) -> Result<Option<Workload>> {
    let api = workload_api(client, kind, namespace);
    match api.get(name).await {
        Ok(object) => Ok(Some(reduce_workload(kind, object))),
        Err(e) if api_code(&e) == Some(404) => Ok(None),
        Err(e) => Err(classify_error(e, "get", &kind.plural, &NamespaceScope::Namespace(namespace.to_string()))),
    }
}

/// Which of `workloads` carry the labels of `selector`: one LIST per workload, narrowed to it by
/// a field selector, so the cost does not grow with the namespace.
pub async fn names_matching(
    client: &Client,
    workloads: &[Workload],
    namespace: &str,
    selector: &str,
) -> Result<BTreeSet<(WorkloadKind, String)>> {
    let scope = NamespaceScope::Namespace(namespace.to_string());
    let mut matching = BTreeSet::new();
    for workload in workloads {
        let api = workload_api(client, &workload.kind, namespace);
        let params = ListParams::default().labels(selector).fields(&format!("metadata.name={}", workload.name()));
        let page = api
            .list_metadata(&params)
            .await
            .map_err(|e| list_error(e, &workload.kind.plural, &scope, Some(selector)))?;
        if !page.items.is_empty() {
            matching.insert((workload.kind.clone(), workload.name().to_string()));
        }
    }
    Ok(matching)
}

/// LISTs every page.
pub async fn list_all<K>(api: &Api<K>, params: &ListParams) -> std::result::Result<Vec<K>, kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    list_reduced(api, params, Some).await
}

/// LISTs every page, reducing each object as its page arrives (`None` drops it), so no more
/// than two pages of whole objects are held at a time: the next page is asked for before the
/// one that came is reduced, so the server works on it meanwhile.
pub async fn list_reduced<K, T>(
    api: &Api<K>,
    params: &ListParams,
    mut reduce: impl FnMut(K) -> Option<T>,
) -> std::result::Result<Vec<T>, kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.clone().limit(PAGE_SIZE);
    let mut items = Vec::new();
    let mut page: ObjectList<K> = api.list(&params).await?;
    // When the first page is kept whole, room for every object the server says is left, so
    // the list is not grown (its capacity doubled) page by page; the count is an estimate,
    // absent for a selector.
    let mut remaining = page.metadata.remaining_item_count.and_then(|n| usize::try_from(n).ok());
    loop {
        let arrived = std::mem::take(&mut page.items);
        let mut keep = |objects: Vec<K>| {
            let count = objects.len();
            items.extend(objects.into_iter().filter_map(&mut reduce));
            if let Some(remaining) = remaining.take().filter(|_| items.len() == count) {
                items.reserve_exact(remaining);
            }
        };
        match page.metadata.continue_.take().filter(|c| !c.is_empty()) {
            Some(token) => {
                params = params.continue_token(&token);
                let (next, ()) = futures::join!(api.list(&params), async { keep(arrived) });
                page = next?;
            }
            None => {
                keep(arrived);
                return Ok(items);
            }
        }
    }
}

fn label_params(selector: Option<&str>) -> ListParams {
    match selector {
        Some(selector) => ListParams::default().labels(selector),
        None => ListParams::default(),
    }
}

/// Lists the workloads of one kind in scope. Each page is turned into workloads as it comes,
/// so a large namespace is never held twice in memory.
pub async fn list_workloads(
    client: &Client,
    kind: &WorkloadKind,
    scope: &NamespaceScope,
    selector: Option<&str>,
) -> Result<Vec<Workload>> {
    let api = dynamic_api(client, &api_resource(kind), scope);
    list_reduced(&api, &label_params(selector), |object| Some(reduce_workload(kind, object)))
        .await
        .map_err(|e| list_error(e, &kind.plural, scope, selector))
}

/// Lists the HPAs in scope, reduced as [`list_hpas_where`] does.
pub async fn list_hpas(client: &Client, scope: &NamespaceScope) -> Result<Vec<Hpa>> {
    list_hpas_where(client, scope, |_| true).await
}

/// Lists the HPAs in scope that `wanted` keeps, each reduced as its page arrives to what the
/// analysis reads ([`Hpa`]).
pub async fn list_hpas_where(
    client: &Client,
    scope: &NamespaceScope,
    wanted: impl Fn(&Hpa) -> bool,
) -> Result<Vec<Hpa>> {
    let api = typed_api::<HorizontalPodAutoscaler>(client, scope);
    let reduce = |hpa: HorizontalPodAutoscaler| Some(Hpa::from(hpa)).filter(|hpa| wanted(hpa));
    list_reduced(&api, &ListParams::default(), reduce)
        .await
        .map_err(|e| classify_error(e, "list", "horizontalpodautoscalers.autoscaling", scope))
}

pub fn scaled_object_resource() -> ApiResource {
    ApiResource {
        group: "keda.sh".into(),
        version: "v1alpha1".into(),
        api_version: "keda.sh/v1alpha1".into(),
        kind: "ScaledObject".into(),
        plural: "scaledobjects".into(),
    }
}

/// Flux HelmReleases (`helm.toolkit.fluxcd.io/v2`), in `namespace`.
pub fn helm_release_api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "helm.toolkit.fluxcd.io".into(),
        version: "v2".into(),
        api_version: "helm.toolkit.fluxcd.io/v2".into(),
        kind: "HelmRelease".into(),
        plural: "helmreleases".into(),
    };
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// Lists KEDA ScaledObjects, reduced as [`list_scaled_objects_where`] does; `None` when KEDA's
/// CRD is not installed, which is normal.
pub async fn list_scaled_objects(client: &Client, scope: &NamespaceScope) -> Result<Option<Vec<ScaledObject>>> {
    list_scaled_objects_where(client, scope, |_| true).await
}

/// Lists the KEDA ScaledObjects `wanted` keeps, each reduced to a [`ScaledObject`] as its page
/// arrives; `None` when KEDA's CRD is not installed.
pub async fn list_scaled_objects_where(
    client: &Client,
    scope: &NamespaceScope,
    wanted: impl Fn(&ScaledObject) -> bool,
) -> Result<Option<Vec<ScaledObject>>> {
    let api = dynamic_api(client, &scaled_object_resource(), scope);
    let reduce = |mut object: DynamicObject| {
        object.metadata.managed_fields = None;
        object.metadata.labels = None;
        Some(ScaledObject::from_value(&to_value(object))).filter(|so| wanted(so))
    };
    match list_reduced(&api, &ListParams::default(), reduce).await {
        Ok(objects) => Ok(Some(objects)),
        Err(e) if api_code(&e) == Some(404) => Ok(None),
        Err(e) => Err(classify_error(e, "list", "scaledobjects.keda.sh", scope)),
    }
}

fn argocd_application_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Application".into(),
        plural: "applications".into(),
    }
}

/// Argo CD Applications (`argoproj.io/v1alpha1`), in `namespace`.
pub fn argocd_application_api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &argocd_application_resource())
}

/// Lists Argo CD's Applications in every namespace, each reduced to an
/// [`argocd::Application`]; `None` when Argo CD's CRD is not installed or listing them is not
/// allowed (what needs them is then not checked).
pub async fn list_argocd_applications(client: &Client) -> Result<Option<Vec<argocd::Application>>> {
    let api = dynamic_api(client, &argocd_application_resource(), &NamespaceScope::All);
    let reduce = |object: DynamicObject| argocd::Application::from_value(&to_value(object));
    match list_reduced(&api, &ListParams::default(), reduce).await {
        Ok(applications) => Ok(Some(applications)),
        Err(e) if matches!(api_code(&e), Some(403 | 404)) => Ok(None),
        Err(e) => Err(classify_error(e, "list", "applications.argoproj.io", &NamespaceScope::All)),
    }
}

/// Reads the deployed Helm release records of the given releases: one LIST of Secrets per
/// namespace (or cluster-wide), then ConfigMaps only for releases not found. No release, no LIST.
pub async fn helm_records(client: &Client, releases: &BTreeSet<ReleaseKey>, all_namespaces: bool) -> ReleaseRecords {
    if releases.is_empty() {
        return ReleaseRecords::NotRead;
    }
    match read_helm_records(client, releases, all_namespaces).await {
        Ok(records) => ReleaseRecords::Read(records),
        Err(problem) => ReleaseRecords::Unreadable(problem),
    }
}

async fn read_helm_records(
    client: &Client,
    releases: &BTreeSet<ReleaseKey>,
    all_namespaces: bool,
) -> std::result::Result<Vec<ReleaseRecord>, String> {
    let namespaces: BTreeSet<&str> = releases.iter().map(|r| r.namespace.as_str()).collect();
    let scopes: Vec<NamespaceScope> = if all_namespaces && namespaces.len() > 1 {
        vec![NamespaceScope::All]
    } else {
        namespaces.iter().map(|ns| NamespaceScope::Namespace(ns.to_string())).collect()
    };
    let params = ListParams::default().labels(helm::DEPLOYED_RECORDS_SELECTOR);
    let mut records: Vec<ReleaseRecord> = Vec::new();
    let mut problems = Vec::new();
    for driver in [Driver::Secret, Driver::ConfigMap] {
        let missing: BTreeSet<&ReleaseKey> = releases
            .iter()
            .filter(|key| !records.iter().any(|r| r.namespace == key.namespace && r.release == key.name))
            .collect();
        if missing.is_empty() {
            break;
        }
        for scope in &scopes {
            let api = record_api(client, driver, scope);
            let objects = match list_all(&api, &params).await {
                Ok(objects) => objects,
                // The configmap driver is rare; a refusal there only matters if nothing was found.
                Err(e) if driver == Driver::Secret => {
                    problems.push(classify_error(e, "list", driver.resource(), scope).to_string());
                    continue;
                }
                Err(_) => continue,
            };
            for object in objects {
                let name = object.metadata.labels.as_ref().and_then(|l| l.get("name")).cloned().unwrap_or_default();
                let namespace = object.metadata.namespace.clone().unwrap_or_default();
                if !missing.contains(&ReleaseKey { namespace, name }) {
                    continue;
                }
                let value = to_value(object);
                match ReleaseRecord::from_object(driver, &value) {
                    Ok(record) => records.push(record),
                    Err(e) => problems.push(format!(
                        "{driver:?} {}/{}: {e}",
                        value.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default(),
                        value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
                    )),
                }
            }
        }
    }
    if records.is_empty() && !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(records)
}

/// Resolves a resource type as kubectl accepts it (`deploy`, `deployments.apps`,
/// `rollouts.argoproj.io`, `Rollout`) to a namespaced kind that has a `/scale` subresource.
pub async fn resolve_kind(client: &Client, type_name: &str) -> Result<WorkloadKind> {
    let lowered = type_name.to_lowercase();
    match lowered.as_str() {
        "deploy" | "deployment" | "deployments" | "deployment.apps" | "deployments.apps" => {
            return Ok(WorkloadKind::deployment());
        }
        "sts" | "statefulset" | "statefulsets" | "statefulset.apps" | "statefulsets.apps" => {
            return Ok(WorkloadKind::stateful_set());
        }
        _ => {}
    }
    let (resource_name, group) = match lowered.split_once('.') {
        Some((name, group)) => (name.to_string(), Some(group.to_string())),
        None => (lowered.clone(), None),
    };
    let candidates: Vec<(ApiResource, discovery::ApiCapabilities)> = match &group {
        Some(group) => match discovery::group(client, group).await {
            Ok(found) => found.recommended_resources(),
            Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
            Err(e) => return Err(Error::api("discovery", e)),
        },
        None => {
            let found =
                Discovery::new(client.clone()).run_aggregated().await.map_err(|e| Error::api("discovery", e))?;
            found.groups().flat_map(|g| g.recommended_resources()).collect()
        }
    };
    let matches = |resource: &ApiResource| {
        resource.plural == resource_name
            || resource.kind.to_lowercase() == resource_name
            || format!("{}s", resource.kind.to_lowercase()) == resource_name
    };
    let Some((resource, capabilities)) = candidates.into_iter().find(|(r, _)| matches(r)) else {
        return Err(Error::UnknownResourceType(type_name.to_string()));
    };
    if !capabilities.subresources.iter().any(|(sub, _)| sub.plural == "scale") {
        return Err(Error::NoScaleSubresource(format!(
            "{} has no /scale subresource, so no autoscaler can own its replicas",
            resource.plural
        )));
    }
    if capabilities.scope != Scope::Namespaced {
        return Err(Error::Usage(format!("{} is not namespaced", resource.plural)));
    }
    Ok(WorkloadKind { group: resource.group, version: resource.version, kind: resource.kind, plural: resource.plural })
}

/// The API of one workload kind in one namespace.
pub fn workload_api(client: &Client, kind: &WorkloadKind, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &api_resource(kind))
}

fn to_value(object: DynamicObject) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// GETs one object as JSON.
pub async fn get_object(api: &Api<DynamicObject>, name: &str) -> std::result::Result<Value, kube::Error> {
    api.get(name).await.map(to_value)
}

/// Sends a JSON patch (server-side dry run when asked) and returns the object the server wrote.
pub async fn json_patch(
    api: &Api<DynamicObject>,
    name: &str,
    patch: json_patch::Patch,
    dry_run: bool,
) -> std::result::Result<Value, kube::Error> {
    let mut params =
        kube::api::PatchParams { field_manager: Some(crate::core::patch::FIELD_MANAGER.into()), ..Default::default() };
    params.dry_run = dry_run;
    api.patch(name, &params, &kube::api::Patch::Json::<()>(patch)).await.map(to_value)
}

/// Server-side apply without force: a conflict is an error, never a silent takeover.
pub async fn apply(
    api: &Api<DynamicObject>,
    name: &str,
    manager: &str,
    body: &Value,
    dry_run: bool,
) -> std::result::Result<Value, kube::Error> {
    let mut params = kube::api::PatchParams::apply(manager);
    params.dry_run = dry_run;
    api.patch(name, &params, &kube::api::Patch::Apply(body)).await.map(to_value)
}

fn record_resource(driver: Driver) -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: driver.kind().into(),
        plural: driver.resource().into(),
    }
}

fn record_api(client: &Client, driver: Driver, scope: &NamespaceScope) -> Api<DynamicObject> {
    dynamic_api(client, &record_resource(driver), scope)
}

pub fn release_record_api(client: &Client, driver: Driver, namespace: &str) -> Api<DynamicObject> {
    record_api(client, driver, &NamespaceScope::Namespace(namespace.to_string()))
}

/// Asks the API server whether the current identity may `verb` the resource in `namespace`.
pub async fn can_i(client: &Client, verb: &str, group: &str, resource: &str, namespace: &str) -> Result<bool> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&kube::api::PostParams::default(), &review)
        .await
        .map_err(|e| Error::api("asking the API server for permissions", e))?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}
