//! `silver push`: an artifact into a registry as parts, packs, config and one manifest, sending
//! only the blobs the registry lacks.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use packer::{Entry, Hash, Kind, Limits, Manifest, Progress, ReadConfig};
use serde::Serialize;

use crate::error::Error;
use crate::http::{Registry, RegistryConfig};
use crate::layout::{self, Descriptor, ImageManifest};
use crate::reference::{Digest, Reference};

/// Blobs in flight at once: enough to hide a registry's round trips.
const PARALLEL_BLOBS: usize = 4;

/// What `silver push --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `REGISTRY/REPO@sha256:…`: what `silver deploy` and `silver pull` take.
    pub reference: String,
    pub digest: Digest,
    pub id: packer::Id,
    /// Tags set: the one asked for, and `b3-<id>` (how `--registry` finds an id).
    pub tags: Vec<String>,
    pub parts: usize,
    pub packs: usize,
    pub blobs_sent: usize,
    pub blobs_skipped: usize,
    /// Blob bytes sent (the manifests' few KB not counted).
    pub bytes_sent: u64,
}

/// The tag every pushed artifact also gets, so that its BLAKE3 id finds it.
pub fn id_tag(id: &packer::Id) -> String {
    format!("b3-{}", id.0.to_hex())
}

/// Pushes `archive` (verified as it is read) to `reference`'s repository.
pub async fn push(
    archive: &Path,
    reference: &Reference,
    config: &RegistryConfig,
    limits: &Limits,
    progress: Arc<dyn Progress + Send + Sync>,
) -> Result<PushReport, Error> {
    let registry = Registry::connect(reference, config)?;
    let spool = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let (manifest, packs) = {
        let (archive, limits, dir) = (
            archive.to_path_buf(),
            limits.clone(),
            spool.path().to_path_buf(),
        );
        tokio::task::spawn_blocking(move || write_packs(&archive, &limits, &dir))
            .await
            .map_err(|e| Error::Worker {
                what: e.to_string(),
            })??
    };
    let parts: Vec<Blob> = layout::manifest_parts(&manifest.bytes)
        .into_iter()
        .map(|part| {
            Blob::memory(
                layout::PART_TYPE,
                layout::compress_part(part),
                Default::default(),
            )
        })
        .collect();
    let config_blob = Blob::memory(
        layout::CONFIG_TYPE,
        layout::compress_part(&manifest.bytes),
        Default::default(),
    );
    let (part_count, pack_count) = (parts.len(), packs.len());
    let mut layers: Vec<Blob> = parts;
    layers.extend(packs);
    let image = ImageManifest::new(
        &manifest,
        config_blob.descriptor.clone(),
        layers.iter().map(|b| b.descriptor.clone()).collect(),
    );
    let mut all = layers;
    all.push(config_blob);
    let known = known_blobs(&registry, reference).await;
    let unknown = all.iter().filter(|b| !known.contains(&b.descriptor.digest));
    let (sent, bytes_sent) = send_missing(&registry, unknown, progress).await?;

    let body = serde_json::to_vec(&image).expect("a manifest serializes");
    let mut tags = Vec::new();
    for tag in reference.tag.iter().cloned().chain([id_tag(&manifest.id)]) {
        registry.put_manifest(&tag, &body).await?;
        tags.push(tag);
    }
    let digest = Digest::sha256(&body);
    Ok(PushReport {
        reference: Reference {
            tag: None,
            ..reference.at(digest.clone())
        }
        .to_string(),
        digest,
        id: manifest.id,
        tags,
        parts: part_count,
        packs: pack_count,
        blobs_sent: sent,
        blobs_skipped: all.len() - sent,
        bytes_sent,
    })
}

/// One blob to push: its descriptor and where its bytes are.
struct Blob {
    descriptor: Descriptor,
    source: Source,
}

enum Source {
    Memory(Bytes),
    File(PathBuf),
}

impl Blob {
    fn memory(
        media_type: &str,
        bytes: Vec<u8>,
        annotations: std::collections::BTreeMap<String, String>,
    ) -> Blob {
        Blob {
            descriptor: Descriptor {
                media_type: media_type.into(),
                digest: Digest::sha256(&bytes),
                size: bytes.len() as u64,
                annotations,
            },
            source: Source::Memory(Bytes::from(bytes)),
        }
    }

    fn body(&self) -> Result<reqwest::Body, Error> {
        match &self.source {
            Source::Memory(b) => Ok(reqwest::Body::from(b.clone())),
            Source::File(path) => {
                let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                Ok(reqwest::Body::from(tokio::fs::File::from_std(file)))
            }
        }
    }
}

/// The blobs the manifest now at `reference`'s tag names (CI pushing to a moving tag, such as
/// `main`, finds the last push there): a registry keeps every blob a stored manifest names, so
/// these need no HEAD each. Nothing when there is no tag or nothing at it.
async fn known_blobs(
    registry: &Registry,
    reference: &Reference,
) -> std::collections::HashSet<Digest> {
    let Some(tag) = &reference.tag else {
        return Default::default();
    };
    let at_tag = Reference {
        tag: Some(tag.clone()),
        digest: None,
        ..reference.clone()
    };
    let Ok(Some((bytes, _))) = registry.manifest_if_any(&at_tag).await else {
        return Default::default();
    };
    let Ok(image) = serde_json::from_slice::<ImageManifest>(&bytes) else {
        return Default::default();
    };
    image
        .layers
        .into_iter()
        .chain([image.config])
        .map(|d| d.digest)
        .collect()
}

/// Sends each blob the registry lacks (several at once); returns how many and their bytes.
async fn send_missing<'a>(
    registry: &Registry,
    blobs: impl Iterator<Item = &'a Blob>,
    progress: Arc<dyn Progress + Send + Sync>,
) -> Result<(usize, u64), Error> {
    let blobs: Vec<&Blob> = blobs.collect();
    progress.start("pushing", blobs.iter().map(|b| b.descriptor.size).sum());
    let results: Vec<Result<Option<u64>, Error>> = futures_util::stream::iter(blobs)
        .map(|blob| {
            let progress = progress.clone();
            async move {
                let d = &blob.descriptor;
                let sent = if registry.has_blob(&d.digest).await? {
                    None
                } else {
                    registry.put_blob(&d.digest, d.size, || blob.body()).await?;
                    Some(d.size)
                };
                progress.advance(d.size);
                Ok(sent)
            }
        })
        .buffer_unordered(PARALLEL_BLOBS)
        .collect()
        .await;
    progress.finish();
    let mut sent = (0, 0);
    for r in results {
        if let Some(bytes) = r? {
            sent = (sent.0 + 1, sent.1 + bytes);
        }
    }
    Ok(sent)
}

/// Reads the archive once, verifying it, and writes its distinct files into pack blobs under
/// `dir`, grouped as [`layout::pack_groups`] says.
fn write_packs(
    archive: &Path,
    limits: &Limits,
    dir: &Path,
) -> Result<(Manifest, Vec<Blob>), Error> {
    let manifest = packer::read_manifest(archive, limits)?;
    let objects = manifest.distinct_objects();
    let groups = layout::pack_groups(&objects);
    let mut writer = PackWriter {
        objects,
        groups,
        next: 0,
        group: 0,
        remaining: 0,
        open: None,
        blobs: Vec::new(),
        dir: dir.to_path_buf(),
        error: None,
    };
    let config = ReadConfig {
        limits: limits.clone(),
        ..Default::default()
    };
    packer::read_with(archive, &config, &mut writer)?;
    if let Some(e) = writer.error.take() {
        return Err(e);
    }
    if writer.open.is_some() || writer.next != writer.objects.len() {
        return Err(Error::Worker {
            what: format!(
                "{}: the archive ended before every pack was written",
                archive.display()
            ),
        });
    }
    Ok((manifest, writer.blobs))
}

/// Writes distinct files into packs as the archive streams by.
struct PackWriter {
    objects: Vec<(Hash, u64)>,
    groups: Vec<Range<usize>>,
    /// The next distinct file expected (archive order is manifest order).
    next: usize,
    group: usize,
    /// Content bytes of the current file still to come.
    remaining: u64,
    open: Option<zstd::Encoder<'static, HashingFile>>,
    blobs: Vec<Blob>,
    dir: PathBuf,
    error: Option<Error>,
}

impl PackWriter {
    fn start(&mut self, hash: Hash, size: u64) -> Result<(), Error> {
        if self.groups[self.group].start == self.next {
            let path = self.dir.join(format!("pack-{}", self.group));
            let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            let sink = HashingFile {
                file,
                path: path.clone(),
                hasher: Default::default(),
                bytes: 0,
            };
            let encoder =
                zstd::Encoder::new(sink, layout::PACK_LEVEL).map_err(|e| Error::io(&path, e))?;
            self.open = Some(encoder);
        }
        self.next += 1;
        self.remaining = size;
        self.write(&silver_wire::frames::frame_header(&hash.0, size))?;
        self.close_if_done()
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let out = self
            .open
            .as_mut()
            .expect("a pack is open while its files stream");
        out.write_all(bytes)
            .map_err(|e| Error::io(&out.get_ref().path, e))
    }

    /// Closes the pack once its last file's content is in.
    fn close_if_done(&mut self) -> Result<(), Error> {
        if self.remaining > 0 || self.next != self.groups[self.group].end {
            return Ok(());
        }
        let encoder = self.open.take().expect("a pack is open");
        let sink = encoder.finish().map_err(|e| Error::io(&self.dir, e))?;
        let HashingFile {
            mut file,
            path,
            hasher,
            bytes,
        } = sink;
        file.flush().map_err(|e| Error::io(&path, e))?;
        use sha2::Digest as _;
        self.blobs.push(Blob {
            descriptor: Descriptor {
                media_type: layout::PACK_TYPE.into(),
                digest: Digest::from_sha256(hasher.finalize().into()),
                size: bytes,
                annotations: Default::default(),
            },
            source: Source::File(path),
        });
        self.group += 1;
        Ok(())
    }
}

impl packer::Visitor for PackWriter {
    fn wants(&mut self, entry: &Entry) -> bool {
        let (Kind::File { hash, size } | Kind::Exec { hash, size }) = entry.kind else {
            return false;
        };
        if self.error.is_some() || self.objects.get(self.next).map(|o| o.0) != Some(hash) {
            return false; // a file seen before: its first copy is packed
        }
        match self.start(hash, size) {
            Ok(()) => size > 0,
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }

    fn chunk(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
        let result = self.write(bytes).and_then(|()| self.close_if_done());
        result.map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// A pack's file, hashed as it is written.
struct HashingFile {
    file: std::fs::File,
    path: PathBuf,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
