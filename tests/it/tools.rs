//! The real deploy tools the tests drive, built from the pinned Go modules in `tests/tools/` by
//! `cargo xtask tools helm` (which `cargo xtask test` runs first), and the local test charts.

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use serde_json::Value;

use crate::common::{TestNamespace, admin_kubeconfig, assert_success, repo_root, tools_bin};

/// A binary built into `target/tools/bin`; panics, naming the command that builds it, when
/// it is missing, so a test never passes without the tool it needs.
pub fn tool_bin(name: &str) -> PathBuf {
    let path = tools_bin().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo xtask tools helm` (`cargo xtask test` builds it first)",
        path.display()
    );
    path
}

/// A chart under `tests/charts/`.
pub fn chart(name: &str) -> String {
    repo_root().join("tests/charts").join(name).to_string_lossy().into_owned()
}

/// A Helm CLI (3 or 4) run against the control plane in one namespace, with a home, cache,
/// config and data directory of its own and nothing inherited from the caller's environment.
pub struct Helm {
    binary: PathBuf,
    namespace: String,
    driver: Option<&'static str>,
    home: tempfile::TempDir,
}

impl Helm {
    pub fn v3(ns: &TestNamespace) -> Self {
        Self::new("helm3", ns)
    }

    pub fn v4(ns: &TestNamespace) -> Self {
        Self::new("helm4", ns)
    }

    fn new(binary: &str, ns: &TestNamespace) -> Self {
        let home = tempfile::tempdir().expect("creating a Helm home");
        Self { binary: tool_bin(binary), namespace: ns.name.clone(), driver: None, home }
    }

    /// Stores release records with `HELM_DRIVER=<driver>` (`secret`, Helm's default, or
    /// `configmap`).
    pub fn with_driver(mut self, driver: &'static str) -> Self {
        self.driver = Some(driver);
        self
    }

    /// Runs `helm <args> --namespace <ns>` and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        let home = self.home.path();
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .args(["--namespace", &self.namespace])
            .env_clear()
            .env("HOME", home)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("KUBECONFIG", admin_kubeconfig())
            .stdin(Stdio::null());
        if let Some(driver) = self.driver {
            command.env("HELM_DRIVER", driver);
        }
        command.output().unwrap_or_else(|e| panic!("running {}: {e}", self.binary.display()))
    }

    /// Runs `helm <args>`, panics unless it succeeds, and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_success(&output, &format!("{} {}", self.binary.display(), args.join(" ")));
        String::from_utf8(output.stdout).expect("helm prints UTF-8")
    }
}

/// The name of the record Helm stores for revision `revision` of `release`, with either driver.
pub fn release_record_name(release: &str, revision: u32) -> String {
    format!("sh.helm.release.v1.{release}.v{revision}")
}

/// Decodes the `release` entry of a release record (a Secret or a ConfigMap as the API returns
/// it) layer by layer: the Secret's own base64, then Helm's base64 text, then gzip, then JSON.
/// Panics if any layer is not what Helm is known to write.
pub fn decode_release_record(record: &Value) -> Value {
    let standard = base64::engine::general_purpose::STANDARD;
    let helm_text: Vec<u8> = match record["kind"].as_str() {
        Some("Secret") => standard.decode(record["data"]["release"].as_str().expect("Secret data.release")).unwrap(),
        Some("ConfigMap") => record["data"]["release"].as_str().expect("ConfigMap data.release").as_bytes().to_vec(),
        other => panic!("a release record is a Secret or a ConfigMap, not {other:?}"),
    };
    let gzipped = standard.decode(&helm_text).expect("Helm's payload is base64 text");
    assert_eq!(gzipped[..2], [0x1f, 0x8b], "Helm gzips the release before base64");
    let mut json = String::new();
    flate2::read::GzDecoder::new(gzipped.as_slice()).read_to_string(&mut json).expect("gunzip the release");
    serde_json::from_str(&json).expect("the release is JSON")
}

/// The release record of `revision` as the API returns it; `kind` is `secret` or `configmap`.
pub fn release_record(ns: &TestNamespace, kind: &str, release: &str, revision: u32) -> Value {
    let name = release_record_name(release, revision);
    let output = ns.kubectl(&["get", kind, &name, "-o", "json", "--show-managed-fields"], None);
    assert_success(&output, &format!("getting {kind} {name}"));
    serde_json::from_slice(&output.stdout).expect("kubectl prints JSON")
}
