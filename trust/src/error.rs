//! The trust crate's one error type. Every refusal names the record (its kind, app,
//! environment, sequence) and why, so an operator sees which signature or field to fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {why}", path.display())]
    KeyFile { path: PathBuf, why: String },
    #[error("`{given}` is not a minisign public key: {why}")]
    BadPublicKey { given: String, why: String },
    #[error("{record} is not a silver record: {why}")]
    BadRecord { record: String, why: String },
    #[error("{record} is unsigned: {need} signature(s) by its role's keys are required")]
    Unsigned { record: String, need: usize },
    #[error("{record} is signed by key {key_id}, which the node's trust policy does not name for {role}")]
    UnknownKey {
        record: String,
        key_id: String,
        role: String,
    },
    #[error("{record} has a signature by key {key_id} that does not verify: the record was changed after it was signed")]
    BadSignature { record: String, key_id: String },
    #[error("{record} has {have} valid signature(s); the trust policy wants {need} for {role}")]
    TooFewSignatures {
        record: String,
        have: usize,
        need: usize,
        role: String,
    },
    #[error("{record} is for app `{record_app}`, not `{app}`")]
    OtherApp {
        record: String,
        record_app: String,
        app: String,
    },
    #[error("{record} is for environment `{record_env}`; this node is `{node_env}`")]
    OtherEnvironment {
        record: String,
        record_env: String,
        node_env: String,
    },
    #[error("{record} names artifact {record_id}, not {id}")]
    OtherArtifact {
        record: String,
        record_id: String,
        id: String,
    },
    #[error("{record} has sequence {sequence}, at or below {seen}, the highest this node has taken for it: a replay or a downgrade")]
    Replay {
        record: String,
        sequence: u64,
        seen: u64,
    },
    #[error("{record} expired at {expires}: an expired promotion activates nothing (the running release keeps running)")]
    Expired { record: String, expires: String },
    #[error("no build record for {id} of `{app}`: the trust policy wants one signed by {role}")]
    NoBuildRecord {
        app: String,
        id: String,
        role: String,
    },
    #[error(
        "no promotion record for {id} of `{app}` to `{environment}`: the trust policy wants one"
    )]
    NoPromotion {
        app: String,
        id: String,
        environment: String,
    },
    #[error("{} line {line}: {why}", path.display())]
    BadPolicy {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("a new trust policy must be signed by {need} of the current policy's `root` keys; it has {have}")]
    RotationUnsigned { have: usize, need: usize },
    #[error("cannot read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
        Some(match self {
            Error::Unsigned { .. } | Error::TooFewSignatures { .. } => {
                "sign it (`silver sign` for a build, `silver promote` for a promotion; a second signer runs `minisign -S -m FILE -x FILE.minisig.2`)".into()
            }
            Error::UnknownKey { .. } => "sign with a key the policy names, or rotate the policy to add this key (`silver trust rotate`)".into(),
            Error::Replay { .. } => "promote again: `silver promote` gives a new record a higher sequence number".into(),
            Error::Expired { .. } => "promote it again with a new expiry (`silver promote --expires`)".into(),
            Error::OtherEnvironment { node_env, .. } => format!("promote the artifact to `{node_env}` for this node"),
            Error::NoBuildRecord { .. } => "send the build record with --record FILE (`silver sign` wrote it beside the artifact)".into(),
            Error::NoPromotion { .. } => "promote it (`silver promote APP ENV ID`) and send the record with --record FILE".into(),
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                "give the path of a key or record that exists (`silver key new NAME` makes a key pair)".into()
            }
            _ => return None,
        })
    }

    fn refused(&self) -> bool {
        !matches!(self, Error::Io { .. } | Error::KeyFile { .. })
    }
}
