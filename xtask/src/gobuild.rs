//! Builds Go tools from the pinned Go modules under `tests/`, cached by the hash of the module
//! files and the link flags, so a warm run costs nothing and a changed pin rebuilds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// One Go package to build and the file name the binary gets.
pub struct GoBinary {
    pub package: &'static str,
    pub name: &'static str,
}

pub struct GoModule<'a> {
    /// A short name for progress messages, e.g. "control plane".
    pub label: &'a str,
    /// Directory holding go.mod and go.sum.
    pub dir: PathBuf,
    pub binaries: &'a [GoBinary],
    pub ldflags: String,
    pub out_dir: PathBuf,
}

impl GoModule<'_> {
    fn cache_key(&self) -> Result<String> {
        let mut hasher = Sha256::new();
        for file in ["go.mod", "go.sum"] {
            let path = self.dir.join(file);
            hasher.update(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
        }
        hasher.update(self.ldflags.as_bytes());
        for binary in self.binaries {
            hasher.update(binary.package.as_bytes());
            hasher.update(binary.name.as_bytes());
        }
        Ok(format!("{:x}", hasher.finalize()))
    }

    fn stamp_path(&self) -> PathBuf {
        self.out_dir.join(format!(".stamp-{}", self.label.replace(' ', "-")))
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.out_dir.join(name)
    }

    /// Builds the binaries unless the stamp says they are current.
    pub fn ensure_built(&self) -> Result<()> {
        let key = self.cache_key()?;
        let stamp = self.stamp_path();
        let all_present = self.binaries.iter().all(|b| self.path_of(b.name).is_file());
        if all_present && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == key) {
            return Ok(());
        }
        go_toolchain()?;
        std::fs::create_dir_all(&self.out_dir)?;
        let _ = std::fs::remove_file(&stamp);
        let build_dir = self.out_dir.join(format!(".build-{}", self.label.replace(' ', "-")));
        std::fs::create_dir_all(&build_dir)?;
        eprintln!(
            "xtask: building the {} from Go modules in {} (a cold build takes many minutes on 2 cores; cached afterwards)",
            self.label,
            self.dir.display()
        );
        let started = Instant::now();
        let mut command = Command::new("go");
        command
            .current_dir(&self.dir)
            .env("CGO_ENABLED", "0")
            .args(["build", "-v", "-trimpath", "-ldflags", &self.ldflags, "-o"])
            .arg(&build_dir)
            .args(self.binaries.iter().map(|b| b.package))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("starting `go build`")?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut packages = 0usize;
        let mut last_report = Instant::now();
        let mut tail: Vec<String> = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            if line.starts_with(|c: char| c.is_ascii_alphanumeric()) && !line.contains(' ') {
                packages += 1;
            } else {
                tail.push(line);
                if tail.len() > 40 {
                    tail.remove(0);
                }
            }
            if last_report.elapsed() > Duration::from_secs(20) {
                eprintln!(
                    "xtask:   {}: {packages} packages compiled, {}s elapsed",
                    self.label,
                    started.elapsed().as_secs()
                );
                last_report = Instant::now();
            }
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("`go build` of the {} failed ({status}):\n{}", self.label, tail.join("\n"));
        }
        // Go names a binary after the package's last path element (`server` for etcd's
        // `go.etcd.io/etcd/server/v3`), so move each one to the name the harness expects.
        for binary in self.binaries {
            let built = package_binary_name(binary.package);
            std::fs::rename(build_dir.join(&built), self.path_of(binary.name))
                .with_context(|| format!("moving {built} to {}", binary.name))?;
        }
        std::fs::write(&stamp, key)?;
        eprintln!("xtask: built the {} in {}s ({packages} packages)", self.label, started.elapsed().as_secs());
        Ok(())
    }
}

fn package_binary_name(package: &str) -> String {
    let mut parts = package.rsplit('/');
    let last = parts.next().unwrap_or(package);
    let is_major_suffix = last.len() > 1 && last.starts_with('v') && last[1..].chars().all(|c| c.is_ascii_digit());
    if is_major_suffix { parts.next().unwrap_or(last).to_string() } else { last.to_string() }
}

fn go_toolchain() -> Result<()> {
    let output = Command::new("go").arg("version").output();
    match output {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!(
            "the Go toolchain is required to build the local control plane and test tools, and `go version` failed: install Go (1.26 or newer) and put it on PATH"
        ),
    }
}

/// Reads the version of `module` from a `require` line in `go.mod`.
/// Where `module`, as the Go module in `module_dir` requires it, is in the module cache (its
/// source: CRDs, RBAC).
pub fn module_source(module_dir: &Path, module: &str) -> Result<PathBuf> {
    let output = Command::new("go")
        .current_dir(module_dir)
        .args(["list", "-m", "-f", "{{.Dir}}", module])
        .output()
        .context("running `go list -m`")?;
    if !output.status.success() {
        bail!("`go list -m {module}` failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

pub fn required_version(go_mod: &Path, module: &str) -> Result<String> {
    let text = std::fs::read_to_string(go_mod).with_context(|| format!("reading {}", go_mod.display()))?;
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let first = words.next()?;
            let (name, version) =
                if first == "require" { (words.next()?, words.next()?) } else { (first, words.next()?) };
            (name == module).then(|| version.to_string())
        })
        .next()
        .with_context(|| format!("{} does not require {module}", go_mod.display()))
}

#[cfg(test)]
mod tests {
    use super::package_binary_name;

    #[test]
    fn binary_names_follow_go_rules() {
        assert_eq!(package_binary_name("go.etcd.io/etcd/server/v3"), "server");
        assert_eq!(package_binary_name("k8s.io/kubernetes/cmd/kubectl"), "kubectl");
        assert_eq!(package_binary_name("helm.sh/helm/v3/cmd/helm"), "helm");
    }
}
