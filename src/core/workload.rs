//! A workload as the analysis sees it: any resource with a `/scale` subresource, read as a
//! dynamic object so Deployments, StatefulSets and custom resources share one path.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::Value;

/// The resource type of a workload, resolved through discovery.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadKind {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The plural resource name (`deployments`).
    pub plural: String,
}

impl WorkloadKind {
    pub fn deployment() -> Self {
        Self::apps("Deployment", "deployments")
    }

    pub fn stateful_set() -> Self {
        Self::apps("StatefulSet", "statefulsets")
    }

    fn apps(kind: &str, plural: &str) -> Self {
        Self { group: "apps".into(), version: "v1".into(), kind: kind.into(), plural: plural.into() }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// How kubectl writes the type in a command: `deployment`, `statefulset`,
    /// `rollouts.argoproj.io`.
    pub fn command_name(&self) -> String {
        match self.group.as_str() {
            "" | "apps" => self.kind.to_lowercase(),
            group => format!("{}.{group}", self.plural),
        }
    }
}

/// A workload and the parts of it the analysis reads.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub metadata: ObjectMeta,
    pub replicas: Replicas,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Replicas {
    /// `.spec.replicas`; absent when the field is unset (the server defaults it on write).
    pub spec: Option<i64>,
    pub status: Option<i64>,
    pub ready: Option<i64>,
}

impl Workload {
    /// Builds a workload from a full object as the server returns it.
    pub fn from_object(kind: WorkloadKind, mut object: Value) -> Result<Self, serde_json::Error> {
        let metadata: ObjectMeta =
            serde_json::from_value(object.get_mut("metadata").map(Value::take).unwrap_or(Value::Null))?;
        Ok(Self::from_parts(kind, metadata, &object))
    }

    /// Builds a workload from its metadata and the rest of the object (spec, status).
    pub fn from_parts(kind: WorkloadKind, metadata: ObjectMeta, body: &Value) -> Self {
        let int = |pointer: &str| body.pointer(pointer).and_then(Value::as_i64);
        let replicas = Replicas {
            spec: int("/spec/replicas"),
            status: int("/status/replicas"),
            ready: int("/status/readyReplicas").or_else(|| int("/status/replicas").map(|_| 0)),
        };
        Self { kind, metadata, replicas }
    }

    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or_default()
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata.annotations.as_ref()?.get(key).map(String::as_str)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }

    /// `deployment/web`, as a target argument.
    pub fn target(&self) -> String {
        format!("{}/{}", self.kind.command_name(), self.name())
    }
}

/// The built-in kinds whose replicas this tool reads in depth: the guard has a policy for each,
/// and verify replays their history from the Events of their ReplicaSets or Pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum AppsKind {
    Deployment,
    StatefulSet,
}

impl AppsKind {
    pub const ALL: [AppsKind; 2] = [AppsKind::Deployment, AppsKind::StatefulSet];

    pub fn of(kind: &WorkloadKind) -> Option<Self> {
        match (kind.group.as_str(), kind.kind.as_str()) {
            ("apps", "Deployment") => Some(AppsKind::Deployment),
            ("apps", "StatefulSet") => Some(AppsKind::StatefulSet),
            _ => None,
        }
    }

    pub fn workload_kind(self) -> WorkloadKind {
        match self {
            AppsKind::Deployment => WorkloadKind::deployment(),
            AppsKind::StatefulSet => WorkloadKind::stateful_set(),
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            AppsKind::Deployment => "Deployment",
            AppsKind::StatefulSet => "StatefulSet",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            AppsKind::Deployment => "deployments",
            AppsKind::StatefulSet => "statefulsets",
        }
    }

    /// `deployment`, as a target is written.
    pub fn command_name(self) -> &'static str {
        match self {
            AppsKind::Deployment => "deployment",
            AppsKind::StatefulSet => "statefulset",
        }
    }
}
