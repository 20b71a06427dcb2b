//! Backups of exactly what a change touches, written before the change, so `restore` can put
//! it back. One JSON file per object and change.

use std::collections::BTreeMap;
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
        let object = &self.object;
        let path = dir.join(format!("{stamp}-{}", file_suffix(&object.namespace, &object.kind, &object.name)));
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::json("encoding the backup", e))?;
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

/// What follows the stamp in the name of a backup file of this object.
fn file_suffix(namespace: &str, kind: &str, name: &str) -> String {
    format!("{namespace}-{}-{name}.json", kind.to_lowercase())
}

/// The latest backup of each of `objects` (namespace, kind, name, uid) found in
/// `dir`, keyed by uid (none if the directory is absent). `check` uses it to tell that a deploy
/// tool took replicas back after an earlier strip. Only the latest file of each object is read:
/// the name (`<stamp>-<namespace>-<kind>-<name>.json`, stamp of fixed width) says which it is,
/// so a long-lived backup directory costs one directory listing.
pub fn latest_of<'a>(
    dir: &Path,
    objects: impl IntoIterator<Item = (&'a str, &'a str, &'a str, &'a str)>,
) -> BTreeMap<String, (Backup, PathBuf)> {
    let wanted: BTreeMap<String, &str> =
        objects.into_iter().map(|(namespace, kind, name, uid)| (file_suffix(namespace, kind, name), uid)).collect();
    let mut newest: BTreeMap<&str, String> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return BTreeMap::new() };
    for file in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        let Some((key, _)) = file.get(STAMP_WIDTH + 1..).and_then(|rest| wanted.get_key_value(rest)) else { continue };
        if file.as_bytes()[STAMP_WIDTH] == b'-' && newest.get(key.as_str()).is_none_or(|known| *known < file) {
            newest.insert(key, file);
        }
    }
    newest
        .into_iter()
        .filter_map(|(key, file)| {
            let path = dir.join(file);
            let backup = Backup::read(&path).ok()?;
            (backup.object.uid == wanted[key]).then(|| (backup.object.uid.clone(), (backup, path)))
        })
        .collect()
}

/// Width of the `%Y%m%dT%H%M%S%.6fZ` stamp that starts every backup file name.
const STAMP_WIDTH: usize = "20260101T000000.000000Z".len();

#[cfg(test)]
mod tests {
    use super::*;

    fn backup_of(name: &str, uid: &str) -> Backup {
        let object = ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            resource: "deployments".into(),
            namespace: "shop".into(),
            name: name.into(),
            uid: uid.into(),
        };
        Backup::new(vec!["managed-fields".into()], object, "1".into())
    }

    #[test]
    fn only_the_latest_backup_of_each_asked_object_counts() {
        let dir = tempfile::tempdir().unwrap();
        let first = backup_of("web", "uid-1").write(dir.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let latest = backup_of("web", "uid-1").write(dir.path()).unwrap();
        // A name that merely ends like the one asked for, and an object nobody asked about.
        backup_of("old-web", "uid-2").write(dir.path()).unwrap();
        backup_of("api", "uid-3").write(dir.path()).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a backup").unwrap();
        assert!(first < latest, "stamps sort in time order");

        let found = latest_of(dir.path(), [("shop", "Deployment", "web", "uid-1")]);
        assert_eq!(found.keys().collect::<Vec<_>>(), vec!["uid-1"]);
        assert_eq!(found["uid-1"].1, latest);
    }

    #[test]
    fn a_backup_of_an_earlier_object_with_the_same_name_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        backup_of("web", "uid-before-recreation").write(dir.path()).unwrap();
        assert!(latest_of(dir.path(), [("shop", "Deployment", "web", "uid-now")]).is_empty());
        assert!(latest_of(&dir.path().join("absent"), [("shop", "Deployment", "web", "uid-now")]).is_empty());
    }
}
