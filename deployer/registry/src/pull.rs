//! Reading an artifact out of a registry: its manifest (from the parts, each checked against
//! its sha256, the whole against the BLAKE3 id), which files each pack holds, and each pack's
//! bytes checked as they stream. `silver pull` writes a `.silver` archive from them; a node
//! feeds the packs it needs into its store.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use packer::{Hash, Limits, Manifest, Progress};
use serde::Serialize;

use crate::error::Error;
use crate::http::{Registry, RegistryConfig};
use crate::layout::{self, Descriptor, ImageManifest};
use crate::reference::{Digest, Reference};

/// An artifact in a registry, its manifest read and checked.
pub struct Remote {
    /// `REGISTRY/REPO@DIGEST`.
    pub reference: Reference,
    pub digest: Digest,
    pub manifest: Manifest,
    pub packs: Vec<Pack>,
    /// Bytes fetched to learn all this: the image manifest and the parts not cached.
    pub bytes_fetched: u64,
}

/// One pack layer and the distinct files it holds, in order.
pub struct Pack {
    pub descriptor: Descriptor,
    pub objects: Vec<(Hash, u64)>,
}

/// Reads the image manifest at `reference` (which must name a digest) and the artifact's
/// manifest from its parts. Parts already in `cache` (by digest) are not fetched again; parts
/// fetched are added to it.
pub async fn open(
    registry: &Registry,
    reference: &Reference,
    cache: Option<&Path>,
    limits: &Limits,
) -> Result<Remote, Error> {
    let digest = reference.digest.clone().ok_or_else(|| Error::NoDigest {
        reference: reference.to_string(),
    })?;
    let (bytes, _) = registry.manifest(reference).await?;
    let mut fetched = bytes.len() as u64;
    let image: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| Error::BadLayout {
        reference: reference.to_string(),
        why: format!("its manifest is not OCI JSON ({e})"),
    })?;
    let id = check_silver(reference, &image)?;
    let (parts, packs) = split_layers(reference, &image)?;
    let mut text = Vec::new();
    for part in parts {
        let (blob, got) = part_bytes(registry, reference, part, cache, limits).await?;
        fetched += got;
        text.extend_from_slice(&blob);
        if text.len() as u64 > limits.max_manifest_bytes {
            return Err(Error::TooLarge {
                reference: reference.to_string(),
                what: "the artifact's manifest".into(),
                limit: limits.max_manifest_bytes,
            });
        }
    }
    let actual = packer::Id(Hash::of(&text));
    if actual != id {
        return Err(Error::WrongArtifact {
            reference: reference.to_string(),
            expected: id.to_string(),
            actual: actual.to_string(),
        });
    }
    let manifest = Manifest::parse(&text, limits).map_err(|e| Error::BadLayout {
        reference: reference.to_string(),
        why: format!("its manifest is refused: {e}"),
    })?;
    let packs = assign(reference, &image, &manifest, packs)?;
    Ok(Remote {
        reference: reference.clone(),
        digest,
        manifest,
        packs,
        bytes_fetched: fetched,
    })
}

/// Streams one pack's bytes into `tx`, checking its size and digest; a mismatch or a cut
/// connection is sent as an error, so the reader never takes a torn pack for a whole one.
/// Returns the bytes fetched.
pub async fn stream_pack(
    registry: &Registry,
    remote: &Remote,
    pack: &Pack,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<u64, Error> {
    let result = stream_checked(registry, &remote.reference, &pack.descriptor, tx).await;
    if let Err(e) = &result {
        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
    }
    result
}

async fn stream_checked(
    registry: &Registry,
    reference: &Reference,
    d: &Descriptor,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<u64, Error> {
    let mut resp = registry.blob(&d.digest).await?;
    let mut hasher = d.digest.hasher();
    let mut got = 0u64;
    let lost = |source: reqwest::Error| Error::Unreachable {
        registry: reference.registry.clone(),
        source: source.without_url(),
    };
    while let Some(chunk) = resp.chunk().await.map_err(lost)? {
        got += chunk.len() as u64;
        if got > d.size {
            return Err(too_long(reference, d));
        }
        hasher.update(&chunk);
        if tx.send(Ok(chunk)).await.is_err() {
            break; // the reader refused the pack; its error is the answer
        }
    }
    let actual = hasher.finish();
    if got != d.size || actual != d.digest {
        return Err(Error::DigestMismatch {
            reference: reference.to_string(),
            what: format!("blob {}", d.digest),
            expected: d.digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(got)
}

fn too_long(reference: &Reference, d: &Descriptor) -> Error {
    Error::TooLarge {
        reference: reference.to_string(),
        what: format!("blob {}", d.digest),
        limit: d.size,
    }
}

/// The artifact id the manifest claims, if it is silver's.
fn check_silver(reference: &Reference, image: &ImageManifest) -> Result<packer::Id, Error> {
    if image.artifact_type.as_deref() != Some(layout::ARTIFACT_TYPE)
        || image.config.media_type != layout::CONFIG_TYPE
    {
        return Err(Error::NotSilver {
            reference: reference.to_string(),
            found: image
                .artifact_type
                .clone()
                .or(Some(image.config.media_type.clone())),
        });
    }
    let id = image.annotations.get(layout::ID_ANNOTATION);
    id.and_then(|s| silver_types::ArtifactId::parse(s))
        .ok_or_else(|| Error::BadLayout {
            reference: reference.to_string(),
            why: format!("its `{}` annotation is not a b3: id", layout::ID_ANNOTATION),
        })
}

/// The parts, then the packs: any other layer, or a part after a pack, is refused.
fn split_layers<'a>(
    reference: &Reference,
    image: &'a ImageManifest,
) -> Result<(Vec<&'a Descriptor>, Vec<&'a Descriptor>), Error> {
    let parts: Vec<&Descriptor> = image
        .layers
        .iter()
        .take_while(|l| l.media_type == layout::PART_TYPE)
        .collect();
    let packs: Vec<&Descriptor> = image.layers[parts.len()..].iter().collect();
    if let Some(other) = packs.iter().find(|l| l.media_type != layout::PACK_TYPE) {
        return Err(Error::BadLayout {
            reference: reference.to_string(),
            why: format!("layer {} has media type {}", other.digest, other.media_type),
        });
    }
    Ok((parts, packs))
}

/// One part's text, from the cache or the registry (then cached); and the bytes fetched.
async fn part_bytes(
    registry: &Registry,
    reference: &Reference,
    d: &Descriptor,
    cache: Option<&Path>,
    limits: &Limits,
) -> Result<(Vec<u8>, u64), Error> {
    let cached = cache.map(|dir| dir.join(d.digest.hex()));
    // A cached part is checked again: a corrupt cache is refetched, never trusted.
    if let Some(blob) = cached.as_deref().and_then(|p| std::fs::read(p).ok()) {
        if checks(&blob, d) {
            // Marked as used, so the node's gc keeps the parts its pulls still reuse.
            let now = std::time::SystemTime::now();
            let _ = std::fs::File::options()
                .write(true)
                .open(cached.as_deref().expect("read from it"))
                .and_then(|f| f.set_modified(now));
            return Ok((decompress(reference, d, &blob, limits)?, 0));
        }
    }
    let resp = registry.blob(&d.digest).await?;
    if d.size > limits.max_manifest_bytes {
        return Err(too_long(reference, d));
    }
    let blob = crate::http::read_capped(resp, d.size, reference, "a manifest part").await?;
    if !checks(&blob, d) {
        return Err(Error::DigestMismatch {
            reference: reference.to_string(),
            what: format!("manifest part {}", d.digest),
            expected: d.digest.to_string(),
            actual: {
                let mut h = d.digest.hasher();
                h.update(&blob);
                h.finish().to_string()
            },
        });
    }
    if let Some(path) = &cached {
        // A cache: a part that cannot be kept is fetched again next time.
        let kept = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                let options = safefs::WriteOptions {
                    durability: safefs::Durability::Atomic,
                    ..safefs::WriteOptions::PRIVATE
                };
                safefs::write_atomic(path, &blob, options)
            });
        if let Err(e) = kept {
            tracing::debug!(path = %path.display(), error = %e, "cannot cache a manifest part");
        }
    }
    let got = blob.len() as u64;
    Ok((decompress(reference, d, &blob, limits)?, got))
}

fn checks(blob: &[u8], d: &Descriptor) -> bool {
    let mut h = d.digest.hasher();
    h.update(blob);
    blob.len() as u64 == d.size && h.finish() == d.digest
}

fn decompress(
    reference: &Reference,
    d: &Descriptor,
    blob: &[u8],
    limits: &Limits,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let bad = |why: String| Error::BadLayout {
        reference: reference.to_string(),
        why: format!("manifest part {}: {why}", d.digest),
    };
    let mut decoder = zstd::Decoder::new(blob).map_err(|e| bad(e.to_string()))?;
    decoder
        .window_log_max(limits.max_window_log)
        .map_err(|e| bad(e.to_string()))?;
    decoder
        .take(limits.max_manifest_bytes + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

/// Which files each pack holds: the manifest's distinct files split by the packing rule the
/// image manifest names, which must give exactly as many packs as it lists.
fn assign(
    reference: &Reference,
    image: &ImageManifest,
    manifest: &Manifest,
    packs: Vec<&Descriptor>,
) -> Result<Vec<Pack>, Error> {
    let bad = |why: String| Error::BadLayout {
        reference: reference.to_string(),
        why,
    };
    let packing = image
        .annotations
        .get(layout::PACKING_ANNOTATION)
        .map(String::as_str);
    if packing != Some(layout::PACKING) {
        return Err(bad(format!(
            "it was packed by rule {}, and this silver knows rule {}",
            packing.unwrap_or("(none)"),
            layout::PACKING
        )));
    }
    let objects = manifest.distinct_objects();
    let groups = layout::pack_groups(&objects);
    if groups.len() != packs.len() {
        return Err(bad(format!(
            "it lists {} packs where its manifest splits into {}",
            packs.len(),
            groups.len()
        )));
    }
    Ok(packs
        .into_iter()
        .zip(groups)
        .map(|(d, r)| Pack {
            descriptor: d.clone(),
            objects: objects[r].to_vec(),
        })
        .collect())
}

/// What `silver pull --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    pub reference: String,
    pub id: packer::Id,
    pub archive: PathBuf,
    pub packs: usize,
    pub bytes_fetched: u64,
}

/// `silver pull`: the artifact at `reference` as a `.silver` archive at `out`, written only
/// once every pack and file checked out.
pub async fn pull_archive(
    reference: &Reference,
    config: &RegistryConfig,
    out: &Path,
    limits: &Limits,
    progress: Arc<dyn Progress + Send + Sync>,
) -> Result<PullReport, Error> {
    let registry = Registry::connect(reference, config)?;
    let remote = open(&registry, reference, None, limits).await?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let spool = tempfile::tempdir_in(dir).map_err(|e| Error::io(dir, e))?;
    let mut fetched = remote.bytes_fetched;
    progress.start(
        "pulling",
        remote.packs.iter().map(|p| p.descriptor.size).sum(),
    );
    for pack in &remote.packs {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (objects, spool_dir, window) = (
            pack.objects.clone(),
            spool.path().to_path_buf(),
            limits.max_window_log,
        );
        let unpack = tokio::task::spawn_blocking(move || {
            unpack_pack(ChannelReader::new(rx), &objects, &spool_dir, window)
        });
        let got = stream_pack(&registry, &remote, pack, &tx).await;
        drop(tx);
        let unpacked = unpack.await.map_err(|e| Error::Worker {
            what: e.to_string(),
        })?;
        fetched += got?;
        unpacked.map_err(|why| Error::BadLayout {
            reference: remote.reference.to_string(),
            why: format!("pack {}: {why}", pack.descriptor.digest),
        })?;
        progress.advance(pack.descriptor.size);
    }
    progress.finish();
    let (manifest, spool_dir, out_path) = (
        remote.manifest.clone(),
        spool.path().to_path_buf(),
        out.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || write_pulled(&manifest, &spool_dir, &out_path))
        .await
        .map_err(|e| Error::Worker {
            what: e.to_string(),
        })??;
    Ok(PullReport {
        reference: remote.reference.to_string(),
        id: remote.manifest.id,
        archive: out.to_path_buf(),
        packs: remote.packs.len(),
        bytes_fetched: fetched,
    })
}

fn write_pulled(manifest: &Manifest, spool: &Path, out: &Path) -> Result<(), Error> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    let file = std::io::BufWriter::new(tmp.as_file());
    let config = packer::PackConfig::default();
    let written = packer::write_archive(manifest, file, &config, |hash| {
        std::fs::File::open(spool.join(hash.to_hex()))
    })?;
    written
        .into_inner()
        .map_err(|e| Error::io(out, e.into_error()))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(out, e))?;
    tmp.persist(out).map_err(|e| Error::io(out, e.error))?;
    Ok(())
}

/// Splits a pack into its files under `dir`, each checked against the hash and size the
/// manifest gives, in the order the manifest gives.
fn unpack_pack(
    reader: impl Read,
    objects: &[(Hash, u64)],
    dir: &Path,
    window_log_max: u32,
) -> Result<(), String> {
    use silver_wire::frames::{FrameDecoder, Piece};
    let mut decoder = zstd::Decoder::new(reader).map_err(|e| e.to_string())?;
    decoder
        .window_log_max(window_log_max)
        .map_err(|e| e.to_string())?;
    let mut frames = FrameDecoder::default();
    let mut expected = objects.iter();
    let mut current: Option<(Hash, blake3::Hasher, std::fs::File, PathBuf)> = None;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = decoder.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        frames.feed(&buf[..n], |piece| -> Result<(), String> {
            match piece {
                Piece::Start { hash, len } => {
                    let want = expected
                        .next()
                        .ok_or("it holds more files than its annotation says")?;
                    if (Hash(hash), len) != *want {
                        return Err(format!(
                            "it holds {} where the manifest has {}",
                            Hash(hash).to_hex(),
                            want.0.to_hex()
                        ));
                    }
                    let path = dir.join(format!("{}.partial", want.0.to_hex()));
                    let file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
                    current = Some((Hash(hash), blake3::Hasher::new(), file, path));
                    Ok(())
                }
                Piece::Content(bytes) => {
                    let (_, hasher, file, _) = current.as_mut().expect("content follows a start");
                    hasher.update(bytes);
                    std::io::Write::write_all(file, bytes).map_err(|e| e.to_string())
                }
                Piece::End => {
                    let (hash, hasher, _, path) = current.take().expect("an end follows a start");
                    if Hash::from(hasher.finalize()) != hash {
                        return Err(format!("file {} does not hash to its name", hash.to_hex()));
                    }
                    std::fs::rename(&path, dir.join(hash.to_hex())).map_err(|e| e.to_string())
                }
            }
        })?;
    }
    if !frames.is_clean() || expected.next().is_some() {
        return Err("it ends before its last file".into());
    }
    Ok(())
}

/// Reads what the async side forwards: chunks, then the end, or an error.
pub struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    chunk: Bytes,
}

impl ChannelReader {
    pub fn new(rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            rx,
            chunk: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
