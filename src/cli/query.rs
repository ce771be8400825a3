//! `silver query`: what a node serves, as Silver Lining's `silver query` listed it: each app,
//! its live instance and where it answers.

use super::node::NodeArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    let health = super::node::runtime()?.block_on(node.health())?;
    if args.node.json {
        return super::common::print_json(&health.apps);
    }
    for app in &health.apps {
        crate::out!("Site: {}", app.name);
        let instance = match (&app.running, &app.current) {
            (Some(running), _) => format!("{}.{running}", app.name),
            (None, Some(current)) => format!(
                "{}.{} (not running)",
                app.name,
                super::backup::short(current)
            ),
            (None, None) => format!("{} (no release)", app.name),
        };
        match (app.locations.is_empty(), app.deactivated.is_empty()) {
            (true, false) => {
                let was = app.deactivated.join(", ");
                crate::out!("  {instance}: deactivated (was {was})");
            }
            (true, true) => crate::out!("  {instance}: serves nowhere (it never went live)"),
            _ => {}
        }
        for location in &app.locations {
            let disabled = if app.maintenance { " (disabled)" } else { "" };
            crate::out!("  {instance}: {location}{disabled}");
        }
    }
    Ok(())
}
