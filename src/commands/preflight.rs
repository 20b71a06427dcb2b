//! `preflight`: what the next deploy of these manifests does to every workload's replicas,
//! before it runs, and the order of steps that keeps the count.
//!
//! Server-side appliers are asked of the API server itself: a dry-run apply of the manifest as
//! the tool's field manager, forced as the tool forces, so ownership and defaulting are the
//! server's own. Three-way merges (client-side kubectl and Argo CD, Helm 3) are computed from
//! the configuration they merge with, and the replicas they send are dry-run too, so defaulting
//! and admission (the guard) are the server's. Nothing is persisted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use comfy_table::{Cell, Table, presets};
use console::Style;
use futures::{StreamExt, TryStreamExt};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::{OutputFormat, PreflightArgs};
use crate::commands::flags::{ScopeFlags, not_honoured};
use crate::core::autoscaler::{self, Hpa, ScaledObject};
use crate::core::guard;
use crate::core::helm::{self, ReleaseKey, ReleaseRecord, ReleaseRecords};
use crate::core::manifest::{self, Document};
use crate::core::preflight::{
    self as logic, Applier, Apply, AutoscalerView, Forecast, Sends, Step, Takeover, after_server_side,
    after_server_side_locally,
};
use crate::core::tools::{self, Tool, Traces, flux};
use crate::core::workload::{Workload, WorkloadKind};
use crate::error::{Error, ExitStatus, Result, api_code};
use crate::kubeio::{self, NamespaceScope};
use crate::output::Printer;

/// Reads and dry runs at once: as for `check`'s named targets, well under the API server's
/// `--max-requests-inflight` and its priority-and-fairness share for one client.
const REQUESTS_IN_FLIGHT: usize = 16;

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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreflightReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub summary: Summary,
    pub workloads: Vec<Prediction>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub total: usize,
    pub drops: usize,
    pub keeps: usize,
    pub refused: usize,
    pub pinned: usize,
    pub new: usize,
    pub unknown: usize,
    /// Objects of the manifests `-l` left out, as `kubectl apply -l` would not apply them.
    pub left_out: usize,
}

/// What the deploy does to one workload of the manifests.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prediction {
    pub namespace: String,
    pub kind: String,
    pub api_version: String,
    pub name: String,
    /// The file (and document) the manifest came from.
    pub source: String,
    /// The tool that applies it (`--as`, or told from the live object).
    pub tool: Option<String>,
    /// What the tool was told from.
    pub evidence: Option<String>,
    /// How the tool writes the object.
    pub apply: Option<String>,
    /// `server dry run`, or why the prediction had to be made locally.
    pub computed_by: Option<String>,
    pub current: Option<i64>,
    pub predicted: Option<i64>,
    pub outcome: Forecast,
    pub cause: String,
    pub autoscalers: Vec<AutoscalerView>,
    /// In order: what keeps the count (only for `drops`), by handing replicas over first.
    pub steps: Vec<Step>,
    /// In order: the short path, on a cluster that serves MutatingAdmissionPolicy, for an
    /// applier whose pinned write hands replicas over by itself (empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pin_steps: Vec<Step>,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub target: String,
}

/// One workload of the manifests, resolved and read.
struct Item {
    document: Document,
    kind: WorkloadKind,
    resource: ApiResource,
    namespace: String,
    live: Option<Value>,
}

/// The live autoscalers and release records of the manifests' namespaces.
struct Context {
    hpas: BTreeMap<String, Vec<Hpa>>,
    scaled_objects: BTreeMap<String, Vec<ScaledObject>>,
    helm_records: ReleaseRecords,
    requested: Option<Tool>,
    documents: Vec<Document>,
    default_namespace: String,
    /// The cluster serves MutatingAdmissionPolicy, which `guard on --pin` runs on.
    pin_served: bool,
}

/// What `preflight` was asked for, checked before connecting: the manifests read, those `-l`
/// selects kept (as `kubectl apply -l` applies only those), and how to report.
#[derive(Debug)]
pub struct Options {
    documents: Vec<Document>,
    /// The selector and how many objects of the manifests it left out.
    left_out: Option<(String, usize)>,
    requested: Option<Tool>,
    output: OutputFormat,
}

impl Options {
    pub fn resolve(args: PreflightArgs, flags: &ScopeFlags) -> Result<Self> {
        if flags.all_namespaces {
            return Err(not_honoured(
                "preflight",
                "-A",
                "it takes namespaces from the manifests and -n, as kubectl apply does: drop -A",
            ));
        }
        let mut documents = read_inputs(&args.filenames, args.recursive)?;
        let left_out = flags.selector.as_ref().map(|selector| {
            let before = documents.len();
            documents.retain(|document| selector.matches_object(&document.object));
            (selector.to_string(), before - documents.len())
        });
        Ok(Self { documents, left_out, requested: args.as_tool.as_deref().map(Tool::parse), output: args.output })
    }
}

/// Predicts the deploy of the options' manifests; `default_namespace` is where objects without
/// a namespace land (`-n`, else the context's).
pub async fn run(client: &Client, default_namespace: &str, options: &Options, printer: &Printer) -> Result<ExitStatus> {
    let mut report = report(client, options.documents.clone(), default_namespace, options.requested.clone()).await?;
    report.summary.left_out = options.left_out.as_ref().map_or(0, |(_, count)| *count);
    match options.output {
        OutputFormat::Text => printer.data(&render_text(&report, printer))?,
        format => printer.document(format, &report)?,
    }
    if report.workloads.is_empty() {
        match &options.left_out {
            Some((selector, _)) => printer.note(&format!(
                "No Deployment, StatefulSet or other workload with /scale among the objects -l {selector} selects."
            )),
            None => printer.note("No Deployment, StatefulSet or other workload with /scale in the manifests."),
        }
    }
    let s = &report.summary;
    Ok(if s.drops > 0 {
        ExitStatus::ActionNeeded
    } else if s.unknown > 0 {
        ExitStatus::Inconclusive
    } else {
        ExitStatus::Success
    })
}

/// The prediction for every workload of `documents`.
pub async fn report(
    client: &Client,
    documents: Vec<Document>,
    default_namespace: &str,
    requested: Option<Tool>,
) -> Result<PreflightReport> {
    let items = resolve_items(client, &documents, default_namespace).await?;
    let items = read_live(client, items).await?;
    let context = read_context(client, &items, documents, default_namespace, requested).await?;
    let workloads: Vec<Prediction> = futures::stream::iter(&items)
        .map(|item| predict(client, item, &context))
        .buffered(REQUESTS_IN_FLIGHT)
        .try_collect()
        .await?;
    let count = |outcome: Forecast| workloads.iter().filter(|w| w.outcome == outcome).count();
    let summary = Summary {
        total: workloads.len(),
        drops: count(Forecast::Drops),
        keeps: count(Forecast::Keeps),
        refused: count(Forecast::Refused),
        pinned: count(Forecast::Pinned),
        new: count(Forecast::New),
        unknown: count(Forecast::Unknown),
        left_out: 0,
    };
    Ok(PreflightReport { api_version: super::check::REPORT_API_VERSION, kind: "PreflightReport", summary, workloads })
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
async fn resolve_items(client: &Client, documents: &[Document], default_namespace: &str) -> Result<Vec<Item>> {
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
        });
    }
    Ok(items)
}

async fn read_live(client: &Client, items: Vec<Item>) -> Result<Vec<Item>> {
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
            Ok(item)
        })
        .buffered(REQUESTS_IN_FLIGHT)
        .try_collect()
        .await
}

async fn read_context(
    client: &Client,
    items: &[Item],
    documents: Vec<Document>,
    default_namespace: &str,
    requested: Option<Tool>,
) -> Result<Context> {
    let namespaces: BTreeSet<&str> = items.iter().filter(|i| i.live.is_some()).map(|i| i.namespace.as_str()).collect();
    let mut hpas = BTreeMap::new();
    let mut scaled_objects = BTreeMap::new();
    for namespace in namespaces {
        let scope = NamespaceScope::Namespace(namespace.to_string());
        let (listed_hpas, listed_scaled_objects) =
            futures::try_join!(kubeio::list_hpas(client, &scope), kubeio::list_scaled_objects(client, &scope))?;
        hpas.insert(namespace.to_string(), listed_hpas);
        scaled_objects.insert(namespace.to_string(), listed_scaled_objects.unwrap_or_default());
    }
    let releases: BTreeSet<ReleaseKey> =
        items.iter().filter_map(|i| i.live.as_ref()).filter_map(helm::release_of).collect();
    let helm_records = kubeio::helm_records(client, &releases, false).await;
    let pin_served = super::guard::pin_served(client).await?;
    Ok(Context {
        hpas,
        scaled_objects,
        helm_records,
        requested,
        documents,
        default_namespace: default_namespace.into(),
        pin_served,
    })
}

impl Context {
    fn helm_record(&self, live: &Value) -> std::result::Result<Option<&ReleaseRecord>, String> {
        match helm::release_of(live) {
            Some(release) => self.helm_records.find(&release),
            None => Ok(None),
        }
    }

    /// The autoscalers of the workload: those the manifests bring and the live ones.
    fn autoscalers(&self, item: &Item, workload: Option<&Workload>) -> Vec<AutoscalerView> {
        let identity =
            (item.namespace.as_str(), item.kind.group.as_str(), item.kind.kind.as_str(), item.document.name());
        let from_manifests = logic::manifest_autoscalers(&self.documents, &self.default_namespace, identity);
        let live = workload
            .map(|workload| {
                let hpas = self.hpas.get(&item.namespace).map(Vec::as_slice).unwrap_or_default();
                let scaled_objects = self.scaled_objects.get(&item.namespace).map(Vec::as_slice).unwrap_or_default();
                autoscaler::autoscalers_for(workload, hpas, scaled_objects)
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

/// The replicas right after the apply, and what the prediction rests on.
struct After {
    predicted: Option<i64>,
    /// The server refused the write; the message says why.
    refused: Option<String>,
    /// `guard on --pin` kept the count of the dry run.
    pinned: bool,
    computed_by: String,
    why: String,
}

async fn predict(client: &Client, item: &Item, context: &Context) -> Result<Prediction> {
    let manifest_replicas = item.document.object.pointer("/spec/replicas").and_then(Value::as_i64);
    let mut prediction = unpredicted(item);
    let Some(live) = &item.live else {
        prediction.autoscalers = context.autoscalers(item, None);
        prediction.outcome = Forecast::New;
        prediction.predicted = Some(manifest_replicas.unwrap_or(logic::DEFAULT_REPLICAS));
        prediction.cause = "not live yet: the deploy creates it".into();
        return Ok(prediction);
    };
    let workload = Workload::from_object(item.kind.clone(), live.clone())
        .map_err(|e| Error::Json { context: format!("{}/{}", item.namespace, prediction.target), source: e })?;
    prediction.current = workload.replicas.spec;
    prediction.autoscalers = context.autoscalers(item, Some(&workload));
    let applier = tools::detect(context.requested.as_ref(), live)
        .map_err(logic::Undetermined::from)
        .and_then(|(tool, evidence)| logic::applier(tool, evidence, live, context.helm_record(live)));
    let applier = match applier {
        Ok(applier) => applier,
        Err(why) => {
            prediction.cause = format!("cannot tell which tool applies it: {why}");
            return Ok(prediction);
        }
    };
    prediction.tool = Some(applier.tool.label());
    prediction.evidence = Some(applier.evidence.clone());
    prediction.apply = Some(applier.apply.describe());
    let after = match (applier.tool == Tool::Flux).then(|| flux::skips(&item.document.object, live)).flatten() {
        Some(skip) => After {
            predicted: prediction.current,
            refused: None,
            pinned: false,
            computed_by: "locally".into(),
            why: format!("{skip}, so replicas stays"),
        },
        None => after_apply(client, item, live, &applier, context).await?,
    };
    settle(&mut prediction, after);
    if prediction.outcome == Forecast::Drops {
        prediction.steps = logic::safe_steps(
            &applier.tool,
            &item.namespace,
            &prediction.target,
            manifest_replicas.is_none(),
            &prediction.autoscalers,
        );
        // Three-way mergers keep owning replicas after a pinned deploy (a strip is still due).
        let hands_over = matches!(applier.apply, Apply::ServerSide { .. });
        if context.pin_served && hands_over && manifest_replicas.is_none() {
            let target = &prediction.target;
            prediction.pin_steps =
                logic::pin_steps(&applier.tool, &item.namespace, target, &prediction.autoscalers, prediction.current)
                    .unwrap_or_default();
        }
    }
    prediction.warnings = autoscaler_warnings(&prediction);
    Ok(prediction)
}

/// The prediction of an item before anything is known of it: its outcome unknown.
fn unpredicted(item: &Item) -> Prediction {
    Prediction {
        namespace: item.namespace.clone(),
        kind: item.kind.kind.clone(),
        api_version: item.document.api_version().to_string(),
        name: item.document.name().to_string(),
        source: item.document.source.clone(),
        tool: None,
        evidence: None,
        apply: None,
        computed_by: None,
        current: None,
        predicted: None,
        outcome: Forecast::Unknown,
        cause: String::new(),
        autoscalers: Vec::new(),
        steps: Vec::new(),
        pin_steps: Vec::new(),
        warnings: Vec::new(),
        target: format!("{}/{}", item.kind.command_name(), item.document.name()),
    }
}

/// Records the replicas after the apply, its outcome against the current count, and why.
fn settle(prediction: &mut Prediction, after: After) {
    prediction.computed_by = Some(after.computed_by);
    prediction.predicted = after.predicted;
    prediction.outcome = match (&after.refused, after.predicted, prediction.current) {
        (Some(_), _, _) => Forecast::Refused,
        _ if after.pinned => Forecast::Pinned,
        (None, Some(after), Some(before)) if after < before => Forecast::Drops,
        (None, None, Some(_)) => Forecast::Drops,
        _ => Forecast::Keeps,
    };
    prediction.cause = match after.refused {
        Some(message) => format!("the API server refuses the write, so the deploy fails and replicas stays: {message}"),
        None => after.why,
    };
}

fn autoscaler_warnings(prediction: &Prediction) -> Vec<String> {
    let mut warnings = Vec::new();
    let drops = prediction.outcome == Forecast::Drops;
    for a in &prediction.autoscalers {
        let min = a.min_replicas.map(|m| format!(" (min {m})")).unwrap_or_default();
        if a.arrives() && drops {
            warnings.push(format!("{}{min} arrives with this deploy: it cannot act before the drop", a.name));
        } else if let Some(blocked) = a.blocked.as_ref().filter(|_| drops) {
            warnings.push(format!("{}{min} cannot act: {blocked}", a.name));
        } else if a.in_charge && drops {
            warnings
                .push(format!("{}{min} is in charge: it scales back up only at its next sync, after the drop", a.name));
        }
        if a.min_replicas == Some(0) && a.name.starts_with("scaledobject/") {
            warnings.push(format!("{} has minReplicaCount 0: KEDA scales the workload to 0 when idle", a.name));
        }
    }
    if prediction.autoscalers.is_empty() && prediction.steps.iter().any(|s| matches!(s, Step::Run(_))) {
        warnings
            .push("no autoscaler targets it, live or in these manifests: after the hand-over nothing scales it".into());
    }
    warnings
}

async fn after_apply(
    client: &Client,
    item: &Item,
    live: &Value,
    applier: &Applier,
    context: &Context,
) -> Result<After> {
    let dry_run = DryRun {
        api: Api::namespaced_with(client.clone(), &item.namespace, &item.resource),
        item,
        live,
        current: live.pointer("/spec/replicas").and_then(Value::as_i64),
    };
    match &applier.apply {
        Apply::ServerSide { manager, force, takeover } => dry_run.server_side(manager, *force, takeover).await,
        Apply::ClientSide { .. } | Apply::HelmThreeWay { .. } => {
            dry_run.three_way(&applier.apply, context.helm_record(live).ok().flatten()).await
        }
    }
}

/// What the dry runs of one live workload's apply work with.
struct DryRun<'a> {
    api: Api<DynamicObject>,
    item: &'a Item,
    live: &'a Value,
    /// The live replicas.
    current: Option<i64>,
}

impl DryRun<'_> {
    /// A server-side apply: the manifest itself, dry-run as the tool's manager.
    async fn server_side(&self, manager: &str, force: bool, takeover: &Takeover) -> Result<After> {
        let mut body = self.item.document.object.clone();
        body["metadata"]["namespace"] = self.item.namespace.clone().into();
        let params =
            PatchParams { field_manager: Some(manager.to_string()), force, dry_run: true, ..Default::default() };
        let manifest = &self.item.document.object;
        let current = self.current;
        match answer(self.api.patch(self.item.document.name(), &params, &Patch::Apply(&body)).await)? {
            // Pinned writes are pinned again when a tool re-sends them (kubectl's migration of a
            // client-side owner, Flux's takeover): the count the dry run kept is the count after.
            Answer::Stored(response) if guard::pinned_by_the_write(self.live, &response) => Ok(pinned(&response)),
            Answer::Stored(response) => {
                let predicted = after_server_side(&response, manifest, manager, takeover);
                let why = server_side_why(&response, manifest, manager, predicted, current);
                Ok(After { predicted, refused: None, pinned: false, computed_by: "server dry run".into(), why })
            }
            Answer::Refused(message) => Ok(After {
                predicted: current,
                refused: Some(message),
                pinned: false,
                computed_by: "server dry run".into(),
                why: String::new(),
            }),
            Answer::Forbidden(message) => {
                let predicted = after_server_side_locally(self.live, manifest, manager, takeover);
                let why = server_side_why(self.live, manifest, manager, predicted, current);
                Ok(After { predicted, refused: None, pinned: false, computed_by: locally(&message), why })
            }
        }
    }

    /// A three-way merge (client-side apply, Helm 3): what it sends for replicas, computed
    /// here, then dry-run.
    async fn three_way(&self, apply: &Apply, record: Option<&ReleaseRecord>) -> Result<After> {
        let previous = logic::previous_configuration(apply, self.live, record);
        let sends = logic::three_way_sends(previous.as_ref(), &self.item.document.object);
        let what = match apply {
            Apply::HelmThreeWay { revision, .. } => format!("the deployed release (revision {revision})"),
            _ => "the last-applied annotation".to_string(),
        };
        let value = match &sends {
            Sends::Nothing => {
                let why = format!("neither {what} nor the manifest sets replicas, so the merge leaves it alone");
                return Ok(After {
                    predicted: self.current,
                    refused: None,
                    pinned: false,
                    computed_by: "locally".into(),
                    why,
                });
            }
            Sends::Value(value) => value.clone(),
            Sends::Null => Value::Null,
        };
        let why = match sends {
            Sends::Null => format!(
                "{what} sets replicas and the manifest does not: the three-way merge sends replicas: null, which the server defaults"
            ),
            _ => format!("the manifest sets replicas: {value}"),
        };
        let field_manager = match apply {
            Apply::ClientSide { manager } | Apply::ServerSide { manager, .. } => manager.clone(),
            Apply::HelmThreeWay { .. } => "helm".to_string(),
        };
        self.send_replicas(field_manager, value, why).await
    }

    /// Dry-runs the merge patch of replicas a three-way merge sends.
    async fn send_replicas(&self, field_manager: String, value: Value, why: String) -> Result<After> {
        let params = PatchParams { field_manager: Some(field_manager), dry_run: true, ..Default::default() };
        let patch = Patch::Merge(json!({"spec": {"replicas": value}}));
        match answer(self.api.patch(self.item.document.name(), &params, &patch).await)? {
            Answer::Stored(response) if guard::pinned_by_the_write(self.live, &response) => Ok(pinned(&response)),
            Answer::Stored(response) => Ok(After {
                predicted: response.pointer("/spec/replicas").and_then(Value::as_i64),
                refused: None,
                pinned: false,
                computed_by: "server dry run".into(),
                why: format!(
                    "{why} (to {})",
                    crate::output::count(response.pointer("/spec/replicas").and_then(Value::as_i64))
                ),
            }),
            Answer::Refused(message) => Ok(After {
                predicted: self.current,
                refused: Some(message),
                pinned: false,
                computed_by: "server dry run".into(),
                why,
            }),
            Answer::Forbidden(message) => Ok(After {
                predicted: value.as_i64().or(Some(logic::DEFAULT_REPLICAS)),
                refused: None,
                pinned: false,
                computed_by: locally(&message),
                why,
            }),
        }
    }
}

/// A dry run `guard on --pin` rewrote: the count it kept.
fn pinned(response: &Value) -> After {
    let kept = response.pointer("/spec/replicas").and_then(Value::as_i64);
    After {
        predicted: kept,
        refused: None,
        pinned: true,
        computed_by: "server dry run".into(),
        why: format!(
            "the write would lower replicas below the guard's floor, and guard on --pin keeps the live count ({})",
            crate::output::count(kept)
        ),
    }
}

fn locally(message: &str) -> String {
    format!(
        "locally: the server's dry run was refused ({message}); it needs patch on the workloads, see deploy/rbac/preflight.yaml"
    )
}

fn server_side_why(
    object: &Value,
    manifest: &Value,
    manager: &str,
    predicted: Option<i64>,
    current: Option<i64>,
) -> String {
    if let Some(value) = manifest.pointer("/spec/replicas").filter(|v| !v.is_null()) {
        return format!("the manifest sets replicas: {value}");
    }
    if predicted != current {
        return format!(
            "the manifest leaves replicas out and {manager} would be its only owner, so the server removes the field and defaults it to {}",
            crate::output::count(predicted)
        );
    }
    let others: Vec<String> = object
        .managed_fields()
        .iter()
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .is_some_and(|f| crate::core::ownership::fields_contain(&f.0, &crate::core::ownership::REPLICAS_PATH))
        })
        .filter_map(|e| e.manager.clone())
        .filter(|m| m != manager)
        .collect();
    if others.is_empty() {
        format!("the manifest leaves replicas out and {manager} does not own it, so the apply leaves it alone")
    } else {
        format!("the manifest leaves replicas out and {} also owns it, so the apply leaves it", others.join(", "))
    }
}

/// How the server answered a dry run.
enum Answer {
    Stored(Value),
    /// Refused on its merits (conflict, invalid, an admission policy): the real deploy fails too.
    Refused(String),
    /// RBAC does not allow the dry run.
    Forbidden(String),
}

fn answer(result: std::result::Result<DynamicObject, kube::Error>) -> Result<Answer> {
    match result {
        Ok(object) => Ok(Answer::Stored(serde_json::to_value(object).unwrap_or(Value::Null))),
        Err(kube::Error::Api(status)) => {
            let message = status.message.clone();
            // Admission refusals are 403 too; RBAC's say "cannot patch resource".
            let rbac = status.code == 403 && !message.contains("denied request") && !message.contains("admission");
            match status.code {
                403 if rbac => Ok(Answer::Forbidden(message)),
                400 | 403 | 409 | 422 => Ok(Answer::Refused(message)),
                _ => Err(Error::api("server-side dry run", kube::Error::Api(status))),
            }
        }
        Err(other) => Err(Error::api("server-side dry run", other)),
    }
}

fn outcome_style(outcome: Forecast) -> Style {
    match outcome {
        Forecast::Keeps | Forecast::New | Forecast::Pinned => Style::new().green(),
        Forecast::Refused | Forecast::Unknown => Style::new().yellow().bold(),
        Forecast::Drops => Style::new().red().bold(),
    }
}

/// The human report: a table, then for every workload that does not simply keep its count the
/// cause, the autoscalers' part and the steps in order.
pub fn render_text(report: &PreflightReport, printer: &Printer) -> String {
    if report.workloads.is_empty() {
        return String::new();
    }
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(["NAMESPACE", "WORKLOAD", "TOOL", "REPLICAS", "OUTCOME"]);
    for p in &report.workloads {
        table.add_row([
            Cell::new(&p.namespace),
            Cell::new(&p.target),
            Cell::new(p.tool.as_deref().unwrap_or("-")),
            Cell::new(format!("{} -> {}", crate::output::count(p.current), crate::output::count(p.predicted))),
            Cell::new(printer.paint(outcome_style(p.outcome), p.outcome.as_str())),
        ]);
    }
    let mut out = String::new();
    for line in table.to_string().lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for p in &report.workloads {
        if matches!(p.outcome, Forecast::Keeps | Forecast::New) && p.warnings.is_empty() {
            continue;
        }
        out.push('\n');
        let heading = format!("{}/{}: {}", p.namespace, p.target, p.outcome.as_str());
        out.push_str(&printer.paint(outcome_style(p.outcome), &heading));
        out.push('\n');
        if let Some(apply) = &p.apply {
            out.push_str(&format!(
                "  {} will {apply} ({})\n",
                p.tool.as_deref().unwrap_or("-"),
                p.evidence.as_deref().unwrap_or("-")
            ));
        }
        out.push_str(&format!("  {}\n", p.cause));
        for warning in &p.warnings {
            out.push_str(&format!("  {} {warning}\n", printer.paint(Style::new().yellow(), "warning:")));
        }
        let paths = [
            (&p.pin_steps, "to keep the count, the short path (this cluster serves guard on --pin), in order:"),
            (
                &p.steps,
                if p.pin_steps.is_empty() {
                    "to keep the count, in order:"
                } else {
                    "or, handing replicas over first:"
                },
            ),
        ];
        for (steps, heading) in paths.into_iter().filter(|(steps, _)| !steps.is_empty()) {
            out.push_str(&format!("  {heading}\n"));
            for (n, step) in steps.iter().enumerate() {
                let text = match step {
                    Step::Run(command) => printer.paint(Style::new().bold(), command),
                    Step::Deploy(what) => format!("then: {what}"),
                };
                out.push_str(&format!("    {}. {text}\n", n + 1));
            }
        }
    }
    let s = &report.summary;
    let left_out = if s.left_out > 0 { format!("; {} object(s) left out by -l", s.left_out) } else { String::new() };
    out.push_str(&format!(
        "\n{} workload(s): {} drop, {} keep, {} refused, {}{} new, {} unknown{left_out}\n",
        s.total,
        s.drops,
        s.keeps,
        s.refused,
        if s.pinned > 0 { format!("{} pinned, ", s.pinned) } else { String::new() },
        s.new,
        s.unknown
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::selector::LabelSelector;

    const MANIFESTS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web, tier: front}}
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {app: web}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, labels: {app: api}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
";

    fn resolved(selector: Option<&str>, all_namespaces: bool) -> Result<Options> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("next.yaml");
        std::fs::write(&file, MANIFESTS).unwrap();
        let args = PreflightArgs { filenames: vec![file], recursive: false, as_tool: None, output: OutputFormat::Json };
        let flags = ScopeFlags {
            all_namespaces,
            selector: selector.map(|s| LabelSelector::parse(s).unwrap()),
            ..Default::default()
        };
        Options::resolve(args, &flags)
    }

    fn kept(options: &Options) -> Vec<String> {
        options.documents.iter().map(|d| format!("{}/{}", d.kind(), d.name())).collect()
    }

    #[test]
    fn selector_keeps_the_objects_kubectl_apply_l_would_apply() {
        let options = resolved(Some("app=web"), false).unwrap();
        assert_eq!(kept(&options), ["Deployment/web", "Service/web"]);
        assert_eq!(options.left_out, Some(("app=web".to_string(), 2)));

        let options = resolved(Some("app in (web,api),tier!=front"), false).unwrap();
        assert_eq!(kept(&options), ["Service/web", "Deployment/api"]);
        let options = resolved(Some("!app"), false).unwrap();
        assert_eq!(kept(&options), ["HorizontalPodAutoscaler/web"], "an object without labels has none");

        let options = resolved(None, false).unwrap();
        assert_eq!((options.documents.len(), options.left_out), (4, None));
    }

    #[test]
    fn all_namespaces_is_refused_before_reading_anything() {
        let error = resolved(None, true).unwrap_err();
        assert_eq!(error.exit_status(), ExitStatus::Usage);
        assert!(error.to_string().starts_with("preflight does not take -A: "), "{error}");
    }
}
