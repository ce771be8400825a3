//! The client's errors. Each names the node, path or program it concerns; `hint()` says what to
//! do, on its own line. A node's error answers come back as `Api`, with the node's own hint.

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
    #[error("`{}` is not a PEM certificate", path.display())]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("`{url}` is not a node address: {why}")]
    BadNode { url: String, why: &'static str },
    #[error("cannot run `{program}` to reach {url}")]
    NoSsh {
        url: String,
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("ssh to {url} failed ({status}): {stderr}")]
    Ssh {
        url: String,
        status: String,
        stderr: String,
    },
    #[error("the ssh tunnel to {url} did not come up within {secs} s")]
    TunnelTimeout { url: String, secs: u64 },
    #[error("no token given, and `{token_file}` could not be read on {url} over ssh: {stderr}")]
    RemoteToken {
        url: String,
        token_file: String,
        stderr: String,
    },
    #[error("{} line {line}: {why}", path.display())]
    Inventory {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{} has no environment `{environment}` (it has: {known})", path.display())]
    NoEnvironment {
        path: PathBuf,
        environment: String,
        known: String,
    },
    #[error("the rollout is not valid: {why}")]
    Rollout { why: String },
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
    #[error("{node} did not answer as a silver agent's control API (HTTP {status})")]
    NotAnAgent { node: String, status: u16 },
    #[error("node {node} answered {status}: {message}")]
    Api {
        node: String,
        status: u16,
        /// The node's own words (with a failed activation's log tail).
        message: silver_types::Said,
        hint: Option<String>,
    },
    #[error(
        "node {node} ended the command's output without its exit code (the connection dropped?)"
    )]
    NoExitCode { node: String },
    #[error("app `{app}` is being activated by {holder} (since {})", silver_wire::api::utc(*since))]
    Locked {
        app: silver_types::AppName,
        holder: String,
        since: u64,
    },
    #[error("the app is being activated by {holder} (since {})", silver_wire::api::utc(*since))]
    Busy { holder: String, since: u64 },
    #[error(transparent)]
    Artifact(#[from] packer::Error),
    #[error(transparent)]
    Acme(#[from] silver_acme::Error),
    /// No app serves (or was deactivated) at a location that can only be a location.
    #[error("no app on node {node} serves `{location}`")]
    NothingServes {
        node: String,
        location: silver_types::Location,
        /// Every location the node's apps serve, for the hint.
        served: Vec<String>,
    },
    #[error("node {node} has no app named `{target}` and no single app serving that location")]
    UnknownTarget {
        node: String,
        target: String,
        apps: Vec<String>,
    },
    #[error("`{}` cannot be the app's configuration: {why}", path.display())]
    BadConfigDir { path: PathBuf, why: &'static str },
    #[error("`{place}` is not a backup place: {why}")]
    BadPlace { place: String, why: &'static str },
    #[error("`{place}` is not a backup silver can restore: {why}")]
    BadBackup { place: String, why: BackupProblem },
    #[error("`{place}` already exists; a backup never overwrites one")]
    PlaceTaken { place: String },
    #[error("a deploy worker stopped: {what}")]
    Worker { what: String },
}

/// Why what was given as a backup is refused, before a byte of it reaches a node.
#[derive(Debug, thiserror::Error)]
pub enum BackupProblem {
    /// The place itself, or one of its files, is a link, a FIFO or writable by others.
    #[error("{}{why}", file.as_ref().map(|f| format!("`{f}`: ")).unwrap_or_default())]
    NotPlain {
        file: Option<String>,
        why: safefs::NotPlain,
    },
    #[error("`{file}` is larger than {max} bytes (--max-entry-bytes)")]
    TooLarge { file: String, max: u64 },
    /// Its tar holds what no backup does, or the stream broke (a bomb past --max-ratio).
    #[error("{0}")]
    Tar(safefs::flat_tar::Refused),
    #[error("it holds no `backup.json`, so it is not what `silver backup` wrote")]
    NoManifest,
    #[error("`backup.json`: {0}")]
    Manifest(silver_types::Said),
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
            Error::Inventory { .. } | Error::Rollout { .. } => {
                "an inventory's keys are listed in the README, under \"Fleets\"".into()
            }
            Error::NoEnvironment { environment, .. } => {
                format!("add [environments.{environment}] to it, or name one it has with --env")
            }
            Error::Locked { .. } | Error::Busy { .. } => {
                "wait for that activation to finish (deploy waits unless given --no-wait)".into()
            }
            Error::Unauthorized { .. } | Error::NoToken { .. } => {
                "set SILVER_TOKEN or --token-file to the token in the agent's `token` file".into()
            }
            Error::Connect { .. } => {
                "check that `silver agent` runs there and that --node names its address".into()
            }
            Error::NotAnAgent { .. } => {
                "--node takes the agent's control address (`silver agent` prints it first), not the front door's".into()
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
            Error::NoSsh { .. } => "install the ssh client, or set SILVER_SSH to one".into(),
            Error::Ssh { .. } | Error::TunnelTimeout { .. } => {
                "check that `ssh HOST` works from this machine (keys, known_hosts, ~/.ssh/config)"
                    .into()
            }
            Error::RemoteToken { .. } => "set SILVER_TOKEN or --token-file".into(),
            Error::NothingServes { served, .. } if served.is_empty() => "the node serves nothing yet: `silver deploy` an app first".into(),
            Error::NothingServes { served, .. } => format!("its apps serve at {}; give one of those, as `silver query` lists them", served.join(", ")),
            Error::UnknownTarget { apps, .. } if apps.is_empty() => "the node has no apps yet: `silver deploy` one first".into(),
            Error::UnknownTarget { apps, .. } => format!("name one of its apps ({}) or a location exactly as `silver deploy` printed it", apps.join(", ")),
            Error::BadPlace { .. } => "give a directory, a .tar.zst or .tar.gz file, or ssh://[user@]host[:port]/path".into(),
            Error::PlaceTaken { .. } => "choose a new name (a date in it helps), or remove the old one first".into(),
            Error::BadBackup { .. } => "give the directory or file `silver backup` wrote, unchanged".into(),
            Error::BadCertificate { .. } => "give --ca-cert a PEM certificate".into(),
            Error::Artifact(e) => return e.hint(),
            Error::Acme(e) => return silver_types::Hint::hint(e),
            _ => return None,
        })
    }
}

impl silver_types::Hint for Error {
    fn hint(&self) -> Option<String> {
        Error::hint(self)
    }
    fn refused(&self) -> bool {
        matches!(self, Error::Artifact(e) if silver_types::Hint::refused(e))
    }
}

/// An error and its causes, one line: what a fleet's per-host table shows.
pub use silver_types::error_chain as chain;
