//! `resume TARGET...`: removes the `kustomize.toolkit.fluxcd.io/reconcile: disabled` annotation
//! that `strip --pause-flux` set, so Flux reconciles the object again.

use kube::Client;

use crate::commands::parse_targets;
use crate::core::patch;
use crate::core::tools::flux::RECONCILE_ANNOTATION as FLUX_RECONCILE_ANNOTATION;
use crate::error::{Error, ExitStatus, Result, api_code};
use crate::kubeio::{self, NamespaceScope};
use crate::output::Printer;
use crate::retry::{self, Attempt};

pub async fn run(client: &Client, scope: &NamespaceScope, targets: &[String], printer: &Printer) -> Result<ExitStatus> {
    let targets = parse_targets(targets)?;
    if targets.is_empty() {
        return Err(Error::Usage("name the workloads to resume (TARGET...)".into()));
    }
    let Some(namespace) = scope.namespace() else {
        return Err(Error::Usage(
            "a workload cannot be named across all namespaces: drop -A and pass -n NAMESPACE".into(),
        ));
    };
    for target in targets {
        let kind = kubeio::resolve_kind(client, &target.type_name).await?;
        let api = kubeio::workload_api(client, &kind, namespace);
        let label = format!("{namespace}/{}/{}", kind.command_name(), target.name);
        let line = retry::on_conflict(&label, |_| async {
            let object = kubeio::get_object(&api, &target.name).await.map_err(|e| match api_code(&e) {
                Some(404) => Error::NotFound {
                    kind: kind.command_name(),
                    name: target.name.clone(),
                    namespace: namespace.into(),
                },
                _ => kubeio::classify_error(e, "get", &kind.plural, scope),
            })?;
            if object.pointer(&patch::annotation_path(FLUX_RECONCILE_ANNOTATION)).is_none() {
                return Ok(Attempt::Done(format!("unchanged {label}: Flux reconciliation is not paused\n")));
            }
            let resource_version =
                patch::resource_version(&object).map_err(|source| Error::Plan { target: label.clone(), source })?;
            let patch = patch::annotation_patch(&resource_version, &object, FLUX_RECONCILE_ANNOTATION, None);
            match kubeio::json_patch(&api, &target.name, patch, false).await {
                Ok(_) => {
                    let after = kubeio::get_object(&api, &target.name)
                        .await
                        .map_err(|e| kubeio::classify_error(e, "get", &kind.plural, scope))?;
                    let expected =
                        patch::Expected { annotations: vec![(FLUX_RECONCILE_ANNOTATION, None)], ..Default::default() };
                    patch::confirm_workload(&object, &after, &expected)
                        .map_err(|why| Error::Unconfirmed { target: label.clone(), why: why.to_string() })?;
                    Ok(Attempt::Done(format!("resumed {label}: Flux reconciles it again\n")))
                }
                Err(e) if retry::is_conflict(&e) => Ok(Attempt::Conflict),
                Err(e) => Err(kubeio::classify_error(e, "patch", &kind.plural, scope)),
            }
        })
        .await?;
        printer.data(&line)?;
    }
    Ok(ExitStatus::Success)
}
