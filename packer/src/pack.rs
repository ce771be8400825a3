//! `pack`: app directory in, deterministic `.silver` archive out.
//!
//! One read of every file. A walker thread lists the tree already in manifest order, reader
//! threads load, relocate and hash files as they come (several at once, handed over in order),
//! and the main thread frames them as tar while zstd's workers compress: walking, reading,
//! hashing and compression overlap. The content becomes the archive's second zstd frame, in a
//! temp file. Once every hash is known the manifest is compressed as the first frame and written
//! into the archive, and the content is copied in right behind zstd's writes, so the archive is
//! done almost as soon as zstd is.
//! Memory stays flat: at most a bounded queue of small files is in flight.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::Serialize;
use sha2::Digest;

use crate::archive::TarWriter;
use crate::error::Error;
use crate::limits::Limits;
use crate::manifest::{Entry, Hash, Kind, Manifest, ManifestProblem};
use crate::ordered::{self, PoolConfig};
use crate::relocate::{self, Fixup, Roots};
use crate::walk::{self, SourceKind, WalkConfig};
use crate::Progress;
use silver_types::appini::{self, AppIni};

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
    /// Threads that read, relocate and hash files, at least 1. The output is identical for any
    /// count.
    pub readers: usize,
}

impl Default for PackConfig {
    fn default() -> Self {
        PackConfig {
            walk: WalkConfig {
                gitignore: true,
                dereference: false,
            },
            strict: false,
            limits: Limits::default(),
            mtime: 0,
            level: 3,
            threads: cores() as u32,
            // The writer and zstd's workers need the other cores. The cap of 4 keeps memory
            // small; one writer thread cannot take much more (not measured: 2-core machines).
            readers: cores().saturating_sub(1).clamp(1, 4),
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What `silver pack --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PackReport {
    pub id: String,
    pub app: silver_types::AppName,
    pub archive: PathBuf,
    pub archive_sha256: String,
    pub files: usize,
    pub entries: usize,
    pub content_bytes: u64,
    pub archive_bytes: u64,
    pub fixups: Vec<Fixup>,
    pub warnings: Vec<String>,
}

/// Files up to this size are loaded whole by a reader thread (and can be relocated); larger
/// ones are streamed by the writer (and only scanned for the source path).
const WHOLE_FILE_MAX: u64 = 1 << 20;
/// The walker hands entries to the readers in batches of `BATCH_FILES`, and readers hand files
/// to the writer in parts of at most that many files or `BATCH_BYTES` loaded bytes (a wake-up per
/// file cost more than the hashing). Each part waiting for the writer holds one of `QUEUE_DEPTH`
/// tokens: memory in flight stays under `(QUEUE_DEPTH + 1 + readers) * (BATCH_BYTES +
/// WHOLE_FILE_MAX)`, whatever the size of the tree (see `ordered`).
const BATCH_FILES: usize = 32;
const BATCH_BYTES: usize = 1 << 20;
const QUEUE_DEPTH: usize = 4;
/// Batches the walker may run ahead of the readers (paths only: a few hundred KiB at most).
const WALK_QUEUE: usize = 4096 / BATCH_FILES;

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
    // The runtime's settings are checked now, so a bad value fails the pack, not the deploy.
    silver_types::appconfig::AppConfig::from_ini(&ini)?;
    check_runner(app_dir, &ini)?;
    let app = appini::app_name(app_dir, &ini)?;
    let roots = source_roots(app_dir)?;

    let write_err = |source| Error::Write {
        path: out_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out_dir).map_err(write_err)?;
    let content = TempFile::new(out_dir).map_err(write_err)?;
    let growing = Growing::new(&content.file);
    // Once every hash is known, the manifest and its frame are made, and the archive is
    // written behind zstd's workers while they finish the last of the content.
    let (
        Prepared {
            manifest,
            fixups,
            warnings: content_warnings,
            head: _,
        },
        joined,
    ) = write_content(app_dir, &roots, config, progress, &growing, |packed| {
        let prepared = prepare(packed, config)?;
        let archive = out_dir.join(format!("{app}-{}.silver", prepared.manifest.id.short()));
        let joined = join_behind(archive, &prepared.head, &growing)?;
        Ok((prepared, joined))
    })?;
    let mut warnings = ini.warnings.clone();
    warnings.extend(content_warnings);
    warnings.extend(venv_warning(app_dir));
    tracing::info!(app = %app, id = %manifest.id, entries = manifest.entries.len(), content_bytes = manifest.content_bytes(), "manifest built");

    let Joined {
        archive,
        target,
        written,
    } = joined;
    target.persist(&archive).map_err(|source| Error::Write {
        path: archive.clone(),
        source,
    })?;
    drop(content);
    tracing::debug!(archive_bytes = written.bytes, "archive written");
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

/// A virtualenv made by a Python outside `/usr` (pyenv, conda, Homebrew) runs on a node only if
/// the node has that Python version, at a path the app's user can enter.
fn venv_warning(app_dir: &Path) -> Option<String> {
    let venv = crate::venv::find(app_dir).filter(crate::venv::Venv::made_outside_usr)?;
    let name = venv
        .dir
        .strip_prefix(app_dir)
        .unwrap_or(&venv.dir)
        .display()
        .to_string();
    Some(format!(
        "virtualenv `{name}` was made by {}/python (Python {}): a node runs it only with its own Python {}; build it with the node's python3 (`python3 -m venv`), or leave it out with .silverignore and vendor packages into lib/python",
        venv.home.as_deref().unwrap_or("?"),
        venv.version.as_deref().unwrap_or("?"),
        venv.python().as_deref().unwrap_or("of that version"),
    ))
}

/// A runner that is missing, a directory, or not Python would pack fine and then fail on the
/// node in a gunicorn traceback that never mentions app.ini: refuse it now, naming the line.
fn check_runner(app_dir: &Path, ini: &AppIni) -> Result<(), Error> {
    let platform = ini.production("platform");
    let php = silver_types::appconfig::platform(ini) == "php";
    let Some(v) = ini.production("runner") else {
        return match platform.filter(|_| php) {
            // Every dynamic request of a PHP app goes through its runner: without one there
            // is nothing to run.
            Some(p) => Err(ini_error(ini, p.line, "platform", &p.value, "needs a `runner` (the PHP file every request goes through, such as site/runner.php inside php_root)")),
            None => Ok(()),
        };
    };
    let err = |rule: &'static str| {
        Error::from(silver_types::Error::AppIni {
            path: ini.path.clone(),
            line: v.line,
            problem: silver_types::IniProblem::value(
                "runner",
                &v.value,
                silver_types::Rule::Fixed(rule),
            ),
        })
    };
    let path = app_dir.join(&v.value);
    match std::fs::metadata(&path) {
        Err(_) => return Err(err("does not exist in the app")),
        Ok(m) if !m.is_file() => return Err(err("is not a file")),
        Ok(_) => {}
    }
    let python = matches!(
        silver_types::appconfig::platform(ini).as_str(),
        "python" | "wsgi"
    );
    if python && !v.value.ends_with(".py") {
        return Err(err("is not a Python file: a runner is a WSGI `.py` file exposing `application` (other programs go in [processes])"));
    }
    if php {
        check_php_runner(app_dir, ini, &v.value).map_err(err)?;
    }
    Ok(())
}

/// A PHP runner is a `.php` file inside `php_root` (when there is one): php-fpm runs nothing
/// else, and a runner outside the root would see none of the files it dispatches to.
fn check_php_runner(app_dir: &Path, ini: &AppIni, runner: &str) -> Result<(), &'static str> {
    if !runner.ends_with(".php") {
        return Err(
            "is not a PHP file: a PHP app's runner is the `.php` file every request goes through",
        );
    }
    let Some(root) = ini.production("php_root") else {
        return Ok(());
    };
    let root = root.value.trim_end_matches('/');
    let inside = match root {
        "" | "." => true,
        root => Path::new(runner).starts_with(root),
    };
    let root_is_dir = app_dir.join(root).is_dir();
    match (inside, root_is_dir) {
        (true, true) => Ok(()),
        (_, false) => Err("names a php_root that is not a directory of the app"),
        (false, true) => Err("is outside php_root: the runner must be a file inside php_root"),
    }
}

fn ini_error(ini: &AppIni, line: usize, key: &str, value: &str, rule: &'static str) -> Error {
    Error::from(silver_types::Error::AppIni {
        path: ini.path.clone(),
        line,
        problem: silver_types::IniProblem::value(key, value, silver_types::Rule::Fixed(rule)),
    })
}
/// The manifest, checked, and its compressed frame: everything the join needs.
struct Prepared {
    manifest: Manifest,
    fixups: Vec<Fixup>,
    warnings: Vec<String>,
    /// Frame 1: the manifest's tar member, zstd-compressed.
    head: Vec<u8>,
}

fn prepare(packed: Packed, config: &PackConfig) -> Result<Prepared, Error> {
    let manifest = Manifest::from_entries(packed.entries);
    // The checks a node makes (symlinks, counts, sizes) before the archive is named.
    check_tree(&manifest, &config.limits)?;
    let mut fixups = packed.fixups;
    fixups.sort_by(|a, b| a.path.cmp(&b.path));
    let note = (!fixups.is_empty()).then(|| fixup_note(&fixups));
    let head = (|| -> io::Result<Vec<u8>> {
        let member =
            crate::archive::manifest_member(&manifest.bytes, note.as_deref(), config.mtime)?;
        // The manifest is mostly hex hashes and paths, where zstd finds only short matches:
        // level 1 makes it smaller than level 3 (276,885 against 283,972 bytes for 6,551
        // entries) at twice the speed, and this frame is made while the content's last jobs
        // still compete for the cores. One thread and one fixed setting: deterministic.
        let mut zstd = zstd::Encoder::new(Vec::new(), MANIFEST_LEVEL)?;
        zstd.include_checksum(true)?;
        zstd.write_all(&member)?;
        zstd.finish()
    })()
    .map_err(|source| Error::Write {
        path: PathBuf::from("(manifest frame)"),
        source,
    })?;
    Ok(Prepared {
        manifest,
        fixups,
        warnings: packed.warnings,
        head,
    })
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

/// The tree's shape against the limits a node enforces: symlinks that escape, entry counts,
/// total bytes. A tree that fails is refused before any archive is named.
fn check_tree(manifest: &Manifest, limits: &Limits) -> Result<(), Error> {
    manifest.validate(limits).map_err(|problem| match problem {
        ManifestProblem::Link {
            path,
            target,
            problem,
            ..
        } => Error::Link {
            path,
            target,
            problem,
        },
        other => Error::Tree(other),
    })
}

/// A link with an absolute target inside the app is made relative (or recorded as a system
/// link); the walker does this as it goes.
fn relocate_link(
    roots: &Roots,
    source: &mut walk::SourceEntry,
    limits: &Limits,
    fixups: &mut Vec<Fixup>,
) {
    if let SourceKind::Link { target } = &mut source.kind {
        let (new, fixup) =
            relocate::relocate_link(roots, &source.path, target, |t| limits.is_system_target(t));
        *target = new;
        fixups.extend(fixup);
    }
}

/// What a reader thread hands the writer, in manifest order.
enum Loaded {
    NoContent,
    Whole {
        content: Vec<u8>,
        hash: Hash,
        executable: bool,
        fixup: Option<Fixup>,
        warning: Option<String>,
    },
    /// Too large to load: the writer streams it from the open file.
    Large {
        file: File,
        size: u64,
        executable: bool,
    },
}

struct Packed {
    entries: Vec<Entry>,
    fixups: Vec<Fixup>,
    warnings: Vec<String>,
}

/// Frames and compresses the whole tree into `out`; once every entry is hashed, `then` runs
/// on the packed entries while zstd's workers finish.
fn write_content<R: Send>(
    app_dir: &Path,
    roots: &Roots,
    config: &PackConfig,
    progress: &dyn Progress,
    out: &Growing,
    then: impl FnOnce(Packed) -> Result<R, Error>,
) -> Result<R, Error> {
    // The total is unknown until files are opened: the bar shows bytes and rate.
    progress.start("packing", 0);
    let (batches_tx, batches_rx) = mpsc::sync_channel::<Vec<walk::SourceEntry>>(WALK_QUEUE);
    let load = |source: &walk::SourceEntry| {
        let loaded = load(app_dir, roots, source, config);
        let held = match &loaded {
            Ok(Loaded::Whole { content, .. }) => content.len(),
            _ => 0,
        };
        (loaded, held)
    };
    let pool = PoolConfig {
        readers: config.readers,
        part_bytes: BATCH_BYTES,
        parts_in_flight: QUEUE_DEPTH,
    };
    let result = std::thread::scope(|scope| {
        // A consumer that stops hangs up its channel; the thread feeding it then stops too.
        let walker = scope.spawn(move || walk_in_batches(app_dir, roots, config, batches_tx));
        let loaded = ordered::load_in_order(scope, batches_rx, pool, &load);
        let encoder = content_encoder(BufWriter::with_capacity(1 << 20, out), config)
            .map_err(archive_write_err)?;
        let mut tar = TarWriter::new(encoder, config.mtime);
        let mut packed = Packed {
            entries: Vec::new(),
            fixups: vec![],
            warnings: vec![],
        };
        // Owned here, so that an early return drops it before the scope joins the readers:
        // they stop, instead of waiting for a writer that is gone.
        for (source, loaded) in loaded.flatten() {
            let entry = write_one(
                &mut tar,
                roots,
                &source,
                loaded?,
                config,
                progress,
                &mut packed,
            )?;
            packed.entries.push(entry);
        }
        // The walk's own error (an unreadable directory, a bad name) ended the stream early.
        let link_fixups = walker.join().expect("the walker does not panic")?;
        packed.fixups.extend(link_fixups);
        let finishing = scope.spawn(move || finish_archive(tar, out));
        let then = then(packed);
        finishing
            .join()
            .expect("finishing zstd does not panic")
            .map_err(archive_write_err)?;
        then
    });
    progress.finish();
    result
}

/// Walks the tree, relocating links, and sends it in batches of `BATCH_FILES`; returns the
/// link fixups. A consumer that stops hangs up its channel, and the walk then stops too.
fn walk_in_batches(
    app_dir: &Path,
    roots: &Roots,
    config: &PackConfig,
    batches_tx: mpsc::SyncSender<Vec<walk::SourceEntry>>,
) -> Result<Vec<Fixup>, Error> {
    let mut fixups = Vec::new();
    let mut batch = Vec::with_capacity(BATCH_FILES);
    walk::stream(app_dir, &config.walk, &config.limits, &mut |mut source| {
        relocate_link(roots, &mut source, &config.limits, &mut fixups);
        batch.push(source);
        batch.len() < BATCH_FILES
            || batches_tx
                .send(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(BATCH_FILES),
                ))
                .is_ok()
    })?;
    if !batch.is_empty() {
        let _ = batches_tx.send(batch);
    }
    Ok(fixups)
}

/// Ends the tar stream and zstd's frame, then tells `out`'s reader whether it is complete.
fn finish_archive<W: Write>(
    tar: TarWriter<zstd::Encoder<'static, BufWriter<W>>>,
    out: &Growing,
) -> io::Result<()> {
    // Ends the stream for the join even if finishing panics, so it never waits forever.
    let _ended = EndOnDrop(out);
    let finished = tar
        .finish()
        .and_then(|zstd| zstd.finish())
        .and_then(|mut w| w.flush());
    out.end(finished.is_ok());
    finished
}

/// Writes the archive of a manifest whose file contents already exist elsewhere (a pulled
/// artifact's objects): the same two frames `pack` writes, so its reader and its limits apply.
/// `content` opens a file's verified bytes by hash. The pack report's note is not in the
/// manifest, so it is not restored; the id is the manifest's and does not change.
pub fn write_archive<W: Write>(
    manifest: &Manifest,
    mut out: W,
    config: &PackConfig,
    mut content: impl FnMut(&crate::Hash) -> io::Result<File>,
) -> Result<W, Error> {
    (|| -> io::Result<W> {
        let member = crate::archive::manifest_member(&manifest.bytes, None, config.mtime)?;
        let mut head = zstd::Encoder::new(&mut out, MANIFEST_LEVEL)?;
        head.include_checksum(true)?;
        head.write_all(&member)?;
        head.finish()?;
        let mut tar = TarWriter::new(content_encoder(out, config)?, config.mtime);
        for entry in &manifest.entries {
            match entry.kind.content_hash() {
                Some(hash) => tar.entry(entry, content(&hash)?.take(entry.size()))?,
                None => tar.entry(entry, io::empty())?,
            }
        }
        tar.finish()?.finish()
    })()
    .map_err(archive_write_err)
}

/// The zstd settings of the content frame: level 3, with a 4 MiB window (the level-3 default
/// is 2 MiB) to find repeats between files, and 4 MiB jobs so every core stays busy. Bigger
/// windows or hash tables compressed better but cost more time than they saved on two cores;
/// the measurements are in BENCHMARKS.md.
fn content_encoder<W: Write>(out: W, config: &PackConfig) -> io::Result<zstd::Encoder<'static, W>> {
    use zstd::zstd_safe::CParameter;
    let mut zstd = zstd::Encoder::new(out, config.level)?;
    // Multithreaded zstd gives the same bytes for any worker count >= 1 (never 0, which is
    // the single-threaded format).
    zstd.multithread(config.threads.max(1))?;
    zstd.window_log(WINDOW_LOG)?;
    zstd.set_parameter(CParameter::HashLog(17))?;
    zstd.set_parameter(CParameter::JobSize(4 << 20))?;
    zstd.include_checksum(true)?;
    Ok(zstd)
}

/// The zstd level of the manifest's frame, whatever the content's level.
const MANIFEST_LEVEL: i32 = 1;

/// The compression window of written archives; readers accept up to `Limits::max_window_log`.
pub const WINDOW_LOG: u32 = 22;

fn load(
    app_dir: &Path,
    roots: &Roots,
    source: &walk::SourceEntry,
    config: &PackConfig,
) -> Result<Loaded, Error> {
    let SourceKind::File = source.kind else {
        return Ok(Loaded::NoContent);
    };
    let path = &source.path;
    let unreadable = |e| Error::Unreadable {
        path: path.clone(),
        source: e,
    };
    let mut file = File::open(app_dir.join(path)).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    let executable = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0;
    if meta.len() > WHOLE_FILE_MAX {
        return Ok(Loaded::Large {
            file,
            size: meta.len(),
            executable,
        });
    }
    let mut content = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut content).map_err(unreadable)?;
    let mut fixup = None;
    // One scan for the source path: most files never mention it, and then nothing else runs.
    let mut mentions = roots.mentioned_in(&content);
    if relocate::is_record(path) {
        let text = String::from_utf8_lossy(&content).into_owned();
        let read = |artifact: &str| std::fs::read(app_dir.join(artifact)).ok();
        if let Some((new, f)) = relocate::relocate_record(roots, path, &text, read) {
            content = new;
            fixup = Some(f);
        }
    }
    if mentions && fixup.is_none() {
        if let Some((new, f)) = relocate::relocate_content(roots, path, &content) {
            content = new;
            fixup = Some(f);
            mentions = roots.mentioned_in(&content);
        }
    }
    let text = !content[..content.len().min(8192)].contains(&0);
    let warning = source_path_warning(roots, path, text && mentions, config.strict)?;
    Ok(Loaded::Whole {
        hash: Hash::of(&content),
        content,
        executable,
        fixup,
        warning,
    })
}

fn source_path_warning(
    roots: &Roots,
    path: &str,
    mentions: bool,
    strict: bool,
) -> Result<Option<String>, Error> {
    match (mentions, strict) {
        (false, _) => Ok(None),
        (true, true) => Err(Error::SourcePath { path: path.into(), root: roots.forms()[0].clone() }),
        (true, false) => Ok(Some(format!("`{path}` still contains the absolute source path; it may not work from another directory"))),
    }
}

#[allow(clippy::too_many_arguments)]
fn write_one<W: Write>(
    tar: &mut TarWriter<W>,
    roots: &Roots,
    source: &walk::SourceEntry,
    loaded: Loaded,
    config: &PackConfig,
    progress: &dyn Progress,
    packed: &mut Packed,
) -> Result<Entry, Error> {
    let path = source.path.clone();
    match &source.kind {
        SourceKind::EmptyDir => {
            return write_plain(
                tar,
                Entry {
                    path,
                    kind: Kind::Dir,
                },
            )
        }
        SourceKind::Link { target } => {
            return write_plain(
                tar,
                Entry {
                    path,
                    kind: Kind::Link {
                        target: target.clone(),
                    },
                },
            )
        }
        SourceKind::File => {}
    };
    let entry = match loaded {
        Loaded::Whole {
            content,
            hash,
            executable,
            fixup,
            warning,
        } => {
            packed.fixups.extend(fixup);
            packed.warnings.extend(warning);
            let entry = Entry {
                path,
                kind: file_kind(executable, content.len() as u64, hash),
            };
            tar.entry(&entry, content.as_slice())
                .map_err(archive_write_err)?;
            progress.advance(content.len() as u64);
            entry
        }
        Loaded::Large {
            file,
            size,
            executable,
        } => {
            let large = Large {
                file,
                size,
                executable,
            };
            write_large(tar, roots, path, large, config, progress, packed)?
        }
        Loaded::NoContent => unreachable!("files always load content"),
    };
    Ok(entry)
}

/// A file too big to hold in memory, opened and measured.
struct Large {
    file: File,
    size: u64,
    executable: bool,
}

/// Streams a large file into the archive. The header needs the size first: exactly that many
/// bytes are streamed, hashed on the way, and a file that grew or shrank meanwhile is refused.
fn write_large<W: Write>(
    tar: &mut TarWriter<W>,
    roots: &Roots,
    path: String,
    large: Large,
    config: &PackConfig,
    progress: &dyn Progress,
    packed: &mut Packed,
) -> Result<Entry, Error> {
    let Large {
        file,
        size,
        executable,
    } = large;
    let unreadable = |e| Error::Unreadable {
        path: path.clone(),
        source: e,
    };
    let mut reader = Streaming {
        inner: file.take(size),
        hasher: blake3::Hasher::new(),
        read: 0,
        progress,
        roots,
        tail: vec![],
        mentions: false,
        text: None,
    };
    // The hash is filled in after streaming; the tar header only needs the size.
    let placeholder = Entry {
        path: path.clone(),
        kind: file_kind(executable, size, Hash([0; 32])),
    };
    tar.entry(&placeholder, &mut reader)
        .map_err(archive_write_err)?;
    let grew = reader
        .inner
        .get_mut()
        .read(&mut [0u8; 1])
        .map_err(unreadable)?
        != 0;
    if reader.read != size || grew {
        return Err(Error::Changed { path });
    }
    let mentions = reader.mentions && reader.text.unwrap_or(true);
    packed
        .warnings
        .extend(source_path_warning(roots, &path, mentions, config.strict)?);
    Ok(Entry {
        path,
        kind: file_kind(executable, size, reader.hasher.finalize().into()),
    })
}

fn file_kind(executable: bool, size: u64, hash: Hash) -> Kind {
    if executable {
        Kind::Exec { size, hash }
    } else {
        Kind::File { size, hash }
    }
}

fn archive_write_err(source: io::Error) -> Error {
    Error::Write {
        path: PathBuf::from("(archive)"),
        source,
    }
}

fn write_plain<W: Write>(tar: &mut TarWriter<W>, entry: Entry) -> Result<Entry, Error> {
    tar.entry(&entry, io::empty()).map_err(|e| Error::Write {
        path: PathBuf::from("(archive)"),
        source: e,
    })?;
    Ok(entry)
}

/// Reads a large file into the tar stream, hashing it and looking for the source path across
/// chunk boundaries.
struct Streaming<'a> {
    inner: io::Take<File>,
    hasher: blake3::Hasher,
    read: u64,
    progress: &'a dyn Progress,
    roots: &'a Roots,
    tail: Vec<u8>,
    mentions: bool,
    text: Option<bool>,
}

impl Read for Streaming<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = &buf[..n];
        self.text
            .get_or_insert_with(|| !chunk[..n.min(8192)].contains(&0));
        self.hasher.update(chunk);
        self.read += n as u64;
        self.progress.advance(n as u64);
        if !self.mentions {
            let keep = self
                .roots
                .forms()
                .iter()
                .map(String::len)
                .max()
                .unwrap_or(0);
            self.tail.extend_from_slice(chunk);
            self.mentions = self.roots.mentioned_in(&self.tail);
            let drop = self.tail.len().saturating_sub(keep);
            self.tail.drain(..drop);
        }
        Ok(n)
    }
}

struct Written {
    sha256: String,
    bytes: u64,
}

/// The archive under its temporary name, complete, the name it gets, and what was written.
struct Joined {
    archive: PathBuf,
    target: TempFile,
    written: Written,
}

/// Writes frame 1 (the manifest, `head`) into a new temporary file beside `archive`, then
/// appends frame 2 (the content) as zstd writes it, hashing both on the way.
///
/// The content is read back from the page cache behind the writer, so by the time zstd's
/// workers finish, most of the archive is already written and hashed.
fn join_behind(archive: PathBuf, head: &[u8], content: &Growing) -> Result<Joined, Error> {
    use std::os::unix::fs::FileExt;
    let write_err = |source| Error::Write {
        path: archive.clone(),
        source,
    };
    let out_dir = archive.parent().unwrap_or(Path::new("."));
    let target = TempFile::new(out_dir).map_err(write_err)?;
    let written = (|| -> io::Result<Written> {
        let mut out = &target.file;
        let mut sha = sha2::Sha256::new();
        sha.update(head);
        out.write_all(head)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        loop {
            let (available, ended) = content.wait_past(offset)?;
            while offset < available {
                let want = buf.len().min((available - offset) as usize);
                let n = content.file.read_at(&mut buf[..want], offset)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                sha.update(&buf[..n]);
                out.write_all(&buf[..n])?;
                offset += n as u64;
            }
            if ended {
                break;
            }
        }
        // No fsync: an artifact is a build output, named by content and checked by `verify`;
        // the rename that names it still makes it appear whole or not at all.
        Ok(Written {
            sha256: hex::encode(sha.finalize()),
            bytes: head.len() as u64 + offset,
        })
    })()
    .map_err(write_err)?;
    Ok(Joined {
        archive,
        target,
        written,
    })
}

/// The content frame's file while zstd writes it: how much is written, and whether that is
/// all, so that the join can read behind the writer.
struct Growing<'f> {
    file: &'f File,
    state: std::sync::Mutex<Grown>,
    grew: std::sync::Condvar,
}

#[derive(Default)]
struct Grown {
    bytes: u64,
    /// `Some(true)` once every byte is written, `Some(false)` if writing failed.
    end: Option<bool>,
}

impl<'f> Growing<'f> {
    fn new(file: &'f File) -> Self {
        Growing {
            file,
            state: Default::default(),
            grew: Default::default(),
        }
    }

    /// Marks the stream complete or failed; the first call wins.
    fn end(&self, complete: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.end.get_or_insert(complete);
        self.grew.notify_all();
    }

    /// Waits until more than `offset` bytes are written or the stream ends, and returns the
    /// bytes written and whether that is all of them.
    fn wait_past(&self, offset: u64) -> io::Result<(u64, bool)> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match state.end {
                Some(false) => return Err(io::Error::other("writing the content frame failed")),
                Some(true) => return Ok((state.bytes, true)),
                None if state.bytes > offset => return Ok((state.bytes, false)),
                None => state = self.grew.wait(state).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

impl Write for &Growing<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (&mut &*self.file).write(buf)?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.bytes += n as u64;
        self.grew.notify_all();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Ends a stream as failed unless it was already ended: a panic cannot leave the join waiting.
struct EndOnDrop<'a, 'f>(&'a Growing<'f>);

impl Drop for EndOnDrop<'_, '_> {
    fn drop(&mut self) {
        self.0.end(false);
    }
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

/// A hidden file in the output directory, removed unless persisted: a failed pack leaves nothing.
struct TempFile {
    file: File,
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn new(dir: &Path) -> io::Result<TempFile> {
        // An unguessable name, created with O_EXCL: nobody can plant a link where we write.
        let (file, path) = safefs::temp_file_in(dir, 0o644)?
            .keep()
            .map_err(|e| e.error)?;
        Ok(TempFile {
            file,
            path,
            keep: false,
        })
    }

    /// Moves the file to `to` atomically: `to` is the old file or the new one, never missing.
    fn persist(mut self, to: &Path) -> io::Result<()> {
        // rename(2) over an existing file makes ext4 allocate and start writing the new file's
        // blocks first (its `auto_da_alloc` guard for programs that never fsync): 20-25 ms for
        // an 18 MB archive, more than the whole join. An archive is a build output we never
        // fsync anyway, so an existing one is swapped with renameat2(RENAME_EXCHANGE), which
        // skips that guard, and the old one, now under the temporary name, is removed on drop.
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        use rustix::io::Errno;
        // Only a regular file is swapped: a directory or link in the way makes rename(2) fail,
        // as it always did, instead of being moved under the temporary name.
        let replaces_file = std::fs::symlink_metadata(to).is_ok_and(|m| m.is_file());
        let exchanged = match replaces_file {
            true => renameat_with(CWD, &self.path, CWD, to, RenameFlags::EXCHANGE),
            false => Err(Errno::NOENT),
        };
        match exchanged {
            Ok(()) => return Ok(()),
            // Nothing to replace, or a filesystem or kernel without the flag.
            Err(Errno::NOENT | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
        std::fs::rename(&self.path, to)?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes a rename durable. Best effort: some filesystems refuse to fsync directories.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
