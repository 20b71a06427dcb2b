//! `resume TARGET... | -l SELECTOR`: lifts the pauses `strip --pause-flux` set, so Flux
//! reconciles the object again: kustomize-controller's `kustomize.toolkit.fluxcd.io/reconcile:
//! disabled` annotation is removed, and the HelmRelease that deploys the object gets back the
//! `spec.suspend` it had before the strip (one suspended by anyone else stays suspended).

use kube::Client;

use crate::cli::ResumeArgs;
use crate::commands::flags::ScopeFlags;
use crate::commands::{Target, parse_targets};
use crate::core::patch;
use crate::core::tools::flux::RECONCILE_ANNOTATION as FLUX_RECONCILE_ANNOTATION;
use crate::core::tools::pause::{self, HelmReleaseRef, ResumePlan};
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
        })
        .collect();
    if paused.is_empty() {
        printer
            .note(&format!("No workload selected by -l {selector} has Flux reconciliation paused: nothing to resume."));
    }
    for workload in paused {
        resume_one(client, &workload.kind, workload.namespace(), workload.name(), printer).await?;
    }
    Ok(())
}

/// Lifts the pauses of one workload: its annotation, then its HelmRelease's suspend.
async fn resume_one(
    client: &Client,
    kind: &WorkloadKind,
    namespace: &str,
    name: &str,
    printer: &Printer,
) -> Result<()> {
    let (line, helm_release) = resume_workload(client, kind, namespace, name).await?;
    if let Some(line) = line {
        printer.data(&line)?;
    }
    match helm_release {
        Some(release) => printer.data(&resume_helm_release(client, &release).await?),
        None => Ok(()),
    }
}

/// Removes the annotation; returns what to say (nothing when the workload's HelmRelease is its
/// only pause) and the HelmRelease that deploys it.
async fn resume_workload(
    client: &Client,
    kind: &WorkloadKind,
    namespace: &str,
    name: &str,
) -> Result<(Option<String>, Option<HelmReleaseRef>)> {
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
        let helm_release = HelmReleaseRef::of(&object);
        if object.pointer(&patch::annotation_path(FLUX_RECONCILE_ANNOTATION)).is_none() {
            let line = format!("unchanged {label}: Flux reconciliation is not paused\n");
            return Ok(Attempt::Done((helm_release.is_none().then_some(line), helm_release)));
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
                Ok(Attempt::Done((Some(line), helm_release)))
            }
            Err(e) if retry::is_conflict(&e) => Ok(Attempt::Conflict),
            Err(e) => Err(kubeio::classify_error(e, "patch", &kind.plural, &scope)),
        }
    })
    .await
}

/// Puts back the `spec.suspend` the HelmRelease had before `strip --pause-flux` suspended it;
/// one that is not suspended, or that someone else suspended, is left as it is.
async fn resume_helm_release(client: &Client, release: &HelmReleaseRef) -> Result<String> {
    let api = kubeio::helm_release_api(client, &release.namespace);
    let scope = NamespaceScope::Namespace(release.namespace.clone());
    let resource = "helmreleases.helm.toolkit.fluxcd.io";
    let label = format!("HelmRelease {release}");
    let (api, scope, label) = (&api, &scope, &label);
    retry::on_conflict(label, |_| async move {
        let object = match kubeio::get_object(api, &release.name).await {
            Ok(object) => object,
            // Its labels outlived it: there is nothing to resume.
            Err(e) if api_code(&e) == Some(404) => {
                return Ok(Attempt::Done(format!("unchanged {label}: not found\n")));
            }
            Err(e) => return Err(kubeio::classify_error(e, "get", resource, scope)),
        };
        let plan = pause::plan_resume(&object).map_err(|source| Error::Plan { target: label.clone(), source })?;
        let patch = match plan {
            ResumePlan::NotSuspended => return Ok(Attempt::Done(format!("unchanged {label}: not suspended\n"))),
            ResumePlan::SuspendedByOthers => {
                return Ok(Attempt::Done(format!(
                    "unchanged {label}: suspended, but not by strip --pause-flux; left suspended (flux resume helmrelease {} -n {})\n",
                    release.name, release.namespace
                )));
            }
            ResumePlan::Restore(patch) => patch,
        };
        match kubeio::json_patch(api, &release.name, patch, false).await {
            Ok(written) if written.pointer("/spec/suspend") != Some(&serde_json::Value::Bool(true)) => {
                Ok(Attempt::Done(format!("resumed {label}: helm-controller reconciles it again\n")))
            }
            Ok(_) => Err(Error::Unconfirmed { target: label.clone(), why: "still suspended after the patch".into() }),
            Err(e) if retry::is_conflict(&e) => Ok(Attempt::Conflict),
            Err(e) => Err(kubeio::classify_error(e, "patch", resource, scope)),
        }
    })
    .await
}
