//! `silver serve`: run an app directory locally behind the same router, environment and static
//! rules as a node, reloading when its files change.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app directory (with its app.ini).
    #[arg(default_value = ".")]
    #[arg(value_parser = super::common::absolute_path)]
    pub app_dir: PathBuf,
    /// The port to serve on (loopback).
    #[arg(long, short, default_value_t = 8080)]
    pub port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub host: std::net::IpAddr,
    /// The servers `service.*` lives on, as on a node (Silver Lining's `[devel]` overrides).
    #[command(flatten)]
    pub servers: super::agent::ServerArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let app_dir = std::fs::canonicalize(&args.app_dir).with_context(|| {
        format!(
            "failed to open the app directory `{}`",
            args.app_dir.display()
        )
    })?;
    let ini = silver_types::appini::AppIni::load(&app_dir)
        .with_context(|| format!("failed to read `{}`", app_dir.join("app.ini").display()))?;
    let app = silver_types::appini::app_name(&app_dir, &ini)?;
    let config = silver_types::appconfig::AppConfig::from_ini(&ini)?;
    super::up::require_gunicorn(&config, false)?;
    let mut runtime = silver_runtime::RuntimeConfig {
        log_to_terminal: true,
        bytecode_cache: false,
        ..Default::default()
    };
    args.servers.apply(&mut runtime)?;
    // The app under development runs as the developer, whoever that is: say so.
    super::agent::say_app_users(&runtime.users);
    runtime.drain_grace = std::time::Duration::from_secs(5);
    runtime.stop_grace = std::time::Duration::from_secs(5);
    // The app's local data (logs, `service.files`) lives in the user's XDG data directory, kept
    // between runs; never under a guessable name in the shared /tmp.
    let _tmp;
    let state_dir = match super::common::xdg_dir(super::common::Xdg::Data, &format!("serve/{app}"))
    {
        Some(dir) => dir,
        None => {
            _tmp = safefs::temp_dir("silver-serve-").context("failed to make a state directory")?;
            _tmp.path().to_path_buf()
        }
    };
    let serve = silver_runtime::dev::ServeConfig {
        app_dir: app_dir.clone(),
        app: app.clone(),
        listen: SocketAddr::new(args.host, args.port),
        state_dir,
        runtime,
    };
    let started = AtomicBool::new(false);
    super::node::runtime()?
        .block_on(silver_runtime::dev::serve(serve, |event| match event {
            silver_runtime::dev::Event::Listening(addr, path) => {
                crate::out!("http://{addr}{path}");
                ui::status(
                    "Serving",
                    format!(
                        "{app} from {} on http://{addr}{path} (Ctrl-C stops)",
                        app_dir.display()
                    ),
                );
            }
            silver_runtime::dev::Event::Reloading(paths) => {
                let first = paths[0]
                    .strip_prefix(&app_dir)
                    .unwrap_or(&paths[0])
                    .display()
                    .to_string();
                let more = if paths.len() > 1 {
                    format!(" and {} more", paths.len() - 1)
                } else {
                    String::new()
                };
                ui::status("Reloading", format!("{first}{more} changed"));
            }
            // The first start is announced by `Serving` above; later ones are reloads.
            silver_runtime::dev::Event::Serving(_) if !started.swap(true, Ordering::SeqCst) => {
                ui::status("Ready", format!("{app} serves"))
            }
            silver_runtime::dev::Event::Serving(_) => ui::status("Reloaded", "the new code serves"),
            silver_runtime::dev::Event::Failed(e) => {
                let _ = ui::report_error(&serve_failure(&e, started.load(Ordering::SeqCst)));
            }
        }))
        .with_context(|| format!("failed to serve `{}`", app_dir.display()))
}

/// A failed start under `silver serve`, told as it is: whether an earlier version still serves,
/// and what to do here (the node's `silver logs` and `releases` do not apply).
fn serve_failure(e: &silver_runtime::Error, served_before: bool) -> anyhow::Error {
    let state = if served_before {
        "the last good version keeps serving"
    } else {
        "nothing serves until it starts"
    };
    let hint = e
        .cause_hint()
        .unwrap_or_else(|| "fix it and save: `silver serve` tries again on every change".into());
    crate::ui::hinted(e.to_string(), hint).context(format!("the app did not start; {state}"))
}
