//! `silver deactivate LOCATION`: the app serving there stops answering there (Silver Lining's
//! `silver deactivate`). With its last location gone it serves nowhere and its processes stop;
//! `silver activate LOCATION prev` (or a deploy) brings it back.

use anyhow::Context;

use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `host[/path]`, as the app's locations were given.
    pub location: silver_types::appconfig::Location,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    let done = super::node::runtime()?.block_on(async {
        let app = node.app_at(&args.location).await?;
        node.deactivate(&app, &args.location, &super::node::who())
            .await
            .with_context(|| {
                format!(
                    "failed to deactivate `{app}` at {} on {}",
                    args.location,
                    node.url()
                )
            })
    })?;
    let said = if done.locations.is_empty() {
        "serves nowhere now; its processes stopped".to_string()
    } else {
        format!("still answers at {}", done.locations.join(", "))
    };
    ui::status(
        "Deactivated",
        format!("{} at {}: it {said}", done.app, args.location),
    );
    if args.node.json {
        super::common::print_json(&done)?;
    }
    Ok(())
}
