//! Where the xtask puts what the integration tests use, under the workspace's `target/`: the
//! local control plane, the tools the tests drive, the release archives and the preflight
//! matrix. The xtask has this file as a module and tests/it/common.rs includes it by `#[path]`,
//! so the two read one layout; it uses std alone for that.

use std::path::{Path, PathBuf};

/// The local control plane of `cargo xtask cluster up`, under `target/cluster`.
pub struct Paths {
    pub bin: PathBuf,
    pub state: PathBuf,
    pub admin_kubeconfig: PathBuf,
    pub viewer_kubeconfig: PathBuf,
    pub stripper_kubeconfig: PathBuf,
}

impl Paths {
    pub fn in_workspace(workspace: &Path) -> Self {
        let root = workspace.join("target/cluster");
        Self {
            bin: root.join("bin"),
            state: root.join("state"),
            admin_kubeconfig: root.join("admin.kubeconfig"),
            viewer_kubeconfig: root.join("viewer.kubeconfig"),
            stripper_kubeconfig: root.join("stripper.kubeconfig"),
        }
    }

    pub fn kubectl(&self) -> PathBuf {
        self.bin.join("kubectl")
    }

    pub fn kube_apiserver(&self) -> PathBuf {
        self.bin.join("kube-apiserver")
    }

    pub fn pid_file(&self, component: &str) -> PathBuf {
        self.state.join(format!("{component}.pid"))
    }

    pub fn log_file(&self, component: &str) -> PathBuf {
        self.state.join(format!("{component}.log"))
    }

    /// The plane's kube-apiserver arguments, one per line.
    pub fn apiserver_args(&self) -> PathBuf {
        self.state.join("kube-apiserver.args")
    }

    /// The arguments of a second kube-apiserver on the same etcd, one per line, with `{port}`
    /// and `{dir}` (a directory of the instance's own) to fill in: what the fault tests
    /// (tests/it/apiserver.rs) and `cluster flaky-apiserver` run.
    pub fn fault_apiserver_args(&self) -> PathBuf {
        self.state.join("fault-apiserver.args")
    }
}

/// Where the tools the tests drive (Helm 3 and 4, krew) are built.
pub fn tools_bin(workspace: &Path) -> PathBuf {
    workspace.join("target/tools/bin")
}

/// Where `cargo xtask dist` packs the release archives.
pub fn dist_dir(workspace: &Path) -> PathBuf {
    workspace.join("target/dist")
}

/// The preflight tests' predictions against what each deploy really did, a row each, which
/// `cargo xtask test` prints after the suite.
pub fn preflight_matrix(workspace: &Path) -> PathBuf {
    workspace.join("target/preflight-matrix.txt")
}
