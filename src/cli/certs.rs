//! `silver certs`: the front door's certificates on a node (where each comes from, when it
//! ends and renews, why a host has none); `silver certs add HOST CERT KEY` and
//! `silver certs remove HOST` for the operator's own.

use std::path::PathBuf;

use anyhow::Context;

use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<CertsCommand>,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Serve CERT (a PEM chain, leaf first) with KEY for HOST, a host name or a wildcard
    /// (`*.example.com`) that ACME cannot issue; it wins over ACME's certificate for HOST.
    Add {
        host: String,
        #[arg(value_parser = super::common::absolute_path)]
        cert: PathBuf,
        #[arg(value_parser = super::common::absolute_path)]
        key: PathBuf,
    },
    /// Stop serving HOST's certificate (the operator's; else ACME's, which orders a new one).
    Remove { host: String },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let client = args.node.connect()?;
    let rt = super::node::runtime()?;
    let view = match args.command {
        None => rt.block_on(client.certs())?,
        Some(CertsCommand::Add { host, cert, key }) => {
            let upload = silver_wire::api::CertUpload {
                host: host.clone(),
                chain_pem: read(&cert)?,
                key_pem: read(&key)?,
                fleet: false,
            };
            let view = rt
                .block_on(client.add_cert(&upload))
                .with_context(|| format!("{} refused the certificate for {host}", client.url()))?;
            ui::status(
                "Added",
                format!("the certificate for {host} on {}", client.url()),
            );
            view
        }
        Some(CertsCommand::Remove { host }) => {
            let view = rt.block_on(client.remove_cert(&host))?;
            ui::status(
                "Removed",
                format!("the certificate for {host} from {}", client.url()),
            );
            view
        }
    };
    if args.node.json {
        return super::common::print_json(&view);
    }
    print(&view);
    Ok(())
}

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("failed to read `{}`", path.display()))
}

fn print(view: &silver_wire::api::CertsView) {
    match (&view.https, &view.acme_directory) {
        (None, _) => ui::warn_with_hint(
            "this node serves no HTTPS",
            "start the agent with --https ADDR (a node uses 0.0.0.0:443)",
        ),
        (Some(addr), Some(dir)) => ui::status("HTTPS", format!("on {addr}, ACME from {dir}")),
        (Some(addr), None) => ui::status("HTTPS", format!("on {addr}, operator certificates only")),
    }
    let now = now_unix();
    for c in &view.hosts {
        let state = match (c.source.as_deref(), c.not_after_unix) {
            (Some(source), Some(end)) => {
                let renew = c
                    .renew_at_unix
                    .map_or(String::new(), |r| format!(", renews {}", relative(r, now)));
                format!("{source}, ends {}{renew}", relative(end, now))
            }
            _ => "no certificate".to_string(),
        };
        let apps = if c.apps.is_empty() {
            "-".to_string()
        } else {
            c.apps.join(",")
        };
        crate::out!("{:<32} {:<16} {state}", c.host, apps);
        if let Some(error) = &c.error {
            let retry = c.next_attempt_unix.map_or(String::new(), |t| {
                format!(" (failed {}x; next try {})", c.failures, relative(t, now))
            });
            crate::out!("  error: {error}{retry}");
        }
        if let Some(hint) = &c.hint {
            crate::out!("  hint: {hint}");
        }
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// `in 3d`, `in 5h`, `2m ago`: when a moment is, from now.
fn relative(t: u64, now: u64) -> String {
    let (secs, future) = if t >= now {
        (t - now, true)
    } else {
        (now - t, false)
    };
    let span = match secs {
        s if s >= 2 * 86400 => format!("{}d", s / 86400),
        s if s >= 2 * 3600 => format!("{}h", s / 3600),
        s if s >= 120 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}
