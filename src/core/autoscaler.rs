//! Which autoscalers target a workload and whether they can act.
//!
//! An HPA targets a workload through `spec.scaleTargetRef` (group of `apiVersion`, `kind`,
//! `name`) in the same namespace. The HPA controller resolves the target through a REST mapper
//! that ignores the version and the case of the kind (seen on the real controller: an HPA with
//! `apps/v1beta2` and `kind: deployment` scales an `apps/v1` Deployment), so matching does too. A KEDA ScaledObject does the same through its own
//! `spec.scaleTargetRef` (apiVersion defaults to `apps/v1`, kind to `Deployment`) and drives an
//! HPA it owns (`status.hpaName`, default `keda-hpa-<name>`); the pair counts as one autoscaler.

use k8s_openapi::api::autoscaling::v2::{CrossVersionObjectReference, HorizontalPodAutoscaler};
use serde::Serialize;
use serde_json::Value;

use super::workload::Workload;

pub const KEDA_PAUSED: &str = "autoscaling.keda.sh/paused";
pub const KEDA_PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HpaState {
    pub name: String,
    pub min_replicas: Option<i32>,
    pub max_replicas: i32,
    pub current_replicas: Option<i32>,
    pub desired_replicas: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KedaState {
    pub scaled_object: String,
    pub min_replica_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replica_count: Option<i64>,
    /// `spec.idleReplicaCount`: what KEDA scales an idle target to, instead of 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_replica_count: Option<i64>,
    pub hpa_name: String,
    /// `autoscaling.keda.sh/paused` or `paused-replicas` is set.
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_replicas: Option<String>,
    pub conditions: Vec<Condition>,
}

impl KedaState {
    /// The size KEDA scales the target to itself while its triggers are idle, if it does:
    /// `idleReplicaCount` when set, else 0 when `minReplicaCount` is 0; with neither, KEDA leaves
    /// an idle target to its HPA (KEDA v2.21 `RequestScale` and `getIdleOrMinimumReplicaCount`).
    pub fn idle_size(&self) -> Option<i64> {
        self.idle_replica_count.or((self.min_replica_count == 0).then_some(0))
    }

    /// `autoscaling.keda.sh/paused-replicas` as KEDA reads it (an int32), if set and valid.
    pub fn paused_count(&self) -> Option<i64> {
        self.paused_replicas.as_deref().and_then(|v| v.trim().parse::<i32>().ok()).map(i64::from)
    }
}

/// The kind serialized as `kind` in output: `HorizontalPodAutoscaler` or `ScaledObject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AutoscalerKind {
    HorizontalPodAutoscaler,
    ScaledObject,
}

/// One autoscaler in charge of (or meant to be in charge of) a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaler {
    pub kind: AutoscalerKind,
    pub name: String,
    /// The HPA that does the scaling (for a ScaledObject, the one KEDA owns), if it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hpa: Option<HpaState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keda: Option<KedaState>,
    /// Why it cannot act now, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// Conditions that do not stop it from holding min/max (no metrics, for example).
    pub warnings: Vec<String>,
}

impl Autoscaler {
    pub fn min_replicas(&self) -> Option<i64> {
        match &self.keda {
            Some(keda) => Some(keda.min_replica_count),
            None => self.hpa.as_ref().map(|h| i64::from(h.min_replicas.unwrap_or(1))),
        }
    }

    /// The lowest count the autoscaler sets by itself: its minimum, or for a ScaledObject with
    /// `idleReplicaCount` the idle size below it (KEDA scales an idle target there through `/scale`).
    pub fn lowest_replicas(&self) -> Option<i64> {
        let min = self.min_replicas()?;
        Some(self.keda.as_ref().and_then(KedaState::idle_size).map_or(min, |idle| idle.min(min)))
    }

    /// `HorizontalPodAutoscaler/web` or `ScaledObject/web`.
    pub fn label(&self) -> String {
        let kind = match self.kind {
            AutoscalerKind::HorizontalPodAutoscaler => "hpa",
            AutoscalerKind::ScaledObject => "scaledobject",
        };
        format!("{kind}/{}", self.name)
    }
}

/// The group of an `apiVersion` (`apps/v1` -> `apps`, `v1` -> ``).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or("")
}

/// An HPA as the analysis keeps it: what it targets, the ScaledObject that owns it, and its
/// state. Its metrics, behavior and current metrics, most of a typed HPA, are never read.
#[derive(Debug, Clone, PartialEq)]
pub struct Hpa {
    pub namespace: String,
    pub target: CrossVersionObjectReference,
    /// The ScaledObject that owns it (KEDA sets a controller owner reference).
    pub scaled_object_owner: Option<String>,
    pub state: HpaState,
}

impl From<HorizontalPodAutoscaler> for Hpa {
    fn from(hpa: HorizontalPodAutoscaler) -> Self {
        let metadata = hpa.metadata;
        let scaled_object_owner = metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.kind == "ScaledObject" && group_of(&o.api_version) == "keda.sh")
            .map(|o| o.name);
        let spec = hpa.spec;
        let status = hpa.status;
        // Copied, not moved: collected in place, the typed conditions' larger buffer would stay.
        let conditions: Vec<Condition> = status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| Condition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .collect();
        let state = HpaState {
            name: metadata.name.unwrap_or_default(),
            min_replicas: spec.min_replicas,
            max_replicas: spec.max_replicas,
            current_replicas: status.as_ref().and_then(|s| s.current_replicas),
            desired_replicas: status.as_ref().map(|s| s.desired_replicas),
            last_scale_time: status.as_ref().and_then(|s| s.last_scale_time.as_ref()).map(|t| t.0.to_string()),
            conditions,
        };
        Self {
            namespace: metadata.namespace.unwrap_or_default(),
            target: spec.scale_target_ref,
            scaled_object_owner,
            state,
        }
    }
}

impl Hpa {
    pub fn name(&self) -> &str {
        &self.state.name
    }
}

pub fn hpa_targets(hpa: &Hpa, workload: &Workload) -> bool {
    let target = &hpa.target;
    hpa.namespace == workload.namespace()
        && target.name == workload.name()
        && target.kind.eq_ignore_ascii_case(&workload.kind.kind)
        && group_of(target.api_version.as_deref().unwrap_or("")) == workload.kind.group
}

/// What a ScaledObject's `spec.scaleTargetRef` names: `apiVersion` defaults to `apps/v1` and
/// `kind` to `Deployment`, as KEDA's do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleTarget {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

/// A ScaledObject as the analysis keeps it, reduced from the listed object: what it targets and
/// its state as KEDA reports it (the HPA it drives, its bounds, pauses and conditions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaledObject {
    pub namespace: String,
    pub target: ScaleTarget,
    pub state: KedaState,
}

impl ScaledObject {
    /// Reads a ScaledObject as the API returns it (`keda.sh/v1alpha1`).
    pub fn from_value(object: &Value) -> Self {
        let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty());
        let int = |pointer: &str| object.pointer(pointer).and_then(Value::as_i64);
        let name = text("/metadata/name").unwrap_or_default().to_string();
        // The HPA it drives: recorded in its status, else configured, else KEDA's default.
        let hpa_name = text("/status/hpaName")
            .or_else(|| text("/spec/advanced/horizontalPodAutoscalerConfig/name"))
            .map(str::to_string)
            .unwrap_or_else(|| format!("keda-hpa-{name}"));
        let annotation =
            |key: &str| object.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str);
        let paused_replicas = annotation(KEDA_PAUSED_REPLICAS).map(str::to_string);
        let paused = paused_replicas.is_some() || annotation(KEDA_PAUSED).is_some_and(|v| go_bool(v) != Some(false));
        Self {
            namespace: text("/metadata/namespace").unwrap_or_default().to_string(),
            target: ScaleTarget {
                api_version: text("/spec/scaleTargetRef/apiVersion").unwrap_or("apps/v1").to_string(),
                kind: text("/spec/scaleTargetRef/kind").unwrap_or("Deployment").to_string(),
                name: text("/spec/scaleTargetRef/name").unwrap_or_default().to_string(),
            },
            state: KedaState {
                scaled_object: name,
                min_replica_count: int("/spec/minReplicaCount").unwrap_or(0),
                max_replica_count: int("/spec/maxReplicaCount"),
                idle_replica_count: int("/spec/idleReplicaCount"),
                hpa_name,
                paused,
                paused_replicas,
                conditions: value_conditions(object),
            },
        }
    }

    pub fn name(&self) -> &str {
        &self.state.scaled_object
    }

    /// The name of the HPA it drives.
    pub fn hpa_name(&self) -> &str {
        &self.state.hpa_name
    }
}

pub fn scaled_object_targets(scaled_object: &ScaledObject, workload: &Workload) -> bool {
    let target = &scaled_object.target;
    scaled_object.namespace == workload.namespace()
        && target.name == workload.name()
        && target.kind.eq_ignore_ascii_case(&workload.kind.kind)
        && group_of(&target.api_version) == workload.kind.group
}

fn value_conditions(object: &Value) -> Vec<Condition> {
    let text = |c: &Value, key: &str| c.get(key).and_then(Value::as_str).map(str::to_string);
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|conditions| {
            conditions
                .iter()
                .map(|c| Condition {
                    type_: text(c, "type").unwrap_or_default(),
                    status: text(c, "status").unwrap_or_default(),
                    reason: text(c, "reason"),
                    message: text(c, "message"),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Judges an HPA: `Err(why)` when it cannot act, otherwise the warnings that do not stop it.
fn judge_hpa(state: &HpaState, workload: &Workload) -> (Option<String>, Vec<String>) {
    let mut warnings = Vec::new();
    if state.conditions.is_empty() {
        return (
            Some(format!(
                "HPA {} has no status yet: the HPA controller has not processed it (wait one sync period, 15 s by default)",
                state.name
            )),
            warnings,
        );
    }
    let reason = |c: &Condition| c.reason.clone().unwrap_or_default();
    let message = |c: &Condition| c.message.clone().unwrap_or_default();
    if let Some(c) = condition(&state.conditions, "AbleToScale").filter(|c| c.status == "False") {
        return (
            Some(format!("HPA {} cannot scale: AbleToScale=False ({}): {}", state.name, reason(c), message(c))),
            warnings,
        );
    }
    if let Some(c) = condition(&state.conditions, "ScalingActive").filter(|c| c.status == "False") {
        let why = reason(c);
        if why.starts_with("FailedGet") || why == "FailedComputeMetricsReplicas" {
            // Bounds are checked before metrics, so the HPA still enforces min/max.
            warnings.push(format!(
                "HPA {} has no usable metrics ({why}); it still holds replicas within min/max",
                state.name
            ));
        } else if why == "ScalingDisabled" || workload.replicas.spec == Some(0) {
            return (
                Some(format!(
                    "HPA {} is disabled because the target is at 0 replicas (ScalingDisabled); scale it up first",
                    state.name
                )),
                warnings,
            );
        } else {
            return (
                Some(format!("HPA {} is not active: ScalingActive=False ({why}): {}", state.name, message(c))),
                warnings,
            );
        }
    }
    if let (Some(spec), Some(min)) = (workload.replicas.spec, state.min_replicas)
        && spec < i64::from(min)
    {
        warnings.push(format!("{} replicas is below the HPA's minReplicas {min}; it will scale up", spec));
    }
    (None, warnings)
}

/// How KEDA reads a boolean annotation: Go's `strconv.ParseBool` (`1`, `t`, `T`, `TRUE`, `true`,
/// `True` and their false twins); KEDA takes any other value as true.
fn go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A ScaledObject allowed to idle at 0 (`minReplicaCount: 0` or `idleReplicaCount: 0`) whose
/// workload KEDA has scaled to 0: its HPA reports ScalingDisabled, which is KEDA's idle state.
fn keda_idle_at_zero(keda: &KedaState, hpa: &HpaState, workload: &Workload) -> bool {
    let idles_at_zero = keda.idle_size() == Some(0);
    let disabled = condition(&hpa.conditions, "ScalingActive")
        .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("ScalingDisabled"));
    idles_at_zero && disabled && workload.replicas.spec == Some(0)
}

/// Builds the autoscalers of `workload` from the HPAs and ScaledObjects in its namespace.
pub fn autoscalers_for(workload: &Workload, hpas: &[Hpa], scaled_objects: &[ScaledObject]) -> Vec<Autoscaler> {
    let mut found = Vec::new();
    for scaled_object in scaled_objects.iter().filter(|so| scaled_object_targets(so, workload)) {
        let name = scaled_object.name().to_string();
        let hpa_name = scaled_object.hpa_name();
        let namespace = workload.namespace();
        let hpa = hpas.iter().find(|h| h.name() == hpa_name && h.namespace == namespace);
        let keda = scaled_object.state.clone();
        let hpa_state = hpa.map(|h| h.state.clone());
        let mut warnings = Vec::new();
        let not_ready = condition(&keda.conditions, "Ready").filter(|c| c.status == "False");
        // Seen on the real operator: a trigger that cannot be read (its system unreachable)
        // makes the ScaledObject Ready=False with reason TriggerError, but the HPA it created
        // stays and still holds minReplicas and maxReplicas, like an HPA without metrics.
        let trigger_error =
            not_ready.is_some_and(|c| c.reason.as_deref() == Some("TriggerError")) && hpa_state.is_some();
        let blocked = if keda.paused {
            Some(format!(
                "ScaledObject {name} is paused ({}); KEDA deletes its HPA while paused: remove the annotation",
                if keda.paused_replicas.is_some() { KEDA_PAUSED_REPLICAS } else { KEDA_PAUSED }
            ))
        } else if let Some(ready) = not_ready.filter(|_| !trigger_error) {
            Some(format!(
                "ScaledObject {name} is not Ready ({}): {}",
                ready.reason.clone().unwrap_or_default(),
                ready.message.clone().unwrap_or_default()
            ))
        } else if let Some(state) = &hpa_state {
            let (blocked, hpa_warnings) = judge_hpa(state, workload);
            warnings = hpa_warnings;
            if let Some(ready) = not_ready.filter(|_| trigger_error) {
                warnings.push(format!(
                    "ScaledObject {name} is not Ready (TriggerError: {}); its HPA {} still holds replicas within min/max",
                    ready.message.clone().unwrap_or_default(),
                    state.name
                ));
            }
            if blocked.is_some() && keda_idle_at_zero(&keda, state, workload) {
                // Seen on the real operator: with minReplicaCount 0 it scales an idle target to 0
                // through /scale, and the HPA then disables itself; KEDA activates it again.
                warnings.push(format!(
                    "ScaledObject {name} scaled the workload to 0 while its triggers are idle; HPA {} is disabled at 0 \
                     (ScalingDisabled) until KEDA activates the workload again",
                    state.name
                ));
                None
            } else {
                blocked
            }
        } else {
            Some(format!("ScaledObject {name} has no HPA {hpa_name}: is the KEDA operator running?"))
        };
        if keda.min_replica_count == 0 {
            warnings.push(format!(
                "ScaledObject {name} has minReplicaCount 0: KEDA scales the workload to 0 when idle, by design"
            ));
        }
        found.push(Autoscaler {
            kind: AutoscalerKind::ScaledObject,
            name,
            hpa: hpa_state,
            keda: Some(keda),
            blocked,
            warnings,
        });
    }
    for hpa in hpas.iter().filter(|h| hpa_targets(h, workload)) {
        let owned_by_listed_scaled_object = hpa
            .scaled_object_owner
            .as_deref()
            .is_some_and(|owner| found.iter().any(|a| a.keda.as_ref().is_some_and(|k| k.scaled_object == owner)));
        if owned_by_listed_scaled_object {
            continue;
        }
        let state = hpa.state.clone();
        let (blocked, warnings) = judge_hpa(&state, workload);
        found.push(Autoscaler {
            kind: AutoscalerKind::HorizontalPodAutoscaler,
            name: state.name.clone(),
            hpa: Some(state),
            keda: None,
            blocked,
            warnings,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::core::fixtures::{deployment, load};

    /// A ScaledObject and an HPA captured from the real KEDA operator, moved into the
    /// workload's namespace (each test captured them in a namespace of its own).
    fn captured(scaled_object: &str, hpa: Option<&str>, workload: &Workload) -> (Value, Vec<Hpa>) {
        let mut so = load(scaled_object);
        so["metadata"]["namespace"] = workload.namespace().into();
        let hpas = hpa
            .map(|name| {
                let mut hpa = load(name);
                hpa["metadata"]["namespace"] = workload.namespace().into();
                serde_json::from_value::<HorizontalPodAutoscaler>(hpa).unwrap().into()
            })
            .into_iter()
            .collect();
        (so, hpas)
    }

    fn only(workload: &Workload, so: Value, hpas: &[Hpa]) -> Autoscaler {
        let mut found = autoscalers_for(workload, hpas, &[ScaledObject::from_value(&so)]);
        assert_eq!(found.len(), 1, "{found:#?}");
        found.remove(0)
    }

    #[test]
    fn a_scaled_object_is_read_with_keda_s_defaults() {
        let captured = ScaledObject::from_value(&load("keda-scaledobject-ready"));
        assert_eq!((captured.name(), captured.hpa_name()), ("web", "keda-hpa-web"));
        assert_eq!(captured.target.name, "web");
        let bare = ScaledObject::from_value(&serde_json::json!({
            "metadata": {"name": "api", "namespace": "shop"}, "spec": {"scaleTargetRef": {"name": "api"}}
        }));
        assert_eq!(
            bare.target,
            ScaleTarget { api_version: "apps/v1".into(), kind: "Deployment".into(), name: "api".into() }
        );
        assert_eq!((bare.hpa_name(), bare.state.min_replica_count, bare.state.paused), ("keda-hpa-api", 0, false));
        assert!(scaled_object_targets(&bare, &{
            let mut w = deployment("keda-idle-deployment");
            w.metadata.namespace = Some("shop".into());
            w.metadata.name = Some("api".into());
            w
        }));
    }

    #[test]
    fn the_real_operators_hpa_is_one_autoscaler_with_its_scaled_object() {
        let workload = deployment("keda-paused-replicas-deployment");
        let (so, hpas) = captured("keda-scaledobject-ready", Some("keda-hpa"), &workload);
        let autoscaler = only(&workload, so, &hpas);
        assert_eq!(autoscaler.kind, AutoscalerKind::ScaledObject);
        assert_eq!(autoscaler.hpa.as_ref().unwrap().name, "keda-hpa-web");
        assert_eq!(autoscaler.blocked, None);
        assert!(autoscaler.warnings.iter().any(|w| w.contains("FailedGetExternalMetric")), "{:?}", autoscaler.warnings);
    }

    #[test]
    fn paused_is_read_as_keda_reads_it() {
        let workload = deployment("keda-paused-replicas-deployment");
        // `paused: "False"`: the real operator kept (re-created) its HPA and reported Paused=False.
        let (so, hpas) = captured("keda-scaledobject-paused-false", Some("keda-hpa"), &workload);
        assert_eq!(so["metadata"]["annotations"][KEDA_PAUSED], "False");
        let autoscaler = only(&workload, so, &hpas);
        assert!(!autoscaler.keda.as_ref().unwrap().paused);
        assert_eq!(autoscaler.blocked, None);

        let (so, _) = captured("keda-scaledobject-paused", None, &workload);
        let autoscaler = only(&workload, so, &[]);
        assert!(autoscaler.blocked.as_deref().unwrap().contains(KEDA_PAUSED), "{:?}", autoscaler.blocked);

        assert_eq!(
            [go_bool("0"), go_bool("F"), go_bool("TRUE"), go_bool("yes")],
            [Some(false), Some(false), Some(true), None]
        );
    }

    #[test]
    fn an_idle_scaled_object_at_zero_is_in_charge() {
        let workload = deployment("keda-idle-deployment");
        assert_eq!(workload.replicas.spec, Some(0));
        let (so, hpas) = captured("keda-scaledobject-idle", Some("keda-hpa-scaling-disabled"), &workload);
        let autoscaler = only(&workload, so.clone(), &hpas);
        assert_eq!(autoscaler.blocked, None);
        assert!(autoscaler.warnings.iter().any(|w| w.contains("ScalingDisabled")), "{:?}", autoscaler.warnings);

        assert_eq!(autoscaler.keda.as_ref().unwrap().idle_size(), Some(0));

        // With a minimum above 0, KEDA would not idle it there: the disabled HPA blocks.
        let mut with_minimum = so;
        with_minimum["spec"]["minReplicaCount"] = 2.into();
        let autoscaler = only(&workload, with_minimum.clone(), &hpas);
        assert!(autoscaler.blocked.as_deref().unwrap().contains("ScalingDisabled"), "{:?}", autoscaler.blocked);
        assert_eq!(autoscaler.keda.as_ref().unwrap().idle_size(), None);
        assert_eq!(autoscaler.lowest_replicas(), Some(2));
        // Unless idleReplicaCount says where it idles: there, below the minimum (so a guard's
        // floor at the minimum would refuse KEDA's own deactivation).
        with_minimum["spec"]["idleReplicaCount"] = 0.into();
        let autoscaler = only(&workload, with_minimum, &hpas);
        assert_eq!(autoscaler.blocked, None);
        assert_eq!(autoscaler.keda.as_ref().unwrap().idle_size(), Some(0));
        assert_eq!((autoscaler.min_replicas(), autoscaler.lowest_replicas()), (Some(2), Some(0)));
    }

    #[test]
    fn paused_replicas_is_the_count_keda_scales_to() {
        let workload = deployment("keda-paused-replicas-deployment");
        let (so, _) = captured("keda-scaledobject-paused-replicas", None, &workload);
        assert_eq!(so["status"]["pausedReplicaCount"], 3);
        let autoscaler = only(&workload, so, &[]);
        assert_eq!(autoscaler.keda.as_ref().unwrap().paused_count(), Some(3));
        let (so, _) = captured("keda-scaledobject-paused", None, &workload);
        assert_eq!(only(&workload, so, &[]).keda.unwrap().paused_count(), None);
    }

    #[test]
    fn a_trigger_error_with_its_hpa_is_a_warning_and_without_it_blocks() {
        let workload = deployment("keda-paused-replicas-deployment");
        let (so, hpas) = captured("keda-scaledobject-trigger-error", Some("keda-hpa-trigger-error"), &workload);
        let autoscaler = only(&workload, so.clone(), &hpas);
        assert_eq!(autoscaler.blocked, None);
        assert!(autoscaler.warnings.iter().any(|w| w.contains("TriggerError")), "{:?}", autoscaler.warnings);

        let autoscaler = only(&workload, so, &[]);
        assert!(
            autoscaler.blocked.as_deref().unwrap().contains("is not Ready (TriggerError)"),
            "{:?}",
            autoscaler.blocked
        );
    }
}
