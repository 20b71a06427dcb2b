//! Events that arrive late, on purpose: a validating admission webhook of the test's own that
//! holds the creation of chosen Events for a set time, then allows it, or rejects it so that it
//! never arrives (the recorder drops an Event the server rejects, client-go `tools/record`
//! `recordEvent`; a webhook may hold a request for at most 30 s, `timeoutSeconds`, so "later
//! than any wait" is a rejection). The real
//! kube-controller-manager writes its Events through the API server like any client, so a held
//! create delays the real HPA controller's `SuccessfulRescale` event by exactly that long, while
//! the scale it describes has already landed. This is the load that makes Events late
//! (an API server or etcd slow to take writes), made deterministic.
//!
//! Facts this relies on (kubernetes v1.36.3, read in the module cache):
//! - the HPA controller records its events through a `record` broadcaster of its own
//!   (`pkg/controller/podautoscaler/horizontal.go`), which writes them one at a time
//!   (`client-go/tools/record/event.go`); a held event therefore also holds the HPA events
//!   behind it, in any namespace, for at most the hold. The hold is kept short for that reason.
//! - the API server only calls the webhook for what its `matchConditions` (CEL) accept, so every
//!   other Event is admitted without a call; `failurePolicy: Ignore` and a namespace selector
//!   keep a configuration left behind by a killed test harmless.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

use crate::common::*;

/// The reason of the probe Events that prove the API server calls the webhook; no scaling
/// event has it, so verify ignores them.
const PROBE_REASON: &str = "HpaMigrateTestWebhookProbe";

/// A webhook serving on 127.0.0.1 that holds the creation of matching Events in one namespace.
/// The configuration is deleted when this is dropped.
pub struct EventHold {
    configuration: String,
    held: Arc<Mutex<Vec<Held>>>,
    server: tokio::task::JoinHandle<()>,
}

/// One Event the webhook held: its message, when the hold began and ended, and whether it was
/// then allowed.
#[derive(Clone, Debug)]
pub struct Held {
    pub message: String,
    pub from: Instant,
    pub until: Instant,
    pub allowed: bool,
}

/// What the webhook answers once a hold is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// The Event is created, late.
    Allow,
    /// The Event is refused: it never arrives.
    Reject,
}

impl EventHold {
    /// Holds for `hold` the creation of Events in `ns` with `reason` whose message starts with
    /// `message_prefix`, then answers `then`, from the moment this returns (the API server's
    /// calls have been seen).
    pub async fn start(ns: &TestNamespace, reason: &str, message_prefix: &str, hold: Duration, then: Then) -> Self {
        let (ca_pem, acceptor) = tls_acceptor();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let server = tokio::spawn(serve(listener, acceptor, hold, then, held.clone()));
        let configuration = format!("hpa-migrate-test-hold-{}", ns.name);
        let webhooks: Api<ValidatingWebhookConfiguration> = Api::all(ns.client.clone());
        let object = webhook_configuration(&configuration, &ns.name, address, &ca_pem, reason, message_prefix);
        webhooks
            .create(&PostParams::default(), &serde_json::from_value(object).unwrap())
            .await
            .expect("creating the holding webhook configuration");
        let this = Self { configuration, held, server };
        this.await_api_server_calls(ns).await;
        this
    }

    /// The Events held so far (a probe is not held, so it is not listed).
    pub fn held(&self) -> Vec<Held> {
        self.held.lock().unwrap().clone()
    }

    /// The API server takes a moment to see a new webhook configuration: creates probe Events
    /// until one reaches the webhook.
    async fn await_api_server_calls(&self, ns: &TestNamespace) {
        let events: Api<Event> = Api::namespaced(ns.client.clone(), &ns.name);
        let namespace = ns.name.clone();
        let probes = Arc::new(Mutex::new(0usize));
        eventually(Duration::from_secs(30), "the API server to call the holding webhook", || {
            let events = events.clone();
            let probes = probes.clone();
            let held = self.held.clone();
            let namespace = namespace.clone();
            async move {
                let n = {
                    let mut probes = probes.lock().unwrap();
                    *probes += 1;
                    *probes
                };
                let probe = json!({
                    "metadata": {"name": format!("webhook-probe-{n}")},
                    "involvedObject": {"kind": "ConfigMap", "namespace": namespace, "name": "probe"},
                    "reason": PROBE_REASON,
                    "message": "probe",
                    "type": "Normal",
                });
                events.create(&PostParams::default(), &serde_json::from_value(probe).unwrap()).await.unwrap();
                let seen = held.lock().unwrap().iter().any(|h| h.message == PROBE_SEEN);
                seen.then_some(())
            }
        })
        .await;
        self.held.lock().unwrap().retain(|h| h.message != PROBE_SEEN);
    }
}

impl Drop for EventHold {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::process::Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(admin_kubeconfig())
            .args(["delete", "validatingwebhookconfiguration", &self.configuration, "--ignore-not-found"])
            .output();
    }
}

/// What a probe leaves in the list of held Events, so the test knows the webhook is called.
const PROBE_SEEN: &str = "probe seen";

fn webhook_configuration(
    name: &str,
    namespace: &str,
    address: SocketAddr,
    ca_pem: &str,
    reason: &str,
    message_prefix: &str,
) -> Value {
    let held = format!("(object.reason == '{reason}' && object.message.startsWith('{message_prefix}'))");
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "hold.events.hpa-migrate.test",
            "clientConfig": {
                "url": format!("https://{address}/hold"),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
            },
            "rules": [{
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["events"],
                "scope": "Namespaced",
            }],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "matchConditions": [{
                "name": "held-or-probe",
                "expression": format!("{held} || object.reason == '{PROBE_REASON}'"),
            }],
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 15,
        }],
    })
}

/// A CA of the test's own and a serving certificate for 127.0.0.1 signed by it.
fn tls_acceptor() -> (String, TlsAcceptor) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    let private_key = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], private_key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca_cert.pem(), TlsAcceptor::from(Arc::new(config)))
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    hold: Duration,
    then: Then,
    held: Arc<Mutex<Vec<Held>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let held = held.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let service = service_fn(move |request| review(request, hold, then, held.clone()));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

/// Answers a probe at once (allowed); holds the answer for a matching Event, then answers `then`.
async fn review(
    request: Request<hyper::body::Incoming>,
    hold: Duration,
    then: Then,
    held: Arc<Mutex<Vec<Held>>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = request.into_body().collect().await?.to_bytes();
    let review: Value = serde_json::from_slice(&body).unwrap_or_default();
    let object = &review["request"]["object"];
    let from = Instant::now();
    let (message, allowed) = if object["reason"] == PROBE_REASON {
        (PROBE_SEEN.to_string(), true)
    } else {
        tokio::time::sleep(hold).await;
        (object["message"].as_str().unwrap_or_default().to_string(), then == Then::Allow)
    };
    held.lock().unwrap().push(Held { message, from, until: Instant::now(), allowed });
    let mut response = json!({"uid": review["request"]["uid"], "allowed": allowed});
    if !allowed {
        response["status"] = json!({"code": 403, "message": "held, then rejected by the hpa-migrate test"});
    }
    let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    Ok(Response::new(Full::new(Bytes::from(answer.to_string()))))
}
