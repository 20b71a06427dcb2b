//! Every deploy tool and controller this tool knows, in one place: the managedFields managers
//! each writes as, the labels and annotations each leaves on the objects it manages, how each
//! is told on a live object, and what each does to other managers' entries around its apply.
//! `check`, `strip`, `preflight`, `guard`, `verify` and `migrate` ask this module; a new deploy
//! tool is a row in [`classify`], a module beside [`flux`] for what it leaves on objects and
//! does around its apply, and a [`Tool`] if `preflight --as` can name it.

pub mod argocd;
mod detect;
pub mod flux;
pub mod helm;
pub mod kubectl;
pub mod pause;

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde::Serialize;
use serde_json::Value;

use super::workload::Workload;

pub use detect::{Tool, Untraced, detect};

/// The deploy mechanism (or controller) a managedFields manager belongs to. Serialized names
/// are part of the JSON output schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// The HPA controller (kube-controller-manager through `/scale`) or KEDA.
    Autoscaler,
    /// Flux kustomize-controller: forced server-side apply.
    FluxKustomize,
    /// Flux helm-controller: Helm's semantics.
    FluxHelm,
    /// Argo CD: client-side apply by default, server-side with `ServerSideApply=true`.
    ArgoCd,
    /// Helm: Helm 3 updates (three-way merge), Helm 4 applies.
    Helm,
    /// `kubectl apply --server-side`.
    KubectlServerSide,
    /// `kubectl apply` (client-side, with the last-applied annotation).
    KubectlClientSide,
    /// Grafana Tanka's server-side strategy (`kubectl apply --server-side --field-manager=tanka`);
    /// its default client-side strategy is plain `kubectl apply`, so kubectl's entries.
    Tanka,
    /// Pulumi's Kubernetes provider: `pulumi-kubernetes-<random>` applies server-side (the
    /// provider's default), `pulumi-kubernetes` updates in its client-side mode.
    Pulumi,
    /// Terraform's Kubernetes provider (`kubernetes_manifest` applies as `Terraform`).
    Terraform,
    /// A person: `kubectl scale`, `kubectl edit`, `kubectl patch`.
    Manual,
    /// Another writer of `/scale` than the autoscaler (a controller that sizes workloads): it
    /// owns replicas the way the HPA does and deploys nothing.
    ScaleWriter,
    /// The temporary owner `strip --method handover` adds, as the Kubernetes docs prescribe.
    Handover,
    /// A manager this tool does not recognise.
    Other,
}

impl Mechanism {
    /// A tool that deploys manifests: removing `replicas` from them can reset the field.
    pub fn is_deploy_tool(self) -> bool {
        matches!(
            self,
            Mechanism::FluxKustomize
                | Mechanism::FluxHelm
                | Mechanism::ArgoCd
                | Mechanism::Helm
                | Mechanism::KubectlServerSide
                | Mechanism::KubectlClientSide
                | Mechanism::Tanka
                | Mechanism::Pulumi
                | Mechanism::Terraform
        )
    }

    /// Either of Flux's controllers: its objects are paused with [`flux::RECONCILE_ANNOTATION`].
    pub fn is_flux(self) -> bool {
        matches!(self, Mechanism::FluxKustomize | Mechanism::FluxHelm)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Mechanism::Autoscaler => "autoscaler",
            Mechanism::FluxKustomize => "Flux (kustomize-controller)",
            Mechanism::FluxHelm => "Flux (helm-controller)",
            Mechanism::ArgoCd => "Argo CD",
            Mechanism::Helm => "Helm",
            Mechanism::KubectlServerSide => "kubectl apply --server-side",
            Mechanism::KubectlClientSide => "kubectl apply (client-side)",
            Mechanism::Tanka => "Tanka (server-side)",
            Mechanism::Pulumi => "Pulumi",
            Mechanism::Terraform => "Terraform",
            Mechanism::Manual => "manual kubectl",
            Mechanism::ScaleWriter => "another /scale writer",
            Mechanism::Handover => "handover",
            Mechanism::Other => "other",
        }
    }
}

/// The manager name `strip --method handover` uses unless told otherwise. It must not start
/// with `kubectl`: Flux takes such entries over (merges them into its own) before each apply.
pub const DEFAULT_HANDOVER_MANAGER: &str = "hpa-migrate-handover";

/// The temporary manager name the Kubernetes docs use in "Transferring ownership"; people who
/// followed the docs by hand have it.
pub const DOCS_HANDOVER_MANAGER: &str = "handover-to-hpa";

/// The controller manager's user agent: the HPA controller writes `/scale` as it.
pub const HPA_CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// The KEDA operator writes with no field manager, so its user agent names it: `keda`, the
/// binary's name in KEDA's images (measured on v2.21.0). It changes workloads only through
/// `/scale` (paused-replicas, activation, deactivation, raising to minReplicaCount).
/// (`keda-operator` is its HPAs' `app.kubernetes.io/managed-by` label, not a manager.)
pub const KEDA_MANAGER: &str = "keda";

/// Classifies a managedFields entry by its manager name, operation and subresource.
pub fn classify(manager: &str, operation: &str, subresource: Option<&str>, handover_managers: &[String]) -> Mechanism {
    let via_scale = subresource == Some("scale");
    if handover_managers.iter().any(|m| m == manager)
        || [DEFAULT_HANDOVER_MANAGER, DOCS_HANDOVER_MANAGER].contains(&manager)
    {
        return Mechanism::Handover;
    }
    if via_scale && [HPA_CONTROLLER_MANAGER, KEDA_MANAGER].contains(&manager) {
        return Mechanism::Autoscaler;
    }
    if via_scale && !kubectl::is_manager(manager) {
        return Mechanism::ScaleWriter;
    }
    match manager {
        flux::KUSTOMIZE_MANAGER => Mechanism::FluxKustomize,
        flux::HELM_MANAGER => Mechanism::FluxHelm,
        m if argocd::MANAGERS.contains(&m) => Mechanism::ArgoCd,
        helm::MANAGER => Mechanism::Helm,
        TANKA_MANAGER if operation == "Apply" => Mechanism::Tanka,
        m if m.starts_with(PULUMI_MANAGER) => Mechanism::Pulumi,
        TERRAFORM_MANAGER => Mechanism::Terraform,
        m => kubectl::classify(m, operation),
    }
}

/// Grafana Tanka's server-side strategy runs `kubectl apply --server-side --field-manager=tanka`
/// (`--force-conflicts` only with `tk apply --force`; tanka pkg/kubernetes/client/apply.go).
pub const TANKA_MANAGER: &str = "tanka";

/// Pulumi's Kubernetes provider: `pulumi-kubernetes` in its client-side mode, and
/// `pulumi-kubernetes-<random suffix>` per resource when it applies server-side (its default;
/// the `pulumi.com/patchFieldManager` annotation renames it).
pub const PULUMI_MANAGER: &str = "pulumi-kubernetes";

/// Terraform's Kubernetes provider: `kubernetes_manifest` applies as `Terraform` by default.
pub const TERRAFORM_MANAGER: &str = "Terraform";

/// What the tool rules read of an object, whether it comes as a typed [`Workload`] or as the
/// JSON the server returned (`preflight` reads live objects as JSON).
pub trait Traces {
    fn label(&self, key: &str) -> Option<&str>;
    fn annotation(&self, key: &str) -> Option<&str>;
    fn namespace(&self) -> &str;
    fn managed_fields(&self) -> Cow<'_, [ManagedFieldsEntry]>;

    /// Whether an entry of `manager` with `operation` is there.
    fn has_entry(&self, manager: &str, operation: &str) -> bool {
        self.managed_fields()
            .iter()
            .any(|e| e.manager.as_deref() == Some(manager) && e.operation.as_deref() == Some(operation))
    }
}

impl Traces for Workload {
    fn label(&self, key: &str) -> Option<&str> {
        Workload::label(self, key)
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        Workload::annotation(self, key)
    }

    fn namespace(&self) -> &str {
        Workload::namespace(self)
    }

    fn managed_fields(&self) -> Cow<'_, [ManagedFieldsEntry]> {
        Cow::Borrowed(self.metadata.managed_fields.as_deref().unwrap_or_default())
    }
}

impl Traces for Value {
    fn label(&self, key: &str) -> Option<&str> {
        self.pointer("/metadata/labels")?.get(key)?.as_str()
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.pointer("/metadata/annotations")?.get(key)?.as_str()
    }

    fn namespace(&self) -> &str {
        self.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default()
    }

    fn managed_fields(&self) -> Cow<'_, [ManagedFieldsEntry]> {
        let entries = self.pointer("/metadata/managedFields").and_then(|e| serde_json::from_value(e.clone()).ok());
        Cow::Owned(entries.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_manager_operation_and_subresource() {
        let none: &[String] = &[];
        let cases = [
            ("kube-controller-manager", "Update", Some("scale"), Mechanism::Autoscaler),
            ("kube-controller-manager", "Update", None, Mechanism::Other),
            ("keda", "Update", Some("scale"), Mechanism::Autoscaler),
            ("kustomize-controller", "Apply", None, Mechanism::FluxKustomize),
            ("helm-controller", "Update", None, Mechanism::FluxHelm),
            ("kubectl", "Apply", None, Mechanism::KubectlServerSide),
            ("kubectl", "Update", Some("scale"), Mechanism::Manual),
            ("kubectl-client-side-apply", "Update", None, Mechanism::KubectlClientSide),
            ("argocd-controller", "Apply", None, Mechanism::ArgoCd),
            ("argocd-controller", "Update", None, Mechanism::ArgoCd),
            ("argocd-application-controller", "Update", None, Mechanism::ArgoCd),
            ("helm", "Update", None, Mechanism::Helm),
            ("tanka", "Apply", None, Mechanism::Tanka),
            ("pulumi-kubernetes-3c1e9f2a", "Apply", None, Mechanism::Pulumi),
            ("pulumi-kubernetes", "Update", None, Mechanism::Pulumi),
            ("Terraform", "Apply", None, Mechanism::Terraform),
            ("vpa-recommender", "Update", Some("scale"), Mechanism::ScaleWriter),
            ("my-sizer", "Apply", Some("scale"), Mechanism::ScaleWriter),
            (DEFAULT_HANDOVER_MANAGER, "Apply", None, Mechanism::Handover),
            ("terraform", "Apply", None, Mechanism::Other),
        ];
        for (manager, operation, subresource, mechanism) in cases {
            assert_eq!(
                classify(manager, operation, subresource, none),
                mechanism,
                "{manager} ({operation}, {subresource:?})"
            );
        }
        assert_eq!(classify("my-handover", "Apply", None, &["my-handover".to_string()]), Mechanism::Handover);
        assert_eq!(
            classify("keda-operator", "Update", Some("scale"), none),
            Mechanism::ScaleWriter,
            "a label, not KEDA's manager"
        );
    }

    #[test]
    fn the_deploy_tools_are_the_ones_whose_manifests_can_reset_replicas() {
        for tool in [Mechanism::Tanka, Mechanism::Pulumi, Mechanism::Terraform, Mechanism::FluxKustomize] {
            assert!(tool.is_deploy_tool(), "{tool:?}");
        }
        for other in
            [Mechanism::Autoscaler, Mechanism::ScaleWriter, Mechanism::Manual, Mechanism::Handover, Mechanism::Other]
        {
            assert!(!other.is_deploy_tool(), "{other:?}");
        }
    }

    #[test]
    fn a_workload_and_its_json_read_the_same() {
        let value = crate::core::fixtures::load("flux-real-owns-replicas");
        let workload = crate::core::fixtures::deployment("flux-real-owns-replicas");
        assert_eq!(
            Traces::label(&value, flux::KUSTOMIZATION_NAME_LABEL),
            Traces::label(&workload, flux::KUSTOMIZATION_NAME_LABEL)
        );
        assert_eq!(Traces::namespace(&value), Traces::namespace(&workload));
        assert_eq!(value.managed_fields().len(), workload.managed_fields().len());
        assert!(value.has_entry(flux::KUSTOMIZE_MANAGER, "Apply"));
    }
}
