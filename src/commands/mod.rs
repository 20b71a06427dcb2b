//! One module per verb. Each takes parsed arguments and a connection and returns an exit status.

pub mod check;
pub mod completion;
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
use crate::error::{ExitStatus, Result};
use crate::kubeio::NamespaceScope;
use crate::output::Printer;

pub use targets::{Target, parse_targets};

pub async fn dispatch(cli: Cli, printer: Printer) -> Result<ExitStatus> {
    let verb = match cli.verb {
        // Completion works without a cluster (candidates that need one connect themselves).
        Some(Verb::Completion(args)) => return completion::script(args.shell, &printer),
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
    let connection = client::connect(&cli.kube).await?;
    let client = &connection.client;
    let scope = if cli.kube.all_namespaces {
        NamespaceScope::All
    } else {
        NamespaceScope::Namespace(connection.namespace.clone())
    };
    let selector = cli.kube.selector.as_deref();
    match verb {
        Verb::Check(args) => check::run(client, &scope, selector, &args, &printer).await,
        Verb::Strip(args) => strip::run(client, &scope, selector, &args, &printer).await,
        Verb::Verify(args) => verify::run(client, &scope, selector, &args, &printer).await,
        Verb::Migrate(args) => migrate::run(client, &scope, &args, &printer).await,
        Verb::Restore(args) => restore::run(client, &args, &printer).await,
        Verb::Resume(args) => resume::run(client, &scope, &args.targets, &printer).await,
        Verb::Preflight(args) => preflight::run(client, &scope, &args, &printer).await,
        Verb::Guard(args) => guard::run(client, &scope, selector, &args, &printer).await,
        Verb::Completion(_) | Verb::Complete(_) => unreachable!("handled before connecting"),
    }
}
