//! The data layer attacked as a hostile app and a hostile backup would: two apps that each use
//! every service, on real PostgreSQL, MariaDB, Redis and pouchdb-server, with the agent as root
//! (one Unix user per app). The attacks are tables of data: a cross-app matrix (service ×
//! read, write, list, metadata, functions), a corpus of hostile backups, and `kill -9` at random
//! points of a restore with the all-or-nothing check after each.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::servers::*;
use common::*;

/// Every service, and a checkpoint before each update (`update_fetch`).
const INI: &str = "service.files =\nservice.postgresql =\nservice.mysql =\nservice.redis =\nservice.couchdb =\nupdate_fetch = script: true\n";

/// Shell functions for the app's own clients, logged in with its own credentials (from its
/// environment, never typed here).
const CLIENTS: &str = r#"
PG() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }
MY() { MYSQL_PWD="$CONFIG_MYSQL_PASSWORD" mariadb --batch --skip-column-names -h "$CONFIG_MYSQL_HOST" -P "$CONFIG_MYSQL_PORT" -u "$CONFIG_MYSQL_USER" "$@"; }
RC() { REDISCLI_AUTH="$CONFIG_REDIS_PASSWORD" redis-cli --no-auth-warning --user "$CONFIG_REDIS_USER" -h "$CONFIG_REDIS_HOST" -p "$CONFIG_REDIS_PORT" "$@"; }
CU() { curl -s -u "$CONFIG_COUCHDB_USER:$CONFIG_COUCHDB_PASSWORD" "$@"; }
"#;

/// A node with every server, private to one test. The agent is dropped first.
struct Node {
    agent: Agent,
    _couch: PouchServer,
    _redis: RedisServer,
    _mysql: MariaDb,
    _pg: Cluster,
    /// `--postgres-url`, `--mysql-url`, `--redis-url` and `SILVER_COUCHDB_URL`.
    urls: [String; 4],
    tmp: tempfile::TempDir,
}

impl Node {
    fn start() -> Node {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let pg = Cluster::start(tmp.path());
        let mysql = MariaDb::start(tmp.path());
        let redis = RedisServer::start();
        let couch = PouchServer::start(tmp.path());
        // An administrator, so each app gets a CouchDB user of its own.
        let admin = format!("http://127.0.0.1:{}/_config/admins/admin", couch.port);
        let out = Command::new("curl")
            .args(["-sf", "-X", "PUT", &admin, "-d", "\"adminpw\""])
            .output()
            .unwrap();
        assert!(out.status.success(), "pouchdb-server took no admin");
        let urls = [
            pg.admin_url(),
            mysql.admin_url(),
            // The node's Redis as Debian installs it: a default user with no password.
            format!("redis://127.0.0.1:{}", redis.port),
            format!("http://admin:adminpw@127.0.0.1:{}", couch.port),
        ];
        let agent = Node::agent(tmp.path(), &urls);
        Node {
            agent,
            _couch: couch,
            _redis: redis,
            _mysql: mysql,
            _pg: pg,
            urls,
            tmp,
        }
    }

    fn agent(tmp: &Path, urls: &[String; 4]) -> Agent {
        Agent::start_with_env(
            &tmp.join("node"),
            &[
                "--postgres-url",
                &urls[0],
                "--mysql-url",
                &urls[1],
                "--redis-url",
                &urls[2],
            ],
            &[("SILVER_COUCHDB_URL", &urls[3])],
        )
    }

    /// Kills the agent (SIGKILL), runs `while_down`, and starts it again over the same root.
    fn kill_and_restart(&mut self, while_down: impl FnOnce(&Path)) {
        self.agent.child.kill().unwrap();
        self.agent.child.wait().unwrap();
        while_down(&self.agent.root);
        let agent = Node::agent(self.tmp.path(), &self.urls);
        // The old handle's drop would remove the node's app users, which the node keeps.
        std::mem::forget(std::mem::replace(&mut self.agent, agent));
    }

    fn deploy(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        let host = name.replace('_', "-u-");
        wsgi_app(
            &dir,
            name,
            &format!("default_location = {host}.test\n{INI}"),
            ECHO_APP,
        );
        self.agent
            .deployed(&self.tmp.path().join("cache"), &dir, &[]);
        dir
    }

    /// The app's environment as the node wrote it.
    fn env(&self, app: &str) -> serde_json::Value {
        let path = self
            .agent
            .root
            .join(format!("apps/{app}/run/environment.json"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// `silver run APP -- sh -c CLIENTS+SCRIPT`: exit status, stdout and stderr together.
    fn run(&self, app: &str, script: &str) -> (bool, String) {
        let out = self
            .agent
            .silver()
            .args(["run", app, "--", "sh", "-c"])
            .arg(format!("{CLIENTS}\n{script}"))
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", stdout(&out), stderr(&out)),
        )
    }

    fn must_run(&self, app: &str, script: &str) -> String {
        let (ok, out) = self.run(app, script);
        assert!(ok, "{script}: {out}");
        out
    }

    /// Writes `value` as the app's data in every service: a row, a key, a document, a file.
    fn seed(&self, app: &str, value: &str) {
        self.must_run(
            app,
            &format!(
                r#"set -e
PG -c "CREATE TABLE IF NOT EXISTS secrets (v text); DELETE FROM secrets; INSERT INTO secrets VALUES ('{value}')"
PG -c "CREATE OR REPLACE FUNCTION leak() RETURNS text LANGUAGE sql AS 'SELECT ''{value}-fn'''"
MY "$CONFIG_MYSQL_DBNAME" -e "CREATE TABLE IF NOT EXISTS secrets (v text); DELETE FROM secrets; INSERT INTO secrets VALUES ('{value}'); CREATE OR REPLACE VIEW secrets_v AS SELECT v FROM secrets; CREATE TABLE IF NOT EXISTS audit (n int); CREATE TRIGGER IF NOT EXISTS secrets_t AFTER INSERT ON secrets FOR EACH ROW INSERT INTO audit VALUES (1)"
RC SET "${{CONFIG_REDIS_PREFIX}}secret" '{value}' >/dev/null
rev=$(CU "http://$CONFIG_COUCHDB_HOST/$CONFIG_COUCHDB_DB/secret" | sed -n 's/.*"_rev":"\([^"]*\)".*/\1/p')
body="{{\"v\": \"{value}\"${{rev:+, \"_rev\": \"$rev\"}}}}"
CU -X PUT -H 'Content-Type: application/json' -d "$body" "http://$CONFIG_COUCHDB_HOST/$CONFIG_COUCHDB_DB/secret" | grep -q ok
echo '{value}' > "$CONFIG_FILES/secret.txt"
"#
            ),
        );
    }

    /// The app's data in every service, as the app reads it.
    fn snapshot(&self, app: &str) -> String {
        self.must_run(
            app,
            r#"set -e
echo "pg: $(PG -c 'SELECT v FROM secrets ORDER BY v' | tr '\n' ' ') $(PG -c 'SELECT leak()')"
echo "mysql: $(MY "$CONFIG_MYSQL_DBNAME" -e 'SELECT v FROM secrets_v ORDER BY v' | tr '\n' ' ')$(MY "$CONFIG_MYSQL_DBNAME" -e 'SHOW TRIGGERS' | cut -f1 | tr '\n' ' ')"
echo "redis: $(RC GET "${CONFIG_REDIS_PREFIX}secret")"
echo "couch: $(CU "http://$CONFIG_COUCHDB_HOST/$CONFIG_COUCHDB_DB/secret" | sed -n 's/.*"v":"\([^"]*\)".*/\1/p')"
echo "files: $(cat "$CONFIG_FILES/secret.txt")"
"#,
        )
    }

    fn backup(&self, app: &str, to: &Path) {
        self.agent
            .silver()
            .args(["backup", app])
            .arg(to)
            .assert()
            .success();
    }
}

#[test]
#[ignore = "system tier (root, PostgreSQL, MariaDB, Redis, pouchdb-server): cargo test -- --include-ignored"]
fn no_app_reads_writes_lists_or_replaces_another_apps_data() {
    let node = Node::start();
    // `x_y`'s grant once matched `xzy`'s database (`_` is a wildcard in grants); `col-a` and
    // `col_a` once shared every identity.
    for app in ["xzy", "x_y", "col-a", "col_a"] {
        node.deploy(app);
        node.seed(app, &format!("SECRET-OF-{app}"));
    }
    let names = |app: &str| {
        let env = node.env(app);
        [
            "CONFIG_PG_DBNAME",
            "CONFIG_MYSQL_DBNAME",
            "CONFIG_REDIS_PREFIX",
            "CONFIG_COUCHDB_DB",
        ]
        .map(|k| env[k].as_str().unwrap().to_string())
    };
    let (a, b) = (names("col-a"), names("col_a"));
    for (x, y) in a.iter().zip(&b) {
        assert_ne!(x, y, "col-a and col_a share an identity");
    }
    // A checkpoint of each (a redeploy runs update_fetch), and a backup of each.
    for app in ["xzy", "x_y", "col-a"] {
        std::fs::write(node.tmp.path().join(app).join("changed"), "1").unwrap();
        node.deploy(app);
        node.backup(app, &node.tmp.path().join(format!("backup-{app}")));
    }
    for app in ["xzy", "x_y", "col-a", "col_a"] {
        assert_eq!(
            node.snapshot(app),
            format!(
                "pg: SECRET-OF-{app}  SECRET-OF-{app}-fn\nmysql: SECRET-OF-{app} secrets_t \nredis: SECRET-OF-{app}\ncouch: SECRET-OF-{app}\nfiles: SECRET-OF-{app}\n"
            ),
            "{app}'s own data, after the other apps came"
        );
    }
    let root = node.agent.root.clone();
    for (attacker, victim) in [("x_y", "xzy"), ("xzy", "x_y"), ("col_a", "col-a")] {
        let before = node.snapshot(victim);
        let env = node.env(victim);
        let db = env["CONFIG_MYSQL_DBNAME"].as_str().unwrap();
        let prefix = env["CONFIG_REDIS_PREFIX"].as_str().unwrap();
        let checkpoint = std::fs::read_dir(root.join(format!("apps/{victim}/checkpoints")))
            .unwrap()
            .flatten()
            .find(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .expect("a checkpoint")
            .path();
        let backup = node.tmp.path().join(format!("backup-{victim}"));
        let secret = format!("SECRET-OF-{victim}");
        // (service, what, script as the attacker, what its answer must hold). A listing that
        // answers (nothing expected) must not show the victim's database either.
        // Names hold `$` (`x_y` is `…_x$uy`): single quotes keep the shell off them.
        let pg_url = format!("postgresql://$CONFIG_PG_USER:$CONFIG_PG_PASSWORD@$CONFIG_PG_HOST:$CONFIG_PG_PORT/\"'{db}'\"");
        let cases: Vec<(&str, &str, String, &str)> = vec![
            ("postgresql", "read", format!("psql -X -A -t \"{pg_url}\" -c 'SELECT v FROM secrets'"), "permission denied for database"),
            ("postgresql", "metadata", format!("psql -X -A -t \"{pg_url}\" -c \"SELECT prosrc FROM pg_proc WHERE proname = 'leak'\""), "permission denied for database"),
            ("postgresql", "write", format!("psql -X -A -t \"{pg_url}\" -c 'CREATE TEMP TABLE t (x int)'"), "permission denied for database"),
            ("mysql", "read", format!("MY -e 'SELECT v FROM `{db}`.secrets'"), "denied"),
            ("mysql", "write", format!("MY -e 'INSERT INTO `{db}`.secrets VALUES (\"pwned\")'"), "denied"),
            ("mysql", "list", "MY -e 'SHOW DATABASES'".into(), ""),
            ("mysql", "metadata", format!("MY -e 'SELECT table_name FROM information_schema.tables WHERE table_schema = \"{db}\"'"), ""),
            ("redis", "read", format!("RC GET '{prefix}secret'"), "NOPERM"),
            ("redis", "write", format!("RC SET '{prefix}secret' pwned"), "NOPERM"),
            ("redis", "list SCAN", "RC SCAN 0".into(), "NOPERM"),
            ("redis", "list KEYS", "RC KEYS '*'".into(), "NOPERM"),
            ("redis", "list RANDOMKEY", "RC RANDOMKEY".into(), "NOPERM"),
            ("redis", "list channels", "RC PUBSUB CHANNELS".into(), "NOPERM"),
            ("redis", "functions LIST", "RC FUNCTION LIST".into(), "NOPERM"),
            ("redis", "functions FLUSH", "RC FUNCTION FLUSH".into(), "NOPERM"),
            ("redis", "functions LOAD", "RC FUNCTION LOAD REPLACE \"#!lua name=lib\nredis.register_function('f', function() return 1 end)\"".into(), "NOPERM"),
            ("redis", "SCRIPT FLUSH", "RC SCRIPT FLUSH".into(), "NOPERM"),
            ("redis", "CONFIG", "RC CONFIG GET '*'".into(), "NOPERM"),
            ("redis", "default user", format!("redis-cli -h \"$CONFIG_REDIS_HOST\" -p \"$CONFIG_REDIS_PORT\" GET '{prefix}secret'"), "NOAUTH"),
            ("files", "read", format!("cat {}/apps/{victim}/files/secret.txt", root.display()), "Permission denied"),
            ("files", "list", format!("ls {}/apps/{victim}/files", root.display()), "Permission denied"),
            ("checkpoints", "list", format!("ls {}/apps/{victim}/checkpoints", root.display()), "Permission denied"),
            ("checkpoints", "read", format!("tar xOf {}/files.tar secret.txt", checkpoint.display()), "Permission denied"),
            ("backup", "read", format!("cat {}/mysql.sql", backup.display()), "Permission denied"),
            ("backup", "list", format!("ls {}", backup.display()), "Permission denied"),
        ];
        for (service, what, script, expected) in cases {
            let (_, said) = node.run(attacker, &format!("{script} 2>&1"));
            let case = format!("{attacker} → {victim}: {service} {what}");
            assert!(!said.contains(&secret), "{case} read the secret: {said}");
            assert!(said.contains(expected), "{case}: {said}");
            // A listing that succeeds must not show the victim at all.
            if expected.is_empty() {
                assert!(!said.contains(db), "{case} listed the victim: {said}");
            }
        }
        assert_eq!(
            node.snapshot(victim),
            before,
            "{attacker} changed {victim}'s data"
        );
    }
    // Checkpoints and backups are private in every form.
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root.join("apps/xzy/checkpoints")), 0o700);
    let backup = node.tmp.path().join("backup-xzy");
    assert_eq!(mode(&backup), 0o700);
    for file in std::fs::read_dir(&backup).unwrap().flatten() {
        assert_eq!(mode(&file.path()), 0o600, "{}", file.path().display());
    }
    // A database, user or prefix of an app's name that someone else made is refused, naming
    // its owner: never taken over.
    let id = std::fs::read_to_string(root.join("node-id")).unwrap();
    let redis_port = node.urls[2].rsplit(':').next().unwrap().to_string();
    let secret = std::fs::read_to_string(root.join("redis-default.secret")).unwrap();
    let planted = Command::new("redis-cli")
        .args(["-p", &redis_port, "SET"])
        .arg(format!("s{}_planted-owner", id.trim()))
        .arg("made by hand")
        .env("REDISCLI_AUTH", secret.trim())
        .output()
        .unwrap();
    assert!(planted.status.success());
    let mysql = node.urls[1]
        .trim_start_matches("mysql://admin:adminpw@127.0.0.1:")
        .to_string();
    let planted = Command::new("mariadb")
        .args([
            "--protocol=tcp",
            "-h",
            "127.0.0.1",
            "-P",
            &mysql,
            "-u",
            "admin",
            "-e",
        ])
        .arg(format!(
            "CREATE DATABASE `s{}_planted$ud` COMMENT 'made by hand'",
            id.trim()
        ))
        .env("MYSQL_PWD", "adminpw")
        .output()
        .unwrap();
    assert!(
        planted.status.success(),
        "{}",
        String::from_utf8_lossy(&planted.stderr)
    );
    for (app, service, what) in [
        ("planted", "redis", "Redis user"),
        ("planted_d", "mysql", "MariaDB database"),
    ] {
        let dir = node.tmp.path().join(app);
        let ini = format!(
            "default_location = {}.test\nservice.{service} =\n",
            app.replace('_', "-")
        );
        wsgi_app(&dir, app, &ini, ECHO_APP);
        let out = node.agent.deploy(&node.tmp.path().join("cache"), &dir, &[]);
        assert!(
            !out.status.success(),
            "{app} took over what someone else made"
        );
        let said = stderr(&out);
        assert!(
            said.contains(what) && said.contains("belongs to something else (made by hand)"),
            "{said}"
        );
    }
    let archive = node.tmp.path().join("xzy.tar.zst");
    node.backup("xzy", &archive);
    assert_eq!(
        std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// A copy of the backup `good` made hostile by `spoil`, then restored onto `app`: it must be
/// refused with `expected` in the message (or pass, for "ok"), and leave the app's data (and
/// every other app's) as it was.
fn check_hostile(node: &Node, case: &str, spoil: &dyn Fn(&Path), expected: &str) {
    let good = node.tmp.path().join("good");
    let dir = node
        .tmp
        .path()
        .join(format!("hostile-{}", case.replace(' ', "-")));
    copy_dir(&good, &dir);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    spoil(&dir);
    let (victim, other) = (node.snapshot("victim"), node.snapshot("other"));
    let out = node
        .agent
        .silver()
        .arg("restore")
        .arg(&dir)
        .arg("victim")
        .output()
        .unwrap();
    let said = stderr(&out);
    if expected == "ok" {
        assert!(out.status.success(), "{case}: {said}");
    } else {
        assert!(!out.status.success(), "{case} was restored");
        assert!(said.contains(expected), "{case}: {said}");
    }
    assert_eq!(
        node.snapshot("victim"),
        victim,
        "{case} changed the app's data"
    );
    assert_eq!(
        node.snapshot("other"),
        other,
        "{case} changed another app's data"
    );
    let pending = root_journal(node);
    assert!(!pending, "{case} left a restore in progress");
}

fn root_journal(node: &Node) -> bool {
    node.agent.root.join("apps/victim/restore.json").exists()
}

fn edit(dir: &Path, file: &str, change: impl Fn(String) -> String) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, change(text)).unwrap();
}

#[test]
#[ignore = "system tier (root, PostgreSQL, MariaDB, Redis, pouchdb-server): cargo test -- --include-ignored"]
fn hostile_backups_are_refused_whole_and_change_nothing() {
    let node = Node::start();
    for app in ["victim", "other"] {
        node.deploy(app);
        node.seed(app, &format!("SECRET-OF-{app}"));
    }
    node.backup("victim", &node.tmp.path().join("good"));
    let other_db = node.env("other")["CONFIG_MYSQL_DBNAME"]
        .as_str()
        .unwrap()
        .to_string();
    let other_backup = node.tmp.path().join("other-backup");
    node.backup("other", &other_backup);
    let other_dump = other_backup.join("postgresql.sql");
    let bomb = node.tmp.path().join("bomb.tar.zst");
    zstd_bomb(&bomb);
    let fifo = node.tmp.path().join("fifo.tar.zst");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    type Spoil = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Spoil, &str)> = vec![
        ("as taken", Box::new(|_: &Path| {}), "ok"),
        (
            "pg bad statement halfway",
            Box::new(|d: &Path| {
                edit(d, "postgresql.sql", |t| {
                    t.replacen("COPY ", "THIS IS NOT SQL;\nCOPY ", 1)
                })
            }),
            "syntax error",
        ),
        (
            "pg COMMIT, a delete, COMMIT, a bad statement",
            Box::new(|d: &Path| {
                edit(d, "postgresql.sql", |t| {
                    t + "COMMIT;\nDELETE FROM public.secrets;\nCOMMIT;\nNOT SQL;\n"
                })
            }),
            "syntax error",
        ),
        (
            "pg changes the app's password",
            Box::new(|d: &Path| {
                edit(d, "postgresql.sql", |t| {
                    t + "ALTER ROLE CURRENT_USER PASSWORD 'hijacked';\n"
                })
            }),
            "ok",
        ),
        (
            "mysql bad statement halfway",
            Box::new(|d: &Path| {
                edit(d, "mysql.sql", |t| {
                    t.replacen("INSERT", "NOT SQL;\nINSERT", 1)
                })
            }),
            "mariadb",
        ),
        (
            "mysql writes another app's database",
            Box::new(move |d: &Path| {
                edit(d, "mysql.sql", |t| {
                    format!("INSERT INTO `{other_db}`.secrets VALUES ('pwned');\n{t}")
                })
            }),
            "denied",
        ),
        (
            "mysql changes its password",
            Box::new(|d: &Path| {
                edit(d, "mysql.sql", |t| {
                    t + "SET PASSWORD = PASSWORD('hijacked');\n"
                })
            }),
            "ok",
        ),
        (
            "redis bad line halfway",
            Box::new(|d: &Path| edit(d, "redis.jsonl", |t| format!("{t}{{not json\n"))),
            "line 2",
        ),
        (
            "redis unknown type",
            Box::new(|d: &Path| {
                edit(d, "redis.jsonl", |t| {
                    t + "{\"key\": \"k\", \"type\": \"stream\", \"value\": []}\n"
                })
            }),
            "unknown type",
        ),
        (
            "couchdb bad revision",
            Box::new(|d: &Path| {
                edit(d, "couchdb.jsonl", |t| {
                    t + "{\"_id\": \"x\", \"_rev\": \"bogus\"}\n"
                })
            }),
            "couchdb.jsonl",
        ),
        (
            "couchdb design document that locks the app out",
            Box::new(|d: &Path| {
                edit(d, "couchdb.jsonl", |t| {
                    t + "{\"_id\": \"_design/lock\", \"_rev\": \"1-abc\", \"validate_doc_update\": \"function() { throw({forbidden: 'locked'}); }\"}\n"
                })
            }),
            "_design/lock",
        ),
        (
            "a dump that is a link to another app's dump",
            Box::new(move |d: &Path| {
                std::fs::remove_file(d.join("postgresql.sql")).unwrap();
                std::os::unix::fs::symlink(&other_dump, d.join("postgresql.sql")).unwrap();
            }),
            "symbolic link",
        ),
        (
            "a backup directory others may write",
            Box::new(|d: &Path| {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap()
            }),
            "other users may write",
        ),
        (
            "a dump others may write",
            Box::new(|d: &Path| {
                std::fs::set_permissions(
                    d.join("redis.jsonl"),
                    std::fs::Permissions::from_mode(0o666),
                )
                .unwrap()
            }),
            "other users may write",
        ),
    ];
    for (case, spoil, expected) in &cases {
        check_hostile(&node, case, spoil.as_ref(), expected);
    }
    // The password a dump set is not the app's: it logs in with its own, which works.
    assert!(node.snapshot("victim").contains("SECRET-OF-victim"));
    // Whole-file sources: a FIFO (which would hang) and a decompression bomb.
    for (source, expected) in [(&fifo, "not a regular file"), (&bomb, "decompression bomb")] {
        let out = node
            .agent
            .silver()
            .arg("restore")
            .arg(source)
            .arg("victim")
            .timeout(std::time::Duration::from_secs(120))
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    }
}

/// A `.tar.zst` of 33 KB or so that holds a 1 GiB `redis.jsonl`.
fn zstd_bomb(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let enc = zstd::Encoder::new(file, 3).unwrap().auto_finish();
    let mut tar = tar::Builder::new(enc);
    let mut header = tar::Header::new_gnu();
    header.set_size(1 << 30);
    header.set_mode(0o600);
    header.set_cksum();
    tar.append_data(
        &mut header,
        "redis.jsonl",
        std::io::Read::take(std::io::repeat(b' '), 1 << 30),
    )
    .unwrap();
    tar.finish().unwrap();
}

/// Enough rows, keys, documents and files that a restore takes a while, so kills land at every
/// step of it; `value` marks every service.
fn fill(node: &Node, app: &str, value: &str) {
    node.seed(app, value);
    node.must_run(
        app,
        r#"set -e
PG -c "DROP TABLE IF EXISTS bulk; CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 30000) g"
MY "$CONFIG_MYSQL_DBNAME" -e "DROP TABLE IF EXISTS bulk; CREATE TABLE bulk (id INT PRIMARY KEY, v TEXT); INSERT INTO bulk SELECT seq, MD5(seq) FROM seq_1_to_5000"
i=0; while [ $i -lt 300 ]; do echo "SET ${CONFIG_REDIS_PREFIX}k$i $i"; i=$((i+1)); done | RC >/dev/null
mkdir -p "$CONFIG_FILES/bulk"; i=0; while [ $i -lt 200 ]; do echo $i > "$CONFIG_FILES/bulk/$i"; i=$((i+1)); done
"#,
    );
}

/// The marker each service holds: all five the same after any crash, or the restore was not
/// all or nothing.
fn markers(node: &Node, app: &str) -> Vec<String> {
    node.snapshot(app)
        .lines()
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .unwrap_or("")
                .trim_end_matches("-fn")
                .to_string()
        })
        .collect()
}

#[test]
#[ignore = "system tier (root, PostgreSQL, MariaDB, Redis, pouchdb-server): cargo test -- --include-ignored"]
fn kill_9_at_random_points_of_a_restore_leaves_every_service_old_or_new() {
    let seed = std::env::var("SILVER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64);
    let rounds: usize = std::env::var("SILVER_RESTORE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    eprintln!("restore crash test seed: {seed} (replay with SILVER_CRASH_SEED={seed}), {rounds} rounds (SILVER_RESTORE_KILLS)");
    let mut rng = Lcg(seed);
    let mut node = Node::start();
    node.deploy("kr");
    let backups = ["old", "new"].map(|v| {
        fill(&node, "kr", v);
        let dir = node.tmp.path().join(format!("backup-{v}"));
        node.backup("kr", &dir);
        (v, dir)
    });
    // How long a whole restore takes here: kills land anywhere within it.
    let started = std::time::Instant::now();
    let out = node
        .agent
        .silver()
        .arg("restore")
        .arg(&backups[0].1)
        .arg("kr")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let whole = started.elapsed().as_millis() as u64;
    assert_eq!(markers(&node, "kr"), vec!["old"; 5]);
    let mut seen = std::collections::BTreeSet::new();
    let (mut recovered, mut last_outcome) = (0, None);
    for round in 0..rounds {
        let (_, target) = &backups[(round + 1) % 2];
        let mut client = node
            .agent
            .spawn_silver()
            .arg("restore")
            .arg(target)
            .arg("kr")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.next(whole + 200)));
        node.kill_and_restart(|root| {
            // While the agent is down, fsck names an app whose data is mid-restore.
            let fsck = silver()
                .args(["fsck", "--json", "--root"])
                .arg(root)
                .output()
                .unwrap();
            let report: serde_json::Value = serde_json::from_slice(&fsck.stdout).unwrap();
            let mid = report["mid_restore"].as_array().unwrap();
            if root.join("apps/kr/restore.json").exists() {
                assert!(
                    !fsck.status.success() && mid[0].as_str().unwrap().starts_with("kr: "),
                    "{report}"
                );
            } else {
                assert!(mid.is_empty(), "{report}");
            }
        });
        let _ = client.wait();
        // The agent settles the restore before the app starts; wait until the app is back.
        let journal = node.agent.root.join("apps/kr/restore.json");
        let what = format!("round {round} (seed {seed}): the app comes back");
        let found = eventually(std::time::Duration::from_secs(120), &what, || {
            let (ok, said) = node.run("kr", "true");
            match ok && !journal.exists() {
                true => Ok(markers(&node, "kr")),
                false => Err(format!(
                    "{said}\njournal: {:?}",
                    std::fs::read_to_string(&journal)
                )),
            }
        });
        assert!(
            found.iter().all(|m| m == &found[0]) && ["old", "new"].contains(&found[0].as_str()),
            "round {round} (seed {seed}): services disagree after a kill: {found:?}"
        );
        seen.insert(found[0].clone());
        let outcome = std::fs::read_to_string(node.agent.root.join("apps/kr/restore-outcome.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|o| format!("{} {}", o["outcome"], o["recovered"]));
        if outcome != last_outcome {
            recovered += 1;
            last_outcome = outcome;
        }
        let fsck = silver()
            .args(["fsck", "--json", "--root"])
            .arg(&node.agent.root)
            .output()
            .unwrap();
        assert!(fsck.status.success(), "round {round}: {}", stderr(&fsck));
    }
    eprintln!("{recovered} of {rounds} kills landed mid-restore (the agent finished or undid it); states seen: {seen:?}");
    // And the node still restores, whole.
    let out = node
        .agent
        .silver()
        .arg("restore")
        .arg(&backups[1].1)
        .arg("kr")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        markers(&node, "kr"),
        vec!["new"; 5],
        "seen after kills: {seen:?}"
    );
}
