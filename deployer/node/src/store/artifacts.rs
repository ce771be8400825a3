//! Artifacts: verified manifests in `artifacts/<hex>`, and `<hex>.pending` while the objects
//! they name are still arriving.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use packer::{Hash, Id, Manifest};

use super::*;
use crate::error::Error;

impl Store {
    // ---- artifacts ----

    /// Receives a manifest: its bytes must hash to `id` and pass every check of the artifact
    /// reader. Returns it with the objects (and sizes) the node still lacks. A complete one is
    /// recorded at once; an incomplete one waits as `<hex>.pending` for [`Store::commit_manifest`].
    pub fn receive_manifest(
        &self,
        id: &Id,
        bytes: &[u8],
    ) -> Result<(Manifest, Vec<(Hash, u64)>), Error> {
        let manifest = Manifest::parse(bytes, &self.limits)
            .map_err(|problem| Error::BadManifest { problem })?;
        if manifest.id != *id {
            return Err(Error::ManifestIdMismatch {
                claimed: *id,
                actual: manifest.id,
            });
        }
        let missing = self.missing_objects(&manifest);
        let path = self.artifact_path(&manifest.id);
        if path.exists() {
            return Ok((manifest, missing));
        }
        let target = if missing.is_empty() {
            self.check_sizes(&manifest)?;
            path
        } else {
            pending_path(&path)
        };
        write_durably(&target, bytes)?;
        Ok((manifest, missing))
    }

    /// Records a pending manifest once every object it names is on the node; refuses it while any
    /// is missing.
    pub fn commit_manifest(&self, id: &Id) -> Result<Manifest, Error> {
        let path = self.artifact_path(id);
        if path.exists() {
            return self.manifest(id);
        }
        let pending = pending_path(&path);
        let bytes = fs::read(&pending).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NeverSent { id: *id },
            _ => Error::io(&pending, e),
        })?;
        let manifest =
            Manifest::parse(&bytes, &self.limits).map_err(|problem| Error::DamagedManifest {
                path: pending.clone(),
                problem,
            })?;
        let missing = self.missing_objects(&manifest).len();
        if missing > 0 {
            return Err(Error::ObjectsMissing {
                id: *id,
                count: missing,
            });
        }
        if let Err(e) = self.check_sizes(&manifest) {
            // A lying manifest is refused for good; it does not wait for a retry.
            self.discard_pending(id);
            return Err(e);
        }
        fs::rename(&pending, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(path.parent().expect("artifacts have a parent"))?;
        Ok(manifest)
    }

    /// Every size the manifest claims is its object's real size. A manifest that claims 10 GiB
    /// for a 15-byte object would otherwise be deployed, counted wrong by every free-space check,
    /// and called clean by fsck.
    pub fn check_sizes(&self, manifest: &Manifest) -> Result<(), Error> {
        let mut seen = HashSet::new();
        for entry in &manifest.entries {
            let Some(hash) = entry.kind.content_hash() else {
                continue;
            };
            if !seen.insert(hash) {
                continue;
            }
            let object = self.object_path(&hash);
            let actual = fs::metadata(&object)
                .map_err(|e| Error::io(&object, e))?
                .len();
            if actual != entry.size() {
                return Err(Error::SizeMismatch {
                    id: manifest.id,
                    path: entry.path.clone(),
                    claimed: entry.size(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Removes a pending manifest (its upload was refused).
    pub fn discard_pending(&self, id: &Id) {
        let _ = fs::remove_file(pending_path(&self.artifact_path(id)));
    }

    /// Pending manifests untouched for longer than `grace`: uploads that were abandoned.
    pub fn stale_pending(&self, grace: std::time::Duration) -> Result<Vec<PathBuf>, Error> {
        let mut stale = Vec::new();
        for entry in read_dir(&self.layout.artifacts())? {
            let path = entry.path();
            let pending = path.extension().is_some_and(|e| e == "pending");
            let old = fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > grace));
            if pending && old {
                stale.push(path);
            }
        }
        Ok(stale)
    }

    /// The raw bytes of a recorded manifest (a delta base for the next deploy).
    pub fn manifest_bytes(&self, id: &Id) -> Option<Vec<u8>> {
        fs::read(self.artifact_path(id)).ok()
    }

    pub(super) fn missing_objects(&self, manifest: &Manifest) -> Vec<(Hash, u64)> {
        let mut seen = HashSet::new();
        manifest
            .entries
            .iter()
            .filter_map(|e| e.kind.content_hash().map(|h| (h, e.size())))
            .filter(|(h, _)| seen.insert(*h) && !self.has_object(h))
            .collect()
    }

    pub fn manifest(&self, id: &Id) -> Result<Manifest, Error> {
        let path = self.artifact_path(id);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::ArtifactMissing { id: *id },
            _ => Error::io(&path, e),
        })?;
        Manifest::parse(&bytes, &self.limits).map_err(|problem| Error::DamagedManifest {
            path: path.clone(),
            problem,
        })
    }

    pub(super) fn artifact_path(&self, id: &Id) -> PathBuf {
        self.layout.artifact(&id.0.to_hex())
    }
}

pub(super) fn pending_path(artifact: &Path) -> PathBuf {
    let mut name = artifact
        .file_name()
        .expect("artifact has a name")
        .to_os_string();
    name.push(".pending");
    artifact.with_file_name(name)
}

/// Writes `bytes` to `path` (read-only, the agent's alone), synced, renamed, and its directory
/// synced.
pub(super) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let options = safefs::WriteOptions {
        mode: 0o400,
        durability: safefs::Durability::Durable,
    };
    safefs::write_atomic(path, bytes, options).map_err(|e| Error::io(path, e))
}
