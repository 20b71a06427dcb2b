//! One module per verb. Each takes parsed arguments and a connection and returns an exit status.

pub mod check;
pub mod completion;
pub mod migrate;
pub mod restore;
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
    let Some(verb) = cli.verb else {
        // No command: the guided flow on a terminal, the help otherwise.
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) && printer.stderr_is_terminal() {
            let connection = client::connect(&cli.kube).await?;
            let scope = scope(&cli.kube, &connection);
            return migrate::run(&connection.client, &scope, &crate::cli::MigrateArgs::default_flow(), &printer).await;
        }
        return Err(crate::Error::Usage(
            "no command given: run `kubectl hpa-migrate --help`, or run it in a terminal for the guided migration"
                .into(),
        ));
    };
    match verb {
        Verb::Check(args) => {
            let connection = client::connect(&cli.kube).await?;
            let scope = scope(&cli.kube, &connection);
            check::run(&connection.client, &scope, cli.kube.selector.as_deref(), &args, &printer).await
        }
        Verb::Strip(args) => {
            let connection = client::connect(&cli.kube).await?;
            let scope = scope(&cli.kube, &connection);
            strip::run(&connection.client, &scope, cli.kube.selector.as_deref(), &args, &printer).await
        }
        Verb::Verify(args) => {
            let connection = client::connect(&cli.kube).await?;
            let scope = scope(&cli.kube, &connection);
            verify::run(&connection.client, &scope, cli.kube.selector.as_deref(), &args, &printer).await
        }
        Verb::Migrate(args) => {
            let connection = client::connect(&cli.kube).await?;
            let scope = scope(&cli.kube, &connection);
            migrate::run(&connection.client, &scope, &args, &printer).await
        }
        Verb::Restore(args) => {
            let connection = client::connect(&cli.kube).await?;
            restore::run(&connection.client, &args, &printer).await
        }
        Verb::Resume(args) => {
            let connection = client::connect(&cli.kube).await?;
            let scope = scope(&cli.kube, &connection);
            strip::resume(&connection.client, &scope, &args.targets, &printer).await
        }
        Verb::Completion(args) => completion::script(args.shell, &printer),
        Verb::Complete(args) => completion::complete(&args.words, &printer).await,
    }
}

fn scope(kube: &crate::cli::KubeArgs, connection: &client::Connection) -> NamespaceScope {
    if kube.all_namespaces { NamespaceScope::All } else { NamespaceScope::Namespace(connection.namespace.clone()) }
}
