//! `guard`: a safety net inside the API server for the migration window. `guard on` installs
//! (once per cluster, versioned by name) a ValidatingAdmissionPolicy per guarded kind and its
//! two bindings, marks each target with its floor, and confirms with a server-side dry run
//! that a drop below the floor is really refused; `guard off` removes the mark (and the policy
//! objects once nothing is guarded); `guard status` lists what is guarded.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use comfy_table::{Table, presets};
use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::OutputFormat;
use crate::commands::{check, parse_targets};
use crate::core::guard::{self, Entry, GuardedKind, Mark, Mode};
use crate::core::verdict::{Assessment, Verdict};
use crate::error::{Error, ExitStatus, Result, api_code};
use crate::kubeio::{self, NamespaceScope};
use crate::output::{Printer, count};

/// How long `guard on` waits for the API server to start refusing (its policy and param
/// informers pick new objects up asynchronously; measured at under a second on the test plane).
const ACTIVATION_TIMEOUT: Duration = Duration::from_secs(20);
const ACTIVATION_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
pub struct GuardArgs {
    #[command(subcommand)]
    pub action: GuardAction,
}

#[derive(Debug, Subcommand)]
pub enum GuardAction {
    /// Refuse, inside the API server, any write that drops a workload below its floor
    On(GuardOnArgs),
    /// Remove the guard from workloads (and the policy once nothing is guarded)
    Off(GuardOffArgs),
    /// List guarded workloads, their floors and modes, and the policies' state
    Status(GuardStatusArgs),
}

#[derive(Debug, Args)]
pub struct GuardOnArgs {
    /// Deployments or StatefulSets, as for `check`. Without TARGET, -l SELECTOR picks the
    /// workloads autoscalers target (all matching workloads with --floor)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Refuse writes below N replicas (default: the minReplicas of the autoscaler in charge)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=999_999_999))]
    pub floor: Option<i64>,

    /// Let the writes through and send every client a warning instead (a rehearsal)
    #[arg(long)]
    pub warn: bool,
}

#[derive(Debug, Args)]
pub struct GuardOffArgs {
    /// Guarded workloads, as for `check`; or -l SELECTOR
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Also delete the policies and bindings, even if other workloads are still marked
    #[arg(long)]
    pub uninstall: bool,
}

#[derive(Debug, Args)]
pub struct GuardStatusArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// `check`'s report of the targets (`all_workloads`: whether an autoscaler needs to target them).
async fn assessed(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    targets: &[crate::commands::Target],
    all_workloads: bool,
) -> Result<check::CheckReport> {
    let backup_dir = crate::backup::default_dir();
    let query = crate::inventory::Query { scope, selector, targets, all_workloads, backup_dir: &backup_dir };
    check::report(client, &query).await
}

pub async fn run(
    client: &Client,
    scope: &NamespaceScope,
    selector: Option<&str>,
    args: &GuardArgs,
    printer: &Printer,
) -> Result<ExitStatus> {
    match &args.action {
        GuardAction::On(on) => {
            let mode = if on.warn { Mode::Warn } else { Mode::Deny };
            let targets = parse_targets(&on.targets)?;
            if targets.is_empty() && selector.is_none() {
                return Err(Error::Usage("name the workloads to guard: TARGET... or -l SELECTOR".into()));
            }
            ensure_served(client).await?;
            let report = assessed(client, scope, selector, &targets, on.floor.is_some()).await?;
            if report.workloads.is_empty() {
                return Err(Error::Usage(format!("no workload matches {}", selector.unwrap_or_default())));
            }
            let guarded = protect(client, &report.workloads, on.floor, mode).await?;
            printer.data(&render_on(&guarded))?;
            Ok(ExitStatus::Success)
        }
        GuardAction::Off(off) => {
            let targets = parse_targets(&off.targets)?;
            if targets.is_empty() && selector.is_none() && !off.uninstall {
                return Err(Error::Usage(
                    "name the workloads to unguard: TARGET... or -l SELECTOR (or --uninstall to remove the policies)"
                        .into(),
                ));
            }
            let workloads = if targets.is_empty() && selector.is_none() {
                Vec::new()
            } else {
                assessed(client, scope, selector, &targets, true).await?.workloads
            };
            let lifted = lift(client, &workloads, off.uninstall).await?;
            printer.data(&render_off(&lifted))?;
            for warning in &lifted.warnings {
                printer.warn(warning);
            }
            Ok(ExitStatus::Success)
        }
        GuardAction::Status(status) => {
            let report = status_report(client, scope).await?;
            match status.output {
                OutputFormat::Text => printer.data(&render_status(&report))?,
                format => printer.document(format, &report)?,
            }
            Ok(if report.problems.is_empty() { ExitStatus::Success } else { ExitStatus::ActionNeeded })
        }
    }
}

/// One workload `guard on` marks.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Guarded {
    pub namespace: String,
    pub kind: GuardedKind,
    pub name: String,
    pub replicas: Option<i64>,
    pub floor: i64,
    pub mode: Mode,
    pub autoscaler: Option<String>,
    /// The mark before (restored if the guard does not become active).
    #[serde(skip)]
    previous: Option<Mark>,
    /// How long after the policy was written the API server first refused (or warned about) a drop.
    pub active_after: Duration,
}

impl Guarded {
    fn target(&self) -> String {
        format!("{}/{}", self.kind.command_name(), self.name)
    }

    fn entry(&self) -> Entry {
        Entry {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            floor: self.floor,
            autoscaler: self.autoscaler.clone(),
        }
    }
}

/// Guards the assessed workloads: checks every one first (nothing is written unless all can be
/// guarded), adds them to the policy of their kind and mode, marks them, and waits until the API
/// server refuses a drop of each. If one does not become active, what was written is rolled back.
pub async fn protect(
    client: &Client,
    assessments: &[Assessment],
    floor: Option<i64>,
    mode: Mode,
) -> Result<Vec<Guarded>> {
    let mut plans = plan_guards(assessments, floor, mode)?;
    check_rights(client, &plans).await?;

    let kinds: BTreeSet<GuardedKind> = plans.iter().map(|p| p.kind).collect();
    let mut before: Vec<(GuardedKind, Mode, Vec<Entry>)> = Vec::new();
    for kind in &kinds {
        for m in Mode::ALL {
            before.push((*kind, m, read_entries(client, *kind, m).await?));
        }
    }
    if let Err(error) = write_guards(client, &kinds, &mut plans).await {
        roll_back(client, &plans, &before).await;
        return Err(error);
    }
    Ok(plans)
}

/// What `guard on` would write for each assessment, or, if any of them cannot be guarded, why
/// not (for all of them, before anything is written).
fn plan_guards(assessments: &[Assessment], floor: Option<i64>, mode: Mode) -> Result<Vec<Guarded>> {
    let mut plans = Vec::new();
    let mut refusals = Vec::new();
    for a in assessments {
        match plan_guard(a, floor, mode) {
            Ok(plan) => plans.push(plan),
            Err(refusal) => refusals.push(refusal),
        }
    }
    if !refusals.is_empty() {
        return Err(Error::GuardRefused(format!("nothing was changed: {}", refusals.join("; "))));
    }
    Ok(plans)
}

fn plan_guard(a: &Assessment, floor: Option<i64>, mode: Mode) -> std::result::Result<Guarded, String> {
    let target = format!("{}/{}", a.namespace, a.target());
    let Some(kind) = GuardedKind::of(&a.workload_kind) else {
        return Err(format!(
            "{target}: the guard covers Deployments and StatefulSets; {} would need a rule of its own",
            a.workload_kind.command_name()
        ));
    };
    let in_charge = match (a.verdict, a.autoscalers.as_slice()) {
        (Verdict::Safe | Verdict::StripNeeded, [autoscaler]) => Ok((autoscaler.label(), autoscaler.lowest_replicas())),
        (verdict, _) => Err(format!("{}: {}", verdict.as_str(), a.reason)),
    };
    let (floor, autoscaler) = guard::choose_floor(floor, in_charge, a.replicas.spec).map_err(|e| e.explain(&target))?;
    Ok(Guarded {
        namespace: a.namespace.clone(),
        kind,
        name: a.name.clone(),
        replicas: a.replicas.spec,
        floor,
        mode,
        autoscaler,
        previous: a.guard.clone(),
        active_after: Duration::ZERO,
    })
}

/// Writes the planned guards: the policies' entries, then the marks, then waits for each to be
/// answered by the API server as its mode says.
async fn write_guards(client: &Client, kinds: &BTreeSet<GuardedKind>, plans: &mut [Guarded]) -> Result<()> {
    // Every mode's policy is rewritten: a workload guarded in the other mode moves over.
    for kind in kinds {
        for m in Mode::ALL {
            let ours: Vec<&Guarded> = plans.iter().filter(|p| p.kind == *kind).collect();
            update_entries(client, *kind, m, |entries| {
                ours.iter().fold(entries.to_vec(), |entries, plan| {
                    if plan.mode == m {
                        guard::with_entry(&entries, plan.entry())
                    } else {
                        guard::without_entry(&entries, &plan.namespace, &plan.name)
                    }
                })
            })
            .await?;
        }
    }
    let written_at = Instant::now();
    for plan in plans.iter() {
        let body = guard::mark_body(plan.kind, &plan.name, plan.mode, plan.floor, plan.autoscaler.as_deref());
        apply_mark(client, plan.kind, &plan.namespace, &plan.name, &body).await?;
    }
    for plan in plans.iter_mut() {
        confirm_active(client, plan).await?;
        plan.active_after = written_at.elapsed();
    }
    Ok(())
}

/// Puts back what a failed `guard on` wrote: the entries of the workloads it guarded, then their
/// marks. Best effort: the error that caused it is what is reported.
async fn roll_back(client: &Client, plans: &[Guarded], before: &[(GuardedKind, Mode, Vec<Entry>)]) {
    for (kind, mode, entries) in before {
        let ours: Vec<&Guarded> = plans.iter().filter(|p| p.kind == *kind).collect();
        let restored = update_entries(client, *kind, *mode, |now| {
            ours.iter().fold(now.to_vec(), |now, plan| {
                let now = guard::without_entry(&now, &plan.namespace, &plan.name);
                match entries.iter().find(|e| e.namespace == plan.namespace && e.name == plan.name) {
                    Some(previous) => guard::with_entry(&now, previous.clone()),
                    None => now,
                }
            })
        })
        .await;
        if let Err(error) = restored {
            tracing::warn!("rolling back {}: {error}", kind.policy_name(*mode));
        }
    }
    for plan in plans {
        let result = match &plan.previous {
            Some(Mark { mode, floor: Some(floor), autoscaler }) => {
                let body = guard::mark_body(plan.kind, &plan.name, *mode, *floor, autoscaler.as_deref());
                apply_mark(client, plan.kind, &plan.namespace, &plan.name, &body).await
            }
            _ => unmark(client, plan.kind, &plan.namespace, &plan.name).await.map(|_| ()),
        };
        if let Err(error) = result {
            tracing::warn!("rolling back the mark of {}/{}: {error}", plan.namespace, plan.target());
        }
    }
}

/// Stops with a one-line error, before anything is written, on a cluster without
/// ValidatingAdmissionPolicy (Kubernetes older than 1.30).
pub async fn ensure_served(client: &Client) -> Result<()> {
    let unavailable = || {
        Error::AdmissionPolicyUnavailable(
            "this cluster does not serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (GA in Kubernetes 1.30), \
             which the guard runs on; nothing was changed"
                .into(),
        )
    };
    match client.list_api_group_resources("admissionregistration.k8s.io/v1").await {
        Ok(list) => {
            let served = |name: &str| list.resources.iter().any(|r| r.name == name);
            if served("validatingadmissionpolicies") && served("validatingadmissionpolicybindings") {
                Ok(())
            } else {
                Err(unavailable())
            }
        }
        Err(e) if api_code(&e) == Some(404) => Err(unavailable()),
        Err(e) => Err(Error::api("discovery of admissionregistration.k8s.io/v1", e)),
    }
}

const POLICIES: &str = "validatingadmissionpolicies.admissionregistration.k8s.io";
const BINDINGS: &str = "validatingadmissionpolicybindings.admissionregistration.k8s.io";

fn policy_error(error: kube::Error, verb: &str, resource: &str) -> Error {
    kubeio::classify_error(error, verb, resource, &NamespaceScope::All)
}

/// Asks the API server (SelfSubjectAccessReview) whether the user may do what `guard on` is
/// about to do, so a refusal stops it before anything is written.
async fn check_rights(client: &Client, plans: &[Guarded]) -> Result<()> {
    let mut needed: BTreeSet<(&str, &str, String, String)> =
        plans.iter().map(|p| ("patch", "apps", p.kind.plural().to_string(), p.namespace.clone())).collect();
    for verb in ["get", "create", "update", "delete"] {
        needed.insert((verb, "admissionregistration.k8s.io", "validatingadmissionpolicies".into(), String::new()));
    }
    for verb in ["get", "create", "delete"] {
        needed.insert((
            verb,
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings".into(),
            String::new(),
        ));
    }
    for (verb, group, resource, namespace) in needed {
        if !kubeio::can_i(client, verb, group, &resource, &namespace).await? {
            let scope = if namespace.is_empty() {
                " (cluster-wide)".to_string()
            } else {
                format!(" in namespace \"{namespace}\"")
            };
            return Err(Error::Forbidden {
                verb: verb.to_string(),
                resource: format!("{resource}.{group}"),
                scope,
                message: "nothing was changed; grant the role in deploy/rbac/guard.yaml".into(),
            });
        }
    }
    Ok(())
}

fn policy_api(client: &Client) -> Api<ValidatingAdmissionPolicy> {
    Api::all(client.clone())
}

fn binding_api(client: &Client) -> Api<ValidatingAdmissionPolicyBinding> {
    Api::all(client.clone())
}

/// The entries of one kind and mode's policy (none when it does not exist).
async fn read_entries(client: &Client, kind: GuardedKind, mode: Mode) -> Result<Vec<Entry>> {
    let found =
        policy_api(client).get_opt(&kind.policy_name(mode)).await.map_err(|e| policy_error(e, "get", POLICIES))?;
    Ok(found.map(|p| guard::entries_of(&serde_json::to_value(p).unwrap_or_default())).unwrap_or_default())
}

/// Rewrites the entries of one kind and mode's policy with `change`: creates the policy and its
/// binding for the first entry, deletes both when none is left. A read-modify-write on the
/// policy's resourceVersion, retried when someone else wrote in between.
async fn update_entries(
    client: &Client,
    kind: GuardedKind,
    mode: Mode,
    change: impl Fn(&[Entry]) -> Vec<Entry>,
) -> Result<()> {
    let name = kind.policy_name(mode);
    let post = PostParams { field_manager: Some(guard::FIELD_MANAGER.into()), ..Default::default() };
    for _ in 0..8 {
        let existing = policy_api(client).get_opt(&name).await.map_err(|e| policy_error(e, "get", POLICIES))?;
        let existing_value = existing.as_ref().map(|p| serde_json::to_value(p).unwrap_or_default());
        let entries = existing_value.as_ref().map(guard::entries_of).unwrap_or_default();
        let wanted = change(&entries);
        let written = if wanted.is_empty() {
            if existing.is_none() {
                return delete_binding(client, &name).await;
            }
            delete_binding(client, &name).await?;
            let rv = existing.as_ref().and_then(|p| p.metadata.resource_version.clone());
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions { resource_version: rv, uid: None }),
                ..Default::default()
            };
            policy_api(client).delete(&name, &params).await.map(|_| ())
        } else {
            let mut body: ValidatingAdmissionPolicy = serde_json::from_value(guard::policy(kind, mode, &wanted))
                .expect("the policy is a ValidatingAdmissionPolicy");
            let result = match &existing {
                None => policy_api(client).create(&post, &body).await.map(|_| ()),
                Some(_) if wanted == entries && existing_value.as_ref().is_some_and(|v| same_spec(v, &body)) => Ok(()),
                Some(current) => {
                    body.metadata.resource_version = current.metadata.resource_version.clone();
                    policy_api(client).replace(&name, &post, &body).await.map(|_| ())
                }
            };
            match result {
                Ok(()) => ensure_binding(client, kind, mode).await,
                Err(e) => Err(e),
            }
        };
        match written {
            Ok(()) => return Ok(()),
            Err(e) if matches!(api_code(&e), Some(409)) => continue,
            Err(e) => return Err(policy_error(e, "write", POLICIES)),
        }
    }
    Err(Error::Conflict(format!("{name} kept changing while the guard was updating it; nothing more was changed")))
}

/// Whether a stored policy already has the spec `body` would write (so nothing needs writing).
fn same_spec(stored: &Value, body: &ValidatingAdmissionPolicy) -> bool {
    let wanted = serde_json::to_value(body).unwrap_or_default();
    stored.get("spec") == wanted.get("spec")
}

async fn ensure_binding(client: &Client, kind: GuardedKind, mode: Mode) -> Result<(), kube::Error> {
    let name = kind.policy_name(mode);
    if binding_api(client).get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let body: ValidatingAdmissionPolicyBinding =
        serde_json::from_value(guard::binding(kind, mode)).expect("the binding is a ValidatingAdmissionPolicyBinding");
    let post = PostParams { field_manager: Some(guard::FIELD_MANAGER.into()), ..Default::default() };
    match binding_api(client).create(&post, &body).await {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == Some(409) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn delete_binding(client: &Client, name: &str) -> Result<()> {
    match binding_api(client).delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == Some(404) => Ok(()),
        Err(e) => Err(policy_error(e, "delete", BINDINGS)),
    }
}

/// Every guard policy object in the cluster (any version): (is a binding, name).
async fn list_policy_objects(client: &Client) -> Result<Vec<(bool, String)>> {
    let params = ListParams::default().labels(&guard::policy_selector(None));
    let bindings =
        kubeio::list_all(&binding_api(client), &params).await.map_err(|e| policy_error(e, "list", BINDINGS))?;
    let policies =
        kubeio::list_all(&policy_api(client), &params).await.map_err(|e| policy_error(e, "list", POLICIES))?;
    let name = |meta: &kube::api::ObjectMeta| meta.name.clone().unwrap_or_default();
    Ok(bindings
        .iter()
        .map(|b| (true, name(&b.metadata)))
        .chain(policies.iter().map(|p| (false, name(&p.metadata))))
        .filter(|(_, n)| n.starts_with(guard::POLICY_PREFIX))
        .collect())
}

fn workload_api(client: &Client, kind: GuardedKind, namespace: &str) -> Api<kube::api::DynamicObject> {
    kubeio::workload_api(client, &kind.workload_kind(), namespace)
}

/// Writes the mark as the guard's own field manager (forced: the mark is ours).
async fn apply_mark(client: &Client, kind: GuardedKind, namespace: &str, name: &str, body: &Value) -> Result<()> {
    workload_api(client, kind, namespace)
        .patch(name, &PatchParams::apply(guard::FIELD_MANAGER).force(), &Patch::Apply(body))
        .await
        .map(|_| ())
        .map_err(|e| {
            kubeio::classify_error(
                e,
                "patch",
                &format!("{}.apps", kind.plural()),
                &NamespaceScope::Namespace(namespace.into()),
            )
        })
}

/// Removes the mark; returns whether there was one. Applying nothing as the guard's manager
/// drops what it alone owns; if someone else also set the label or annotations (a `kubectl
/// label` of the same value), a guarded JSON patch removes what is left.
async fn unmark(client: &Client, kind: GuardedKind, namespace: &str, name: &str) -> Result<bool> {
    let scope = NamespaceScope::Namespace(namespace.into());
    let resource = format!("{}.apps", kind.plural());
    let api = workload_api(client, kind, namespace);
    let before =
        kubeio::get_object(&api, name).await.map_err(|e| kubeio::classify_error(e, "get", &resource, &scope))?;
    let had_entry = before
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|entries| entries.iter().any(|e| e["manager"] == guard::FIELD_MANAGER));
    let marked = mark_keys(&before).next().is_some();
    if had_entry {
        api.patch(
            name,
            &PatchParams::apply(guard::FIELD_MANAGER).force(),
            &Patch::Apply(guard::unmark_body(kind, name)),
        )
        .await
        .map_err(|e| kubeio::classify_error(e, "patch", &resource, &scope))?;
    }
    for _ in 0..5 {
        let now =
            kubeio::get_object(&api, name).await.map_err(|e| kubeio::classify_error(e, "get", &resource, &scope))?;
        let left: Vec<String> = mark_keys(&now).collect();
        if left.is_empty() {
            return Ok(marked || had_entry);
        }
        let mut operations = vec![
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": now["metadata"]["resourceVersion"]}),
        ];
        operations.extend(left.iter().map(|path| json!({"op": "remove", "path": path})));
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(operations)).expect("a JSON patch");
        match kubeio::json_patch(&api, name, patch, false).await {
            Ok(_) => {}
            Err(e) if matches!(api_code(&e), Some(409 | 422)) => continue,
            Err(e) => return Err(kubeio::classify_error(e, "patch", &resource, &scope)),
        }
    }
    Err(Error::Conflict(format!(
        "{namespace}/{}/{name} kept changing; its guard mark is still there",
        kind.command_name()
    )))
}

/// The JSON pointers of the mark's label and annotations present on an object.
fn mark_keys(object: &Value) -> impl Iterator<Item = String> + '_ {
    [
        ("labels", guard::GUARD_LABEL),
        ("annotations", guard::FLOOR_ANNOTATION),
        ("annotations", guard::AUTOSCALER_ANNOTATION),
    ]
    .into_iter()
    .filter(|(field, key)| object["metadata"][field].get(key).is_some())
    .map(|(field, key)| format!("/metadata/{field}/{}", key.replace('~', "~0").replace('/', "~1")))
}

/// What a dry-run drop below the floor got from the API server.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Refused by the guard (Deny).
    Refused,
    /// Let through with the guard's warning (Warn).
    Warned,
    /// Let through without a word: the guard is not active (yet).
    Passed,
}

impl Probe {
    fn describe(&self) -> &'static str {
        match self {
            Probe::Refused => "refused",
            Probe::Warned => "let through with the guard's warning",
            Probe::Passed => "let through",
        }
    }
}

/// Sends a server-side dry run that sets replicas to floor - 1 (dry runs go through admission
/// and persist nothing) and reports whether the guard answered.
async fn probe(client: &Client, kind: GuardedKind, namespace: &str, name: &str, replicas: i64) -> Result<Probe> {
    let target = format!("{}/{name}", kind.command_name());
    let url = format!("/apis/apps/v1/namespaces/{namespace}/{}", kind.plural());
    let params = PatchParams { dry_run: true, field_manager: Some(guard::FIELD_MANAGER.into()), ..Default::default() };
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let request = kube::core::Request::new(url)
        .patch(name, &params, &patch)
        .map_err(|e| Error::Usage(format!("building the dry run for {target}: {e}")))?;
    let what = format!("server-side dry run of {namespace}/{target}");
    let response = client.send(request.map(kube::client::Body::from)).await.map_err(|e| Error::api(what.clone(), e))?;
    let status = response.status();
    let ours = |text: &str| text.contains("hpa-migrate guard: ") && text.contains(&format!("{target} in namespace"));
    let warned =
        response.headers().get_all(http::header::WARNING).iter().any(|v| ours(&String::from_utf8_lossy(v.as_bytes())));
    let body = response.into_body().collect_bytes().await.map_err(|e| Error::api(what.clone(), e))?;
    let body = String::from_utf8_lossy(&body);
    if status.is_success() {
        return Ok(if warned { Probe::Warned } else { Probe::Passed });
    }
    if ours(&body) {
        return Ok(Probe::Refused);
    }
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    if status.as_u16() == 404 {
        return Err(Error::NotFound {
            kind: kind.command_name().into(),
            name: name.into(),
            namespace: namespace.into(),
        });
    }
    if status.as_u16() == 403 {
        return Err(Error::Forbidden {
            verb: "patch".into(),
            resource: format!("{}.apps", kind.plural()),
            scope: format!(" in namespace \"{namespace}\""),
            message,
        });
    }
    Err(Error::GuardNotActive(format!("{what} failed ({status}): {message}")))
}

/// Waits until the API server answers a drop of this workload as the mode says: the policy and
/// the param (the workload itself) reach the API server's informers asynchronously.
async fn confirm_active(client: &Client, plan: &Guarded) -> Result<()> {
    let expected = match plan.mode {
        Mode::Deny => Probe::Refused,
        Mode::Warn => Probe::Warned,
    };
    let deadline = Instant::now() + ACTIVATION_TIMEOUT;
    loop {
        let answer = probe(client, plan.kind, &plan.namespace, &plan.name, plan.floor - 1).await?;
        if answer == expected {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::GuardNotActive(format!(
                "the guard did not become active for {}/{} within {} s (a dry run setting {} replicas was {}); \
                 what guard on wrote was rolled back",
                plan.namespace,
                plan.target(),
                ACTIVATION_TIMEOUT.as_secs(),
                plan.floor - 1,
                answer.describe()
            )));
        }
        tokio::time::sleep(ACTIVATION_POLL).await;
    }
}

/// Waits until a dry run dropping the workload to 0 replicas is no longer refused by the guard:
/// the API server keeps enforcing a deleted or rewritten policy until its informer catches up.
async fn confirm_lifted(client: &Client, kind: GuardedKind, namespace: &str, name: &str) -> Result<()> {
    let deadline = Instant::now() + ACTIVATION_TIMEOUT;
    loop {
        let answer = match probe(client, kind, namespace, name, 0).await {
            Ok(Probe::Passed) | Err(Error::NotFound { .. }) => return Ok(()),
            Ok(answer) => answer.describe().to_string(),
            Err(error) => error.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::Unconfirmed {
                target: format!("{namespace}/{}/{name}", kind.command_name()),
                why: format!(
                    "the API server still answered a dry run as guarded after {} s (the last dry run: {answer})",
                    ACTIVATION_TIMEOUT.as_secs()
                ),
            });
        }
        tokio::time::sleep(ACTIVATION_POLL).await;
    }
}

/// The entries whose workload does not exist any more.
async fn gone_entries(client: &Client, kind: GuardedKind, entries: &[Entry]) -> Result<Vec<Entry>> {
    let mut gone = Vec::new();
    for entry in entries {
        let api = workload_api(client, kind, &entry.namespace);
        match api.get_opt(&entry.name).await {
            Ok(Some(_)) => {}
            Ok(None) => gone.push(entry.clone()),
            Err(e) => {
                return Err(kubeio::classify_error(
                    e,
                    "get",
                    &format!("{}.apps", kind.plural()),
                    &NamespaceScope::Namespace(entry.namespace.clone()),
                ));
            }
        }
    }
    Ok(gone)
}

/// What `guard off` did.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifted {
    /// `namespace/kind/name` of every workload whose guard was removed.
    pub unguarded: Vec<String>,
    /// Named but not guarded.
    pub not_guarded: Vec<String>,
    /// Policy objects deleted by `--uninstall`.
    pub removed: Vec<String>,
    pub warnings: Vec<String>,
}

/// A workload `guard off` removes the guard from.
struct LiftTarget {
    kind: GuardedKind,
    namespace: String,
    name: String,
    /// Whether `check` saw its mark.
    marked: bool,
}

/// Removes the guard from the assessed workloads (their entries and marks); a policy left with
/// no entry is deleted with its binding. With `uninstall`, every workload any guard policy lists
/// is unmarked too and every guard policy object is deleted.
pub async fn lift(client: &Client, assessments: &[Assessment], uninstall: bool) -> Result<Lifted> {
    let mut lifted = Lifted::default();
    let mut targets = Vec::new();
    for a in assessments {
        match GuardedKind::of(&a.workload_kind) {
            Some(kind) => targets.push(LiftTarget {
                kind,
                namespace: a.namespace.clone(),
                name: a.name.clone(),
                marked: a.guard.is_some(),
            }),
            None => lifted.not_guarded.push(format!("{}/{}", a.namespace, a.target())),
        }
    }
    if uninstall {
        add_listed_targets(client, &mut targets).await?;
    }
    for kind in GuardedKind::ALL {
        let ours: Vec<&LiftTarget> = targets.iter().filter(|t| t.kind == kind).collect();
        if ours.is_empty() {
            continue;
        }
        let listed = remove_entries(client, kind, &ours, &mut lifted).await?;
        remove_marks(client, kind, &ours, &listed, &mut lifted).await?;
    }
    if uninstall {
        delete_policy_objects(client, &mut lifted).await?;
        warn_of_stray_marks(client, &mut lifted).await;
    }
    Ok(lifted)
}

/// Adds every workload a guard policy lists to the targets (`--uninstall`).
async fn add_listed_targets(client: &Client, targets: &mut Vec<LiftTarget>) -> Result<()> {
    for kind in GuardedKind::ALL {
        for mode in Mode::ALL {
            for entry in read_entries(client, kind, mode).await? {
                if !targets.iter().any(|t| t.kind == kind && t.namespace == entry.namespace && t.name == entry.name) {
                    targets.push(LiftTarget { kind, namespace: entry.namespace, name: entry.name, marked: false });
                }
            }
        }
    }
    Ok(())
}

/// Removes the targets' entries from both of the kind's policies; returns the (namespace, name)
/// of every workload they listed before.
async fn remove_entries(
    client: &Client,
    kind: GuardedKind,
    ours: &[&LiftTarget],
    lifted: &mut Lifted,
) -> Result<BTreeSet<(String, String)>> {
    let mut listed = BTreeSet::new();
    for mode in Mode::ALL {
        let entries = read_entries(client, kind, mode).await?;
        listed.extend(entries.iter().map(|e| (e.namespace.clone(), e.name.clone())));
        // Entries of workloads that no longer exist (deleted with their namespace while
        // guarded) go too: they would refuse a new workload of the same name.
        let gone = gone_entries(client, kind, &entries).await?;
        for entry in &gone {
            lifted.warnings.push(format!(
                "removed the guard of {}/{}/{}, which no longer exists",
                entry.namespace,
                kind.command_name(),
                entry.name
            ));
        }
        update_entries(client, kind, mode, |entries| {
            let kept = gone.iter().fold(entries.to_vec(), |e, g| guard::without_entry(&e, &g.namespace, &g.name));
            ours.iter().fold(kept, |entries, t| guard::without_entry(&entries, &t.namespace, &t.name))
        })
        .await?;
    }
    Ok(listed)
}

/// Removes the targets' marks and sorts them into unguarded (confirmed by a dry run where it
/// can be) and not guarded.
async fn remove_marks(
    client: &Client,
    kind: GuardedKind,
    ours: &[&LiftTarget],
    listed: &BTreeSet<(String, String)>,
    lifted: &mut Lifted,
) -> Result<()> {
    for LiftTarget { namespace, name, marked, .. } in ours.iter().copied() {
        let label = format!("{namespace}/{}/{name}", kind.command_name());
        let had_mark = match unmark(client, kind, namespace, name).await {
            Ok(had) => had,
            // A workload deleted while guarded: its entry is gone, there is no mark to remove.
            Err(Error::Api { source, .. }) if api_code(&source) == Some(404) => false,
            Err(other) => return Err(other),
        };
        if *marked || had_mark || listed.contains(&(namespace.clone(), name.clone())) {
            if let Err(unconfirmed) = confirm_lifted(client, kind, namespace, name).await {
                lifted.warnings.push(unconfirmed.to_string());
            }
            lifted.unguarded.push(label);
        } else {
            lifted.not_guarded.push(label);
        }
    }
    Ok(())
}

/// Deletes every guard policy object (`--uninstall`).
async fn delete_policy_objects(client: &Client, lifted: &mut Lifted) -> Result<()> {
    let mut objects = list_policy_objects(client).await?;
    // Bindings first: a binding without its policy is an error the API server reports.
    objects.sort_by_key(|(binding, _)| !binding);
    for (binding, name) in objects {
        let deleted = if binding {
            binding_api(client).delete(&name, &DeleteParams::default()).await.map(|_| ())
        } else {
            policy_api(client).delete(&name, &DeleteParams::default()).await.map(|_| ())
        };
        match deleted {
            Ok(()) => lifted.removed.push(name),
            Err(e) if api_code(&e) == Some(404) => {}
            Err(e) => return Err(policy_error(e, "delete", if binding { BINDINGS } else { POLICIES })),
        }
    }
    Ok(())
}

/// Warns of workloads still labelled after `--uninstall` (best effort: a failed list says nothing).
async fn warn_of_stray_marks(client: &Client, lifted: &mut Lifted) {
    for kind in GuardedKind::ALL {
        if let Ok(marked) =
            kubeio::list_workloads(client, &kind.workload_kind(), &NamespaceScope::All, Some(guard::GUARD_LABEL)).await
            && !marked.is_empty()
        {
            lifted.warnings.push(format!(
                "{} {} still carry the {} label of a guard no policy lists (it guards nothing): {}",
                marked.len(),
                kind.plural(),
                guard::GUARD_LABEL,
                marked.iter().map(|w| format!("{}/{}", w.namespace(), w.target())).collect::<Vec<_>>().join(", ")
            ));
        }
    }
}

/// `guard status -o json|yaml`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub policies: Vec<PolicyState>,
    pub workloads: Vec<GuardedWorkload>,
    /// Where the marks and the policies disagree.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyState {
    pub name: String,
    pub kind: GuardedKind,
    pub mode: Mode,
    pub installed: bool,
    pub bound: bool,
    /// How many workloads it guards, in every namespace.
    pub guarded: usize,
    /// The API server's type-checking warnings about the policy's CEL.
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardedWorkload {
    pub namespace: String,
    pub kind: GuardedKind,
    pub name: String,
    pub replicas: Option<i64>,
    /// What the policy enforces (null: no policy lists it).
    pub enforced: Option<EnforcedGuard>,
    /// The mark on the workload (null: not marked).
    pub mark: Option<Mark>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnforcedGuard {
    pub mode: Mode,
    pub floor: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<String>,
}

pub async fn status_report(client: &Client, scope: &NamespaceScope) -> Result<StatusReport> {
    ensure_served(client).await?;
    let mut policies = Vec::new();
    let mut workloads: Vec<GuardedWorkload> = Vec::new();
    let mut problems = Vec::new();
    for kind in GuardedKind::ALL {
        let marked = kubeio::list_workloads(client, &kind.workload_kind(), scope, Some(guard::GUARD_LABEL)).await?;
        workloads.extend(marked.iter().map(|workload| GuardedWorkload {
            namespace: workload.namespace().to_string(),
            kind,
            name: workload.name().to_string(),
            replicas: workload.replicas.spec,
            enforced: None,
            mark: Mark::of(workload),
        }));
        for mode in Mode::ALL {
            let (state, entries) = policy_state(client, kind, mode).await?;
            if state.installed && !state.bound {
                problems.push(format!("{} has no binding, so it refuses nothing; run guard on again", state.name));
            }
            let in_scope = entries.iter().filter(|e| scope.namespace().is_none_or(|ns| ns == e.namespace));
            for entry in in_scope {
                add_enforced(&mut workloads, kind, mode, entry);
            }
            policies.push(state);
        }
    }
    problems.extend(workloads.iter().filter_map(disagreement));
    workloads.sort_by(|a, b| (&a.namespace, a.kind, &a.name).cmp(&(&b.namespace, b.kind, &b.name)));
    Ok(StatusReport { api_version: check::REPORT_API_VERSION, kind: "GuardStatus", policies, workloads, problems })
}

/// One kind and mode's policy and binding as the API server has them, with the policy's entries.
async fn policy_state(client: &Client, kind: GuardedKind, mode: Mode) -> Result<(PolicyState, Vec<Entry>)> {
    let name = kind.policy_name(mode);
    let policy = policy_api(client).get_opt(&name).await.map_err(|e| policy_error(e, "get", POLICIES))?;
    let bound = binding_api(client).get_opt(&name).await.map_err(|e| policy_error(e, "get", BINDINGS))?.is_some();
    let value = policy.as_ref().map(|p| serde_json::to_value(p).unwrap_or_default());
    let entries = value.as_ref().map(guard::entries_of).unwrap_or_default();
    let warnings = policy
        .as_ref()
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.type_checking.as_ref())
        .and_then(|t| t.expression_warnings.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|w| format!("{}: {}", w.field_ref, w.warning))
        .collect();
    let state = PolicyState { name, kind, mode, installed: policy.is_some(), bound, guarded: entries.len(), warnings };
    Ok((state, entries))
}

/// Records what a policy entry enforces on its workload, listing the workload if no mark did.
fn add_enforced(workloads: &mut Vec<GuardedWorkload>, kind: GuardedKind, mode: Mode, entry: &Entry) {
    let enforced = EnforcedGuard { mode, floor: entry.floor, autoscaler: entry.autoscaler.clone() };
    match workloads.iter_mut().find(|w| w.kind == kind && w.namespace == entry.namespace && w.name == entry.name) {
        Some(w) => w.enforced = Some(enforced),
        None => workloads.push(GuardedWorkload {
            namespace: entry.namespace.clone(),
            kind,
            name: entry.name.clone(),
            replicas: None,
            enforced: Some(enforced),
            mark: None,
        }),
    }
}

/// Where a workload's mark and what the policies enforce on it disagree.
fn disagreement(w: &GuardedWorkload) -> Option<String> {
    let label = format!("{}/{}/{}", w.namespace, w.kind.command_name(), w.name);
    match (&w.enforced, &w.mark) {
        (None, Some(_)) => Some(format!("{label} is marked, but no guard policy lists it: it is not guarded")),
        (Some(_), None) => Some(format!("{label} is guarded, but its mark is gone (check does not show it)")),
        (Some(e), Some(m)) if m.floor != Some(e.floor) || m.mode != e.mode => Some(format!(
            "{label}: the mark says {} but the policy enforces {} >= {}",
            m.summary(),
            e.mode.as_str(),
            e.floor
        )),
        _ => None,
    }
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    let mut out = String::new();
    for line in table.to_string().lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn render_on(guarded: &[Guarded]) -> String {
    let rows = guarded
        .iter()
        .map(|g| {
            vec![
                g.namespace.clone(),
                g.target(),
                count(g.replicas),
                g.floor.to_string(),
                g.mode.as_str().to_string(),
                g.autoscaler.clone().unwrap_or_else(|| "<none>".into()),
            ]
        })
        .collect();
    let mut out = table(&["NAMESPACE", "WORKLOAD", "REPLICAS", "FLOOR", "MODE", "AUTOSCALER"], rows);
    out.push('\n');
    for g in guarded {
        let answer = match g.mode {
            Mode::Deny => "refused",
            Mode::Warn => "let through with the guard's warning",
        };
        out.push_str(&format!(
            "guarded {}/{}: a server-side dry run setting {} replicas was {answer} ({:.1} s after the policy was written)\n",
            g.namespace,
            g.target(),
            g.floor - 1,
            g.active_after.as_secs_f64()
        ));
    }
    out
}

fn render_off(lifted: &Lifted) -> String {
    let mut out = String::new();
    for name in &lifted.unguarded {
        out.push_str(&format!("unguarded {name}\n"));
    }
    for name in &lifted.not_guarded {
        out.push_str(&format!("{name} was not guarded\n"));
    }
    for name in &lifted.removed {
        out.push_str(&format!("removed {name}\n"));
    }
    out
}

fn render_status(report: &StatusReport) -> String {
    let mut out = String::new();
    if report.workloads.is_empty() {
        out.push_str("No guarded workloads in scope.\n");
    } else {
        let rows = report
            .workloads
            .iter()
            .map(|w| {
                let (floor, mode, autoscaler) = match (&w.enforced, &w.mark) {
                    (Some(e), _) => (e.floor.to_string(), e.mode.as_str().to_string(), e.autoscaler.clone()),
                    (None, Some(m)) => {
                        ("-".to_string(), format!("{} (not enforced)", m.mode.as_str()), m.autoscaler.clone())
                    }
                    (None, None) => ("-".to_string(), "-".to_string(), None),
                };
                vec![
                    w.namespace.clone(),
                    format!("{}/{}", w.kind.command_name(), w.name),
                    count(w.replicas),
                    floor,
                    mode,
                    autoscaler.unwrap_or_else(|| "<none>".into()),
                ]
            })
            .collect();
        out.push_str(&table(&["NAMESPACE", "WORKLOAD", "REPLICAS", "FLOOR", "MODE", "AUTOSCALER"], rows));
    }
    out.push('\n');
    for p in &report.policies {
        let state = match (p.installed, p.bound) {
            (false, _) => "not installed".to_string(),
            (true, bound) => {
                format!(
                    "installed{}, guards {} workload(s) cluster-wide",
                    if bound { " and bound" } else { " but NOT bound" },
                    p.guarded
                )
            }
        };
        out.push_str(&format!("policy {}: {state}\n", p.name));
        for warning in &p.warnings {
            out.push_str(&format!("  type-checking warning: {warning}\n"));
        }
    }
    for problem in &report.problems {
        out.push_str(&format!("problem: {problem}\n"));
    }
    out
}
