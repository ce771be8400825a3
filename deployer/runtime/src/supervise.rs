//! One supervised process: started as the app's user, restarted with backoff when it dies, its
//! output captured line by line, and stopped gently (SIGTERM to the process, then SIGKILL to its
//! whole process group after a grace).

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::killpg;
/// The signals a `Spec` stops with.
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use crate::logs::LogSink;

/// What to run and how.
#[derive(Clone)]
pub struct Spec {
    /// `web`, or a worker's name.
    pub name: String,
    /// Written before each log line: the release's id12 (or `dev`).
    pub release: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// Switch to this user before exec (the agent runs as root on a node).
    pub user: Option<AppUser>,
    pub log: LogSink,
    /// What asks it to stop gracefully: SIGTERM (gunicorn), SIGQUIT (php-fpm, whose SIGTERM
    /// cuts requests off).
    pub stop_signal: Signal,
}

/// An unprivileged account apps run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl AppUser {
    pub fn lookup(name: &str) -> Option<AppUser> {
        let user = nix::unistd::User::from_name(name).ok().flatten()?;
        Some(AppUser {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }
}

/// The first directory on the way down to `dir` (itself included) that `user` may not pass,
/// with its mode. Apps run as that user inside the node's root: a directory they cannot enter
/// fails every deploy later in gunicorn with "can't chdir" (a root under `/root`, mode 0700, is
/// the usual case), so the agent asks this first. Owner, then group, then others, as the kernel
/// decides it: an owner without `x` is refused even where others may pass.
pub fn first_blocked(dir: &Path, user: &AppUser) -> std::io::Result<Option<(PathBuf, u32)>> {
    use std::os::unix::fs::MetadataExt;
    let dir = std::path::absolute(dir)?;
    for ancestor in dir.ancestors() {
        let meta = std::fs::metadata(ancestor)?;
        let mode = meta.mode() & 0o7777;
        let passes = if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !passes {
            return Ok(Some((ancestor.to_path_buf(), mode)));
        }
    }
    Ok(None)
}

/// Whether the agent runs as root (and so must switch apps to an unprivileged user).
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A running (or restarting) process. [`Supervised::stop`] stops it and waits; dropping it
/// (say, with an abandoned activation) stops it in the background with a short grace.
pub struct Supervised {
    pub name: String,
    shared: Arc<Shared>,
    stop: watch::Sender<Option<Duration>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if self.stop.borrow().is_none() {
            let _ = self.stop.send(Some(Duration::from_secs(5)));
        }
    }
}

#[derive(Default)]
struct Shared {
    /// The running process's pid, 0 between runs.
    pid: AtomicU32,
    starts: AtomicU32,
    exits: AtomicU32,
    last_exit: Mutex<Option<String>>,
    /// The last lines it wrote, for error messages when it fails to come up.
    recent: Mutex<VecDeque<String>>,
}

const RECENT_LINES: usize = 30;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that stayed up this long starts its backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

impl Supervised {
    /// Starts the process now; it is restarted whenever it exits, until stopped.
    pub fn start(spec: Spec) -> Supervised {
        let shared = Arc::new(Shared::default());
        let (stop, stop_rx) = watch::channel(None);
        let name = spec.name.clone();
        let task = tokio::spawn(supervise(spec, shared.clone(), stop_rx));
        Supervised {
            name,
            shared,
            stop,
            task: Some(task),
        }
    }

    /// How many times it has exited, and how the last time went.
    pub fn exits(&self) -> Exits {
        Exits {
            count: self.shared.exits.load(Ordering::SeqCst),
            last: self.shared.last_exit.lock().unwrap().clone(),
        }
    }

    /// A handle that can signal the running process (not its group), whichever run it is.
    pub fn handle(&self) -> ProcessHandle {
        ProcessHandle {
            shared: self.shared.clone(),
        }
    }

    pub fn starts(&self) -> u32 {
        self.shared.starts.load(Ordering::SeqCst)
    }

    pub fn recent_output(&self) -> Vec<String> {
        self.shared.recent.lock().unwrap().iter().cloned().collect()
    }

    /// SIGTERM to the process group, SIGKILL after `grace`; returns once it is gone.
    pub async fn stop(mut self, grace: Duration) {
        let _ = self.stop.send(Some(grace));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Signals a supervised process from elsewhere (the web pool's sizer).
#[derive(Clone)]
pub struct ProcessHandle {
    shared: Arc<Shared>,
}

impl ProcessHandle {
    /// The running process's pid, if it runs.
    pub fn pid(&self) -> Option<u32> {
        Some(self.shared.pid.load(Ordering::SeqCst)).filter(|p| *p != 0)
    }

    /// Sends `signal` to the process itself; false if it does not run.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> bool {
        self.pid().is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).is_ok()
        })
    }
}

async fn supervise(spec: Spec, shared: Arc<Shared>, mut stop: watch::Receiver<Option<Duration>>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let outcome = match spawn(&spec) {
            Ok(mut child) => {
                shared.starts.fetch_add(1, Ordering::SeqCst);
                let pid = child.id();
                shared.pid.store(pid.unwrap_or(0), Ordering::SeqCst);
                tracing::info!(process = %spec.name, release = %spec.release, pid, "process started");
                let out = capture(child.stdout.take(), &spec, &shared);
                let err = capture(child.stderr.take(), &spec, &shared);
                let status = tokio::select! {
                    status = child.wait() => Some(status),
                    _ = stop.wait_for(Option::is_some) => None,
                };
                match status {
                    Some(status) => {
                        // Drain what it wrote before dying: that is the useful part.
                        let _ = tokio::join!(out, err);
                        describe(status)
                    }
                    None => {
                        let grace = stop.borrow().unwrap_or_default();
                        terminate(&mut child, grace, spec.stop_signal).await;
                        let _ = tokio::join!(out, err);
                        return;
                    }
                }
            }
            Err(e) => format!("could not start `{}`: {e}", spec.argv[0]),
        };
        spec.log
            .line(&spec.release, &format!("[silver] {} {outcome}", spec.name));
        tracing::warn!(process = %spec.name, release = %spec.release, outcome = %outcome, "process exited");
        shared.pid.store(0, Ordering::SeqCst);
        *shared.last_exit.lock().unwrap() = Some(outcome);
        shared.exits.fetch_add(1, Ordering::SeqCst);
        if started.elapsed() > HEALTHY_RUN {
            backoff = Duration::from_secs(1);
        }
        // Said when it happens: a release stopped during the backoff (a failed deploy) is
        // not restarted, and its log must not claim otherwise.
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(Option::is_some) => {
                spec.log.line(&spec.release, &format!("[silver] {} stopped; not restarted", spec.name));
                return;
            }
        }
        spec.log.line(
            &spec.release,
            &format!(
                "[silver] restarting {} after {} s",
                spec.name,
                backoff.as_secs()
            ),
        );
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn spawn(spec: &Spec) -> std::io::Result<tokio::process::Child> {
    command(spec).spawn()
}

/// The command for a spec: clean environment, its own process group, the app's user, and death
/// with the agent. Also used for `update_fetch` scripts and `silver run`.
pub fn command(spec: &Spec) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a stop reaches gunicorn's workers and a shell's children.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(user) = &spec.user {
        // std also drops supplementary groups when it changes uid as root.
        cmd.uid(user.uid).gid(user.gid);
    }
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed; prctl(PR_SET_PDEATHSIG) is a single system call and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            // If the agent is killed outright, its apps get SIGTERM instead of living on unowned.
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
                .map_err(std::io::Error::from)
        });
    }
    cmd
}

/// Copies a pipe into the log, line by line, remembering the last few lines.
fn capture(
    pipe: Option<impl AsyncRead + Unpin + Send + 'static>,
    spec: &Spec,
    shared: &Arc<Shared>,
) -> tokio::task::JoinHandle<()> {
    let log = spec.log.clone();
    let release = spec.release.clone();
    let shared = shared.clone();
    tokio::spawn(async move {
        let Some(pipe) = pipe else { return };
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    let text = text.trim_end_matches(['\n', '\r']);
                    log.line(&release, text);
                    let mut recent = shared.recent.lock().unwrap();
                    if recent.len() == RECENT_LINES {
                        recent.pop_front();
                    }
                    recent.push_back(text.to_string());
                }
            }
        }
    })
}

async fn terminate(child: &mut tokio::process::Child, grace: Duration, signal: Signal) {
    let Some(pid) = child.id() else { return };
    let group = Pid::from_raw(pid as i32);
    // The leader only: gunicorn's master then stops its workers gracefully, where a signal to
    // the whole group would cut them off mid-request.
    let _ = nix::sys::signal::kill(group, signal);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Whatever the leader left behind in its group goes too.
    let _ = killpg(group, Signal::SIGKILL);
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "exited".into(),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

/// Lets the app processes started from here, whatever user they run as, lower their nice value
/// back to 0 (RLIMIT_NICE 20), never below it: the WSGI shim lowers the priority of a request
/// that has run a quarter second, so a busy loop takes the CPU only when healthy requests leave
/// it, and restores it when the request ends. Without root the limit stays as it is and the shim
/// leaves priorities alone.
pub fn allow_default_priority() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    // A nice ceiling of 20 - 20 = 0: no process can raise its priority above the default.
    const DEFAULT_PRIORITY_ONLY: u64 = 20;
    if getrlimit(Resource::RLIMIT_NICE).is_ok_and(|(soft, _)| soft >= DEFAULT_PRIORITY_ONLY) {
        return;
    }
    if let Err(e) = setrlimit(
        Resource::RLIMIT_NICE,
        DEFAULT_PRIORITY_ONLY,
        DEFAULT_PRIORITY_ONLY,
    ) {
        tracing::debug!(error = %e, "apps' stuck requests keep their priority (RLIMIT_NICE)");
    }
}

/// Gives `dir` to `user`, mode 0700: another app's user cannot list, read or write it.
pub(crate) fn own_private_dir(dir: &Path, user: &AppUser) -> Result<(), crate::error::Error> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| crate::error::Error::io(dir, e))
}

/// How a supervised process has ended so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exits {
    /// How many times it exited (each followed by a restart, while supervised).
    pub count: u32,
    /// How the last exit went (`exited with status 3`, `was killed by signal 9`).
    pub last: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(script: &str, log: LogSink) -> Spec {
        Spec {
            name: "worker".into(),
            release: "test".into(),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: [("PATH".to_string(), "/usr/bin:/bin".to_string())].into(),
            cwd: std::env::temp_dir(),
            user: None,
            log,
            stop_signal: Signal::SIGTERM,
        }
    }

    #[tokio::test]
    async fn a_crashed_process_comes_back_and_a_stop_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogSink::file(dir.path().join("w.log"), Default::default()).unwrap();
        let p = Supervised::start(spec("echo up; exit 3", log));
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.starts() < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(p.starts() >= 2, "restarted after the crash");
        assert_eq!(p.exits().last.as_deref(), Some("exited with status 3"));
        assert_eq!(p.recent_output().first().map(String::as_str), Some("up"));
        p.stop(Duration::from_secs(1)).await;
        let text = std::fs::read_to_string(dir.path().join("w.log")).unwrap();
        assert!(text.contains("test up"), "{text}");
        assert!(
            text.contains("[silver] worker exited with status 3"),
            "{text}"
        );
        assert!(
            text.contains("[silver] restarting worker after 1 s"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn stop_kills_what_ignores_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogSink::file(dir.path().join("w.log"), Default::default()).unwrap();
        let p = Supervised::start(spec(
            "trap '' TERM; echo ready; while :; do sleep 0.1; done",
            log,
        ));
        while p.recent_output().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = p.handle().pid().expect("it runs");
        let t = Instant::now();
        p.stop(Duration::from_millis(300)).await;
        assert!(t.elapsed() < Duration::from_secs(5));
        // The outcome, not only the time: the process that ignored SIGTERM is gone (its pid no
        // longer answers signal 0).
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok();
        assert!(!alive, "pid {pid} still runs after stop");
    }
}
