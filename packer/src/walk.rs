//! Walks an app directory into a list of source entries: ignore rules applied, names checked,
//! special files refused. Reads metadata only; content is read by `pack`.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::limits::Limits;
use crate::path;

/// One thing found in the source tree, before its content is read.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    /// The artifact path (relative, `/`-separated, validated).
    pub path: String,
    pub kind: SourceKind,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    EmptyDir,
    /// A regular file. Its size and mode come from the `fstat` of the open file when pack reads
    /// it, which spares the walk a `stat` per file.
    File,
    Link {
        target: String,
    },
}

/// How the walk decides what to leave out.
#[derive(Debug, Clone)]
pub struct WalkConfig {
    /// Honor `.gitignore` files (on by default; `--no-gitignore` turns it off).
    pub gitignore: bool,
}

/// Names never packed: VCS metadata, bytecode caches, editor leftovers.
const ALWAYS_IGNORED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".bzr",
    "_darcs",
    "CVS",
    "__pycache__",
];

fn always_ignored_file(name: &[u8]) -> bool {
    name.ends_with(b".pyc")
        || name.ends_with(b".pyo")
        || name.ends_with(b"~")
        || name.ends_with(b".swp")
        || name.ends_with(b".swo")
        || (name.starts_with(b".#"))
        || (name.starts_with(b"#") && name.ends_with(b"#") && name.len() > 1)
        || name == b".DS_Store"
        // Earlier artifacts and pack leftovers, so `silver pack` run inside the app never packs itself.
        || name.ends_with(b".silver")
        || (name.starts_with(b".silver-pack-") && name.ends_with(b".partial"))
}

/// The file name of the per-app ignore file, in gitignore syntax.
pub const SILVERIGNORE: &str = ".silverignore";

/// Lists every entry to pack under `root`, sorted by path bytes.
pub fn walk(root: &Path, config: &WalkConfig, limits: &Limits) -> Result<Vec<SourceEntry>, Error> {
    let _span = tracing::debug_span!("walk", root = %root.display()).entered();
    let mut builder = ignore::WalkBuilder::new(root);
    builder
        .standard_filters(false)
        .hidden(false)
        .parents(false) // the tree must pack the same wherever it sits
        .git_ignore(config.gitignore)
        .git_global(false) // a developer's global excludes must not change the artifact
        .git_exclude(false)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(SILVERIGNORE)
        .filter_entry(|e| {
            let name = e.file_name().as_bytes();
            let is_dir = e.file_type().is_some_and(|t| t.is_dir());
            if is_dir {
                !ALWAYS_IGNORED_DIRS.iter().any(|d| d.as_bytes() == name)
            } else {
                !always_ignored_file(name)
            }
        });
    // Metadata calls dominate a walk: spread them over the cores, then sort.
    let found: std::sync::Mutex<Vec<Result<Found, Error>>> = std::sync::Mutex::new(Vec::new());
    builder
        .threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
        .build_parallel()
        .run(|| {
            let found = &found;
            Box::new(move |item| {
                let result = item
                    .map_err(|e| walk_error(root, e))
                    .and_then(|item| classify(root, &item, limits));
                let stop = result.is_err();
                if let Ok(Some(f)) = result {
                    found.lock().unwrap_or_else(|e| e.into_inner()).push(Ok(f));
                } else if let Err(e) = result {
                    found.lock().unwrap_or_else(|e| e.into_inner()).push(Err(e));
                }
                if stop {
                    ignore::WalkState::Quit
                } else {
                    ignore::WalkState::Continue
                }
            })
        });
    let mut found = found
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .collect::<Result<Vec<Found>, Error>>()?;
    // Sorted first so that which error is reported, and everything after, is deterministic.
    found.sort_by(|a, b| a.entry.path.as_bytes().cmp(b.entry.path.as_bytes()));
    let mut entries = Vec::with_capacity(found.len());
    let mut dirs = Vec::new();
    let mut non_empty: HashSet<String> = HashSet::new();
    for Found { entry, is_dir } in found {
        non_empty.insert(path::parent(&entry.path).to_string());
        if is_dir {
            dirs.push(entry.path);
        } else {
            entries.push(entry);
        }
    }
    entries.extend(
        dirs.into_iter()
            .filter(|d| !non_empty.contains(d))
            .map(|path| SourceEntry {
                path,
                kind: SourceKind::EmptyDir,
            }),
    );
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(entries)
}

struct Found {
    entry: SourceEntry,
    is_dir: bool,
}

/// Checks one walked path: its name, its type, and for symlinks its target. `None` for the root.
fn classify(root: &Path, item: &ignore::DirEntry, limits: &Limits) -> Result<Option<Found>, Error> {
    let rel = item.path().strip_prefix(root).unwrap_or(item.path());
    if rel.as_os_str().is_empty() {
        return Ok(None);
    }
    let rel_bytes = rel.as_os_str().as_bytes();
    let display = String::from_utf8_lossy(rel_bytes).into_owned();
    let path = path::check_path(rel_bytes, limits.max_path_bytes, limits.max_path_depth)
        .map_err(|problem| Error::BadPath {
            path: display.clone(),
            problem,
        })?
        .to_string();
    // The type from readdir (d_type) needs no stat; file systems without it make std stat.
    let ft = match item.file_type() {
        Some(ft) => ft,
        None => std::fs::symlink_metadata(item.path())
            .map_err(|source| Error::Unreadable {
                path: display.clone(),
                source,
            })?
            .file_type(),
    };
    let (kind, is_dir) = if ft.is_dir() {
        (SourceKind::EmptyDir, true)
    } else if ft.is_file() {
        (SourceKind::File, false)
    } else if ft.is_symlink() {
        let target = std::fs::read_link(item.path()).map_err(|source| Error::Unreadable {
            path: display.clone(),
            source,
        })?;
        let target = path::check_link_target(target.as_os_str().as_bytes(), limits.max_path_bytes)
            .map_err(|problem| Error::BadPath {
                path: format!("{display} (symlink target)"),
                problem,
            })?;
        (
            SourceKind::Link {
                target: target.to_string(),
            },
            false,
        )
    } else {
        return Err(Error::SpecialFile {
            path: display,
            kind: special_kind(&ft),
        });
    };
    Ok(Some(Found {
        entry: SourceEntry { path, kind },
        is_dir,
    }))
}

fn special_kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_socket() {
        "socket"
    } else if ft.is_fifo() {
        "FIFO (named pipe)"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

fn walk_error(root: &Path, e: ignore::Error) -> Error {
    let path = error_path(&e).map(|p| p.strip_prefix(root).unwrap_or(&p).display().to_string());
    let source = match e.into_io_error() {
        Some(io) => io,
        None => std::io::Error::other("unreadable ignore rules or directory"),
    };
    Error::Unreadable {
        path: path.unwrap_or_else(|| root.display().to_string()),
        source,
    }
}

fn error_path(e: &ignore::Error) -> Option<PathBuf> {
    match e {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        _ => None,
    }
}
