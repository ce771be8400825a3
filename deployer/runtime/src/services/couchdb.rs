//! `service.couchdb`: a database of the app's own on the node's CouchDB HTTP API (CouchDB
//! itself, or `pouchdb-server`, which speaks the same API; Debian packages neither), Silver
//! Lining's `CONFIG_COUCHDB_DB` and `CONFIG_COUCHDB_HOST`, and the app's documents as a
//! deterministic dump: one document per line, sorted by id, keys sorted.
//!
//! With an administrator's login (`--couchdb-url http://ADMIN:PASSWORD@HOST:PORT`), each app
//! also gets a user of its own and its database's `_security` admits only that user, so two
//! apps never read each other's documents; the app gets `CONFIG_COUCHDB_USER` and `_PASSWORD`.

use std::path::Path;

use reqwest::{Method, StatusCode};
use silver_types::{AppName, Said};

use super::service::{Service, Tenant};
use crate::error::{BackupProblem, Error};
use crate::paths::AppPaths;

/// How the agent reaches CouchDB.
#[derive(Clone)]
pub struct Couchdb {
    pub host: String,
    pub port: u16,
    pub admin: Option<(String, String)>,
    /// One HTTP client for every request (its connection pool), made with the settings.
    client: reqwest::Client,
}

/// The one client: no proxy (the server is the node's own), and a bound on each request.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .expect("a client with no TLS settings builds")
}

impl PartialEq for Couchdb {
    fn eq(&self, other: &Couchdb) -> bool {
        (&self.host, self.port, &self.admin) == (&other.host, other.port, &other.admin)
    }
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
            client: http_client(),
        }
    }
}

impl Couchdb {
    /// From `http://[ADMIN:PASSWORD@]HOST[:PORT]`; None for anything else (the caller says so
    /// without repeating it: it may hold a password).
    pub fn from_url(url: &str) -> Option<Couchdb> {
        let url = super::AdminUrl::parse(url, &["http"])?;
        Some(Couchdb {
            host: url.host?,
            port: url.port.unwrap_or(5984),
            admin: url.password.map(|p| (url.user.unwrap_or_default(), p)),
            client: http_client(),
        })
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl Service for Couchdb {
    fn provision(&self, t: &Tenant) -> Result<Vec<(String, String)>, Error> {
        provision(t.node, t.app, t.paths, self)
    }
    fn dump(&self, t: &Tenant, out: &Path) -> Result<(), Error> {
        dump(t.node, t.app, self, out)
    }
    fn stage(&self, t: &Tenant, dump: Option<&Path>) -> Result<(), Error> {
        stage(t, self, dump)
    }
    fn switch(&self, t: &Tenant) -> Result<(), Error> {
        switch(t, self)
    }
    fn discard(&self, t: &Tenant) -> Result<(), Error> {
        discard(t, self)
    }
}

/// Makes the app's database (and, with an administrator, its user); returns its variables.
pub fn provision(
    node: &str,
    app: &AppName,
    paths: &AppPaths,
    couch: &Couchdb,
) -> Result<Vec<(String, String)>, Error> {
    let name = crate::identity::Identity::of(node, app).name;
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
        let owner = crate::identity::Identity::owner_comment(node, app);
        let user_doc = serde_json::json!({
            "_id": id, "name": name, "password": password, "roles": [], "type": "user",
            "silver_owner": owner,
        });
        put_user(app, couch, &id, user_doc)?;
        admit_only(app, couch, &name, &name)?;
        env.push(("CONFIG_COUCHDB_USER".into(), name));
        env.push(("CONFIG_COUCHDB_PASSWORD".into(), password));
    }
    Ok(env)
}

/// Makes `user` the only member of `db` (`_security`): no other app's user may read it.
fn admit_only(app: &AppName, couch: &Couchdb, db: &str, user: &str) -> Result<(), Error> {
    let security = serde_json::json!({
        "admins": { "names": [], "roles": [] },
        "members": { "names": [user], "roles": [] },
    });
    let path = format!("/{db}/_security");
    expect(app, couch, Method::PUT, &path, Some(security), &[200]).map(|_| ())
}

/// Replaces the user document as a whole, with its current revision. Two provisionings at
/// once (an activation and a `silver run`) race for the revision: the loser reads it again.
fn put_user(
    app: &AppName,
    couch: &Couchdb,
    id: &str,
    user_doc: serde_json::Value,
) -> Result<(), Error> {
    let path = format!("/_users/{id}");
    let mut tries = 0;
    loop {
        let current = call(app, couch, None, Method::GET, &path, None)?;
        let mut doc = user_doc.clone();
        if let (StatusCode::OK, Some(rev)) = (current.0, current.1.get("_rev")) {
            // A user another app, node or person made is never taken over (one an older agent
            // made, with no mark, is this app's: its name is this app's identity).
            let owner = current.1["silver_owner"].as_str().unwrap_or_default();
            if !owner.is_empty() && owner != user_doc["silver_owner"] {
                return Err(Error::IdentityTaken {
                    app: app.clone(),
                    service: "CouchDB user",
                    name: id.to_string(),
                    owner: owner.to_string(),
                });
            }
            doc["_rev"] = rev.clone();
        }
        tries += 1;
        let ok: &[u16] = if tries < 5 {
            &[201, 202, 409]
        } else {
            &[201, 202]
        };
        let (status, _) = expect(app, couch, Method::PUT, &path, Some(doc), ok)?;
        if status != StatusCode::CONFLICT {
            return Ok(());
        }
    }
}

/// Writes every document (attachments inline), one per line in id order, keys sorted.
pub fn dump(node: &str, app: &AppName, couch: &Couchdb, out: &Path) -> Result<(), Error> {
    let name = crate::identity::Identity::of(node, app).name;
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

/// Most documents, and bytes, one `_bulk_docs` request carries.
const BATCH_DOCS: usize = 500;
const BATCH_BYTES: usize = 8 << 20;

/// Loads `dump` (None: nothing) into a new database `<identity>-restore`, in batches, with
/// each document's own revision. With an administrator, the documents are written as the
/// app's own user: a `_design` document (whose `validate_doc_update` could lock the app out of
/// its own database) goes in only if the app itself could write it, and otherwise the restore
/// is refused, naming the document.
fn stage(d: &Tenant, couch: &Couchdb, dump: Option<&Path>) -> Result<(), Error> {
    let app = d.app;
    let staging = crate::identity::Identity::of(d.node, app).staging("restore");
    drop_db(app, couch, &staging)?;
    expect(
        app,
        couch,
        Method::PUT,
        &format!("/{staging}"),
        None,
        &[201, 202],
    )?;
    let login = match &couch.admin {
        Some(_) => {
            let env = provision(d.node, app, d.paths, couch)?;
            let var = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let (user, password) = (var("CONFIG_COUCHDB_USER"), var("CONFIG_COUCHDB_PASSWORD"));
            if let Some(user) = &user {
                admit_only(app, couch, &staging, user)?;
            }
            user.zip(password)
        }
        None => None,
    };
    let path = dump.unwrap_or(Path::new("couchdb.jsonl"));
    let mut batch = Batch::default();
    let write =
        |docs: Vec<serde_json::Value>| bulk(app, couch, login.as_ref(), &staging, docs, path);
    super::dumps::for_each_json_line(dump, |_, doc| {
        if let Some(full) = batch.push(doc) {
            write(full)?;
        }
        Ok(())
    })?;
    write(batch.docs)
}

/// Swaps the staged database in: CouchDB cannot rename one, so the live database is made again
/// (with its user and `_security` before any document) and the staged documents copied into
/// it, then the staged one dropped. Run again after a crash, it copies again; nothing to do once
/// the staged database is gone.
fn switch(d: &Tenant, couch: &Couchdb) -> Result<(), Error> {
    let app = d.app;
    let live = crate::identity::Identity::of(d.node, app).name;
    let staging = crate::identity::Identity::of(d.node, app).staging("restore");
    let (status, _) = call(app, couch, None, Method::GET, &format!("/{staging}"), None)?;
    if status != StatusCode::OK {
        return Ok(());
    }
    drop_db(app, couch, &live)?;
    provision(d.node, app, d.paths, couch)?;
    let mut startkey: Option<String> = None;
    loop {
        let mut page =
            format!("/{staging}/_all_docs?include_docs=true&attachments=true&limit={BATCH_DOCS}");
        if let Some(key) = &startkey {
            let key = serde_json::to_string(key).expect("a string");
            let key =
                percent_encoding::utf8_percent_encode(&key, percent_encoding::NON_ALPHANUMERIC);
            page += &format!("&startkey={key}&skip=1");
        }
        let (_, rows) = expect(app, couch, Method::GET, &page, None, &[200])?;
        let rows = rows["rows"].as_array().cloned().unwrap_or_default();
        let Some(last) = rows.last().and_then(|r| r["id"].as_str()) else {
            break;
        };
        startkey = Some(last.to_string());
        let docs: Vec<serde_json::Value> =
            rows.iter().filter_map(|r| r.get("doc").cloned()).collect();
        bulk(app, couch, None, &live, docs, Path::new(&staging))?;
    }
    drop_db(app, couch, &staging)
}

/// Drops the staged database.
fn discard(d: &Tenant, couch: &Couchdb) -> Result<(), Error> {
    let staging = crate::identity::Identity::of(d.node, d.app).staging("restore");
    drop_db(d.app, couch, &staging)
}

/// Documents gathered for one `_bulk_docs` request.
#[derive(Default)]
struct Batch {
    docs: Vec<serde_json::Value>,
    bytes: usize,
}

impl Batch {
    /// Adds `doc`; a full batch comes back to be written.
    fn push(&mut self, doc: serde_json::Value) -> Option<Vec<serde_json::Value>> {
        self.bytes += doc.to_string().len();
        self.docs.push(doc);
        if self.docs.len() < BATCH_DOCS && self.bytes < BATCH_BYTES {
            return None;
        }
        self.bytes = 0;
        Some(std::mem::take(&mut self.docs))
    }
}

/// Writes `docs` with their own revisions, as `login` (None: the administrator, if any); any
/// document refused fails the whole, naming it.
fn bulk(
    app: &AppName,
    couch: &Couchdb,
    login: Option<&(String, String)>,
    db: &str,
    docs: Vec<serde_json::Value>,
    source: &Path,
) -> Result<(), Error> {
    if docs.is_empty() {
        return Ok(());
    }
    let body = serde_json::json!({ "docs": docs, "new_edits": false });
    let path = format!("/{db}/_bulk_docs");
    let (status, answer) = call(app, couch, login, Method::POST, &path, Some(body))?;
    // CouchDB refused what the backup holds: the backup's fault, in CouchDB's words.
    let refused = |said: String| Error::BadBackup {
        path: source.to_path_buf(),
        why: BackupProblem::Refused {
            program: "CouchDB".into(),
            said: Said::new(&said, &[]),
        },
    };
    let row = answer
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r.get("error").is_some()));
    if let Some(row) = row {
        return Err(refused(format!(
            "document `{}` as the app's user: {} ({})",
            row["id"].as_str().unwrap_or("?"),
            row["error"].as_str().unwrap_or("?"),
            row["reason"].as_str().unwrap_or(""),
        )));
    }
    if status != StatusCode::CREATED {
        return Err(refused(format!(
            "its documents as the app's user: {status} {}",
            answer["reason"].as_str().unwrap_or("")
        )));
    }
    Ok(())
}

/// Deletes a database, if there is one.
fn drop_db(app: &AppName, couch: &Couchdb, name: &str) -> Result<(), Error> {
    let path = format!("/{name}");
    expect(app, couch, Method::DELETE, &path, None, &[200, 202, 404]).map(|_| ())
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
    let (status, json) = call(app, couch, None, method, path, body)?;
    if !ok.contains(&status.as_u16()) {
        let reason = json["reason"]
            .as_str()
            .or(json["error"].as_str())
            .unwrap_or("");
        return Err(Error::CouchdbRefused {
            addr: couch.addr(),
            message: Said::new(&format!("{what} answered {status}: {reason}"), &[]),
        });
    }
    Ok((status, json))
}

/// One request to CouchDB, from the blocking threads services run on: as `login` (a user and
/// password), else as the administrator, if one is configured.
fn call(
    app: &AppName,
    couch: &Couchdb,
    login: Option<&(String, String)>,
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
        let mut req = couch.client.request(method, &url);
        if let Some((user, password)) = login.or(couch.admin.as_ref()) {
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
    // Services run on the runtime's blocking threads, which may wait on its reactor; a caller
    // outside any runtime (a test, a tool) gets one of its own, made once.
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(work),
        Err(_) => own_runtime().block_on(work),
    }
}

fn own_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds")
    })
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
