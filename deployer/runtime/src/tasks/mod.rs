//! Tasks (design §11): deferred internal requests an app queues for itself through a Unix
//! socket in its run directory (`socket.rs`), kept durably (`store.rs`) and run on the app's
//! live release, at most `task_concurrency` at once, retried with backoff on anything but a
//! 2xx, and dead after `task_attempts` failures until `silver tasks retry` or `drop`.
//!
//! Delivery is at least once: a task runs again if the agent dies between its 2xx and the
//! removal of its file, or while its request runs. An idempotency key makes a second `add`
//! with the same key (within [`KEYS_KEPT`]) return the first task instead of queueing another.
//!
//! The queue is the app's, not a release's: a deploy or a rollback changes where tasks go
//! ([`Queue::set_target`]), never what is queued. An app with no live release, or in
//! maintenance, runs none; they wait.

mod fleet;
mod socket;
mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use silver_types::task::{TaskId, TaskInfo, TaskList, TaskState};
use silver_types::AppName;
use tokio::sync::{watch, Notify};

use crate::error::{Error, TaskProblem};
use crate::internal::Target;
use crate::logs::LogSink;
pub use fleet::Fleet;
pub use socket::{NewTask, SOCKET_NAME};
use store::{Dir, Header, Shelf};

/// How long an idempotency key keeps answering with its task.
pub const KEYS_KEPT: Duration = Duration::from_secs(24 * 3600);
/// A task is at most this far in the future.
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Tasks `silver tasks` lists after the dead ones.
const LISTED: usize = 100;

/// The app.ini settings the queue runs by (`task_concurrency`, `task_queue_size`,
/// `task_attempts`), from the live release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub concurrency: usize,
    pub size: u64,
    pub attempts: u32,
}

impl Settings {
    pub fn of(config: &silver_types::AppConfig) -> Settings {
        Settings {
            concurrency: config.task_concurrency as usize,
            size: config.task_queue_size,
            attempts: config.task_attempts as u32,
        }
    }
}

/// Where an open queue sends its tasks: the live release, by its settings.
#[derive(Clone)]
pub struct Live {
    pub target: Target,
    pub settings: Settings,
    /// The app's queue in its shared database, in a fleet: new tasks go there, and this node
    /// runs them as any other node may. (Tasks already on the node's disk still run here.)
    pub fleet: Option<Arc<Fleet>>,
}

/// What an `add` came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub id: TaskId,
    /// The key named a task already queued (or run) within [`KEYS_KEPT`]: that one's id.
    pub duplicate: bool,
}

/// An app's task queue, open while the agent runs.
pub struct Queue {
    app: AppName,
    dir: Dir,
    state: Mutex<State>,
    /// A task was added, a run ended, or a retry queued one: the dispatcher looks again.
    wake: Notify,
    live: watch::Sender<Option<Live>>,
    paused: Arc<dyn Fn() -> bool + Send + Sync>,
    log: LogSink,
    /// This node's id, as the fleet's queue records who runs a task.
    node: String,
    workers: Mutex<Vec<tokio::task::AbortHandle>>,
}

#[derive(Default)]
struct State {
    /// Queued tasks not running, by when they are due.
    waiting: BTreeSet<(DateTime<Utc>, TaskId)>,
    /// Queued tasks, waiting or running.
    queued: HashMap<TaskId, Header>,
    running: HashSet<TaskId>,
    /// Tasks of the fleet's queue this node runs now.
    fleet_running: usize,
    dead: BTreeMap<TaskId, Header>,
    keys: HashMap<String, (TaskId, DateTime<Utc>)>,
    /// Adds being written: they count against the limit already.
    reserved: u64,
    done: u64,
    settings: Option<Settings>,
}

/// What opening a queue needs.
pub struct Opening<'a> {
    pub app: AppName,
    /// The agent's own directory for it (`apps/APP/tasks`).
    pub dir: &'a Path,
    /// The app's run directory, where its socket goes.
    pub run: &'a Path,
    /// The only user whose processes may queue tasks: the app's.
    pub uid: u32,
    pub gid: u32,
    pub log: LogSink,
    pub paused: Arc<dyn Fn() -> bool + Send + Sync>,
    pub node: String,
}

impl Queue {
    /// Opens the app's queue: loads what is stored, opens its socket, starts its dispatcher.
    /// Tasks wait until [`Queue::set_target`] names a live release.
    pub async fn open(opening: Opening<'_>) -> Result<Arc<Queue>, Error> {
        let root = opening.dir.to_path_buf();
        let dir =
            tokio::task::spawn_blocking(move || Dir::open(&root).map_err(|e| Error::io(&root, e)))
                .await
                .map_err(|source| Error::Worker {
                    doing: "opening a task queue",
                    source,
                })??;
        let loaded = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || dir.load().map_err(|e| Error::io(dir.root(), e)))
                .await
                .map_err(|source| Error::Worker {
                    doing: "loading a task queue",
                    source,
                })??
        };
        for path in &loaded.unreadable {
            let line = format!(
                "[silver] tasks: {} could not be read; it was set aside",
                path.display()
            );
            opening.log.line("tasks", &line);
        }
        let mut state = State::default();
        let cutoff = Utc::now() - chrono::Duration::from_std(KEYS_KEPT).unwrap_or_default();
        for (key, id, at) in loaded.keys.into_iter().filter(|k| k.2 > cutoff) {
            state.keys.insert(key, (id, at));
        }
        for (id, header) in loaded.queued {
            state.waiting.insert((header.due, id.clone()));
            state.queued.insert(id, header);
        }
        state.dead.extend(loaded.dead);
        let listener = socket::bind(&dir, opening.run, opening.uid, opening.gid)?;
        let queue = Arc::new(Queue {
            app: opening.app,
            dir,
            state: Mutex::new(state),
            wake: Notify::new(),
            live: watch::channel(None).0,
            paused: opening.paused,
            log: opening.log,
            node: opening.node,
            workers: Mutex::new(Vec::new()),
        });
        let workers = vec![
            tokio::spawn(dispatch(queue.clone())).abort_handle(),
            tokio::spawn(socket::serve(Arc::downgrade(&queue), listener, opening.uid))
                .abort_handle(),
            tokio::spawn(prune_keys(Arc::downgrade(&queue))).abort_handle(),
        ];
        *queue.workers.lock().unwrap() = workers;
        Ok(queue)
    }

    /// Where tasks go from now (None: nowhere; they wait).
    pub fn set_target(&self, live: Option<Live>) {
        if let Some(l) = &live {
            self.state.lock().unwrap().settings = Some(l.settings);
        }
        self.live.send_replace(live);
    }

    /// Queues a task, durably: once this returns it survives a crash.
    pub async fn add(&self, task: NewTask) -> Result<Added, Error> {
        let now = Utc::now();
        let id = TaskId::new(
            now,
            &safefs::secret_hex(6).map_err(|e| Error::io(self.dir.root(), e))?,
        );
        let live = self.live.borrow().clone();
        if let Some((fleet, settings)) = live.and_then(|l| Some((l.fleet?, l.settings))) {
            let header = header_of(&task, now);
            let added = fleet.add(&id, &header, &task.body, settings.size).await?;
            self.wake.notify_one();
            return Ok(added);
        }
        {
            let mut s = self.state.lock().unwrap();
            if let Some((id, _)) = task.key.as_ref().and_then(|k| s.keys.get(k)) {
                return Ok(Added {
                    id: id.clone(),
                    duplicate: true,
                });
            }
            let limit = s.settings.map(|s| s.size).unwrap_or(u64::MAX);
            if s.queued.len() as u64 + s.dead.len() as u64 + s.reserved >= limit {
                return Err(self.problem(TaskProblem::Full { limit }));
            }
            s.reserved += 1;
            if let Some(key) = &task.key {
                s.keys.insert(key.clone(), (id.clone(), now));
            }
        }
        let header = header_of(&task, now);
        let written = {
            let (dir, id, header) = (self.dir.clone(), id.clone(), header.clone());
            tokio::task::spawn_blocking(move || {
                dir.put(Shelf::Queue, &id, &header, &task.body)?;
                match &header.key {
                    Some(key) => dir.put_key(key, &id, now),
                    None => Ok(()),
                }
            })
            .await
            .map_err(|source| Error::Worker {
                doing: "queueing a task",
                source,
            })?
        };
        let mut s = self.state.lock().unwrap();
        s.reserved -= 1;
        if let Err(e) = written {
            if let Some(key) = &task.key {
                s.keys.remove(key);
            }
            return Err(Error::io(self.dir.root(), e));
        }
        s.waiting.insert((header.due, id.clone()));
        s.queued.insert(id.clone(), header);
        drop(s);
        self.wake.notify_one();
        Ok(Added {
            id,
            duplicate: false,
        })
    }

    /// The queue as `silver tasks` shows it: the node's, and the fleet's in its shared
    /// database.
    pub async fn list(&self) -> Result<TaskList, Error> {
        let mut list = self.list_node();
        let live = self.live.borrow().clone();
        if let Some(fleet) = live.and_then(|l| l.fleet) {
            let shared = fleet.list().await?;
            list.queued += shared.queued;
            list.running += shared.running;
            list.dead += shared.dead;
            list.tasks.extend(shared.tasks);
            list.store = format!("PostgreSQL at {}", fleet.shown());
        }
        Ok(list)
    }

    fn list_node(&self) -> TaskList {
        let s = self.state.lock().unwrap();
        let mut tasks: Vec<TaskInfo> = s
            .dead
            .iter()
            .map(|(id, h)| info(id, h, TaskState::Dead))
            .collect();
        let running = s
            .running
            .iter()
            .filter_map(|id| Some((id, s.queued.get(id)?)));
        tasks.extend(running.map(|(id, h)| info(id, h, TaskState::Running)));
        let waiting = s
            .waiting
            .iter()
            .take(LISTED)
            .filter_map(|(_, id)| Some((id, s.queued.get(id)?)));
        tasks.extend(waiting.map(|(id, h)| info(id, h, TaskState::Queued)));
        TaskList {
            queued: (s.queued.len() - s.running.len()) as u64,
            running: s.running.len() as u64,
            dead: s.dead.len() as u64,
            done: s.done,
            store: "node".into(),
            limit: s.settings.map(|s| s.size).unwrap_or_default(),
            tasks,
        }
    }

    /// Queues dead tasks again, their attempts counted from zero; `None` retries every dead one.
    pub async fn retry(&self, ids: Option<Vec<TaskId>>) -> Result<Vec<TaskId>, Error> {
        let (node, fleet) = self.split(ids, |s, id| s.dead.contains_key(id));
        let mut done = self.retry_node(node).await?;
        if let Some((fleet, ids)) = fleet {
            done.extend(self.found(ids.as_deref(), fleet.retry(ids.as_deref()).await?)?);
        }
        Ok(done)
    }

    /// Drops tasks, queued or dead (not one that is running); `None` drops every dead one.
    pub async fn drop_tasks(&self, ids: Option<Vec<TaskId>>) -> Result<Vec<TaskId>, Error> {
        let on_node = |s: &State, id: &TaskId| s.dead.contains_key(id) || s.queued.contains_key(id);
        let (node, fleet) = self.split(ids, on_node);
        let mut done = self.drop_node(node).await?;
        if let Some((fleet, ids)) = fleet {
            done.extend(self.found(ids.as_deref(), fleet.drop_tasks(ids.as_deref()).await?)?);
        }
        Ok(done)
    }

    /// The ids this node holds, and the rest for the fleet's queue if the app has one (None
    /// for all: every dead task, on both).
    #[allow(clippy::type_complexity)]
    fn split(
        &self,
        ids: Option<Vec<TaskId>>,
        here: impl Fn(&State, &TaskId) -> bool,
    ) -> (
        Option<Vec<TaskId>>,
        Option<(Arc<Fleet>, Option<Vec<TaskId>>)>,
    ) {
        let fleet = self.live.borrow().as_ref().and_then(|l| l.fleet.clone());
        let Some(fleet) = fleet else {
            return (ids, None);
        };
        let Some(ids) = ids else {
            return (None, Some((fleet, None)));
        };
        let s = self.state.lock().unwrap();
        let (node, rest): (Vec<TaskId>, Vec<TaskId>) = ids.into_iter().partition(|id| here(&s, id));
        (
            Some(node),
            (!rest.is_empty()).then_some((fleet, Some(rest))),
        )
    }

    /// `done` if the fleet found every task asked for; else the first it did not.
    fn found(&self, asked: Option<&[TaskId]>, done: Vec<TaskId>) -> Result<Vec<TaskId>, Error> {
        match asked.and_then(|ids| ids.iter().find(|id| !done.contains(id))) {
            Some(id) => Err(self.problem(TaskProblem::NoTask { id: id.clone() })),
            None => Ok(done),
        }
    }

    async fn retry_node(&self, ids: Option<Vec<TaskId>>) -> Result<Vec<TaskId>, Error> {
        let picked = self.pick(ids, |s| &s.dead)?;
        let mut retried = Vec::new();
        for id in picked {
            let dir = self.dir.clone();
            let moved = {
                let id = id.clone();
                tokio::task::spawn_blocking(move || -> std::io::Result<Header> {
                    let (mut header, body) = dir.get(Shelf::Dead, &id)?;
                    header.attempts = 0;
                    header.due = Utc::now();
                    dir.put(Shelf::Queue, &id, &header, &body)?;
                    dir.remove(Shelf::Dead, &id)?;
                    Ok(header)
                })
                .await
                .map_err(|source| Error::Worker {
                    doing: "retrying a task",
                    source,
                })?
            };
            let header = moved.map_err(|e| Error::io(self.dir.root(), e))?;
            let mut s = self.state.lock().unwrap();
            s.dead.remove(&id);
            s.waiting.insert((header.due, id.clone()));
            s.queued.insert(id.clone(), header);
            retried.push(id);
        }
        self.wake.notify_one();
        Ok(retried)
    }

    async fn drop_node(&self, ids: Option<Vec<TaskId>>) -> Result<Vec<TaskId>, Error> {
        let picked = match ids {
            None => self.pick(None, |s| &s.dead)?,
            Some(ids) => {
                let s = self.state.lock().unwrap();
                for id in &ids {
                    if s.running.contains(id) {
                        return Err(self.problem(TaskProblem::Running { id: id.clone() }));
                    }
                    if !s.queued.contains_key(id) && !s.dead.contains_key(id) {
                        return Err(self.problem(TaskProblem::NoTask { id: id.clone() }));
                    }
                }
                ids
            }
        };
        for id in &picked {
            let shelf = {
                let mut s = self.state.lock().unwrap();
                match s.queued.remove(id) {
                    Some(h) => {
                        s.waiting.remove(&(h.due, id.clone()));
                        Shelf::Queue
                    }
                    None => {
                        s.dead.remove(id);
                        Shelf::Dead
                    }
                }
            };
            self.dir
                .remove(shelf, id)
                .map_err(|e| Error::io(self.dir.root(), e))?;
        }
        Ok(picked)
    }

    /// The ids asked for, each checked to be on `shelf`; None means all of it.
    fn pick(
        &self,
        ids: Option<Vec<TaskId>>,
        shelf: impl Fn(&State) -> &BTreeMap<TaskId, Header>,
    ) -> Result<Vec<TaskId>, Error> {
        let s = self.state.lock().unwrap();
        let on = shelf(&s);
        match ids {
            None => Ok(on.keys().cloned().collect()),
            Some(ids) => match ids.iter().find(|id| !on.contains_key(id)) {
                Some(id) => Err(self.problem(TaskProblem::NoTask { id: id.clone() })),
                None => Ok(ids),
            },
        }
    }

    fn problem(&self, problem: TaskProblem) -> Error {
        Error::Task {
            app: self.app.clone(),
            problem,
        }
    }

    /// The next task to start now, if a slot is free; else when to look again.
    fn next(&self, concurrency: usize) -> Next {
        let mut s = self.state.lock().unwrap();
        if s.running.len() + s.fleet_running >= concurrency {
            return Next::Full;
        }
        let Some((due, id)) = s.waiting.first().cloned() else {
            return Next::Wait(None);
        };
        if due > Utc::now() {
            return Next::Wait(Some(due));
        }
        s.waiting.pop_first();
        s.running.insert(id.clone());
        let header = s.queued.get(&id).cloned();
        match header {
            Some(header) => Next::Run(id, header),
            None => Next::Wait(None),
        }
    }
}

impl Queue {
    /// Stops dispatching and closes the socket; runs under way finish, what is stored stays.
    pub fn close(&self) {
        for worker in self.workers.lock().unwrap().drain(..) {
            worker.abort();
        }
    }
}

enum Next {
    Run(TaskId, Header),
    /// Every slot is taken.
    Full,
    /// Until this time, or until woken.
    Wait(Option<DateTime<Utc>>),
}

/// How long after failed attempt `n` (1 for the first) a task waits: 1 s, doubling, at most an
/// hour.
pub fn retry_delay(n: u32) -> Duration {
    let secs = 1u64 << n.saturating_sub(1).min(12);
    Duration::from_secs(secs.min(3600))
}

/// Starts due tasks while slots are free, for as long as the queue is open: the node's own
/// first, then the fleet's.
async fn dispatch(queue: Arc<Queue>) {
    let mut live = queue.live.subscribe();
    loop {
        let current = live.borrow_and_update().clone();
        let Some(current) = current else {
            let _ = live.changed().await;
            continue;
        };
        if (queue.paused)() {
            // Maintenance is switched off without telling the queue: look again shortly.
            tokio::select! {
                _ = live.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let until = match queue.next(current.settings.concurrency) {
            Next::Run(id, header) => {
                tokio::spawn(run(queue.clone(), current, Source::Node, id, header, None));
                continue;
            }
            Next::Full => None,
            Next::Wait(until) => match &current.fleet {
                Some(fleet) => match claim(&queue, &current, fleet).await {
                    Some(()) => continue,
                    // Other nodes add tasks there unseen: look again within a second.
                    None => Some(
                        until
                            .unwrap_or(Utc::now() + chrono::Duration::seconds(1))
                            .min(Utc::now() + chrono::Duration::seconds(1)),
                    ),
                },
                None => until,
            },
        };
        let wait = until
            .and_then(|t| (t - Utc::now()).to_std().ok())
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = queue.wake.notified() => {}
            _ = live.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Claims the fleet's next due task and starts it; None if there was none (or the database did
/// not answer, which is logged).
async fn claim(queue: &Arc<Queue>, live: &Live, fleet: &Arc<Fleet>) -> Option<()> {
    // The lease outlasts the request's deadline, so only a dead node's lease runs out.
    let lease = live.target.request_timeout + Duration::from_secs(30);
    match fleet.claim(&queue.node, lease).await {
        Ok(Some(c)) => {
            queue.state.lock().unwrap().fleet_running += 1;
            let source = Source::Fleet(fleet.clone());
            tokio::spawn(run(
                queue.clone(),
                live.clone(),
                source,
                c.id,
                c.header,
                Some(c.body),
            ));
            Some(())
        }
        Ok(None) => None,
        Err(e) => {
            let line = format!("[silver] tasks: {}", silver_types::error_chain(&e));
            queue.log.line(&live.target.label, &line);
            None
        }
    }
}

/// Which queue a running task came from.
enum Source {
    Node,
    Fleet(Arc<Fleet>),
}

/// One attempt at a task, and what its answer does to it.
async fn run(
    queue: Arc<Queue>,
    live: Live,
    source: Source,
    id: TaskId,
    mut header: Header,
    body: Option<Vec<u8>>,
) {
    let body = match body {
        Some(body) => Ok(body),
        None => {
            let (dir, id) = (queue.dir.clone(), id.clone());
            match tokio::task::spawn_blocking(move || dir.get(Shelf::Queue, &id)).await {
                Ok(Ok((_, body))) => Ok(body),
                Ok(Err(e)) => Err(format!("its file could not be read: {e}")),
                Err(e) => Err(format!("a worker stopped: {e}")),
            }
        }
    };
    let (ok, outcome, body) = match body {
        Ok(body) => {
            let request = crate::internal::Request {
                method: &header.method,
                path: &header.path,
                body: body.clone().into(),
                content_type: header.content_type.as_deref(),
                kind: "task",
                marks: vec![
                    ("x-silver-task", id.to_string()),
                    ("x-silver-task-attempt", (header.attempts + 1).to_string()),
                ],
                deadline: live.target.request_timeout,
            };
            let answer = crate::internal::send(&live.target, request).await;
            (answer.ok, answer.outcome, body)
        }
        Err(why) => (false, why, Vec::new()),
    };
    if !ok {
        header.attempts += 1;
        header.last_error = Some(outcome.clone());
    }
    let dead = !ok && header.attempts >= live.settings.attempts;
    if !ok {
        header.due = match dead {
            true => Utc::now(),
            false => {
                Utc::now()
                    + chrono::Duration::from_std(retry_delay(header.attempts)).unwrap_or_default()
            }
        };
        let line = match dead {
            true => format!(
                "[silver] task {id} ({} {}) is dead after {} attempts: {outcome}",
                header.method, header.path, header.attempts
            ),
            false => format!(
                "[silver] task {id} ({} {}) attempt {} failed: {outcome}; retried at {}",
                header.method,
                header.path,
                header.attempts,
                header.due.format("%H:%M:%S")
            ),
        };
        queue.log.line(&live.target.label, &line);
    }
    match source {
        Source::Node => settle_node(&queue, &id, header, body, ok, dead).await,
        Source::Fleet(fleet) => {
            let settled = match ok {
                true => fleet.done(&id).await,
                false => fleet.failed(&id, &header, dead).await,
            };
            if let Err(e) = settled {
                // Its lease runs out and a node runs it again: at least once, as promised.
                let line = format!(
                    "[silver] task {id}: its outcome could not be stored: {}",
                    silver_types::error_chain(&e)
                );
                queue.log.line(&live.target.label, &line);
            }
            let mut s = queue.state.lock().unwrap();
            s.fleet_running -= 1;
            s.done += ok as u64;
        }
    }
    queue.wake.notify_one();
}

/// What a run of a task on the node's own queue does to it: done (its file goes), waiting for
/// its retry (rewritten), or dead (moved to `dead/`).
async fn settle_node(
    queue: &Arc<Queue>,
    id: &TaskId,
    header: Header,
    body: Vec<u8>,
    ok: bool,
    dead: bool,
) {
    let written = {
        let (dir, id, header) = (queue.dir.clone(), id.clone(), header.clone());
        tokio::task::spawn_blocking(move || match (ok, dead) {
            (true, _) => dir.remove(Shelf::Queue, &id),
            (false, true) => dir
                .put(Shelf::Dead, &id, &header, &body)
                .and_then(|()| dir.remove(Shelf::Queue, &id)),
            (false, false) => dir.put(Shelf::Queue, &id, &header, &body),
        })
        .await
    };
    if !matches!(written, Ok(Ok(()))) {
        tracing::warn!(app = %queue.app, task = %id, "a task's new state could not be written; it keeps its old one on disk (and may run again)");
    }
    let mut s = queue.state.lock().unwrap();
    s.running.remove(id);
    if ok {
        s.queued.remove(id);
        s.done += 1;
    } else if dead {
        s.queued.remove(id);
        s.dead.insert(id.clone(), header);
    } else {
        s.waiting.insert((header.due, id.clone()));
        s.queued.insert(id.clone(), header);
    }
}

/// A new task's header.
fn header_of(task: &NewTask, now: DateTime<Utc>) -> Header {
    Header {
        method: task.method.clone(),
        path: task.path.clone(),
        key: task.key.clone(),
        content_type: task.content_type.clone(),
        created: now,
        due: task.due.unwrap_or(now),
        attempts: 0,
        last_error: None,
        body_bytes: task.body.len() as u64,
    }
}

/// A task as `silver tasks` shows it.
fn info(id: &TaskId, h: &Header, state: TaskState) -> TaskInfo {
    TaskInfo {
        id: id.clone(),
        state,
        method: h.method.clone(),
        path: h.path.clone(),
        key: h.key.clone(),
        created: h.created,
        due: h.due,
        attempts: h.attempts,
        last_error: h.last_error.clone(),
        body_bytes: h.body_bytes,
    }
}

/// Forgets idempotency keys older than [`KEYS_KEPT`], every ten minutes.
async fn prune_keys(queue: std::sync::Weak<Queue>) {
    loop {
        tokio::time::sleep(Duration::from_secs(600)).await;
        let Some(queue) = queue.upgrade() else { return };
        let cutoff = Utc::now() - chrono::Duration::from_std(KEYS_KEPT).unwrap_or_default();
        let old: Vec<String> = {
            let mut s = queue.state.lock().unwrap();
            let old: Vec<String> = s
                .keys
                .iter()
                .filter(|(_, (_, at))| *at < cutoff)
                .map(|(k, _)| k.clone())
                .collect();
            for key in &old {
                s.keys.remove(key);
            }
            old
        };
        let dir = queue.dir.clone();
        let _ = tokio::task::spawn_blocking(move || old.iter().try_for_each(|k| dir.remove_key(k)))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_1_s_to_an_hour() {
        let delays: Vec<u64> = (1..=14).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600]
        );
    }
}
