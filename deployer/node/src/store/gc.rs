//! Retention (design §3): which releases, objects and artifacts a node may remove.

use std::collections::HashSet;
use std::fs;

use packer::{Hash, Id};

use super::*;
use crate::error::Error;
use silver_wire::api::{GcReport, ReleaseState};

/// Removes releases beyond `keep` per app (never the current, previous, last known-good or
/// pinned ones; failed releases do not count), then objects and artifacts nothing uses
/// (objects younger than `grace` are kept).
pub fn gc(store: &Store, keep: usize, grace: std::time::Duration) -> Result<GcReport, Error> {
    let mut report = GcReport::default();
    let mut live: HashSet<String> = HashSet::new();
    for app in store.apps()? {
        let pins: HashSet<String> = store.pins(&app).into_iter().collect();
        let releases = store.releases(&app)?;
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
            let dir = store.release_dir(&app, &id);
            if keep_this {
                live.insert(id.0.to_hex());
            } else if dir.exists() {
                remove_any(&dir)?;
                report.releases_removed.push(format!("{app} {}", r.id));
            }
            // A checkpoint goes with its release: it is the data that release migrated from.
            let checkpoint = store.app(&app).runtime().checkpoint(&id.short());
            if !keep_this && checkpoint.exists() {
                remove_any(&checkpoint)?;
            }
        }
    }
    let young = |entry: &fs::DirEntry| {
        entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().map_or(true, |age| age < grace))
    };
    for entry in read_dir(&store.layout.artifacts())? {
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
            if let Ok(m) = store.manifest(&id) {
                used.extend(m.entries.iter().filter_map(|e| e.kind.content_hash()));
            }
        }
    }
    for shard in read_dir(&store.layout.objects())? {
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
    // Manifest parts pulled from registries only spare a pull a few KB each: those no pull
    // used within the grace go (a pull marks what it reuses), so the cache stays bounded.
    for part in read_dir(&store.layout.registry_parts())? {
        if !young(&part) {
            remove_any(&part.path())?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_manifest_parts_go_once_no_pull_used_them_within_the_grace() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), packer::Limits::default()).unwrap();
        let parts = store.layout().registry_parts();
        fs::create_dir_all(&parts).unwrap();
        let (old, used) = (parts.join("a".repeat(64)), parts.join("b".repeat(64)));
        fs::write(&old, b"old").unwrap();
        fs::write(&used, b"used").unwrap();
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        gc(&store, 5, std::time::Duration::from_secs(3600)).unwrap();
        assert!(!old.exists() && used.exists());
    }
}
