//! `silver trust show` and `silver trust rotate POLICY`: a node's trust policy, and replacing
//! it with one the current policy's root keys signed (`silver key sign POLICY --key ROOT`).

use std::path::PathBuf;

use anyhow::Context;

use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: TrustCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TrustCommand {
    /// The node's environment, and each role's key ids and threshold.
    Show {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Replace the node's policy with POLICY, signed by the current policy's root role (its
    /// signatures are POLICY.minisig and POLICY.minisig.* beside it).
    Rotate {
        #[arg(value_parser = super::common::absolute_path)]
        policy: PathBuf,
        #[command(flatten)]
        node: NodeArgs,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        TrustCommand::Show { node } => {
            let view = super::node::runtime()?.block_on(node.connect()?.trust())?;
            print(&node, &view)
        }
        TrustCommand::Rotate { policy, node } => {
            let text = std::fs::read_to_string(&policy)
                .with_context(|| format!("failed to read `{}`", policy.display()))?;
            // Parsed here too, so a typo is named before anything is sent.
            silver_trust::Policy::parse(&text, &policy)?;
            let rotation = silver_wire::api::TrustRotation {
                policy: text,
                signatures: super::records::signatures_of(&policy)?,
                who: super::node::who(),
            };
            let client = node.connect()?;
            let view = super::node::runtime()?
                .block_on(client.rotate_trust(&rotation))
                .with_context(|| format!("{} refused the new trust policy", client.url()))?;
            ui::status("Rotated", format!("the trust policy of {}", client.url()));
            print(&node, &view)
        }
    }
}

fn print(node: &NodeArgs, view: &silver_wire::api::TrustView) -> anyhow::Result<()> {
    if node.json {
        return super::common::print_json(view);
    }
    crate::out!("environment {}", view.environment);
    for (role, r) in &view.roles {
        crate::out!("{role:<8} {} of {}", r.threshold, r.keys.join(" "));
    }
    Ok(())
}
