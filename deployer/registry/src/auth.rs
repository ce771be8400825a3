//! Registry credentials, read where users keep them, and the two schemes registries ask for:
//! `Basic` (htpasswd) and `Bearer` (a token from the realm the challenge names).
//!
//! Credentials are never taken from a command line (they would show in `ps` and shell history)
//! and never logged: [`Credentials`]' `Debug` shows the user only.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use silver_types::Said;

use crate::error::Error;

/// A user and password (or token) for one registry.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials({}, secret: {} bytes)",
            self.user,
            self.secret.len()
        )
    }
}

impl Credentials {
    pub fn new(user: String, secret: String) -> Credentials {
        Credentials { user, secret }
    }

    /// The `Authorization: Basic` value.
    pub(crate) fn basic(&self) -> String {
        let pair = format!("{}:{}", self.user, self.secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    /// What must never appear in a message built from a registry's answer.
    pub(crate) fn secrets(&self) -> Vec<String> {
        vec![self.secret.clone(), self.basic()]
    }
}

/// The files a client reads credentials from, first found first: `REGISTRY_AUTH_FILE`,
/// podman's and skopeo's `$XDG_RUNTIME_DIR/containers/auth.json`, then Docker's
/// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. All use Docker's format.
pub fn client_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(f));
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(Path::new(&dir).join("containers/auth.json"));
    }
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => files.push(Path::new(&dir).join("config.json")),
        None => {
            if let Some(home) = std::env::var_os("HOME") {
                files.push(Path::new(&home).join(".docker/config.json"));
            }
        }
    }
    files
}

/// The credentials for `registry` in the first of `files` that has them. A file that does not
/// exist is skipped; one that cannot be read or parsed is an error naming it.
pub fn find(registry: &str, files: &[PathBuf]) -> Result<Option<Credentials>, Error> {
    for path in files {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        if let Some(found) = parse_auth_file(path, &text, registry)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The node's credentials file must be the agent's alone: a registry password readable by an
/// app's Unix user would let one app pull (or, with push rights, replace) another's artifacts.
pub fn check_private(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt as _;
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => Err(Error::AuthFileOpen {
            path: path.to_path_buf(),
            mode: meta.permissions().mode() & 0o777,
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

fn parse_auth_file(path: &Path, text: &str, registry: &str) -> Result<Option<Credentials>, Error> {
    let bad = |why: &str| Error::AuthFile {
        path: path.to_path_buf(),
        why: Said::new(why, &[]),
    };
    let file: AuthFile = serde_json::from_str(text).map_err(|e| {
        // serde's message names a line and column, never a value.
        bad(&format!("not Docker's auth format ({})", e))
    })?;
    let entry = file
        .auths
        .iter()
        .find(|(key, _)| auth_key_host(key) == registry);
    let Some((key, entry)) = entry else {
        return Ok(None);
    };
    if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials::new(user.clone(), password.clone())));
    }
    let decoded = entry
        .auth
        .as_deref()
        .and_then(|a| {
            base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            bad(&format!(
                "the entry for {key} has no base64 `auth` of user:password"
            ))
        })?;
    let (user, secret) = decoded
        .split_once(':')
        .ok_or_else(|| bad(&format!("the entry for {key} is not user:password")))?;
    Ok(Some(Credentials::new(user.into(), secret.into())))
}

/// Docker keys entries by host, sometimes as a URL (`https://host/v1/`).
fn auth_key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// A registry's `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = auth_params(params);
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

/// `key="value", key=value` pairs; a quoted value may hold commas (scopes do).
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (
                quoted[..end].to_string(),
                quoted.get(end + 1..).unwrap_or(""),
            )
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((key, value));
        rest = next.trim_start_matches([',', ' ']);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let check = |header: &str, expected: Option<Challenge>| {
            assert_eq!(Challenge::parse(header), expected, "{header}")
        };
        check("Basic realm=\"Registry Realm\"", Some(Challenge::Basic));
        check(
            "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:a/b:pull,push\"",
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }),
        );
        check(
            "Bearer realm=https://t.example/x",
            Some(Challenge::Bearer {
                realm: "https://t.example/x".into(),
                service: None,
                scope: None,
            }),
        );
        check("Bearer service=\"x\"", None);
        check("Negotiate abc", None);
    }

    #[test]
    fn auth_files_in_docker_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let user_pass = base64::engine::general_purpose::STANDARD.encode("ci:s3cret");
        std::fs::write(
            &path,
            format!(r#"{{"auths": {{"https://ghcr.io/v1/": {{"auth": "{user_pass}"}}, "127.0.0.1:5000": {{"username": "u", "password": "p"}}}}}}"#),
        )
        .unwrap();
        let files = vec![dir.path().join("missing.json"), path.clone()];
        let ghcr = find("ghcr.io", &files).unwrap().unwrap();
        assert_eq!((ghcr.user.as_str(), ghcr.secret.as_str()), ("ci", "s3cret"));
        assert!(!format!("{ghcr:?}").contains("s3cret"));
        assert_eq!(find("127.0.0.1:5000", &files).unwrap().unwrap().user, "u");
        assert!(find("quay.io", &files).unwrap().is_none());
        std::fs::write(&path, "{not json").unwrap();
        let e = find("ghcr.io", &files).unwrap_err().to_string();
        assert!(
            e.contains("auth.json") && e.contains("Docker's auth format"),
            "{e}"
        );
    }

    #[test]
    fn a_node_refuses_credentials_others_can_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry-auth.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_private(&path).unwrap_err().to_string();
        assert!(
            e.contains("readable by other users") && e.contains("644"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_private(&path).unwrap();
    }
}
