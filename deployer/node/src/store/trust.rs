//! The node's side of signed records: its trust policy (`trust.toml`), the records each app's
//! activations were let through with (`apps/<app>/records.jsonl`), and the highest promotion
//! sequence taken per app and environment (`apps/<app>/sequences.json`), which only grows.

use std::collections::BTreeMap;

use packer::Id;
use silver_trust::{Accepted, Policy, Request, SignedRecord, Statement};
use silver_types::AppName;

use super::app_dir::{append_line, read_lines};
use super::Store;
use crate::error::Error;

/// Who built and who last promoted each release: `(built_by, promoted_by)` by id.
pub type Provenance = std::collections::HashMap<Id, (Option<String>, Option<String>)>;

/// Records kept for an activation, and the sequence to take once it succeeds.
#[derive(Debug, Clone)]
pub struct Kept {
    pub environment: String,
    pub accepted: Accepted,
}

impl Store {
    pub fn trust_policy(&self) -> Result<Option<Policy>, Error> {
        let path = self.layout.trust_policy();
        // A policy others may write is no policy: an app's user could name its own keys.
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.permissions().mode() & 0o022 != 0 {
                return Err(Error::PolicyWritable {
                    path,
                    mode: meta.permissions().mode() & 0o777,
                });
            }
        }
        Ok(Policy::read(&path)?)
    }

    /// Checks `given` (and the records kept from earlier activations of `id`) against the
    /// policy. None when the node has no policy: then records are not needed.
    pub fn check_records(
        &self,
        app: &AppName,
        id: &Id,
        given: &[SignedRecord],
    ) -> Result<Option<Kept>, Error> {
        let Some(policy) = self.trust_policy()? else {
            return Ok(None);
        };
        let seen = self.sequences(app)?.get(&policy.environment).copied();
        let kept = self.kept_records(app)?;
        let req = Request {
            app,
            id,
            seen,
            now: super::now(),
        };
        let accepted = policy.check(req, given, &kept)?;
        Ok(Some(Kept {
            environment: policy.environment,
            accepted,
        }))
    }

    /// After the activation succeeded: the promotion's sequence becomes the floor, and its
    /// records are kept (a rollback to this id brings only a new promotion).
    pub fn take_records(&self, app: &AppName, kept: &Kept) -> Result<(), Error> {
        let mut sequences = self.sequences(app)?;
        let floor = sequences.entry(kept.environment.clone()).or_default();
        *floor = (*floor).max(kept.accepted.promotion.0.sequence);
        let bytes = serde_json::to_vec_pretty(&sequences).expect("a map serializes");
        let path = self.app(app).sequences();
        safefs::write_atomic(&path, &bytes, safefs::WriteOptions::PRIVATE)
            .map_err(|e| Error::io(&path, e))?;
        let records = self.app(app).records();
        append_line(&records, &kept.accepted.build.1)?;
        append_line(&records, &kept.accepted.promotion.1)
    }

    pub fn kept_records(&self, app: &AppName) -> Result<Vec<SignedRecord>, Error> {
        read_lines(&self.app(app).records())
    }

    fn sequences(&self, app: &AppName) -> Result<BTreeMap<String, u64>, Error> {
        let path = self.app(app).sequences();
        match std::fs::read(&path) {
            // A floor that cannot be read must not read as "none": that would let a replay in.
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::io(&path, std::io::Error::other(e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Who built and who last promoted each release, from the records kept.
    pub fn provenance(&self, app: &AppName) -> Result<Provenance, Error> {
        let mut out: Provenance = Default::default();
        for record in self.kept_records(app)? {
            match Statement::parse(&record.statement) {
                Ok(Statement::Build(b)) => {
                    let commit = b
                        .commit
                        .map(|c| format!(", commit {c}"))
                        .unwrap_or_default();
                    out.entry(b.id).or_default().0 = Some(format!("{}{commit}", b.built_by));
                }
                Ok(Statement::Promotion(p)) => {
                    out.entry(p.id).or_default().1 = Some(format!(
                        "{} to {}, sequence {}",
                        p.promoted_by, p.environment, p.sequence
                    ));
                }
                Err(_) => {}
            }
        }
        Ok(out)
    }
}
