//! The registry crate's one error type: every variant names the registry, reference, blob or
//! file it is about.

use std::path::PathBuf;

use silver_types::Said;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{given}` is not a digest: write sha256:<64 lowercase hex digits> (or sha512:<128>)")]
    BadDigest { given: String },
    #[error("`{given}` is not a registry reference: {why}")]
    BadReference { given: String, why: &'static str },
    #[error("cannot reach registry {registry}: {source}")]
    Unreachable {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "registry {registry} refused to {doing}: HTTP {status}{}",
        said_suffix(said)
    )]
    Refused {
        registry: String,
        doing: String,
        status: u16,
        said: Option<Said>,
    },
    #[error("registry {registry} wants credentials{}", if *had_credentials { " and refused the ones given" } else { ", and none were found" })]
    Unauthorized {
        registry: String,
        had_credentials: bool,
    },
    #[error("the registry's token service {realm} refused: {why}")]
    Token { realm: String, why: Said },
    #[error("cannot read registry credentials in {}: {why}", path.display())]
    AuthFile { path: PathBuf, why: Said },
    #[error("registry credentials in {} are readable by other users (mode {mode:o})", path.display())]
    AuthFileOpen { path: PathBuf, mode: u32 },
    #[error("{what} from {reference} has digest {actual}, not the {expected} it was asked for")]
    DigestMismatch {
        reference: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{reference} is not a silver artifact (its artifact type is {})", found.as_deref().unwrap_or("none"))]
    NotSilver {
        reference: String,
        found: Option<String>,
    },
    #[error("{reference} is not laid out as silver lays out an artifact: {why}")]
    BadLayout { reference: String, why: String },
    #[error("the manifest {reference} holds hashes to {actual}, not the {expected} its annotation names")]
    WrongArtifact {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("{what} from {reference} is over the limit of {limit} bytes")]
    TooLarge {
        reference: String,
        what: String,
        limit: u64,
    },
    #[error("{reference} names no digest: pull and deploy take REGISTRY/REPO@sha256:…, since a tag can move")]
    NoDigest { reference: String },
    #[error("I/O error on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Artifact(#[from] packer::Error),
    #[error("a worker thread failed: {what}")]
    Worker { what: String },
}

fn said_suffix(said: &Option<Said>) -> String {
    said.as_ref().map(|s| format!(": {s}")).unwrap_or_default()
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl silver_types::Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Unreachable { registry, .. } => Some(format!(
                "check that {registry} is up; a registry off loopback must speak HTTPS unless named with --insecure-registry"
            )),
            Error::Unauthorized { registry, had_credentials: false } => Some(format!(
                "put credentials for {registry} in ~/.docker/config.json or the file REGISTRY_AUTH_FILE names (`docker login` or `skopeo login` write them)"
            )),
            Error::Unauthorized { .. } => Some("check the user and password or token stored for it".into()),
            Error::AuthFileOpen { path, .. } => Some(format!("chmod 600 {}", path.display())),
            Error::DigestMismatch { .. } | Error::WrongArtifact { .. } => Some(
                "the registry served other bytes than were pushed: nothing was kept; push the artifact again".into(),
            ),
            Error::NotSilver { .. } => Some("push it with `silver push`".into()),
            _ => None,
        }
    }
}
