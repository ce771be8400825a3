//! What the rings become: Prometheus text, and the status view (`silver status`, the page)
//! with markers, each release's before and after, and the sizing verdict.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use silver_runtime::router::BUCKETS_MS;
use silver_wire::api::*;

use super::proc::Raw;
use super::ring::{Ring, Series};
use super::{AppTotals, Metrics, APP_FIELDS, COARSE_STEP, NODE_FIELDS, SLOTS, STEP};
use crate::store::Store;

/// Names follow node_exporter's where promtool's lint allows (snake_case, counters in
/// `_total`: `node_memory_mem_available_bytes` for its `node_memory_MemAvailable_bytes`).
pub(super) fn prometheus(raw: &Raw, store: &Path, apps: &[AppTotals], certs: &CertsView) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    let ticks = |t: u64| t as f64 / super::proc::TICKS_PER_SEC;
    let cpu = vec![
        ("{mode=\"busy\"}".to_string(), ticks(raw.cpu.0)),
        ("{mode=\"idle\"}".to_string(), ticks(raw.cpu.1 - raw.cpu.0)),
    ];
    metric(
        "node_cpu_seconds_total",
        "counter",
        "CPU time over all cores, busy (user, system, irq, steal) and idle (with iowait).",
        &cpu,
    );
    metric(
        "node_load1",
        "gauge",
        "1 minute load average.",
        &one(raw.load[0]),
    );
    metric(
        "node_load5",
        "gauge",
        "5 minute load average.",
        &one(raw.load[1]),
    );
    metric(
        "node_load15",
        "gauge",
        "15 minute load average.",
        &one(raw.load[2]),
    );
    metric(
        "node_memory_mem_total_bytes",
        "gauge",
        "Memory in total.",
        &one(raw.mem_total as f64),
    );
    metric(
        "node_memory_mem_available_bytes",
        "gauge",
        "Memory available for new work without swapping.",
        &one(raw.mem_available as f64),
    );
    metric(
        "node_memory_swap_total_bytes",
        "gauge",
        "Swap in total.",
        &one(raw.swap_total as f64),
    );
    metric(
        "node_memory_swap_free_bytes",
        "gauge",
        "Swap free.",
        &one(raw.swap_free as f64),
    );
    metric(
        "node_vmstat_pswpin_total",
        "counter",
        "Pages swapped in since boot.",
        &one(raw.swap_in as f64),
    );
    metric(
        "node_vmstat_pswpout_total",
        "counter",
        "Pages swapped out since boot.",
        &one(raw.swap_out as f64),
    );
    let mount = format!("{{mountpoint={}}}", quote(&store.display().to_string()));
    metric(
        "node_filesystem_avail_bytes",
        "gauge",
        "Bytes free to unprivileged users on the store's file system.",
        &[(mount.clone(), raw.fs_avail as f64)],
    );
    metric(
        "node_filesystem_size_bytes",
        "gauge",
        "Size of the store's file system.",
        &[(mount, raw.fs_size as f64)],
    );
    metric(
        "node_disk_read_bytes_total",
        "counter",
        "Bytes read from whole disks.",
        &one(raw.disk_read_bytes as f64),
    );
    metric(
        "node_disk_written_bytes_total",
        "counter",
        "Bytes written to whole disks.",
        &one(raw.disk_written_bytes as f64),
    );
    metric(
        "node_network_receive_bytes_total",
        "counter",
        "Bytes received on every interface but loopback.",
        &one(raw.net_rx_bytes as f64),
    );
    metric(
        "node_network_transmit_bytes_total",
        "counter",
        "Bytes sent on every interface but loopback.",
        &one(raw.net_tx_bytes as f64),
    );
    metric(
        "silver_agent_cpu_seconds_total",
        "counter",
        "CPU time of the agent itself.",
        &one(ticks(raw.self_ticks)),
    );
    metric(
        "silver_agent_resident_memory_bytes",
        "gauge",
        "Resident memory of the agent itself.",
        &one(raw.self_rss as f64),
    );
    let classes = ["2xx", "3xx", "4xx", "5xx"];
    let mut requests = Vec::new();
    for a in apps {
        let by = &a.total.by_class;
        let counts = [by[0] + by[1], by[2], by[3], by[4]];
        for (class, n) in classes.iter().zip(counts) {
            requests.push((
                format!("{{app={},code={}}}", quote(&a.app), quote(class)),
                n as f64,
            ));
        }
    }
    metric(
        "silver_http_requests_total",
        "counter",
        "Requests the front door answered for each app, by status class.",
        &requests,
    );
    let mut histogram = Vec::new();
    for a in apps {
        let mut seen = 0;
        for (le, n) in BUCKETS_MS.iter().zip(a.total.buckets) {
            seen += n;
            let le = match *le {
                u64::MAX => "+Inf".to_string(),
                ms => format!("{}", ms as f64 / 1000.0),
            };
            histogram.push((
                format!("_bucket{{app={},le={}}}", quote(&a.app), quote(&le)),
                seen as f64,
            ));
        }
        histogram.push((
            format!("_count{{app={}}}", quote(&a.app)),
            a.total.requests as f64,
        ));
    }
    // Summed latency is not kept (buckets are): `_sum` is left out, which the format allows
    // only for summaries, so the histogram's buckets are written as their own family.
    metric(
        "silver_http_request_duration_seconds",
        "histogram",
        "Time to the app's response headers, by app.",
        &with_sum(histogram, apps),
    );
    let gauge = |field: &str| -> Vec<(String, f64)> {
        let i = APP_FIELDS
            .iter()
            .position(|f| *f == field)
            .expect("a known field");
        apps.iter()
            .filter_map(|a| {
                a.latest
                    .get(i)
                    .filter(|v| v.is_finite())
                    .map(|v| (format!("{{app={}}}", quote(&a.app)), *v as f64))
            })
            .collect()
    };
    metric(
        "silver_http_requests_in_flight",
        "gauge",
        "Requests each app is serving now.",
        &gauge("in_flight"),
    );
    metric(
        "silver_app_processes",
        "gauge",
        "Processes each app runs (its workers and their parents).",
        &gauge("processes"),
    );
    metric(
        "silver_app_resident_memory_bytes",
        "gauge",
        "Resident memory of each app's processes.",
        &gauge("memory_bytes"),
    );
    let restarts: Vec<_> = apps
        .iter()
        .map(|a| (format!("{{app={}}}", quote(&a.app)), a.restarts as f64))
        .collect();
    metric(
        "silver_app_restarts_total",
        "counter",
        "Times an app's processes exited and were started again.",
        &restarts,
    );
    let ends: Vec<_> = apps
        .iter()
        .map(|a| {
            (
                format!("{{app={}}}", quote(&a.app)),
                a.total.deadline_ends as f64,
            )
        })
        .collect();
    metric(
        "silver_http_deadline_ends_total",
        "counter",
        "Requests ended at the app's request_timeout by the fail-safe runtime.",
        &ends,
    );
    let expiry: Vec<_> = certs
        .hosts
        .iter()
        .filter_map(|c| {
            c.not_after_unix
                .map(|t| (format!("{{host={}}}", quote(&c.host)), t as f64))
        })
        .collect();
    metric(
        "silver_certificate_expiry_timestamp_seconds",
        "gauge",
        "When each host's certificate ends.",
        &expiry,
    );
    out
}

/// A histogram family needs `_sum`: the bucket midpoints' weighted sum stands in for it.
fn with_sum(mut samples: Vec<(String, f64)>, apps: &[AppTotals]) -> Vec<(String, f64)> {
    for a in apps {
        let mut sum = 0.0;
        let mut low = 0.0;
        for (le, n) in BUCKETS_MS.iter().zip(a.total.buckets) {
            let high = if *le == u64::MAX {
                low * 2.0
            } else {
                *le as f64 / 1000.0
            };
            sum += n as f64 * (low + high) / 2.0;
            low = high;
        }
        samples.push((format!("_sum{{app={}}}", quote(&a.app)), sum));
    }
    samples
}

fn quote(value: &str) -> String {
    format!(
        "\"{}\"",
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

impl Metrics {
    /// The status over the last `hours` (10 s points up to a day, 5 min points beyond).
    pub fn status(&self, store: &Store, hours: u64, certs: &CertsView) -> StatusView {
        let now = super::unix_now();
        let hours = hours.clamp(1, 24 * 30);
        let (step, suffix) = match hours <= 24 {
            true => (STEP, "10s"),
            false => (COARSE_STEP, "5m"),
        };
        let since = now.saturating_sub(hours * 3600);
        let mut series = BTreeMap::new();
        let node = self.read(
            &self.dir.join("node"),
            suffix,
            NODE_FIELDS.len(),
            step,
            since,
            now,
        );
        series.insert("node".to_string(), series_view(&NODE_FIELDS, &node));
        let state = self.lock();
        let mut apps: Vec<AppFigures> = state
            .apps
            .iter()
            .map(|(app, a)| AppFigures {
                app: app.to_string(),
                release: a.release.clone(),
                figures: figures(&APP_FIELDS, &a.latest),
            })
            .collect();
        let current = figures(&NODE_FIELDS, &state.latest_node);
        let firing = state.firing.values().map(|f| f.view.clone()).collect();
        drop(state);
        apps.sort_by(|a, b| a.app.cmp(&b.app));
        let mut app_series = BTreeMap::new();
        for a in &apps {
            let path = self.dir.join(format!("app-{}", a.app));
            let s = self.read(&path, suffix, APP_FIELDS.len(), step, since, now);
            series.insert(format!("app:{}", a.app), series_view(&APP_FIELDS, &s));
            app_series.insert(a.app.clone(), s);
        }
        let markers = markers(store, since);
        let releases = releases(&markers, &app_series, step);
        let day = self.read(
            &self.dir.join("node"),
            "10s",
            NODE_FIELDS.len(),
            STEP,
            now.saturating_sub(86_400),
            now,
        );
        let month = self.read(
            &self.dir.join("node"),
            "5m",
            NODE_FIELDS.len(),
            COARSE_STEP,
            0,
            now,
        );
        let verdict = super::alerts::verdict(&day, &self.peak_rps(now), &month);
        let _ = certs;
        StatusView {
            node: hostname(),
            now_unix: now,
            step_secs: step,
            current,
            series,
            apps,
            markers,
            releases,
            verdict,
            alerts: firing,
        }
    }

    /// Requests per second over every app: the day's peak and the 30 days' best.
    fn peak_rps(&self, now: u64) -> (f64, f64) {
        let apps: Vec<String> = self.lock().apps.keys().map(|a| a.to_string()).collect();
        let (mut day, mut best) = (BTreeMap::<u64, f64>::new(), BTreeMap::<u64, f64>::new());
        for app in apps {
            let path = self.dir.join(format!("app-{app}"));
            for (t, v) in self.read(
                &path,
                "10s",
                APP_FIELDS.len(),
                STEP,
                now.saturating_sub(86_400),
                now,
            ) {
                *day.entry(t).or_default() += super::view_finite(v[0]);
            }
            for (t, v) in self.read(&path, "5m", APP_FIELDS.len(), COARSE_STEP, 0, now) {
                *best.entry(t).or_default() += super::view_finite(v[0]);
            }
        }
        let max = |m: &BTreeMap<u64, f64>| m.values().copied().fold(0.0, f64::max);
        (max(&day), max(&best).max(max(&day)))
    }

    pub(super) fn read(
        &self,
        base: &Path,
        suffix: &str,
        fields: usize,
        step: u64,
        since: u64,
        until: u64,
    ) -> Series {
        let path = base.with_extension(suffix);
        if !path.exists() {
            return Vec::new();
        }
        Ring::open(&path, fields, SLOTS, step)
            .and_then(|r| r.read(since, until))
            .unwrap_or_default()
    }
}

fn figures(fields: &[&str], values: &[f32]) -> BTreeMap<String, f64> {
    fields
        .iter()
        .zip(values)
        .filter(|(_, v)| v.is_finite())
        .map(|(f, v)| (f.to_string(), *v as f64))
        .collect()
}

fn series_view(fields: &[&str], series: &Series) -> SeriesView {
    SeriesView {
        fields: fields.iter().map(|f| f.to_string()).collect(),
        t: series.iter().map(|(t, _)| *t).collect(),
        values: (0..fields.len())
            .map(|i| {
                series
                    .iter()
                    .map(|(_, v)| v.get(i).copied().filter(|x| x.is_finite()))
                    .collect()
            })
            .collect(),
    }
}

/// Every app's deploys, rollbacks, activations and clears since `since` (its history), and
/// its config changes (the times its settings versions were written).
pub(super) fn markers(store: &Store, since: u64) -> Vec<Marker> {
    let mut out = Vec::new();
    for app in store.apps().unwrap_or_default() {
        for r in store.history(&app).unwrap_or_default() {
            if r.time >= since {
                out.push(Marker {
                    t: r.time,
                    app: app.to_string(),
                    kind: r.action.as_str().into(),
                    what: r
                        .id
                        .to_string()
                        .trim_start_matches("b3:")
                        .chars()
                        .take(12)
                        .collect(),
                    ok: r.ok,
                });
            }
        }
        let dir = store.app(&app).settings_dir();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name
                .strip_suffix(".json")
                .filter(|v| v.parse::<u32>().is_ok())
            else {
                continue;
            };
            let t = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            if t >= since && version != "0" {
                out.push(Marker {
                    t,
                    app: app.to_string(),
                    kind: "config".into(),
                    what: format!("v{version}"),
                    ok: true,
                });
            }
        }
    }
    out.sort_by_key(|m| m.t);
    out
}

/// Each successful release change's error rate and p95 in equal windows before and after.
fn releases(
    markers: &[Marker],
    series: &BTreeMap<String, Series>,
    step: u64,
) -> Vec<ReleaseImpact> {
    let now = super::unix_now();
    let mut out = Vec::new();
    for (i, m) in markers.iter().enumerate() {
        if !m.ok || !["deploy", "rollback", "activate"].contains(&m.kind.as_str()) {
            continue;
        }
        let Some(s) = series.get(&m.app) else {
            continue;
        };
        // Up to 15 minutes, and never into the next change of the same app.
        let next = markers[i + 1..]
            .iter()
            .find(|n| n.app == m.app)
            .map_or(now, |n| n.t);
        let prev = markers[..i]
            .iter()
            .rev()
            .find(|n| n.app == m.app)
            .map_or(0, |n| n.t);
        let window = 900
            .min(next.saturating_sub(m.t))
            .min(m.t.saturating_sub(prev))
            .max(step);
        out.push(ReleaseImpact {
            app: m.app.clone(),
            what: m.what.clone(),
            t: m.t,
            window_secs: window,
            before: impact(s, m.t.saturating_sub(window), m.t, step),
            after: impact(s, m.t, m.t + window, step),
        });
    }
    out
}

fn impact(series: &Series, from: u64, to: u64, step: u64) -> Impact {
    let points: Vec<&Vec<f32>> = series
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, v)| v)
        .collect();
    let requests: f64 = points.iter().map(|v| super::view_finite(v[0])).sum::<f64>() * step as f64;
    let errors: f64 = points.iter().map(|v| super::view_finite(v[4])).sum::<f64>() * step as f64;
    let p95: Vec<f64> = points
        .iter()
        .filter(|v| v[6].is_finite())
        .map(|v| v[6] as f64)
        .collect();
    Impact {
        requests,
        error_rate: (requests > 0.0).then(|| errors / requests),
        p95_ms: (!p95.is_empty()).then(|| p95.iter().sum::<f64>() / p95.len() as f64),
    }
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
