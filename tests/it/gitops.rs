//! A local "Git" for the real Flux kustomize-controller the plane runs (xtask/src/flux.rs).
//!
//! No source-controller runs. kustomize-controller reads only its source's `status.artifact`
//! (url, revision, digest) and downloads the tarball from that URL, checking its `sha256:`
//! digest. So a commit here is what source-controller would have done for one: pack the
//! manifests into a tar.gz, serve it from 127.0.0.1 (a small HTTP server in the test process)
//! and write the GitRepository's status as source-controller writes it; kustomize-controller
//! watches its sources and reconciles on the new revision. Then wait until the Kustomization's
//! status says that revision was applied. `reconcile` asks for a reconcile of the same revision
//! (`reconcile.fluxcd.io/requestedAt`, what `flux reconcile` sets).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::*;

/// Serves the packed commits of every test in this process: `GET /<path>`.
struct ArtifactServer {
    port: u16,
    files: Mutex<HashMap<String, Vec<u8>>>,
}

fn server() -> &'static ArtifactServer {
    static SERVER: OnceLock<&'static ArtifactServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the artifact server");
        let port = listener.local_addr().unwrap().port();
        let server: &'static ArtifactServer =
            Box::leak(Box::new(ArtifactServer { port, files: Mutex::new(HashMap::new()) }));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(server, stream));
            }
        });
        server
    })
}

/// One HTTP/1.1 request per connection: enough for Go's client (it reconnects after `close`).
fn serve(server: &ArtifactServer, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().expect("cloning the stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let body = (method == "GET").then(|| server.files.lock().unwrap().get(path.trim_start_matches('/')).cloned());
    let response = match body.flatten() {
        Some(bytes) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            [head.into_bytes(), bytes].concat()
        }
        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&response);
}

/// Serves `bytes` at `path` from the test process's artifact server; returns the URL.
pub fn publish(path: &str, bytes: Vec<u8>) -> String {
    server().files.lock().unwrap().insert(path.to_string(), bytes);
    format!("http://127.0.0.1:{}/{path}", server().port)
}

/// Serves `tarball` at `path` and writes the status source-controller writes on the source
/// `name` once it has stored an artifact: the artifact (url, revision, `sha256:` digest, size)
/// and Ready, at the source's generation.
pub async fn announce_artifact(sources: &Api<DynamicObject>, name: &str, path: &str, tarball: Vec<u8>, revision: &str) {
    let digest = format!("{:x}", Sha256::digest(&tarball));
    let size = tarball.len();
    let url = publish(path, tarball);
    let time = now();
    let generation = sources.get(name).await.unwrap().metadata.generation.unwrap_or(1);
    let status = json!({"status": {
        "observedGeneration": generation,
        "artifact": {
            "path": path, "url": url, "revision": revision, "digest": format!("sha256:{digest}"),
            "lastUpdateTime": time, "size": size
        },
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Succeeded", "observedGeneration": generation,
            "lastTransitionTime": time, "message": format!("stored artifact for revision '{revision}'")
        }]
    }});
    sources
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("writing the status of source {name}: {e}"));
}

/// A tar.gz of one file per manifest, as a source-controller artifact holds a repository.
pub fn pack(manifests: &[Value]) -> Vec<u8> {
    tar_gz(manifests.iter().enumerate().map(|(index, manifest)| {
        let name = format!(
            "{index:02}-{}-{}.yaml",
            manifest["kind"].as_str().unwrap_or("object").to_lowercase(),
            manifest["metadata"]["name"].as_str().unwrap_or("unnamed")
        );
        // JSON is YAML; kustomize-controller generates the kustomization.yaml itself.
        (name, serde_json::to_vec_pretty(manifest).unwrap())
    }))
}

/// A tar.gz of (path, content) files, mode 0644 and time 0, in the order given.
pub fn tar_gz(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut archive = tar::Builder::new(encoder);
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        archive.append_data(&mut header, name, content.as_slice()).unwrap();
    }
    archive.into_inner().unwrap().finish().unwrap()
}

pub fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub fn kustomization_resource() -> ApiResource {
    resource("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations")
}

fn git_repository_resource() -> ApiResource {
    resource("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories")
}

fn now() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap().to_string()
}

/// A GitRepository and a Kustomization of the same name in the test's namespace, applying the
/// commits into that namespace (`targetNamespace`) with the real kustomize-controller.
pub struct FluxRepo<'a> {
    pub ns: &'a TestNamespace,
    pub name: String,
    commits: Mutex<u32>,
    /// The revision of the last commit pushed.
    revision: Mutex<String>,
}

impl<'a> FluxRepo<'a> {
    /// The first commit, then the Kustomization (prune on, an hour's interval so that only the
    /// test's commits and reconcile requests make it apply), applied.
    pub async fn new(ns: &'a TestNamespace, name: &str, manifests: &[Value]) -> FluxRepo<'a> {
        let repo = FluxRepo { ns, name: name.to_string(), commits: Mutex::new(0), revision: Mutex::default() };
        let git = repo.git_repositories();
        let source: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name},
            "spec": {"url": "https://git.invalid/shop.git", "interval": "60m", "ref": {"branch": "main"}}
        }))
        .unwrap();
        git.create(&PostParams::default(), &source).await.unwrap_or_else(|e| panic!("creating GitRepository: {e}"));
        let revision = repo.push(manifests).await;
        let kustomization: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name},
            "spec": {
                "interval": "60m", "retryInterval": "2s", "path": "./", "prune": true,
                "targetNamespace": ns.name,
                "sourceRef": {"kind": "GitRepository", "name": name}
            }
        }))
        .unwrap();
        repo.kustomizations()
            .create(&PostParams::default(), &kustomization)
            .await
            .unwrap_or_else(|e| panic!("creating Kustomization: {e}"));
        repo.wait_applied(&revision, None).await;
        repo
    }

    fn git_repositories(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.ns.client.clone(), &self.ns.name, &git_repository_resource())
    }

    pub fn kustomizations(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.ns.client.clone(), &self.ns.name, &kustomization_resource())
    }

    pub async fn kustomization(&self) -> Value {
        serde_json::to_value(self.kustomizations().get(&self.name).await.unwrap()).unwrap()
    }

    /// Packs and serves the manifests and writes the GitRepository's status as source-controller
    /// does after fetching a new commit. Returns the revision (`main@sha1:...`).
    pub async fn push(&self, manifests: &[Value]) -> String {
        let number = {
            let mut commits = self.commits.lock().unwrap();
            *commits += 1;
            *commits
        };
        let tarball = pack(manifests);
        let digest = format!("{:x}", Sha256::digest(&tarball));
        // A commit id of its own per commit, even for the same content.
        let sha1 = format!("{:x}", Sha256::digest(format!("{}/{}/{number}/{digest}", self.ns.name, self.name)));
        let sha1 = &sha1[..40];
        let revision = format!("main@sha1:{sha1}");
        let path = format!("gitrepository/{}/{}/{sha1}.tar.gz", self.ns.name, self.name);
        announce_artifact(&self.git_repositories(), &self.name, &path, tarball, &revision).await;
        self.revision.lock().unwrap().clone_from(&revision);
        revision
    }

    /// A commit: pushed, and applied (the Kustomization is Ready at that revision). Returns the
    /// revision.
    ///
    /// No reconcile is requested: the controller reads the source from its cache, so a request
    /// handled before the cache has the new revision re-applies the old one, over whatever was
    /// changed by hand since. The revision change itself makes it reconcile, with the new one.
    pub async fn commit(&self, manifests: &[Value]) -> String {
        let revision = self.push(manifests).await;
        self.wait_applied(&revision, None).await;
        revision
    }

    /// `flux reconcile kustomization NAME`: the annotation, then the controller's answer, Ready
    /// at the last commit. Any reconcile due before the request (one the setup still had in the
    /// queue, say) has run by then, so the Kustomization is idle until the next change.
    pub async fn reconcile(&self) {
        let requested = self.request_reconcile().await;
        let revision = self.revision.lock().unwrap().clone();
        self.wait_applied(&revision, Some(&requested)).await;
    }

    async fn request_reconcile(&self) -> String {
        // Nanoseconds, so that two requests in the same second differ.
        let requested = jiff::Timestamp::now().to_string();
        let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": requested}}});
        self.kustomizations()
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("requesting a reconcile: {e}"));
        requested
    }

    /// Waits until the Kustomization is Ready with `revision` applied (and, if given, has
    /// handled the reconcile request `requested`).
    pub async fn wait_applied(&self, revision: &str, requested: Option<&str>) -> Value {
        let what = format!("Kustomization {} to apply {revision}", self.name);
        let mut last = Value::Null;
        let result = tokio::time::timeout(Duration::from_secs(90), async {
            loop {
                let object = self.kustomization().await;
                let status = &object["status"];
                let ready = status["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                let handled = requested.is_none_or(|r| status["lastHandledReconcileAt"] == r);
                let current = status["observedGeneration"] == object["metadata"]["generation"];
                if ready && handled && current && status["lastAppliedRevision"] == revision {
                    return object;
                }
                last = object;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        result.unwrap_or_else(|_| panic!("timed out after 90 s waiting for {what}; status: {:#}", last["status"]))
    }

    /// A commit the controller fails to apply: pushed (as in `commit`, no reconcile requested),
    /// and the Kustomization not Ready at that revision. Returns the Ready condition's message.
    pub async fn commit_failing(&self, manifests: &[Value]) -> String {
        let revision = self.push(manifests).await;
        let mut last = Value::Null;
        let result = tokio::time::timeout(Duration::from_secs(90), async {
            loop {
                let object = self.kustomization().await;
                let status = &object["status"];
                let failed = status["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "Ready" && c["status"] == "False" && c["reason"] != "Progressing");
                if let Some(condition) = failed
                    && status["lastAttemptedRevision"] == revision.as_str()
                {
                    return condition["message"].as_str().unwrap_or_default().to_string();
                }
                last = object;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        result.unwrap_or_else(|_| panic!("timed out waiting for {revision} to fail; status: {:#}", last["status"]))
    }

    /// Sets `spec.suspend` (what `flux suspend|resume kustomization` do).
    pub async fn set_suspended(&self, suspended: bool) {
        let patch = json!({"spec": {"suspend": suspended}});
        self.kustomizations()
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("setting suspend: {e}"));
    }

    /// Sets `spec.ignore` to one rule ignoring `paths` on every object (`None` removes it).
    pub async fn set_ignore(&self, paths: Option<&[&str]>) {
        let ignore = paths.map(|p| json!([{"paths": p}]));
        let patch = json!({"spec": {"ignore": ignore}});
        self.kustomizations()
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("setting ignore: {e}"));
    }
}

/// The labels kustomize-controller puts on what it applies.
pub fn flux_labels(object: &Value) -> (Option<&str>, Option<&str>) {
    let labels = &object["metadata"]["labels"];
    (labels["kustomize.toolkit.fluxcd.io/name"].as_str(), labels["kustomize.toolkit.fluxcd.io/namespace"].as_str())
}
