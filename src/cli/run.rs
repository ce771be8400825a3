//! `silver run`: a command in an app's live release on a node, with the app's environment; its
//! output streams back and its exit code becomes ours.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::node::NodeArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app.
    pub app: silver_types::AppName,
    /// Give the command no stdin (as `ssh -n`): for a loop that reads its own stdin.
    #[arg(short = 'n', long)]
    pub no_stdin: bool,
    #[command(flatten)]
    pub node: NodeArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let node = args.node.connect()?;
    let runtime = super::node::runtime()?;
    // Our stdin streams to the command as it runs (`silver run APP -- psql < dump.sql`).
    let stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>> = if args.no_stdin {
        None
    } else {
        let _guard = runtime.enter();
        Some(Box::new(tokio::io::stdin()))
    };
    let done = runtime.block_on(node.run(
        &args.app,
        &args.command,
        &super::node::who(),
        stdin,
        |kind, bytes| {
            let _ = match kind {
                silver_wire::api::RunFrame::Stderr => {
                    let mut err = std::io::stderr().lock();
                    err.write_all(bytes).and_then(|()| err.flush())
                }
                _ => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(bytes).and_then(|()| out.flush())
                }
            };
        },
    ));
    // A read of a terminal cannot be cancelled: waiting for it would hang until Enter.
    runtime.shutdown_background();
    let code = done.with_context(|| {
        format!(
            "failed to run `{}` in `{}` on {}",
            args.command[0],
            args.app,
            node.url()
        )
    })?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
