//! `restore BACKUP_FILE`: puts back exactly what a strip changed, with the same diff,
//! confirmation, dry run and guards.
//!
//! Annotations go first and managedFields last, in two guarded patches: the API server
//! attributes any field a patch changes to the patch's manager, so restoring both in one patch
//! would leave an extra entry; a patch that only replaces managedFields changes no field and
//! leaves the restored set exactly as backed up.

use std::path::PathBuf;

use base64::Engine as _;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::Value;

use crate::backup::Backup;
use crate::cli::RestoreArgs;
use crate::commands::flags::{ScopeFlags, not_honoured};
use crate::core::patch;
use crate::error::{Error, ExitStatus, Result, api_code};
use crate::kubeio::{self, NamespaceScope};
use crate::output::{self, Printer, yaml};
use crate::retry::{self, Attempt};

/// What `restore` was asked for, checked before connecting: the backup, read, and how to
/// apply it. The backup names the one object and its namespace, so `-A` and `-l` are refused,
/// and so is an `-n` other than the backup's.
#[derive(Debug)]
pub struct Options {
    backup: Backup,
    path: PathBuf,
    dry_run: bool,
    yes: bool,
}

impl Options {
    pub fn resolve(args: RestoreArgs, flags: &ScopeFlags) -> Result<Self> {
        let backup = Backup::read(&args.backup)?;
        let object = &backup.object;
        let of = format!("the backup is of {}/{}/{}", object.namespace, object.kind.to_lowercase(), object.name);
        if flags.all_namespaces {
            return Err(not_honoured("restore", "-A", &format!("{of}: drop -A")));
        }
        if flags.selector.is_some() {
            return Err(not_honoured(
                "restore",
                "-l",
                &format!("{of}: drop -l; restore several objects with one restore per backup file"),
            ));
        }
        if let Some(namespace) = flags.namespace.as_deref().filter(|ns| *ns != object.namespace) {
            return Err(Error::Usage(format!(
                "-n {namespace}: {of}, restored into its own namespace: drop -n, or pass -n {}",
                object.namespace
            )));
        }
        Ok(Self { backup, path: args.backup, dry_run: args.dry_run, yes: args.yes })
    }
}

pub async fn run(client: &Client, options: &Options, printer: &Printer) -> Result<ExitStatus> {
    let backup = &options.backup;
    let restore = Restore::new(client, backup, options.dry_run);
    let live = restore.read_live().await?;
    restore.check_rights(client).await?;

    let diff = render_diff(backup, &live);
    if diff.is_empty() {
        printer.data(&format!("unchanged {}: it already matches the backup\n", restore.label))?;
        return Ok(ExitStatus::Success);
    }
    printer.data(&format!("restore {} from {}\n{diff}\n", restore.label, options.path.display()))?;
    if !options.dry_run {
        printer.confirm(options.yes, "Restore this object?")?;
    }

    let object = restore.release_record(live).await?;
    let object = restore.annotations(object).await?;
    restore.managed_fields(object).await?;
    let verb = if options.dry_run { "dry run: would restore" } else { "restored" };
    printer.data(&format!("{verb} {} from {}\n", restore.label, options.path.display()))?;
    Ok(ExitStatus::Success)
}

/// What every step of a restore works with: the backup and the object it was taken of.
struct Restore<'a> {
    backup: &'a Backup,
    api: Api<DynamicObject>,
    /// The object's API group ("" for the core group).
    group: String,
    scope: NamespaceScope,
    label: String,
    dry_run: bool,
}

impl<'a> Restore<'a> {
    fn new(client: &Client, backup: &'a Backup, dry_run: bool) -> Self {
        let reference = &backup.object;
        let (group, version) = reference.api_version.rsplit_once('/').unwrap_or(("", reference.api_version.as_str()));
        let resource = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: reference.api_version.clone(),
            kind: reference.kind.clone(),
            plural: reference.resource.clone(),
        };
        Restore {
            backup,
            api: Api::namespaced_with(client.clone(), &reference.namespace, &resource),
            group: group.to_string(),
            scope: NamespaceScope::Namespace(reference.namespace.clone()),
            label: format!("{}/{}/{}", reference.namespace, reference.kind.to_lowercase(), reference.name),
            dry_run,
        }
    }

    /// The object as stored; refused if it is not the one backed up (deleted and recreated).
    async fn read_live(&self) -> Result<Value> {
        let reference = &self.backup.object;
        let live = kubeio::get_object(&self.api, &reference.name).await.map_err(|e| match api_code(&e) {
            Some(404) => Error::NotFound {
                kind: reference.kind.clone(),
                name: reference.name.clone(),
                namespace: reference.namespace.clone(),
            },
            _ => kubeio::classify_error(e, "get", &reference.resource, &self.scope),
        })?;
        let live_uid = live.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
        if live_uid != reference.uid {
            return Err(Error::Usage(format!(
                "{} was deleted and recreated since the backup (uid {live_uid}, backup {}); refusing to restore onto another object",
                self.label, reference.uid
            )));
        }
        Ok(live)
    }

    /// Stops before anything is written if the user may not patch the object.
    async fn check_rights(&self, client: &Client) -> Result<()> {
        let reference = &self.backup.object;
        if kubeio::can_i(client, "patch", &self.group, &reference.resource, &reference.namespace).await? {
            return Ok(());
        }
        Err(Error::Forbidden {
            verb: "patch".into(),
            resource: if self.group.is_empty() {
                reference.resource.clone()
            } else {
                format!("{}.{}", reference.resource, self.group)
            },
            scope: format!(" in namespace \"{}\"", reference.namespace),
            message: "nothing was changed".into(),
        })
    }

    /// Puts back the Helm release record, if the backup has one.
    async fn release_record(&self, object: Value) -> Result<Value> {
        let Some(payload) = &self.backup.release_payload else {
            return Ok(object);
        };
        let encoded = match self.backup.object.kind.as_str() {
            "Secret" => base64::engine::general_purpose::STANDARD.encode(payload),
            _ => payload.clone(),
        };
        let build = |object: &Value| {
            let current = object.pointer("/data/release").cloned().unwrap_or(Value::Null);
            let operations = serde_json::json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": version_of(object)?},
                {"op": "test", "path": "/data/release", "value": current},
                {"op": "replace", "path": "/data/release", "value": encoded},
            ]);
            serde_json::from_value(operations).map_err(|e| Error::json("building the restore patch", e))
        };
        let object = self.send(object, build).await?;
        if object.pointer("/data/release").and_then(Value::as_str) != Some(encoded.as_str()) {
            return Err(unconfirmed(&self.label, "the release record is not as backed up after the restore"));
        }
        Ok(object)
    }

    /// Puts back the backed-up annotations.
    async fn annotations(&self, object: Value) -> Result<Value> {
        let annotations = &self.backup.annotations;
        if annotations.is_empty() {
            return Ok(object);
        }
        let build = |object: &Value| {
            let parts: Vec<patch::PatchPart> =
                annotations.iter().map(|(key, value)| patch::annotation_part(object, key, value.as_str())).collect();
            Ok(patch::combine(&version_of(object)?, &parts))
        };
        let object = self.send(object, build).await?;
        for (key, value) in annotations {
            if object.pointer(&patch::annotation_path(key)).and_then(Value::as_str) != value.as_str() {
                return Err(unconfirmed(
                    &self.label,
                    &format!("annotation {key} is not as backed up after the restore"),
                ));
            }
        }
        Ok(object)
    }

    /// Puts back the backed-up managedFields (last: see the module's comment).
    async fn managed_fields(&self, object: Value) -> Result<Value> {
        let Some(entries) = &self.backup.managed_fields else {
            return Ok(object);
        };
        let build = |object: &Value| Ok(patch::restore_managed_fields_patch(&version_of(object)?, entries));
        let object = self.send(object, build).await?;
        let restored = object.pointer("/metadata/managedFields").cloned().unwrap_or(Value::Null);
        if !patch::same_entries_but_status(&restored, entries) {
            return Err(unconfirmed(
                &self.label,
                "the API server did not take the backed-up managedFields; nothing else was changed by this step",
            ));
        }
        Ok(object)
    }

    /// Sends one guarded patch built from the object as last read, and returns the object as
    /// stored (re-read), or as the dry run would store it. The target state is fixed by the
    /// backup, so on a conflict (the deployment controller writes status right after an
    /// annotation change) the object is re-read and the patch rebuilt against it.
    async fn send(&self, object: Value, build: impl Fn(&Value) -> Result<json_patch::Patch>) -> Result<Value> {
        let (api, name, dry_run) = (&self.api, self.backup.object.name.as_str(), self.dry_run);
        let (scope, resource) = (&self.scope, self.backup.object.resource.as_str());
        let mut object = Some(object);
        retry::on_conflict(name, |_| {
            let known = object.take();
            let build = &build;
            async move {
                let current = match known {
                    Some(current) => current,
                    None => {
                        kubeio::get_object(api, name).await.map_err(|e| Error::api(format!("re-reading {name}"), e))?
                    }
                };
                match kubeio::json_patch(api, name, build(&current)?, dry_run).await {
                    Ok(written) if dry_run => Ok(Attempt::Done(written)),
                    Ok(_) => kubeio::get_object(api, name)
                        .await
                        .map(Attempt::Done)
                        .map_err(|e| Error::api(format!("re-reading {name}"), e)),
                    Err(e) if retry::is_conflict(&e) => Ok(Attempt::Conflict),
                    Err(e) => Err(kubeio::classify_error(e, "patch", resource, scope)),
                }
            }
        })
        .await
    }
}

fn version_of(object: &Value) -> Result<String> {
    patch::resource_version(object).map_err(|source| Error::Plan { target: "the object".into(), source })
}

fn unconfirmed(label: &str, why: &str) -> Error {
    Error::Unconfirmed { target: label.to_string(), why: why.to_string() }
}

fn render_diff(backup: &Backup, live: &Value) -> String {
    let mut out = String::new();
    let mut section = |title: &str, before: String, after: String| {
        if before == after {
            return;
        }
        out.push_str(&format!("  {title}\n"));
        out.push_str(&output::diff_lines(&before, &after, |_, line| line.to_string()));
    };
    if let Some(entries) = &backup.managed_fields {
        let current = live.pointer("/metadata/managedFields").cloned().unwrap_or(Value::Null);
        if !patch::same_entries(&current, entries) {
            section("managedFields", yaml(&strip_times(&current)), yaml(&strip_times(entries)));
        }
    }
    for (key, value) in &backup.annotations {
        let current = live.pointer(&patch::annotation_path(key)).cloned().unwrap_or(Value::Null);
        section(&format!("annotation {key}"), format!("{}\n", text_of(&current)), format!("{}\n", text_of(value)));
    }
    if let Some(payload) = &backup.release_payload {
        let current = match backup.object.kind.as_str() {
            "Secret" => live
                .pointer("/data/release")
                .and_then(Value::as_str)
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
            _ => live.pointer("/data/release").and_then(Value::as_str).map(str::to_string),
        }
        .unwrap_or_default();
        if &current != payload {
            let manifest = |payload: &str| {
                crate::core::helm::decode_payload(payload.as_bytes())
                    .ok()
                    .and_then(|json| serde_json::from_str::<Value>(&json).ok())
                    .and_then(|v| v.get("manifest").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default()
            };
            section("Helm release manifest", manifest(&current), manifest(payload));
        }
    }
    out
}

fn text_of(value: &Value) -> String {
    value.as_str().map(str::to_string).unwrap_or_else(|| "(absent)".into())
}

/// Entry times make a diff noisy without saying anything about ownership.
fn strip_times(entries: &Value) -> Value {
    let mut entries = entries.clone();
    for entry in entries.as_array_mut().into_iter().flatten() {
        if let Some(map) = entry.as_object_mut() {
            map.shift_remove("time");
        }
    }
    entries
}
