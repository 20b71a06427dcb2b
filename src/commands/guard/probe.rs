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
    /// Let through with the live count kept and stamped (Pin).
    Pinned,
    /// Let through without a word: the guard is not active (yet).
    Passed,
}

impl Probe {
    fn describe(&self) -> &'static str {
        match self {
            Probe::Refused => "refused",
            Probe::Warned => "let through with the guard's warning",
            Probe::Pinned => "pinned at the live count",
            Probe::Passed => "let through",
        }
    }

    /// How the API server answers a drop below the floor once a guard of `mode` is active.
    fn when_active(mode: Mode) -> Self {
        match mode {
            Mode::Deny => Probe::Refused,
            Mode::Warn => Probe::Warned,
            Mode::Pin => Probe::Pinned,
        }
    }
}

/// The replicas the dry run of `guard on` writes (`None`: a write without replicas, which the
/// API server defaults to 1): below the floor, and for pin the very deploy it is there for,
/// unless the floor is 1, which a write defaulted to 1 does not go below.
fn probe_write(mode: Mode, floor: i64) -> Option<i64> {
    match mode {
        Mode::Pin if floor > 1 => None,
        _ => Some(floor - 1),
    }
}

/// The dry run `guard on` confirms a guard of `mode` with, and how the API server answers it once
/// the guard is active: `a server-side dry run setting 2 replicas was refused`.
pub(super) fn confirmation(mode: Mode, floor: i64) -> String {
    format!(
        "a server-side dry run {} was {}",
        write_text(probe_write(mode, floor)),
        Probe::when_active(mode).describe()
    )
}

fn write_text(write: Option<i64>) -> String {
    match write {
        Some(replicas) => format!("setting {replicas} replicas"),
        None => "without replicas".into(),
    }
}

/// Whether a refusal or warning `text` is the guard's, about `target` (`deployment/web`).
fn from_the_guard(text: &str, target: &str) -> bool {
    text.contains("hpa-migrate guard: ") && text.contains(&format!("{target} in namespace"))
}

/// Sends a server-side dry run that sets replicas to `write` or, with `None`, removes them (dry
/// runs go through admission and persist nothing) and reports whether the guard answered.
async fn probe(client: &Client, kind: AppsKind, namespace: &str, name: &str, write: Option<i64>) -> Result<Probe> {
    let target = format!("{}/{name}", kind.command_name());
    let url = format!("/apis/apps/v1/namespaces/{namespace}/{}", kind.plural());
    let params = PatchParams { dry_run: true, field_manager: Some(guard::FIELD_MANAGER.into()), ..Default::default() };
    let patch = Patch::Merge(json!({"spec": {"replicas": write}}));
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
        let answer = match serde_json::from_str::<Value>(&body) {
            _ if warned => Probe::Warned,
            Ok(object) if pinned(&object, write) => Probe::Pinned,
            _ => Probe::Passed,
        };
        return Ok(answer);
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

/// Whether the object a dry run answered with is not what `write` asked for (`None` defaults to
/// 1) but the count pin mode kept, stamped by it.
fn pinned(object: &Value, write: Option<i64>) -> bool {
    let replicas = object.pointer("/spec/replicas").and_then(Value::as_i64);
    let stamped = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(guard::PINNED_REPLICAS_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse::<i64>().ok());
    replicas != Some(write.unwrap_or(1)) && replicas.is_some() && stamped == replicas
}

/// Waits until the API server answers a drop of this workload as the mode says: the policy and
/// the param (the workload itself) reach the API server's informers asynchronously.
pub(super) async fn confirm_active(client: &Client, plan: &Guarded) -> Result<()> {
    let expected = Probe::when_active(plan.mode);
    let write = probe_write(plan.mode, plan.floor);
    let deadline = Instant::now() + ACTIVATION_TIMEOUT;
    loop {
        let answer = probe(client, plan.kind, &plan.namespace, &plan.name, write).await?;
        if answer == expected {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::GuardNotActive(format!(
                "the guard did not become active for {}/{} within {} s (a dry run {} was {}); \
                 what guard on wrote was rolled back",
                plan.namespace,
                plan.target(),
                ACTIVATION_TIMEOUT.as_secs(),
                write_text(write),
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
        let answer = match probe(client, kind, namespace, name, Some(0)).await {
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
    fn an_active_guard_refuses_in_deny_warns_in_warn_and_keeps_the_count_in_pin() {
        assert_eq!(confirmation(Mode::Deny, 3), "a server-side dry run setting 2 replicas was refused");
        assert_eq!(
            confirmation(Mode::Warn, 3),
            "a server-side dry run setting 2 replicas was let through with the guard's warning"
        );
        assert_eq!(confirmation(Mode::Pin, 3), "a server-side dry run without replicas was pinned at the live count");
        assert_eq!(confirmation(Mode::Pin, 1), "a server-side dry run setting 0 replicas was pinned at the live count");
        assert_eq!(Probe::Passed.describe(), "let through");
    }

    #[test]
    fn a_dry_run_answer_is_pinned_only_when_the_count_differs_from_the_write_and_pin_stamped_it() {
        let answer = |replicas: i64, stamp: Option<&str>| {
            let mut object = json!({"spec": {"replicas": replicas}, "metadata": {"annotations": {}}});
            if let Some(stamp) = stamp {
                object["metadata"]["annotations"][guard::PINNED_REPLICAS_ANNOTATION] = json!(stamp);
            }
            object
        };
        assert!(pinned(&answer(5, Some("5")), None));
        assert!(!pinned(&answer(1, None), None), "defaulted to 1: not pinned");
        assert!(!pinned(&answer(1, Some("5")), None), "an old stamp from an earlier pin is no proof");
        assert!(!pinned(&answer(5, None), None), "kept by something else");
        assert!(pinned(&answer(2, Some("2")), Some(0)));
        assert!(!pinned(&answer(0, Some("2")), Some(0)));
    }
}
