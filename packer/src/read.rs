//! Reading artifacts, which is hostile-input parsing: `verify`, `inspect` and `unpack`.
//!
//! The manifest comes first and is validated whole (paths, order, symlinks, limits) before a byte
//! is written. Then every tar entry must be the manifest's next entry, with the same kind, mode,
//! size, hash and target. Extraction writes only into a fresh `<dest>.partial`, creates files
//! with `O_EXCL` under directories it made itself, and renames into place only when everything
//! verified; on any error the staging directory is removed.

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::Serialize;
use sha2::Digest;

use crate::archive::MANIFEST_NAME;
use crate::error::{Error, Refusal};
use crate::limits::Limits;
use crate::manifest::{Entry, Hash, Kind, Manifest};

/// How to read an archive.
#[derive(Debug, Clone, Default)]
pub struct ReadConfig {
    pub limits: Limits,
    /// Refuse the archive unless its id is this (full `b3:…` or a prefix of 12+ hex digits).
    pub expected_id: Option<String>,
    /// fsync every file and directory before the final rename (the node agent wants this).
    pub durable: bool,
}

/// What reading a whole archive established.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub id: String,
    pub format: String,
    /// From the archive's `app.ini`, when it has one that names the app.
    pub app: Option<String>,
    pub archive_sha256: String,
    pub archive_bytes: u64,
    pub files: usize,
    pub content_bytes: u64,
    pub entries: Vec<Entry>,
    /// The relocation rewrites recorded at pack time: (path, kind).
    pub fixups: Vec<(String, String)>,
}

/// Reads and checks every byte of `archive` without writing anything.
pub fn verify(archive: &Path, config: &ReadConfig) -> Result<Verified, Error> {
    let _span = tracing::info_span!("verify", archive = %archive.display()).entered();
    read(archive, None, config, None)
}

/// Sees the content of an archive's files while it is read and verified; the deploy client
/// uploads through one. What it was shown is trustworthy only once `read_with` returned `Ok`.
pub trait Visitor {
    /// Whether to be shown this file's content (it is then passed to `chunk`, in order).
    fn wants(&mut self, entry: &Entry) -> bool;
    fn chunk(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// Reads and checks every byte of `archive`, showing `visitor` the files it wants.
pub fn read_with(
    archive: &Path,
    config: &ReadConfig,
    visitor: &mut dyn Visitor,
) -> Result<Verified, Error> {
    let _span = tracing::info_span!("read", archive = %archive.display()).entered();
    read(archive, None, config, Some(visitor))
}

/// Reads only the manifest (the first entry): cheap, and enough to know what an artifact holds.
/// The rest of the archive is not checked; `verify` or `read_with` does that.
pub fn read_manifest(archive: &Path, limits: &Limits) -> Result<Manifest, Error> {
    let file = File::open(archive).map_err(|source| Error::Read {
        path: archive.into(),
        source,
    })?;
    let refused = |reason| Error::Refused {
        archive: archive.into(),
        entry: "(manifest)".into(),
        reason,
    };
    let frames = Frames::new(BufReader::new(file), limits.max_window_log)
        .map_err(|e| refused(Refusal::Zstd(e)))?;
    let stream = Budgeted {
        inner: frames,
        used: 0,
        limit: Rc::new(Cell::new(limits.max_manifest_bytes + 64 * 1024)),
    };
    let mut tar = tar::Archive::new(stream);
    let mut entries = tar.entries().map_err(|e| refused(Refusal::Tar(e)))?;
    read_manifest_entry(&mut entries, limits)
        .map(|(m, _)| m)
        .map_err(refused)
}

/// Extracts `archive` into `dest`, which must not exist.
pub fn unpack(archive: &Path, dest: &Path, config: &ReadConfig) -> Result<Verified, Error> {
    let _span = tracing::info_span!("unpack", archive = %archive.display(), dest = %dest.display())
        .entered();
    if fs::symlink_metadata(dest).is_ok() {
        return Err(Error::DestinationExists { path: dest.into() });
    }
    let staging = staging_path(dest);
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| Error::Write {
            path: parent.into(),
            source,
        })?;
    }
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&staging)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => Error::DestinationExists {
                path: staging.clone(),
            },
            _ => Error::Write {
                path: staging.clone(),
                source,
            },
        })?;
    let guard = RemoveOnDrop(Some(staging.clone()));
    let verified = read(archive, Some(&staging), config, None)?;
    let write_err = |source| Error::Write {
        path: dest.into(),
        source,
    };
    if fs::symlink_metadata(dest).is_ok() {
        return Err(Error::DestinationExists { path: dest.into() });
    }
    if config.durable {
        crate::pack::sync_dir(&staging);
    }
    fs::rename(&staging, dest).map_err(write_err)?;
    guard.disarm();
    if config.durable {
        crate::pack::sync_dir(dest.parent().unwrap_or(Path::new(".")));
    }
    Ok(verified)
}

/// `<dest>.partial`, the staging directory of design §3.
pub fn staging_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    dest.with_file_name(name)
}

struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_dir_all(path);
        }
    }
}

fn read(
    archive: &Path,
    staging: Option<&Path>,
    config: &ReadConfig,
    visitor: Option<&mut dyn Visitor>,
) -> Result<Verified, Error> {
    let file = File::open(archive).map_err(|source| Error::Read {
        path: archive.into(),
        source,
    })?;
    let refused = |entry: &str, reason: Refusal| Error::Refused {
        archive: archive.into(),
        entry: entry.into(),
        reason,
    };
    let counted = CountingReader {
        inner: BufReader::with_capacity(1 << 20, file),
        sha: sha2::Sha256::new(),
        bytes: 0,
    };
    let frames = Frames::new(counted, config.limits.max_window_log)
        .map_err(|e| refused("(archive)", Refusal::Zstd(e)))?;
    let budget = Rc::new(Cell::new(config.limits.max_manifest_bytes + 64 * 1024));
    let stream = Budgeted {
        inner: frames,
        used: 0,
        limit: budget.clone(),
    };
    let mut tar = tar::Archive::new(stream);
    let mut reader = EntryReader {
        staging,
        config,
        created: HashSet::new(),
        app_ini: None,
        visitor,
    };
    let (manifest, fixups) = {
        let mut entries = tar
            .entries()
            .map_err(|e| refused("(archive)", Refusal::Tar(e)))?;
        let (manifest, fixups) = read_manifest_entry(&mut entries, &config.limits)
            .map_err(|r| refused("(manifest)", r))?;
        if let Some(expected) = &config.expected_id {
            if !manifest.id.matches(expected) {
                return Err(Error::IdMismatch {
                    archive: archive.into(),
                    expected: expected.clone(),
                    actual: manifest.id.to_string(),
                });
            }
        }
        budget.set(stream_budget(&manifest, &config.limits));
        read_entries(&mut entries, &manifest, &mut reader, archive)?;
        (manifest, fixups)
    };
    let stream = tar.into_inner();
    let counted = check_end(stream).map_err(|r| refused("(end of archive)", r))?;
    let app = reader.app_ini.as_deref().and_then(app_name_from_ini);
    Ok(Verified {
        id: manifest.id.to_string(),
        format: crate::manifest::HEADER.to_string(),
        app,
        archive_sha256: hex::encode(counted.sha.finalize()),
        archive_bytes: counted.bytes,
        files: manifest.file_count(),
        content_bytes: manifest.content_bytes(),
        entries: manifest.entries,
        fixups,
    })
}

/// Reads every entry the manifest lists, in its order, and refuses anything after the last.
fn read_entries<R: Read>(
    entries: &mut tar::Entries<'_, R>,
    manifest: &Manifest,
    reader: &mut EntryReader<'_, '_>,
    archive: &Path,
) -> Result<(), Error> {
    let refused = |entry: &str, reason: Refusal| Error::Refused {
        archive: archive.into(),
        entry: entry.into(),
        reason,
    };
    for expected in &manifest.entries {
        let entry = match entries.next() {
            None => {
                return Err(refused(
                    &expected.path,
                    Refusal::Missing(expected.path.clone()),
                ))
            }
            Some(entry) => entry.map_err(|e| refused(&expected.path, tar_refusal(e)))?,
        };
        reader.entry(entry, expected).map_err(|e| match e {
            EntryError::Refused(reason) => refused(&expected.path, reason),
            EntryError::Write(path, source) => Error::Write { path, source },
            EntryError::Visitor(source) => Error::Visitor {
                entry: expected.path.clone(),
                source,
            },
        })?;
    }
    // A smuggled entry after the last listed one would be extracted by a naive reader.
    if let Some(extra) = entries.next() {
        let name = extra
            .ok()
            .and_then(|e| e.path_bytes().into_owned().into())
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        return Err(refused(
            &name.unwrap_or_else(|| "(after the last entry)".into()),
            Refusal::Extra,
        ));
    }
    Ok(())
}

/// How many decompressed bytes a well-formed archive with this manifest can take: content, plus
/// for every entry its header, a long-name header and its block, plus the end-of-archive padding.
fn stream_budget(manifest: &Manifest, limits: &Limits) -> u64 {
    let per_entry = 512 * 4 + 2 * (limits.max_path_bytes as u64 + 512);
    let padding: u64 = manifest
        .entries
        .iter()
        .map(|e| e.size().div_ceil(512) * 512)
        .sum();
    limits.max_manifest_bytes
        + 64 * 1024
        + padding
        + per_entry * (manifest.entries.len() as u64 + 1)
        + 20 * 512
}

fn read_manifest_entry<R: Read>(
    entries: &mut tar::Entries<'_, R>,
    limits: &Limits,
) -> Result<(Manifest, Vec<(String, String)>), Refusal> {
    let mut first = match entries.next() {
        None => return Err(Refusal::NoManifest("nothing: the archive is empty".into())),
        Some(entry) => entry.map_err(tar_refusal)?,
    };
    let name = String::from_utf8_lossy(&first.path_bytes()).into_owned();
    if name != MANIFEST_NAME || first.header().entry_type() != tar::EntryType::Regular {
        return Err(Refusal::NoManifest(name));
    }
    let size = first.size();
    if size > limits.max_manifest_bytes {
        return Err(Refusal::ManifestTooLarge {
            size,
            max: limits.max_manifest_bytes,
        });
    }
    let fixups = pax_fixups(&mut first);
    let mut bytes = Vec::with_capacity(size as usize);
    first.read_to_end(&mut bytes).map_err(tar_refusal)?;
    let manifest = Manifest::parse(&bytes, limits).map_err(Refusal::Manifest)?;
    Ok((manifest, fixups))
}

/// The pack report's fixups, carried in the manifest entry's PAX `comment`. Informational only:
/// nothing the reader does depends on it.
fn pax_fixups<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Note {
        fixups: Vec<(String, String)>,
    }
    let Ok(Some(extensions)) = entry.pax_extensions() else {
        return vec![];
    };
    extensions
        .flatten()
        .filter(|e| e.key_bytes() == b"comment")
        .find_map(|e| serde_json::from_slice::<Note>(e.value_bytes()).ok())
        .map(|n| n.fixups)
        .unwrap_or_default()
}

struct EntryReader<'a, 'v> {
    staging: Option<&'a Path>,
    config: &'a ReadConfig,
    /// Directories this extraction made: the only ones it will create files in.
    created: HashSet<String>,
    app_ini: Option<Vec<u8>>,
    visitor: Option<&'v mut dyn Visitor>,
}

enum EntryError {
    Refused(Refusal),
    Write(PathBuf, io::Error),
    Visitor(io::Error),
}

impl From<Refusal> for EntryError {
    fn from(r: Refusal) -> Self {
        EntryError::Refused(r)
    }
}

impl EntryReader<'_, '_> {
    fn entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        expected: &Entry,
    ) -> Result<(), EntryError> {
        check_header(&mut entry, expected)?;
        let Some(staging) = self.staging else {
            return self.consume(&mut entry, expected, None);
        };
        let target = staging.join(&expected.path);
        let write = |e: io::Error| EntryError::Write(target.clone(), e);
        self.make_parents(staging, &expected.path)?;
        match &expected.kind {
            Kind::Dir => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&target)
                    .map_err(write)?;
                fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).map_err(write)?;
                self.created.insert(expected.path.clone());
                Ok(())
            }
            Kind::Link { target: link } => std::os::unix::fs::symlink(link, &target).map_err(write),
            Kind::File { .. } | Kind::Exec { .. } => {
                // O_EXCL (create_new) refuses to follow or replace anything already there.
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(expected.mode())
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(write)?;
                self.consume(&mut entry, expected, Some(&mut out))?;
                out.set_permissions(fs::Permissions::from_mode(expected.mode()))
                    .map_err(write)?;
                if self.config.durable {
                    out.sync_all().map_err(write)?;
                }
                Ok(())
            }
        }
    }

    /// Reads a file entry's content, hashing it and writing it to `out` if given.
    fn consume<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        expected: &Entry,
        mut out: Option<&mut File>,
    ) -> Result<(), EntryError> {
        let (size, hash) = match expected.kind {
            Kind::File { size, hash } | Kind::Exec { size, hash } => (size, hash),
            _ => return Ok(()),
        };
        let keep_ini = expected.path == "app.ini" && size <= 1 << 20;
        let wanted = self
            .visitor
            .as_deref_mut()
            .is_some_and(|v| v.wants(expected));
        let mut visitor = self.visitor.as_deref_mut().filter(|_| wanted);
        let mut ini = Vec::new();
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut read = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(tar_refusal)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            read += n as u64;
            if keep_ini {
                ini.extend_from_slice(&buf[..n]);
            }
            if let Some(v) = visitor.as_deref_mut() {
                v.chunk(&buf[..n]).map_err(EntryError::Visitor)?;
            }
            if let Some(out) = out.as_deref_mut() {
                out.write_all(&buf[..n])
                    .map_err(|e| EntryError::Write(expected.path.clone().into(), e))?;
            }
        }
        if read != size {
            return Err(Refusal::Size {
                expected: size,
                actual: read,
            }
            .into());
        }
        let actual = Hash::from(hasher.finalize());
        if actual != hash {
            return Err(Refusal::Hash {
                expected: hash.to_hex(),
                actual: actual.to_hex(),
            }
            .into());
        }
        if keep_ini {
            self.app_ini = Some(ini);
        }
        Ok(())
    }

    /// Creates missing parent directories, mode 0755, one component at a time. The manifest was
    /// validated so no ancestor is a file or symlink; `created` makes this cheap.
    fn make_parents(&mut self, staging: &Path, path: &str) -> Result<(), EntryError> {
        for ancestor in crate::path::ancestors(path) {
            if self.created.contains(ancestor) {
                continue;
            }
            let dir = staging.join(ancestor);
            match fs::DirBuilder::new().mode(0o755).create(&dir) {
                Ok(()) => fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .map_err(|e| EntryError::Write(dir.clone(), e))?,
                Err(e) => return Err(EntryError::Write(dir, e)),
            }
            self.created.insert(ancestor.to_string());
        }
        Ok(())
    }
}

fn check_header<R: Read>(entry: &mut tar::Entry<'_, R>, expected: &Entry) -> Result<(), Refusal> {
    let raw_path = entry.path_bytes().into_owned();
    let mut path: &[u8] = &raw_path;
    let kind = entry.header().entry_type();
    let actual_kind = match kind {
        tar::EntryType::Regular => "file",
        tar::EntryType::Directory => "directory",
        tar::EntryType::Symlink => "symlink",
        // Hardlinks can point at files outside the tree; devices and FIFOs are not app content;
        // sparse and other GNU types hide data from size checks.
        other => return Err(Refusal::EntryType(format!("{other:?}"))),
    };
    if kind == tar::EntryType::Directory {
        path = path.strip_suffix(b"/").unwrap_or(path);
    }
    if path != expected.path.as_bytes() {
        return Err(Refusal::Unexpected {
            expected: expected.path.clone(),
        });
    }
    // Size smuggling through PAX (`size=`) or sparse maps would let the header disagree with the data.
    if let Ok(Some(extensions)) = entry.pax_extensions() {
        for ext in extensions.flatten() {
            let key = ext.key_bytes();
            if key == b"size" || key.starts_with(b"GNU.sparse") {
                return Err(Refusal::EntryType(format!(
                    "PAX {}",
                    String::from_utf8_lossy(key)
                )));
            }
        }
    }
    let expected_kind = match expected.kind {
        Kind::Dir => "directory",
        Kind::File { .. } | Kind::Exec { .. } => "file",
        Kind::Link { .. } => "symlink",
    };
    if actual_kind != expected_kind {
        return Err(Refusal::KindMismatch {
            expected: expected_kind,
            actual: actual_kind,
        });
    }
    // setuid, setgid, sticky or world-writable bits are refused by requiring the exact mode.
    let mode = entry.header().mode().map_err(tar_refusal)? & 0o7777;
    if mode != expected.mode() {
        return Err(Refusal::Mode {
            expected: expected.mode(),
            actual: mode,
        });
    }
    let size = entry.size();
    let header_size = entry.header().size().map_err(tar_refusal)?;
    if size != expected.size() || header_size != expected.size() {
        return Err(Refusal::Size {
            expected: expected.size(),
            actual: size.max(header_size),
        });
    }
    if let Kind::Link { target } = &expected.kind {
        let actual = entry
            .link_name_bytes()
            .map(|b| b.into_owned())
            .unwrap_or_default();
        if actual != target.as_bytes() {
            return Err(Refusal::LinkTarget {
                expected: target.clone(),
                actual: String::from_utf8_lossy(&actual).into_owned(),
            });
        }
    }
    Ok(())
}

/// After the last entry only end-of-archive zero blocks may follow, then the end of the single
/// zstd frame, then the end of the file: anything else is smuggled data.
fn check_end<R: BufRead>(mut stream: Budgeted<Frames<R>>) -> Result<R, Refusal> {
    let mut rest = [0u8; 512];
    let mut trailing = 0u64;
    loop {
        let n = stream.read(&mut rest).map_err(|e| match e.kind() {
            io::ErrorKind::Other if stream.used > stream.limit.get() => Refusal::StreamTooLong {
                limit: stream.limit.get(),
            },
            _ => Refusal::Zstd(e),
        })?;
        if n == 0 {
            break;
        }
        trailing += n as u64;
        if rest[..n].iter().any(|b| *b != 0) || trailing > 20 * 512 {
            return Err(Refusal::TrailingData);
        }
    }
    stream.inner.into_inner().ok_or(Refusal::TrailingData)
}

/// The archive's zstd frames, read as one stream: the manifest's frame and the content's frame
/// (an archive may also be a single frame). A third frame, skippable or not, is trailing data.
struct Frames<R: BufRead> {
    decoder: Option<zstd::Decoder<'static, R>>,
    done: Option<R>,
    frames: u32,
    /// Bytes the current frame decoded to: a frame of a silver archive is never empty, so an
    /// empty one (a skippable frame, say) is smuggled data.
    produced: u64,
    window_log_max: u32,
}

const MAX_FRAMES: u32 = 2;

impl<R: BufRead> Frames<R> {
    fn new(inner: R, window_log_max: u32) -> io::Result<Self> {
        let decoder = Self::decoder(inner, window_log_max)?;
        Ok(Frames {
            decoder: Some(decoder),
            done: None,
            frames: 1,
            produced: 0,
            window_log_max,
        })
    }

    fn decoder(inner: R, window_log_max: u32) -> io::Result<zstd::Decoder<'static, R>> {
        let mut decoder = zstd::Decoder::with_buffer(inner)?;
        // The window bounds the decoder's memory: a huge one is a memory-exhaustion attack.
        decoder.window_log_max(window_log_max)?;
        Ok(decoder.single_frame())
    }

    /// The underlying reader once every frame was read and nothing follows them.
    fn into_inner(self) -> Option<R> {
        self.done
    }
}

impl<R: BufRead> Read for Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            self.produced += n as u64;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            if self.produced == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "an empty or skippable zstd frame",
                ));
            }
            self.produced = 0;
            let mut inner = self
                .decoder
                .take()
                .map(zstd::Decoder::finish)
                .expect("decoder present");
            if inner.fill_buf()?.is_empty() {
                self.done = Some(inner);
                return Ok(0);
            }
            if self.frames == MAX_FRAMES {
                // Leave `done` empty: check_end reports the trailing data.
                return Ok(0);
            }
            self.frames += 1;
            self.decoder = Some(Self::decoder(inner, self.window_log_max)?);
        }
    }
}

fn tar_refusal(e: io::Error) -> Refusal {
    if let Some(z) = e.get_ref().and_then(|i| i.downcast_ref::<ZstdFailure>()) {
        return Refusal::Zstd(io::Error::new(z.0.kind(), z.0.to_string()));
    }
    if e.get_ref()
        .is_some_and(|inner| inner.is::<BudgetExceeded>())
    {
        let limit = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<BudgetExceeded>())
            .map_or(0, |b| b.0);
        return Refusal::StreamTooLong { limit };
    }
    Refusal::Tar(e)
}

fn app_name_from_ini(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let ini = silver_types::appini::AppIni::parse(text, Path::new("app.ini")).ok()?;
    ini.production("app_name").map(|v| v.value.clone())
}

/// Caps the decompressed stream: a small archive must not expand without bound (zip bomb, huge
/// PAX or long-name headers that the tar crate reads into memory).
struct Budgeted<R> {
    inner: R,
    used: u64,
    limit: Rc<Cell<u64>>,
}

#[derive(Debug)]
struct BudgetExceeded(u64);

/// Marks an error from the zstd decoder, so the tar layer's errors can be told apart from it.
#[derive(Debug)]
struct ZstdFailure(io::Error);

impl std::fmt::Display for ZstdFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ZstdFailure {}

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "decompressed stream over its budget of {} bytes", self.0)
    }
}

impl std::error::Error for BudgetExceeded {}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let limit = self.limit.get();
        let room = limit.saturating_sub(self.used);
        if room == 0 {
            // One byte more than allowed proves the stream is over budget.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.used += 1;
                    Err(io::Error::other(BudgetExceeded(limit)))
                }
            };
        }
        let take = buf.len().min(room.min(usize::MAX as u64) as usize);
        let n = self
            .inner
            .read(&mut buf[..take])
            .map_err(|e| io::Error::other(ZstdFailure(e)))?;
        self.used += n as u64;
        Ok(n)
    }
}

struct CountingReader<R> {
    inner: R,
    sha: sha2::Sha256,
    bytes: u64,
}

impl<R: BufRead> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for CountingReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        if let Ok(buf) = self.inner.fill_buf() {
            let amt = amt.min(buf.len());
            self.sha.update(&buf[..amt]);
            self.bytes += amt as u64;
        }
        self.inner.consume(amt)
    }
}
