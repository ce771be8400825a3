//! An app's service data as portable files (design §6): what `silver backup` takes, `restore`
//! puts back, `clear` wipes, and the checkpoint before every `update_fetch` is made of.
//!
//! A backup is a directory of one file per service plus `backup.json` (app, release, time):
//! - `files.tar`, `writable_root.tar`: the service's directory, entries sorted, owners dropped;
//! - `postgresql.sql`: plain SQL that `psql` replays: the schema from `pg_dump`, then every
//!   table's rows as `COPY` blocks, tables sorted by name and rows by their text, then the
//!   sequences, then indexes and constraints. The same data always dumps to the same bytes, so
//!   backups diff well and a checkpoint that changed nothing is seen to be equal.
//!
//! Dumps and restores of a database run as the app's own role, with its password: they can
//! reach only what the app itself can, whichever node or app the backup came from.

use std::path::Path;

use crate::error::{BackupProblem, Error};
use crate::paths::AppPaths;
use silver_types::ServiceKind;

/// The file that says what a backup is.
pub const MANIFEST: &str = "backup.json";

pub use silver_wire::api::BackupInfo;

pub use crate::services::dumps::{private_dir, MAX_LINE_BYTES};
pub(crate) use crate::services::files::remove_tree;
pub use crate::services::files::untar_dir;
pub use crate::services::AppData;

/// Every checkpoint an app has, oldest first.
pub fn checkpoints(paths: &AppPaths) -> Vec<BackupInfo> {
    let mut all: Vec<BackupInfo> = std::fs::read_dir(paths.checkpoints())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| read_info(&e.path()).ok())
        .collect();
    all.sort_by(|a, b| a.created.cmp(&b.created));
    all
}

pub(crate) fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    silver_wire::api::rfc3339(secs)
}

/// Writes every service's dump and `backup.json` into `dir` (made, empty, by the caller).
pub fn dump(d: &AppData, release: &str, created: &str, dir: &Path) -> Result<BackupInfo, Error> {
    let kinds = d.data_kinds();
    for kind in &kinds {
        let service = d.service(*kind);
        service.dump(&d.tenant, &dir.join(kind.dump_file()))?;
    }
    let info = BackupInfo {
        format: 1,
        app: d.tenant.app.clone(),
        release: release.to_string(),
        created: created.to_string(),
        services: kinds.iter().map(|k| k.data_name().to_string()).collect(),
    };
    let path = dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(&info).expect("plain data");
    safefs::write_atomic(&path, &json, safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(&path, e))?;
    Ok(info)
}

/// Reads and checks a backup's `backup.json`.
pub fn read_info(dir: &Path) -> Result<BackupInfo, Error> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let info: BackupInfo = serde_json::from_slice(&text).map_err(|e| Error::BadBackup {
        path: path.clone(),
        why: BackupProblem::Manifest(silver_types::Said::new(&e.to_string(), &[])),
    })?;
    if info.format != 1 {
        return Err(Error::BadBackup {
            path,
            why: BackupProblem::Newer {
                format: info.format,
            },
        });
    }
    Ok(info)
}

/// The kinds of data `info` holds, each one the app has and each dump a plain file no one
/// else may write: a link in a backup directory would make the agent (root) read whatever it
/// points to, such as another app's checkpoint, and restore it as this app's.
pub(crate) fn kinds_of_backup(
    d: &AppData,
    info: &BackupInfo,
    dir: &Path,
) -> Result<Vec<ServiceKind>, Error> {
    let mut kinds = Vec::new();
    for service in &info.services {
        let kind = d
            .kind_of_data(service)
            .ok_or_else(|| Error::BackupServiceMissing {
                app: d.tenant.app.clone(),
                service: service.clone(),
            })?;
        let file = dir.join(kind.dump_file());
        crate::services::dumps::open_dump(&file).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::BadBackup {
                    path: file.clone(),
                    why: BackupProblem::Missing,
                }
            }
            e => e,
        })?;
        kinds.push(kind);
    }
    Ok(kinds)
}
