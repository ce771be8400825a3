//! The candidate: a release to bring up, with everything its activation needs to know, and the
//! environment its processes get.

use std::collections::BTreeMap;
use std::path::PathBuf;

use silver_types::appconfig::{AppConfig, Location};
use silver_types::AppName;

use crate::environment::{environment, EnvContext};
use crate::launch;
use crate::paths::AppPaths;
use crate::supervise::AppUser;

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
    /// The variables its services gave it (`CONFIG_*`, `DATABASE_URL`), once provisioned.
    pub services: Vec<(String, String)>,
    /// Who its processes run as (set by the runtime; None: the agent's own user).
    pub user: Option<AppUser>,
    /// Where `update_fetch` output goes as it comes (`<step> | <line>`), besides the log.
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// The node's config for the app (`silver config`), as of this activation.
    pub settings: BTreeMap<silver_types::VarName, silver_types::VarValue>,
    /// `SILVER_APP_CONFIG`: the configuration directory uploaded with `--config`, else the
    /// release's `config.default`.
    pub app_config: Option<PathBuf>,
    /// `--debug-single-process`: one worker, never more, so a debugger or a print sees every
    /// request in one place.
    pub single_process: bool,
}

impl Candidate {
    /// Hands a line to whoever watches the activation; nobody watching is fine.
    pub fn report(&self, line: &str) {
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

    /// The path of its first location, as the router passes it on (`/blog`), or empty for
    /// `/`: what internal requests start with.
    pub fn location_prefix(&self) -> String {
        self.locations
            .first()
            .map(|l| l.path.clone())
            .filter(|p| p != "/")
            .unwrap_or_default()
    }

    /// Where the release, its web process at `addr`, answers internal requests.
    pub fn internal_target(&self, addr: Option<std::net::SocketAddr>) -> crate::internal::Target {
        crate::internal::Target {
            label: self.label.clone(),
            host: self.canonical_host(),
            prefix: self.location_prefix(),
            addr,
            request_timeout: std::time::Duration::from_secs(self.config.request_timeout_secs),
        }
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
        // Where `silversupport.tasks.add` (or any HTTP client) queues the app's tasks.
        let socket = self.paths.run().join(crate::tasks::SOCKET_NAME);
        env.insert("SILVER_TASKS_SOCKET".into(), socket.display().to_string());
        // Read by silver's WSGI shim, which enforces them in each worker.
        env.insert(
            "SILVER_REQUEST_TIMEOUT".into(),
            self.config.request_timeout_secs.to_string(),
        );
        env.insert(
            "SILVER_MAX_MEMORY_MB".into(),
            self.config.max_memory_mb.to_string(),
        );
        if self.config.is_php() {
            php_env(
                &mut env,
                &crate::php::FpmFiles::ini_of(&self.paths.run(), &self.label),
            );
        }
        env
    }
}

/// What a PHP app's processes and commands get besides: the release's php.ini for `php` on the
/// command line (`PHPRC`), and Silver Lining's PHP form of `CONFIG_MYSQL_HOST`, which PHP's
/// connect functions and WordPress's `DB_HOST` take whole: `host:port`.
fn php_env(env: &mut BTreeMap<String, String>, ini: &std::path::Path) {
    env.insert("PHPRC".into(), ini.display().to_string());
    if let (Some(host), Some(port)) = (env.get("CONFIG_MYSQL_HOST"), env.get("CONFIG_MYSQL_PORT")) {
        if !host.is_empty() && !port.is_empty() && !host.contains(':') {
            let both = format!("{host}:{port}");
            env.insert("CONFIG_MYSQL_HOST".into(), both);
        }
    }
}
