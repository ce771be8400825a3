//! `silver clear APP|LOCATION`: drops every service's data of an app and runs its
//! `update_fetch` again, as on a first deploy. Asks first, unless `--yes`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;

use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app, by name or by a location it serves.
    pub target: String,
    /// Do not ask: clear at once (for scripts).
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    let runtime = super::node::runtime()?;
    let app = runtime.block_on(node.resolve_app(&args.target))?;
    if !args.yes && !confirmed(&app, node.url())? {
        return Err(ui::hinted(
            format!("not cleared: `{app}` keeps its data"),
            "give --yes to clear without asking",
        ));
    }
    let on_line = |line: &str| ui::status("Update", line);
    let done = runtime
        .block_on(node.clear(&app, &super::node::who(), &on_line))
        .with_context(|| format!("failed to clear `{app}` on {}", node.url()))?;
    ui::status(
        "Cleared",
        format!(
            "{app}: its data was dropped and update_fetch ran again on {}",
            done.id
        ),
    );
    if args.node.json {
        super::common::print_json(&done)?;
    }
    Ok(())
}

/// Asks on the terminal; without one (a script), only --yes clears.
fn confirmed(app: &silver_types::AppName, node: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(ui::hinted(
            format!("`silver clear` drops every row and file of `{app}` and asks first, but stdin is not a terminal"),
            "give --yes to clear without asking",
        ));
    }
    eprint!(
        "Drop every database row and file of `{app}` on {node}? Type the app's name to confirm: "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == app.as_str())
}
