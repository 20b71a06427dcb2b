//! Backups of exactly what a change touches, written before the change, so `restore` can put
//! it back. One JSON file per object and change.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

pub const BACKUP_API_VERSION: &str = "hpa-migrate.io/v1alpha1";

/// Which object a backup belongs to; `uid` guards against restoring onto a recreated object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    /// The plural resource name, so `restore` needs no discovery.
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub api_version: String,
    pub kind: String,
    pub created: String,
    /// What the change was (`managed-fields`, `last-applied`, `pause-flux`, `helm-release`...).
    pub change: Vec<String>,
    pub object: ObjectRef,
    pub resource_version: String,
    /// The object's managedFields before the change, when the change touches them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_fields: Option<Value>,
    /// The annotations the change touches and their values before it (`null`: absent).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub annotations: serde_json::Map<String, Value>,
    /// A Helm release record's `data.release` before the change, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_payload: Option<String>,
}

impl Backup {
    pub fn new(change: Vec<String>, object: ObjectRef, resource_version: String) -> Self {
        Self {
            api_version: BACKUP_API_VERSION.into(),
            kind: "Backup".into(),
            created: jiff::Timestamp::now().to_string(),
            change,
            object,
            resource_version,
            managed_fields: None,
            annotations: serde_json::Map::new(),
            release_payload: None,
        }
    }

    /// Writes the backup into `dir` (created if needed) and returns the file's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.6fZ").to_string();
        let kind = self.object.kind.to_lowercase();
        let path = dir.join(format!("{stamp}-{}-{kind}-{}.json", self.object.namespace, self.object.name));
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Failed(e.to_string()))?;
        std::fs::write(&path, text + "\n").map_err(|source| Error::Io { path: path.clone(), source })?;
        Ok(path)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                kind: "backup file".into(),
                name: path.display().to_string(),
                namespace: String::new(),
            },
            _ => Error::Usage(format!("cannot read backup {}: {e}", path.display())),
        })?;
        let backup: Backup = serde_json::from_str(&text)
            .map_err(|e| Error::Usage(format!("{} is not a hpa-migrate backup: {e}", path.display())))?;
        if backup.api_version != BACKUP_API_VERSION || backup.kind != "Backup" {
            return Err(Error::Usage(format!("{} is not a hpa-migrate backup", path.display())));
        }
        Ok(backup)
    }
}

/// The per-user state directory for backups: `$XDG_STATE_HOME/kubectl-hpa-migrate/backups`, or
/// `~/.local/state/kubectl-hpa-migrate/backups`.
pub fn default_dir() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home::home_dir().map(|home| home.join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("kubectl-hpa-migrate/backups")
}

/// The latest strip backup per object uid found in `dir` (none if the directory is absent).
/// `check` uses it to tell that a deploy tool took replicas back after an earlier strip.
pub fn latest_by_uid(dir: &Path) -> std::collections::BTreeMap<String, (Backup, PathBuf)> {
    let mut latest: std::collections::BTreeMap<String, (Backup, PathBuf)> = std::collections::BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return latest };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json"))
    {
        let Ok(backup) = Backup::read(&path) else { continue };
        let newer = latest.get(&backup.object.uid).is_none_or(|(known, _)| known.created < backup.created);
        if newer && !backup.object.uid.is_empty() {
            latest.insert(backup.object.uid.clone(), (backup, path));
        }
    }
    latest
}
