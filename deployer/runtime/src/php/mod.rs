//! PHP apps (`platform = php`), as Silver Lining ran them: a php-fpm master per release, rooted
//! at the release's real path and run as the app's user, with a pool and a `php.ini` silver
//! writes; the router reaches it through an in-process FastCGI gateway (`gateway.rs`) on the
//! release's loopback port, so routing, draining, deadlines and the shedder treat it as any
//! other web process.
//!
//! One master per release is what makes a deploy safe: the new release's master starts beside
//! the old one with a cold opcache of its own files, answers its health check, takes the
//! route, and the old master drains and stops (SIGQUIT). No shared master is reloaded, so no
//! request is cut (php-src #11723) and no worker serves the old code after the switch
//! (deployphp/deployer #2061, Caddy #3587).

pub mod gateway;
mod give_way;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use silver_types::AppConfig;

/// The master runner every dynamic request goes through (`run/silver_runner.php`).
pub const MASTER_RUNNER: &str = include_str!("silver_runner.php");
/// Silver Lining's `silver_next_path()` and `silver_call_next()` (`run/silver_functions.php`).
pub const FUNCTIONS: &str = include_str!("silver_functions.php");
pub const MASTER_RUNNER_FILE: &str = "silver_runner.php";
pub const FUNCTIONS_FILE: &str = "silver_functions.php";

/// Where one release's php-fpm files are, under the app's `run/`.
#[derive(Debug, Clone)]
pub struct FpmFiles {
    /// The pool's FastCGI socket.
    pub socket: PathBuf,
    /// php-fpm's own configuration (`--fpm-config`).
    pub conf: PathBuf,
    /// The release's `php.ini` (`-c`, and `PHPRC` for `php` on the command line).
    pub ini: PathBuf,
    /// A directory where each request notes which worker serves it.
    pub board: PathBuf,
    /// The master runner.
    pub master_runner: PathBuf,
}

impl FpmFiles {
    /// The files of the master started for release `label` whose gateway listens on `port`:
    /// one per start, since a restart of the same release starts beside the running one.
    pub fn of(run: &Path, label: &str, port: u16) -> FpmFiles {
        FpmFiles {
            socket: run.join(format!("php-{label}-{port}.sock")),
            conf: run.join(format!("php-fpm-{label}-{port}.conf")),
            ini: FpmFiles::ini_of(run, label),
            board: run.join(format!("php-{label}-{port}.board")),
            master_runner: run.join(MASTER_RUNNER_FILE),
        }
    }

    /// The release's php.ini (the same for every start of it).
    pub fn ini_of(run: &Path, label: &str) -> PathBuf {
        run.join(format!("php-{label}.ini"))
    }
}

/// The node's php-fpm: the newest `/usr/sbin/php-fpm<version>` (Debian's `php-fpm` package
/// installs `php-fpm8.2`, Ubuntu 24.04's `php-fpm8.3`).
pub fn fpm_program() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/sbin")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("php-fpm"))
        })
        .collect();
    found.sort_by_key(|p| version_key(p));
    found.pop()
}

fn version_key(path: &Path) -> Vec<u32> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.trim_start_matches("php-fpm")
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

/// php-fpm's command line for a release: in the foreground, logging to stderr (the agent's
/// log for the release), with silver's pool and php.ini only.
pub fn fpm_argv(program: &Path, files: &FpmFiles) -> Vec<String> {
    vec![
        program.display().to_string(),
        "--nodaemonize".into(),
        "--force-stderr".into(),
        "--fpm-config".into(),
        files.conf.display().to_string(),
        "-c".into(),
        files.ini.display().to_string(),
    ]
}

/// What a release's pool is made of.
pub struct Pool<'a> {
    pub app: &'a str,
    pub label: &'a str,
    pub files: &'a FpmFiles,
    /// Workers (`pm.max_children`): as many as gunicorn would have.
    pub workers: u32,
    pub request_timeout_secs: u64,
    /// Names of the variables the workers get, from the master's environment.
    pub env: &'a BTreeMap<String, String>,
    /// Where PHP may open files at all (`open_basedir`).
    pub open_basedir: Vec<PathBuf>,
}

/// php-fpm's configuration: one pool on the release's socket, `clear_env` with each of the
/// app's variables named in `env[NAME] = $NAME` (php-fpm copies the value from the master's
/// environment, so no value, secrets included, is ever written into a file), only `.php`
/// executed, files opened only inside the release and the app's own directories, and a
/// request ended by php-fpm itself at `request_timeout`.
pub fn fpm_conf(pool: &Pool<'_>) -> String {
    let mut out = format!(
        "; silver: php-fpm for release {label} of {app}. Generated at every start; edits are lost.\n\
         [global]\n\
         ; Opened, but unused: with --force-stderr the log goes to stderr, which the agent\n\
         ; captures (/proc/self/fd/2 is the agent's pipe, which the app's user may not open).\n\
         error_log = /dev/null\n\
         log_level = notice\n\
         daemonize = no\n\
         \n\
         [{app}]\n\
         listen = {socket}\n\
         listen.mode = 0600\n\
         pm = static\n\
         pm.max_children = {workers}\n\
         pm.max_requests = 1000\n\
         request_terminate_timeout = {timeout}s\n\
         catch_workers_output = yes\n\
         decorate_workers_output = no\n\
         security.limit_extensions = .php\n\
         php_admin_value[open_basedir] = {basedir}\n\
         clear_env = yes\n",
        label = pool.label,
        app = pool.app,
        socket = pool.files.socket.display(),
        workers = pool.workers.max(1),
        timeout = pool.request_timeout_secs,
        basedir = pool
            .open_basedir
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
    );
    for name in pool.env.keys().filter(|n| is_env_name(n)) {
        out.push_str(&format!("env[{name}] = ${name}\n"));
    }
    out
}

/// A variable php-fpm can pass: it reads `env[...]` keys as INI names.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The release's `php.ini`: Silver Lining's `<?` short tags, app.ini's memory and upload
/// limits, sessions and uploads in the app's own directories, and an opcache that never checks
/// a file's time again (a release never changes; a new one gets a new master).
pub fn php_ini(config: &AppConfig, data: &Path, tmp: &Path) -> String {
    let memory = config.php.memory_limit.as_deref().unwrap_or("128M");
    let upload = config.php.upload_max_filesize.as_deref().unwrap_or("32M");
    format!(
        "; silver: php.ini for this release. Set memory and upload limits in app.ini\n\
         ; (php.memory_limit, php.upload_max_filesize).\n\
         short_open_tag = On\n\
         memory_limit = {memory}\n\
         upload_max_filesize = {upload}\n\
         post_max_size = {upload}\n\
         expose_php = Off\n\
         ; PHP's own time limit is the app's (the gateway ends a dropped request the same way).\n\
         max_execution_time = {timeout}\n\
         display_errors = Off\n\
         log_errors = On\n\
         variables_order = \"EGPCS\"\n\
         session.save_path = \"{sessions}\"\n\
         upload_tmp_dir = \"{tmp}\"\n\
         sys_temp_dir = \"{tmp}\"\n\
         opcache.enable = 1\n\
         opcache.validate_timestamps = 0\n",
        timeout = config.request_timeout_secs,
        sessions = data.join("php-sessions").display(),
        tmp = tmp.display(),
    )
}

/// The release a php-fpm master is for.
pub struct Release<'a> {
    pub app: &'a str,
    /// Its id12.
    pub label: &'a str,
    /// Its files.
    pub dir: &'a Path,
    pub paths: &'a crate::paths::AppPaths,
    pub config: &'a AppConfig,
    pub user: Option<&'a crate::supervise::AppUser>,
}

/// Writes what a release's php-fpm runs with into the app's `run/`: its pool and php.ini, the
/// master runner and Silver Lining's helpers, an empty board for its workers' notes, and a
/// sessions directory under the app's data. Blocking.
pub(crate) fn write_release(
    c: &Release<'_>,
    env: &BTreeMap<String, String>,
    workers: u32,
    port: u16,
) -> Result<FpmFiles, crate::error::Error> {
    use crate::error::Error;
    let run = c.paths.run();
    let files = FpmFiles::of(&run, c.label, port);
    let sessions = c.paths.data().join("php-sessions");
    for dir in [&files.board, &sessions] {
        if files.board == **dir {
            // Notes of a release that ran before (a restart): none is current now.
            let _ = std::fs::remove_dir_all(dir);
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if let Some(user) = c.user {
            crate::supervise::own_private_dir(dir, user)?;
        }
    }
    // The master is rooted at the release's real path: what a symlink named at start-up is
    // what it serves until it stops.
    let release = std::fs::canonicalize(c.dir).map_err(|e| Error::io(c.dir, e))?;
    let pool = Pool {
        app: c.app,
        label: c.label,
        files: &files,
        workers,
        request_timeout_secs: c.config.request_timeout_secs,
        env,
        open_basedir: vec![release, run.clone(), c.paths.data(), c.paths.tmp()],
    };
    let ini = php_ini(c.config, &c.paths.data(), &c.paths.tmp());
    for (path, content) in [
        (files.conf.clone(), fpm_conf(&pool)),
        (files.ini.clone(), ini),
        (run.join(MASTER_RUNNER_FILE), MASTER_RUNNER.to_string()),
        (run.join(FUNCTIONS_FILE), FUNCTIONS.to_string()),
    ] {
        // Replaced by rename, never written through: `run/` is the app user's, who could have
        // put a symlink here to make the agent (root) overwrite another file.
        let options = safefs::WriteOptions {
            mode: 0o644,
            durability: safefs::Durability::Atomic,
        };
        safefs::write_atomic(&path, content.as_bytes(), options)
            .map_err(|e| Error::io(&path, e))?;
    }
    Ok(files)
}

/// The gateway for a started release: it listens on the release's port once php-fpm's socket
/// is there (until then a probe finds nothing listening, as with any web process that is
/// starting), and serves until the returned task is aborted.
pub(crate) fn start_gateway(
    c: &Release<'_>,
    files: FpmFiles,
    port: u16,
    log: crate::logs::LogSink,
) -> tokio::task::AbortHandle {
    let target = std::sync::Arc::new(gateway::Target {
        app: c.app.to_string(),
        label: c.label.to_string(),
        release: std::fs::canonicalize(c.dir).unwrap_or_else(|_| c.dir.to_path_buf()),
        runner: c.config.runner.clone().unwrap_or_default(),
        php_root: c.config.php_root.clone(),
        priorities: give_way::Priorities::new(files.board.clone()),
        files,
        log,
    });
    let task = tokio::spawn(async move {
        let since = std::time::Instant::now();
        let mut told = false;
        while !target.files.socket.exists() {
            if !told && since.elapsed() > std::time::Duration::from_secs(5) {
                told = true;
                let line = format!(
                    "[silver] still waiting for php-fpm's socket {}",
                    target.files.socket.display()
                );
                target.log.line(&target.label, &line);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => {
                tracing::debug!(port, socket = %target.files.socket.display(), "PHP gateway listening");
                gateway::serve(listener, target).await
            }
            Err(e) => {
                let line =
                    format!("[silver] the PHP gateway cannot listen on 127.0.0.1:{port}: {e}");
                target.log.line(&target.label, &line);
            }
        }
    });
    task.abort_handle()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_names_variables_and_never_their_values() {
        let files = FpmFiles::of(Path::new("/srv/app/run"), "abc123", 8001);
        let env: BTreeMap<String, String> = [
            ("SILVER_SECRET_THING".to_string(), "hunter2".to_string()),
            (
                "CONFIG_MYSQL_HOST".to_string(),
                "127.0.0.1:3306".to_string(),
            ),
            ("bad name".to_string(), "x".to_string()),
        ]
        .into();
        let conf = fpm_conf(&Pool {
            app: "blog",
            label: "abc123",
            files: &files,
            workers: 5,
            request_timeout_secs: 30,
            env: &env,
            open_basedir: vec!["/srv/app/releases/b3x".into(), "/srv/app/run".into()],
        });
        assert!(
            conf.contains("listen = /srv/app/run/php-abc123-8001.sock\n"),
            "{conf}"
        );
        assert!(
            conf.contains("env[CONFIG_MYSQL_HOST] = $CONFIG_MYSQL_HOST\n"),
            "{conf}"
        );
        assert!(conf.contains("request_terminate_timeout = 30s\n"), "{conf}");
        assert!(conf.contains("open_basedir] = /srv/app/releases/b3x:/srv/app/run\n"));
        assert!(
            !conf.contains("hunter2") && !conf.contains("127.0.0.1"),
            "{conf}"
        );
        assert!(!conf.contains("bad name"), "{conf}");
    }

    #[test]
    fn the_newest_fpm_wins() {
        let mut names = ["php-fpm8.2", "php-fpm8.10", "php-fpm7.4"].map(PathBuf::from);
        names.sort_by_key(|p| version_key(p));
        assert_eq!(names.last().unwrap(), Path::new("php-fpm8.10"));
    }
}
