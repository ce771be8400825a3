//! An app's data over HTTP (design §6): `backup` answers with a tar of the backup directory,
//! `restore` takes one, `clear` drops the data and runs the current release's `update_fetch`
//! again, `checkpoints` lists the checkpoints taken before each `update_fetch`. Each holds the
//! app's lock, so no deploy migrates the database under a backup or a restore.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use silver_types::AppName;
use tokio::io::AsyncWriteExt;

use super::activate::{candidate, make_current, watched};
use super::extract::App;
use super::{blocking, AgentState, ApiErr};
use crate::error::Error;
use crate::store::{AppLock, Store};
use silver_runtime::data::{self, BackupInfo};
use silver_runtime::Candidate;
use silver_wire::api::*;

pub(super) async fn backup(
    State(state): State<AgentState>,
    App(app): App,
    Query(q): Query<WhoQuery>,
) -> Result<Response, ApiErr> {
    let (lock, c) = locked_current(&state, &app, &q.who).await?;
    let work = safefs::temp_dir_in(&tmp_dir(&state.store)).map_err(|e| io(&state.store, e))?;
    let dir = work.path().join("backup");
    safefs::create_private_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    let info = state.runtime.backup(&c, dir.clone()).await?;
    drop(lock);
    tracing::info!(%app, who = %q.who, services = ?info.services, "backup");
    let tar = work.path().join("backup.tar");
    let file = blocking(move || tar_flat(&dir, &tar)).await?;
    // The open file outlives the directory: the answer streams from it, and nothing is left.
    drop(work);
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(stream),
    )
        .into_response())
}

pub(super) async fn restore(
    State(state): State<AgentState>,
    App(app): App,
    Query(q): Query<WhoQuery>,
    body: Body,
) -> Result<Json<BackupInfo>, ApiErr> {
    let work = safefs::temp_dir_in(&tmp_dir(&state.store)).map_err(|e| io(&state.store, e))?;
    let tar = work.path().join("backup.tar");
    receive(body, &tar, state.config.max_upload_bytes).await?;
    let dir = work.path().join("backup");
    let unpacked = dir.clone();
    blocking(move || untar_flat(&tar, &unpacked)).await?;
    let (lock, c) = locked_current(&state, &app, &q.who).await?;
    let info = state.runtime.restore(&c, dir).await?;
    drop(lock);
    tracing::info!(%app, who = %q.who, from = %info.app, release = %info.release, "restore");
    Ok(Json(info))
}

pub(super) async fn clear(
    State(state): State<AgentState>,
    App(app): App,
    Query(q): Query<WhoQuery>,
    headers: HeaderMap,
) -> Response {
    watched(&headers, |progress| async move {
        let (lock, c) = locked_current(&state, &app, &q.who).await?;
        state.runtime.clear(&c).await?;
        tracing::info!(%app, who = %q.who, "cleared");
        drop(lock);
        let req = ActivateRequest {
            id: c
                .release
                .parse()
                .map_err(|_| Error::NoCurrent { app: app.clone() })?,
            who: q.who,
            locations: vec![],
            other_app: true,
            // The same release again, for its `update_fetch` on the empty services.
            restart: true,
            app_config: None,
            single_process: false,
            migrate: true,
            records: vec![],
        };
        make_current(state, app, req, Action::Clear, progress).await
    })
    .await
}

/// A configuration directory for the app (`silver update --config DIR`), stored by content:
/// the release that runs with it names it when activated, and an older release keeps its own.
pub(super) async fn upload_app_config(
    State(state): State<AgentState>,
    App(app): App,
    body: Body,
) -> Result<Json<AppConfigUploaded>, ApiErr> {
    let work = safefs::temp_dir_in(&tmp_dir(&state.store)).map_err(|e| io(&state.store, e))?;
    let tar = work.path().join("config.tar");
    receive(body, &tar, state.config.max_upload_bytes).await?;
    let user = state.runtime.app_user(&app).await?;
    let store = state.store.clone();
    blocking(move || {
        let bytes = std::fs::read(&tar).map_err(|e| Error::io(&tar, e))?;
        let id = blake3::hash(&bytes).to_hex()[..16].to_string();
        let dir = store.app(&app).runtime().app_configs();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let dst = dir.join(&id);
        if !dst.is_dir() {
            silver_runtime::data::untar_dir(&tar, &dst, user.as_ref())?;
        }
        tracing::info!(%app, id, "configuration directory uploaded");
        drop(work);
        Ok(Json(AppConfigUploaded { id }))
    })
    .await
}

pub(super) async fn checkpoints(
    State(state): State<AgentState>,
    App(app): App,
) -> Result<Json<CheckpointsView>, ApiErr> {
    let store = state.store.clone();
    blocking(move || {
        if !store.app(&app).exists() {
            return Err(Error::UnknownApp { app });
        }
        let paths = store.app(&app).runtime();
        Ok(Json(CheckpointsView {
            checkpoints: data::checkpoints(&paths),
            restoring: silver_runtime::restore::pending(&paths),
            last_recovered: silver_runtime::restore::last_outcome(&paths),
        }))
    })
    .await
}

/// The app's lock and its current release, as the runtime needs it.
async fn locked_current(
    state: &AgentState,
    app: &AppName,
    who: &str,
) -> Result<(AppLock, Candidate), ApiErr> {
    let (store, name, who) = (state.store.clone(), app.clone(), who.to_string());
    let (lock, mut c) = blocking(move || {
        if !store.app(&name).exists() {
            return Err(Error::UnknownApp { app: name });
        }
        let id = store
            .current(&name)?
            .ok_or(Error::NoCurrent { app: name.clone() })?;
        let lock = store.lock(&name, &who)?;
        Ok((lock, candidate(&store, &name, &id, vec![], false)?))
    })
    .await?;
    c.user = state.runtime.app_user(app).await?;
    Ok((lock, c))
}

/// Uploads in flight live here; the store empties it on start, so a crash leaves nothing.
fn tmp_dir(store: &Store) -> PathBuf {
    store.layout().objects_tmp()
}

fn io(store: &Store, e: std::io::Error) -> Error {
    Error::io(&tmp_dir(store), e)
}

/// Streams the request body to `path`, refusing more than `max` bytes.
async fn receive(body: Body, path: &Path, max: u64) -> Result<(), Error> {
    let file = safefs::create_private(path).map_err(|e| Error::io(path, e))?;
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::UploadInterrupted {
            why: silver_types::Said::new(&e.to_string(), &[]),
        })?;
        total += chunk.len() as u64;
        if total > max {
            return Err(Error::UploadTooLarge { bytes: total, max });
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io(path, e))?;
    }
    file.flush().await.map_err(|e| Error::io(path, e))
}

/// A tar of the backup files in `dir` (`safefs::flat_tar`, as the client writes them);
/// returns it open for reading.
fn tar_flat(dir: &Path, out: &Path) -> Result<std::fs::File, Error> {
    let file = safefs::create_private(out).map_err(|e| Error::io(out, e))?;
    safefs::flat_tar::write(dir, &BACKUP_FILES, &file)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(out, e))?;
    std::fs::File::open(out).map_err(|e| Error::io(out, e))
}

/// Unpacks a backup tar into a new `dir`: only the known file names, as plain files
/// (`safefs::flat_tar`, as the client reads them).
fn untar_flat(tar_file: &Path, dir: &Path) -> Result<(), Error> {
    let bad = |why: silver_runtime::BackupProblem| {
        Error::Runtime(silver_runtime::Error::BadBackup {
            path: tar_file.to_path_buf(),
            why,
        })
    };
    let file = std::fs::File::open(tar_file).map_err(|e| Error::io(tar_file, e))?;
    safefs::flat_tar::read(file, dir, &BACKUP_FILES, u64::MAX)
        .map_err(|e| Error::io(dir, e))?
        .map_err(|refused| bad(silver_runtime::BackupProblem::Tar(refused)))?;
    if !dir.join(data::MANIFEST).is_file() {
        return Err(bad(silver_runtime::BackupProblem::NoManifest));
    }
    Ok(())
}
