//! One module per verb. Each verb's arguments are resolved and checked before connecting
//! ([`flags`]); then it runs with a connection and returns an exit status.

pub mod check;
pub mod completion;
pub mod flags;
pub mod fleet;
pub mod guard;
pub mod migrate;
pub mod preflight;
pub mod restore;
pub mod resume;
pub mod strip;
mod targets;
pub mod verify;

use crate::cli::{Cli, Verb};
use crate::client;
use crate::commands::flags::VerbOptions;
use crate::error::{ExitStatus, Result};
use crate::kubeio::NamespaceScope;
use crate::output::Printer;

pub use targets::{Target, parse_targets};

pub async fn dispatch(cli: Cli, printer: Printer) -> Result<ExitStatus> {
    let verb = match cli.verb {
        // Completion works without a cluster (candidates that need one connect themselves, with
        // the flags among the words being completed).
        Some(Verb::Completion(args)) => {
            flags::refuse_kube_flags("completion", &cli.kube)?;
            fleet::refuse_fleet_flags("completion", &cli.fleet)?;
            return completion::script(args.shell, &printer);
        }
        Some(Verb::Complete(args)) => return completion::complete(&args.words, &printer).await,
        Some(verb) => verb,
        // No command: the guided flow on a terminal, the help otherwise.
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) && printer.stderr_is_terminal() => {
            Verb::Migrate(crate::cli::MigrateArgs::default_flow())
        }
        None => {
            return Err(crate::Error::Usage(
                "no command given: run `kubectl hpa-migrate --help`, or run it in a terminal for the guided migration"
                    .into(),
            ));
        }
    };
    let flags = flags::ScopeFlags::resolve(&cli.kube)?;
    let options = VerbOptions::resolve(verb, &flags)?;
    let contexts = fleet::resolve(&cli.kube, &cli.fleet)?;
    fleet::refuse(&options, &cli.kube, &cli.fleet, &contexts)?;
    let kube = match contexts {
        fleet::Contexts::One(context) => crate::cli::KubeArgs { context: context.into_iter().collect(), ..cli.kube },
        fleet::Contexts::Many(contexts) => {
            return fleet::run(&contexts, &cli.kube, &cli.fleet, &flags, options, &printer).await;
        }
    };
    let connection = client::connect(&kube).await?;
    let client = &connection.client;
    let scope = if flags.all_namespaces {
        NamespaceScope::All
    } else {
        NamespaceScope::Namespace(connection.namespace.clone())
    };
    let selector = flags.selector_text();
    match options {
        VerbOptions::Check(args) => check::run(client, &scope, selector, &args, &printer).await,
        VerbOptions::Strip(options) => strip::run(client, &scope, selector, &options, &printer).await,
        VerbOptions::Verify(args) => verify::run(client, &scope, selector, &args, &printer).await,
        VerbOptions::Migrate(args) => migrate::run(client, &scope, selector, &args, &printer).await,
        VerbOptions::Restore(options) => restore::run(client, &options, &printer).await,
        VerbOptions::Resume(options) => resume::run(client, &scope, &options, &printer).await,
        VerbOptions::Preflight(options) => preflight::run(client, &connection.namespace, &options, &printer).await,
        VerbOptions::Guard(options) => guard::run(client, &scope, selector, options, &printer).await,
    }
}
