//! Real Helm 3 and Helm 4 CLIs for the integration tests, built from the pinned Go modules in
//! `tests/tools/helm3/` and `tests/tools/helm4/` into `target/tools/bin/` as `helm3` and `helm4`.

use std::path::PathBuf;

use anyhow::Result;

use crate::gobuild::{GoBinary, GoModule, required_version};
use crate::workspace_root;

/// Where the test tools land; the integration tests look for them here.
pub fn bin_dir() -> PathBuf {
    crate::layout::tools_bin(&workspace_root())
}

/// One Helm major version: its module directory under `tests/tools/` and its binary.
fn helm_module(major: u8, binaries: &'static [GoBinary]) -> Result<GoModule<'static>> {
    let dir = workspace_root().join(format!("tests/tools/helm{major}"));
    let module = format!("helm.sh/helm/v{major}");
    let version = required_version(&dir.join("go.mod"), &module)?;
    // The module proxy carries no commit id, so the commit is zeros as for the control plane;
    // the version is the real one, so `helm version` reports what was built.
    let package = format!("{module}/internal/version");
    let ldflags = format!(
        "-s -w -X {package}.version={version} -X {package}.metadata= \
         -X {package}.gitCommit=0000000000000000000000000000000000000000 -X {package}.gitTreeState=clean"
    );
    let label = if major == 3 { "helm 3" } else { "helm 4" };
    Ok(GoModule { label, dir, binaries, ldflags, out_dir: bin_dir() })
}

pub fn build() -> Result<()> {
    const HELM3: &[GoBinary] = &[GoBinary { package: "helm.sh/helm/v3/cmd/helm", name: "helm3" }];
    const HELM4: &[GoBinary] = &[GoBinary { package: "helm.sh/helm/v4/cmd/helm", name: "helm4" }];
    helm_module(3, HELM3)?.ensure_built()?;
    helm_module(4, HELM4)?.ensure_built()
}
