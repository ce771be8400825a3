//! `silver node`: boot baked images locally in QEMU, list them, stop them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use builder::vm;

use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: NodeCommand,
    /// Where local nodes keep their state [default: $XDG_DATA_HOME/silver/nodes, else
    /// ~/.local/share/silver/nodes].
    #[arg(long, global = true, env = "SILVER_NODES_DIR", value_name = "DIR")]
    #[arg(value_parser = super::common::absolute_path)]
    pub nodes_dir: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Boot a baked image (a `silver bake` output directory) and wait for its agent.
    Boot(BootArgs),
    /// The local nodes, running or not.
    List,
    /// Stop a node (its disk and settings stay for the next boot).
    Stop {
        /// The node's name.
        name: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct BootArgs {
    /// The image: a `silver bake` output directory.
    #[arg(value_parser = super::common::absolute_path)]
    pub image: PathBuf,
    /// The node's name, also its hostname.
    #[arg(long)]
    pub name: String,
    /// The public key authorized for root [default: ~/.ssh/id_ed25519.pub, else id_rsa.pub].
    #[arg(long, value_name = "FILE")]
    #[arg(value_parser = super::common::absolute_path)]
    pub ssh_key: Option<PathBuf>,
    /// SSH is forwarded to 127.0.0.1:P, the front door to P+1 and the agent's TLS port to P+2.
    #[arg(long, default_value_t = 2222, value_name = "P")]
    pub port_base: u16,
    /// Memory for the VM, in MiB.
    #[arg(long, default_value_t = 1536, value_name = "MIB")]
    pub memory: u32,
    /// Accelerator: kvm, tcg, or auto (KVM where it works).
    #[arg(long, default_value = "auto")]
    pub accel: String,
    /// Seconds to wait for the agent to answer.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub timeout: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let nodes_dir = match &args.nodes_dir {
        Some(d) => d.clone(),
        None => default_nodes_dir()?,
    };
    match args.command {
        NodeCommand::Boot(boot) => {
            let ssh_key = read_key(boot.ssh_key.as_ref())?;
            let accel = match boot.accel.as_str() {
                "auto" => vm::Accel::detect(),
                "kvm" => vm::Accel::Kvm,
                "tcg" => vm::Accel::Tcg,
                other => anyhow::bail!("--accel `{other}`: use auto, kvm or tcg"),
            };
            ui::status(
                "Booting",
                format!("{} from {} ({accel:?})", boot.name, boot.image.display()),
            );
            let started = std::time::Instant::now();
            let info = vm::boot(&vm::BootConfig {
                image: boot.image.clone(),
                name: boot.name.clone(),
                nodes_dir,
                ssh_key,
                port_base: boot.port_base,
                memory_mib: boot.memory,
                accel,
                timeout: Duration::from_secs(boot.timeout),
            })
            .with_context(|| format!("failed to boot node `{}`", boot.name))?;
            ui::status(
                "Up",
                format!(
                    "{} in {:.0} s: deploy with --node {} (its agent at {}, or over ssh: {}); the front door is {}",
                    info.name,
                    started.elapsed().as_secs_f64(),
                    info.name,
                    info.agent_url,
                    info.node_url,
                    info.front_url
                ),
            );
            print(&info, args.json)
        }
        NodeCommand::List => {
            let nodes = vm::list(&nodes_dir);
            if args.json {
                return super::common::print_json(&nodes);
            }
            for n in &nodes {
                let state = if n.running { "running" } else { "stopped" };
                crate::out!(
                    "{:<16} {state:<8} {}  {}  {}  {}",
                    n.name,
                    n.agent_url,
                    n.node_url,
                    n.front_url,
                    n.image.display()
                );
            }
            Ok(())
        }
        NodeCommand::Stop { name } => {
            let info = vm::stop(&nodes_dir, &name)?;
            ui::status("Stopped", &name);
            print(&info, args.json)
        }
    }
}

fn print(info: &vm::NodeInfo, json: bool) -> anyhow::Result<()> {
    if json {
        super::common::print_json(info)
    } else {
        crate::out!("{}", info.node_url);
        Ok(())
    }
}

fn read_key(given: Option<&PathBuf>) -> anyhow::Result<String> {
    let candidates: Vec<PathBuf> = match given {
        Some(p) => vec![p.clone()],
        None => {
            let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
            vec![
                home.join(".ssh/id_ed25519.pub"),
                home.join(".ssh/id_rsa.pub"),
            ]
        }
    };
    for c in &candidates {
        if let Ok(key) = std::fs::read_to_string(c) {
            return Ok(key.trim().to_string());
        }
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(crate::ui::hinted(
        format!(
            "no SSH public key to authorize on the node (looked for {})",
            looked.join(", ")
        ),
        "pass --ssh-key FILE, or make one with ssh-keygen -t ed25519",
    ))
}

pub fn default_nodes_dir() -> anyhow::Result<PathBuf> {
    super::common::xdg_dir(super::common::Xdg::Data, "nodes")
        .context("neither XDG_DATA_HOME nor HOME is set; pass --nodes-dir DIR")
}
