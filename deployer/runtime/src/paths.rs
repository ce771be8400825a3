//! Where an app's own state lives, outside its releases: the one place that knows the names
//! under an app's directory that the runtime uses (`logs/`, `run/`, `data/`, `cache/`, the
//! `files` service, service secrets, the maintenance flag). The node's `AppDir` hands one out;
//! `silver serve` makes one over its state directory.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPaths {
    dir: PathBuf,
}

impl AppPaths {
    pub fn new(dir: PathBuf) -> AppPaths {
        AppPaths { dir }
    }

    /// The app's directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Per-process logs, rotated (`<process>.log`); the app may write here too.
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    pub fn log(&self, process: &str) -> PathBuf {
        self.logs().join(format!("{process}.log"))
    }

    /// What the agent writes for the app's processes: the WSGI shim, `environment.json`.
    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// The app's working data, kept across releases.
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Bytecode and other caches the app may lose at any time.
    pub fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// `TEMP`: the app's temporary files, emptied on every update.
    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// `service.writable_root`: files the app writes and the front door serves publicly.
    pub fn writable_root(&self) -> PathBuf {
        self.dir.join("writable-root")
    }

    /// `service.files`: the app's private files.
    pub fn files(&self) -> PathBuf {
        self.dir.join("files")
    }

    /// Service credentials (0600), such as the database password.
    pub fn services(&self) -> PathBuf {
        self.dir.join("services")
    }

    /// The data checkpoints taken before each `update_fetch`, one directory per release label
    /// (agent-only, 0700: they are replayed as root's child, so the app must not edit them).
    pub fn checkpoints(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }

    pub fn checkpoint(&self, label: &str) -> PathBuf {
        self.checkpoints().join(label)
    }

    /// The journal of a restore in progress (`restore.rs`): present from the first change to the
    /// app's data until every service holds the restored state, so a crash is finished or undone.
    pub fn restore_journal(&self) -> PathBuf {
        self.dir.join("restore.json")
    }

    /// What the last restore the agent had to finish or undo after a crash came to.
    pub fn restore_outcome(&self) -> PathBuf {
        self.dir.join("restore-outcome.json")
    }

    /// Configuration directories uploaded with `silver update --config DIR`, one per content
    /// (`<id>/`), and `current`, naming the one the live release runs with.
    pub fn app_configs(&self) -> PathBuf {
        self.dir.join("app-config")
    }

    /// The record of each `[cron]` job's runs: the agent's, out of the app's reach.
    pub fn cron(&self) -> PathBuf {
        self.dir.join("cron")
    }

    /// The app's task queue (`tasks::store`): the agent's, out of the app's reach.
    pub fn tasks(&self) -> PathBuf {
        self.dir.join("tasks")
    }

    /// Present while the app shows the maintenance page (`silver disable`).
    pub fn maintenance_flag(&self) -> PathBuf {
        self.dir.join("maintenance")
    }
}
