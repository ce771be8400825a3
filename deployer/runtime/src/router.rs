//! The node's HTTP front door: routes each request by Host and path prefix to an app, serves its
//! `static/` files, and proxies the rest to the app's live web process, streaming both ways.
//!
//! Routing (design §5): the exact host first, then the most specific `*.suffix`, then the
//! catch-all `*`; within those, the longest path prefix. The prefix reaches the app as
//! `SCRIPT_NAME` (through `X-Silver-Script-Name`, which clients cannot send). The table is swapped
//! whole, so a request sees one consistent version of it: that swap is the moment traffic moves.

use silver_types::AppName;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use silver_types::appconfig::Location;
use tower::ServiceExt;

use crate::front_door::Scheme;
use crate::static_cache::StaticCache;

/// A web process the router sends requests to; counts the requests it is serving so the old
/// release can be drained before it stops.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    /// Requests in flight, watched: a drain waits for zero and the pool sizer for a change,
    /// instead of polling.
    in_flight: tokio::sync::watch::Sender<usize>,
    /// Each request in flight, by a number of its own.
    started: std::sync::Mutex<HashMap<u64, Running>>,
    next: std::sync::atomic::AtomicU64,
    /// What its answers were: how many, how many 5xx, how long to their headers.
    stats: std::sync::Mutex<Stats>,
    /// How many requests the web process serves at once (its workers); 0 when unknown, and
    /// then nothing is ever ended early (`shed.rs`).
    capacity: AtomicUsize,
    /// How long its good answers took lately: what the shedder calls normal.
    recent: std::sync::Mutex<Recent>,
    /// Tasks that serve it and end with it (a PHP release's FastCGI gateway).
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|p| p.into_inner());
        for task in tasks.drain(..) {
            task.abort();
        }
    }
}

/// A request in flight: when it started, and how to end it early while it waits for its
/// answer's headers (None once they came, or for a path the app marks slow).
#[derive(Debug)]
struct Running {
    since: std::time::Instant,
    end: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The app's answers below 500, as the 95th percentile of each `RECENT_WINDOW` over the last
/// `RECENT_WINDOWS` of them: its normal latency is the best of those, so the queueing a few
/// wedged requests cause (which slows every answer) does not raise the bar they are held to.
/// Bad requests the shedder ended never count: they are 503s.
#[derive(Debug)]
struct Recent {
    since: std::time::Instant,
    current: [u64; BUCKETS_MS.len()],
    /// The p95 of each finished window that had enough answers to have one, newest last.
    p95s: std::collections::VecDeque<u64>,
}

const RECENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// Five minutes of windows: a release whose pages really got slower is judged by them after
/// that.
const RECENT_WINDOWS: usize = 30;
/// Fewer answers than this in a window say nothing about what is normal.
const RECENT_MIN_ANSWERS: u64 = 100;

impl Default for Recent {
    fn default() -> Self {
        Recent {
            since: std::time::Instant::now(),
            current: [0; BUCKETS_MS.len()],
            p95s: Default::default(),
        }
    }
}

impl Recent {
    fn record(&mut self, elapsed: std::time::Duration) {
        if self.since.elapsed() >= RECENT_WINDOW {
            if let Some(p95) = p95_ms(&self.current) {
                self.p95s.push_back(p95);
                if self.p95s.len() > RECENT_WINDOWS {
                    self.p95s.pop_front();
                }
            }
            self.current = [0; BUCKETS_MS.len()];
            self.since = std::time::Instant::now();
        }
        self.current[bucket(elapsed)] += 1;
    }

    /// The lowest p95 of the recent windows, the one under way included once it has enough.
    fn normal_ms(&self) -> Option<u64> {
        let current = p95_ms(&self.current);
        self.p95s.iter().copied().chain(current).min()
    }
}

/// The 95th percentile's bucket bound of a histogram (None below `RECENT_MIN_ANSWERS`).
fn p95_ms(counts: &[u64; BUCKETS_MS.len()]) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    (total >= RECENT_MIN_ANSWERS).then(|| percentile_of(counts, 95))?
}

/// The upper bound of the bucket holding the `pct`th percentile of a latency histogram (None
/// when it is empty).
fn percentile_of(counts: &[u64; BUCKETS_MS.len()], pct: u64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (total * pct).div_ceil(100).max(1);
    let mut seen = 0;
    let found = counts.iter().zip(BUCKETS_MS).find_map(|(n, bound)| {
        seen += n;
        (seen >= rank).then_some(bound)
    });
    found.or(BUCKETS_MS.last().copied())
}

fn bucket(elapsed: std::time::Duration) -> usize {
    let ms = elapsed.as_millis() as u64;
    BUCKETS_MS
        .iter()
        .position(|b| ms <= *b)
        .unwrap_or(BUCKETS_MS.len() - 1)
}

/// Latency buckets, by upper bound in milliseconds; the last is everything slower.
pub const BUCKETS_MS: [u64; 16] = [
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    300,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    30_000,
    u64::MAX,
];

/// A backend's answers so far: counts and a latency histogram, enough for an error rate and a
/// p99 that a fleet deploy compares between the new release and the one it replaced.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub server_errors: u64,
    /// Answers by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub by_class: [u64; 5],
    /// Requests the fail-safe runtime ended: at the app's `request_timeout`, or early, while
    /// others waited (`shed.rs`).
    pub deadline_ends: u64,
    pub buckets: [u64; BUCKETS_MS.len()],
}

impl Stats {
    fn record(&mut self, status: u16, elapsed: std::time::Duration) {
        self.requests += 1;
        if status >= 500 {
            self.server_errors += 1;
        }
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class] += 1;
        self.buckets[bucket(elapsed)] += 1;
    }

    /// The upper bound of the bucket holding the 99th percentile (None before any request).
    pub fn p99_ms(&self) -> Option<u64> {
        self.percentile_ms(99)
    }

    /// The upper bound of the bucket holding the `pct`th percentile (None before any request).
    pub fn percentile_ms(&self, pct: u64) -> Option<u64> {
        percentile_of(&self.buckets, pct)
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Stats) {
        self.requests += other.requests;
        self.server_errors += other.server_errors;
        self.deadline_ends += other.deadline_ends;
        for (a, b) in self.by_class.iter_mut().zip(other.by_class) {
            *a += b;
        }
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
    }

    /// What happened between `earlier` and `self` (both of one backend).
    pub fn since(&self, earlier: &Stats) -> Stats {
        let mut buckets = self.buckets;
        for (b, e) in buckets.iter_mut().zip(earlier.buckets) {
            *b = b.saturating_sub(e);
        }
        let mut by_class = self.by_class;
        for (c, e) in by_class.iter_mut().zip(earlier.by_class) {
            *c = c.saturating_sub(e);
        }
        Stats {
            requests: self.requests.saturating_sub(earlier.requests),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            by_class,
            deadline_ends: self.deadline_ends.saturating_sub(earlier.deadline_ends),
            buckets,
        }
    }
}

impl Backend {
    /// A web process at `addr` that serves `capacity` requests at once (0: unknown).
    pub fn new(addr: SocketAddr, capacity: usize) -> Arc<Backend> {
        Arc::new(Backend {
            addr,
            in_flight: tokio::sync::watch::Sender::new(0),
            started: Default::default(),
            next: Default::default(),
            stats: Default::default(),
            capacity: AtomicUsize::new(capacity),
            recent: Default::default(),
            tasks: Default::default(),
        })
    }

    /// Ends `task` when this backend goes (its release stopped, or never went live).
    pub fn hold(&self, task: tokio::task::AbortHandle) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    /// The web process now serves `workers` requests at once (its pool grew or shrank).
    pub fn set_capacity(&self, workers: usize) {
        self.capacity.store(workers, Ordering::Relaxed);
    }

    /// Requests waiting for a worker: those in flight past the capacity (0 when it is unknown).
    pub fn queued(&self) -> usize {
        match self.capacity.load(Ordering::Relaxed) {
            0 => 0,
            capacity => self.in_flight().saturating_sub(capacity),
        }
    }

    /// The app's normal latency lately: the lowest 95th percentile of its answers below 500
    /// in the 10-s windows of the last five minutes, as a bucket bound (None until a window
    /// has 100 answers).
    pub fn normal_ms(&self) -> Option<u64> {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .normal_ms()
    }

    /// Ends up to `max` requests still waiting for their answer after more than `age`, oldest
    /// first: each gets a 503 and its connection to the app closes, which ends the worker
    /// holding it (`silver_wsgi.py`, php-fpm's request end). Returns how many.
    pub fn shed_older_than(&self, age: std::time::Duration, max: usize) -> usize {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let mut old: Vec<(std::time::Instant, u64)> = started
            .iter()
            .filter(|(_, r)| r.end.is_some() && r.since.elapsed() > age)
            .map(|(id, r)| (r.since, *id))
            .collect();
        old.sort();
        let mut ended = 0;
        for (_, id) in old.into_iter().take(max) {
            let end = started.get_mut(&id).and_then(|r| r.end.take());
            if end.is_some_and(|end| end.send(()).is_ok()) {
                ended += 1;
            }
        }
        ended
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, status: StatusCode, elapsed: std::time::Duration) {
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(status.as_u16(), elapsed);
        if !status.is_server_error() {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.record(elapsed);
        }
    }

    fn record_deadline_end(&self) {
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .deadline_ends += 1;
    }

    pub fn in_flight(&self) -> usize {
        *self.in_flight.borrow()
    }

    /// The count of requests in flight, as it changes; closed when the backend is dropped.
    pub fn watch_in_flight(&self) -> tokio::sync::watch::Receiver<usize> {
        self.in_flight.subscribe()
    }

    /// Requests in flight for longer than `age`: the workers they hold are stuck, not busy.
    pub fn older_than(&self, age: std::time::Duration) -> usize {
        let started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        started.values().filter(|r| r.since.elapsed() > age).count()
    }

    /// Counts a request in; the receiver fires if the shedder ends it (never, unless
    /// `sheddable`).
    fn enter(self: &Arc<Self>, sheddable: bool) -> (InFlight, tokio::sync::oneshot::Receiver<()>) {
        self.in_flight.send_modify(|n| *n += 1);
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (end, ended) = tokio::sync::oneshot::channel();
        let running = Running {
            since: std::time::Instant::now(),
            end: sheddable.then_some(end),
        };
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(n, running);
        (InFlight(self.clone(), n), ended)
    }
}

/// Held while a request (and its response body, or its WebSocket) is being served.
struct InFlight(Arc<Backend>, u64);

impl InFlight {
    /// Its answer's headers came: from here on it is never ended early (a body that streams,
    /// a WebSocket).
    fn answered(&self) {
        let mut started = self.0.started.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = started.get_mut(&self.1) {
            r.end = None;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n -= 1);
        self.0
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

/// How one app is reached.
#[derive(Debug, Clone, Default)]
pub struct AppRoute {
    pub locations: Vec<Location>,
    /// None for an app with no web process: only its static files are served.
    pub backend: Option<Arc<Backend>>,
    /// `static/` directories by release label (id12), the live release first, then the one it
    /// replaced, whose versioned URLs stay valid while pages that name them are still out there.
    pub statics: Vec<(String, PathBuf)>,
    pub maintenance: bool,
    /// The app's `request_timeout`: past it, the client gets a 504 (the worker holding the
    /// request replaces itself at the same moment).
    pub request_timeout: Option<std::time::Duration>,
    /// `service.writable_root`: served before the app is asked, `ROOT/HOST/path` for that
    /// host, else `ROOT/path`.
    pub writable_root: Option<PathBuf>,
    /// What plain HTTP gets once the host has a certificate (app.ini's `https`).
    pub https: silver_types::appconfig::HttpsPolicy,
    /// `Strict-Transport-Security: max-age=N`, sent over HTTPS only (app.ini's `hsts`).
    pub hsts_max_age: Option<u64>,
    /// app.ini's `slow_paths`: path prefixes (below the app's own prefix) whose requests are
    /// slow by design, never ended early; only `request_timeout` bounds them.
    pub slow_paths: Vec<String>,
    /// A PHP app's `php_root` in its release: files there other than `.php` are served as they
    /// are (Silver Lining's rule: PHP apps mix code with static files).
    pub php_root: Option<PathBuf>,
}

/// Every app's route, each shared by the requests that read it.
type Table = HashMap<AppName, Arc<AppRoute>>;

/// The routing table, shared by the front door and the runtime.
#[derive(Clone, Default)]
pub struct Routes {
    table: Arc<RwLock<Arc<Table>>>,
    /// Per app, whether requests that may write go on to it now (`hold_writes`).
    gates: Arc<std::sync::Mutex<HashMap<AppName, Gate>>>,
    /// Bumped on every change, for whoever follows the table (certificates follow its hosts).
    version: Arc<tokio::sync::watch::Sender<u64>>,
}

/// Whether an app's writes may go on, and how many are in flight.
#[derive(Clone)]
struct Gate {
    open: Arc<tokio::sync::watch::Sender<bool>>,
    writes: Arc<AtomicUsize>,
}

/// While `update_fetch` runs, requests that may write (not GET, HEAD, OPTIONS or TRACE) wait at
/// the front door: one the old release acknowledged could otherwise be undone when a failed
/// migration's checkpoint is restored. They go on when this is dropped: to the new release
/// after the switch, or to the old one after the restore. One held past [`HOLD_LIMIT`] gets a
/// 503 with `Retry-After`, which its client sees.
pub struct WriteHold {
    gate: Gate,
}

impl Drop for WriteHold {
    fn drop(&mut self) {
        self.gate.open.send_replace(true);
    }
}

/// How long a write waits at the front door for an update to end, before a 503.
pub const HOLD_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Counts a write in flight while it lives.
struct Writing(Arc<AtomicUsize>);

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Routes {
    pub fn get(&self, app: &AppName) -> Option<AppRoute> {
        self.snapshot().get(app).map(|r| (**r).clone())
    }

    /// Replaces an app's route in one step: requests that arrive after this see only the new one.
    pub fn set(&self, app: &AppName, route: AppRoute) {
        self.edit(|t| {
            t.insert(app.clone(), Arc::new(route));
        });
    }

    pub fn remove(&self, app: &AppName) {
        self.edit(|t| {
            t.remove(app);
        });
    }

    /// Keeps serving an earlier release's versioned static files beside the live one's (after
    /// a restart, the release the live one replaced: pages it served may still be out there).
    pub fn keep_static(&self, app: &AppName, label: String, dir: PathBuf) {
        self.edit(|t| {
            if let Some(r) = t.get_mut(app).map(Arc::make_mut) {
                if !r.statics.iter().any(|(l, _)| *l == label) {
                    r.statics.push((label, dir));
                }
            }
        });
    }

    pub fn set_maintenance(&self, app: &AppName, on: bool) {
        self.edit(|t| {
            if let Some(r) = t.get_mut(app).map(Arc::make_mut) {
                r.maintenance = on;
            }
        });
    }

    /// The other app, if any, that already answers at `location`.
    pub fn owner(&self, location: &Location, except: &AppName) -> Option<AppName> {
        self.snapshot()
            .iter()
            .find(|(app, r)| *app != except && r.locations.contains(location))
            .map(|(app, _)| app.clone())
    }

    /// A release's `static/` directory, by its label, whichever app it belongs to.
    pub fn static_dir(&self, label: &str) -> Option<PathBuf> {
        self.snapshot().values().find_map(|r| {
            r.statics
                .iter()
                .find(|(l, _)| l == label)
                .map(|(_, dir)| dir.clone())
        })
    }

    /// The app for a request, with the path prefix it matched. (The route is shared, not
    /// copied: this runs for every request.)
    pub fn resolve(&self, host: &str, path: &str) -> Option<(AppName, Arc<AppRoute>, String)> {
        let table = self.snapshot();
        let host = normalize_host(host);
        let bare = strip_port(&host);
        // (host tier, host specificity, prefix length): the highest wins.
        type Rank = (u8, usize, usize);
        let mut best: Option<(Rank, &AppName, &Arc<AppRoute>, &str)> = None;
        for (app, route) in table.iter() {
            for loc in &route.locations {
                let Some(host_rank) = host_rank(&loc.host, &host, bare) else {
                    continue;
                };
                if !prefix_matches(&loc.path, path) {
                    continue;
                }
                let rank = (host_rank.0, host_rank.1, loc.path.len());
                if best.as_ref().is_none_or(|b| rank > b.0) {
                    best = Some((rank, app, route, &loc.path));
                }
            }
        }
        best.map(|(_, app, route, prefix)| (app.clone(), route.clone(), prefix.to_string()))
    }

    /// Holds the app's writes at the front door (see [`WriteHold`]), once those already in
    /// flight have finished (or `drain` has passed: the router answers them 504 by then).
    pub async fn hold_writes(&self, app: &AppName, drain: std::time::Duration) -> WriteHold {
        let gate = self.gate(app);
        gate.open.send_replace(false);
        let deadline = tokio::time::Instant::now() + drain;
        while gate.writes.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        WriteHold { gate }
    }

    fn gate(&self, app: &AppName) -> Gate {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .entry(app.clone())
            .or_insert_with(|| Gate {
                open: Arc::new(tokio::sync::watch::Sender::new(true)),
                writes: Arc::default(),
            })
            .clone()
    }

    /// Waits while the app's writes are held; false past [`HOLD_LIMIT`]. Then counts the write
    /// in flight until the guard drops.
    async fn admit_write(&self, app: &AppName) -> Option<Writing> {
        let gate = self.gate(app);
        let mut open = gate.open.subscribe();
        let waited = tokio::time::timeout(HOLD_LIMIT, open.wait_for(|o| *o)).await;
        if !matches!(waited, Ok(Ok(_))) {
            return None;
        }
        gate.writes.fetch_add(1, Ordering::SeqCst);
        Some(Writing(gate.writes))
    }

    /// Every host the table names (exact and `*.suffix`, not the catch-all), with its apps.
    pub fn hosts(&self) -> std::collections::BTreeMap<String, Vec<AppName>> {
        let mut hosts = std::collections::BTreeMap::<String, Vec<AppName>>::new();
        for (app, route) in self.snapshot().iter() {
            for loc in route.locations.iter().filter(|l| l.host != "*") {
                let apps = hosts.entry(loc.host.clone()).or_default();
                if !apps.contains(app) {
                    apps.push(app.clone());
                }
            }
        }
        hosts
    }

    /// Changes as the table does.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn snapshot(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn edit(&self, f: impl FnOnce(&mut Table)) {
        let mut guard = self.table.write().unwrap_or_else(|p| p.into_inner());
        let mut next = (**guard).clone();
        f(&mut next);
        *guard = Arc::new(next);
        self.version.send_modify(|v| *v += 1);
    }
}

/// (tier, specificity): exact host 3, `*.suffix` 2 (longer suffixes first), catch-all 1.
fn host_rank(pattern: &str, host: &str, bare: &str) -> Option<(u8, usize)> {
    if pattern == host || pattern == bare {
        return Some((3, 0));
    }
    if pattern == "*" {
        return Some((1, 0));
    }
    let suffix = pattern.strip_prefix('*')?; // `.example.com`
    (bare.ends_with(suffix) && bare.len() > suffix.len()).then_some((2, suffix.len()))
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn normalize_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| h);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

#[derive(Clone)]
struct Front {
    routes: Routes,
    client: Client<HttpConnector, Body>,
    tls: Option<TlsFront>,
    statics: Arc<crate::static_cache::StaticCache>,
}

/// What the router needs of the TLS listener: which hosts have a certificate (an app's HTTPS
/// policy applies only to those), the HTTP-01 answers, and the port redirects name.
#[derive(Clone)]
pub struct TlsFront {
    pub certs: Arc<crate::tls::Certs>,
    pub port: u16,
}

/// Where HTTP-01 validations look (RFC 8555 §8.3).
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The front door's router: one fallback handler, so every method and path comes here.
pub fn front(routes: Routes, tls: Option<TlsFront>) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .build(connector);
    Router::new().fallback(handle).with_state(Front {
        routes,
        client,
        tls,
        statics: Arc::default(),
    })
}

const VERSIONED_CACHE: &str = "public, max-age=31536000, immutable";

/// Where every release's static files are served, on every host and whatever the app's path
/// prefix: `$STATIC_URL` is `/.silver/static/<id12>/`, so it works at each of an app's
/// locations (an app reads it once, at start, and cannot give each location its own).
pub const STATIC_PREFIX: &str = "/.silver/static/";

async fn handle(State(front): State<Front>, request: Request) -> Response {
    if let Err(why) = check_host(&request) {
        return page(StatusCode::BAD_REQUEST, "Bad request", why);
    }
    if let Some(answer) = acme_answer(front.tls.as_ref(), &request) {
        return answer;
    }
    if let Some(rest) = request.uri().path().strip_prefix(STATIC_PREFIX) {
        let rest = rest.to_string();
        return versioned_static(&front, &rest, request).await;
    }
    let host = request_host(&request);
    let path = request.uri().path().to_string();
    let Some((app, route, prefix)) = front.routes.resolve(&host, &path) else {
        return page(
            StatusCode::NOT_FOUND,
            "No app here",
            &format!(
                "No app is mapped to <code>{}</code> on this node.",
                escape(&host)
            ),
        );
    };
    let scheme = scheme(&request);
    if let Some(refusal) = https_policy(front.tls.as_ref(), &route, scheme, &host, &request) {
        return refusal;
    }
    let hsts = route.hsts_max_age.filter(|_| scheme == Scheme::Https);
    let mut response = routed(&front, request, &app, route, &host, &path, &prefix).await;
    if let Some(secs) = hsts {
        let value = HeaderValue::from_str(&format!("max-age={secs}")).expect("digits");
        response
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, value);
    }
    response
}

/// The request as its app answers it: maintenance page, static file, writable root, or the
/// app's web process.
async fn routed(
    front: &Front,
    request: Request,
    app: &AppName,
    route: Arc<AppRoute>,
    host: &str,
    path: &str,
    prefix: &str,
) -> Response {
    if route.maintenance {
        let why = "is down for maintenance. Please try again soon.";
        return unavailable(app, "Down for maintenance", why, "120");
    }
    let rest = match prefix {
        "/" => path,
        p => &path[p.len()..],
    };
    if let Some((dir, file, versioned)) =
        static_file(&front.statics, &route, rest, request.method())
    {
        return serve_static(&front.statics, request, &dir, &file, versioned).await;
    }
    if let Some(root) = route.writable_root.as_deref().filter(|_| is_read(&request)) {
        let host = strip_port(host).to_string();
        if let Some(resp) = crate::writable::serve(root, &host, rest, request.method()).await {
            return resp;
        }
    }
    if let Some(root) = route.php_root.as_deref().filter(|_| is_read(&request)) {
        if let Some(file) = php_static(&front.statics, root, rest) {
            return serve_static(&front.statics, request, root, &file, false).await;
        }
    }
    // A write waits while the app's update runs; then the table may name another release.
    let (route, _writing) = if is_safe(&request) {
        (route, None)
    } else {
        let Some(writing) = front.routes.admit_write(app).await else {
            let why =
                "is being updated and takes no changes until it is done. Please try again soon.";
            return unavailable(app, "Updating", why, "30");
        };
        match front.routes.resolve(host, path) {
            Some((_, route, _)) => (route, Some(writing)),
            None => (route, Some(writing)),
        }
    };
    match route.backend.clone() {
        Some(backend) => {
            let deadline = route.request_timeout;
            let scheme = scheme(&request);
            let to = Forward {
                host,
                prefix,
                scheme,
                sheddable: !route
                    .slow_paths
                    .iter()
                    .any(|slow| rest.starts_with(slow.as_str())),
            };
            proxy(&front.client, request, backend, to, deadline).await
        }
        None => page(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("<code>{}</code> has no such file.", escape(path)),
        ),
    }
}

/// HTTP/1.1 requires exactly one `Host` (RFC 9112 §3.2). Two of them let the router and the app
/// each believe a different one (request smuggling between virtual hosts); none leaves the
/// router guessing which app is meant.
fn check_host(request: &Request) -> Result<(), &'static str> {
    let hosts = request.headers().get_all(header::HOST).iter().count();
    let http11 = request.version() == axum::http::Version::HTTP_11;
    // HTTP/2 names the host in `:authority` (RFC 9113 §8.3.1); a `Host` beside it must agree.
    if request.version() == axum::http::Version::HTTP_2 {
        return match (hosts, request.uri().authority()) {
            (0, Some(_)) => Ok(()),
            (1, Some(a)) if request.headers()[header::HOST] == a.as_str() => Ok(()),
            (1, None) => Ok(()),
            _ => Err("An HTTP/2 request names its host once, in <code>:authority</code> or <code>Host</code>."),
        };
    }
    match hosts {
        1 => Ok(()),
        0 if !http11 => Ok(()),
        0 => Err("An HTTP/1.1 request needs a <code>Host</code> header."),
        _ => Err("A request may carry only one <code>Host</code> header."),
    }
}

/// `/.silver/static/<label>/<file>`: a release's static file, cached for good.
async fn versioned_static(front: &Front, rest: &str, request: Request) -> Response {
    let routes = &front.routes;
    let method = request.method().clone();
    let found = rest.split_once('/').and_then(|(label, file)| {
        let dir = routes.static_dir(label)?;
        exists(&front.statics, &dir, file).then(|| (dir, format!("/{file}")))
    });
    match found {
        Some((dir, file))
            if method == axum::http::Method::GET || method == axum::http::Method::HEAD =>
        {
            serve_static(&front.statics, request, &dir, &file, true).await
        }
        _ => page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No release on this node has that static file.",
        ),
    }
}

/// The HTTP-01 answer for a token while its order is under way; other tokens go on to the
/// app, which may answer validations of its own.
fn acme_answer(tls: Option<&TlsFront>, request: &Request) -> Option<Response> {
    let token = request.uri().path().strip_prefix(ACME_CHALLENGE_PREFIX)?;
    let key_authorization = tls?.certs.http01(token)?;
    let mut response = key_authorization.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Some(response)
}

fn scheme(request: &Request) -> Scheme {
    request
        .extensions()
        .get::<Scheme>()
        .copied()
        .unwrap_or(Scheme::Http)
}

/// Plain HTTP for a host the front door has a certificate for: redirected or refused as the
/// app's `https` says. Without a certificate there is nowhere to send it, so it is served.
fn https_policy(
    tls: Option<&TlsFront>,
    route: &AppRoute,
    scheme: Scheme,
    host: &str,
    request: &Request,
) -> Option<Response> {
    use silver_types::appconfig::HttpsPolicy;
    let tls = tls?;
    let bare = strip_port(host);
    if scheme == Scheme::Https || route.https == HttpsPolicy::Both || !tls.certs.serves(bare) {
        return None;
    }
    if route.https == HttpsPolicy::Only {
        return Some(page(
            StatusCode::FORBIDDEN,
            "HTTPS only",
            &format!(
                "<code>{}</code> is served over HTTPS only: use <code>https://</code>.",
                escape(bare)
            ),
        ));
    }
    let authority = match tls.port {
        443 => bare.to_string(),
        port => format!("{bare}:{port}"),
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = HeaderValue::from_str(&format!("https://{authority}{path}")).ok()?;
    let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Some(response)
}

fn request_host(request: &Request) -> String {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// A method that changes nothing (RFC 9110 §9.2.1): never held during an update.
fn is_safe(request: &Request) -> bool {
    use axum::http::Method;
    let method = request.method();
    [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE].contains(method)
}

fn is_read(request: &Request) -> bool {
    let method = request.method();
    method == axum::http::Method::GET || method == axum::http::Method::HEAD
}

/// The static file for `rest` (the path below the app's prefix), if there is one:
/// `/static/<id12>/x` from that release (cached for good), `/static/x` from the live one. An app
/// with no web process serves its whole `static/` at its root.
fn static_file(
    cache: &StaticCache,
    route: &AppRoute,
    rest: &str,
    method: &axum::http::Method,
) -> Option<(PathBuf, String, bool)> {
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return None;
    }
    let (live_label, live) = route.statics.first()?;
    let _ = live_label;
    if let Some(after) = rest.strip_prefix("/static/") {
        if let Some((label, file)) = after.split_once('/') {
            if let Some((_, dir)) = route.statics.iter().find(|(l, _)| l == label) {
                return exists(cache, dir, file).then(|| (dir.clone(), format!("/{file}"), true));
            }
        }
        if exists(cache, live, after) {
            return Some((live.clone(), format!("/{after}"), false));
        }
    }
    if route.backend.is_none() {
        return Some((live.clone(), rest.to_string(), false));
    }
    None
}

/// The file under a PHP app's `php_root` that `rest` names, when it is one to serve as it is:
/// never a `.php` file (its source would be shown instead of run; any case, since a file
/// system may fold it), and never a dotfile (`.htaccess`, `.git/`, `.env`: configuration, not
/// content).
fn php_static(cache: &StaticCache, root: &Path, rest: &str) -> Option<String> {
    let file = rest.trim_start_matches('/');
    let decoded = percent_encoding::percent_decode_str(file)
        .decode_utf8()
        .ok()?;
    let hidden = decoded.split('/').any(|c| c.starts_with('.'));
    let php = decoded.to_ascii_lowercase().ends_with(".php");
    (!file.is_empty() && !hidden && !php && exists(cache, root, file)).then(|| format!("/{file}"))
}

/// Whether `dir/file` (percent-decoded) is a regular file inside `dir`. One the cache holds is
/// (release files never change), which spares the `stat` most requests for a small file made.
fn exists(cache: &StaticCache, dir: &Path, file: &str) -> bool {
    let Ok(decoded) = percent_encoding::percent_decode_str(file).decode_utf8() else {
        return false;
    };
    // `..` would climb out of static/; ServeDir refuses it too, but we decide first.
    let safe = decoded
        .split('/')
        .all(|c| !c.is_empty() && c != ".." && c != "." && !c.contains('\0'));
    if !safe {
        return false;
    }
    let path = dir.join(&*decoded);
    cache.holds(&path) || path.is_file()
}

async fn serve_static(
    cache: &crate::static_cache::StaticCache,
    request: Request,
    dir: &Path,
    file: &str,
    versioned: bool,
) -> Response {
    // `..` or `.` would climb out of static/ (a path traversal to any file the agent can
    // read): such a path never reaches the cache, and the file server refuses it too.
    let path = percent_encoding::percent_decode_str(file.trim_start_matches('/'))
        .decode_utf8()
        .ok()
        .filter(|f| {
            f.split('/')
                .filter(|c| !c.is_empty())
                .all(|c| c != ".." && c != "." && !c.contains('\0'))
        })
        .map(|f| dir.join(&*f));
    let cached = path.and_then(|p| cache.serve(&request, &p));
    let resp = match cached {
        Some(resp) => resp,
        None => serve_dir(request, dir, file).await,
    };
    with_cache_control(resp, versioned)
}

/// tower-http's file server, for what the cache does not hold.
async fn serve_dir(request: Request, dir: &Path, file: &str) -> Response {
    let (mut parts, body) = request.into_parts();
    parts.uri = Uri::builder()
        .path_and_query(if file.is_empty() { "/" } else { file })
        .build()
        .unwrap_or_default();
    let request = Request::from_parts(parts, body);
    let served = tower_http::services::ServeDir::new(dir)
        .oneshot(request)
        .await;
    match served {
        Ok(r) => r.map(Body::new),
        Err(never) => match never {},
    }
}

/// Versioned URLs are cached for good; the rest are checked with the server each time.
fn with_cache_control(mut resp: Response, versioned: bool) -> Response {
    let cache = if versioned && resp.status().is_success() {
        VERSIONED_CACHE
    } else {
        "no-cache"
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Sends the request to the backend and counts its answer (status, time to headers).
/// How the request reached the front door, as the app is told.
#[derive(Clone, Copy)]
struct Forward<'a> {
    /// As the client named it, port included.
    host: &'a str,
    prefix: &'a str,
    scheme: Scheme,
    /// Whether the shedder may end it early (not under one of the app's `slow_paths`).
    sheddable: bool,
}

async fn proxy(
    client: &Client<HttpConnector, Body>,
    request: Request,
    backend: Arc<Backend>,
    to: Forward<'_>,
    deadline: Option<std::time::Duration>,
) -> Response {
    let started = std::time::Instant::now();
    let response = answer(client, request, backend.clone(), to, deadline).await;
    backend.record(response.status(), started.elapsed());
    response
}

async fn answer(
    client: &Client<HttpConnector, Body>,
    mut request: Request,
    backend: Arc<Backend>,
    to: Forward<'_>,
    deadline: Option<std::time::Duration>,
) -> Response {
    let (guard, ended) = backend.enter(to.sheddable);
    let client_addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let upgrade = wants_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = match format!("http://{}{}", backend.addr, path_and_query).parse() {
        Ok(uri) => uri,
        Err(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request path is not valid.",
            )
        }
    };
    parts.version = axum::http::Version::HTTP_11;
    // The whole body first (up to a bound), so a slow upload holds a task here, never one of
    // the app's workers; a malformed one is the client's 400 before the app sees a byte.
    let body = match buffer_request(body).await {
        Ok(body) => body,
        Err(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request body is malformed (a bad chunk size or a cut-off body).",
            )
        }
    };
    let malformed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = Body::new(Watched {
        inner: body,
        malformed: malformed.clone(),
    });
    forward_headers(&mut parts.headers, client_addr.as_deref(), to, upgrade);
    let (method, path) = (parts.method.clone(), path_and_query.clone());
    let started = std::time::Instant::now();
    let sent = client.request(Request::from_parts(parts, body));
    let answered = tokio::select! {
        answered = within(deadline, sent) => answered,
        Ok(()) = ended => {
            // Dropping `sent` closes the connection to the app: the worker holding the
            // request sees it and replaces itself.
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::warn!(backend = %backend.addr, %method, path, elapsed_ms, "ended early: it ran far past the app's normal latency while others waited");
            backend.record_deadline_end();
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Ended",
                "This request ran far longer than the app's others while they waited for it, and was ended so they could be served.",
            );
        }
    };
    // Past the deadline, or cut off by the worker replacing itself at it: a 504 either way.
    let timed_out = deadline.filter(|limit| match &answered {
        None => true,
        Some(Err(_)) => started.elapsed() + std::time::Duration::from_millis(500) >= *limit,
        Some(Ok(_)) => false,
    });
    if let Some(limit) = timed_out {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::warn!(backend = %backend.addr, %method, path, elapsed_ms, "request_timeout: answered 504");
        backend.record_deadline_end();
        return page(
            StatusCode::GATEWAY_TIMEOUT,
            "Gateway timeout",
            &format!("The app did not answer within {} s.", limit.as_secs()),
        );
    }
    let Some(answered) = answered else {
        unreachable!("only a deadline cuts a request short, and that is answered above")
    };
    let response = match answered {
        Ok(r) => r,
        Err(_) if malformed.load(Ordering::Relaxed) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request body is malformed (a bad chunk size or a cut-off body).",
            )
        }
        Err(e) => {
            tracing::warn!(backend = %backend.addr, error = %e, "the app did not answer");
            return page(
                StatusCode::BAD_GATEWAY,
                "Bad gateway",
                "The app did not answer. It may be starting or restarting; try again shortly.",
            );
        }
    };
    guard.answered();
    let (mut parts, body) = response.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let mut backend_response = axum::http::Response::from_parts(parts.clone(), ());
            let backend_upgrade = hyper::upgrade::on(&mut backend_response);
            tokio::spawn(async move {
                let _guard = guard;
                if let (Ok(a), Ok(b)) = tokio::join!(client_upgrade, backend_upgrade) {
                    let _ =
                        tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b))
                            .await;
                }
            });
            return Response::from_parts(parts, Body::empty());
        }
    }
    strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, decouple(body, guard))
}

/// `sent` within `deadline`: None past it.
async fn within<F: std::future::Future>(
    deadline: Option<std::time::Duration>,
    sent: F,
) -> Option<F::Output> {
    match deadline {
        Some(limit) => tokio::time::timeout(limit, sent).await.ok(),
        None => Some(sent.await),
    }
}

/// Request bodies up to this size are read whole before the app is asked; larger ones stream
/// on after it.
const REQUEST_BUFFER_BYTES: usize = 8 << 20;

/// Response chunks read ahead of a slow client: hyper reads at most some hundreds of KiB at a
/// time, so this holds tens of MiB.
const RESPONSE_AHEAD_CHUNKS: usize = 256;

/// Reads the request body up to `REQUEST_BUFFER_BYTES`; a longer one continues as a stream.
async fn buffer_request(mut body: Body) -> Result<Body, axum::Error> {
    use http_body_util::BodyExt;
    if http_body::Body::is_end_stream(&body) {
        return Ok(body);
    }
    let mut chunks: Vec<bytes::Bytes> = Vec::new();
    let mut size = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers: the apps behind the router never read them
        };
        size += data.len();
        chunks.push(data);
        if size > REQUEST_BUFFER_BYTES {
            let head = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, axum::Error>));
            let rest = body.into_data_stream();
            return Ok(Body::from_stream(futures_util::StreamExt::chain(
                head, rest,
            )));
        }
    }
    Ok(Body::from(chunks.concat()))
}

/// Reads the app's response as fast as the app writes it, whatever pace the client reads at,
/// so a slow download holds a task here, never one of the app's workers. The backend counts as
/// busy (`guard`) until its last byte is read.
fn decouple(mut body: hyper::body::Incoming, guard: InFlight) -> Body {
    use http_body_util::BodyExt;
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<bytes::Bytes, hyper::Error>>(RESPONSE_AHEAD_CHUNKS);
    tokio::spawn(async move {
        let _guard = guard;
        while let Some(frame) = body.frame().await {
            let sent = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => tx.send(Ok(data)).await,
                    Err(_) => Ok(()), // trailers
                },
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            };
            if sent.is_err() {
                break; // the client went away
            }
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

fn forward_headers(headers: &mut HeaderMap, client: Option<&str>, to: Forward<'_>, upgrade: bool) {
    strip_hop_by_hop(headers, upgrade);
    // HTTP/2 names the host in `:authority`, and the app speaks HTTP/1.1, which needs `Host`.
    if !headers.contains_key(header::HOST) {
        if let Ok(v) = HeaderValue::from_str(to.host) {
            headers.insert(header::HOST, v);
        }
    }
    // Only the router may say who the client is, how it came and under which prefix the app
    // sits: a client's own `Forwarded`, `X-Forwarded-*`, `X-Real-IP` or `X-Silver-*` would let it
    // pose as another address (past an app's IP allow-list) or move the app's URLs.
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.starts_with("x-silver-")
                || k.starts_with("x-forwarded-")
                || k == "forwarded"
                || k == "x-real-ip"
        })
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    if let Some(v) = client.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert("x-forwarded-for", v.clone());
        headers.insert("x-real-ip", v);
    }
    let proto = match to.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    if let Ok(v) = HeaderValue::from_str(to.host) {
        headers.insert("x-forwarded-host", v);
    }
    if to.prefix != "/" {
        if let Ok(v) = HeaderValue::from_str(to.prefix) {
            headers.insert("x-forwarded-prefix", v.clone());
            headers.insert("x-silver-script-name", v);
        }
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !(keep_upgrade && t == "upgrade"))
        .collect();
    for name in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(listed) {
        headers.remove(name.as_str());
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// A request body that notes whether the client sent a malformed one, so that the answer is a
/// 400 for the client's mistake and not a 502 blaming the app.
struct Watched {
    inner: Body,
    malformed: Arc<std::sync::atomic::AtomicBool>,
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.malformed.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A 503 that names the app, says why, and when to try again (`Retry-After`, seconds).
fn unavailable(app: &AppName, title: &str, why: &str, retry_after: &'static str) -> Response {
    let message = format!("<code>{}</code> {why}", escape(app.as_str()));
    let mut resp = page(StatusCode::SERVICE_UNAVAILABLE, title, &message);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
    resp
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;margin:4em auto;max-width:40em\"><h1>{title}</h1>\
         <p>{message}</p><hr><small>silver</small></body></html>\n"
    );
    let mut resp = (status, Html(html)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> AppName {
        AppName::parse(s).unwrap()
    }

    fn routes(table: &[(&str, &[&str])]) -> Routes {
        let routes = Routes::default();
        for (app, locs) in table {
            routes.set(
                &name(app),
                AppRoute {
                    locations: locs.iter().map(|l| Location::parse(l).unwrap()).collect(),
                    ..AppRoute::default()
                },
            );
        }
        routes
    }

    fn check(routes: &Routes, host: &str, path: &str, expected: Option<(&str, &str)>) {
        let got = routes
            .resolve(host, path)
            .map(|(app, _, prefix)| (app.to_string(), prefix));
        let want = expected.map(|(a, p)| (a.to_string(), p.to_string()));
        assert_eq!(got, want, "{host}{path}");
    }

    #[test]
    fn host_then_wildcard_then_catch_all_and_longest_prefix() {
        let r = routes(&[
            ("exact", &["blog.example.com"]),
            ("api", &["blog.example.com/api", "api.example.com"]),
            ("wild", &["*.example.com"]),
            ("deeper", &["*.eu.example.com"]),
            ("any", &["*"]),
        ]);
        check(&r, "blog.example.com", "/", Some(("exact", "/")));
        check(&r, "Blog.Example.com:8080", "/post/1", Some(("exact", "/")));
        check(&r, "blog.example.com", "/api", Some(("api", "/api")));
        check(&r, "blog.example.com", "/api/v1", Some(("api", "/api")));
        check(&r, "blog.example.com", "/apix", Some(("exact", "/")));
        check(&r, "api.example.com", "/x", Some(("api", "/")));
        check(&r, "shop.example.com", "/", Some(("wild", "/")));
        check(&r, "shop.eu.example.com", "/", Some(("deeper", "/")));
        check(&r, "example.com", "/", Some(("any", "/")));
        check(&r, "other.org", "/", Some(("any", "/")));
        check(&r, "", "/", Some(("any", "/")));
        let none = routes(&[("exact", &["blog.example.com"])]);
        check(&none, "other.org", "/", None);
    }

    #[test]
    fn an_exact_host_without_a_matching_prefix_falls_through() {
        let r = routes(&[("docs", &["example.com/docs"]), ("wild", &["*.com"])]);
        check(&r, "example.com", "/docs/x", Some(("docs", "/docs")));
        check(&r, "example.com", "/", Some(("wild", "/")));
    }

    #[test]
    fn php_roots_serve_files_but_never_code_dotfiles_or_outside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        std::fs::create_dir_all(root.join(".git")).unwrap();
        for f in ["a.css", "index.php", "x.PHP", ".htaccess", ".git/config"] {
            std::fs::write(root.join(f), "x").unwrap();
        }
        std::fs::write(dir.path().join("secret.txt"), "x").unwrap();
        let check = |rest: &str, expected: Option<&str>| {
            assert_eq!(
                php_static(&StaticCache::default(), &root, rest).as_deref(),
                expected,
                "{rest}"
            );
        };
        check("/a.css", Some("/a.css"));
        check("/index.php", None);
        check("/x.PHP", None);
        check("/x.%50HP", None);
        check("/.htaccess", None);
        check("/.git/config", None);
        check("/%2egit/config", None);
        check("/../secret.txt", None);
        check("/%2e%2e/secret.txt", None);
        check("/", None);
        check("/missing.css", None);
    }

    #[test]
    fn owners() {
        let r = routes(&[("a", &["x.org"])]);
        assert_eq!(
            r.owner(&Location::parse("x.org").unwrap(), &name("b")),
            Some(name("a"))
        );
        assert_eq!(
            r.owner(&Location::parse("x.org").unwrap(), &name("a")),
            None
        );
    }
}
