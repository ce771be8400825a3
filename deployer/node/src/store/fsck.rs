//! `fsck`: every object re-hashed, every release checked against its manifest.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use packer::{Hash, Id, Kind, Manifest};
use serde::Serialize;

use super::*;
use crate::error::Error;

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
    /// `app: phase since time (source)` for apps whose data is mid-restore: a crash stopped a
    /// restore, which the agent finishes or undoes when it starts.
    pub mid_restore: Vec<String>,
}

impl Fsck {
    pub fn is_clean(&self) -> bool {
        self.corrupt_objects.is_empty()
            && self.bad_artifacts.is_empty()
            && self.bad_releases.is_empty()
            && self.bad_current.is_empty()
            && self.mid_restore.is_empty()
    }
}

/// Re-hashes every object, checks every artifact and every release tree against its
/// manifest, and every app's `current`. Reads only.
pub fn fsck(store: &Store) -> Result<Fsck, Error> {
    let mut report = Fsck::default();
    for shard in read_dir(&store.layout.objects())? {
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
    for artifact in read_dir(&store.layout.artifacts())? {
        let name = artifact.file_name().to_string_lossy().into_owned();
        if name.ends_with(".partial") {
            report.leftovers.push(artifact.path().display().to_string());
        } else if name.ends_with(".pending") {
            continue; // sent, waiting for its objects
        } else if let Some(problem) = artifact_problem(store, &name) {
            report.bad_artifacts.push(format!("{name}: {problem}"));
        }
    }
    for app in store.apps()? {
        if let Some(j) = silver_runtime::restore::pending(&store.app(&app).runtime()) {
            let then = match j.phase {
                silver_runtime::restore::Phase::Staging => "undone",
                silver_runtime::restore::Phase::Switching => "finished",
            };
            report.mid_restore.push(format!(
                "{app}: a restore ({}) of {} started {} is {:?}; the agent's next start leaves it {then}",
                j.source,
                j.services.join(", "),
                j.started,
                j.phase,
            ));
        }
        for release in read_dir(&store.app(&app).releases())? {
            let name = release.file_name().to_string_lossy().into_owned();
            if name.ends_with(".partial") {
                report.leftovers.push(release.path().display().to_string());
                continue;
            }
            report.releases_checked += 1;
            let problem = match Id::parse(&format!("b3:{name}")) {
                None => Some("not named by an artifact id".to_string()),
                Some(id) => match store.manifest(&id) {
                    Err(e) => Some(e.to_string()),
                    Ok(m) => check_tree(&release.path(), &m).err(),
                },
            };
            if let Some(problem) = problem {
                report.bad_releases.push(format!("{app} {name}: {problem}"));
            }
        }
        if let Some(id) = store.current(&app)? {
            let dir = store.release_dir(&app, &id);
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

/// Why `artifacts/<name>` is not a sound manifest of its name whose sizes match its objects.
fn artifact_problem(store: &Store, name: &str) -> Option<String> {
    let Some(id) = Id::parse(&format!("b3:{name}")) else {
        return Some("not named by an artifact id".into());
    };
    let manifest = match store.manifest(&id) {
        Ok(m) if m.id == id => m,
        Ok(m) => return Some(format!("its content is {}", m.id)),
        Err(e) => return Some(e.to_string()),
    };
    store.check_sizes(&manifest).err().map(|e| e.to_string())
}

/// Checks that `dir` holds exactly the manifest's entries, with their kinds, modes' exec bits,
/// targets and content.
pub(super) fn check_tree(dir: &Path, manifest: &Manifest) -> Result<(), String> {
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
