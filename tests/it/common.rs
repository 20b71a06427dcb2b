//! Shared harness: the local control plane's kubeconfigs and binaries, a namespace per test,
//! real kubectl, server-side apply as a named manager, and fixture capture.

#![allow(dead_code)]

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[path = "../../xtask/src/layout.rs"]
mod layout;

/// Where `cargo xtask cluster up` put the local control plane: the xtask's own layout.
pub fn cluster() -> &'static layout::Paths {
    static PATHS: std::sync::LazyLock<layout::Paths> =
        std::sync::LazyLock::new(|| layout::Paths::in_workspace(repo_root()));
    &PATHS
}

/// Where `cargo xtask tools` built the tools the tests drive.
pub fn tools_bin() -> PathBuf {
    layout::tools_bin(repo_root())
}

/// Where `cargo xtask dist` packed the release archives.
pub fn dist_dir() -> PathBuf {
    layout::dist_dir(repo_root())
}

/// Where the preflight tests write their matrix for `cargo xtask test` to print.
pub fn preflight_matrix() -> PathBuf {
    layout::preflight_matrix(repo_root())
}

pub fn admin_kubeconfig() -> PathBuf {
    let path = cluster().admin_kubeconfig.clone();
    assert!(
        path.is_file(),
        "the local control plane is not up ({} is missing): run `cargo xtask cluster up` or `cargo xtask test`",
        path.display()
    );
    path
}

pub fn viewer_kubeconfig() -> PathBuf {
    cluster().viewer_kubeconfig.clone()
}

/// The user bound to exactly deploy/rbac/strip.yaml.
pub fn stripper_kubeconfig() -> PathBuf {
    let path = cluster().stripper_kubeconfig.clone();
    assert!(
        path.is_file(),
        "{} is missing: the control plane predates the `stripper` user; `cargo xtask cluster up` restarts it",
        path.display()
    );
    path
}

pub fn kubectl_bin() -> PathBuf {
    cluster().kubectl()
}

pub fn plugin_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-hpa_migrate"))
}

pub async fn client_for(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("reading the test kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("loading the test kubeconfig");
    Client::try_from(config).expect("building a client")
}

/// A namespace of the test's own, deleted (without waiting) when the test ends.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() % 1_000_000;
        let name = format!("{prefix}-{}-{unique}", COUNTER.fetch_add(1, Ordering::Relaxed));
        let client = client_for(&admin_kubeconfig()).await;
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self { name, client }
    }

    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    pub async fn deployment(&self, name: &str) -> Deployment {
        self.deployments().get(name).await.unwrap_or_else(|e| panic!("getting deployment {name}: {e}"))
    }

    pub async fn deployment_value(&self, name: &str) -> Value {
        serde_json::to_value(self.deployment(name).await).unwrap()
    }

    pub async fn resource_version(&self, name: &str) -> String {
        self.deployment(name).await.metadata.resource_version.expect("a stored object has a resourceVersion")
    }

    /// `.spec.replicas` of every version of the Deployment stored after resourceVersion
    /// `since`, up to the current one. A watch from a resourceVersion replays every change
    /// since then, so a drop to 1 that the HPA (which enforces minReplicas at every sync)
    /// corrected before a GET could see it is still here.
    pub async fn replicas_stored_since(&self, name: &str, since: &str) -> Vec<i64> {
        self.stored_since(name, since)
            .await
            .iter()
            .map(|d| spec_replicas(d).expect("the API server defaults replicas"))
            .collect()
    }

    /// Every version of the Deployment stored after resourceVersion `since`, up to the current
    /// one (see [`Self::replicas_stored_since`]).
    pub async fn stored_since(&self, name: &str, since: &str) -> Vec<Value> {
        use futures::StreamExt;
        use kube::api::{WatchEvent, WatchParams};
        let current = self.resource_version(name).await;
        let params = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(60);
        let mut versions = Vec::new();
        if since == current {
            return versions;
        }
        let mut stream = self.deployments().watch(&params, since).await.expect("watching the deployment").boxed();
        loop {
            match stream.next().await {
                Some(Ok(WatchEvent::Added(d) | WatchEvent::Modified(d))) => {
                    let last = d.metadata.resource_version.as_deref() == Some(current.as_str());
                    versions.push(serde_json::to_value(d).unwrap());
                    if last {
                        break;
                    }
                }
                Some(Ok(WatchEvent::Bookmark(_))) => {}
                other => panic!("watching {name} from {since} to {current}: {other:?}"),
            }
        }
        versions
    }

    /// Checks that the Deployment went down to 1 in a version stored after resourceVersion
    /// `since` (the HPA may have restored its minimum since).
    pub async fn assert_dropped_since(&self, name: &str, since: &str) {
        let stored = self.replicas_stored_since(name, since).await;
        assert_eq!(stored.iter().min(), Some(&1), "{name} dropped to 1 in a stored version: {stored:?}");
    }

    /// Checks that the Deployment is at `count` and was in every version stored after
    /// resourceVersion `since` (none, if the deploy changed nothing).
    pub async fn assert_kept_since(&self, name: &str, since: &str, count: i64) {
        let stored = self.replicas_stored_since(name, since).await;
        assert!(stored.iter().all(|&r| r == count), "{name} left {count} in a stored version: {stored:?}");
        assert_eq!(spec_replicas(&self.deployment_value(name).await), Some(count), "{name} kept {count}");
    }

    /// Server-side apply of `object` as field manager `manager`, forced like Flux.
    pub async fn apply(&self, manager: &str, object: &Value) -> Value {
        let api_version = object["apiVersion"].as_str().unwrap();
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        // Every kind the tests apply pluralises by adding "s".
        let plural = format!("{}s", kind.to_lowercase());
        let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, &plural);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.name, &resource);
        let applied = api
            .patch(name, &PatchParams::apply(manager).force(), &Patch::Apply(object))
            .await
            .unwrap_or_else(|e| panic!("server-side apply of {kind}/{name} as {manager}: {e}"));
        serde_json::to_value(applied).unwrap()
    }

    /// Runs the real kubectl as admin in this namespace.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        kubectl(&admin_kubeconfig(), &all, stdin)
    }

    /// Runs the plugin binary against the control plane in this namespace.
    pub fn plugin(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        let mut command = Command::new(plugin_bin());
        command.arg("--kubeconfig").arg(kubeconfig).args(["-n", &self.name]).args(args);
        run_hermetic(command, None)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(&cluster().admin_kubeconfig)
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs a command with a clean environment: no user kubeconfig, no colour preferences leaking in.
pub fn run_hermetic(mut command: Command, stdin: Option<&str>) -> Output {
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = spawn_hermetic(command);
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Starts a command in the environment `run_hermetic` gives it, stdout and stderr piped (stdin
/// is the caller's to set).
pub fn spawn_hermetic(mut command: Command) -> std::process::Child {
    command
        .env_remove("KUBECONFIG")
        .env_remove("NO_COLOR")
        .env("HOME", std::env::temp_dir().join("hpa-migrate-test-home"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().expect("spawning a test command")
}

pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(kubectl_bin());
    command.arg("--kubeconfig").arg(kubeconfig).args(args);
    run_hermetic(command, stdin)
}

pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Polls `probe` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {}s waiting for {what}", timeout.as_secs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A Deployment manifest as a deploy tool would apply it, with or without `replicas`.
pub fn deployment_manifest(name: &str, replicas: Option<i64>) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
        }
    });
    if let Some(replicas) = replicas {
        spec["replicas"] = json!(replicas);
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec})
}

/// The replicas-only object of the Kubernetes docs' ownership transfer.
pub fn replicas_only(api_version: &str, kind: &str, name: &str, replicas: i64) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": {"replicas": replicas}})
}

pub fn hpa_manifest(name: &str, target_kind: &str, target: &str, min: i64, max: i64) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": target_kind, "name": target},
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
        }
    })
}

pub fn spec_replicas(object: &Value) -> Option<i64> {
    object.pointer("/spec/replicas").and_then(Value::as_i64)
}

/// The managers whose managedFields entry owns `.spec.replicas`.
pub fn replica_managers(object: &Value) -> Vec<(String, String, Option<String>)> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.pointer("/fieldsV1/f:spec/f:replicas").is_some())
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or_default().to_string(),
                e["operation"].as_str().unwrap_or_default().to_string(),
                e.get("subresource").and_then(Value::as_str).map(str::to_string),
            )
        })
        .collect()
}

/// With HPA_MIGRATE_UPDATE_FIXTURES=1 (`cargo xtask fixtures`), saves a real server object
/// under tests/fixtures/ for the unit tests of the pure core.
pub fn capture_fixture(name: &str, object: &Value) {
    if std::env::var_os("HPA_MIGRATE_UPDATE_FIXTURES").is_none() {
        return;
    }
    let path = repo_root().join("tests/fixtures").join(format!("{name}.json"));
    let mut text = serde_json::to_string_pretty(object).unwrap();
    text.push('\n');
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The namespace's Events and ReplicaSets as `kubectl get -o json` lists them, captured as
/// `events-<name>` and `replicasets-<name>` for the timeline's unit tests.
pub fn capture_history(ns: &TestNamespace, name: &str) {
    if std::env::var_os("HPA_MIGRATE_UPDATE_FIXTURES").is_none() {
        return;
    }
    for kind in ["events", "replicasets"] {
        let list = ns.kubectl(&["get", kind, "-o", "json"], None);
        assert_success(&list, &format!("listing {kind}"));
        capture_fixture(&format!("{kind}-{name}"), &serde_json::from_slice(&list.stdout).unwrap());
    }
}

/// Runs the plugin with `-o json` added: the document (None if it printed none), the exit code
/// and stderr.
pub fn plugin_output_json(ns: &TestNamespace, kubeconfig: &Path, args: &[&str]) -> (Option<Value>, i32, String) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", "json"]);
    let output = ns.plugin(kubeconfig, &all);
    let document = serde_json::from_slice(&output.stdout).ok();
    (document, output.status.code().unwrap_or(-1), stderr(&output))
}

/// Runs the plugin and parses its `-o json` output; returns the document and the exit code.
pub fn plugin_json(ns: &TestNamespace, kubeconfig: &Path, args: &[&str]) -> (Value, i32) {
    let (document, code, stderr) = plugin_output_json(ns, kubeconfig, args);
    let document =
        document.unwrap_or_else(|| panic!("plugin {args:?} printed no JSON (exit {code}):\nstderr: {stderr}"));
    (document, code)
}

/// The backup directory of a test's own (under the system temp dir, named after its namespace).
pub fn backup_dir(ns: &TestNamespace) -> PathBuf {
    std::env::temp_dir().join(format!("hpa-migrate-backups-{}", ns.name))
}

/// `strip --yes -o json` as the user of `kubeconfig`, with the test's backup directory: the
/// report (Null if none), the exit code and stderr.
pub fn strip_as(ns: &TestNamespace, kubeconfig: &Path, args: &[&str]) -> (Value, i32, String) {
    let dir = backup_dir(ns);
    let mut all = vec!["strip", "--yes", "--backup-dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let (report, code, stderr) = plugin_output_json(ns, kubeconfig, &all);
    (report.unwrap_or(Value::Null), code, stderr)
}

/// Waits until the HPA controller has written conditions on the HPA and returns them as
/// (type, status, reason) triples.
pub async fn hpa_conditions(
    ns: &TestNamespace,
    name: &str,
    ready: impl Fn(&[(String, String, String)]) -> bool,
) -> Vec<(String, String, String)> {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    let api = Api::<HorizontalPodAutoscaler>::namespaced(ns.client.clone(), &ns.name);
    eventually(Duration::from_secs(60), &format!("conditions on HPA {name}"), || async {
        let hpa = api.get(name).await.ok()?;
        let conditions: Vec<(String, String, String)> =
            hpa.status?.conditions?.into_iter().map(|c| (c.type_, c.status, c.reason.unwrap_or_default())).collect();
        ready(&conditions).then_some(conditions)
    })
    .await
}

/// Both AbleToScale and ScalingActive have been reported: the HPA controller has judged it.
pub fn judged(conditions: &[(String, String, String)]) -> bool {
    conditions.iter().any(|c| c.0 == "ScalingActive")
        || conditions.iter().any(|c| c.0 == "AbleToScale" && c.1 == "False")
}

/// Installs the minimal KEDA ScaledObject CRD (idempotent) and waits until it is served.
pub async fn install_keda_crd() {
    install_crd("tests/cluster/keda-scaledobject-crd.yaml", "scaledobjects.keda.sh").await;
}

/// Installs a CRD from the repo (idempotent) and waits until it is established.
pub async fn install_crd(path: &str, name: &str) {
    let crd = repo_root().join(path);
    let output = kubectl(&admin_kubeconfig(), &["apply", "--server-side", "-f", crd.to_str().unwrap()], None);
    assert_success(&output, &format!("installing CRD {name}"));
    let crd = format!("crd/{name}");
    let output = kubectl(&admin_kubeconfig(), &["wait", "--for=condition=Established", &crd, "--timeout=60s"], None);
    assert_success(&output, &format!("waiting for CRD {name}"));
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until the Deployment is settled (the controller has observed its generation and its
/// resourceVersion held for 3 s), so that a resourceVersion compared later moves only if
/// something other than the controllers wrote to it.
pub async fn settled(ns: &TestNamespace, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = ns.deployment_value(name).await;
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let current = ns.deployment_value(name).await;
        let spec = current.pointer("/spec/replicas");
        // The controller has observed the generation and created every replica (its status
        // writes go on until then, later under load).
        let observed = current.pointer("/status/observedGeneration") == current.pointer("/metadata/generation")
            && current.pointer("/status/replicas") == spec
            && current.pointer("/status/updatedReplicas") == spec;
        if current["metadata"]["resourceVersion"] != last["metadata"]["resourceVersion"] || !observed {
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(3) {
            return current;
        }
        last = current;
        assert!(Instant::now() < deadline, "deployment {name} did not settle in 60 s");
    }
}

/// Waits until an Event about `name` whose message contains `text` has been recorded (the
/// event recorder writes asynchronously, seconds after the change under load).
pub async fn recorded_event(ns: &TestNamespace, name: &str, text: &str) {
    use k8s_openapi::api::core::v1::Event;
    let events = Api::<Event>::namespaced(ns.client.clone(), &ns.name);
    let about = |list: &[Event]| -> Vec<String> {
        list.iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e.involved_object.kind.as_deref().unwrap_or_default(),
                    e.reason.as_deref().unwrap_or_default(),
                    e.message.as_deref().unwrap_or_default()
                )
            })
            .collect()
    };
    // The HPA controller's events queue behind its client's rate limit: on the loaded CI plane
    // they arrive many seconds after the change they describe.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = events.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
        let messages = about(&list);
        if messages.iter().any(|m| m.contains(text)) {
            return;
        }
        assert!(Instant::now() < deadline, "no event about {name} saying {text:?} in 120 s; there are: {messages:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What a person or a tool (not the controllers' status writes) can change on an object: spec,
/// annotations, labels, and every managedFields entry but the status writers', without times.
pub fn user_state(object: &Value) -> Value {
    let mut entries: Vec<Value> = object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["subresource"] != "status")
        .map(|e| json!([e["manager"], e["operation"], e["subresource"], e["fieldsV1"]]))
        .collect();
    entries.sort_by_key(|e| e.to_string());
    json!({
        "spec": object["spec"],
        "annotations": object["metadata"]["annotations"],
        "labels": object["metadata"]["labels"],
        "managedFields": entries,
    })
}

/// Applies an HPA whose minReplicas is above the Deployment's count, and waits until the HPA
/// controller has scaled the Deployment to `replicas` and then recorded it in the HPA's status
/// (it writes the scale first and its own status after, so seeing the count is not enough).
pub async fn rescaling_hpa(ns: &TestNamespace, hpa: &Value, deployment: &str, replicas: i64) {
    ns.apply("kubectl", hpa).await;
    eventually(Duration::from_secs(60), &format!("the HPA to scale {deployment} to {replicas}"), || async {
        (spec_replicas(&ns.deployment_value(deployment).await) == Some(replicas)).then_some(())
    })
    .await;
    hpa_conditions(ns, hpa["metadata"]["name"].as_str().unwrap(), judged).await;
}

/// Applies an HPA (as kubectl would) and waits until the HPA controller has judged it.
pub async fn judged_hpa(ns: &TestNamespace, hpa: &Value) {
    ns.apply("kubectl", hpa).await;
    hpa_conditions(ns, hpa["metadata"]["name"].as_str().unwrap(), judged).await;
}
