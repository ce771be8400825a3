//! Services end to end: a real PostgreSQL cluster (private to the test), `service.files`, and a
//! service silver does not provide.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::servers::*;
use common::*;

/// `psql` run on the node by `silver run`, in the app's environment, connecting as the app.
fn psql_as_app(agent: &Agent, psql: &Path, url: &str, sql: &str) -> std::process::Output {
    agent
        .silver()
        .args(["run", "pg-app", "--"])
        .arg(psql)
        .args(["-X", "-q", "-A", "-t", "-d", url, "-c", sql])
        .output()
        .unwrap()
}

#[test]
#[ignore = "system tier (PostgreSQL): cargo test -- --include-ignored"]
fn postgresql_and_files_services_are_provisioned_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cluster = Cluster::start(tmp.path());
    let admin = cluster.admin_url();
    let agent = Agent::start(&tmp.path().join("node"), &["--postgres-url", &admin]);
    let app = tmp.path().join("app");
    wsgi_app(
        &app,
        "pg-app",
        "default_location = pg.test\nservice.postgresql =\nservice.files =\n",
        ECHO_APP,
    );
    agent.deployed(&tmp.path().join("cache"), &app, &[]);
    let env: serde_json::Value =
        serde_json::from_str(&get(&agent.front, "pg.test", "/env").body).unwrap();
    // Named for this node: another node on the same PostgreSQL gets its own role.
    let role = format!("s{}_pg_app", node_id(&agent));
    assert_eq!(env["CONFIG_PG_DBNAME"], role.as_str());
    assert_eq!(env["CONFIG_PG_PORT"], cluster.port.to_string().as_str());
    let url = env["DATABASE_URL"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("postgresql://{role}:")), "{url}");
    assert_eq!(env["CONFIG_PG_SQLALCHEMY"], url.as_str());
    assert!(env["CONFIG_FILES"]
        .as_str()
        .unwrap()
        .ends_with("/apps/pg-app/files"));

    // The app reaches its own database with its own password, from `silver run`.
    let psql = cluster.bin.join("psql");
    let sql = "CREATE TABLE IF NOT EXISTS notes (t text); INSERT INTO notes VALUES ('kept'); SELECT current_user, count(*) FROM notes";
    let run = psql_as_app(&agent, &psql, &url, sql);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(stdout(&run).trim(), format!("{role}|1"));

    // A new release keeps the database, its data and its password.
    std::fs::write(app.join("static/style.css"), "/* v2 */\n").unwrap();
    agent.deployed(&tmp.path().join("cache"), &app, &[]);
    let env2: serde_json::Value =
        serde_json::from_str(&get(&agent.front, "pg.test", "/env").body).unwrap();
    assert_eq!(env2["DATABASE_URL"], url.as_str());
    let count = psql_as_app(&agent, &psql, &url, "SELECT count(*) FROM notes");
    assert_eq!(stdout(&count).trim(), "1", "{}", stderr(&count));
    // `silver run APP -- psql < dump.sql`: a 100 MB dump streamed to the node as it runs.
    let mut dump =
        String::from("CREATE TABLE bulk (id int, v text);\nCOPY bulk (id, v) FROM stdin;\n");
    let row = "x".repeat(90);
    for i in 0..1_000_000 {
        dump += &format!("{i}\t{row}\n");
    }
    dump += "\\.\nSELECT count(*) FROM bulk;\n";
    assert!(dump.len() > 95_000_000);
    let out = agent
        .silver()
        .args(["run", "pg-app", "--", "sh", "-c"])
        .arg(format!(
            "{} -X -q -A -t -v ON_ERROR_STOP=1 \"$DATABASE_URL\"",
            psql.display()
        ))
        .write_stdin(dump)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1000000");
    // The password is not in the agent's history or in any log.
    let password = url.split(':').nth(2).unwrap().split('@').next().unwrap();
    for file in ["apps/pg-app/history.jsonl", "apps/pg-app/logs/web.log"] {
        let text = std::fs::read_to_string(agent.root.join(file)).unwrap();
        assert!(!text.contains(password), "{file} holds the password");
    }
}

fn node_id(agent: &Agent) -> String {
    std::fs::read_to_string(agent.root.join("node-id"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
#[ignore = "system tier (PostgreSQL): cargo test -- --include-ignored"]
fn two_nodes_on_one_postgresql_never_disturb_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cluster = Cluster::start(tmp.path());
    let admin = cluster.admin_url();
    let psql = cluster.bin.join("psql");
    let app = tmp.path().join("app");
    wsgi_app(
        &app,
        "pg-app",
        "default_location = pg.test\nservice.postgresql =\n",
        ECHO_APP,
    );
    let first = Agent::start(&tmp.path().join("node-a"), &["--postgres-url", &admin]);
    first.deployed(&tmp.path().join("cache-a"), &app, &[]);
    let env_of = |agent: &Agent| -> serde_json::Value {
        serde_json::from_str(&get(&agent.front, "pg.test", "/env").body).unwrap()
    };
    let url_a = env_of(&first)["DATABASE_URL"].as_str().unwrap().to_string();
    let run = psql_as_app(
        &first,
        &psql,
        &url_a,
        "CREATE TABLE a_only (x int); SELECT 1",
    );
    assert!(run.status.success(), "{}", stderr(&run));
    // The same app name on a second node: its own role, database and password.
    let second = Agent::start(&tmp.path().join("node-b"), &["--postgres-url", &admin]);
    second.deployed(&tmp.path().join("cache-b"), &app, &[]);
    let url_b = env_of(&second)["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(url_a, url_b);
    // The first node's app still logs in with its password, and sees its own table only.
    let run = psql_as_app(&first, &psql, &url_a, "SELECT count(*) FROM a_only");
    assert!(run.status.success(), "{}", stderr(&run));
    let run = psql_as_app(&second, &psql, &url_b, "SELECT count(*) FROM a_only");
    assert!(
        !run.status.success(),
        "the second node sees the first one's table"
    );
    // A role of the name a node would use, made by someone else, is not taken over.
    let taken = format!("s{}_taken", node_id(&first));
    let out = Command::new(&psql)
        .args(["-X", "-q", "-d", &admin, "-c"])
        .arg(format!("CREATE ROLE \"{taken}\" LOGIN PASSWORD 'theirs'"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = tmp.path().join("taken");
    wsgi_app(
        &other,
        "taken",
        "default_location = taken.test\nservice.postgresql =\n",
        ECHO_APP,
    );
    let out = first.deploy(&tmp.path().join("cache-a"), &other, &[]);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains(&format!(
            "PostgreSQL role `{taken}` for app `taken` exists but this node did not make it"
        )),
        "{said}"
    );
    assert!(
        said.contains("never takes over a role it did not make"),
        "{said}"
    );
}

#[test]
fn a_service_silver_does_not_provide_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    // Refused when packed, naming the line: no node ever sees it.
    let app = tmp.path().join("app");
    wsgi_app(&app, "mongo", "service.mongodb =\n", ECHO_APP);
    let out = agent.deploy(&tmp.path().join("cache"), &app, &[]);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains("app.ini:4: service `mongodb` is not one silver offers"),
        "{said}"
    );
    assert!(said.contains("MongoDB is not offered"), "{said}");
    // A server named but not there: the error names the service and address and says what
    // to do. (service, its server, agent flag, URL scheme, what the hint names)
    let check = |service: &str, server: &str, flag: &str, scheme: &str, hint: &str| {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url = format!("{scheme}://{}", dead.local_addr().unwrap());
        drop(dead);
        let node = Agent::start(
            &tmp.path().join(format!("node-{service}")),
            &[flag, &dead_url],
        );
        let app = tmp.path().join(service);
        wsgi_app(&app, service, &format!("service.{service} =\n"), ECHO_APP);
        let out = node.deploy(&tmp.path().join("cache"), &app, &[]);
        assert!(!out.status.success());
        let said = stderr(&out);
        let expected = format!("needs service `{service}`, but the node's {server} at 127.0.0.1:");
        assert!(said.contains(&expected), "{said}");
        assert!(said.contains(hint), "{said}");
    };
    check(
        "redis",
        "Redis",
        "--redis-url",
        "redis",
        "apt-get install redis-server",
    );
    check(
        "couchdb",
        "CouchDB",
        "--couchdb-url",
        "http",
        "pouchdb-server",
    );
}

/// Speaks Redis's protocol with the app's own credentials: sets its key, reads it back, then
/// tries another app's key and FLUSHALL. Answers the first line of each reply (with a bulk
/// string's value).
const REDIS_APP: &str = r#"
import json, os, socket

def call(f, *args):
    f.write(("*%d\r\n" % len(args)).encode())
    for a in args:
        f.write(("$%d\r\n%s\r\n" % (len(a.encode()), a)).encode())
    f.flush()
    line = f.readline().decode().rstrip("\r\n")
    if line.startswith("$") and line != "$-1":
        line = f.readline().decode().rstrip("\r\n")
    return line.split(" ")[0]

def application(environ, start_response):
    e = os.environ
    conn = socket.create_connection((e["CONFIG_REDIS_HOST"], int(e["CONFIG_REDIS_PORT"])))
    f = conn.makefile("rwb")
    other = environ["QUERY_STRING"]
    replies = [
        call(f, "AUTH", e["CONFIG_REDIS_USER"], e["CONFIG_REDIS_PASSWORD"]),
        call(f, "SET", e["CONFIG_REDIS_PREFIX"] + "name", e["SILVER_APP_NAME"]),
        call(f, "GET", e["CONFIG_REDIS_PREFIX"] + "name"),
        call(f, "GET", other) if other else "-",
        call(f, "FLUSHALL"),
    ]
    conn.close()
    body = json.dumps({"replies": replies, "url": e["REDIS_URL"].startswith("redis://" + e["CONFIG_REDIS_USER"] + ":")})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
"#;

#[test]
#[ignore = "system tier (Redis): cargo test -- --include-ignored"]
fn two_apps_on_one_redis_keep_to_their_own_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let agent = Agent::start(&tmp.path().join("node"), &["--redis-url", &url]);
    let cache = tmp.path().join("cache");
    for name in ["ra", "rb"] {
        let app = tmp.path().join(name);
        let ini = format!("default_location = {name}.test\nservice.redis =\n");
        wsgi_app(&app, name, &ini, REDIS_APP);
        let out = agent.deploy(&cache, &app, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let env_a: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(agent.root.join("apps/ra/run/environment.json")).unwrap(),
    )
    .unwrap();
    let a_key = format!("{}name", env_a["CONFIG_REDIS_PREFIX"].as_str().unwrap());
    let a = get(&agent.front, "ra.test", "/");
    let a: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        a["replies"],
        serde_json::json!(["+OK", "+OK", "ra", "-", "-NOPERM"])
    );
    assert_eq!(a["url"], true);
    // App B logs in as itself, keeps its own key, and cannot read A's or wipe the server.
    let b = get(&agent.front, "rb.test", &format!("/?{a_key}"));
    let b: serde_json::Value = serde_json::from_str(&b.body).unwrap();
    assert_eq!(
        b["replies"],
        serde_json::json!(["+OK", "+OK", "rb", "-NOPERM", "-NOPERM"])
    );
    // A redeploy keeps the password (and so A's logins) as it was.
    let before = env_a["CONFIG_REDIS_PASSWORD"].clone();
    std::fs::write(tmp.path().join("ra/changed"), "1").unwrap();
    let out = agent.deploy(&cache, &tmp.path().join("ra"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let env_a: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(agent.root.join("apps/ra/run/environment.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(env_a["CONFIG_REDIS_PASSWORD"], before);
}

/// `silver run APP -- sh -c SCRIPT` on the node, as the app, in its environment: stdout.
fn sh_as_app(agent: &Agent, app: &str, script: &str) -> String {
    let out = agent
        .silver()
        .args(["run", app, "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", stderr(&out));
    stdout(&out)
}

/// The app's rows and files, as the app sees them.
fn contents(agent: &Agent, app: &str) -> String {
    sh_as_app(
        agent,
        app,
        "psql -X -q -A -t \"$DATABASE_URL\" -c 'SELECT id, t FROM notes ORDER BY id'; \
         cat \"$CONFIG_FILES/a.txt\" \"$CONFIG_WRITABLE_ROOT/pub.txt\" 2>/dev/null; true",
    )
}

/// A data app whose `update_fetch` makes its table; `fail` makes a migration that changes
/// the schema, deletes rows and a file, then fails halfway.
fn notes_app(dir: &Path, name: &str, fail: bool) {
    let ini = "service.postgresql =\nservice.files =\nservice.writable_root =\nupdate_fetch = script: sh migrate.sh\n";
    wsgi_app(dir, name, ini, ECHO_APP);
    let mut script = String::from(
        "set -e\npsql -X -q -v ON_ERROR_STOP=1 \"$DATABASE_URL\" -c 'CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, t text NOT NULL)'\necho migrated\n",
    );
    if fail {
        script += "psql -X -q \"$DATABASE_URL\" -c 'ALTER TABLE notes ADD COLUMN x int; DELETE FROM notes'\nrm -f \"$CONFIG_FILES/a.txt\"\necho 'half way, then a bug' >&2\nexit 3\n";
    }
    std::fs::write(dir.join("migrate.sh"), script).unwrap();
}

#[test]
#[ignore = "system tier (PostgreSQL): cargo test -- --include-ignored"]
fn backup_restore_clear_and_a_checkpoint_that_undoes_a_failed_migration() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cluster = Cluster::start(tmp.path());
    let agent = Agent::start(
        &tmp.path().join("node"),
        &["--postgres-url", &cluster.admin_url()],
    );
    let cache = tmp.path().join("cache");
    let app = tmp.path().join("notes");
    notes_app(&app, "notes", false);
    agent.deployed(&cache, &app, &["notes.test"]);
    sh_as_app(
        &agent,
        "notes",
        "psql -X -q \"$DATABASE_URL\" -c \"INSERT INTO notes (t) VALUES ('zebra'), ('apple'), (E'tab\\there')\" && \
         echo private > \"$CONFIG_FILES/a.txt\" && echo public > \"$CONFIG_WRITABLE_ROOT/pub.txt\"",
    );
    let before = contents(&agent, "notes");
    assert_eq!(before, "1|zebra\n2|apple\n3|tab\there\nprivate\npublic\n");

    // Two backups of the same data are the same bytes; one by location, one to a .tar.zst.
    let (one, two) = (tmp.path().join("b1"), tmp.path().join("b2"));
    agent
        .silver()
        .args(["backup", "notes"])
        .arg(&one)
        .assert()
        .success();
    agent
        .silver()
        .args(["backup", "notes.test"])
        .arg(&two)
        .assert()
        .success();
    let sql = std::fs::read_to_string(one.join("postgresql.sql")).unwrap();
    assert_eq!(
        sql,
        std::fs::read_to_string(two.join("postgresql.sql")).unwrap()
    );
    for file in ["files.tar", "writable_root.tar"] {
        assert_eq!(
            std::fs::read(one.join(file)).unwrap(),
            std::fs::read(two.join(file)).unwrap()
        );
    }
    assert!(
        sql.contains(
            "COPY public.notes (id, t) FROM stdin;\n1\tzebra\n2\tapple\n3\ttab\\there\n\\.\n"
        ),
        "{sql}"
    );
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(one.join("backup.json")).unwrap()).unwrap();
    assert_eq!(info["app"], "notes");
    assert!(info["release"].as_str().unwrap().starts_with("b3:"));
    let zst = tmp.path().join("notes.tar.zst");
    agent
        .silver()
        .args(["backup", "notes"])
        .arg(&zst)
        .assert()
        .success();
    // A backup never overwrites one.
    let again = agent
        .silver()
        .args(["backup", "notes"])
        .arg(&zst)
        .output()
        .unwrap();
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );

    // `clear` asks first; without a terminal or --yes it clears nothing.
    let refused = agent.silver().args(["clear", "notes"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert_eq!(contents(&agent, "notes"), before);
    let cleared = clear(&agent, "notes");
    assert!(
        cleared.contains("migrated"),
        "update_fetch ran again: {}",
        cleared
    );
    assert_eq!(contents(&agent, "notes"), "");

    // Restore puts every row and file back, and the sequence goes on from where it was.
    restore(&agent, &one, "notes");
    assert_eq!(contents(&agent, "notes"), before);
    let next = sh_as_app(&agent, "notes", "psql -X -q -A -t \"$DATABASE_URL\" -c \"INSERT INTO notes (t) VALUES ('next') RETURNING id\"");
    assert_eq!(next.trim(), "4");

    // Onto another app, from the .tar.zst.
    let other = tmp.path().join("other");
    notes_app(&other, "other", false);
    agent.deployed(&cache, &other, &["other.test"]);
    restore(&agent, &zst, "other");
    assert_eq!(contents(&agent, "other"), before);

    // A migration that fails halfway: the checkpoint taken before it is restored.
    let now = contents(&agent, "notes");
    notes_app(&app, "notes", true);
    let failed = agent.deploy(&cache, &app, &[]);
    assert!(!failed.status.success());
    let err = stderr(&failed);
    assert!(err.contains("half way, then a bug"), "{err}");
    assert!(err.contains("restored from the checkpoint"), "{err}");
    assert_eq!(contents(&agent, "notes"), now);
    let columns = sh_as_app(&agent, "notes", "psql -X -q -A -t \"$DATABASE_URL\" -c \"SELECT count(*) FROM information_schema.columns WHERE table_name = 'notes'\"");
    assert_eq!(columns.trim(), "2", "the half-made column is gone");
    let listed = agent
        .silver()
        .args(["checkpoints", "notes", "--json"])
        .output()
        .unwrap();
    let view: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(view["restoring"], serde_json::Value::Null, "{view}");
    let list = view["checkpoints"].as_array().unwrap().clone();
    assert!(list.len() >= 2, "{list:?}");
    assert!(
        list[0]["created"].as_str().unwrap().ends_with('Z'),
        "{list:?}"
    );
    assert!(
        list.iter()
            .all(|c| c["services"] == serde_json::json!(["files", "writable_root", "postgresql"])),
        "{list:?}"
    );
    // A checkpoint goes with its release: gc removes the failed one's.
    let gc = agent.silver().args(["gc", "--keep", "0"]).output().unwrap();
    assert!(gc.status.success(), "{}", stderr(&gc));
    let listed = agent
        .silver()
        .args(["checkpoints", "notes", "--json"])
        .output()
        .unwrap();
    let after: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let after = after["checkpoints"].as_array().unwrap();
    assert_eq!(after.len(), list.len() - 1, "{after:?}");

    // Onto another node, on the same PostgreSQL (its own role and database).
    let other_node = Agent::start(
        &tmp.path().join("node2"),
        &["--postgres-url", &cluster.admin_url()],
    );
    notes_app(&other, "notes", false);
    other_node.deployed(&tmp.path().join("cache2"), &other, &["notes2.test"]);
    restore(&other_node, &one, "notes");
    assert_eq!(contents(&other_node, "notes"), before);
}

/// Rows of the app's `notes` table and its file, as the app sees them.
fn mysql_contents(agent: &Agent, app: &str) -> String {
    sh_as_app(
        agent,
        app,
        "MYSQL_PWD=\"$CONFIG_MYSQL_PASSWORD\" mariadb -h \"$CONFIG_MYSQL_HOST\" -P \"$CONFIG_MYSQL_PORT\" -u \"$CONFIG_MYSQL_USER\" --batch --skip-column-names \"$CONFIG_MYSQL_DBNAME\" -e 'SELECT id, t FROM notes ORDER BY id' 2>/dev/null; cat \"$CONFIG_FILES/a.txt\" 2>/dev/null; true",
    )
}

#[test]
#[ignore = "system tier (MariaDB): cargo test -- --include-ignored"]
fn a_mysql_app_survives_backup_clear_and_restore() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = MariaDb::start(tmp.path());
    let agent = Agent::start_with_env(
        &tmp.path().join("node"),
        &[],
        &[("SILVER_MYSQL_URL", &db.admin_url())],
    );
    let app = tmp.path().join("app");
    let ini = "default_location = my.test\nservice.mysql =\nservice.files =\nupdate_fetch = script: sh migrate.sh\n";
    wsgi_app(&app, "my-app", ini, ECHO_APP);
    std::fs::write(
        app.join("migrate.sh"),
        "MYSQL_PWD=\"$CONFIG_MYSQL_PASSWORD\" mariadb -h \"$CONFIG_MYSQL_HOST\" -P \"$CONFIG_MYSQL_PORT\" -u \"$CONFIG_MYSQL_USER\" \"$CONFIG_MYSQL_DBNAME\" -e 'CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY AUTO_INCREMENT, t text NOT NULL)'\necho tables made\n",
    )
    .unwrap();
    agent.deployed(&tmp.path().join("cache"), &app, &[]);
    let env: serde_json::Value =
        serde_json::from_str(&get(&agent.front, "my.test", "/env").body).unwrap();
    let name = format!("s{}_my_app", node_id(&agent));
    assert_eq!(env["CONFIG_MYSQL_DBNAME"], name.as_str());
    assert_eq!(env["CONFIG_MYSQL_USER"], name.as_str());
    assert_eq!(env["CONFIG_MYSQL_PORT"], db.port.to_string().as_str());
    let url = env["CONFIG_MYSQL_SQLALCHEMY"].as_str().unwrap();
    assert!(url.starts_with(&format!("mysql://{name}:")), "{url}");
    sh_as_app(
        &agent,
        "my-app",
        "MYSQL_PWD=\"$CONFIG_MYSQL_PASSWORD\" mariadb -h \"$CONFIG_MYSQL_HOST\" -P \"$CONFIG_MYSQL_PORT\" -u \"$CONFIG_MYSQL_USER\" \"$CONFIG_MYSQL_DBNAME\" -e \"INSERT INTO notes (t) VALUES ('zebra'), ('apple')\" && echo kept > \"$CONFIG_FILES/a.txt\"",
    );
    let before = mysql_contents(&agent, "my-app");
    assert_eq!(before, "1\tzebra\n2\tapple\nkept\n");

    let (one, two) = (tmp.path().join("b1"), tmp.path().join("b2.tar.gz"));
    agent
        .silver()
        .args(["backup", "my-app"])
        .arg(&one)
        .assert()
        .success();
    agent
        .silver()
        .args(["backup", "my.test"])
        .arg(&two)
        .assert()
        .success();
    let sql = std::fs::read_to_string(one.join("mysql.sql")).unwrap();
    assert!(
        sql.contains(
            "INSERT INTO `notes` VALUES (1,'zebra');\nINSERT INTO `notes` VALUES (2,'apple');"
        ),
        "{sql}"
    );
    assert!(!sql.contains("Dump completed on"), "no dates: {sql}");
    // Deterministic: a second backup of the same data has the same SQL.
    let again = tmp.path().join("b3");
    agent
        .silver()
        .args(["backup", "my-app"])
        .arg(&again)
        .assert()
        .success();
    assert_eq!(
        sql,
        std::fs::read_to_string(again.join("mysql.sql")).unwrap()
    );

    let cleared = clear(&agent, "my.test");
    assert!(cleared.contains("tables made"), "{}", cleared);
    assert_eq!(mysql_contents(&agent, "my-app"), "");
    restore(&agent, &two, "my-app");
    assert_eq!(mysql_contents(&agent, "my-app"), before);
    // The password stays out of the history and the logs.
    let password = env["CONFIG_MYSQL_PASSWORD"].as_str().unwrap();
    for file in [
        "apps/my-app/history.jsonl",
        "apps/my-app/logs/web.log",
        "apps/my-app/logs/update.log",
    ] {
        let text = std::fs::read_to_string(agent.root.join(file)).unwrap_or_default();
        assert!(!text.contains(password), "{file} holds the password");
    }
}

/// The app's documents (id and `n`), as the app reads them.
fn couch_docs(agent: &Agent) -> String {
    sh_as_app(
        agent,
        "couch-app",
        "curl -sf \"http://$CONFIG_COUCHDB_HOST/$CONFIG_COUCHDB_DB/_all_docs?include_docs=true\" | python3 -c 'import json, sys; print(\" \".join(\"%s=%s\" % (r[\"id\"], r[\"doc\"].get(\"n\")) for r in json.load(sys.stdin)[\"rows\"]))'",
    )
}

#[test]
#[ignore = "system tier (pouchdb-server): cargo test -- --include-ignored"]
fn a_couchdb_app_gets_its_database_and_its_documents_survive_backup_clear_and_restore() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let couch = PouchServer::start(tmp.path());
    let url = format!("http://127.0.0.1:{}", couch.port);
    let agent = Agent::start_with_env(
        &tmp.path().join("node"),
        &[],
        &[("SILVER_COUCHDB_URL", &url)],
    );
    let app = tmp.path().join("app");
    wsgi_app(
        &app,
        "couch-app",
        "default_location = couch.test\nservice.couchdb =\n",
        ECHO_APP,
    );
    agent.deployed(&tmp.path().join("cache"), &app, &[]);
    let env: serde_json::Value =
        serde_json::from_str(&get(&agent.front, "couch.test", "/env").body).unwrap();
    let db = format!("s{}_couch_app", node_id(&agent));
    assert_eq!(env["CONFIG_COUCHDB_DB"], db.as_str());
    assert_eq!(
        env["CONFIG_COUCHDB_HOST"],
        format!("127.0.0.1:{}", couch.port).as_str()
    );
    sh_as_app(
        &agent,
        "couch-app",
        "for d in zeta alpha; do curl -sf -X PUT -H 'Content-Type: application/json' -d \"{\\\"n\\\": \\\"$d\\\"}\" \"http://$CONFIG_COUCHDB_HOST/$CONFIG_COUCHDB_DB/$d\" >/dev/null; done",
    );
    assert_eq!(couch_docs(&agent).trim(), "alpha=alpha zeta=zeta");
    let backup = tmp.path().join("b");
    agent
        .silver()
        .args(["backup", "couch-app"])
        .arg(&backup)
        .assert()
        .success();
    let dump = std::fs::read_to_string(backup.join("couchdb.jsonl")).unwrap();
    let ids: Vec<String> = dump
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["alpha", "zeta"], "one document per line, by id");
    clear(&agent, "couch-app");
    assert_eq!(couch_docs(&agent).trim(), "");
    restore(&agent, &backup, "couch.test");
    assert_eq!(couch_docs(&agent).trim(), "alpha=alpha zeta=zeta");
    let again = tmp.path().join("b2");
    agent
        .silver()
        .args(["backup", "couch-app"])
        .arg(&again)
        .assert()
        .success();
    assert_eq!(
        dump,
        std::fs::read_to_string(again.join("couchdb.jsonl")).unwrap(),
        "revisions kept"
    );
}

#[test]
#[ignore = "system tier (PostgreSQL with PostGIS): cargo test -- --include-ignored"]
fn postgis_apps_get_the_extension_and_their_geometry_survives_a_restore() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cluster = Cluster::start(tmp.path());
    let agent = Agent::start(
        &tmp.path().join("node"),
        &["--postgres-url", &cluster.admin_url()],
    );
    let app = tmp.path().join("app");
    wsgi_app(
        &app,
        "geo",
        "default_location = geo.test\nservice.postgis =\n",
        ECHO_APP,
    );
    agent.deployed(&tmp.path().join("cache"), &app, &[]);
    let psql = |sql: &str| {
        sh_as_app(
            &agent,
            "geo",
            &format!("psql -X -q -A -t -v ON_ERROR_STOP=1 \"$DATABASE_URL\" -c \"{sql}\""),
        )
    };
    assert!(
        psql("SELECT postgis_lib_version()").trim().starts_with('3'),
        "the extension is there"
    );
    psql("CREATE TABLE places (name text PRIMARY KEY, at geometry(Point, 4326)); INSERT INTO places VALUES ('home', ST_SetSRID(ST_MakePoint(2.35, 48.85), 4326))");
    let backup = tmp.path().join("b");
    agent
        .silver()
        .args(["backup", "geo"])
        .arg(&backup)
        .assert()
        .success();
    let sql = std::fs::read_to_string(backup.join("postgresql.sql")).unwrap();
    assert!(
        !sql.contains("CREATE EXTENSION"),
        "the node makes extensions itself"
    );
    clear(&agent, "geo");
    assert_eq!(
        psql("SELECT count(*) FROM pg_tables WHERE tablename = 'places'").trim(),
        "0"
    );
    restore(&agent, &backup, "geo");
    assert_eq!(
        psql("SELECT name, ST_AsText(at) FROM places").trim(),
        "home|POINT(2.35 48.85)"
    );
}

/// Silver Lining's own functional test (`tests/functional/runtest.py`), replayed: its example
/// app names every service Silver Lining offered, and `silver update` shows its environment.
#[test]
#[ignore = "system tier (PostgreSQL, PostGIS, MariaDB, pouchdb-server): cargo test -- --include-ignored"]
fn silver_linings_functional_test_app_gets_every_service() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cluster = Cluster::start(tmp.path());
    let db = MariaDb::start(tmp.path());
    let couch = PouchServer::start(tmp.path());
    let agent = Agent::start_with_env(
        &tmp.path().join("node"),
        &["--postgres-url", &cluster.admin_url()],
        &[
            ("SILVER_MYSQL_URL", &db.admin_url()),
            (
                "SILVER_COUCHDB_URL",
                &format!("http://127.0.0.1:{}", couch.port),
            ),
        ],
    );
    let app = tmp.path().join("example-app");
    copy_fixture("silverlining-functest", &app);
    let out = agent
        .silver()
        .args(["update"])
        .arg(&app)
        .arg("functest.example.com")
        .output()
        .unwrap();
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    let name = format!("s{}_functest", node_id(&agent));
    for line in [
        format!("env CONFIG_COUCHDB_DB={name}"),
        format!("env CONFIG_COUCHDB_HOST=127.0.0.1:{}", couch.port),
        "env CONFIG_FILES=".to_string(),
        format!("env CONFIG_MYSQL_DBNAME={name}"),
        format!("env CONFIG_MYSQL_USER={name}"),
        "env CONFIG_MYSQL_PASSWORD=".to_string(),
        "env CONFIG_MYSQL_HOST=127.0.0.1".to_string(),
        format!("env CONFIG_MYSQL_PORT={}", db.port),
        format!("env CONFIG_MYSQL_SQLALCHEMY=mysql://{name}:"),
        format!("env CONFIG_PG_DBNAME={name}"),
        "env CONFIG_PG_HOST=127.0.0.1".to_string(),
        "env CONFIG_PG_PASSWORD=".to_string(),
        format!("env CONFIG_PG_PORT={}", cluster.port),
        format!("env CONFIG_PG_SQLALCHEMY=postgresql://{name}:"),
        format!("env CONFIG_PG_USER={name}"),
        "env CONFIG_WRITABLE_ROOT=".to_string(),
        "env SILVER_CANONICAL_HOSTNAME=functest.example.com".to_string(),
        "env SILVER_INSTANCE_NAME=functest.".to_string(),
        "env SILVER_VERSION=silverlining/".to_string(),
        "env SILVER_APP_NAME=functest".to_string(),
        "env SILVER_LOGS=".to_string(),
        "silverlining.update=True".to_string(),
        "path='' '/update'".to_string(),
    ] {
        assert!(
            said.contains(&format!("update_fetch /update | {line}")),
            "missing {line:?} in:\n{said}"
        );
    }
    let home = get(&agent.front, "functest.example.com", "/");
    assert!(home.body.starts_with("INSTANCE=functest."), "{home:?}");

    // The writable root is served publicly: per host first, then for every host.
    sh_as_app(
        &agent,
        "functest",
        "echo everyone > \"$CONFIG_WRITABLE_ROOT/shared.txt\" && mkdir -p \"$CONFIG_WRITABLE_ROOT/functest.example.com\" && echo this-host > \"$CONFIG_WRITABLE_ROOT/functest.example.com/shared.txt\" && echo only-root > \"$CONFIG_WRITABLE_ROOT/root.txt\"",
    );
    assert_eq!(
        get(&agent.front, "functest.example.com", "/shared.txt").body,
        "this-host\n"
    );
    assert_eq!(
        get(&agent.front, "functest.example.com", "/root.txt").body,
        "only-root\n"
    );

    // At a path: the app sees SCRIPT_NAME '/test'.
    let out = agent
        .silver()
        .args(["update"])
        .arg(&app)
        .arg("functest.example.com/test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let at_path = get(&agent.front, "functest.example.com", "/test/update");
    assert!(
        at_path.body.contains("path='/test' '/update'"),
        "{at_path:?}"
    );
    assert!(
        at_path.body.contains("silverlining.update=None"),
        "a public request is not an update: {at_path:?}"
    );
}

#[test]
#[ignore = "system tier (Redis): cargo test -- --include-ignored"]
fn an_apps_redis_keys_survive_backup_clear_and_restore_and_no_other_key_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let agent = Agent::start(&tmp.path().join("node"), &["--redis-url", &url]);
    let app = tmp.path().join("cache-app");
    wsgi_app(
        &app,
        "cache-app",
        "default_location = rc.test\nservice.redis =\n",
        ECHO_APP,
    );
    agent.deployed(&tmp.path().join("cache"), &app, &[]);
    let env: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(agent.root.join("apps/cache-app/run/environment.json")).unwrap(),
    )
    .unwrap();
    let prefix = env["CONFIG_REDIS_PREFIX"].as_str().unwrap().to_string();
    // The server's default user was open to every local process: the agent gave it a password.
    assert!(
        !redis_answers(redis.port),
        "the default user still needs no password"
    );
    let secret = std::fs::read_to_string(agent.root.join("redis-default.secret")).unwrap();
    let cli = |script: &str| {
        let out = Command::new("sh")
            .env("REDISCLI_AUTH", secret.trim())
            .arg("-c")
            .arg(
                script
                    .replace("CLI", &format!("redis-cli -p {}", redis.port))
                    .replace("P:", &prefix),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cli("CLI SET P:s hello >/dev/null && CLI HSET P:h b 2 a 1 >/dev/null && CLI RPUSH P:l z y x >/dev/null \
         && CLI SADD P:set q p >/dev/null && CLI ZADD P:z 2 two 1 one >/dev/null \
         && printf 'bin\\377\\000' | CLI -x SET P:bin >/dev/null && CLI SET P:ttl soon EX 1000 >/dev/null \
         && CLI SET other:key untouched >/dev/null");
    let snapshot = || {
        cli("CLI GET P:s; CLI HGET P:h a; CLI HGET P:h b; CLI LRANGE P:l 0 -1; CLI SMEMBERS P:set | sort; \
             CLI ZRANGE P:z 0 -1 WITHSCORES; CLI GET P:bin | od -c | head -1; test $(CLI TTL P:ttl) -gt 900 && echo expires; CLI GET other:key")
    };
    let before = snapshot();
    assert!(
        before.contains("hello") && before.contains("untouched"),
        "{before}"
    );
    let backup = tmp.path().join("b");
    agent
        .silver()
        .args(["backup", "cache-app"])
        .arg(&backup)
        .assert()
        .success();
    let dump = std::fs::read_to_string(backup.join("redis.jsonl")).unwrap();
    let keys: Vec<String> = dump
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["key"].to_string())
        .collect();
    assert_eq!(
        keys,
        ["\"bin\"", "\"h\"", "\"l\"", "\"s\"", "\"set\"", "\"ttl\"", "\"z\""]
            .map(String::from)
            .to_vec(),
        "{dump}"
    );
    assert!(!dump.contains("other"), "only the app's own keys: {dump}");
    clear(&agent, "cache-app");
    assert_eq!(cli("CLI --scan --pattern 'P:*' | wc -l").trim(), "0");
    assert_eq!(cli("CLI GET other:key").trim(), "untouched");
    restore(&agent, &backup, "cache-app");
    assert_eq!(snapshot(), before);
}

/// `silver clear TARGET --yes`, which must succeed; what it printed (`update_fetch` output).
fn clear(agent: &Agent, target: &str) -> String {
    let out = agent
        .silver()
        .args(["clear", target, "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
}

/// `silver restore BACKUP TARGET`, which must succeed.
fn restore(agent: &Agent, backup: &Path, target: &str) {
    let out = agent
        .silver()
        .arg("restore")
        .arg(backup)
        .arg(target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
