//! The command line: one file per subcommand, each resolving its flags into a library config.

#[cfg(feature = "node")]
mod agent;
mod backup;
#[cfg(feature = "bake")]
mod bake;
mod certs;
mod checkpoints;
mod clear;
pub mod common;
mod config;
mod cron;
mod deactivate;
mod deploy;
mod fleet;
#[cfg(feature = "node")]
mod fsck;
mod inspect;
mod key;
mod limits;
mod logs;
mod maintenance;
mod node;
#[cfg(feature = "bake")]
mod nodes;
mod pack;
mod promote;
mod pull;
mod push;
mod query;
mod records;
mod registry;
mod releases;
mod restore;
mod run;
#[cfg(feature = "node")]
mod serve;
mod sign;
mod status;
mod tasks;
mod trust;
mod unpack;
#[cfg(feature = "node")]
mod up;
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
    Push(push::Args),
    Pull(pull::Args),
    Key(key::Args),
    Sign(sign::Args),
    Promote(promote::Args),
    Trust(trust::Args),
    /// The front door's certificates: where each comes from, when it ends and renews, and
    /// why a host has none; `add` and `remove` the operator's own.
    Certs(certs::Args),
    /// An app's cron jobs on a node: last run, status, next run, failures; `run` one now.
    Cron(cron::Args),
    /// An app's task queue on a node: queued, running and dead tasks; `retry` or `drop` them.
    Tasks(tasks::Args),
    /// A node's figures with sparklines, its apps, the sizing verdict and alerts.
    Status(status::Args),
    Fleet(fleet::Args),
    /// Check every byte of an artifact; exit 0 only if it is complete, valid (and the id given).
    Verify(verify::Args),
    /// Extract an artifact into a new directory, refusing anything hostile.
    Unpack(unpack::Args),
    #[cfg(feature = "node")]
    /// Run the node agent over a store directory.
    Agent(agent::Args),
    /// Upload what the node lacks and make the release current (`update` is Silver Lining's name).
    #[command(alias = "update")]
    Deploy(deploy::Args),
    /// An app's releases on a node: id, time, who, state (active, previous, failed, staged).
    Releases(releases::ReleasesArgs),
    /// Make the previous good release (or the one given) current again.
    Rollback(releases::RollbackArgs),
    /// Make any staged release current.
    Activate(releases::ActivateArgs),
    /// Keep a release through gc, whatever --keep says.
    Pin(releases::PinArgs),
    /// Let gc remove a pinned release again.
    Unpin(releases::PinArgs),
    /// Remove old releases and unused objects from a node.
    Gc(releases::GcArgs),
    #[cfg(feature = "node")]
    /// Re-hash every object of a node's store and check every release against its manifest.
    Fsck(fsck::Args),
    /// Show an app's logs on a node (all processes, or one), and follow them.
    Logs(logs::Args),
    /// Run a command in an app's live release on a node, with its environment.
    Run(run::Args),
    /// An app's config on the node (secrets, settings): set, unset, list.
    Config(config::Args),
    /// Stop serving an app at one location (and anywhere, if it was its last).
    Deactivate(deactivate::Args),
    /// What a node serves: each app, its live instance and its locations.
    Query(query::Args),
    /// Save every service's data of an app (SQL dumps, file tars) to a directory, file or ssh://.
    Backup(backup::Args),
    /// Put a backup's data back, onto the same app or another, on any node.
    Restore(restore::Args),
    /// Drop every service's data of an app and run its update_fetch again (asks unless --yes).
    Clear(clear::Args),
    /// The data checkpoints taken before each update_fetch.
    Checkpoints(checkpoints::Args),
    /// Show the maintenance page (503) instead of the app.
    Disable(maintenance::Args),
    /// Serve the app again after `disable`.
    Enable(maintenance::Args),
    #[cfg(feature = "node")]
    /// Serve an app directory locally like a node would, reloading when files change.
    Serve(serve::Args),
    #[cfg(feature = "node")]
    /// Pack, start a local node under a directory, deploy, and serve: the whole job on one machine.
    Up(up::Args),
    #[cfg(feature = "bake")]
    /// Bake a node image from a recipe (needs root and mmdebstrap).
    Bake(bake::Args),
    #[cfg(feature = "bake")]
    /// Boot baked images as local nodes in QEMU; list and stop them.
    Node(nodes::Args),
}

impl Command {
    /// Whether the command runs a node in this process (`up`, `serve`).
    pub fn runs_a_node(&self) -> bool {
        match self {
            #[cfg(feature = "node")]
            Command::Up(_) | Command::Serve(_) => true,
            _ => false,
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Pack(args) => done(pack::run(args)),
        Command::Inspect(args) => done(inspect::run(args)),
        Command::Push(args) => done(push::run(args)),
        Command::Pull(args) => done(pull::run(args)),
        Command::Key(args) => done(key::run(args)),
        Command::Sign(args) => done(sign::run(args)),
        Command::Promote(args) => done(promote::run(args)),
        Command::Trust(args) => done(trust::run(args)),
        Command::Certs(args) => done(certs::run(args)),
        Command::Cron(args) => done(cron::run(args)),
        Command::Tasks(args) => done(tasks::run(args)),
        Command::Status(args) => done(status::run(args)),
        Command::Verify(args) => done(verify::run(args)),
        Command::Unpack(args) => done(unpack::run(args)),
        #[cfg(feature = "node")]
        Command::Agent(args) => done(agent::run(args)),
        Command::Deploy(args) => done(deploy::run(args)),
        Command::Releases(args) => done(releases::releases(args)),
        Command::Rollback(args) => done(releases::rollback(args)),
        Command::Activate(args) => done(releases::activate(args)),
        Command::Pin(args) => done(releases::pin(args, true)),
        Command::Unpin(args) => done(releases::pin(args, false)),
        Command::Gc(args) => done(releases::gc(args)),
        Command::Logs(args) => done(logs::run(args)),
        Command::Config(args) => done(config::run(args)),
        Command::Deactivate(args) => done(deactivate::run(args)),
        Command::Query(args) => done(query::run(args)),
        Command::Backup(args) => done(backup::run(args)),
        Command::Restore(args) => done(restore::run(args)),
        Command::Clear(args) => done(clear::run(args)),
        Command::Checkpoints(args) => done(checkpoints::run(args)),
        Command::Disable(args) => done(maintenance::run(args, true)),
        Command::Enable(args) => done(maintenance::run(args, false)),
        #[cfg(feature = "node")]
        Command::Serve(args) => done(serve::run(args)),
        #[cfg(feature = "node")]
        Command::Up(args) => done(up::run(args)),
        #[cfg(feature = "bake")]
        Command::Bake(args) => done(bake::run(args)),
        #[cfg(feature = "bake")]
        Command::Node(args) => done(nodes::run(args)),
        // These report through their exit code: fsck its findings, run the command's.
        #[cfg(feature = "node")]
        Command::Fsck(args) => fsck::run(args),
        Command::Run(args) => run::run(args),
        Command::Fleet(args) => fleet::run(args),
    }
}
