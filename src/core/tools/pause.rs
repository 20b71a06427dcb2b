//! How each deploy tool is paused around a strip, so that its next reconcile cannot take
//! replicas back before its source stops setting them, and resumed afterwards
//! (`strip --pause-flux`, `resume`, `migrate`'s pause step). One type per tool's pause.

use serde_json::Value;

use super::{Mechanism, Traces, flux};
use crate::core::deploy::FluxInfo;
use crate::core::ownership::ReplicaOwner;
use crate::core::patch::{self, PatchPart, PlanError, op};

/// One tool's pause of one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pause {
    /// Flux kustomize-controller skips an object annotated [`flux::RECONCILE_ANNOTATION`]`:
    /// disabled`; the annotation is written on the workload itself, in the strip's one patch, and
    /// `resume` removes it.
    FluxKustomization,
    /// Flux helm-controller ignores that annotation; it applies nothing while the HelmRelease
    /// has `spec.suspend: true` (measured: docs/measured/helm-controller.md, fact 8). The
    /// suspend is written on the HelmRelease with [`SUSPENDED_ANNOTATION`] saying what
    /// `spec.suspend` was, and `resume` puts exactly that back ([`ResumePlan`]).
    HelmRelease(HelmReleaseRef),
    // ArgoCdAutoSync: Argo CD's pause (the Application's automated sync turned off) comes here
    // once it is measured on the real Argo CD, with its line in `pauses_of`.
}

impl Pause {
    /// What the pause writes, in words.
    pub fn describe(&self) -> String {
        match self {
            Pause::FluxKustomization => format!("{}={} on the object", flux::RECONCILE_ANNOTATION, flux::PAUSED),
            Pause::HelmRelease(release) => format!("spec.suspend=true on HelmRelease {release}"),
        }
    }
}

/// A Flux HelmRelease, named by the `helm.toolkit.fluxcd.io/name` and `/namespace` labels
/// helm-controller leaves on the objects it deploys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HelmReleaseRef {
    pub namespace: String,
    pub name: String,
}

impl HelmReleaseRef {
    /// The HelmRelease that deploys `object`, from its labels (the label's namespace defaults to
    /// the object's).
    pub fn of(object: &impl Traces) -> Option<Self> {
        let name = object.label(flux::HELMRELEASE_NAME_LABEL)?;
        let namespace = object.label(flux::HELMRELEASE_NAMESPACE_LABEL).unwrap_or(object.namespace());
        Some(Self { namespace: namespace.into(), name: name.into() })
    }
}

impl std::fmt::Display for HelmReleaseRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The pauses that stop the Flux controllers deploying an object: kustomize-controller's when a
/// Kustomization applies it (its labels, or its entry owning replicas), helm-controller's when a
/// HelmRelease does (its labels). A helm-controller entry on an object without the labels names
/// no HelmRelease, so it gets no pause.
pub fn pauses_of(flux: Option<&FluxInfo>, owners: &[ReplicaOwner]) -> Vec<Pause> {
    let mut pauses = Vec::new();
    let kustomization = flux.is_some_and(|f| f.kustomization.is_some())
        || owners.iter().any(|o| o.mechanism == Mechanism::FluxKustomize);
    if kustomization {
        pauses.push(Pause::FluxKustomization);
    }
    let helm_release = flux.and_then(|f| f.helm_release.as_deref()).and_then(|r| r.split_once('/'));
    if let Some((namespace, name)) = helm_release {
        pauses.push(Pause::HelmRelease(HelmReleaseRef { namespace: namespace.into(), name: name.into() }));
    }
    pauses
}

/// On a HelmRelease: `strip --pause-flux` suspended it, and `spec.suspend` was this before
/// ([`UNSET`] or `false`).
pub const SUSPENDED_ANNOTATION: &str = "hpa-migrate.io/suspended-from";
/// The value of [`SUSPENDED_ANNOTATION`] when the HelmRelease had no `spec.suspend`.
pub const UNSET: &str = "unset";

fn suspend(helm_release: &Value) -> Option<&Value> {
    helm_release.pointer("/spec/suspend")
}

fn suspend_pointer() -> json_patch::jsonptr::PointerBuf {
    op::at(["spec", "suspend"])
}

/// The suspend of a HelmRelease as read: `None` when it is suspended already (by someone else,
/// or by an earlier strip): it is left as it is, and only its own resume unsuspends it.
pub fn plan_suspend(helm_release: &Value) -> Result<Option<json_patch::Patch>, PlanError> {
    let resource_version = patch::resource_version(helm_release)?;
    let before = suspend(helm_release);
    if before == Some(&Value::Bool(true)) {
        return Ok(None);
    }
    let mut part = PatchPart::default();
    if let Some(value) = before {
        part.tests.push(op::test(suspend_pointer(), value.clone()));
    }
    part.changes.push(op::add(suspend_pointer(), true));
    let prior = match before {
        None => UNSET.to_string(),
        Some(value) => value.to_string(),
    };
    let marker = patch::annotation_part(helm_release, SUSPENDED_ANNOTATION, Some(&prior));
    Ok(Some(patch::combine(&resource_version, &[part, marker])))
}

/// What `resume` does to a HelmRelease as read.
#[derive(Debug, PartialEq)]
pub enum ResumePlan {
    /// Not suspended: nothing to do.
    NotSuspended,
    /// Suspended, but not by `strip --pause-flux`: left suspended.
    SuspendedByOthers,
    /// Suspended by a strip: `spec.suspend` back to what it was, the marker removed.
    Restore(json_patch::Patch),
}

pub fn plan_resume(helm_release: &Value) -> Result<ResumePlan, PlanError> {
    let resource_version = patch::resource_version(helm_release)?;
    if suspend(helm_release) != Some(&Value::Bool(true)) {
        return Ok(ResumePlan::NotSuspended);
    }
    let Some(prior) = helm_release.pointer(&patch::annotation_path(SUSPENDED_ANNOTATION)).and_then(Value::as_str)
    else {
        return Ok(ResumePlan::SuspendedByOthers);
    };
    let mut part = PatchPart::default();
    part.tests.push(op::test(suspend_pointer(), true));
    part.changes.push(match prior {
        UNSET => op::remove(suspend_pointer()),
        _ => op::replace(suspend_pointer(), false),
    });
    let marker = patch::annotation_part(helm_release, SUSPENDED_ANNOTATION, None);
    Ok(ResumePlan::Restore(patch::combine(&resource_version, &[part, marker])))
}

/// Whether a HelmRelease is suspended and carries this tool's marker (after a suspend), or
/// neither (after a resume to an unset or false `spec.suspend`).
pub fn suspended_by_strip(helm_release: &Value) -> bool {
    suspend(helm_release) == Some(&Value::Bool(true))
        && helm_release.pointer(&patch::annotation_path(SUSPENDED_ANNOTATION)).is_some()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::core::fixtures::load;

    fn applied(object: &Value, patch: &json_patch::Patch) -> Value {
        let mut object = object.clone();
        json_patch::patch(&mut object, patch).unwrap();
        object
    }

    #[test]
    fn a_helm_release_suspended_by_strip_resumes_to_what_it_was() {
        let captured = load("helm-controller-helmrelease");
        assert_eq!(suspend(&captured), None, "the captured HelmRelease sets no spec.suspend");
        let mut explicit = captured.clone();
        explicit["spec"]["suspend"] = false.into();
        for before in [captured, explicit] {
            let patch = plan_suspend(&before).unwrap().expect("not suspended yet");
            let suspended = applied(&before, &patch);
            assert_eq!(suspend(&suspended), Some(&json!(true)));
            assert!(suspended_by_strip(&suspended));
            assert_eq!(plan_suspend(&suspended).unwrap(), None, "suspended already: left as it is");

            let ResumePlan::Restore(patch) = plan_resume(&suspended).unwrap() else { panic!("suspended by strip") };
            let resumed = applied(&suspended, &patch);
            assert_eq!(resumed["spec"], before["spec"], "exactly the prior suspend state");
            assert_eq!(resumed.pointer(&patch::annotation_path(SUSPENDED_ANNOTATION)), None);
            assert_eq!(plan_resume(&resumed).unwrap(), ResumePlan::NotSuspended);
        }
    }

    #[test]
    fn a_helm_release_the_user_suspended_is_never_resumed() {
        let mut user_suspended = load("helm-controller-helmrelease");
        user_suspended["spec"]["suspend"] = true.into();
        assert_eq!(plan_suspend(&user_suspended).unwrap(), None);
        assert_eq!(plan_resume(&user_suspended).unwrap(), ResumePlan::SuspendedByOthers);
        assert!(!suspended_by_strip(&user_suspended));
    }

    #[test]
    fn the_suspend_is_guarded_by_the_resource_version_and_the_value_read() {
        let mut before = load("helm-controller-helmrelease");
        before["spec"]["suspend"] = false.into();
        let patch = plan_suspend(&before).unwrap().unwrap();
        let mut moved = before.clone();
        moved["metadata"]["resourceVersion"] = "1".into();
        assert!(json_patch::patch(&mut moved, &patch).is_err(), "another writer's version");
        let mut suspended_meanwhile = before.clone();
        suspended_meanwhile["spec"]["suspend"] = true.into();
        assert!(json_patch::patch(&mut suspended_meanwhile, &patch).is_err(), "suspended by someone meanwhile");
    }

    #[test]
    fn each_flux_controller_has_its_own_pause() {
        let kustomization = FluxInfo { kustomization: Some("flux-system/apps".into()), ..FluxInfo::default() };
        assert_eq!(pauses_of(Some(&kustomization), &[]), vec![Pause::FluxKustomization]);
        let helm_release = FluxInfo { helm_release: Some("shop/web".into()), ..FluxInfo::default() };
        let release = HelmReleaseRef { namespace: "shop".into(), name: "web".into() };
        assert_eq!(pauses_of(Some(&helm_release), &[]), vec![Pause::HelmRelease(release.clone())]);
        assert_eq!(Pause::HelmRelease(release).describe(), "spec.suspend=true on HelmRelease shop/web");
        assert_eq!(pauses_of(None, &[]), vec![]);

        let deployed = load("helm-controller-deployment");
        let namespace = deployed["metadata"]["namespace"].as_str().unwrap().to_string();
        assert_eq!(HelmReleaseRef::of(&deployed), Some(HelmReleaseRef { namespace, name: "web".into() }));
        assert_eq!(HelmReleaseRef::of(&load("flux-real-owns-replicas")), None);
    }
}
