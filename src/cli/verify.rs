//! `silver verify`: read every byte; exit 0 only for a complete, valid artifact (with the id given).

use std::path::PathBuf;

use anyhow::Context;

use super::limits::ReadArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_parser = super::common::absolute_path)]
    pub archive: PathBuf,
    /// Print one JSON object on success.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub read: ReadArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let verified = packer::verify(&args.archive, &args.read.config(false))
        .with_context(|| format!("`{}` did not verify", args.archive.display()))?;
    ui::status(
        "Verified",
        format!(
            "{} ({}, {})",
            verified.id,
            ui::count(verified.files as u64, "file"),
            ui::bytes(verified.content_bytes)
        ),
    );
    if args.json {
        super::common::print_json(&serde_json::json!({
            "ok": true,
            "id": verified.id,
            "app": verified.app,
            "archive_sha256": verified.archive_sha256,
            "archive_bytes": verified.archive_bytes,
            "files": verified.files,
            "content_bytes": verified.content_bytes,
        }))?;
    } else {
        crate::out!("{}", verified.id);
    }
    Ok(())
}
