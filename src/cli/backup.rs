//! `silver backup APP|LOCATION DEST`: every service's data of an app, as portable dumps, kept in
//! a directory, a `.tar.zst`/`.tar.gz` file, or at `ssh://host/path`.

use anyhow::Context;

use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app, by name or by a location it serves (`host[/path]`).
    pub target: String,
    /// Where to keep it: a new directory, `NAME.tar.zst`, `NAME.tar.gz`, or
    /// `ssh://[user@]host[:port]/path` (either, on that host).
    pub dest: String,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dest = silver_client::Place::parse(&args.dest)?;
    let node = args.node.connect()?;
    let spinner = ui::spinner("Backing up", &args.target);
    let info = super::node::runtime()?.block_on(async {
        let app = node.resolve_app(&args.target).await?;
        node.backup(&app, &super::node::who(), &dest)
            .await
            .with_context(|| format!("failed to back up `{app}` on {} to {dest}", node.url()))
    });
    spinner.finish_and_clear();
    let info = info?;
    ui::status(
        "Backed up",
        format!(
            "{} (release {}, {}) to {dest}: {}",
            info.app,
            short(&info.release),
            info.created,
            services(&info.services)
        ),
    );
    if args.node.json {
        super::common::print_json(&info)?;
    }
    Ok(())
}

/// `b3:0123456789ab…` as its 12-character label.
pub fn short(release: &str) -> &str {
    let hex = release.strip_prefix("b3:").unwrap_or(release);
    &hex[..hex.len().min(12)]
}

pub fn services(list: &[String]) -> String {
    if list.is_empty() {
        "no service data".into()
    } else {
        list.join(", ")
    }
}
