//! The pure core: no I/O, unit-tested on objects captured from a real API server.

pub mod autoscaler;
pub mod deploy;
pub mod helm;
pub mod ownership;
pub mod verdict;
pub mod workload;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use serde_json::Value;

use self::helm::ReleaseRecord;
use self::verdict::Assessment;
use self::workload::Workload;

/// What the analysis of one workload reads, besides the workload itself. Everything comes from
/// one LIST per kind and scope, never a GET per workload.
#[derive(Debug, Default)]
pub struct Cluster<'a> {
    pub hpas: &'a [HorizontalPodAutoscaler],
    pub scaled_objects: &'a [Value],
    /// Deployed Helm release records, by (namespace, release); `Err` when they could not be read.
    pub helm_records: Option<&'a Result<Vec<ReleaseRecord>, String>>,
    /// Extra managers to treat as handover owners (`strip --field-manager`).
    pub handover_managers: &'a [String],
}

/// Runs the whole analysis of one workload.
pub fn analyze(workload: &Workload, cluster: &Cluster<'_>) -> Assessment {
    let entries = workload.metadata.managed_fields.as_deref().unwrap_or_default();
    let owners = ownership::replica_owners(entries, cluster.handover_managers);
    let helm = helm::release_of(workload).map(|release| {
        let record = match cluster.helm_records {
            Some(Ok(records)) => Ok(records.iter().find(|r| r.release == release.0 && r.namespace == release.1)),
            Some(Err(problem)) => Err(problem.clone()),
            None => Err("release records were not read".to_string()),
        };
        deploy::helm_info(workload, release, record)
    });
    let info = deploy::deploy_info(workload, &owners, helm);
    let hazards = deploy::hazards(&owners, &info);
    let autoscalers = autoscaler::autoscalers_for(workload, cluster.hpas, cluster.scaled_objects);
    verdict::assess(workload, owners, info, hazards, autoscalers)
}
