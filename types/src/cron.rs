//! `[cron]` in app.ini: jobs the node runs on a schedule, each an internal request to a path of
//! the live release or a command in the app's environment.
//!
//! ```ini
//! [cron]
//! cleanup = */5 * * * * /tasks/cleanup
//! report = @daily script:bin/report
//! digest = every 2 hours /tasks/digest
//! report.timezone = Europe/Paris
//! report.deadline = 600      ; seconds (default: request_timeout)
//! report.retries = 3         ; after a failure, before the next scheduled run (default 0)
//! cleanup.every_node = true  ; in a fleet, on every node instead of on one
//! ```
//!
//! Schedules are standard 5-field cron (with `@hourly`, `@daily`, `@weekly`, `@monthly` and
//! `@yearly`) read by `croner`, or App Engine's `every N minutes` / `every N hours`, counted
//! from midnight in the job's time zone. Everything is checked here, so a bad line is refused
//! when the app is packed, naming it.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::appini::AppIni;
use crate::error::{CronProblem, IniProblem};

/// One job of `[cron]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CronJob {
    pub name: String,
    pub schedule: Schedule,
    pub target: CronTarget,
    /// An IANA time zone name (`UTC` unless `NAME.timezone` says otherwise).
    pub timezone: String,
    /// `NAME.deadline` in seconds; `None` means the app's `request_timeout`.
    pub deadline_secs: Option<u64>,
    /// `NAME.retries`: further attempts after a failed run, before the next scheduled one.
    pub retries: u32,
    /// `NAME.every_node`: in a fleet, run on every node rather than on exactly one.
    pub every_node: bool,
}

/// When a job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Schedule {
    /// 5 cron fields or an `@alias`, as written.
    Cron(String),
    /// `every N minutes` (or hours, as minutes): at midnight and every N minutes after it, each
    /// day, in the job's time zone.
    Every(u32),
}

/// What a run does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum CronTarget {
    /// An internal GET to this path of the live release, through the router.
    Path(String),
    /// A command run as the app, in the release, with the app's environment.
    Script(String),
}

/// Why a run happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Why {
    Scheduled,
    /// The latest tick missed while the node was down.
    Missed,
    /// `silver cron run`.
    Manual,
}

/// One run (one attempt) of a job, as recorded and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The tick it is for.
    pub scheduled: DateTime<Utc>,
    pub started: DateTime<Utc>,
    pub duration_ms: u64,
    pub why: Why,
    /// 1 for the first attempt at a tick, then 2, 3, … for its retries.
    pub attempt: u32,
    pub release: String,
    pub ok: bool,
    /// What came of it: `200`, `exit 0`, `exit 3`, `deadline (30 s) passed; killed`,
    /// `skipped: the previous run still goes`, …
    pub outcome: String,
    /// The end of its output (a command) or its answer (a path).
    pub tail: String,
}

/// A job as `silver cron APP` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    /// The schedule and target as app.ini says them.
    pub schedule: String,
    pub target: String,
    pub timezone: String,
    pub next: Option<DateTime<Utc>>,
    pub last: Option<RunRecord>,
    /// Ticks in a row, up to the last, that did not succeed (after their retries).
    pub failing: u32,
    /// The last few failed runs, newest last.
    pub failures: Vec<RunRecord>,
}

/// The options a job may have, as `NAME.OPTION = VALUE`.
pub const OPTIONS: &[&str] = &["timezone", "deadline", "retries", "every_node"];

impl CronJob {
    /// The job's next run strictly after `after`, or `None` if its schedule never fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Checked when app.ini was read; a name read back from elsewhere falls back to UTC.
        let tz = chrono_tz::Tz::from_str(&self.timezone).unwrap_or(chrono_tz::UTC);
        self.schedule.next_after(tz, after)
    }
}

impl Schedule {
    /// The next time strictly after `after`, reckoned in `tz` (so `0 2 * * *` is 02:00 local,
    /// at 03:00 on a day when 02:00 does not exist, and once when it happens twice).
    pub fn next_after(&self, tz: chrono_tz::Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(pattern) => {
                let cron = croner::Cron::from_str(pattern).ok()?;
                let local = after.with_timezone(&tz);
                let next = cron.find_next_occurrence(&local, false).ok()?;
                // croner keeps the fraction of a second it was given; a tick is a whole
                // second, the same on every node (a fleet's lease is keyed by it).
                chrono::Timelike::with_nanosecond(&next.with_timezone(&Utc), 0)
            }
            Schedule::Every(minutes) => every_next_after(*minutes, tz, after),
        }
    }
}

impl JobStatus {
    /// `job` with its recorded runs (oldest first), as of `now`.
    pub fn of(job: &CronJob, records: &[RunRecord], now: DateTime<Utc>) -> JobStatus {
        let ran: Vec<&RunRecord> = records.iter().filter(|r| r.attempt > 0).collect();
        // A tick failed if none of its attempts succeeded; skipped ticks are neither.
        let mut failing = 0;
        let mut tick = None;
        for record in ran.iter().rev() {
            if tick == Some(record.scheduled) {
                continue;
            }
            let tick_ok = ran.iter().any(|r| r.scheduled == record.scheduled && r.ok);
            if tick_ok {
                break;
            }
            failing += 1;
            tick = Some(record.scheduled);
        }
        let failures: Vec<RunRecord> = ran.iter().filter(|r| !r.ok).map(|r| (*r).clone()).collect();
        JobStatus {
            name: job.name.clone(),
            schedule: job.schedule.to_string(),
            target: job.target.to_string(),
            timezone: job.timezone.clone(),
            next: job.next_after(now),
            last: records.last().cloned(),
            failing,
            failures: failures[failures.len().saturating_sub(5)..].to_vec(),
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Cron(pattern) => f.write_str(pattern),
            Schedule::Every(m) if m % 60 == 0 => write!(f, "every {} hours", m / 60),
            Schedule::Every(m) => write!(f, "every {m} minutes"),
        }
    }
}

impl std::fmt::Display for CronTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CronTarget::Path(path) => f.write_str(path),
            CronTarget::Script(command) => write!(f, "script:{command}"),
        }
    }
}

/// `[cron]` and its options, checked; every problem names its line.
pub fn jobs(ini: &AppIni) -> Result<Vec<CronJob>, (usize, IniProblem)> {
    let Some(section) = ini.section("cron") else {
        return Ok(vec![]);
    };
    let mut jobs = Vec::new();
    for (key, v) in section.entries.iter().filter(|(k, _)| !k.contains('.')) {
        let problem = |problem| {
            (
                v.line,
                IniProblem::Cron {
                    job: key.clone(),
                    problem,
                },
            )
        };
        check_job_name(key).map_err(problem)?;
        if jobs.iter().any(|j: &CronJob| &j.name == key) {
            return Err(problem(CronProblem::Twice));
        }
        let (schedule, target) = schedule_and_target(&v.value).map_err(problem)?;
        jobs.push(CronJob {
            name: key.clone(),
            schedule,
            target,
            timezone: "UTC".into(),
            deadline_secs: None,
            retries: 0,
            every_node: false,
        });
    }
    for (key, v) in section.entries.iter().filter(|(k, _)| k.contains('.')) {
        let (name, option) = key.split_once('.').unwrap_or_default();
        let problem = |problem| {
            let job = name.to_string();
            (v.line, IniProblem::Cron { job, problem })
        };
        let job = jobs
            .iter_mut()
            .find(|j| j.name == name)
            .ok_or_else(|| problem(CronProblem::NoSuchJob))?;
        set_option(job, option, v.value.trim()).map_err(problem)?;
    }
    Ok(jobs)
}

fn check_job_name(name: &str) -> Result<(), CronProblem> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then_some(()).ok_or(CronProblem::Name)
}

/// `SCHEDULE TARGET`: the schedule is an `@alias`, `every N minutes|hours`, or 5 fields.
fn schedule_and_target(value: &str) -> Result<(Schedule, CronTarget), CronProblem> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let schedule_words = match words.first() {
        Some(w) if w.starts_with('@') => 1,
        Some(&"every") => 3,
        Some(_) => 5,
        None => return Err(CronProblem::Empty),
    };
    if words.len() <= schedule_words {
        return Err(CronProblem::NoTarget);
    }
    let written = words[..schedule_words].join(" ");
    let schedule =
        match words[0] {
            "every" => Schedule::Every(every_minutes(&words[1..3]).ok_or_else(|| {
                CronProblem::Schedule {
                    schedule: written.clone(),
                    why: "`every` takes a whole number of minutes or hours that fits in a day"
                        .into(),
                }
            })?),
            _ => {
                croner::Cron::from_str(&written).map_err(|e| CronProblem::Schedule {
                    schedule: written.clone(),
                    why: e.to_string(),
                })?;
                Schedule::Cron(written)
            }
        };
    let target = rest_after_words(value, schedule_words);
    Ok((schedule, parse_target(target)?))
}

/// `N minutes` or `N hours` (either in the singular too), as minutes, at most a day.
fn every_minutes(words: &[&str]) -> Option<u32> {
    let n: u32 = words.first()?.parse().ok().filter(|n| *n > 0)?;
    let per = match *words.get(1)? {
        "minute" | "minutes" | "mins" | "min" => 1,
        "hour" | "hours" => 60,
        _ => return None,
    };
    Some(n.checked_mul(per)?).filter(|m| *m <= 24 * 60)
}

/// What follows the first `n` words of `value`, as written (a command keeps its spacing).
fn rest_after_words(value: &str, n: usize) -> &str {
    let mut rest = value.trim_start();
    for _ in 0..n {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[end..].trim_start();
    }
    rest.trim_end()
}

fn parse_target(target: &str) -> Result<CronTarget, CronProblem> {
    if let Some(command) = target.strip_prefix("script:") {
        let command = command.trim();
        return match command.is_empty() {
            true => Err(CronProblem::NoTarget),
            false => Ok(CronTarget::Script(command.to_string())),
        };
    }
    let is_path = target.starts_with('/')
        && !target.starts_with("//")
        && !target.contains(char::is_whitespace);
    match is_path {
        true => Ok(CronTarget::Path(target.to_string())),
        false => Err(CronProblem::Target {
            target: target.to_string(),
        }),
    }
}

fn set_option(job: &mut CronJob, option: &str, value: &str) -> Result<(), CronProblem> {
    let bad = |rule: &'static str| CronProblem::Option {
        option: option.to_string(),
        value: value.to_string(),
        rule,
    };
    match option {
        "timezone" => {
            chrono_tz::Tz::from_str(value).map_err(|_| CronProblem::TimeZone {
                zone: value.to_string(),
            })?;
            job.timezone = value.to_string();
        }
        "deadline" => {
            let secs = value
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=86_400).contains(s));
            job.deadline_secs = Some(secs.ok_or_else(|| bad("seconds from 1 to 86400"))?);
        }
        "retries" => {
            let n = value.parse::<u32>().ok().filter(|n| *n <= 10);
            job.retries = n.ok_or_else(|| bad("a whole number from 0 to 10"))?;
        }
        "every_node" => {
            job.every_node = match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => true,
                "false" | "no" | "off" | "0" => false,
                _ => return Err(bad("true or false")),
            };
        }
        _ => {
            return Err(CronProblem::UnknownOption {
                option: option.to_string(),
            })
        }
    }
    Ok(())
}

/// `every N minutes`: the first of midnight + k·N (local, each day) strictly after `after`.
fn every_next_after(
    minutes: u32,
    tz: chrono_tz::Tz,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let step = Duration::minutes(i64::from(minutes.max(1)));
    let mut day = after.with_timezone(&tz).date_naive();
    // Today's remaining slots, else tomorrow's first (midnight), looked at over a few days so a
    // day whose midnight does not exist (a DST change at 00:00) is passed over.
    for _ in 0..3 {
        let midnight = tz
            .from_local_datetime(&day.and_time(NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc));
        let next_day = day.succ_opt()?;
        let end = tz
            .from_local_datetime(&next_day.and_time(NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc));
        if let Some(start) = midnight {
            let mut slot = start;
            while end.is_none_or(|end| slot < end) {
                if slot > after {
                    return Some(slot);
                }
                slot += step;
            }
        }
        day = next_day;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parsed(section: &str) -> Result<Vec<CronJob>, String> {
        let text = format!("[production]\napp_name = x\n[cron]\n{section}");
        let ini = AppIni::parse(&text, Path::new("app.ini")).unwrap();
        jobs(&ini).map_err(|(line, problem)| format!("line {line}: {problem}"))
    }

    /// One job line (and options), against what it reads as or the error it gets.
    fn check(section: &str, expected: Result<(&str, Schedule, CronTarget), &str>) {
        match (parsed(section), expected) {
            (Ok(jobs), Ok((name, schedule, target))) => {
                assert_eq!(jobs[0].name, name, "{section}");
                assert_eq!(jobs[0].schedule, schedule, "{section}");
                assert_eq!(jobs[0].target, target, "{section}");
            }
            (Err(got), Err(want)) => assert!(got.contains(want), "{section}: {got}"),
            (got, want) => panic!("{section}: got {got:?}, want {want:?}"),
        }
    }

    fn cron(s: &str) -> Schedule {
        Schedule::Cron(s.into())
    }

    fn path(s: &str) -> CronTarget {
        CronTarget::Path(s.into())
    }

    #[test]
    fn job_lines_read_as_schedule_and_target() {
        use CronTarget::Script;
        check(
            "cleanup = */5 * * * * /tasks/cleanup",
            Ok(("cleanup", cron("*/5 * * * *"), path("/tasks/cleanup"))),
        );
        check(
            "report = @daily script:bin/report  --full",
            Ok((
                "report",
                cron("@daily"),
                Script("bin/report  --full".into()),
            )),
        );
        check(
            "digest = every 2 hours /digest?x=1",
            Ok(("digest", Schedule::Every(120), path("/digest?x=1"))),
        );
        check(
            "d = every 1 minute /d",
            Ok(("d", Schedule::Every(1), path("/d"))),
        );
        check(
            "a = */5 * * * *",
            Err("line 4: cron job `a`: has no target"),
        );
        check(
            "a = */5 * * * * http://x/y",
            Err("`http://x/y` is not a URL path"),
        );
        check("a = */5 * * * * //x/y", Err("`//x/y` is not a URL path"));
        check("a = */5 * * * * script:", Err("has no target"));
        check("a = 61 * * * * /x", Err("`61 * * * *` is not a schedule"));
        check("a = @reboot /x", Err("`@reboot` is not a schedule"));
        check(
            "a = every 0 minutes /x",
            Err("`every 0 minutes` is not a schedule"),
        );
        check("a = every 25 hours /x", Err("is not a schedule"));
        check("a = every 5 fortnights /x", Err("is not a schedule"));
        check("a b = @daily /x", Err("job names hold only"));
        check("a/b = @daily /x", Err("job names hold only"));
        check(
            "a = @daily /x\na = @hourly /y",
            Err("line 5: cron job `a`: is defined twice"),
        );
    }

    #[test]
    fn options_are_checked_and_name_their_line() {
        let jobs = parsed(
            "r = @daily /r\nr.timezone = Europe/Paris\nr.deadline = 600\nr.retries = 3\n\
             r.every_node = yes\n",
        )
        .unwrap();
        assert_eq!(jobs[0].timezone, "Europe/Paris");
        assert_eq!(jobs[0].deadline_secs, Some(600));
        assert_eq!(jobs[0].retries, 3);
        assert!(jobs[0].every_node);
        for (lines, want) in [
            (
                "r.timezone = Mars/Olympus",
                "line 5: cron job `r`: unknown time zone `Mars/Olympus`",
            ),
            (
                "r.deadline = 0",
                "deadline `0` must be seconds from 1 to 86400",
            ),
            (
                "r.retries = 11",
                "retries `11` must be a whole number from 0 to 10",
            ),
            (
                "r.every_node = maybe",
                "every_node `maybe` must be true or false",
            ),
            ("r.colour = blue", "`colour` is not an option"),
            (
                "s.retries = 1",
                "cron job `s`: there is no such job in [cron]",
            ),
        ] {
            let got = parsed(&format!("r = @daily /r\n{lines}\n")).unwrap_err();
            assert!(got.contains(want), "{lines}: {got}");
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_runs_follow_the_time_zone_through_dst() {
        let paris = chrono_tz::Europe::Paris;
        let two_am = cron("0 2 * * *");
        // 2026-03-29: Paris jumps from 02:00 to 03:00; 02:00 does not exist that day, and the
        // run happens as the hour ends (03:00 CEST), as Vixie cron does.
        let next = two_am
            .next_after(paris, at("2026-03-28T12:00:00Z"))
            .unwrap();
        assert_eq!(next, at("2026-03-29T01:00:00Z"), "03:00 CEST");
        // 2026-10-25: 02:00–03:00 happens twice; the job runs once.
        let first = two_am
            .next_after(paris, at("2026-10-24T12:00:00Z"))
            .unwrap();
        let second = two_am.next_after(paris, first).unwrap();
        assert!(
            second - first > Duration::hours(20),
            "{first} then {second}"
        );
        let every = Schedule::Every(90);
        let next = every.next_after(paris, at("2026-06-01T21:59:00Z")).unwrap();
        assert_eq!(next, at("2026-06-01T22:00:00Z"), "midnight in Paris");
        let next = every.next_after(paris, next).unwrap();
        assert_eq!(next, at("2026-06-01T23:30:00Z"));
        let utc = chrono_tz::UTC;
        let next = every.next_after(utc, at("2026-06-01T23:59:00Z")).unwrap();
        assert_eq!(
            next,
            at("2026-06-02T00:00:00Z"),
            "22:30 then the next midnight"
        );
    }

    /// Every node must name a tick alike: whole seconds, whatever fraction `now` has.
    #[test]
    fn ticks_are_whole_seconds() {
        let utc = chrono_tz::UTC;
        for (after, next) in [
            ("2026-12-03T18:50:59.633Z", "2026-12-03T18:51:00Z"),
            ("2026-12-03T18:51:00.001Z", "2026-12-03T18:52:00Z"),
        ] {
            assert_eq!(
                cron("* * * * *").next_after(utc, at(after)),
                Some(at(next)),
                "{after}"
            );
            assert_eq!(
                Schedule::Every(1).next_after(utc, at(after)),
                Some(at(next)),
                "{after}"
            );
        }
    }
}
