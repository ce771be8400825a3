//! `silver config` over HTTP: an app's config versions on the node. Values leave the node only
//! when asked for (`?show=true`), and are never logged: the log says which names changed.

use axum::extract::{Query, State};
use axum::Json;
use silver_types::AppName;

use super::extract::{App, JsonBody};
use super::{blocking, AgentState, ApiErr};
use crate::error::Error;
use crate::store::{Settings, Store};
use silver_wire::api::*;

pub(super) async fn show(
    State(state): State<AgentState>,
    App(app): App,
    Query(q): Query<ShowQuery>,
) -> Result<Json<ConfigView>, ApiErr> {
    let store = state.store.clone();
    blocking(move || {
        if !store.app(&app).exists() {
            return Err(Error::UnknownApp { app });
        }
        let (version, settings) = store.settings(&app)?;
        view(&store, app, version, settings, q.show)
    })
    .await
    .map(Json)
}

pub(super) async fn change(
    State(state): State<AgentState>,
    App(app): App,
    JsonBody(req): JsonBody<ConfigChange>,
) -> Result<Json<ConfigView>, ApiErr> {
    let owner = state.runtime.app_user(&app).await?;
    let store = state.store.clone();
    let names: Vec<String> = req.set.keys().map(ToString::to_string).collect();
    let unset = req.unset.clone();
    tracing::info!(%app, who = %req.who, set = ?names, unset = ?unset, "config change");
    blocking(move || {
        // Config before the first deploy is taken (as Heroku and Kamal take it): an app whose
        // health check needs an API key could not be deployed otherwise.
        // Under the app's lock: an activation reads the version in force as it starts.
        let _lock = store.lock(&app, &req.who)?;
        let set: Settings = req.set;
        let (version, settings) = store.change_settings(&app, &set, &unset, owner.as_ref())?;
        view(&store, app, version, settings, false)
    })
    .await
    .map(Json)
}

fn view(
    store: &Store,
    app: AppName,
    version: u32,
    settings: Settings,
    show: bool,
) -> Result<ConfigView, Error> {
    let vars = settings
        .into_iter()
        .map(|(k, v)| (k, show.then(|| v.into_string())))
        .collect();
    Ok(ConfigView {
        current: store.current(&app)?.map(|id| id.to_string()),
        app,
        version,
        vars,
    })
}
