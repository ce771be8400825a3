//! `service.files` and `service.writable_root`: a directory of the app's own, outside its
//! releases and kept across them (`CONFIG_FILES`, `CONFIG_WRITABLE_ROOT`). A backup holds it as
//! a tar: entries sorted, owners dropped, times and modes kept.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::service::{Service, Tenant};
use crate::error::{BackupProblem, Error};
use crate::supervise::AppUser;

/// Which of the app's directories.
#[derive(Debug, Clone, Copy)]
pub enum Dir {
    Files,
    WritableRoot,
}

impl Dir {
    fn path(self, t: &Tenant) -> PathBuf {
        match self {
            Dir::Files => t.paths.files(),
            Dir::WritableRoot => t.paths.writable_root(),
        }
    }
}

impl Service for Dir {
    fn provision(&self, t: &Tenant) -> Result<Vec<(String, String)>, Error> {
        let var = match self {
            Dir::Files => "CONFIG_FILES",
            Dir::WritableRoot => "CONFIG_WRITABLE_ROOT",
        };
        Ok(vec![(var.into(), own_dir(self.path(t), t.user)?)])
    }
    fn dump(&self, t: &Tenant, out: &Path) -> Result<(), Error> {
        tar_dir(&self.path(t), out)
    }
    fn stage(&self, t: &Tenant, dump: Option<&Path>) -> Result<(), Error> {
        dir_stage(&self.path(t), t.user, dump)
    }
    fn switch(&self, t: &Tenant) -> Result<(), Error> {
        dir_switch(&self.path(t))
    }
    fn discard(&self, t: &Tenant) -> Result<(), Error> {
        dir_discard(&self.path(t))
    }
}

/// A directory of the app's own (`files`, `writable_root`), kept across releases.
fn own_dir(dir: std::path::PathBuf, user: Option<&AppUser>) -> Result<String, Error> {
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    if let Some(user) = user {
        crate::supervise::own_private_dir(&dir, user)?;
    }
    Ok(dir.display().to_string())
}

/// Writes `src` as a tar: entries in name order, owners dropped, times and modes kept. Files
/// are opened without following links: the app owns the tree and could swap a file for a link
/// to a root-only file between the listing and the read (a backup that leaks `/etc/shadow`).
pub fn tar_dir(src: &Path, out: &Path) -> Result<(), Error> {
    let file = safefs::create_private(out).map_err(|e| Error::io(out, e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    if src.is_dir() {
        for entry in walkdir::WalkDir::new(src)
            .min_depth(1)
            .sort_by_file_name()
            .follow_links(false)
        {
            let entry = entry.map_err(|e| Error::io(src, e.into()))?;
            append(&mut tar, src, entry.path())?;
        }
    }
    tar.into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(out, e))
}

fn append<W: Write>(tar: &mut tar::Builder<W>, root: &Path, path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let io = |e| Error::io(path, e);
    let name = path.strip_prefix(root).expect("walked under root");
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
    header.set_mtime(meta.mtime().max(0) as u64);
    let kind = meta.file_type();
    if kind.is_dir() {
        tar.append_data(&mut header, name, std::io::empty())
            .map_err(io)
    } else if kind.is_symlink() {
        let target = std::fs::read_link(path).map_err(io)?;
        header.set_size(0);
        tar.append_link(&mut header, name, target).map_err(io)
    } else if kind.is_file() {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(path)
            .map_err(io)?;
        // A file that grew since its listing is cut at the size the header says; one that
        // shrank fails the append: the tar never disagrees with itself.
        tar.append_data(&mut header, name, file.take(meta.len()))
            .map_err(io)
    } else {
        // Sockets and FIFOs are not data.
        Ok(())
    }
}

/// Replaces `dst` with the tar's contents, built beside it and swapped in, so a bad archive
/// leaves the old contents whole. Only files, directories and links inside `dst` come out, and
/// the tree is given to `user`: for uploaded app configs (`--config DIR`); a backup's trees
/// go through `restore.rs`, which stages them with `dir_stage` first.
pub fn untar_dir(tar_file: &Path, dst: &Path, user: Option<&AppUser>) -> Result<(), Error> {
    build_beside(dst, user, |fresh| untar_into(tar_file, fresh))?;
    dir_switch(dst)
}

/// Stages a restore of the directory `dst` from the tar `dump` (None: empty) as
/// `.<name>.restoring`, private to the agent until it is whole, then the app's.
fn dir_stage(dst: &Path, user: Option<&AppUser>, dump: Option<&Path>) -> Result<(), Error> {
    build_beside(dst, user, |fresh| match dump {
        Some(tar_file) => untar_into(tar_file, fresh),
        None => Ok(()),
    })
}

/// Swaps a staged directory in; nothing to do when it was swapped already (it is gone).
fn dir_switch(dst: &Path) -> Result<(), Error> {
    let parent = dst.parent().expect("an app directory has a parent");
    let (fresh, old) = (sibling(dst, "restoring"), sibling(dst, "replaced"));
    if std::fs::symlink_metadata(&fresh).is_ok() {
        if std::fs::symlink_metadata(dst).is_ok() {
            remove_tree(&old)?;
            std::fs::rename(dst, &old).map_err(|e| Error::io(dst, e))?;
        }
        std::fs::rename(&fresh, dst).map_err(|e| Error::io(dst, e))?;
        safefs::sync_dir(parent).map_err(|e| Error::io(parent, e))?;
    }
    remove_tree(&old)
}

/// Drops a staged directory.
fn dir_discard(dst: &Path) -> Result<(), Error> {
    remove_tree(&sibling(dst, "restoring"))
}

fn untar_into(tar_file: &Path, fresh: &Path) -> Result<(), Error> {
    let file = std::fs::File::open(tar_file).map_err(|e| Error::io(tar_file, e))?;
    let mut archive = tar::Archive::new(file);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(false);
    for entry in archive.entries().map_err(|e| Error::io(tar_file, e))? {
        let mut entry = entry.map_err(|e| Error::io(tar_file, e))?;
        let name = entry
            .path()
            .map_err(|e| Error::io(tar_file, e))?
            .into_owned();
        check_entry(tar_file, &name, entry.header())?;
        // `unpack_in` refuses `..` and absolute names and any entry whose parent resolves
        // outside `fresh` through a link the archive made earlier (a tar that writes
        // `link/x` after `link -> /etc` would otherwise write into /etc as root).
        let inside = entry
            .unpack_in(fresh)
            .map_err(|e| Error::io(&fresh.join(&name), e))?;
        if !inside {
            return Err(Error::BadBackup {
                path: tar_file.to_path_buf(),
                why: BackupProblem::Outside {
                    entry: name.display().to_string(),
                },
            });
        }
    }
    Ok(())
}

/// Only plain files, directories and symbolic links come back from a backup: a device node
/// would hand the app raw disks, a hard link could tie its file to one outside the tree.
fn check_entry(tar_file: &Path, name: &Path, header: &tar::Header) -> Result<(), Error> {
    use tar::EntryType;
    let kind = header.entry_type();
    if !matches!(
        kind,
        EntryType::Regular | EntryType::Directory | EntryType::Symlink
    ) {
        return Err(Error::BadBackup {
            path: tar_file.to_path_buf(),
            why: BackupProblem::EntryKind {
                entry: name.display().to_string(),
                kind: format!("{kind:?}"),
            },
        });
    }
    // Set-id bits would let the app run a restored file as root's group or another user.
    if header.mode().unwrap_or(0) & 0o7000 != 0 {
        return Err(Error::BadBackup {
            path: tar_file.to_path_buf(),
            why: BackupProblem::SetId {
                entry: name.display().to_string(),
            },
        });
    }
    Ok(())
}

/// Fills a new private directory beside `dst` (`.<name>.restoring`, 0700 from the start, so
/// no other app reads what it holds, even after a crash) with `fill`, gives it to the app, and
/// syncs it: once a restore's journal says it is staged, it survives a power cut.
fn build_beside(
    dst: &Path,
    user: Option<&AppUser>,
    fill: impl FnOnce(&Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let fresh = sibling(dst, "restoring");
    remove_tree(&fresh)?;
    safefs::create_private_dir(&fresh).map_err(|e| Error::io(&fresh, e))?;
    let built = fill(&fresh)
        .and_then(|()| own_tree(&fresh, user))
        .and_then(|()| {
            let dir = std::fs::File::open(&fresh).map_err(|e| Error::io(&fresh, e))?;
            rustix::fs::syncfs(&dir).map_err(|e| Error::io(&fresh, e.into()))
        });
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&fresh);
        return Err(e);
    }
    Ok(())
}

fn sibling(dir: &Path, what: &str) -> PathBuf {
    let name = dir.file_name().expect("named").to_string_lossy();
    dir.with_file_name(format!(".{name}.{what}"))
}

pub(crate) fn remove_tree(dir: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir, e)),
        _ => Ok(()),
    }
}

/// Gives a restored tree to the app's user (links themselves, never what they point to); the
/// top directory private as provisioning makes it.
fn own_tree(dir: &Path, user: Option<&AppUser>) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let Some(user) = user else {
        return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e));
    };
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry.map_err(|e| Error::io(dir, e.into()))?;
        std::os::unix::fs::lchown(entry.path(), Some(user.uid), Some(user.gid))
            .map_err(|e| Error::io(entry.path(), e))?;
    }
    crate::supervise::own_private_dir(dir, user)
}
