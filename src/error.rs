//! Errors carry the context an SRE needs to act, and each maps to a documented exit code.

use std::path::PathBuf;

/// The process exit codes, documented in README.md ("Exit codes"). Stable: scripts depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything is as it should be (`check`: all safe; `verify`: no drop, evidence covers the period).
    Success = 0,
    /// The answer is "no": `check` found a workload that needs action; `verify` found a drop;
    /// `strip` failed on at least one object.
    ActionNeeded = 1,
    /// Bad flags or arguments, or input the tool refuses; nothing was changed.
    Usage = 2,
    /// `verify` could not see enough evidence to answer either way.
    Inconclusive = 3,
    /// A named workload, resource type or backup does not exist.
    NotFound = 4,
    /// The API server refused the identity the request (RBAC).
    Forbidden = 5,
    /// No kubeconfig, or the API server could not be reached.
    Unreachable = 6,
    /// The object kept changing under us; the retries ran out and nothing was changed.
    Conflict = 7,
    /// A change needs confirmation and none could be asked for (no terminal, no `--yes`), or
    /// the user declined.
    NotConfirmed = 8,
    /// Anything else: the server answered unexpectedly, or a change could not be confirmed.
    Failure = 9,
}

impl ExitStatus {
    pub fn code(self) -> i32 {
        self as i32
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("{kind} \"{name}\" not found in namespace \"{namespace}\"")]
    NotFound { kind: String, name: String, namespace: String },

    #[error("the server does not know the resource type \"{0}\": check the spelling, or run `kubectl api-resources`")]
    UnknownResourceType(String),

    #[error("{0}")]
    NoScaleSubresource(String),

    #[error("forbidden: needs {verb} on {resource}{scope}: {message}")]
    Forbidden { verb: String, resource: String, scope: String, message: String },

    #[error("cannot load kubeconfig{}: {message}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Kubeconfig { path: Option<PathBuf>, message: String },

    #[error("cannot reach the API server: {0}")]
    Unreachable(String),

    #[error("{0}")]
    Conflict(String),

    #[error("{0}")]
    NotConfirmed(String),

    #[error("{context}: {source}")]
    Api {
        context: String,
        #[source]
        source: kube::Error,
    },

    #[error("{0}")]
    Failed(String),

    /// `guard`: the input cannot be guarded (no autoscaler in charge, a kind without a policy,
    /// already below the floor); nothing was changed.
    #[error("{0}")]
    GuardRefused(String),

    /// `guard`: the cluster does not serve ValidatingAdmissionPolicy (Kubernetes older than 1.30).
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

impl Error {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Usage(_) | Error::UnknownResourceType(_) | Error::NoScaleSubresource(_) => ExitStatus::Usage,
            Error::GuardRefused(_) => ExitStatus::Usage,
            Error::AdmissionPolicyUnavailable(_) => ExitStatus::NotFound,
            Error::GuardNotActive(_) => ExitStatus::Failure,
            Error::NotFound { .. } => ExitStatus::NotFound,
            Error::Forbidden { .. } => ExitStatus::Forbidden,
            Error::Kubeconfig { .. } | Error::Unreachable(_) => ExitStatus::Unreachable,
            Error::Conflict(_) => ExitStatus::Conflict,
            Error::NotConfirmed(_) => ExitStatus::NotConfirmed,
            Error::Api { source, .. } => match api_code(source) {
                Some(403) => ExitStatus::Forbidden,
                Some(404) => ExitStatus::NotFound,
                Some(409) => ExitStatus::Conflict,
                None if is_connection_error(source) => ExitStatus::Unreachable,
                _ => ExitStatus::Failure,
            },
            Error::Failed(_) | Error::Io { .. } => ExitStatus::Failure,
        }
    }

    /// Wraps a kube error with what we were doing, turning RBAC refusals and connection
    /// failures into their own variants so the message says what to do.
    pub fn api(context: impl Into<String>, source: kube::Error) -> Self {
        let context = context.into();
        if is_connection_error(&source) {
            return Error::Unreachable(format!("{context}: {source}"));
        }
        Error::Api { context, source }
    }

    pub fn forbidden(verb: &str, resource: &str, namespace: Option<&str>, source: &kube::Error) -> Self {
        let scope = match namespace {
            Some(ns) => format!(" in namespace \"{ns}\""),
            None => " (all namespaces)".to_string(),
        };
        let message = match source {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        };
        Error::Forbidden { verb: verb.to_string(), resource: resource.to_string(), scope, message }
    }
}

/// The HTTP status of an API error, if the server answered.
pub fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn is_connection_error(error: &kube::Error) -> bool {
    matches!(error, kube::Error::HyperError(_) | kube::Error::Service(_))
}
