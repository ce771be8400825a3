//! `service.mysql`: a database and a user of the app's own on the node's MariaDB (Debian's
//! `mariadb-server`), Silver Lining's `CONFIG_MYSQL_*` variables, and the app's data as a
//! deterministic SQL dump (tables by name, rows by primary key, no dates or host names).
//!
//! The agent administers MariaDB with its `mariadb` client: as the system's root over the local
//! socket (Debian's default `unix_socket` login), or with `--mysql-url`. Passwords reach the
//! client in `MYSQL_PWD`, which only the agent's user can read, never as an argument.

use std::path::Path;
use std::process::Command;

use silver_types::AppName;

use super::service::{Service, Tenant};
use crate::command::{self, Stdin};
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
        let url = super::AdminUrl::parse(url, &["mysql", "mariadb"])?;
        Some(Mysql {
            host: url.host?,
            port: url.port.unwrap_or(3306),
            admin: Some((url.user?, url.password)),
        })
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl Service for Mysql {
    fn provision(&self, t: &Tenant) -> Result<Vec<(String, String)>, Error> {
        provision(t.node, t.app, t.paths, self)
    }
    fn dump(&self, t: &Tenant, out: &Path) -> Result<(), Error> {
        dump(t.node, t.app, t.paths, self, t.user, out)
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

/// Makes (or resets to what it must be) the app's database and user; returns its variables.
pub fn provision(
    node: &str,
    app: &AppName,
    paths: &AppPaths,
    mysql: &Mysql,
) -> Result<Vec<(String, String)>, Error> {
    let name = crate::identity::Identity::of(node, app).name;
    let password = password(paths)?;
    claim(node, app, mysql, &name)?;
    let sql = format!(
        "CREATE USER IF NOT EXISTS '{name}'@'%' IDENTIFIED BY '{password}';\n\
         ALTER USER '{name}'@'%' IDENTIFIED BY '{password}';\n\
         GRANT ALL PRIVILEGES ON `{pattern}`.* TO '{name}'@'%';\n",
        pattern = grant_pattern(&name),
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

/// A database name as a grant's pattern: in `GRANT … ON db.*`, `_` and `%` match any
/// character, so app `x_y`'s grant would also cover app `xzy`'s database unless escaped.
pub(crate) fn grant_pattern(name: &str) -> String {
    name.replace('\\', "\\\\")
        .replace('_', "\\_")
        .replace('%', "\\%")
}

/// Makes the app's database, marked with its owner in the schema comment; a database of that
/// name another app, node or person made is refused, naming its owner. One an older agent made
/// without a comment is this app's (its name is this app's identity) and gets the mark.
fn claim(node: &str, app: &AppName, mysql: &Mysql, name: &str) -> Result<(), Error> {
    let ours = crate::identity::Identity::owner_comment(node, app);
    let found = admin_query(
        app,
        mysql,
        &format!("SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}';\n"),
    )?;
    let sql = match found.lines().next() {
        None => format!(
            "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin COMMENT '{ours}';\n"
        ),
        Some(c) if c == ours => return Ok(()),
        Some("") => format!("ALTER DATABASE `{name}` COMMENT '{ours}';\n"),
        Some(other) => {
            return Err(Error::IdentityTaken {
                app: app.clone(),
                service: "MariaDB database",
                name: name.to_string(),
                owner: other.to_string(),
            })
        }
    };
    admin(app, mysql, &sql, "")
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
    admin_output(app, mysql, sql, secret).map(|_| ())
}

/// Runs a query as the administrator; its rows, one per line, fields apart by tabs.
pub(crate) fn admin_query(app: &AppName, mysql: &Mysql, sql: &str) -> Result<String, Error> {
    admin_output(app, mysql, sql, "")
}

fn admin_output(app: &AppName, mysql: &Mysql, sql: &str, secret: &str) -> Result<String, Error> {
    let mut cmd = Command::new("mariadb");
    cmd.args(["--batch", "--skip-column-names", "--raw", "--sandbox"]);
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
    let stdin = Stdin::Bytes(sql.as_bytes().to_vec());
    let out = command::run(cmd, stdin, command::ADMIN).map_err(|source| Error::NoMysql {
        app: app.clone(),
        addr: mysql.addr(),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::MysqlRefused {
            addr: mysql.addr(),
            message: command::error_line(&out.stderr, &[secret]),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
    Ok(client(
        program,
        mysql,
        &crate::identity::Identity::of(node, app).name,
        &password(paths)?,
        user,
    ))
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
    .arg(crate::identity::Identity::of(node, app).name);
    let done = command::run(cmd, Stdin::Null, command::DATA).map_err(|source| Error::NoMysql {
        app: app.clone(),
        addr: mysql.addr(),
        source,
    })?;
    check(&done, "mariadb-dump")?;
    safefs::write_atomic(out, &done.stdout, safefs::WriteOptions::PRIVATE)
        .map_err(|e| Error::io(out, e))
}

/// The table that marks a staged database whole: made by the administrator after the dump
/// replayed (a dump cannot drop it to fake a swap), and moved out by the swap itself.
const MARKER: &str = "silver-restore-marker";

/// Replays `dump` (None: nothing) into a new database `<identity>-restore` as a user made for
/// the restore alone, whose only grant is that database: a `USE` or a qualified name in the
/// dump reaches neither the app's live database nor another app's. The client runs as the
/// app's Unix user, with `--sandbox`.
fn stage(d: &Tenant, mysql: &Mysql, dump: Option<&Path>) -> Result<(), Error> {
    let app = d.app;
    let staging = crate::identity::Identity::of(d.node, app).staging("restore");
    discard(d, mysql)?;
    let password = safefs::secret_hex(16).map_err(|e| Error::io(Path::new("/dev/urandom"), e))?;
    admin(
        app,
        mysql,
        &format!(
            "CREATE DATABASE `{staging}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;\n\
             CREATE USER '{staging}'@'%' IDENTIFIED BY '{password}';\n\
             GRANT ALL PRIVILEGES ON `{}`.* TO '{staging}'@'%';\n",
            grant_pattern(&staging)
        ),
        &password,
    )?;
    let mut cmd = client("mariadb", mysql, &staging, &password, d.user);
    cmd.args(["--batch", "--sandbox", &staging]);
    let body = dump.map(super::dumps::open_dump).transpose()?;
    let done = command::run(cmd, without_definers(body), command::DATA).map_err(|source| {
        Error::NoMysql {
            app: app.clone(),
            addr: mysql.addr(),
            source,
        }
    })?;
    check(&done, "mariadb")?;
    admin(
        app,
        mysql,
        &format!("DROP USER '{staging}'@'%';\nCREATE TABLE `{staging}`.`{MARKER}` (done INT);\n"),
        "",
    )
}

/// Swaps the staged tables in with one `RENAME TABLE`, which MariaDB makes atomic (and crash
/// safe): the live tables move to `<identity>-old`, the staged ones into the live database,
/// the marker with them. Triggers and views cannot move between databases, so they are taken
/// out of the staged database first (their definitions kept in `services/`, written durably)
/// and made again in the live one after. Nothing to swap when the marker is gone.
fn switch(d: &Tenant, mysql: &Mysql) -> Result<(), Error> {
    let app = d.app;
    let id = crate::identity::Identity::of(d.node, app);
    let (live, staging, old) = (&id.name, id.staging("restore"), id.staging("old"));
    let objects = d.paths.services().join("mysql-restore-objects.sql");
    let marked = admin_query(
        app,
        mysql,
        &format!(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{staging}' AND TABLE_NAME = '{MARKER}';\n"
        ),
    )?;
    if marked.trim() == "1" {
        if !objects.exists() {
            let sql = definitions(app, mysql, &staging, live)?;
            safefs::write_atomic(&objects, sql.as_bytes(), safefs::WriteOptions::PRIVATE)
                .map_err(|e| Error::io(&objects, e))?;
        }
        drop_objects(app, mysql, &staging)?;
        drop_objects(app, mysql, live)?;
        let tables = |db: &str| base_tables(app, mysql, db);
        let mut moves: Vec<String> = tables(live)?
            .iter()
            .map(|t| format!("`{live}`.`{t}` TO `{old}`.`{t}`"))
            .collect();
        moves.extend(
            tables(&staging)?
                .iter()
                .filter(|t| *t != MARKER)
                .map(|t| format!("`{staging}`.`{t}` TO `{live}`.`{t}`")),
        );
        moves.push(format!("`{staging}`.`{MARKER}` TO `{old}`.`{MARKER}`"));
        admin(
            app,
            mysql,
            &format!(
                "DROP DATABASE IF EXISTS `{old}`;\nCREATE DATABASE `{old}`;\n\
                 CREATE DATABASE IF NOT EXISTS `{live}`;\nRENAME TABLE {};\n",
                moves.join(", ")
            ),
            "",
        )?;
    }
    if let Ok(sql) = std::fs::read_to_string(&objects) {
        drop_objects(app, mysql, live)?;
        create_objects(app, mysql, live, &sql)?;
        std::fs::remove_file(&objects).map_err(|e| Error::io(&objects, e))?;
    }
    admin(
        app,
        mysql,
        &format!("DROP DATABASE IF EXISTS `{old}`;\nDROP DATABASE IF EXISTS `{staging}`;\n"),
        "",
    )
}

/// Drops the staged database and the user that filled it.
fn discard(d: &Tenant, mysql: &Mysql) -> Result<(), Error> {
    let staging = crate::identity::Identity::of(d.node, d.app).staging("restore");
    admin(
        d.app,
        mysql,
        &format!("DROP DATABASE IF EXISTS `{staging}`;\nDROP USER IF EXISTS '{staging}'@'%';\n"),
        "",
    )
}

fn base_tables(app: &AppName, mysql: &Mysql, db: &str) -> Result<Vec<String>, Error> {
    let listed = admin_query(
        app,
        mysql,
        &format!(
            "SELECT HEX(TABLE_NAME) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = '{db}' AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME;\n"
        ),
    )?;
    Ok(listed.lines().map(unhex).collect())
}

/// The views and triggers of `db` as statements that make them in `live`, owned by the app's
/// user (never the administrator: a view runs with its definer's rights). Fields come back in
/// hex, so no newline or tab in a definition can split a row.
fn definitions(app: &AppName, mysql: &Mysql, db: &str, live: &str) -> Result<String, Error> {
    let definer = format!("'{live}'@'%'");
    let mut sql = String::new();
    let views = admin_query(
        app,
        mysql,
        &format!(
            "SELECT HEX(TABLE_NAME), HEX(VIEW_DEFINITION), SECURITY_TYPE, CHECK_OPTION \
             FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{db}' ORDER BY TABLE_NAME;\n"
        ),
    )?;
    for row in views.lines() {
        let f: Vec<&str> = row.split('\t').collect();
        let check = match f.get(3) {
            Some(&"NONE") | None => String::new(),
            Some(c) => format!(" WITH {c} CHECK OPTION"),
        };
        sql += &format!(
            "CREATE DEFINER={definer} SQL SECURITY {} VIEW `{}` AS {}{check}\n\u{1e}\n",
            f.get(2).unwrap_or(&"DEFINER"),
            unhex(f[0]).replace('`', "``"),
            unhex(f.get(1).unwrap_or(&"")),
        );
    }
    let triggers = admin_query(
        app,
        mysql,
        &format!(
            "SELECT HEX(TRIGGER_NAME), ACTION_TIMING, EVENT_MANIPULATION, HEX(EVENT_OBJECT_TABLE), \
             HEX(ACTION_STATEMENT) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}' \
             ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER;\n"
        ),
    )?;
    for row in triggers.lines() {
        let f: Vec<&str> = row.split('\t').collect();
        sql += &format!(
            "CREATE DEFINER={definer} TRIGGER `{}` {} {} ON `{}` FOR EACH ROW {}\n\u{1e}\n",
            unhex(f[0]).replace('`', "``"),
            f.get(1).unwrap_or(&""),
            f.get(2).unwrap_or(&""),
            unhex(f.get(3).unwrap_or(&"")).replace('`', "``"),
            unhex(f.get(4).unwrap_or(&"")),
        );
    }
    // A view's stored definition names its tables with the staged database's name.
    Ok(sql.replace(&format!("`{db}`."), &format!("`{live}`.")))
}

/// Drops every view and trigger of `db`.
fn drop_objects(app: &AppName, mysql: &Mysql, db: &str) -> Result<(), Error> {
    let listed = admin_query(
        app,
        mysql,
        &format!(
            "SELECT CONCAT('DROP TRIGGER IF EXISTS `{db}`.`', REPLACE(TRIGGER_NAME, '`', '``'), '`;') \
             FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}' \
             UNION ALL SELECT CONCAT('DROP VIEW IF EXISTS `{db}`.`', REPLACE(TABLE_NAME, '`', '``'), '`;') \
             FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{db}';\n"
        ),
    )?;
    if listed.trim().is_empty() {
        return Ok(());
    }
    admin(app, mysql, &listed, "")
}

/// Makes the views and triggers `sql` holds in `live`. Views may name views: each pass makes
/// those whose dependencies exist, until all are made or a pass makes none.
fn create_objects(app: &AppName, mysql: &Mysql, live: &str, sql: &str) -> Result<(), Error> {
    let mut pending: Vec<&str> = sql
        .split("\n\u{1e}\n")
        .filter(|s| !s.trim().is_empty())
        .collect();
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut last = None;
        for statement in &pending {
            let script = format!("USE `{live}`;\nDELIMITER //silver//\n{statement}//silver//\n");
            if let Err(e) = admin(app, mysql, &script, "") {
                failed.push(*statement);
                last = Some(e);
            }
        }
        if failed.len() == pending.len() {
            return Err(last.expect("a failure"));
        }
        pending = failed;
    }
    Ok(())
}

fn unhex(field: &str) -> String {
    String::from_utf8_lossy(&hex::decode(field.trim()).unwrap_or_default()).into_owned()
}

/// The client, logged in as `user` with `password` (in `MYSQL_PWD`), run as `unix` (the app's
/// user) when given.
fn client(
    program: &str,
    mysql: &Mysql,
    user: &str,
    password: &str,
    unix: Option<&AppUser>,
) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("MYSQL_PWD", password)
        .args(["--protocol=tcp", "-h", &mysql.host, "-P"])
        .arg(mysql.port.to_string())
        .args(["-u", user]);
    if let Some(unix) = unix {
        use std::os::unix::process::CommandExt;
        cmd.uid(unix.uid).gid(unix.gid).current_dir("/");
    }
    cmd
}

/// `body` for a client's stdin, streamed line by line (never read whole into memory), each
/// line without its `DEFINER=` clauses.
fn without_definers(body: Option<std::fs::File>) -> Stdin {
    use std::io::{BufRead, Write};
    let Some(body) = body else {
        return Stdin::Null;
    };
    Stdin::Stream(Box::new(move |pipe| {
        let (mut reader, mut pipe) = (std::io::BufReader::new(body), std::io::BufWriter::new(pipe));
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line)? > 0 {
            pipe.write_all(&strip_definers(&line))?;
            line.clear();
        }
        pipe.flush()
    }))
}

/// `line` without its ``DEFINER=`user`@`host` `` clauses. `mariadb-dump` names the app's user
/// as the definer of its views and triggers, and only a user with `SET USER` may name another:
/// the restore's own user would be refused. They are made by that user, then again as the
/// app's own user when swapped in (`definitions`).
fn strip_definers(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const KEY: &[u8] = b"DEFINER=`";
    if !line.windows(KEY.len()).any(|w| w == KEY) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        // Only where the dump puts them, in a versioned comment (`/*!50013 DEFINER=…`): the same
        // bytes inside a row's data are data.
        let versioned = i >= 9
            && line[i - 9..i].starts_with(b"/*!5")
            && line[i - 5..i - 1].iter().all(u8::is_ascii_digit)
            && line[i - 1] == b' ';
        if versioned && line[i..].starts_with(KEY) {
            // `user`@`host`, each quoted with backticks (a doubled backtick inside is one).
            let user_end = quoted_end(line, i + KEY.len() - 1);
            let host_end = (line.get(user_end) == Some(&b'@'))
                .then(|| quoted_end(line, user_end + 1))
                .filter(|&end| end > user_end + 1);
            if let Some(end) = host_end {
                i = end;
                continue;
            }
        }
        out.push(line[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// Where a backtick-quoted name starting at `start` ends (just past its closing backtick), or
/// `start` if there is none.
fn quoted_end(line: &[u8], start: usize) -> usize {
    if line.get(start) != Some(&b'`') {
        return start;
    }
    let mut i = start + 1;
    while i < line.len() {
        match (line[i], line.get(i + 1)) {
            (b'`', Some(b'`')) => i += 2,
            (b'`', _) => return i + 1,
            _ => i += 1,
        }
    }
    start
}

fn check(out: &std::process::Output, program: &str) -> Result<(), Error> {
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    // The client frames a failed statement with dashes; the line that says why starts ERROR.
    let message = err
        .lines()
        .find(|l| l.starts_with("ERROR"))
        .or_else(|| err.lines().find(|l| !l.trim_start_matches('-').is_empty()))
        .unwrap_or("(no message)");
    Err(Error::DatabaseTool {
        program: program.into(),
        message: silver_types::Said::new(message, &[]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definers_are_taken_out_of_dumps() {
        let check = |line: &str, expected: &str| {
            let got = strip_definers(line.as_bytes());
            assert_eq!(String::from_utf8_lossy(&got), expected, "{line}");
        };
        check("INSERT INTO t VALUES (1);", "INSERT INTO t VALUES (1);");
        check(
            "/*!50013 DEFINER=`s1_x$uy`@`%` SQL SECURITY DEFINER */",
            "/*!50013  SQL SECURITY DEFINER */",
        );
        check(
            "/*!50003 CREATE*/ /*!50017 DEFINER=`a``b`@`localhost`*/ /*!50003 TRIGGER t",
            "/*!50003 CREATE*/ /*!50017 */ /*!50003 TRIGGER t",
        );
        // Not a definer clause: left as it is (MariaDB then refuses it, or takes it as data).
        check("SELECT 'DEFINER=`x`';", "SELECT 'DEFINER=`x`';");
        check(
            "INSERT INTO t VALUES ('DEFINER=`a`@`b`');",
            "INSERT INTO t VALUES ('DEFINER=`a`@`b`');",
        );
        check("DEFINER=`unclosed", "DEFINER=`unclosed");
    }

    #[test]
    fn grant_patterns_match_only_their_database() {
        for (name, pattern) in [
            ("s0a1b2c3d_x$uy", r"s0a1b2c3d\_x$uy"),
            ("s0a1b2c3d_xzy", r"s0a1b2c3d\_xzy"),
            ("s0a1b2c3d_a-restore", r"s0a1b2c3d\_a-restore"),
            ("100%", r"100\%"),
            (r"a\b", r"a\\b"),
        ] {
            assert_eq!(grant_pattern(name), pattern, "{name}");
        }
    }

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
