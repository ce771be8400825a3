//! The command line: one file per subcommand, each resolving its flags into a library config.

mod inspect;
mod limits;
mod pack;
mod unpack;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "silver",
    version,
    about = "Pack web apps into content-addressed artifacts and deploy them to nodes you own."
)]
#[command(
    after_help = "Exit codes: 0 success, 1 error, 2 usage error, 3 artifact refused or not verified.\nLogging: -v, or SILVER_LOG=<filter> (e.g. SILVER_LOG=packer=debug). Colors: NO_COLOR=1 turns them off."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pack an app directory into `<app>-<id12>.silver` and print its id.
    Pack(pack::Args),
    /// Show an artifact's header, app, id, entries, sizes and fixups (verifying it on the way).
    Inspect(inspect::Args),
    /// Check every byte of an artifact; exit 0 only if it is complete, valid (and the id given).
    Verify(verify::Args),
    /// Extract an artifact into a new directory, refusing anything hostile.
    Unpack(unpack::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Pack(args) => pack::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Unpack(args) => unpack::run(args),
    }
    .map(|()| ExitCode::SUCCESS)
}

/// Prints a value as one line of JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
