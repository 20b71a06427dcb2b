//! `kubectl hpa-migrate`: kubectl runs this binary (named `kubectl-hpa_migrate`) for that command.

use std::process::ExitCode;

fn main() -> ExitCode {
    let status = hpa_migrate::run(std::env::args_os());
    ExitCode::from(u8::try_from(status.code()).unwrap_or(u8::MAX))
}
