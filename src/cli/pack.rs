//! `silver pack`: resolve flags and environment into a `PackConfig`, pack, report.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;

use super::limits::LimitArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app directory (with `app.ini` at its root).
    #[arg(default_value = ".")]
    #[arg(value_parser = super::common::absolute_path)]
    pub app_dir: PathBuf,
    /// Where to write `<app>-<id12>.silver`.
    #[arg(short = 'o', long = "out-dir", default_value = ".")]
    #[arg(value_parser = super::common::absolute_path)]
    pub out_dir: PathBuf,
    /// Print one JSON object (id, app, archive, sizes, fixups, warnings) instead of the id.
    #[arg(long)]
    pub json: bool,
    /// Do not honor `.gitignore` files (`.silverignore` still applies).
    #[arg(long)]
    pub no_gitignore: bool,
    /// Pack the file a symlink names in its place when the symlink leaves the app (other than
    /// to an allowed system prefix), instead of refusing it.
    #[arg(long)]
    pub dereference: bool,
    /// Refuse to pack when a text file still contains the absolute source path.
    #[arg(long)]
    pub strict: bool,
    /// zstd compression level.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = settings(&args)?;
    let progress = ui::Bar::new(!std::io::stderr().is_terminal());
    let report = packer::pack(&args.app_dir, &args.out_dir, &config, &progress)
        .with_context(|| format!("failed to pack `{}`", args.app_dir.display()))?;
    for warning in &report.warnings {
        ui::warn(warning);
    }
    for fixup in &report.fixups {
        tracing::info!(path = %fixup.path, kind = %fixup.kind, "relocated");
    }
    ui::status(
        "Packed",
        format!(
            "{} {} ({}, {} -> {}, {}) into {}",
            report.app,
            report.id,
            ui::count(report.files as u64, "file"),
            ui::bytes(report.content_bytes),
            ui::bytes(report.archive_bytes),
            ui::count(report.fixups.len() as u64, "fixup"),
            report.archive.display()
        ),
    );
    if args.json {
        super::common::print_json(&report)?;
    } else {
        crate::out!("{}", report.id);
    }
    Ok(())
}

fn settings(args: &Args) -> anyhow::Result<packer::PackConfig> {
    let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH `{v}` is not a whole number of seconds"))?,
        Err(_) => 0,
    };
    Ok(packer::PackConfig {
        walk: packer::WalkConfig {
            gitignore: !args.no_gitignore,
            dereference: args.dereference,
        },
        strict: args.strict,
        limits: args.limits.resolve(),
        mtime,
        level: args.level,
        ..packer::PackConfig::default()
    })
}
