//! The verdict per workload: a stable identifier, a one-line reason and the next command.

use serde::Serialize;

use super::autoscaler::Autoscaler;
use super::deploy::{DeployInfo, Hazard, StripMethod};
use super::ownership::ReplicaOwner;
use super::tools::Mechanism;
use super::tools::pause::{self, Pause};
use super::workload::{Replicas, Workload, WorkloadKind};

/// Stable identifiers, documented in README.md ("Verdicts").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// An autoscaler is in charge and no deploy mechanism would reset replicas.
    Safe,
    /// An autoscaler is in charge but deploy mechanisms still own replicas.
    StripNeeded,
    /// Nothing targets the workload.
    AutoscalerMissing,
    /// An autoscaler exists but cannot act.
    AutoscalerNotReady,
    /// Two or more autoscalers target the workload.
    AmbiguousAutoscalers,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::StripNeeded => "strip-needed",
            Verdict::AutoscalerMissing => "autoscaler-missing",
            Verdict::AutoscalerNotReady => "autoscaler-not-ready",
            Verdict::AmbiguousAutoscalers => "ambiguous-autoscalers",
        }
    }
}

/// Everything `check` reports about one workload.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Assessment {
    pub namespace: String,
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub verdict: Verdict,
    pub reason: String,
    pub next: String,
    pub warnings: Vec<String>,
    pub replicas: Replicas,
    pub replica_owners: Vec<ReplicaOwner>,
    pub hazards: Vec<Hazard>,
    pub deploy: DeployInfo,
    pub autoscalers: Vec<Autoscaler>,
    /// The `guard` mark on the workload (null when it is not guarded).
    pub guard: Option<super::guard::Mark>,
    #[serde(skip)]
    pub workload_kind: WorkloadKind,
}

impl Assessment {
    /// Whether a Flux controller's entry owns replicas.
    pub fn flux_owns_replicas(&self) -> bool {
        self.replica_owners.iter().any(|o| o.mechanism.is_flux())
    }

    /// The pauses of the deploy tools that reconcile the object (`strip --pause` writes them,
    /// `resume` lifts them): one per Flux controller that deploys it, and Argo CD's when its
    /// Application syncs automatically.
    pub fn pauses(&self) -> Vec<Pause> {
        pause::pauses_of(self.deploy.flux.as_ref(), self.deploy.argocd_application.as_ref(), &self.replica_owners)
    }

    /// Whether this tool's Flux pause is on the object.
    pub fn flux_paused(&self) -> bool {
        self.deploy.flux.as_ref().is_some_and(|f| f.reconcile_disabled)
    }

    pub fn target(&self) -> String {
        format!("{}/{}", self.workload_kind.command_name(), self.name)
    }

    pub fn strip_methods(&self) -> Vec<StripMethod> {
        let mut methods: Vec<StripMethod> = self.hazards.iter().map(|h| h.method).collect();
        methods.sort();
        methods.dedup();
        methods
    }
}

pub fn assess(
    workload: &Workload,
    owners: Vec<ReplicaOwner>,
    deploy: DeployInfo,
    hazards: Vec<Hazard>,
    autoscalers: Vec<Autoscaler>,
) -> Assessment {
    let namespace = workload.namespace().to_string();
    let target = workload.target();
    let mut warnings: Vec<String> = autoscalers.iter().flat_map(|a| a.warnings.iter().cloned()).collect();
    // Entries Flux takes over before its next apply (a `kubectl patch` on an object it manages)
    // are Flux's hazards, and as much a reason to pause it.
    let owned_by = |m: Mechanism| owners.iter().any(|o| o.mechanism == m) || hazards.iter().any(|h| h.mechanism == m);
    // kustomize-controller is paused by an annotation on the object, helm-controller by its
    // HelmRelease's suspend (measured: docs/measured/helm-controller.md); --pause-flux does both.
    let flux_owns = owned_by(Mechanism::FluxKustomize);
    let flux_paused = deploy.flux.as_ref().is_some_and(|f| f.reconcile_disabled);
    if flux_owns && !flux_paused {
        warnings.push(
            "Flux owns replicas and reconciliation of this object is not paused: its next forced apply re-takes \
             ownership after a strip; pause it first (strip --pause-flux)"
                .to_string(),
        );
    }
    let helm_controller_owns = owned_by(Mechanism::FluxHelm);
    let helm_release_named = deploy.flux.as_ref().is_some_and(|f| f.helm_release.is_some());
    if helm_controller_owns {
        let release = deploy.flux.as_ref().and_then(|f| f.helm_release.as_deref()).unwrap_or("NAMESPACE/NAME");
        let (release_namespace, release_name) = release.split_once('/').unwrap_or(("NAMESPACE", release));
        warnings.push(format!(
            "helm-controller owns replicas: suspend HelmRelease {release} before the strip (flux suspend helmrelease \
             {release_name} -n {release_namespace}) and resume it only once its values no longer render replicas; \
             a reconcile in between upgrades replicas back (strip --pause-flux suspends it, resume puts back what it was)"
        ));
    }
    for applier in super::deploy::covered_appliers(&owners) {
        warnings.push(format!(
            "{} still applies replicas, but shares it with {}: removing replicas from its manifest keeps the field",
            applier.label(),
            owners
                .iter()
                .filter(|o| matches!(o.mechanism, Mechanism::Autoscaler | Mechanism::Handover))
                .map(|o| o.manager.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(helm) = deploy.helm.as_ref().and_then(|h| h.problem.as_ref().map(|p| (h, p))) {
        warnings.push(format!("Helm release {}/{}: {}", helm.0.namespace, helm.0.release, helm.1));
    }

    let (verdict, reason, next) = match autoscalers.as_slice() {
        // A deploy tool that owns replicas would refuse an autoscaler created beside it (Helm:
        // "invalid ownership metadata"), and the usual change brings the autoscaler with it.
        [] if !hazards.is_empty() => (
            Verdict::AutoscalerMissing,
            "no HorizontalPodAutoscaler or ScaledObject targets this workload".to_string(),
            format!(
                "add the autoscaler to the change that removes replicas, and check that change before deploying it: \
                 kubectl hpa-migrate preflight -n {namespace} -f MANIFESTS"
            ),
        ),
        [] => (
            Verdict::AutoscalerMissing,
            "no HorizontalPodAutoscaler or ScaledObject targets this workload".to_string(),
            format!(
                "create one, e.g. kubectl autoscale -n {namespace} {target} --min={} --max={}",
                workload.replicas.spec.unwrap_or(1).max(1),
                workload.replicas.spec.unwrap_or(1).max(1) * 2
            ),
        ),
        [_, _, ..] => (
            Verdict::AmbiguousAutoscalers,
            format!(
                "{} autoscalers target this workload ({}); they fight over replicas",
                autoscalers.len(),
                autoscalers.iter().map(Autoscaler::label).collect::<Vec<_>>().join(", ")
            ),
            format!("keep one and delete the others, e.g. kubectl delete -n {namespace} {}", autoscalers[1].label()),
        ),
        [autoscaler] => match &autoscaler.blocked {
            Some(why) => (Verdict::AutoscalerNotReady, why.clone(), not_ready_next(autoscaler, &namespace)),
            None if !hazards.is_empty() => {
                let names: Vec<String> = hazards.iter().map(|h| h.owner.clone()).collect();
                let mut command = format!("kubectl hpa-migrate strip -n {namespace} {target}");
                if (flux_owns && !flux_paused) || (helm_controller_owns && helm_release_named) {
                    command.push_str(" --pause-flux");
                }
                (
                    Verdict::StripNeeded,
                    format!("{} is in charge, but replicas is still owned by {}", autoscaler.label(), names.join(", ")),
                    command,
                )
            }
            None => (
                Verdict::Safe,
                format!("{} is in charge and no deploy mechanism would reset replicas", autoscaler.label()),
                format!(
                    "remove `replicas` from the manifests and deploy; then kubectl hpa-migrate verify -n {namespace} {target} --since 15m"
                ),
            ),
        },
    };
    Assessment {
        namespace,
        kind: workload.kind.kind.clone(),
        api_version: workload.kind.api_version(),
        name: workload.name().to_string(),
        verdict,
        reason,
        next,
        warnings,
        replicas: workload.replicas,
        replica_owners: owners,
        hazards,
        deploy,
        autoscalers,
        guard: super::guard::Mark::of(workload),
        workload_kind: workload.kind.clone(),
    }
}

fn not_ready_next(autoscaler: &Autoscaler, namespace: &str) -> String {
    if let Some(keda) = &autoscaler.keda {
        if keda.paused {
            return format!(
                "kubectl annotate -n {namespace} scaledobject/{} autoscaling.keda.sh/paused- autoscaling.keda.sh/paused-replicas-",
                keda.scaled_object
            );
        }
        return format!("kubectl describe -n {namespace} scaledobject/{}", keda.scaled_object);
    }
    format!("kubectl describe -n {namespace} {}", autoscaler.label())
}
