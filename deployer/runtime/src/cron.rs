//! Cron: the live release's `[cron]` jobs (`silver_types::cron`), each run an internal request
//! to the release or a command as the app, never two runs of one job at once, each recorded.
//!
//! One scheduler task per live release: a deploy replaces it with the new release's table, a
//! rollback with the old one's, a deactivation ends it. Runs already going finish where they
//! started; the claim on a job name is the app's, not the release's, so the new table never
//! starts a job whose previous run still goes. An app in maintenance runs no jobs.
//!
//! After downtime (the agent stopped, the node rebooted) the latest tick missed since the
//! job's last recorded run runs once, if it was missed by less than [`MISSED_WITHIN`]:
//! Kubernetes' `startingDeadlineSeconds` for every job.
//!
//! A failed run (a status outside 2xx, an exit code other than 0, its deadline passed) is
//! retried up to `NAME.retries` times, 5 s after the first failure, then twice as long each
//! time up to an hour, as App Engine's `retry_parameters` do, and never at or past the job's
//! next scheduled run.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use silver_types::cron::{CronJob, CronTarget, RunRecord, Why};
use silver_types::AppName;

use crate::internal::Target;
use crate::logs::LogSink;
use crate::supervise::AppUser;

/// A missed tick older than this is not run when the node comes back.
pub const MISSED_WITHIN: Duration = Duration::from_secs(24 * 3600);
/// Records kept per job.
const KEPT: usize = 50;
/// The most of a run's output (or answer) kept in its record.
const TAIL_BYTES: usize = 2048;

/// What a live release's jobs run against.
pub struct Release {
    pub app: AppName,
    /// Where path jobs go, and the release's label and `request_timeout`.
    pub target: Target,
    /// The release's files: commands run here.
    pub dir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub user: Option<AppUser>,
    pub log: LogSink,
    /// Where each job's runs are recorded (the app's own `cron/`, which the app cannot write).
    pub records: PathBuf,
    pub jobs: Vec<CronJob>,
    /// The app's shared database, in a fleet: a tick runs on the one node that takes its
    /// lease there (jobs with `NAME.every_node` excepted).
    pub shared: Option<crate::shared::SharedDb>,
    /// This node's id, as the shared database records who ran a tick.
    pub node: String,
    /// Whether the app is in maintenance now: its jobs do not run.
    pub paused: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// The jobs of every app with a run going, by name: a job's next tick waits for none.
#[derive(Default)]
pub struct Running(Mutex<HashSet<(AppName, String)>>);

/// Starts the release's scheduler; it runs until the returned task is aborted.
pub fn spawn(release: Arc<Release>, running: Arc<Running>) -> tokio::task::AbortHandle {
    tokio::spawn(schedule(release, running)).abort_handle()
}

/// Runs `job` now, whatever its schedule, waiting for it (and its retries) to end.
pub async fn run_now(
    release: Arc<Release>,
    running: Arc<Running>,
    job: &str,
) -> Option<Vec<RunRecord>> {
    let job = release.jobs.iter().find(|j| j.name == job)?.clone();
    Some(fire(release, running, job, Utc::now(), Why::Manual).await)
}

/// A job's recorded runs, oldest first.
pub fn records(dir: &std::path::Path, job: &str) -> Vec<RunRecord> {
    std::fs::read(dir.join(format!("{job}.json")))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The latest tick of `job` at or before `now`, after `last` (its last recorded tick) and less
/// than [`MISSED_WITHIN`] ago: the one run a node that was down owes it.
pub fn missed(
    job: &CronJob,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let last = last?;
    let horizon = now - chrono::Duration::from_std(MISSED_WITHIN).ok()?;
    let mut tick = job.next_after(last.max(horizon))?;
    if tick > now {
        return None;
    }
    while let Some(next) = job.next_after(tick).filter(|t| *t <= now) {
        tick = next;
    }
    Some(tick)
}

/// How long after failed attempt `n` (1 for the first) the next one waits: 5 s, doubling, at
/// most an hour.
pub fn retry_delay(n: u32) -> Duration {
    let secs = 5u64.saturating_mul(1 << n.saturating_sub(1).min(10));
    Duration::from_secs(secs.min(3600))
}

async fn schedule(release: Arc<Release>, running: Arc<Running>) {
    let now = Utc::now();
    for job in &release.jobs {
        let last = records(&release.records, &job.name)
            .last()
            .map(|r| r.scheduled);
        if let Some(tick) = missed(job, last, now) {
            start(&release, &running, job, tick, Why::Missed);
        }
    }
    let mut next: Vec<Option<DateTime<Utc>>> =
        release.jobs.iter().map(|j| j.next_after(now)).collect();
    loop {
        let Some((i, at)) = next
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .min_by_key(|(_, t)| *t)
        else {
            return; // no job fires again
        };
        // Wakes at least once a minute, so a change of the wall clock is noticed.
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        if wait > Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_secs(60)).await;
            continue;
        }
        tokio::time::sleep(wait).await;
        // The monotonic clock the sleep ran on and the wall clock ticks are named by may
        // disagree by a moment: a job never starts before its tick.
        if let Ok(early) = (at - Utc::now()).to_std() {
            tokio::time::sleep(early).await;
        }
        let job = &release.jobs[i];
        start(&release, &running, job, at, Why::Scheduled);
        next[i] = job.next_after(at);
    }
}

/// Starts a run of `job` for `tick` in the background.
fn start(
    release: &Arc<Release>,
    running: &Arc<Running>,
    job: &CronJob,
    tick: DateTime<Utc>,
    why: Why,
) {
    let (release, running, job) = (release.clone(), running.clone(), job.clone());
    tokio::spawn(async move { fire(release, running, job, tick, why).await });
}

/// A run and its retries, or a record of why there was none.
async fn fire(
    release: Arc<Release>,
    running: Arc<Running>,
    job: CronJob,
    tick: DateTime<Utc>,
    why: Why,
) -> Vec<RunRecord> {
    let skipped = |outcome: &str| RunRecord {
        scheduled: tick,
        started: Utc::now(),
        duration_ms: 0,
        why,
        attempt: 0,
        release: release.target.label.clone(),
        ok: false,
        outcome: outcome.to_string(),
        tail: String::new(),
    };
    if (release.paused)() && why != Why::Manual {
        return vec![]; // in maintenance: no jobs, and nothing owed for the tick
    }
    let key = (release.app.clone(), job.name.clone());
    if !running.0.lock().unwrap().insert(key.clone()) {
        let record = skipped("skipped: the previous run still goes");
        let line = format!(
            "[silver] cron {}: tick {tick} skipped: the previous run still goes",
            job.name
        );
        release.log.line(&release.target.label, &line);
        save(&release, &job.name, &record);
        return vec![record];
    }
    let fleet = match (&release.shared, why) {
        (Some(db), Why::Scheduled | Why::Missed) if !job.every_node => Some(db),
        _ => None,
    };
    let held = match fleet {
        Some(db) => match lease(&release, db, &job, tick).await {
            Ok(held) => Some(held),
            Err(record) => {
                save(&release, &job.name, &record);
                running.0.lock().unwrap().remove(&key);
                return vec![record];
            }
        },
        None => None,
    };
    let mut done = Vec::new();
    for attempt in 1..=job.retries + 1 {
        let record = run_once(&release, &job, tick, why, attempt).await;
        save(&release, &job.name, &record);
        let ok = record.ok;
        done.push(record);
        if ok {
            break;
        }
        let delay = retry_delay(attempt);
        let retry_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let next_tick = job.next_after(tick);
        if attempt > job.retries || next_tick.is_some_and(|n| retry_at >= n) {
            break;
        }
        tokio::time::sleep(delay).await;
    }
    if let Some(held) = held {
        held.finish(done.last().is_some_and(|r| r.ok)).await;
    }
    running.0.lock().unwrap().remove(&key);
    done
}

/// The fleet's lease on `tick`, or the record of why this node does not run it.
async fn lease(
    release: &Release,
    db: &crate::shared::SharedDb,
    job: &CronJob,
    tick: DateTime<Utc>,
) -> Result<crate::shared::Held, RunRecord> {
    use crate::shared::Lease;
    // Wait for another node's run of this tick at most as long as it may take, retries too.
    let deadline = job
        .deadline_secs
        .map(Duration::from_secs)
        .unwrap_or(release.target.request_timeout);
    let wait = deadline * (job.retries + 1) + Duration::from_secs(60);
    let lease = db
        .cron_lease(release.app.as_str(), &job.name, tick, &release.node, wait)
        .await;
    let (ok, outcome) = match lease {
        Ok(Lease::Run { held, took_over }) => {
            if took_over {
                let line = format!(
                    "[silver] cron {}: tick {tick} was started by a node that stopped; running it here",
                    job.name
                );
                release.log.line(&release.target.label, &line);
            }
            return Ok(held);
        }
        Ok(Lease::RanElsewhere { node, ok }) => (ok, format!("ran on node {node}")),
        Ok(Lease::Overlap) => (
            false,
            "skipped: the previous run still goes on another node".into(),
        ),
        Err(e) => (false, format!("not run: {}", silver_types::error_chain(&e))),
    };
    let line = format!("[silver] cron {}: tick {tick}: {outcome}", job.name);
    release.log.line(&release.target.label, &line);
    Err(RunRecord {
        scheduled: tick,
        started: Utc::now(),
        duration_ms: 0,
        why: Why::Scheduled,
        attempt: 0,
        release: release.target.label.clone(),
        ok,
        outcome,
        tail: String::new(),
    })
}

fn save(release: &Release, job: &str, record: &RunRecord) {
    let mut all = records(&release.records, job);
    all.push(record.clone());
    let keep = all.len().saturating_sub(KEPT);
    let bytes = serde_json::to_vec(&all[keep..]).unwrap_or_default();
    let path = release.records.join(format!("{job}.json"));
    let written = std::fs::create_dir_all(&release.records)
        .and_then(|()| safefs::write_atomic(&path, &bytes, safefs::WriteOptions::PRIVATE));
    if let Err(e) = written {
        tracing::warn!(app = %release.app, job, error = %e, "a cron run could not be recorded");
    }
}

async fn run_once(
    release: &Release,
    job: &CronJob,
    tick: DateTime<Utc>,
    why: Why,
    attempt: u32,
) -> RunRecord {
    let deadline = job
        .deadline_secs
        .map(Duration::from_secs)
        .unwrap_or(release.target.request_timeout);
    let started = Utc::now();
    let clock = std::time::Instant::now();
    let (ok, outcome, tail) = match &job.target {
        CronTarget::Path(path) => request(release, &job.name, tick, path, deadline).await,
        CronTarget::Script(command) => command_run(release, command, deadline).await,
    };
    let line = format!(
        "[silver] cron {} ({why:?}, attempt {attempt}): {outcome} after {} ms",
        job.name,
        clock.elapsed().as_millis()
    );
    release.log.line(&release.target.label, &line);
    RunRecord {
        scheduled: tick,
        started,
        duration_ms: clock.elapsed().as_millis() as u64,
        why,
        attempt,
        release: release.target.label.clone(),
        ok,
        outcome,
        tail,
    }
}

/// An internal GET to the release's web process, marked as cron's (`X-Silver-Cron`), with the
/// tick it is for (`X-Silver-Cron-Tick`, the same on every node and every retry: a key to make
/// a job's work idempotent by).
async fn request(
    release: &Release,
    job: &str,
    tick: DateTime<Utc>,
    path: &str,
    deadline: Duration,
) -> (bool, String, String) {
    let request = crate::internal::Request {
        method: "GET",
        path,
        body: Default::default(),
        content_type: None,
        kind: "cron",
        marks: vec![
            ("x-silver-cron", job.to_string()),
            ("x-silver-cron-tick", tick.to_rfc3339()),
        ],
        deadline,
    };
    let answer = crate::internal::send(&release.target, request).await;
    (answer.ok, answer.outcome, tail_of(&answer.body))
}

/// A command as the app, in the release, with its environment; past the deadline its whole
/// process group is killed.
async fn command_run(
    release: &Release,
    command: &str,
    deadline: Duration,
) -> (bool, String, String) {
    use tokio::io::AsyncReadExt;
    let mut cmd = crate::supervise::command(&crate::supervise::Spec {
        name: "cron".into(),
        release: release.target.label.clone(),
        argv: vec!["/bin/sh".into(), "-c".into(), command.into()],
        env: release.env.clone(),
        cwd: release.dir.clone(),
        user: release.user.clone(),
        log: release.log.clone(),
        stop_signal: nix::sys::signal::Signal::SIGTERM,
    });
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return (false, format!("could not start: {e}"), String::new()),
    };
    let group = child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32));
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let output = async {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let read_out = async {
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut a).await;
            }
        };
        let read_err = async {
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_end(&mut b).await;
            }
        };
        tokio::join!(read_out, read_err);
        a.extend_from_slice(&b);
        a
    };
    let run = async { tokio::join!(output, child.wait()) };
    match tokio::time::timeout(deadline, run).await {
        Ok((output, Ok(status))) => {
            for line in String::from_utf8_lossy(&output).lines() {
                release.log.line(&release.target.label, line);
            }
            let outcome = match status.code() {
                Some(code) => format!("exit {code}"),
                None => "killed by a signal".into(),
            };
            (status.success(), outcome, tail_of(&output))
        }
        Ok((_, Err(e))) => (false, format!("could not wait for it: {e}"), String::new()),
        Err(_) => {
            // The whole group: a shell's children too.
            if let Some(group) = group {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            let outcome = format!("deadline ({} s) passed; killed", deadline.as_secs());
            (false, outcome, String::new())
        }
    }
}

fn tail_of(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let cut = text.len().saturating_sub(TAIL_BYTES);
    let cut = (cut..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[cut..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use silver_types::cron::Schedule;

    fn job(schedule: Schedule) -> CronJob {
        CronJob {
            name: "j".into(),
            schedule,
            target: CronTarget::Path("/j".into()),
            timezone: "UTC".into(),
            deadline_secs: None,
            retries: 0,
            every_node: false,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// A job's last recorded tick and the time the node came back, against the tick it owes.
    fn check(schedule: &str, last: Option<&str>, now: &str, owed: Option<&str>) {
        let job = job(Schedule::Cron(schedule.into()));
        let got = missed(&job, last.map(at), at(now));
        assert_eq!(got, owed.map(at), "{schedule} last {last:?} now {now}");
    }

    #[test]
    fn a_node_that_was_down_owes_the_latest_missed_tick_once() {
        // Down from 10:02 to 10:31: of the ticks at 10:05 … 10:30, the last runs, once.
        check(
            "*/5 * * * *",
            Some("2026-12-01T10:00:00Z"),
            "2026-12-01T10:31:00Z",
            Some("2026-12-01T10:30:00Z"),
        );
        // Nothing was missed.
        check(
            "*/5 * * * *",
            Some("2026-12-01T10:30:00Z"),
            "2026-12-01T10:31:00Z",
            None,
        );
        // A daily job whose 02:00 passed while down runs when the node is back at 04:00.
        check(
            "0 2 * * *",
            Some("2026-11-30T02:00:00Z"),
            "2026-12-01T04:00:00Z",
            Some("2026-12-01T02:00:00Z"),
        );
        // Missed by more than a day: not run; the next tick comes as scheduled.
        check(
            "0 2 * * 1",
            Some("2026-11-23T02:00:00Z"),
            "2026-12-02T04:00:00Z",
            None,
        );
        // A job never run before owes nothing.
        check("*/5 * * * *", None, "2026-12-01T10:31:00Z", None);
    }

    #[test]
    fn retries_back_off_from_5_s_to_an_hour() {
        let delays: Vec<u64> = (1..=12).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(
            delays,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
    }

    #[test]
    fn a_tail_keeps_the_end_and_whole_characters() {
        let long = "é".repeat(2000);
        let tail = tail_of(long.as_bytes());
        assert!(
            tail.len() <= TAIL_BYTES && tail.chars().all(|c| c == 'é'),
            "{}",
            tail.len()
        );
        assert_eq!(tail_of(b"short"), "short");
    }
}
