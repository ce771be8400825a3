//! An app's task queue on the node's disk: one file per task, written durably before the app's
//! call returns, in the agent's own `apps/APP/tasks/` (0700: the app cannot read another app's
//! tasks, nor edit its own behind the queue's back).
//!
//! ```text
//! tasks/queue/ID   a task to run: one line of JSON (its header), then its body
//! tasks/dead/ID    a task that used up its attempts, in the same form
//! tasks/keys/HASH  an idempotency key's task: its id and when it was added
//! ```
//!
//! A task is done when its file goes. That unlink is not synced: after a crash a task that ran
//! may run again, which is the at-least-once delivery the queue promises.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use silver_types::task::TaskId;

/// What the queue knows of a task besides its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub created: DateTime<Utc>,
    pub due: DateTime<Utc>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub body_bytes: u64,
}

/// Which of the queue's directories a task is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shelf {
    Queue,
    Dead,
}

/// The queue's directory.
#[derive(Debug, Clone)]
pub struct Dir {
    root: PathBuf,
}

/// What was found on disk when the queue opened.
#[derive(Default)]
pub struct Loaded {
    pub queued: Vec<(TaskId, Header)>,
    pub dead: Vec<(TaskId, Header)>,
    pub keys: Vec<(String, TaskId, DateTime<Utc>)>,
    /// Files that could not be read as tasks, moved aside (`*.unreadable`) and named here.
    pub unreadable: Vec<PathBuf>,
}

impl Dir {
    /// Opens (making it, agent-only) the queue under `root`.
    pub fn open(root: &Path) -> std::io::Result<Dir> {
        for dir in [
            root.to_path_buf(),
            root.join("queue"),
            root.join("dead"),
            root.join("keys"),
        ] {
            safefs::ensure_private_dir(&dir)?;
        }
        Ok(Dir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes a task durably: once this returns it survives a crash or a power cut.
    pub fn put(
        &self,
        shelf: Shelf,
        id: &TaskId,
        header: &Header,
        body: &[u8],
    ) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(header)?;
        bytes.push(b'\n');
        bytes.extend_from_slice(body);
        let options = safefs::WriteOptions {
            mode: 0o600,
            durability: safefs::Durability::Durable,
        };
        safefs::write_atomic(&self.path(shelf, id), &bytes, options)
    }

    /// A task's header and body.
    pub fn get(&self, shelf: Shelf, id: &TaskId) -> std::io::Result<(Header, Vec<u8>)> {
        let path = self.path(shelf, id);
        let bytes = std::fs::read(&path)?;
        split(&bytes).ok_or_else(|| unreadable(&path))
    }

    /// Removes a task (done or dropped). Not synced: see the module's note.
    pub fn remove(&self, shelf: Shelf, id: &TaskId) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(shelf, id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Records an idempotency key's task, durably.
    pub fn put_key(&self, key: &str, id: &TaskId, at: DateTime<Utc>) -> std::io::Result<()> {
        let record = serde_json::to_vec(&KeyRecord {
            key: key.into(),
            id: id.clone(),
            at,
        })?;
        let options = safefs::WriteOptions {
            mode: 0o600,
            durability: safefs::Durability::Durable,
        };
        safefs::write_atomic(&self.key_path(key), &record, options)
    }

    pub fn remove_key(&self, key: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.key_path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Everything on disk. A file that is not a task (a crash cannot make one: every write is
    /// a rename, but a disk can) is moved aside and reported, never run and never dropped.
    pub fn load(&self) -> std::io::Result<Loaded> {
        let mut loaded = Loaded::default();
        for (shelf, dir) in [(Shelf::Queue, "queue"), (Shelf::Dead, "dead")] {
            for entry in std::fs::read_dir(self.root.join(dir))? {
                let path = entry?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let Ok(id) = TaskId::parse(name) else {
                    // A temporary file of a write the crash cut short, or one moved aside.
                    if name.starts_with(".silver-") {
                        let _ = std::fs::remove_file(&path);
                    }
                    continue;
                };
                match std::fs::read(&path).ok().as_deref().and_then(split) {
                    Some((header, _)) if shelf == Shelf::Queue => loaded.queued.push((id, header)),
                    Some((header, _)) => loaded.dead.push((id, header)),
                    None => {
                        let aside = path.with_extension("unreadable");
                        std::fs::rename(&path, &aside)?;
                        loaded.unreadable.push(aside);
                    }
                }
            }
        }
        for entry in std::fs::read_dir(self.root.join("keys"))? {
            let path = entry?.path();
            let record = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<KeyRecord>(&b).ok());
            match record {
                Some(r) => loaded.keys.push((r.key, r.id, r.at)),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(loaded)
    }

    fn path(&self, shelf: Shelf, id: &TaskId) -> PathBuf {
        let dir = match shelf {
            Shelf::Queue => "queue",
            Shelf::Dead => "dead",
        };
        self.root.join(dir).join(id.as_str())
    }

    /// A key's file is named by its hash: keys are the app's text, file names must be safe.
    fn key_path(&self, key: &str) -> PathBuf {
        let hash = blake3::hash(key.as_bytes()).to_hex();
        self.root.join("keys").join(&hash[..32])
    }
}

#[derive(Serialize, Deserialize)]
struct KeyRecord {
    key: String,
    id: TaskId,
    at: DateTime<Utc>,
}

fn split(bytes: &[u8]) -> Option<(Header, Vec<u8>)> {
    let end = bytes.iter().position(|b| *b == b'\n')?;
    let header: Header = serde_json::from_slice(&bytes[..end]).ok()?;
    let body = bytes[end + 1..].to_vec();
    (body.len() as u64 == header.body_bytes).then_some((header, body))
}

fn unreadable(path: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{} is not a task the queue wrote", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(body: &[u8]) -> Header {
        Header {
            method: "POST".into(),
            path: "/t?x=1".into(),
            key: Some("k".into()),
            content_type: Some("application/json".into()),
            created: Utc::now(),
            due: Utc::now(),
            attempts: 2,
            last_error: Some("500".into()),
            body_bytes: body.len() as u64,
        }
    }

    #[test]
    fn a_task_round_trips_with_any_body() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(&tmp.path().join("tasks")).unwrap();
        let id = TaskId::new(Utc::now(), "abcdef012345");
        let body = b"line one\n\x00\xffbinary\n".to_vec();
        let written = header(&body);
        dir.put(Shelf::Queue, &id, &written, &body).unwrap();
        let (got, got_body) = dir.get(Shelf::Queue, &id).unwrap();
        assert_eq!((got, got_body), (written, body.clone()));
        let loaded = dir.load().unwrap();
        assert_eq!(loaded.queued.len(), 1);
        dir.remove(Shelf::Queue, &id).unwrap();
        dir.remove(Shelf::Queue, &id).unwrap(); // twice is fine: done is done
        assert!(dir.load().unwrap().queued.is_empty());
    }

    /// Hostile or damaged files in the queue: a truncated task, garbage, a leftover temporary
    /// file. None is run, none is lost: damaged tasks are moved aside and named.
    #[test]
    fn damaged_files_are_set_aside_not_run() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(&tmp.path().join("tasks")).unwrap();
        let id = TaskId::new(Utc::now(), "000000000001");
        let body = b"0123456789";
        dir.put(Shelf::Queue, &id, &header(body), body).unwrap();
        let path = dir.path(Shelf::Queue, &id);
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 3]).unwrap(); // truncated
        let other = TaskId::new(Utc::now(), "000000000002");
        std::fs::write(dir.path(Shelf::Queue, &other), b"\xff\xfe not json\n").unwrap();
        std::fs::write(tmp.path().join("tasks/queue/.silver-XYZ"), b"half").unwrap();
        let loaded = dir.load().unwrap();
        assert!(loaded.queued.is_empty());
        assert_eq!(loaded.unreadable.len(), 2);
        assert!(loaded.unreadable.iter().all(|p| p.exists()));
        assert!(!tmp.path().join("tasks/queue/.silver-XYZ").exists());
    }
}
