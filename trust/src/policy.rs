//! A node's trust policy: its environment, and for each role the keys that may sign and how
//! many must. With a policy, a node activates nothing without a build record AND a promotion
//! record that pass every check here.
//!
//! ```toml
//! environment = "production"
//! [build]                 # CI's keys: who built it
//! keys = ["RWQ…"]
//! [promote]               # who may put it in this environment
//! keys = ["RWQ…", "RWQ…"]
//! threshold = 2
//! [root]                  # who may replace this policy (default: the promote role)
//! keys = ["RWQ…"]
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use silver_types::{AppName, ArtifactId};

use crate::error::Error;
use crate::keys::{self, PublicKey};
use crate::records::{self, Build, Promotion, SignedRecord, Statement};

#[derive(Debug, Clone)]
pub struct Policy {
    pub environment: String,
    pub build: Role,
    pub promote: Role,
    pub root: Option<Role>,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub keys: Vec<PublicKey>,
    pub threshold: usize,
}

/// What an activation asks the policy about.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub app: &'a AppName,
    pub id: &'a ArtifactId,
    /// The highest promotion sequence this node has taken for the app and its environment.
    pub seen: Option<u64>,
    /// Unix seconds.
    pub now: u64,
}

/// The records that let an activation through.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub build: (Build, SignedRecord),
    pub promotion: (Promotion, SignedRecord),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    environment: String,
    build: RoleFile,
    promote: RoleFile,
    root: Option<RoleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    keys: Vec<String>,
    #[serde(default = "one")]
    threshold: usize,
}

fn one() -> usize {
    1
}

impl Policy {
    /// Reads the policy at `path`; None when there is no file (a node without a policy
    /// activates what its token holder sends, as before).
    pub fn read(path: &Path) -> Result<Option<Policy>, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => Policy::parse(&text, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Policy, Error> {
        let bad = |line: usize, why: String| Error::BadPolicy {
            path: PathBuf::from(path),
            line,
            why,
        };
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map_or(0, |s| text[..s.start].matches('\n').count() + 1);
            bad(line, e.message().to_string())
        })?;
        let role = |name: &str, r: RoleFile| -> Result<Role, Error> {
            let line = line_of(text, &format!("[{name}]"));
            let keys = r
                .keys
                .iter()
                .map(|k| keys::parse_public(k))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(line, format!("[{name}]: {e}")))?;
            if r.threshold == 0 || r.threshold > keys.len() {
                return Err(bad(
                    line,
                    format!("[{name}] threshold is {}, with {} key(s): it must be 1 to the number of keys", r.threshold, keys.len()),
                ));
            }
            Ok(Role {
                keys,
                threshold: r.threshold,
            })
        };
        if file.environment.trim().is_empty() {
            return Err(bad(
                line_of(text, "environment"),
                "`environment` is empty".into(),
            ));
        }
        Ok(Policy {
            environment: file.environment,
            build: role("build", file.build)?,
            promote: role("promote", file.promote)?,
            root: file.root.map(|r| role("root", r)).transpose()?,
        })
    }

    /// Checks the records for an activation: a build record of this artifact and app signed
    /// by the build role, and a promotion of it to this node's environment signed by the
    /// promote role, unexpired, with a sequence above the highest seen. `stored` are records
    /// the node kept from earlier activations (a rollback brings only a new promotion).
    pub fn check(
        &self,
        req: Request<'_>,
        given: &[SignedRecord],
        stored: &[SignedRecord],
    ) -> Result<Accepted, Error> {
        let all: Vec<(Statement, &SignedRecord)> = given
            .iter()
            .chain(stored)
            .map(|r| Statement::parse(&r.statement).map(|s| (s, r)))
            .collect::<Result<_, _>>()?;
        let build = self.check_build(req, &all)?;
        let promotion = self.check_promotion(req, given, &all)?;
        Ok(Accepted { build, promotion })
    }

    fn check_build(
        &self,
        req: Request<'_>,
        all: &[(Statement, &SignedRecord)],
    ) -> Result<(Build, SignedRecord), Error> {
        let mut first_error = None;
        for (statement, record) in all {
            let Statement::Build(b) = statement else {
                continue;
            };
            let name = statement.describe();
            let checked = verify_role(&name, "build", &self.build, record)
                .and_then(|()| same_app(&name, &b.app, req.app))
                .and_then(|()| same_artifact(&name, &b.id, req.id));
            match checked {
                Ok(()) => return Ok((b.clone(), (*record).clone())),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        Err(first_error.unwrap_or_else(|| Error::NoBuildRecord {
            app: req.app.to_string(),
            id: req.id.to_string(),
            role: "the build role".into(),
        }))
    }

    /// Only promotions sent with this request count: one the node kept was taken already, and
    /// taking it again would be a replay.
    fn check_promotion(
        &self,
        req: Request<'_>,
        given: &[SignedRecord],
        all: &[(Statement, &SignedRecord)],
    ) -> Result<(Promotion, SignedRecord), Error> {
        // Of several valid promotions (a registry keeps every one made), the newest counts.
        let mut best: Option<(Promotion, SignedRecord)> = None;
        let mut first_error = None;
        for (statement, record) in all.iter().take(given.len()) {
            let Statement::Promotion(p) = statement else {
                continue;
            };
            let name = statement.describe();
            let checked = verify_role(&name, "promote", &self.promote, record)
                .and_then(|()| same_app(&name, &p.app, req.app))
                .and_then(|()| self.same_environment(&name, &p.environment))
                .and_then(|()| same_artifact(&name, &p.id, req.id))
                .and_then(|()| unexpired(&name, &p.expires, req.now))
                .and_then(|()| above(&name, p.sequence, req.seen));
            match checked {
                Ok(()) if best.as_ref().is_none_or(|(b, _)| b.sequence < p.sequence) => {
                    best = Some((p.clone(), (*record).clone()))
                }
                Ok(()) => {}
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if let Some(best) = best {
            return Ok(best);
        }
        Err(first_error.unwrap_or_else(|| Error::NoPromotion {
            app: req.app.to_string(),
            id: req.id.to_string(),
            environment: self.environment.clone(),
        }))
    }

    fn same_environment(&self, name: &str, environment: &str) -> Result<(), Error> {
        if environment == self.environment {
            return Ok(());
        }
        Err(Error::OtherEnvironment {
            record: name.into(),
            record_env: environment.into(),
            node_env: self.environment.clone(),
        })
    }

    /// A new policy replaces this one only when signed by this one's root role (or, without
    /// one, its promote role): a stolen node token cannot swap the keys.
    pub fn check_rotation(
        &self,
        new_text: &str,
        signatures: &[String],
        path: &Path,
    ) -> Result<Policy, Error> {
        let new = Policy::parse(new_text, path)?;
        let role = self.root.as_ref().unwrap_or(&self.promote);
        let record = SignedRecord {
            statement: new_text.into(),
            signatures: signatures.to_vec(),
        };
        match verify_role("the new trust policy", "root", role, &record) {
            Ok(()) => Ok(new),
            Err(Error::Unsigned { need, .. }) => Err(Error::RotationUnsigned { have: 0, need }),
            Err(Error::TooFewSignatures { have, need, .. }) => {
                Err(Error::RotationUnsigned { have, need })
            }
            Err(e) => Err(e),
        }
    }
}

fn verify_role(
    name: &str,
    role_name: &str,
    role: &Role,
    record: &SignedRecord,
) -> Result<(), Error> {
    if record.signatures.is_empty() {
        return Err(Error::Unsigned {
            record: name.into(),
            need: role.threshold,
        });
    }
    let signers = records::signers(
        name,
        role_name,
        &record.statement,
        &record.signatures,
        &role.keys,
    )?;
    if signers.len() < role.threshold {
        return Err(Error::TooFewSignatures {
            record: name.into(),
            have: signers.len(),
            need: role.threshold,
            role: role_name.into(),
        });
    }
    Ok(())
}

fn same_app(name: &str, record_app: &AppName, app: &AppName) -> Result<(), Error> {
    if record_app == app {
        return Ok(());
    }
    Err(Error::OtherApp {
        record: name.into(),
        record_app: record_app.to_string(),
        app: app.to_string(),
    })
}

fn same_artifact(name: &str, record_id: &ArtifactId, id: &ArtifactId) -> Result<(), Error> {
    if record_id == id {
        return Ok(());
    }
    Err(Error::OtherArtifact {
        record: name.into(),
        record_id: record_id.to_string(),
        id: id.to_string(),
    })
}

fn unexpired(name: &str, expires: &str, now: u64) -> Result<(), Error> {
    let format = time::format_description::well_known::Rfc3339;
    let at = time::OffsetDateTime::parse(expires, &format).map_err(|e| Error::BadRecord {
        record: name.into(),
        why: format!("`expires` is not an RFC 3339 time: {e}"),
    })?;
    if (at.unix_timestamp() as i128) > now as i128 {
        return Ok(());
    }
    Err(Error::Expired {
        record: name.into(),
        expires: expires.into(),
    })
}

fn above(name: &str, sequence: u64, seen: Option<u64>) -> Result<(), Error> {
    match seen {
        Some(seen) if sequence <= seen => Err(Error::Replay {
            record: name.into(),
            sequence,
            seen,
        }),
        _ => Ok(()),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(needle))
        .map_or(0, |i| i + 1)
}
