//! The real Flux helm-controller beside the control plane, run like kustomize-controller
//! (xtask/src/flux.rs): built from the pinned Go module in `tests/tools/helm-controller/` (a
//! module that requires helm-controller and carries over its replace directives), run outside
//! the cluster with a service account bound to `cluster-admin`, the HelmRelease CRD from its
//! module and the chart source CRDs (HelmChart, OCIRepository, ExternalArtifact) from
//! source-controller's module.
//!
//! No source-controller runs: with `spec.chartRef` helm-controller reads only its source's
//! `status.artifact` (url, digest) and downloads the chart tarball from that URL, so the tests
//! serve charts themselves and write the HelmChart status as source-controller would
//! (tests/it/helm_controller.rs).

use std::path::PathBuf;

use anyhow::Result;

use crate::cluster::Paths;
use crate::controller;
use crate::flux::{controller_crd_files, ensure_controller_running};
use crate::gobuild::{GoBinary, GoModule};
use crate::workspace_root;

const MODULE: &str = "github.com/fluxcd/helm-controller";
/// The component name: binary, pid and log file under target/cluster. It is also the field
/// manager the controller and its embedded Helm SDK write with, as on real clusters.
pub const COMPONENT: &str = "helm-controller";

fn module_dir() -> PathBuf {
    workspace_root().join("tests/tools/helm-controller")
}

pub fn module(paths: &Paths) -> GoModule<'static> {
    const BINARIES: &[GoBinary] = &[GoBinary { package: MODULE, name: COMPONENT }];
    GoModule {
        label: "helm-controller",
        dir: module_dir(),
        binaries: BINARIES,
        ldflags: "-s -w".into(),
        out_dir: paths.bin.clone(),
    }
}

pub fn build(paths: &Paths) -> Result<()> {
    module(paths).ensure_built()
}

/// Starts the controller on the running plane unless it already runs (the API server is left
/// alone, so tests running elsewhere on the plane are not disturbed).
pub fn ensure_running(paths: &Paths) -> Result<()> {
    ensure_controller_running(
        paths,
        COMPONENT,
        &controller_crd_files(
            &module_dir(),
            MODULE,
            "helm.toolkit.fluxcd.io_helmreleases",
            &["helmcharts", "ocirepositories", "externalartifacts"],
        )?,
        &["helmreleases.helm.toolkit.fluxcd.io", "helmcharts.source.toolkit.fluxcd.io"],
    )
}

/// Stops the controller if it runs (before the plane, whose API server it talks to).
pub fn stop(paths: &Paths) {
    controller::stop(paths, COMPONENT, COMPONENT);
}
