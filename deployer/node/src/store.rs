//! The node's store under the agent's root (design §3): objects, artifacts, releases, `current`,
//! history and locks. Plain blocking file-system code; the agent runs it off its async threads.
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

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use packer::{AppName, Hash, Id, IdPrefix, Kind, Limits, Manifest};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use silver_wire::api::{GcReport, Release, ReleaseState};

/// An open store. Cheap to clone: it is a root path and settings.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    pub limits: Limits,
    /// Identifies this agent process, so locks left by an earlier one are known to be stale.
    instance: String,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub time: u64,
    pub id: String,
    pub action: String,
    pub who: String,
    pub ok: bool,
    pub reason: Option<String>,
}

/// The content of an app's `lock` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub holder: String,
    pub since: u64,
    pub pid: u32,
    pub instance: String,
}

/// What start-up recovery found and did.
#[derive(Debug, Default, Serialize)]
pub struct Recovery {
    pub partials_removed: Vec<String>,
    pub stale_locks: Vec<AppName>,
    pub broken_current: Vec<AppName>,
}

/// The one owner of an app's directory on the node, `apps/<app>/`:
///
/// ```text
/// releases/<hex>/   materialized releases          current       symlink to the live one
/// history.jsonl     every activation and failure   lock          who is activating
/// pins, locations   one item per line              lock.stale    a dead agent's lock
/// logs/ run/ data/ cache/ files/ services/ maintenance   the app's own state (`AppPaths`)
/// ```
#[derive(Debug, Clone)]
pub struct AppDir {
    dir: PathBuf,
}

/// The one-item-per-line files of an app.
#[derive(Debug, Clone, Copy)]
pub enum List {
    Pins,
    Locations,
}

impl AppDir {
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether the app was ever deployed here.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub fn releases(&self) -> PathBuf {
        self.dir.join("releases")
    }

    pub fn release(&self, id: &Id) -> PathBuf {
        self.releases().join(id.0.to_hex())
    }

    /// The symlink to the live release.
    pub fn current(&self) -> PathBuf {
        self.dir.join("current")
    }

    /// The new `current` link, made beside it and renamed over it (recovery removes leftovers).
    fn current_temp(&self, instance: &str) -> PathBuf {
        self.dir.join(format!(".current-{instance}"))
    }

    pub fn history(&self) -> PathBuf {
        self.dir.join("history.jsonl")
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }

    pub fn lock_stale(&self) -> PathBuf {
        self.dir.join("lock.stale")
    }

    pub fn list(&self, list: List) -> PathBuf {
        self.dir.join(match list {
            List::Pins => "pins",
            List::Locations => "locations",
        })
    }

    /// The app's own state, as the runtime uses it.
    pub fn runtime(&self) -> silver_runtime::AppPaths {
        silver_runtime::AppPaths::new(self.dir.clone())
    }
}

impl Store {
    pub fn open(root: &Path, limits: Limits) -> Result<Store, Error> {
        for dir in ["objects/tmp", "artifacts", "apps"] {
            let path = root.join(dir);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&path)
                .map_err(|e| Error::io(&path, e))?;
        }
        let instance = format!("{}-{}", std::process::id(), now());
        Ok(Store {
            root: root.to_path_buf(),
            limits,
            instance,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Start-up: remove `.partial` leftovers and half-written uploads, mark locks of dead
    /// agents stale, and check that every app's `current` names a complete release.
    pub fn recover(&self) -> Result<Recovery, Error> {
        let mut recovery = Recovery::default();
        for dir in [self.root.join("objects/tmp"), self.root.join("artifacts")] {
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

    // ---- objects ----

    pub fn object_path(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join("objects").join(&hex[..2]).join(&hex[2..])
    }

    pub fn has_object(&self, hash: &Hash) -> bool {
        self.object_path(hash).is_file()
    }

    /// Starts receiving one object; its bytes are hashed as they arrive.
    pub fn object_writer(&self) -> Result<ObjectWriter, Error> {
        let (file, path) = temp_file(&self.root.join("objects/tmp"))?;
        Ok(ObjectWriter {
            file,
            path,
            hasher: blake3::Hasher::new(),
            written: 0,
        })
    }

    /// Bytes free for unprivileged use on the store's file system.
    pub fn free_bytes(&self) -> Result<u64, Error> {
        let stat = rustix::fs::statvfs(&self.root).map_err(|e| Error::io(&self.root, e.into()))?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

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
        fs::rename(&pending, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(path.parent().expect("artifacts have a parent"))?;
        Ok(manifest)
    }

    /// The raw bytes of a recorded manifest (a delta base for the next deploy).
    pub fn manifest_bytes(&self, id: &Id) -> Option<Vec<u8>> {
        fs::read(self.artifact_path(id)).ok()
    }

    fn missing_objects(&self, manifest: &Manifest) -> Vec<(Hash, u64)> {
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

    fn artifact_path(&self, id: &Id) -> PathBuf {
        self.root.join("artifacts").join(id.0.to_hex())
    }

    // ---- releases ----

    /// The apps with a directory here. A directory whose name is not an app name was not
    /// made by an agent; it is skipped (and logged), never followed.
    pub fn apps(&self) -> Result<Vec<AppName>, Error> {
        let mut apps: Vec<AppName> = read_dir(&self.root.join("apps"))?
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
        let ids: Vec<Id> = read_dir(&self.root.join("artifacts"))?
            .into_iter()
            .filter_map(|e| Hash::from_hex(e.file_name().to_str()?).map(Id))
            .collect();
        prefix.resolve(&ids).map_err(|why| match why {
            packer::names::Unresolved::Unknown => Error::UnknownId {
                prefix: prefix.clone(),
            },
            packer::names::Unresolved::Ambiguous(count) => Error::AmbiguousId {
                prefix: prefix.clone(),
                count,
            },
        })
    }

    /// The app's directory on this node; the only way to a path under `apps/<app>/`.
    pub fn app(&self, app: &AppName) -> AppDir {
        AppDir {
            dir: self.root.join("apps").join(app),
        }
    }

    pub fn release_dir(&self, app: &AppName, id: &Id) -> PathBuf {
        self.app(app).release(id)
    }

    /// Materializes a release from its manifest, unless it is already there. Builds
    /// `<hex>.partial` from hardlinks, syncs, and renames it into place.
    pub fn stage(&self, app: &AppName, manifest: &Manifest) -> Result<bool, Error> {
        let dest = self.release_dir(app, &manifest.id);
        if dest.is_dir() {
            return Ok(false);
        }
        let releases = dest.parent().expect("release has a parent");
        mkdir_p(releases)?;
        let partial = packer::staging_path(&dest);
        if partial.exists() {
            remove_any(&partial)?;
        }
        mkdir(&partial)?;
        let result = self.materialize(&partial, manifest);
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&partial);
            return Err(e);
        }
        // One syncfs covers every link and directory just made.
        let dir = File::open(&partial).map_err(|e| Error::io(&partial, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| Error::io(&partial, e.into()))?;
        fs::rename(&partial, &dest).map_err(|e| Error::io(&dest, e))?;
        sync_dir(releases)?;
        Ok(true)
    }

    fn materialize(&self, partial: &Path, manifest: &Manifest) -> Result<(), Error> {
        let mut made: HashSet<PathBuf> = HashSet::new();
        for entry in &manifest.entries {
            let target = partial.join(&entry.path);
            if let Some(parent) = target.parent() {
                if made.insert(parent.to_path_buf()) {
                    mkdir_p(parent)?;
                }
            }
            match &entry.kind {
                Kind::Dir => mkdir(&target)?,
                Kind::Link { target: to } => {
                    std::os::unix::fs::symlink(to, &target).map_err(|e| Error::io(&target, e))?
                }
                Kind::File { hash, .. } => link(&self.object_path(hash), &target)?,
                Kind::Exec { hash, .. } => link(&self.exec_twin(hash)?, &target)?,
            }
        }
        Ok(())
    }

    /// Hardlinks share a mode, so executables link to a 0555 copy of the object.
    fn exec_twin(&self, hash: &Hash) -> Result<PathBuf, Error> {
        let object = self.object_path(hash);
        let twin = object.with_extension("x");
        if twin.is_file() {
            return Ok(twin);
        }
        let (mut file, tmp) = temp_file(&self.root.join("objects/tmp"))?;
        let mut src = File::open(&object).map_err(|e| Error::io(&object, e))?;
        io::copy(&mut src, &mut file).map_err(|e| Error::io(&tmp, e))?;
        file.set_permissions(fs::Permissions::from_mode(0o555))
            .map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &twin).map_err(|e| Error::io(&twin, e))?;
        Ok(twin)
    }

    pub fn current(&self, app: &AppName) -> Result<Option<Id>, Error> {
        let link = self.app(app).current();
        match fs::read_link(&link) {
            Ok(target) => {
                let hex = target
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok(Id::parse(&format!("b3:{hex}")))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&link, e)),
        }
    }

    /// Points `current` at a staged release: a new symlink renamed over the old one, then the
    /// directory synced. Never `ln -sfn`, which unlinks first and is not atomic.
    pub fn flip(&self, app: &AppName, id: &Id) -> Result<(), Error> {
        let dir = self.app(app);
        let tmp = dir.current_temp(&self.instance);
        let _ = fs::remove_file(&tmp);
        let target = Path::new("releases").join(id.0.to_hex());
        std::os::unix::fs::symlink(&target, &tmp).map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, dir.current()).map_err(|e| Error::io(dir.path(), e))?;
        sync_dir(dir.path())
    }

    // ---- history ----

    pub fn record(&self, app: &AppName, record: &Record) -> Result<(), Error> {
        let path = self.app(app).history();
        let mut line = serde_json::to_vec(record).expect("records serialize");
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(&path, e))
    }

    pub fn history(&self, app: &AppName) -> Result<Vec<Record>, Error> {
        let path = self.app(app).history();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io(&path, e)),
        };
        // A torn last line (a crash mid-append) is skipped, not fatal.
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Every release of an app with its state, newest first.
    pub fn releases(&self, app: &AppName) -> Result<Vec<Release>, Error> {
        let history = self.history(app)?;
        let current = self.current(app)?.map(|id| id.to_string());
        let previous = previous_good(&history, current.as_deref());
        let mut ids: Vec<String> = read_dir(&self.app(app).releases())?
            .into_iter()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .filter(|n| n.len() == 64)
                    .map(|n| format!("b3:{n}"))
            })
            .collect();
        // A failed release may never have been staged; a removed (gc'd) one is no longer listed.
        for r in &history {
            let last_failed = history
                .iter()
                .rev()
                .find(|x| x.id == r.id)
                .is_some_and(|x| !x.ok);
            if last_failed && !ids.contains(&r.id) {
                ids.push(r.id.clone());
            }
        }
        // Newest first: by the position of each release's latest record, then never-recorded ones.
        let position = |id: &str| history.iter().rposition(|r| r.id == id);
        ids.sort_by(|a, b| position(b).cmp(&position(a)).then_with(|| a.cmp(b)));
        let releases: Vec<Release> = ids
            .into_iter()
            .map(|id| {
                let last = history.iter().rev().find(|r| r.id == id);
                let state = if current.as_deref() == Some(id.as_str()) {
                    ReleaseState::Active
                } else if previous.as_deref() == Some(id.as_str()) {
                    ReleaseState::Previous
                } else if last.is_some_and(|r| !r.ok) {
                    ReleaseState::Failed
                } else {
                    ReleaseState::Staged
                };
                Release {
                    time: last.map_or(0, |r| r.time),
                    who: last.map(|r| r.who.clone()).unwrap_or_default(),
                    reason: last.and_then(|r| r.reason.clone()),
                    id,
                    state,
                }
            })
            .collect();
        Ok(releases)
    }

    /// The release to go back to: the last one that was successfully made current before the
    /// current one.
    pub fn previous(&self, app: &AppName) -> Result<Option<Id>, Error> {
        let current = self.current(app)?.map(|id| id.to_string());
        Ok(previous_good(&self.history(app)?, current.as_deref()).and_then(|s| Id::parse(&s)))
    }

    // ---- pins ----

    /// The app's pinned release ids: gc never removes them.
    pub fn pins(&self, app: &AppName) -> Vec<String> {
        self.read_list(app, List::Pins)
    }

    /// Pins or unpins a release (one id per line in `pins`, rewritten atomically).
    pub fn set_pin(&self, app: &AppName, id: &Id, pinned: bool) -> Result<Vec<String>, Error> {
        if pinned && !self.release_dir(app, id).is_dir() && self.manifest(id).is_err() {
            return Err(Error::ReleaseMissing {
                app: app.clone(),
                id: *id,
            });
        }
        let mut pins = self.pins(app);
        pins.retain(|p| p != &id.to_string());
        if pinned {
            pins.push(id.to_string());
        }
        self.write_list(app, List::Pins, &pins)?;
        Ok(pins)
    }

    /// Where the app answers (`host[/path]`, one per line), as last deployed; empty if never set.
    pub fn locations(&self, app: &AppName) -> Vec<String> {
        self.read_list(app, List::Locations)
    }

    pub fn set_locations(&self, app: &AppName, locations: &[String]) -> Result<(), Error> {
        self.write_list(app, List::Locations, locations)
    }

    /// Whether the app shows the maintenance page (`silver disable`).
    pub fn maintenance(&self, app: &AppName) -> bool {
        self.app(app).runtime().maintenance_flag().exists()
    }

    pub fn set_maintenance(&self, app: &AppName, on: bool) -> Result<(), Error> {
        let path = self.app(app).runtime().maintenance_flag();
        let done = if on {
            fs::write(&path, b"")
        } else {
            fs::remove_file(&path).or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
        };
        done.map_err(|e| Error::io(&path, e))
    }

    fn read_list(&self, app: &AppName, name: List) -> Vec<String> {
        let text = fs::read_to_string(self.app(app).list(name)).unwrap_or_default();
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// Rewrites a one-item-per-line file atomically.
    fn write_list(&self, app: &AppName, name: List, items: &[String]) -> Result<(), Error> {
        mkdir_p(self.app(app).path())?;
        let body: String = items.iter().map(|p| format!("{p}\n")).collect();
        let path = self.app(app).list(name);
        let options = safefs::WriteOptions {
            mode: 0o644,
            durability: safefs::Durability::Durable,
        };
        safefs::write_atomic(&path, body.as_bytes(), options).map_err(|e| Error::io(&path, e))
    }

    // ---- locks ----

    /// Takes the app's activation lock, or says who holds it. A lock left by a dead or
    /// earlier agent is marked stale and taken over.
    pub fn lock(&self, app: &AppName, holder: &str) -> Result<AppLock, Error> {
        mkdir_p(self.app(app).path())?;
        let path = self.app(app).lock();
        for _ in 0..3 {
            let info = LockInfo {
                holder: holder.into(),
                since: now(),
                pid: std::process::id(),
                instance: self.instance.clone(),
            };
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
            {
                Ok(mut file) => {
                    let body = serde_json::to_vec(&info).expect("lock info serializes");
                    file.write_all(&body)
                        .and_then(|()| file.sync_data())
                        .map_err(|e| Error::io(&path, e))?;
                    return Ok(AppLock { path: Some(path) });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match self.read_lock(app) {
                    Some(held) if !self.is_stale(&held) => {
                        return Err(Error::Locked {
                            app: app.clone(),
                            holder: held.holder,
                            since: held.since,
                        })
                    }
                    _ => self.mark_stale(app)?,
                },
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::Locked {
            app: app.clone(),
            holder: "(contended)".into(),
            since: now(),
        })
    }

    fn read_lock(&self, app: &AppName) -> Option<LockInfo> {
        let text = fs::read(self.app(app).lock()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn is_stale(&self, info: &LockInfo) -> bool {
        // Held by this very agent: live. By another instance: stale unless that process lives
        // and is not us (a second agent on the same root).
        if info.instance == self.instance {
            return false;
        }
        let alive = info.pid != std::process::id()
            && rustix::process::Pid::from_raw(info.pid as i32)
                .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok());
        !alive
    }

    /// Keeps the stale lock's content for the operator (`lock.stale`) and frees the app.
    fn mark_stale(&self, app: &AppName) -> Result<(), Error> {
        let path = self.app(app).lock();
        match fs::rename(&path, self.app(app).lock_stale()) {
            Ok(()) => {
                tracing::warn!(%app, "took over a stale lock");
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    // ---- retention ----

    /// Removes releases beyond `keep` per app (never the current, previous, last known-good or
    /// pinned ones; failed releases do not count), then objects and artifacts nothing uses
    /// (objects younger than `grace` are kept).
    pub fn gc(&self, keep: usize, grace: std::time::Duration) -> Result<GcReport, Error> {
        let mut report = GcReport::default();
        let mut live: HashSet<String> = HashSet::new();
        for app in self.apps()? {
            let pins: HashSet<String> = self.pins(&app).into_iter().collect();
            let releases = self.releases(&app)?;
            let mut kept_ok = 0;
            for r in &releases {
                let protected = matches!(r.state, ReleaseState::Active | ReleaseState::Previous)
                    || pins.contains(&r.id);
                let counts = r.state != ReleaseState::Failed;
                let keep_this = protected || (counts && kept_ok < keep);
                if counts && !protected && keep_this {
                    kept_ok += 1;
                }
                let Some(id) = Id::parse(&r.id) else { continue };
                let dir = self.release_dir(&app, &id);
                if keep_this {
                    live.insert(id.0.to_hex());
                } else if dir.exists() {
                    remove_any(&dir)?;
                    report.releases_removed.push(format!("{app} {}", r.id));
                }
            }
        }
        let young = |entry: &fs::DirEntry| {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().map_or(true, |age| age < grace))
        };
        for entry in read_dir(&self.root.join("artifacts"))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            // A deploy in progress has sent its manifest (maybe still `.pending`) but not yet
            // activated it: spare young ones, as with objects.
            if !live.contains(&name) && !young(&entry) {
                remove_any(&entry.path())?;
            } else if !live.contains(&name) {
                live.insert(name.trim_end_matches(".pending").to_string());
            }
        }
        let mut used: HashSet<Hash> = HashSet::new();
        for hex in &live {
            if let Some(id) = Id::parse(&format!("b3:{hex}")) {
                if let Ok(m) = self.manifest(&id) {
                    used.extend(m.entries.iter().filter_map(|e| e.kind.content_hash()));
                }
            }
        }
        for shard in read_dir(&self.root.join("objects"))? {
            if shard.file_name() == "tmp" {
                continue;
            }
            for object in read_dir(&shard.path())? {
                let name = format!(
                    "{}{}",
                    shard.file_name().to_string_lossy(),
                    object.file_name().to_string_lossy()
                );
                let hex = name.trim_end_matches(".x");
                let in_use = Hash::from_hex(hex).is_some_and(|h| used.contains(&h));
                // A deploy uploads objects before its manifest names them: spare young ones.
                if !in_use && !young(&object) {
                    let size = object.metadata().map(|m| m.len()).unwrap_or(0);
                    remove_any(&object.path())?;
                    report.objects_removed += 1;
                    report.bytes_freed += size;
                }
            }
        }
        Ok(report)
    }
}

/// What `fsck` found. Empty lists mean a healthy store.
#[derive(Debug, Default, Serialize)]
pub struct Fsck {
    pub objects_checked: u64,
    pub releases_checked: u64,
    /// Objects whose content does not hash to their name.
    pub corrupt_objects: Vec<String>,
    /// Artifacts that are not valid manifests of their name.
    pub bad_artifacts: Vec<String>,
    /// `app id: problem` for release trees that differ from their manifest.
    pub bad_releases: Vec<String>,
    /// Apps whose `current` does not name a complete release.
    pub bad_current: Vec<String>,
    /// Leftovers recovery would remove (`.partial`, uploads in flight).
    pub leftovers: Vec<String>,
}

impl Fsck {
    pub fn is_clean(&self) -> bool {
        self.corrupt_objects.is_empty()
            && self.bad_artifacts.is_empty()
            && self.bad_releases.is_empty()
            && self.bad_current.is_empty()
    }
}

impl Store {
    /// Re-hashes every object, checks every artifact and every release tree against its
    /// manifest, and every app's `current`. Reads only.
    pub fn fsck(&self) -> Result<Fsck, Error> {
        let mut report = Fsck::default();
        for shard in read_dir(&self.root.join("objects"))? {
            for object in read_dir(&shard.path())? {
                let name = object.file_name().to_string_lossy().into_owned();
                if shard.file_name() == "tmp" {
                    report.leftovers.push(object.path().display().to_string());
                    continue;
                }
                let hex = format!(
                    "{}{}",
                    shard.file_name().to_string_lossy(),
                    name.trim_end_matches(".x")
                );
                report.objects_checked += 1;
                let bytes = fs::read(object.path()).map_err(|e| Error::io(&object.path(), e))?;
                if Hash::from_hex(&hex) != Some(Hash::of(&bytes)) {
                    report
                        .corrupt_objects
                        .push(object.path().display().to_string());
                }
            }
        }
        for artifact in read_dir(&self.root.join("artifacts"))? {
            let name = artifact.file_name().to_string_lossy().into_owned();
            let ok = Id::parse(&format!("b3:{name}"))
                .is_some_and(|id| self.manifest(&id).is_ok_and(|m| m.id == id));
            if name.ends_with(".partial") {
                report.leftovers.push(artifact.path().display().to_string());
            } else if name.ends_with(".pending") {
                continue; // sent, waiting for its objects
            } else if !ok {
                report.bad_artifacts.push(name);
            }
        }
        for app in self.apps()? {
            for release in read_dir(&self.app(&app).releases())? {
                let name = release.file_name().to_string_lossy().into_owned();
                if name.ends_with(".partial") {
                    report.leftovers.push(release.path().display().to_string());
                    continue;
                }
                report.releases_checked += 1;
                let problem = match Id::parse(&format!("b3:{name}")) {
                    None => Some("not named by an artifact id".to_string()),
                    Some(id) => match self.manifest(&id) {
                        Err(e) => Some(e.to_string()),
                        Ok(m) => check_tree(&release.path(), &m).err(),
                    },
                };
                if let Some(problem) = problem {
                    report.bad_releases.push(format!("{app} {name}: {problem}"));
                }
            }
            if let Some(id) = self.current(&app)? {
                let dir = self.release_dir(&app, &id);
                if !dir.is_dir()
                    || report
                        .bad_releases
                        .iter()
                        .any(|b| b.starts_with(&format!("{app} {}", id.0.to_hex())))
                {
                    report.bad_current.push(format!("{app} -> {id}"));
                }
            }
        }
        Ok(report)
    }
}

/// Checks that `dir` holds exactly the manifest's entries, with their kinds, modes' exec bits,
/// targets and content.
fn check_tree(dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let mut expected: HashSet<String> = HashSet::new();
    for entry in &manifest.entries {
        expected.insert(entry.path.clone());
        expected.extend(packer::path::ancestors(&entry.path).map(String::from));
        let path = dir.join(&entry.path);
        let meta =
            fs::symlink_metadata(&path).map_err(|_| format!("`{}` is missing", entry.path))?;
        let ok = match &entry.kind {
            Kind::Dir => meta.is_dir(),
            Kind::Link { target } => {
                fs::read_link(&path).is_ok_and(|t| t.as_os_str() == target.as_str())
            }
            Kind::File { hash, .. } | Kind::Exec { hash, .. } => {
                let exec = matches!(entry.kind, Kind::Exec { .. });
                meta.is_file()
                    && (meta.permissions().mode() & 0o111 != 0) == exec
                    && fs::read(&path).is_ok_and(|b| &Hash::of(&b) == hash)
            }
        };
        if !ok {
            return Err(format!("`{}` differs from the manifest", entry.path));
        }
    }
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for e in read_dir(&d).map_err(|e| e.to_string())? {
            let rel = format!("{prefix}{}", e.file_name().to_string_lossy());
            if !expected.contains(&rel) {
                return Err(format!("`{rel}` is not in the manifest"));
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((e.path(), format!("{rel}/")));
            }
        }
    }
    Ok(())
}

/// The previous good release: walking successful activations backwards, the first id that
/// differs from `current` and whose latest attempt did not fail.
fn previous_good(history: &[Record], current: Option<&str>) -> Option<String> {
    // A release whose latest attempt failed is not good any more, whatever it was before.
    let still_good = |id: &str| {
        history
            .iter()
            .rev()
            .find(|r| r.id == id)
            .is_some_and(|r| r.ok)
    };
    history
        .iter()
        .rev()
        .filter(|r| r.ok)
        .map(|r| r.id.as_str())
        .find(|id| Some(*id) != current && still_good(id))
        .map(String::from)
}

/// Held while an app is being activated; removed when dropped.
#[derive(Debug)]
pub struct AppLock {
    path: Option<PathBuf>,
}

impl Drop for AppLock {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// A verified object waiting in `objects/tmp` for its batch to be committed.
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    hash: Hash,
}

impl Store {
    /// Makes a batch of verified objects durable and visible: one `syncfs` for all their bytes,
    /// then each renamed to its name, then one more `syncfs` for the renames. An object never
    /// appears under its name before its content is on disk, and there is no fsync per file.
    pub fn commit(&self, batch: Vec<Pending>) -> Result<(), Error> {
        let tmp = self.root.join("objects/tmp");
        let result = (|| {
            let dir = File::open(&tmp).map_err(|e| Error::io(&tmp, e))?;
            rustix::fs::syncfs(&dir).map_err(|e| Error::io(&tmp, e.into()))?;
            for pending in &batch {
                let dest = self.object_path(&pending.hash);
                mkdir_p(dest.parent().expect("objects are sharded"))?;
                fs::rename(&pending.path, &dest).map_err(|e| Error::io(&dest, e))?;
            }
            rustix::fs::syncfs(&dir).map_err(|e| Error::io(&tmp, e.into()))
        })();
        if result.is_err() {
            for pending in &batch {
                let _ = fs::remove_file(&pending.path);
            }
        }
        result
    }

    /// Abandons verified objects that will not be committed.
    pub fn discard(&self, batch: Vec<Pending>) {
        for pending in batch {
            let _ = fs::remove_file(pending.path);
        }
    }
}

/// One object arriving: written to `objects/tmp`, hashed on the way.
pub struct ObjectWriter {
    file: File,
    path: PathBuf,
    hasher: blake3::Hasher,
    pub written: u64,
}

impl ObjectWriter {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Checks the bytes against `expected`. A verified object stays in `objects/tmp` until
    /// [`Store::commit`] moves a whole batch into place; a mismatch is refused and removed.
    pub fn finish(self, expected: &Hash) -> Result<Pending, Error> {
        let actual = Hash::from(self.hasher.finalize());
        if &actual != expected {
            let _ = fs::remove_file(&self.path);
            return Err(Error::HashMismatch {
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            });
        }
        if let Err(e) = self.file.set_permissions(fs::Permissions::from_mode(0o444)) {
            let _ = fs::remove_file(&self.path);
            return Err(Error::io(&self.path, e));
        }
        Ok(Pending {
            path: self.path,
            hash: *expected,
        })
    }

    pub fn abandon(self) {
        let _ = fs::remove_file(&self.path);
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

fn pending_path(artifact: &Path) -> PathBuf {
    let mut name = artifact
        .file_name()
        .expect("artifact has a name")
        .to_os_string();
    name.push(".pending");
    artifact.with_file_name(name)
}

/// Writes `bytes` to `path` (read-only), synced, renamed, and its directory synced.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let options = safefs::WriteOptions {
        mode: 0o444,
        durability: safefs::Durability::Durable,
    };
    safefs::write_atomic(path, bytes, options).map_err(|e| Error::io(path, e))
}
