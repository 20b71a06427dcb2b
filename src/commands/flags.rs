//! The kubectl flags and each verb's own arguments, resolved once and checked before any
//! connection (kubectl's Complete and Validate before Run): a verb is handed only what it
//! honours, and a flag it cannot honour is refused with a usage error, never dropped.

use crate::cli::{CheckArgs, KubeArgs, MigrateArgs, Verb, VerifyArgs};
use crate::commands::{Target, guard, parse_targets, preflight, restore, resume, strip};
use crate::core::selector::{self, LabelSelector};
use crate::error::{Error, Result};

/// `-n`, `-A` and `-l` as given, checked: `-n` names a namespace, `-l` parses as kubectl's.
#[derive(Debug, Clone, Default)]
pub struct ScopeFlags {
    pub namespace: Option<String>,
    pub all_namespaces: bool,
    pub selector: Option<LabelSelector>,
}

impl ScopeFlags {
    pub fn resolve(kube: &KubeArgs) -> Result<Self> {
        if kube.namespace.as_deref().is_some_and(|ns| ns.trim().is_empty()) {
            return Err(Error::Usage(
                "-n needs a namespace name: drop -n for the context's namespace, or use -A for all namespaces".into(),
            ));
        }
        let selector = match kube.selector.as_deref() {
            None => None,
            Some(text) if text.trim().is_empty() => {
                return Err(Error::Usage(
                    "-l needs a selector (an empty one would select everything): drop -l, or write one such as app=web"
                        .into(),
                ));
            }
            Some(text) => Some(LabelSelector::parse(text).map_err(|e| Error::InvalidSelector {
                selector: text.to_string(),
                message: format!("{e} (write e.g. {})", selector::EXAMPLE),
            })?),
        };
        Ok(Self { namespace: kube.namespace.clone(), all_namespaces: kube.all_namespaces, selector })
    }

    /// The selector as typed, which is what the API server is sent.
    pub fn selector_text(&self) -> Option<&str> {
        self.selector.as_ref().map(LabelSelector::as_str)
    }

    /// A workload is named in one namespace: named targets with `-A` are refused.
    pub fn refuse_named_across_all_namespaces(&self, targets: &[Target]) -> Result<()> {
        if self.all_namespaces && !targets.is_empty() {
            return Err(Error::Usage(
                "a workload cannot be named across all namespaces: drop -A and pass -n NAMESPACE".into(),
            ));
        }
        Ok(())
    }
}

/// The usage error for `flag`, which `verb` does not honour, saying what to do instead.
pub fn not_honoured(verb: &str, flag: &str, instead: &str) -> Error {
    Error::Usage(format!("{verb} does not take {flag}: {instead}"))
}

/// `completion SHELL` prints a fixed script: a kubectl flag given to it would change nothing.
pub fn refuse_kube_flags(verb: &str, kube: &KubeArgs) -> Result<()> {
    let given = [
        ("--kubeconfig", kube.kubeconfig.is_some()),
        ("--context", !kube.context.is_empty()),
        ("--cluster", kube.cluster.is_some()),
        ("--user", kube.user.is_some()),
        ("-n", kube.namespace.is_some()),
        ("-A", kube.all_namespaces),
        ("-l", kube.selector.is_some()),
    ];
    match given.iter().find(|(_, given)| *given) {
        Some((flag, _)) => Err(not_honoured(verb, flag, "the script reads no cluster; drop it")),
        None => Ok(()),
    }
}

/// A verb with its arguments resolved and checked, ready to run once connected.
#[derive(Debug)]
pub enum VerbOptions {
    Check(CheckArgs),
    Strip(strip::Options),
    Verify(VerifyArgs),
    Guard(guard::GuardOptions),
    Migrate(MigrateArgs),
    Restore(Box<restore::Options>),
    Resume(resume::Options),
    Preflight(preflight::Options),
}

impl VerbOptions {
    /// Resolves `verb` with `flags`; `completion` and `__complete` are not verbs that connect.
    pub fn resolve(verb: Verb, flags: &ScopeFlags) -> Result<Self> {
        let named = |targets: &[String]| flags.refuse_named_across_all_namespaces(&parse_targets(targets)?);
        Ok(match verb {
            Verb::Check(args) => named(&args.targets).map(|()| Self::Check(args))?,
            Verb::Strip(args) => Self::Strip(strip::Options::resolve(args, flags)?),
            Verb::Verify(args) => named(&args.targets).map(|()| Self::Verify(args))?,
            Verb::Migrate(args) => named(&args.targets).map(|()| Self::Migrate(args))?,
            Verb::Guard(args) => {
                let options = guard::GuardOptions::resolve(&args, flags.selector_text())?;
                if let guard::GuardOptions::On { targets, .. } | guard::GuardOptions::Off { targets, .. } = &options {
                    flags.refuse_named_across_all_namespaces(targets)?;
                }
                Self::Guard(options)
            }
            Verb::Restore(args) => Self::Restore(Box::new(restore::Options::resolve(args, flags)?)),
            Verb::Resume(args) => Self::Resume(resume::Options::resolve(&args, flags)?),
            Verb::Preflight(args) => Self::Preflight(preflight::Options::resolve(args, flags)?),
            Verb::Completion(_) | Verb::Complete(_) => unreachable!("completion is handled before resolving"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitStatus;

    fn kube(namespace: Option<&str>, selector: Option<&str>) -> KubeArgs {
        KubeArgs { namespace: namespace.map(Into::into), selector: selector.map(Into::into), ..Default::default() }
    }

    fn refused(kube: &KubeArgs) -> Error {
        ScopeFlags::resolve(kube).expect_err("refused")
    }

    #[test]
    fn an_empty_namespace_or_selector_is_a_usage_error() {
        for args in [kube(Some(""), None), kube(Some(" "), None), kube(None, Some("")), kube(None, Some(" "))] {
            let error = refused(&args);
            assert_eq!(error.exit_status(), ExitStatus::Usage, "{error}");
            assert!(error.to_string().contains("needs a"), "{error}");
        }
    }

    #[test]
    fn a_selector_that_does_not_parse_is_named_with_the_syntax() {
        let error = refused(&kube(None, Some("a in (")));
        assert_eq!(error.exit_status(), ExitStatus::Usage);
        let text = error.to_string();
        assert!(text.starts_with("invalid label selector 'a in (': unable to parse requirement"), "{text}");
        assert!(text.ends_with("(write e.g. app=web,env in (prod,qa),!legacy)"), "{text}");
        assert!(text.chars().count() < 160 && !text.contains('\n'), "{text}");

        let flags = ScopeFlags::resolve(&kube(Some("shop"), Some("app in (web, api)"))).unwrap();
        assert_eq!((flags.namespace.as_deref(), flags.selector_text()), (Some("shop"), Some("app in (web, api)")));
    }

    #[test]
    fn targets_are_named_in_one_namespace() {
        let all = ScopeFlags { all_namespaces: true, ..Default::default() };
        let target = Target { type_name: "deploy".into(), name: "web".into() };
        assert_eq!(
            all.refuse_named_across_all_namespaces(std::slice::from_ref(&target)).unwrap_err().exit_status(),
            ExitStatus::Usage
        );
        assert!(all.refuse_named_across_all_namespaces(&[]).is_ok());
        assert!(ScopeFlags::default().refuse_named_across_all_namespaces(&[target]).is_ok());
    }

    #[test]
    fn completion_scripts_refuse_kubectl_flags() {
        assert!(refuse_kube_flags("completion", &KubeArgs::default()).is_ok());
        let error = refuse_kube_flags("completion", &kube(Some("shop"), None)).unwrap_err();
        assert_eq!(error.to_string(), "completion does not take -n: the script reads no cluster; drop it");
        let context = KubeArgs { context: vec!["prod".into()], ..Default::default() };
        assert!(refuse_kube_flags("completion", &context).unwrap_err().to_string().contains("--context"));
    }
}
