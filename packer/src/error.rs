//! The packer's one error type: every variant names the file, entry or line it concerns.

use std::io;
use std::path::PathBuf;

use crate::manifest::{LinkProblem, ManifestProblem};
use crate::path::PathProblem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `app.ini` is missing or wrong (the types crate reads it).
    #[error(transparent)]
    Config(#[from] silver_types::Error),
    #[error("cannot pack `{path}`: {problem}")]
    BadPath { path: String, problem: PathProblem },
    #[error("cannot pack `{path}`: it is a {kind}; an artifact holds only files, directories and symlinks")]
    SpecialFile { path: String, kind: &'static str },
    #[error("cannot dereference symlink `{path}` -> `{target}`: {why}")]
    Dereference {
        path: String,
        target: String,
        why: &'static str,
    },
    #[error("cannot read `{path}`")]
    Unreadable {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("`{path}` changed while it was being packed")]
    Changed { path: String },
    #[error("the tree cannot be packed: {0}")]
    Tree(ManifestProblem),
    #[error("cannot pack symlink `{path}` -> `{target}`: it {problem}")]
    Link {
        path: String,
        target: String,
        problem: LinkProblem,
    },
    #[error("`{path}` still contains the absolute source path `{root}` (refused by --strict)")]
    SourcePath { path: String, root: String },
    #[error("artifact `{}` refused at {entry}: {reason}", archive.display())]
    Refused {
        archive: PathBuf,
        entry: String,
        reason: Refusal,
    },
    #[error("failed to pass on the content of `{entry}`")]
    Visitor {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("`{}` already exists", path.display())]
    DestinationExists { path: PathBuf },
    #[error("artifact `{}` is {actual}, not {expected}", archive.display())]
    IdMismatch {
        archive: PathBuf,
        expected: String,
        actual: String,
    },
}

/// Why an archive is refused. Each variant is one class of hostile or damaged input.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("it is not a zstd stream, or the stream is corrupt: {0}")]
    Zstd(io::Error),
    #[error("the tar stream is corrupt: {0}")]
    Tar(io::Error),
    #[error("the first entry must be the manifest `.silver-manifest`, found `{0}`")]
    NoManifest(String),
    #[error("the manifest is {size} bytes, over the limit of {max}")]
    ManifestTooLarge { size: u64, max: u64 },
    #[error("invalid manifest: {0}")]
    Manifest(ManifestProblem),
    #[error(
        "the entry is of tar type {0:?}; only regular files, directories and symlinks are allowed"
    )]
    EntryType(String),
    #[error("the entry is not in the manifest (the manifest's next entry is `{expected}`)")]
    Unexpected { expected: String },
    #[error("the entry is not in the manifest (the manifest has no more entries)")]
    Extra,
    #[error("the archive ends before the manifest's entry `{0}`")]
    Missing(String),
    #[error("the entry is a {actual}, the manifest says {expected}")]
    KindMismatch {
        expected: &'static str,
        actual: &'static str,
    },
    #[error("mode {actual:o}, the manifest's kind requires {expected:o}")]
    Mode { expected: u32, actual: u32 },
    #[error("size {actual}, the manifest says {expected}")]
    Size { expected: u64, actual: u64 },
    #[error("content hash {actual}, the manifest says {expected}")]
    Hash { expected: String, actual: String },
    #[error("symlink target `{actual}`, the manifest says `{expected}`")]
    LinkTarget { expected: String, actual: String },
    #[error("the stream is longer than its manifest allows ({limit} bytes): a decompression bomb or oversized headers")]
    StreamTooLong { limit: u64 },
    #[error("data follows the end of the archive")]
    TrailingData,
}

impl Error {
    /// A one-line suggestion of what to do, printed on its own line under the error.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Config(e) => return e.hint(),
            Error::BadPath { .. } | Error::SpecialFile { .. } => {
                "rename or remove it, or add it to `.silverignore`".into()
            }
            Error::Unreadable { .. } => "make it readable (chmod), or add it to `.silverignore`".into(),
            Error::Changed { .. } => "something is writing into the app directory; pack again when it is done".into(),
            Error::Link { .. } => "make the symlink point inside the app, or to an allowed system prefix (see `--system-prefix`), or pack the file it names in its place with `--dereference`, or add it to `.silverignore`".into(),
            Error::Dereference { .. } => "install what it points to on this machine (a Debian package's links point into the packages it depends on), or add the symlink to `.silverignore`".into(),
            Error::SourcePath { .. } => "rebuild that file relative to the app, or drop --strict to accept it with a warning".into(),
            Error::Refused { .. } => "do not deploy this artifact; rebuild it with `silver pack` from trusted sources".into(),
            Error::DestinationExists { .. } => "choose a new destination; unpack never writes into an existing directory".into(),
            Error::IdMismatch { .. } => "the archive is not the artifact you named; check the id you were given".into(),
            _ => return None,
        })
    }
}

impl silver_types::Hint for Error {
    fn hint(&self) -> Option<String> {
        Error::hint(self)
    }
    fn refused(&self) -> bool {
        matches!(self, Error::Refused { .. } | Error::IdMismatch { .. })
    }
}
