//! `silver run`: a command in an app's live release on a node, with the app's environment; its
//! output streams back and its exit code becomes ours.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::node::NodeArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app.
    pub app: packer::AppName,
    #[command(flatten)]
    pub node: NodeArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let node = args.node.connect()?;
    let code = super::node::runtime()?
        .block_on(node.run(
            &args.app,
            &args.command,
            &super::node::who(),
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
        ))
        .with_context(|| {
            format!(
                "failed to run `{}` in `{}` on {}",
                args.command[0],
                args.app,
                node.url()
            )
        })?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
