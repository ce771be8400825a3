//! `POST /v1/pull`: the node fetches an artifact from an OCI registry by itself. It reads the
//! manifest from its parts (reusing parts it fetched before), receives it as an upload's
//! manifest, then fetches only the packs that hold files it lacks, feeding each through the
//! upload's own ingest: every blob's sha256 and every file's BLAKE3 and size are checked as
//! the bytes stream. Files verified before an interruption stay, so a second pull resumes.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::Json;
use packer::{Hash, Id};
use silver_registry::{pull, Reference, Registry, RegistryConfig};

use super::extract::JsonBody;
use super::{blocking, AgentState, ApiErr};
use crate::error::Error;
use crate::store::Store;
use silver_wire::api::*;

pub(super) async fn pull(
    State(state): State<AgentState>,
    JsonBody(req): JsonBody<PullRequest>,
) -> Result<Json<PullResponse>, ApiErr> {
    use tracing::Instrument as _;
    let reference = Reference::parse(&req.reference).map_err(Error::from)?;
    let span = tracing::info_span!("pull", %reference);
    pull_artifact(&state, &reference)
        .instrument(span)
        .await
        .map(Json)
}

async fn pull_artifact(state: &AgentState, reference: &Reference) -> Result<PullResponse, ApiErr> {
    let state = state.clone();
    let registry = connect(&state, reference)?;
    let parts = state.store.layout().registry_parts();
    let remote = pull::open(&registry, reference, Some(&parts), &state.store.limits)
        .await
        .map_err(Error::from)?;
    let id = remote.manifest.id;
    let (store, bytes) = (state.store.clone(), remote.manifest.bytes.clone());
    let missing = blocking(move || store.receive_manifest(&id, &bytes).map(|(_, m)| m)).await?;
    let result = fetch_missing(&state, &registry, &remote, &missing).await;
    state.reservations.release(&id);
    let (packs_fetched, bytes_fetched, objects_stored) = match result {
        Ok(done) => done,
        Err(e) => {
            // The manifest waits no longer; verified files stay for the next pull.
            state.store.discard_pending(&id);
            return Err(e.into());
        }
    };
    let store = state.store.clone();
    let manifest = blocking(move || store.commit_manifest(&id)).await?;
    let store = state.store.clone();
    let app = blocking(move || super::activate::packed_app(&store, &manifest)).await?;
    // Records are needed only under a trust policy, which names what is missing if they are.
    let records = match silver_registry::records::fetch(&registry, reference).await {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the records beside the artifact");
            vec![]
        }
    };
    tracing::info!(%id, packs_fetched, bytes_fetched, records = records.len(), "pulled");
    Ok(PullResponse {
        id,
        app: app.and_then(|a| silver_types::AppName::parse(&a).ok()),
        packs_total: remote.packs.len(),
        packs_fetched,
        bytes_fetched: remote.bytes_fetched + bytes_fetched,
        objects_stored,
        records,
    })
}

/// The node's registry settings: its own credentials file, which must be private to it.
fn connect(state: &AgentState, reference: &Reference) -> Result<Registry, Error> {
    let auth = state.store.layout().registry_auth();
    silver_registry::auth::check_private(&auth)?;
    let config = RegistryConfig {
        insecure: state.config.insecure_registries.clone(),
        auth_files: vec![auth],
        timeout: state.config.idle_timeout,
    };
    Ok(Registry::connect(reference, &config)?)
}

/// Fetches each pack holding a file the store lacks; returns packs, bytes and files stored.
async fn fetch_missing(
    state: &AgentState,
    registry: &Registry,
    remote: &pull::Remote,
    missing: &[(Hash, u64)],
) -> Result<(usize, u64, u64), Error> {
    if missing.is_empty() {
        return Ok((0, 0, 0));
    }
    reserve(state, &remote.manifest.id, missing).await?;
    // Every file of the manifest may arrive (a pack holds files the node has, too): each is
    // checked against the size the manifest gives, and written only if new.
    let claims: HashMap<Hash, u64> = remote
        .packs
        .iter()
        .flat_map(|p| p.objects.iter().copied())
        .collect();
    let claims = std::sync::Arc::new(claims);
    let lacking: HashSet<Hash> = missing.iter().map(|(h, _)| *h).collect();
    let (mut packs, mut bytes, mut objects) = (0, 0, 0);
    for pack in &remote.packs {
        if !pack.objects.iter().any(|(h, _)| lacking.contains(h)) {
            continue;
        }
        let (got, stored) = fetch_pack(state, registry, remote, pack, claims.clone()).await?;
        (packs, bytes, objects) = (packs + 1, bytes + got, objects + stored);
    }
    let store = state.store.clone();
    let still: Vec<Hash> = lacking
        .into_iter()
        .filter(|h| !store.has_object(h))
        .collect();
    if !still.is_empty() {
        return Err(Error::PullIncomplete {
            reference: remote.reference.to_string(),
            missing: still.len(),
        });
    }
    Ok((packs, bytes, objects))
}

/// Reserves the disk space the missing files need, as an upload does.
async fn reserve(state: &AgentState, id: &Id, missing: &[(Hash, u64)]) -> Result<(), Error> {
    let claims: HashMap<Hash, u64> = missing.iter().copied().collect();
    super::upload::check_upload(&state.config, &claims)?;
    let (store, config, reservations, id) = (
        state.store.clone(),
        state.config.clone(),
        state.reservations.clone(),
        *id,
    );
    tokio::task::spawn_blocking(move || {
        let free = store.free_bytes()?;
        let ttl = config.request_timeout.max(config.idle_timeout);
        reservations.reserve(id, claims, free, config.free_space_margin, ttl)
    })
    .await
    .map_err(|source| Error::Worker {
        doing: "reserving space",
        source,
    })?
}

/// One pack: streamed from the registry into the upload's ingest on a blocking thread.
async fn fetch_pack(
    state: &AgentState,
    registry: &Registry,
    remote: &pull::Remote,
    pack: &pull::Pack,
    claims: std::sync::Arc<HashMap<Hash, u64>>,
) -> Result<(u64, u64), Error> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let store: Store = state.store.clone();
    let window = state.store.limits.max_window_log;
    let max = state.config.max_upload_bytes;
    let worker = tokio::task::spawn_blocking(move || {
        let reader = pull::ChannelReader::new(rx);
        let mut decoder =
            zstd::Decoder::new(reader).map_err(|source| Error::UploadCorrupt { source })?;
        decoder
            .window_log_max(window)
            .map_err(|source| Error::UploadCorrupt { source })?;
        super::upload::ingest(&store, &mut decoder, max, &claims).map_err(|(e, _)| e)
    });
    let streamed = pull::stream_pack(registry, remote, pack, &tx).await;
    drop(tx);
    let ingested = worker.await.map_err(|source| Error::Worker {
        doing: "storing a pack",
        source,
    })?;
    // The registry's error explains a torn stream better than the ingest's.
    let got = streamed?;
    let stored = ingested?;
    state.reservations.stored(&remote.manifest.id, stored.bytes);
    Ok((got, stored.objects))
}
