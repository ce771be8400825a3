//! `silver unpack`: the hardened extraction the node agent uses, from the command line.

use std::path::PathBuf;

use anyhow::Context;

use super::limits::LimitArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub archive: PathBuf,
    /// A directory that does not exist yet; staging happens in `DEST.partial` beside it.
    pub dest: PathBuf,
    /// Refuse the artifact unless it has this id.
    #[arg(long)]
    pub id: Option<String>,
    /// Print one JSON object on success.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = packer::ReadConfig {
        limits: args.limits.resolve(),
        expected_id: args.id.clone(),
        durable: true,
    };
    let verified = packer::unpack(&args.archive, &args.dest, &config)
        .with_context(|| format!("failed to unpack `{}`", args.archive.display()))?;
    ui::status(
        "Unpacked",
        format!(
            "{} ({} files) into {}",
            verified.id,
            verified.files,
            args.dest.display()
        ),
    );
    if args.json {
        super::print_json(
            &serde_json::json!({ "id": verified.id, "dest": args.dest, "files": verified.files, "content_bytes": verified.content_bytes }),
        )?;
    } else {
        println!("{}", verified.id);
    }
    Ok(())
}
