//! Pool sizing: a gunicorn app's workers grow while requests are stuck and shrink back after.

use std::time::{Duration, Instant};

use crate::logs::LogSink;
use crate::router::Backend;

/// gunicorn's worker pool, sized by how many of the router's requests to it are stuck (in
/// flight for over `STUCK_AFTER`): the base pool plus one worker per stuck request (SIGTTIN to the
/// master), up to four times the base, and back down (SIGTTOU) once they have been done for
/// five seconds. Stuck requests (a slow query, a `sleep`, a wedge until its deadline) then cost
/// capacity instead of the whole app, while a busy but healthy app keeps its base pool.
/// A request in flight this long holds its worker: the pool grows by one for it. A tenth of a
/// second is long for one request of a healthy app, and short beside a stuck one.
const STUCK_AFTER: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_millis(100);
const GROW_TICK: Duration = Duration::from_millis(20);

pub struct Pool {
    pub backend: std::sync::Weak<Backend>,
    pub master: crate::supervise::ProcessHandle,
    pub base: u32,
    pub log: LogSink,
    pub label: String,
}

impl Pool {
    pub async fn run(self) {
        use nix::sys::signal::Signal;
        let max = self.base * 4;
        let mut workers = self.base;
        let mut pid = self.master.pid();
        let mut idle_since: Option<Instant> = None;
        let mut growing = false;
        let Some(mut in_flight) = self.backend.upgrade().map(|b| b.watch_in_flight()) else {
            return;
        };
        loop {
            // With nothing in flight and the base pool, nothing can turn stuck: sleep until a
            // request comes (or the release goes, which closes the watch). Otherwise look again
            // every tenth of a second, as requests turn stuck by age alone.
            let idle = *in_flight.borrow_and_update() == 0 && workers == self.base;
            if idle {
                if in_flight.changed().await.is_err() {
                    return;
                }
            } else {
                // Wedges can arrive faster than one a tick (1% of 3,000 requests a second is
                // 30 a second): while the pool grows, look again sooner.
                let tick = if growing { GROW_TICK } else { TICK };
                growing = false;
                tokio::select! {
                    changed = in_flight.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(tick) => {}
                }
            }
            let Some(backend) = self.backend.upgrade() else {
                return; // the release is gone
            };
            if self.master.pid() != pid {
                // gunicorn was restarted: it starts over with the base pool.
                pid = self.master.pid();
                workers = self.base;
                backend.set_capacity(workers as usize);
            }
            let stuck = backend.older_than(STUCK_AFTER) as u32;
            let wanted = (self.base + stuck).min(max);
            if wanted > workers && self.master.signal(Signal::SIGTTIN) {
                // One signal a tick: gunicorn's master takes them one at a time (two sent at
                // once may arrive as one), and growing sets the next tick sooner.
                workers += 1;
                growing = true;
                backend.set_capacity(workers as usize);
                idle_since = None;
                self.say(&format!(
                    "grows to {workers} workers ({stuck} requests stuck)"
                ));
            } else if workers > wanted {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(5) && self.master.signal(Signal::SIGTTOU)
                {
                    workers -= 1;
                    backend.set_capacity(workers as usize);
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
