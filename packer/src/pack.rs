//! `pack`: app directory in, deterministic `.silver` archive out.
//!
//! Two passes keep memory flat however large the tree: pass 1 hashes (and relocates) every file in
//! parallel and builds the manifest, which must come first in the archive; pass 2 streams the files
//! into tar while zstd's workers compress, re-hashing to catch files that changed in between.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;
use sha2::Digest;

use crate::appini::{self, AppIni};
use crate::archive::TarWriter;
use crate::error::Error;
use crate::limits::Limits;
use crate::manifest::{Entry, Hash, Kind, Manifest};
use crate::relocate::{self, Fixup, Roots};
use crate::walk::{self, SourceKind, WalkConfig};
use crate::Progress;

/// Everything `pack` needs to know, resolved by the caller from flags, config and environment.
#[derive(Debug, Clone)]
pub struct PackConfig {
    pub walk: WalkConfig,
    /// Turn "still contains the source path" warnings into errors.
    pub strict: bool,
    pub limits: Limits,
    /// Tar mtime for every entry: `SOURCE_DATE_EPOCH`, else 0.
    pub mtime: u64,
    /// zstd level.
    pub level: i32,
    /// zstd worker threads, at least 1. The output is identical for any count >= 1.
    pub threads: u32,
}

impl Default for PackConfig {
    fn default() -> Self {
        PackConfig {
            walk: WalkConfig { gitignore: true },
            strict: false,
            limits: Limits::default(),
            mtime: 0,
            level: 3,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        }
    }
}

/// What `silver pack --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PackReport {
    pub id: String,
    pub app: String,
    pub archive: PathBuf,
    pub archive_sha256: String,
    pub files: usize,
    pub entries: usize,
    pub content_bytes: u64,
    pub archive_bytes: u64,
    pub fixups: Vec<Fixup>,
    pub warnings: Vec<String>,
}

/// Files up to this size are read whole in pass 1 so they can be relocated; larger ones are
/// streamed (and only scanned for the source path).
const WHOLE_FILE_MAX: u64 = 8 << 20;

/// Packs `app_dir` into `out_dir/<app>-<id12>.silver`. On error nothing is left in `out_dir`.
pub fn pack(
    app_dir: &Path,
    out_dir: &Path,
    config: &PackConfig,
    progress: &dyn Progress,
) -> Result<PackReport, Error> {
    let span = tracing::info_span!("pack", app_dir = %app_dir.display());
    let _guard = span.enter();
    let ini = AppIni::load(app_dir)?;
    let app = appini::app_name(app_dir, &ini)?;
    let roots = source_roots(app_dir)?;
    let sources = walk::walk(app_dir, &config.walk, &config.limits)?;
    let plan = plan(app_dir, &roots, sources, config, progress)?;
    let manifest = Manifest::from_entries(plan.iter().map(|p| p.entry.clone()).collect());
    manifest.validate(&config.limits).map_err(Error::Tree)?;
    let mut fixups: Vec<Fixup> = plan.iter().filter_map(|p| p.fixup.clone()).collect();
    fixups.sort_by(|a, b| a.path.cmp(&b.path));
    let mut warnings = ini.warnings.clone();
    warnings.extend(plan.iter().filter_map(|p| p.warning.clone()));
    tracing::info!(app = %app, id = %manifest.id, entries = manifest.entries.len(), content_bytes = manifest.content_bytes(), "manifest built");

    let name = format!("{app}-{}.silver", manifest.id.short());
    let archive = out_dir.join(&name);
    let written = write_archive(
        app_dir, &archive, &manifest, &plan, &fixups, config, progress,
    )?;
    Ok(PackReport {
        id: manifest.id.to_string(),
        app,
        archive,
        archive_sha256: written.sha256,
        files: manifest.file_count(),
        entries: manifest.entries.len(),
        content_bytes: manifest.content_bytes(),
        archive_bytes: written.bytes,
        fixups,
        warnings,
    })
}

/// One entry with what pass 1 learned about it.
struct Planned {
    entry: Entry,
    /// Relocated content, kept in memory (small files only) to be written in pass 2.
    rewritten: Option<Arc<Vec<u8>>>,
    fixup: Option<Fixup>,
    warning: Option<String>,
}

fn source_roots(app_dir: &Path) -> Result<Roots, Error> {
    let read_err = |source| Error::Read {
        path: app_dir.into(),
        source,
    };
    let given = std::path::absolute(app_dir).map_err(read_err)?;
    let canonical = app_dir.canonicalize().map_err(read_err)?;
    Ok(Roots::new(
        [given, canonical].map(|p| p.to_string_lossy().into_owned()),
    ))
}

fn plan(
    app_dir: &Path,
    roots: &Roots,
    sources: Vec<walk::SourceEntry>,
    config: &PackConfig,
    progress: &dyn Progress,
) -> Result<Vec<Planned>, Error> {
    let total: u64 = sources
        .iter()
        .map(|s| {
            if let SourceKind::File { size, .. } = s.kind {
                size
            } else {
                0
            }
        })
        .sum();
    progress.start("hashing", total);
    let planned = sources
        .into_par_iter()
        .map(|source| plan_one(app_dir, roots, source, config, progress))
        .collect::<Result<Vec<_>, _>>();
    progress.finish();
    planned
}

fn plan_one(
    app_dir: &Path,
    roots: &Roots,
    source: walk::SourceEntry,
    config: &PackConfig,
    progress: &dyn Progress,
) -> Result<Planned, Error> {
    let path = source.path;
    let (executable, size) = match source.kind {
        SourceKind::EmptyDir => {
            return Ok(Planned {
                entry: Entry {
                    path,
                    kind: Kind::Dir,
                },
                rewritten: None,
                fixup: None,
                warning: None,
            })
        }
        SourceKind::Link { target } => {
            let (target, fixup) = relocate::relocate_link(roots, &path, &target, |t| {
                config.limits.is_system_target(t)
            });
            let entry = Entry {
                path,
                kind: Kind::Link { target },
            };
            return Ok(Planned {
                entry,
                rewritten: None,
                fixup,
                warning: None,
            });
        }
        SourceKind::File { executable, size } => (executable, size),
    };
    let full = app_dir.join(&path);
    let unreadable = |source| Error::Unreadable {
        path: path.clone(),
        source,
    };
    let (hash, size, rewritten, fixup, mentions, text) = if size <= WHOLE_FILE_MAX {
        let content = std::fs::read(&full).map_err(unreadable)?;
        progress.advance(content.len() as u64);
        match relocate::relocate_content(roots, &path, &content) {
            Some((new, fixup)) => {
                let mentions = roots.mentioned_in(&new);
                (
                    Hash::of(&new),
                    new.len() as u64,
                    Some(Arc::new(new)),
                    Some(fixup),
                    mentions,
                    true,
                )
            }
            None => {
                let text = !content[..content.len().min(8192)].contains(&0);
                (
                    Hash::of(&content),
                    content.len() as u64,
                    None,
                    None,
                    roots.mentioned_in(&content),
                    text,
                )
            }
        }
    } else {
        let scanned = stream_scan(&full, roots, progress).map_err(unreadable)?;
        (
            scanned.hash,
            scanned.size,
            None,
            None,
            scanned.mentions,
            scanned.text,
        )
    };
    let warning = match (mentions && text, config.strict) {
        (false, _) => None,
        (true, true) => return Err(Error::SourcePath { path, root: roots.forms()[0].clone() }),
        (true, false) => Some(format!("`{path}` still contains the absolute source path; it may not work from another directory")),
    };
    let kind = if executable {
        Kind::Exec { size, hash }
    } else {
        Kind::File { size, hash }
    };
    Ok(Planned {
        entry: Entry { path, kind },
        rewritten,
        fixup,
        warning,
    })
}

struct Scanned {
    hash: Hash,
    size: u64,
    mentions: bool,
    text: bool,
}

/// Hashes a large file in chunks, looking for the source path across chunk boundaries.
fn stream_scan(path: &Path, roots: &Roots, progress: &dyn Progress) -> io::Result<Scanned> {
    let mut file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let keep = roots.forms().iter().map(String::len).max().unwrap_or(0);
    let mut buf = vec![0u8; 1 << 20];
    let mut carry: Vec<u8> = Vec::new();
    let (mut size, mut mentions, mut text) = (0u64, false, true);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if size == 0 {
            text = !chunk[..n.min(8192)].contains(&0);
        }
        hasher.update(chunk);
        size += n as u64;
        progress.advance(n as u64);
        carry.extend_from_slice(chunk);
        mentions = mentions || roots.mentioned_in(&carry);
        let drop = carry.len().saturating_sub(keep);
        carry.drain(..drop);
    }
    Ok(Scanned {
        hash: hasher.finalize().into(),
        size,
        mentions,
        text,
    })
}

struct Written {
    sha256: String,
    bytes: u64,
}

fn write_archive(
    app_dir: &Path,
    archive: &Path,
    manifest: &Manifest,
    plan: &[Planned],
    fixups: &[Fixup],
    config: &PackConfig,
    progress: &dyn Progress,
) -> Result<Written, Error> {
    let out_dir = archive.parent().unwrap_or(Path::new("."));
    let write_err = |source| Error::Write {
        path: archive.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out_dir).map_err(write_err)?;
    let temp = tempfile_in(out_dir).map_err(write_err)?;
    let result = (|| {
        let hashing = HashingWriter::new(BufWriter::with_capacity(1 << 20, temp.file.try_clone()?));
        let mut zstd = zstd::Encoder::new(hashing, config.level)?;
        // Multithreaded zstd gives the same bytes for any worker count >= 1, never 0.
        zstd.multithread(config.threads.max(1))?;
        zstd.include_checksum(true)?;
        let mut tar = TarWriter::new(zstd, config.mtime);
        let note = (!fixups.is_empty()).then(|| fixup_note(fixups));
        tar.manifest(&manifest.bytes, note.as_deref())?;
        progress.start("compressing", manifest.content_bytes());
        let by_path: std::collections::HashMap<&str, &Planned> =
            plan.iter().map(|p| (p.entry.path.as_str(), p)).collect();
        for entry in &manifest.entries {
            write_entry(
                &mut tar,
                app_dir,
                entry,
                by_path[entry.path.as_str()],
                progress,
            )?;
        }
        progress.finish();
        let hashing = tar.finish()?.finish()?;
        let (mut inner, sha, bytes) = hashing.into_parts();
        inner.flush()?;
        temp.file.sync_all()?;
        Ok::<_, PackIoError>(Written {
            sha256: hex::encode(sha.finalize()),
            bytes,
        })
    })();
    match result {
        Ok(written) => {
            std::fs::rename(&temp.path, archive).map_err(write_err)?;
            sync_dir(out_dir);
            Ok(written)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&temp.path);
            Err(match e {
                PackIoError::Io(source) => write_err(source),
                PackIoError::Pack(e) => e,
            })
        }
    }
}

/// Keeps a pack error (a changed file) apart from an I/O error on the archive itself.
enum PackIoError {
    Io(io::Error),
    Pack(Error),
}

impl From<io::Error> for PackIoError {
    fn from(e: io::Error) -> Self {
        PackIoError::Io(e)
    }
}

fn write_entry<W: Write>(
    tar: &mut TarWriter<W>,
    app_dir: &Path,
    entry: &Entry,
    planned: &Planned,
    progress: &dyn Progress,
) -> Result<(), PackIoError> {
    let (size, hash) = match entry.kind {
        Kind::File { size, hash } | Kind::Exec { size, hash } => (size, hash),
        _ => return Ok(tar.entry(entry, io::empty())?),
    };
    if let Some(content) = &planned.rewritten {
        progress.advance(size);
        return Ok(tar.entry(entry, content.as_slice())?);
    }
    let changed = || {
        PackIoError::Pack(Error::Changed {
            path: entry.path.clone(),
        })
    };
    let file = File::open(app_dir.join(&entry.path)).map_err(|source| {
        PackIoError::Pack(Error::Unreadable {
            path: entry.path.clone(),
            source,
        })
    })?;
    let mut reader = VerifyingReader {
        inner: file.take(size),
        hasher: blake3::Hasher::new(),
        read: 0,
        progress,
    };
    tar.entry(entry, &mut reader)?;
    let grew = reader.inner.into_inner().read(&mut [0u8; 1])? != 0;
    if reader.read != size || grew || Hash::from(reader.hasher.finalize()) != hash {
        return Err(changed());
    }
    Ok(())
}

/// The fixups as carried in the archive: JSON with artifact paths only, never the source path,
/// so two copies of an app packed in different places still give byte-identical archives.
fn fixup_note(fixups: &[Fixup]) -> String {
    #[derive(Serialize)]
    struct Note<'a> {
        fixups: Vec<(&'a str, String)>,
    }
    let fixups = fixups
        .iter()
        .map(|f| (f.path.as_str(), f.kind.to_string()))
        .collect();
    serde_json::to_string(&Note { fixups }).unwrap_or_default()
}

struct VerifyingReader<'a, R> {
    inner: R,
    hasher: blake3::Hasher,
    read: u64,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for VerifyingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Counts and SHA-256-hashes the compressed bytes on their way to disk.
struct HashingWriter<W> {
    inner: W,
    sha: sha2::Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            sha: sha2::Sha256::new(),
            bytes: 0,
        }
    }
    fn into_parts(self) -> (W, sha2::Sha256, u64) {
        (self.inner, self.sha, self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct TempFile {
    file: File,
    path: PathBuf,
}

/// A new hidden file in `dir`, so a failed pack leaves no half-written `.silver` behind.
fn tempfile_in(dir: &Path) -> io::Result<TempFile> {
    for attempt in 0u32..100 {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!(
            ".silver-pack-{}-{nonce:x}-{attempt}.partial",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok(TempFile { file, path }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("could not create a temporary file"))
}

/// Makes a rename durable. Best effort: some filesystems refuse to fsync directories.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
