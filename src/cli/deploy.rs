//! `silver deploy` (alias `update`): pack if given a directory, upload what the node lacks,
//! and make the release current.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::limits::LimitArgs;
use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A `.silver` artifact, an app directory to pack first, `REGISTRY/REPO@sha256:…` (the
    /// node pulls it from the registry), or `b3:<id>` with --registry.
    #[arg(value_parser = Source::parse, value_name = "SOURCE")]
    pub source: Source,
    /// The repository a `b3:<id>` SOURCE was pushed to (`REGISTRY/REPO`): its `b3-<id>` tag
    /// names the digest the node pulls.
    #[arg(long, value_name = "REGISTRY/REPO")]
    pub registry: Option<silver_registry::Reference>,
    #[command(flatten)]
    pub registries: super::registry::RegistryArgs,
    #[command(flatten)]
    pub records: super::records::RecordArgs,
    /// Where the app answers, as Silver Lining's `silver update DIR LOCATION` took it: the same
    /// as one `--location`.
    #[arg(value_name = "LOCATION")]
    pub location: Option<silver_types::appconfig::Location>,
    #[command(flatten)]
    pub node: NodeArgs,
    /// The app to deploy as [default: from app.ini, or the artifact's file name].
    #[arg(long)]
    pub app: Option<silver_types::AppName>,
    /// Fail at once if another activation of the app is under way.
    #[arg(long)]
    pub no_wait: bool,
    /// Where the app answers on the node's front door: `host[/path]`, `*.suffix` or `*`.
    /// Repeat for several; by default the app keeps its locations (first time: app.ini's
    /// `default_location`, else any host).
    #[arg(long = "location", value_name = "HOST[/PATH]")]
    pub locations: Vec<silver_types::appconfig::Location>,
    /// Restart the release even if it is the one already live (by default nothing restarts).
    #[arg(long)]
    pub restart: bool,
    /// A configuration directory uploaded beside the artifact, never inside it; the app finds
    /// it at `$SILVER_APP_CONFIG` (Silver Lining's `silver update --config DIR`).
    #[arg(long = "config", value_name = "DIR", value_parser = super::common::absolute_path)]
    pub app_config: Option<PathBuf>,
    /// Run the app in one worker process, never more, until the next deploy: a debugger or a
    /// print sees every request (Silver Lining's `--debug-single-process`).
    #[arg(long)]
    pub debug_single_process: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What to deploy, resolved from the flags (also built by `silver up`).
pub struct Settings {
    pub source: PathBuf,
    pub app: Option<silver_types::AppName>,
    pub no_wait: bool,
    pub locations: Vec<silver_types::appconfig::Location>,
    pub restart: bool,
    pub app_config: Option<PathBuf>,
    pub single_process: bool,
    pub limits: packer::Limits,
    /// Signed records for a node with a trust policy.
    pub records: Vec<silver_types::SignedRecord>,
}

impl Args {
    /// `LOCATION` (Silver Lining's second argument) and every `--location`.
    fn all_locations(&self) -> Vec<silver_types::appconfig::Location> {
        self.location
            .iter()
            .chain(&self.locations)
            .cloned()
            .collect()
    }
}

/// What `silver deploy` was given to deploy.
#[derive(Debug, Clone)]
pub enum Source {
    Path(PathBuf),
    Registry(silver_registry::Reference),
    Id(silver_types::IdPrefix),
}

impl Source {
    pub(super) fn parse(given: &str) -> Result<Source, String> {
        if given.starts_with("b3:") {
            return silver_types::IdPrefix::parse(given)
                .map(Source::Id)
                .map_err(|e| e.to_string());
        }
        // A path never holds `@sha256:`; a reference always does (a tag alone can move).
        if given.contains("@sha256:") || given.contains("@sha512:") {
            return silver_registry::Reference::parse(given)
                .map(Source::Registry)
                .map_err(|e| e.to_string());
        }
        super::common::absolute_path(given).map(Source::Path)
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    let source = match &args.source {
        Source::Path(path) => path.clone(),
        _ => return run_pulled(args, &node),
    };
    let settings = Settings {
        source,
        app: args.app.clone(),
        no_wait: args.no_wait,
        locations: args.all_locations(),
        restart: args.restart,
        app_config: args.app_config.clone(),
        single_process: args.debug_single_process,
        limits: args.limits.resolve(),
        records: args.records.load()?,
    };
    let report = super::node::runtime()?.block_on(deploy(&node, &settings))?;
    if args.node.json {
        super::common::print_json(&report)?;
    } else {
        crate::out!("{}", report.id);
    }
    Ok(())
}

/// The node pulls the artifact from a registry, then activates it.
fn run_pulled(args: Args, node: &silver_client::Node) -> anyhow::Result<()> {
    let config = args.registries.resolve();
    let runtime = super::node::runtime()?;
    let reference = match (&args.source, &args.registry) {
        (Source::Registry(r), _) => r.clone(),
        (Source::Id(id), Some(repo)) => runtime.block_on(super::registry::find_id(repo, id, &config))?,
        (Source::Id(_), None) => {
            return Err(ui::hinted(
                "a b3: id names no registry to pull it from",
                "add --registry REGISTRY/REPO (where `silver push` sent it), or give REGISTRY/REPO@sha256:…",
            ))
        }
        (Source::Path(_), _) => unreachable!("paths deploy by upload"),
    };
    let records = args.records.load()?;
    let report = runtime.block_on(deploy_pulled(node, &reference, &args, records))?;
    if args.node.json {
        super::common::print_json(&report)?;
    } else {
        crate::out!("{}", report.id);
    }
    Ok(())
}

async fn deploy_pulled(
    node: &silver_client::Node,
    reference: &silver_registry::Reference,
    args: &Args,
    mut records: Vec<silver_types::SignedRecord>,
) -> anyhow::Result<silver_client::DeployReport> {
    ui::status("Pulling", format!("{reference} on {}", node.url()));
    let pulled = node
        .pull(&reference.to_string())
        .await
        .with_context(|| format!("{} failed to pull {reference}", node.url()))?;
    ui::status(
        "Pulled",
        format!(
            "{} ({} of {} packs, {} fetched)",
            pulled.id,
            pulled.packs_fetched,
            pulled.packs_total,
            ui::bytes(pulled.bytes_fetched)
        ),
    );
    // The records the node read beside the artifact travel back with the activation.
    records.extend(pulled.records.iter().cloned());
    let app = match (&args.app, &pulled.app) {
        (Some(app), _) => app.clone(),
        (None, Some(app)) => app.clone(),
        (None, None) => {
            return Err(ui::hinted(
                format!("{reference}'s app.ini names no app_name"),
                "pass --app NAME",
            ))
        }
    };
    let opts = silver_client::DeployOptions {
        other_app: args.app.is_some(),
        app: app.clone(),
        who: super::node::who(),
        no_wait: args.no_wait,
        limits: args.limits.resolve(),
        cache_dir: None,
        locations: args.all_locations(),
        restart: args.restart,
        app_config: args.app_config.clone(),
        single_process: args.debug_single_process,
        records,
    };
    let report = silver_client::activate_pulled(node, pulled, &opts, bar(), waiting(&app))
        .await
        .with_context(|| format!("failed to deploy `{app}` to {}", node.url()))?;
    ui::status(
        "Deployed",
        format!("{} {} to {}", report.app, report.id, report.node),
    );
    Ok(report)
}

/// Packs if needed, deploys, and says what happened on stderr.
pub async fn deploy(
    node: &silver_client::Node,
    args: &Settings,
) -> anyhow::Result<silver_client::DeployReport> {
    let limits = args.limits.clone();
    let (archive, packed_app, _tmp) = resolve_archive(args, &limits)?;
    let app = match (&args.app, packed_app) {
        (Some(app), Some(packed)) if *app != packed => {
            ui::warn(format!(
                "deploying the app packed as `{packed}` under the name `{app}`, as --app says"
            ));
            app.clone()
        }
        (Some(app), _) => app.clone(),
        (None, Some(app)) => app,
        (None, None) => app_from_file_name(&archive).ok_or_else(|| {
            crate::ui::hinted(
                format!(
                    "cannot tell which app `{}` is: its name is not `<app>-<id12>.silver`",
                    archive.display()
                ),
                "pass --app NAME",
            )
        })?,
    };
    let opts = silver_client::DeployOptions {
        other_app: args.app.is_some(),
        app: app.clone(),
        who: super::node::who(),
        no_wait: args.no_wait,
        limits,
        cache_dir: cache_dir(),
        locations: args.locations.clone(),
        restart: args.restart,
        app_config: args.app_config.clone(),
        single_process: args.single_process,
        records: args.records.clone(),
    };
    let report = silver_client::deploy(node, &archive, &opts, bar(), waiting(&app))
        .await
        .with_context(|| format!("failed to deploy `{app}` to {}", node.url()))?;
    if report.unchanged {
        ui::status(
            "Unchanged",
            format!(
                "{} {} is already live on {}: nothing restarted (--restart restarts it)",
                report.app, report.id, report.node
            ),
        );
        return Ok(report);
    }
    // `update_fetch` output was shown as the node streamed it (`Bar::note`).
    ui::status(
        "Deployed",
        format!(
            "{} {} to {} ({} sent, {} sent, {} already there)",
            report.app,
            report.id,
            report.node,
            ui::bytes(report.bytes_sent),
            ui::count(report.objects_sent as u64, "object"),
            report.objects_skipped
        ),
    );
    if !report.locations.is_empty() {
        let processes = match report.processes.as_slice() {
            [] => "static files only".to_string(),
            list => format!("processes: {}", list.join(", ")),
        };
        ui::status(
            "Serving",
            format!("at {} ({processes})", join(&report.locations)),
        );
    }
    Ok(report)
}

/// The artifact to send: the given file, or a fresh pack of the given directory (into a temp
/// directory that lives as long as the returned guard).
pub(super) fn resolve_archive(
    args: &Settings,
    limits: &packer::Limits,
) -> anyhow::Result<(
    PathBuf,
    Option<silver_types::AppName>,
    Option<safefs::TempDir>,
)> {
    let source = &args.source;
    let meta = std::fs::metadata(source).with_context(|| {
        format!(
            "`{}` is neither an app directory nor a .silver artifact",
            source.display()
        )
    })?;
    if !meta.is_dir() {
        // Read the manifest now, so junk is called junk rather than an unknown app.
        packer::read_manifest(source, limits)
            .with_context(|| format!("`{}` is not a silver artifact", source.display()))?;
        return Ok((source.clone(), None, None));
    }
    let tmp =
        safefs::temp_dir("silver-deploy-").context("failed to create a temporary directory")?;
    let config = packer::PackConfig {
        limits: limits.clone(),
        ..packer::PackConfig::default()
    };
    let progress = ui::Bar::new(!std::io::stderr().is_terminal());
    let report = packer::pack(&args.source, tmp.path(), &config, &progress)
        .with_context(|| format!("failed to pack `{}`", args.source.display()))?;
    for warning in &report.warnings {
        ui::warn(warning);
    }
    ui::status("Packed", format!("{} {}", report.app, report.id));
    Ok((report.archive, Some(report.app), Some(tmp)))
}

/// A byte-counting bar on stderr (hidden when it is not a terminal).
fn bar() -> Arc<dyn packer::Progress + Send + Sync> {
    Arc::new(ui::Bar::new(!std::io::stderr().is_terminal()))
}

/// Says who holds the app's lock while a deploy waits for it.
fn waiting(app: &silver_types::AppName) -> impl Fn(&str, u64) + '_ {
    move |holder, since| {
        ui::status(
            "Waiting",
            format!(
                "for the lock on `{app}`, held by {holder} since {}",
                ui::utc(since)
            ),
        )
    }
}

/// Where deployed manifests are kept as delta bases: `SILVER_CACHE_DIR`, else the XDG cache.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SILVER_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    super::common::xdg_dir(super::common::Xdg::Cache, "manifests")
}

/// `<app>-<id12>.silver`, as `silver pack` names artifacts.
fn app_from_file_name(archive: &std::path::Path) -> Option<silver_types::AppName> {
    let name = archive.file_name()?.to_str()?.strip_suffix(".silver")?;
    let (app, id12) = name.rsplit_once('-')?;
    if id12.len() != 12 {
        return None;
    }
    silver_types::AppName::parse(app).ok()
}

/// Locations as a person reads a list of them.
fn join(locations: &[silver_types::Location]) -> String {
    let texts: Vec<String> = locations.iter().map(ToString::to_string).collect();
    texts.join(", ")
}
