//! Runs releases (design §4 and §5): starts a release's processes beside the live ones, waits
//! for its health check, runs `update_fetch`, then flips and moves traffic, and drains and stops
//! the release it replaced. A failure before the flip stops only the new processes.
//!
//! The store is not touched here: the caller passes the flip as a closure, so `silver serve`
//! (which has no store) reloads through the same steps.

use silver_types::AppName;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use silver_types::appconfig::{AppConfig, Location, UpdateFetch};

use crate::activation::{hooks, pool, probe, stage, start, switch};
use crate::environment::write_environment;
use crate::error::{Cause, Error, Failure, Step};
use crate::launch::Gunicorn;
use crate::logs::{LogSink, Rotation};
use crate::router::{Backend, Routes, WriteHold};
use crate::supervise::{AppUser, Supervised};

pub use crate::activation::candidate::Candidate;

/// How the node runs apps.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Who apps run as: each its own user as root, else the agent's own user.
    pub users: crate::users::AppUsers,
    /// The node's id (made once under its root): part of app user names and service
    /// credentials, so two nodes on one host never share them.
    pub node_id: String,
    pub gunicorn: Gunicorn,
    /// How long the replaced release may take to finish its in-flight requests.
    pub drain_grace: Duration,
    /// How long a process may take to exit after SIGTERM before it is killed.
    pub stop_grace: Duration,
    pub rotation: Rotation,
    /// Send app output to the terminal instead of log files (`silver serve`).
    pub log_to_terminal: bool,
    /// Keep Python bytecode in the app's cache. Right for releases, whose paths never change
    /// content; wrong for `silver serve`, where an edit within the same second and of the same
    /// size would look unchanged to Python and run stale code.
    pub bytecode_cache: bool,
    /// The servers behind the app's services (PostgreSQL, MariaDB, Redis, CouchDB).
    pub servers: crate::services::Servers,
    /// Limits on the front door's public connections.
    pub front: crate::front_door::FrontConfig,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            users: Default::default(),
            node_id: "local".into(),
            gunicorn: Gunicorn::default(),
            drain_grace: Duration::from_secs(30),
            stop_grace: Duration::from_secs(30),
            rotation: Rotation::default(),
            log_to_terminal: false,
            bytecode_cache: true,
            servers: Default::default(),
            front: Default::default(),
        }
    }
}

/// The live releases of every app, and the routing table the front door reads.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    config: RuntimeConfig,
    /// Every service, over `config.servers`: made once.
    registry: crate::services::Registry,
    routes: Routes,
    live: tokio::sync::Mutex<HashMap<AppName, Live>>,
    /// Fleet deploys: releases started and checked, waiting for their commit.
    prepared: tokio::sync::Mutex<HashMap<AppName, Started>>,
    /// Fleet deploys: the release a commit replaced, still running with its route, until the
    /// deploy is confirmed (then it drains) or reverted (then it serves again at once).
    standby: tokio::sync::Mutex<HashMap<AppName, Standby>>,
    sinks: Mutex<HashMap<(AppName, String), LogSink>>,
    /// Cron jobs with a run going, by app: shared by an app's releases.
    cron_running: Arc<crate::cron::Running>,
    /// Each app's task queue, opened when a release of it first goes live.
    tasks: tokio::sync::Mutex<HashMap<AppName, Arc<crate::tasks::Queue>>>,
}

/// A release started and checked beside the live one, before its flip.
struct Started {
    c: Candidate,
    processes: Vec<Supervised>,
    backend: Option<Arc<Backend>>,
    port: Option<u16>,
    env: BTreeMap<String, String>,
    update_output: Vec<String>,
    hold: Option<WriteHold>,
}

/// A release a fleet commit replaced, still running: its route, and the release that replaced
/// it (whose checkpoint a revert puts back if it migrated).
struct Standby {
    /// None for an app's first release: a revert takes its route away.
    old: Option<(Live, crate::router::AppRoute)>,
    new: Candidate,
}

/// What a revert undid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reverted {
    /// A prepared release was stopped; nothing had moved.
    Discarded,
    /// Traffic went back to the release still running beside.
    SwitchedBack,
    /// There was nothing to undo.
    Nothing,
}

/// What a switch does with the release it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Old {
    Drain,
    Keep,
}

struct Live {
    label: String,
    static_dir: PathBuf,
    processes: Vec<Supervised>,
    backend: Option<Arc<Backend>>,
    /// Its `[cron]` jobs, scheduled while it is the app's live release.
    cron: Option<CronTable>,
    /// Where the app's tasks go while it is live.
    tasks: crate::tasks::Live,
}

/// A release's jobs and the task that schedules them (stopped when dropped or set aside).
struct CronTable {
    release: Arc<crate::cron::Release>,
    task: Option<tokio::task::AbortHandle>,
}

impl CronTable {
    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for CronTable {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One live app, as the metrics sampler reads it.
#[derive(Debug, Clone)]
pub struct AppSample {
    pub app: AppName,
    /// The live release's label (id12): its counters start at zero.
    pub release: String,
    /// Its router counts since the release went live.
    pub stats: crate::router::Stats,
    pub in_flight: usize,
    /// Each supervised process: its pid (None while it restarts) and how often it exited.
    pub processes: Vec<(Option<u32>, u64)>,
}

/// What a successful activation did.
#[derive(Debug, Clone)]
pub struct Activated {
    pub port: Option<u16>,
    pub processes: Vec<String>,
    /// Set when an older release was replaced; it drains in the background.
    pub replaced: Option<String>,
    /// What `update_fetch` printed (or its URLs answered), each line `<step> | <line>`.
    pub update_output: Vec<String>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig, routes: Routes) -> Runtime {
        crate::supervise::allow_default_priority();
        Runtime {
            inner: Arc::new(Inner {
                registry: crate::services::Registry::new(&config.servers),
                config,
                routes,
                live: Default::default(),
                prepared: Default::default(),
                standby: Default::default(),
                sinks: Default::default(),
                cron_running: Default::default(),
                tasks: Default::default(),
            }),
        }
    }

    pub fn routes(&self) -> &Routes {
        &self.inner.routes
    }

    /// The user an app's processes run as, made now if it is the app's own and does not exist
    /// yet; None: the agent's own user.
    pub async fn app_user(&self, app: &AppName) -> Result<Option<AppUser>, Error> {
        use crate::users::AppUsers;
        match &self.inner.config.users {
            AppUsers::Invoker => Ok(None),
            AppUsers::Shared(user) => Ok(Some(user.clone())),
            AppUsers::PerApp => {
                let (node, app) = (self.inner.config.node_id.clone(), app.clone());
                tokio::task::spawn_blocking(move || crate::users::ensure(&node, &app))
                    .await
                    .map_err(|source| Error::Worker {
                        doing: "making the app's user",
                        source,
                    })?
                    .map(Some)
            }
        }
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The app that already answers at one of `locations`, if another does.
    pub fn location_taken(
        &self,
        app: &AppName,
        locations: &[Location],
    ) -> Option<(Location, AppName)> {
        locations.iter().find_map(|l| {
            self.inner
                .routes
                .owner(l, app)
                .map(|other| (l.clone(), other))
        })
    }

    /// Test before activate. On success the release serves and the one it replaced drains; on
    /// failure nothing that users see has changed.
    /// `flip` is the caller's switch (the node's `current`); its error only becomes the
    /// failure's reason, so it may be the caller's own type.
    pub async fn activate<E: std::fmt::Display + Send + 'static>(
        &self,
        c: Candidate,
        flip: impl FnOnce() -> Result<(), E> + Send + 'static,
    ) -> Result<Activated, Error> {
        let span = tracing::info_span!("start", app = %c.app, release = %c.label);
        tracing::Instrument::instrument(self.activate_inner(c, flip), span).await
    }

    async fn activate_inner<E: std::fmt::Display + Send + 'static>(
        &self,
        c: Candidate,
        flip: impl FnOnce() -> Result<(), E> + Send + 'static,
    ) -> Result<Activated, Error> {
        let started = self.start_checked(c).await?;
        self.finish(started, flip, Old::Drain).await
    }

    /// Stages, provisions, starts and checks a candidate beside the live release: everything
    /// before the flip. On failure its processes are stopped and nothing users see changed.
    async fn start_checked(&self, c: Candidate) -> Result<Started, Error> {
        if let Some((location, other)) = self.location_taken(&c.app, &c.locations) {
            return Err(Error::LocationTaken {
                location: location.to_string(),
                other,
            });
        }
        let mut c = c;
        c.user = self.app_user(&c.app).await?;
        let staged = c.clone();
        blocking("staging the release", move || stage::prepare_dirs(&staged)).await??;
        if let Err(e) = self.provision(&mut c).await {
            let failure = Failure::new(Step::ProvisionServices, e);
            return Err(self.failed(&c, failure, vec![]));
        }
        let (planned, gunicorn) = (c.clone(), self.inner.config.gunicorn.clone());
        let plan = blocking("planning the release's processes", move || {
            start::plan(&planned, gunicorn)
        })
        .await?;
        let (launches, port) = plan.map_err(|f| self.failed(&c, f, vec![]))?;
        let env = c.env(port, self.inner.config.bytecode_cache);
        let workers = self.inner.config.gunicorn.workers;
        let php = match (c.config.is_php(), port) {
            (true, Some(port)) => {
                let (staged, env) = (c.clone(), env.clone());
                let files = blocking("writing the release's php-fpm files", move || {
                    crate::php::write_release(&php_release(&staged), &env, workers, port)
                })
                .await?;
                Some(files.map_err(|e| self.failed(&c, Failure::new(Step::Start, e), vec![]))?)
            }
            _ => None,
        };
        let processes = start::start_processes(&c, &launches, &env, |name| self.sink(&c, name))?;
        let capacity = web_capacity(&c, workers);
        let backend = port.map(|p| Backend::new(SocketAddr::from(([127, 0, 0, 1], p)), capacity));
        if let (Some(files), Some(backend), Some(port)) = (php, &backend, port) {
            let log = self.sink(&c, "web")?;
            backend.hold(crate::php::start_gateway(
                &php_release(&c),
                files,
                port,
                log,
            ));
        }
        match self.check(&c, &processes, backend.as_deref(), &env).await {
            Ok((update_output, hold)) => Ok(Started {
                c,
                processes,
                backend,
                port,
                env,
                update_output,
                hold,
            }),
            Err(failure) => Err(self.abandon(&c, processes, failure).await),
        }
    }

    /// Flips, moves traffic to the started release, and drains the old one or keeps it
    /// running beside (`Old::Keep`, a fleet's commit: the revert is a route change).
    async fn finish<E: std::fmt::Display + Send + 'static>(
        &self,
        started: Started,
        flip: impl FnOnce() -> Result<(), E> + Send + 'static,
        old: Old,
    ) -> Result<Activated, Error> {
        let Started {
            c,
            processes,
            backend,
            port,
            env,
            update_output,
            hold,
        } = started;
        let flipped = match tokio::task::spawn_blocking(flip).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::new(Step::Flip, Cause::Flip(e.to_string()))),
            Err(e) => Err(Failure::new(Step::Flip, Cause::Flip(e.to_string()))),
        };
        if let Err(failure) = flipped {
            return Err(self.abandon(&c, processes, failure).await);
        }
        let (run, user, written) = (c.paths.run(), c.user.clone(), env.clone());
        let wrote = blocking("writing the environment", move || {
            write_environment(&run, &written, user.as_ref())
        })
        .await;
        if let Err(e) = wrote.and_then(|r| r) {
            tracing::warn!(error = %e, "cannot write environment.json");
        }
        let names = processes.iter().map(|p| p.name.clone()).collect();
        let replaced = self.switch(&c, processes, backend, &env, old).await;
        // Held writes go on now, to the release that serves.
        drop(hold);
        tracing::info!(
            port,
            replaced = replaced.as_deref().unwrap_or("-"),
            "release serves"
        );
        Ok(Activated {
            port,
            processes: names,
            replaced,
            update_output,
        })
    }

    /// A release that failed before the switch: its processes stop, and the error carries the
    /// last lines `web` (or the first process) wrote.
    async fn abandon(&self, c: &Candidate, processes: Vec<Supervised>, failure: Failure) -> Error {
        // A script that failed said why in its own output (in the reason, or streamed); the
        // web process's boot lines would only hide it.
        let script = matches!(
            failure.step,
            Step::UpdateFetch(UpdateFetch::Script(_)) | Step::ConfigChecker(_)
        );
        let tail = processes
            .iter()
            .find(|p| p.name == "web")
            .or(processes.first())
            .filter(|_| !script)
            .map(Supervised::recent_output)
            .unwrap_or_default();
        for p in processes {
            p.stop(Duration::from_secs(5)).await;
        }
        self.failed(c, failure, tail)
    }

    /// Provisions the services the release names (idempotent) and sets their variables.
    pub async fn provision(&self, c: &mut Candidate) -> Result<(), Error> {
        if c.config.services.is_empty() && c.config.packages.is_empty() {
            return Ok(());
        }
        let packages = c.config.packages.clone();
        c.services = self
            .with_data(c, move |d| {
                crate::services::check_packages(d.tenant.app, &packages)?;
                crate::services::provision(d)
            })
            .await?;
        Ok(())
    }

    /// Moves an app to `locations` without a restart; with none left it stops serving: its
    /// route goes and its processes drain and stop, as a replaced release's do.
    pub async fn relocate(&self, app: &AppName, locations: Vec<Location>) {
        if !locations.is_empty() {
            if let Some(mut route) = self.inner.routes.get(app) {
                route.locations = locations;
                self.inner.routes.set(app, route);
            }
            return;
        }
        self.inner.routes.remove(app);
        if let Some(queue) = self.inner.tasks.lock().await.get(app) {
            queue.set_target(None);
        }
        let old = self.inner.live.lock().await.remove(app);
        if let Some(old) = old {
            old.drain(self.graces()).await;
        }
    }

    /// Sets maintenance mode for an app's route (the caller persists it).
    pub fn set_maintenance(&self, app: &AppName, on: bool) {
        self.inner.routes.set_maintenance(app, on);
    }

    /// The live release of an app, by label.
    pub async fn live_release(&self, app: &AppName) -> Option<String> {
        self.inner
            .live
            .lock()
            .await
            .get(app)
            .map(|l| l.label.clone())
    }

    /// The names of an app's live processes.
    pub async fn live_processes(&self, app: &AppName) -> Vec<String> {
        self.inner
            .live
            .lock()
            .await
            .get(app)
            .map(|l| l.processes.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Stops every app (the agent is shutting down), each process given its grace.
    pub async fn shutdown(&self) {
        for queue in self.inner.tasks.lock().await.values() {
            queue.close();
        }
        let all: Vec<Live> = self
            .inner
            .live
            .lock()
            .await
            .drain()
            .map(|(_, l)| l)
            .collect();
        let grace = self.inner.config.stop_grace;
        let stops = all
            .into_iter()
            .flat_map(|l| l.processes)
            .map(|p| p.stop(grace));
        futures_util::future::join_all(stops).await;
    }

    /// The candidate's checks and hooks, in order: it answers at all, `config.checker`, a
    /// checkpoint of the app's data (writes held from here until the switch), `update_fetch`,
    /// then the health check on the migrated app; a failure after the checkpoint puts the data
    /// back. Returns `update_fetch`'s output and the hold on writes.
    async fn check(
        &self,
        c: &Candidate,
        processes: &[Supervised],
        backend: Option<&Backend>,
        env: &BTreeMap<String, String>,
    ) -> Result<(Vec<String>, Option<WriteHold>), Failure> {
        let client = reqwest::Client::builder()
            .no_proxy()
            // A redirect is the app's answer (WordPress sends `/` to its installer): following
            // it would leave the node for whatever host the app names.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Failure::new(Step::HealthCheck, Cause::App(e.to_string())))?;
        let timeout = Duration::from_secs(c.config.health_timeout_secs);
        let log = self
            .sink(c, "update")
            .map_err(|e| Failure::new(Step::Start, e))?;
        // 1. The new web process answers HTTP at all (any status: its tables may not exist yet).
        match backend {
            Some(b) => {
                probe::wait_for(&client, c, b.addr, processes, timeout, probe::any_answer(c))
                    .await
                    .map_err(|r| Failure::new(Step::Start, Cause::App(r)))?
            }
            None => probe::stays_up(processes)
                .await
                .map_err(|r| Failure::new(Step::Start, Cause::App(r)))?,
        }
        // 2. Silver Lining's `config.checker`.
        hooks::config_checker(c, env, &log).await?;
        // 3. A checkpoint of the app's data, which a failed migration is rolled back to. From
        // here until the switch (or the restore), writes wait at the front door: none the old
        // release acknowledged is undone by a restore.
        let migrates = c.update_fetch && !c.config.update_fetch.is_empty();
        let hold = match migrates && !c.config.services.is_empty() {
            true => {
                let drain = Duration::from_secs(c.config.request_timeout_secs + 1);
                Some(self.inner.routes.hold_writes(&c.app, drain).await)
            }
            false => None,
        };
        let checkpoint = match migrates {
            true => self
                .checkpoint(c)
                .await
                .map_err(|e| Failure::new(Step::Checkpoint, e))?,
            false => None,
        };
        let mut output = Vec::new();
        if let Some(dir) = &checkpoint {
            let line = format!("checkpoint | the app's data was saved in {}", dir.display());
            c.report(&line);
            output.push(line);
        }
        // 4. `update_fetch` (migrations), then 5. the health check on the migrated app.
        let migrated = async {
            let addr = backend.map(|b| b.addr);
            output.extend(hooks::update_fetch(c, addr, env, &client, &log).await?);
            if let Some(b) = backend {
                let probe = probe::Probe {
                    path: &c.config.health_check,
                    below: c.config.health_below,
                    update: false,
                };
                probe::wait_for(&client, c, b.addr, processes, timeout, probe)
                    .await
                    .map_err(|r| Failure::new(Step::HealthCheck, Cause::App(r)))?;
            }
            Ok(output)
        }
        .await;
        match (migrated, checkpoint) {
            (Err(failure), Some(dir)) => Err(self.roll_back(c, failure, dir).await),
            (migrated, _) => migrated.map(|output| (output, hold)),
        }
    }

    /// Puts back the checkpoint taken before `update_fetch`, after `failure`.
    async fn roll_back(&self, c: &Candidate, failure: Failure, dir: PathBuf) -> Failure {
        let restore = match self.restore(c, dir.clone()).await {
            Ok(_) => "the app's data was restored from the checkpoint taken before update_fetch"
                .to_string(),
            Err(e) => format!(
                "restoring the checkpoint taken before update_fetch failed too ({}); it is kept in {}",
                crate::error::chain(&e),
                dir.display()
            ),
        };
        Failure {
            step: failure.step,
            cause: Cause::RolledBack {
                first: Box::new(failure.cause),
                restore,
            },
        }
    }

    /// For a gunicorn app, a task that grows its pool while every worker is busy and shrinks it
    /// back once it idles; it ends with the release's backend.
    fn size_pool(&self, c: &Candidate, processes: &[Supervised], backend: Option<&Arc<Backend>>) {
        let (Some(backend), Some(web), Some(_), false, false) = (
            backend,
            processes.iter().find(|p| p.name == "web"),
            c.config.runner.as_ref(),
            c.single_process,
            c.config.is_php(), // php-fpm's pool is fixed (`pm = static`)
        ) else {
            return;
        };
        let Ok(log) = self.sink(c, "web") else { return };
        let pool = pool::Pool {
            backend: Arc::downgrade(backend),
            master: web.handle(),
            base: self.inner.config.gunicorn.workers,
            log,
            label: c.label.clone(),
        };
        tokio::spawn(pool.run());
    }

    /// For every backend whose capacity is known, the task that ends requests wedged while
    /// others wait (`shed.rs`); it ends with the release's backend.
    fn shed(&self, c: &Candidate, backend: Option<&Arc<Backend>>) {
        let Some(backend) = backend else { return };
        let Ok(log) = self.sink(c, "web") else { return };
        let timeout = Duration::from_secs(c.config.request_timeout_secs);
        let task = crate::shed::run(Arc::downgrade(backend), timeout, log, c.label.clone());
        tokio::spawn(task);
    }

    /// Moves traffic: the new route replaces the old in one step, then the old release drains
    /// (or, kept, waits beside it with the route it had).
    async fn switch(
        &self,
        c: &Candidate,
        processes: Vec<Supervised>,
        backend: Option<Arc<Backend>>,
        env: &BTreeMap<String, String>,
        keep: Old,
    ) -> Option<String> {
        self.size_pool(c, &processes, backend.as_ref());
        self.shed(c, backend.as_ref());
        let cron = self.cron_table(c, backend.as_ref(), env);
        let fleet = match self.sink(c, "tasks") {
            Ok(log) => shared_db(c, env, &log),
            Err(_) => None,
        };
        let tasks = crate::tasks::Live {
            target: c.internal_target(backend.as_ref().map(|b| b.addr)),
            settings: crate::tasks::Settings::of(&c.config),
            fleet: fleet.map(|db| Arc::new(crate::tasks::Fleet::new(db, &c.app))),
        };
        self.task_queue(c, Some(tasks.clone())).await;
        let mut live = self.inner.live.lock().await;
        let mut old = live.remove(&c.app);
        // The job table goes with the release: the old one's stops (a kept one's resumes if a
        // revert puts it back).
        if let Some(table) = old.as_mut().and_then(|o| o.cron.as_mut()) {
            table.stop();
        }
        let old_route = self.inner.routes.get(&c.app);
        let previous = old
            .as_ref()
            .filter(|o| o.label != c.label)
            .map(|o| (o.label.clone(), o.static_dir.clone()));
        let maintenance = self.inner.routes.get(&c.app).is_some_and(|r| r.maintenance)
            || c.paths.maintenance_flag().exists();
        let route = switch::route(c, backend.clone(), previous, maintenance);
        self.inner.routes.set(&c.app, route);
        live.insert(
            c.app.clone(),
            Live {
                label: c.label.clone(),
                static_dir: c.dir.join("static"),
                processes,
                backend,
                cron,
                tasks,
            },
        );
        drop(live);
        let label = old.as_ref().map(|o| o.label.clone());
        match keep {
            Old::Keep => {
                let standby = Standby {
                    old: old.zip(old_route),
                    new: c.clone(),
                };
                let stale = self
                    .inner
                    .standby
                    .lock()
                    .await
                    .insert(c.app.clone(), standby);
                if let Some((stale, _)) = stale.and_then(|s| s.old) {
                    tokio::spawn(stale.drain(self.graces()));
                }
            }
            Old::Drain => {
                if let Some(old) = old {
                    tokio::spawn(old.drain(self.graces()));
                }
            }
        }
        label
    }

    /// The release's `[cron]` jobs, scheduled from now; None for an app without any.
    fn cron_table(
        &self,
        c: &Candidate,
        backend: Option<&Arc<Backend>>,
        env: &BTreeMap<String, String>,
    ) -> Option<CronTable> {
        if c.config.cron.is_empty() {
            return None;
        }
        let log = self.sink(c, "cron").ok()?;
        let (routes, app) = (self.inner.routes.clone(), c.app.clone());
        let shared = shared_db(c, env, &log);
        let release = Arc::new(crate::cron::Release {
            app: c.app.clone(),
            target: c.internal_target(backend.map(|b| b.addr)),
            log,
            dir: c.dir.clone(),
            env: env.clone(),
            user: c.user.clone(),
            shared,
            node: self.inner.config.node_id.clone(),
            records: c.paths.cron(),
            jobs: c.config.cron.clone(),
            paused: Arc::new(move || routes.get(&app).is_some_and(|r| r.maintenance)),
        });
        let task = crate::cron::spawn(release.clone(), self.inner.cron_running.clone());
        Some(CronTable {
            release,
            task: Some(task),
        })
    }

    /// Opens the app's task queue if it is not open yet, and points it at `live`.
    async fn task_queue(&self, c: &Candidate, live: Option<crate::tasks::Live>) {
        let mut queues = self.inner.tasks.lock().await;
        if let Some(queue) = queues.get(&c.app) {
            queue.set_target(live);
            return;
        }
        let Ok(log) = self.sink(c, "tasks") else {
            return;
        };
        let (routes, app) = (self.inner.routes.clone(), c.app.clone());
        let (uid, gid) = match &c.user {
            Some(user) => (user.uid, user.gid),
            None => (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ),
        };
        let opening = crate::tasks::Opening {
            app: c.app.clone(),
            dir: &c.paths.tasks(),
            run: &c.paths.run(),
            uid,
            gid,
            log,
            paused: Arc::new(move || routes.get(&app).is_some_and(|r| r.maintenance)),
            node: self.inner.config.node_id.clone(),
        };
        match crate::tasks::Queue::open(opening).await {
            Ok(queue) => {
                queue.set_target(live);
                queues.insert(c.app.clone(), queue);
            }
            Err(e) => {
                tracing::warn!(app = %c.app, error = %silver_types::error_chain(&e), "the app's task queue could not be opened");
            }
        }
    }

    /// The app's task queue, if a release of it has gone live since the agent started.
    pub async fn tasks(&self, app: &AppName) -> Option<Arc<crate::tasks::Queue>> {
        self.inner.tasks.lock().await.get(app).cloned()
    }

    /// Each of the live release's `[cron]` jobs with its runs; None if the app is not live.
    pub async fn cron_jobs(&self, app: &AppName) -> Option<Vec<silver_types::cron::JobStatus>> {
        let live = self.inner.live.lock().await;
        let l = live.get(app)?;
        let Some(table) = &l.cron else {
            return Some(vec![]);
        };
        let now = chrono::Utc::now();
        let release = &table.release;
        Some(
            release
                .jobs
                .iter()
                .map(|job| {
                    let records = crate::cron::records(&release.records, &job.name);
                    silver_types::cron::JobStatus::of(job, &records, now)
                })
                .collect(),
        )
    }

    /// Every live app's `[cron]` jobs with how many ticks in a row, up to the last, did not
    /// succeed: what the status page alerts on.
    pub async fn cron_failing(&self) -> Vec<(AppName, String, u32)> {
        let live = self.inner.live.lock().await;
        let now = chrono::Utc::now();
        let mut out = Vec::new();
        for (app, table) in live.iter().filter_map(|(a, l)| Some((a, l.cron.as_ref()?))) {
            for job in &table.release.jobs {
                let records = crate::cron::records(&table.release.records, &job.name);
                let status = silver_types::cron::JobStatus::of(job, &records, now);
                out.push((app.clone(), job.name.clone(), status.failing));
            }
        }
        out
    }

    /// Runs one of the live release's jobs now and waits for it (and its retries); None if the
    /// app is not live or has no such job.
    pub async fn cron_run(
        &self,
        app: &AppName,
        job: &str,
    ) -> Option<Vec<silver_types::cron::RunRecord>> {
        let release = {
            let live = self.inner.live.lock().await;
            live.get(app)?.cron.as_ref()?.release.clone()
        };
        crate::cron::run_now(release, self.inner.cron_running.clone(), job).await
    }

    fn graces(&self) -> switch::Graces {
        switch::Graces {
            drain: self.inner.config.drain_grace,
            stop: self.inner.config.stop_grace,
        }
    }

    /// One log per app and process, shared by the releases that run it.
    fn sink(&self, c: &Candidate, process: &str) -> Result<LogSink, Error> {
        if self.inner.config.log_to_terminal {
            return Ok(LogSink::Stderr {
                prefix: format!("{process:>6}"),
            });
        }
        let mut sinks = self.inner.sinks.lock().unwrap();
        let key = (c.app.clone(), process.to_string());
        if let Some(sink) = sinks.get(&key) {
            return Ok(sink.clone());
        }
        let path = c.paths.log(process);
        let sink = LogSink::file(path.clone(), self.inner.config.rotation)
            .map_err(|e| Error::io(&path, e))?;
        sinks.insert(key, sink.clone());
        Ok(sink)
    }

    fn failed(&self, c: &Candidate, failure: Failure, log_tail: Vec<String>) -> Error {
        tracing::warn!(step = %failure.step, reason = %failure.cause, "release failed before the switch");
        Error::Activation {
            app: c.app.clone(),
            release: c.label.clone(),
            failure,
            log_tail,
            // The route table still names the app only if an earlier release serves it.
            previous_serves: self.inner.routes.get(&c.app).is_some(),
        }
    }
}

impl Live {
    /// Lets the replaced release finish its requests, then stops it; its jobs stop at once.
    async fn drain(mut self, graces: switch::Graces) {
        drop(self.cron.take());
        switch::drain(&self.label, self.processes, self.backend, graces).await
    }
}

/// The app's shared database (`shared_database = VAR`), from the variable's value in its
/// environment. Without the variable (`silver serve`, a single node) the app has none, said
/// once in its cron log.
fn shared_db(
    c: &Candidate,
    env: &BTreeMap<String, String>,
    log: &LogSink,
) -> Option<crate::shared::SharedDb> {
    let var = c.config.shared_database.as_ref()?;
    let url = env.get(var.as_str()).filter(|u| !u.is_empty());
    let parsed = url.map(|u| crate::shared::SharedDb::parse(u));
    let line = match parsed {
        Some(Ok(db)) => return Some(db),
        Some(Err(e)) => format!(
            "[silver] shared_database: ${var} {}; jobs run on this node alone",
            silver_types::error_chain(&e)
        ),
        None => format!("[silver] shared_database: ${var} is not set; jobs run on this node alone"),
    };
    log.line(&c.label, &line);
    None
}

/// Runs blocking work (file system, child processes) off the async threads.
async fn blocking<T: Send + 'static>(
    doing: &'static str,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|source| Error::Worker { doing, source })
}

/// Reads a release's `app.ini` into settings; a release without one is a static site.
pub fn release_config(dir: &Path) -> Result<AppConfig, Error> {
    let ini = if dir.join("app.ini").is_file() {
        silver_types::appini::AppIni::load(dir)?
    } else {
        silver_types::appini::AppIni::parse("", &dir.join("app.ini"))?
    };
    Ok(AppConfig::from_ini(&ini)?)
}

/// An app's data: backups, checkpoints, restores and clears, each on a blocking thread with
/// the app's services, user and servers.
impl Runtime {
    /// Runs `job` on a blocking thread over the data of `c`'s app.
    pub(crate) async fn with_data<T: Send + 'static>(
        &self,
        c: &Candidate,
        job: impl FnOnce(&crate::services::AppData) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let user = match &c.user {
            Some(user) => Some(user.clone()),
            None => self.app_user(&c.app).await?,
        };
        let inner = self.inner.clone();
        let (app, paths, services) = (c.app.clone(), c.paths.clone(), c.config.services.clone());
        tokio::task::spawn_blocking(move || {
            let tenant = crate::services::Tenant {
                node: &inner.config.node_id,
                app: &app,
                paths: &paths,
                user: user.as_ref(),
            };
            job(&crate::services::AppData {
                tenant,
                services: &services,
                registry: &inner.registry,
            })
        })
        .await
        .map_err(|source| Error::Worker {
            doing: "handling the app's data",
            source,
        })?
    }

    /// Dumps the data of `c`'s app into `dir` (made, empty).
    pub async fn backup(
        &self,
        c: &Candidate,
        dir: PathBuf,
    ) -> Result<crate::data::BackupInfo, Error> {
        let release = c.release.clone();
        self.with_data(c, move |d| {
            crate::data::dump(d, &release, &crate::data::now_utc(), &dir)
        })
        .await
    }

    /// Takes the checkpoint of `c` (before its `update_fetch`): None when the app keeps no data.
    pub(crate) async fn checkpoint(&self, c: &Candidate) -> Result<Option<PathBuf>, Error> {
        let (release, dir) = (c.release.clone(), c.paths.checkpoint(&c.label));
        self.with_data(c, move |d| {
            if !d.has_data() {
                return Ok(None);
            }
            let parent = d.tenant.paths.checkpoints();
            crate::data::private_dir(&parent)?;
            let fresh = safefs::temp_dir_in(&parent).map_err(|e| Error::io(&parent, e))?;
            crate::data::dump(d, &release, &crate::data::now_utc(), fresh.path())?;
            crate::data::remove_tree(&dir)?;
            std::fs::rename(fresh.keep(), &dir).map_err(|e| Error::io(&dir, e))?;
            Ok(Some(dir))
        })
        .await
    }

    /// Replaces the data of `c`'s app with the backup in `dir`.
    pub async fn restore(
        &self,
        c: &Candidate,
        dir: std::path::PathBuf,
    ) -> Result<crate::data::BackupInfo, Error> {
        self.with_data(c, move |d| crate::restore::restore(d, &dir))
            .await
    }

    /// Drops the data of `c`'s app.
    pub async fn clear(&self, c: &Candidate) -> Result<(), Error> {
        self.with_data(c, crate::restore::clear).await
    }

    /// Finishes or undoes a restore of `c`'s app that a crash interrupted; run before the app
    /// starts.
    pub async fn recover(&self, c: &Candidate) -> Result<Option<crate::restore::Outcome>, Error> {
        if crate::restore::pending(&c.paths).is_none() {
            return Ok(None);
        }
        self.with_data(c, crate::restore::recover).await
    }
}

/// Two-phase activation, for fleet deploys (design §9): `prepare` starts and checks a release
/// beside the live one and stops before the flip; `commit` flips and moves traffic but keeps
/// the old release running; `confirm` drains it; `revert` undoes either step at once. The
/// caller holds the app's lock from prepare to confirm or revert.
impl Runtime {
    /// Starts and checks `c` beside the live release, with no traffic; returns what
    /// `update_fetch` printed. Writes held for `update_fetch` go on at the end of it: in a
    /// fleet, the old release keeps serving on the migrated data until the commit.
    pub async fn prepare(&self, c: Candidate) -> Result<Vec<String>, Error> {
        let app = c.app.clone();
        let mut started = self.start_checked(c).await?;
        drop(started.hold.take());
        let output = started.update_output.clone();
        let stale = self.inner.prepared.lock().await.insert(app, started);
        if let Some(stale) = stale {
            self.stop_started(stale).await;
        }
        Ok(output)
    }

    /// Flips (the caller's `flip`) and moves traffic to the prepared release; the one it
    /// replaces keeps running until `confirm` or `revert`.
    pub async fn commit<E: std::fmt::Display + Send + 'static>(
        &self,
        app: &AppName,
        flip: impl FnOnce() -> Result<(), E> + Send + 'static,
    ) -> Result<Activated, Error> {
        let started = self.inner.prepared.lock().await.remove(app);
        let started = started.ok_or_else(|| Error::NotPrepared { app: app.clone() })?;
        self.finish(started, flip, Old::Keep).await
    }

    /// The deploy is confirmed: the release it replaced drains and stops.
    pub async fn confirm(&self, app: &AppName) {
        let standby = self.inner.standby.lock().await.remove(app);
        if let Some((old, _)) = standby.and_then(|s| s.old) {
            tokio::spawn(old.drain(self.graces()));
        }
    }

    /// Undoes a prepare (the prepared release stops) or a commit (`flip_back` puts the
    /// caller's `current` back, traffic goes back to the release still running, the new one
    /// drains). A release that ran `update_fetch` has its checkpoint put back.
    pub async fn revert<E: std::fmt::Display + Send + 'static>(
        &self,
        app: &AppName,
        flip_back: impl FnOnce() -> Result<(), E> + Send + 'static,
    ) -> Result<Reverted, Error> {
        let prepared = self.inner.prepared.lock().await.remove(app);
        if let Some(started) = prepared {
            let c = started.c.clone();
            self.stop_started(started).await;
            self.put_back_checkpoint(&c).await;
            return Ok(Reverted::Discarded);
        }
        let standby = self.inner.standby.lock().await.remove(app);
        let Some(standby) = standby else {
            return Ok(Reverted::Nothing);
        };
        let flipped = tokio::task::spawn_blocking(flip_back)
            .await
            .map_err(|source| Error::Worker {
                doing: "flipping back",
                source,
            })?;
        if let Err(e) = flipped {
            // `current` could not go back: traffic stays where `current` says.
            self.inner.standby.lock().await.insert(app.clone(), standby);
            return Err(Error::Revert {
                app: app.clone(),
                why: e.to_string(),
            });
        }
        let Standby { old, new } = standby;
        let mut live = self.inner.live.lock().await;
        let replaced = match old {
            Some((mut old, route)) => {
                self.inner.routes.set(app, route);
                if let Some(table) = old.cron.as_mut() {
                    let running = self.inner.cron_running.clone();
                    table.task = Some(crate::cron::spawn(table.release.clone(), running));
                }
                if let Some(queue) = self.inner.tasks.lock().await.get(app) {
                    queue.set_target(Some(old.tasks.clone()));
                }
                live.insert(app.clone(), old)
            }
            None => {
                self.inner.routes.remove(app);
                if let Some(queue) = self.inner.tasks.lock().await.get(app) {
                    queue.set_target(None);
                }
                live.remove(app)
            }
        };
        drop(live);
        if let Some(replaced) = replaced {
            tokio::spawn(replaced.drain(self.graces()));
        }
        self.put_back_checkpoint(&new).await;
        tracing::warn!(%app, release = %new.label, "reverted: the previous release serves again");
        Ok(Reverted::SwitchedBack)
    }

    /// The answers so far of the live release and of the one kept beside it (fleet observe).
    /// What the metrics sampler reads of every live app: its release, router counts and
    /// the processes it runs.
    pub async fn app_samples(&self) -> Vec<AppSample> {
        let live = self.inner.live.lock().await;
        live.iter()
            .map(|(app, l)| AppSample {
                app: app.clone(),
                release: l.label.clone(),
                stats: l.backend.as_ref().map(|b| b.stats()).unwrap_or_default(),
                in_flight: l.backend.as_ref().map_or(0, |b| b.in_flight()),
                processes: l
                    .processes
                    .iter()
                    .map(|p| (p.handle().pid(), u64::from(p.exits().count)))
                    .collect(),
            })
            .collect()
    }

    pub async fn release_stats(
        &self,
        app: &AppName,
    ) -> (Option<crate::router::Stats>, Option<crate::router::Stats>) {
        let live = self.inner.live.lock().await;
        let new = live
            .get(app)
            .and_then(|l| l.backend.as_ref())
            .map(|b| b.stats());
        drop(live);
        let standby = self.inner.standby.lock().await;
        let old = standby
            .get(app)
            .and_then(|s| s.old.as_ref())
            .and_then(|(l, _)| l.backend.as_ref())
            .map(|b| b.stats());
        (new, old)
    }

    async fn stop_started(&self, started: Started) {
        let grace = self.inner.config.stop_grace;
        let stops = started.processes.into_iter().map(|p| p.stop(grace));
        futures_util::future::join_all(stops).await;
    }

    /// After a revert of a release that ran `update_fetch`: its checkpoint goes back.
    async fn put_back_checkpoint(&self, c: &Candidate) {
        let migrated = c.update_fetch && !c.config.update_fetch.is_empty();
        let dir = c.paths.checkpoint(&c.label);
        if !migrated || !dir.is_dir() {
            return;
        }
        match self.restore(c, dir.clone()).await {
            Ok(_) => {
                tracing::warn!(app = %c.app, checkpoint = %dir.display(), "the checkpoint taken before update_fetch was put back")
            }
            Err(e) => {
                tracing::error!(app = %c.app, error = %crate::error::chain(&e), checkpoint = %dir.display(), "cannot put the checkpoint back")
            }
        }
    }
}

/// How many requests a release's web process serves at once: gunicorn's (or php-fpm's) workers
/// for a runner, unknown (0) for an app's own `[processes] web` command.
fn web_capacity(c: &Candidate, workers: u32) -> usize {
    match (&c.config.runner, c.single_process) {
        (Some(_), true) => 1,
        (Some(_), false) => workers as usize,
        (None, _) => 0,
    }
}

fn php_release(c: &Candidate) -> crate::php::Release<'_> {
    crate::php::Release {
        app: c.app.as_str(),
        label: &c.label,
        dir: &c.dir,
        paths: &c.paths,
        config: &c.config,
        user: c.user.as_ref(),
    }
}
