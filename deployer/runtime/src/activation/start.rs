//! Starting a candidate's processes beside the live ones, after the checks that would make
//! them fail in a way the deployer could not read (no gunicorn, a virtualenv for another
//! Python, a missing configuration directory).

use std::collections::BTreeMap;
use std::path::Path;

use super::candidate::Candidate;
use crate::error::{Cause, Error, Failure, StartRefusal, Step};
use crate::launch::{self, Gunicorn};
use crate::logs::LogSink;
use crate::supervise::{Spec, Supervised};

/// What to run for `c` and the port its web process will listen on, or why it cannot start on
/// this node. Blocking: it asks the node's `python3` its version.
pub fn plan(
    c: &Candidate,
    mut gunicorn: Gunicorn,
) -> Result<(Vec<launch::Launch>, Option<u16>), Failure> {
    let has_web = c.config.runner.is_some() || c.config.processes.iter().any(|p| p.web);
    let port = match has_web {
        true => {
            Some(free_port().map_err(|e| Failure::new(Step::Start, Error::io(c.paths.dir(), e)))?)
        }
        false => None,
    };
    if c.config.is_php() {
        let Some(program) = crate::php::fpm_program() else {
            return Err(Failure::new(
                Step::Start,
                Cause::Refused(StartRefusal::NoPhpFpm),
            ));
        };
        let files = crate::php::FpmFiles::of(&c.paths.run(), &c.label, port.unwrap_or(0));
        let launches = launch::php(&c.config, crate::php::fpm_argv(&program, &files));
        return Ok((launches, port));
    }
    // gunicorn's own timeout is the backstop behind the shim's watchdog.
    gunicorn.timeout_secs = c.config.request_timeout_secs + 5;
    // A virtualenv with its own gunicorn runs under its own interpreter, whatever version
    // the node's python3 is; without one, it must suit the node's gunicorn.
    gunicorn.python = launch::venv_gunicorn(&c.dir, c.user.as_ref());
    if c.single_process {
        gunicorn.workers = 1;
    }
    let launches = launch::plan(&c.config, &gunicorn, &c.paths.run(), port.unwrap_or(0))
        .map_err(|e| Failure::new(Step::Start, e))?;
    let refused = |refusal| Err(Failure::new(Step::Start, Cause::Refused(refusal)));
    let program = gunicorn.program.display().to_string();
    let wsgi = launches.iter().any(|l| l.argv.first() == Some(&program));
    if wsgi && gunicorn.python.is_none() && !gunicorn.program.is_file() {
        return refused(StartRefusal::NoGunicorn);
    }
    if let Some(mismatch) = gunicorn
        .python
        .is_none()
        .then(|| venv_mismatch(&c.dir))
        .flatten()
    {
        return refused(mismatch);
    }
    if c.config.config_required() && !c.app_config().is_some_and(|d| d.is_dir()) {
        return refused(StartRefusal::NoConfig);
    }
    Ok((launches, port))
}

/// Starts the release's processes beside whatever serves now; only `web` gets `PORT`.
pub fn start_processes(
    c: &Candidate,
    launches: &[launch::Launch],
    env: &BTreeMap<String, String>,
    sink: impl Fn(&str) -> Result<LogSink, Error>,
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
            log: sink(&l.name)?,
            stop_signal: l.stop_signal,
        }));
    }
    Ok(processes)
}

/// A port nobody listens on right now, below the kernel's ephemeral range. The app binds it
/// a moment later. Below that range, because a port the kernel hands out for `:0` can be handed
/// out again at once to the next program that binds `:0` (another agent's front door, a
/// client's outgoing connection): in that window the squatter would answer the health check
/// (an HTTP server answering 404 passes a check of `/`) and take the release's traffic.
pub fn free_port() -> std::io::Result<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOWEST: u16 = 10_000;
    let Some(span) = ephemeral_low.checked_sub(LOWEST).filter(|s| *s > 0) else {
        // An ephemeral range that starts low leaves no room below it: the kernel's choice.
        return Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port());
    };
    // Concurrent activations start at different places, so they rarely try the same port.
    let start = {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u16
            % span
    };
    for step in 0..span {
        let port = LOWEST + (start + step) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Why the release's virtualenv cannot run here: it was made for another Python version than
/// the node's `python3` (its packages would be silently skipped, and the app would fail later
/// with `ModuleNotFoundError`).
pub fn venv_mismatch(release: &Path) -> Option<StartRefusal> {
    let venv = packer::venv::find(release)?;
    let wanted = venv.python()?;
    let mut python = std::process::Command::new("python3");
    python.args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]);
    let out =
        crate::command::run(python, crate::command::Stdin::Null, crate::command::ADMIN).ok()?;
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
    Some(StartRefusal::VenvMismatch {
        venv: name,
        wanted,
        home: venv.home.as_deref().unwrap_or("?").to_string(),
        node,
    })
}
