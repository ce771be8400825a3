//! `silver up`: the whole job on one machine. Packs the app, starts an embedded node (agent and
//! front door) over a directory, deploys to it, and serves until interrupted.

use silver_types::appconfig::Location;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use super::agent::RuntimeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app directory (with its app.ini).
    #[arg(default_value = ".")]
    #[arg(value_parser = super::common::absolute_path)]
    pub app_dir: PathBuf,
    /// The local node's store [default: /var/lib/silver as root, else ~/.local/share/silver/node].
    #[arg(long, value_name = "DIR")]
    #[arg(value_parser = super::common::absolute_path)]
    pub root: Option<PathBuf>,
    /// The front door's port on loopback.
    #[arg(long, short, default_value_t = 8080)]
    pub port: u16,
    /// Where the app answers [default: any host, at app.ini's default_location path].
    #[arg(long = "location", value_name = "HOST[/PATH]")]
    pub locations: Vec<Location>,
    /// Print one JSON object (url, app, id, root) on stdout once it serves.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let ini = silver_types::appini::AppIni::load(&args.app_dir).with_context(|| {
        format!(
            "failed to read `{}`",
            args.app_dir.join("app.ini").display()
        )
    })?;
    let config = silver_types::appconfig::AppConfig::from_ini(&ini)?;
    require_gunicorn(&config, true)?;
    let root = match &args.root {
        Some(root) => root.clone(),
        None => default_root()?,
    };
    std::fs::create_dir_all(&root)
        .with_context(|| format!("failed to create the node directory `{}`", root.display()))?;
    let path = config
        .default_location
        .as_ref()
        .map_or_else(|| "/".to_string(), |l| l.path.clone());
    let locations = locations(&args, &path);
    let mut agent = agent_config(&args, &root)?;
    // A root used before may hold other apps: `silver up` serves the one it was given.
    let app = silver_types::appini::app_name(&args.app_dir, &ini)?;
    say_other_apps(&root, &app);
    agent.only = Some(app);
    let rt = super::node::runtime()?;
    rt.block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let node_task = tokio::spawn(silver_node::agent::serve(agent, move |bound| {
            let _ = tx.send(bound);
        }));
        let bound = match rx.await {
            Ok(bound) => bound,
            Err(_) => {
                return node_task
                    .await?
                    .map_err(anyhow::Error::from)
                    .context("the local node did not start");
            }
        };
        ui::status(
            "Node",
            format!("{} (control on {})", root.display(), bound.control),
        );
        let token_file = silver_node::store::Layout::new(&root).token();
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("failed to read `{}`", token_file.display()))?;
        let node = silver_client::Node::connect(&silver_client::NodeConfig::new(
            &format!("http://{}", bound.control),
            Some(token.trim().to_string()),
        ))?;
        let settings = super::deploy::Settings {
            source: args.app_dir.clone(),
            app: None,
            no_wait: false,
            locations,
            restart: false,
            app_config: None,
            single_process: false,
            limits: packer::Limits::default(),
            records: vec![],
        };
        let report = super::deploy::deploy(&node, &settings).await?;
        let url = format!("http://127.0.0.1:{}{path}", bound.front.port());
        if args.json {
            super::common::print_json(&serde_json::json!({
                "url": url, "app": report.app, "id": report.id, "root": root,
            }))?;
        } else if !std::io::stdout().is_terminal() {
            // For scripts; on a terminal the status line below already shows it.
            crate::out!("{url}");
        }
        ui::status("Up", format!("{} at {url} (Ctrl-C stops)", report.app));
        node_task
            .await?
            .map_err(anyhow::Error::from)
            .context("the local node stopped")?;
        ui::status(
            "Stopped",
            format!(
                "{}; its releases and data stay in {}",
                report.app,
                root.display()
            ),
        );
        Ok(())
    })
}

/// Any host, at the path app.ini's `default_location` gives, unless `--location` says otherwise.
fn locations(args: &Args, path: &str) -> Vec<Location> {
    if !args.locations.is_empty() {
        return args.locations.clone();
    }
    vec![Location {
        host: "*".into(),
        path: path.into(),
    }]
}

/// The embedded node: control API on a free loopback port, the front door on `--port`.
fn agent_config(
    args: &Args,
    root: &std::path::Path,
) -> anyhow::Result<silver_node::agent::AgentConfig> {
    let mut agent = silver_node::agent::AgentConfig::new(root.to_path_buf());
    agent.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    agent.front = SocketAddr::from(([127, 0, 0, 1], args.port));
    agent.runtime = args.runtime.resolve()?;
    super::agent::say_app_users(&agent.runtime.users);
    Ok(agent)
}

/// As root the store must be somewhere the unprivileged app user can reach.
fn default_root() -> anyhow::Result<PathBuf> {
    if silver_runtime::supervise::running_as_root() {
        return Ok(PathBuf::from("/var/lib/silver"));
    }
    super::common::xdg_dir(super::common::Xdg::Data, "node")
        .context("neither XDG_DATA_HOME nor HOME is set; pass --root DIR")
}

/// WSGI apps run under the system's gunicorn. `up` installs it from the distribution's
/// packages when missing (saying so); `serve` says how.
pub fn require_gunicorn(
    config: &silver_types::appconfig::AppConfig,
    install: bool,
) -> anyhow::Result<()> {
    let wsgi = config.runner.is_some() && !config.processes.iter().any(|p| p.web);
    if !wsgi || silver_runtime::launch::find_program("gunicorn").is_some() {
        return Ok(());
    }
    if !install {
        return Err(ui::hinted(
            "this app runs under gunicorn, which is not installed",
            "sudo apt-get install gunicorn",
        ));
    }
    let sudo = !silver_runtime::supervise::running_as_root();
    ui::status(
        "Installing",
        format!(
            "gunicorn from the system's packages ({}apt-get install gunicorn)",
            if sudo { "sudo " } else { "" }
        ),
    );
    let mut cmd = std::process::Command::new(if sudo { "sudo" } else { "apt-get" });
    if sudo {
        cmd.arg("apt-get");
    }
    let status = cmd
        .args(["install", "-y", "-q", "gunicorn"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("failed to run apt-get")?;
    if !status.success() || silver_runtime::launch::find_program("gunicorn").is_none() {
        return Err(crate::ui::hinted(
            format!("could not install gunicorn ({status})"),
            "sudo apt-get update && sudo apt-get install gunicorn",
        ));
    }
    Ok(())
}

/// Names the other apps a reused root holds, which `silver up` leaves stopped.
fn say_other_apps(root: &std::path::Path, app: &silver_types::AppName) {
    let mut others: Vec<String> = std::fs::read_dir(silver_node::store::Layout::new(root).apps())
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name != app.as_str())
                .collect()
        })
        .unwrap_or_default();
    if others.is_empty() {
        return;
    }
    others.sort();
    ui::status(
        "Skipping",
        format!(
            "{} on this root: not started, `silver up` serves only `{app}`",
            others.join(", ")
        ),
    );
}
