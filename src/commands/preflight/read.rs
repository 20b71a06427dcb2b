//! What `preflight` reads: the manifests (`-f`), the workloads among them with their resource
//! types, their live objects, and the inventory around them (the autoscalers of their
//! namespaces, the release records of their releases).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::Value;

use super::REQUESTS_IN_FLIGHT;
use crate::core::autoscaler;
use crate::core::helm::{self, ReleaseRecord};
use crate::core::manifest::{self, Document};
use crate::core::preflight::{self as logic, AutoscalerView};
use crate::core::tools::{Tool, Traces, argocd};
use crate::core::workload::{Workload, WorkloadKind};
use crate::error::{Error, Result, api_code};
use crate::inventory::Inventory;
use crate::kubeio::{self, NamespaceScope};

/// Kinds that are never workloads, so no discovery request is spent on them.
const NOT_WORKLOAD_GROUPS: &[&str] = &[
    "autoscaling",
    "keda.sh",
    "rbac.authorization.k8s.io",
    "networking.k8s.io",
    "policy",
    "batch",
    "storage.k8s.io",
    "apiextensions.k8s.io",
    "admissionregistration.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "certificates.k8s.io",
    "monitoring.coreos.com",
    "kustomize.toolkit.fluxcd.io",
    "source.toolkit.fluxcd.io",
    "helm.toolkit.fluxcd.io",
];

/// One workload of the manifests, resolved and read.
#[derive(Clone)]
pub(super) struct Item {
    pub(super) document: Document,
    pub(super) kind: WorkloadKind,
    pub(super) resource: ApiResource,
    pub(super) namespace: String,
    pub(super) live: Option<Value>,
    /// `live`, decoded.
    pub(super) workload: Option<Workload>,
}

/// What the predictions read besides the live objects: per namespace of a live workload, the
/// inventory around its workloads (the autoscalers, the release records).
pub(super) struct Context {
    pub(super) inventories: BTreeMap<String, Inventory>,
    pub(super) requested: Option<Tool>,
    pub(super) documents: Vec<Document>,
    pub(super) default_namespace: String,
    /// The cluster serves MutatingAdmissionPolicy, which `guard on --pin` runs on.
    pub(super) pin_served: bool,
}

/// Reads `-f` inputs as kubectl does: files, directories (their `.yaml`, `.yml` and `.json`
/// files; with `-R` their subdirectories too), `-` for standard input.
pub fn read_inputs(paths: &[PathBuf], recursive: bool) -> Result<Vec<Document>> {
    let mut documents = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| Error::Usage(format!("cannot read standard input: {e}")))?;
            documents.extend(parse(&text, "-")?);
            continue;
        }
        for file in files_of(path, recursive)? {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::Usage(format!("cannot read {}: {e}", file.display())))?;
            documents.extend(parse(&text, &file.display().to_string())?);
        }
    }
    Ok(documents)
}

fn parse(text: &str, source: &str) -> Result<Vec<Document>> {
    manifest::parse(text, source).map_err(|e| Error::Usage(format!("{e}: fix the manifest, or leave it out of -f")))
}

fn files_of(path: &Path, recursive: bool) -> Result<Vec<PathBuf>> {
    let metadata = std::fs::metadata(path)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}: check the -f path", path.display())))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::Usage(format!("cannot read directory {}: {e}", path.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut files = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                files.extend(files_of(&entry, true)?);
            }
        } else if entry.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "json")) {
            files.push(entry);
        }
    }
    Ok(files)
}

/// The documents that are workloads (their type has `/scale`), with their resource types, each
/// type resolved once.
pub(super) async fn resolve_items(
    client: &Client,
    documents: &[Document],
    default_namespace: &str,
) -> Result<Vec<Item>> {
    let mut kinds: BTreeMap<(String, String), Option<WorkloadKind>> = BTreeMap::new();
    let mut items = Vec::new();
    for document in documents {
        let (group, kind) = (document.group(), document.kind());
        let skipped = (group.is_empty() && kind != "ReplicationController")
            || NOT_WORKLOAD_GROUPS.contains(&group)
            || group.ends_with(".fluxcd.io");
        if skipped {
            continue;
        }
        let key = (document.api_version().to_string(), kind.to_string());
        if !kinds.contains_key(&key) {
            let resolved = crate::inventory::resolve_target_type(client, &key.0, &key.1).await?;
            kinds.insert(key.clone(), resolved);
        }
        let Some(resolved) = kinds[&key].clone() else { continue };
        // The manifest's own version: the server takes an apply only in the version it names.
        let version = document.api_version().rsplit_once('/').map(|(_, v)| v).unwrap_or(document.api_version());
        let kind = WorkloadKind { version: version.to_string(), ..resolved };
        items.push(Item {
            resource: kubeio::api_resource(&kind),
            kind,
            namespace: document.namespace(default_namespace).to_string(),
            document: document.clone(),
            live: None,
            workload: None,
        });
    }
    Ok(items)
}

pub(super) async fn read_live(client: &Client, items: Vec<Item>) -> Result<Vec<Item>> {
    futures::stream::iter(items)
        .map(|mut item| async move {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &item.namespace, &item.resource);
            item.live = match kubeio::get_object(&api, item.document.name()).await {
                Ok(object) => Some(object),
                Err(e) if api_code(&e) == Some(404) => None,
                Err(e) => {
                    let scope = NamespaceScope::Namespace(item.namespace.clone());
                    return Err(kubeio::classify_error(e, "get", &item.kind.plural, &scope));
                }
            };
            item.workload = match &item.live {
                Some(live) => Some(Workload::from_object(item.kind.clone(), live.clone()).map_err(|e| {
                    let target = format!("{}/{}", item.kind.command_name(), item.document.name());
                    Error::Json { context: format!("{}/{target}", item.namespace), source: e }
                })?),
                None => None,
            };
            Ok(item)
        })
        .buffered(REQUESTS_IN_FLIGHT)
        .try_collect()
        .await
}

pub(super) async fn read_context(
    client: &Client,
    items: &[Item],
    documents: Vec<Document>,
    default_namespace: &str,
    requested: Option<Tool>,
) -> Result<Context> {
    let mut live: BTreeMap<&str, Vec<Workload>> = BTreeMap::new();
    for item in items {
        if let Some(workload) = &item.workload {
            live.entry(item.namespace.as_str()).or_default().push(workload.clone());
        }
    }
    let mut inventories = BTreeMap::new();
    for (namespace, workloads) in live {
        inventories.insert(namespace.to_string(), Inventory::around(client, namespace, workloads).await?);
    }
    let pin_served = crate::commands::guard::pin_served(client).await?;
    Ok(Context { inventories, requested, documents, default_namespace: default_namespace.into(), pin_served })
}

impl Context {
    /// The Argo CD Application whose tracking id `live` carries.
    pub(super) fn argocd_application(&self, item: &Item, live: &Value) -> Option<&argocd::Application> {
        let tracking_id = live.annotation(argocd::TRACKING_ANNOTATION)?;
        self.inventories.get(&item.namespace)?.argocd_applications.iter().find(|a| a.tracks(tracking_id))
    }

    pub(super) fn helm_record(&self, item: &Item, live: &Value) -> std::result::Result<Option<&ReleaseRecord>, String> {
        match (helm::release_of(live), self.inventories.get(&item.namespace)) {
            (Some(release), Some(inventory)) => inventory.helm_records.find(&release),
            _ => Ok(None),
        }
    }

    /// The autoscalers of the workload: those the manifests bring and the live ones.
    pub(super) fn autoscalers(&self, item: &Item, workload: Option<&Workload>) -> Vec<AutoscalerView> {
        let identity =
            (item.namespace.as_str(), item.kind.group.as_str(), item.kind.kind.as_str(), item.document.name());
        let from_manifests = logic::manifest_autoscalers(&self.documents, &self.default_namespace, identity);
        let live = workload
            .zip(self.inventories.get(&item.namespace))
            .map(|(workload, inventory)| {
                autoscaler::autoscalers_for(workload, &inventory.hpas, &inventory.scaled_objects)
                    .into_iter()
                    .map(|a| AutoscalerView {
                        name: a.label(),
                        min_replicas: a.min_replicas(),
                        live: true,
                        in_manifests: false,
                        in_charge: a.blocked.is_none(),
                        blocked: a.blocked.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        logic::merge_autoscalers(from_manifests, live)
    }
}
