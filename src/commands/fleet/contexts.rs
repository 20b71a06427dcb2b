//! Which kubeconfig contexts a command runs in: `--context` (repeated, a comma list, shell-style
//! globs) or `--all-contexts`, resolved against the kubeconfig's contexts before anything
//! connects. Pure but for reading the kubeconfig.

use kube::config::Kubeconfig;
use serde::Serialize;

use crate::cli::{FleetArgs, KubeArgs};
use crate::error::{Error, Result};

/// One context of the kubeconfig as the reports name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Context {
    pub name: String,
    /// The kubeconfig's cluster entry the context uses.
    pub cluster: String,
    pub server: String,
}

/// Where a command runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Contexts {
    /// One context (named, matched by a pattern, or the current one): the command runs exactly
    /// as it always has, with `--context` holding at most that name.
    One(Option<String>),
    /// Two or more, in the kubeconfig's order, each once.
    Many(Vec<Context>),
}

/// Whether a `--context` value is a pattern rather than a name.
fn is_pattern(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Resolves the contexts `kube` and `fleet` ask for. The kubeconfig is read only when they ask
/// for more than one name: a single literal `--context`, or none, is left to the connection as
/// before (an unknown name is then its configuration error).
pub fn resolve(kube: &KubeArgs, fleet: &FleetArgs) -> Result<Contexts> {
    let several = fleet.all_contexts || kube.context.len() > 1 || kube.context.iter().any(|c| is_pattern(c));
    if !several {
        return Ok(Contexts::One(kube.context.first().cloned()));
    }
    let kubeconfig = match &kube.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(|e| Error::Kubeconfig { path: kube.kubeconfig.clone(), message: crate::client::one_line(&e) })?;
    let selected = select(&kube.context, fleet.all_contexts, &known(&kubeconfig))?;
    Ok(match <[Context; 1]>::try_from(selected) {
        Ok([only]) => Contexts::One(Some(only.name)),
        Err(selected) => Contexts::Many(selected),
    })
}

/// The kubeconfig's contexts with their cluster and server (empty when the kubeconfig lacks
/// the cluster: connecting to that context then fails as kubectl would, on its own).
fn known(kubeconfig: &Kubeconfig) -> Vec<Context> {
    kubeconfig
        .contexts
        .iter()
        .map(|named| {
            let cluster = named.context.as_ref().map(|c| c.cluster.clone()).unwrap_or_default();
            let server = kubeconfig
                .clusters
                .iter()
                .find(|c| c.name == cluster)
                .and_then(|c| c.cluster.as_ref()?.server.clone())
                .unwrap_or_default();
            Context { name: named.name.clone(), cluster, server }
        })
        .collect()
}

/// The contexts `patterns` (or `all`) select from `available`, in the kubeconfig's order, each
/// once. A name that is not there is a configuration error (exit 10), as kubectl's `--context`;
/// a pattern that matches nothing, or does not parse, is a usage error (exit 2).
pub fn select(patterns: &[String], all: bool, available: &[Context]) -> Result<Vec<Context>> {
    if all {
        if available.is_empty() {
            return Err(Error::Kubeconfig {
                path: None,
                message: "--all-contexts: the kubeconfig has no contexts".into(),
            });
        }
        return Ok(available.to_vec());
    }
    let listing = || available.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let mut wanted = vec![false; available.len()];
    for text in patterns {
        if text.trim().is_empty() {
            return Err(Error::Usage(
                "--context needs a context name or pattern: remove the empty item from the comma list".into(),
            ));
        }
        if !is_pattern(text) {
            let Some(index) = available.iter().position(|c| &c.name == text) else {
                return Err(Error::Kubeconfig {
                    path: None,
                    message: format!("no context \"{text}\" in the kubeconfig (--context; it has: {})", listing()),
                });
            };
            wanted[index] = true;
            continue;
        }
        let pattern = glob::Pattern::new(text).map_err(|e| {
            Error::Usage(format!("--context '{text}' is not a shell pattern ({e}): write e.g. 'prod-*' or 'dev-eu-?'"))
        })?;
        let mut matched = false;
        for (index, context) in available.iter().enumerate() {
            if pattern.matches(&context.name) {
                wanted[index] = true;
                matched = true;
            }
        }
        if !matched {
            return Err(Error::Usage(format!(
                "--context '{text}' matches no context of the kubeconfig (it has: {}): fix the pattern",
                listing()
            )));
        }
    }
    Ok(available.iter().zip(wanted).filter(|(_, wanted)| *wanted).map(|(c, _)| c.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitStatus;

    fn available() -> Vec<Context> {
        ["dev-us-east-0", "dev-eu-west-2", "prod-us-east-0", "prod-eu-west-2", "kind"]
            .iter()
            .map(|name| Context { name: name.to_string(), cluster: format!("{name}-cluster"), server: String::new() })
            .collect()
    }

    fn names(patterns: &[&str]) -> Result<Vec<String>> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        select(&patterns, false, &available()).map(|selected| selected.into_iter().map(|c| c.name).collect())
    }

    #[test]
    fn patterns_and_names_select_in_kubeconfig_order_each_once() {
        assert_eq!(names(&["prod-*"]).unwrap(), ["prod-us-east-0", "prod-eu-west-2"]);
        assert_eq!(names(&["kind", "*-eu-*", "dev-eu-west-2"]).unwrap(), ["dev-eu-west-2", "prod-eu-west-2", "kind"]);
        assert_eq!(names(&["dev-??-*-0"]).unwrap(), ["dev-us-east-0"]);
        assert_eq!(names(&["[dp]*-us-east-0"]).unwrap(), ["dev-us-east-0", "prod-us-east-0"]);
        let all = select(&[], true, &available()).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[4].cluster, "kind-cluster");
    }

    #[test]
    fn a_pattern_matching_nothing_is_a_usage_error_naming_the_contexts() {
        let error = names(&["staging-*"]).unwrap_err();
        assert_eq!(error.exit_status(), ExitStatus::Usage);
        assert_eq!(
            error.to_string(),
            "--context 'staging-*' matches no context of the kubeconfig (it has: dev-us-east-0, dev-eu-west-2, prod-us-east-0, prod-eu-west-2, kind): fix the pattern"
        );
        assert_eq!(names(&["prod-[", "kind"]).unwrap_err().exit_status(), ExitStatus::Usage);
        assert_eq!(names(&["kind", ""]).unwrap_err().exit_status(), ExitStatus::Usage);
    }

    #[test]
    fn an_unknown_name_among_several_is_a_configuration_error_as_kubectl_s() {
        let error = names(&["kind", "staging"]).unwrap_err();
        assert_eq!(error.exit_status(), ExitStatus::Config);
        assert!(error.to_string().contains("no context \"staging\" in the kubeconfig"), "{error}");
        let none = select(&[], true, &[]).unwrap_err();
        assert_eq!(none.exit_status(), ExitStatus::Config);
    }

    #[test]
    fn one_literal_context_or_none_is_left_to_the_connection() {
        let kube = |context: &[&str]| KubeArgs {
            context: context.iter().map(|c| c.to_string()).collect(),
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..Default::default()
        };
        let fleet = FleetArgs::default();
        assert_eq!(resolve(&kube(&[]), &fleet).unwrap(), Contexts::One(None));
        assert_eq!(resolve(&kube(&["prod"]), &fleet).unwrap(), Contexts::One(Some("prod".into())));
        // Several, or a pattern, need the kubeconfig's contexts.
        assert_eq!(resolve(&kube(&["prod-*"]), &fleet).unwrap_err().exit_status(), ExitStatus::Config);
    }
}
