//! `service.couchdb`: a database of the app's own on the node's CouchDB HTTP API (CouchDB
//! itself, or `pouchdb-server`, which speaks the same API; Debian packages neither), Silver
//! Lining's `CONFIG_COUCHDB_DB` and `CONFIG_COUCHDB_HOST`, and the app's documents as a
//! deterministic dump: one document per line, sorted by id, keys sorted.
//!
//! With an administrator's login (`--couchdb-url http://ADMIN:PASSWORD@HOST:PORT`), each app
//! also gets a user of its own and its database's `_security` admits only that user, so two
//! apps never read each other's documents; the app gets `CONFIG_COUCHDB_USER` and `_PASSWORD`.

use std::path::Path;

use packer::AppName;
use reqwest::{Method, StatusCode};

use crate::error::Error;
use crate::paths::AppPaths;

/// How the agent reaches CouchDB.
#[derive(Clone, PartialEq, Eq)]
pub struct Couchdb {
    pub host: String,
    pub port: u16,
    pub admin: Option<(String, String)>,
}

/// Never prints the password.
impl std::fmt::Debug for Couchdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Couchdb")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin", &self.admin.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl Default for Couchdb {
    fn default() -> Self {
        Couchdb {
            host: "127.0.0.1".into(),
            port: 5984,
            admin: None,
        }
    }
}

impl Couchdb {
    /// From `http://[ADMIN:PASSWORD@]HOST[:PORT]`; None for anything else (the caller says so
    /// without repeating it: it may hold a password).
    pub fn from_url(url: &str) -> Option<Couchdb> {
        let url = url::Url::parse(url).ok()?;
        if url.scheme() != "http" {
            return None;
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let admin = url.password().map(|p| (decode(url.username()), decode(p)));
        Some(Couchdb {
            host: url.host_str()?.to_string(),
            port: url.port().unwrap_or(5984),
            admin,
        })
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The app's database: CouchDB names are lower case, so `s<node>_<app>` lowered.
pub fn couch_name(node: &str, app: &AppName) -> String {
    crate::services::pg_name(node, app).to_lowercase()
}

/// Makes the app's database (and, with an administrator, its user); returns its variables.
pub fn provision(
    node: &str,
    app: &AppName,
    paths: &AppPaths,
    couch: &Couchdb,
) -> Result<Vec<(String, String)>, Error> {
    let name = couch_name(node, app);
    create_db(app, couch, &name)?;
    let mut env = vec![
        ("CONFIG_COUCHDB_DB".to_string(), name.clone()),
        ("CONFIG_COUCHDB_HOST".to_string(), couch.addr()),
    ];
    if couch.admin.is_some() {
        let dir = paths.services();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let file = dir.join("couchdb.password");
        let password = safefs::load_or_create_secret(&file, 16).map_err(|e| Error::io(&file, e))?;
        let id = format!("org.couchdb.user:{name}");
        let user_doc = serde_json::json!({
            "_id": id, "name": name, "password": password, "roles": [], "type": "user",
        });
        // The user document is replaced as a whole: its current revision first.
        let current = call(app, couch, Method::GET, &format!("/_users/{id}"), None)?;
        let mut doc = user_doc;
        if let (StatusCode::OK, Some(rev)) = (current.0, current.1.get("_rev")) {
            doc["_rev"] = rev.clone();
        }
        expect(
            app,
            couch,
            Method::PUT,
            &format!("/_users/{id}"),
            Some(doc),
            &[201, 202],
        )?;
        let security = serde_json::json!({
            "admins": { "names": [], "roles": [] },
            "members": { "names": [name], "roles": [] },
        });
        expect(
            app,
            couch,
            Method::PUT,
            &format!("/{name}/_security"),
            Some(security),
            &[200],
        )?;
        env.push(("CONFIG_COUCHDB_USER".into(), name));
        env.push(("CONFIG_COUCHDB_PASSWORD".into(), password));
    }
    Ok(env)
}

/// Writes every document (attachments inline), one per line in id order, keys sorted.
pub fn dump(node: &str, app: &AppName, couch: &Couchdb, out: &Path) -> Result<(), Error> {
    let name = couch_name(node, app);
    let path = format!("/{name}/_all_docs?include_docs=true&attachments=true");
    let (_, all) = expect(app, couch, Method::GET, &path, None, &[200])?;
    let mut docs: Vec<&serde_json::Value> = all["rows"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r.get("doc")).collect())
        .unwrap_or_default();
    docs.sort_by(|a, b| a["_id"].as_str().cmp(&b["_id"].as_str()));
    let mut text = String::new();
    for doc in docs {
        // serde_json's maps are sorted by key: the same document, the same line.
        text += &serde_json::to_string(doc).expect("JSON in, JSON out");
        text.push('\n');
    }
    safefs::write_atomic(out, text.as_bytes(), safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(out, e))
}

/// Empties the app's database (deleted and made again), then loads `dump` (if any) with its
/// documents' own revisions.
pub fn restore(
    node: &str,
    app: &AppName,
    paths: &AppPaths,
    couch: &Couchdb,
    dump: Option<&Path>,
) -> Result<(), Error> {
    let name = couch_name(node, app);
    let docs = crate::data::json_lines(dump)?;
    expect(
        app,
        couch,
        Method::DELETE,
        &format!("/{name}"),
        None,
        &[200, 202, 404],
    )?;
    provision(node, app, paths, couch)?;
    if !docs.is_empty() {
        let body = serde_json::json!({ "docs": docs, "new_edits": false });
        expect(
            app,
            couch,
            Method::POST,
            &format!("/{name}/_bulk_docs"),
            Some(body),
            &[201],
        )?;
    }
    Ok(())
}

fn create_db(app: &AppName, couch: &Couchdb, name: &str) -> Result<(), Error> {
    // 412: it exists already, kept across releases.
    expect(
        app,
        couch,
        Method::PUT,
        &format!("/{name}"),
        None,
        &[201, 202, 412],
    )
    .map(|_| ())
}

/// A call that must answer one of `ok`.
fn expect(
    app: &AppName,
    couch: &Couchdb,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    ok: &[u16],
) -> Result<(StatusCode, serde_json::Value), Error> {
    let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
    let (status, json) = call(app, couch, method, path, body)?;
    if !ok.contains(&status.as_u16()) {
        let reason = json["reason"]
            .as_str()
            .or(json["error"].as_str())
            .unwrap_or("");
        return Err(Error::CouchdbRefused {
            addr: couch.addr(),
            message: format!("{what} answered {status}: {reason}"),
        });
    }
    Ok((status, json))
}

/// One request to CouchDB, from the blocking threads services run on.
fn call(
    app: &AppName,
    couch: &Couchdb,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(StatusCode, serde_json::Value), Error> {
    let url = format!("http://{}{path}", couch.addr());
    let unreachable = |e: reqwest::Error| Error::NoCouchdb {
        app: app.clone(),
        addr: couch.addr(),
        source: std::io::Error::other(e.without_url()),
    };
    let work = async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .map_err(unreachable)?;
        let mut req = client.request(method, &url);
        if let Some((user, password)) = &couch.admin {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let json = resp.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, json))
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(work),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io(Path::new("tokio"), e))?
            .block_on(work),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        let c = Couchdb::from_url("http://admin:s%40cret@127.0.0.1:5985").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 5985));
        assert_eq!(c.admin, Some(("admin".into(), "s@cret".into())));
        assert!(!format!("{c:?}").contains("s@cret"));
        assert_eq!(Couchdb::from_url("http://127.0.0.1").unwrap().admin, None);
        assert!(Couchdb::from_url("https://x").is_none());
    }
}
