//! The read model every verb takes: the workloads asked for, the autoscalers in scope, the
//! deployed Helm release records those workloads belong to, and the latest backups of them,
//! read once per command from one set of requests.
//!
//! Cost follows the request, not the namespace: named targets are read with one GET each; only
//! the autoscalers (HPAs, ScaledObjects) are LISTed whole, because no field selector can find
//! the ones that point at a given workload.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use kube::Client;

use crate::backup::{self, Backup};
use crate::commands::Target;
use crate::core::autoscaler::{self, Hpa, ScaledObject};
use crate::core::helm::{self, ReleaseKey, ReleaseRecords};
use crate::core::tools::{Mechanism, argocd};
use crate::core::verdict::{Assessment, Verdict};
use crate::core::workload::{Workload, WorkloadKind};
use crate::core::{self, Cluster};
use crate::error::{Error, Result};
use crate::kubeio::{self, NamespaceScope};

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
    /// Sorted by namespace, kind and name.
    pub workloads: Vec<Workload>,
    pub hpas: Vec<Hpa>,
    pub scaled_objects: Vec<ScaledObject>,
    /// Whether the KEDA ScaledObject CRD is installed.
    pub keda_installed: bool,
    /// Deployed Helm 3 release records of the workloads' releases (`None`: no workload is in
    /// one); `Err` says why they could not be read.
    pub helm_records: ReleaseRecords,
    /// The latest backup of each workload, by uid.
    pub backups: BTreeMap<String, (Backup, PathBuf)>,
    /// Argo CD's Applications, read when a workload carries Argo CD's tracking id (empty
    /// otherwise, and when they cannot be read).
    pub argocd_applications: Vec<argocd::Application>,
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
        // Without targets, the kinds that are listed whatever the autoscalers point at are read
        // at the same time as the autoscalers: their pages arrive side by side.
        let early_kinds = if query.targets.is_empty() { early_kinds(query.all_workloads) } else { Vec::new() };
        // With named targets, only the autoscalers that can concern them are kept, as each page
        // arrives: those pointing at a target's name, and the HPAs KEDA owns (a ScaledObject's
        // HPA is found by its name).
        let names: HashSet<&str> = query.targets.iter().map(|t| t.name.as_str()).collect();
        let all = query.targets.is_empty();
        let hpa_wanted =
            |hpa: &Hpa| all || names.contains(hpa.target.name.as_str()) || hpa.scaled_object_owner.is_some();
        let scaled_object_wanted = |so: &ScaledObject| all || names.contains(so.target.name.as_str());
        let ((hpas, scaled_objects), early) = futures::try_join!(
            async {
                futures::try_join!(
                    kubeio::list_hpas_where(client, query.scope, hpa_wanted),
                    kubeio::list_scaled_objects_where(client, query.scope, scaled_object_wanted)
                )
            },
            list_kinds(client, query, &early_kinds)
        )?;
        let keda_installed = scaled_objects.is_some();
        let scaled_objects = scaled_objects.unwrap_or_default();
        let index = AutoscalerIndex::new(&hpas, &scaled_objects);

        let (mut workloads, warnings) = if query.targets.is_empty() {
            let mut listed = early;
            listed.extend(list_late_kinds(client, query, &hpas, &scaled_objects, &early_kinds).await?);
            let warnings = if query.selector.is_none() { orphaned_autoscalers(&index, &listed) } else { Vec::new() };
            let targeted = listed.into_iter().filter(|w| query.all_workloads || index.targets(w)).collect();
            (targeted, warnings)
        } else {
            (read_targets(client, query, &target_kinds).await?, Vec::new())
        };

        // In the order reports list them, so that each can be written as it is assessed.
        workloads.sort_by(|a, b| (a.namespace(), &a.kind.kind, a.name()).cmp(&(b.namespace(), &b.kind.kind, b.name())));
        let releases: BTreeSet<ReleaseKey> = workloads.iter().filter_map(helm::release_of).collect();
        let helm_records = kubeio::helm_records(client, &releases, *query.scope == NamespaceScope::All).await;
        let argocd_applications = argocd_applications_of(client, &workloads).await?;
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
            argocd_applications,
            warnings,
        })
    }

    /// What surrounds workloads already read in `namespace`: the namespace's autoscalers and the
    /// deployed release records of the workloads' releases (no backups). For `preflight`, which
    /// reads the live objects of its manifests itself (as JSON, in the manifests' versions, and
    /// those not created yet as absent).
    pub async fn around(client: &Client, namespace: &str, mut workloads: Vec<Workload>) -> Result<Self> {
        let scope = NamespaceScope::Namespace(namespace.to_string());
        let (hpas, scaled_objects) =
            futures::try_join!(kubeio::list_hpas(client, &scope), kubeio::list_scaled_objects(client, &scope))?;
        workloads.sort_by(|a, b| (&a.kind.kind, a.name()).cmp(&(&b.kind.kind, b.name())));
        let releases: BTreeSet<ReleaseKey> = workloads.iter().filter_map(helm::release_of).collect();
        let helm_records = kubeio::helm_records(client, &releases, false).await;
        let argocd_applications = argocd_applications_of(client, &workloads).await?;
        Ok(Self {
            scope,
            workloads,
            hpas,
            keda_installed: scaled_objects.is_some(),
            scaled_objects: scaled_objects.unwrap_or_default(),
            helm_records,
            backups: BTreeMap::new(),
            argocd_applications,
            warnings: Vec::new(),
        })
    }

    /// The analysis of every workload, sorted by namespace, kind and name; pure.
    /// `handover_managers` are extra managers to treat as handover owners.
    pub fn assess(&self, handover_managers: &[String]) -> Vec<Assessment> {
        self.analysis(handover_managers).assessments().collect()
    }

    /// As [`Inventory::assess`], dropping each workload once it is analysed (the inventory comes
    /// back without them), so a large scope is not held twice, as objects and as assessments.
    pub fn into_assessments(mut self, handover_managers: &[String]) -> (Vec<Assessment>, Self) {
        let workloads = std::mem::take(&mut self.workloads);
        let analysis = self.analysis(handover_managers);
        let assessments = workloads.into_iter().map(|w| analysis.of(&w)).collect();
        (assessments, self)
    }

    /// The analysis of the workloads one at a time, for a report written as it is made.
    pub fn analysis<'a>(&'a self, handover_managers: &'a [String]) -> Analysis<'a> {
        Analysis { inventory: self, index: AutoscalerIndex::new(&self.hpas, &self.scaled_objects), handover_managers }
    }
}

/// Reads the inventory the query asks for, waiting out a short API server outage (a read
/// changes nothing, so it is safe to repeat): what every verb reads the cluster through.
pub async fn read(client: &Client, query: &Query<'_>) -> Result<Inventory> {
    crate::retry::while_unreachable(|| Inventory::collect(client, query)).await
}

/// The assessment of every workload the query asks for, as [`read`] reads them.
pub async fn assessed(client: &Client, query: &Query<'_>) -> Result<Vec<Assessment>> {
    Ok(read(client, query).await?.into_assessments(&[]).0)
}

/// The analysis of an inventory's workloads, each assessed when asked for; pure.
pub struct Analysis<'a> {
    inventory: &'a Inventory,
    index: AutoscalerIndex<'a>,
    handover_managers: &'a [String],
}

impl Analysis<'_> {
    /// The assessment of every workload, made as the iterator is advanced, in report order
    /// (the workloads are sorted by namespace, kind and name when read).
    pub fn assessments(&self) -> impl Iterator<Item = Assessment> + '_ {
        self.inventory.workloads.iter().map(|w| self.of(w))
    }

    fn of(&self, w: &Workload) -> Assessment {
        // The analysis of one workload sees its own autoscalers only, found by name.
        let (hpas, scaled_objects) = self.index.of(w);
        let cluster = Cluster {
            hpas: &hpas,
            scaled_objects: &scaled_objects,
            helm_records: Some(&self.inventory.helm_records),
            handover_managers: self.handover_managers,
            argocd_applications: &self.inventory.argocd_applications,
        };
        let mut assessment = core::analyze(w, &cluster);
        advise_argocd_pause(&mut assessment);
        let stripped = w.metadata.uid.as_ref().and_then(|uid| self.inventory.backups.get(uid));
        if let Some((backup, path)) = stripped
            && !assessment.hazards.is_empty()
        {
            assessment.warnings.push(reclaimed_warning(&assessment, backup, path));
        }
        if let Some(warning) = self_healing_application(&assessment).map(argocd::Application::self_heal_warning) {
            assessment.warnings.push(warning);
        }
        assessment
    }
}

/// The Argo CD Application that syncs the workload with selfHeal, when Argo CD sends its
/// replicas (it owns them, or its last-applied annotation sets them: right after the HPA's
/// scale the `/scale` writer owns the field, and selfHeal reverts it all the same) and an
/// autoscaler targets it: measured, selfHeal then reverts every scale.
fn self_healing_application(assessment: &Assessment) -> Option<&argocd::Application> {
    let argo_owns = assessment.replica_owners.iter().any(|o| o.mechanism == Mechanism::ArgoCd);
    let argo_sends = argo_owns || assessment.hazards.iter().any(|h| h.mechanism == Mechanism::ArgoCd);
    if !argo_sends || assessment.autoscalers.is_empty() {
        return None;
    }
    assessment.deploy.argocd_application.as_ref().filter(|a| a.self_heal)
}

/// A strip of what Argo CD owns, while its Application syncs automatically, is taken back by
/// the next sync of a commit that still sets replicas: `check`'s next command pauses it too.
fn advise_argocd_pause(assessment: &mut Assessment) {
    let argo_hazard = assessment.hazards.iter().any(|h| h.mechanism == Mechanism::ArgoCd);
    let automated = assessment.deploy.argocd_application.as_ref().is_some_and(|a| a.automated);
    if assessment.verdict == Verdict::StripNeeded && argo_hazard && automated && !assessment.next.contains("--pause") {
        assessment.next.push_str(" --pause");
    }
}

/// Argo CD's Applications, listed only when one of `workloads` carries Argo CD's tracking id.
async fn argocd_applications_of(client: &Client, workloads: &[Workload]) -> Result<Vec<argocd::Application>> {
    if !workloads.iter().any(|w| w.annotation(argocd::TRACKING_ANNOTATION).is_some()) {
        return Ok(Vec::new());
    }
    Ok(kubeio::list_argocd_applications(client).await?.unwrap_or_default())
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
        .buffered(kubeio::IN_FLIGHT)
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

/// The kinds listed without waiting for the autoscalers: Deployments, what nearly every
/// autoscaler targets (a ScaledObject without a kind does), and StatefulSets with
/// `all_workloads`. If no autoscaler targets a Deployment, the Deployments listed go unused.
fn early_kinds(all_workloads: bool) -> Vec<WorkloadKind> {
    let mut kinds = vec![WorkloadKind::deployment()];
    if all_workloads {
        kinds.push(WorkloadKind::stateful_set());
    }
    kinds
}

/// One paginated LIST per kind, the kinds at once.
async fn list_kinds(client: &Client, query: &Query<'_>, kinds: &[WorkloadKind]) -> Result<Vec<Workload>> {
    let lists = futures::future::try_join_all(
        kinds.iter().map(|kind| kubeio::list_workloads(client, kind, query.scope, query.selector)),
    )
    .await?;
    Ok(lists.into_iter().flatten().collect())
}

/// Without targets, after the autoscalers: every other kind an autoscaler points at.
async fn list_late_kinds(
    client: &Client,
    query: &Query<'_>,
    hpas: &[Hpa],
    scaled_objects: &[ScaledObject],
    listed: &[WorkloadKind],
) -> Result<Vec<Workload>> {
    let mut kinds: Vec<WorkloadKind> = Vec::new();
    for (api_version, kind) in autoscaler_target_types(hpas, scaled_objects) {
        if let Some(resolved) = resolve_target_type(client, &api_version, &kind).await?
            && !kinds.contains(&resolved)
            && !listed.contains(&resolved)
        {
            kinds.push(resolved);
        }
    }
    list_kinds(client, query, &kinds).await
}

/// The autoscalers by the namespace and name of what they point at (and KEDA's HPAs by their
/// own name), so that matching workloads to autoscalers costs one lookup per workload instead
/// of a scan of every autoscaler in scope.
struct AutoscalerIndex<'a> {
    hpas: &'a [Hpa],
    scaled_objects: &'a [ScaledObject],
    hpas_by_target: HashMap<(&'a str, &'a str), Vec<&'a Hpa>>,
    hpas_by_name: HashMap<(&'a str, &'a str), &'a Hpa>,
    scaled_objects_by_target: HashMap<(&'a str, &'a str), Vec<&'a ScaledObject>>,
}

impl<'a> AutoscalerIndex<'a> {
    fn new(hpas: &'a [Hpa], scaled_objects: &'a [ScaledObject]) -> Self {
        let mut index = Self {
            hpas,
            scaled_objects,
            hpas_by_target: HashMap::new(),
            hpas_by_name: HashMap::new(),
            scaled_objects_by_target: HashMap::new(),
        };
        for hpa in hpas {
            let namespace = hpa.namespace.as_str();
            index.hpas_by_target.entry((namespace, hpa.target.name.as_str())).or_default().push(hpa);
            index.hpas_by_name.insert((namespace, hpa.name()), hpa);
        }
        for scaled_object in scaled_objects {
            let key = (scaled_object.namespace.as_str(), scaled_object.target.name.as_str());
            index.scaled_objects_by_target.entry(key).or_default().push(scaled_object);
        }
        index
    }

    fn hpas_targeting<'s>(&'s self, w: &'s Workload) -> impl Iterator<Item = &'a Hpa> + 's {
        let found = self.hpas_by_target.get(&(w.namespace(), w.name()));
        found.into_iter().flatten().copied().filter(|h| autoscaler::hpa_targets(h, w))
    }

    fn scaled_objects_targeting<'s>(&'s self, w: &'s Workload) -> impl Iterator<Item = &'a ScaledObject> + 's {
        let found = self.scaled_objects_by_target.get(&(w.namespace(), w.name()));
        found.into_iter().flatten().copied().filter(|so| autoscaler::scaled_object_targets(so, w))
    }

    /// Whether an HPA or ScaledObject points at the workload.
    fn targets(&self, w: &Workload) -> bool {
        self.hpas_targeting(w).next().is_some() || self.scaled_objects_targeting(w).next().is_some()
    }

    /// What the analysis of `w` reads: the autoscalers pointing at it, and the HPAs its
    /// ScaledObjects drive (in the order the server listed them).
    fn of(&self, w: &Workload) -> (Vec<Hpa>, Vec<ScaledObject>) {
        let scaled_objects: Vec<ScaledObject> = self.scaled_objects_targeting(w).cloned().collect();
        let mut hpas: Vec<&Hpa> = self.hpas_targeting(w).collect();
        for scaled_object in &scaled_objects {
            if let Some(hpa) = self.hpas_by_name.get(&(w.namespace(), scaled_object.hpa_name()))
                && !hpas.iter().any(|h| std::ptr::eq(*h, *hpa))
            {
                hpas.push(hpa);
            }
        }
        (hpas.into_iter().cloned().collect(), scaled_objects)
    }
}

/// Autoscalers whose target is not among the listed workloads: they scale nothing.
fn orphaned_autoscalers(index: &AutoscalerIndex<'_>, workloads: &[Workload]) -> Vec<String> {
    let mut scaled_objects_found = HashSet::new();
    let mut hpas_found = HashSet::new();
    for workload in workloads {
        scaled_objects_found.extend(index.scaled_objects_targeting(workload).map(|so| so as *const ScaledObject));
        hpas_found.extend(index.hpas_targeting(workload).map(|h| h as *const Hpa));
    }
    let mut found = Vec::new();
    let unmatched = |so: &&ScaledObject| !scaled_objects_found.contains(&(*so as *const ScaledObject));
    for scaled_object in index.scaled_objects.iter().filter(unmatched) {
        found.push(format!(
            "scaledobject/{} in {} targets {}/{}, which does not exist",
            scaled_object.name(),
            scaled_object.namespace,
            scaled_object.target.kind,
            scaled_object.target.name
        ));
    }
    for hpa in index.hpas.iter().filter(|h| h.scaled_object_owner.is_none()) {
        if !hpas_found.contains(&(hpa as *const Hpa)) {
            let target = &hpa.target;
            let state = &hpa.state;
            let able = state.conditions.iter().find(|c| c.type_ == "AbleToScale" && c.status == "False");
            found.push(format!(
                "hpa/{} in {} targets {}/{}, which does not exist{}",
                state.name,
                hpa.namespace,
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
fn autoscaler_target_types(hpas: &[Hpa], scaled_objects: &[ScaledObject]) -> BTreeSet<(String, String)> {
    let from_hpas = hpas.iter().map(|h| (h.target.api_version.clone().unwrap_or_default(), h.target.kind.clone()));
    let from_keda = scaled_objects.iter().map(|so| (so.target.api_version.clone(), so.target.kind.clone()));
    from_hpas.chain(from_keda).collect()
}

/// Resolves an autoscaler's target type; `None` when the type does not exist (the autoscaler
/// then targets nothing, which its own conditions report).
pub async fn resolve_target_type(client: &Client, api_version: &str, kind: &str) -> Result<Option<WorkloadKind>> {
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
