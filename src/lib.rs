//! kubectl hpa-migrate: hand `.spec.replicas` from a deploy tool to an autoscaler without the
//! workload ever dropping to one pod.
//!
//! Layers: [`cli`] parses, [`commands`] runs one verb each, [`core`] holds the pure analysis
//! (ownership, autoscalers, verdicts, patches) and [`kubeio`] is the thin layer over kube-rs.

pub mod backup;
pub mod cli;
pub mod client;
pub mod commands;
pub mod core;
pub mod error;
pub mod inventory;
pub mod kubeio;
pub mod output;
pub mod retry;

use std::ffi::OsString;

pub use error::{Error, ExitStatus};

/// Parses `args`, runs the verb and returns the process exit status. Errors are printed here,
/// as one line on stderr.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitStatus {
    let cli = match cli::parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let status = if error.use_stderr() { ExitStatus::Usage } else { ExitStatus::Success };
            let _ = error.print();
            return status;
        }
    };
    let verbose = cli.ui.verbose;
    let printer = output::Printer::new(&cli.ui);
    init_logging(cli.ui.verbose, printer.stderr_color());
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            printer.note(&format!("error: cannot start the async runtime: {error}"));
            return ExitStatus::Failure;
        }
    };
    match runtime.block_on(commands::dispatch(cli, printer)) {
        Ok(status) => status,
        Err(error) => {
            let label = printer.paint_err(console::Style::new().red().bold(), "error:");
            printer.note(&format!("{label} {error}"));
            if verbose > 0 {
                printer.note(&error.detail());
            }
            error.exit_status()
        }
    }
}

/// Request logs go to stderr, coloured only as the printer colours stderr.
fn init_logging(verbosity: u8, color: bool) {
    let filter = match verbosity {
        // Errors reach the user as one line of ours; kube's and hyper's own logs are for -v.
        0 => "off",
        1 => "warn,kube_client=debug,hpa_migrate=debug",
        2 => "info,kube_client=trace,hpa_migrate=trace",
        _ => "trace",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(color)
        .try_init();
}
