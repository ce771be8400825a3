//! The node's metrics (design §10): every 10 s the sampler reads the node (`/proc`) and every
//! live app (the router's counts, its processes' memory), and writes one record per series into
//! fixed-size rings on disk: 10 s for a day and 5 min for 30 days. From them come `/metrics`
//! (Prometheus text), `silver status`, the status page with deploy markers, the sizing verdict
//! and the alerts.

mod alerts;
pub mod page;
mod proc;
mod ring;
mod view;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use silver_runtime::router::Stats;
use silver_runtime::AppSample;
use silver_types::AppName;

pub use alerts::AlertConfig;
use ring::Ring;

/// Seconds between samples, and the fine ring's step.
pub const STEP: u64 = 10;
/// The coarse ring's step: 5 minutes.
pub const COARSE_STEP: u64 = 300;
/// Samples an app keeps in memory for its alerts: 5 minutes.
const RECENT: usize = (300 / STEP) as usize;
/// Slots per ring: a day of 10 s samples, 30 days of 5 min ones.
const SLOTS: u64 = 8640;

/// The node's fields, in ring order.
pub const NODE_FIELDS: [&str; 14] = [
    "cpu_busy",
    "load1",
    "mem_available_bytes",
    "mem_total_bytes",
    "swap_in_per_s",
    "swap_out_per_s",
    "disk_free_bytes",
    "disk_total_bytes",
    "disk_read_bytes_per_s",
    "disk_write_bytes_per_s",
    "net_rx_bytes_per_s",
    "net_tx_bytes_per_s",
    "agent_cpu",
    "agent_rss_bytes",
];

/// Each app's fields, in ring order.
pub const APP_FIELDS: [&str; 13] = [
    "rps",
    "rps_2xx",
    "rps_3xx",
    "rps_4xx",
    "rps_5xx",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "in_flight",
    "processes",
    "memory_bytes",
    "restarts",
    "deadline_ends",
];

/// Samples, rings and alerts of one node.
pub struct Metrics {
    dir: PathBuf,
    store_root: PathBuf,
    disks: Vec<String>,
    alerts: AlertConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    prev: Option<(Instant, proc::Raw)>,
    node: Option<Rings>,
    latest_node: Vec<f32>,
    apps: HashMap<AppName, AppState>,
    firing: BTreeMap<(String, String), alerts::Firing>,
}

struct AppState {
    release: String,
    /// The live release's counts at the last sample.
    last: Stats,
    exits: u64,
    /// Everything the app's releases answered since the agent started: Prometheus counters.
    total: Stats,
    restarts: u64,
    rings: Rings,
    latest: Vec<f32>,
    /// Requests and 5xx answers of the last 5 minutes' samples, newest last: the 5xx alert
    /// reads these, not the ring, so a sample costs the same whatever the history.
    recent: std::collections::VecDeque<(f32, f32)>,
}

/// A series' two rings and the 5 min average being gathered.
struct Rings {
    fine: Ring,
    coarse: Ring,
    bucket: u64,
    sum: Vec<f64>,
    n: Vec<u32>,
}

impl Metrics {
    pub fn new(store_root: PathBuf, alerts: AlertConfig) -> Metrics {
        Metrics {
            dir: store_root.join("metrics"),
            store_root,
            disks: proc::disks(),
            alerts,
            state: Mutex::new(State::default()),
        }
    }

    /// Samples every [`STEP`] seconds, on the wall clock's multiples of it, until the agent
    /// stops.
    pub async fn run(
        self: std::sync::Arc<Self>,
        runtime: silver_runtime::Runtime,
        certs: std::sync::Arc<crate::certs::Certificates>,
    ) {
        if let Err(e) = safefs::ensure_private_dir(&self.dir) {
            tracing::error!(dir = %self.dir.display(), error = %e, "metrics are off: cannot make their directory");
            return;
        }
        loop {
            let now = unix_now();
            let next = now - now % STEP + STEP;
            tokio::time::sleep(Duration::from_secs(next - now)).await;
            let apps = runtime.app_samples().await;
            let cron = runtime.cron_failing().await;
            let routes = runtime.routes().clone();
            let me = self.clone();
            let certs = certs.clone();
            let fired = tokio::task::spawn_blocking(move || {
                me.sample(next, apps);
                let certs = certs.view(&routes);
                me.evaluate(next, &certs, &cron)
            })
            .await
            .unwrap_or_default();
            for event in fired {
                self.alerts.deliver(event);
            }
        }
    }

    /// One sample at time `t` of the node and of `apps`.
    fn sample(&self, t: u64, apps: Vec<AppSample>) {
        let raw = proc::read(&self.store_root, &self.disks);
        let mut state = self.lock();
        let now = Instant::now();
        let node = match &state.prev {
            Some((then, prev)) => node_values(prev, &raw, now.duration_since(*then)),
            None => vec![f32::NAN; NODE_FIELDS.len()],
        };
        state.prev = Some((now, raw));
        if state.node.is_none() {
            state.node = Rings::open(&self.dir.join("node"), NODE_FIELDS.len());
        }
        if let Some(rings) = state.node.as_mut() {
            rings.write(t, &node);
        }
        state.latest_node = node;
        let live: Vec<AppName> = apps.iter().map(|a| a.app.clone()).collect();
        for sample in apps {
            self.sample_app(&mut state, t, sample);
        }
        // An app that stopped (deactivated) keeps its rings on disk; its counters go.
        state.apps.retain(|app, _| live.contains(app));
    }

    fn sample_app(&self, state: &mut State, t: u64, sample: AppSample) {
        let exits: u64 = sample.processes.iter().map(|(_, e)| e).sum();
        let app = match state.apps.get_mut(&sample.app) {
            Some(app) => app,
            None => {
                let path = self.dir.join(format!("app-{}", sample.app));
                let Some(rings) = Rings::open(&path, APP_FIELDS.len()) else {
                    return;
                };
                state.apps.entry(sample.app.clone()).or_insert(AppState {
                    release: sample.release.clone(),
                    last: Stats::default(),
                    exits,
                    total: Stats::default(),
                    restarts: 0,
                    rings,
                    latest: Vec::new(),
                    recent: Default::default(),
                })
            }
        };
        // A new release starts its counts at zero: all it has is new.
        let (delta, restarts) = match app.release == sample.release {
            true => (
                sample.stats.since(&app.last),
                exits.saturating_sub(app.exits),
            ),
            false => (sample.stats.clone(), 0),
        };
        app.release = sample.release.clone();
        app.last = sample.stats.clone();
        app.exits = exits;
        app.total.add(&delta);
        app.restarts += restarts;
        let (memory, processes) = sample
            .processes
            .iter()
            .filter_map(|(pid, _)| *pid)
            .map(proc::tree_rss)
            .fold((0, 0), |(m, n), (bytes, count)| (m + bytes, n + count));
        let values = app_values(&delta, sample.in_flight, processes, memory, restarts);
        app.rings.write(t, &values);
        if app.recent.len() == RECENT {
            app.recent.pop_front();
        }
        app.recent.push_back((values[0], values[4]));
        app.latest = values;
    }

    /// Prometheus text: the node's counters as node_exporter names them, each app's as
    /// kamal-proxy's do, and each certificate's end.
    pub fn prometheus(&self, certs: &silver_wire::api::CertsView) -> String {
        let raw = proc::read(&self.store_root, &self.disks);
        let state = self.lock();
        let apps: Vec<(&AppName, &AppState)> = {
            let mut v: Vec<_> = state.apps.iter().collect();
            v.sort_by(|a, b| a.0.cmp(b.0));
            v
        };
        view::prometheus(&raw, &self.store_root, &apps_for_text(&apps), certs)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the Prometheus text needs of an app.
pub(crate) struct AppTotals {
    pub app: String,
    pub total: Stats,
    pub restarts: u64,
    pub latest: Vec<f32>,
}

fn apps_for_text(apps: &[(&AppName, &AppState)]) -> Vec<AppTotals> {
    apps.iter()
        .map(|(name, a)| AppTotals {
            app: name.to_string(),
            total: a.total.clone(),
            restarts: a.restarts,
            latest: a.latest.clone(),
        })
        .collect()
}

impl Rings {
    fn open(base: &std::path::Path, fields: usize) -> Option<Rings> {
        let open = |suffix: &str, step| {
            Ring::open(&base.with_extension(suffix), fields, SLOTS, step)
                .map_err(|e| tracing::error!(path = %base.display(), error = %e, "cannot open a metrics ring"))
                .ok()
        };
        Some(Rings {
            fine: open("10s", STEP)?,
            coarse: open("5m", COARSE_STEP)?,
            bucket: 0,
            sum: vec![0.0; fields],
            n: vec![0; fields],
        })
    }

    /// Writes the 10 s sample, and the 5 min average when its 5 minutes are over.
    fn write(&mut self, t: u64, values: &[f32]) {
        if let Err(e) = self.fine.write(t, values) {
            tracing::warn!(error = %e, "cannot write a metrics sample");
        }
        let bucket = t / COARSE_STEP;
        if bucket != self.bucket && self.n.iter().any(|n| *n > 0) {
            let avg: Vec<f32> = self
                .sum
                .iter()
                .zip(&self.n)
                .map(|(s, n)| {
                    if *n == 0 {
                        f32::NAN
                    } else {
                        (*s / *n as f64) as f32
                    }
                })
                .collect();
            if let Err(e) = self.coarse.write(self.bucket * COARSE_STEP, &avg) {
                tracing::warn!(error = %e, "cannot write a metrics sample");
            }
            self.sum.iter_mut().for_each(|s| *s = 0.0);
            self.n.iter_mut().for_each(|n| *n = 0);
        }
        self.bucket = bucket;
        for ((s, n), v) in self.sum.iter_mut().zip(self.n.iter_mut()).zip(values) {
            if v.is_finite() {
                *s += *v as f64;
                *n += 1;
            }
        }
    }
}

/// The node's rates and levels between two readings `elapsed` apart.
fn node_values(prev: &proc::Raw, now: &proc::Raw, elapsed: Duration) -> Vec<f32> {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = |a: u64, b: u64| (b.saturating_sub(a) as f64 / secs) as f32;
    let busy = now.cpu.0.saturating_sub(prev.cpu.0) as f64;
    let total = now.cpu.1.saturating_sub(prev.cpu.1) as f64;
    let agent = now.self_ticks.saturating_sub(prev.self_ticks) as f64 / proc::TICKS_PER_SEC / secs;
    vec![
        if total > 0.0 {
            (busy / total) as f32
        } else {
            f32::NAN
        },
        now.load[0] as f32,
        now.mem_available as f32,
        now.mem_total as f32,
        rate(prev.swap_in, now.swap_in),
        rate(prev.swap_out, now.swap_out),
        now.fs_avail as f32,
        now.fs_size as f32,
        rate(prev.disk_read_bytes, now.disk_read_bytes),
        rate(prev.disk_written_bytes, now.disk_written_bytes),
        rate(prev.net_rx_bytes, now.net_rx_bytes),
        rate(prev.net_tx_bytes, now.net_tx_bytes),
        agent as f32,
        now.self_rss as f32,
    ]
}

/// An app's rates, latencies and levels over one step.
fn app_values(
    delta: &Stats,
    in_flight: usize,
    processes: usize,
    memory: u64,
    restarts: u64,
) -> Vec<f32> {
    let per_s = |n: u64| n as f32 / STEP as f32;
    let pct = |p| {
        delta
            .percentile_ms(p)
            .map_or(f32::NAN, |v| v.min(60_000) as f32)
    };
    vec![
        per_s(delta.requests),
        per_s(delta.by_class[0] + delta.by_class[1]),
        per_s(delta.by_class[2]),
        per_s(delta.by_class[3]),
        per_s(delta.by_class[4]),
        pct(50),
        pct(95),
        pct(99),
        in_flight as f32,
        processes as f32,
        memory as f32,
        restarts as f32,
        delta.deadline_ends as f32,
    ]
}

pub(crate) fn view_finite(v: f32) -> f64 {
    if v.is_finite() {
        v as f64
    } else {
        0.0
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
