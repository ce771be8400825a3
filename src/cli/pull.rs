//! `silver pull REGISTRY/REPO@DIGEST`: an artifact out of a registry as a `.silver` archive,
//! every blob and file checked.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use silver_registry::Reference;

use super::limits::LimitArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `REGISTRY/REPO@sha256:…`, as `silver push` prints it.
    pub reference: Reference,
    /// Where to write the archive [default: `<id12>.silver` here].
    #[arg(short, long, value_parser = super::common::absolute_path)]
    pub output: Option<PathBuf>,
    /// Print the pull report (reference, id, archive, bytes fetched) as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registries: super::registry::RegistryArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let limits = args.limits.resolve();
    let config = args.registries.resolve();
    let digest = args.reference.digest.as_ref().ok_or_else(|| {
        ui::hinted(
            format!("{} names no digest: a tag can move", args.reference),
            "pull by digest, as `silver push` prints it: REGISTRY/REPO@sha256:…",
        )
    })?;
    let out = match &args.output {
        Some(path) => path.clone(),
        None => std::env::current_dir()?.join(format!("{}.silver", &digest.hex()[..12])),
    };
    let progress: Arc<dyn packer::Progress + Send + Sync> =
        Arc::new(ui::Bar::new(!std::io::stderr().is_terminal()));
    let report = super::node::runtime()?
        .block_on(silver_registry::pull::pull_archive(
            &args.reference,
            &config,
            &out,
            &limits,
            progress,
        ))
        .with_context(|| format!("failed to pull {}", args.reference))?;
    ui::status(
        "Pulled",
        format!(
            "{} into {} ({} fetched)",
            report.id,
            report.archive.display(),
            ui::bytes(report.bytes_fetched)
        ),
    );
    if args.json {
        super::common::print_json(&report)?;
    } else {
        crate::out!("{}", report.archive.display());
    }
    Ok(())
}
