//! What verify reads from the API server: the workloads to verify, the Events and ReplicaSets
//! their history is rebuilt from, and their end state.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, ListParams};

use super::judge::end_state;
use super::{EndState, Explainers, History, WorkloadKey, workload_type};
use crate::cli::VerifyArgs;
use crate::core::timeline::{self, EventRecord};
use crate::core::verdict::Assessment;
use crate::core::workload::AppsKind;
use crate::core::workload::Workload;
use crate::error::{Error, Result};
use crate::inventory::{self, Inventory, Query};
use crate::kubeio::{self, NamespaceScope};

/// The workloads to verify, assessed, and of the first read what the history needs (uid,
/// creation) by kind and name; the rest of the inventory goes. Kinds verify cannot read the
/// events of are a usage error.
pub(super) async fn read_verifiable(
    client: &Client,
    query: &Query<'_>,
) -> Result<(Vec<Assessment>, BTreeMap<WorkloadKey, Workload>)> {
    let inventory = Inventory::collect(client, query).await?;
    let assessments = inventory.assess(&[]);
    if let Some(unsupported) = assessments.iter().find(|a| workload_type(a).is_none()) {
        return Err(Error::Usage(format!(
            "{}: verify reads Deployment and StatefulSet events only; watch it with kubectl get -w",
            unsupported.target()
        )));
    }
    let workloads = inventory
        .workloads
        .into_iter()
        .map(|w| ((w.namespace().to_string(), w.kind.clone(), w.name().to_string()), w))
        .collect();
    Ok((assessments, workloads))
}

/// The Events and ReplicaSets of the namespaces the workloads are in: one LIST per kind and
/// namespace, however many workloads are verified, filtered locally.
pub(super) struct Evidence {
    events: BTreeMap<String, Vec<EventRecord>>,
    replica_sets: BTreeMap<String, Vec<ReplicaSet>>,
}

impl Evidence {
    pub(super) async fn read(client: &Client, assessments: &[Assessment]) -> Result<Self> {
        let namespaces: std::collections::BTreeSet<&str> = assessments.iter().map(|a| a.namespace.as_str()).collect();
        let with_deployments: std::collections::BTreeSet<&str> = assessments
            .iter()
            .filter(|a| workload_type(a) == Some(AppsKind::Deployment))
            .map(|a| a.namespace.as_str())
            .collect();
        let events = futures::future::try_join_all(
            namespaces.iter().map(|ns| async move { Ok::<_, Error>((ns.to_string(), list_events(client, ns).await?)) }),
        );
        let replica_sets = futures::future::try_join_all(with_deployments.iter().map(|ns| async move {
            let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
            let sets = kubeio::list_reduced(&api, &ListParams::default(), reduce_replica_set).await.map_err(|e| {
                kubeio::classify_error(e, "list", "replicasets.apps", &NamespaceScope::Namespace(ns.to_string()))
            })?;
            Ok::<_, Error>((ns.to_string(), sets))
        }));
        let (events, replica_sets) = futures::try_join!(events, replica_sets)?;
        Ok(Self { events: events.into_iter().collect(), replica_sets: replica_sets.into_iter().collect() })
    }
}

/// Of a ReplicaSet, what [`current_sizes`] reads: its name, owners and size.
fn reduce_replica_set(set: ReplicaSet) -> Option<ReplicaSet> {
    let metadata =
        ObjectMeta { name: set.metadata.name, owner_references: set.metadata.owner_references, ..Default::default() };
    let spec = set.spec.map(|s| ReplicaSetSpec { replicas: s.replicas, ..Default::default() });
    Some(ReplicaSet { metadata, spec, status: None })
}

/// The namespace's Events as records, each page reduced as it arrives.
async fn list_events(client: &Client, namespace: &str) -> Result<Vec<EventRecord>> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let scope = NamespaceScope::Namespace(namespace.to_string());
    kubeio::list_reduced(&api, &ListParams::default(), |event| EventRecord::from_event(&event))
        .await
        .map_err(|e| kubeio::classify_error(e, "list", "events", &scope))
}

/// The current size of each ReplicaSet the Deployment owns, or the StatefulSet's replicas.
fn current_sizes(
    assessment: &Assessment,
    kind: AppsKind,
    uid: &str,
    replica_sets: &[ReplicaSet],
) -> BTreeMap<String, i64> {
    match kind {
        AppsKind::StatefulSet => {
            BTreeMap::from([(assessment.name.clone(), assessment.replicas.status.unwrap_or_default())])
        }
        AppsKind::Deployment => replica_sets
            .iter()
            .filter(|rs| rs.metadata.owner_references.iter().flatten().any(|o| o.uid == uid))
            .map(|rs| {
                let size = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                (rs.metadata.name.clone().unwrap_or_default(), i64::from(size))
            })
            .collect(),
    }
}

pub(super) fn history(
    assessment: &Assessment,
    workload: Option<&Workload>,
    evidence: &Evidence,
    args: &VerifyArgs,
) -> History {
    let kind = workload_type(assessment).expect("checked before");
    let now = Timestamp::now();
    let ttl = SignedDuration::try_from(args.event_ttl.0).unwrap_or(SignedDuration::MAX);
    let metadata = workload.map(|w| &w.metadata);
    let created = metadata.and_then(|m| m.creation_timestamp.as_ref()).map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH);
    let uid = metadata.and_then(|m| m.uid.as_deref()).unwrap_or_default();
    let evidence_from = created.max(now - ttl);
    let from = match &args.since {
        Some(since) => now - SignedDuration::try_from(since.0).unwrap_or(SignedDuration::MAX),
        None => evidence_from,
    };
    // A period that starts before the workload existed is covered from its creation on.
    let covered = from.max(created) >= evidence_from;
    let events = evidence.events.get(&assessment.namespace).map(Vec::as_slice).unwrap_or_default();
    let sets = evidence.replica_sets.get(&assessment.namespace).map(Vec::as_slice).unwrap_or_default();
    let current = current_sizes(assessment, kind, uid, sets);
    let explainers = Explainers::of(assessment);
    let subjects = explainers.subjects(assessment, kind, Some(created));
    let timeline = timeline::rebuild(events, &subjects, &current, from, now);
    let drops = timeline::drops(&timeline, args.floor);
    History { from, to: now, evidence_from, covered, timeline, drops }
}

/// Each workload's state at the end: at or above the floor, an autoscaler in charge, no deploy
/// mechanism owning replicas (`check`'s analysis, read fresh, once for all of them).
pub(super) async fn end_states(
    client: &Client,
    assessments: &[Assessment],
    backup_dir: &std::path::Path,
    floor: i64,
) -> Result<Vec<EndState>> {
    let mut by_namespace: BTreeMap<&str, Vec<crate::commands::Target>> = BTreeMap::new();
    for a in assessments {
        by_namespace
            .entry(a.namespace.as_str())
            .or_default()
            .push(crate::commands::Target { type_name: a.workload_kind.command_name(), name: a.name.clone() });
    }
    let mut now: Vec<Assessment> = Vec::new();
    for (namespace, targets) in &by_namespace {
        let scope = NamespaceScope::Namespace(namespace.to_string());
        let query = Query { scope: &scope, selector: None, targets, all_workloads: false, backup_dir };
        now.extend(inventory::assessed(client, &query).await?);
    }
    assessments
        .iter()
        .map(|a| {
            let current = now
                .iter()
                .find(|n| n.namespace == a.namespace && n.kind == a.kind && n.name == a.name)
                .ok_or_else(|| Error::NotFound {
                    kind: a.workload_kind.command_name(),
                    name: a.name.clone(),
                    namespace: a.namespace.clone(),
                })?;
            Ok(end_state(current, floor))
        })
        .collect()
}
