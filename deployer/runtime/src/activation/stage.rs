//! Staging a candidate: the app's directories and the files silver puts there. (The services
//! it names are provisioned through `crate::services`; the runtime does that, as it holds the
//! registry.)

use std::path::Path;

use super::candidate::Candidate;
use crate::error::Error;
use crate::launch;
use crate::paths::AppPaths;
use crate::supervise::AppUser;

/// Makes the app's own directories (its user's alone), empties `TEMP` before an update, and
/// writes the modules every release runs with into `run/`. Blocking: run it off the async
/// threads.
pub fn prepare_dirs(c: &Candidate) -> Result<(), Error> {
    if let Some(user) = &c.user {
        check_reachable(&c.dir, user)?;
    }
    let p = &c.paths;
    if c.update_fetch {
        empty_dir(&p.tmp())?;
    }
    for dir in [p.logs(), p.data(), p.run(), p.cache(), p.tmp()] {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // The app's own state: its user alone may enter (an earlier agent may have made
        // these for a shared user, so ownership is set every time).
        if let Some(user) = &c.user {
            crate::supervise::own_private_dir(&dir, user)?;
        }
    }
    let shim = format!("{}.py", launch::WSGI_SHIM_MODULE);
    let config = format!("{}.py", launch::GUNICORN_CONFIG_MODULE);
    for (name, content) in [
        (shim.as_str(), launch::WSGI_SHIM),
        (config.as_str(), launch::GUNICORN_CONFIG),
        ("sitecustomize.py", launch::SITE_CUSTOMIZE),
        ("silversupport.py", launch::SILVERSUPPORT),
    ] {
        let path = c.paths.run().join(name);
        // Replaced by rename, never written through: `run/` is the app user's, who could
        // have put a symlink here to make the agent (root) overwrite another file.
        let options = safefs::WriteOptions {
            mode: 0o644,
            durability: safefs::Durability::Atomic,
        };
        safefs::write_atomic(&path, content.as_bytes(), options)
            .map_err(|e| Error::io(&path, e))?;
    }
    write_app_secret(p, c.user.as_ref())
}

/// Empties the app's `TEMP` (Silver Lining emptied it on every update). `remove_dir_all` never
/// follows a symlink the app left there, so nothing outside it goes.
fn empty_dir(dir: &Path) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        // The running release's processes make and unlink files there too (gunicorn's worker
        // heartbeats): one gone already is what emptying wants.
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&path, e)),
            _ => {}
        }
    }
    Ok(())
}

/// The app's secret for `silversupport.secret.get_secret()`: made once in the agent's own
/// `services/` (the app cannot change it there), and copied to `run/silver-secret` (0600, the
/// app's user's), beside the module that reads it.
fn write_app_secret(p: &AppPaths, user: Option<&AppUser>) -> Result<(), Error> {
    let master = p.services().join("app-secret");
    std::fs::create_dir_all(p.services()).map_err(|e| Error::io(&p.services(), e))?;
    let secret = safefs::load_or_create_secret(&master, 24).map_err(|e| Error::io(&master, e))?;
    let copy = p.run().join("silver-secret");
    safefs::write_atomic(&copy, secret.as_bytes(), safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(&copy, e))?;
    if let Some(user) = user {
        std::os::unix::fs::chown(&copy, Some(user.uid), Some(user.gid))
            .map_err(|e| Error::io(&copy, e))?;
    }
    Ok(())
}

/// Apps run as an unprivileged user, who must be able to walk down to the release.
fn check_reachable(dir: &Path, user: &AppUser) -> Result<(), Error> {
    match crate::supervise::first_blocked(dir, user) {
        Ok(None) => Ok(()),
        Ok(Some((dir, mode))) => Err(Error::Unreachable {
            user: user.name.clone(),
            dir,
            mode,
        }),
        Err(e) => Err(Error::io(dir, e)),
    }
}
