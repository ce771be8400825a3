//! File-system safety, one helper per job, used by every crate of silver: atomic writes with a
//! mode and a durability, secrets from the kernel, and temporary paths that cannot be guessed.
//!
//! Each helper names in a comment the failure or attack it blocks.

pub mod flat_tar;

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
/// Private (0700), as [`temp_dir_in`].
pub fn temp_dir(prefix: &str) -> io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}

/// A new private directory inside `dir` (0700, dot-named so listings skip it), removed when
/// dropped: for work that is renamed into place once whole, on the same file system.
///
/// Blocks: a work directory other users can list and read (tempfile makes directories with
/// the umask's mode, 0755, unless told: a backup copied there was readable by every app).
pub fn temp_dir_in(dir: &Path) -> io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(dir)
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

/// A new file, 0600 from the start, created only if nothing (not even a dangling symlink) has
/// the name: for copies of data another user must never read (backups, dumps, checkpoints).
///
/// Blocks: a dump readable by other users while it is written (a mode set afterwards leaves a
/// window), and a link planted at the name that would redirect the write (`O_EXCL`).
pub fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// A new directory, 0700 from the start (not widened by the umask later): for work trees that
/// hold another user's data while they are built (a restore, a backup).
///
/// Blocks: a restore's files readable by every app while they are unpacked, or after a crash.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// `path` as a directory only its owner may enter, whether or not it was there: made 0700 if
/// missing, narrowed to 0700 if wider.
///
/// Blocks: keys kept under a directory other users can list, and a symlink or file planted
/// where the directory belongs (refused, never followed).
pub fn ensure_private_dir(path: &Path) -> io::Result<()> {
    match create_private_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        done => return done,
    }
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "it exists and is not a directory",
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// What a file handed to silver as input must be, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotPlain {
    /// A symlink: it would make silver (often root) read whatever it points to, such as another
    /// app's checkpoint.
    Symlink,
    /// A FIFO, socket or device: reading it blocks forever or reads a disk.
    Special,
    /// Group or others may write it: someone else could have changed it (mode).
    Writable(u32),
}

impl std::fmt::Display for NotPlain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotPlain::Symlink => f.write_str("it is a symbolic link"),
            NotPlain::Special => f.write_str("it is not a regular file (a FIFO, socket or device)"),
            NotPlain::Writable(mode) => write!(f, "other users may write it (mode {mode:04o})"),
        }
    }
}

/// Opens an input file the way hostile input must be: never through a symlink at its last
/// component, never blocking on a FIFO, a regular file only, and one no other user may write.
/// The checks are made on the open descriptor, so the file cannot be swapped between them.
pub fn open_plain(path: &Path) -> io::Result<Result<File, NotPlain>> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        // ELOOP: the last component is a symlink, which O_NOFOLLOW refuses to open.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(Err(NotPlain::Symlink))
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() || kind.is_fifo() || kind.is_socket() {
        return Ok(Err(NotPlain::Special));
    }
    Ok(plain_mode(&meta).map(|()| file))
}

/// Whether a directory handed to silver as input is one: not a symlink, and no other user may
/// write it (they could swap its files).
pub fn check_plain_dir(path: &Path) -> io::Result<Result<(), NotPlain>> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(Err(NotPlain::Symlink));
    }
    if !meta.is_dir() {
        return Ok(Err(NotPlain::Special));
    }
    Ok(plain_mode(&meta))
}

fn plain_mode(meta: &std::fs::Metadata) -> Result<(), NotPlain> {
    let mode = meta.permissions().mode() & 0o7777;
    // Sticky directories (`/tmp`) let others add names but not replace ours; still refused
    // for a backup, whose files anyone there could have planted.
    if mode & 0o022 != 0 {
        return Err(NotPlain::Writable(mode));
    }
    Ok(())
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
    fn inputs_are_plain_files_no_one_else_may_write() {
        let dir = temp_dir("safefs-test-").unwrap();
        let check = |name: &str, expected: Result<(), NotPlain>| {
            let got = open_plain(&dir.path().join(name)).unwrap().map(|_| ());
            assert_eq!(got, expected, "{name}");
        };
        std::fs::write(dir.path().join("ok"), "x").unwrap();
        std::fs::set_permissions(
            dir.path().join("ok"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        check("ok", Ok(()));
        std::os::unix::fs::symlink("ok", dir.path().join("link")).unwrap();
        check("link", Err(NotPlain::Symlink));
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        check("fifo", Err(NotPlain::Special));
        std::fs::write(dir.path().join("open"), "x").unwrap();
        std::fs::set_permissions(
            dir.path().join("open"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        check("open", Err(NotPlain::Writable(0o666)));
        let private = dir.path().join("private");
        create_private_dir(&private).unwrap();
        assert_eq!(check_plain_dir(&private).unwrap(), Ok(()));
        let file = private.join("f");
        create_private(&file).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        assert!(
            create_private(&file).is_err(),
            "never over an existing file"
        );
        assert_eq!(
            check_plain_dir(&dir.path().join("link")).unwrap(),
            Err(NotPlain::Symlink)
        );
    }

    #[test]
    fn temporary_directories_are_private() {
        let dir = temp_dir("safefs-test-").unwrap();
        assert_eq!(std::fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o700);
        let inner = temp_dir_in(dir.path()).unwrap();
        assert_eq!(
            std::fs::metadata(inner.path()).unwrap().mode() & 0o777,
            0o700
        );
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
