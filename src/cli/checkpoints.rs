//! `silver checkpoints APP`: the data checkpoints a node took before each `update_fetch`, kept
//! as long as their releases are.

use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app.
    pub app: silver_types::AppName,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    let view = super::node::runtime()?.block_on(node.checkpoints(&args.app))?;
    if args.node.json {
        return super::common::print_json(&view);
    }
    if let Some(j) = &view.restoring {
        ui::warn(format!(
            "a restore of {} ({}) started {} is in progress ({:?}); if the agent stopped, its next start finishes or undoes it",
            j.services.join(", "),
            j.source,
            j.started,
            j.phase
        ));
    }
    if let Some(o) = &view.last_recovered {
        ui::status(
            "Recovered",
            format!(
                "a restore of {} ({}) started {} was interrupted by a crash; the agent {} it at {}",
                o.journal.services.join(", "),
                o.journal.source,
                o.journal.started,
                o.outcome,
                o.recovered
            ),
        );
    }
    let list = view.checkpoints;
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
