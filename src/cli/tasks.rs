//! `silver tasks APP`: an app's task queue on a node (counts, the dead tasks, the next queued
//! ones); `silver tasks retry APP ID...|dead` queues dead tasks again and `silver tasks drop
//! APP ID...|dead` drops tasks.

use anyhow::Context;
use silver_types::task::{TaskId, TaskInfo, TaskList, TaskState};
use silver_types::AppName;

use super::node::NodeArgs;
use crate::{out, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `APP` shows the queue; `retry APP ID...` queues dead tasks again (`dead` for all of
    /// them); `drop APP ID...` drops queued or dead tasks (`dead` for every dead one).
    #[arg(value_name = "APP | retry APP ID... | drop APP ID...", num_args = 1.., required = true)]
    pub words: Vec<String>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// What the words ask for. (Words rather than subcommands, so `--node` goes anywhere.)
enum Action {
    List(AppName),
    /// `retry` or `drop`, and the tasks (None: every dead one).
    Change(&'static str, AppName, Option<Vec<TaskId>>),
}

fn action(words: &[String]) -> anyhow::Result<Action> {
    let usage = "`silver tasks APP`, `silver tasks retry APP ID...|dead` or `silver tasks drop APP ID...|dead`";
    let app = |name: &str| {
        AppName::parse(name)
            .map_err(|rule| ui::hinted(format!("`{name}` is not an app name: {rule}"), usage))
    };
    let ids = |given: &[String]| -> anyhow::Result<Option<Vec<TaskId>>> {
        if given == ["dead"] {
            return Ok(None);
        }
        let parsed = given.iter().map(|id| {
            TaskId::parse(id)
                .map_err(|e| ui::hinted(format!("`{id}` is not a task id: {e}"), usage))
        });
        parsed.collect::<anyhow::Result<Vec<_>>>().map(Some)
    };
    match words {
        [name] => Ok(Action::List(app(name)?)),
        [change, name, rest @ ..]
            if !rest.is_empty() && (change == "retry" || change == "drop") =>
        {
            let change = if change == "retry" { "retry" } else { "drop" };
            Ok(Action::Change(change, app(name)?, ids(rest)?))
        }
        _ => Err(ui::hinted(
            format!("`silver tasks {}` is not a tasks command", words.join(" ")),
            usage,
        )),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = super::node::runtime()?;
    let client = args.node.connect()?;
    match action(&args.words)? {
        Action::List(app) => {
            let list = rt
                .block_on(client.tasks(&app))
                .with_context(|| format!("{} did not show the tasks of {app}", client.url()))?;
            if args.node.json {
                return super::common::print_json(&list);
            }
            print_list(&list);
            Ok(())
        }
        Action::Change(change, app, ids) => {
            let done = rt
                .block_on(client.tasks_change(&app, change, ids))
                .with_context(|| format!("{} did not {change} tasks of {app}", client.url()))?;
            if args.node.json {
                return super::common::print_json(&done);
            }
            let verb = if change == "retry" {
                "Queued again"
            } else {
                "Dropped"
            };
            ui::status(verb, ui::count(done.len() as u32, "task"));
            done.iter().for_each(|id| out!("{id}"));
            Ok(())
        }
    }
}

fn print_list(list: &TaskList) {
    out!(
        "{} queued, {} running, {} dead, {} done since the agent started (at most {} held, on the {})",
        list.queued, list.running, list.dead, list.done, list.limit, list.store
    );
    for task in &list.tasks {
        print_task(task);
    }
}

fn print_task(task: &TaskInfo) {
    let (state, when) = match task.state {
        TaskState::Dead => ("dead", "failed last"),
        TaskState::Running => ("running", "started"),
        TaskState::Queued => ("queued", "due"),
    };
    out!(
        "{}  {state:<7}  {} {}  {when} {}  attempts {}",
        task.id,
        task.method,
        task.path,
        task.due.format("%Y-%m-%d %H:%M:%S UTC"),
        task.attempts
    );
    if let Some(error) = &task.last_error {
        out!("    last error: {error}");
    }
}
