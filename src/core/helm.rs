//! Helm 3 release records. Helm 3 upgrades with a three-way merge of the previous release's
//! manifest, the new manifest and the live object: while the stored manifest sets `replicas`
//! and the new chart does not, Helm sends `replicas: null`, whatever managedFields say.
//!
//! A record is the release as JSON, gzipped, then base64-encoded; stored in Secret
//! `sh.helm.release.v1.<release>.v<revision>` (type `helm.sh/release.v1`, labels `owner=helm`,
//! `name`, `status`, `version`) or, with the configmap driver, in a ConfigMap of that name.

use std::io::Read;

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use super::tools::Traces;
use super::workload::Workload;

pub const RELEASE_NAME_ANNOTATION: &str = "meta.helm.sh/release-name";
pub const RELEASE_NAMESPACE_ANNOTATION: &str = "meta.helm.sh/release-namespace";
/// Selects the deployed release records of every release.
pub const DEPLOYED_RECORDS_SELECTOR: &str = "owner=helm,status=deployed";

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Secret,
    ConfigMap,
}

impl Driver {
    /// The kind of the objects this driver stores records in.
    pub fn kind(self) -> &'static str {
        match self {
            Driver::Secret => "Secret",
            Driver::ConfigMap => "ConfigMap",
        }
    }

    /// The resource of the objects this driver stores records in (`secrets`, `configmaps`).
    pub fn resource(self) -> &'static str {
        match self {
            Driver::Secret => "secrets",
            Driver::ConfigMap => "configmaps",
        }
    }
}

/// A Helm release: its namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseKey {
    pub namespace: String,
    pub name: String,
}

/// The deployed release records a command read, once, for the releases of the objects it reads.
#[derive(Debug, Default)]
pub enum ReleaseRecords {
    /// No object it read belongs to a Helm release, so none were read.
    #[default]
    NotRead,
    Read(Vec<ReleaseRecord>),
    /// Why they could not be read (a refused LIST, undecodable records).
    Unreadable(String),
}

impl ReleaseRecords {
    /// The deployed record of `release`: `Ok(None)` when the records were read and it has none,
    /// `Err` saying why they cannot tell.
    pub fn find(&self, release: &ReleaseKey) -> Result<Option<&ReleaseRecord>, String> {
        match self {
            ReleaseRecords::Read(records) => {
                Ok(records.iter().find(|r| r.release == release.name && r.namespace == release.namespace))
            }
            ReleaseRecords::Unreadable(problem) => Err(problem.clone()),
            ReleaseRecords::NotRead => Err("release records were not read".into()),
        }
    }
}

/// A deployed release record, decoded.
#[derive(Debug, Clone)]
pub struct ReleaseRecord {
    pub driver: Driver,
    /// The Secret or ConfigMap name.
    pub object_name: String,
    pub namespace: String,
    pub release: String,
    pub revision: i64,
    pub resource_version: Option<String>,
    /// Helm 4's `apply_method` (`ssa` or `csa`); absent in Helm 3 records.
    pub apply_method: Option<String>,
    /// The `release` payload exactly as stored (Helm's base64 text).
    pub payload: Vec<u8>,
    /// The release JSON exactly as stored (after base64 and gzip are undone).
    pub json: String,
    pub manifest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the release payload is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("the release payload is not gzip: {0}")]
    Gzip(#[from] std::io::Error),
    #[error("the release is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the release has no manifest")]
    NoManifest,
}

/// Decodes the `release` payload (the base64 text Helm stored) into the release JSON text.
pub fn decode_payload(payload: &[u8]) -> Result<String, DecodeError> {
    let compressed = base64::engine::general_purpose::STANDARD.decode(payload.trim_ascii())?;
    if compressed.starts_with(&GZIP_MAGIC) {
        let mut json = String::new();
        flate2::read::GzDecoder::new(compressed.as_slice()).read_to_string(&mut json)?;
        Ok(json)
    } else {
        // Helm reads uncompressed records too.
        String::from_utf8(compressed).map_err(|e| DecodeError::Gzip(std::io::Error::other(e)))
    }
}

/// Encodes release JSON the way Helm stores it: gzip, then base64.
pub fn encode_payload(json: &str) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(json.as_bytes()).expect("writing to memory");
    let compressed = encoder.finish().expect("writing to memory");
    base64::engine::general_purpose::STANDARD.encode(compressed).into_bytes()
}

/// The `release` payload of a record object as the API returns it: a Secret's `data` is base64
/// of the payload, a ConfigMap's is the payload text.
pub fn stored_payload(driver: Driver, object: &Value) -> Result<Vec<u8>, DecodeError> {
    let data = object.pointer("/data/release").and_then(Value::as_str).unwrap_or_default();
    match driver {
        Driver::Secret => Ok(base64::engine::general_purpose::STANDARD.decode(data)?),
        Driver::ConfigMap => Ok(data.as_bytes().to_vec()),
    }
}

impl ReleaseRecord {
    /// Decodes a record object (Secret or ConfigMap) as the API returns it.
    pub fn from_object(driver: Driver, object: &Value) -> Result<Self, DecodeError> {
        let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
        let payload = stored_payload(driver, object)?;
        let resource_version = object.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
        Self::decode(driver, text("/metadata/name"), text("/metadata/namespace"), resource_version, &payload)
    }

    pub fn decode(
        driver: Driver,
        object_name: &str,
        namespace: &str,
        resource_version: Option<String>,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        let json = decode_payload(payload)?;
        let value: Value = serde_json::from_str(&json)?;
        let manifest = value.get("manifest").and_then(Value::as_str).ok_or(DecodeError::NoManifest)?.to_string();
        Ok(Self {
            driver,
            object_name: object_name.to_string(),
            namespace: namespace.to_string(),
            release: value.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
            revision: value.get("version").and_then(Value::as_i64).unwrap_or_default(),
            resource_version,
            apply_method: value.get("apply_method").and_then(Value::as_str).map(str::to_string),
            payload: payload.to_vec(),
            json,
            manifest,
        })
    }

    /// The `spec.replicas` this release's manifest sets for `workload`, if it sets one.
    pub fn replicas_for(&self, workload: &Workload) -> Option<Value> {
        manifest_documents(&self.manifest)
            .into_iter()
            .find(|doc| document_is(doc, workload, &self.namespace))
            .and_then(|doc| doc.pointer("/spec/replicas").cloned())
            .filter(|v| !v.is_null())
    }
}

/// The release an object belongs to, from Helm's ownership annotations (the namespace defaults
/// to the object's, as Helm's does).
pub fn release_of(object: &impl Traces) -> Option<ReleaseKey> {
    let name = object.annotation(RELEASE_NAME_ANNOTATION)?;
    let namespace = object.annotation(RELEASE_NAMESPACE_ANNOTATION).unwrap_or(object.namespace());
    Some(ReleaseKey { namespace: namespace.to_string(), name: name.to_string() })
}

pub fn manifest_documents(manifest: &str) -> Vec<Value> {
    // Parse document by document, so one odd template cannot hide the others.
    split_documents(manifest)
        .into_iter()
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(|v| v.is_object())
        .collect()
}

/// Splits a multi-document manifest on `---` lines, keeping each document's exact text.
pub fn split_documents(manifest: &str) -> Vec<&str> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in manifest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            documents.push(&manifest[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    documents.push(&manifest[start..]);
    documents
}

pub fn document_is(doc: &Value, workload: &Workload, release_namespace: &str) -> bool {
    let text = |pointer: &str| doc.pointer(pointer).and_then(Value::as_str);
    let group = text("/apiVersion").and_then(|v| v.rsplit_once('/')).map(|(g, _)| g).unwrap_or("");
    text("/kind") == Some(workload.kind.kind.as_str())
        && group == workload.kind.group
        && text("/metadata/name") == Some(workload.name())
        && text("/metadata/namespace").unwrap_or(release_namespace) == workload.namespace()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{deployment, load};
    use super::super::workload::WorkloadKind;
    use super::*;

    #[test]
    fn payload_round_trips() {
        let json = r#"{"name":"web","manifest":"a<b>&c"}"#;
        assert_eq!(decode_payload(&encode_payload(json)).unwrap(), json);
    }

    #[test]
    fn documents_split_on_separator_lines_only() {
        let manifest = "---\n# Source: a\nkind: A\n---\nkind: B\nvalue: \"---\"\n";
        let docs = split_documents(manifest);
        assert_eq!(docs, vec!["", "# Source: a\nkind: A\n", "kind: B\nvalue: \"---\"\n"]);
        assert_eq!(docs.concat().len() + 8, manifest.len());
    }

    /// A record captured from the real server (`tests/it/helm.rs`), decoded the way the tool
    /// reads it: a typed Secret (Kubernetes' base64 already undone) or ConfigMap.
    fn captured_record(fixture: &str, driver: Driver) -> ReleaseRecord {
        use k8s_openapi::api::core::v1::{ConfigMap, Secret};
        let object = load(fixture);
        let (metadata, payload) = match driver {
            Driver::Secret => {
                let secret: Secret = serde_json::from_value(object).unwrap();
                let payload = secret.data.as_ref().unwrap()["release"].0.clone();
                (secret.metadata, payload)
            }
            Driver::ConfigMap => {
                let map: ConfigMap = serde_json::from_value(object).unwrap();
                let payload = map.data.as_ref().unwrap()["release"].clone().into_bytes();
                (map.metadata, payload)
            }
        };
        let (name, namespace) = (metadata.name.unwrap(), metadata.namespace.unwrap());
        let record = ReleaseRecord::decode(driver, &name, &namespace, metadata.resource_version, &payload).unwrap();
        assert_eq!(record.release, "web");
        assert_eq!(record.object_name, format!("sh.helm.release.v1.web.v{}", record.revision));
        record
    }

    /// The captured Deployment, moved into `namespace` (each capture ran in a namespace of its own).
    fn deployment_in(fixture: &str, namespace: &str) -> Workload {
        let mut object = load(fixture);
        object["metadata"]["namespace"] = namespace.into();
        Workload::from_object(WorkloadKind::deployment(), object).unwrap()
    }

    /// Captured after a Helm 3 upgrade of the chart's autoscaling toggle under `guard on --pin`
    /// (guard_pin.rs): the count was kept, the release manifest no longer sets replicas, and
    /// `helm`'s Update entry still owns them (the write changed no value).
    #[test]
    fn after_a_pinned_helm3_upgrade_helm_s_entry_is_a_hazard_only_on_a_switch_to_server_side() {
        let record = captured_record("pin-after-helm3-toggle-release-secret", Driver::Secret);
        assert_eq!(record.revision, 2);
        let workload = deployment("pin-after-helm3-toggle");
        assert_eq!(record.replicas_for(&workload), None);
        let records = ReleaseRecords::Read(vec![record]);
        let hpas = [crate::core::fixtures::hpa("hpa-min3-rescaled", workload.namespace(), workload.name())];
        let cluster = crate::core::Cluster { hpas: &hpas, helm_records: Some(&records), ..Default::default() };
        let assessment = crate::core::analyze(&workload, &cluster);
        assert_eq!(assessment.verdict, crate::core::verdict::Verdict::StripNeeded, "{}", assessment.reason);
        let [hazard] = assessment.hazards.as_slice() else { panic!("{:?}", assessment.hazards) };
        assert_eq!(hazard.owner, "helm");
        assert!(hazard.detail.contains("the deployed release manifest no longer sets replicas"), "{}", hazard.detail);
        assert_eq!(assessment.replicas.spec, Some(5));
    }

    #[test]
    fn captured_helm3_secret_sets_replicas_for_its_deployment() {
        let record = captured_record("helm3-release-secret", Driver::Secret);
        assert_eq!(record.replicas_for(&deployment("helm3-deployment")), Some(5.into()));
        let key = ReleaseKey { namespace: record.namespace.clone(), name: "web".into() };
        assert_eq!(release_of(&deployment("helm3-deployment")), Some(key.clone()));
        assert_eq!(release_of(&crate::core::fixtures::load("helm3-deployment")), Some(key));
    }

    #[test]
    fn captured_helm3_configmap_sets_replicas_in_its_namespace_only() {
        let record = captured_record("helm3-release-configmap", Driver::ConfigMap);
        assert_eq!(record.replicas_for(&deployment_in("helm3-deployment", &record.namespace)), Some(5.into()));
        assert_eq!(record.replicas_for(&deployment_in("helm3-deployment", "elsewhere")), None);
    }

    #[test]
    fn captured_helm4_secret_has_the_same_format() {
        let record = captured_record("helm4-release-secret", Driver::Secret);
        assert_eq!(record.replicas_for(&deployment("helm4-deployment")), Some(5.into()));
        let release: Value = serde_json::from_str(&record.json).unwrap();
        assert_eq!(release["apply_method"], "ssa");
    }
}
