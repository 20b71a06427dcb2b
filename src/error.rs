//! Errors carry the context an SRE needs to act, and each maps to one documented exit code.
//!
//! Every error prints as one line (what failed, why, what to do); the source chain, with the
//! server's full answer, is printed only with `-v`. kube's errors are mapped here once, by
//! [`Error::api`] and [`Error::forbidden`], which the I/O layer calls.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::core::helm::DecodeError;
use crate::core::patch::PlanError;

/// The process exit codes. Stable: scripts depend on them. [`EXIT_CODES`] is the one table that
/// `--help` and README's "Exit codes" are made from (a test holds README to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    Success = 0,
    ActionNeeded = 1,
    Usage = 2,
    Inconclusive = 3,
    NotFound = 4,
    Forbidden = 5,
    Unreachable = 6,
    Conflict = 7,
    NotConfirmed = 8,
    Failure = 9,
    Config = 10,
    Unauthorized = 11,
}

/// Each exit code with its short name (for `--help`) and its meaning (README's table).
pub const EXIT_CODES: &[(ExitStatus, &str, &str)] = &[
    (
        ExitStatus::Success,
        "ok",
        "success: `check`: every workload is `safe`; `strip`: every object changed, dry-run or had nothing to do; `verify`: pass; `preflight`: no workload loses replicas",
    ),
    (
        ExitStatus::ActionNeeded,
        "action needed",
        "action needed: a workload is not `safe`; `verify` found a drop or an at-risk end state; `strip` refused a workload whose autoscaler is not in charge; `preflight`: the deploy would lower a workload's replicas",
    ),
    (
        ExitStatus::Usage,
        "usage",
        "usage: bad flags or arguments, a `-f` manifest that cannot be read or parsed, an invalid label selector, unknown resource type, type without `/scale`, a method or `--field-manager` that does not apply to the workload; `guard` refused a workload (no autoscaler in charge, minimum 0, already below the floor, not a Deployment or StatefulSet)",
    ),
    (
        ExitStatus::Inconclusive,
        "inconclusive",
        "inconclusive: `verify`: the evidence does not cover the period; `preflight`: which tool applies a workload, or its Helm release record, is unknown (no drop predicted elsewhere)",
    ),
    (
        ExitStatus::NotFound,
        "not found",
        "not found: a workload, resource type or backup file; `guard` on a cluster without ValidatingAdmissionPolicy (`guard on --pin`: without MutatingAdmissionPolicy)",
    ),
    (ExitStatus::Forbidden, "forbidden", "forbidden (RBAC); `strip` and `guard on` check before changing anything"),
    (
        ExitStatus::Unreachable,
        "unreachable",
        "unreachable: the API server cannot be reached (for `verify --watch`: not again before the window ended)",
    ),
    (ExitStatus::Conflict, "conflict", "conflict: the object kept changing and retries ran out; nothing was changed"),
    (
        ExitStatus::NotConfirmed,
        "not confirmed",
        "not confirmed: a change needs confirmation and none was given (no terminal and no `--yes`, or declined)",
    ),
    (
        ExitStatus::Failure,
        "other failure",
        "any other failure (the server answered unexpectedly, a change could not be confirmed), `strip` objects that failed in different ways, or `guard on` whose guard did not become active (rolled back)",
    ),
    (
        ExitStatus::Config,
        "configuration",
        "configuration: no kubeconfig, an unreadable or invalid one, or an unknown `--context`, `--cluster` or `--user`",
    ),
    (
        ExitStatus::Unauthorized,
        "unauthorized",
        "unauthorized: the API server rejected the credentials (401): log in again",
    ),
];

impl ExitStatus {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Of two outcomes, the one a script must act on first, which is the exit code of one
    /// command run in several contexts: any failure to do the job (every code but 0, 1 and 3;
    /// of two, the higher code) over `action needed` over `inconclusive` over `ok`.
    pub fn worst(self, other: Self) -> Self {
        let rank = |status: Self| match status {
            ExitStatus::Success => 0,
            ExitStatus::Inconclusive => 1,
            ExitStatus::ActionNeeded => 2,
            failure => 3 + failure.code(),
        };
        if rank(other) > rank(self) { other } else { self }
    }
}

/// The `Exit codes:` paragraph of `--help`, from [`EXIT_CODES`].
pub fn exit_codes_help() -> String {
    let items: Vec<String> = EXIT_CODES.iter().map(|(status, name, _)| format!("{} {name}", status.code())).collect();
    format!("Exit codes: {}.", items.join(", "))
}

/// Where the current command connects: named in messages about credentials and connections.
#[derive(Debug, Clone, Default)]
pub struct Endpoint {
    pub context: Option<String>,
    pub server: String,
}

static ENDPOINT: OnceLock<Endpoint> = OnceLock::new();

/// Records the endpoint once the kubeconfig is loaded (the one connection of a process).
pub fn set_endpoint(endpoint: Endpoint) {
    let _ = ENDPOINT.set(endpoint);
}

fn endpoint() -> Endpoint {
    ENDPOINT.get().cloned().unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("invalid label selector '{selector}': {message}")]
    InvalidSelector { selector: String, message: String },

    #[error("{kind} \"{name}\" not found{}", if namespace.is_empty() { String::new() } else { format!(" in namespace \"{namespace}\"") })]
    NotFound { kind: String, name: String, namespace: String },

    #[error("the server does not know the resource type \"{0}\": check the spelling, or run `kubectl api-resources`")]
    UnknownResourceType(String),

    #[error("{0}")]
    NoScaleSubresource(String),

    #[error("forbidden: needs {verb} on {resource}{scope}: {message}")]
    Forbidden { verb: String, resource: String, scope: String, message: String },

    #[error("cannot load kubeconfig{}: {message}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Kubeconfig { path: Option<PathBuf>, message: String },

    #[error("{context}: the server rejected the credentials{} (401 Unauthorized): log in again or check --user", endpoint_of(.endpoint))]
    Unauthorized {
        context: String,
        endpoint: Endpoint,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("{context}: cannot reach the API server{}: {cause}", endpoint_of(.endpoint))]
    Unreachable {
        context: String,
        endpoint: Endpoint,
        cause: String,
        #[source]
        source: Option<Box<kube::Error>>,
    },

    #[error("{0}")]
    Conflict(String),

    #[error("{0}")]
    NotConfirmed(String),

    /// The server answered with an error status not mapped to a variant of its own.
    #[error("{context}: {message} ({code} {reason})")]
    Api {
        context: String,
        code: u16,
        reason: String,
        message: String,
        #[source]
        source: Box<kube::Error>,
    },

    /// A client-side failure talking to the server (an answer that does not decode, ...).
    #[error("{context}: {}", innermost(.source))]
    Client {
        context: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("{target}: {source}")]
    Plan {
        target: String,
        #[source]
        source: PlanError,
    },

    /// A write was accepted but the object read back is not what was planned.
    #[error("{target}: the change could not be confirmed: {why}")]
    Unconfirmed { target: String, why: String },

    #[error("Helm release record {name}: {source}")]
    HelmRecord {
        name: String,
        #[source]
        source: DecodeError,
    },

    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("cannot write the report as {format}: {message}")]
    Report { format: &'static str, message: String },

    /// `guard`: the input cannot be guarded (no autoscaler in charge, a kind without a policy,
    /// already below the floor); nothing was changed.
    #[error("{0}")]
    GuardRefused(String),

    /// `guard`: the cluster does not serve ValidatingAdmissionPolicy (Kubernetes older than 1.30),
    /// or, for `guard on --pin`, MutatingAdmissionPolicy (older than 1.36).
    #[error("{0}")]
    AdmissionPolicyUnavailable(String),

    /// `guard on`: the guard was installed but did not refuse a drop in time; it was rolled back.
    #[error("{0}")]
    GuardNotActive(String),

    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn endpoint_of(endpoint: &Endpoint) -> String {
    match (&endpoint.context, endpoint.server.is_empty()) {
        (Some(context), false) => format!(" of context {context} ({})", endpoint.server),
        (Some(context), true) => format!(" of context {context}"),
        (None, false) => format!(" at {}", endpoint.server),
        (None, true) => String::new(),
    }
}

/// The last message of an error's source chain: for a refused connection, "Connection refused
/// (os error 111)" rather than hyper's "client error (Connect)".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

impl Error {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Usage(_)
            | Error::InvalidSelector { .. }
            | Error::UnknownResourceType(_)
            | Error::NoScaleSubresource(_) => ExitStatus::Usage,
            Error::GuardRefused(_) => ExitStatus::Usage,
            Error::AdmissionPolicyUnavailable(_) => ExitStatus::NotFound,
            Error::GuardNotActive(_) => ExitStatus::Failure,
            Error::NotFound { .. } => ExitStatus::NotFound,
            Error::Forbidden { .. } => ExitStatus::Forbidden,
            Error::Kubeconfig { .. } => ExitStatus::Config,
            Error::Unauthorized { .. } => ExitStatus::Unauthorized,
            Error::Unreachable { .. } => ExitStatus::Unreachable,
            Error::Conflict(_) => ExitStatus::Conflict,
            Error::NotConfirmed(_) => ExitStatus::NotConfirmed,
            Error::Api { code: 403, .. } => ExitStatus::Forbidden,
            Error::Api { code: 404, .. } => ExitStatus::NotFound,
            Error::Api { code: 409, .. } => ExitStatus::Conflict,
            Error::Plan { source: PlanError::AutoscalerEntry(_), .. } => ExitStatus::Usage,
            Error::Api { .. }
            | Error::Client { .. }
            | Error::Plan { .. }
            | Error::Unconfirmed { .. }
            | Error::HelmRecord { .. }
            | Error::Json { .. }
            | Error::Report { .. }
            | Error::Io { .. } => ExitStatus::Failure,
        }
    }

    /// Maps a kube error, with what we were doing, to the variant that says what to do:
    /// connection failures, rejected credentials, and the server's status as one line.
    pub fn api(context: impl Into<String>, source: kube::Error) -> Self {
        let context = context.into();
        if is_connection_error(&source) {
            let cause = innermost(&source);
            return Error::Unreachable { context, endpoint: endpoint(), cause, source: Some(Box::new(source)) };
        }
        match &source {
            kube::Error::Api(status) if status.code == 401 => {
                Error::Unauthorized { context, endpoint: endpoint(), source: Box::new(source) }
            }
            kube::Error::Api(status) => Error::Api {
                context,
                code: status.code,
                reason: if status.reason.is_empty() { "error".into() } else { status.reason.clone() },
                message: status.message.clone(),
                source: Box::new(source),
            },
            _ => Error::Client { context, source: Box::new(source) },
        }
    }

    /// An RBAC refusal of `verb` on `resource`, naming the scope it was asked in.
    pub fn forbidden(verb: &str, resource: &str, namespace: Option<&str>, source: kube::Error) -> Self {
        let scope = match namespace {
            Some(ns) => format!(" in namespace \"{ns}\""),
            None => " (all namespaces)".to_string(),
        };
        let message = match &source {
            kube::Error::Api(status) => status.message.clone(),
            other => innermost(other),
        };
        Error::Forbidden { verb: verb.to_string(), resource: resource.to_string(), scope, message }
    }

    pub fn json(context: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json { context: context.into(), source }
    }

    /// Whether retrying the same request later may succeed: the server was unreachable.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    /// The full chain, for `-v`: every source's Debug form.
    pub fn detail(&self) -> String {
        let mut text = format!("{self:?}");
        let mut current: &dyn std::error::Error = self;
        while let Some(next) = current.source() {
            text.push_str(&format!("\n  caused by: {next:?}"));
            current = next;
        }
        text
    }
}

/// The HTTP status of an API error, if the server answered.
pub fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

pub fn is_connection_error(error: &kube::Error) -> bool {
    matches!(error, kube::Error::HyperError(_) | kube::Error::Service(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        let status = kube::core::Status {
            code,
            reason: reason.into(),
            message: message.into(),
            status: Some(kube::core::response::StatusSummary::Failure),
            ..Default::default()
        };
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn every_exit_code_is_in_the_table_once() {
        let codes: Vec<i32> = EXIT_CODES.iter().map(|(s, _, _)| s.code()).collect();
        assert_eq!(codes, (0..=11).collect::<Vec<_>>());
    }

    #[test]
    fn the_worst_of_several_outcomes_is_a_failure_then_a_finding() {
        use ExitStatus::*;
        let worst = |codes: &[ExitStatus]| codes.iter().fold(Success, |a, b| a.worst(*b));
        assert_eq!(worst(&[Success, Inconclusive]), Inconclusive);
        assert_eq!(worst(&[Inconclusive, ActionNeeded, Success]), ActionNeeded);
        assert_eq!(worst(&[ActionNeeded, Unreachable]), Unreachable);
        assert_eq!(worst(&[Unauthorized, Unreachable, Forbidden]), Unauthorized);
        assert_eq!(worst(&[Usage, ActionNeeded]), Usage);
        assert_eq!(worst(&[]), Success);
    }

    #[test]
    fn readme_exit_code_table_is_the_code_table() {
        let readme = include_str!("../README.md");
        let section = readme.split("## Exit codes").nth(1).expect("README has an Exit codes section");
        let rows: Vec<(i32, String)> = section
            .lines()
            .skip_while(|l| !l.starts_with("| 0 "))
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                (cells[0].parse().expect("a code"), cells[1].to_string())
            })
            .collect();
        let expected: Vec<(i32, String)> = EXIT_CODES.iter().map(|(s, _, m)| (s.code(), m.to_string())).collect();
        assert_eq!(rows, expected, "README's exit-code table must be EXIT_CODES (copy the meanings from src/error.rs)");
    }

    #[test]
    fn server_errors_are_one_line_without_debug_structures() {
        let bad_selector = Error::api(
            "list deployments.apps",
            status(400, "BadRequest", "unable to parse requirement: found '(', expected: identifier"),
        );
        let text = bad_selector.to_string();
        assert_eq!(
            text,
            "list deployments.apps: unable to parse requirement: found '(', expected: identifier (400 BadRequest)"
        );
        assert!(!text.contains("Status {"));

        let rejected = Error::api("list deployments.apps", status(401, "Unauthorized", "Unauthorized"));
        assert_eq!(rejected.exit_status(), ExitStatus::Unauthorized);
        assert!(rejected.to_string().contains("401 Unauthorized"), "{rejected}");
        assert!(!rejected.to_string().contains('\n'));
        assert!(rejected.detail().contains("caused by"), "-v shows the server's answer");
    }
}
