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
    #[error("`{name}` is not an app name: {rule}")]
    BadAppName {
        name: String,
        rule: packer::names::NameRule,
    },
    #[error("`{given}` is not an artifact id: {rule}")]
    BadId {
        given: String,
        rule: packer::names::IdRule,
    },
    #[error("no artifact on this node has an id starting with {prefix}")]
    UnknownId { prefix: packer::IdPrefix },
    #[error("{count} artifacts on this node have ids starting with {prefix}")]
    AmbiguousId {
        prefix: packer::IdPrefix,
        count: usize,
    },
    #[error("app `{app}` has never been deployed to this node")]
    UnknownApp { app: packer::AppName },
    #[error("the request body is not what {route} takes: {why}")]
    BadBody { route: String, why: String },
    #[error("artifact {id} was packed for app `{packed}`, not `{app}`")]
    OtherApp {
        app: packer::AppName,
        packed: String,
        id: packer::Id,
    },
    #[error("apps run as `{user}`, who cannot reach the node root `{}`: `{}` is mode {mode:04o}", root.display(), dir.display())]
    Unreachable {
        root: PathBuf,
        dir: PathBuf,
        mode: u32,
        user: String,
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
        app: packer::AppName,
        holder: String,
        since: u64,
    },
    #[error("the app is being activated by {holder} (since {})", crate::proto::utc(*since))]
    Busy { holder: String, since: u64 },
    #[error("not enough free space on the node: {needed} bytes needed, {available} available")]
    NoSpace { needed: u64, available: u64 },
    #[error("the delta's base manifest {0} is not on this node")]
    BaseMissing(String),
    #[error("the node's store is damaged: {0}")]
    Corrupt(String),
    #[error("no token was given for node {node}")]
    NoToken { node: String },
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
        app: packer::AppName,
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
            Error::Locked { .. } | Error::Busy { .. } => {
                "wait for that activation to finish (deploy waits unless given --no-wait)".into()
            }
            Error::NoSpace { .. } => {
                "free space on the node, e.g. `silver gc --node URL --keep 3`".into()
            }
            Error::Unauthorized { .. } | Error::NoToken { .. } => {
                "set SILVER_TOKEN or --token-file to the token in the agent's `token` file".into()
            }
            Error::Connect { .. } => {
                "check that `silver agent` runs there and that --node names its address".into()
            }
            Error::Api { hint: Some(h), .. } => h.clone(),
            Error::Api { status: 404, .. } => {
                "`silver releases APP` lists the releases the node has".into()
            }
            Error::Api { status: 400, .. } => {
                "check the app name, id or location given; `silver help` shows each command's forms"
                    .into()
            }
            Error::BadNode { .. } => {
                "use http://host:port, https://host:port or ssh://[user@]host[:port]".into()
            }
            Error::Artifact(e) => return e.hint(),
            Error::BadAppName { .. } => format!("app names are {}", packer::AppName::RULES),
            Error::BadId { .. } => {
                "give the id as printed: b3: and at least 12 hex digits (or the digits alone)".into()
            }
            Error::UnknownId { .. } => {
                "`silver releases APP` lists the releases this node has".into()
            }
            Error::AmbiguousId { .. } => "give more digits of the id".into(),
            Error::Unreachable { dir, .. } => format!(
                "put the root where others may pass (the default /var/lib/silver), or `chmod o+x {}`",
                dir.display()
            ),
            Error::OtherApp { .. } => {
                "deploy it under its own name, or pass --app NAME (deploy) or --other-app (activate) to mean it".into()
            }
            Error::UnknownApp { .. } => {
                "`silver releases --node URL` without an app lists the apps; deploy it first".into()
            }
            Error::Activation { app, .. } => format!(
                "the previous release keeps serving; see `silver logs {app}` and `silver releases {app}`"
            ),
            _ => return None,
        })
    }
}
