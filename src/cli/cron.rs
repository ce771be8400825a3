//! `silver cron APP`: the live release's `[cron]` jobs on a node, each with its last run, its
//! status, its next run and its recent failures; `silver cron run APP JOB` runs one now.

use anyhow::Context;
use silver_types::cron::{JobStatus, RunRecord};
use silver_types::AppName;

use super::node::NodeArgs;
use crate::{out, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `APP` lists the app's jobs; `run APP JOB` runs JOB now, whatever its schedule, and waits
    /// for it and its retries (exit 1 if it did not succeed).
    #[arg(value_name = "APP | run APP JOB", num_args = 1..=3, required = true)]
    pub words: Vec<String>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// What the words ask for. (Words rather than a `run` subcommand, so `--node` goes anywhere;
/// an app named `run` is listed with `silver cron run`.)
enum Action {
    List(AppName),
    Run(AppName, String),
}

fn action(words: &[String]) -> anyhow::Result<Action> {
    let app = |name: &str| {
        AppName::parse(name).map_err(|rule| {
            ui::hinted(
                format!("`{name}` is not an app name: {rule}"),
                "`silver cron APP` or `silver cron run APP JOB`",
            )
        })
    };
    match words {
        [name] => Ok(Action::List(app(name)?)),
        [run, name, job] if run == "run" => Ok(Action::Run(app(name)?, job.clone())),
        _ => Err(ui::hinted(
            format!("`silver cron {}` is not a cron command", words.join(" ")),
            "`silver cron APP` lists the jobs; `silver cron run APP JOB` runs one now",
        )),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = super::node::runtime()?;
    let client = args.node.connect()?;
    match action(&args.words)? {
        Action::Run(app, job) => {
            let spinner = ui::spinner("Running", &format!("{job} of {app}"));
            let runs = rt
                .block_on(client.cron_run(&app, &job))
                .with_context(|| format!("{} did not run {job} of {app}", client.url()))?;
            spinner.finish_and_clear();
            if args.node.json {
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
        Action::List(app) => {
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
