//! `service.postgresql` / `postgis` / `postgres`: a role and a database on the node's
//! PostgreSQL, created once and kept across releases: `CONFIG_PG_*` and `DATABASE_URL`. The
//! password is generated on the node and kept in the app's directory (0600); it is never
//! logged. Dumps and restores run as the app's own role, with its password: they reach only
//! what the app itself can.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use silver_types::AppName;

use super::service::{Service, Tenant};
use crate::command::{self, Stdin};
use crate::error::Error;
use crate::identity::Identity;
use crate::paths::AppPaths;
use crate::supervise::AppUser;

/// `service.postgresql` (and `postgis`, which adds the extension): a role and a database of the
/// app's own on the node's PostgreSQL.
#[derive(Debug, Clone)]
pub struct Postgresql {
    /// None: this node has no PostgreSQL, and an app that asks for one is refused.
    pub server: Option<Postgres>,
    pub postgis: bool,
}

impl Postgresql {
    fn server(&self, app: &AppName) -> Result<&Postgres, Error> {
        self.server.as_ref().ok_or_else(|| Error::NoPostgres {
            app: app.clone(),
            service: if self.postgis {
                "postgis"
            } else {
                "postgresql"
            }
            .into(),
        })
    }
}

impl Service for Postgresql {
    fn provision(&self, t: &Tenant) -> Result<Vec<(String, String)>, Error> {
        postgresql(t.node, t.app, t.paths, self.postgis, self.server(t.app)?)
    }
    fn dump(&self, t: &Tenant, out: &Path) -> Result<(), Error> {
        pg_dump(self, t, out)
    }
    fn stage(&self, t: &Tenant, dump: Option<&Path>) -> Result<(), Error> {
        pg_stage(self, t, dump)
    }
    fn switch(&self, t: &Tenant) -> Result<(), Error> {
        pg_switch(self, t)
    }
    fn discard(&self, t: &Tenant) -> Result<(), Error> {
        pg_discard(self, t)
    }
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
        let url = super::AdminUrl::parse(url, &["postgresql", "postgres"])?;
        let sslmode = url.query("sslmode").map(String::from);
        Some(Postgres {
            psql: vec!["psql".into()],
            admin: Some(Admin {
                user: url.user,
                password: url.password,
                database: url.database,
                sslmode,
                socket: None,
            }),
            host: url.host.unwrap_or_else(|| "127.0.0.1".into()),
            port: url.port.unwrap_or(5432),
        })
    }
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
    let mut cmd = Command::new(&pg.psql[0]);
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
    let stdin = Stdin::Bytes(sql.as_bytes().to_vec());
    let out = command::run(cmd, stdin, command::ADMIN).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::NoPsql {
            program: pg.psql[0].clone(),
            source,
        },
        _ => Error::PostgresPipe { source },
    })?;
    if !out.status.success() {
        return Err(Error::PostgresRefused {
            message: command::error_line(&out.stderr, secrets),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How `psql` and `pg_dump` log in as the app: its role, its database, its password, the
/// latter only in the environment of the child, which only the agent's user can read.
fn pg_login(s: &Postgresql, d: &Tenant, program: &str) -> Result<Command, Error> {
    let pg = s.server(d.app)?;
    let name = crate::identity::Identity::of(d.node, d.app).name;
    let password = pg_password(d.paths)?;
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("PGHOST", &pg.host)
        .env("PGPORT", pg.port.to_string())
        .env("PGUSER", &name)
        .env("PGDATABASE", &name)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10");
    // The tools read what the app wrote (names, comments, rows): they run as the app, so
    // a dump crafted to escape into a shell (`\!`) gets no more than the app already has.
    if let Some(user) = d.user {
        use std::os::unix::process::CommandExt;
        cmd.uid(user.uid).gid(user.gid).current_dir("/");
    }
    Ok(cmd)
}

/// What a tool reads on stdin: a head written first, then a file streamed behind it (never
/// read whole into memory: a dump may be larger than the agent's memory).
type Input = (Vec<u8>, Option<std::fs::File>);

/// Runs a tool to the end; its stdout, or `DatabaseTool` with its error line.
fn run_pg(cmd: Command, program: &str, input: Option<Input>) -> Result<Vec<u8>, Error> {
    let stdin = match input {
        None => Stdin::Null,
        Some((head, body)) => Stdin::Stream(Box::new(move |pipe| {
            pipe.write_all(&head)?;
            if let Some(mut body) = body {
                std::io::copy(&mut body, pipe)?;
            }
            Ok(())
        })),
    };
    let out = command::run(cmd, stdin, command::DATA).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::NoPsql {
            program: program.into(),
            source,
        },
        _ => Error::PostgresPipe { source },
    })?;
    if !out.status.success() {
        return Err(Error::DatabaseTool {
            program: program.into(),
            message: command::error_line(&out.stderr, &[]),
        });
    }
    Ok(out.stdout)
}

fn psql(s: &Postgresql, d: &Tenant, sql: &str) -> Result<Vec<u8>, Error> {
    let mut cmd = pg_login(s, d, "psql")?;
    // Fields apart by a control character no name or column list holds unquoted... or quoted.
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-F",
        "\u{1f}",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ]);
    run_pg(cmd, "psql", None)
}

/// One section of `pg_dump`'s schema, without the per-run `\restrict` keys (restores add one).
fn pg_schema(s: &Postgresql, d: &Tenant, section: &str) -> Result<String, Error> {
    let mut cmd = pg_login(s, d, "pg_dump")?;
    cmd.args(["--no-owner", "--no-privileges", "--section", section]);
    let out = run_pg(cmd, "pg_dump", None)?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        // The node installs extensions (`postgis`) itself; the app's role may not.
        .filter(|l| !l.starts_with("CREATE EXTENSION ") && !l.starts_with("COMMENT ON EXTENSION "))
        .map(|l| format!("{l}\n"))
        .collect())
}

/// The app's tables with their columns (generated ones left out: they are computed again).
const TABLES: &str = "SELECT t, cols FROM (SELECT format('%I.%I', n.nspname, c.relname) AS t, \
     string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) AS cols \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     AND a.attgenerated = '' \
     WHERE c.relkind = 'r' AND pg_get_userbyid(c.relowner) = current_user \
     GROUP BY 1) s ORDER BY t COLLATE \"C\"";

const SEQUENCES: &str = "SELECT line FROM (SELECT format('SELECT pg_catalog.setval(%L, %s, %s);', \
     format('%I.%I', schemaname, sequencename), coalesce(last_value, start_value), \
     CASE WHEN last_value IS NULL THEN 'false' ELSE 'true' END) AS line FROM pg_sequences WHERE sequenceowner = current_user) s \
     ORDER BY line COLLATE \"C\"";

fn pg_dump(s: &Postgresql, d: &Tenant, out: &Path) -> Result<(), Error> {
    let mut sql = String::from("-- silver backup of a PostgreSQL database: replay with psql\n");
    sql += &pg_schema(s, d, "pre-data")?;
    sql += "\n-- Data, tables by name and rows by their text\n\n";
    let tables = String::from_utf8_lossy(&psql(s, d, TABLES)?).into_owned();
    for line in tables.lines().filter(|l| !l.is_empty()) {
        let (table, columns) = line
            .split_once('\u{1f}')
            .ok_or_else(|| Error::DatabaseTool {
                program: "psql".into(),
                message: silver_types::Said::new(
                    &format!("unexpected table listing `{line}`"),
                    &[],
                ),
            })?;
        let rows = psql(
            s,
            d,
            &format!(
                "COPY (SELECT {columns} FROM {table} AS r ORDER BY r::text COLLATE \"C\") TO STDOUT"
            ),
        )?;
        sql += &format!("COPY {table} ({columns}) FROM stdin;\n");
        sql += &String::from_utf8_lossy(&rows);
        sql += "\\.\n\n";
    }
    sql += &String::from_utf8_lossy(&psql(s, d, SEQUENCES)?);
    sql += &pg_schema(s, d, "post-data")?;
    safefs::write_atomic(out, sql.as_bytes(), safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(out, e))
}

/// Builds `<identity>-restore`, a database of the app's role's own, from `dump` (None:
/// empty). The dump is replayed as the app's role connected to that database alone, behind a
/// `\restrict` key: its `COMMIT`, a bad statement halfway or a crash leave the live database
/// as it was.
fn pg_stage(s: &Postgresql, d: &Tenant, dump: Option<&Path>) -> Result<(), Error> {
    let pg = s.server(d.app)?;
    let id = crate::identity::Identity::of(d.node, d.app);
    let staging = id.staging("restore");
    let admin = |sql: &str| admin_psql(pg, None, sql, &[]);
    admin(&format!(
        "DROP DATABASE IF EXISTS \"{staging}\" WITH (FORCE)"
    ))?;
    admin(&format!(
        "CREATE DATABASE \"{staging}\" OWNER \"{}\"",
        id.name
    ))?;
    admin(&format!("REVOKE ALL ON DATABASE \"{staging}\" FROM PUBLIC"))?;
    if s.postgis {
        admin_psql(
            pg,
            Some(&staging),
            "CREATE EXTENSION IF NOT EXISTS postgis",
            &[],
        )?;
    }
    let mut head = Vec::new();
    // Meta-commands (`\!` runs a shell, `\connect` another database) are refused from here
    // on: the dump is the app's data.
    let key = safefs::secret_hex(16).map_err(|e| Error::io(Path::new("/dev/urandom"), e))?;
    writeln!(head, "\\restrict {key}").expect("to memory");
    head.extend_from_slice(b"SET client_min_messages = warning;\n");
    let body = dump.map(super::dumps::open_dump).transpose()?;
    let mut cmd = pg_login(s, d, "psql")?;
    cmd.env("PGDATABASE", &staging).args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "-f",
        "-",
    ]);
    run_pg(cmd, "psql", Some((head, body))).map(|_| ())
}

/// Swaps the staged database in: the live one is closed to new connections and its sessions
/// ended, then both are renamed in one transaction, then the old one dropped. Nothing to swap
/// when the staged one is gone (it was swapped in already).
fn pg_switch(s: &Postgresql, d: &Tenant) -> Result<(), Error> {
    let pg = s.server(d.app)?;
    let id = crate::identity::Identity::of(d.node, d.app);
    let (live, staging, old) = (&id.name, id.staging("restore"), id.staging("old"));
    let admin = |sql: &str| admin_psql(pg, None, sql, &[]);
    let exists = |name: &str| -> Result<bool, Error> {
        let found = admin(&format!(
            "SELECT 1 FROM pg_database WHERE datname = '{name}'"
        ))?;
        Ok(found.trim() == "1")
    };
    if exists(&staging)? {
        admin(&format!("DROP DATABASE IF EXISTS \"{old}\" WITH (FORCE)"))?;
        let swap = if exists(live)? {
            admin(&format!(
                "ALTER DATABASE \"{live}\" ALLOW_CONNECTIONS false"
            ))?;
            // Waits (up to 10 s each) until the sessions are gone: a rename needs none.
            admin(&format!(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
                 WHERE datname = '{live}' AND pid <> pg_backend_pid()"
            ))?;
            format!(
                "BEGIN; ALTER DATABASE \"{live}\" RENAME TO \"{old}\"; \
                 ALTER DATABASE \"{staging}\" RENAME TO \"{live}\"; COMMIT;"
            )
        } else {
            format!("ALTER DATABASE \"{staging}\" RENAME TO \"{live}\"")
        };
        admin(&swap)?;
    }
    admin(&format!("DROP DATABASE IF EXISTS \"{old}\" WITH (FORCE)")).map(|_| ())
}

/// Drops the staged database (and the sessions a killed restore left on it).
fn pg_discard(s: &Postgresql, d: &Tenant) -> Result<(), Error> {
    let pg = s.server(d.app)?;
    let staging = crate::identity::Identity::of(d.node, d.app).staging("restore");
    admin_psql(
        pg,
        None,
        &format!("DROP DATABASE IF EXISTS \"{staging}\" WITH (FORCE)"),
        &[],
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        let pg = Postgres::from_url(Some("postgresql://postgres@127.0.0.1:5433/postgres")).unwrap();
        assert_eq!((pg.host.as_str(), pg.port), ("127.0.0.1", 5433));
        assert_eq!(pg.psql, ["psql"]);
        let pg = Postgres::from_url(Some("postgres://db.internal/postgres")).unwrap();
        assert_eq!((pg.host.as_str(), pg.port), ("db.internal", 5432));
        assert!(Postgres::from_url(Some("mysql://x")).is_none());
    }
}
