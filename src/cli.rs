//! Command-line interface: kubectl's standard flags, flattened once, and one verb per module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Hand .spec.replicas from a deploy tool (Flux, Argo CD, Helm, kubectl) to an HPA or KEDA ScaledObject without the workload dropping to 1 pod";

const AFTER_HELP: &str = "\
Typical migration:
  kubectl hpa-migrate check -n NS              who owns replicas, is the autoscaler in charge, what next
  kubectl hpa-migrate strip -n NS deploy/NAME  hand ownership over (dry-runnable, confirmed, backed up)
  (remove `replicas` from your manifests and deploy)
  kubectl hpa-migrate verify -n NS deploy/NAME prove replicas never dropped to 1";

/// The whole `--help` epilogue: the typical migration and the exit codes, from the one table
/// of them in [`crate::error::EXIT_CODES`].
pub fn after_help() -> String {
    format!("{AFTER_HELP}\n\n{}", crate::error::exit_codes_help())
}

/// The command line definition as parsed: the derive's, with the generated epilogue.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command().after_help(after_help())
}

/// Parses arguments as [`command`] defines them.
pub fn parse_from(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let matches = command().try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

#[derive(Debug, Parser)]
#[command(
    name = "kubectl hpa-migrate",
    bin_name = "kubectl hpa-migrate",
    version,
    about = ABOUT,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub kube: KubeArgs,

    #[command(flatten)]
    pub ui: UiArgs,

    #[command(flatten)]
    pub fleet: FleetArgs,

    /// Without a command, on a terminal: the guided migration (`migrate`)
    #[command(subcommand)]
    pub verb: Option<Verb>,
}

/// The flags every kubectl plugin is expected to accept, with kubectl's meaning.
#[derive(Debug, Clone, Default, Args)]
pub struct KubeArgs {
    /// Path to the kubeconfig file to use (default: KUBECONFIG, then ~/.kube/config)
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use; several (repeat it, or a comma list) and shell-style
    /// globs ('prod-*') run the command in each (see "Many clusters" in README)
    #[arg(long, global = true, value_name = "NAME", value_delimiter = ',')]
    pub context: Vec<String>,

    /// The name of the kubeconfig cluster to use
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,

    /// The name of the kubeconfig user to use
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,

    /// The namespace scope (default: the context's namespace)
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,

    /// Work across all namespaces
    #[arg(short = 'A', long, global = true, conflicts_with = "namespace")]
    pub all_namespaces: bool,

    /// Label selector to filter workloads, as kubectl's -l (e.g. app=web,tier!=cache)
    #[arg(short = 'l', long, global = true, value_name = "SELECTOR")]
    pub selector: Option<String>,
}

/// Running one command in several kubeconfig contexts (`crate::commands::fleet`).
#[derive(Debug, Clone, Default, Args)]
pub struct FleetArgs {
    /// Run the command in every context of the kubeconfig
    #[arg(long, global = true, conflicts_with = "context")]
    pub all_contexts: bool,

    /// strip, guard on/off across several contexts: go on with the next context after one fails
    #[arg(long, global = true)]
    pub keep_going: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct UiArgs {
    /// Never use colour (NO_COLOR is honoured too)
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Log API requests to stderr: -v requests, -vv with more detail, -vvv everything
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `--backup-dir`, the same on every verb that writes backups or reads them.
#[derive(Debug, Clone, Default, Args)]
pub struct BackupArgs {
    /// Where strip writes backups and check looks for them (default:
    /// $XDG_STATE_HOME/kubectl-hpa-migrate/backups)
    #[arg(long = "backup-dir", value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
}

impl BackupArgs {
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(crate::backup::default_dir)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Who owns .spec.replicas, is the autoscaler really in charge, and what to do next
    Check(CheckArgs),
    /// Hand .spec.replicas over: strip the deploy tools' ownership (guarded, confirmed, backed up)
    Strip(StripArgs),
    /// Prove, from history and by watching live, that replicas never dropped to the floor
    Verify(VerifyArgs),
    /// The guided migration in a terminal: pick, check, pause Flux or Argo CD, strip, change the source, watch
    Migrate(MigrateArgs),
    /// Put back what a strip changed, from its backup file
    Restore(RestoreArgs),
    /// Let Flux and Argo CD deploy objects again after `strip --pause`
    Resume(ResumeArgs),
    /// Predict what the next deploy of these manifests does to replicas, and the steps that keep the count
    Preflight(PreflightArgs),
    /// Guard the migration window: the API server refuses any write that drops a workload below its floor
    Guard(crate::commands::guard::GuardArgs),
    /// Print a shell completion script, or the helper kubectl runs for `kubectl hpa-migrate <TAB>`
    Completion(CompletionArgs),
    /// Completion candidates for kubectl's plugin completion (run by kubectl_complete-hpa_migrate)
    #[command(name = "__complete", hide = true)]
    Complete(CompleteArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Workloads as kubectl writes them: deploy/NAME, statefulset/NAME, TYPE NAME..., or any
    /// resource with a /scale subresource (rollouts.argoproj.io/NAME). Default: every workload
    /// an HPA or ScaledObject targets
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Check every Deployment and StatefulSet in scope, targeted by an autoscaler or not
    #[arg(long)]
    pub all_workloads: bool,

    #[command(flatten)]
    pub backups: BackupArgs,

    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum StripMethodArg {
    /// What `check` found, per workload: possibly several methods at once
    #[default]
    Auto,
    /// Remove .spec.replicas from the deploy tools' managedFields entries
    ManagedFields,
    /// Remove spec.replicas from the kubectl.kubernetes.io/last-applied-configuration annotation
    LastApplied,
    /// Remove spec.replicas of this object from the deployed Helm 3 release manifest
    HelmRelease,
    /// Server-side apply a replicas-only object with a temporary manager (the Kubernetes docs' method)
    Handover,
}

#[derive(Debug, Args)]
pub struct StripArgs {
    /// Workloads, as for `check`. Without TARGET, -l SELECTOR picks the workloads autoscalers target
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// How to hand replicas over
    #[arg(long, value_enum, default_value_t)]
    pub method: StripMethodArg,

    /// managed-fields: the managers to strip (default: every deploy tool that owns replicas).
    /// handover: the temporary manager (default: hpa-migrate-handover). Repeatable
    #[arg(long = "field-manager", value_name = "NAME")]
    pub field_managers: Vec<String>,

    /// Send the exact changes as a server-side dry run: nothing is persisted
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (required without a terminal)
    #[arg(short = 'y', long)]
    pub yes: bool,

    #[command(flatten)]
    pub backups: BackupArgs,

    /// Also pause the deploy tool of each object, so it cannot re-take ownership:
    /// kustomize.toolkit.fluxcd.io/reconcile=disabled on the objects a Flux Kustomization
    /// applies, spec.suspend=true on the HelmRelease of those helm-controller deploys, the
    /// automated sync off on the Argo CD Application that syncs them (`resume` undoes each).
    /// --pause-flux is the same flag
    #[arg(long, visible_alias = "pause-flux")]
    pub pause: bool,

    /// Strip even though no autoscaler is in charge
    #[arg(long)]
    pub force: bool,

    /// Output format of the summary
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct PreflightArgs {
    /// The manifests the next deploy applies: a file, a directory, or - for standard input
    /// (the output of helm template, kustomize build, flux build kustomization, argocd app
    /// manifests). Repeatable
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true, value_hint = clap::ValueHint::AnyPath)]
    pub filenames: Vec<PathBuf>,

    /// Read the directories of -f recursively
    #[arg(short = 'R', long)]
    pub recursive: bool,

    /// The tool that applies them: flux, argocd, helm, helm-server-side (helm upgrade
    /// --server-side=true), kubectl, kubectl-server-side, tanka, or any
    /// other server-side applier's field manager (default: told from each live object)
    #[arg(long = "as", value_name = "TOOL")]
    pub as_tool: Option<String>,

    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup file written by `strip`
    #[arg(value_name = "BACKUP_FILE")]
    pub backup: PathBuf,

    /// Send the restore as a server-side dry run: nothing is persisted
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (required without a terminal)
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Workloads paused with `strip --pause`. Without TARGET, -l SELECTOR picks the paused
    /// workloads it selects
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    /// The kubectl_complete-hpa_migrate helper: put it on PATH and `kubectl hpa-migrate <TAB>`
    /// completes in every shell kubectl's own completion is set up for
    Kubectl,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash, zsh and fish complete `kubectl-hpa_migrate` run directly; kubectl completes
    /// `kubectl hpa-migrate` (kubectl 1.26+)
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: CompletionShell,
}

#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// The words typed after `kubectl hpa-migrate`, the last one being completed (empty: a new word)
    #[arg(raw = true, value_name = "WORDS")]
    pub words: Vec<String>,
}

/// A duration written as 90s, 10m or 1h30m.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub std::time::Duration);

impl std::fmt::Display for DurationArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.0.as_secs();
        let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
        let mut text = String::new();
        for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
            if value > 0 {
                text.push_str(&format!("{value}{unit}"));
            }
        }
        f.write_str(if text.is_empty() { "0s" } else { &text })
    }
}

/// Reads 90s, 10m or 1h30m (clap shows the message as the flag's error).
fn duration_arg(text: &str) -> Result<DurationArg, String> {
    let parsed: jiff::SignedDuration =
        text.parse().map_err(|_| format!("`{text}` is not a duration: write it as 90s, 10m or 1h30m"))?;
    std::time::Duration::try_from(parsed).map(DurationArg).map_err(|_| format!("`{text}` must not be negative"))
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Workloads (Deployments, StatefulSets), as for `check`
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// The period to judge from history (default: as far back as the evidence reaches)
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub since: Option<DurationArg>,

    /// Watch live from now for this long; stops at the first drop. Without --since, only the
    /// live period is judged
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub watch: Option<DurationArg>,

    /// A drop is the desired replicas going from above this to this or below
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub floor: i64,

    #[command(flatten)]
    pub backups: BackupArgs,

    /// How long the API server keeps Events (kube-apiserver --event-ttl)
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, default_value = "1h")]
    pub event_ttl: DurationArg,

    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Workloads, as for `check` (default: pick from those autoscalers target)
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// How long to watch for the deploy after the strip
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, default_value = "10m")]
    pub timeout: DurationArg,

    /// A drop is the desired replicas going from above this to this or below
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub floor: i64,

    #[command(flatten)]
    pub backups: BackupArgs,
}

impl MigrateArgs {
    /// The guided flow's defaults (the same as `migrate` with no flags), for
    /// `kubectl hpa-migrate` without a command.
    pub fn default_flow() -> Self {
        use clap::FromArgMatches;
        let command = <Self as Args>::augment_args(clap::Command::new("migrate"));
        Self::from_arg_matches(&command.get_matches_from(["migrate"])).expect("the defaults parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guided_flow_defaults_are_migrates_defaults() {
        let defaults = MigrateArgs::default_flow();
        assert_eq!(defaults.timeout.0, std::time::Duration::from_secs(600));
        assert_eq!(defaults.floor, 1);
        assert!(defaults.targets.is_empty());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        for (text, seconds) in [("90s", 90), ("10m", 600), ("1h30m", 5400), ("1h", 3600)] {
            assert_eq!(duration_arg(text).unwrap().0.as_secs(), seconds, "{text}");
        }
        assert!(duration_arg("soon").is_err());
        assert_eq!(DurationArg(std::time::Duration::from_secs(5400)).to_string(), "1h30m");
        assert_eq!(DurationArg(std::time::Duration::from_secs(90)).to_string(), "1m30s");
    }
}
