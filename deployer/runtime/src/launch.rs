//! What to run for a release: the `web` process (gunicorn for a WSGI `runner`, or the app's own
//! `[processes] web` command) and the workers, with their command lines and environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use silver_types::appconfig::AppConfig;

use crate::error::Error;

/// One process of a release, before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub name: String,
    pub web: bool,
    pub argv: Vec<String>,
    /// What stops it gracefully (see `Spec::stop_signal`).
    pub stop_signal: nix::sys::signal::Signal,
}

/// How the node runs WSGI apps.
#[derive(Debug, Clone)]
pub struct Gunicorn {
    /// The system's gunicorn (`/usr/bin/gunicorn` from Debian's `gunicorn` package).
    pub program: PathBuf,
    /// A virtualenv's own Python, which runs `-m gunicorn` instead (see `venv_gunicorn`).
    pub python: Option<PathBuf>,
    pub workers: u32,
    /// Seconds before a silent worker is killed and replaced.
    pub timeout_secs: u64,
    /// Requests after which a worker is recycled (with jitter, so they do not all go at once).
    pub max_requests: u32,
    /// Load the app once in the master, before forking workers (`--preload`): every worker of
    /// a release runs the same code (under `silver serve`, a worker booting late would otherwise
    /// load code edited since), and an app that cannot even be imported fails at once rather
    /// than at the end of its health timeout.
    pub preload: bool,
}

/// gunicorn's own advice for sync workers, `2 * cores + 1`: while one worker waits on the
/// database another computes, and a request that wedges until it is abandoned leaves others
/// free before the pool has had time to grow.
pub fn default_workers() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    2 * cores + 1
}

impl Default for Gunicorn {
    fn default() -> Self {
        Gunicorn {
            program: find_program("gunicorn").unwrap_or_else(|| PathBuf::from("gunicorn")),
            python: None,
            workers: default_workers(),
            timeout_secs: 30,
            max_requests: 1000,
            preload: true,
        }
    }
}

/// The shim gunicorn loads: the release's libraries on `sys.path`, the runner loaded from its
/// file, and the router's path prefix moved to `SCRIPT_NAME`.
/// Silver Lining's `silversupport` compatibility module, written beside the shim (on every
/// process's `PYTHONPATH`): `secret.get_secret`, `secret.get_key`, `env.is_production`.
pub const SILVERSUPPORT: &str = include_str!("silversupport.py");

pub const WSGI_SHIM: &str = include_str!("silver_wsgi.py");
pub const WSGI_SHIM_MODULE: &str = "silver_wsgi";

/// gunicorn settings beside the shim: the hook that logs what a worker that died was serving.
pub const GUNICORN_CONFIG: &str = include_str!("silver_gunicorn.py");
pub const GUNICORN_CONFIG_MODULE: &str = "silver_gunicorn";

/// The processes of a release. `shim_dir` holds [`WSGI_SHIM`]; `port` is the web port.
pub fn plan(
    config: &AppConfig,
    gunicorn: &Gunicorn,
    shim_dir: &Path,
    port: u16,
) -> Result<Vec<Launch>, Error> {
    let mut launches = Vec::new();
    let web_command = config.processes.iter().find(|p| p.web);
    match (web_command, &config.runner) {
        (Some(web), _) => launches.push(shell(&web.name, &web.command, true)),
        (None, Some(runner)) => {
            if !runner.ends_with(".py") {
                return Err(Error::NotPython {
                    runner: runner.clone(),
                });
            }
            launches.push(Launch {
                name: "web".into(),
                web: true,
                argv: gunicorn_argv(gunicorn, shim_dir, port),
                stop_signal: nix::sys::signal::Signal::SIGTERM,
            });
        }
        (None, None) => {}
    }
    for p in config.processes.iter().filter(|p| !p.web) {
        launches.push(shell(&p.name, &p.command, false));
    }
    Ok(launches)
}

/// A PHP app's processes: its php-fpm master as `web` (stopped with SIGQUIT, which lets its
/// requests finish), then its `[workers]` as for any app.
pub fn php(config: &AppConfig, fpm_argv: Vec<String>) -> Vec<Launch> {
    let web = Launch {
        name: "web".into(),
        web: true,
        argv: fpm_argv,
        stop_signal: nix::sys::signal::Signal::SIGQUIT,
    };
    let workers = config.processes.iter().filter(|p| !p.web);
    std::iter::once(web)
        .chain(workers.map(|p| shell(&p.name, &p.command, false)))
        .collect()
}

/// The sitecustomize every Python of the app loads (see `silver_site.py`).
pub const SITE_CUSTOMIZE: &str = include_str!("silver_site.py");

/// Where a release's Python lives: its directory, and the app's `run/` (which holds
/// `sitecustomize.py`).
#[derive(Debug, Clone, Copy)]
pub struct PythonDirs<'a> {
    pub release: &'a Path,
    pub run: &'a Path,
}

/// Variables the runtime adds for its own sake, beside the app's environment of design §5:
/// the app's own Python first (a virtualenv's `bin` on PATH with `VIRTUAL_ENV`, `lib/python`
/// and the sitecustomize that reads its `.pth` files on PYTHONPATH), so that `python3 manage.py
/// migrate` in a script or `silver run` finds what the web process finds.
pub fn base_env(
    home: &Path,
    bytecode_cache: Option<&Path>,
    runner: Option<&str>,
    python: PythonDirs<'_>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let system_path = "/usr/local/bin:/usr/bin:/bin";
    match virtualenv(python.release) {
        Some(venv) => {
            env.insert(
                "PATH".into(),
                format!("{}:{system_path}", venv.join("bin").display()),
            );
            env.insert("VIRTUAL_ENV".into(), venv.display().to_string());
        }
        None => {
            env.insert("PATH".into(), system_path.into());
        }
    }
    env.insert(
        "PYTHONPATH".into(),
        format!(
            "{}:{}",
            python.run.display(),
            python.release.join("lib/python").display()
        ),
    );
    env.insert(
        "SILVER_RELEASE_DIR".into(),
        python.release.display().to_string(),
    );
    env.insert("LANG".into(), "C.UTF-8".into());
    env.insert("HOME".into(), home.display().to_string());
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    match bytecode_cache {
        // Releases are read-only: bytecode goes to the app's cache instead.
        Some(cache) => env.insert("PYTHONPYCACHEPREFIX".into(), cache.display().to_string()),
        None => env.insert("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
    };
    if let Some(runner) = runner {
        env.insert("SILVER_RUNNER".into(), runner.into());
    }
    env
}

/// The `bin/python` of a virtualenv shipped in the release that has gunicorn installed, when the
/// interpreter it links to is on this node and the app's user may run it (a pyenv Python under
/// `/root` is not): the app then runs on the Python it was built for.
pub fn venv_gunicorn(release: &Path, user: Option<&crate::supervise::AppUser>) -> Option<PathBuf> {
    let venv = packer::venv::find(release)?;
    let python = venv.dir.join("bin/python");
    // Where the link really goes: an interpreter the node lacks leaves the system gunicorn.
    let real = std::fs::canonicalize(&python)
        .ok()
        .filter(|p| p.is_file())?;
    if let Some(user) = user {
        let dir = real.parent()?;
        if !matches!(crate::supervise::first_blocked(dir, user), Ok(None)) {
            return None;
        }
    }
    let libs = std::fs::read_dir(venv.dir.join("lib")).ok()?;
    let has_gunicorn = libs.flatten().any(|lib| {
        lib.path()
            .join("site-packages/gunicorn/__init__.py")
            .is_file()
    });
    has_gunicorn.then_some(python)
}

/// A virtualenv shipped in the release (see `packer::venv::find`).
pub fn virtualenv(release: &Path) -> Option<std::path::PathBuf> {
    packer::venv::find(release).map(|v| v.dir)
}

fn shell(name: &str, command: &str, web: bool) -> Launch {
    Launch {
        name: name.into(),
        web,
        // `exec`, so the signal to stop reaches the command and not just the shell.
        argv: vec!["/bin/sh".into(), "-c".into(), format!("exec {command}")],
        stop_signal: nix::sys::signal::Signal::SIGTERM,
    }
}

fn gunicorn_argv(g: &Gunicorn, shim_dir: &Path, port: u16) -> Vec<String> {
    let mut argv: Vec<String> = match &g.python {
        Some(python) => vec![python.display().to_string(), "-m".into(), "gunicorn".into()],
        None => vec![g.program.display().to_string()],
    };
    let flags: [(&str, String); 11] = [
        ("--bind", format!("127.0.0.1:{port}")),
        ("--workers", g.workers.to_string()),
        ("--timeout", g.timeout_secs.to_string()),
        ("--graceful-timeout", g.timeout_secs.to_string()),
        ("--max-requests", g.max_requests.to_string()),
        ("--max-requests-jitter", (g.max_requests / 10).to_string()),
        ("--pythonpath", shim_dir.display().to_string()),
        ("--access-logfile", "-".into()),
        ("--error-logfile", "-".into()),
        // The router is the only client; trust its X-Forwarded-Proto.
        ("--forwarded-allow-ips", "127.0.0.1".into()),
        // Its `child_exit` hook names the request a worker that died silently was serving.
        ("--config", format!("python:{GUNICORN_CONFIG_MODULE}")),
    ];
    for (flag, value) in flags {
        argv.push(flag.into());
        argv.push(value);
    }
    if g.preload {
        argv.push("--preload".into());
    }
    argv.push(format!("{WSGI_SHIM_MODULE}:application"));
    argv
}

/// The first `name` on the usual system PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ini: &str, expected: &[(&str, bool, &str)]) {
        let ini = silver_types::appini::AppIni::parse(ini, Path::new("app.ini")).unwrap();
        let config = AppConfig::from_ini(&ini).unwrap();
        let g = Gunicorn {
            program: "/usr/bin/gunicorn".into(),
            workers: 3,
            ..Gunicorn::default()
        };
        let got: Vec<(String, bool, String)> = plan(&config, &g, Path::new("/run"), 8001)
            .unwrap()
            .into_iter()
            .map(|l| (l.name, l.web, l.argv.join(" ")))
            .collect();
        let want: Vec<(String, bool, String)> = expected
            .iter()
            .map(|(n, w, a)| (n.to_string(), *w, a.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn plans() {
        check(
            "[production]\nrunner = app.py\n",
            &[("web", true, "/usr/bin/gunicorn --bind 127.0.0.1:8001 --workers 3 --timeout 30 --graceful-timeout 30 --max-requests 1000 --max-requests-jitter 100 --pythonpath /run --access-logfile - --error-logfile - --forwarded-allow-ips 127.0.0.1 --config python:silver_gunicorn --preload silver_wsgi:application")],
        );
        check(
            "[production]\nrunner = app.py\n[processes]\nweb = ./server --port $PORT\nmailer = python3 mail.py\n",
            &[
                ("web", true, "/bin/sh -c exec ./server --port $PORT"),
                ("mailer", false, "/bin/sh -c exec python3 mail.py"),
            ],
        );
        check("[production]\n", &[]);
    }
}
