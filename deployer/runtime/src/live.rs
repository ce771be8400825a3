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
use std::time::{Duration, Instant};

use silver_types::appconfig::{AppConfig, Location, UpdateFetch};

use crate::environment::{environment, write_environment, EnvContext};
use crate::error::{Error, Step};
use crate::launch::{self, Gunicorn};
use crate::logs::{LogSink, Rotation};
use crate::paths::AppPaths;
use crate::router::{AppRoute, Backend, Routes, WriteHold};
use crate::supervise::{AppUser, Spec, Supervised};

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

/// A release to bring up.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub app: AppName,
    /// The full id (`b3:…`), or `dev` under `silver serve`.
    pub release: String,
    /// Short form in log lines and static URLs.
    pub label: String,
    /// The release's files.
    pub dir: PathBuf,
    /// The app's own directory outside releases: logs/, data/, run/, cache/.
    /// The app's own state outside its releases.
    pub paths: AppPaths,
    pub config: AppConfig,
    pub locations: Vec<Location>,
    /// Run `update_fetch` before the switch (not when an agent restarts what was running).
    pub update_fetch: bool,
    pub services: Vec<(String, String)>,
    /// Who its processes run as (set by the runtime; None: the agent's own user).
    pub user: Option<AppUser>,
    /// Where `update_fetch` output goes as it comes (`<step> | <line>`), besides the log.
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// The node's config for the app (`silver config`), as of this activation.
    pub settings: BTreeMap<String, String>,
    /// `SILVER_APP_CONFIG`: the configuration directory uploaded with `--config`, else the
    /// release's `config.default`.
    pub app_config: Option<PathBuf>,
    /// `--debug-single-process`: one worker, never more, so a debugger or a print sees every
    /// request in one place.
    pub single_process: bool,
}

impl Candidate {
    /// Hands a line to whoever watches the activation; nobody watching is fine.
    fn report(&self, line: &str) {
        if let Some(progress) = &self.progress {
            let _ = progress.send(line.to_string());
        }
    }

    /// The host the app calls its own: its first location, unless that is a wildcard.
    pub fn canonical_host(&self) -> String {
        self.locations
            .first()
            .map(|l| l.host.clone())
            .filter(|h| !h.starts_with('*'))
            .unwrap_or_else(|| "localhost".into())
    }

    /// The app's configuration directory: uploaded, else the release's `config.default`.
    pub fn app_config(&self) -> Option<PathBuf> {
        self.app_config.clone().or_else(|| {
            self.config
                .config_value("default")
                .map(|d| self.dir.join(d.trim_start_matches('/')))
                .filter(|d| d.starts_with(&self.dir))
        })
    }

    /// `$STATIC_URL`: the release's versioned prefix, the same at every location.
    pub fn static_url(&self) -> String {
        format!("{}{}/", crate::router::STATIC_PREFIX, self.label)
    }

    /// The environment of design §5 plus the runtime's own variables.
    pub fn env(&self, port: Option<u16>, bytecode_cache: bool) -> BTreeMap<String, String> {
        let logs = self.paths.logs();
        let static_url = self.static_url();
        let hostname = self.canonical_host();
        let tmp = self.paths.tmp();
        let ctx = EnvContext {
            label: &self.label,
            tmp: &tmp,
            app: &self.app,
            release: &self.release,
            hostname: &hostname,
            logs: &logs,
            static_url: &static_url,
            port,
            services: &self.services,
            settings: &self.settings,
        };
        let (cache, run) = (self.paths.cache(), self.paths.run());
        let python = launch::PythonDirs {
            release: &self.dir,
            run: &run,
        };
        let mut env = launch::base_env(
            &self.paths.data(),
            bytecode_cache.then_some(cache.as_path()),
            self.config.runner.as_deref(),
            python,
        );
        env.extend(environment(&self.config, &ctx));
        if let Some(dir) = self.app_config() {
            env.insert("SILVER_APP_CONFIG".into(), dir.display().to_string());
        }
        // Read by silver's WSGI shim, which enforces them in each worker.
        env.insert(
            "SILVER_REQUEST_TIMEOUT".into(),
            self.config.request_timeout_secs.to_string(),
        );
        env.insert(
            "SILVER_MAX_MEMORY_MB".into(),
            self.config.max_memory_mb.to_string(),
        );
        env
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
    sinks: Mutex<HashMap<(AppName, String), LogSink>>,
}

struct Live {
    label: String,
    static_dir: PathBuf,
    processes: Vec<Supervised>,
    backend: Option<Arc<Backend>>,
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
                sinks: Default::default(),
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
        if let Some((location, other)) = self.location_taken(&c.app, &c.locations) {
            return Err(Error::LocationTaken {
                location: location.to_string(),
                other,
            });
        }
        let mut c = c;
        c.user = self.app_user(&c.app).await?;
        self.prepare_dirs(&c)?;
        self.provision(&mut c).await.map_err(|e| {
            let failed = self.failed(&c, Step::ProvisionServices, e.to_string(), vec![]);
            failed.with_cause_hint(e.hint())
        })?;
        let has_web = c.config.runner.is_some() || c.config.processes.iter().any(|p| p.web);
        let port = if has_web {
            Some(free_port().map_err(|e| Error::io(c.paths.dir(), e))?)
        } else {
            None
        };
        // gunicorn's own timeout is the backstop behind the shim's watchdog.
        let mut gunicorn = self.inner.config.gunicorn.clone();
        gunicorn.timeout_secs = c.config.request_timeout_secs + 5;
        // A virtualenv with its own gunicorn runs under its own interpreter, whatever version
        // the node's python3 is; without one, it must suit the node's gunicorn.
        gunicorn.python = launch::venv_gunicorn(&c.dir, c.user.as_ref());
        if c.single_process {
            gunicorn.workers = 1;
        }
        let launches = launch::plan(&c.config, &gunicorn, &c.paths.run(), port.unwrap_or(0))
            .map_err(|e| self.failed(&c, Step::Start, e.to_string(), vec![]))?;
        let wsgi = launches
            .iter()
            .any(|l| l.argv.first() == Some(&gunicorn.program.display().to_string()));
        if wsgi && gunicorn.python.is_none() && !gunicorn.program.is_file() {
            let reason =
                "this WSGI app runs under gunicorn, which this node does not have".to_string();
            let hint = "install it on the node: `sudo apt-get install gunicorn` (or ship gunicorn in the app's virtualenv)";
            return Err(self
                .failed(&c, Step::Start, reason, vec![])
                .with_cause_hint(Some(hint.into())));
        }
        let mismatch = gunicorn
            .python
            .is_none()
            .then(|| venv_mismatch(&c.dir))
            .flatten();
        if let Some(reason) = mismatch {
            let hint = "build the virtualenv with the node's python3 (`python3 -m venv`), install gunicorn into it (then its own Python serves it, if the node has that Python), or leave it out with .silverignore and vendor its packages into lib/python";
            return Err(self
                .failed(&c, Step::Start, reason, vec![])
                .with_cause_hint(Some(hint.into())));
        }
        if c.config.config_required() && !c.app_config().is_some_and(|d| d.is_dir()) {
            let reason = "the app requires a configuration directory (`config.required`), and none was given".to_string();
            let hint = "deploy with `--config DIR` (Silver Lining's `silver update --config DIR`), or give the app a `config.default` directory";
            return Err(self
                .failed(&c, Step::Start, reason, vec![])
                .with_cause_hint(Some(hint.into())));
        }
        let env = c.env(port, self.inner.config.bytecode_cache);
        let processes = self.start_processes(&c, &launches, &env)?;
        let backend = port.map(|p| Backend::new(SocketAddr::from(([127, 0, 0, 1], p))));
        let checked = self.check(&c, &processes, backend.as_deref(), &env).await;
        let (checked, hold) = match checked {
            Ok((output, hold)) => (Ok(output), hold),
            Err(failure) => (Err(failure), None),
        };
        let flipped = match checked {
            Ok(output) => tokio::task::spawn_blocking(flip)
                .await
                .map_err(|e| (Step::Flip, e.to_string()))
                .and_then(|r| r.map_err(|e| (Step::Flip, e.to_string())))
                .map(|()| output),
            Err(failure) => Err(failure),
        };
        let update_output = match flipped {
            Ok(output) => output,
            Err((step, reason)) => return Err(self.abandon(&c, processes, step, reason).await),
        };
        if let Err(e) = write_environment(&c.paths.run(), &env, c.user.as_ref()) {
            tracing::warn!(error = %e, "cannot write environment.json");
        }
        let names = processes.iter().map(|p| p.name.clone()).collect();
        let replaced = self.switch(&c, processes, backend).await;
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

    /// Starts the release's processes beside whatever serves now; only `web` gets `PORT`.
    fn start_processes(
        &self,
        c: &Candidate,
        launches: &[launch::Launch],
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<Supervised>, Error> {
        let mut processes = Vec::new();
        for l in launches {
            let mut env = env.clone();
            if !l.web {
                env.remove("PORT");
            }
            processes.push(Supervised::start(Spec {
                name: l.name.clone(),
                release: c.label.clone(),
                argv: l.argv.clone(),
                env,
                cwd: c.dir.clone(),
                user: c.user.clone(),
                log: self.sink(c, &l.name)?,
            }));
        }
        Ok(processes)
    }

    /// A release that failed before the switch: its processes stop, and the error carries the
    /// last lines `web` (or the first process) wrote.
    async fn abandon(
        &self,
        c: &Candidate,
        processes: Vec<Supervised>,
        step: Step,
        reason: String,
    ) -> Error {
        // A script that failed said why in its own output (in the reason, or streamed); the
        // web process's boot lines would only hide it.
        let script = matches!(
            step,
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
        self.failed(c, step, reason, tail)
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
        let old = self.inner.live.lock().await.remove(app);
        if let Some(old) = old {
            drain(old, self.inner.config.clone()).await;
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

    /// Health check, then `update_fetch`; Err((step, reason)).
    async fn check(
        &self,
        c: &Candidate,
        processes: &[Supervised],
        backend: Option<&Backend>,
        env: &BTreeMap<String, String>,
    ) -> Result<(Vec<String>, Option<WriteHold>), (Step, String)> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| (Step::HealthCheck, e.to_string()))?;
        let timeout = Duration::from_secs(c.config.health_timeout_secs);
        // 1. The new web process answers HTTP at all (any status: its tables may not exist yet).
        match backend {
            Some(b) => wait_for(&client, c, b.addr, processes, timeout, any_answer(c))
                .await
                .map_err(|r| (Step::Start, r))?,
            None => {
                // Workers only: they must at least stay up for a moment.
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Some(p) = processes.iter().find(|p| p.exits().0 > 0) {
                    return Err((
                        Step::Start,
                        format!("process `{}` {}", p.name, p.exits().1.unwrap_or_default()),
                    ));
                }
            }
        }
        // 2. Silver Lining's `config.checker = module:function`, called with the config directory.
        if let (true, Some(checker)) = (c.update_fetch, c.config.config_value("checker")) {
            let command = format!(
                "python3 -c 'import importlib, os, sys; m, _, f = sys.argv[1].partition(\":\"); getattr(importlib.import_module(m), f)(os.environ.get(\"SILVER_APP_CONFIG\"))' {}",
                crate::environment::shell_quote(checker)
            );
            let step = Step::ConfigChecker(checker.to_string());
            self.script(c, step.clone(), &command, env)
                .await
                .map_err(|reason| (step, format!("it refused the configuration: {reason}")))?;
        }
        // 3. A checkpoint of the app's data, which a failed migration is rolled back to. From
        // here until the switch (or the restore), writes wait at the front door: none the old
        // release acknowledged is undone by a restore.
        let migrates = c.update_fetch && !c.config.update_fetch.is_empty();
        let keeps_data = !c.config.services.is_empty();
        let hold = match migrates && keeps_data {
            true => {
                let drain = Duration::from_secs(c.config.request_timeout_secs + 1);
                Some(self.inner.routes.hold_writes(&c.app, drain).await)
            }
            false => None,
        };
        let checkpoint = if migrates {
            self.checkpoint(c)
                .await
                .map_err(|e| (Step::Checkpoint, error_chain(&e)))?
        } else {
            None
        };
        let mut output = Vec::new();
        if let Some(dir) = &checkpoint {
            let line = format!("checkpoint | the app's data was saved in {}", dir.display());
            c.report(&line);
            output.push(line);
        }
        let migrated = self
            .migrate_and_check(c, processes, backend, env, &client, output)
            .await;
        match (migrated, checkpoint) {
            (Err((step, reason)), Some(dir)) => {
                let back = match self.restore(c, dir.clone()).await {
                    Ok(_) => "the app's data was restored from the checkpoint taken before update_fetch".to_string(),
                    Err(e) => format!(
                        "restoring the checkpoint taken before update_fetch failed too ({}); it is kept in {}",
                        error_chain(&e),
                        dir.display()
                    ),
                };
                Err((step, format!("{reason}\n{back}")))
            }
            (migrated, _) => migrated.map(|output| (output, hold)),
        }
    }

    /// `update_fetch` (migrations), then the health check on the migrated app.
    async fn migrate_and_check(
        &self,
        c: &Candidate,
        processes: &[Supervised],
        backend: Option<&Backend>,
        env: &BTreeMap<String, String>,
        client: &reqwest::Client,
        mut output: Vec<String>,
    ) -> Result<Vec<String>, (Step, String)> {
        let timeout = Duration::from_secs(c.config.health_timeout_secs);
        // 3. `update_fetch`: migrations, before anything judges the app by its pages.
        if c.update_fetch {
            for step in &c.config.update_fetch {
                let outcome = match step {
                    UpdateFetch::Url(path) => match backend {
                        Some(b) => {
                            let probe = Probe {
                                path,
                                below: 400,
                                update: true,
                            };
                            fetch(client, c, b.addr, &probe, Duration::from_secs(300))
                                .await
                                .map(|body| body.lines().map(String::from).collect())
                        }
                        None => Err("there is no web process to request it from".into()),
                    },
                    UpdateFetch::Script(script) => {
                        self.script(c, Step::UpdateFetch(step.clone()), script, env)
                            .await
                    }
                };
                let is_url = matches!(step, UpdateFetch::Url(_));
                let step = Step::UpdateFetch(step.clone());
                let lines: Vec<String> = outcome
                    .map_err(|reason| (step.clone(), reason))?
                    .into_iter()
                    .map(|l| format!("{step} | {l}"))
                    .collect();
                if is_url {
                    // A URL's answer arrives whole; a script's lines went out as they came.
                    lines.iter().for_each(|l| c.report(l));
                }
                output.extend(lines);
            }
        }
        // 4. The health check, on the migrated app.
        if let Some(b) = backend {
            let probe = Probe {
                path: &c.config.health_check,
                below: c.config.health_below,
                update: false,
            };
            wait_for(client, c, b.addr, processes, timeout, probe)
                .await
                .map_err(|r| (Step::HealthCheck, r))?;
        }
        Ok(output)
    }

    /// Runs one `script:` line in the release, as the app, logging to the `update` log.
    async fn script(
        &self,
        c: &Candidate,
        step: Step,
        script: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, String> {
        let log = self.sink(c, "update").map_err(|e| e.to_string())?;
        let mut cmd = crate::supervise::command(&Spec {
            name: "update".into(),
            release: c.label.clone(),
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: env.clone(),
            cwd: c.dir.clone(),
            user: c.user.clone(),
            log: log.clone(),
        });
        let run = async {
            let mut child = cmd.spawn().map_err(|e| format!("could not start: {e}"))?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            forward_lines(child.stdout.take(), tx.clone());
            forward_lines(child.stderr.take(), tx);
            // Each line is logged as it comes, with its own time, and kept for the deployer.
            let mut lines = Vec::new();
            while let Some(line) = rx.recv().await {
                log.line(&c.label, &line);
                c.report(&format!("{step} | {line}"));
                if lines.len() < MAX_UPDATE_LINES {
                    lines.push(line);
                }
            }
            let status = child
                .wait()
                .await
                .map_err(|e| format!("could not wait for it: {e}"))?;
            if status.success() {
                return Ok(lines);
            }
            // A deployer that watched saw every line as it came: said once, not again here.
            if c.progress.is_some() {
                return Err(describe_status(status));
            }
            let tail = &lines[lines.len().saturating_sub(20)..];
            Err(format!("{}\n{}", describe_status(status), tail.join("\n")))
        };
        tokio::time::timeout(Duration::from_secs(600), run)
            .await
            .unwrap_or_else(|_| Err("did not finish within 600 s".into()))
    }

    /// For a gunicorn app, a task that grows its pool while every worker is busy and shrinks it
    /// back once it idles; it ends with the release's backend.
    fn size_pool(&self, c: &Candidate, processes: &[Supervised], backend: Option<&Arc<Backend>>) {
        let (Some(backend), Some(web), Some(_), false) = (
            backend,
            processes.iter().find(|p| p.name == "web"),
            c.config.runner.as_ref(),
            c.single_process,
        ) else {
            return;
        };
        let Ok(log) = self.sink(c, "web") else { return };
        let pool = Pool {
            backend: Arc::downgrade(backend),
            master: web.handle(),
            base: self.inner.config.gunicorn.workers,
            log,
            label: c.label.clone(),
        };
        tokio::spawn(pool.run());
    }

    /// Moves traffic: the new route replaces the old in one step, then the old release drains.
    async fn switch(
        &self,
        c: &Candidate,
        processes: Vec<Supervised>,
        backend: Option<Arc<Backend>>,
    ) -> Option<String> {
        self.size_pool(c, &processes, backend.as_ref());
        let mut live = self.inner.live.lock().await;
        let old = live.remove(&c.app);
        let static_dir = c.dir.join("static");
        let mut statics = vec![(c.label.clone(), static_dir.clone())];
        if let Some(old) = old.as_ref().filter(|o| o.label != c.label) {
            statics.push((old.label.clone(), old.static_dir.clone()));
        }
        let maintenance = self.inner.routes.get(&c.app).is_some_and(|r| r.maintenance)
            || c.paths.maintenance_flag().exists();
        self.inner.routes.set(
            &c.app,
            AppRoute {
                locations: c.locations.clone(),
                backend: backend.clone(),
                statics,
                maintenance,
                request_timeout: Some(Duration::from_secs(c.config.request_timeout_secs)),
                writable_root: c
                    .config
                    .services
                    .iter()
                    .any(|(kind, _)| *kind == silver_types::ServiceKind::WritableRoot)
                    .then(|| c.paths.writable_root()),
            },
        );
        live.insert(
            c.app.clone(),
            Live {
                label: c.label.clone(),
                static_dir,
                processes,
                backend,
            },
        );
        drop(live);
        let old = old?;
        let label = old.label.clone();
        let config = self.inner.config.clone();
        tokio::spawn(drain(old, config));
        Some(label)
    }

    fn prepare_dirs(&self, c: &Candidate) -> Result<(), Error> {
        if let Some(user) = &c.user {
            check_reachable(&c.dir, user)?;
        }
        let p = &c.paths;
        if c.update_fetch {
            empty_dir(&p.tmp())?;
        }
        for dir in [p.logs(), p.data(), p.run(), p.cache(), p.tmp()] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            // The app's own state: its user alone may enter (an earlier agent may have made
            // these for a shared user, so ownership is set every time).
            if let Some(user) = &c.user {
                crate::supervise::own_private_dir(&dir, user)?;
            }
        }
        let shim = format!("{}.py", launch::WSGI_SHIM_MODULE);
        let config = format!("{}.py", launch::GUNICORN_CONFIG_MODULE);
        for (name, content) in [
            (shim.as_str(), launch::WSGI_SHIM),
            (config.as_str(), launch::GUNICORN_CONFIG),
            ("sitecustomize.py", launch::SITE_CUSTOMIZE),
            ("silversupport.py", launch::SILVERSUPPORT),
        ] {
            let path = c.paths.run().join(name);
            // Replaced by rename, never written through: `run/` is the app user's, who could
            // have put a symlink here to make the agent (root) overwrite another file.
            let options = safefs::WriteOptions {
                mode: 0o644,
                durability: safefs::Durability::Atomic,
            };
            safefs::write_atomic(&path, content.as_bytes(), options)
                .map_err(|e| Error::io(&path, e))?;
        }
        write_app_secret(p, c.user.as_ref())
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

    fn failed(&self, c: &Candidate, step: Step, reason: String, log_tail: Vec<String>) -> Error {
        tracing::warn!(%step, reason = %reason, "release failed before the switch");
        Error::Activation {
            app: c.app.clone(),
            release: c.label.clone(),
            step,
            reason,
            log_tail,
            // The route table still names the app only if an earlier release serves it.
            previous_serves: self.inner.routes.get(&c.app).is_some(),
            cause_hint: None,
        }
    }
}

/// Waits for in-flight requests (up to the grace), then stops the old processes.
async fn drain(old: Live, config: RuntimeConfig) {
    let deadline = Instant::now() + config.drain_grace;
    if let Some(b) = &old.backend {
        while b.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(release = %old.label, in_flight = b.in_flight(), "drained");
    }
    let stops = old.processes.into_iter().map(|p| p.stop(config.stop_grace));
    futures_util::future::join_all(stops).await;
}

/// An internal request and the statuses that pass it.
struct Probe<'a> {
    path: &'a str,
    /// Passes with a status below this.
    below: u16,
    /// An `update_fetch` request (the app sees `silverlining.update`), not a health check.
    update: bool,
}

/// The health check's path, where any HTTP answer at all shows the process serves.
fn any_answer(c: &Candidate) -> Probe<'_> {
    Probe {
        path: &c.config.health_check,
        below: 600,
        update: false,
    }
}

/// Polls `probe` until it passes, the web process exits, or `timeout` passes.
async fn wait_for(
    client: &reqwest::Client,
    c: &Candidate,
    addr: SocketAddr,
    processes: &[Supervised],
    timeout: Duration,
    probe: Probe<'_>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let web = processes.iter().find(|p| p.name == "web");
    loop {
        if let Some((_, Some(how))) = web.map(Supervised::exits).filter(|e| e.0 > 0) {
            return Err(format!(
                "the web process {how} before it answered GET {}",
                probe.path
            ));
        }
        let last = match fetch(client, c, addr, &probe, Duration::from_secs(5)).await {
            Ok(_) => return Ok(()),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "GET {} did not pass within {} s (last: {last})",
                probe.path,
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One internal GET, as the router would send it. A failing answer is told with its status
/// and the start of its body, where the app usually says what went wrong.
async fn fetch(
    client: &reqwest::Client,
    c: &Candidate,
    addr: SocketAddr,
    probe: &Probe<'_>,
    timeout: Duration,
) -> Result<String, String> {
    let path = probe.path;
    let prefix = c
        .locations
        .first()
        .map(|l| l.path.clone())
        .filter(|p| p != "/")
        .unwrap_or_default();
    let mut request = client
        .get(format!("http://{addr}{prefix}{path}"))
        .timeout(timeout)
        .header("host", c.canonical_host())
        .header("x-forwarded-proto", "http")
        // The router drops X-Silver-* from clients: only the node's own requests carry it. The
        // shim turns it into Silver Lining's `silverlining.internal` and `silverlining.update`.
        .header(
            "x-silver-internal",
            if probe.update { "update" } else { "check" },
        );
    if !prefix.is_empty() {
        request = request.header("x-silver-script-name", &prefix);
    }
    match request.send().await {
        Ok(r) if r.status().as_u16() < probe.below => {
            let body = r.bytes().await.unwrap_or_default();
            Ok(String::from_utf8_lossy(&body[..body.len().min(2048)]).into_owned())
        }
        Ok(r) => {
            let status = r.status();
            let body = r.bytes().await.unwrap_or_default();
            let shown = String::from_utf8_lossy(&body[..body.len().min(2048)]).into_owned();
            let cut = if body.len() > 2048 { "\n(…)" } else { "" };
            Err(format!(
                "GET {path} answered {status}:\n{}{cut}",
                shown.trim_end()
            ))
        }
        Err(e) if e.is_connect() => Err("connection refused".into()),
        Err(e) if e.is_timeout() => Err(format!("GET {path} timed out")),
        Err(e) => Err(format!("GET {path} failed: {e}")),
    }
}

/// A port nobody listens on right now. The app binds it a moment later; the window is small
/// and a collision shows up as a failed health check, never as traffic to the wrong process.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// gunicorn's worker pool, sized by how many of the router's requests to it are stuck (in
/// flight for over `STUCK_AFTER`): the base pool plus one worker per stuck request (SIGTTIN to the
/// master), up to four times the base, and back down (SIGTTOU) once they have been done for
/// five seconds. Stuck requests (a slow query, a `sleep`, a wedge until its deadline) then cost
/// capacity instead of the whole app, while a busy but healthy app keeps its base pool.
/// A request in flight this long holds its worker: the pool grows by one for it. A quarter
/// second is long for one request of a healthy app, and short beside a stuck one.
const STUCK_AFTER: Duration = Duration::from_millis(250);

struct Pool {
    backend: std::sync::Weak<Backend>,
    master: crate::supervise::ProcessHandle,
    base: u32,
    log: LogSink,
    label: String,
}

impl Pool {
    async fn run(self) {
        use nix::sys::signal::Signal;
        let max = self.base * 4;
        let mut workers = self.base;
        let mut pid = self.master.pid();
        let mut idle_since: Option<Instant> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Some(backend) = self.backend.upgrade() else {
                return; // the release is gone
            };
            if self.master.pid() != pid {
                // gunicorn was restarted: it starts over with the base pool.
                pid = self.master.pid();
                workers = self.base;
            }
            let stuck = backend.older_than(STUCK_AFTER) as u32;
            let wanted = (self.base + stuck).min(max);
            if wanted > workers && self.master.signal(Signal::SIGTTIN) {
                workers += 1;
                idle_since = None;
                self.say(&format!(
                    "grows to {workers} workers ({stuck} requests stuck)"
                ));
            } else if workers > wanted {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(5) && self.master.signal(Signal::SIGTTOU)
                {
                    workers -= 1;
                    idle_since = None;
                    self.say(&format!("shrinks to {workers} workers"));
                }
            } else {
                idle_since = None;
            }
        }
    }

    fn say(&self, what: &str) {
        self.log
            .line(&self.label, &format!("[silver] web pool {what}"));
    }
}

/// Empties the app's `TEMP` (Silver Lining emptied it on every update). `remove_dir_all` never
/// follows a symlink the app left there, so nothing outside it goes.
fn empty_dir(dir: &Path) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        // The running release's processes make and unlink files there too (gunicorn's worker
        // heartbeats): one gone already is what emptying wants.
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&path, e)),
            _ => {}
        }
    }
    Ok(())
}

/// The app's secret for `silversupport.secret.get_secret()`: made once in the agent's own
/// `services/` (the app cannot change it there), and copied to `run/silver-secret` (0600, the
/// app's user's), beside the module that reads it.
fn write_app_secret(p: &AppPaths, user: Option<&AppUser>) -> Result<(), Error> {
    let master = p.services().join("app-secret");
    std::fs::create_dir_all(p.services()).map_err(|e| Error::io(&p.services(), e))?;
    let secret = safefs::load_or_create_secret(&master, 24).map_err(|e| Error::io(&master, e))?;
    let copy = p.run().join("silver-secret");
    safefs::write_atomic(&copy, secret.as_bytes(), safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(&copy, e))?;
    if let Some(user) = user {
        std::os::unix::fs::chown(&copy, Some(user.uid), Some(user.gid))
            .map_err(|e| Error::io(&copy, e))?;
    }
    Ok(())
}

/// The most lines of `update_fetch` output handed back to the deployer (the log keeps all).
const MAX_UPDATE_LINES: usize = 2000;

/// Sends each line `pipe` yields to `tx`, as it comes.
fn forward_lines<R>(pipe: Option<R>, tx: tokio::sync::mpsc::UnboundedSender<String>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    use tokio::io::AsyncBufReadExt;
    let Some(pipe) = pipe else { return };
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// Why the release's virtualenv cannot run here: it was made for another Python version than
/// the node's `python3` (its packages would be silently skipped, and the app would fail later
/// with `ModuleNotFoundError`).
fn venv_mismatch(release: &Path) -> Option<String> {
    let venv = packer::venv::find(release)?;
    let wanted = venv.python()?;
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .ok()?;
    let node = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if node.is_empty() || node == wanted {
        return None;
    }
    let name = venv
        .dir
        .strip_prefix(release)
        .unwrap_or(&venv.dir)
        .display()
        .to_string();
    Some(format!(
        "virtualenv `{name}` was made for Python {wanted} by {}/python, but this node's python3 is {node}",
        venv.home.as_deref().unwrap_or("?"),
    ))
}

/// Apps run as an unprivileged user, who must be able to walk down to the release.
fn check_reachable(dir: &Path, user: &AppUser) -> Result<(), Error> {
    match crate::supervise::first_blocked(dir, user) {
        Ok(None) => Ok(()),
        Ok(Some((dir, mode))) => Err(Error::Unreachable {
            user: user.name.clone(),
            dir,
            mode,
        }),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// An error and its causes on one line (`a: b: c`), as a deployer reads it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "failed".into(),
    }
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
