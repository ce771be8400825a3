//! `silver checkpoints APP`: the data checkpoints a node took before each `update_fetch`, kept
//! as long as their releases are.

use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app.
    pub app: packer::AppName,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    let list = super::node::runtime()?.block_on(node.checkpoints(&args.app))?;
    if args.node.json {
        return super::print_json(&list);
    }
    if list.is_empty() {
        ui::status("None", format!("{} has no checkpoints (they are taken before update_fetch, for apps with data services)", args.app));
    }
    for c in &list {
        crate::out!(
            "{}  {}  {}",
            super::backup::short(&c.release),
            c.created,
            super::backup::services(&c.services)
        );
    }
    Ok(())
}
