//! `cargo xtask dist`: the release archive krew installs from. An optimised build (the release
//! profile: LTO, stripped, one codegen unit), packed with LICENSE (krew-index requires the licence
//! inside) as `kubectl-hpa-migrate_v<version>_<os>_<arch>.tar.gz` under `target/dist/`, with its
//! sha256 beside it; the matching platform's `sha256:` line in `plugin.yaml` is rewritten to it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

use crate::workspace_root;

const PACKAGE: &str = "kubectl-hpa-migrate";
const BIN: &str = "kubectl-hpa_migrate";
const MANIFEST: &str = "plugin.yaml";
/// The operating systems the manifest offers, as krew's `os` label names them.
const OSES: [&str; 3] = ["linux", "darwin", "windows"];

/// A platform as krew's `os`/`arch` selector labels name it.
#[derive(Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: &'static str,
    pub arch: &'static str,
}

impl Platform {
    /// The platform a Rust target triple (`aarch64-apple-darwin`) builds for.
    fn of_triple(triple: &str) -> Result<Self> {
        let mut parts = triple.split('-');
        let arch = parts.next().unwrap_or_default();
        let os = parts.find(|part| OSES.contains(part)).unwrap_or_default();
        Self::from_rust_names(os, arch)
            .with_context(|| format!("target `{triple}` is not a platform the krew manifest offers"))
    }

    /// The platform this xtask binary runs on, which is what a plain `cargo build` targets.
    fn host() -> Result<Self> {
        let os = if std::env::consts::OS == "macos" { "darwin" } else { std::env::consts::OS };
        Self::from_rust_names(os, std::env::consts::ARCH).with_context(|| {
            format!("the host ({}/{}) is not a platform the krew manifest offers", os, std::env::consts::ARCH)
        })
    }

    fn from_rust_names(os: &str, arch: &str) -> Option<Self> {
        let os = OSES.into_iter().find(|known| *known == os)?;
        let arch = match arch {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            _ => return None,
        };
        Some(Self { os, arch })
    }

    fn exe_suffix(&self) -> &'static str {
        if self.os == "windows" { ".exe" } else { "" }
    }
}

/// Builds the release binary for `target` (the host when `None`) and packs the archive.
pub fn dist(target: Option<&str>) -> Result<()> {
    let platform = match target {
        Some(triple) => Platform::of_triple(triple)?,
        None => Platform::host()?,
    };
    let (version, target_dir) = package_metadata()?;

    let mut build = vec!["build", "--release", "--locked", "--bin", BIN];
    if let Some(triple) = target {
        build.extend(["--target", triple]);
    }
    crate::cargo(&build, &[])?;
    let binary_name = format!("{BIN}{}", platform.exe_suffix());
    let binary = target_dir.join(target.unwrap_or_default()).join("release").join(&binary_name);

    let dist_dir = crate::layout::dist_dir(&workspace_root());
    fs::create_dir_all(&dist_dir)?;
    let archive_name = format!("{PACKAGE}_v{version}_{}_{}.tar.gz", platform.os, platform.arch);
    let path = dist_dir.join(&archive_name);
    let license = workspace_root().join("LICENSE");
    write_archive(&path, &[(binary_name.as_str(), binary.as_path(), 0o755), ("LICENSE", license.as_path(), 0o644)])?;

    let sha256 = format!("{:x}", Sha256::digest(fs::read(&path)?));
    fs::write(dist_dir.join(format!("{archive_name}.sha256")), format!("{sha256}  {archive_name}\n"))?;
    let binary_size = fs::metadata(&binary)?.len();
    let archive_size = fs::metadata(&path)?.len();
    eprintln!(
        "xtask: {} ({} KiB; {binary_name} {} KiB), sha256 {sha256}",
        path.display(),
        archive_size / 1024,
        binary_size / 1024
    );

    let manifest = workspace_root().join(MANIFEST);
    let text = fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let updated = with_sha256(&text, &archive_name, &sha256)
        .with_context(|| format!("updating the {}/{} sha256 in {MANIFEST}", platform.os, platform.arch))?;
    if updated != text {
        fs::write(&manifest, updated)?;
        eprintln!("xtask: {MANIFEST}: {}/{} sha256 set to {sha256}", platform.os, platform.arch);
    }
    Ok(())
}

/// The crate's version and cargo's target directory.
fn package_metadata() -> Result<(String, PathBuf)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!("`cargo metadata` failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let version = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == PACKAGE)
        .and_then(|p| p["version"].as_str())
        .with_context(|| format!("cargo metadata lists no package {PACKAGE}"))?;
    let target_dir = metadata["target_directory"].as_str().context("cargo metadata has no target_directory")?;
    Ok((version.to_string(), PathBuf::from(target_dir)))
}

/// Writes a gzipped tar of `entries` (name in the archive, file, mode) that depends only on the
/// files' contents: fixed timestamps, owner root, no gzip file name.
fn write_archive(path: &Path, entries: &[(&str, &Path, u32)]) -> Result<()> {
    let partial = path.with_extension("gz.partial");
    let file = fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut tar = tar::Builder::new(GzBuilder::new().mtime(0).write(file, Compression::best()));
    for (name, source, mode) in entries {
        let data = fs::read(source).with_context(|| format!("reading {}", source.display()))?;
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, data.as_slice())?;
    }
    let mut gzip = tar.into_inner()?;
    gzip.flush()?;
    gzip.finish()?.sync_all()?;
    fs::rename(&partial, path)?;
    Ok(())
}

/// `manifest` with the `sha256:` line of the platform whose `uri:` ends in `/archive_name` set to
/// `sha256`; every other byte is kept.
fn with_sha256(manifest: &str, archive_name: &str, sha256: &str) -> Result<String> {
    let mut lines: Vec<&str> = manifest.split_inclusive('\n').collect();
    let suffix = format!("/{archive_name}");
    let uri_line = lines
        .iter()
        .position(|line| {
            let line = line.trim();
            line.trim_start_matches("- ").starts_with("uri:") && line.ends_with(&suffix)
        })
        .with_context(|| {
            format!("no platform has a uri ending in {suffix}: set spec.version and every uri to this version")
        })?;
    // The sha256 belongs to the same platform entry: before the next `- ` item.
    let sha_line = lines[uri_line..]
        .iter()
        .enumerate()
        .skip(1)
        .take_while(|(_, line)| !line.trim_start().starts_with("- "))
        .find(|(_, line)| line.trim_start().starts_with("sha256:"))
        .map(|(offset, _)| uri_line + offset)
        .context("the platform with that uri has no sha256 line")?;
    let old = lines[sha_line];
    let indent = &old[..old.len() - old.trim_start().len()];
    let replacement = format!("{indent}sha256: {sha256}{}", if old.ends_with('\n') { "\n" } else { "" });
    lines[sha_line] = &replacement;
    Ok(lines.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_from_triples() {
        let platform = |triple| Platform::of_triple(triple).unwrap();
        assert_eq!(platform("x86_64-unknown-linux-gnu"), Platform { os: "linux", arch: "amd64" });
        assert_eq!(platform("aarch64-unknown-linux-musl"), Platform { os: "linux", arch: "arm64" });
        assert_eq!(platform("x86_64-apple-darwin"), Platform { os: "darwin", arch: "amd64" });
        assert_eq!(platform("aarch64-pc-windows-msvc"), Platform { os: "windows", arch: "arm64" });
        assert!(Platform::of_triple("riscv64gc-unknown-linux-gnu").is_err());
        assert!(Platform::of_triple("x86_64-unknown-freebsd").is_err());
    }

    #[test]
    fn rewrites_only_the_matching_sha256_line() {
        let manifest = "spec:\n  platforms:\n  - selector: {}\n    uri: https://x/v1/a_linux_amd64.tar.gz\n    sha256: old\n    bin: a\n  - uri: https://x/v1/a_darwin_amd64.tar.gz\n    sha256: other\n";
        let updated = with_sha256(manifest, "a_linux_amd64.tar.gz", "new").unwrap();
        assert_eq!(updated, manifest.replacen("sha256: old", "sha256: new", 1));
        let updated = with_sha256(manifest, "a_darwin_amd64.tar.gz", "new").unwrap();
        assert_eq!(updated, manifest.replacen("sha256: other", "sha256: new", 1));
        assert!(with_sha256(manifest, "a_windows_amd64.tar.gz", "new").is_err());
    }
}
