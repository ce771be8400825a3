//! `silver logs`: an app's logs on a node, all processes merged by time, or one process.

use std::io::Write;

use anyhow::Context;

use super::node::NodeArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app.
    pub app: silver_types::AppName,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Only this process (`web`, a worker's name, or `update` for update_fetch scripts).
    #[arg(long, short)]
    pub process: Option<String>,
    /// How many of the last lines to show.
    #[arg(long, short = 'n', default_value_t = 100)]
    pub lines: usize,
    /// Keep printing lines as they are written, until interrupted.
    #[arg(long, short)]
    pub follow: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    super::node::runtime()?
        .block_on(node.logs(
            &args.app,
            args.process.as_deref(),
            args.lines,
            args.follow,
            |chunk| {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(chunk).and_then(|()| out.flush());
            },
        ))
        .with_context(|| {
            format!(
                "failed to read the logs of `{}` on {}",
                args.app,
                node.url()
            )
        })
}
