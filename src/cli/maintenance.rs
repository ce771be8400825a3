//! `silver disable` and `silver enable`: the maintenance page (503) on and off for an app.

use anyhow::Context;

use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app.
    pub app: silver_types::AppName,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Args, maintenance: bool) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    let state = super::node::runtime()?
        .block_on(node.maintenance(&args.app, maintenance))
        .with_context(|| {
            format!(
                "failed to switch maintenance for `{}` on {}",
                args.app,
                node.url()
            )
        })?;
    if args.node.json {
        super::common::print_json(
            &serde_json::json!({ "app": args.app, "maintenance": state.maintenance }),
        )?;
    }
    let what = if maintenance {
        "shows the maintenance page (503)"
    } else {
        "serves again"
    };
    ui::status(
        if maintenance { "Disabled" } else { "Enabled" },
        format!("{} {what}", args.app),
    );
    Ok(())
}
