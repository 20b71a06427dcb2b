//! Which deploy tool applies a live object next, from the traces each leaves on it.

use serde::Serialize;

use super::{PULUMI_MANAGER, TANKA_MANAGER, TERRAFORM_MANAGER, Traces, argocd, flux, kubectl};
use crate::core::helm;

/// A deploy tool, as `preflight --as` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    Flux,
    Argocd,
    Helm,
    /// `helm upgrade --server-side=true` (Helm 4): server-side even for a release that applied
    /// client-side, whose entries Helm migrates first.
    HelmServerSide,
    Kubectl,
    KubectlServerSide,
    /// `tk apply` with the server-side strategy: `kubectl apply --server-side` as `tanka`.
    Tanka,
    /// Any other server-side applier, by its field manager.
    Manager(String),
}

impl Tool {
    pub fn parse(text: &str) -> Self {
        match text {
            "flux" => Tool::Flux,
            "argocd" => Tool::Argocd,
            "helm" => Tool::Helm,
            "helm-server-side" => Tool::HelmServerSide,
            "kubectl" => Tool::Kubectl,
            "kubectl-server-side" => Tool::KubectlServerSide,
            "tanka" => Tool::Tanka,
            manager => Tool::Manager(manager.to_string()),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Tool::Flux => "flux".into(),
            Tool::Argocd => "argocd".into(),
            Tool::Helm => "helm".into(),
            Tool::HelmServerSide => "helm-server-side".into(),
            Tool::Kubectl => "kubectl".into(),
            Tool::KubectlServerSide => "kubectl-server-side".into(),
            Tool::Tanka => "tanka".into(),
            Tool::Manager(manager) => manager.clone(),
        }
    }

    /// How the user runs the deploy, for the step between ours.
    pub fn deploy_step(&self) -> &'static str {
        match self {
            Tool::Flux => "commit and push the change checked here; Flux applies it at its next reconcile",
            Tool::Argocd => "commit and push the change checked here, and sync the Argo CD application",
            Tool::Helm => "run the helm upgrade checked here",
            Tool::HelmServerSide => "run the helm upgrade --server-side=true checked here",
            Tool::Kubectl => "kubectl apply the manifests checked here",
            Tool::KubectlServerSide => "kubectl apply --server-side the manifests checked here",
            Tool::Tanka => "tk apply the environment checked here",
            Tool::Manager(_) => "deploy the change checked here",
        }
    }
}

/// Why no tool could be told from an object's traces: the user is asked for `--as`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untraced {
    #[error(
        "both a last-applied annotation and a kubectl server-side apply entry: pass --as kubectl or --as kubectl-server-side"
    )]
    BothKubectlTraces,
    #[error(
        "no deploy tool left a trace on it (Flux labels, Helm annotations, Argo CD tracking, last-applied annotation, an applier's managedFields entry): pass --as TOOL"
    )]
    NoTrace,
}

/// Which tool applies `live` next: `requested` (`--as`), else the traces tools leave on the
/// objects they manage, and the evidence it was told by.
pub fn detect(requested: Option<&Tool>, live: &impl Traces) -> Result<(Tool, String), Untraced> {
    if let Some(tool) = requested {
        return Ok((tool.clone(), "--as".into()));
    }
    if let Some(name) = live.label(flux::KUSTOMIZATION_NAME_LABEL) {
        return Ok((Tool::Flux, format!("label {}={name}", flux::KUSTOMIZATION_NAME_LABEL)));
    }
    // Read once: a JSON object's managedFields are decoded on each read.
    let entries = live.managed_fields();
    let has = |manager: &str, operation: Option<&str>| {
        entries.iter().any(|e| {
            e.manager.as_deref() == Some(manager) && operation.is_none_or(|op| e.operation.as_deref() == Some(op))
        })
    };
    if has(flux::KUSTOMIZE_MANAGER, Some("Apply")) {
        return Ok((Tool::Flux, format!("managedFields entry {} (Apply)", flux::KUSTOMIZE_MANAGER)));
    }
    if let Some(release) = live.annotation(helm::RELEASE_NAME_ANNOTATION) {
        return Ok((Tool::Helm, format!("annotation {}={release}", helm::RELEASE_NAME_ANNOTATION)));
    }
    if live.annotation(argocd::TRACKING_ANNOTATION).is_some() {
        return Ok((Tool::Argocd, format!("annotation {}", argocd::TRACKING_ANNOTATION)));
    }
    if let Some(manager) = argocd::MANAGERS.iter().find(|m| has(m, None)) {
        return Ok((Tool::Argocd, format!("managedFields entry {manager}")));
    }
    if has(TANKA_MANAGER, Some("Apply")) {
        return Ok((Tool::Tanka, format!("managedFields entry {TANKA_MANAGER} (Apply)")));
    }
    let applier = entries.iter().find_map(|e| {
        let manager = e.manager.as_deref()?;
        let known = manager.starts_with(PULUMI_MANAGER) || manager == TERRAFORM_MANAGER;
        (known && e.operation.as_deref() == Some("Apply")).then(|| manager.to_string())
    });
    if let Some(manager) = applier {
        return Ok((Tool::Manager(manager.clone()), format!("managedFields entry {manager} (Apply)")));
    }
    let client_side = live.annotation(kubectl::LAST_APPLIED_ANNOTATION).is_some();
    let server_side = has(kubectl::SERVER_SIDE_MANAGER, Some("Apply"));
    match (client_side, server_side) {
        (true, false) => Ok((Tool::Kubectl, format!("annotation {}", kubectl::LAST_APPLIED_ANNOTATION))),
        (false, true) => Ok((Tool::KubectlServerSide, "managedFields entry kubectl (Apply)".into())),
        (true, true) => Err(Untraced::BothKubectlTraces),
        (false, false) => Err(Untraced::NoTrace),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::core::fixtures::load;

    #[test]
    fn tools_are_told_from_their_traces_on_captured_objects() {
        let flux = load("flux-real-owns-replicas");
        assert_eq!(detect(None, &flux).map(|t| t.1), Ok(format!("label {}=shop", flux::KUSTOMIZATION_NAME_LABEL)));
        assert_eq!(detect(None, &load("flux-ssa-owns-replicas")).map(|t| t.0), Ok(Tool::Flux));
        assert_eq!(detect(None, &load("kubectl-csa-owns-replicas")).map(|t| t.0), Ok(Tool::Kubectl));
        assert_eq!(detect(None, &load("helm3-deployment")).map(|t| t.0), Ok(Tool::Helm));
        let bare = json!({"metadata": {"name": "web"}});
        assert_eq!(detect(None, &bare), Err(Untraced::NoTrace));
        assert_eq!(detect(Some(&Tool::KubectlServerSide), &bare).map(|t| t.0), Ok(Tool::KubectlServerSide));
        assert_eq!(Tool::parse("my-pipeline"), Tool::Manager("my-pipeline".into()));
    }

    fn applied_by(manager: &str, operation: &str) -> serde_json::Value {
        json!({"metadata": {"name": "web", "managedFields": [{"manager": manager, "operation": operation,
            "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]}})
    }

    #[test]
    fn every_argo_cd_manager_and_the_other_appliers_are_told() {
        for manager in argocd::MANAGERS {
            assert_eq!(detect(None, &applied_by(manager, "Update")).map(|t| t.0), Ok(Tool::Argocd), "{manager}");
        }
        assert_eq!(detect(None, &applied_by("tanka", "Apply")).map(|t| t.0), Ok(Tool::Tanka));
        let pulumi = "pulumi-kubernetes-0f3a9c1d";
        assert_eq!(detect(None, &applied_by(pulumi, "Apply")).map(|t| t.0), Ok(Tool::Manager(pulumi.into())));
        assert_eq!(detect(None, &applied_by("Terraform", "Apply")).map(|t| t.0), Ok(Tool::Manager("Terraform".into())));
        assert_eq!(detect(None, &applied_by("pulumi-kubernetes", "Update")), Err(Untraced::NoTrace));
    }
}
