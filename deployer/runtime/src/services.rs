//! Services an app names in `app.ini` (`service.<name> =`), provisioned before its processes
//! start (design §4) and handed to it as Silver Lining's `CONFIG_*` variables (design §5).
//!
//! - `files`: a persistent directory outside releases, `CONFIG_FILES`.
//! - `postgis` / `postgresql` / `postgres`: a role and a database on the node's PostgreSQL,
//!   created once and kept across releases: `CONFIG_PG_*` and `DATABASE_URL`. The password is
//!   generated on the node and kept in the app's directory (0600); it is never logged.
//!
//! - `redis`: a user of the app's own on the node's Redis, confined to its key prefix
//!   (`redis.rs`): `CONFIG_REDIS_*` and `REDIS_URL`.
//!
//! Any other service is refused by name, before anything starts.

use silver_types::AppName;

use crate::identity::Identity;
use crate::paths::AppPaths;

use crate::error::Error;
use crate::supervise::AppUser;

/// An app's services on this node, and how to reach them.
#[derive(Debug, Clone, Copy)]
pub struct AppData<'a> {
    pub node: &'a str,
    pub app: &'a AppName,
    pub paths: &'a AppPaths,
    /// The services its release names (`service.<name> = settings`).
    pub services: &'a [(String, String)],
    pub user: Option<&'a AppUser>,
    pub postgres: Option<&'a Postgres>,
    pub redis: &'a crate::redis::Redis,
    pub mysql: &'a crate::mysql::Mysql,
    pub couchdb: &'a crate::couchdb::Couchdb,
}

/// How the agent reaches PostgreSQL as an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postgres {
    /// The command that runs `psql` as a superuser: `runuser -u postgres -- psql` on a node.
    pub psql: Vec<String>,
    /// An administrator's connection, when PostgreSQL is reached over TCP instead.
    pub admin: Option<Admin>,
    /// Where apps connect.
    pub host: String,
    pub port: u16,
}

/// An administrator's login, from `--postgres-url`. It reaches `psql` through `PG*` variables,
/// which only the agent's user can read, never as an argument, which every user sees in `ps`.
#[derive(Clone, PartialEq, Eq)]
pub struct Admin {
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    pub sslmode: Option<String>,
    /// The directory of the server's Unix socket, when the admin logs in there (peer login as
    /// the invoking user) rather than over TCP.
    pub socket: Option<String>,
}

/// Never prints the password.
impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// The machine's own cluster, for a developer without root (`silver serve`, `silver up`):
    /// administered over Debian's socket as the invoking user (a role of the same name, as
    /// `createuser -s $USER` makes), apps on 127.0.0.1:5432 with their passwords. None when
    /// there is no such socket.
    pub fn local_socket() -> Option<Postgres> {
        let dir = "/var/run/postgresql";
        std::path::Path::new(dir)
            .join(".s.PGSQL.5432")
            .exists()
            .then(|| Postgres {
                psql: vec!["psql".into()],
                admin: Some(Admin {
                    user: None,
                    password: None,
                    database: Some("postgres".into()),
                    sslmode: None,
                    socket: Some(dir.into()),
                }),
                host: "127.0.0.1".into(),
                port: 5432,
            })
    }

    /// From an admin URL (`postgresql://user[:password]@host[:port]/db[?sslmode=…]`), or the
    /// local cluster's superuser. None for a URL that is not one (the caller says so without
    /// repeating it: it may hold a password).
    pub fn from_url(url: Option<&str>) -> Option<Postgres> {
        let Some(url) = url else {
            return AppUser::lookup("postgres").map(|_| Postgres {
                psql: ["runuser", "-u", "postgres", "--", "psql"]
                    .map(String::from)
                    .to_vec(),
                admin: None,
                host: "127.0.0.1".into(),
                port: 5432,
            });
        };
        let url = url::Url::parse(url).ok()?;
        if !matches!(url.scheme(), "postgresql" | "postgres") {
            return None;
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        };
        let user = Some(url.username())
            .filter(|u| !u.is_empty())
            .and_then(decode);
        let password = url.password().and_then(decode);
        let database = url
            .path()
            .strip_prefix('/')
            .filter(|d| !d.is_empty())
            .and_then(decode);
        let sslmode = url
            .query_pairs()
            .find(|(k, _)| k == "sslmode")
            .map(|(_, v)| v.into_owned());
        Some(Postgres {
            psql: vec!["psql".into()],
            admin: Some(Admin {
                user,
                password,
                database,
                sslmode,
                socket: None,
            }),
            host: url
                .host_str()
                .filter(|h| !h.is_empty())
                .unwrap_or("127.0.0.1")
                .to_string(),
            port: url.port().unwrap_or(5432),
        })
    }
}

/// Provisions every service of an app; returns their variables. One provisioning per app at a
/// time: an activation and a `silver run` at once would race on the same role (PostgreSQL
/// answers `tuple concurrently updated`) and the same CouchDB user document.
pub fn provision(d: &AppData) -> Result<Vec<(String, String)>, Error> {
    let lock = app_lock(d.app);
    let _held = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut env = Vec::new();
    for (name, _settings) in d.services {
        match name.as_str() {
            "files" => env.push(("CONFIG_FILES".into(), own_dir(d.paths.files(), d.user)?)),
            "writable_root" => env.push((
                "CONFIG_WRITABLE_ROOT".into(),
                own_dir(d.paths.writable_root(), d.user)?,
            )),
            "postgis" | "postgresql" | "postgres" => {
                let pg = d.postgres.ok_or_else(|| Error::NoPostgres {
                    app: d.app.clone(),
                    service: name.clone(),
                })?;
                env.extend(postgresql(d.node, d.app, d.paths, name == "postgis", pg)?);
            }
            "mysql" => env.extend(crate::mysql::provision(d.node, d.app, d.paths, d.mysql)?),
            "redis" => env.extend(crate::redis::provision(d.node, d.app, d.paths, d.redis)?),
            "couchdb" => env.extend(crate::couchdb::provision(
                d.node, d.app, d.paths, d.couchdb,
            )?),
            other => {
                return Err(Error::UnknownService {
                    app: d.app.clone(),
                    service: other.to_string(),
                })
            }
        }
    }
    Ok(env)
}

/// The lock that serializes provisioning of one app within this process.
fn app_lock(app: &AppName) -> std::sync::Arc<std::sync::Mutex<()>> {
    static LOCKS: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<AppName, std::sync::Arc<std::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut locks = LOCKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    locks.entry(app.clone()).or_default().clone()
}

/// Silver Lining's `packages`: the node must already have them (a baked image lists them in its
/// recipe). Returns an error naming the missing ones; a node without dpkg cannot tell and passes.
pub fn check_packages(app: &AppName, packages: &[String]) -> Result<(), Error> {
    if packages.is_empty() {
        return Ok(());
    }
    let Ok(out) = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Status}\n"])
        .args(packages)
        .output()
    else {
        tracing::warn!(%app, "no dpkg-query: cannot check the app's packages");
        return Ok(());
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_suffix(" installed"))
        .map(|p| p.split(':').next().unwrap_or(p))
        .collect();
    let missing: Vec<&str> = packages
        .iter()
        .map(String::as_str)
        .filter(|p| !installed.contains(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::MissingPackages {
        app: app.clone(),
        missing: missing.iter().map(|p| p.to_string()).collect(),
    })
}

/// A directory of the app's own (`files`, `writable_root`), kept across releases.
fn own_dir(dir: std::path::PathBuf, user: Option<&AppUser>) -> Result<String, Error> {
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    if let Some(user) = user {
        crate::live::own_private_dir(&dir, user)?;
    }
    Ok(dir.display().to_string())
}

fn postgresql(
    node: &str,
    app: &AppName,
    paths: &AppPaths,
    postgis: bool,
    pg: &Postgres,
) -> Result<Vec<(String, String)>, Error> {
    let name = Identity::of(node, app).name;
    let password = pg_password(paths)?;
    let ours = Identity::owner_comment(node, app);
    let comment = admin_psql(
        pg,
        None,
        &format!(
            "SELECT coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles \
             WHERE rolname = '{name}'"
        ),
        &[],
    )?;
    let statement = match comment.lines().next() {
        None => format!(
            "CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'; COMMENT ON ROLE \"{name}\" IS '{ours}';"
        ),
        Some(c) if c.trim() == ours => format!("ALTER ROLE \"{name}\" LOGIN PASSWORD '{password}';"),
        Some(c) => {
            return Err(Error::RoleTaken {
                app: app.clone(),
                role: name,
                comment: c.trim().to_string(),
            })
        }
    };
    admin_psql(pg, None, &statement, &[&password])?;
    let exists = admin_psql(
        pg,
        None,
        &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
        &[],
    )?;
    if exists.trim() != "1" {
        admin_psql(
            pg,
            None,
            &format!("CREATE DATABASE \"{name}\" OWNER \"{name}\""),
            &[],
        )?;
    }
    // PUBLIC may connect to every new database: another app's role could then read this one's
    // function source, view definitions and catalog, and make temp tables in it.
    admin_psql(
        pg,
        None,
        &format!("REVOKE ALL ON DATABASE \"{name}\" FROM PUBLIC"),
        &[],
    )?;
    if postgis {
        admin_psql(
            pg,
            Some(&name),
            "CREATE EXTENSION IF NOT EXISTS postgis",
            &[],
        )?;
    }
    let url = format!(
        "postgresql://{name}:{password}@{}:{}/{name}",
        pg.host, pg.port
    );
    Ok(vec![
        ("CONFIG_PG_DBNAME".into(), name.clone()),
        ("CONFIG_PG_USER".into(), name),
        ("CONFIG_PG_PASSWORD".into(), password),
        ("CONFIG_PG_HOST".into(), pg.host.clone()),
        ("CONFIG_PG_PORT".into(), pg.port.to_string()),
        // SQLAlchemy's URL: the same, under the name Silver Lining apps read.
        ("CONFIG_PG_SQLALCHEMY".into(), url.clone()),
        ("DATABASE_URL".into(), url),
    ])
}

/// The app's database password: made once, kept in `services/postgresql.password` (0600).
pub(crate) fn pg_password(paths: &AppPaths) -> Result<String, Error> {
    let dir = paths.services();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join("postgresql.password");
    safefs::load_or_create_secret(&path, 16).map_err(|e| Error::io(&path, e))
}

/// Runs one statement as the administrator; the statement (which may hold a password) is
/// passed on stdin, never on a command line, and each of `secrets` is blotted out of an error.
pub(crate) fn admin_psql(
    pg: &Postgres,
    database: Option<&str>,
    sql: &str,
    secrets: &[&str],
) -> Result<String, Error> {
    use std::io::Write;
    let mut cmd = std::process::Command::new(&pg.psql[0]);
    cmd.args(&pg.psql[1..])
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
    if let Some(admin) = &pg.admin {
        cmd.env("PGHOST", admin.socket.as_deref().unwrap_or(&pg.host))
            .env("PGPORT", pg.port.to_string());
        for (var, value) in [
            ("PGUSER", &admin.user),
            ("PGPASSWORD", &admin.password),
            ("PGDATABASE", &admin.database),
            ("PGSSLMODE", &admin.sslmode),
        ] {
            if let Some(value) = value {
                cmd.env(var, value);
            }
        }
    }
    // A database name is no secret: an argument works through runuser too.
    if let Some(db) = database {
        cmd.args(["-d", db]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| Error::NoPsql {
            program: pg.psql[0].clone(),
            source,
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(sql.as_bytes())
        .map_err(|source| Error::PostgresPipe { source })?;
    let out = child
        .wait_with_output()
        .map_err(|source| Error::PostgresPipe { source })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let mut message = err.lines().next().unwrap_or("(no message)").to_string();
        for secret in secrets {
            message = message.replace(secret, "***");
        }
        return Err(Error::PostgresRefused { message });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_the_node_lacks_are_named() {
        check_packages(&AppName::parse("blog").unwrap(), &["coreutils".into()]).unwrap();
        let err = check_packages(
            &AppName::parse("blog").unwrap(),
            &["coreutils".into(), "no-such-package-xyz".into()],
        )
        .unwrap_err();
        assert!(
            err.to_string().ends_with("lacks: no-such-package-xyz"),
            "{err}"
        );
        let hint = err.hint().unwrap();
        assert!(
            hint.contains("apt-get install no-such-package-xyz"),
            "{hint}"
        );
    }

    #[test]
    fn admin_urls() {
        let pg = Postgres::from_url(Some("postgresql://postgres@127.0.0.1:5433/postgres")).unwrap();
        assert_eq!((pg.host.as_str(), pg.port), ("127.0.0.1", 5433));
        assert_eq!(pg.psql, ["psql"]);
        let pg = Postgres::from_url(Some("postgres://db.internal/postgres")).unwrap();
        assert_eq!((pg.host.as_str(), pg.port), ("db.internal", 5432));
        assert!(Postgres::from_url(Some("mysql://x")).is_none());
    }

    #[test]
    fn unknown_services_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let app = AppName::parse("blog").unwrap();
        let paths = AppPaths::new(dir.path().to_path_buf());
        let (redis, mysql, couchdb) = (Default::default(), Default::default(), Default::default());
        let check = |names: &[&str]| {
            let services: Vec<(String, String)> = names
                .iter()
                .map(|n| (n.to_string(), String::new()))
                .collect();
            provision(&AppData {
                node: "0a1b2c3d",
                app: &app,
                paths: &paths,
                services: &services,
                user: None,
                postgres: None,
                redis: &redis,
                mysql: &mysql,
                couchdb: &couchdb,
            })
            .map(|env| env.into_iter().map(|(k, _)| k).collect::<Vec<_>>())
            .map_err(|e| e.to_string())
        };
        let err = check(&["files", "mongodb"]).unwrap_err();
        assert!(err.contains("service `mongodb`"), "{err}");
        assert_eq!(check(&["files"]).unwrap(), ["CONFIG_FILES"]);
        assert!(dir.path().join("files").is_dir());
        let err = check(&["postgis"]).unwrap_err();
        assert!(err.contains("this node has no PostgreSQL"), "{err}");
    }
}
