//! `silver fleet deploy|status|abort|resume`: one deploy id over every host of an environment
//! in an inventory file (design §9), each phase on every host before the next.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use silver_client::fleet::{self, Artifact, Environment, FleetPlan, FleetReport, Inventory};
use silver_types::AppName;

use super::deploy::Source;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: FleetCommand,
}

/// Where the fleet is described.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// The inventory file (kept in version control): environments, hosts, tokens, rollout.
    #[arg(long, env = "SILVER_INVENTORY", default_value = "fleet.toml", value_parser = super::common::absolute_path)]
    pub inventory: PathBuf,
    /// The environment to act on, as the inventory names it.
    #[arg(long = "env", value_name = "ENV")]
    pub environment: String,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum FleetCommand {
    /// Prepare on every host, migrate once, commit, observe, confirm; abort everywhere on any
    /// failure before the confirmation.
    Deploy {
        /// A `.silver` artifact or app directory (uploaded to each host), or
        /// `REGISTRY/REPO@sha256:…` (each host pulls it), or `b3:<id>` with --registry.
        #[arg(value_parser = Source::parse, value_name = "SOURCE")]
        source: Source,
        #[arg(long)]
        app: Option<AppName>,
        /// The repository a `b3:<id>` SOURCE was pushed to.
        #[arg(long, value_name = "REGISTRY/REPO")]
        registry: Option<silver_registry::Reference>,
        /// The deploy's id [default: a new one]. Any client can resume or abort it by this id.
        #[arg(long)]
        deploy_id: Option<String>,
        #[command(flatten)]
        fleet: FleetArgs,
        #[command(flatten)]
        records: super::records::RecordArgs,
        #[command(flatten)]
        registries: super::registry::RegistryArgs,
        #[command(flatten)]
        limits: super::limits::LimitArgs,
        /// Once the deploy is confirmed, run `silver fleet certs`: a certificate for every
        /// host the release's locations name that a node lacks or has due.
        #[arg(long)]
        certs: bool,
        #[command(flatten)]
        acme: AcmeArgs,
    },
    /// Each host's phase of the app's last fleet deploy.
    Status {
        app: AppName,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Abort the app's fleet deploy on every host: each goes back to its previous release.
    Abort {
        app: AppName,
        /// The deploy to abort [default: the one the hosts hold].
        #[arg(long)]
        deploy_id: Option<String>,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Order one certificate per host name the fleet's locations name (where a node lacks
    /// one or has it due), answer the CA from every node, and install it on every node.
    Certs {
        #[command(flatten)]
        fleet: FleetArgs,
        #[command(flatten)]
        acme: AcmeArgs,
    },
    /// Go on with a deploy whose coordinator died: commit where prepared, observe, confirm.
    Resume {
        app: AppName,
        #[command(flatten)]
        fleet: FleetArgs,
    },
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    match args.command {
        FleetCommand::Deploy {
            source,
            app,
            registry,
            deploy_id,
            fleet,
            records,
            registries,
            limits,
            certs,
            acme,
        } => {
            let (env, nodes) = connect(&fleet)?;
            let limits = limits.resolve();
            let config = registries.resolve();
            let runtime = super::node::runtime()?;
            let records = records.load()?;
            let (artifact, packed_app, _tmp) = match (&source, &registry) {
                (Source::Path(path), _) => {
                    let settings = settings(path.clone(), &limits);
                    let (archive, packed, tmp) =
                        super::deploy::resolve_archive(&settings, &limits)?;
                    let packed = packed.or_else(|| archive_app(&archive, &limits));
                    (Artifact::Archive(archive), packed, tmp)
                }
                (Source::Registry(r), _) => (Artifact::Registry(r.to_string()), None, None),
                (Source::Id(id), Some(repo)) => {
                    let r = runtime.block_on(super::registry::find_id(repo, id, &config))?;
                    (Artifact::Registry(r.to_string()), None, None)
                }
                (Source::Id(_), None) => {
                    return Err(ui::hinted(
                        "a b3: id names no registry to pull it from",
                        "add --registry REGISTRY/REPO",
                    ))
                }
            };
            let app = app
                .or(packed_app)
                .ok_or_else(|| ui::hinted("cannot tell which app this is", "pass --app NAME"))?;
            let plan = FleetPlan {
                deploy: deploy_id.unwrap_or_else(fleet::new_deploy_id),
                artifact,
                id: None,
                options: options(&app, limits, records),
                rollout: env.rollout(),
            };
            ui::status(
                "Deploying",
                format!(
                    "{app} to {} host(s) of `{}` as fleet deploy {}",
                    nodes.len(),
                    fleet.environment,
                    plan.deploy
                ),
            );
            let report = runtime.block_on(fleet::fleet_deploy(&nodes, &plan, events()));
            let code = finish(&fleet, &report)?;
            if !certs || report.outcome != "confirmed" {
                return Ok(code);
            }
            let acme = acme.resolve()?;
            let outcomes = runtime.block_on(silver_client::fleet_certs::fleet_certs(
                &nodes,
                &acme,
                events(),
            ))?;
            let failed: Vec<_> = outcomes.iter().filter(|o| o.outcome == "failed").collect();
            for o in &failed {
                ui::warn(format!(
                    "no certificate for {}: {}",
                    o.host,
                    o.error.as_deref().unwrap_or("")
                ));
            }
            Ok(match failed.is_empty() {
                true => code,
                false => std::process::ExitCode::from(1),
            })
        }
        FleetCommand::Certs { fleet, acme } => {
            let (_, nodes) = connect(&fleet)?;
            let acme = acme.resolve()?;
            ui::status(
                "Certificates",
                format!(
                    "for {} host(s) of `{}` from {}",
                    nodes.len(),
                    fleet.environment,
                    acme.config.directory
                ),
            );
            let outcomes = super::node::runtime()?.block_on(
                silver_client::fleet_certs::fleet_certs(&nodes, &acme, events()),
            )?;
            let failed = outcomes.iter().any(|o| o.outcome == "failed");
            if fleet.json {
                super::common::print_json(&outcomes)?;
            } else {
                for o in &outcomes {
                    let detail = o.error.as_deref().or(o.serial.as_deref()).unwrap_or("");
                    crate::out!("{:<32} {:<8} {detail}", o.host, o.outcome);
                }
            }
            Ok(match failed {
                true => std::process::ExitCode::from(1),
                false => std::process::ExitCode::SUCCESS,
            })
        }
        FleetCommand::Status { app, fleet } => {
            let (_, nodes) = connect(&fleet)?;
            let statuses = super::node::runtime()?.block_on(fleet::statuses(&nodes, &app));
            print_statuses(&fleet, &nodes, statuses)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        FleetCommand::Abort {
            app,
            deploy_id,
            fleet,
        } => {
            let (_, nodes) = connect(&fleet)?;
            let runtime = super::node::runtime()?;
            let deploy = match deploy_id {
                Some(d) => d,
                None => runtime.block_on(open_deploy(&nodes, &app))?,
            };
            let who = super::node::who();
            let reason = format!("aborted by {who} with `silver fleet abort`");
            let results = runtime.block_on(fleet::abort_everywhere(
                &nodes, &app, &deploy, &who, &reason,
            ));
            let failed = results.iter().any(Result::is_err);
            print_statuses(&fleet, &nodes, results)?;
            ui::status("Aborted", format!("fleet deploy {deploy} of {app}"));
            Ok(match failed {
                true => std::process::ExitCode::from(1),
                false => std::process::ExitCode::SUCCESS,
            })
        }
        FleetCommand::Resume { app, fleet } => {
            let (env, nodes) = connect(&fleet)?;
            let runtime = super::node::runtime()?;
            let deploy = runtime.block_on(open_deploy(&nodes, &app))?;
            let plan = FleetPlan {
                deploy: deploy.clone(),
                artifact: Artifact::Registry(String::new()),
                id: None,
                options: options(&app, packer::Limits::default(), vec![]),
                rollout: env.rollout(),
            };
            let report = FleetReport {
                deploy,
                app: app.clone(),
                id: None,
                outcome: "aborted".into(),
                reason: None,
                skew_ms: None,
                hosts: nodes
                    .iter()
                    .map(|n| fleet::HostReport {
                        host: n.url().into(),
                        phase: None,
                        committed_ms: None,
                        error: None,
                    })
                    .collect(),
                phases_ms: Default::default(),
            };
            ui::status("Resuming", format!("fleet deploy {} of {app}", plan.deploy));
            let report = runtime.block_on(fleet::run_from_commit(&nodes, &plan, report, events()));
            finish(&fleet, &report)
        }
    }
}

/// Each host's fleet status as a table (host, phase, deploy, release, who, reason), or JSON.
fn print_statuses(
    fleet: &FleetArgs,
    nodes: &[silver_client::Node],
    statuses: Vec<Result<silver_wire::api::FleetStatus, silver_client::Error>>,
) -> anyhow::Result<()> {
    let rows: Vec<serde_json::Value> = nodes
        .iter()
        .zip(statuses)
        .map(|(n, s)| match s {
            Ok(s) => serde_json::json!({"host": n.url(), "status": s}),
            Err(e) => serde_json::json!({"host": n.url(), "error": silver_client::error_chain(&e)}),
        })
        .collect();
    if fleet.json {
        return super::common::print_json(&rows);
    }
    for row in &rows {
        let host = row["host"].as_str().unwrap_or("");
        let s = &row["status"];
        if s.is_null() {
            crate::out!(
                "{host:<28} -          {}",
                row["error"].as_str().unwrap_or("")
            );
            continue;
        }
        let text = |key: &str| s[key].as_str().unwrap_or("").to_string();
        crate::out!(
            "{host:<28} {:<10} {}  {}  {}  {}",
            text("phase"),
            text("deploy"),
            text("id"),
            text("who"),
            text("reason")
        );
    }
    Ok(())
}

/// The deploy the hosts hold open (prepared or committed); every host must agree.
async fn open_deploy(nodes: &[silver_client::Node], app: &AppName) -> anyhow::Result<String> {
    let statuses = fleet::statuses(nodes, app).await;
    let open: std::collections::BTreeSet<String> = statuses
        .iter()
        .flatten()
        .filter(|s| {
            matches!(
                s.phase,
                silver_wire::api::FleetPhase::Prepared | silver_wire::api::FleetPhase::Committed
            )
        })
        .map(|s| s.deploy.clone())
        .collect();
    match open.len() {
        1 => Ok(open.into_iter().next().expect("one")),
        0 => Err(ui::hinted(
            format!("no host holds an open fleet deploy of `{app}`"),
            "`silver fleet status` shows each host's last one",
        )),
        _ => Err(ui::hinted(
            format!(
                "the hosts hold different fleet deploys of `{app}`: {}",
                open.into_iter().collect::<Vec<_>>().join(", ")
            ),
            "name one with --deploy-id",
        )),
    }
}

fn finish(fleet: &FleetArgs, report: &FleetReport) -> anyhow::Result<std::process::ExitCode> {
    if fleet.json {
        super::common::print_json(report)?;
    } else {
        for h in &report.hosts {
            crate::out!(
                "{:<28} {:<10} {}",
                h.host,
                h.phase
                    .map(|p| format!("{p:?}").to_lowercase())
                    .unwrap_or_else(|| "-".into()),
                h.error.as_deref().unwrap_or("")
            );
        }
    }
    let skew = report
        .skew_ms
        .map(|s| format!(", flip skew {s} ms"))
        .unwrap_or_default();
    match report.outcome.as_str() {
        "confirmed" => {
            ui::status(
                "Confirmed",
                format!(
                    "fleet deploy {} on {} host(s){skew}",
                    report.deploy,
                    report.hosts.len()
                ),
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        outcome => {
            ui::warn(format!(
                "fleet deploy {} {outcome}: {}",
                report.deploy,
                report.reason.as_deref().unwrap_or("")
            ));
            Ok(std::process::ExitCode::from(1))
        }
    }
}

fn events() -> fleet::OnEvent {
    Arc::new(|host: &str, what: &str| ui::status("Fleet", format!("{host}: {what}")))
}

fn options(
    app: &AppName,
    limits: packer::Limits,
    records: Vec<silver_types::SignedRecord>,
) -> silver_client::DeployOptions {
    silver_client::DeployOptions {
        app: app.clone(),
        other_app: false,
        who: super::node::who(),
        no_wait: true,
        limits,
        cache_dir: None,
        locations: vec![],
        restart: false,
        app_config: None,
        single_process: false,
        records,
    }
}

fn settings(source: PathBuf, limits: &packer::Limits) -> super::deploy::Settings {
    super::deploy::Settings {
        source,
        app: None,
        no_wait: true,
        locations: vec![],
        restart: false,
        app_config: None,
        single_process: false,
        limits: limits.clone(),
        records: vec![],
    }
}

fn archive_app(archive: &Path, limits: &packer::Limits) -> Option<AppName> {
    let config = packer::ReadConfig {
        limits: limits.clone(),
        ..Default::default()
    };
    packer::verify(archive, &config)
        .ok()?
        .app
        .and_then(|a| AppName::parse(&a).ok())
}

/// The environment and a connection to each of its hosts, with the token the inventory says.
fn connect(args: &FleetArgs) -> anyhow::Result<(Environment, Vec<silver_client::Node>)> {
    let text = std::fs::read_to_string(&args.inventory).with_context(|| {
        format!(
            "failed to read the inventory `{}`",
            args.inventory.display()
        )
    })?;
    let inventory = Inventory::parse(&text, &args.inventory)?;
    let env = inventory
        .environment(&args.environment, &args.inventory)?
        .clone();
    let shared = match (&env.token_file, &env.token_env) {
        (Some(file), _) => Some(
            super::node::read_token_file(&relative_to(&args.inventory, file))?
                .trim()
                .to_string(),
        ),
        (None, Some(var)) => Some(std::env::var(var).with_context(|| {
            format!("the inventory names ${var} for the token, and it is not set")
        })?),
        (None, None) => std::env::var("SILVER_TOKEN").ok().filter(|t| !t.is_empty()),
    };
    let nodes = env
        .hosts
        .iter()
        .map(|host| {
            let token = match host.token_file() {
                Some(file) => Some(
                    super::node::read_token_file(&relative_to(&args.inventory, file))?
                        .trim()
                        .to_string(),
                ),
                None => shared.clone(),
            };
            let config = silver_client::NodeConfig {
                ssh_command: std::env::var("SILVER_SSH").unwrap_or_else(|_| "ssh".into()),
                ..silver_client::NodeConfig::new(host.url(), token)
            };
            Ok(silver_client::Node::connect(&config)?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((env, nodes))
}

/// A path in the inventory is relative to the inventory's own directory.
fn relative_to(inventory: &Path, path: &Path) -> PathBuf {
    inventory.parent().unwrap_or(Path::new(".")).join(path)
}

/// The CA a fleet's certificates come from, and where the client keeps its account.
#[derive(Debug, Clone, clap::Args)]
pub struct AcmeArgs {
    /// The ACME directory.
    #[arg(long, env = "SILVER_ACME_DIRECTORY", value_name = "URL", default_value = silver_acme::LETS_ENCRYPT)]
    pub acme_directory: String,
    /// Trust this CA root (PEM) for the directory's own HTTPS (a test CA, like Pebble's).
    #[arg(long, env = "SILVER_ACME_CA_ROOT", value_name = "FILE")]
    #[arg(value_parser = super::common::absolute_path)]
    pub acme_ca_root: Option<PathBuf>,
    /// The contact address the CA writes to about expiring certificates.
    #[arg(long, env = "SILVER_ACME_EMAIL", value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// Where the ACME account is kept (0600) [default: ~/.config/silver/acme].
    #[arg(long, env = "SILVER_ACME_ACCOUNT_DIR", value_name = "DIR")]
    #[arg(value_parser = super::common::absolute_path)]
    pub acme_account_dir: Option<PathBuf>,
}

impl AcmeArgs {
    fn resolve(&self) -> anyhow::Result<silver_client::fleet_certs::FleetAcme> {
        let account_dir = match &self.acme_account_dir {
            Some(dir) => dir.clone(),
            None => config_home()?.join("silver/acme"),
        };
        std::fs::create_dir_all(account_dir.parent().unwrap_or(&account_dir))
            .with_context(|| format!("failed to create `{}`", account_dir.display()))?;
        Ok(silver_client::fleet_certs::FleetAcme {
            config: silver_acme::AcmeConfig {
                directory: self.acme_directory.clone(),
                ca_root: self.acme_ca_root.clone(),
                email: self.acme_email.clone(),
            },
            account_dir,
        })
    }
}

/// `$XDG_CONFIG_HOME`, else `~/.config`.
fn config_home() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| ui::hinted("HOME is not set", "pass --acme-account-dir DIR"))?;
    Ok(PathBuf::from(home).join(".config"))
}
