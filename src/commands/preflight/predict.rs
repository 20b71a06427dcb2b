//! The prediction for one workload of the manifests: which tool applies it, and its apply
//! dry-run on the API server (or computed locally when the server may not be asked).

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::Prediction;
use super::read::{Context, Item};
use crate::core::guard;
use crate::core::helm::ReleaseRecord;
use crate::core::manifest::Document;
use crate::core::preflight::{
    self as logic, Applier, Apply, Forecast, Sends, Step, Takeover, after_server_side, after_server_side_locally,
};
use crate::core::tools::{self, Tool, Traces, flux};
use crate::error::{Error, Result};

/// The replicas right after the apply, and what the prediction rests on.
struct After {
    predicted: Option<i64>,
    /// The server refused the write; the message says why.
    refused: Option<String>,
    /// `guard on --pin` kept the count of the dry run.
    pinned: bool,
    computed_by: String,
    why: String,
}

pub(super) async fn predict(client: &Client, item: &Item, context: &Context) -> Result<Prediction> {
    let manifest_replicas = item.document.object.pointer("/spec/replicas").and_then(Value::as_i64);
    let mut prediction = unpredicted(item);
    let Some(live) = &item.live else {
        prediction.autoscalers = context.autoscalers(item, None);
        prediction.outcome = Forecast::New;
        prediction.predicted = Some(manifest_replicas.unwrap_or(logic::DEFAULT_REPLICAS));
        prediction.cause = "not live yet: the deploy creates it".into();
        return Ok(prediction);
    };
    prediction.current = item.workload.as_ref().and_then(|w| w.replicas.spec);
    prediction.autoscalers = context.autoscalers(item, item.workload.as_ref());
    let applier = tools::detect(context.requested.as_ref(), live)
        .map_err(logic::Undetermined::from)
        .and_then(|(tool, evidence)| logic::applier(tool, evidence, live, context.helm_record(item, live)));
    let mut applier = match applier {
        Ok(applier) => applier,
        Err(why) => {
            prediction.cause = format!("cannot tell which tool applies it: {why}");
            return Ok(prediction);
        }
    };
    let application = (applier.tool == Tool::Argocd).then(|| context.argocd_application(item, live)).flatten();
    let respected;
    let item = match application {
        Some(application) => {
            applier = logic::under_application(applier, application, live);
            let (group, namespace) = (item.kind.group.as_str(), item.namespace.as_str());
            if application.keeps_live_replicas(group, &item.kind.kind, namespace, item.document.name()) {
                applier
                    .evidence
                    .push_str(" (RespectIgnoreDifferences=true, /spec/replicas ignored: the live count is applied)");
                respected = Item {
                    document: Document {
                        object: logic::with_live_replicas(&item.document.object, live),
                        ..item.document.clone()
                    },
                    ..item.clone()
                };
                &respected
            } else {
                item
            }
        }
        None => item,
    };
    prediction.tool = Some(applier.tool.label());
    prediction.evidence = Some(applier.evidence.clone());
    prediction.apply = Some(applier.apply.describe());
    let after = match (applier.tool == Tool::Flux).then(|| flux::skips(&item.document.object, live)).flatten() {
        Some(skip) => After {
            predicted: prediction.current,
            refused: None,
            pinned: false,
            computed_by: "locally".into(),
            why: format!("{skip}, so replicas stays"),
        },
        None => after_apply(client, item, live, &applier, context).await?,
    };
    settle(&mut prediction, after);
    if prediction.outcome == Forecast::Drops {
        prediction.steps = logic::safe_steps(
            &applier.tool,
            &item.namespace,
            &prediction.target,
            manifest_replicas.is_none(),
            &prediction.autoscalers,
        );
        // Three-way mergers keep owning replicas after a pinned deploy (a strip is still due).
        let hands_over = matches!(applier.apply, Apply::ServerSide { .. });
        if context.pin_served && hands_over && manifest_replicas.is_none() {
            let target = &prediction.target;
            prediction.pin_steps =
                logic::pin_steps(&applier.tool, &item.namespace, target, &prediction.autoscalers, prediction.current)
                    .unwrap_or_default();
        }
    }
    prediction.warnings = autoscaler_warnings(&prediction);
    Ok(prediction)
}

/// The prediction of an item before anything is known of it: its outcome unknown.
fn unpredicted(item: &Item) -> Prediction {
    Prediction {
        namespace: item.namespace.clone(),
        kind: item.kind.kind.clone(),
        api_version: item.document.api_version().to_string(),
        name: item.document.name().to_string(),
        source: item.document.source.clone(),
        tool: None,
        evidence: None,
        apply: None,
        computed_by: None,
        current: None,
        predicted: None,
        outcome: Forecast::Unknown,
        cause: String::new(),
        autoscalers: Vec::new(),
        steps: Vec::new(),
        pin_steps: Vec::new(),
        warnings: Vec::new(),
        target: format!("{}/{}", item.kind.command_name(), item.document.name()),
    }
}

/// Records the replicas after the apply, its outcome against the current count, and why.
fn settle(prediction: &mut Prediction, after: After) {
    prediction.computed_by = Some(after.computed_by);
    prediction.predicted = after.predicted;
    prediction.outcome = match (&after.refused, after.predicted, prediction.current) {
        (Some(_), _, _) => Forecast::Refused,
        _ if after.pinned => Forecast::Pinned,
        (None, Some(after), Some(before)) if after < before => Forecast::Drops,
        (None, None, Some(_)) => Forecast::Drops,
        _ => Forecast::Keeps,
    };
    prediction.cause = match after.refused {
        Some(message) => format!("the API server refuses the write, so the deploy fails and replicas stays: {message}"),
        None => after.why,
    };
}

fn autoscaler_warnings(prediction: &Prediction) -> Vec<String> {
    let mut warnings = Vec::new();
    let drops = prediction.outcome == Forecast::Drops;
    for a in &prediction.autoscalers {
        let min = a.min_replicas.map(|m| format!(" (min {m})")).unwrap_or_default();
        if a.arrives() && drops {
            warnings.push(format!("{}{min} arrives with this deploy: it cannot act before the drop", a.name));
        } else if let Some(blocked) = a.blocked.as_ref().filter(|_| drops) {
            warnings.push(format!("{}{min} cannot act: {blocked}", a.name));
        } else if a.in_charge && drops {
            warnings
                .push(format!("{}{min} is in charge: it scales back up only at its next sync, after the drop", a.name));
        }
        if a.min_replicas == Some(0) && a.name.starts_with("scaledobject/") {
            warnings.push(format!("{} has minReplicaCount 0: KEDA scales the workload to 0 when idle", a.name));
        }
    }
    if prediction.autoscalers.is_empty() && prediction.steps.iter().any(|s| matches!(s, Step::Run(_))) {
        warnings
            .push("no autoscaler targets it, live or in these manifests: after the hand-over nothing scales it".into());
    }
    warnings
}

async fn after_apply(
    client: &Client,
    item: &Item,
    live: &Value,
    applier: &Applier,
    context: &Context,
) -> Result<After> {
    let dry_run = DryRun {
        api: Api::namespaced_with(client.clone(), &item.namespace, &item.resource),
        item,
        live,
        current: live.pointer("/spec/replicas").and_then(Value::as_i64),
    };
    match &applier.apply {
        Apply::ServerSide { manager, force, takeover } => dry_run.server_side(manager, *force, takeover).await,
        Apply::ClientSide { .. } | Apply::HelmThreeWay { .. } => {
            dry_run.three_way(&applier.apply, context.helm_record(item, live).ok().flatten()).await
        }
    }
}

/// What the dry runs of one live workload's apply work with.
struct DryRun<'a> {
    api: Api<DynamicObject>,
    item: &'a Item,
    live: &'a Value,
    /// The live replicas.
    current: Option<i64>,
}

impl DryRun<'_> {
    /// A server-side apply: the manifest itself, dry-run as the tool's manager.
    async fn server_side(&self, manager: &str, force: bool, takeover: &Takeover) -> Result<After> {
        let mut body = self.item.document.object.clone();
        body["metadata"]["namespace"] = self.item.namespace.clone().into();
        let params =
            PatchParams { field_manager: Some(manager.to_string()), force, dry_run: true, ..Default::default() };
        let manifest = &self.item.document.object;
        let current = self.current;
        match answer(self.api.patch(self.item.document.name(), &params, &Patch::Apply(&body)).await)? {
            // Pinned writes are pinned again when a tool re-sends them (kubectl's migration of a
            // client-side owner, Flux's takeover): the count the dry run kept is the count after.
            Answer::Stored(response) if guard::pinned_by_the_write(self.live, &response) => Ok(pinned(&response)),
            Answer::Stored(response) => {
                let predicted = after_server_side(&response, manifest, manager, takeover);
                let why = server_side_why(&response, manifest, manager, predicted, current);
                Ok(After { predicted, refused: None, pinned: false, computed_by: "server dry run".into(), why })
            }
            Answer::Refused(message) => Ok(After {
                predicted: current,
                refused: Some(message),
                pinned: false,
                computed_by: "server dry run".into(),
                why: String::new(),
            }),
            Answer::Forbidden(message) => {
                let predicted = after_server_side_locally(self.live, manifest, manager, takeover);
                let why = server_side_why(self.live, manifest, manager, predicted, current);
                Ok(After { predicted, refused: None, pinned: false, computed_by: locally(&message), why })
            }
        }
    }

    /// A three-way merge (client-side apply, Helm 3): what it sends for replicas, computed
    /// here, then dry-run.
    async fn three_way(&self, apply: &Apply, record: Option<&ReleaseRecord>) -> Result<After> {
        let previous = logic::previous_configuration(apply, self.live, record);
        let sends = logic::three_way_sends(previous.as_ref(), &self.item.document.object);
        let what = match apply {
            Apply::HelmThreeWay { revision, .. } => format!("the deployed release (revision {revision})"),
            _ => "the last-applied annotation".to_string(),
        };
        let value = match &sends {
            Sends::Nothing => {
                let why = format!("neither {what} nor the manifest sets replicas, so the merge leaves it alone");
                return Ok(After {
                    predicted: self.current,
                    refused: None,
                    pinned: false,
                    computed_by: "locally".into(),
                    why,
                });
            }
            Sends::Value(value) => value.clone(),
            Sends::Null => Value::Null,
        };
        let why = match sends {
            Sends::Null => format!(
                "{what} sets replicas and the manifest does not: the three-way merge sends replicas: null, which the server defaults"
            ),
            _ => format!("the manifest sets replicas: {value}"),
        };
        let field_manager = match apply {
            Apply::ClientSide { manager } | Apply::ServerSide { manager, .. } => manager.clone(),
            Apply::HelmThreeWay { .. } => "helm".to_string(),
        };
        self.send_replicas(field_manager, value, why).await
    }

    /// Dry-runs the merge patch of replicas a three-way merge sends.
    async fn send_replicas(&self, field_manager: String, value: Value, why: String) -> Result<After> {
        let params = PatchParams { field_manager: Some(field_manager), dry_run: true, ..Default::default() };
        let patch = Patch::Merge(json!({"spec": {"replicas": value}}));
        match answer(self.api.patch(self.item.document.name(), &params, &patch).await)? {
            Answer::Stored(response) if guard::pinned_by_the_write(self.live, &response) => Ok(pinned(&response)),
            Answer::Stored(response) => Ok(After {
                predicted: response.pointer("/spec/replicas").and_then(Value::as_i64),
                refused: None,
                pinned: false,
                computed_by: "server dry run".into(),
                why: format!(
                    "{why} (to {})",
                    crate::output::count(response.pointer("/spec/replicas").and_then(Value::as_i64))
                ),
            }),
            Answer::Refused(message) => Ok(After {
                predicted: self.current,
                refused: Some(message),
                pinned: false,
                computed_by: "server dry run".into(),
                why,
            }),
            Answer::Forbidden(message) => Ok(After {
                predicted: value.as_i64().or(Some(logic::DEFAULT_REPLICAS)),
                refused: None,
                pinned: false,
                computed_by: locally(&message),
                why,
            }),
        }
    }
}

/// A dry run `guard on --pin` rewrote: the count it kept.
fn pinned(response: &Value) -> After {
    let kept = response.pointer("/spec/replicas").and_then(Value::as_i64);
    After {
        predicted: kept,
        refused: None,
        pinned: true,
        computed_by: "server dry run".into(),
        why: format!(
            "the write would lower replicas below the guard's floor, and guard on --pin keeps the live count ({})",
            crate::output::count(kept)
        ),
    }
}

fn locally(message: &str) -> String {
    format!(
        "locally: the server's dry run was refused ({message}); it needs patch on the workloads, see deploy/rbac/preflight.yaml"
    )
}

fn server_side_why(
    object: &Value,
    manifest: &Value,
    manager: &str,
    predicted: Option<i64>,
    current: Option<i64>,
) -> String {
    if let Some(value) = manifest.pointer("/spec/replicas").filter(|v| !v.is_null()) {
        return format!("the manifest sets replicas: {value}");
    }
    if predicted != current {
        return format!(
            "the manifest leaves replicas out and {manager} would be its only owner, so the server removes the field and defaults it to {}",
            crate::output::count(predicted)
        );
    }
    let others: Vec<String> = object
        .managed_fields()
        .iter()
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .is_some_and(|f| crate::core::ownership::fields_contain(&f.0, &crate::core::ownership::REPLICAS_PATH))
        })
        .filter_map(|e| e.manager.clone())
        .filter(|m| m != manager)
        .collect();
    if others.is_empty() {
        format!("the manifest leaves replicas out and {manager} does not own it, so the apply leaves it alone")
    } else {
        format!("the manifest leaves replicas out and {} also owns it, so the apply leaves it", others.join(", "))
    }
}

/// How the server answered a dry run.
enum Answer {
    Stored(Value),
    /// Refused on its merits (conflict, invalid, an admission policy): the real deploy fails too.
    Refused(String),
    /// RBAC does not allow the dry run.
    Forbidden(String),
}

fn answer(result: std::result::Result<DynamicObject, kube::Error>) -> Result<Answer> {
    match result {
        Ok(object) => Ok(Answer::Stored(serde_json::to_value(object).unwrap_or(Value::Null))),
        Err(kube::Error::Api(status)) => {
            let message = status.message.clone();
            // Admission refusals are 403 too; RBAC's say "cannot patch resource".
            let rbac = status.code == 403 && !message.contains("denied request") && !message.contains("admission");
            match status.code {
                403 if rbac => Ok(Answer::Forbidden(message)),
                400 | 403 | 409 | 422 => Ok(Answer::Refused(message)),
                _ => Err(Error::api("server-side dry run", kube::Error::Api(status))),
            }
        }
        Err(other) => Err(Error::api("server-side dry run", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::preflight::AutoscalerView;

    fn prediction(current: Option<i64>) -> Prediction {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n";
        let document = crate::core::manifest::parse(text, "next.yaml").unwrap().remove(0);
        let kind = crate::core::workload::WorkloadKind::deployment();
        let resource = crate::kubeio::api_resource(&kind);
        let item = Item { document, kind, resource, namespace: "shop".into(), live: None, workload: None };
        Prediction { current, ..unpredicted(&item) }
    }

    fn after(predicted: Option<i64>, refused: Option<&str>) -> After {
        After {
            predicted,
            refused: refused.map(Into::into),
            pinned: false,
            computed_by: "server dry run".into(),
            why: "why".into(),
        }
    }

    fn settled(current: Option<i64>, after: After) -> Prediction {
        let mut prediction = prediction(current);
        settle(&mut prediction, after);
        prediction
    }

    #[test]
    fn the_outcome_is_the_count_after_the_apply_against_the_count_now() {
        assert_eq!(settled(Some(5), after(Some(1), None)).outcome, Forecast::Drops);
        assert_eq!(settled(Some(5), after(None, None)).outcome, Forecast::Drops, "replicas removed: defaulted");
        assert_eq!(settled(Some(5), after(Some(5), None)).outcome, Forecast::Keeps);
        assert_eq!(settled(Some(5), after(Some(7), None)).outcome, Forecast::Keeps);
        let refused = settled(Some(5), after(Some(1), Some("denied by the guard")));
        assert_eq!(refused.outcome, Forecast::Refused);
        assert!(refused.cause.starts_with("the API server refuses the write") && refused.cause.ends_with("guard"));
        assert_eq!(refused.computed_by.as_deref(), Some("server dry run"));
    }

    fn autoscaler(live: bool, in_manifests: bool, min: i64) -> AutoscalerView {
        AutoscalerView {
            name: "hpa/web".into(),
            min_replicas: Some(min),
            live,
            in_manifests,
            in_charge: live,
            blocked: None,
        }
    }

    #[test]
    fn an_autoscaler_that_arrives_with_the_drop_cannot_act_before_it() {
        let mut dropping = settled(Some(5), after(Some(1), None));
        dropping.autoscalers = vec![autoscaler(false, true, 2)];
        assert_eq!(
            autoscaler_warnings(&dropping),
            ["hpa/web (min 2) arrives with this deploy: it cannot act before the drop"]
        );
        dropping.autoscalers = vec![autoscaler(true, false, 2)];
        assert!(
            autoscaler_warnings(&dropping)[0]
                .ends_with("is in charge: it scales back up only at its next sync, after the drop")
        );

        let mut kept = settled(Some(5), after(Some(5), None));
        kept.autoscalers = vec![autoscaler(true, false, 2)];
        assert!(autoscaler_warnings(&kept).is_empty());
        kept.autoscalers.clear();
        kept.steps = vec![Step::Run("kubectl hpa-migrate strip".into())];
        assert!(autoscaler_warnings(&kept)[0].starts_with("no autoscaler targets it"));
    }
}
