//! `silver agent`: the node's control API over HTTP, on tokio and axum, and its front door.
//!
//! `app(state)` builds the control router so tests can drive it without a socket; `serve` binds
//! the control API and the front door (`router::front`), recovers the store, starts the current
//! release of every app, and on SIGINT or SIGTERM stops accepting, then stops the apps. Every
//! request but `/v1/health` must carry `Authorization: Bearer <token>`. Store calls run on
//! blocking threads.

mod activate;
mod certs;
mod cron;
mod data;
pub mod extract;
mod fleet;
mod ops;
mod pull;
mod settings;
mod status;
mod tasks;
mod trust;
mod upload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use packer::Limits;
use silver_types::AppName;

use crate::error::Error;
use crate::store::{self, Store};
use extract::{App, JsonBody};
use silver_runtime::router::Routes;
use silver_runtime::supervise::AppUser;
use silver_runtime::users::AppUsers;
use silver_runtime::{Runtime, RuntimeConfig};
use silver_wire::api::*;

/// Everything the agent needs, resolved by the CLI from flags.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub root: PathBuf,
    pub listen: SocketAddr,
    /// The credential file; created with a random token (mode 0600) if missing.
    pub token_file: PathBuf,
    pub limits: Limits,
    /// Longest an upload may go without sending a byte.
    pub idle_timeout: Duration,
    /// Longest any other request may take.
    pub request_timeout: Duration,
    /// Largest upload, in bytes, in one request.
    pub max_upload_bytes: u64,
    /// Free space to leave on the node after an upload.
    pub free_space_margin: u64,
    /// TLS certificate chain and private key (PEM). With them the agent may listen beyond loopback.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// A second control listener, always TLS, for remote clients. With it, `listen` stays
    /// plaintext on loopback for clients that come through an SSH tunnel.
    pub tls_listen: Option<SocketAddr>,
    /// How long gc spares unreferenced objects: a deploy uploads them before its manifest names them.
    pub gc_grace: Duration,
    /// Where the front door (the apps' public HTTP traffic) listens.
    pub front: SocketAddr,
    /// Registries the node may pull from over plain HTTP off loopback (`host[:port]`).
    pub insecure_registries: Vec<String>,
    /// Start only this app's current release at start-up (`silver up`), not every app's.
    pub only: Option<AppName>,
    /// Where the front door serves HTTPS, if it does.
    pub https: Option<SocketAddr>,
    /// Certificates from ACME for the hosts the locations name; None: the operator's only.
    pub acme: Option<crate::certs::AcmeSettings>,
    /// Sample the node and its apps every 10 s into rings under `<root>/metrics`.
    pub metrics: bool,
    pub alerts: crate::metrics::AlertConfig,
    /// A token that may read `/metrics` and the status, and nothing else (Prometheus's).
    pub read_token_file: Option<PathBuf>,
    pub runtime: RuntimeConfig,
}

impl AgentConfig {
    pub fn new(root: PathBuf) -> AgentConfig {
        AgentConfig {
            token_file: crate::store::Layout::new(&root).token(),
            root,
            listen: SocketAddr::from(([127, 0, 0, 1], 7330)),
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(300),
            max_upload_bytes: 16 << 30,
            free_space_margin: 64 << 20,
            gc_grace: Duration::from_secs(3600),
            tls: None,
            tls_listen: None,
            front: SocketAddr::from(([127, 0, 0, 1], 8080)),
            only: None,
            https: None,
            acme: None,
            metrics: true,
            alerts: Default::default(),
            read_token_file: None,
            insecure_registries: Vec::new(),
            runtime: RuntimeConfig::default(),
        }
    }
}

#[derive(Clone)]
pub struct AgentState {
    pub store: Store,
    pub runtime: Runtime,
    token: Arc<blake3::Hash>,
    config: Arc<AgentConfig>,
    front: Arc<std::sync::OnceLock<SocketAddr>>,
    /// Disk space promised to uploads under way.
    reservations: upload::Reservations,
    /// Fleet deploys under way, by app.
    fleet: fleet::Slots,
    /// The front door's certificates.
    pub certs: Arc<crate::certs::Certificates>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The read-only token's hash, if there is one.
    read_token: Option<Arc<blake3::Hash>>,
}

impl AgentState {
    pub fn new(store: Store, token: &str, config: AgentConfig) -> AgentState {
        let certs = crate::certs::Certificates::load(
            store.layout().clone(),
            config.acme.clone(),
            config.https,
        );
        let metrics = crate::metrics::Metrics::new(config.root.clone(), config.alerts.clone());
        AgentState {
            certs: Arc::new(certs),
            metrics: Arc::new(metrics),
            read_token: None,
            store,
            runtime: Runtime::new(config.runtime.clone(), Routes::default()),
            token: Arc::new(blake3::hash(token.as_bytes())),
            config: Arc::new(config),
            front: Default::default(),
            reservations: Default::default(),
            fleet: Default::default(),
        }
    }
}

/// The addresses the agent listens on, once bound.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub control: SocketAddr,
    /// Whether `control` speaks TLS.
    pub tls: bool,
    /// The TLS-only control listener, when there is one.
    pub remote: Option<SocketAddr>,
    pub front: SocketAddr,
    /// The front door's HTTPS listener, when there is one.
    pub https: Option<SocketAddr>,
}

/// The router. Health is open; everything else checks the credential first.
pub fn app(state: AgentState) -> Router {
    let timeout = state.config.request_timeout;
    let guarded = Router::new()
        // axum's default 2 MB cap on buffered bodies would refuse the manifests of large apps.
        .route(
            "/v1/artifacts/{id}",
            put(upload::put_artifact).layer(axum::extract::DefaultBodyLimit::max(
                state.config.limits.max_manifest_bytes as usize,
            )),
        )
        .route("/v1/artifacts/{id}/commit", post(upload::commit_artifact))
        .route("/v1/pull", post(pull::pull))
        .route("/v1/apps/{app}/preflight", post(activate::preflight))
        .route("/v1/apps/{app}/deploy", post(activate::deploy))
        .route("/v1/apps/{app}/activate", post(activate::activate))
        .route("/v1/apps/{app}/rollback", post(activate::rollback))
        .route("/v1/apps/{app}/maintenance", post(activate::maintenance))
        .route("/v1/apps/{app}/deactivate", post(activate::deactivate))
        .route("/v1/apps/{app}/releases", get(releases))
        .route("/v1/apps/{app}/fleet", get(fleet::status))
        .route("/v1/apps/{app}/fleet/prepare", post(fleet::prepare))
        .route("/v1/apps/{app}/fleet/commit", post(fleet::commit))
        .route("/v1/apps/{app}/fleet/confirm", post(fleet::confirm))
        .route("/v1/apps/{app}/fleet/abort", post(fleet::abort))
        .route("/v1/apps/{app}/pins", post(pin))
        .route("/v1/gc", post(gc))
        .route("/v1/status/link", post(status::link))
        .route("/v1/trust", get(trust::show).post(trust::rotate))
        .route("/v1/certs", get(certs::show).post(certs::add))
        .route("/v1/certs/{host}", axum::routing::delete(certs::remove))
        .route("/v1/acme/http-01", put(certs::put_http01))
        .route(
            "/v1/acme/http-01/{token}",
            axum::routing::delete(certs::delete_http01),
        )
        .route("/v1/apps/{app}/checkpoints", get(data::checkpoints))
        .route("/v1/apps/{app}/cron", get(cron::jobs))
        .route("/v1/apps/{app}/tasks", get(tasks::list))
        .route("/v1/apps/{app}/tasks/retry", post(tasks::retry))
        .route("/v1/apps/{app}/tasks/drop", post(tasks::drop))
        .route(
            "/v1/apps/{app}/config",
            get(settings::show).post(settings::change),
        )
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        // Uploads are long: they are bounded by the idle timeout and the size cap instead.
        .route("/v1/objects", post(upload::put_objects))
        // Streams that last as long as the client wants (a followed log, a long command).
        .route("/v1/apps/{app}/logs", get(ops::logs))
        .route("/v1/apps/{app}/run", post(ops::run))
        // A job's run lasts up to its deadline (at most a day), and its retries.
        .route("/v1/apps/{app}/cron/run", post(cron::run))
        // A backup or restore lasts as long as the data is large.
        .route("/v1/apps/{app}/backup", post(data::backup))
        .route("/v1/apps/{app}/restore", post(data::restore))
        .route("/v1/apps/{app}/clear", post(data::clear))
        .route("/v1/apps/{app}/app-config", post(data::upload_app_config))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let read = Router::new()
        .route("/metrics", get(status::metrics))
        .route("/v1/status", get(status::status))
        .route("/status", get(status::page))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            status::read_access,
        ));
    Router::new()
        .route("/v1/health", get(health))
        .merge(guarded)
        .merge(read)
        .with_state(state)
}

/// Binds, recovers the store, starts the apps and serves until SIGINT or SIGTERM. `ready` gets
/// the bound addresses.
pub async fn serve(mut config: AgentConfig, ready: impl FnOnce(Bound)) -> Result<(), Error> {
    check_listeners(&config)?;
    let acceptor = config
        .tls
        .as_ref()
        .map(|(cert, key)| crate::tls::acceptor(cert, key))
        .transpose()?;
    // With a TLS-only second listener, the first stays plaintext for SSH tunnels.
    let (control_tls, remote_tls) = match config.tls_listen {
        Some(_) => (None, acceptor),
        None => (acceptor, None),
    };
    let store = open_store(&config)?;
    config.runtime.node_id = store.node_id()?;
    if config.runtime.servers.redis.admin.is_none() {
        let secret = store.layout().redis_default_secret();
        config
            .runtime
            .servers
            .redis
            .default_secret
            .get_or_insert(secret);
    }
    let token = load_or_create_token(&config.token_file)?;
    let listeners = Listeners::bind(&config).await?;
    let bound = listeners.bound(&config, control_tls.is_some())?;
    // Before any app starts: a fleet deploy this node committed and never confirmed is undone.
    let recovering = store.clone();
    tokio::task::spawn_blocking(move || fleet::recover(&recovering))
        .await
        .map_err(|source| Error::Worker {
            doing: "undoing unconfirmed fleet deploys",
            source,
        })?;
    config.https = bound.https;
    let mut state = AgentState::new(store, &token, config.clone());
    if let Some(path) = &config.read_token_file {
        let read = load_or_create_token(path)?;
        state.read_token = Some(Arc::new(blake3::hash(read.as_bytes())));
    }
    let _ = state.front.set(bound.front);
    ready(bound);
    tokio::spawn(activate::restore(state.clone()));
    let runtime = state.runtime.clone();
    let sampler = config.metrics.then(|| {
        tokio::spawn(
            state
                .metrics
                .clone()
                .run(runtime.clone(), state.certs.clone()),
        )
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tls = bound.https.map(|addr| silver_runtime::router::TlsFront {
        certs: state.certs.live.clone(),
        port: addr.port(),
    });
    let front = silver_runtime::router::front(runtime.routes().clone(), tls);
    let front_task = tokio::spawn(silver_runtime::front_door::serve(
        listeners.front,
        front.clone(),
        config.runtime.front.clone(),
        stopped(stop_rx.clone()),
    ));
    let https_task = listeners.https.map(|listener| {
        let acme = state.certs.clone().run_acme(runtime.routes().clone());
        let acme = tokio::spawn(acme);
        let served = tokio::spawn(silver_runtime::front_door::serve_tls(
            listener,
            front,
            config.runtime.front.clone(),
            state.certs.live.clone(),
            stopped(stop_rx),
        ));
        (served, acme)
    });
    let router = app(state);
    let remote_task = listeners.remote.zip(remote_tls).map(|(tcp, acceptor)| {
        let listener = crate::tls::TlsListener { tcp, acceptor };
        let stop = stopped(stop_tx.subscribe());
        let router = router.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
        })
    });
    let served = match control_tls {
        Some(acceptor) => {
            let tcp = listeners.control;
            let listener = crate::tls::TlsListener { tcp, acceptor };
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
        None => {
            axum::serve(listeners.control, router)
                .with_graceful_shutdown(shutdown_signal())
                .await
        }
    };
    tracing::info!("stopping: front door, then apps");
    let _ = stop_tx.send(true);
    if let Some(task) = remote_task {
        let _ = tokio::time::timeout(config.request_timeout, task).await;
    }
    // In-flight requests get the drain grace; open keep-alive connections do not hold us up.
    let _ = tokio::time::timeout(config.runtime.drain_grace, front_task).await;
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    if let Some((served, acme)) = https_task {
        acme.abort();
        let _ = tokio::time::timeout(config.runtime.drain_grace, served).await;
    }
    runtime.shutdown().await;
    served.map_err(|e| Error::io(&config.root, e))
}

/// Opens the store, checks the app user can reach it, and recovers it from any crash.
fn open_store(config: &AgentConfig) -> Result<Store, Error> {
    let store = Store::open(&config.root, config.limits.clone())?;
    if let Some(user) = representative_user(&config.runtime.users) {
        check_reachable(&config.root, &user)?;
    }
    let recovery = store.recover()?;
    // Manifests of uploads abandoned longer ago than gc's grace: up to 256 MiB each.
    for pending in store.stale_pending(config.gc_grace)? {
        tracing::info!(path = %pending.display(), "removing an abandoned upload's manifest");
        let _ = std::fs::remove_file(&pending);
    }
    tracing::info!(
        root = %config.root.display(),
        partials_removed = recovery.partials_removed.len(),
        stale_locks = recovery.stale_locks.len(),
        broken_current = recovery.broken_current.len(),
        "store recovered"
    );
    for app in &recovery.broken_current {
        tracing::error!(%app, "`current` names a release that is not there");
    }
    Ok(store)
}

/// The agent's sockets, bound before anything is announced.
struct Listeners {
    control: tokio::net::TcpListener,
    remote: Option<tokio::net::TcpListener>,
    front: tokio::net::TcpListener,
    https: Option<tokio::net::TcpListener>,
}

impl Listeners {
    async fn bind(config: &AgentConfig) -> Result<Listeners, Error> {
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen { addr, source })
        };
        Ok(Listeners {
            control: bind(config.listen).await?,
            remote: match config.tls_listen {
                Some(addr) => Some(bind(addr).await?),
                None => None,
            },
            front: bind(config.front).await?,
            https: match config.https {
                Some(addr) => Some(bind(addr).await?),
                None => None,
            },
        })
    }

    fn bound(&self, config: &AgentConfig, tls: bool) -> Result<Bound, Error> {
        let local =
            |l: &tokio::net::TcpListener| l.local_addr().map_err(|e| Error::io(&config.root, e));
        Ok(Bound {
            control: local(&self.control)?,
            tls,
            remote: self.remote.as_ref().map(local).transpose()?,
            front: local(&self.front)?,
            https: self.https.as_ref().map(local).transpose()?,
        })
    }
}

/// Resolves once the agent is told to stop.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Plaintext control from the network would hand the token and deploys to anyone on the path.
fn check_listeners(config: &AgentConfig) -> Result<(), Error> {
    if config.tls_listen.is_some() && config.tls.is_none() {
        return Err(Error::TlsNeedsCert);
    }
    let listen_is_tls = config.tls.is_some() && config.tls_listen.is_none();
    if !config.listen.ip().is_loopback() && !listen_is_tls {
        return Err(Error::PlaintextRemote {
            addr: config.listen,
        });
    }
    Ok(())
}

/// Whom to check the root against: the shared user, or for users of their own (not made yet)
/// one that is neither owner nor group anywhere.
fn representative_user(users: &AppUsers) -> Option<AppUser> {
    match users {
        AppUsers::Invoker => None,
        AppUsers::Shared(user) => Some(user.clone()),
        AppUsers::PerApp => Some(AppUser {
            name: "each app's own user".into(),
            uid: u32::MAX - 1,
            gid: u32::MAX - 1,
        }),
    }
}

/// Refuses to start on a root the app user cannot reach (see `first_blocked`).
fn check_reachable(root: &std::path::Path, user: &AppUser) -> Result<(), Error> {
    match silver_runtime::supervise::first_blocked(root, user) {
        Ok(None) => Ok(()),
        Ok(Some((dir, mode))) => Err(Error::Unreachable {
            root: root.to_path_buf(),
            dir,
            mode,
            user: user.name.clone(),
        }),
        Err(e) => Err(Error::io(root, e)),
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

fn load_or_create_token(path: &std::path::Path) -> Result<String, Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => {
            crate::tls::check_private(path)?;
            return Ok(t.trim().to_string());
        }
        Ok(_) => {
            return Err(Error::EmptyToken {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    let token = safefs::secret_hex(32).map_err(|e| Error::io(path, e))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(token.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    tracing::info!(token_file = %path.display(), "created a new agent token");
    Ok(token)
}

/// The hash of the request's bearer token, if it sends one: what every check compares, as
/// `blake3::Hash` compares in constant time. The token itself is never kept or logged.
fn bearer(request: &Request) -> Option<blake3::Hash> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| blake3::hash(t.trim().as_bytes()))
}

async fn authenticate(State(state): State<AgentState>, request: Request, next: Next) -> Response {
    if bearer(&request).as_ref() == Some(&*state.token) {
        return next.run(request).await;
    }
    tracing::warn!(path = %request.uri().path(), "request without a valid credential");
    api_error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong credential",
        Some("send `Authorization: Bearer <token>`"),
    )
}

/// An error as the agent answers it.
pub struct ApiErr(Error);

impl From<Error> for ApiErr {
    fn from(e: Error) -> Self {
        ApiErr(e)
    }
}

impl From<silver_runtime::Error> for ApiErr {
    fn from(e: silver_runtime::Error) -> Self {
        ApiErr(Error::Runtime(e))
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.0, "request failed");
        }
        (status, Json(error_body(&self.0))).into_response()
    }
}

/// The body of an error answer.
fn error_body(e: &Error) -> ApiError {
    let (holder, since) = match e {
        Error::Locked { holder, since, .. } => (Some(holder.clone()), Some(*since)),
        _ => (None, None),
    };
    ApiError {
        error: error_chain(e),
        hint: e.hint(),
        holder,
        since,
    }
}

/// An error and its causes on one line, as the history and the API answer tell it.
pub(crate) fn error_chain(e: &Error) -> String {
    silver_runtime::error_chain(e)
}

fn api_error(status: StatusCode, message: &str, hint: Option<&str>) -> Response {
    let body = ApiError {
        error: message.into(),
        hint: hint.map(String::from),
        holder: None,
        since: None,
    };
    (status, Json(body)).into_response()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiErr> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| Error::Worker {
            doing: "serving a request",
            source,
        })?
        .map_err(ApiErr)
}

async fn health(State(state): State<AgentState>) -> Result<Json<Health>, ApiErr> {
    let store = state.store.clone();
    let apps = blocking(move || {
        store
            .apps()?
            .into_iter()
            .map(|name| {
                Ok(AppStatus {
                    current: store.current(&name)?.map(|id| id.to_string()),
                    running: None,
                    maintenance: store.maintenance(&name),
                    locations: store.locations(&name),
                    deactivated: store.deactivated(&name),
                    name,
                })
            })
            .collect()
    })
    .await?;
    let mut apps: Vec<AppStatus> = apps;
    for app in &mut apps {
        app.running = state.runtime.live_release(&app.name).await;
    }
    Ok(Json(Health {
        version: env!("CARGO_PKG_VERSION").into(),
        apps,
        front: state.front.get().map(|a| format!("http://{a}")),
    }))
}

async fn releases(
    State(state): State<AgentState>,
    App(app): App,
) -> Result<Json<Vec<Release>>, ApiErr> {
    let store = state.store.clone();
    let list = blocking(move || {
        if !store.app(&app).exists() {
            return Err(Error::UnknownApp { app });
        }
        store.releases(&app)
    })
    .await?;
    Ok(Json(list))
}

async fn pin(
    State(state): State<AgentState>,
    App(app): App,
    JsonBody(req): JsonBody<PinRequest>,
) -> Result<Json<Vec<String>>, ApiErr> {
    let store = state.store.clone();
    Ok(Json(
        blocking(move || {
            if !store.app(&app).exists() {
                return Err(Error::UnknownApp { app });
            }
            let id = store.resolve(&req.id)?;
            store.set_pin(&app, &id, req.pinned)
        })
        .await?,
    ))
}

async fn gc(
    State(state): State<AgentState>,
    JsonBody(req): JsonBody<GcRequest>,
) -> Result<Json<GcReport>, ApiErr> {
    let store = state.store.clone();
    let grace = state.config.gc_grace;
    Ok(Json(
        blocking(move || store::gc(&store, req.keep, grace)).await?,
    ))
}
