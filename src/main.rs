//! `silver`: one binary for CI (pack), operators (bake) and nodes (agent).
//!
//! Exit codes: 0 success; 1 error; 2 usage error; 3 an artifact was refused or did not verify.

mod cli;
mod ui;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    ui::init_logging(cli.verbose);
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => ui::report_error(&err),
    }
}
