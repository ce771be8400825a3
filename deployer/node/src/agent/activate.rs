//! Making a release current (design §4): deploy, activate and rollback all lock the app, stage
//! the release, hand it to the runtime for the health-gated start and switch, and record the
//! outcome. Also: bringing the current releases back up when the agent starts, and maintenance.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use packer::Id;
use silver_types::appconfig::Location;
use silver_types::AppName;

use super::extract::{App, JsonBody};
use super::{blocking, error_chain, AgentState, ApiErr};
use crate::error::Error;
use crate::store::{self, Record, Store};
use silver_runtime::{release_config, Candidate};
use silver_wire::api::*;

pub(super) async fn deploy(
    State(state): State<AgentState>,
    App(app): App,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ActivateRequest>,
) -> Response {
    watched(&headers, |progress| {
        make_current(state, app, req, Action::Deploy, progress)
    })
    .await
}

pub(super) async fn activate(
    State(state): State<AgentState>,
    App(app): App,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ActivateRequest>,
) -> Response {
    watched(&headers, |progress| {
        make_current(state, app, req, Action::Activate, progress)
    })
    .await
}

type Progress = tokio::sync::mpsc::UnboundedSender<String>;

/// Runs an activation; a deployer that accepts `NDJSON` sees its `update_fetch` output line by
/// line as it comes, then the outcome, instead of one answer at the end.
pub(super) async fn watched<F, Fut>(headers: &HeaderMap, work: F) -> Response
where
    F: FnOnce(Option<Progress>) -> Fut,
    Fut: std::future::Future<Output = Result<Json<ActivateResponse>, ApiErr>> + Send + 'static,
{
    let streamed = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(NDJSON));
    if !streamed {
        return work(None).await.into_response();
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Spawned: the activation finishes and is recorded even if the deployer hangs up.
    let mut outcome = tokio::spawn(work(Some(tx)));
    let (body_tx, body_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let emit = |event: ActivateEvent| {
            let mut line = serde_json::to_vec(&event).unwrap_or_default();
            line.push(b'\n');
            let _ = body_tx.send(Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line)));
        };
        // Until the outcome, not until every sender is gone: a clone may outlive the work.
        let done = loop {
            tokio::select! {
                Some(line) = rx.recv() => emit(ActivateEvent::Line(line)),
                done = &mut outcome => break done,
            }
        };
        while let Ok(line) = rx.try_recv() {
            emit(ActivateEvent::Line(line));
        }
        emit(outcome_event(done));
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(
        body_rx,
    ));
    ([(axum::http::header::CONTENT_TYPE, NDJSON)], body).into_response()
}

fn outcome_event(
    done: Result<Result<Json<ActivateResponse>, ApiErr>, tokio::task::JoinError>,
) -> ActivateEvent {
    match done {
        Ok(Ok(Json(done))) => ActivateEvent::Done(done),
        Ok(Err(e)) => ActivateEvent::Failed {
            status: e.0.status().as_u16(),
            error: super::error_body(&e.0),
        },
        Err(join) => ActivateEvent::Failed {
            status: 500,
            error: ApiError {
                error: format!("the activation task failed: {join}"),
                hint: None,
                holder: None,
                since: None,
            },
        },
    }
}

pub(super) async fn rollback(
    State(state): State<AgentState>,
    App(app): App,
    headers: HeaderMap,
    JsonBody(req): JsonBody<RollbackRequest>,
) -> Response {
    watched(&headers, |progress| roll_back(state, app, req, progress)).await
}

async fn roll_back(
    state: AgentState,
    app: AppName,
    req: RollbackRequest,
    progress: Option<Progress>,
) -> Result<Json<ActivateResponse>, ApiErr> {
    let id = match req.id {
        Some(id) => id,
        None => {
            let store = state.store.clone();
            let name = app.clone();
            let previous = blocking(move || {
                if !store.app(&name).exists() {
                    return Err(Error::UnknownApp { app: name });
                }
                store
                    .previous(&name)?
                    .ok_or(Error::NoPrevious { app: name.clone() })
            })
            .await?;
            previous.into()
        }
    };
    let req = ActivateRequest {
        id,
        who: req.who,
        locations: vec![],
        // Rolling back goes to a release this app ran before.
        other_app: true,
        restart: false,
        app_config: None,
        single_process: false,
        migrate: req.migrate,
        records: req.records,
    };
    make_current(state, app, req, Action::Rollback, progress).await
}

/// Lock, stage, start beside the old, health check, `update_fetch`, flip, switch, record.
pub(super) async fn make_current(
    state: AgentState,
    app: AppName,
    req: ActivateRequest,
    action: Action,
    progress: Option<Progress>,
) -> Result<Json<ActivateResponse>, ApiErr> {
    let requested = req.locations.clone();
    let store = state.store.clone();
    let prefix = req.id.clone();
    let id = blocking(move || store.resolve(&prefix)).await?;
    let store = state.store.clone();
    let (name, rid, who, other_app) = (app.clone(), id, req.who.clone(), req.other_app);
    let (records, restart) = (req.records.clone(), req.restart);
    let span = tracing::info_span!("activate", app = %app, id = %id, %action);
    let locked = blocking(move || {
        let _enter = span.enter();
        // An id the node never received is a plain 404: nothing to record, no app to create.
        let manifest = store.manifest(&rid)?;
        if !other_app {
            check_packed_as(&store, &manifest, &name)?;
        }
        let lock = store.lock(&name, &who)?;
        // Under the lock, so two activations cannot both take the same promotion. `clear`
        // and a restart of the live release (a config change) start no new code: it was let
        // through already, and an expired promotion never stops a running release.
        let running_again =
            action == Action::Clear || (restart && store.current(&name)? == Some(rid));
        let kept = match running_again {
            true => None,
            false => store.check_records(&name, &rid, &records)?,
        };
        Ok((lock, manifest, kept))
    })
    .await?;
    let (lock, manifest, kept) = locked;
    // The config it runs with: a rollback goes back to the one its release last ran with,
    // "none" included.
    let (store, name) = (state.store.clone(), app.clone());
    let (settings_version, settings, config_ran) = blocking(move || {
        let current = store.settings(&name)?;
        let ran = store.settings_of(&name, &id)?;
        let (version, settings) = match (action, ran) {
            (Action::Rollback, Some(v)) if v != current.0 => (v, store.settings_version(&name, v)?),
            _ => current,
        };
        Ok((version, settings, ran))
    })
    .await?;
    let config = (settings_version > 0).then_some(settings_version);
    // A configuration directory uploaded for this deploy (`--config DIR`).
    let app_config = match &req.app_config {
        Some(id) => Some(uploaded_config(&state, &app, id)?),
        None => None,
    };
    // Asked under the lock: another activation may be about to change what is live.
    if !req.restart && !req.single_process && app_config.is_none() {
        if let Some(unchanged) = already_live(&state, &app, &id, &requested, config).await? {
            let (store, name, who) = (state.store.clone(), app.clone(), req.who.clone());
            blocking(move || {
                let _lock = lock;
                record(&store, &name, &id, action, &who, Ok(()), config)
            })
            .await?;
            return Ok(Json(unchanged));
        }
    }
    let store = state.store.clone();
    let (name, rid, who) = (app.clone(), id, req.who.clone());
    let staged = blocking(move || {
        let previous = store.current(&name)?;
        match store.stage(&name, &manifest) {
            Ok(staged_now) => Ok((lock, previous, staged_now)),
            Err(e) => {
                record(
                    &store,
                    &name,
                    &rid,
                    action,
                    &who,
                    Err(error_chain(&e)),
                    config,
                )?;
                Err(e)
            }
        }
    })
    .await?;
    let (lock, previous, staged_now) = staged;
    let store = state.store.clone();
    let (name, rid) = (app.clone(), id);
    // Going back to a release that ran before (a rollback, `activate prev`) runs no
    // `update_fetch` unless asked: its migrations ran already, against an older schema.
    let back = matches!(action, Action::Rollback)
        || (matches!(action, Action::Activate) && config_ran.is_some());
    let update_fetch = !back || req.migrate;
    let candidate = blocking(move || candidate(&store, &name, &rid, requested, update_fetch)).await;
    let outcome = match candidate {
        Ok(mut c) => {
            c.progress = progress;
            c.single_process = req.single_process;
            c.settings = settings;
            if let Some(dir) = &app_config {
                c.app_config = Some(dir.clone());
            }
            let (store, name, rid) = (state.store.clone(), app.clone(), id);
            let locations: Vec<String> = c.locations.iter().map(ToString::to_string).collect();
            let flip = move || {
                store.flip(&name, &rid)?;
                store.set_locations(&name, &locations)?;
                store.set_deactivated(&name, &[])?;
                if let Some(dir) = &app_config {
                    store.set_app_config(&name, dir)?;
                }
                store.set_settings_current(&name, settings_version)
            };
            state
                .runtime
                .activate(c.clone(), flip)
                .await
                .map(|a| (c, a))
                .map_err(Error::from)
        }
        Err(ApiErr(e)) => Err(e),
    };
    let store = state.store.clone();
    let (name, rid, who) = (app.clone(), id, req.who.clone());
    let result = outcome.as_ref().map(|_| ()).map_err(short_reason);
    blocking(move || {
        let _lock = lock;
        // A failed activation takes no sequence: the same promotion may be tried again.
        if let (Ok(()), Some(kept)) = (&result, &kept) {
            store.take_records(&name, kept)?;
        }
        record(&store, &name, &rid, action, &who, result, config)
    })
    .await?;
    let (c, activated) = outcome?;
    Ok(Json(ActivateResponse {
        app,
        id,
        previous,
        unchanged: false,
        update_output: activated.update_output,
        staged_now,
        locations: c.locations.clone(),
        processes: activated.processes,
    }))
}

/// The directory an upload of `--config DIR` made, by the id the upload answered.
fn uploaded_config(
    state: &AgentState,
    app: &AppName,
    id: &str,
) -> Result<std::path::PathBuf, ApiErr> {
    let dir = state.store.app(app).runtime().app_configs().join(id);
    let well_formed = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed || !dir.is_dir() {
        return Err(Error::UnknownAppConfig { id: id.to_string() }.into());
    }
    Ok(dir)
}

/// The answer for a release that is already current and serving, where it is asked to serve:
/// nothing restarts (a redeploy of the same artifact is a no-op, unless `restart` is asked).
async fn already_live(
    state: &AgentState,
    app: &AppName,
    id: &Id,
    requested: &[Location],
    config: Option<u32>,
) -> Result<Option<ActivateResponse>, ApiErr> {
    if state.runtime.live_release(app).await.as_deref() != Some(id.short().as_str()) {
        return Ok(None);
    }
    // A config changed since it went live needs a restart to take effect.
    let (store, name, rid) = (state.store.clone(), app.clone(), *id);
    if blocking(move || store.settings_of(&name, &rid)).await? != Some(config.unwrap_or(0)) {
        return Ok(None);
    }
    let (store, name) = (state.store.clone(), app.clone());
    let (current, stored) = blocking(move || {
        let stored = parse_locations(&store.locations(&name)).map_err(|ApiErr(e)| e)?;
        Ok((store.current(&name)?, stored))
    })
    .await?;
    if current != Some(*id) || (!requested.is_empty() && requested != stored.as_slice()) {
        return Ok(None);
    }
    Ok(Some(ActivateResponse {
        app: app.clone(),
        id: *id,
        previous: Some(*id),
        unchanged: true,
        update_output: vec![],
        staged_now: false,
        locations: stored.clone(),
        processes: state.runtime.live_processes(app).await,
    }))
}

/// An artifact whose app.ini names another app is refused before anything is touched: deploying
/// `blog` over `shop` by a slip would hand shop's data and locations to blog's code.
pub(super) fn check_packed_as(
    store: &Store,
    manifest: &packer::Manifest,
    app: &AppName,
) -> Result<(), Error> {
    match packed_app(store, manifest)? {
        Some(packed) if packed != app.as_str() => Err(Error::OtherApp {
            app: app.clone(),
            packed,
            id: manifest.id,
        }),
        _ => Ok(()),
    }
}

/// The app an artifact's app.ini names (`app_name`), read from the store's objects.
pub(super) fn packed_app(
    store: &Store,
    manifest: &packer::Manifest,
) -> Result<Option<String>, Error> {
    let Some(hash) = manifest
        .entries
        .iter()
        .find(|e| e.path == "app.ini")
        .and_then(|e| e.kind.content_hash())
    else {
        return Ok(None);
    };
    let path = store.object_path(&hash);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let ini = silver_types::appini::AppIni::parse(&text, std::path::Path::new("app.ini"))?;
    Ok(ini
        .production("app_name")
        .map(|packed| packed.value.clone()))
}

/// The history keeps the step and reason, not the log tail.
pub(super) fn short_reason(e: &Error) -> String {
    match e {
        Error::Runtime(silver_runtime::Error::Activation { failure, .. }) => {
            let reason = failure.cause.to_string();
            format!(
                "{}: {}",
                failure.step,
                reason.lines().next().unwrap_or_default()
            )
        }
        other => error_chain(other),
    }
}

pub(super) fn record(
    store: &Store,
    app: &AppName,
    id: &Id,
    action: Action,
    who: &str,
    result: Result<(), String>,
    config: Option<u32>,
) -> Result<(), Error> {
    store.record(
        app,
        &Record {
            time: store::now(),
            id: *id,
            action,
            who: who.into(),
            ok: result.is_ok(),
            reason: result.err(),
            config,
        },
    )
}

/// A staged release as the runtime needs it. Locations: those asked for, else the app's
/// current ones, else its `default_location`, else any host (`*`).
pub(super) fn candidate(
    store: &Store,
    app: &AppName,
    id: &Id,
    requested: Vec<Location>,
    update_fetch: bool,
) -> Result<Candidate, Error> {
    let dir = store.release_dir(app, id);
    let config = release_config(&dir)?;
    let locations = effective_locations(store, app, requested, config.default_location.clone())?;
    Ok(Candidate {
        app: app.clone(),
        release: id.to_string(),
        label: id.0.to_hex()[..12].to_string(),
        dir,
        paths: store.app(app).runtime(),
        config,
        locations,
        update_fetch,
        services: vec![],
        user: None,
        progress: None,
        // The config in force; an activation may put another in (a rollback's own).
        settings: store.settings(app)?.1,
        app_config: store.app_config(app)?,
        single_process: false,
    })
}

/// Starts the current release of every app, as when it was last activated (no `update_fetch`:
/// it already ran). Failures are logged; the other apps still come up.
pub(super) async fn restore(state: AgentState) {
    let store = state.store.clone();
    let only = state.config.only.clone();
    let apps = blocking(move || {
        let mut current = Vec::new();
        let apps = store.apps()?;
        for app in apps
            .into_iter()
            .filter(|a| only.as_ref().is_none_or(|o| o == a))
        {
            // A deactivated app serves nowhere until activated again.
            let deactivated = !store.deactivated(&app).is_empty();
            if let Some(id) = store.current(&app)?.filter(|_| !deactivated) {
                let previous = store
                    .previous(&app)?
                    .map(|p| (p.short(), store.release_dir(&app, &p).join("static")))
                    .filter(|(_, dir)| dir.is_dir());
                current.push((candidate(&store, &app, &id, vec![], false), previous));
            }
        }
        Ok(current)
    })
    .await;
    let Ok(apps) = apps else {
        tracing::error!("cannot list the apps to start");
        return;
    };
    for (c, previous) in apps {
        match c {
            Ok(mut c) => {
                let (app, label) = (c.app.clone(), c.label.clone());
                // A restore a crash interrupted is settled before the app reads its data.
                if let Err(e) = recover(&state, &mut c).await {
                    tracing::error!(%app, error = %e, "cannot settle an interrupted restore; the app is not started");
                    continue;
                }
                match state.runtime.activate(c, || Ok::<(), Error>(())).await {
                    Ok(_) => tracing::info!(%app, release = label, "started"),
                    Err(e) => tracing::error!(%app, release = label, error = %e, "cannot start"),
                }
                // The release it replaced before the restart: its versioned assets stay.
                if let Some((label, dir)) = previous {
                    state.runtime.routes().keep_static(&app, label, dir);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot start an app"),
        }
    }
}

/// Finishes or undoes the restore of `c`'s app that a crash interrupted, if any.
async fn recover(state: &AgentState, c: &mut Candidate) -> Result<(), Error> {
    if silver_runtime::restore::pending(&c.paths).is_none() {
        return Ok(());
    }
    c.user = state.runtime.app_user(&c.app).await?;
    state.runtime.recover(c).await?;
    Ok(())
}

pub(super) async fn maintenance(
    State(state): State<AgentState>,
    App(app): App,
    JsonBody(req): JsonBody<MaintenanceRequest>,
) -> Result<Json<MaintenanceRequest>, ApiErr> {
    let store = state.store.clone();
    let name = app.clone();
    blocking(move || {
        if !store.app(&name).exists() {
            return Err(Error::UnknownApp { app: name });
        }
        store.set_maintenance(&name, req.maintenance)
    })
    .await?;
    state.runtime.set_maintenance(&app, req.maintenance);
    tracing::info!(%app, maintenance = req.maintenance, "maintenance mode");
    Ok(Json(req))
}

/// Takes one location from an app; with its last one gone it serves nowhere and its processes
/// stop, until an activation gives its locations back (the agent does not start it on boot).
pub(super) async fn deactivate(
    State(state): State<AgentState>,
    App(app): App,
    JsonBody(req): JsonBody<DeactivateRequest>,
) -> Result<Json<DeactivateResponse>, ApiErr> {
    let (store, name, location) = (state.store.clone(), app.clone(), req.location.to_string());
    let (lock, remaining) = blocking(move || {
        if !store.app(&name).exists() {
            return Err(Error::UnknownApp { app: name });
        }
        let lock = store.lock(&name, &req.who)?;
        let stored = store.locations(&name);
        if !stored.contains(&location) {
            return Err(Error::NotServedThere {
                app: name,
                location,
                locations: stored,
            });
        }
        let remaining: Vec<String> = stored.iter().filter(|l| **l != location).cloned().collect();
        if remaining.is_empty() {
            store.set_deactivated(&name, &stored)?;
        }
        store.set_locations(&name, &remaining)?;
        Ok((lock, remaining))
    })
    .await?;
    let parsed = parse_locations(&remaining)?;
    state.runtime.relocate(&app, parsed).await;
    drop(lock);
    tracing::info!(%app, location = %req.location, remaining = remaining.len(), "deactivated");
    Ok(Json(DeactivateResponse {
        app,
        locations: remaining,
    }))
}

/// Where an activation puts the app: the locations asked for, else the app's current ones, else
/// its `default_location`, else any host (`*`).
fn effective_locations(
    store: &Store,
    app: &AppName,
    requested: Vec<Location>,
    default_location: Option<Location>,
) -> Result<Vec<Location>, Error> {
    if !requested.is_empty() {
        return Ok(requested);
    }
    let stored = parse_locations(&store.locations(app)).map_err(|ApiErr(e)| e)?;
    if !stored.is_empty() {
        return Ok(stored);
    }
    // A deactivated app gets back the locations it had.
    let deactivated = parse_locations(&store.deactivated(app)).map_err(|ApiErr(e)| e)?;
    if !deactivated.is_empty() {
        return Ok(deactivated);
    }
    Ok(vec![default_location.unwrap_or(Location {
        host: "*".into(),
        path: "/".into(),
    })])
}

/// Before any upload: would the app's locations collide with another app's? A conflict found
/// only at activation would come after the whole artifact was sent.
pub(super) async fn preflight(
    State(state): State<AgentState>,
    App(app): App,
    JsonBody(req): JsonBody<PreflightRequest>,
) -> Result<Json<PreflightResponse>, ApiErr> {
    let (store, name) = (state.store.clone(), app.clone());
    let locations =
        blocking(move || effective_locations(&store, &name, req.locations, req.default_location))
            .await?;
    if let Some((location, other)) = state.runtime.location_taken(&app, &locations) {
        return Err(Error::Runtime(silver_runtime::Error::LocationTaken {
            location: location.to_string(),
            other,
        })
        .into());
    }
    Ok(Json(PreflightResponse { locations }))
}

fn parse_locations(list: &[String]) -> Result<Vec<Location>, ApiErr> {
    list.iter()
        .map(|l| {
            Location::parse(l).map_err(|why| {
                ApiErr(Error::BadLocation {
                    location: l.clone(),
                    why,
                })
            })
        })
        .collect()
}
