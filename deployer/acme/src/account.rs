//! The ACME account: created once per CA directory and kept 0600 beside the certificates.

use std::path::{Path, PathBuf};

use instant_acme::{Account, AccountCredentials, NewAccount};
use silver_types::Said;

use crate::error::Error;

/// Let's Encrypt's production directory: the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Which CA, how to trust its own HTTPS, and whom it may write to.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    pub directory: String,
    /// A root to trust for the directory's HTTPS instead of the system's (a test CA: Pebble).
    pub ca_root: Option<PathBuf>,
    pub email: Option<String>,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            directory: LETS_ENCRYPT.into(),
            ca_root: None,
            email: None,
        }
    }
}

/// The account for `config.directory`, from `dir/<hash of the directory>.json`, or a new one
/// registered now and stored (0600, atomically) before it is used: a CA that rate-limits new
/// accounts never sees one account per start.
pub async fn load_or_create_account(config: &AcmeConfig, dir: &Path) -> Result<Account, Error> {
    let path = account_path(config, dir);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let credentials: AccountCredentials =
                serde_json::from_slice(&bytes).map_err(|e| Error::BadAccount {
                    path: path.clone(),
                    said: Said::new(&e.to_string(), &[]),
                })?;
            return builder(config)?
                .from_credentials(credentials)
                .await
                .map_err(|e| Error::acme(&config.directory, "loading the account", e));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = builder(config)?
        .create(&new, config.directory.clone(), None)
        .await
        .map_err(|e| Error::acme(&config.directory, "registering an account", e))?;
    let json = serde_json::to_vec(&credentials).expect("credentials serialize");
    safefs::ensure_private_dir(dir).map_err(|e| Error::io(dir, e))?;
    safefs::write_atomic(&path, &json, safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(&path, e))?;
    tracing::info!(directory = %config.directory, account = account.id(), "ACME account registered");
    Ok(account)
}

fn account_path(config: &AcmeConfig, dir: &Path) -> PathBuf {
    let key = blake3::hash(config.directory.as_bytes());
    dir.join(format!("{}.json", &key.to_hex()[..16]))
}

fn builder(config: &AcmeConfig) -> Result<instant_acme::AccountBuilder, Error> {
    match &config.ca_root {
        Some(root) => Account::builder_with_root(root).map_err(|e| Error::CaRoot {
            path: root.clone(),
            said: Said::new(&e.to_string(), &[]),
        }),
        None => Account::builder()
            .map_err(|e| Error::acme(&config.directory, "loading the system's roots", e)),
    }
}
