//! The deployer's one error type. Variants carry the path, app, node or holder they concern;
//! on the agent each maps to an HTTP status, on the client each answer maps back to a variant.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("app `{app}` is being activated by {holder} (since {})", crate::proto::utc(*since))]
    Locked {
        app: String,
        holder: String,
        since: u64,
    },
    #[error("not enough free space on the node: {needed} bytes needed, {available} available")]
    NoSpace { needed: u64, available: u64 },
    #[error("the delta's base manifest {0} is not on this node")]
    BaseMissing(String),
    #[error("the node's store is damaged: {0}")]
    Corrupt(String),
    #[error("node {node} did not accept the credential")]
    Unauthorized { node: String },
    #[error("cannot reach node {node}")]
    Connect {
        node: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("node {node} answered {status}: {message}")]
    Api {
        node: String,
        status: u16,
        message: String,
        hint: Option<String>,
    },
    #[error("`{url}` is not a node address: {why}")]
    BadNode { url: String, why: String },
    #[error(transparent)]
    Artifact(#[from] packer::Error),
    #[error(
        "release {release} of `{app}` failed at {step}: {reason}{}",
        tail(log_tail)
    )]
    Activation {
        app: String,
        release: String,
        step: String,
        reason: String,
        /// The last lines the new process wrote.
        log_tail: Vec<String>,
    },
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut text = String::from("\n  its last output:");
    for line in lines {
        text.push_str("\n  | ");
        text.push_str(line);
    }
    text
}

impl Error {
    pub fn io(path: &Path, source: io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// What to do about it, printed on its own line.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Locked { .. } => {
                "wait for that activation to finish (deploy waits unless given --no-wait)".into()
            }
            Error::NoSpace { .. } => {
                "free space on the node, e.g. `silver gc --node URL --keep 3`".into()
            }
            Error::Unauthorized { .. } => {
                "set SILVER_TOKEN or --token-file to the token in the agent's `token` file".into()
            }
            Error::Connect { .. } => {
                "check that `silver agent` runs there and that --node names its address".into()
            }
            Error::Api { hint: Some(h), .. } => h.clone(),
            Error::BadNode { .. } => {
                "use http://host:port, https://host:port or ssh://[user@]host[:port]".into()
            }
            Error::Artifact(e) => return e.hint(),
            Error::Activation { app, .. } => format!(
                "the previous release keeps serving; see `silver logs {app}` and `silver releases {app}`"
            ),
            _ => return None,
        })
    }
}
