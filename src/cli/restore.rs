//! `silver restore BACKUP APP|LOCATION`: puts a backup's data back, onto the app it came from or
//! another one, on this node or another.

use anyhow::Context;

use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What `silver backup` wrote: a directory, a `.tar.zst`/`.tar.gz` file, or
    /// `ssh://[user@]host[:port]/path`.
    pub backup: String,
    /// The app whose data it replaces, by name or by a location it serves.
    pub target: String,
    /// The largest dump one backup file may unpack to, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = silver_client::RestoreLimits::default().max_entry_bytes)]
    pub max_entry_bytes: u64,
    /// The most a compressed backup may grow by when unpacked (past its first 64 MiB): a
    /// decompression bomb is refused as it streams.
    #[arg(long, value_name = "RATIO", default_value_t = silver_client::RestoreLimits::default().max_ratio)]
    pub max_ratio: u64,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let source = silver_client::Place::parse(&args.backup)?;
    let limits = silver_client::RestoreLimits {
        max_entry_bytes: args.max_entry_bytes,
        max_ratio: args.max_ratio.max(1),
        ..Default::default()
    };
    let node = args.node.connect()?;
    let spinner = ui::spinner("Restoring", &args.target);
    let done = super::node::runtime()?.block_on(async {
        let app = node.resolve_app(&args.target).await?;
        let info = node
            .restore(&app, &super::node::who(), &source, limits)
            .await
            .with_context(|| {
                format!("failed to restore {source} onto `{app}` on {}", node.url())
            })?;
        anyhow::Ok((app, info))
    });
    spinner.finish_and_clear();
    let (app, info) = done?;
    ui::status(
        "Restored",
        format!(
            "{app} from the backup of {} (release {}, {}): {}",
            info.app,
            super::backup::short(&info.release),
            info.created,
            super::backup::services(&info.services)
        ),
    );
    if args.node.json {
        super::common::print_json(&serde_json::json!({ "app": app, "backup": info }))?;
    }
    Ok(())
}
