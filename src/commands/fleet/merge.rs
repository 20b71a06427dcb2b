//! The reports of several contexts as one: the `-o json|yaml` document and the text shapes.
//! Pure.

use serde::Serialize;
use serde_json::{Map, Value};

#[cfg(test)]
use super::Failure;
use super::{ContextEntry, Outcome};
use crate::commands::check::REPORT_API_VERSION;
use crate::error::{Error, Result};

/// The document of `kind` from every context's report, each report's fields merged by one rule
/// whatever the verb: a list gets every context's items, each object item with `context`
/// first and each text item (a warning, a problem) led by `CONTEXT: `; a number (a summary's
/// count) is the sum, a flag is whether any context's is set; other values are the first
/// context's. `contexts` lists every context with its error, if its run failed.
pub(super) fn document<T: Serialize>(kind: &str, outcomes: &[Outcome<'_, T>]) -> Result<Value> {
    let entries: Vec<ContextEntry> = outcomes.iter().map(Outcome::entry).collect();
    let mut document = Map::new();
    document.insert("apiVersion".into(), REPORT_API_VERSION.into());
    document.insert("kind".into(), kind.into());
    document.insert("contexts".into(), to_value(&entries)?);
    for outcome in outcomes {
        let Ok(report) = &outcome.result else { continue };
        let Value::Object(fields) = to_value(report)? else { continue };
        for (key, value) in fields {
            if key != "apiVersion" && key != "kind" {
                merge_into(document.entry(key).or_insert(Value::Null), value, &outcome.context.name);
            }
        }
    }
    Ok(Value::Object(document))
}

fn to_value(value: &impl Serialize) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::Report { format: "JSON", message: e.to_string() })
}

fn merge_into(merged: &mut Value, value: Value, context: &str) {
    match (merged, value) {
        (merged @ Value::Null, Value::Array(items)) => {
            *merged = Value::Array(items.into_iter().map(|item| in_context(item, context)).collect());
        }
        (Value::Array(merged), Value::Array(items)) => {
            merged.extend(items.into_iter().map(|item| in_context(item, context)));
        }
        (merged @ Value::Null, Value::Object(fields)) => {
            *merged = Value::Object(Map::new());
            merge_into(merged, Value::Object(fields), context);
        }
        (Value::Object(merged), Value::Object(fields)) => {
            for (key, value) in fields {
                merge_into(merged.entry(key).or_insert(Value::Null), value, context);
            }
        }
        (Value::Number(merged), Value::Number(value)) => {
            if let (Some(a), Some(b)) = (merged.as_u64(), value.as_u64()) {
                *merged = (a + b).into();
            }
        }
        (Value::Bool(merged), Value::Bool(value)) => *merged |= value,
        (merged @ Value::Null, value) => *merged = value,
        _ => {}
    }
}

/// An item of a list as the merged document holds it.
fn in_context(item: Value, context: &str) -> Value {
    match item {
        Value::Object(fields) => {
            let mut tagged = Map::new();
            tagged.insert("context".into(), context.into());
            tagged.extend(fields);
            Value::Object(tagged)
        }
        Value::String(text) => Value::String(format!("{context}: {text}")),
        other => other,
    }
}

/// A line-per-workload text report (each workload's heading unindented, its details
/// indented) with the context leading every heading.
pub(super) fn headings_in_context(text: &str, context: &str) -> String {
    text.lines()
        .map(|line| {
            if line.is_empty() || line.starts_with(' ') { format!("{line}\n") } else { format!("{context}: {line}\n") }
        })
        .collect()
}

/// One table of every context's rows (`header` without the context), led by a CONTEXT column.
pub(super) fn table<'a>(header: &[&str], rows: impl IntoIterator<Item = (&'a str, Vec<String>)>) -> String {
    let header: Vec<&str> = std::iter::once("CONTEXT").chain(header.iter().copied()).collect();
    let rows: Vec<Vec<String>> =
        rows.into_iter().map(|(context, cells)| std::iter::once(context.to_string()).chain(cells).collect()).collect();
    let mut out = Vec::new();
    crate::output::write_columns(&mut out, &header, &rows).expect("writing to memory");
    String::from_utf8(out).expect("the table is text")
}

/// A command `check` or `preflight` prints for a workload, to run in its context: every
/// command there names its namespace (`-n NS`), so the context goes in front of it.
pub(super) fn command_in_context(command: &str, context: &str) -> String {
    command.replace(" -n ", &format!(" --context {context} -n "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::commands::fleet::Context;

    fn context(name: &str) -> Context {
        Context { name: name.into(), cluster: format!("{name}-cluster"), server: format!("https://{name}:6443") }
    }

    #[test]
    fn every_item_names_its_context_and_counts_add_up() {
        let (a, b, down) = (context("dev-a"), context("dev-b"), context("down"));
        let report = |name: &str, safe: u64, keda: bool| {
            json!({"apiVersion": "hpa-migrate.io/v1alpha1", "kind": "CheckReport", "kedaInstalled": keda,
                   "summary": {"total": 1, "safe": safe, "needsAction": 1 - safe},
                   "warnings": [format!("hpa/old in {name}")],
                   "workloads": [{"namespace": name, "name": "web"}]})
        };
        let outcomes = vec![
            Outcome { context: &a, result: Ok(report("a", 1, false)) },
            Outcome {
                context: &down,
                result: Err(Failure::Error(Error::Usage("cannot reach the API server: Connection refused".into()))),
            },
            Outcome { context: &b, result: Ok(report("b", 0, true)) },
        ];
        let merged = document("CheckReport", &outcomes).unwrap();
        assert_eq!(
            merged,
            json!({
                "apiVersion": "hpa-migrate.io/v1alpha1", "kind": "CheckReport",
                "contexts": [
                    {"name": "dev-a", "cluster": "dev-a-cluster", "server": "https://dev-a:6443"},
                    {"name": "down", "cluster": "down-cluster", "server": "https://down:6443",
                     "error": "cannot reach the API server: Connection refused"},
                    {"name": "dev-b", "cluster": "dev-b-cluster", "server": "https://dev-b:6443"}
                ],
                "kedaInstalled": true,
                "summary": {"total": 2, "safe": 1, "needsAction": 1},
                "warnings": ["dev-a: hpa/old in a", "dev-b: hpa/old in b"],
                "workloads": [{"context": "dev-a", "namespace": "a", "name": "web"},
                              {"context": "dev-b", "namespace": "b", "name": "web"}]
            })
        );
        let keys: Vec<&String> = merged.as_object().unwrap().keys().collect();
        assert_eq!(keys[..3], ["apiVersion", "kind", "contexts"], "the contexts lead the document");
    }

    #[test]
    fn one_table_leads_with_the_context() {
        let rows =
            [("dev-a", vec!["shop".to_string(), "deploy".into()]), ("prod-eu", vec!["web".into(), "sts".into()])];
        assert_eq!(
            table(&["NAMESPACE", "KIND"], rows),
            " CONTEXT  NAMESPACE  KIND\n dev-a    shop       deploy\n prod-eu  web        sts\n"
        );
    }

    #[test]
    fn text_names_the_context_of_each_workload() {
        let verify = "shop/deployment/web: pass\n  no drop\n\nshop/deployment/api: drop\n  reason\n";
        assert_eq!(
            headings_in_context(verify, "dev-a"),
            "dev-a: shop/deployment/web: pass\n  no drop\n\ndev-a: shop/deployment/api: drop\n  reason\n"
        );
        assert_eq!(
            command_in_context(
                "remove `replicas` from the manifests and deploy; then kubectl hpa-migrate verify -n shop deployment/web --since 15m",
                "dev-a"
            ),
            "remove `replicas` from the manifests and deploy; then kubectl hpa-migrate verify --context dev-a -n shop deployment/web --since 15m"
        );
    }
}
