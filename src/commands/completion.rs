//! Shell completion.
//!
//! `kubectl hpa-migrate <TAB>` is completed by kubectl itself (1.26+): it runs the executable
//! `kubectl_complete-hpa_migrate` found on PATH with the words typed after `hpa-migrate` (the
//! last one is the word being completed, empty for a new word) and offers the lines it prints,
//! each `value<TAB>description`, after which a last line `:<directive>` tells the shell whether
//! to fall back to file names (cobra's completion protocol). That helper,
//! `completion/kubectl_complete-hpa_migrate` (also printed by `completion kubectl`), hands the
//! words to the hidden `__complete` verb below, which walks clap's command tree, so candidates
//! never drift from the CLI, and lists namespaces, kubeconfig names and workloads for the
//! positions that name them.
//!
//! `completion bash|zsh|fish` prints clap_complete's script for `kubectl-hpa_migrate` run
//! directly.

use std::time::Duration;

use clap::{Arg, ArgAction, Command, ValueHint};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::config::Kubeconfig;

use crate::cli::{CompletionShell, KubeArgs};
use crate::client;
use crate::error::{ExitStatus, Result};
use crate::kubeio;
use crate::output::Printer;

/// The executable kubectl runs for `kubectl hpa-migrate`.
pub const BIN_NAME: &str = "kubectl-hpa_migrate";

/// The helper kubectl runs to complete `kubectl hpa-migrate` arguments.
pub const KUBECTL_HELPER: &str = include_str!("../../completion/kubectl_complete-hpa_migrate");

/// The value name of the arguments that take workloads (`check`, `strip`, `resume`...).
const TARGET: &str = "TARGET";

/// How long a TAB may wait for the API server before offering nothing.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// cobra's `ShellCompDirective` values, which kubectl hands to the shell.
mod directive {
    /// Offer the candidates, and file names if there are none.
    pub const FILES: u32 = 0;
    /// Offer the candidates only.
    pub const NO_FILES: u32 = 4;
    /// Offer directory names.
    pub const DIRS: u32 = 16;
}

/// `completion SHELL`: prints the script.
pub fn script(shell: CompletionShell, printer: &Printer) -> Result<ExitStatus> {
    printer.data(&render_script(shell))?;
    Ok(ExitStatus::Success)
}

pub fn render_script(shell: CompletionShell) -> String {
    let generator = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
        CompletionShell::Kubectl => return KUBECTL_HELPER.to_string(),
    };
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut visible_tree(), BIN_NAME, &mut out);
    let script = String::from_utf8_lossy(&out).into_owned();
    if shell != CompletionShell::Bash {
        return script;
    }
    // clap_complete's bash script names the verbs' handlers one way and dispatches to them
    // another when the binary's name has a dash (clap-rs/clap#6421, open), so no verb's flags
    // would ever complete. Spell the handlers as the dispatch does; a no-op once fixed upstream.
    let handlers_as_named = format!("{}__subcmd__", BIN_NAME.replace('-', "__subcmd__"));
    let handlers_as_dispatched = format!("{}__subcmd__", BIN_NAME.replace('-', "__"));
    script.replace(&handlers_as_named, &handlers_as_dispatched)
}

/// The CLI under the binary's own name, without hidden verbs (clap_complete would offer them).
/// The derived tree is named `kubectl hpa-migrate`, which would name the verbs' handlers of the
/// generated scripts after a command that is not the one being completed.
fn visible_tree() -> Command {
    let cli = crate::cli::command();
    let mut tree = Command::new(BIN_NAME).version(env!("CARGO_PKG_VERSION")).propagate_version(true);
    if let Some(about) = cli.get_about() {
        tree = tree.about(about.clone());
    }
    tree.args(cli.get_arguments().cloned()).subcommands(cli.get_subcommands().filter(|v| !v.is_hide_set()).cloned())
}

/// `__complete WORDS...`: prints the candidates for the last word, then the directive line.
/// Never fails: a lookup that cannot be made offers nothing.
pub async fn complete(words: &[String], printer: &Printer) -> Result<ExitStatus> {
    let root = command_tree();
    let analysis = analyse(&root, words);
    let completions = resolve(&analysis).await;
    printer.data(&completions.render())?;
    Ok(ExitStatus::Success)
}

/// The CLI as clap sees it once built: global flags copied into every verb, `--help` added.
fn command_tree() -> Command {
    let mut root = crate::cli::command();
    root.build();
    root
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub value: String,
    pub help: String,
}

impl Candidate {
    fn new(value: impl Into<String>, help: impl Into<String>) -> Self {
        Self { value: value.into(), help: help.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completions {
    pub candidates: Vec<Candidate>,
    pub directive: u32,
}

impl Completions {
    fn new(candidates: Vec<Candidate>, directive: u32) -> Self {
        Self { candidates, directive }
    }

    /// One `value<TAB>help` line per candidate, then `:<directive>`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for candidate in &self.candidates {
            out.push_str(&candidate.value);
            if !candidate.help.is_empty() {
                out.push('\t');
                out.push_str(&candidate.help);
            }
            out.push('\n');
        }
        out.push_str(&format!(":{}\n", self.directive));
        out
    }
}

/// What the word being completed is.
#[derive(Debug)]
enum Position<'a> {
    /// A verb: nothing but global flags typed so far.
    Verb(&'a Command),
    /// A flag of `command` (the word starts with `-`); `used` flags are not offered again.
    Flag { command: &'a Command, used: Vec<&'a Arg> },
    /// The value of a flag, or of a positional argument that already has `earlier` values.
    Value { arg: &'a Arg, earlier: Vec<String> },
    /// Nothing can go here.
    Nothing,
}

#[derive(Debug)]
struct Analysis<'a> {
    position: Position<'a>,
    /// The word being completed, without a `--flag=` in front.
    word: String,
    /// The kubectl flags typed so far, for the lookups.
    kube: KubeArgs,
}

fn find_long<'a>(command: &'a Command, name: &str) -> Option<&'a Arg> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|aliases| aliases.contains(&name)))
}

fn find_short(command: &Command, short: char) -> Option<&Arg> {
    command.get_arguments().find(|a| a.get_short() == Some(short))
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_action().takes_values()
}

/// Keeps what the lookups need from the kubectl flags.
fn record(kube: &mut KubeArgs, arg: &Arg, value: &str) {
    let value = Some(value.to_string());
    match arg.get_id().as_str() {
        "kubeconfig" => kube.kubeconfig = value.map(Into::into),
        // Lookups connect to one context: the first of a list.
        "context" => kube.context = value.iter().flat_map(|v| v.split(',').next()).map(str::to_string).collect(),
        "cluster" => kube.cluster = value,
        "user" => kube.user = value,
        "namespace" => kube.namespace = value,
        _ => {}
    }
}

/// Reads the words before the last one as clap would, far enough to know what the last is.
fn analyse<'a>(root: &'a Command, words: &[String]) -> Analysis<'a> {
    let (word, typed) = match words.split_last() {
        Some((last, rest)) => (last.as_str(), rest),
        None => ("", &[][..]),
    };
    let mut read = Typed::new(root);
    for typed_word in typed {
        read.word(typed_word);
    }
    read.analysis(word)
}

/// What the words typed before the one being completed say, read one at a time.
struct Typed<'a> {
    /// The verb typed (the root until one is).
    command: &'a Command,
    kube: KubeArgs,
    used: Vec<&'a Arg>,
    positionals: Vec<String>,
    /// A flag whose value is the next word.
    pending: Option<&'a Arg>,
    /// After `--`.
    only_positionals: bool,
    has_verb: bool,
}

impl<'a> Typed<'a> {
    fn new(root: &'a Command) -> Self {
        Typed {
            command: root,
            kube: KubeArgs::default(),
            used: Vec::new(),
            positionals: Vec::new(),
            pending: None,
            only_positionals: false,
            has_verb: false,
        }
    }

    fn word(&mut self, typed_word: &str) {
        if let Some(arg) = self.pending.take() {
            record(&mut self.kube, arg, typed_word);
            return;
        }
        if self.only_positionals || typed_word == "-" || !typed_word.starts_with('-') {
            let command = self.command;
            match command.find_subcommand(typed_word).filter(|_| !self.has_verb && !self.only_positionals) {
                Some(verb) => {
                    self.command = verb;
                    self.has_verb = true;
                }
                None => self.positionals.push(typed_word.to_string()),
            }
            return;
        }
        if typed_word == "--" {
            self.only_positionals = true;
            return;
        }
        match typed_word.strip_prefix("--") {
            Some(long) => self.long_flag(long),
            None => self.short_flags(&typed_word[1..]),
        }
    }

    /// `--name`, `--name=value`.
    fn long_flag(&mut self, long: &str) {
        let (name, inline) = match long.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (long, None),
        };
        let Some(arg) = find_long(self.command, name) else { return };
        self.used.push(arg);
        if takes_value(arg) {
            match inline {
                Some(value) => record(&mut self.kube, arg, value),
                None => self.pending = Some(arg),
            }
        } else if arg.get_id() == "all_namespaces" {
            self.kube.all_namespaces = true;
        }
    }

    /// A cluster of short flags (`-yA`, `-vvv`); the first that takes a value takes the rest.
    fn short_flags(&mut self, shorts: &str) {
        for (at, short) in shorts.char_indices() {
            let Some(arg) = find_short(self.command, short) else { break };
            self.used.push(arg);
            if arg.get_id() == "all_namespaces" {
                self.kube.all_namespaces = true;
            }
            if takes_value(arg) {
                let rest = shorts[at + short.len_utf8()..].trim_start_matches('=');
                if rest.is_empty() {
                    self.pending = Some(arg);
                } else {
                    record(&mut self.kube, arg, rest);
                }
                break;
            }
        }
    }

    /// What the word being completed is, after the typed words.
    fn analysis(self, word: &str) -> Analysis<'a> {
        let Typed { command, kube, used, positionals, pending, only_positionals, has_verb } = self;
        let value_of = |arg: &'a Arg, word: &str| Analysis {
            position: Position::Value { arg, earlier: Vec::new() },
            word: word.to_string(),
            kube: kube.clone(),
        };
        if let Some(arg) = pending {
            return value_of(arg, word);
        }
        if !only_positionals && word.starts_with('-') {
            // `--output=j`, `-o=j`: the value after `=`, as cobra completes it.
            if let Some((flag, value)) = word.split_once('=') {
                let arg = match flag.strip_prefix("--") {
                    Some(long) => find_long(command, long),
                    None => flag.chars().last().and_then(|short| find_short(command, short)),
                };
                return match arg.filter(|a| takes_value(a)) {
                    Some(arg) => value_of(arg, value),
                    None => Analysis { position: Position::Nothing, word: value.to_string(), kube },
                };
            }
            return Analysis { position: Position::Flag { command, used }, word: word.to_string(), kube };
        }
        if !has_verb && !only_positionals {
            return Analysis { position: Position::Verb(command), word: word.to_string(), kube };
        }
        let position = match positional_for(command, positionals.len()) {
            Some((arg, skip)) => Position::Value { arg, earlier: positionals[skip..].to_vec() },
            None => Position::Nothing,
        };
        Analysis { position, word: word.to_string(), kube }
    }
}

/// The positional argument the next word belongs to, given `count` positional words already,
/// and how many of those belong to earlier arguments.
fn positional_for(command: &Command, count: usize) -> Option<(&Arg, usize)> {
    for (index, arg) in command.get_positionals().enumerate() {
        let many = arg.get_num_args().is_some_and(|range| range.max_values() > 1)
            || matches!(arg.get_action(), ArgAction::Append);
        if many || index == count {
            return Some((arg, index));
        }
    }
    None
}

/// The first line of an argument's or a verb's help.
fn first_line(text: Option<&clap::builder::StyledStr>) -> String {
    text.map(|t| t.to_string()).unwrap_or_default().lines().next().unwrap_or_default().trim().to_string()
}

async fn resolve(analysis: &Analysis<'_>) -> Completions {
    let mut completions = match &analysis.position {
        Position::Verb(command) => Completions::new(
            command
                .get_subcommands()
                .filter(|verb| !verb.is_hide_set())
                .map(|verb| Candidate::new(verb.get_name(), first_line(verb.get_about())))
                .collect(),
            directive::NO_FILES,
        ),
        Position::Flag { command, used } => Completions::new(flags(command, used), directive::NO_FILES),
        Position::Value { arg, earlier } => value_candidates(arg, earlier, analysis).await,
        Position::Nothing => Completions::new(Vec::new(), directive::NO_FILES),
    };
    completions.candidates.retain(|c| c.value.starts_with(&analysis.word));
    completions
}

fn flags(command: &Command, used: &[&Arg]) -> Vec<Candidate> {
    let repeatable = |arg: &Arg| matches!(arg.get_action(), ArgAction::Append | ArgAction::Count);
    let mut found = Vec::new();
    for arg in command.get_arguments().filter(|a| !a.is_positional() && !a.is_hide_set()) {
        if !repeatable(arg) && used.iter().any(|u| u.get_id() == arg.get_id()) {
            continue;
        }
        let help = first_line(arg.get_help());
        if let Some(long) = arg.get_long() {
            found.push(Candidate::new(format!("--{long}"), help.clone()));
        }
        if let Some(short) = arg.get_short() {
            found.push(Candidate::new(format!("-{short}"), help));
        }
    }
    found
}

async fn value_candidates(arg: &Arg, earlier: &[String], analysis: &Analysis<'_>) -> Completions {
    let possible: Vec<Candidate> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| Candidate::new(v.get_name(), first_line(v.get_help())))
        .collect();
    if !possible.is_empty() {
        return Completions::new(possible, directive::NO_FILES);
    }
    let kube = &analysis.kube;
    match arg.get_id().as_str() {
        "namespace" => return Completions::new(namespaces(kube).await, directive::NO_FILES),
        "context" => return Completions::new(context_names(kube, &analysis.word), directive::NO_FILES),
        id @ ("cluster" | "user") => {
            return Completions::new(kubeconfig_names(kube, id), directive::NO_FILES);
        }
        _ => {}
    }
    if arg.get_value_names().is_some_and(|names| names.iter().any(|n| n == TARGET)) {
        return Completions::new(targets(kube, earlier, &analysis.word).await, directive::NO_FILES);
    }
    match arg.get_value_hint() {
        ValueHint::DirPath => Completions::new(Vec::new(), directive::DIRS),
        ValueHint::AnyPath | ValueHint::FilePath | ValueHint::ExecutablePath => {
            Completions::new(Vec::new(), directive::FILES)
        }
        _ => Completions::new(Vec::new(), directive::NO_FILES),
    }
}

/// Connects as the command would, then runs `lookup`; nothing if either fails or is slow.
async fn with_connection<F, Fut>(kube: &KubeArgs, lookup: F) -> Vec<Candidate>
where
    F: FnOnce(client::Connection) -> Fut,
    Fut: Future<Output = Vec<Candidate>>,
{
    let work = async {
        match client::connect(kube).await {
            Ok(connection) => lookup(connection).await,
            Err(_) => Vec::new(),
        }
    };
    tokio::time::timeout(LOOKUP_TIMEOUT, work).await.unwrap_or_default()
}

async fn namespaces(kube: &KubeArgs) -> Vec<Candidate> {
    with_connection(kube, |connection| async move {
        let api: Api<Namespace> = Api::all(connection.client);
        let listed = api.list_metadata(&ListParams::default()).await;
        listed
            .map(|l| l.items.into_iter().filter_map(|n| n.metadata.name).map(|n| Candidate::new(n, "")).collect())
            .unwrap_or_default()
    })
    .await
}

fn kubeconfig_names(kube: &KubeArgs, what: &str) -> Vec<Candidate> {
    let config = match &kube.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    };
    let Ok(config) = config else { return Vec::new() };
    let names: Vec<String> = match what {
        "context" => config.contexts.into_iter().map(|c| c.name).collect(),
        "cluster" => config.clusters.into_iter().map(|c| c.name).collect(),
        _ => config.auth_infos.into_iter().map(|u| u.name).collect(),
    };
    names.into_iter().map(|n| Candidate::new(n, "")).collect()
}

/// The kubeconfig's contexts for `--context`; after a comma, the list so far followed by each
/// context not in it yet (`--context dev-a,<TAB>`).
fn context_names(kube: &KubeArgs, word: &str) -> Vec<Candidate> {
    let listed = word.rfind(',').map_or("", |comma| &word[..=comma]);
    let given: Vec<&str> = listed.split(',').collect();
    kubeconfig_names(kube, "context")
        .into_iter()
        .filter(|c| !given.contains(&c.value.as_str()))
        .map(|c| Candidate::new(format!("{listed}{}", c.value), ""))
        .collect()
}

/// Workloads as TARGET words: `deployment/NAME` and `statefulset/NAME` for a new target,
/// `TYPE/NAME` once a type is typed before the slash, and bare names after `TYPE NAME...`.
async fn targets(kube: &KubeArgs, earlier: &[String], word: &str) -> Vec<Candidate> {
    let given: Vec<&str> = earlier.iter().map(String::as_str).collect();
    let (type_names, slash_form): (Vec<String>, bool) = match earlier.first() {
        Some(first) if !first.contains('/') => (vec![first.clone()], false),
        _ => match word.split_once('/') {
            Some((type_name, _)) => (vec![type_name.to_string()], true),
            None => (vec!["deployment".into(), "statefulset".into()], true),
        },
    };
    let namespace = kube.namespace.clone();
    with_connection(kube, |connection| async move {
        let namespace = namespace.unwrap_or(connection.namespace);
        let mut found = Vec::new();
        for type_name in type_names {
            let Ok(kind) = kubeio::resolve_kind(&connection.client, &type_name).await else { continue };
            let api = kubeio::workload_api(&connection.client, &kind, &namespace);
            let Ok(listed) = api.list_metadata(&ListParams::default()).await else { continue };
            for name in listed.items.into_iter().filter_map(|o| o.metadata.name) {
                let value = if slash_form { format!("{type_name}/{name}") } else { name };
                if !given.contains(&value.as_str()) {
                    found.push(Candidate::new(value, format!("{} in {namespace}", kind.kind)));
                }
            }
        }
        found
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        if text.ends_with(' ') || text.is_empty() {
            words.push(String::new());
        }
        words
    }

    /// Completes `line` (a trailing space starts a new word) without any cluster lookup.
    fn complete_line(line: &str) -> Completions {
        let root = command_tree();
        let analysis = analyse(&root, &words(line));
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(resolve(&analysis))
    }

    fn values(completions: &Completions) -> Vec<&str> {
        completions.candidates.iter().map(|c| c.value.as_str()).collect()
    }

    #[test]
    fn scripts_are_generated_for_the_binary() {
        for shell in [CompletionShell::Bash, CompletionShell::Zsh, CompletionShell::Fish] {
            let script = render_script(shell);
            assert!(script.len() > 500, "{shell:?}: {script}");
            assert!(script.contains(BIN_NAME), "{shell:?} names the binary");
            for verb in ["check", "strip", "restore", "resume"] {
                assert!(script.contains(verb), "{shell:?} completes {verb}");
            }
            assert!(!script.contains("__complete"), "{shell:?} hides the internal verb");
        }
        let helper = render_script(CompletionShell::Kubectl);
        assert!(helper.starts_with("#!/bin/sh\n"));
        assert!(helper.contains(&format!("{BIN_NAME} __complete -- \"$@\"")));
    }

    /// Runs the generated bash completion as bash would on TAB after `line`.
    fn bash_completes(line: &str) -> Vec<String> {
        let script = std::env::temp_dir().join(format!("hpa-migrate-completion-{}.bash", std::process::id()));
        std::fs::write(&script, render_script(CompletionShell::Bash)).unwrap();
        let words = words(line);
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let program = format!(
            "source '{}'; COMP_WORDS=({BIN_NAME} {}); COMP_CWORD={}; _kubectl__hpa_migrate {BIN_NAME} '{}' '{}'; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            quoted.join(" "),
            words.len(),
            words.last().unwrap(),
            words.len().checked_sub(2).map(|i| words[i].as_str()).unwrap_or(BIN_NAME),
        );
        let output = std::process::Command::new("bash").args(["--norc", "-c", &program]).output().unwrap();
        let _ = std::fs::remove_file(&script);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect()
    }

    #[test]
    fn the_bash_script_completes_verbs_and_their_flags() {
        let verbs = bash_completes("");
        assert!(verbs.contains(&"check".to_string()) && verbs.contains(&"strip".to_string()), "{verbs:?}");
        let flags = bash_completes("check --");
        assert!(flags.contains(&"--all-workloads".to_string()), "the verb's own flags: {flags:?}");
        assert!(flags.contains(&"--namespace".to_string()), "kubectl's flags: {flags:?}");
        assert_eq!(bash_completes("strip --method h"), vec!["helm-release", "handover"]);
    }

    #[test]
    fn verbs_come_first_with_their_help() {
        let completions = complete_line("");
        let found = values(&completions);
        for verb in ["check", "strip", "restore", "resume", "completion"] {
            assert!(found.contains(&verb), "{found:?}");
        }
        assert!(!found.contains(&"__complete"));
        assert_eq!(completions.directive, directive::NO_FILES);
        let check = completions.candidates.iter().find(|c| c.value == "check").unwrap();
        assert!(check.help.starts_with("Who owns .spec.replicas"), "{check:?}");
        assert_eq!(values(&complete_line("--kubeconfig /tmp/x -n shop st")), vec!["strip"]);
        assert_eq!(values(&complete_line("-A re")), vec!["restore", "resume"]);
    }

    #[test]
    fn flags_include_the_verbs_and_kubectls_but_not_those_already_given() {
        let found = complete_line("check -");
        for flag in ["--all-workloads", "--output", "-o", "--namespace", "-n", "--kubeconfig", "--help", "-v"] {
            assert!(values(&found).contains(&flag), "{flag}: {found:?}");
        }
        assert!(found.candidates.iter().all(|c| !c.help.contains('\n')));
        let found = complete_line("check --all-workloads -v --");
        assert!(!values(&found).contains(&"--all-workloads"));
        assert!(values(&found).contains(&"--verbose"), "-v counts, so it repeats");
        assert!(values(&found).iter().all(|f| f.starts_with("--")));
        let found = complete_line("strip --fi");
        assert_eq!(values(&found), vec!["--field-manager"]);
        assert_eq!(values(&complete_line("strip --f")), vec!["--field-manager", "--force"]);
    }

    #[test]
    fn flag_values_come_from_the_value_enums() {
        assert_eq!(values(&complete_line("check -o ")), vec!["text", "json", "yaml"]);
        assert_eq!(values(&complete_line("check --output=j")), vec!["json"]);
        assert_eq!(values(&complete_line("check -oj")), Vec::<&str>::new(), "a value typed in full");
        assert_eq!(
            values(&complete_line("strip deploy/web --method ")),
            vec!["auto", "managed-fields", "last-applied", "helm-release", "handover"]
        );
        assert_eq!(values(&complete_line("completion ")), vec!["bash", "zsh", "fish", "kubectl"]);
    }

    #[test]
    fn paths_fall_back_to_the_shell() {
        assert_eq!(complete_line("restore ").directive, directive::FILES);
        assert_eq!(complete_line("--kubeconfig ").directive, directive::FILES);
        assert_eq!(complete_line("strip --backup-dir ").directive, directive::DIRS);
        assert_eq!(complete_line("strip --field-manager ").directive, directive::NO_FILES);
        assert_eq!(complete_line("restore backup.json ").candidates, Vec::new());
    }

    #[test]
    fn targets_and_kubectl_flags_are_recognised() {
        let root = command_tree();
        let typed = words("--kubeconfig /k -n shop --context=dev check deployment web ");
        let analysis = analyse(&root, &typed);
        assert_eq!(analysis.kube.kubeconfig.as_deref(), Some(std::path::Path::new("/k")));
        assert_eq!(analysis.kube.namespace.as_deref(), Some("shop"));
        assert_eq!(analysis.kube.context, ["dev"]);
        match &analysis.position {
            Position::Value { arg, earlier } => {
                assert_eq!(arg.get_id().as_str(), "targets");
                assert_eq!(earlier, &vec!["deployment".to_string(), "web".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        let analysis = analyse(&root, &words("strip -yA -nprod deploy/"));
        assert!(analysis.kube.all_namespaces);
        assert_eq!(analysis.kube.namespace.as_deref(), Some("prod"));
        assert!(matches!(analysis.position, Position::Value { .. }));
        assert_eq!(analysis.word, "deploy/");
        let analysis = analyse(&root, &words("check -- -x "));
        assert!(matches!(&analysis.position, Position::Value { earlier, .. } if earlier == &vec!["-x".to_string()]));
    }

    #[test]
    fn the_protocol_ends_with_the_directive() {
        let completions =
            Completions::new(vec![Candidate::new("check", "Who owns"), Candidate::new("deploy/web", "")], 4);
        assert_eq!(completions.render(), "check\tWho owns\ndeploy/web\n:4\n");
    }

    #[test]
    fn contexts_complete_one_after_another_in_a_comma_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        let contexts: Vec<serde_json::Value> = ["dev-a", "dev-b", "prod"]
            .iter()
            .map(|n| serde_json::json!({"name": n, "context": {"cluster": "c"}}))
            .collect();
        std::fs::write(
            &path,
            serde_json::json!({"apiVersion": "v1", "kind": "Config", "contexts": contexts}).to_string(),
        )
        .unwrap();
        let kube = KubeArgs { kubeconfig: Some(path), ..Default::default() };
        let values = |word: &str| -> Vec<String> { context_names(&kube, word).into_iter().map(|c| c.value).collect() };
        assert_eq!(values(""), ["dev-a", "dev-b", "prod"]);
        assert_eq!(values("dev-a,"), ["dev-a,dev-b", "dev-a,prod"]);
        assert_eq!(values("dev-a,prod,d"), ["dev-a,prod,dev-b"]);
    }
}
