//! `silver config set|unset|list APP`: an app's config on the node, its secrets and settings,
//! never in the artifact (Heroku's `config:set`, Kamal's `env.secret`). A change makes a new
//! version and restarts the live release, health-gated, unless `--no-restart`; the release
//! history records the version each release ran with, so a rollback brings its config back.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{bail, Context};
use silver_wire::api::{ConfigChange, ConfigView, VarName, VarValue};

use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Set variables: `NAME=VALUE`, or `NAME=-` to read the value from stdin (keeps a secret
    /// off the command line and out of shell history).
    Set {
        app: silver_types::AppName,
        #[arg(required = true, value_name = "NAME=VALUE")]
        vars: Vec<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Remove variables.
    Unset {
        app: silver_types::AppName,
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// List the variable names (values only with --show).
    List {
        app: silver_types::AppName,
        /// Print the values too.
        #[arg(long)]
        show: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    /// Keep the live release as it is; the new config applies at the next deploy or rollback.
    #[arg(long)]
    pub no_restart: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Set { app, vars, change } => {
            let set = parse_assignments(&vars)?;
            let req = ConfigChange {
                set,
                unset: vec![],
                who: super::node::who(),
            };
            apply(&app, req, &change)
        }
        ConfigCommand::Unset { app, names, change } => {
            let unset = names
                .iter()
                .map(|n| {
                    VarName::parse(n).map_err(|why| refused(format!("config variable `{n}`"), why))
                })
                .collect::<anyhow::Result<_>>()?;
            let req = ConfigChange {
                set: BTreeMap::new(),
                unset,
                who: super::node::who(),
            };
            apply(&app, req, &change)
        }
        ConfigCommand::List { app, show, node } => list(&app, show, &node),
    }
}

/// `NAME=VALUE` pairs; at most one `NAME=-`, read from stdin (one trailing newline dropped).
fn parse_assignments(vars: &[String]) -> anyhow::Result<BTreeMap<VarName, VarValue>> {
    let mut set = BTreeMap::new();
    let mut stdin_used = false;
    for var in vars {
        let Some((name, value)) = var.split_once('=') else {
            // The argument may be a bare secret typed by mistake: never echo it.
            return Err(crate::ui::hinted(
                "a `silver config set` argument has no `=`",
                "write NAME=VALUE, or NAME=- to read the value from stdin",
            ));
        };
        let name = VarName::parse(name)
            .map_err(|why| refused(format!("config variable `{name}`"), why))?;
        let value = if value == "-" {
            if stdin_used {
                bail!("only one variable can read its value from stdin (`{name}=-`)");
            }
            stdin_used = true;
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("failed to read the value from stdin")?;
            text.strip_suffix('\n').map(String::from).unwrap_or(text)
        } else {
            value.to_string()
        };
        let value =
            VarValue::parse(value).map_err(|why| refused(format!("the value of `{name}`"), why))?;
        set.insert(name, value);
    }
    Ok(set)
}

fn apply(app: &silver_types::AppName, req: ConfigChange, args: &ChangeArgs) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    let runtime = super::node::runtime()?;
    let view = runtime
        .block_on(node.change_config(app, &req))
        .with_context(|| format!("failed to change the config of `{app}` on {}", node.url()))?;
    let changed: Vec<String> = req
        .set
        .keys()
        .map(|k| format!("{k} set"))
        .chain(req.unset.iter().map(|k| format!("{k} unset")))
        .collect();
    ui::status(
        "Config",
        format!("{app} v{}: {}", view.version, changed.join(", ")),
    );
    match (&view.current, args.no_restart) {
        (Some(current), false) => {
            let id = silver_types::IdPrefix::parse(current)
                .with_context(|| format!("the node named a bad release id `{current}`"))?;
            let on_line = |line: &str| ui::status("Update", line);
            runtime
                .block_on(node.restart(app, &id, &super::node::who(), &on_line))
                .with_context(|| {
                    format!(
                        "config v{} is stored, but `{app}` did not restart with it",
                        view.version
                    )
                })?;
            ui::status(
                "Restarted",
                format!("{app} runs with config v{}", view.version),
            );
        }
        (Some(_), true) => ui::status(
            "Deferred",
            "the live release keeps its config until the next deploy or rollback",
        ),
        (None, _) => ui::status("Stored", "it applies at the app's first deploy"),
    }
    if args.node.json {
        super::common::print_json(&view)?;
    }
    Ok(())
}

fn list(app: &silver_types::AppName, show: bool, args: &NodeArgs) -> anyhow::Result<()> {
    let node = args.connect()?;
    let view: ConfigView = super::node::runtime()?
        .block_on(node.config(app, show))
        .with_context(|| format!("failed to read the config of `{app}` on {}", node.url()))?;
    if args.json {
        return super::common::print_json(&view);
    }
    if view.vars.is_empty() {
        ui::status("None", format!("{app} has no config on {}", node.url()));
    }
    for (name, value) in &view.vars {
        match value {
            Some(v) => crate::out!("{name}={v}"),
            None => crate::out!("{name}"),
        }
    }
    Ok(())
}

/// `subject` refused for `why`, with its hint when it has one.
fn refused(subject: String, why: silver_types::VarProblem) -> anyhow::Error {
    use silver_types::Hint;
    let message = format!("{subject} {why}");
    match why.hint() {
        Some(hint) => crate::ui::hinted(message, hint),
        None => anyhow::anyhow!(message),
    }
}
