//! `silver unpack`: the hardened extraction the node agent uses, from the command line.

use std::path::PathBuf;

use anyhow::Context;

use super::limits::ReadArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_parser = super::common::absolute_path)]
    pub archive: PathBuf,
    /// A directory that does not exist yet; staging happens in `DEST.partial` beside it.
    #[arg(value_parser = super::common::absolute_path)]
    pub dest: PathBuf,
    /// Print one JSON object on success.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub read: ReadArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let verified = packer::unpack(&args.archive, &args.dest, &args.read.config(true))
        .with_context(|| format!("failed to unpack `{}`", args.archive.display()))?;
    ui::status(
        "Unpacked",
        format!(
            "{} ({}) into {}",
            verified.id,
            ui::count(verified.files as u64, "file"),
            args.dest.display()
        ),
    );
    if args.json {
        let value = serde_json::json!({ "id": verified.id, "dest": args.dest, "files": verified.files, "content_bytes": verified.content_bytes });
        super::common::print_json(&value)?;
    } else {
        crate::out!("{}", verified.id);
    }
    Ok(())
}
