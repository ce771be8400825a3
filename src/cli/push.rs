//! `silver push ARTIFACT|APP_DIR REGISTRY/REPO[:TAG]`: an artifact into an OCI registry, as
//! parts and packs, sending only the blobs the registry lacks.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use silver_registry::Reference;

use super::limits::LimitArgs;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A `.silver` artifact, or an app directory to pack first.
    #[arg(value_parser = super::common::absolute_path)]
    pub source: PathBuf,
    /// `REGISTRY/REPO[:TAG]`, e.g. `127.0.0.1:5000/shop:staging` or `ghcr.io/team/shop`.
    pub reference: Reference,
    /// Print the push report (reference, digest, id, blobs and bytes sent) as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registries: super::registry::RegistryArgs,
    /// Signed records to keep beside the artifact in the registry (at the tag
    /// `sha256-<hex>.records`): nodes deploying it by digest get them with it.
    #[command(flatten)]
    pub records: super::records::RecordArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let limits = args.limits.resolve();
    let settings = super::deploy::Settings {
        source: args.source.clone(),
        app: None,
        no_wait: false,
        locations: vec![],
        restart: false,
        app_config: None,
        single_process: false,
        limits: limits.clone(),
        records: vec![],
    };
    let (archive, _, _tmp) = super::deploy::resolve_archive(&settings, &limits)?;
    let progress: Arc<dyn packer::Progress + Send + Sync> =
        Arc::new(ui::Bar::new(!std::io::stderr().is_terminal()));
    let config = args.registries.resolve();
    let records = args.records.load()?;
    let runtime = super::node::runtime()?;
    let report = runtime
        .block_on(silver_registry::push::push(
            &archive,
            &args.reference,
            &config,
            &limits,
            progress,
        ))
        .with_context(|| {
            format!(
                "failed to push `{}` to {}",
                archive.display(),
                args.reference
            )
        })?;
    ui::status(
        "Pushed",
        format!(
            "{} as {} ({} of {} blobs sent, {}; tags {})",
            report.id,
            report.reference,
            report.blobs_sent,
            report.blobs_sent + report.blobs_skipped,
            ui::bytes(report.bytes_sent),
            report.tags.join(", ")
        ),
    );
    if !records.is_empty() {
        let pushed: silver_registry::Reference = report.reference.parse()?;
        let held = runtime.block_on(super::registry::append_records(&pushed, &records, &config))?;
        ui::status(
            "Recorded",
            format!("{held} signed record(s) beside {}", report.reference),
        );
    }
    if args.json {
        super::common::print_json(&report)?;
    } else {
        crate::out!("{}", report.reference);
    }
    Ok(())
}
