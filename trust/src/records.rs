//! Build and promotion records: small JSON statements, each signed as a whole in minisign's
//! format. The signed bytes are the record file's bytes exactly, so `minisign -Vm FILE` checks
//! what silver checks.

use serde::{Deserialize, Serialize};
use silver_types::{AppName, ArtifactId};

use crate::error::Error;
use crate::keys::{self, PublicKey, SecretKey};

/// What a record states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Statement {
    Build(Build),
    Promotion(Promotion),
}

/// CI built this artifact: signed by a build key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub app: AppName,
    pub id: ArtifactId,
    /// The archive's sha256 (`sha256:…`), as checksums files and registries name it.
    pub sha256: String,
    /// The source commit, if known.
    pub commit: Option<String>,
    /// RFC 3339, UTC.
    pub built_at: String,
    /// `user@host`, and the CI run when there is one.
    pub built_by: String,
    pub ci_run: Option<String>,
}

/// Someone promoted this artifact to an environment: signed by a promote key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub app: AppName,
    pub environment: String,
    pub id: ArtifactId,
    /// Only grows, per app and environment: a node takes nothing at or below the highest it
    /// has taken. Milliseconds since the epoch unless given.
    pub sequence: u64,
    /// RFC 3339, UTC: after this it activates nothing.
    pub expires: String,
    pub promoted_at: String,
    pub promoted_by: String,
}

pub use silver_types::SignedRecord;

impl Statement {
    pub fn parse(text: &str) -> Result<Statement, Error> {
        serde_json::from_str(text).map_err(|e| Error::BadRecord {
            record: "a record".into(),
            why: e.to_string(),
        })
    }

    /// The record's bytes: pretty JSON with a final newline, so it reads well in review.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a record serializes");
        text.push('\n');
        text
    }

    /// How messages name it: `the promotion of shop b3:1234… to production (sequence 7)`.
    pub fn describe(&self) -> String {
        match self {
            Statement::Build(b) => format!("the build record of {} {}", b.app, short(&b.id)),
            Statement::Promotion(p) => format!(
                "the promotion of {} {} to {} (sequence {})",
                p.app,
                short(&p.id),
                p.environment,
                p.sequence
            ),
        }
    }

    /// What the signature's trusted comment says, so `minisign -V` shows it.
    pub fn trusted_comment(&self) -> String {
        format!("silver {}", self.describe())
    }
}

fn short(id: &ArtifactId) -> String {
    id.to_string().chars().take(15).collect()
}

/// Signs a record's bytes; returns the `.minisig` text.
pub fn sign(statement: &Statement, text: &str, key: &SecretKey) -> Result<String, Error> {
    sign_text(text, &statement.trusted_comment(), key)
}

/// Signs any text (a record, a new trust policy) with `comment` as the trusted comment.
pub fn sign_text(text: &str, comment: &str, key: &SecretKey) -> Result<String, Error> {
    let boxed = minisign::sign(
        None,
        key,
        text.as_bytes(),
        Some(comment),
        Some("signature from a silver key"),
    )
    .map_err(|e| Error::BadRecord {
        record: comment.into(),
        why: e.to_string(),
    })?;
    Ok(boxed.into_string())
}

/// The distinct keys among `keys` whose signatures over `text` verify. A signature by a key
/// not among them, or one that does not verify, is an error naming it.
pub fn signers(
    record: &str,
    role: &str,
    text: &str,
    signatures: &[String],
    keys: &[PublicKey],
) -> Result<Vec<String>, Error> {
    let mut ids: Vec<String> = Vec::new();
    for sig in signatures {
        let boxed = minisign::SignatureBox::from_string(sig).map_err(|e| Error::BadRecord {
            record: record.into(),
            why: format!("a signature is not minisign's format: {e}"),
        })?;
        let key_id = keys::key_id(boxed.keynum());
        let Some(key) = keys.iter().find(|k| k.keynum() == boxed.keynum()) else {
            return Err(Error::UnknownKey {
                record: record.into(),
                key_id,
                role: role.into(),
            });
        };
        let data = std::io::Cursor::new(text.as_bytes());
        minisign::verify(key, &boxed, data, true, false, false).map_err(|_| {
            Error::BadSignature {
                record: record.into(),
                key_id: key_id.clone(),
            }
        })?;
        if !ids.contains(&key_id) {
            ids.push(key_id);
        }
    }
    Ok(ids)
}
