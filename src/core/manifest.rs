//! Manifests as kubectl reads them: multi-document YAML or JSON, `List` objects flattened, each
//! object remembered with where it came from. Pure: the files are read by the caller.

use serde_json::Value;

/// One Kubernetes object from the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub object: Value,
    /// `FILE` or `FILE#N` (the N-th document of a multi-document file, from 1).
    pub source: String,
}

impl Document {
    pub fn text(&self, pointer: &str) -> Option<&str> {
        self.object.pointer(pointer).and_then(Value::as_str)
    }

    pub fn api_version(&self) -> &str {
        self.text("/apiVersion").unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        self.text("/kind").unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.text("/metadata/name").unwrap_or_default()
    }

    /// The API group of `apiVersion` (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version().rsplit_once('/').map(|(group, _)| group).unwrap_or("")
    }

    /// The namespace the object lands in: its own, else `default_namespace` (as kubectl does).
    pub fn namespace<'a>(&'a self, default_namespace: &'a str) -> &'a str {
        self.text("/metadata/namespace").filter(|ns| !ns.is_empty()).unwrap_or(default_namespace)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ParseError {
    pub source_name: String,
    pub message: String,
}

/// Parses every document of `text`. A document that is not valid YAML, or an object without
/// `apiVersion`, `kind` and `metadata.name`, is an error (kubectl refuses the whole input too);
/// empty documents are skipped.
pub fn parse(text: &str, source_name: &str) -> Result<Vec<Document>, ParseError> {
    let parts = split(text);
    let several = parts.len() > 1;
    let mut documents = Vec::new();
    for (index, part) in parts.into_iter().enumerate() {
        let source = if several { format!("{source_name}#{}", index + 1) } else { source_name.to_string() };
        let error = |message: String| ParseError { source_name: source.clone(), message };
        let value: Value = serde_saphyr::from_str(part).map_err(|e| error(first_line(&e.to_string())))?;
        if value.is_null() {
            continue;
        }
        flatten(value, &source, &mut documents).map_err(error)?;
    }
    Ok(documents)
}

/// `kind: List` (and `DeploymentList`, ...: what `kubectl get -o yaml` writes) contributes its
/// items.
fn flatten(value: Value, source: &str, into: &mut Vec<Document>) -> Result<(), String> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind.ends_with("List")
        && let Some(items) = value.get("items").and_then(Value::as_array)
    {
        for item in items {
            flatten(item.clone(), source, into)?;
        }
        return Ok(());
    }
    let document = Document { object: value, source: source.to_string() };
    if !document.object.is_object() {
        return Err("not a Kubernetes object (expected a mapping with apiVersion and kind)".into());
    }
    for (field, present) in
        [("apiVersion", document.api_version()), ("kind", document.kind()), ("metadata.name", document.name())]
    {
        if present.is_empty() {
            return Err(format!("an object without {field}"));
        }
    }
    into.push(document);
    Ok(())
}

/// Splits on `---` lines, which may carry a comment after them (as Kubernetes' YAML reader
/// allows); blank or comment-only parts are dropped.
fn split(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let rest = line.strip_prefix("---").map(str::trim);
        if rest.is_some_and(|rest| rest.is_empty() || rest.starts_with('#')) {
            parts.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|part| part.lines().any(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))).collect()
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_with_comments_and_empty_documents() {
        let text = "---\n# Source: chart/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n--- # the HPA\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\n  namespace: shop\n---\n";
        let docs = parse(text, "all.yaml").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].kind(), docs[0].name(), docs[0].namespace("dflt")), ("Deployment", "web", "dflt"));
        assert_eq!((docs[1].group(), docs[1].namespace("dflt")), ("autoscaling", "shop"));
        assert_eq!(docs[1].source, "all.yaml#2");
    }

    #[test]
    fn json_and_lists_are_flattened() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a"}},
            {"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"b"}}]}"#;
        let docs = parse(text, "-").unwrap();
        assert_eq!(docs.iter().map(|d| d.name()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn objects_without_identity_and_bad_yaml_are_errors() {
        let error = parse("apiVersion: apps/v1\nkind: Deployment\nmetadata: {}\n", "d.yaml").unwrap_err();
        assert_eq!(error.to_string(), "d.yaml: an object without metadata.name");
        let error = parse("kind: [\n", "bad.yaml").unwrap_err();
        assert!(error.to_string().starts_with("bad.yaml: "), "{error}");
        assert!(!error.to_string().contains('\n'));
        assert!(parse("just text\n", "t.yaml").is_err());
    }
}
