//! `service.redis`: a user of the app's own on the node's Redis (Debian's `redis-server`, 6 or
//! later for ACLs), allowed only keys and channels under its prefix and no administrative or
//! dangerous commands (`FLUSHALL`, `KEYS`, `CONFIG`), so two apps, or two nodes, sharing one
//! Redis never read or wipe each other's keys. The agent speaks Redis's protocol itself: the
//! app's password travels in the protocol, never on a command line or in the environment of a
//! tool.

use std::path::Path;
use std::time::Duration;

use silver_types::{AppName, Said};

use super::service::{Service, Tenant};
use crate::error::{BackupProblem, Error};
use crate::paths::AppPaths;

/// How the agent reaches Redis as an administrator (`--redis-url`).
#[derive(Clone, PartialEq, Eq)]
pub struct Redis {
    pub host: String,
    pub port: u16,
    /// `AUTH [user] password` for the administrator, when Redis asks for one.
    pub admin: Option<(Option<String>, String)>,
    /// Where the agent keeps the password it gave Redis's `default` user, when it found that
    /// user open and no `admin` was given (a node; `silver serve` leaves it None).
    pub default_secret: Option<std::path::PathBuf>,
}

/// Never prints the password.
impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin", &self.admin.as_ref().map(|(u, _)| (u, "***")))
            .finish()
    }
}

impl Default for Redis {
    fn default() -> Self {
        Redis {
            host: "127.0.0.1".into(),
            port: 6379,
            admin: None,
            default_secret: None,
        }
    }
}

impl Redis {
    /// From `redis://[[user]:password@]host[:port]`; None for anything else (the caller says so
    /// without repeating it: it may hold a password).
    pub fn from_url(url: &str) -> Option<Redis> {
        let url = super::AdminUrl::parse(url, &["redis"])?;
        Some(Redis {
            host: url.host?,
            port: url.port.unwrap_or(6379),
            admin: url.password.map(|p| (url.user, p)),
            default_secret: None,
        })
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// What an app's user may not run beyond `-@admin -@dangerous`, each for what it crosses:
/// - `SCAN`, `KEYS`, `RANDOMKEY`: they list every app's key names, whatever the key patterns;
/// - `FUNCTION`, `FCALL`: functions are one library for the whole server, so one app could
///   replace (`FUNCTION LOAD REPLACE`), read or flush another's code and have it run as the other;
/// - `SCRIPT FLUSH`: it empties every app's script cache;
/// - `PUBSUB`: it lists every app's channels;
/// - `CONFIG`, `MODULE`, `ACL`, `SWAPDB`, `MOVE`, `SELECT`: server settings, other users, and
///   other logical databases.
const DENIED: &[&str] = &[
    "-scan",
    "-keys",
    "-randomkey",
    "-function",
    "-fcall",
    "-fcall_ro",
    "-script|flush",
    "-pubsub",
    "-config",
    "-module",
    "-acl",
    "-swapdb",
    "-move",
    "-select",
];

impl Service for Redis {
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

/// Makes (or resets to what it must be) the app's user; returns its variables.
pub fn provision(
    node: &str,
    app: &AppName,
    paths: &AppPaths,
    redis: &Redis,
) -> Result<Vec<(String, String)>, Error> {
    let user = crate::identity::Identity::of(node, app).name;
    let password_file = paths.services().join("redis.password");
    std::fs::create_dir_all(paths.services()).map_err(|e| Error::io(&paths.services(), e))?;
    let password = safefs::load_or_create_secret(&password_file, 24)
        .map_err(|e| Error::io(&password_file, e))?;
    let mut conn = admin(app, redis)?;
    // Redis quotes a modifier it cannot parse: the password must not ride along.
    let refused = |message: String| Error::RedisRefused {
        addr: redis.addr(),
        message: Said::new(&message, &[&password]),
    };
    claim(&mut conn, node, app, &user, redis)?;
    let keys = format!("~{user}:*");
    let channels = format!("&{user}:*");
    let secret = format!(">{password}");
    conn.call(
        &[
            "ACL",
            "SETUSER",
            &user,
            "reset",
            "on",
            &secret,
            &keys,
            &channels,
            "+@all",
            "-@admin",
            "-@dangerous",
        ]
        .into_iter()
        .chain(DENIED.iter().copied())
        .collect::<Vec<_>>(),
    )
    .map_err(refused)?;
    // Kept across a restart of Redis when it has somewhere to keep it (an ACL file, else its
    // config file); a Redis started without either keeps it until the next activation.
    if conn.call(&["ACL", "SAVE"]).is_err() && conn.call(&["CONFIG", "REWRITE"]).is_err() {
        tracing::warn!(%app, "Redis has no ACL or config file: the app's user lasts until Redis restarts");
    }
    let url = format!("redis://{user}:{password}@{}:{}/0", redis.host, redis.port);
    Ok(vec![
        ("CONFIG_REDIS_HOST".into(), redis.host.clone()),
        ("CONFIG_REDIS_PORT".into(), redis.port.to_string()),
        ("CONFIG_REDIS_USER".into(), user.clone()),
        ("CONFIG_REDIS_PASSWORD".into(), password),
        ("CONFIG_REDIS_PREFIX".into(), format!("{user}:")),
        ("CONFIG_REDIS_DB".into(), "0".into()),
        ("REDIS_URL".into(), url),
    ])
}

/// Marks the app's user and prefix as its own in the key `<identity>-owner`, which no app's
/// user may touch (identities hold no `-`); a user another app, node or person claimed is
/// refused, naming its owner, as PostgreSQL roles are.
fn claim(
    conn: &mut Conn,
    node: &str,
    app: &AppName,
    user: &str,
    redis: &Redis,
) -> Result<(), Error> {
    let refused = |message: String| Error::RedisRefused {
        addr: redis.addr(),
        message: Said::new(&message, &[]),
    };
    let ours = crate::identity::Identity::owner_comment(node, app);
    let key = format!("{user}-owner");
    conn.command(&[b"SET", key.as_bytes(), ours.as_bytes(), b"NX"])
        .map_err(refused)?;
    let owner = conn.command(&[b"GET", key.as_bytes()]).map_err(refused)?;
    let owner = String::from_utf8_lossy(&owner.bytes()).into_owned();
    if owner == ours {
        return Ok(());
    }
    Err(Error::IdentityTaken {
        app: app.clone(),
        service: "Redis user",
        name: user.to_string(),
        owner,
    })
}

/// One connection to Redis, through the `redis` crate (its parser, its bounds): commands go
/// as binary-safe arguments, never through a shell or a command line.
struct Conn {
    inner: redis::Connection,
}

impl Conn {
    fn open(redis: &Redis) -> std::io::Result<Conn> {
        let timeout = Duration::from_secs(10);
        let client = redis::Client::open((redis.host.as_str(), redis.port))
            .map_err(std::io::Error::other)?;
        let inner = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .map_err(std::io::Error::other)?;
        inner
            .set_read_timeout(Some(timeout))
            .and_then(|()| inner.set_write_timeout(Some(timeout)))
            .map_err(std::io::Error::other)?;
        Ok(Conn { inner })
    }

    /// Sends one command; Ok with a simple or integer answer, Err with Redis's error (which
    /// never repeats the command's arguments).
    fn call(&mut self, args: &[&str]) -> Result<String, String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        match self.command(&args)? {
            Reply::Simple(s) => Ok(s),
            Reply::Int(n) => Ok(n.to_string()),
            other => Err(format!("an answer silver does not expect: {other:?}")),
        }
    }

    /// Sends one command with binary-safe arguments; its whole reply, or Redis's error.
    fn command(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        let Some((name, rest)) = args.split_first() else {
            return Err("no command".into());
        };
        let mut cmd = redis::cmd(&String::from_utf8_lossy(name));
        for arg in rest {
            cmd.arg(*arg);
        }
        let value: redis::Value = cmd.query(&mut self.inner).map_err(|e| e.to_string())?;
        Ok(Reply::from(value))
    }
}

/// One reply of Redis's protocol, as the agent reads them.
#[derive(Debug)]
enum Reply {
    Simple(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl From<redis::Value> for Reply {
    fn from(value: redis::Value) -> Reply {
        use redis::Value;
        match value {
            Value::Nil => Reply::Bulk(None),
            Value::Int(n) => Reply::Int(n),
            Value::BulkString(bytes) => Reply::Bulk(Some(bytes)),
            Value::SimpleString(s) => Reply::Simple(s),
            Value::Okay => Reply::Simple("OK".into()),
            Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
                Reply::Array(Some(items.into_iter().map(Reply::from).collect()))
            }
            Value::Map(pairs) => Reply::Array(Some(
                pairs
                    .into_iter()
                    .flat_map(|(k, v)| [Reply::from(k), Reply::from(v)])
                    .collect(),
            )),
            Value::Double(d) => Reply::Simple(d.to_string()),
            Value::Boolean(b) => Reply::Int(i64::from(b)),
            Value::VerbatimString { text, .. } => Reply::Bulk(Some(text.into_bytes())),
            Value::BigNumber(n) => Reply::Simple(n.to_string()),
            other => Reply::Simple(format!("{other:?}")),
        }
    }
}

impl Reply {
    fn bytes(self) -> Vec<u8> {
        match self {
            Reply::Bulk(Some(b)) => b,
            Reply::Simple(s) => s.into_bytes(),
            Reply::Int(n) => n.to_string().into_bytes(),
            _ => Vec::new(),
        }
    }

    fn list(self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(items)) => items,
            _ => Vec::new(),
        }
    }
}

/// A connection as the administrator: the `--redis-url` login, else the password the agent
/// gave `default`. A `default` user that any local process may use without a password (Debian's
/// Redis as installed) would let every app read every key, so the agent gives it a password
/// first, kept in `default_secret` (0600), and says so.
fn admin(app: &AppName, redis: &Redis) -> Result<Conn, Error> {
    let open = || {
        Conn::open(redis).map_err(|source| Error::NoRedis {
            app: app.clone(),
            addr: redis.addr(),
            source,
        })
    };
    let refused = |message: String| Error::RedisRefused {
        addr: redis.addr(),
        message: Said::new(&message, &[]),
    };
    let mut conn = open()?;
    if let Some((admin, admin_password)) = &redis.admin {
        let mut auth = vec!["AUTH"];
        auth.extend(admin.as_deref());
        auth.push(admin_password);
        conn.call(&auth).map_err(refused)?;
        return Ok(conn);
    }
    let Some(file) = &redis.default_secret else {
        return Ok(conn);
    };
    if let Ok(saved) = std::fs::read_to_string(file) {
        if conn.call(&["AUTH", "default", saved.trim()]).is_ok() {
            return Ok(conn);
        }
        // A Redis restarted without its ACL file has the default user open again.
        conn = open()?;
    }
    if let Err(e) = conn.command(&[b"ACL", b"WHOAMI"]) {
        return Err(Error::RedisNeedsAdmin {
            addr: redis.addr(),
            message: Said::new(&e, &[]),
        });
    }
    let password = safefs::load_or_create_secret(file, 24).map_err(|e| Error::io(file, e))?;
    let secret = format!(">{password}");
    conn.call(&["ACL", "SETUSER", "default", "on", "resetpass", &secret])
        .map_err(|m| refused(m.replace(&password, "***")))?;
    if conn.call(&["ACL", "SAVE"]).is_err() && conn.call(&["CONFIG", "REWRITE"]).is_err() {
        tracing::warn!(addr = %redis.addr(), "Redis has no ACL or config file: its default user's password lasts until Redis restarts");
    }
    tracing::warn!(
        addr = %redis.addr(),
        secret_file = %file.display(),
        "Redis's default user had no password, so any local process could read every app's keys: the agent gave it one"
    );
    Ok(conn)
}

/// A value as JSON: text when it is UTF-8, else `{"hex": …}`, so binary values survive.
fn to_json(bytes: Vec<u8>) -> serde_json::Value {
    match String::from_utf8(bytes) {
        Ok(text) => serde_json::Value::String(text),
        Err(e) => serde_json::json!({ "hex": hex::encode(e.into_bytes()) }),
    }
}

fn from_json(value: &serde_json::Value) -> Option<Vec<u8>> {
    match value {
        serde_json::Value::String(s) => Some(s.clone().into_bytes()),
        serde_json::Value::Object(o) => hex::decode(o.get("hex")?.as_str()?).ok(),
        _ => None,
    }
}

/// The app's keys (without its prefix), sorted.
fn keys(conn: &mut Conn, prefix: &str) -> Result<Vec<Vec<u8>>, String> {
    let pattern = format!("{}*", prefix.replace('*', "\\*").replace('?', "\\?"));
    let mut cursor = b"0".to_vec();
    let mut keys = Vec::new();
    loop {
        let reply = conn.command(&[
            b"SCAN",
            &cursor,
            b"MATCH",
            pattern.as_bytes(),
            b"COUNT",
            b"1000",
        ])?;
        let mut parts = reply.list().into_iter();
        cursor = parts.next().map(Reply::bytes).unwrap_or_default();
        keys.extend(
            parts
                .next()
                .map(Reply::list)
                .unwrap_or_default()
                .into_iter()
                .map(Reply::bytes),
        );
        if cursor == b"0" || cursor.is_empty() {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .map(|k| k[prefix.len()..].to_vec())
        .collect())
}

/// Writes the app's keys as JSON lines, by key: `key`, `type`, `value` and, for a key that
/// expires, `ttl_ms` (the time it had left).
pub fn dump(node: &str, app: &AppName, redis: &Redis, out: &Path) -> Result<(), Error> {
    let prefix = format!("{}:", crate::identity::Identity::of(node, app).name);
    let refused = |message: String| Error::RedisRefused {
        addr: redis.addr(),
        message: Said::new(&message, &[]),
    };
    let mut conn = admin(app, redis)?;
    let mut text = String::new();
    for key in keys(&mut conn, &prefix).map_err(refused)? {
        let full = [prefix.as_bytes(), &key].concat();
        let kind =
            String::from_utf8_lossy(&conn.command(&[b"TYPE", &full]).map_err(refused)?.bytes())
                .into_owned();
        let get = |conn: &mut Conn, args: &[&[u8]]| conn.command(args).map_err(refused);
        let value = match kind.as_str() {
            "string" => to_json(get(&mut conn, &[b"GET", &full])?.bytes()),
            "list" => get(&mut conn, &[b"LRANGE", &full, b"0", b"-1"])?
                .list()
                .into_iter()
                .map(|r| to_json(r.bytes()))
                .collect(),
            "set" => {
                let mut members: Vec<Vec<u8>> = get(&mut conn, &[b"SMEMBERS", &full])?
                    .list()
                    .into_iter()
                    .map(Reply::bytes)
                    .collect();
                members.sort();
                members.into_iter().map(to_json).collect()
            }
            "hash" => {
                let flat: Vec<Vec<u8>> = get(&mut conn, &[b"HGETALL", &full])?
                    .list()
                    .into_iter()
                    .map(Reply::bytes)
                    .collect();
                let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = flat
                    .chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (c[0].clone(), c[1].clone()))
                    .collect();
                pairs.sort();
                pairs
                    .into_iter()
                    .map(|(f, v)| serde_json::json!([to_json(f), to_json(v)]))
                    .collect()
            }
            "zset" => {
                let flat: Vec<Vec<u8>> =
                    get(&mut conn, &[b"ZRANGE", &full, b"0", b"-1", b"WITHSCORES"])?
                        .list()
                        .into_iter()
                        .map(Reply::bytes)
                        .collect();
                flat.chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| {
                        serde_json::json!([to_json(c[0].clone()), String::from_utf8_lossy(&c[1])])
                    })
                    .collect()
            }
            other => {
                return Err(Error::RedisKeyKind {
                    app: app.clone(),
                    key: String::from_utf8_lossy(&key).into_owned(),
                    kind: other.to_string(),
                })
            }
        };
        let ttl = match get(&mut conn, &[b"PTTL", &full])? {
            Reply::Int(ms) if ms > 0 => Some(ms),
            _ => None,
        };
        let mut line = serde_json::json!({ "key": to_json(key), "type": kind, "value": value });
        if let Some(ms) = ttl {
            line["ttl_ms"] = ms.into();
        }
        text += &serde_json::to_string(&line).expect("JSON");
        text.push('\n');
    }
    safefs::write_atomic(out, text.as_bytes(), safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(out, e))
}

/// Writes the keys of `dump` (None: none) under the staging prefix `<identity>-restore:`, which
/// no app's user may touch, then the marker key `<identity>-restore` that says they are whole.
/// One line at a time: a dump is never read whole into memory.
fn stage(d: &Tenant, redis: &Redis, dump: Option<&Path>) -> Result<(), Error> {
    let app = d.app;
    let id = crate::identity::Identity::of(d.node, app);
    let (staging, marker) = (format!("{}:", id.staging("restore")), id.staging("restore"));
    let refused = |message: String| Error::RedisRefused {
        addr: redis.addr(),
        message: Said::new(&message, &[]),
    };
    let mut conn = admin(app, redis)?;
    delete_prefixed(&mut conn, &staging).map_err(refused)?;
    conn.command(&[b"DEL", marker.as_bytes()])
        .map_err(refused)?;
    super::dumps::for_each_json_line(dump, |number, line| {
        let bad = |why: &str| Error::BadBackup {
            path: dump.unwrap_or(Path::new("redis.jsonl")).to_path_buf(),
            why: BackupProblem::Line {
                line: number,
                said: Said::new(why, &[]),
            },
        };
        let key = from_json(&line["key"]).ok_or_else(|| bad("no key"))?;
        let full = [staging.as_bytes(), &key].concat();
        let args = write_command(&line, full.clone()).map_err(|why| bad(&why))?;
        if args.len() > 2 {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            conn.command(&refs).map_err(|e| bad(&e))?;
        }
        if let Some(ms) = line["ttl_ms"].as_i64() {
            conn.command(&[b"PEXPIRE", &full, ms.to_string().as_bytes()])
                .map_err(|e| bad(&e))?;
        }
        Ok(())
    })?;
    conn.command(&[b"SET", marker.as_bytes(), b"1"])
        .map_err(refused)
        .map(|_| ())
}

/// The command that writes one dumped key (`SET`, `RPUSH`, `SADD`, `HSET`, `ZADD`) as `full`.
fn write_command(line: &serde_json::Value, full: Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    let items = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v.as_array().cloned().unwrap_or_default()
    };
    let mut args: Vec<Vec<u8>> = Vec::new();
    match line["type"].as_str().unwrap_or("") {
        "string" => args.extend([
            b"SET".to_vec(),
            full,
            from_json(&line["value"]).ok_or("bad value")?,
        ]),
        "list" => {
            args.extend([b"RPUSH".to_vec(), full]);
            args.extend(items(&line["value"]).iter().filter_map(from_json));
        }
        "set" => {
            args.extend([b"SADD".to_vec(), full]);
            args.extend(items(&line["value"]).iter().filter_map(from_json));
        }
        "hash" => {
            args.extend([b"HSET".to_vec(), full]);
            for pair in items(&line["value"]) {
                args.extend(
                    [from_json(&pair[0]), from_json(&pair[1])]
                        .into_iter()
                        .flatten(),
                );
            }
        }
        "zset" => {
            args.extend([b"ZADD".to_vec(), full]);
            for pair in items(&line["value"]) {
                args.push(pair[1].as_str().unwrap_or("0").as_bytes().to_vec());
                args.extend(from_json(&pair[0]));
            }
        }
        other => return Err(format!("unknown type `{other}`")),
    }
    Ok(args)
}

/// Swaps the staged keys in, in one script, which Redis runs as one step: the app's keys are
/// deleted, the staged ones renamed under its prefix, and the marker dropped. Without the
/// marker there is nothing to swap (it was swapped in already).
const SWAP: &str = r#"
local live, staging, marker = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', marker) == 0 then return 0 end
local function keys(prefix)
  local found, cursor = {}, '0'
  repeat
    local reply = redis.call('SCAN', cursor, 'MATCH', prefix .. '*', 'COUNT', 1000)
    cursor = reply[1]
    for _, key in ipairs(reply[2]) do found[#found + 1] = key end
  until cursor == '0'
  return found
end
for _, key in ipairs(keys(live)) do redis.call('DEL', key) end
for _, key in ipairs(keys(staging)) do
  redis.call('RENAME', key, live .. string.sub(key, #staging + 1))
end
redis.call('DEL', marker)
return 1
"#;

fn switch(d: &Tenant, redis: &Redis) -> Result<(), Error> {
    let id = crate::identity::Identity::of(d.node, d.app);
    let (staging, marker) = (format!("{}:", id.staging("restore")), id.staging("restore"));
    let mut conn = admin(d.app, redis)?;
    conn.call(&["EVAL", SWAP, "0", &id.redis_prefix(), &staging, &marker])
        .map_err(|message| Error::RedisRefused {
            addr: redis.addr(),
            message: Said::new(&message, &[]),
        })
        .map(|_| ())
}

/// Drops the staged keys and their marker.
fn discard(d: &Tenant, redis: &Redis) -> Result<(), Error> {
    let id = crate::identity::Identity::of(d.node, d.app);
    let (staging, marker) = (format!("{}:", id.staging("restore")), id.staging("restore"));
    let refused = |message: String| Error::RedisRefused {
        addr: redis.addr(),
        message: Said::new(&message, &[]),
    };
    let mut conn = admin(d.app, redis)?;
    conn.command(&[b"DEL", marker.as_bytes()])
        .map_err(refused)?;
    delete_prefixed(&mut conn, &staging).map_err(refused)
}

fn delete_prefixed(conn: &mut Conn, prefix: &str) -> Result<(), String> {
    for key in keys(conn, prefix)? {
        conn.command(&[b"DEL", &[prefix.as_bytes(), &key].concat()])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        let r = Redis::from_url("redis://:s%40cret@10.0.0.5:6380").unwrap();
        assert_eq!((r.host.as_str(), r.port), ("10.0.0.5", 6380));
        assert_eq!(r.admin, Some((None, "s@cret".to_string())));
        let r = Redis::from_url("redis://admin:pw@localhost").unwrap();
        assert_eq!(r.admin, Some((Some("admin".into()), "pw".into())));
        assert_eq!(Redis::from_url("redis://127.0.0.1").unwrap().admin, None);
        assert!(Redis::from_url("http://127.0.0.1").is_none());
        assert!(!format!("{:?}", Redis::from_url("redis://:pw@h").unwrap()).contains("pw"));
    }
}
