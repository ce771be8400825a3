//! `silver`: one binary for CI (pack), operators (bake) and nodes (agent).
//!
//! Exit codes: 0 success; 1 error; 2 usage error; 3 an artifact was refused or did not verify.

mod cli;
mod ui;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // `up` and `serve` run a node in this process: its warnings repeat what the command says
    // itself (a failed deploy's reason), so only errors show unless -v asks for more.
    let interactive = cli.command.runs_a_node();
    ui::init_logging(cli.verbose, if interactive { "error" } else { "warn" });
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => ui::report_error(&err),
    }
}
