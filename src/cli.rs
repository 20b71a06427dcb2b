//! Command-line interface: kubectl's standard flags, flattened once, and one verb per module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Hand .spec.replicas from a deploy tool (Flux, Argo CD, Helm, kubectl) to an HPA or KEDA ScaledObject without the workload dropping to 1 pod";

const AFTER_HELP: &str = "\
Typical migration:
  kubectl hpa-migrate check -n NS              who owns replicas, is the autoscaler in charge, what next
  kubectl hpa-migrate strip -n NS deploy/NAME  hand ownership over (dry-runnable, confirmed, backed up)
  (remove `replicas` from your manifests and deploy)
  kubectl hpa-migrate verify -n NS deploy/NAME prove replicas never dropped to 1

Exit codes: 0 ok, 1 action needed / drop found, 2 usage, 3 inconclusive, 4 not found,
5 forbidden, 6 unreachable, 7 conflict, 8 not confirmed, 9 other failure.";

#[derive(Debug, Parser)]
#[command(
    name = "kubectl hpa-migrate",
    bin_name = "kubectl hpa-migrate",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub kube: KubeArgs,

    #[command(flatten)]
    pub ui: UiArgs,

    #[command(subcommand)]
    pub verb: Verb,
}

/// The flags every kubectl plugin is expected to accept, with kubectl's meaning.
#[derive(Debug, Clone, Default, Args)]
pub struct KubeArgs {
    /// Path to the kubeconfig file to use (default: KUBECONFIG, then ~/.kube/config)
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The name of the kubeconfig context to use
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

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

#[derive(Debug, Clone, Default, Args)]
pub struct UiArgs {
    /// Never use colour (NO_COLOR is honoured too)
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Log API requests to stderr: -v requests, -vv with more detail, -vvv everything
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
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

    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}
