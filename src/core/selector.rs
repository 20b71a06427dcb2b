//! Label selectors as kubectl reads `-l`: parsed on the client with the grammar and checks of
//! Kubernetes' `labels.Parse` (k8s.io/apimachinery/pkg/labels), so a selector the API server
//! would refuse is refused before any connection, and one it takes matches the same objects.
//! Matching is kube-core's [`Expression`], plus the `>`/`<` requirements it has no variant for.

use std::collections::BTreeMap;
use std::fmt;

use kube::core::{Expression, SelectorExt};
use serde_json::Value;

/// A selector with the common operators, for messages that say what to write instead.
pub const EXAMPLE: &str = "app=web,env in (prod,qa),!legacy";

/// A parsed `-l` selector: every requirement must hold (comma = AND). Keeps the text as typed,
/// which is what goes to the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSelector {
    text: String,
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Set(Expression),
    /// `key>N` (`greater`) or `key<N`: the label is an integer above (below) N.
    Numeric {
        key: String,
        greater: bool,
        than: i64,
    },
}

/// Why a selector does not parse, in `labels.Parse`'s words where it has them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(String);

impl LabelSelector {
    /// Parses `text` as `labels.Parse` does. An empty (or blank) text selects everything.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let tokens = lex(text);
        let requirements = Parser { tokens: &tokens, next: 0 }.selector()?;
        Ok(Self { text: text.to_string(), requirements })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|requirement| match requirement {
            Requirement::Set(expression) => expression.matches(labels),
            Requirement::Numeric { key, greater, than } => labels
                .get(key)
                .and_then(|value| value.parse::<i64>().ok())
                .is_some_and(|value| if *greater { value > *than } else { value < *than }),
        })
    }

    /// Whether the object's `metadata.labels` satisfy the selector (an object without labels
    /// has none: `!key` and `key notin (...)` match it).
    pub fn matches_object(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels.iter().filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_string()))).collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Identifier(String),
    /// `!`
    Not,
    /// `!=`
    NotEquals,
    /// `=` or `==`
    Equals,
    GreaterThan,
    LessThan,
    Open,
    Close,
    Comma,
    End,
}

impl Token {
    /// The token as `labels.Parse` quotes it in its messages.
    fn literal(&self) -> &str {
        match self {
            Token::Identifier(text) => text,
            Token::Not => "!",
            Token::NotEquals => "!=",
            Token::Equals => "=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::Open => "(",
            Token::Close => ")",
            Token::Comma => ",",
            Token::End => "",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits as the apimachinery lexer does: whitespace separates, the special symbols are tokens
/// of their own (`!=` and `==` the longest), anything else runs up to the next of them. `in`
/// and `notin` stay identifiers here; only the operator position reads them as keywords.
fn lex(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if is_whitespace(c) {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let doubled = matches!(c, '!' | '=') && chars.next_if_eq(&'=').is_some();
            tokens.push(match (c, doubled) {
                ('!', true) => Token::NotEquals,
                ('!', false) => Token::Not,
                ('=', _) => Token::Equals,
                ('>', _) => Token::GreaterThan,
                ('<', _) => Token::LessThan,
                ('(', _) => Token::Open,
                (')', _) => Token::Close,
                _ => Token::Comma,
            });
            continue;
        }
        let mut identifier = String::new();
        while let Some(c) = chars.next_if(|&c| !is_special(c) && !is_whitespace(c)) {
            identifier.push(c);
        }
        tokens.push(Token::Identifier(identifier));
    }
    tokens.push(Token::End);
    tokens
}

struct Parser<'a> {
    tokens: &'a [Token],
    next: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn take(&mut self) -> Token {
        let token = self.peek().clone();
        self.next += 1;
        token
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::End => return Ok(requirements),
                Token::Identifier(_) | Token::Not => {
                    let requirement = self
                        .requirement()
                        .map_err(|SelectorError(why)| SelectorError(format!("unable to parse requirement: {why}")))?;
                    requirements.push(requirement);
                    match self.take() {
                        Token::End => return Ok(requirements),
                        Token::Comma if matches!(self.peek(), Token::Identifier(_) | Token::Not) => {}
                        Token::Comma => return Err(found(self.peek(), "identifier after ','")),
                        other => return Err(found(&other, "',' or 'end of string'")),
                    }
                }
                other => return Err(found(other, "!, identifier, or 'end of string'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.take() == Token::Not {
            let key = self.key()?;
            return Ok(Requirement::Set(Expression::DoesNotExist(key)));
        }
        self.next -= 1;
        let key = self.key()?;
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok(Requirement::Set(Expression::Exists(key)));
        }
        let requirement = match self.take() {
            Token::Identifier(word) if word == "in" => {
                Expression::In(key.clone(), self.values()?.into_iter().collect())
            }
            Token::Identifier(word) if word == "notin" => {
                Expression::NotIn(key.clone(), self.values()?.into_iter().collect())
            }
            Token::Equals => Expression::Equal(key.clone(), self.exact_value(&key)?),
            Token::NotEquals => Expression::NotEqual(key.clone(), self.exact_value(&key)?),
            token @ (Token::GreaterThan | Token::LessThan) => {
                let value = self.exact_value(&key)?;
                let than = value.parse().map_err(|_| {
                    SelectorError(format!("{key}: for '>' and '<' the value must be an integer, not '{value}'"))
                })?;
                return Ok(Requirement::Numeric { key, greater: token == Token::GreaterThan, than });
            }
            other => return Err(found(&other, "in, notin, =, ==, !=, >, <")),
        };
        if let Expression::In(_, values) | Expression::NotIn(_, values) = &requirement {
            for value in values {
                check_value(&key, value)?;
            }
        }
        Ok(Requirement::Set(requirement))
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        match self.take() {
            Token::Identifier(key) => check_key(&key).map(|()| key),
            other => Err(found(&other, "identifier")),
        }
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; none (end or comma) is the empty value.
    fn exact_value(&mut self, key: &str) -> Result<String, SelectorError> {
        let value = match self.peek() {
            Token::End | Token::Comma => String::new(),
            Token::Identifier(value) => {
                let value = value.clone();
                self.next += 1;
                value
            }
            other => return Err(found(other, "identifier")),
        };
        check_value(key, &value)?;
        Ok(value)
    }

    /// `(a,b)`; as `labels.Parse` reads it, an empty item (`(a,)`, `(,a)`) is the empty value.
    fn values(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.take() {
            Token::Open => {}
            other => return Err(SelectorError(format!("found '{}' expected: '('", other.literal()))),
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            match (self.take(), expect_value) {
                // `()` too: labels.Parse reads it as the one empty value.
                (Token::Close, true) => {
                    values.push(String::new());
                    return Ok(values);
                }
                (Token::Close, false) => return Ok(values),
                (Token::Identifier(value), true) => {
                    values.push(value);
                    expect_value = false;
                }
                (Token::Comma, true) => values.push(String::new()),
                (Token::Comma, false) => expect_value = true,
                (other, true) => return Err(found(&other, "',', ')' or identifier")),
                (other, false) => return Err(found(&other, "',' or ')'")),
            }
        }
    }
}

fn found(token: &Token, expected: &str) -> SelectorError {
    SelectorError(format!("found '{}', expected: {expected}", token.literal()))
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name (Kubernetes'
/// `IsQualifiedName`).
fn check_key(key: &str) -> Result<(), SelectorError> {
    let invalid = |why: &str| Err(SelectorError(format!("invalid label key \"{key}\": {why}")));
    let (prefix, name) = match key.split('/').collect::<Vec<_>>()[..] {
        [name] => (None, name),
        [prefix, name] => (Some(prefix), name),
        _ => return invalid("a qualified name has at most one '/'"),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return invalid("the prefix must be a lowercase DNS subdomain (example.com/)");
    }
    if name.is_empty() || !is_label_value(name) {
        return invalid(
            "the name must be 63 characters or less, alphanumeric at both ends, with '-', '_' and '.' between",
        );
    }
    Ok(())
}

/// A label value: empty, or as a key's name part (Kubernetes' `IsValidLabelValue`).
fn check_value(key: &str, value: &str) -> Result<(), SelectorError> {
    if is_label_value(value) {
        return Ok(());
    }
    Err(SelectorError(format!(
        "invalid value \"{value}\" for {key}: a label value must be empty or 63 characters or less, alphanumeric at both ends, with '-', '_' and '.' between"
    )))
}

fn is_label_value(value: &str) -> bool {
    let inner_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    value.is_empty()
        || (value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
            && value.chars().all(inner_ok))
}

fn is_dns_subdomain(text: &str) -> bool {
    let lower_alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    text.len() <= 253
        && text.split('.').all(|label| {
            label.starts_with(lower_alphanumeric)
                && label.ends_with(lower_alphanumeric)
                && label.chars().all(|c| lower_alphanumeric(c) || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn selects(selector: &str, pairs: &[(&str, &str)]) -> bool {
        LabelSelector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}")).matches(&labels(pairs))
    }

    #[test]
    fn every_operator_matches_as_kubectl_does() {
        let web = [("app", "web"), ("tier", "front"), ("replicas", "5")];
        for (selector, expected) in [
            ("app=web", true),
            ("app==web", true),
            ("app = web", true),
            ("app=api", false),
            ("app!=api", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (web,api)", true),
            ("app in (api)", false),
            ("app notin (api, cache)", true),
            ("missing notin (x)", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("replicas>3", true),
            ("replicas<3", false),
            ("app>3", false),
            ("", true),
            ("  ", true),
        ] {
            assert_eq!(selects(selector, &web), expected, "{selector}");
        }
        assert!(selects("app=", &[("app", "")]));
        assert!(selects("app in (a,)", &[("app", "")]));
        assert!(selects("example.com/team=ops", &[("example.com/team", "ops")]));
    }

    #[test]
    fn what_labels_parse_refuses_is_refused_with_its_reason() {
        for (selector, reason) in [
            ("a in (", "found '', expected: ',', ')' or identifier"),
            ("a in b", "found 'b' expected: '('"),
            ("a b", "found 'b', expected: in, notin"),
            ("a=b=c", "found '=', expected: ',' or 'end of string'"),
            ("a=b,", "found '', expected: identifier after ','"),
            (",a", "found ',', expected: !, identifier"),
            ("=a", "found '=', expected: !, identifier"),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
            ("-a=b", "invalid label key \"-a\""),
            ("a/b/c", "at most one '/'"),
            ("Example.com/a", "the prefix must be"),
            ("a=-b", "invalid value \"-b\""),
            ("a>x", "must be an integer"),
            ("a>=1", "found '=', expected: identifier"),
        ] {
            let error = LabelSelector::parse(selector).expect_err(selector).to_string();
            assert!(error.contains(reason), "{selector}: {error}");
            assert!(!error.contains('\n'));
        }
    }

    /// Each selector of the fixture parses, or is refused, as Kubernetes' own `labels.Parse`
    /// does, and matches the same label sets (captured from k8s.io/apimachinery v0.36.3).
    #[test]
    fn parses_and_matches_as_kubernetes_labels_parse() {
        let captured = crate::core::fixtures::load("label-selectors");
        let label_sets: Vec<BTreeMap<String, String>> = serde_json::from_value(captured["labels"].clone()).unwrap();
        for case in captured["results"].as_array().unwrap() {
            let text = case["selector"].as_str().unwrap();
            match (LabelSelector::parse(text), case["parses"].as_bool().unwrap()) {
                (Ok(selector), true) => {
                    let matches: Vec<bool> = label_sets.iter().map(|labels| selector.matches(labels)).collect();
                    assert_eq!(serde_json::json!(matches), case["matches"], "{text:?}");
                }
                (Err(error), false) => assert!(!error.to_string().is_empty()),
                (parsed, _) => panic!("{text:?}: Kubernetes says {case}, we say {parsed:?}"),
            }
        }
    }

    #[test]
    fn manifest_objects_are_matched_by_their_metadata_labels() {
        let labelled = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "version": 2}}});
        let unlabelled = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        let selector = LabelSelector::parse("app=web").unwrap();
        assert!(selector.matches_object(&labelled));
        assert!(!selector.matches_object(&unlabelled));
        let absent = LabelSelector::parse("!app").unwrap();
        assert!(absent.matches_object(&unlabelled) && !absent.matches_object(&labelled));
        // A label that is not a string is no label (the API server refuses such an object).
        assert!(!LabelSelector::parse("version").unwrap().matches_object(&labelled));
        assert_eq!(selector.as_str(), "app=web");
    }
}
