//! `silver fsck`: check a node's store on the node itself; exit 0 only if it is clean.

use std::path::PathBuf;

use anyhow::Context;

use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent's store.
    #[arg(long, value_name = "DIR")]
    #[arg(value_parser = super::common::absolute_path)]
    pub root: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(
        silver_node::store::Layout::new(&args.root).is_store(),
        "`{}` is not an agent's store (no objects/)",
        args.root.display()
    );
    let store = silver_node::store::Store::open(&args.root, packer::Limits::default())?;
    let report = silver_node::store::fsck(&store)
        .with_context(|| format!("failed to check `{}`", args.root.display()))?;
    if args.json {
        super::common::print_json(&report)?;
    }
    let problems = [
        &report.corrupt_objects,
        &report.bad_artifacts,
        &report.bad_releases,
        &report.bad_current,
        &report.mid_restore,
    ];
    for line in problems.into_iter().flatten() {
        ui::warn(line);
    }
    for line in &report.leftovers {
        ui::status(
            "Leftover",
            format!("{line} (removed when the agent starts)"),
        );
    }
    ui::status(
        "Checked",
        format!(
            "{} objects, {} releases",
            report.objects_checked, report.releases_checked
        ),
    );
    if report.is_clean() {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        anstream::eprintln!("{}error{:#}: the store has problems", ui::ERROR, ui::ERROR);
        Ok(std::process::ExitCode::from(1))
    }
}
