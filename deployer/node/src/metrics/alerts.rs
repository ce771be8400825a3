//! The sizing verdict, and alerts when a threshold is crossed: a webhook (JSON POST) and/or a
//! command, once when an alert starts and once when it ends.

use std::collections::BTreeMap;

use silver_wire::api::{AlertView, CertsView, Verdict};

use super::ring::Series;
use super::{Metrics, NODE_FIELDS};

/// Where alerts go.
#[derive(Debug, Clone, Default)]
pub struct AlertConfig {
    /// POSTed a JSON object per alert event.
    pub webhook: Option<String>,
    /// Run with `sh -c`, the alert in `SILVER_ALERT_*` variables (never on its command line).
    pub command: Option<String>,
}

/// An alert that is firing.
#[derive(Debug, Clone)]
pub(super) struct Firing {
    pub view: AlertView,
}

/// An alert starting or ending, to deliver.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertEvent {
    pub node: String,
    /// `firing` or `resolved`.
    pub state: &'static str,
    pub name: String,
    pub subject: String,
    pub message: String,
    pub time_unix: u64,
}

/// A 5xx share above this over the last 5 minutes alerts (with at least `MIN_REQUESTS`).
const MAX_5XX_SHARE: f64 = 0.05;
const MIN_REQUESTS: f64 = 20.0;
/// Free space on the store's file system below this share alerts.
const MIN_DISK_FREE: f64 = 0.10;
/// A certificate past its renewal time and this close to its end alerts: renewal is failing.
const CERT_WARN_SECS: u64 = 7 * 86_400;

impl Metrics {
    /// Which alerts fire at `t`; returns the changes to deliver.
    pub(super) fn evaluate(
        &self,
        t: u64,
        certs: &CertsView,
        cron: &[CronFailing],
    ) -> Vec<AlertEvent> {
        let mut wanted = self.breaches(t, certs);
        wanted.extend(cron_breaches(cron));
        let mut state = self.lock();
        let mut events = Vec::new();
        for (key, message) in &wanted {
            if !state.firing.contains_key(key) {
                let view = AlertView {
                    name: key.0.clone(),
                    subject: key.1.clone(),
                    message: message.clone(),
                    since_unix: t,
                };
                events.push(event("firing", &view, t));
                state.firing.insert(key.clone(), Firing { view });
            }
        }
        let ended: Vec<_> = state
            .firing
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in ended {
            if let Some(f) = state.firing.remove(&key) {
                events.push(event("resolved", &f.view, t));
            }
        }
        events
    }

    /// Every threshold crossed now, by (alert, subject), with its message.
    fn breaches(&self, t: u64, certs: &CertsView) -> BTreeMap<(String, String), String> {
        let mut out = BTreeMap::new();
        let state = self.lock();
        let node = &state.latest_node;
        let at = |name: &str| {
            node.get(NODE_FIELDS.iter().position(|f| *f == name).expect("known"))
                .copied()
        };
        if let (Some(free), Some(total)) = (at("disk_free_bytes"), at("disk_total_bytes")) {
            if total > 0.0 && (free / total) < MIN_DISK_FREE as f32 {
                out.insert(
                    ("disk".into(), self.store_root.display().to_string()),
                    format!("{:.1}% of the store's disk is free", free / total * 100.0),
                );
            }
        }
        for (app, a) in &state.apps {
            let sum = |pick: fn(&(f32, f32)) -> f32| -> f64 {
                let n: f64 = a.recent.iter().map(|r| super::view_finite(pick(r))).sum();
                n * super::STEP as f64
            };
            let (requests, errors) = (sum(|r| r.0), sum(|r| r.1));
            if requests >= MIN_REQUESTS && errors / requests > MAX_5XX_SHARE {
                out.insert(
                    ("5xx".into(), app.to_string()),
                    format!(
                        "{:.1}% of {app}'s {} requests in 5 minutes failed with 5xx",
                        errors / requests * 100.0,
                        requests as u64
                    ),
                );
            }
        }
        for c in &certs.hosts {
            let (Some(end), Some(renew)) = (c.not_after_unix, c.renew_at_unix) else {
                continue;
            };
            if t >= renew && end.saturating_sub(t) < CERT_WARN_SECS {
                let why = c.error.as_deref().unwrap_or("renewal has not happened");
                out.insert(
                    ("certificate".into(), c.host.clone()),
                    format!(
                        "the certificate for {} ends in {} s: {why}",
                        c.host,
                        end.saturating_sub(t)
                    ),
                );
            }
        }
        out
    }
}

/// A `[cron]` job whose last `failing` ticks did not succeed (`Runtime::cron_failing`).
pub(super) type CronFailing = (silver_types::AppName, String, u32);

/// A cron job that has not succeeded for a tick or more alerts until it does.
fn cron_breaches(cron: &[CronFailing]) -> BTreeMap<(String, String), String> {
    cron.iter()
        .filter(|(_, _, failing)| *failing > 0)
        .map(|(app, job, failing)| {
            let message = match failing {
                1 => format!("cron job {job} of {app} failed its last run"),
                n => format!("cron job {job} of {app} has not succeeded for {n} runs"),
            };
            (("cron".to_string(), format!("{app}/{job}")), message)
        })
        .collect()
}

fn event(state: &'static str, view: &AlertView, t: u64) -> AlertEvent {
    AlertEvent {
        node: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        state,
        name: view.name.clone(),
        subject: view.subject.clone(),
        message: view.message.clone(),
        time_unix: t,
    }
}

impl AlertConfig {
    /// Sends the event to the webhook and runs the command, in the background: a slow
    /// receiver never delays a sample.
    pub(super) fn deliver(&self, event: AlertEvent) {
        tracing::warn!(alert = %event.name, subject = %event.subject, state = event.state, "{}", event.message);
        if let Some(url) = self.webhook.clone() {
            let event = event.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(10))
                    .build();
                let sent = match client {
                    Ok(c) => c.post(&url).json(&event).send().await.map(|r| r.status()),
                    Err(e) => Err(e),
                };
                if let Err(e) = sent {
                    tracing::warn!(error = %silver_types::error_chain(&e), "alert webhook failed");
                }
            });
        }
        if let Some(command) = self.command.clone() {
            tokio::spawn(async move {
                let ran = tokio::process::Command::new("sh")
                    .args(["-c", &command])
                    .env("SILVER_ALERT", &event.name)
                    .env("SILVER_ALERT_STATE", event.state)
                    .env("SILVER_ALERT_SUBJECT", &event.subject)
                    .env("SILVER_ALERT_MESSAGE", &event.message)
                    .env("SILVER_ALERT_NODE", &event.node)
                    .stdin(std::process::Stdio::null())
                    .status()
                    .await;
                if !ran.as_ref().is_ok_and(|s| s.success()) {
                    tracing::warn!(?ran, "alert command failed");
                }
            });
        }
    }
}

/// Fewer samples than this (2 minutes) give no verdict.
const MIN_SAMPLES: usize = 12;

/// Too small, fine or oversized, from the last day of 10 s samples: p95 CPU, the least memory
/// available, swap activity, and the day's peak requests against the node's best in 30 days.
pub(super) fn verdict(day: &Series, rps: &(f64, f64), month: &Series) -> Verdict {
    let col = |name: &str| -> Vec<f64> {
        let i = NODE_FIELDS.iter().position(|f| *f == name).expect("known");
        day.iter()
            .filter_map(|(_, v)| v.get(i).copied())
            .filter(|v| v.is_finite())
            .map(f64::from)
            .collect()
    };
    let _ = month;
    let cpu = col("cpu_busy");
    let span_secs = day.len() as u64 * super::STEP;
    let mut figures = BTreeMap::new();
    if cpu.len() < MIN_SAMPLES {
        return Verdict {
            size: "unknown".into(),
            line: format!(
                "not enough history yet: {} s of the {} s a verdict needs",
                span_secs,
                MIN_SAMPLES as u64 * super::STEP
            ),
            span_secs,
            figures,
        };
    }
    let cpu_p95 = percentile(cpu, 0.95);
    let mem: Vec<f64> = col("mem_available_bytes")
        .iter()
        .zip(col("mem_total_bytes"))
        .filter(|(_, t)| *t > 0.0)
        .map(|(a, t)| a / t)
        .collect();
    let mem_min = mem.iter().copied().fold(1.0, f64::min);
    let swap: Vec<f64> = col("swap_in_per_s")
        .iter()
        .zip(col("swap_out_per_s"))
        .map(|(a, b)| a + b)
        .collect();
    let swap_p95 = percentile(swap, 0.95);
    figures.insert("cpu_busy_p95".into(), cpu_p95);
    figures.insert("mem_available_min".into(), mem_min);
    figures.insert("swap_pages_per_s_p95".into(), swap_p95);
    figures.insert("rps_peak_day".into(), rps.0);
    figures.insert("rps_best_30d".into(), rps.1);
    let facts = format!(
        "p95 CPU {:.0}%, least memory available {:.0}%, swap {:.1} pages/s (p95), peak {:.1} req/s against a best of {:.1} req/s, over {} min",
        cpu_p95 * 100.0, mem_min * 100.0, swap_p95, rps.0, rps.1, span_secs / 60
    );
    let size = if cpu_p95 > 0.85 || mem_min < 0.10 || swap_p95 > 10.0 {
        "too small"
    } else if cpu_p95 < 0.15 && mem_min > 0.60 && swap_p95 == 0.0 {
        "oversized"
    } else {
        "fine"
    };
    let why = match size {
        "too small" => "rent a bigger node, or move an app off it",
        "oversized" => "a smaller node would do",
        _ => "the node has room and uses it",
    };
    Verdict {
        size: size.into(),
        line: format!("{size}: {why} ({facts})"),
        span_secs,
        figures,
    }
}

fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(cpu: f32, mem_share: f32, swap: f32) -> Series {
        (0..30)
            .map(|i| {
                let mut v = vec![0.0f32; NODE_FIELDS.len()];
                v[0] = cpu;
                v[2] = mem_share * 1000.0;
                v[3] = 1000.0;
                v[4] = swap;
                (i * 10, v)
            })
            .collect()
    }

    fn check(cpu: f32, mem: f32, swap: f32, expected: &str) {
        let got = verdict(&day(cpu, mem, swap), &(5.0, 10.0), &Vec::new());
        assert_eq!(got.size, expected, "{}", got.line);
    }

    #[test]
    fn a_cron_job_alerts_while_it_has_not_succeeded() {
        let app = |s: &str| silver_types::AppName::parse(s).unwrap();
        let got = cron_breaches(&[
            (app("blog"), "report".into(), 3),
            (app("blog"), "cleanup".into(), 0),
            (app("shop"), "sync".into(), 1),
        ]);
        let messages: Vec<(&str, &str)> = got
            .iter()
            .map(|((_, subject), m)| (subject.as_str(), m.as_str()))
            .collect();
        assert_eq!(
            messages,
            [
                (
                    "blog/report",
                    "cron job report of blog has not succeeded for 3 runs"
                ),
                ("shop/sync", "cron job sync of shop failed its last run"),
            ]
        );
    }

    #[test]
    fn verdicts() {
        check(0.95, 0.5, 0.0, "too small");
        check(0.5, 0.05, 0.0, "too small");
        check(0.5, 0.5, 50.0, "too small");
        check(0.05, 0.8, 0.0, "oversized");
        check(0.5, 0.5, 0.0, "fine");
        let none = verdict(&Vec::new(), &(0.0, 0.0), &Vec::new());
        assert_eq!(none.size, "unknown");
    }
}
