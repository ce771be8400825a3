//! `silver cron APP`: the live release's `[cron]` jobs on a node, each with its last run, its
//! status, its next run and its recent failures; `silver cron run APP JOB` runs one now.

use anyhow::Context;
use silver_types::cron::{JobStatus, RunRecord};

use super::node::NodeArgs;
use crate::{out, ui};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<CronCommand>,
    /// The app whose jobs to list.
    pub app: Option<silver_types::AppName>,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum CronCommand {
    /// Run JOB now, whatever its schedule, and wait for it (and its retries); exits 1 if it
    /// did not succeed.
    Run {
        app: silver_types::AppName,
        job: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = super::node::runtime()?;
    match (args.command, args.app) {
        (Some(CronCommand::Run { app, job, node }), _) => {
            let client = node.connect()?;
            let spinner = ui::spinner("Running", &format!("{job} of {app}"));
            let runs = rt
                .block_on(client.cron_run(&app, &job))
                .with_context(|| format!("{} did not run {job} of {app}", client.url()))?;
            spinner.finish_and_clear();
            if node.json {
                super::common::print_json(&runs)?;
            } else {
                runs.iter().for_each(print_run);
            }
            match runs.last().is_some_and(|r| r.ok) {
                true => Ok(()),
                false => Err(ui::hinted(
                    format!("{job} of {app} did not succeed"),
                    format!("`silver logs {app} --process cron` has its output"),
                )),
            }
        }
        (None, Some(app)) => {
            let client = args.node.connect()?;
            let jobs = rt.block_on(client.cron_jobs(&app))?;
            if args.node.json {
                return super::common::print_json(&jobs);
            }
            if jobs.is_empty() {
                ui::warn_with_hint(
                    format!("{app} has no cron jobs"),
                    "add them to app.ini under [cron]: `NAME = */5 * * * * /path`",
                );
            }
            jobs.iter().for_each(print_job);
            Ok(())
        }
        (None, None) => Err(ui::hinted(
            "name the app: `silver cron APP`",
            "`silver cron run APP JOB` runs a job now",
        )),
    }
}

fn print_job(job: &JobStatus) {
    out!("{}  {}  {}", job.name, job.schedule, job.target);
    let zone = if job.timezone == "UTC" {
        String::new()
    } else {
        format!(" ({})", job.timezone)
    };
    match &job.last {
        Some(last) => out!(
            "  last  {}  {}{}",
            last.started.format("%Y-%m-%d %H:%M:%S UTC"),
            last.outcome,
            if last.ok { "" } else { "  FAILED" }
        ),
        None => out!("  last  never"),
    }
    match job.next {
        Some(next) => out!("  next  {}{zone}", next.format("%Y-%m-%d %H:%M:%S UTC")),
        None => out!("  next  never"),
    }
    if job.failing > 0 {
        out!("  has not succeeded for {}", ui::count(job.failing, "run"));
        for failure in &job.failures {
            out!(
                "    {}  {}",
                failure.started.format("%Y-%m-%d %H:%M:%S"),
                failure.outcome
            );
        }
    }
}

fn print_run(run: &RunRecord) {
    out!(
        "attempt {}: {} after {} ms{}",
        run.attempt,
        run.outcome,
        run.duration_ms,
        if run.ok { "" } else { "  FAILED" }
    );
    if !run.tail.is_empty() {
        out!("{}", run.tail.trim_end());
    }
}
