//! The node's errors. Each variant names the app, id, path or bound it concerns; `status()` is
//! the HTTP status the control API answers with, and `hint()` what the caller should do.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use packer::manifest::ManifestProblem;
use packer::Id;
use silver_runtime::TaskProblem;
use silver_types::{AppName, IdPrefix};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    // ---- names and ids ----
    #[error("`{name}` is not an app name: {rule}")]
    BadAppName {
        name: String,
        rule: silver_types::names::NameRule,
    },
    #[error("`{given}` is not an artifact id: {rule}")]
    BadId {
        given: String,
        rule: silver_types::names::IdRule,
    },
    #[error("no artifact on this node has an id starting with {prefix}")]
    UnknownId { prefix: IdPrefix },
    #[error("{count} artifacts on this node have ids starting with {prefix}")]
    AmbiguousId { prefix: IdPrefix, count: usize },
    #[error("app `{app}` has never been deployed to this node")]
    UnknownApp { app: AppName },
    #[error("app `{app}` has no cron job `{job}` in its live release")]
    NoCronJob { app: AppName, job: String },
    #[error("the config of `{app}` would hold {bytes} bytes of values, over the {max} every process's environment can carry")]
    ConfigTooLarge {
        app: AppName,
        bytes: usize,
        max: usize,
    },
    #[error("the request body is not what {route} takes: {why}")]
    BadBody {
        route: String,
        why: silver_types::Said,
    },
    #[error("location `{location}` {why}")]
    BadLocation { location: String, why: &'static str },
    // ---- artifacts and objects ----
    #[error("the manifest is invalid: {problem}")]
    BadManifest { problem: ManifestProblem },
    #[error("the manifest is {actual}, not {claimed}")]
    ManifestIdMismatch { claimed: Id, actual: Id },
    #[error("artifact {id} was never sent to this node")]
    NeverSent { id: Id },
    #[error("artifact {id} is not on this node")]
    ArtifactMissing { id: Id },
    #[error("the manifest of {id} names {count} objects the node does not have")]
    ObjectsMissing { id: Id, count: usize },
    #[error("object {expected} arrived with content hashing to {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error("the delta's base manifest {base} is not on this node")]
    BaseMissing { base: Id },
    #[error("the manifest is not a valid zstd stream")]
    BadZstd {
        #[source]
        source: io::Error,
    },
    #[error("a manifest over {limit} bytes")]
    ManifestTooLarge { limit: u64 },
    #[error("the node's copy of a manifest is damaged: `{}`: {problem}", path.display())]
    DamagedManifest {
        path: PathBuf,
        problem: ManifestProblem,
    },
    #[error("artifact {id} was packed for app `{packed}`, not `{app}`")]
    OtherApp {
        app: AppName,
        packed: String,
        id: Id,
    },
    // ---- uploads ----
    #[error("the upload was interrupted: {why}")]
    UploadInterrupted { why: silver_types::Said },
    #[error("the upload stalled for {secs} s")]
    UploadStalled { secs: u64 },
    #[error("the upload stream is corrupt")]
    UploadCorrupt {
        #[source]
        source: io::Error,
    },
    #[error("the upload ended in the middle of an object")]
    UploadTorn,
    #[error("the node's record `{}` is damaged: {why}", path.display())]
    BadRecord {
        path: PathBuf,
        why: silver_types::Said,
    },
    #[error("app `{app}` does not answer at `{location}` (it answers at: {})", if locations.is_empty() { "nowhere".to_string() } else { locations.join(", ") })]
    NotServedThere {
        app: AppName,
        location: String,
        locations: Vec<String>,
    },
    #[error("no configuration directory `{id}` was uploaded for this app")]
    UnknownAppConfig { id: String },
    #[error("config variable `{name}` {why}")]
    BadSetting { name: String, why: &'static str },
    #[error("an upload of {bytes} bytes is over the limit of {max} bytes")]
    UploadTooLarge { bytes: u64, max: u64 },
    #[error("an object of {bytes} bytes is over the limit of {max} bytes")]
    ObjectTooLarge { bytes: u64, max: u64 },
    #[error("not enough free space on the node: {needed} bytes needed, {available} available ({reserved} more reserved by uploads under way)")]
    NoSpace {
        needed: u64,
        available: u64,
        reserved: u64,
    },
    #[error("a frame of {len} bytes for object {hash}, which the manifest {}", match claimed { Some(c) => format!("claims is {c} bytes"), None => "does not list as missing".to_string() })]
    FrameNotClaimed {
        hash: String,
        len: u64,
        claimed: Option<u64>,
    },
    #[error("an object upload must name its artifact in X-Silver-Artifact")]
    NoArtifactHeader,
    #[error("no upload of artifact {id} is expected (its manifest was not sent, or it went quiet too long)")]
    NotExpected { id: Id },
    #[error("the manifest of {id} claims `{path}` is {claimed} bytes, but its object is {actual}")]
    SizeMismatch {
        id: Id,
        path: String,
        claimed: u64,
        actual: u64,
    },
    // ---- releases ----
    #[error("app `{app}` is being activated by {holder} (since {})", silver_wire::api::utc(*since))]
    Locked {
        app: AppName,
        holder: String,
        since: u64,
    },
    #[error("app `{app}` has no previous release to roll back to")]
    NoPrevious { app: AppName },
    #[error("app `{app}` has no current release on this node")]
    NoCurrent { app: AppName },
    #[error("release {id} of `{app}` is not on this node")]
    ReleaseMissing { app: AppName, id: Id },
    // ---- logs and run ----
    #[error("`{name}` is not a process name")]
    BadProcess { name: String },
    #[error("app `{app}` has no log for process `{process}` on this node")]
    NoLog { app: AppName, process: String },
    #[error("app `{app}` has no logs on this node")]
    NoLogs { app: AppName },
    #[error("`run` needs a command")]
    EmptyCommand,
    #[error("cannot run `{program}` in `{app}`")]
    CannotRun {
        app: AppName,
        program: String,
        #[source]
        source: io::Error,
    },
    // ---- the agent itself ----
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("a TLS control listener needs a certificate and key")]
    TlsNeedsCert,
    #[error("refusing to listen on {addr} without TLS: the control API never takes plaintext remote control")]
    PlaintextRemote { addr: SocketAddr },
    #[error("TLS file `{}`: {why}", path.display())]
    BadTls {
        path: PathBuf,
        why: silver_types::Said,
    },
    #[error("token file `{}` is empty", path.display())]
    EmptyToken { path: PathBuf },
    #[error("`{}` is mode {mode:04o}: other users can read or change it", path.display())]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("apps run as `{user}`, who cannot reach the node root `{}`: `{}` is mode {mode:04o}", root.display(), dir.display())]
    Unreachable {
        root: PathBuf,
        dir: PathBuf,
        mode: u32,
        user: String,
    },
    #[error("a node worker stopped while {doing}")]
    Worker {
        doing: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error(transparent)]
    Runtime(#[from] silver_runtime::Error),
    #[error(transparent)]
    Artifact(#[from] packer::Error),
    #[error(transparent)]
    AppConfig(#[from] silver_types::Error),
    #[error(transparent)]
    Registry(#[from] silver_registry::Error),
    #[error(transparent)]
    Trust(#[from] silver_trust::Error),
    #[error("the trust policy {} is writable by others (mode {mode:o}): nothing activates until it is not", path.display())]
    PolicyWritable { path: PathBuf, mode: u32 },
    #[error("`{app}` is held by fleet deploy {deploy}")]
    FleetBusy { app: AppName, deploy: String },
    #[error("`{app}` is being prepared by fleet deploy {deploy}: ask again when it is prepared")]
    FleetPreparing { app: AppName, deploy: String },
    #[error("`{app}` has no fleet deploy on this node")]
    NoFleetDeploy { app: AppName },
    #[error("fleet deploy {deploy} of `{app}` is {phase:?} here, not {wanted}")]
    FleetPhase {
        app: AppName,
        deploy: String,
        phase: silver_wire::api::FleetPhase,
        wanted: &'static str,
    },
    #[error("this node has no trust policy")]
    NoTrustPolicy,
    #[error(transparent)]
    Acme(#[from] silver_acme::Error),
    #[error("the certificate is for {}, not {host}", if names.is_empty() { "no host name".to_string() } else { names.join(", ") })]
    CertNotFor { host: String, names: Vec<String> },
    #[error("the certificate for {host} expired")]
    CertExpired { host: String },
    #[error(transparent)]
    CertKey(#[from] silver_runtime::tls::BadCert),
    #[error("this node has no certificate for {host}")]
    NoCert { host: String },
    #[error("no pack of {reference} holds {missing} of the files its manifest names")]
    PullIncomplete { reference: String, missing: usize },
}

impl Error {
    pub fn io(path: &Path, source: io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The status the control API answers this error with.
    pub fn status(&self) -> StatusCode {
        use Error::*;
        match self {
            BadAppName { .. }
            | BadId { .. }
            | AmbiguousId { .. }
            | BadBody { .. }
            | BadLocation { .. }
            | ConfigTooLarge { .. }
            | BadZstd { .. }
            | UploadInterrupted { .. }
            | UploadStalled { .. }
            | UploadCorrupt { .. }
            | BadProcess { .. }
            | BadSetting { .. }
            | UnknownAppConfig { .. }
            | NotServedThere { .. }
            | EmptyCommand => StatusCode::BAD_REQUEST,
            UnknownId { .. }
            | UnknownApp { .. }
            | NoCronJob { .. }
            | NeverSent { .. }
            | ArtifactMissing { .. }
            | NoPrevious { .. }
            | NoCurrent { .. }
            | ReleaseMissing { .. }
            | NoLog { .. }
            | NoLogs { .. }
            | NoTrustPolicy
            | NoFleetDeploy { .. } => StatusCode::NOT_FOUND,
            BadManifest { .. }
            | ManifestIdMismatch { .. }
            | ObjectsMissing { .. }
            | HashMismatch { .. }
            | FrameNotClaimed { .. }
            | SizeMismatch { .. }
            | UploadTorn
            | OtherApp { .. }
            | Artifact(_)
            | AppConfig(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Runtime(silver_runtime::Error::Task { problem, .. }) => match problem {
                TaskProblem::Full { .. } => StatusCode::TOO_MANY_REQUESTS,
                TaskProblem::NoTask { .. } | TaskProblem::NotOpen => StatusCode::NOT_FOUND,
                TaskProblem::Running { .. } => StatusCode::CONFLICT,
                _ => StatusCode::BAD_REQUEST,
            },
            Runtime(silver_runtime::Error::Activation { .. })
            | Runtime(silver_runtime::Error::LocationTaken { .. })
            | Runtime(silver_runtime::Error::NotPython { .. })
            | Runtime(silver_runtime::Error::NoPostgres { .. })
            | Runtime(silver_runtime::Error::MissingPackages { .. })
            | Runtime(silver_runtime::Error::BadBackup { .. })
            | Runtime(silver_runtime::Error::BackupServiceMissing { .. })
            | Runtime(silver_runtime::Error::AppConfig(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            UploadTooLarge { .. } | ObjectTooLarge { .. } | ManifestTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Locked { .. } | FleetBusy { .. } | FleetPreparing { .. } | FleetPhase { .. } => {
                StatusCode::CONFLICT
            }
            NoSpace { .. } => StatusCode::INSUFFICIENT_STORAGE,
            Io { source, .. } if source.kind() == io::ErrorKind::StorageFull => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            BaseMissing { .. } | NotExpected { .. } => StatusCode::PRECONDITION_FAILED,
            Registry(
                silver_registry::Error::BadReference { .. }
                | silver_registry::Error::BadDigest { .. }
                | silver_registry::Error::NoDigest { .. },
            ) => StatusCode::BAD_REQUEST,
            Trust(silver_trust::Error::Io { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            Trust(silver_trust::Error::BadPolicy { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            Trust(_) => StatusCode::FORBIDDEN,
            // The registry, not the node, failed or served bad bytes: a gateway's error.
            Registry(_) | PullIncomplete { .. } => StatusCode::BAD_GATEWAY,
            NoArtifactHeader => StatusCode::BAD_REQUEST,
            Acme(
                silver_acme::Error::BadHost { .. }
                | silver_acme::Error::BadCert { .. }
                | silver_acme::Error::BadToken { .. },
            )
            | CertNotFor { .. }
            | CertExpired { .. }
            | CertKey(_) => StatusCode::BAD_REQUEST,
            NoCert { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What to do about it, printed on its own line.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::ConfigTooLarge { app, .. } => format!(
                "unset what `{app}` no longer needs (silver config unset), or keep large data in a file (service.files, or silver update --config DIR)"
            ),
            Error::Locked { .. } => {
                "wait for that activation to finish (deploy waits unless given --no-wait)".into()
            }
            Error::NoSpace { .. } => {
                "free space on the node, e.g. `silver gc --node URL --keep 3`".into()
            }
            Error::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull => {
                "the node's disk is full: free space on it, e.g. `silver gc --node URL --keep 3`".into()
            }
            Error::Io { .. } => {
                "the node could not read or write its store: see the agent's log, and run `silver fsck` on the node".into()
            }
            Error::BadAppName { .. } => format!("app names are {}", AppName::RULES),
            Error::BadId { .. } => {
                "give the id as printed: b3: and at least 12 hex digits (or the digits alone)".into()
            }
            Error::UnknownId { .. } | Error::ReleaseMissing { .. } => {
                "`silver releases APP` lists the releases this node has".into()
            }
            Error::AmbiguousId { .. } => "give more digits of the id".into(),
            Error::UnknownApp { .. } | Error::NoCurrent { .. } | Error::NoLogs { .. } => {
                "deploy it first: `silver deploy APP_DIR --node URL`".into()
            }
            Error::NoCronJob { app, .. } => {
                format!("`silver cron {app}` lists its jobs; they come from [cron] in app.ini")
            }
            Error::NoPrevious { app } => format!(
                "`silver releases {app}` lists its releases; `silver activate {app} ID` makes any staged one current"
            ),
            Error::OtherApp { .. } => {
                "deploy it under its own name, or pass --app NAME (deploy) or --other-app (activate) to mean it".into()
            }
            Error::ObjectsMissing { .. } => "upload them first (`silver deploy` does)".into(),
            Error::NotExpected { .. } | Error::NoArtifactHeader => {
                "send the manifest first (PUT /v1/artifacts/ID), then its objects; `silver deploy` does".into()
            }
            Error::FrameNotClaimed { .. } | Error::SizeMismatch { .. } | Error::HashMismatch { .. } => {
                "the artifact or its upload is damaged or forged; pack it again and deploy the new one".into()
            }
            Error::Unreachable { dir, .. } => format!(
                "put the root where others may pass (the default /var/lib/silver), or `chmod o+x {}`",
                dir.display()
            ),
            Error::Listen { .. } => "is another agent running there? pick another --listen or --http".into(),
            Error::TlsNeedsCert => "pass --tls-cert and --tls-key".into(),
            Error::PlaintextRemote { .. } => "listen on loopback and use --node ssh://user@host, or pass --tls-cert and --tls-key (and --tls-listen for a TLS listener beside the loopback one)".into(),
            Error::EmptyToken { path } => format!(
                "remove `{}` to have the agent make a new token, or write one into it",
                path.display()
            ),
            Error::TooOpen { path, .. } => format!(
                "it guards access to the node: `chmod 600 {}` (and keep it owned by the agent's user)",
                path.display()
            ),
            Error::Runtime(e) => return e.hint(),
            Error::Artifact(e) => return e.hint(),
            Error::AppConfig(e) => return e.hint(),
            Error::Registry(silver_registry::Error::Unauthorized { registry, .. }) => format!(
                "put credentials for {registry} in the node's registry-auth.json (Docker's format, mode 0600)"
            ),
            Error::Registry(e) => return silver_types::Hint::hint(e),
            Error::Trust(e) => return silver_types::Hint::hint(e),
            Error::Acme(e) => return silver_types::Hint::hint(e),
            Error::CertNotFor { .. } => "give the certificate issued for that host (or a wildcard one label up)".into(),
            Error::CertKey(_) => "give the key the certificate was issued for, as PEM".into(),
            Error::NoCert { .. } => "`silver certs` lists the certificates this node has".into(),
            Error::PolicyWritable { path, .. } => format!("chmod 644 {}", path.display()),
            Error::NoTrustPolicy => "install the first policy on the node itself, as <root>/trust.toml (README: \"Signed build and promotion records\")".into(),
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
