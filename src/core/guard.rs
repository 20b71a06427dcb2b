//! The guard: a ValidatingAdmissionPolicy evaluated by kube-apiserver itself that refuses any
//! write bringing a guarded workload's `spec.replicas` below its floor; or, in pin mode, a
//! MutatingAdmissionPolicy (GA in 1.36) that lets such a write of the object through with the
//! live count kept (see [`pin_policy`]).
//!
//! Validating admission sees the object after defaulting, so a deploy that removed `replicas`
//! arrives as `replicas: 1`. Writes through `/scale` (`kubectl scale`, the HPA) are the
//! resource `deployments/scale` with a `Scale` object that carries none of the parent's labels
//! or annotations, so an objectSelector cannot see them (measured on the test plane).
//!
//! The floors are compiled into the policy as CEL literals (`{'shop/web': 3}`), keyed by the
//! request's namespace and name, which both the workload and its `/scale` requests carry. The
//! policy takes no params on purpose: with a built-in `paramKind` (the workloads themselves),
//! kube-apiserver 1.36 stops its shared informer for that kind the first time no binding names
//! it and never restarts it (kubernetes/kubernetes#130887, fix in #141015), so after one
//! `guard off` every later guard would be evaluated against a frozen copy of the workloads,
//! until the API server restarts. Measured on the test plane. The list of guarded workloads is
//! kept as JSON in an annotation of the policy, and the CEL is generated from it.
//!
//! Each workload also carries a mark (a label and annotations, written as the guard's own field
//! manager) so that `check`, `guard status` and `kubectl get -l` show it.
//!
//! Everything here is pure: the policy objects, the mark, the floor choice.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::workload::{AppsKind, Workload};

/// The label that marks a guarded workload; its value is the mode (`deny`, `warn` or `pin`).
pub const GUARD_LABEL: &str = "hpa-migrate.io/guard";
/// The annotation holding the floor: writes that bring replicas below it are refused.
pub const FLOOR_ANNOTATION: &str = "hpa-migrate.io/guard-floor";
/// The annotation naming the autoscaler in charge when the guard was set.
pub const AUTOSCALER_ANNOTATION: &str = "hpa-migrate.io/guard-autoscaler";
/// The field manager of the mark and the policy objects. Not `kubectl...` (Flux takes those
/// over) nor any deploy tool's name, so no deploy tool's apply removes the mark: a forced apply
/// only takes fields its manifest sets, and client-side apply and Helm 3 only remove fields
/// they set before.
pub const FIELD_MANAGER: &str = "hpa-migrate-guard";
/// The policy objects' version, part of their names: a new rule ships under a new name.
pub const POLICY_VERSION: &str = "v1";
/// Every guard policy object starts with this name (any version).
pub const POLICY_PREFIX: &str = "hpa-migrate-guard-";
/// The label on the policy objects, so they can be told from anyone else's.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "kubectl-hpa-migrate";
/// The label on the policy objects naming the workloads they guard (`deployments`).
pub const KIND_LABEL: &str = "hpa-migrate.io/guard-kind";
/// The annotation on a policy listing what it guards (JSON), from which its CEL is generated.
pub const ENTRIES_ANNOTATION: &str = "hpa-migrate.io/guarded";
/// Stamped by pin mode on a workload whose write it rewrote: the count it kept.
pub const PINNED_REPLICAS_ANNOTATION: &str = "hpa-migrate.io/pinned-replicas";
/// Stamped by pin mode beside [`PINNED_REPLICAS_ANNOTATION`]: when (RFC 3339).
pub const PINNED_AT_ANNOTATION: &str = "hpa-migrate.io/pinned-at";

/// What the guard does with a write that would bring replicas below the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The write is refused (a ValidatingAdmissionPolicy).
    Deny,
    /// The write goes through and the client is sent a warning (a rehearsal).
    Warn,
    /// The write goes through with the live count kept (a MutatingAdmissionPolicy, see
    /// [`pin_policy`]).
    Pin,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Deny, Mode::Warn, Mode::Pin];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Deny => "deny",
            Mode::Warn => "warn",
            Mode::Pin => "pin",
        }
    }

    /// The plural of the admission policy resource this mode's policy is (its binding's is the
    /// same followed by `bindings`).
    pub fn policy_resource(self) -> &'static str {
        match self {
            Mode::Deny | Mode::Warn => "validatingadmissionpolicies",
            Mode::Pin => "mutatingadmissionpolicies",
        }
    }

    /// The plural of its binding's resource.
    pub fn binding_resource(self) -> &'static str {
        match self {
            Mode::Deny | Mode::Warn => "validatingadmissionpolicybindings",
            Mode::Pin => "mutatingadmissionpolicybindings",
        }
    }

    /// The policy's kind (its binding's is the same followed by `Binding`).
    pub fn policy_kind(self) -> &'static str {
        match self {
            Mode::Deny | Mode::Warn => "ValidatingAdmissionPolicy",
            Mode::Pin => "MutatingAdmissionPolicy",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Mode::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

/// The guard has a policy for the [`AppsKind`]s only. Other resources with a `/scale`
/// subresource (Argo Rollouts, custom resources) are refused with a usage error: their
/// `spec.replicas` is not always defaulted to 1 nor always at `spec.replicas`, so each would
/// need a rule of its own.
impl AppsKind {
    /// `hpa-migrate-guard-v1-deployments-deny`: the policy and its binding share the name.
    pub fn policy_name(self, mode: Mode) -> String {
        format!("{POLICY_PREFIX}{POLICY_VERSION}-{}-{}", self.plural(), mode.as_str())
    }
}

/// One guarded workload, as a policy lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub namespace: String,
    pub name: String,
    pub floor: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<String>,
}

impl Entry {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The entries a policy object lists (none when the annotation is missing or unreadable).
pub fn entries_of(policy: &Value) -> Vec<Entry> {
    policy
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ENTRIES_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// `entries` with `entry` in place of any entry for the same workload, sorted.
pub fn with_entry(entries: &[Entry], entry: Entry) -> Vec<Entry> {
    let mut out: Vec<Entry> = entries.iter().filter(|e| e.key() != entry.key()).cloned().collect();
    out.push(entry);
    out.sort();
    out
}

/// `entries` without the workload `namespace/name`.
pub fn without_entry(entries: &[Entry], namespace: &str, name: &str) -> Vec<Entry> {
    entries.iter().filter(|e| !(e.namespace == namespace && e.name == name)).cloned().collect()
}

/// A CEL string literal. Kubernetes names and autoscaler labels never contain quotes or
/// backslashes, but the policy must not be broken by one either way.
fn cel_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn cel_map(pairs: impl Iterator<Item = (String, String)>) -> String {
    let items: Vec<String> = pairs.map(|(k, v)| format!("{}: {v}", cel_string(&k))).collect();
    format!("{{{}}}", items.join(", "))
}

/// The CEL variables. `floor` is 0 for a workload the policy does not list; a `Scale` object
/// omits `spec.replicas` when it is 0. A write is refused when it brings replicas below the
/// floor and lower than they were, so a workload already below its floor (after a `--warn`
/// rehearsal) can still be scaled back up, or have its mark removed.
fn variables(kind: AppsKind, entries: &[Entry]) -> Value {
    let floors = cel_map(entries.iter().map(|e| (e.key(), e.floor.to_string())));
    let autoscalers =
        cel_map(entries.iter().map(|e| (e.key(), cel_string(e.autoscaler.as_deref().unwrap_or_default()))));
    json!([
        {"name": "key", "expression": "request.namespace + '/' + request.name"},
        {"name": "floors", "expression": floors},
        {"name": "autoscalers", "expression": autoscalers},
        {"name": "floor", "expression": "variables.key in variables.floors ? variables.floors[variables.key] : 0"},
        {"name": "autoscaler", "expression": "variables.key in variables.autoscalers ? variables.autoscalers[variables.key] : ''"},
        {
            "name": "replicas",
            "expression": "has(object.spec) && has(object.spec.replicas) ? int(object.spec.replicas) : 0"
        },
        {
            "name": "before",
            "expression": "oldObject == null ? -1 : (has(oldObject.spec) && has(oldObject.spec.replicas) ? int(oldObject.spec.replicas) : 0)"
        },
        {"name": "target", "expression": format!("'{}/' + request.name", kind.command_name())}
    ])
}

const RULE: &str = "variables.floor == 0 || variables.replicas >= variables.floor || (variables.before >= 0 && variables.replicas >= variables.before)";

/// The refusal: what was refused, the floor, the autoscaler, and the commands that fix it.
const MESSAGE: &str = "'hpa-migrate guard: ' + variables.target + ' in namespace ' + request.namespace + \
    ': this write sets replicas to ' + string(variables.replicas) + \
    (variables.before >= 0 ? ' (from ' + string(variables.before) + ')' : '') + \
    ', below its floor of ' + string(variables.floor) + \
    (variables.autoscaler != '' ? ' (' + variables.autoscaler + ' is in charge)' : '') + \
    '. A deploy without replicas resets them to 1 while a deploy tool still owns them: hand them over with ' + \
    'kubectl hpa-migrate check -n ' + request.namespace + ' ' + variables.target + ', then strip; ' + \
    'to lift the guard: kubectl hpa-migrate guard off -n ' + request.namespace + ' ' + variables.target";

fn policy_labels(kind: AppsKind, mode: Mode) -> Value {
    json!({ MANAGED_BY_LABEL: MANAGED_BY, KIND_LABEL: kind.plural(), GUARD_LABEL: mode.as_str() })
}

/// The label selector of the policy objects (every version) of one kind, or of all kinds.
pub fn policy_selector(kind: Option<AppsKind>) -> String {
    match kind {
        Some(kind) => format!("{MANAGED_BY_LABEL}={MANAGED_BY},{KIND_LABEL}={}", kind.plural()),
        None => format!("{MANAGED_BY_LABEL}={MANAGED_BY},{KIND_LABEL}"),
    }
}

/// The admission policy of one kind and mode, guarding `entries` (not empty: a policy that
/// guards nothing is deleted instead). It only matches the namespaces of its entries.
pub fn policy(kind: AppsKind, mode: Mode, entries: &[Entry]) -> Value {
    if mode == Mode::Pin {
        return pin_policy(kind, entries);
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {
            "name": kind.policy_name(mode),
            "labels": policy_labels(kind, mode),
            "annotations": {ENTRIES_ANNOTATION: serde_json::to_string(entries).expect("entries serialize")}
        },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": match_constraints(entries, &[kind.plural().to_string(), format!("{}/scale", kind.plural())], &["CREATE", "UPDATE"]),
            "variables": variables(kind, entries),
            "validations": [{"expression": RULE, "messageExpression": MESSAGE, "reason": "Forbidden"}]
        }
    })
}

/// The policy's `matchConstraints`: `resources` of the apps group, in the entries' namespaces.
fn match_constraints(entries: &[Entry], resources: &[String], operations: &[&str]) -> Value {
    let namespaces: BTreeSet<&str> = entries.iter().map(|e| e.namespace.as_str()).collect();
    json!({
        "namespaceSelector": {
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}]
        },
        "resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["*"], "resources": resources, "operations": operations}]
    })
}

/// The MutatingAdmissionPolicy of pin mode: an UPDATE of a listed workload whose `spec.replicas`
/// falls below its floor and below what it was (a deploy without replicas arrives defaulted to
/// one replica) is rewritten to keep `oldObject.spec.replicas`, and stamped with
/// [`PINNED_REPLICAS_ANNOTATION`] and [`PINNED_AT_ANNOTATION`]. Everything else passes untouched.
///
/// Not matched, on purpose: `/scale` writes (the HPA, KEDA, `kubectl scale`) are the autoscaler's
/// own decisions, never a deploy dropping the field, and KEDA's idle scale to 0 and
/// `paused-replicas` must go through; a CREATE has no live count to keep.
///
/// CEL has no clock: the time stamped is the latest `managedFields` time of the incoming object,
/// which the API server sets to now for the writer's entry before admission whenever its write
/// changes the object (and lowering replicas does).
pub fn pin_policy(kind: AppsKind, entries: &[Entry]) -> Value {
    let floors = cel_map(entries.iter().map(|e| (e.key(), e.floor.to_string())));
    let key = "(request.namespace + '/' + request.name)";
    let replicas = |object: &str| format!("(has({object}.spec.replicas) ? int({object}.spec.replicas) : 0)");
    let lowered = format!(
        "{key} in {floors} && {new} < {floors}[{key}] && {new} < {old}",
        new = replicas("object"),
        old = replicas("oldObject")
    );
    let times = "object.metadata.managedFields.filter(f, has(f.time)).map(f, string(f.time))";
    let stamp = format!(
        "Object{{spec: Object.spec{{replicas: oldObject.spec.replicas}}, metadata: Object.metadata{{annotations: {{\
         '{PINNED_REPLICAS_ANNOTATION}': string(oldObject.spec.replicas), \
         '{PINNED_AT_ANNOTATION}': has(object.metadata.managedFields) && size({times}) > 0 ? {times}.max() : ''}}}}}}"
    );
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {
            "name": kind.policy_name(Mode::Pin),
            "labels": policy_labels(kind, Mode::Pin),
            "annotations": {ENTRIES_ANNOTATION: serde_json::to_string(entries).expect("entries serialize")}
        },
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "matchConstraints": match_constraints(entries, &[kind.plural().to_string()], &["UPDATE"]),
            "matchConditions": [{"name": "lowers-replicas-below-the-floor", "expression": lowered}],
            "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": stamp}}]
        }
    })
}

/// The binding of one kind and mode: Deny refuses, Warn lets the write through with a warning,
/// Pin binds the mutation.
pub fn binding(kind: AppsKind, mode: Mode) -> Value {
    let name = kind.policy_name(mode);
    let spec = match mode {
        Mode::Deny => json!({"policyName": name, "validationActions": ["Deny"]}),
        Mode::Warn => json!({"policyName": name, "validationActions": ["Warn"]}),
        Mode::Pin => json!({"policyName": name}),
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": format!("{}Binding", mode.policy_kind()),
        "metadata": {"name": name, "labels": policy_labels(kind, mode)},
        "spec": spec
    })
}

/// Whether a write's answer (`after`, a dry run's included) carries a pin stamp that `before`
/// (the live object) did not: pin mode rewrote that write to keep the count.
pub fn pinned_by_the_write(before: &Value, after: &Value) -> bool {
    let stamp = |object: &Value| {
        let annotations = &object["metadata"]["annotations"];
        (annotations.get(PINNED_REPLICAS_ANNOTATION).cloned(), annotations.get(PINNED_AT_ANNOTATION).cloned())
    };
    let (replicas, _) = stamp(after);
    replicas.is_some_and(|r| {
        r.as_str().and_then(|r| r.parse::<i64>().ok()) == after.pointer("/spec/replicas").and_then(Value::as_i64)
    }) && stamp(after) != stamp(before)
}

/// The evidence pin mode leaves on a workload it kept: the count kept, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pinned {
    pub replicas: i64,
    /// RFC 3339, to the second; `None` when the write's time could not be read.
    pub at: Option<String>,
}

impl Pinned {
    pub fn read(annotations: Option<&BTreeMap<String, String>>) -> Option<Self> {
        let annotations = annotations?;
        let replicas = annotations.get(PINNED_REPLICAS_ANNOTATION)?.parse().ok()?;
        let at = annotations.get(PINNED_AT_ANNOTATION).filter(|t| !t.is_empty()).cloned();
        Some(Pinned { replicas, at })
    }

    pub fn of(workload: &Workload) -> Option<Self> {
        Self::read(workload.metadata.annotations.as_ref())
    }

    /// `a deploy without replicas was pinned at 5 at 2026-12-03T15:48:54Z`.
    pub fn describe(&self) -> String {
        let at = self.at.as_deref().map(|t| format!(" at {t}")).unwrap_or_default();
        format!("a deploy without replicas (or below the floor) was pinned at {}{at}", self.replicas)
    }
}

/// A workload's guard, as its labels and annotations record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mark {
    pub mode: Mode,
    /// `None` when the annotation is missing or not a number: the policy then guards nothing.
    pub floor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<String>,
    /// The evidence pin mode left: the last write it kept the count of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Pinned>,
}

impl Mark {
    pub fn read(
        labels: Option<&BTreeMap<String, String>>,
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Option<Self> {
        let mode = labels?.get(GUARD_LABEL)?;
        let annotation = |key: &str| annotations.and_then(|a| a.get(key));
        Some(Mark {
            // An unknown value is selected by neither binding; show it as the rehearsal it is
            // closest to, with no floor.
            mode: Mode::parse(mode).unwrap_or(Mode::Warn),
            floor: Mode::parse(mode)
                .and(annotation(FLOOR_ANNOTATION))
                .filter(|f| !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|f| f.parse().ok()),
            autoscaler: annotation(AUTOSCALER_ANNOTATION).cloned(),
            pinned: Pinned::read(annotations),
        })
    }

    pub fn of(workload: &Workload) -> Option<Self> {
        Self::read(workload.metadata.labels.as_ref(), workload.metadata.annotations.as_ref())
    }

    /// `deny >= 3`, as `check` and `status` show it.
    pub fn summary(&self) -> String {
        match self.floor {
            Some(floor) => format!("{} >= {floor}", self.mode.as_str()),
            None => format!("{} (no valid floor)", self.mode.as_str()),
        }
    }
}

/// The server-side apply body that marks a workload, sent as [`FIELD_MANAGER`].
pub fn mark_body(kind: AppsKind, name: &str, mode: Mode, floor: i64, autoscaler: Option<&str>) -> Value {
    let mut annotations = json!({ FLOOR_ANNOTATION: floor.to_string() });
    if let Some(autoscaler) = autoscaler {
        annotations[AUTOSCALER_ANNOTATION] = json!(autoscaler);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": kind.kind(),
        "metadata": {"name": name, "labels": {GUARD_LABEL: mode.as_str()}, "annotations": annotations}
    })
}

/// The apply body that removes the mark: applying nothing as [`FIELD_MANAGER`] drops every field
/// it alone owns, and the server deletes its now empty managedFields entry.
pub fn unmark_body(kind: AppsKind, name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind.kind(), "metadata": {"name": name}})
}

/// Why no floor could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorError {
    /// No autoscaler is in charge and no `--floor` was given.
    NoAutoscaler { why: String },
    /// The autoscaler's minimum (or KEDA's idle size) is 0: a floor of 0 guards nothing.
    ZeroMinimum { autoscaler: String },
    /// The workload already runs below the floor.
    AlreadyBelow { replicas: i64, floor: i64 },
}

impl FloorError {
    pub fn explain(&self, target: &str) -> String {
        match self {
            FloorError::NoAutoscaler { why } => format!(
                "{target}: no autoscaler is in charge ({why}), so there is no minimum to guard; pass --floor N to guard it anyway"
            ),
            FloorError::ZeroMinimum { autoscaler } => format!(
                "{target}: {autoscaler} may scale to 0 (its minimum, or KEDA's idleReplicaCount, is 0), so its floor would guard nothing; pass --floor N (a scale to 0 is then refused too)"
            ),
            FloorError::AlreadyBelow { replicas, floor } => format!(
                "{target} runs {replicas} replica(s), below the floor of {floor}: scale it up first, or pass a lower --floor"
            ),
        }
    }
}

/// The floor of one workload: `--floor` if given, else the minimum of the autoscaler in charge
/// (`in_charge`: its label and minimum, `None` with the reason when none is). Refused when the
/// workload already runs below it (`replicas`: its `spec.replicas`).
pub fn choose_floor(
    explicit: Option<i64>,
    in_charge: Result<(String, Option<i64>), String>,
    replicas: Option<i64>,
) -> Result<(i64, Option<String>), FloorError> {
    let (floor, autoscaler) = match (explicit, in_charge) {
        (Some(floor), in_charge) => (floor, in_charge.ok().map(|(label, _)| label)),
        (None, Err(why)) => return Err(FloorError::NoAutoscaler { why }),
        (None, Ok((autoscaler, min))) => match min.unwrap_or(1) {
            0 => return Err(FloorError::ZeroMinimum { autoscaler }),
            min => (min, Some(autoscaler)),
        },
    };
    match replicas {
        Some(replicas) if replicas < floor => Err(FloorError::AlreadyBelow { replicas, floor }),
        _ => Ok((floor, autoscaler)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::workload::WorkloadKind;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn entry(namespace: &str, name: &str, floor: i64) -> Entry {
        Entry { namespace: namespace.into(), name: name.into(), floor, autoscaler: Some(format!("hpa/{name}")) }
    }

    #[test]
    fn names_are_versioned_per_kind_and_mode() {
        assert_eq!(AppsKind::Deployment.policy_name(Mode::Deny), "hpa-migrate-guard-v1-deployments-deny");
        assert_eq!(AppsKind::StatefulSet.policy_name(Mode::Warn), "hpa-migrate-guard-v1-statefulsets-warn");
        assert_eq!(AppsKind::StatefulSet.policy_name(Mode::Pin), "hpa-migrate-guard-v1-statefulsets-pin");
        let binding = binding(AppsKind::Deployment, Mode::Warn);
        assert_eq!(binding["metadata"]["name"], binding["spec"]["policyName"]);
        assert_eq!(binding["spec"]["validationActions"], json!(["Warn"]));
        assert!(binding["spec"].get("paramRef").is_none());
    }

    #[test]
    fn the_policy_sees_the_workload_and_its_scale_subresource_in_the_guarded_namespaces_only() {
        let entries = [entry("shop", "web", 3), entry("shop", "api", 2), entry("tools", "db", 4)];
        let policy = policy(AppsKind::StatefulSet, Mode::Deny, &entries);
        assert!(policy["spec"].get("paramKind").is_none());
        let rule = &policy["spec"]["matchConstraints"]["resourceRules"][0];
        assert_eq!(rule["resources"], json!(["statefulsets", "statefulsets/scale"]));
        assert_eq!(rule["operations"], json!(["CREATE", "UPDATE"]));
        let namespaces = &policy["spec"]["matchConstraints"]["namespaceSelector"]["matchExpressions"][0];
        assert_eq!(namespaces["values"], json!(["shop", "tools"]));
        let floors = policy["spec"]["variables"].as_array().unwrap().iter().find(|v| v["name"] == "floors").unwrap();
        assert_eq!(floors["expression"], "{'shop/web': 3, 'shop/api': 2, 'tools/db': 4}");
        assert_eq!(policy["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
    }

    #[test]
    fn the_policy_lists_its_entries_and_they_read_back() {
        let entries = with_entry(&[entry("shop", "web", 3)], entry("shop", "api", 2));
        let policy = policy(AppsKind::Deployment, Mode::Deny, &entries);
        assert_eq!(entries_of(&policy), entries);
        // Guarding again replaces the entry; removing it leaves the others.
        let again = with_entry(&entries, entry("shop", "web", 5));
        assert_eq!(again.iter().find(|e| e.name == "web").unwrap().floor, 5);
        assert_eq!(again.len(), 2);
        assert_eq!(without_entry(&again, "shop", "web"), vec![entry("shop", "api", 2)]);
        assert_eq!(entries_of(&json!({"metadata": {}})), Vec::new());
    }

    #[test]
    fn pin_keeps_the_old_count_on_an_update_of_the_object_only_and_stamps_it() {
        let entries = [entry("shop", "web", 3), entry("tools", "db", 4)];
        let policy = policy(AppsKind::Deployment, Mode::Pin, &entries);
        assert_eq!(policy["kind"], "MutatingAdmissionPolicy");
        assert_eq!(policy["metadata"]["name"], "hpa-migrate-guard-v1-deployments-pin");
        assert_eq!(entries_of(&policy), entries);
        let rule = &policy["spec"]["matchConstraints"]["resourceRules"][0];
        assert_eq!(rule["resources"], json!(["deployments"]), "not /scale: the autoscalers' own writes");
        assert_eq!(rule["operations"], json!(["UPDATE"]), "a CREATE has no live count to keep");
        let condition = policy["spec"]["matchConditions"][0]["expression"].as_str().unwrap();
        let floors = "{'shop/web': 3, 'tools/db': 4}";
        assert_eq!(
            condition,
            format!(
                "(request.namespace + '/' + request.name) in {floors} && \
                 (has(object.spec.replicas) ? int(object.spec.replicas) : 0) < {floors}[(request.namespace + '/' + request.name)] && \
                 (has(object.spec.replicas) ? int(object.spec.replicas) : 0) < (has(oldObject.spec.replicas) ? int(oldObject.spec.replicas) : 0)"
            )
        );
        let mutation = &policy["spec"]["mutations"][0];
        assert_eq!(mutation["patchType"], "ApplyConfiguration");
        let expression = mutation["applyConfiguration"]["expression"].as_str().unwrap();
        assert!(expression.starts_with("Object{spec: Object.spec{replicas: oldObject.spec.replicas}"), "{expression}");
        assert!(expression.contains("'hpa-migrate.io/pinned-replicas': string(oldObject.spec.replicas)"));
        let binding = binding(AppsKind::StatefulSet, Mode::Pin);
        assert_eq!(binding["kind"], "MutatingAdmissionPolicyBinding");
        assert_eq!(binding["spec"], json!({"policyName": "hpa-migrate-guard-v1-statefulsets-pin"}));
    }

    #[test]
    fn the_pin_evidence_reads_back_and_says_what_was_kept_and_when() {
        let stamped = map(&[(PINNED_REPLICAS_ANNOTATION, "5"), (PINNED_AT_ANNOTATION, "2026-12-03T15:48:54Z")]);
        let pinned = Pinned::read(Some(&stamped)).unwrap();
        assert_eq!(pinned, Pinned { replicas: 5, at: Some("2026-12-03T15:48:54Z".into()) });
        assert_eq!(
            pinned.describe(),
            "a deploy without replicas (or below the floor) was pinned at 5 at 2026-12-03T15:48:54Z"
        );
        let untimed = Pinned::read(Some(&map(&[(PINNED_REPLICAS_ANNOTATION, "5"), (PINNED_AT_ANNOTATION, "")])));
        assert_eq!(untimed.unwrap().at, None);
        assert_eq!(Pinned::read(Some(&map(&[(PINNED_REPLICAS_ANNOTATION, "five")]))), None);
        assert_eq!(Pinned::read(None), None);
    }

    #[test]
    fn a_write_is_pinned_when_its_answer_carries_a_new_stamp_matching_its_count() {
        let object = |replicas: i64, stamp: Option<(&str, &str)>| {
            let mut o = json!({"metadata": {"annotations": {}}, "spec": {"replicas": replicas}});
            if let Some((kept, at)) = stamp {
                o["metadata"]["annotations"][PINNED_REPLICAS_ANNOTATION] = json!(kept);
                o["metadata"]["annotations"][PINNED_AT_ANNOTATION] = json!(at);
            }
            o
        };
        let live = object(5, None);
        assert!(pinned_by_the_write(&live, &object(5, Some(("5", "2026-12-03T15:48:54Z")))));
        assert!(!pinned_by_the_write(&live, &object(1, None)));
        let stamped = object(5, Some(("5", "2026-12-03T15:48:54Z")));
        assert!(!pinned_by_the_write(&stamped, &stamped.clone()), "an old stamp, carried over");
        assert!(pinned_by_the_write(&stamped, &object(5, Some(("5", "2026-12-03T16:00:00Z")))));
        assert!(!pinned_by_the_write(&live, &object(1, Some(("5", "2026-12-03T16:00:00Z")))));
    }

    #[test]
    fn cel_literals_cannot_be_broken_out_of() {
        assert_eq!(cel_string("a'b\\c"), "'a\\'b\\\\c'");
    }

    #[test]
    fn the_mark_reads_back_as_written() {
        let body = mark_body(AppsKind::Deployment, "web", Mode::Warn, 3, Some("hpa/web"));
        let labels: BTreeMap<String, String> = serde_json::from_value(body["metadata"]["labels"].clone()).unwrap();
        let annotations: BTreeMap<String, String> =
            serde_json::from_value(body["metadata"]["annotations"].clone()).unwrap();
        let mark = Mark::read(Some(&labels), Some(&annotations)).unwrap();
        assert_eq!(mark, Mark { mode: Mode::Warn, floor: Some(3), autoscaler: Some("hpa/web".into()), pinned: None });
        assert_eq!(mark.summary(), "warn >= 3");
        assert_eq!(unmark_body(AppsKind::Deployment, "web")["metadata"], json!({"name": "web"}));
    }

    #[test]
    fn a_broken_or_missing_mark_shows_no_floor() {
        assert_eq!(Mark::read(Some(&map(&[("app", "web")])), None), None);
        let broken = Mark::read(Some(&map(&[(GUARD_LABEL, "deny")])), Some(&map(&[(FLOOR_ANNOTATION, "three")])));
        assert_eq!(broken.unwrap().floor, None);
        let unknown = Mark::read(Some(&map(&[(GUARD_LABEL, "on")])), Some(&map(&[(FLOOR_ANNOTATION, "3")])));
        assert_eq!(unknown.unwrap().floor, None);
    }

    #[test]
    fn the_floor_is_the_minimum_of_the_autoscaler_in_charge() {
        let hpa = || Ok(("hpa/web".to_string(), Some(3)));
        assert_eq!(choose_floor(None, hpa(), Some(5)), Ok((3, Some("hpa/web".into()))));
        assert_eq!(choose_floor(Some(4), hpa(), Some(5)), Ok((4, Some("hpa/web".into()))));
        assert_eq!(choose_floor(Some(2), Err("none".into()), Some(5)), Ok((2, None)));
        // An HPA without minReplicas holds 1.
        assert_eq!(choose_floor(None, Ok(("hpa/web".into(), None)), Some(1)), Ok((1, Some("hpa/web".into()))));
    }

    #[test]
    fn no_floor_without_an_autoscaler_a_zero_minimum_or_below_it_already() {
        assert!(matches!(choose_floor(None, Err("missing".into()), Some(3)), Err(FloorError::NoAutoscaler { .. })));
        let keda = Ok(("scaledobject/web".to_string(), Some(0)));
        assert!(matches!(choose_floor(None, keda, Some(3)), Err(FloorError::ZeroMinimum { .. })));
        let below = choose_floor(Some(4), Err("missing".into()), Some(3));
        assert_eq!(below, Err(FloorError::AlreadyBelow { replicas: 3, floor: 4 }));
        assert!(below.unwrap_err().explain("deployment/web").starts_with("deployment/web runs 3 replica(s)"));
    }

    #[test]
    fn only_deployments_and_statefulsets_are_guarded() {
        assert_eq!(AppsKind::of(&WorkloadKind::deployment()), Some(AppsKind::Deployment));
        assert_eq!(AppsKind::of(&WorkloadKind::stateful_set()), Some(AppsKind::StatefulSet));
        let rollout = WorkloadKind {
            group: "argoproj.io".into(),
            version: "v1alpha1".into(),
            kind: "Rollout".into(),
            plural: "rollouts".into(),
        };
        assert_eq!(AppsKind::of(&rollout), None);
    }
}
