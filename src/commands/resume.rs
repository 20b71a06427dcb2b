//! `resume TARGET... | -l SELECTOR`: removes the `kustomize.toolkit.fluxcd.io/reconcile:
//! disabled` annotation that `strip --pause-flux` set, so Flux reconciles the object again.

use kube::Client;

use crate::cli::ResumeArgs;
use crate::commands::flags::ScopeFlags;
use crate::commands::{Target, parse_targets};
use crate::core::patch;
use crate::core::tools::flux::RECONCILE_ANNOTATION as FLUX_RECONCILE_ANNOTATION;
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
        .filter(|w| w.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(FLUX_RECONCILE_ANNOTATION)))
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

async fn resume_one(
    client: &Client,
    kind: &WorkloadKind,
    namespace: &str,
    name: &str,
    printer: &Printer,
) -> Result<()> {
    let scope = NamespaceScope::Namespace(namespace.to_string());
    let api = kubeio::workload_api(client, kind, namespace);
    let label = format!("{namespace}/{}/{name}", kind.command_name());
    let line = retry::on_conflict(&label, |_| async {
        let object = kubeio::get_object(&api, name).await.map_err(|e| match api_code(&e) {
            Some(404) => {
                Error::NotFound { kind: kind.command_name(), name: name.to_string(), namespace: namespace.into() }
            }
            _ => kubeio::classify_error(e, "get", &kind.plural, &scope),
        })?;
        if object.pointer(&patch::annotation_path(FLUX_RECONCILE_ANNOTATION)).is_none() {
            return Ok(Attempt::Done(format!("unchanged {label}: Flux reconciliation is not paused\n")));
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
                Ok(Attempt::Done(format!("resumed {label}: Flux reconciles it again\n")))
            }
            Err(e) if retry::is_conflict(&e) => Ok(Attempt::Conflict),
            Err(e) => Err(kubeio::classify_error(e, "patch", &kind.plural, &scope)),
        }
    })
    .await?;
    printer.data(&line)
}
