//! krew's own tools, built from the pinned Go module in `tests/tools/krew/`: `kubectl-krew` (the
//! plugin manager, named so that kubectl runs it as `kubectl krew`) and `validate-krew-manifest`
//! (the check krew-index runs on every submitted manifest). The distribution tests drive both.

use std::process::Command;

use anyhow::{Context, Result};

use crate::gobuild::{GoBinary, GoModule, required_version};
use crate::workspace_root;

const KREW_MODULE: &str = "sigs.k8s.io/krew";

pub fn tools_module() -> Result<GoModule<'static>> {
    const BINARIES: &[GoBinary] = &[
        GoBinary { package: "sigs.k8s.io/krew/cmd/krew", name: "kubectl-krew" },
        GoBinary { package: "sigs.k8s.io/krew/cmd/validate-krew-manifest", name: "validate-krew-manifest" },
    ];
    let dir = workspace_root().join("tests/tools/krew");
    let version = required_version(&dir.join("go.mod"), KREW_MODULE)?;
    // krew reports these in `kubectl krew version`; an unparsable tag would also make it treat
    // itself as a development build.
    let package = "sigs.k8s.io/krew/internal/version";
    let mut ldflags = format!("-s -w -X {package}.gitTag={version}");
    if let Some(commit) = module_commit(&dir, &version) {
        ldflags.push_str(&format!(" -X {package}.gitCommit={commit}"));
    }
    Ok(GoModule {
        label: "krew tools",
        dir,
        binaries: BINARIES,
        ldflags,
        out_dir: crate::layout::tools_bin(&workspace_root()),
    })
}

/// The commit the module proxy recorded for the pinned krew tag, if it recorded one.
fn module_commit(dir: &std::path::Path, version: &str) -> Option<String> {
    let output = Command::new("go")
        .current_dir(dir)
        .args(["mod", "download", "-json", &format!("{KREW_MODULE}@{version}")])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let hash = info.pointer("/Origin/Hash")?.as_str()?;
    hash.chars().all(|c| c.is_ascii_hexdigit()).then(|| hash.to_string())
}

pub fn build() -> Result<()> {
    tools_module()?.ensure_built().context("building the krew tools")
}
