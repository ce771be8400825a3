//! Ed25519 keys in minisign's format, so Debian's `minisign` reads silver's keys and
//! signatures and silver reads minisign's.
//!
//! Secret keys are written unencrypted, mode 0600 (as `minisign -G -W` writes them): a CI
//! secret store or the operator's disk protects them. An encrypted minisign key is read with
//! its password from `SILVER_KEY_PASSWORD`, never from the command line.

use std::path::Path;

use crate::error::Error;

pub use minisign::{PublicKey, SecretKey};

/// The environment variable an encrypted secret key's password comes from.
pub const PASSWORD_ENV: &str = "SILVER_KEY_PASSWORD";

/// A new key pair, as the text of its `.pub` and `.key` files.
pub fn generate(comment: &str) -> Result<(String, String), Error> {
    let pair = minisign::KeyPair::generate_unencrypted_keypair().map_err(|e| Error::KeyFile {
        path: "(new key)".into(),
        why: e.to_string(),
    })?;
    let public = pair.pk.to_box().map_err(|e| Error::KeyFile {
        path: "(new key)".into(),
        why: e.to_string(),
    })?;
    let secret = pair
        .sk
        .to_box(Some(&format!("{comment} (silver, unencrypted)")))
        .map_err(|e| Error::KeyFile {
            path: "(new key)".into(),
            why: e.to_string(),
        })?;
    Ok((public.into_string(), secret.into_string()))
}

/// Reads a secret key file (silver's or minisign's).
pub fn read_secret(path: &Path) -> Result<SecretKey, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let boxed = minisign::SecretKeyBox::from_string(&minisign_unencrypted(&text))
        .map_err(|e| key_err(path, e))?;
    let key = boxed.clone().into_unencrypted_secret_key();
    if let Ok(key) = key {
        return Ok(key);
    }
    let Ok(password) = std::env::var(PASSWORD_ENV) else {
        return Err(Error::KeyFile {
            path: path.to_path_buf(),
            why: format!("it is encrypted: set {PASSWORD_ENV} to its password"),
        });
    };
    boxed
        .into_secret_key(Some(password))
        .map_err(|e| key_err(path, e))
}

/// Reads a public key: a `.pub` file's text, or its base64 line alone (`RW…`).
pub fn parse_public(given: &str) -> Result<PublicKey, Error> {
    let line = given
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .unwrap_or("");
    PublicKey::from_base64(line).map_err(|e| Error::BadPublicKey {
        given: line.chars().take(80).collect(),
        why: e.to_string(),
    })
}

/// Reads a `.pub` file.
pub fn read_public(path: &Path) -> Result<PublicKey, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_public(&text).map_err(|e| Error::KeyFile {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// A key's id as minisign prints it: 16 uppercase hex digits of its little-endian key number.
pub fn key_id(keynum: &[u8]) -> String {
    keynum.iter().rev().map(|b| format!("{b:02X}")).collect()
}

pub fn public_id(key: &PublicKey) -> String {
    key_id(key.keynum())
}

/// Debian's minisign 0.11 writes an unencrypted key (`-G -W`) with a zero checksum, which the
/// crate refuses as corrupted; this fills the checksum in (BLAKE2b-256 of the algorithm, key
/// number and key, as minisign defines it) so both tools read the same keys. Any other text
/// is returned unchanged.
fn minisign_unencrypted(text: &str) -> String {
    use base64::Engine as _;
    use blake2::Digest as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut lines: Vec<&str> = text.lines().collect();
    let Some(bytes) = lines.get(1).and_then(|l| engine.decode(l.trim()).ok()) else {
        return text.to_string();
    };
    // sig_alg 2, kdf_alg 2, chk_alg 2, salt 32, ops 8, mem 8, keynum 8, sk 64, chk 32.
    let unencrypted_zero_checksum =
        bytes.len() == 158 && bytes[2..4] == [0, 0] && bytes[126..].iter().all(|b| *b == 0);
    if !unencrypted_zero_checksum {
        return text.to_string();
    }
    let mut fixed = bytes.clone();
    let mut h = blake2::Blake2b::<blake2::digest::consts::U32>::new();
    h.update(&bytes[0..2]);
    h.update(&bytes[54..126]);
    fixed[126..].copy_from_slice(&h.finalize());
    let line = engine.encode(&fixed);
    lines[1] = &line;
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn key_err(path: &Path, e: minisign::PError) -> Error {
    Error::KeyFile {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}
