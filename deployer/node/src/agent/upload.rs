//! Uploads: a manifest (`PUT /v1/artifacts/{id}`), the objects it lacks (`POST /v1/objects`,
//! naming the artifact in `X-Silver-Artifact`), then the commit. Every frame is hashed, every
//! frame's length must be the size its manifest claims, and the disk space an upload needs is
//! reserved when its manifest arrives, so two uploads never both count on the same free bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use bytes::Bytes;
use futures_util::StreamExt;
use packer::{Hash, Id};

use super::extract::ArtifactId;
use super::{blocking, AgentState, ApiErr};
use crate::error::Error;
use crate::store::{self, Store};
use silver_wire::api::*;
use silver_wire::frames::{FrameDecoder, Piece};

/// Disk space promised to uploads under way, by artifact: what each still needs, and the size
/// its manifest claims for every object it lacks.
#[derive(Clone, Default)]
pub struct Reservations {
    inner: Arc<Mutex<HashMap<Id, Reservation>>>,
}

#[derive(Clone)]
struct Reservation {
    claims: Arc<HashMap<Hash, u64>>,
    bytes: u64,
    touched: Instant,
}

impl Reservations {
    /// Reserves `claims` for `id` if they fit in `free` beside every other live reservation,
    /// keeping `margin` spare. The check and the reservation are one step: of two uploads that
    /// cannot both fit, exactly one gets the space and the other a 507.
    pub(super) fn reserve(
        &self,
        id: Id,
        claims: HashMap<Hash, u64>,
        free: u64,
        margin: u64,
        ttl: Duration,
    ) -> Result<(), Error> {
        let mut all = self.inner.lock().expect("reservations are never poisoned");
        // An upload that went quiet for longer than any request may last has given up.
        all.retain(|other, r| *other != id && r.touched.elapsed() < ttl);
        let reserved: u64 = all.values().map(|r| r.bytes).sum();
        let needed: u64 = claims.values().sum();
        let available = free.saturating_sub(reserved);
        if needed.saturating_add(margin) > available {
            return Err(Error::NoSpace {
                needed: needed + margin,
                available,
                reserved,
            });
        }
        all.insert(
            id,
            Reservation {
                claims: Arc::new(claims),
                bytes: needed,
                touched: Instant::now(),
            },
        );
        Ok(())
    }

    /// The sizes claimed for an artifact's missing objects, if its upload is expected.
    pub(super) fn claims(&self, id: &Id) -> Option<Arc<HashMap<Hash, u64>>> {
        let mut all = self.inner.lock().expect("reservations are never poisoned");
        let r = all.get_mut(id)?;
        r.touched = Instant::now();
        Some(r.claims.clone())
    }

    /// Bytes now on disk no longer need reserving.
    pub(super) fn stored(&self, id: &Id, bytes: u64) {
        let mut all = self.inner.lock().expect("reservations are never poisoned");
        if let Some(r) = all.get_mut(id) {
            r.bytes = r.bytes.saturating_sub(bytes);
            r.touched = Instant::now();
        }
    }

    pub(super) fn release(&self, id: &Id) {
        self.inner
            .lock()
            .expect("reservations are never poisoned")
            .remove(id);
    }
}

/// Streams the body to a blocking worker that splits frames and writes each object, hashing
/// every byte; a mismatch, a torn frame, a stall or too many bytes refuses the upload.
pub(super) async fn put_objects(
    State(state): State<AgentState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<StoredResponse>, ApiErr> {
    let id = artifact_header(&headers)?;
    let claims = state
        .reservations
        .claims(&id)
        .ok_or(Error::NotExpected { id })?;
    let compressed = is_zstd(&headers);
    let window_log_max = state.config.limits.max_window_log;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let store = state.store.clone();
    let max = state.config.max_upload_bytes;
    let reservations = state.reservations.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let ingest = |body: &mut dyn std::io::Read| {
            let result = ingest(&store, body, max, &claims);
            let stored = match &result {
                Ok(s) => s.bytes,
                Err((_, bytes)) => *bytes,
            };
            reservations.stored(&id, stored);
            result.map_err(|(e, _)| e)
        };
        let channel = ChannelReader {
            rx,
            chunk: Bytes::new(),
        };
        if compressed {
            let mut decoder =
                zstd::Decoder::new(channel).map_err(|source| Error::UploadCorrupt { source })?;
            decoder
                .window_log_max(window_log_max)
                .map_err(|source| Error::UploadCorrupt { source })?;
            ingest(&mut decoder)
        } else {
            let mut channel = channel;
            ingest(&mut channel)
        }
    });
    let mut stream = body.into_data_stream();
    let idle = state.config.idle_timeout;
    loop {
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                if tx.send(chunk).await.is_err() {
                    break; // the worker refused the upload; its error is the answer
                }
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                drop(tx);
                let _ = worker.await;
                return Err(Error::UploadInterrupted {
                    why: silver_types::Said::new(&e.to_string(), &[]),
                }
                .into());
            }
            Err(_) => {
                drop(tx);
                let _ = worker.await;
                return Err(Error::UploadStalled {
                    secs: idle.as_secs(),
                }
                .into());
            }
        }
    }
    drop(tx);
    let stored = worker.await.map_err(|source| Error::Worker {
        doing: "serving a request",
        source,
    })??;
    Ok(Json(stored))
}

/// Reads what the async side forwards from the request body.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    chunk: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

fn is_zstd(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"zstd"))
}

/// Where one arriving object's bytes go: to a new object, or, for one the node already has,
/// only through a hasher, so that every frame is checked whatever the node holds.
enum Sink {
    Write(store::ObjectWriter),
    Verify(blake3::Hasher),
}

/// Splits the body into frames and stores each object. Returns what was stored, or the error
/// with the bytes stored before it (kept: they are verified, and a retry skips them).
pub(super) fn ingest(
    store: &Store,
    body: &mut dyn std::io::Read,
    max: u64,
    claims: &HashMap<Hash, u64>,
) -> Result<StoredResponse, (Error, u64)> {
    let mut decoder = FrameDecoder::default();
    let mut current: Option<(Hash, Sink)> = None;
    let mut stored = StoredResponse {
        objects: 0,
        bytes: 0,
    };
    let mut batch: Vec<store::Pending> = Vec::new();
    let mut queued: std::collections::HashSet<Hash> = std::collections::HashSet::new();
    let mut total = 0u64;
    let result = (|| {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = body
                .read(&mut buf)
                .map_err(|source| Error::UploadCorrupt { source })?;
            if n == 0 {
                break;
            }
            // Counted after decompression, so a small compressed body cannot expand past the cap.
            total += n as u64;
            if total > max {
                return Err(Error::UploadTooLarge { bytes: total, max });
            }
            decoder.feed(&buf[..n], |piece| match piece {
                Piece::Start { hash, len } => {
                    let hash = Hash(hash);
                    check_claim(claims, &hash, len)?;
                    let known = store.has_object(&hash) || queued.contains(&hash);
                    let sink = if known {
                        Sink::Verify(blake3::Hasher::new())
                    } else {
                        Sink::Write(store.object_writer()?)
                    };
                    current = Some((hash, sink));
                    Ok(())
                }
                Piece::Content(bytes) => match current.as_mut() {
                    Some((_, Sink::Write(w))) => w.write(bytes),
                    Some((_, Sink::Verify(h))) => {
                        h.update(bytes);
                        Ok(())
                    }
                    None => Ok(()),
                },
                Piece::End => match current.take().expect("end follows start") {
                    (hash, Sink::Write(w)) => {
                        stored.bytes += w.written;
                        batch.push(w.finish(&hash)?);
                        queued.insert(hash);
                        stored.objects += 1;
                        Ok(())
                    }
                    (hash, Sink::Verify(h)) => check_hash(&hash, h),
                },
            })?;
        }
        if !decoder.is_clean() {
            return Err(Error::UploadTorn);
        }
        Ok(())
    })();
    if let Some((_, Sink::Write(w))) = current.take() {
        w.abandon();
    }
    match result {
        Ok(()) => store.commit(batch).map(|()| stored).map_err(|e| (e, 0)),
        // Objects verified before a failure are kept: they are correct, and a retry then sends
        // only what is still missing.
        Err(e) => {
            let kept = store.commit(batch).map_or(0, |()| stored.bytes);
            Err((e, kept))
        }
    }
}

/// A frame must be for an object its manifest lacks, and exactly the size the manifest claims:
/// a client that claimed small sizes to pass the free-space check cannot then send large frames.
fn check_claim(claims: &HashMap<Hash, u64>, hash: &Hash, len: u64) -> Result<(), Error> {
    match claims.get(hash) {
        Some(&claimed) if claimed == len => Ok(()),
        claimed => Err(Error::FrameNotClaimed {
            hash: hash.to_hex(),
            len,
            claimed: claimed.copied(),
        }),
    }
}

/// A frame for an object the node has must still carry its bytes: "hashes every byte".
fn check_hash(expected: &Hash, hasher: blake3::Hasher) -> Result<(), Error> {
    let actual = Hash::from(hasher.finalize());
    if actual == *expected {
        return Ok(());
    }
    Err(Error::HashMismatch {
        expected: expected.to_hex(),
        actual: actual.to_hex(),
    })
}

/// The artifact an object upload is for, from `X-Silver-Artifact`.
fn artifact_header(headers: &HeaderMap) -> Result<Id, Error> {
    let value = headers
        .get(ARTIFACT_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(Error::NoArtifactHeader)?;
    Id::parse(value).ok_or_else(|| Error::BadId {
        given: value.to_string(),
        rule: silver_types::names::IdRule::TooShort,
    })
}

/// Receives a manifest (whole, zstd, or a zstd delta against one the node has) and answers with
/// the objects still missing, after checking that their upload fits the cap and the disk.
pub(super) async fn put_artifact(
    State(state): State<AgentState>,
    ArtifactId(id): ArtifactId,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ArtifactResponse>, ApiErr> {
    let store = state.store.clone();
    let config = state.config.clone();
    let base = headers
        .get(BASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let compressed = is_zstd(&headers);
    let reservations = state.reservations.clone();
    let resp = blocking(move || {
        let bytes = decode_manifest(&store, &body, compressed, base.as_deref())?;
        let (manifest, missing) = store.receive_manifest(&id, &bytes)?;
        let claims: HashMap<Hash, u64> = missing.iter().copied().collect();
        let checked = check_upload(&config, &claims).and_then(|()| {
            let free = store.free_bytes()?;
            let ttl = config.request_timeout.max(config.idle_timeout);
            reservations.reserve(id, claims, free, config.free_space_margin, ttl)
        });
        if let Err(e) = checked {
            // Refused: nothing of it stays behind.
            store.discard_pending(&id);
            return Err(e);
        }
        Ok(ArtifactResponse {
            id: manifest.id.to_string(),
            entries: manifest.entries.len(),
            missing: missing.iter().map(|(h, _)| h.to_hex()).collect(),
        })
    })
    .await?;
    Ok(Json(resp))
}

/// The whole upload, frames included, must fit the cap on one request.
pub(super) fn check_upload(
    config: &super::AgentConfig,
    claims: &HashMap<Hash, u64>,
) -> Result<(), Error> {
    let needed: u64 = claims.values().sum();
    let upload =
        needed.saturating_add(claims.len() as u64 * silver_wire::frames::FRAME_HEADER as u64);
    if upload > config.max_upload_bytes {
        return Err(Error::UploadTooLarge {
            bytes: upload,
            max: config.max_upload_bytes,
        });
    }
    Ok(())
}

/// Undoes the manifest's encoding, bounded by the manifest size limit (a bomb stops there).
fn decode_manifest(
    store: &Store,
    body: &[u8],
    compressed: bool,
    base: Option<&str>,
) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    if !compressed {
        return Ok(body.to_vec());
    }
    let dictionary = match base {
        None => Vec::new(),
        Some(base) => {
            let id = silver_types::IdPrefix::parse(base)
                .ok()
                .and_then(|p| p.full())
                .ok_or_else(|| Error::BadId {
                    given: base.to_string(),
                    rule: silver_types::names::IdRule::TooShort,
                })?;
            store
                .manifest_bytes(&id)
                .ok_or(Error::BaseMissing { base: id })?
        }
    };
    let mut decoder = zstd::Decoder::with_dictionary(body, &dictionary)
        .map_err(|source| Error::BadZstd { source })?;
    decoder
        .window_log_max(store.limits.max_window_log)
        .map_err(|source| Error::BadZstd { source })?;
    let limit = store.limits.max_manifest_bytes;
    let mut out = Vec::new();
    decoder
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|source| Error::BadZstd { source })?;
    if out.len() as u64 > limit {
        return Err(Error::ManifestTooLarge { limit });
    }
    Ok(out)
}

pub(super) async fn commit_artifact(
    State(state): State<AgentState>,
    ArtifactId(id): ArtifactId,
) -> Result<Json<ArtifactResponse>, ApiErr> {
    let store = state.store.clone();
    let manifest = blocking(move || store.commit_manifest(&id)).await?;
    state.reservations.release(&id);
    Ok(Json(ArtifactResponse {
        id: manifest.id.to_string(),
        entries: manifest.entries.len(),
        missing: vec![],
    }))
}
