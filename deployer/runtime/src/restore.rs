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

use silver_types::ServiceKind as Kind;

use crate::data::BackupInfo;
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
        .map(|k| (k, Some(dir.join(k.dump_file()))))
        .collect();
    run(d, &source, &staged)?;
    Ok(info)
}

/// Empties every service of the app, all or nothing.
pub fn clear(d: &AppData) -> Result<(), Error> {
    let staged: Vec<(Kind, Option<std::path::PathBuf>)> =
        d.data_kinds().into_iter().map(|k| (k, None)).collect();
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
    let Some(journal) = pending(d.tenant.paths) else {
        return Ok(None);
    };
    let kinds: Vec<Kind> = journal
        .services
        .iter()
        .filter_map(|s| d.kind_of_data(s))
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
    let path = d.tenant.paths.restore_outcome();
    let json = serde_json::to_vec_pretty(&outcome).expect("plain data");
    safefs::write_atomic(&path, &json, safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(&path, e))?;
    remove_journal(d)?;
    tracing::warn!(
        app = %d.tenant.app,
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
        services: kinds.iter().map(|k| k.data_name().to_string()).collect(),
        source: source.to_string(),
        started: crate::data::now_utc(),
    };
    write_journal(d, &journal)?;
    for (kind, dump) in staged {
        if let Err(e) = stage(d, *kind, dump.as_deref()) {
            discard_all(d, &kinds)?;
            remove_journal(d)?;
            return Err(refused_dump(kind.dump_file(), dump.is_some(), e));
        }
    }
    journal.phase = Phase::Switching;
    write_journal(d, &journal)?;
    // From here on the restore happens: a failure is retried by `recover` at the next start
    // (or before the next restore), and the error says so.
    switch_all(d, &kinds).map_err(|source| Error::RestoreUnfinished {
        app: d.tenant.app.clone(),
        source: Box::new(source),
    })?;
    remove_journal(d)
}

/// A database tool that refused a dump refused bad input: said as the backup's fault (422),
/// naming its file, not as the node's.
fn refused_dump(file: &str, dumped: bool, e: Error) -> Error {
    match e {
        Error::DatabaseTool { program, message } if dumped => Error::BadBackup {
            path: file.into(),
            why: crate::error::BackupProblem::Refused {
                program,
                said: message,
            },
        },
        e => e,
    }
}

fn stage(d: &AppData, kind: Kind, dump: Option<&Path>) -> Result<(), Error> {
    d.service(kind).stage(&d.tenant, dump)
}

fn switch(d: &AppData, kind: Kind) -> Result<(), Error> {
    d.service(kind).switch(&d.tenant)
}

fn discard(d: &AppData, kind: Kind) -> Result<(), Error> {
    d.service(kind).discard(&d.tenant)
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
    let path = d.tenant.paths.restore_journal();
    let json = serde_json::to_vec_pretty(journal).expect("plain data");
    safefs::write_atomic(&path, &json, safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(&path, e))
}

fn remove_journal(d: &AppData) -> Result<(), Error> {
    let path = d.tenant.paths.restore_journal();
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
        _ => {
            let dir = d.tenant.paths.dir();
            safefs::sync_dir(dir).map_err(|e| Error::io(dir, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{dump, MANIFEST};
    use crate::paths::AppPaths;
    use silver_types::AppName;
    use std::path::Path;

    static REGISTRY: std::sync::LazyLock<crate::services::Registry> =
        std::sync::LazyLock::new(|| crate::services::Registry::new(&Default::default()));

    fn app_data<'a>(
        app: &'a AppName,
        paths: &'a AppPaths,
        services: &'a [(Kind, String)],
    ) -> AppData<'a> {
        let tenant = crate::services::Tenant {
            node: "0a1b2c3d",
            app,
            paths,
            user: None,
        };
        AppData {
            tenant,
            services,
            registry: &REGISTRY,
        }
    }

    fn services(names: &[&str]) -> Vec<(Kind, String)> {
        names
            .iter()
            .map(|n| (Kind::parse(n).unwrap(), String::new()))
            .collect()
    }

    #[test]
    fn files_round_trip_and_the_same_data_dumps_to_the_same_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let app = AppName::parse("blog").unwrap();
        let paths = AppPaths::new(tmp.path().join("blog"));
        let names = services(&["files", "writable_root"]);
        let d = app_data(&app, &paths, &names);
        for (path, body) in [("b.txt", "b"), ("a/z.txt", "z"), ("a/b/c.bin", "c")] {
            let file = paths.files().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, body).unwrap();
        }
        std::os::unix::fs::symlink("b.txt", paths.files().join("link")).unwrap();
        std::fs::create_dir_all(paths.writable_root().join("example.com")).unwrap();
        std::fs::write(paths.writable_root().join("example.com/robots.txt"), "no").unwrap();
        let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
        for dir in [&one, &two] {
            std::fs::create_dir(dir).unwrap();
            let info = dump(&d, "b3:aa", "2026-11-30T00:00:00Z", dir).unwrap();
            assert_eq!(info.services, ["files", "writable_root"]);
        }
        for file in ["files.tar", "writable_root.tar", MANIFEST] {
            assert_eq!(
                std::fs::read(one.join(file)).unwrap(),
                std::fs::read(two.join(file)).unwrap(),
                "{file}"
            );
        }
        // Onto another app, whose data is replaced.
        let other = AppName::parse("shop").unwrap();
        let other_paths = AppPaths::new(tmp.path().join("shop"));
        let d2 = app_data(&other, &other_paths, &names);
        std::fs::create_dir_all(other_paths.files()).unwrap();
        std::fs::write(other_paths.files().join("stale"), "x").unwrap();
        restore(&d2, &one).unwrap();
        assert!(!other_paths.files().join("stale").exists());
        assert_eq!(
            std::fs::read_to_string(other_paths.files().join("a/b/c.bin")).unwrap(),
            "c"
        );
        assert_eq!(
            std::fs::read_link(other_paths.files().join("link")).unwrap(),
            Path::new("b.txt")
        );
        assert_eq!(
            std::fs::read_to_string(other_paths.writable_root().join("example.com/robots.txt"))
                .unwrap(),
            "no"
        );
        clear(&d2).unwrap();
        assert_eq!(std::fs::read_dir(other_paths.files()).unwrap().count(), 0);
        // An app without the service cannot take the backup, and nothing changed.
        let only_files = services(&["files"]);
        let d3 = app_data(&other, &other_paths, &only_files);
        let err = restore(&d3, &one).unwrap_err();
        assert!(err.to_string().contains("service `writable_root`"), "{err}");
    }

    /// A tar as a backup's `files.tar`: (name, kind, mode, link target).
    fn check(entries: &[(&str, tar::EntryType, u32, &str)], expected: &str) {
        let tmp = tempfile::tempdir().unwrap();
        let app = AppName::parse("blog").unwrap();
        let paths = AppPaths::new(tmp.path().join("blog"));
        let names = services(&["files"]);
        let d = app_data(&app, &paths, &names);
        std::fs::create_dir_all(paths.files()).unwrap();
        std::fs::write(paths.files().join("kept"), "old").unwrap();
        let backup = tmp.path().join("backup");
        std::fs::create_dir(&backup).unwrap();
        let info = BackupInfo {
            format: 1,
            app: app.clone(),
            release: "b3:aa".into(),
            created: "2026-11-30T00:00:00Z".into(),
            services: vec!["files".into()],
        };
        std::fs::write(backup.join(MANIFEST), serde_json::to_vec(&info).unwrap()).unwrap();
        let mut tar = tar::Builder::new(std::fs::File::create(backup.join("files.tar")).unwrap());
        for (name, kind, mode, target) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_size(if *kind == tar::EntryType::Regular {
                1
            } else {
                0
            });
            // Raw names: the builder's own checks would refuse the hostile ones.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            if !target.is_empty() {
                h.set_link_name(target).unwrap();
            }
            h.set_cksum();
            let body: &[u8] = if *kind == tar::EntryType::Regular {
                b"x"
            } else {
                b""
            };
            tar.append(&h, body).unwrap();
        }
        tar.finish().unwrap();
        drop(tar);
        let got = restore(&d, &backup)
            .map(|_| ())
            .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)));
        match got {
            Ok(()) => assert_eq!(expected, "ok"),
            Err(e) => {
                assert!(e.contains(expected), "{e}");
                // Nothing was lost: the old files are whole.
                assert_eq!(
                    std::fs::read_to_string(paths.files().join("kept")).unwrap(),
                    "old"
                );
            }
        }
        assert!(!tmp.path().join("blog/.files.restoring").exists());
    }

    #[test]
    fn hostile_backups_are_refused_and_leave_the_data_whole() {
        use tar::EntryType::*;
        check(&[("a.txt", Regular, 0o644, "")], "ok");
        // A device node would hand the app a raw disk.
        check(&[("sda", Block, 0o666, "")], "is a Block");
        // A hard link ties a restored name to a file outside the tree.
        check(&[("shadow", Link, 0o644, "/etc/shadow")], "is a Link");
        // Set-id bits: the app runs the file as someone else.
        check(&[("su", Regular, 0o4755, "")], "set-id");
        // Climbing out by name, or through a link the archive made first.
        check(&[("../escape", Regular, 0o644, "")], "points outside");
        check(
            &[
                ("etc", Symlink, 0o777, "/etc"),
                ("etc/passwd", Regular, 0o644, ""),
            ],
            "unpack outside",
        );
        check(&[("/abs", Regular, 0o644, "")], "ok");
    }
}
