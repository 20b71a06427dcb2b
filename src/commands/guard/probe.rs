//! Server-side dry runs that ask the API server itself whether the guard is enforced: the policy
//! and its entries reach the API server's informers asynchronously, so a written guard is only
//! reported once a drop is answered as its mode says (and a lifted one once it is not).

use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::plan::Guarded;
use crate::core::guard::{self, Mode};
use crate::core::workload::AppsKind;
use crate::error::{Error, Result};

/// How long `guard on` waits for the API server to start refusing (its policy and param
/// informers pick new objects up asynchronously; measured at under a second on the test plane).
const ACTIVATION_TIMEOUT: Duration = Duration::from_secs(20);
const ACTIVATION_POLL: Duration = Duration::from_millis(200);

/// What a dry-run drop below the floor got from the API server.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Refused by the guard (Deny).
    Refused,
    /// Let through with the guard's warning (Warn).
    Warned,
    /// Let through without a word: the guard is not active (yet).
    Passed,
}

impl Probe {
    fn describe(&self) -> &'static str {
        match self {
            Probe::Refused => "refused",
            Probe::Warned => "let through with the guard's warning",
            Probe::Passed => "let through",
        }
    }

    /// How the API server answers a drop below the floor once a guard of `mode` is active.
    fn when_active(mode: Mode) -> Self {
        match mode {
            Mode::Deny => Probe::Refused,
            Mode::Warn => Probe::Warned,
        }
    }
}

/// How the API server answers a dry-run drop below the floor once a guard of `mode` is active,
/// as `guard on` reports it.
pub(super) fn answer_when_active(mode: Mode) -> &'static str {
    Probe::when_active(mode).describe()
}

/// Whether a refusal or warning `text` is the guard's, about `target` (`deployment/web`).
fn from_the_guard(text: &str, target: &str) -> bool {
    text.contains("hpa-migrate guard: ") && text.contains(&format!("{target} in namespace"))
}

/// Sends a server-side dry run that sets replicas to floor - 1 (dry runs go through admission
/// and persist nothing) and reports whether the guard answered.
async fn probe(client: &Client, kind: AppsKind, namespace: &str, name: &str, replicas: i64) -> Result<Probe> {
    let target = format!("{}/{name}", kind.command_name());
    let url = format!("/apis/apps/v1/namespaces/{namespace}/{}", kind.plural());
    let params = PatchParams { dry_run: true, field_manager: Some(guard::FIELD_MANAGER.into()), ..Default::default() };
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let request = kube::core::Request::new(url)
        .patch(name, &params, &patch)
        .map_err(|e| Error::Usage(format!("building the dry run for {target}: {e}")))?;
    let what = format!("server-side dry run of {namespace}/{target}");
    let response = client.send(request.map(kube::client::Body::from)).await.map_err(|e| Error::api(what.clone(), e))?;
    let status = response.status();
    let warned = response
        .headers()
        .get_all(http::header::WARNING)
        .iter()
        .any(|v| from_the_guard(&String::from_utf8_lossy(v.as_bytes()), &target));
    let body = response.into_body().collect_bytes().await.map_err(|e| Error::api(what.clone(), e))?;
    let body = String::from_utf8_lossy(&body);
    if status.is_success() {
        return Ok(if warned { Probe::Warned } else { Probe::Passed });
    }
    if from_the_guard(&body, &target) {
        return Ok(Probe::Refused);
    }
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    if status.as_u16() == 404 {
        return Err(Error::NotFound {
            kind: kind.command_name().into(),
            name: name.into(),
            namespace: namespace.into(),
        });
    }
    if status.as_u16() == 403 {
        return Err(Error::Forbidden {
            verb: "patch".into(),
            resource: format!("{}.apps", kind.plural()),
            scope: format!(" in namespace \"{namespace}\""),
            message,
        });
    }
    Err(Error::GuardNotActive(format!("{what} failed ({status}): {message}")))
}

/// Waits until the API server answers a drop of this workload as the mode says: the policy and
/// the param (the workload itself) reach the API server's informers asynchronously.
pub(super) async fn confirm_active(client: &Client, plan: &Guarded) -> Result<()> {
    let expected = Probe::when_active(plan.mode);
    let deadline = Instant::now() + ACTIVATION_TIMEOUT;
    loop {
        let answer = probe(client, plan.kind, &plan.namespace, &plan.name, plan.floor - 1).await?;
        if answer == expected {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::GuardNotActive(format!(
                "the guard did not become active for {}/{} within {} s (a dry run setting {} replicas was {}); \
                 what guard on wrote was rolled back",
                plan.namespace,
                plan.target(),
                ACTIVATION_TIMEOUT.as_secs(),
                plan.floor - 1,
                answer.describe()
            )));
        }
        tokio::time::sleep(ACTIVATION_POLL).await;
    }
}

/// Waits until a dry run dropping the workload to 0 replicas is no longer refused by the guard:
/// the API server keeps enforcing a deleted or rewritten policy until its informer catches up.
pub(super) async fn confirm_lifted(client: &Client, kind: AppsKind, namespace: &str, name: &str) -> Result<()> {
    let deadline = Instant::now() + ACTIVATION_TIMEOUT;
    loop {
        let answer = match probe(client, kind, namespace, name, 0).await {
            Ok(Probe::Passed) | Err(Error::NotFound { .. }) => return Ok(()),
            Ok(answer) => answer.describe().to_string(),
            Err(error) => error.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::Unconfirmed {
                target: format!("{namespace}/{}/{name}", kind.command_name()),
                why: format!(
                    "the API server still answered a dry run as guarded after {} s (the last dry run: {answer})",
                    ACTIVATION_TIMEOUT.as_secs()
                ),
            });
        }
        tokio::time::sleep(ACTIVATION_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_guard_s_own_answer_about_this_workload_counts() {
        let refusal = "admission webhook denied: ValidatingAdmissionPolicy 'hpa-migrate-guard-v1-deployments-deny' \
             with binding 'hpa-migrate-guard-v1-deployments-deny' denied request: hpa-migrate guard: deployment/web \
             in namespace shop: this write sets replicas to 2 (from 5), below its floor of 3";
        assert!(from_the_guard(refusal, "deployment/web"));
        assert!(!from_the_guard(refusal, "deployment/api"), "another workload's refusal");
        assert!(!from_the_guard(&refusal.replace("deployment/web", "statefulset/web"), "deployment/web"));
        assert!(!from_the_guard(
            "admission webhook \"quota\" denied deployment/web in namespace shop",
            "deployment/web"
        ));
    }

    #[test]
    fn an_active_guard_refuses_in_deny_and_warns_in_warn() {
        assert_eq!(answer_when_active(Mode::Deny), "refused");
        assert_eq!(answer_when_active(Mode::Warn), "let through with the guard's warning");
        assert_eq!(Probe::Passed.describe(), "let through");
    }
}
