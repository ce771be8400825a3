//! The front door's certificates on disk, under `tls/` (0700):
//! - `operator/<host>.pem`, `fleet/<host>.pem` and `acme/<host>.pem`: the chain, then the key, in one file written
//!   atomically (0600), so a crash never pairs one certificate with another's key. nginx and
//!   HAProxy read the same file. A wildcard's file is `_.<suffix>.pem` (`_` is in no host name);
//! - `acme/state.json`: per host, the challenge that worked, failures and the last error;
//! - `accounts/`: the ACME account per CA directory.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use silver_acme::{Cert, CertHost, Challenge};

use super::Layout;

/// Who put a certificate on the node. For one host, the operator's wins over the fleet's,
/// and the fleet's over the node's own from ACME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Acme,
    /// Ordered by a deploying client for every node of a fleet (`silver fleet certs`).
    Fleet,
    Operator,
}

impl Source {
    /// Most preferred first.
    pub const BY_PREFERENCE: [Source; 3] = [Source::Operator, Source::Fleet, Source::Acme];
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Acme => "acme",
            Source::Fleet => "fleet",
            Source::Operator => "operator",
        }
    }

    fn dir(self, layout: &Layout) -> PathBuf {
        layout.tls().join(self.as_str())
    }
}

/// What ACME knows about a host between attempts.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AcmeState {
    /// The challenge that last worked, or the one to try next after a failure.
    pub challenge: Option<Challenge>,
    pub failures: u32,
    pub error: Option<String>,
    pub hint: Option<String>,
    pub next_attempt_unix: Option<u64>,
}

/// Every stored certificate, by host and source. One that no longer parses is left out and
/// logged: the host is served by its other source, or gets a new one.
pub fn load_all(layout: &Layout) -> BTreeMap<(CertHost, Source), Cert> {
    let mut all = BTreeMap::new();
    for source in Source::BY_PREFERENCE {
        let Ok(entries) = std::fs::read_dir(source.dir(layout)) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            let Some(host) = host_of(&path) else {
                continue;
            };
            match read(&path) {
                Ok(cert) => {
                    all.insert((host, source), cert);
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "a stored certificate is unreadable; leaving it out")
                }
            }
        }
    }
    all
}

pub fn save(layout: &Layout, host: &CertHost, source: Source, cert: &Cert) -> io::Result<()> {
    let dir = source.dir(layout);
    safefs::ensure_private_dir(&layout.tls())?;
    safefs::ensure_private_dir(&dir)?;
    let mut pem = cert.chain_pem.trim_end().to_string();
    pem.push('\n');
    pem.push_str(cert.key_pem.trim_end());
    pem.push('\n');
    safefs::write_atomic(
        &file(&dir, host),
        pem.as_bytes(),
        safefs::WriteOptions::PRIVATE,
    )
}

/// Removes the host's certificate from `source`; false if there was none.
pub fn remove(layout: &Layout, host: &CertHost, source: Source) -> io::Result<bool> {
    match std::fs::remove_file(file(&source.dir(layout), host)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

pub fn accounts(layout: &Layout) -> PathBuf {
    layout.tls().join("accounts")
}

pub fn load_state(layout: &Layout) -> BTreeMap<CertHost, AcmeState> {
    let path = state_path(layout);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ACME state unreadable; starting afresh");
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    }
}

pub fn save_state(layout: &Layout, state: &BTreeMap<CertHost, AcmeState>) -> io::Result<()> {
    let dir = Source::Acme.dir(layout);
    safefs::ensure_private_dir(&layout.tls())?;
    safefs::ensure_private_dir(&dir)?;
    let json = serde_json::to_vec_pretty(state).expect("state serializes");
    safefs::write_atomic(&state_path(layout), &json, safefs::WriteOptions::PRIVATE)
}

fn state_path(layout: &Layout) -> PathBuf {
    Source::Acme.dir(layout).join("state.json")
}

fn file(dir: &Path, host: &CertHost) -> PathBuf {
    let name = match host.as_str().strip_prefix("*.") {
        Some(suffix) => format!("_.{suffix}.pem"),
        None => format!("{host}.pem"),
    };
    dir.join(name)
}

fn host_of(path: &Path) -> Option<CertHost> {
    let name = path.file_name()?.to_str()?.strip_suffix(".pem")?;
    let name = match name.strip_prefix("_.") {
        Some(suffix) => format!("*.{suffix}"),
        None => name.to_string(),
    };
    CertHost::parse(&name).ok()
}

/// Reads a combined file back: the block whose header names a private key is the key, the
/// rest the chain.
fn read(path: &Path) -> Result<Cert, silver_acme::Error> {
    let text = std::fs::read_to_string(path).map_err(|e| silver_acme::Error::BadCert {
        what: path.display().to_string(),
        said: silver_types::Said::new(&e.to_string(), &[]),
    })?;
    let (chain, key) = split_key(&text);
    Cert::parse(&path.display().to_string(), &chain, &key)
}

fn split_key(text: &str) -> (String, String) {
    let (mut chain, mut key) = (String::new(), String::new());
    let mut in_key = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") && line.contains("PRIVATE KEY") {
            in_key = true;
        }
        let to = if in_key { &mut key } else { &mut chain };
        to.push_str(line);
        to.push('\n');
        if line.starts_with("-----END ") && line.contains("PRIVATE KEY") {
            in_key = false;
        }
    }
    (chain, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_file_names_round_trip() {
        for host in ["a.example.com", "*.example.com"] {
            let host = CertHost::parse(host).unwrap();
            let path = file(Path::new("/x"), &host);
            assert_eq!(host_of(&path), Some(host));
        }
        assert_eq!(host_of(Path::new("/x/state.json")), None);
    }

    #[test]
    fn the_key_block_is_told_from_the_chain() {
        let text = "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----\nK\n-----END EC PRIVATE KEY-----\n";
        let (chain, key) = split_key(text);
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----\nK\n"));
        assert!(!chain.contains('K'));
    }
}
