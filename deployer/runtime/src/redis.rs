//! `service.redis`: a user of the app's own on the node's Redis (Debian's `redis-server`, 6 or
//! later for ACLs), allowed only keys and channels under its prefix and no administrative or
//! dangerous commands (`FLUSHALL`, `KEYS`, `CONFIG`), so two apps, or two nodes, sharing one
//! Redis never read or wipe each other's keys. The agent speaks Redis's protocol itself: the
//! app's password travels in the protocol, never on a command line or in the environment of a
//! tool.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use packer::AppName;

use crate::error::Error;
use crate::paths::AppPaths;

/// How the agent reaches Redis as an administrator (`--redis-url`).
#[derive(Clone, PartialEq, Eq)]
pub struct Redis {
    pub host: String,
    pub port: u16,
    /// `AUTH [user] password` for the administrator, when Redis asks for one.
    pub admin: Option<(Option<String>, String)>,
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
        }
    }
}

impl Redis {
    /// From `redis://[[user]:password@]host[:port]`; None for anything else (the caller says so
    /// without repeating it: it may hold a password).
    pub fn from_url(url: &str) -> Option<Redis> {
        let url = url::Url::parse(url).ok()?;
        if url.scheme() != "redis" {
            return None;
        }
        let password = url.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        let user = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(String::from);
        Some(Redis {
            host: url.host_str()?.to_string(),
            port: url.port().unwrap_or(6379),
            admin: password.map(|p| (user, p)),
        })
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The app's Redis user: `s<node>_<app>`, its keys `s<node>_<app>:*`.
pub fn redis_user(node: &str, app: &AppName) -> String {
    crate::services::pg_name(node, app)
}

/// Makes (or resets to what it must be) the app's user; returns its variables.
pub fn provision(
    node: &str,
    app: &AppName,
    paths: &AppPaths,
    redis: &Redis,
) -> Result<Vec<(String, String)>, Error> {
    let user = redis_user(node, app);
    let password_file = paths.services().join("redis.password");
    std::fs::create_dir_all(paths.services()).map_err(|e| Error::io(&paths.services(), e))?;
    let password = safefs::load_or_create_secret(&password_file, 24)
        .map_err(|e| Error::io(&password_file, e))?;
    let mut conn = Conn::open(redis).map_err(|source| Error::NoRedis {
        app: app.clone(),
        addr: redis.addr(),
        source,
    })?;
    // Redis quotes a modifier it cannot parse: the password must not ride along.
    let refused = |message: String| Error::RedisRefused {
        addr: redis.addr(),
        message: message.replace(&password, "***"),
    };
    if let Some((admin, admin_password)) = &redis.admin {
        let mut auth = vec!["AUTH"];
        auth.extend(admin.as_deref());
        auth.push(admin_password);
        conn.call(&auth).map_err(refused)?;
    }
    let keys = format!("~{user}:*");
    let channels = format!("&{user}:*");
    let secret = format!(">{password}");
    conn.call(&[
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
    ])
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

/// One connection speaking RESP, Redis's protocol.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(redis: &Redis) -> std::io::Result<Conn> {
        use std::net::ToSocketAddrs;
        let addr = redis
            .addr()
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Conn {
            reader: BufReader::new(stream),
        })
    }

    /// Sends one command; Ok with a simple or integer answer, Err with Redis's error (which
    /// never repeats the command's arguments).
    fn call(&mut self, args: &[&str]) -> Result<String, String> {
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.extend_from_slice(arg.as_bytes());
            frame.extend_from_slice(b"\r\n");
        }
        let stream = self.reader.get_mut();
        stream.write_all(&frame).map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let line = line.trim_end();
        match line.split_at(line.len().min(1)) {
            ("+" | ":", rest) => Ok(rest.to_string()),
            ("-", rest) => Err(rest.to_string()),
            _ => Err(format!("an answer silver does not expect: {line:.40}")),
        }
    }
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
