//! The node's store under the agent's root (design §3), one module per part: `objects`
//! (content-addressed files), `artifacts` (manifests), `app_dir` (`AppDir`, the one owner of
//! `apps/<app>/`, and the per-app operations), and the plain functions `gc` and `fsck` over
//! them. This module opens the store, recovers it at start-up, and lists and resolves. Plain
//! blocking file-system code; the agent runs it off its async threads.
//!
//! ```text
//! objects/ab/cdef…        content by BLAKE3, read-only (0444); `…​.x` is the 0555 twin for executables
//! objects/tmp/            uploads in flight (emptied on start)
//! artifacts/<hex>         verified manifests
//! apps/<app>/releases/<hex>/   materialized trees: hardlinks into objects
//! apps/<app>/current      symlink to releases/<hex>, replaced by rename(2)
//! apps/<app>/history.jsonl     append-only record of every activation, rollback and failure
//! apps/<app>/lock         who is activating, since when
//! ```

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use packer::{Hash, Id, Limits};
use serde::Serialize;
use silver_types::{AppName, IdPrefix};

use crate::error::Error;

mod app_dir;
mod artifacts;
pub mod certs;
mod fsck;
mod gc;
mod layout;
mod objects;
mod settings;
mod trust;

pub use app_dir::{AppDir, AppLock, List, LockInfo, Record};
pub use fsck::{fsck, Fsck};
pub use gc::gc;
pub use layout::Layout;
pub use objects::{ObjectWriter, Pending};
pub use settings::Settings;
pub use trust::Kept;

/// An open store. Cheap to clone: it is a root path and settings.
#[derive(Debug, Clone)]
pub struct Store {
    layout: Layout,
    pub limits: Limits,
    /// Identifies this agent process, so locks left by an earlier one are known to be stale.
    instance: String,
}

/// What start-up recovery found and did.
#[derive(Debug, Default, Serialize)]
pub struct Recovery {
    pub partials_removed: Vec<String>,
    pub stale_locks: Vec<AppName>,
    pub broken_current: Vec<AppName>,
}

impl Store {
    pub fn open(root: &Path, limits: Limits) -> Result<Store, Error> {
        let layout = Layout::new(root);
        for path in [layout.objects_tmp(), layout.artifacts(), layout.apps()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&path)
                .map_err(|e| Error::io(&path, e))?;
        }
        let instance = format!("{}-{}", std::process::id(), now());
        Ok(Store {
            layout,
            limits,
            instance,
        })
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// This node's id: 8 hex digits made once and kept in `node-id` (0600). App users and
    /// service credentials carry it, so two nodes on one host never share them.
    pub fn node_id(&self) -> Result<String, Error> {
        let path = self.layout.node_id();
        safefs::load_or_create_secret(&path, 4).map_err(|e| Error::io(&path, e))
    }

    /// Start-up: remove `.partial` leftovers and half-written uploads, mark locks of dead
    /// agents stale, and check that every app's `current` names a complete release.
    pub fn recover(&self) -> Result<Recovery, Error> {
        let mut recovery = Recovery::default();
        for dir in [self.layout.objects_tmp(), self.layout.artifacts()] {
            for entry in read_dir(&dir)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                // `.silver-*`: a temp file of `safefs` whose rename a crash interrupted.
                if dir.ends_with("tmp")
                    || name.ends_with(".partial")
                    || name.starts_with(".silver-")
                {
                    remove_any(&entry.path())?;
                    recovery
                        .partials_removed
                        .push(entry.path().display().to_string());
                }
            }
        }
        for app in self.apps()? {
            let dir = self.app(&app);
            for entry in read_dir(&dir.releases())?
                .into_iter()
                .chain(read_dir(dir.path())?)
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".partial") || name.starts_with(".current-") {
                    remove_any(&entry.path())?;
                    recovery
                        .partials_removed
                        .push(entry.path().display().to_string());
                }
            }
            if let Some(info) = self.read_lock(&app) {
                if self.is_stale(&info) {
                    self.mark_stale(&app)?;
                    recovery.stale_locks.push(app.clone());
                }
            }
            if let Some(id) = self.current(&app)? {
                if !self.release_dir(&app, &id).is_dir() {
                    recovery.broken_current.push(app.clone());
                }
            }
        }
        Ok(recovery)
    }

    // ---- releases ----

    /// The apps with a directory here. A directory whose name is not an app name was not
    /// made by an agent; it is skipped (and logged), never followed.
    pub fn apps(&self) -> Result<Vec<AppName>, Error> {
        let mut apps: Vec<AppName> = read_dir(&self.layout.apps())?
            .into_iter()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let parsed = AppName::parse(&name);
                if parsed.is_err() {
                    tracing::warn!(dir = %e.path().display(), "not an app directory; skipped");
                }
                parsed.ok()
            })
            .collect();
        apps.sort();
        Ok(apps)
    }

    /// The one artifact on this node whose id starts with `prefix`.
    pub fn resolve(&self, prefix: &IdPrefix) -> Result<Id, Error> {
        if let Some(id) = prefix.full() {
            return Ok(id);
        }
        let ids: Vec<Id> = read_dir(&self.layout.artifacts())?
            .into_iter()
            .filter_map(|e| Hash::from_hex(e.file_name().to_str()?).map(Id))
            .collect();
        prefix.resolve(&ids).map_err(|why| match why {
            silver_types::names::Unresolved::Unknown => Error::UnknownId {
                prefix: prefix.clone(),
            },
            silver_types::names::Unresolved::Ambiguous(count) => Error::AmbiguousId {
                prefix: prefix.clone(),
                count,
            },
        })
    }

    /// The app's directory on this node; the only way to a path under `apps/<app>/`.
    pub fn app(&self, app: &AppName) -> AppDir {
        self.layout.app(app)
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, Error> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::io(dir, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(Error::io(dir, e)),
    }
}

fn remove_any(path: &Path) -> Result<(), Error> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let result = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.map_err(|e| Error::io(path, e))
}

fn mkdir(path: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(path)
        .map_err(|e| Error::io(path, e))
}

fn mkdir_p(path: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|e| Error::io(path, e))
}

fn link(object: &Path, target: &Path) -> Result<(), Error> {
    fs::hard_link(object, target).map_err(|e| Error::io(target, e))
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

fn temp_file(dir: &Path) -> Result<(File, PathBuf), Error> {
    safefs::temp_file_in(dir, 0o600)
        .and_then(|f| f.keep().map_err(|e| e.error))
        .map_err(|e| Error::io(dir, e))
}
