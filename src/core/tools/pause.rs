//! How each deploy tool is paused around a strip, so that its next reconcile cannot take
//! replicas back before its source stops setting them, and resumed afterwards
//! (`strip --pause-flux`, `resume`, `migrate`'s pause step). One type per tool's pause.

use serde_json::Value;

use super::argocd::Application;
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
    /// Argo CD syncs a new commit by itself while its Application has
    /// `spec.syncPolicy.automated`; without it, only a sync someone asks for runs (measured:
    /// docs/measured/argocd.md). The pause removes `automated`, with [`AUTOMATED_ANNOTATION`]
    /// holding exactly what it was, and `resume` puts exactly that back. An Application whose
    /// automated sync is off already has no pause: its automation is never turned on.
    ArgoCdAutoSync(ApplicationRef),
}

impl Pause {
    /// What the pause writes, in words.
    pub fn describe(&self) -> String {
        match self {
            Pause::FluxKustomization => format!("{}={} on the object", flux::RECONCILE_ANNOTATION, flux::PAUSED),
            Pause::HelmRelease(release) => format!("spec.suspend=true on HelmRelease {release}"),
            Pause::ArgoCdAutoSync(application) => {
                format!("automated sync off for Argo CD Application {application}")
            }
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

/// An Argo CD Application (`applications.argoproj.io`), the one whose tracking id an object
/// carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApplicationRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ApplicationRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The pauses that stop the deploy tools deploying an object: kustomize-controller's when a
/// Kustomization applies it (its labels, or its entry owning replicas), helm-controller's when a
/// HelmRelease does (its labels), Argo CD's when the Application that tracks it syncs
/// automatically. A helm-controller entry on an object without the labels names no
/// HelmRelease, so it gets no pause.
pub fn pauses_of(flux: Option<&FluxInfo>, argocd: Option<&Application>, owners: &[ReplicaOwner]) -> Vec<Pause> {
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
    if let Some(application) = argocd.filter(|a| a.automated) {
        pauses.push(Pause::ArgoCdAutoSync(application.reference()));
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

/// On an Argo CD Application: `strip --pause` removed `spec.syncPolicy.automated`, which was
/// this (its JSON, exactly).
pub const AUTOMATED_ANNOTATION: &str = "hpa-migrate.io/automated-sync-from";

fn automated(application: &Value) -> Option<&Value> {
    application.pointer("/spec/syncPolicy/automated").filter(|a| a.is_object())
}

fn automated_pointer() -> json_patch::jsonptr::PointerBuf {
    op::at(["spec", "syncPolicy", "automated"])
}

/// The pause of an Application as read: `automated` removed and recorded. `None` when its
/// automated sync is off already (absent, or `enabled: false`): it is left as it is, and no
/// resume turns it on.
pub fn plan_pause_automated(application: &Value) -> Result<Option<json_patch::Patch>, PlanError> {
    let resource_version = patch::resource_version(application)?;
    let Some(before) = automated(application).filter(|a| a.get("enabled") != Some(&Value::Bool(false))) else {
        return Ok(None);
    };
    let mut part = PatchPart::default();
    part.tests.push(op::test(automated_pointer(), before.clone()));
    part.changes.push(op::remove(automated_pointer()));
    let marker = patch::annotation_part(application, AUTOMATED_ANNOTATION, Some(&before.to_string()));
    Ok(Some(patch::combine(&resource_version, &[part, marker])))
}

/// What `resume` does to an Application as read: [`ResumePlan::Restore`] puts back exactly the
/// `automated` the pause recorded and removes the record; when someone turned automated sync
/// back on meanwhile, theirs is kept and only the record goes. Without the record it was not
/// paused by a strip: [`ResumePlan::NotSuspended`], left as it is.
pub fn plan_resume_automated(application: &Value) -> Result<ResumePlan, PlanError> {
    let resource_version = patch::resource_version(application)?;
    let Some(recorded) = application.pointer(&patch::annotation_path(AUTOMATED_ANNOTATION)).and_then(Value::as_str)
    else {
        return Ok(ResumePlan::NotSuspended);
    };
    let mut part = PatchPart::default();
    match automated(application) {
        Some(current) => part.tests.push(op::test(automated_pointer(), current.clone())),
        None => {
            let recorded: Value = serde_json::from_str(recorded)
                .ok()
                .filter(Value::is_object)
                .ok_or(PlanError::MarkerNotJson(AUTOMATED_ANNOTATION))?;
            match application.pointer("/spec/syncPolicy") {
                Some(policy) if policy.is_object() => {
                    part.tests.push(op::test(op::at(["spec", "syncPolicy"]), policy.clone()));
                    part.changes.push(op::add(automated_pointer(), recorded));
                }
                _ => part
                    .changes
                    .push(op::add(op::at(["spec", "syncPolicy"]), serde_json::json!({"automated": recorded}))),
            }
        }
    }
    let marker = patch::annotation_part(application, AUTOMATED_ANNOTATION, None);
    Ok(ResumePlan::Restore(patch::combine(&resource_version, &[part, marker])))
}

/// Whether an Application's automated sync is off and the record of a strip's pause is on it
/// (after a pause), as opposed to on with no record (after a resume).
pub fn automated_paused_by_strip(application: &Value) -> bool {
    automated(application).is_none() && application.pointer(&patch::annotation_path(AUTOMATED_ANNOTATION)).is_some()
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
        assert_eq!(pauses_of(Some(&kustomization), None, &[]), vec![Pause::FluxKustomization]);
        let helm_release = FluxInfo { helm_release: Some("shop/web".into()), ..FluxInfo::default() };
        let release = HelmReleaseRef { namespace: "shop".into(), name: "web".into() };
        assert_eq!(pauses_of(Some(&helm_release), None, &[]), vec![Pause::HelmRelease(release.clone())]);
        assert_eq!(Pause::HelmRelease(release).describe(), "spec.suspend=true on HelmRelease shop/web");
        assert_eq!(pauses_of(None, None, &[]), vec![]);

        let deployed = load("helm-controller-deployment");
        let namespace = deployed["metadata"]["namespace"].as_str().unwrap().to_string();
        assert_eq!(HelmReleaseRef::of(&deployed), Some(HelmReleaseRef { namespace, name: "web".into() }));
        assert_eq!(HelmReleaseRef::of(&load("flux-real-owns-replicas")), None);
    }

    #[test]
    fn an_application_paused_by_strip_resumes_to_exactly_its_automated_sync() {
        // Captured from the real Argo CD v3.2.11: automated sync with selfHeal.
        let captured = load("argocd-application-self-heal");
        let mut with_options = captured.clone();
        with_options["spec"]["syncPolicy"] = json!({
            "automated": {"prune": true, "selfHeal": false, "allowEmpty": true},
            "syncOptions": ["ServerSideApply=true"]
        });
        let mut bare = captured.clone();
        bare["spec"]["syncPolicy"]["automated"] = json!({});
        for before in [captured, with_options, bare] {
            let application = Application::from_value(&before).unwrap();
            assert!(application.automated && !application.paused_by_strip);
            let pauses = pauses_of(None, Some(&application), &[]);
            assert_eq!(pauses, vec![Pause::ArgoCdAutoSync(application.reference())]);

            let patch = plan_pause_automated(&before).unwrap().expect("automated sync is on");
            let paused = applied(&before, &patch);
            assert_eq!(automated(&paused), None, "{paused:#}");
            assert_eq!(paused["spec"]["syncPolicy"]["syncOptions"], before["spec"]["syncPolicy"]["syncOptions"]);
            let recorded = paused.pointer(&patch::annotation_path(AUTOMATED_ANNOTATION)).unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(recorded.as_str().unwrap()).unwrap(),
                before["spec"]["syncPolicy"]["automated"]
            );
            let application = Application::from_value(&paused).unwrap();
            assert!(!application.automated && !application.self_heal && application.paused_by_strip);
            assert_eq!(pauses_of(None, Some(&application), &[]), vec![], "paused: nothing more to pause");
            assert_eq!(plan_pause_automated(&paused).unwrap(), None, "a second strip leaves the record as it is");

            let ResumePlan::Restore(patch) = plan_resume_automated(&paused).unwrap() else { panic!("paused by strip") };
            let resumed = applied(&paused, &patch);
            assert_eq!(resumed["spec"], before["spec"], "exactly the automated sync it had");
            assert_eq!(resumed.pointer(&patch::annotation_path(AUTOMATED_ANNOTATION)), None, "the record is gone");
            assert!(!automated_paused_by_strip(&resumed));
            assert_eq!(plan_resume_automated(&resumed).unwrap(), ResumePlan::NotSuspended);
        }
    }

    #[test]
    fn automation_the_user_had_off_is_never_turned_on() {
        let mut manual = load("argocd-application-self-heal");
        manual["spec"]["syncPolicy"] = json!({"syncOptions": ["ServerSideApply=true"]});
        let mut disabled = load("argocd-application-self-heal");
        disabled["spec"]["syncPolicy"]["automated"]["enabled"] = false.into();
        for off in [manual, disabled] {
            assert!(!Application::from_value(&off).unwrap().automated);
            assert_eq!(plan_pause_automated(&off).unwrap(), None);
            assert_eq!(plan_resume_automated(&off).unwrap(), ResumePlan::NotSuspended);
        }
    }

    #[test]
    fn the_application_pause_is_guarded_and_keeps_automation_turned_on_meanwhile() {
        let before = load("argocd-application-self-heal");
        let patch = plan_pause_automated(&before).unwrap().unwrap();
        let mut moved = before.clone();
        moved["metadata"]["resourceVersion"] = "1".into();
        assert!(json_patch::patch(&mut moved, &patch).is_err(), "another writer's version");
        let mut changed = before.clone();
        changed["spec"]["syncPolicy"]["automated"]["prune"] = true.into();
        assert!(json_patch::patch(&mut changed, &patch).is_err(), "automation changed meanwhile");

        // Turned back on by someone while paused: resume keeps theirs and drops the record.
        let mut paused = applied(&before, &patch);
        paused["spec"]["syncPolicy"]["automated"] = json!({"prune": true});
        let ResumePlan::Restore(patch) = plan_resume_automated(&paused).unwrap() else { panic!("recorded") };
        let resumed = applied(&paused, &patch);
        assert_eq!(resumed["spec"]["syncPolicy"]["automated"], json!({"prune": true}));
        assert_eq!(resumed.pointer(&patch::annotation_path(AUTOMATED_ANNOTATION)), None);

        let mut garbled = applied(&before, &plan_pause_automated(&before).unwrap().unwrap());
        garbled["metadata"]["annotations"][AUTOMATED_ANNOTATION] = "on".into();
        assert_eq!(plan_resume_automated(&garbled), Err(PlanError::MarkerNotJson(AUTOMATED_ANNOTATION)));
    }
}
