//! Pure planning of every change `strip`, `restore` and `--pause-flux` make, as JSON patches
//! that start with `test` operations, and the checks that confirm what the server did.
//!
//! Why the guards: the API server re-sorts managedFields entries, so an index read earlier may
//! point at another manager by the time a patch lands; a `test` on `/metadata/resourceVersion`
//! makes any concurrent write fail the patch (422) instead of editing the wrong entry, and the
//! entry-identity tests say so in the patch itself. If submitted managedFields cannot be decoded,
//! or are empty, the server silently keeps the live ones, so every change is re-read and
//! confirmed.

use serde::Serialize;
use serde_json::{Value, json};

use super::gojson;
use super::helm;
use super::ownership::{self, REPLICAS_PATH};
use super::tools::{self, Mechanism, flux, kubectl::LAST_APPLIED_ANNOTATION};
use super::workload::{Workload, WorkloadKind};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("refusing to strip {0}: it is the autoscaler's own entry")]
    AutoscalerEntry(String),
    #[error(
        "stripping would leave metadata.managedFields empty, which the API server ignores; use --method handover instead"
    )]
    WouldEmptyManagedFields,
    #[error("the object has no resourceVersion")]
    NoResourceVersion,
    #[error("the last-applied-configuration annotation is not JSON: {0}")]
    LastAppliedNotJson(String),
    #[error("the Helm release manifest has no document for {0}")]
    NoHelmDocument(String),
    #[error("cannot edit the Helm release manifest safely: {0}")]
    HelmManifest(String),
    #[error("annotation {0} does not hold the JSON this tool wrote; put the value back by hand, then remove it")]
    MarkerNotJson(&'static str),
}

/// The identity of a managedFields entry: manager, operation, subresource and apiVersion.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryIdentity {
    pub manager: String,
    pub operation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

impl EntryIdentity {
    pub fn of(entry: &Value) -> Self {
        let text = |key: &str| entry.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        Self {
            manager: text("manager").unwrap_or_default(),
            operation: text("operation").unwrap_or_default(),
            subresource: text("subresource"),
            api_version: text("apiVersion"),
        }
    }

    pub fn label(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{} ({}, /{sub})", self.manager, self.operation),
            None => format!("{} ({})", self.manager, self.operation),
        }
    }
}

/// One planned edit of a managedFields entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryEdit {
    /// The entry's index when the object was read.
    pub index: usize,
    pub identity: EntryIdentity,
    pub old_fields: Value,
    /// The set without `.spec.replicas`; `None` when nothing is left and the entry is dropped.
    pub new_fields: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFieldsPlan {
    pub resource_version: String,
    pub edits: Vec<EntryEdit>,
}

fn managed_fields(object: &Value) -> &[Value] {
    object.pointer("/metadata/managedFields").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

pub fn resource_version(object: &Value) -> Result<String, PlanError> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or(PlanError::NoResourceVersion)
}

/// Plans removing `.spec.replicas` from every entry of `managers` that owns it. Parents left
/// empty go too (an empty `f:spec: {}` would claim all of `.spec`), and an entry left with
/// nothing is dropped.
pub fn plan_managed_fields(object: &Value, managers: &[String]) -> Result<ManagedFieldsPlan, PlanError> {
    let entries = managed_fields(object);
    let mut edits = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let identity = EntryIdentity::of(entry);
        if !managers.contains(&identity.manager) {
            continue;
        }
        let Some(old_fields) = entry.get("fieldsV1") else { continue };
        if !ownership::fields_contain(old_fields, &REPLICAS_PATH) {
            continue;
        }
        let mechanism = tools::classify(&identity.manager, &identity.operation, identity.subresource.as_deref(), &[]);
        if mechanism == Mechanism::Autoscaler {
            return Err(PlanError::AutoscalerEntry(identity.label()));
        }
        let mut new_fields = old_fields.clone();
        ownership::remove_field(&mut new_fields, &REPLICAS_PATH);
        let new_fields = (!ownership::fields_empty(&new_fields)).then_some(new_fields);
        edits.push(EntryEdit { index, identity, old_fields: old_fields.clone(), new_fields });
    }
    let dropped = edits.iter().filter(|e| e.new_fields.is_none()).count();
    if !edits.is_empty() && dropped == entries.len() {
        return Err(PlanError::WouldEmptyManagedFields);
    }
    Ok(ManagedFieldsPlan { resource_version: resource_version(object)?, edits })
}

/// Typed JSON patch operations (RFC 6902) on pointers built from tokens, escaped as RFC 6901
/// says by `jsonptr`.
pub mod op {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation, TestOperation};
    use serde_json::Value;

    /// The pointer to `tokens`, each escaped.
    pub fn at<'t>(tokens: impl IntoIterator<Item = &'t str>) -> PointerBuf {
        PointerBuf::from_tokens(tokens)
    }

    pub fn test(path: PointerBuf, value: impl Into<Value>) -> PatchOperation {
        PatchOperation::Test(TestOperation { path, value: value.into() })
    }

    pub fn add(path: PointerBuf, value: impl Into<Value>) -> PatchOperation {
        PatchOperation::Add(AddOperation { path, value: value.into() })
    }

    pub fn replace(path: PointerBuf, value: impl Into<Value>) -> PatchOperation {
        PatchOperation::Replace(ReplaceOperation { path, value: value.into() })
    }

    pub fn remove(path: PointerBuf) -> PatchOperation {
        PatchOperation::Remove(RemoveOperation { path })
    }

    /// The guard every patch of this tool starts with: the object is as it was read.
    pub fn test_resource_version(resource_version: &str) -> PatchOperation {
        test(at(["metadata", "resourceVersion"]), resource_version)
    }
}

fn entry_field(index: usize, field: &str) -> json_patch::jsonptr::PointerBuf {
    let index = index.to_string();
    op::at(["metadata", "managedFields", index.as_str(), field])
}

fn annotation_pointer(key: &str) -> json_patch::jsonptr::PointerBuf {
    op::at(["metadata", "annotations", key])
}

/// A part of a patch: its guards and its changes. Parts combine into one patch per object, so
/// all changes to an object land atomically or not at all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatchPart {
    pub tests: Vec<json_patch::PatchOperation>,
    pub changes: Vec<json_patch::PatchOperation>,
}

/// One JSON patch: the resourceVersion test, every part's tests, then every part's changes.
pub fn combine(resource_version: &str, parts: &[PatchPart]) -> json_patch::Patch {
    let mut operations = vec![op::test_resource_version(resource_version)];
    operations.extend(parts.iter().flat_map(|p| p.tests.iter().cloned()));
    operations.extend(parts.iter().flat_map(|p| p.changes.iter().cloned()));
    json_patch::Patch(operations)
}

/// The managedFields part: identity tests of each entry touched, then replacements, then
/// removals from the highest index down so earlier indices stay valid.
pub fn managed_fields_part(plan: &ManagedFieldsPlan) -> PatchPart {
    let mut part = PatchPart::default();
    for edit in &plan.edits {
        let identity = &edit.identity;
        part.tests.push(op::test(entry_field(edit.index, "manager"), identity.manager.as_str()));
        part.tests.push(op::test(entry_field(edit.index, "operation"), identity.operation.as_str()));
        if let Some(sub) = &identity.subresource {
            part.tests.push(op::test(entry_field(edit.index, "subresource"), sub.as_str()));
        }
        if let Some(api_version) = &identity.api_version {
            part.tests.push(op::test(entry_field(edit.index, "apiVersion"), api_version.as_str()));
        }
        part.tests.push(op::test(entry_field(edit.index, "fieldsV1"), edit.old_fields.clone()));
    }
    for edit in &plan.edits {
        if let Some(fields) = &edit.new_fields {
            part.changes.push(op::replace(entry_field(edit.index, "fieldsV1"), fields.clone()));
        }
    }
    let mut removals: Vec<usize> = plan.edits.iter().filter(|e| e.new_fields.is_none()).map(|e| e.index).collect();
    removals.sort_unstable_by(|a, b| b.cmp(a));
    for index in removals {
        let index = index.to_string();
        part.changes.push(op::remove(op::at(["metadata", "managedFields", index.as_str()])));
    }
    part
}

pub fn managed_fields_patch(plan: &ManagedFieldsPlan) -> json_patch::Patch {
    combine(&plan.resource_version, &[managed_fields_part(plan)])
}

/// The field manager of this tool's own patches (the Flux pause annotation). It must not
/// start with `kubectl`: Flux takes such managedFields entries over (merges them into its own) before each apply.
pub const FIELD_MANAGER: &str = "hpa-migrate";

/// What an object must look like after a change to the workload.
#[derive(Debug, Default)]
pub struct Expected<'a> {
    pub managed_fields: Option<&'a ManagedFieldsPlan>,
    /// Annotations and the value each must have (`None`: absent).
    pub annotations: Vec<(&'a str, Option<&'a str>)>,
}

/// How an object read back differs from what a change planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(pub String);

/// Confirms, on the object as re-read, that the change took effect and nothing else moved:
/// spec and generation unchanged, the edited entries as planned, every other entry unchanged
/// (but this tool's own, which records the annotations it sets), the annotations as planned.
pub fn confirm_workload(before: &Value, after: &Value, expected: &Expected<'_>) -> Result<(), Mismatch> {
    // The Deployment strategy bumps metadata.generation on annotation changes too (annotations
    // are copied onto ReplicaSets); the spec, and so the pods, stay as they are.
    if expected.annotations.is_empty() {
        confirm_spec_unchanged(before, after)?;
    } else if before.get("spec") != after.get("spec") {
        return Err(Mismatch("the object's spec changed".into()));
    }
    // A field whose value this change sets moves to this tool's manager (an update takes
    // ownership of what it changes), so the annotations set are left out of the comparison.
    let touched: Vec<String> = expected.annotations.iter().map(|(key, _)| format!("f:{key}")).collect();
    let without_touched = |fields: &Value| {
        let mut fields = fields.clone();
        for key in &touched {
            ownership::remove_field(&mut fields, &["f:metadata", "f:annotations", key]);
        }
        ownership::canonical_fields(&fields)
    };
    let entries_by_identity = |object: &Value| -> Vec<(EntryIdentity, Value)> {
        managed_fields(object)
            .iter()
            .map(|e| (EntryIdentity::of(e), without_touched(e.get("fieldsV1").unwrap_or(&Value::Null))))
            // A patch of the object cannot write its /status: an entry there that moved is a
            // controller's concurrent status update (the Deployment controller writes one after
            // most changes), not part of this change.
            .filter(|(identity, _)| {
                identity.manager != FIELD_MANAGER && identity.subresource.as_deref() != Some("status")
            })
            .collect()
    };
    let after_entries = entries_by_identity(after);
    let edits = expected.managed_fields.map(|p| p.edits.as_slice()).unwrap_or_default();
    for edit in edits {
        let found = after_entries.iter().find(|(identity, _)| identity == &edit.identity);
        let planned = edit.new_fields.as_ref().map(without_touched).filter(|f| !ownership::fields_empty(f));
        match (&planned, found) {
            (Some(expected), Some((_, actual))) if actual == expected => {}
            (None, None) => {}
            (_, Some((_, actual))) if ownership::fields_contain(actual, &REPLICAS_PATH) => {
                return Err(Mismatch(format!(
                    "{} still owns .spec.replicas: the API server did not take the edited managedFields",
                    edit.identity.label()
                )));
            }
            _ => return Err(Mismatch(format!("entry {} is not as planned after the change", edit.identity.label()))),
        }
    }
    for (identity, fields) in entries_by_identity(before) {
        if edits.iter().any(|e| e.identity == identity) {
            continue;
        }
        if !after_entries.iter().any(|(i, f)| i == &identity && f == &fields) {
            return Err(Mismatch(format!("entry {} changed although it was not to be touched", identity.label())));
        }
    }
    for (key, value) in &expected.annotations {
        if after.pointer(&annotation_path(key)).and_then(Value::as_str) != *value {
            return Err(Mismatch(format!("annotation {key} is not as planned after the change")));
        }
    }
    Ok(())
}

pub fn confirm_managed_fields(before: &Value, after: &Value, plan: &ManagedFieldsPlan) -> Result<(), Mismatch> {
    confirm_workload(before, after, &Expected { managed_fields: Some(plan), ..Expected::default() })
}

fn confirm_spec_unchanged(before: &Value, after: &Value) -> Result<(), Mismatch> {
    if before.get("spec") != after.get("spec") {
        return Err(Mismatch("the object's spec changed".into()));
    }
    if before.pointer("/metadata/generation") != after.pointer("/metadata/generation") {
        return Err(Mismatch("the object's metadata.generation changed".into()));
    }
    Ok(())
}

pub fn annotation_path(key: &str) -> String {
    annotation_pointer(key).to_string()
}

/// A planned rewrite of the last-applied-configuration annotation without `spec.replicas`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastAppliedPlan {
    pub resource_version: String,
    pub old: String,
    pub new: String,
}

pub fn plan_last_applied(object: &Value) -> Result<Option<LastAppliedPlan>, PlanError> {
    let key = LAST_APPLIED_ANNOTATION;
    let Some(old) = object.pointer(&annotation_path(key)).and_then(Value::as_str) else { return Ok(None) };
    let mut applied: Value = serde_json::from_str(old).map_err(|e| PlanError::LastAppliedNotJson(e.to_string()))?;
    let Some(spec) = applied.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(None) };
    if spec.shift_remove("replicas").is_none() {
        return Ok(None);
    }
    // kubectl writes the annotation with Go's encoder and a trailing newline; keep both.
    let mut new = gojson::to_string(&applied);
    if old.ends_with('\n') {
        new.push('\n');
    }
    Ok(Some(LastAppliedPlan { resource_version: resource_version(object)?, old: old.to_string(), new }))
}

/// Sets (`Some`) or removes (`None`) one annotation, guarded by its old value when it exists.
pub fn annotation_part(object: &Value, key: &str, value: Option<&str>) -> PatchPart {
    let path = annotation_pointer(key);
    let mut part = PatchPart::default();
    let old = object.pointer(&annotation_path(key)).and_then(Value::as_str);
    if let Some(old) = old {
        part.tests.push(op::test(path.clone(), old));
    }
    match (value, old) {
        (Some(value), Some(_)) => part.changes.push(op::replace(path, value)),
        (Some(value), None) if object.pointer("/metadata/annotations").is_some_and(Value::is_object) => {
            part.changes.push(op::add(path, value))
        }
        (Some(value), None) => part.changes.push(op::add(op::at(["metadata", "annotations"]), json!({key: value}))),
        (None, Some(_)) => part.changes.push(op::remove(path)),
        (None, None) => {}
    }
    part
}

pub fn annotation_patch(resource_version: &str, object: &Value, key: &str, value: Option<&str>) -> json_patch::Patch {
    combine(resource_version, &[annotation_part(object, key, value)])
}

pub fn last_applied_part(plan: &LastAppliedPlan, object: &Value) -> PatchPart {
    annotation_part(object, LAST_APPLIED_ANNOTATION, Some(&plan.new))
}

pub fn last_applied_patch(plan: &LastAppliedPlan, object: &Value) -> json_patch::Patch {
    combine(&plan.resource_version, &[last_applied_part(plan, object)])
}

/// Everything one strip changes on the workload itself, sent as one guarded patch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadChange {
    pub resource_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_fields: Option<ManagedFieldsPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<LastAppliedPlan>,
    /// Sets `kustomize.toolkit.fluxcd.io/reconcile: disabled` (`--pause-flux`).
    pub pause_flux: bool,
}

impl WorkloadChange {
    /// Plans the change on `object` as read now.
    pub fn plan(object: &Value, managers: &[String], last_applied: bool, pause_flux: bool) -> Result<Self, PlanError> {
        let managed_fields = if managers.is_empty() {
            None
        } else {
            Some(plan_managed_fields(object, managers)?).filter(|p| !p.edits.is_empty())
        };
        let last_applied = if last_applied { plan_last_applied(object)? } else { None };
        let already_paused = flux::is_paused(object);
        Ok(Self {
            resource_version: resource_version(object)?,
            managed_fields,
            last_applied,
            pause_flux: pause_flux && !already_paused,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.managed_fields.is_none() && self.last_applied.is_none() && !self.pause_flux
    }

    /// The same edits, wherever the entries sit and whatever the resourceVersion: a re-plan
    /// after a conflict may go ahead only if it is what the user confirmed.
    pub fn same_edits(&self, other: &Self) -> bool {
        let edits = |c: &Self| -> Vec<(EntryIdentity, Value, Option<Value>)> {
            let mut edits: Vec<_> = c
                .managed_fields
                .iter()
                .flat_map(|p| &p.edits)
                .map(|e| (e.identity.clone(), e.old_fields.clone(), e.new_fields.clone()))
                .collect();
            edits.sort_by(|a, b| a.0.cmp(&b.0));
            edits
        };
        let annotation = |c: &Self| c.last_applied.as_ref().map(|p| (p.old.clone(), p.new.clone()));
        edits(self) == edits(other) && annotation(self) == annotation(other) && self.pause_flux == other.pause_flux
    }

    pub fn patch(&self, object: &Value) -> json_patch::Patch {
        let mut parts = Vec::new();
        if let Some(plan) = &self.managed_fields {
            parts.push(managed_fields_part(plan));
        }
        if let Some(plan) = &self.last_applied {
            parts.push(last_applied_part(plan, object));
        }
        if self.pause_flux {
            parts.push(annotation_part(object, flux::RECONCILE_ANNOTATION, Some(flux::PAUSED)));
        }
        combine(&self.resource_version, &parts)
    }

    pub fn expected(&self) -> Expected<'_> {
        let mut annotations = Vec::new();
        if let Some(plan) = &self.last_applied {
            annotations.push((LAST_APPLIED_ANNOTATION, Some(plan.new.as_str())));
        }
        if self.pause_flux {
            annotations.push((flux::RECONCILE_ANNOTATION, Some(flux::PAUSED)));
        }
        Expected { managed_fields: self.managed_fields.as_ref(), annotations }
    }
}

/// Checks, on the object as re-read after a strip, that no stripped manager owns replicas again
/// and the last-applied annotation (if it was stripped) still has none.
pub fn confirm_still_stripped(after: &Value, change: &WorkloadChange) -> Result<(), Mismatch> {
    let entries = managed_fields(after);
    for edit in change.managed_fields.iter().flat_map(|p| &p.edits) {
        let owns_again = entries.iter().any(|e| {
            EntryIdentity::of(e) == edit.identity
                && e.get("fieldsV1").is_some_and(|f| ownership::fields_contain(f, &REPLICAS_PATH))
        });
        if owns_again {
            return Err(Mismatch(format!("{} took .spec.replicas back right after the strip", edit.identity.label())));
        }
    }
    if change.last_applied.is_some() && plan_last_applied(after).ok().flatten().is_some() {
        return Err(Mismatch("the last-applied annotation sets replicas again right after the strip".into()));
    }
    Ok(())
}

/// A planned edit of a Helm release record: the manifest without this object's replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct HelmChange {
    pub driver: helm::Driver,
    pub namespace: String,
    pub object_name: String,
    pub revision: i64,
    pub resource_version: String,
    pub old_payload: Vec<u8>,
    pub new_payload: Vec<u8>,
    pub old_json: String,
    pub new_json: String,
    pub old_document: String,
    pub new_document: String,
}

impl HelmChange {
    pub fn plan(record: &helm::ReleaseRecord, workload: &Workload) -> Result<Self, PlanError> {
        let new_manifest = remove_replicas_from_manifest(&record.manifest, workload, &record.namespace)?;
        let new_json = replace_release_manifest(&record.json, &record.manifest, &new_manifest)?;
        let document_of = |manifest: &str| {
            helm::split_documents(manifest)
                .into_iter()
                .find(|doc| {
                    serde_saphyr::from_str::<Value>(doc)
                        .is_ok_and(|v| helm::document_is(&v, workload, &record.namespace))
                })
                .unwrap_or_default()
                .to_string()
        };
        Ok(Self {
            driver: record.driver,
            namespace: record.namespace.clone(),
            object_name: record.object_name.clone(),
            revision: record.revision,
            resource_version: record.resource_version.clone().ok_or(PlanError::NoResourceVersion)?,
            old_payload: record.payload.clone(),
            new_payload: helm::encode_payload(&new_json),
            old_document: document_of(&record.manifest),
            new_document: document_of(&new_manifest),
            old_json: record.json.clone(),
            new_json,
        })
    }

    pub fn patch(&self) -> json_patch::Patch {
        release_patch(self.driver, &self.resource_version, &self.old_payload, &self.new_payload)
    }
}

/// Removes `replicas` from the object's document in a Helm release manifest, touching only
/// that line: Helm compares the stored manifest on the next upgrade.
pub fn remove_replicas_from_manifest(
    manifest: &str,
    workload: &Workload,
    release_namespace: &str,
) -> Result<String, PlanError> {
    for document in helm::split_documents(manifest) {
        // Each document is a slice of `manifest`; its offset locates it for the splice below.
        let start = document.as_ptr() as usize - manifest.as_ptr() as usize;
        let Ok(parsed) = serde_saphyr::from_str::<Value>(document) else { continue };
        if !helm::document_is(&parsed, workload, release_namespace) {
            continue;
        }
        let edited = remove_spec_replicas_line(document)?;
        let mut expected = parsed.clone();
        if let Some(spec) = expected.get_mut("spec").and_then(Value::as_object_mut) {
            spec.shift_remove("replicas");
        }
        let reparsed: Value = serde_saphyr::from_str(&edited)
            .map_err(|e| PlanError::HelmManifest(format!("the edit does not parse: {e}")))?;
        if reparsed != expected {
            return Err(PlanError::HelmManifest("the edited document differs in more than spec.replicas".into()));
        }
        return Ok(format!("{}{edited}{}", &manifest[..start], &manifest[start + document.len()..]));
    }
    Err(PlanError::NoHelmDocument(workload.target()))
}

/// Removes the `replicas:` line that is a direct child of the top-level `spec:` block.
fn remove_spec_replicas_line(document: &str) -> Result<String, PlanError> {
    let lines: Vec<&str> = document.split_inclusive('\n').collect();
    let indent = |line: &str| line.len() - line.trim_start_matches(' ').len();
    let is_content = |line: &str| !line.trim().is_empty() && !line.trim_start().starts_with('#');
    let Some(spec_line) = lines.iter().position(|l| l.trim_end() == "spec:") else {
        return Err(PlanError::HelmManifest("no block-style top-level `spec:` (flow style is not edited)".into()));
    };
    let mut child_indent = None;
    for (index, line) in lines.iter().enumerate().skip(spec_line + 1) {
        if !is_content(line) {
            continue;
        }
        let current = indent(line);
        if current == 0 {
            break;
        }
        let child = *child_indent.get_or_insert(current);
        if current == child && line.trim_start().starts_with("replicas:") {
            let mut kept: Vec<&str> = lines.clone();
            kept.remove(index);
            return Ok(kept.concat());
        }
    }
    Err(PlanError::HelmManifest("no `replicas:` line directly under `spec:`".into()))
}

/// Replaces the manifest inside the release JSON text, keeping every other byte: the old
/// manifest's encoding must appear exactly once, and the result must differ in nothing else.
pub fn replace_release_manifest(
    release_json: &str,
    old_manifest: &str,
    new_manifest: &str,
) -> Result<String, PlanError> {
    let old_token = gojson::to_string(old_manifest);
    let new_token = gojson::to_string(new_manifest);
    if release_json.matches(&old_token).count() != 1 {
        return Err(PlanError::HelmManifest("the manifest's encoding is not unique in the release record".into()));
    }
    let edited = release_json.replacen(&old_token, &new_token, 1);
    let mut expected: Value = serde_json::from_str(release_json).map_err(|e| PlanError::HelmManifest(e.to_string()))?;
    expected["manifest"] = Value::String(new_manifest.to_string());
    let actual: Value = serde_json::from_str(&edited).map_err(|e| PlanError::HelmManifest(e.to_string()))?;
    if actual != expected {
        return Err(PlanError::HelmManifest("the release record would change beyond its manifest".into()));
    }
    Ok(edited)
}

/// The guarded patch that stores a new release payload in a Secret (`data` is base64 of the
/// payload) or a ConfigMap (`data` is the payload text).
pub fn release_patch(
    driver: helm::Driver,
    resource_version: &str,
    old_payload: &[u8],
    new_payload: &[u8],
) -> json_patch::Patch {
    use base64::Engine as _;
    let encode = |payload: &[u8]| match driver {
        helm::Driver::Secret => base64::engine::general_purpose::STANDARD.encode(payload),
        helm::Driver::ConfigMap => String::from_utf8_lossy(payload).into_owned(),
    };
    let release = || op::at(["data", "release"]);
    json_patch::Patch(vec![
        op::test_resource_version(resource_version),
        op::test(release(), encode(old_payload)),
        op::replace(release(), encode(new_payload)),
    ])
}

/// The replicas-only object the Kubernetes docs' handover applies with a temporary manager,
/// pinned to the resourceVersion read (server-side apply honours it as a precondition).
pub fn handover_object(
    kind: &WorkloadKind,
    namespace: &str,
    name: &str,
    replicas: i64,
    resource_version: &str,
) -> Value {
    json!({
        "apiVersion": kind.api_version(),
        "kind": kind.kind,
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
        "spec": {"replicas": replicas}
    })
}

/// Restores a backed-up managedFields list wholesale, guarded by the current resourceVersion.
pub fn restore_managed_fields_patch(resource_version: &str, entries: &Value) -> json_patch::Patch {
    json_patch::Patch(vec![
        op::test_resource_version(resource_version),
        op::replace(op::at(["metadata", "managedFields"]), entries.clone()),
    ])
}

/// Two managedFields lists hold the same entries, whatever their order.
pub fn same_entries(a: &Value, b: &Value) -> bool {
    sorted_entries(a, |_| true) == sorted_entries(b, |_| true)
}

/// As [`same_entries`], leaving out the entries of the `/status` subresource: a controller's
/// status write (the Deployment controller writes one after most changes) can land between a
/// write of managedFields and its re-read, and a patch of the object cannot write `/status`.
pub fn same_entries_but_status(a: &Value, b: &Value) -> bool {
    let not_status = |e: &Value| e.get("subresource").and_then(Value::as_str) != Some("status");
    sorted_entries(a, not_status) == sorted_entries(b, not_status)
}

fn sorted_entries(entries: &Value, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    let mut items: Vec<String> = entries
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| keep(e))
        .map(|e| serde_json::to_string(e).unwrap_or_default())
        .collect();
    items.sort();
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fixtures::load;

    fn managers(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn entries_of(object: &Value) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> {
        serde_json::from_value(Value::Array(managed_fields(object).to_vec())).unwrap_or_default()
    }

    #[test]
    fn a_status_entry_written_after_a_restore_does_not_unconfirm_it() {
        let restored = json!([
            {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-12-03T10:00:00Z"},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "time": "2026-12-03T10:00:00Z"},
        ]);
        let reread = json!([
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "time": "2026-12-03T10:00:01Z"},
            {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-12-03T10:00:00Z"},
        ]);
        assert!(!same_entries(&restored, &reread));
        assert!(same_entries_but_status(&restored, &reread));
        let object_entry_moved = json!([
            {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-12-03T10:00:02Z"},
        ]);
        assert!(!same_entries_but_status(&restored, &object_entry_moved));
    }

    #[test]
    fn flux_entry_loses_only_replicas() {
        let object = load("flux-ssa-owns-replicas");
        let plan = plan_managed_fields(&object, &managers(&["kustomize-controller"])).unwrap();
        assert_eq!(plan.edits.len(), 1);
        let edit = &plan.edits[0];
        let new_fields = edit.new_fields.as_ref().unwrap();
        assert!(!ownership::fields_contain(new_fields, &REPLICAS_PATH));
        assert!(new_fields.pointer("/f:spec/f:template").is_some(), "the rest of the entry stays");
        let mut restored = new_fields.clone();
        restored["f:spec"]["f:replicas"] = json!({});
        assert_eq!(&restored, &edit.old_fields);
    }

    #[test]
    fn an_entry_owning_only_replicas_is_dropped() {
        let object = load("flux-and-handover-share-replicas");
        let plan = plan_managed_fields(&object, &managers(&["handover-to-hpa"])).unwrap();
        assert_eq!(plan.edits.len(), 1);
        assert_eq!(plan.edits[0].new_fields, None, "an entry left with nothing is dropped");
        let patch = serde_json::to_value(managed_fields_patch(&plan)).unwrap();
        let ops: Vec<&str> = patch.as_array().unwrap().iter().map(|o| o["op"].as_str().unwrap()).collect();
        assert_eq!(ops.first(), Some(&"test"));
        assert_eq!(ops.last(), Some(&"remove"));
    }

    #[test]
    fn a_controller_s_status_write_during_the_change_is_not_the_change_s() {
        // Captured: kube-controller-manager's /status entry beside kubectl-client-side-apply's.
        let before = load("kubectl-csa-owns-replicas");
        let moved = |subresource: Option<&str>| {
            let mut after = before.clone();
            let entries = after["metadata"]["managedFields"].as_array_mut().unwrap();
            let entry =
                entries.iter_mut().find(|e| e.get("subresource").and_then(Value::as_str) == subresource).unwrap();
            entry["fieldsV1"]["f:status"] = json!({"f:observedGeneration": {}, "f:conditions": {}});
            after
        };
        assert_eq!(confirm_workload(&before, &moved(Some("status")), &Expected::default()), Ok(()));
        // An entry of the object itself that moved is a change of what was not to be touched.
        assert!(confirm_workload(&before, &moved(None), &Expected::default()).is_err());
    }

    #[test]
    fn annotation_keys_are_escaped_in_pointers() {
        assert_eq!(
            annotation_path("kubectl.kubernetes.io/last-applied-configuration"),
            "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"
        );
        assert_eq!(annotation_path("a~b"), "/metadata/annotations/a~0b");
    }

    #[test]
    fn the_patch_starts_with_tests_of_version_and_identity() {
        let object = load("kubectl-csa-owns-replicas");
        let plan = plan_managed_fields(&object, &managers(&["kubectl-client-side-apply"])).unwrap();
        let patch = serde_json::to_value(managed_fields_patch(&plan)).unwrap();
        let ops = patch.as_array().unwrap();
        let index = plan.edits[0].index;
        assert_eq!(
            ops[0],
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": object["metadata"]["resourceVersion"]})
        );
        assert_eq!(ops[1]["path"], format!("/metadata/managedFields/{index}/manager"));
        assert_eq!(ops[1]["value"], "kubectl-client-side-apply");
        assert_eq!(ops[2]["value"], "Update");
        let first_change = ops.iter().position(|o| o["op"] != "test").unwrap();
        assert!(ops[..first_change].iter().all(|o| o["op"] == "test"));
        assert_eq!(ops[first_change]["op"], "replace");
    }

    #[test]
    fn applying_the_patch_locally_gives_what_confirm_expects() {
        for (fixture, manager) in [
            ("flux-ssa-owns-replicas", "kustomize-controller"),
            ("kubectl-csa-owns-replicas", "kubectl-client-side-apply"),
            ("flux-and-handover-share-replicas", "kustomize-controller"),
        ] {
            let before = load(fixture);
            let plan = plan_managed_fields(&before, &managers(&[manager])).unwrap();
            let mut after = before.clone();
            json_patch::patch(&mut after, &managed_fields_patch(&plan)).unwrap();
            confirm_managed_fields(&before, &after, &plan).unwrap();
            let entries: Vec<_> = entries_of(&after);
            assert!(ownership::replica_owners(&entries, &[]).iter().all(|o| o.manager != manager), "{fixture}");
        }
    }

    #[test]
    fn a_stale_resource_version_fails_the_patch() {
        let before = load("flux-ssa-owns-replicas");
        let plan = plan_managed_fields(&before, &managers(&["kustomize-controller"])).unwrap();
        let mut moved = before.clone();
        moved["metadata"]["resourceVersion"] = json!("999999999");
        assert!(json_patch::patch(&mut moved, &managed_fields_patch(&plan)).is_err());
    }

    #[test]
    fn re_sorted_entries_fail_the_identity_tests() {
        let before = load("flux-and-handover-share-replicas");
        let plan = plan_managed_fields(&before, &managers(&["kustomize-controller"])).unwrap();
        let mut resorted = before.clone();
        resorted["metadata"]["managedFields"].as_array_mut().unwrap().reverse();
        assert!(json_patch::patch(&mut resorted, &managed_fields_patch(&plan)).is_err());
    }

    #[test]
    fn confirm_catches_an_ignored_change() {
        let before = load("flux-ssa-owns-replicas");
        let plan = plan_managed_fields(&before, &managers(&["kustomize-controller"])).unwrap();
        let error = confirm_managed_fields(&before, &before, &plan).unwrap_err();
        assert!(error.0.contains("still owns .spec.replicas"), "{error}");
    }

    #[test]
    fn a_manager_that_takes_replicas_back_is_caught_on_the_re_read() {
        let before = load("flux-ssa-owns-replicas");
        let change = WorkloadChange::plan(&before, &managers(&["kustomize-controller"]), false, false).unwrap();
        let mut after = before.clone();
        json_patch::patch(&mut after, &change.patch(&before)).unwrap();
        confirm_still_stripped(&after, &change).unwrap();
        let error = confirm_still_stripped(&before, &change).unwrap_err();
        assert!(error.0.contains("took .spec.replicas back"), "{error}");
    }

    #[test]
    fn the_autoscaler_entry_is_never_stripped() {
        let object = load("hpa-rescaled");
        let error = plan_managed_fields(&object, &managers(&["kube-controller-manager"])).unwrap_err();
        assert!(matches!(error, PlanError::AutoscalerEntry(_)));
    }

    #[test]
    fn emptying_managed_fields_is_refused() {
        let mut object = load("handover-sole-owner");
        object["metadata"]["managedFields"] = json!([{
            "manager": "kustomize-controller", "operation": "Apply", "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}
        }]);
        assert_eq!(
            plan_managed_fields(&object, &managers(&["kustomize-controller"])),
            Err(PlanError::WouldEmptyManagedFields)
        );
    }

    #[test]
    fn last_applied_loses_replicas_and_nothing_else() {
        let object = load("kubectl-csa-owns-replicas");
        let plan = plan_last_applied(&object).unwrap().unwrap();
        assert!(plan.old.contains("\"replicas\":5"));
        assert_eq!(plan.new, plan.old.replace("\"replicas\":5,", ""), "only the key goes, byte for byte");
        let mut after = object.clone();
        json_patch::patch(&mut after, &last_applied_patch(&plan, &object)).unwrap();
        let expected =
            Expected { annotations: vec![(LAST_APPLIED_ANNOTATION, Some(plan.new.as_str()))], ..Expected::default() };
        confirm_workload(&object, &after, &expected).unwrap();
    }

    #[test]
    fn annotation_patch_adds_to_an_object_without_annotations() {
        let object = load("flux-ssa-owns-replicas");
        assert!(object.pointer("/metadata/annotations").is_none());
        let mut after = object.clone();
        let patch = annotation_patch("1", &json!({}), "kustomize.toolkit.fluxcd.io/reconcile", Some("disabled"));
        let ops = serde_json::to_value(&patch).unwrap();
        assert_eq!(ops[1]["path"], "/metadata/annotations");
        after["metadata"]["resourceVersion"] = json!("1");
        json_patch::patch(&mut after, &patch).unwrap();
        assert_eq!(after["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"], "disabled");
    }

    fn helm_workload(name: &str, namespace: &str) -> Workload {
        let object =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace}});
        Workload::from_object(WorkloadKind::deployment(), object).unwrap()
    }

    const MANIFEST: &str = "---\n# Source: web/templates/service.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n---\n# Source: web/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    replicas: \"x\"\nspec:\n  replicas: 5\n  selector:\n    matchLabels:\n      app: web\n  template:\n    spec:\n      containers:\n      - name: app\n        image: a<b>&c\n---\n# Source: web/templates/other.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: other\nspec:\n  replicas: 2\n";

    #[test]
    fn only_the_objects_replicas_line_leaves_the_manifest() {
        let edited = remove_replicas_from_manifest(MANIFEST, &helm_workload("web", "shop"), "shop").unwrap();
        assert_eq!(edited, MANIFEST.replacen("  replicas: 5\n", "", 1));
        assert!(edited.contains("  replicas: 2\n"), "the other Deployment keeps its replicas");
    }

    #[test]
    fn a_manifest_without_the_object_is_an_error() {
        let error = remove_replicas_from_manifest(MANIFEST, &helm_workload("api", "shop"), "shop").unwrap_err();
        assert_eq!(error, PlanError::NoHelmDocument("deployment/api".into()));
    }

    #[test]
    fn the_release_json_changes_only_in_its_manifest() {
        let release = format!(
            r#"{{"name":"web","info":{{"notes":"x<y"}},"manifest":{},"version":3}}"#,
            gojson::to_string(MANIFEST)
        );
        let new_manifest = MANIFEST.replacen("  replicas: 5\n", "", 1);
        let edited = replace_release_manifest(&release, MANIFEST, &new_manifest).unwrap();
        assert_eq!(edited, release.replace("  replicas: 5\\n", ""));
    }
}
