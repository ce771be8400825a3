//! `service.mysql`: a database and a user of the app's own on the node's MariaDB (Debian's
//! `mariadb-server`), Silver Lining's `CONFIG_MYSQL_*` variables, and the app's data as a
//! deterministic SQL dump (tables by name, rows by primary key, no dates or host names).
//!
//! The agent administers MariaDB with its `mariadb` client: as the system's root over the local
//! socket (Debian's default `unix_socket` login), or with `--mysql-url`. Passwords reach the
//! client in `MYSQL_PWD`, which only the agent's user can read, never as an argument.

use std::path::Path;
use std::process::{Command, Stdio};

use packer::AppName;

use crate::error::Error;
use crate::paths::AppPaths;
use crate::supervise::AppUser;

/// How the agent reaches MariaDB as an administrator, and where apps connect.
#[derive(Clone, PartialEq, Eq)]
pub struct Mysql {
    /// Where apps connect (TCP).
    pub host: String,
    pub port: u16,
    /// The administrator's login; None: the system's root over the local socket.
    pub admin: Option<(String, Option<String>)>,
}

/// Never prints the password.
impl std::fmt::Debug for Mysql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mysql")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin", &self.admin.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl Default for Mysql {
    fn default() -> Self {
        Mysql {
            host: "127.0.0.1".into(),
            port: 3306,
            admin: None,
        }
    }
}

impl Mysql {
    /// From `mysql://user[:password]@host[:port]`; None for anything else (the caller says so
    /// without repeating it: it may hold a password).
    pub fn from_url(url: &str) -> Option<Mysql> {
        let url = url::Url::parse(url).ok()?;
        if !matches!(url.scheme(), "mysql" | "mariadb") {
            return None;
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = Some(url.username()).filter(|u| !u.is_empty()).map(decode)?;
        Some(Mysql {
            host: url.host_str()?.to_string(),
            port: url.port().unwrap_or(3306),
            admin: Some((user, url.password().map(decode))),
        })
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The app's database and user: the same name as its PostgreSQL role (`s<node>_<app>`).
pub fn mysql_name(node: &str, app: &AppName) -> String {
    crate::services::pg_name(node, app)
}

/// Makes (or resets to what it must be) the app's database and user; returns its variables.
pub fn provision(
    node: &str,
    app: &AppName,
    paths: &AppPaths,
    mysql: &Mysql,
) -> Result<Vec<(String, String)>, Error> {
    let name = mysql_name(node, app);
    let password = password(paths)?;
    let sql = format!(
        "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;\n\
         CREATE USER IF NOT EXISTS '{name}'@'%' IDENTIFIED BY '{password}';\n\
         ALTER USER '{name}'@'%' IDENTIFIED BY '{password}';\n\
         GRANT ALL PRIVILEGES ON `{name}`.* TO '{name}'@'%';\n"
    );
    admin(app, mysql, &sql, &password)?;
    let url = format!(
        "mysql://{name}:{password}@{}:{}/{name}",
        mysql.host, mysql.port
    );
    Ok(vec![
        ("CONFIG_MYSQL_DBNAME".into(), name.clone()),
        ("CONFIG_MYSQL_USER".into(), name),
        ("CONFIG_MYSQL_PASSWORD".into(), password),
        ("CONFIG_MYSQL_HOST".into(), mysql.host.clone()),
        ("CONFIG_MYSQL_PORT".into(), mysql.port.to_string()),
        ("CONFIG_MYSQL_SQLALCHEMY".into(), url),
    ])
}

/// The app's password: made once, kept in `services/mysql.password` (0600).
fn password(paths: &AppPaths) -> Result<String, Error> {
    let dir = paths.services();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join("mysql.password");
    safefs::load_or_create_secret(&path, 16).map_err(|e| Error::io(&path, e))
}

/// Runs `sql` as the administrator (statements on stdin: they hold the app's password).
fn admin(app: &AppName, mysql: &Mysql, sql: &str, secret: &str) -> Result<(), Error> {
    let mut cmd = Command::new("mariadb");
    cmd.args(["--batch", "--skip-column-names", "--sandbox"]);
    match &mysql.admin {
        Some((user, password)) => {
            cmd.args(["--protocol=tcp", "-h", &mysql.host, "-P"])
                .arg(mysql.port.to_string())
                .args(["-u", user]);
            if let Some(password) = password {
                cmd.env("MYSQL_PWD", password);
            }
        }
        // Debian's root logs in over the socket, by being root.
        None => {
            cmd.args(["--protocol=socket", "-u", "root"]);
        }
    }
    let out = run(cmd, Some(sql.as_bytes())).map_err(|source| Error::NoMysql {
        app: app.clone(),
        addr: mysql.addr(),
        source,
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::MysqlRefused {
            addr: mysql.addr(),
            message: err
                .lines()
                .next()
                .unwrap_or("(no message)")
                .replace(secret, "***"),
        });
    }
    Ok(())
}

fn run(mut cmd: Command, input: Option<&[u8]>) -> std::io::Result<std::process::Output> {
    use std::io::Write;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || input.map(|i| stdin.write_all(&i)));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    Ok(out)
}

/// A client logged in as the app, run as the app's user: it reads what the app wrote (and a
/// restore replays it), so it gets no more than the app has, and `--sandbox` refuses the
/// client's own shell and file commands (`\!`, `source`) in any case.
fn as_app(
    program: &str,
    node: &str,
    app: &AppName,
    paths: &AppPaths,
    mysql: &Mysql,
    user: Option<&AppUser>,
) -> Result<Command, Error> {
    let name = mysql_name(node, app);
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("MYSQL_PWD", password(paths)?)
        .args(["--protocol=tcp", "-h", &mysql.host, "-P"])
        .arg(mysql.port.to_string())
        .args(["-u", &name]);
    if let Some(user) = user {
        use std::os::unix::process::CommandExt;
        cmd.uid(user.uid).gid(user.gid).current_dir("/");
    }
    Ok(cmd)
}

/// Writes the app's database as SQL: tables by name (`mariadb-dump`'s order), rows by primary
/// key, one `INSERT` per row, no dump date, server version or host: the same data, the same
/// bytes.
pub fn dump(
    node: &str,
    app: &AppName,
    paths: &AppPaths,
    mysql: &Mysql,
    user: Option<&AppUser>,
    out: &Path,
) -> Result<(), Error> {
    let mut cmd = as_app("mariadb-dump", node, app, paths, mysql, user)?;
    cmd.args([
        "--skip-dump-date",
        "--skip-comments",
        "--order-by-primary",
        "--skip-extended-insert",
        "--single-transaction",
        "--skip-lock-tables",
        "--no-tablespaces",
    ])
    .arg(mysql_name(node, app));
    let done = run(cmd, None).map_err(|source| Error::NoMysql {
        app: app.clone(),
        addr: mysql.addr(),
        source,
    })?;
    check(&done, "mariadb-dump")?;
    safefs::write_atomic(out, &done.stdout, safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(out, e))
}

/// Drops every table, view and routine of the app's database, then replays `sql` (if any).
pub fn restore(
    node: &str,
    app: &AppName,
    paths: &AppPaths,
    mysql: &Mysql,
    user: Option<&AppUser>,
    sql: Option<&Path>,
) -> Result<(), Error> {
    let name = mysql_name(node, app);
    let mut input = String::from("SET FOREIGN_KEY_CHECKS = 0;\n");
    let mut list = as_app("mariadb", node, app, paths, mysql, user)?;
    list.args(["--batch", "--skip-column-names", "--sandbox", &name, "-e"])
        .arg(
            "SELECT CONCAT('DROP ', IF(table_type = 'VIEW', 'VIEW', 'TABLE'), ' IF EXISTS `', \
             REPLACE(table_name, '`', '``'), '`;') FROM information_schema.tables \
             WHERE table_schema = DATABASE() ORDER BY table_type = 'VIEW' DESC, table_name",
        );
    let listed = run(list, None).map_err(|source| Error::NoMysql {
        app: app.clone(),
        addr: mysql.addr(),
        source,
    })?;
    check(&listed, "mariadb")?;
    input += &String::from_utf8_lossy(&listed.stdout);
    input += "SET FOREIGN_KEY_CHECKS = 1;\n";
    let mut bytes = input.into_bytes();
    if let Some(sql) = sql {
        bytes.extend(std::fs::read(sql).map_err(|e| Error::io(sql, e))?);
    }
    let mut cmd = as_app("mariadb", node, app, paths, mysql, user)?;
    cmd.args(["--batch", "--sandbox", &name]);
    let done = run(cmd, Some(&bytes)).map_err(|source| Error::NoMysql {
        app: app.clone(),
        addr: mysql.addr(),
        source,
    })?;
    check(&done, "mariadb")
}

fn check(out: &std::process::Output, program: &str) -> Result<(), Error> {
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(Error::DatabaseTool {
        program: program.into(),
        message: err.lines().next().unwrap_or("(no message)").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        let m = Mysql::from_url("mysql://admin:s%40cret@127.0.0.1:3307").unwrap();
        assert_eq!((m.host.as_str(), m.port), ("127.0.0.1", 3307));
        assert_eq!(m.admin, Some(("admin".into(), Some("s@cret".into()))));
        assert!(!format!("{m:?}").contains("s@cret"));
        assert!(Mysql::from_url("postgresql://x@y").is_none());
        assert!(Mysql::from_url("mysql://db.internal").is_none(), "no user");
    }
}
