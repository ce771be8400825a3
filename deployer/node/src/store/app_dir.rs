//! One app on the node: `AppDir`, the one owner of `apps/<app>/`, and the store's per-app
//! operations on it: staging, the `current` flip, history, pins, locations, maintenance, locks.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use packer::{Id, Kind, Manifest};
use serde::{Deserialize, Serialize};
use silver_types::AppName;

use super::*;
use crate::error::Error;
use silver_wire::api::{Action, Release, ReleaseState};

/// One line of `history.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub time: u64,
    pub id: Id,
    pub action: Action,
    pub who: String,
    pub ok: bool,
    pub reason: Option<String>,
    /// The config version (`silver config`) it ran with; never the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<u32>,
}

/// The content of an app's `lock` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub holder: String,
    pub since: u64,
    pub pid: u32,
    pub instance: String,
}

/// The one owner of an app's directory on the node, `apps/<app>/`:
///
/// ```text
/// releases/<hex>/   materialized releases          current       symlink to the live one
/// history.jsonl     every activation and failure   lock          who is activating
/// records.jsonl     signed records taken           sequences.json  highest promotion taken
/// pins, locations   one item per line              lock.stale    a dead agent's lock
///                                                  lock.guard    flocked while a lock is taken
/// logs/ run/ data/ cache/ files/ services/ maintenance   the app's own state (`AppPaths`)
/// ```
#[derive(Debug, Clone)]
pub struct AppDir {
    pub(super) dir: PathBuf,
}

/// The one-item-per-line files of an app.
#[derive(Debug, Clone, Copy)]
pub enum List {
    Pins,
    Locations,
    /// The locations an app had when `silver deactivate` took its last one: it serves nowhere
    /// until activated again, which gives them back.
    Deactivated,
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
    pub(super) fn current_temp(&self, instance: &str) -> PathBuf {
        self.dir.join(format!(".current-{instance}"))
    }

    pub fn history(&self) -> PathBuf {
        self.dir.join("history.jsonl")
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// The signed records of every activation the trust policy let through.
    pub fn records(&self) -> PathBuf {
        self.dir.join("records.jsonl")
    }

    /// The last fleet deploy's phase on this node (`FleetStatus`).
    pub fn fleet(&self) -> PathBuf {
        self.dir.join("fleet.json")
    }

    /// The highest promotion sequence taken, per environment.
    pub fn sequences(&self) -> PathBuf {
        self.dir.join("sequences.json")
    }

    pub fn lock_stale(&self) -> PathBuf {
        self.dir.join("lock.stale")
    }

    pub fn list(&self, list: List) -> PathBuf {
        self.dir.join(match list {
            List::Pins => "pins",
            List::Locations => "locations",
            List::Deactivated => "deactivated",
        })
    }

    /// The app's own state, as the runtime uses it.
    pub fn runtime(&self) -> silver_runtime::AppPaths {
        silver_runtime::AppPaths::new(self.dir.clone())
    }
}

impl Store {
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

    pub(super) fn materialize(&self, partial: &Path, manifest: &Manifest) -> Result<(), Error> {
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

    /// Takes `current` away (a fleet revert of an app's first release): the app serves
    /// nothing, as before it was deployed.
    pub fn unflip(&self, app: &AppName) -> Result<(), Error> {
        let dir = self.app(app);
        match fs::remove_file(dir.current()) {
            Ok(()) => sync_dir(dir.path()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&dir.current(), e)),
        }
    }

    // ---- history ----

    pub fn record(&self, app: &AppName, record: &Record) -> Result<(), Error> {
        append_line(&self.app(app).history(), record)
    }

    pub fn history(&self, app: &AppName) -> Result<Vec<Record>, Error> {
        read_lines(&self.app(app).history())
    }

    /// Every release of an app with its state, newest first.
    pub fn releases(&self, app: &AppName) -> Result<Vec<Release>, Error> {
        let history = self.history(app)?;
        let current = self.current(app)?;
        let previous = previous_good(&history, current.as_ref());
        let provenance = self.provenance(app)?;
        let mut ids: Vec<Id> = read_dir(&self.app(app).releases())?
            .into_iter()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| Id::parse(&format!("b3:{n}")))
            })
            .collect();
        // A failed release may never have been staged; a removed (gc'd) one is no longer listed.
        for r in &history {
            if latest(&history, &r.id).is_some_and(|x| !x.ok) && !ids.contains(&r.id) {
                ids.push(r.id);
            }
        }
        // Newest first: by the position of each release's latest record, then never-recorded ones.
        let position = |id: &Id| history.iter().rposition(|r| r.id == *id);
        ids.sort_by(|a, b| {
            position(b)
                .cmp(&position(a))
                .then_with(|| a.to_string().cmp(&b.to_string()))
        });
        Ok(ids
            .into_iter()
            .map(|id| {
                let last = latest(&history, &id);
                let state = if current == Some(id) {
                    ReleaseState::Active
                } else if previous == Some(id) {
                    ReleaseState::Previous
                } else if last.is_some_and(|r| !r.ok) {
                    ReleaseState::Failed
                } else {
                    ReleaseState::Staged
                };
                let (built_by, promoted_by) = provenance.get(&id).cloned().unwrap_or_default();
                Release {
                    built_by,
                    promoted_by,
                    config: last.and_then(|r| r.config),
                    time: last.map_or(0, |r| r.time),
                    who: last.map(|r| r.who.clone()).unwrap_or_default(),
                    reason: last.and_then(|r| r.reason.clone()),
                    id: id.to_string(),
                    state,
                }
            })
            .collect())
    }

    /// The release to go back to: the last one that was successfully made current before the
    /// current one.
    pub fn previous(&self, app: &AppName) -> Result<Option<Id>, Error> {
        let current = self.current(app)?;
        Ok(previous_good(&self.history(app)?, current.as_ref()))
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

    /// The locations a deactivated app had; empty for an app that is not deactivated.
    pub fn deactivated(&self, app: &AppName) -> Vec<String> {
        self.read_list(app, List::Deactivated)
    }

    pub fn set_deactivated(&self, app: &AppName, locations: &[String]) -> Result<(), Error> {
        self.write_list(app, List::Deactivated, locations)
    }

    /// Whether the app shows the maintenance page (`silver disable`).
    pub fn maintenance(&self, app: &AppName) -> bool {
        self.app(app).runtime().maintenance_flag().exists()
    }

    pub fn set_maintenance(&self, app: &AppName, on: bool) -> Result<(), Error> {
        let path = self.app(app).runtime().maintenance_flag();
        let done = if on {
            safefs::write_atomic(&path, b"", safefs::WriteOptions::PRIVATE)
        } else {
            fs::remove_file(&path).or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
        };
        done.map_err(|e| Error::io(&path, e))
    }

    pub(super) fn read_list(&self, app: &AppName, name: List) -> Vec<String> {
        let text = fs::read_to_string(self.app(app).list(name)).unwrap_or_default();
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// Rewrites a one-item-per-line file atomically.
    pub(super) fn write_list(
        &self,
        app: &AppName,
        name: List,
        items: &[String],
    ) -> Result<(), Error> {
        mkdir_p(self.app(app).path())?;
        let body: String = items.iter().map(|p| format!("{p}\n")).collect();
        let path = self.app(app).list(name);
        let options = safefs::WriteOptions::PRIVATE;
        safefs::write_atomic(&path, body.as_bytes(), options).map_err(|e| Error::io(&path, e))
    }

    // ---- locks ----

    /// Takes the app's activation lock, or says who holds it. A lock left by a dead or
    /// earlier agent is marked stale and taken over.
    pub fn lock(&self, app: &AppName, holder: &str) -> Result<AppLock, Error> {
        mkdir_p(self.app(app).path())?;
        let path = self.app(app).lock();
        // Taking, judging and marking a lock happen under one flock, released when `_guard`
        // drops. Blocks two races between agents' requests: a lock read between its creation
        // and its content's write looked empty, so stale, and was taken from a live holder;
        // and two takers of one stale lock each renamed away the lock the other had just made.
        let _guard = self.lock_guard(app)?;
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
                .mode(0o600)
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

    /// `lock.guard`, flocked: held only while a lock is taken, never across an activation.
    fn lock_guard(&self, app: &AppName) -> Result<fs::File, Error> {
        let path = self.app(app).dir.join("lock.guard");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io(&path, e.into()))?;
        Ok(file)
    }

    pub(super) fn read_lock(&self, app: &AppName) -> Option<LockInfo> {
        let text = fs::read(self.app(app).lock()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub(super) fn is_stale(&self, info: &LockInfo) -> bool {
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
    pub(super) fn mark_stale(&self, app: &AppName) -> Result<(), Error> {
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
}

/// The previous good release: walking successful activations backwards, the first id that
/// differs from `current` and whose latest attempt did not fail.
pub(super) fn previous_good(history: &[Record], current: Option<&Id>) -> Option<Id> {
    // A release whose latest attempt failed is not good any more, whatever it was before.
    history
        .iter()
        .rev()
        .filter(|r| r.ok)
        .map(|r| r.id)
        .find(|id| Some(id) != current && latest(history, id).is_some_and(|r| r.ok))
}

/// The latest record of one release.
fn latest<'h>(history: &'h [Record], id: &Id) -> Option<&'h Record> {
    history.iter().rev().find(|r| r.id == *id)
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

/// Appends one JSON line, durably (0600: an app's history is the agent's).
pub(super) fn append_line(path: &Path, value: &impl Serialize) -> Result<(), Error> {
    let mut line = serde_json::to_vec(value).expect("records serialize");
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(&line)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(path, e))
}

/// Reads JSON lines; a torn last line (a crash mid-append) is skipped, not fatal.
pub(super) fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, Error> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io(path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Threads of one agent take one app's lock over and over: never two at once, and never a
    /// take-over (a lock caught between its creation and its content once read as stale).
    #[test]
    fn one_holder_at_a_time_under_contention() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), Limits::default()).unwrap();
        let app: AppName = "hello".parse().unwrap();
        let (held, taken) = (AtomicBool::new(false), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for t in 0..4 {
                let (store, app, held, taken) = (&store, &app, &held, &taken);
                s.spawn(move || {
                    while taken.load(Ordering::SeqCst) < 400 {
                        let Ok(lock) = store.lock(app, &format!("t{t}")) else {
                            continue;
                        };
                        assert!(!held.swap(true, Ordering::SeqCst), "two holders at once");
                        taken.fetch_add(1, Ordering::SeqCst);
                        held.store(false, Ordering::SeqCst);
                        drop(lock);
                    }
                });
            }
        });
        assert!(
            !store.app(&app).lock_stale().exists(),
            "a live lock was taken over"
        );
    }
}
