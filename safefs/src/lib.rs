//! File-system safety, one helper per job, used by every crate of silver: atomic writes with a
//! mode and a durability, secrets from the kernel, and temporary paths that cannot be guessed.
//!
//! Each helper names in a comment the failure or attack it blocks.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub use tempfile::{NamedTempFile, TempDir};

/// How hard an atomic write tries to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Readers see the old file or the new one, never a torn one; a power cut may bring back
    /// the old one. For caches and files that are rewritten on every start.
    Atomic,
    /// As `Atomic`, and once it returns the new file survives a crash: the file is synced
    /// before the rename, and its directory after. For the store and its records.
    Durable,
}

/// What an atomic write creates.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// The new file's mode, set before a byte is written (a secret is never briefly readable).
    pub mode: u32,
    pub durability: Durability,
}

impl WriteOptions {
    /// 0600 and durable: secrets and the agent's own records.
    pub const PRIVATE: WriteOptions = WriteOptions {
        mode: 0o600,
        durability: Durability::Durable,
    };
}

/// Replaces `path` with `bytes` atomically: a temporary file with an unguessable name in the
/// same directory (so the rename stays on one file system), the mode set first, then
/// `rename(2)` over `path`.
///
/// Blocks: torn files after a crash (readers see old or new), and a predictable temp name that
/// another user could pre-create as a symlink to redirect the write (`O_EXCL`, random name).
pub fn write_atomic(path: &Path, bytes: &[u8], options: WriteOptions) -> io::Result<()> {
    let dir = parent(path);
    let mut file = temp_file_in(dir, options.mode)?;
    file.write_all(bytes)?;
    if options.durability == Durability::Durable {
        file.as_file().sync_all()?;
    }
    file.persist(path).map_err(|e| e.error)?;
    if options.durability == Durability::Durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// A new, empty temporary file in `dir` with `mode`, removed when dropped unless persisted.
pub fn temp_file_in(dir: &Path, mode: u32) -> io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".silver-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
}

/// A new temporary directory (under `$TMPDIR`), removed with everything in it when dropped.
pub fn temp_dir(prefix: &str) -> io::Result<TempDir> {
    tempfile::Builder::new().prefix(prefix).tempdir()
}

/// A new private directory inside `dir` (0700, dot-named so listings skip it), removed when
/// dropped: for work that is renamed into place once whole, on the same file system.
pub fn temp_dir_in(dir: &Path) -> io::Result<TempDir> {
    tempfile::Builder::new().prefix(".tmp").tempdir_in(dir)
}

/// Syncs a directory, so the names just created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `bytes` random bytes from the kernel's CSPRNG, hex-encoded: tokens and passwords.
///
/// Blocks: guessable credentials (never a time, a pid or a userspace PRNG).
pub fn secret_hex(bytes: usize) -> io::Result<String> {
    let mut raw = vec![0u8; bytes];
    let mut filled = 0;
    while filled < raw.len() {
        filled +=
            rustix::rand::getrandom(&mut raw[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(io::Error::from)?;
    }
    Ok(hex::encode(raw))
}

/// The mode of `path` if group or others may read or write it, as ssh refuses a private key
/// that is "too open". A file that guards access (a token, a TLS key) and that other users can
/// read lets them take the access it guards; one they can write lets them swap it for their own.
/// Only regular files are judged: `/dev/null` or a pipe holds no secret to leak.
pub fn too_open(path: &Path) -> io::Result<Option<u32>> {
    let meta = std::fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    Ok((meta.is_file() && mode & 0o077 != 0).then_some(mode))
}

/// The secret kept in `path`, or a new one of `bytes` random bytes written there 0600 if the
/// file is missing or does not hold one of that size.
pub fn load_or_create_secret(path: &Path, bytes: usize) -> io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().len() == bytes * 2 => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = secret_hex(bytes)?;
    write_atomic(path, secret.as_bytes(), WriteOptions::PRIVATE)?;
    Ok(secret)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn files_others_can_read_or_write_are_too_open() {
        let dir = temp_dir("safefs-test-").unwrap();
        let path = dir.path().join("key");
        for (mode, expected) in [
            (0o600, None),
            (0o400, None),
            (0o640, Some(0o640)),
            (0o602, Some(0o602)),
            (0o644, Some(0o644)),
        ] {
            std::fs::write(&path, "k").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(too_open(&path).unwrap(), expected, "{mode:o}");
        }
    }

    #[test]
    fn atomic_writes_replace_with_the_mode_and_leave_no_temp_file() {
        let dir = temp_dir("safefs-test-").unwrap();
        let path = dir.path().join("f");
        for (body, mode) in [(&b"one"[..], 0o644), (&b"two"[..], 0o600)] {
            let options = WriteOptions {
                mode,
                durability: Durability::Durable,
            };
            write_atomic(&path, body, options).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), body);
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, mode);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temp file was left behind");
    }

    #[test]
    fn secrets_are_random_kept_and_private() {
        let dir = temp_dir("safefs-test-").unwrap();
        let path = dir.path().join("secret");
        let a = load_or_create_secret(&path, 16).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(load_or_create_secret(&path, 16).unwrap(), a);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_ne!(secret_hex(16).unwrap(), secret_hex(16).unwrap());
        // A file of the wrong size is replaced, not trusted.
        std::fs::write(&path, "short").unwrap();
        assert_ne!(load_or_create_secret(&path, 16).unwrap(), "short");
    }
}
