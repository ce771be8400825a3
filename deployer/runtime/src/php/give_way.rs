//! Requests that burn CPU give way to short ones, as the WSGI shim's do (`silver_wsgi.py`): a
//! request whose php-fpm worker has spent 2 ms of CPU on it runs at nice 10, past 5 ms at nice
//! 19, and its worker is back at 0 when it ends. A busy loop then takes the CPU only when
//! healthy requests leave it, until the shedder or its client's hang-up ends it.
//!
//! CPU time, not time run: under load a quick request waits for a core for longer than a busy
//! loop needs to burn one (a 1% busy loop kept at full priority for its first 25 ms of wall
//! time took 0.4 of this machine's two cores; see BENCHMARKS.md).
//!
//! Only where the agent can put a worker's priority back (as root, or with RLIMIT_NICE 20,
//! `supervise::allow_default_priority`): a worker left at nice 19 would serve every later
//! request of the app at the lowest priority.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::resource::{getrlimit, Resource};

/// (CPU time spent on the request, nice value), in order.
const STEPS: [(Duration, i32); 2] = [
    (Duration::from_millis(2), 10),
    (Duration::from_millis(5), 19),
];
/// How often running requests are looked at while any run.
const TICK: Duration = Duration::from_millis(2);

/// Requests in flight through one release's php-fpm, and the priority each worker was given.
pub struct Priorities {
    enabled: bool,
    board: PathBuf,
    running: Mutex<HashMap<u64, Option<Worker>>>,
    wake: tokio::sync::Notify,
}

/// The worker serving a request, once its note was read.
#[derive(Clone, Copy)]
struct Worker {
    pid: i32,
    /// Its CPU time when first seen serving the request.
    cpu_at_start: Duration,
    nice: i32,
}

impl Priorities {
    /// For a release whose workers note their pids under `board` (`FpmFiles::board`).
    pub fn new(board: PathBuf) -> Priorities {
        Priorities {
            enabled: can_restore(),
            board,
            running: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Request `id` went to php-fpm.
    pub fn enter(&self, id: u64) {
        if !self.enabled {
            return;
        }
        let mut running = self.running.lock().unwrap();
        if running.insert(id, None).is_none() && running.len() == 1 {
            self.wake.notify_one();
        }
    }

    /// Request `id` is over for the gateway: a worker that gave way gets its priority back.
    pub fn leave(&self, id: u64) {
        let entry = self.running.lock().unwrap().remove(&id).flatten();
        if let Some(worker) = entry.filter(|w| w.nice > 0) {
            set_nice(worker.pid, 0);
        }
    }

    /// Lowers the priority of requests as they burn CPU, until the gateway stops.
    pub async fn run(&self) {
        if !self.enabled {
            return std::future::pending().await;
        }
        loop {
            if self.running.lock().unwrap().is_empty() {
                self.wake.notified().await;
            }
            tokio::time::sleep(TICK).await;
            self.tick();
        }
    }

    fn tick(&self) {
        let mut running = self.running.lock().unwrap();
        for (id, entry) in running.iter_mut() {
            let Some(worker) = entry else {
                // Its runner may not have written the note yet.
                *entry = worker_of(&self.board, *id).and_then(|pid| {
                    Some(Worker {
                        pid,
                        cpu_at_start: cpu_time(pid)?,
                        nice: 0,
                    })
                });
                continue;
            };
            let Some(used) = cpu_time(worker.pid).map(|t| t.saturating_sub(worker.cpu_at_start))
            else {
                continue;
            };
            let wanted = STEPS
                .iter()
                .filter(|(after, _)| used > *after)
                .map(|(_, nice)| *nice)
                .max()
                .unwrap_or(0);
            if wanted > worker.nice {
                set_nice(worker.pid, wanted);
                worker.nice = wanted;
            }
        }
    }
}

/// The CPU time process `pid` has had, to the nanosecond (`/proc/PID/schedstat`'s first field;
/// `stat`'s counts clock ticks of 10 ms).
fn cpu_time(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    Some(Duration::from_nanos(stat.split(' ').next()?.parse().ok()?))
}

/// The pid of the php-fpm worker serving request `id`, from the note the master runner
/// writes, if it is a php-fpm worker at all: the note is the app's to write, and must never get
/// the agent to change any other process's priority.
pub fn worker_of(board: &Path, id: u64) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(board.join(id.to_string()))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_fpm_worker(pid).then_some(pid)
}

/// Whether `pid` is a php-fpm pool worker (`php-fpm: pool NAME`).
fn is_fpm_worker(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"php-fpm: pool "))
}

fn set_nice(pid: i32, nice: i32) {
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, nice) };
    if rc != 0 {
        tracing::debug!(pid, nice, "could not change a php-fpm worker's priority");
    }
}

/// Whether this process may put a worker's nice value back to 0 after raising it.
fn can_restore() -> bool {
    nix::unistd::geteuid().is_root()
        || getrlimit(Resource::RLIMIT_NICE).is_ok_and(|(soft, _)| soft >= 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_naming_any_process_but_a_php_fpm_worker_is_ignored() {
        let board = tempfile::tempdir().unwrap();
        // The attack: the app writes the agent's own pid (or init's) to get it reniced or
        // signalled.
        for (id, note) in [
            (1, std::process::id().to_string()),
            (2, "1".into()),
            (3, "x".into()),
        ] {
            std::fs::write(board.path().join(id.to_string()), note).unwrap();
            assert_eq!(worker_of(board.path(), id), None);
        }
        assert_eq!(worker_of(board.path(), 4), None, "no note at all");
    }

    #[test]
    fn cpu_time_grows_as_a_thread_computes() {
        // This thread (a php-fpm worker has one): /proc/PID/schedstat counts that task only.
        let me = nix::unistd::gettid().as_raw();
        let before = cpu_time(me).unwrap();
        // Waits for the CPU, not for wall time: on a loaded machine the thread may wait its turn.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while cpu_time(me).unwrap() - before < Duration::from_millis(2) {
            assert!(std::time::Instant::now() < deadline, "no CPU time counted");
        }
    }
}
