//! `resume TARGET... | -l SELECTOR`: lifts the pauses `strip --pause` (alias `--pause-flux`)
//! set, so the deploy tools apply the object again: kustomize-controller's
//! `kustomize.toolkit.fluxcd.io/reconcile: disabled` annotation is removed, the HelmRelease that
//! deploys the object gets back the `spec.suspend` it had before the strip (one suspended by
//! anyone else stays suspended), and the Argo CD Application that syncs it gets back exactly the
//! `spec.syncPolicy.automated` the strip removed (one whose automated sync someone else turned
//! off stays off).

use kube::Client;

use crate::cli::ResumeArgs;
use crate::commands::flags::ScopeFlags;
use crate::commands::{Target, parse_targets};
use crate::core::patch;
use crate::core::tools::Traces;
use crate::core::tools::argocd::TRACKING_ANNOTATION;
use crate::core::tools::flux::RECONCILE_ANNOTATION as FLUX_RECONCILE_ANNOTATION;
use crate::core::tools::pause::{self, ApplicationRef, HelmReleaseRef, ResumePlan};
use crate::core::workload::WorkloadKind;
use crate::error::{Error, ExitStatus, Result, api_code};
use crate::inventory::{Inventory, Query};
use crate::kubeio::{self, NamespaceScope};
use crate::output::Printer;
use crate::retry::{self, Attempt};

/// What `resume` was asked for, checked before connecting: named workloads (in one namespace),
/// or the workloads `-l` selects (in the namespace or, with `-A`, in all).
#[derive(Debug)]
pub struct Options {
    targets: Vec<Target>,
    selector: Option<String>,
}

impl Options {
    pub fn resolve(args: &ResumeArgs, flags: &ScopeFlags) -> Result<Self> {
        let targets = parse_targets(&args.targets)?;
        let selector = flags.selector_text().map(str::to_string);
        if targets.is_empty() && selector.is_none() {
            return Err(Error::Usage(
                "name the workloads to resume (TARGET...), or select them with -l SELECTOR".into(),
            ));
        }
        flags.refuse_named_across_all_namespaces(&targets)?;
        Ok(Self { targets, selector })
    }
}

pub async fn run(client: &Client, scope: &NamespaceScope, options: &Options, printer: &Printer) -> Result<ExitStatus> {
    match &options.selector {
        Some(selector) => resume_selected(client, scope, selector, &options.targets, printer).await?,
        None => resume_targets(client, scope, &options.targets, printer).await?,
    }
    Ok(ExitStatus::Success)
}

/// Resumes each named workload of `scope` (one namespace), saying so of those not paused.
pub async fn resume_targets(
    client: &Client,
    scope: &NamespaceScope,
    targets: &[Target],
    printer: &Printer,
) -> Result<()> {
    let Some(namespace) = scope.namespace() else {
        return Err(Error::Usage(
            "a workload cannot be named across all namespaces: drop -A and pass -n NAMESPACE".into(),
        ));
    };
    for target in targets {
        let kind = kubeio::resolve_kind(client, &target.type_name).await?;
        resume_one(client, &kind, namespace, &target.name, printer).await?;
    }
    Ok(())
}

/// Resumes the paused workloads `selector` selects: of `targets`, or without them of the
/// Deployments, StatefulSets and every kind an autoscaler targets (as `check --all-workloads
/// -l`). kubectl applies -l to named objects too: a named workload without the labels is left
/// alone.
async fn resume_selected(
    client: &Client,
    scope: &NamespaceScope,
    selector: &str,
    targets: &[Target],
    printer: &Printer,
) -> Result<()> {
    let backup_dir = crate::backup::default_dir();
    let query = Query { scope, selector: Some(selector), targets, all_workloads: true, backup_dir: &backup_dir };
    let inventory = Inventory::collect(client, &query).await?;
    let paused: Vec<_> = inventory
        .workloads
        .iter()
        .filter(|w| {
            w.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(FLUX_RECONCILE_ANNOTATION))
                || HelmReleaseRef::of(*w).is_some()
                || w.annotation(TRACKING_ANNOTATION).is_some()
        })
        .collect();
    if paused.is_empty() {
        printer.note(&format!(
            "No workload selected by -l {selector} is paused for Flux or deployed by Argo CD: nothing to resume."
        ));
    }
    for workload in paused {
        resume_one(client, &workload.kind, workload.namespace(), workload.name(), printer).await?;
    }
    Ok(())
}

/// Lifts the pauses of one workload: its annotation, then its HelmRelease's suspend and its
/// Argo CD Application's automated sync.
async fn resume_one(
    client: &Client,
    kind: &WorkloadKind,
    namespace: &str,
    name: &str,
    printer: &Printer,
) -> Result<()> {
    let (line, deployers) = resume_workload(client, kind, namespace, name).await?;
    if let Some(line) = line {
        printer.data(&line)?;
    }
    if let Some(release) = deployers.helm_release {
        printer.data(&resume_helm_release(client, &release).await?)?;
    }
    if let Some(tracking_id) = deployers.argocd_tracking_id {
        printer.data(&resume_application(client, &tracking_id).await?)?;
    }
    Ok(())
}

/// The deploy tools' own objects that pause a workload, as its labels and annotations name them.
struct Deployers {
    helm_release: Option<HelmReleaseRef>,
    argocd_tracking_id: Option<String>,
}

/// Removes the annotation; returns what to say (nothing when the workload's HelmRelease or
/// Application holds its only pause) and the objects that deploy it.
async fn resume_workload(
    client: &Client,
    kind: &WorkloadKind,
    namespace: &str,
    name: &str,
) -> Result<(Option<String>, Deployers)> {
    let scope = NamespaceScope::Namespace(namespace.to_string());
    let api = kubeio::workload_api(client, kind, namespace);
    let label = format!("{namespace}/{}/{name}", kind.command_name());
    retry::on_conflict(&label, |_| async {
        let object = kubeio::get_object(&api, name).await.map_err(|e| match api_code(&e) {
            Some(404) => {
                Error::NotFound { kind: kind.command_name(), name: name.to_string(), namespace: namespace.into() }
            }
            _ => kubeio::classify_error(e, "get", &kind.plural, &scope),
        })?;
        let deployers = Deployers {
            helm_release: HelmReleaseRef::of(&object),
            argocd_tracking_id: object.annotation(TRACKING_ANNOTATION).map(str::to_string),
        };
        if object.pointer(&patch::annotation_path(FLUX_RECONCILE_ANNOTATION)).is_none() {
            let line = format!("unchanged {label}: Flux reconciliation is not paused\n");
            let paused_elsewhere = deployers.helm_release.is_some() || deployers.argocd_tracking_id.is_some();
            return Ok(Attempt::Done(((!paused_elsewhere).then_some(line), deployers)));
        }
        let resource_version =
            patch::resource_version(&object).map_err(|source| Error::Plan { target: label.clone(), source })?;
        let patch = patch::annotation_patch(&resource_version, &object, FLUX_RECONCILE_ANNOTATION, None);
        match kubeio::json_patch(&api, name, patch, false).await {
            Ok(_) => {
                let after = kubeio::get_object(&api, name)
                    .await
                    .map_err(|e| kubeio::classify_error(e, "get", &kind.plural, &scope))?;
                let expected =
                    patch::Expected { annotations: vec![(FLUX_RECONCILE_ANNOTATION, None)], ..Default::default() };
                patch::confirm_workload(&object, &after, &expected)
                    .map_err(|why| Error::Unconfirmed { target: label.clone(), why: why.to_string() })?;
                let line = format!("resumed {label}: Flux reconciles it again\n");
                Ok(Attempt::Done((Some(line), deployers)))
            }
            Err(e) if retry::is_conflict(&e) => Ok(Attempt::Conflict),
            Err(e) => Err(kubeio::classify_error(e, "patch", &kind.plural, &scope)),
        }
    })
    .await
}

/// Puts back the `spec.suspend` the HelmRelease had before `strip --pause` suspended it;
/// one that is not suspended, or that someone else suspended, is left as it is.
async fn resume_helm_release(client: &Client, release: &HelmReleaseRef) -> Result<String> {
    let suspended_by_others = format!(
        "suspended, but not by strip --pause; left suspended (flux resume helmrelease {} -n {})",
        release.name, release.namespace
    );
    let resume = ToolResume {
        api: kubeio::helm_release_api(client, &release.namespace),
        namespace: &release.namespace,
        name: &release.name,
        resource: "helmreleases.helm.toolkit.fluxcd.io",
        label: format!("HelmRelease {release}"),
        plan: pause::plan_resume,
        resumed: |written| written.pointer("/spec/suspend") != Some(&serde_json::Value::Bool(true)),
        says: [
            "not suspended",
            &suspended_by_others,
            "helm-controller reconciles it again",
            "still suspended after the patch",
        ],
    };
    resume.write().await
}

/// Puts back exactly the automated sync `strip --pause` removed from the Application whose
/// tracking id the workload carries; one whose automated sync the strip did not turn off is
/// left as it is.
async fn resume_application(client: &Client, tracking_id: &str) -> Result<String> {
    let applications = kubeio::list_argocd_applications(client).await?.unwrap_or_default();
    let Some(application) = applications.iter().find(|a| a.tracks(tracking_id)) else {
        return Ok(format!("unchanged: no Argo CD Application found for tracking id {tracking_id}\n"));
    };
    let ApplicationRef { namespace, name } = &application.reference();
    let resume = ToolResume {
        api: kubeio::argocd_application_api(client, namespace),
        namespace,
        name,
        resource: "applications.argoproj.io",
        label: format!("Argo CD Application {namespace}/{name}"),
        plan: pause::plan_resume_automated,
        resumed: |written| !pause::automated_paused_by_strip(written),
        says: [
            "automated sync was not turned off by strip --pause",
            "",
            "syncs automatically again",
            "automated sync still off after the patch",
        ],
    };
    resume.write().await
}

/// The resume of a deploy tool's own object (a HelmRelease, an Application): one guarded JSON
/// patch, re-planned on a conflict, confirmed on the object as stored.
struct ToolResume<'a> {
    api: kube::Api<kube::api::DynamicObject>,
    namespace: &'a str,
    name: &'a str,
    resource: &'a str,
    label: String,
    plan: fn(&serde_json::Value) -> std::result::Result<ResumePlan, patch::PlanError>,
    resumed: fn(&serde_json::Value) -> bool,
    /// What to say: not paused, paused by others, resumed, and still paused after the patch.
    says: [&'a str; 4],
}

impl ToolResume<'_> {
    async fn write(&self) -> Result<String> {
        let scope = NamespaceScope::Namespace(self.namespace.to_string());
        let Self { api, name, resource, label, plan, resumed, says: [not_paused, by_others, done, still], .. } = self;
        let scope = &scope;
        retry::on_conflict(label, |_| async move {
            let object = match kubeio::get_object(api, name).await {
                Ok(object) => object,
                // The labels or the tracking id outlived it: there is nothing to resume.
                Err(e) if api_code(&e) == Some(404) => {
                    return Ok(Attempt::Done(format!("unchanged {label}: not found\n")));
                }
                Err(e) => return Err(kubeio::classify_error(e, "get", resource, scope)),
            };
            let planned = plan(&object).map_err(|source| Error::Plan { target: label.clone(), source })?;
            let patch = match planned {
                ResumePlan::NotSuspended => return Ok(Attempt::Done(format!("unchanged {label}: {not_paused}\n"))),
                ResumePlan::SuspendedByOthers => {
                    return Ok(Attempt::Done(format!("unchanged {label}: {by_others}\n")));
                }
                ResumePlan::Restore(patch) => patch,
            };
            match kubeio::json_patch(api, name, patch, false).await {
                Ok(written) if resumed(&written) => Ok(Attempt::Done(format!("resumed {label}: {done}\n"))),
                Ok(_) => Err(Error::Unconfirmed { target: label.clone(), why: still.to_string() }),
                Err(e) if retry::is_conflict(&e) => Ok(Attempt::Conflict),
                Err(e) => Err(kubeio::classify_error(e, "patch", resource, scope)),
            }
        })
        .await
    }
}
