//! The read model every verb takes: the workloads asked for, the autoscalers in scope, the
//! deployed Helm release records those workloads belong to, and the latest backups of them,
//! read once per command from one set of requests.
//!
//! Cost follows the request, not the namespace: named targets are read with one GET each; only
//! the autoscalers (HPAs, ScaledObjects) are LISTed whole, because no field selector can find
//! the ones that point at a given workload.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::Client;
use serde_json::Value;

use crate::backup::{self, Backup};
use crate::commands::Target;
use crate::core::autoscaler;
use crate::core::helm::{self, ReleaseRecord};
use crate::core::verdict::Assessment;
use crate::core::workload::{Workload, WorkloadKind};
use crate::core::{self, Cluster};
use crate::error::{Error, Result};
use crate::kubeio::{self, NamespaceScope};

/// Named targets read at once. Well under the API server's default `--max-requests-inflight`
/// (400) and one priority-and-fairness seat each, so a large request never starves the other
/// clients of its flow schema.
const TARGET_READS_IN_FLIGHT: usize = 16;

/// What a command asks the cluster for.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub scope: &'a NamespaceScope,
    pub selector: Option<&'a str>,
    /// Named workloads; empty: those autoscalers target (or every one, with `all_workloads`).
    pub targets: &'a [Target],
    pub all_workloads: bool,
    /// Where `strip` wrote its backups (`--backup-dir`).
    pub backup_dir: &'a Path,
}

/// Everything the analysis of the selected workloads reads.
#[derive(Debug)]
pub struct Inventory {
    pub scope: NamespaceScope,
    pub workloads: Vec<Workload>,
    pub hpas: Vec<HorizontalPodAutoscaler>,
    pub scaled_objects: Vec<Value>,
    /// Whether the KEDA ScaledObject CRD is installed.
    pub keda_installed: bool,
    /// Deployed Helm 3 release records of the workloads' releases (`None`: no workload is in
    /// one); `Err` says why they could not be read.
    pub helm_records: Option<std::result::Result<Vec<ReleaseRecord>, String>>,
    /// The latest backup of each workload, by uid.
    pub backups: BTreeMap<String, (Backup, PathBuf)>,
    /// Findings of no workload: autoscalers whose target does not exist.
    pub warnings: Vec<String>,
}

impl Inventory {
    /// Reads what the query needs.
    pub async fn collect(client: &Client, query: &Query<'_>) -> Result<Self> {
        if !query.targets.is_empty() && *query.scope == NamespaceScope::All {
            return Err(Error::Usage(
                "a workload cannot be named across all namespaces: drop -A and pass -n NAMESPACE".to_string(),
            ));
        }
        let target_kinds = resolve_target_kinds(client, query.targets).await?;
        let (hpas, scaled_objects) = futures::try_join!(
            kubeio::list_hpas(client, query.scope),
            kubeio::list_scaled_objects(client, query.scope)
        )?;
        let keda_installed = scaled_objects.is_some();
        let scaled_objects = scaled_objects.unwrap_or_default();

        let (workloads, warnings) = if query.targets.is_empty() {
            let listed = list_in_scope(client, query, &hpas, &scaled_objects).await?;
            let warnings = if query.selector.is_none() {
                orphaned_autoscalers(&hpas, &scaled_objects, &listed)
            } else {
                Vec::new()
            };
            let targeted = listed
                .into_iter()
                .filter(|w| {
                    query.all_workloads
                        || hpas.iter().any(|h| autoscaler::hpa_targets(h, w))
                        || scaled_objects.iter().any(|so| autoscaler::scaled_object_targets(so, w))
                })
                .collect();
            (targeted, warnings)
        } else {
            (read_targets(client, query, &target_kinds).await?, Vec::new())
        };

        let releases: BTreeSet<(String, String)> =
            workloads.iter().filter_map(helm::release_of).map(|(name, ns)| (ns, name)).collect();
        let helm_records = if releases.is_empty() {
            None
        } else {
            Some(kubeio::helm_records(client, &releases, *query.scope == NamespaceScope::All).await)
        };
        let backups = backup::latest_of(
            query.backup_dir,
            workloads.iter().filter_map(|w| {
                let meta = &w.metadata;
                Some((meta.namespace.as_deref()?, w.kind.kind.as_str(), meta.name.as_deref()?, meta.uid.as_deref()?))
            }),
        );
        Ok(Self {
            scope: query.scope.clone(),
            workloads,
            hpas,
            scaled_objects,
            keda_installed,
            helm_records,
            backups,
            warnings,
        })
    }

    /// The analysis of every workload, sorted by namespace, kind and name; pure.
    /// `handover_managers` are extra managers to treat as handover owners.
    pub fn assess(&self, handover_managers: &[String]) -> Vec<Assessment> {
        let cluster = Cluster {
            hpas: &self.hpas,
            scaled_objects: &self.scaled_objects,
            helm_records: self.helm_records.as_ref(),
            handover_managers,
        };
        let mut assessments: Vec<Assessment> = self
            .workloads
            .iter()
            .map(|w| {
                let mut assessment = core::analyze(w, &cluster);
                let stripped = w.metadata.uid.as_ref().and_then(|uid| self.backups.get(uid));
                if let Some((backup, path)) = stripped
                    && !assessment.hazards.is_empty()
                {
                    assessment.warnings.push(reclaimed_warning(&assessment, backup, path));
                }
                assessment
            })
            .collect();
        assessments.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
        assessments
    }

    /// The deployed release record of a Helm release, if it was read.
    pub fn helm_record(&self, namespace: &str, release: &str) -> Option<&ReleaseRecord> {
        match &self.helm_records {
            Some(Ok(records)) => records.iter().find(|r| r.namespace == namespace && r.release == release),
            _ => None,
        }
    }
}

fn reclaimed_warning(assessment: &Assessment, backup: &Backup, path: &Path) -> String {
    format!(
        "{} took replicas back after the strip of {} (backup {}): the deploy tool still sends replicas; \
         remove them from its source, pause it, then strip again",
        assessment.hazards.iter().map(|h| h.owner.as_str()).collect::<Vec<_>>().join(", "),
        backup.created,
        path.display()
    )
}

async fn resolve_target_kinds(client: &Client, targets: &[Target]) -> Result<BTreeMap<String, WorkloadKind>> {
    let mut kinds = BTreeMap::new();
    for target in targets {
        if !kinds.contains_key(&target.type_name) {
            kinds.insert(target.type_name.clone(), kubeio::resolve_kind(client, &target.type_name).await?);
        }
    }
    Ok(kinds)
}

/// One GET per named target (duplicates read once), in the order named.
async fn read_targets(
    client: &Client,
    query: &Query<'_>,
    kinds: &BTreeMap<String, WorkloadKind>,
) -> Result<Vec<Workload>> {
    let namespace = query.scope.namespace().unwrap_or_default();
    let mut unique: Vec<(&WorkloadKind, &str)> = Vec::new();
    for target in query.targets {
        let wanted = (&kinds[&target.type_name], target.name.as_str());
        if !unique.contains(&wanted) {
            unique.push(wanted);
        }
    }
    let read: Vec<Workload> = futures::stream::iter(unique)
        .map(|(kind, name)| async move {
            kubeio::get_workload(client, kind, namespace, name).await?.ok_or_else(|| Error::NotFound {
                kind: kind.command_name(),
                name: name.to_string(),
                namespace: namespace.to_string(),
            })
        })
        .buffered(TARGET_READS_IN_FLIGHT)
        .try_collect()
        .await?;
    match query.selector {
        // kubectl applies -l to named objects too: those without the labels are not reported.
        Some(selector) => {
            let matching = kubeio::names_matching(client, &read, namespace, selector).await?;
            Ok(read.into_iter().filter(|w| matching.contains(&(w.kind.clone(), w.name().to_string()))).collect())
        }
        None => Ok(read),
    }
}

/// Without targets: every workload of the kinds in play (Deployments and StatefulSets with
/// `all_workloads`, plus every kind an autoscaler points at), one paginated LIST per kind.
async fn list_in_scope(
    client: &Client,
    query: &Query<'_>,
    hpas: &[HorizontalPodAutoscaler],
    scaled_objects: &[Value],
) -> Result<Vec<Workload>> {
    let mut kinds: Vec<WorkloadKind> = Vec::new();
    if query.all_workloads {
        kinds.push(WorkloadKind::deployment());
        kinds.push(WorkloadKind::stateful_set());
    }
    for (api_version, kind) in autoscaler_target_types(hpas, scaled_objects) {
        if let Some(resolved) = resolve_target_type(client, &api_version, &kind).await?
            && !kinds.contains(&resolved)
        {
            kinds.push(resolved);
        }
    }
    let lists = futures::future::try_join_all(
        kinds.iter().map(|kind| kubeio::list_workloads(client, kind, query.scope, query.selector)),
    )
    .await?;
    Ok(lists.into_iter().flatten().collect())
}

/// Autoscalers whose target is not among the listed workloads: they scale nothing.
fn orphaned_autoscalers(
    hpas: &[HorizontalPodAutoscaler],
    scaled_objects: &[Value],
    workloads: &[Workload],
) -> Vec<String> {
    let mut found = Vec::new();
    for scaled_object in scaled_objects {
        if !workloads.iter().any(|w| autoscaler::scaled_object_targets(scaled_object, w)) {
            let text = |p: &str| scaled_object.pointer(p).and_then(|v| v.as_str()).unwrap_or_default();
            found.push(format!(
                "scaledobject/{} in {} targets {}/{}, which does not exist",
                text("/metadata/name"),
                text("/metadata/namespace"),
                scaled_object.pointer("/spec/scaleTargetRef/kind").and_then(|v| v.as_str()).unwrap_or("Deployment"),
                text("/spec/scaleTargetRef/name")
            ));
        }
    }
    for hpa in hpas.iter().filter(|h| autoscaler::owning_scaled_object(h).is_none()) {
        if !workloads.iter().any(|w| autoscaler::hpa_targets(hpa, w)) {
            let target = &hpa.spec.scale_target_ref;
            let state = autoscaler::hpa_state(hpa);
            let able = state.conditions.iter().find(|c| c.type_ == "AbleToScale" && c.status == "False");
            found.push(format!(
                "hpa/{} in {} targets {}/{}, which does not exist{}",
                state.name,
                hpa.metadata.namespace.as_deref().unwrap_or_default(),
                target.kind,
                target.name,
                able.map(|c| format!(" (AbleToScale=False: {})", c.reason.as_deref().unwrap_or_default()))
                    .unwrap_or_default()
            ));
        }
    }
    found
}

/// The distinct (apiVersion, kind) pairs autoscalers point at.
fn autoscaler_target_types(hpas: &[HorizontalPodAutoscaler], scaled_objects: &[Value]) -> BTreeSet<(String, String)> {
    let from_hpas = hpas
        .iter()
        .map(|h| &h.spec)
        .map(|s| (s.scale_target_ref.api_version.clone().unwrap_or_default(), s.scale_target_ref.kind.clone()));
    let from_keda = scaled_objects.iter().map(|so| {
        let text = |key: &str| so.pointer(&format!("/spec/scaleTargetRef/{key}")).and_then(|v| v.as_str());
        (text("apiVersion").unwrap_or("apps/v1").to_string(), text("kind").unwrap_or("Deployment").to_string())
    });
    from_hpas.chain(from_keda).collect()
}

/// Resolves an autoscaler's target type; `None` when the type does not exist (the autoscaler
/// then targets nothing, which its own conditions report).
async fn resolve_target_type(client: &Client, api_version: &str, kind: &str) -> Result<Option<WorkloadKind>> {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    match (group, kind) {
        ("apps", "Deployment") => Ok(Some(WorkloadKind::deployment())),
        ("apps", "StatefulSet") => Ok(Some(WorkloadKind::stateful_set())),
        _ => {
            let type_name = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
            match kubeio::resolve_kind(client, &type_name).await {
                Ok(resolved) => Ok(Some(resolved)),
                Err(Error::UnknownResourceType(_) | Error::NoScaleSubresource(_)) => Ok(None),
                Err(other) => Err(other),
            }
        }
    }
}
