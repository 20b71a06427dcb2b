//! Target arguments as kubectl writes them: `TYPE/NAME...` or `TYPE NAME...`.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub type_name: String,
    pub name: String,
}

/// Parses `deploy/a sts/b` or `deployment a b`. Mixing the two forms is an error, as in kubectl.
pub fn parse_targets(args: &[String]) -> Result<Vec<Target>> {
    let Some(first) = args.first() else { return Ok(Vec::new()) };
    if first.contains('/') {
        return args
            .iter()
            .map(|arg| match arg.split_once('/') {
                Some((type_name, name)) if !type_name.is_empty() && !name.is_empty() && !name.contains('/') => {
                    Ok(Target { type_name: type_name.to_string(), name: name.to_string() })
                }
                _ => Err(Error::Usage(format!(
                    "`{arg}`: write targets as TYPE/NAME (deploy/web) or TYPE NAME... (deployment web api)"
                ))),
            })
            .collect();
    }
    let names = &args[1..];
    if names.is_empty() {
        return Err(Error::Usage(format!("`{first}` names a type but no workload: add a NAME, or write TYPE/NAME")));
    }
    if let Some(bad) = names.iter().find(|n| n.contains('/')) {
        return Err(Error::Usage(format!(
            "`{bad}`: there is no need to specify a resource type as a separate argument when passing arguments in resource/name form"
        )));
    }
    Ok(names.iter().map(|name| Target { type_name: first.clone(), name: name.clone() }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn slash_form() {
        let parsed = parse_targets(&strings(&["deploy/web", "sts/db"])).unwrap();
        assert_eq!(parsed[0], Target { type_name: "deploy".into(), name: "web".into() });
        assert_eq!(parsed[1], Target { type_name: "sts".into(), name: "db".into() });
    }

    #[test]
    fn type_then_names() {
        let parsed = parse_targets(&strings(&["deployment", "a", "b"])).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].name, "b");
    }

    #[test]
    fn bad_forms_are_usage_errors() {
        for bad in [&["deployment"][..], &["deploy/"], &["deploy/a", "web"], &["deployment", "a/b"]] {
            let error = parse_targets(&strings(bad)).unwrap_err();
            assert!(matches!(error, Error::Usage(_)), "{bad:?}");
        }
    }
}
