//! Restores that are all or nothing across every service (design §5): `silver restore`,
//! `silver clear`, and the checkpoint put back after a failed `update_fetch`.
//!
//! A restore runs in two phases, with a journal (`restore.json`, written durably) between them:
//! 1. **Staging.** Each service builds the new state beside the live one: a PostgreSQL database
//!    `<identity>-restore`, a MariaDB database of that name (filled by a user that can reach
//!    nothing else), Redis keys under `<identity>-restore:`, a CouchDB database, a directory
//!    `.files.restoring`. The live data is not touched, so a dump that fails halfway, or a
//!    refused one, changes nothing: the staged copies are dropped.
//! 2. **Switching.** Once every service has staged, the journal says so; that write is the
//!    commit point. Each service then swaps its staged state in (a rename in one transaction,
//!    one `RENAME TABLE`, one Lua script, a rename of a directory) and drops the old one. Each
//!    swap can run again and does nothing twice: a staged copy that is gone was swapped in.
//!
//! A crash anywhere is repaired by [`recover`] when the agent starts, before the app does: a
//! journal in staging is undone, one in switching is finished, and either is said in the log
//! and in `restore-outcome.json`, which `silver checkpoints` shows. Credentials are provisioned
//! again after every restore, so a dump that changed the app's password changes nothing.

use std::path::Path;

use crate::data::{BackupInfo, Kind};
use crate::error::Error;
use crate::services::AppData;

pub use silver_wire::api::{
    RestoreJournal as Journal, RestoreOutcome as Outcome, RestorePhase as Phase,
};

/// Replaces every service of the backup in `dir` with its data, all or nothing.
pub fn restore(d: &AppData, dir: &Path) -> Result<BackupInfo, Error> {
    let info = crate::data::read_info(dir)?;
    let kinds = crate::data::kinds_of_backup(d, &info, dir)?;
    let source = format!("backup of `{}` taken {}", info.app, info.created);
    let staged: Vec<(Kind, Option<std::path::PathBuf>)> = kinds
        .into_iter()
        .map(|k| (k, Some(dir.join(k.file()))))
        .collect();
    run(d, &source, &staged)?;
    Ok(info)
}

/// Empties every service of the app, all or nothing.
pub fn clear(d: &AppData) -> Result<(), Error> {
    let staged: Vec<(Kind, Option<std::path::PathBuf>)> =
        d.kinds().into_iter().map(|k| (k, None)).collect();
    run(d, "clear", &staged)
}

/// The restore in progress for the app, if a crash left one (or one runs now).
pub fn pending(paths: &crate::AppPaths) -> Option<Journal> {
    let text = std::fs::read(paths.restore_journal()).ok()?;
    serde_json::from_slice(&text).ok()
}

/// What the last recovered restore came to, if any.
pub fn last_outcome(paths: &crate::AppPaths) -> Option<Outcome> {
    let text = std::fs::read(paths.restore_outcome()).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Finishes or undoes a restore a crash interrupted; None when there was none.
pub fn recover(d: &AppData) -> Result<Option<Outcome>, Error> {
    let Some(journal) = pending(d.paths) else {
        return Ok(None);
    };
    let kinds: Vec<Kind> = journal
        .services
        .iter()
        .filter_map(|s| Kind::of(s))
        .collect();
    let outcome = match journal.phase {
        Phase::Staging => {
            discard_all(d, &kinds)?;
            "undone"
        }
        Phase::Switching => {
            switch_all(d, &kinds)?;
            "finished"
        }
    };
    let outcome = Outcome {
        outcome: outcome.into(),
        journal,
        recovered: crate::data::now_utc(),
    };
    let path = d.paths.restore_outcome();
    let json = serde_json::to_vec_pretty(&outcome).expect("plain data");
    safefs::write_atomic(&path, &json, safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(&path, e))?;
    remove_journal(d)?;
    tracing::warn!(
        app = %d.app,
        outcome = %outcome.outcome,
        source = %outcome.journal.source,
        started = %outcome.journal.started,
        "a restore was interrupted by a crash: every service now holds the data of one side"
    );
    Ok(Some(outcome))
}

fn run(
    d: &AppData,
    source: &str,
    staged: &[(Kind, Option<std::path::PathBuf>)],
) -> Result<(), Error> {
    // A restore a crash left behind is settled first: two journals never mix.
    recover(d)?;
    let kinds: Vec<Kind> = staged.iter().map(|(k, _)| *k).collect();
    let mut journal = Journal {
        phase: Phase::Staging,
        services: kinds.iter().map(|k| k.name().to_string()).collect(),
        source: source.to_string(),
        started: crate::data::now_utc(),
    };
    write_journal(d, &journal)?;
    for (kind, dump) in staged {
        if let Err(e) = stage(d, *kind, dump.as_deref()) {
            discard_all(d, &kinds)?;
            remove_journal(d)?;
            return Err(refused_dump(*kind, dump.is_some(), e));
        }
    }
    journal.phase = Phase::Switching;
    write_journal(d, &journal)?;
    // From here on the restore happens: a failure is retried by `recover` at the next start.
    switch_all(d, &kinds)?;
    remove_journal(d)
}

/// A database tool that refused a dump refused bad input: said as the backup's fault (422),
/// naming its file, not as the node's.
fn refused_dump(kind: Kind, dumped: bool, e: Error) -> Error {
    match e {
        Error::DatabaseTool { program, message } if dumped => Error::BadBackup {
            path: kind.file().into(),
            why: format!("`{program}` refused it: {message}"),
        },
        e => e,
    }
}

fn stage(d: &AppData, kind: Kind, dump: Option<&Path>) -> Result<(), Error> {
    match kind {
        Kind::Files => crate::data::dir_stage(&d.paths.files(), d.user, dump),
        Kind::WritableRoot => crate::data::dir_stage(&d.paths.writable_root(), d.user, dump),
        Kind::Postgresql => crate::data::pg_stage(d, dump),
        Kind::Mysql => crate::mysql::stage(d, dump),
        Kind::Couchdb => crate::couchdb::stage(d, dump),
        Kind::Redis => crate::redis::stage(d, dump),
    }
}

fn switch(d: &AppData, kind: Kind) -> Result<(), Error> {
    match kind {
        Kind::Files => crate::data::dir_switch(&d.paths.files()),
        Kind::WritableRoot => crate::data::dir_switch(&d.paths.writable_root()),
        Kind::Postgresql => crate::data::pg_switch(d),
        Kind::Mysql => crate::mysql::switch(d),
        Kind::Couchdb => crate::couchdb::switch(d),
        Kind::Redis => crate::redis::switch(d),
    }
}

fn discard(d: &AppData, kind: Kind) -> Result<(), Error> {
    match kind {
        Kind::Files => crate::data::dir_discard(&d.paths.files()),
        Kind::WritableRoot => crate::data::dir_discard(&d.paths.writable_root()),
        Kind::Postgresql => crate::data::pg_discard(d),
        Kind::Mysql => crate::mysql::discard(d),
        Kind::Couchdb => crate::couchdb::discard(d),
        Kind::Redis => crate::redis::discard(d),
    }
}

/// Swaps every staged copy in, then provisions the credentials again: a dump may have changed
/// the app's password (`ALTER ROLE … PASSWORD`, `SET PASSWORD`, its CouchDB user document).
fn switch_all(d: &AppData, kinds: &[Kind]) -> Result<(), Error> {
    for kind in kinds {
        switch(d, *kind)?;
    }
    crate::services::provision(d).map(|_| ())
}

fn discard_all(d: &AppData, kinds: &[Kind]) -> Result<(), Error> {
    for kind in kinds {
        discard(d, *kind)?;
    }
    Ok(())
}

fn write_journal(d: &AppData, journal: &Journal) -> Result<(), Error> {
    let path = d.paths.restore_journal();
    let json = serde_json::to_vec_pretty(journal).expect("plain data");
    safefs::write_atomic(&path, &json, safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(&path, e))
}

fn remove_journal(d: &AppData) -> Result<(), Error> {
    let path = d.paths.restore_journal();
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
        _ => {
            let dir = d.paths.dir();
            safefs::sync_dir(dir).map_err(|e| Error::io(dir, e))
        }
    }
}
