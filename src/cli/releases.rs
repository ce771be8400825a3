//! `silver releases`, `rollback`, `activate` and `gc`: a node's history and retention.

use super::node::NodeArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct ReleasesArgs {
    pub app: silver_types::AppName,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    pub app: silver_types::AppName,
    /// The release to go back to [default: the previous good one].
    pub id: Option<silver_types::IdPrefix>,
    /// Run its `update_fetch` again (by default a rollback runs none: it ran already).
    #[arg(long)]
    pub migrate: bool,
    #[command(flatten)]
    pub records: super::records::RecordArgs,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, clap::Args)]
pub struct ActivateArgs {
    /// The app, by name or by a location it serves (or served before `silver deactivate`).
    pub target: String,
    /// The release: its id as printed, a unique prefix of at least 12 hex digits, or `prev`
    /// for the previous good one (Silver Lining's `silver activate LOCATION prev`).
    pub id: ReleaseRef,
    /// Take an artifact whose app.ini names another app.
    #[arg(long)]
    pub other_app: bool,
    /// Run `update_fetch` even if the release ran before (by default only a release that never
    /// went live runs it).
    #[arg(long)]
    pub migrate: bool,
    #[command(flatten)]
    pub records: super::records::RecordArgs,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// A release as `activate` takes it: an id (prefix), or `prev`.
#[derive(Debug, Clone)]
pub enum ReleaseRef {
    Previous,
    Id(silver_types::IdPrefix),
}

impl std::str::FromStr for ReleaseRef {
    type Err = String;
    fn from_str(text: &str) -> Result<ReleaseRef, String> {
        match text {
            "prev" | "previous" => Ok(ReleaseRef::Previous),
            id => id
                .parse()
                .map(ReleaseRef::Id)
                .map_err(|e| format!("{e}, or `prev`")),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct PinArgs {
    pub app: silver_types::AppName,
    pub id: silver_types::IdPrefix,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Releases to keep per app, besides the current, previous and pinned ones.
    #[arg(long, default_value_t = 5)]
    pub keep: usize,
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn releases(args: ReleasesArgs) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    let list = super::node::runtime()?.block_on(node.releases(&args.app))?;
    if args.node.json {
        return super::common::print_json(&list);
    }
    for r in &list {
        let state = serde_json::to_value(r.state)?
            .as_str()
            .unwrap_or_default()
            .to_string();
        let reason = r
            .reason
            .as_deref()
            .map(|r| format!("  ({r})"))
            .unwrap_or_default();
        let provenance: String = [("built by", &r.built_by), ("promoted by", &r.promoted_by)]
            .iter()
            .filter_map(|(what, who)| who.as_ref().map(|w| format!("  {what} {w}")))
            .collect();
        let reason = format!("{provenance}{reason}");
        crate::out!(
            "{:<8}  {}  {}  {}{}",
            state,
            r.id,
            ui::utc(r.time),
            r.who,
            reason
        );
    }
    Ok(())
}

pub fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    let done = super::node::runtime()?.block_on(node.rollback(
        &args.app,
        args.id.as_ref(),
        &super::node::who(),
        args.migrate,
        args.records.load()?,
    ))?;
    report(&args.node, "Rolled back", &done)
}

pub fn activate(args: ActivateArgs) -> anyhow::Result<()> {
    let id = match args.id {
        ReleaseRef::Previous => None,
        ReleaseRef::Id(id) => Some(id),
    };
    let node = args.node.connect()?;
    let who = super::node::who();
    let records = args.records.load()?;
    let done = super::node::runtime()?.block_on(async {
        let app = node.resolve_app(&args.target).await?;
        match &id {
            Some(id) => {
                node.activate(&app, id, &who, args.other_app, args.migrate, records)
                    .await
            }
            None => node.rollback(&app, None, &who, args.migrate, records).await,
        }
    })?;
    report(&args.node, "Activated", &done)
}

fn report(
    node: &NodeArgs,
    verb: &str,
    done: &silver_wire::api::ActivateResponse,
) -> anyhow::Result<()> {
    ui::status(
        verb,
        format!(
            "{}: {} is live (before: {})",
            done.app,
            done.id,
            done.previous.map_or("none".into(), |p| p.to_string())
        ),
    );
    if node.json {
        super::common::print_json(done)
    } else {
        crate::out!("{}", done.id);
        Ok(())
    }
}

pub fn gc(args: GcArgs) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    let report = super::node::runtime()?.block_on(node.gc(args.keep))?;
    for r in &report.releases_removed {
        ui::status("Removed", r);
    }
    ui::status(
        "Freed",
        format!(
            "{} in {}",
            ui::bytes(report.bytes_freed),
            ui::count(report.objects_removed, "object")
        ),
    );
    if args.node.json {
        super::common::print_json(&report)?;
    }
    Ok(())
}

/// `silver pin` (and `unpin`): keep a release through gc whatever `--keep` says.
pub fn pin(args: PinArgs, pinned: bool) -> anyhow::Result<()> {
    let node = args.node.connect()?;
    let pins = super::node::runtime()?.block_on(node.pin(&args.app, &args.id, pinned))?;
    ui::status(
        if pinned { "Pinned" } else { "Unpinned" },
        format!("{} {}", args.app, args.id),
    );
    if args.node.json {
        super::common::print_json(&pins)?;
    }
    Ok(())
}
