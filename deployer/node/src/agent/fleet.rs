//! A node's part of a fleet deploy (design §9): prepare (start and check beside the live
//! release, no traffic), commit (flip; the old release keeps running), confirm (it drains) or
//! abort (back to it at once). Each phase is written to `apps/<app>/fleet.json` before it is
//! answered, so any client can see it, resume or abort; the app's lock is held by the deploy
//! from prepare to confirm or abort.
//!
//! A committed node that hears no confirmation reverts by itself at its deadline (a dead-man
//! timer), and an agent that restarts with a commit unconfirmed goes back to the previous
//! release before it starts anything: a killed coordinator or a cut network never leaves a
//! fleet mixed.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use silver_types::AppName;

use super::activate::{candidate, check_packed_as, record, short_reason};
use super::extract::{App, JsonBody};
use super::{blocking, AgentState, ApiErr};
use crate::error::Error;
use crate::store::{AppLock, Kept, Store};
use silver_wire::api::*;

/// The fleet deploys under way on this node, by app.
pub type Slots = Arc<tokio::sync::Mutex<HashMap<AppName, Entry>>>;

/// An app's fleet deploy on this node: being prepared (the map is not held while a release
/// starts, so other apps and other questions go on), or prepared and holding the app's lock.
pub enum Entry {
    Preparing { deploy: String },
    Ready(Box<Slot>),
}

/// One app's fleet deploy in progress: it holds the app's lock.
pub struct Slot {
    status: FleetStatus,
    _lock: AppLock,
    kept: Option<Kept>,
    /// Seconds a commit may wait for its confirmation.
    within: u64,
    /// Where the prepared release answers: the app's locations once it is committed.
    locations: Vec<String>,
    /// The app's locations before: a revert puts them back.
    previous_locations: Vec<String>,
    timer: Option<tokio::task::AbortHandle>,
}

pub(super) async fn prepare(
    State(state): State<AgentState>,
    App(app): App,
    JsonBody(req): JsonBody<FleetPrepare>,
) -> Result<Json<FleetStatus>, ApiErr> {
    {
        let mut slots = state.fleet.lock().await;
        match slots.get(&app) {
            // A coordinator resuming the same deploy gets its answer again; another waits.
            Some(Entry::Ready(slot)) if slot.status.deploy == req.deploy => {
                return Ok(Json(slot.status.clone()))
            }
            Some(entry) => return Err(busy(&app, entry).into()),
            None => {
                let deploy = req.deploy.clone();
                slots.insert(app.clone(), Entry::Preparing { deploy });
            }
        }
    }
    // In a task of its own, which settles the map: a coordinator that hangs up mid-prepare
    // cannot leave the app marked as preparing.
    let task = tokio::spawn(async move {
        let prepared = start(&state, &app, &req).await;
        let mut slots = state.fleet.lock().await;
        match prepared {
            Ok(slot) => {
                let status = slot.status.clone();
                slots.insert(app, Entry::Ready(Box::new(slot)));
                Ok(status)
            }
            Err(e) => {
                slots.remove(&app);
                Err(e)
            }
        }
    });
    let status = task.await.map_err(|source| Error::Worker {
        doing: "preparing a fleet deploy",
        source,
    })??;
    Ok(Json(status))
}

/// Locks the app for the deploy, checks its records, stages and starts the release beside
/// the live one; on failure records why and lets the lock go.
async fn start(state: &AgentState, app: &AppName, req: &FleetPrepare) -> Result<Slot, Error> {
    let (store, name, req2) = (state.store.clone(), app.clone(), req.clone());
    let holder = format!("fleet deploy {} by {}", req.deploy, req.who);
    let (lock, id, previous, kept, c, previous_locations) = blocking(move || {
        let id = store.resolve(&req2.id)?;
        let manifest = store.manifest(&id)?;
        check_packed_as(&store, &manifest, &name)?;
        let lock = store.lock(&name, &holder)?;
        let kept = store.check_records(&name, &id, &req2.records)?;
        let previous = store.current(&name)?;
        let previous_locations = store.locations(&name);
        store.stage(&name, &manifest)?;
        let c = candidate(&store, &name, &id, req2.locations.clone(), req2.migrate)?;
        Ok((lock, id, previous, kept, c, previous_locations))
    })
    .await
    .map_err(|ApiErr(e)| e)?;
    let locations: Vec<String> = c.locations.iter().map(ToString::to_string).collect();
    let mut status = FleetStatus {
        app: app.clone(),
        deploy: req.deploy.clone(),
        phase: FleetPhase::Prepared,
        id,
        previous,
        previous_locations: previous_locations.clone(),
        who: req.who.clone(),
        committed_ms: None,
        deadline: None,
        reason: None,
        update_output: vec![],
        new: None,
        old: None,
    };
    match state.runtime.prepare(c).await {
        Ok(output) => status.update_output = output,
        Err(e) => {
            let e = Error::from(e);
            let (store, name, who, reason) = (
                state.store.clone(),
                app.clone(),
                req.who.clone(),
                short_reason(&e),
            );
            blocking(move || {
                let _lock = lock;
                record(&store, &name, &id, Action::Deploy, &who, Err(reason), None)
            })
            .await
            .map_err(|ApiErr(e)| e)?;
            return Err(e);
        }
    }
    save(&state.store, &status).await?;
    tracing::info!(%app, deploy = %req.deploy, %id, "fleet: prepared");
    Ok(Slot {
        status,
        _lock: lock,
        kept,
        within: req.confirm_within_secs,
        locations,
        previous_locations,
        timer: None,
    })
}

pub(super) async fn commit(
    State(state): State<AgentState>,
    App(app): App,
    JsonBody(req): JsonBody<FleetStep>,
) -> Result<Json<FleetStatus>, ApiErr> {
    let mut slots = state.fleet.lock().await;
    let slot = slot_of(&mut slots, &app, &req.deploy)?;
    if slot.status.phase == FleetPhase::Committed {
        return Ok(Json(slot.status.clone()));
    }
    let (store, name, id) = (state.store.clone(), app.clone(), slot.status.id);
    let locations = slot.locations.clone();
    let flip = move || -> Result<(), Error> {
        store.flip(&name, &id)?;
        store.set_locations(&name, &locations)?;
        store.set_deactivated(&name, &[])
    };
    state
        .runtime
        .commit(&app, flip)
        .await
        .map_err(Error::from)?;
    let now_ms = now_ms();
    let within = slot.within;
    slot.status.phase = FleetPhase::Committed;
    slot.status.committed_ms = Some(now_ms);
    slot.status.deadline = Some(now_ms / 1000 + within);
    save(&state.store, &slot.status).await?;
    slot.timer = Some(dead_man(&state, &app, &req.deploy, within));
    tracing::info!(%app, deploy = %req.deploy, within_secs = within, "fleet: committed");
    Ok(Json(slot.status.clone()))
}

pub(super) async fn confirm(
    State(state): State<AgentState>,
    App(app): App,
    JsonBody(req): JsonBody<FleetStep>,
) -> Result<Json<FleetStatus>, ApiErr> {
    let mut slots = state.fleet.lock().await;
    let slot = slot_of(&mut slots, &app, &req.deploy)?;
    if slot.status.phase != FleetPhase::Committed {
        return Err(Error::FleetPhase {
            app,
            deploy: req.deploy,
            phase: slot.status.phase,
            wanted: "committed",
        }
        .into());
    }
    let Some(Entry::Ready(slot)) = slots.remove(&app) else {
        unreachable!("slot_of found it ready")
    };
    if let Some(timer) = &slot.timer {
        timer.abort();
    }
    state.runtime.confirm(&app).await;
    let mut status = slot.status.clone();
    status.phase = FleetPhase::Confirmed;
    let (store, name, kept, st) = (
        state.store.clone(),
        app.clone(),
        slot.kept.clone(),
        status.clone(),
    );
    blocking(move || {
        if let Some(kept) = &kept {
            store.take_records(&name, kept)?;
        }
        record(
            &store,
            &name,
            &st.id,
            Action::Deploy,
            &format!("{} (fleet deploy {})", st.who, st.deploy),
            Ok(()),
            None,
        )
    })
    .await?;
    save(&state.store, &status).await?;
    drop(slot);
    tracing::info!(%app, deploy = %req.deploy, "fleet: confirmed");
    Ok(Json(status))
}

pub(super) async fn abort(
    State(state): State<AgentState>,
    App(app): App,
    JsonBody(req): JsonBody<FleetStep>,
) -> Result<Json<FleetStatus>, ApiErr> {
    let reason = req
        .reason
        .clone()
        .unwrap_or_else(|| format!("aborted by {}", req.who));
    let status = revert(&state, &app, &req.deploy, &reason).await?;
    Ok(Json(status))
}

pub(super) async fn status(
    State(state): State<AgentState>,
    App(app): App,
) -> Result<Json<FleetStatus>, ApiErr> {
    let slots = state.fleet.lock().await;
    let mut status = match slots.get(&app) {
        Some(Entry::Ready(slot)) => slot.status.clone(),
        Some(entry) => return Err(busy(&app, entry).into()),
        None => {
            drop(slots);
            let (store, name) = (state.store.clone(), app.clone());
            blocking(move || load(&store, &name))
                .await?
                .ok_or(Error::NoFleetDeploy { app: app.clone() })?
        }
    };
    if status.phase == FleetPhase::Committed {
        let (new, old) = state.runtime.release_stats(&app).await;
        status.new = new.map(|s| stats(&s));
        status.old = old.map(|s| stats(&s));
    }
    Ok(Json(status))
}

/// Undoes the deploy `deploy` of `app` wherever it got to, and records why.
async fn revert(
    state: &AgentState,
    app: &AppName,
    deploy: &str,
    reason: &str,
) -> Result<FleetStatus, Error> {
    let mut slots = state.fleet.lock().await;
    slot_of(&mut slots, app, deploy)?;
    let Some(Entry::Ready(slot)) = slots.remove(app) else {
        unreachable!("slot_of found it ready")
    };
    // Not the timer itself, when it is the one reverting: aborting it would cancel this.
    if let Some(timer) = slot
        .timer
        .as_ref()
        .filter(|t| Some(t.id()) != tokio::task::try_id())
    {
        timer.abort();
    }
    let (store, name, previous) = (state.store.clone(), app.clone(), slot.status.previous);
    let locations = slot.previous_locations.clone();
    let flip_back = move || -> Result<(), Error> {
        store.set_locations(&name, &locations)?;
        match previous {
            Some(previous) => store.flip(&name, &previous),
            None => store.unflip(&name),
        }
    };
    state.runtime.revert(app, flip_back).await?;
    let mut status = slot.status.clone();
    status.phase = FleetPhase::Aborted;
    status.reason = Some(reason.to_string());
    let (store, name, st) = (state.store.clone(), app.clone(), status.clone());
    blocking(move || {
        record(
            &store,
            &name,
            &st.id,
            Action::Deploy,
            &format!("{} (fleet deploy {})", st.who, st.deploy),
            Err(format!(
                "reverted: {}",
                st.reason.clone().unwrap_or_default()
            )),
            None,
        )
    })
    .await
    .map_err(|ApiErr(e)| e)?;
    save(&state.store, &status).await?;
    drop(slot);
    tracing::warn!(%app, deploy, reason, "fleet: reverted");
    Ok(status)
}

/// Reverts `app` at the deadline unless the deploy was confirmed (or aborted) by then.
fn dead_man(
    state: &AgentState,
    app: &AppName,
    deploy: &str,
    within: u64,
) -> tokio::task::AbortHandle {
    let (state, app, deploy) = (state.clone(), app.clone(), deploy.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(within)).await;
        tracing::warn!(%app, deploy, within_secs = within, "fleet: no confirmation in time; reverting");
        let reason = format!("no confirmation within {within} s: the node reverted by itself");
        if let Err(e) = revert(&state, &app, &deploy, &reason).await {
            tracing::error!(%app, deploy, error = %e, "fleet: the dead-man revert failed");
        }
    })
    .abort_handle()
}

/// At start-up, before any app starts: a deploy committed and never confirmed goes back to
/// the previous release (the agent died, so no confirmation can come), and one prepared is
/// dropped. Each is recorded as aborted.
pub(super) fn recover(store: &Store) {
    let Ok(apps) = store.apps() else { return };
    for app in apps {
        let Ok(Some(mut status)) = load(store, &app) else {
            continue;
        };
        let undone = match status.phase {
            FleetPhase::Committed => store
                .set_locations(&app, &status.previous_locations)
                .and_then(|()| match status.previous {
                    Some(previous) => store.flip(&app, &previous),
                    None => store.unflip(&app),
                }),
            FleetPhase::Prepared => Ok(()),
            FleetPhase::Confirmed | FleetPhase::Aborted => continue,
        };
        if let Err(e) = undone {
            tracing::error!(%app, error = %e, "fleet: cannot undo an unconfirmed deploy at start-up");
            continue;
        }
        status.phase = FleetPhase::Aborted;
        status.reason = Some("the agent restarted before the deploy was confirmed".into());
        let who = format!("{} (fleet deploy {})", status.who, status.deploy);
        let _ = record(
            store,
            &app,
            &status.id,
            Action::Deploy,
            &who,
            Err("reverted: the agent restarted before the deploy was confirmed".into()),
            None,
        );
        let _ = write(store, &status);
        tracing::warn!(%app, deploy = %status.deploy, "fleet: reverted an unconfirmed deploy at start-up");
    }
}

fn slot_of<'a>(
    slots: &'a mut HashMap<AppName, Entry>,
    app: &AppName,
    deploy: &str,
) -> Result<&'a mut Slot, Error> {
    match slots.get(app) {
        Some(Entry::Ready(slot)) if slot.status.deploy == deploy => {}
        Some(entry) => return Err(busy(app, entry)),
        None => return Err(Error::NoFleetDeploy { app: app.clone() }),
    }
    match slots.get_mut(app) {
        Some(Entry::Ready(slot)) => Ok(slot),
        _ => unreachable!("checked above"),
    }
}

/// Why an app's entry refuses another deploy's step (or any step while it prepares).
fn busy(app: &AppName, entry: &Entry) -> Error {
    match entry {
        Entry::Preparing { deploy } => Error::FleetPreparing {
            app: app.clone(),
            deploy: deploy.clone(),
        },
        Entry::Ready(slot) => Error::FleetBusy {
            app: app.clone(),
            deploy: slot.status.deploy.clone(),
        },
    }
}

async fn save(store: &Store, status: &FleetStatus) -> Result<(), Error> {
    let (store, status) = (store.clone(), status.clone());
    tokio::task::spawn_blocking(move || write(&store, &status))
        .await
        .map_err(|source| Error::Worker {
            doing: "recording a fleet phase",
            source,
        })?
}

fn write(store: &Store, status: &FleetStatus) -> Result<(), Error> {
    let path = store.app(&status.app).fleet();
    let mut saved = status.clone();
    (saved.new, saved.old) = (None, None);
    let bytes = serde_json::to_vec_pretty(&saved).expect("a status serializes");
    safefs::write_atomic(&path, &bytes, safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(&path, e))
}

fn load(store: &Store, app: &AppName) -> Result<Option<FleetStatus>, Error> {
    let path = store.app(app).fleet();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::io(&path, std::io::Error::other(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

fn stats(s: &silver_runtime::router::Stats) -> ReleaseStats {
    ReleaseStats {
        requests: s.requests,
        server_errors: s.server_errors,
        p99_ms: s.p99_ms(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
