//! The runtime end to end: real agents, real gunicorn, requests through the real front door.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn deploy(agent: &Agent, tmp: &Path, app: &Path, extra: &[&str]) -> std::process::Output {
    agent.deploy(&tmp.join("cache"), app, extra)
}

fn deployed(agent: &Agent, tmp: &Path, app: &Path, extra: &[&str]) -> String {
    agent.deployed(&tmp.join("cache"), app, extra)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn a_wsgi_app_serves_through_the_front_door_with_its_environment_and_static_files() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    let id = deployed(&agent, tmp.path(), &app, &[]);
    let id12 = &id[3..15];

    let page = get(&agent.front, "hello.localhost", "/");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains(&id), "{}", page.body);

    let env = json(&get(&agent.front, "hello.localhost:80", "/env").body);
    assert_eq!(env["SILVER_APP_NAME"], "hello");
    assert_eq!(env["SILVER_RELEASE"], id.as_str());
    assert_eq!(env["SILVER_CANONICAL_HOSTNAME"], "hello.localhost");
    assert_eq!(
        env["STATIC_URL"],
        format!("/.silver/static/{id12}/").as_str()
    );
    assert!(env["SILVER_LOGS"]
        .as_str()
        .unwrap()
        .ends_with("/apps/hello/logs"));
    assert!(env["PORT"].as_str().unwrap().parse::<u16>().is_ok());
    let written =
        std::fs::read_to_string(agent.root.join("apps/hello/run/environment.json")).unwrap();
    assert_eq!(json(&written)["SILVER_RELEASE"], id.as_str());

    let versioned = get(
        &agent.front,
        "hello.localhost",
        &format!("/static/{id12}/css/site.css"),
    );
    assert_eq!(versioned.status, 200);
    assert_eq!(versioned.body, "body { font-family: sans-serif; }\n");
    assert_eq!(
        versioned.header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    // $STATIC_URL itself, on any host the node serves.
    for host in ["hello.localhost", "elsewhere.test"] {
        let at = get(
            &agent.front,
            host,
            &format!("/.silver/static/{id12}/css/site.css"),
        );
        assert_eq!(at.status, 200, "{host}");
        assert_eq!(at.body, "body { font-family: sans-serif; }\n");
    }
    let missing = get(
        &agent.front,
        "hello.localhost",
        "/.silver/static/000000000000/css/site.css",
    );
    assert_eq!(missing.status, 404);
    let plain = get(&agent.front, "hello.localhost", "/static/css/site.css");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("cache-control").as_deref(), Some("no-cache"));
    let traversal = get(&agent.front, "hello.localhost", "/static/../app.ini");
    assert!(!traversal.body.contains("app_name"), "{traversal:?}");

    let unmapped = get(&agent.front, "nobody.example", "/");
    assert_eq!(unmapped.status, 404);
    assert!(unmapped
        .body
        .contains("No app is mapped to <code>nobody.example</code>"));

    // A new release: its assets at its own versioned URL, and the old release's still there.
    std::fs::write(app.join("static/css/site.css"), "body { color: red; }\n").unwrap();
    let id2 = deployed(&agent, tmp.path(), &app, &[]);
    let new = get(
        &agent.front,
        "hello.localhost",
        &format!("/static/{}/css/site.css", &id2[3..15]),
    );
    assert_eq!(new.body, "body { color: red; }\n");
    let old = get(
        &agent.front,
        "hello.localhost",
        &format!("/static/{id12}/css/site.css"),
    );
    assert_eq!(old.status, 200);
    assert_eq!(old.body, "body { font-family: sans-serif; }\n");
}

#[test]
fn request_bodies_stream_through_and_logs_follow() {
    use std::io::{BufRead, Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    wsgi_app(&app, "body", "default_location = body.test\n", ECHO_APP);
    deployed(&agent, tmp.path(), &app, &[]);

    let mut follow = std::process::Command::new(assert_cmd::cargo::cargo_bin("silver"))
        .args(["logs", "body", "--follow", "-n", "0"])
        .env("SILVER_NODE", &agent.url)
        .env("SILVER_TOKEN", &agent.token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // 4 MiB up through the router, in one request.
    let body: Vec<u8> = (0..4usize << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let mut s = std::net::TcpStream::connect(agent.front.trim_start_matches("http://")).unwrap();
    write!(
        s,
        "POST /echo HTTP/1.1\r\nHost: body.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let tail = String::from_utf8_lossy(&body[body.len() - 8..]).into_owned();
    assert!(
        response.ends_with(&format!("{} {tail}", body.len())),
        "{response}"
    );

    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    let seen = lines
        .by_ref()
        .take(50)
        .map(|l| l.unwrap())
        .find(|l| l.contains("POST /echo"));
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        seen.is_some_and(|l| l.contains(" web[")),
        "the followed log never showed the request"
    );
}

/// An app whose pages need the table its migration makes: `/` fails until `update_fetch` ran.
const NEEDS_MIGRATION: &str = r#"
import os

def application(environ, start_response):
    migrated = os.path.exists(os.path.join(os.environ["HOME"], "migrated"))
    if environ.get("PATH_INFO") == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such page\n"]
    if not migrated:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"no such table: posts\n"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"posts: 0"]
"#;

#[test]
fn update_fetch_runs_before_the_health_check_and_the_default_check_takes_a_404() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    // A first deploy whose `/` reads what the migration makes.
    let blog = tmp.path().join("blog");
    let ini = "default_location = blog.test\nupdate_fetch = script: echo migrating posts; touch \"$HOME/migrated\"\n";
    wsgi_app(&blog, "blog", ini, NEEDS_MIGRATION);
    let out = deploy(&agent, tmp.path(), &blog, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get(&agent.front, "blog.test", "/").body, "posts: 0");
    // Its output reaches the deployer, prefixed with its step, and the log, line by line.
    assert!(
        stderr(&out).contains(
            "update_fetch script: echo migrating posts; touch \"$HOME/migrated\" | migrating posts"
        ),
        "{}",
        stderr(&out)
    );
    let log = std::fs::read_to_string(agent.root.join("apps/blog/logs/update.log")).unwrap();
    assert!(
        log.lines().any(|l| l.ends_with(" migrating posts")),
        "{log}"
    );
    // The output reaches the deployer while the script still runs: this one waits for a file
    // the test makes only once it has seen the first line.
    let live = tmp.path().join("live");
    let ini = "default_location = live.test\nupdate_fetch = script: echo first; while [ ! -e \"$HOME/go\" ]; do sleep 0.05; done; echo second\n";
    wsgi_app(&live, "live", ini, ECHO_APP);
    let mut child = agent
        .spawn_silver()
        .env("SILVER_CACHE_DIR", tmp.path().join("cache"))
        .arg("deploy")
        .arg(&live)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let first = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.ends_with("| first"));
    assert!(first.is_some(), "the deploy ended before the first line");
    std::fs::write(agent.root.join("apps/live/data/go"), "").unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(child.wait().unwrap().success(), "{rest:?}");
    assert!(rest.iter().any(|l| l.ends_with("| second")), "{rest:?}");
    // A stock project answers 404 at `/`: the default check only asks for less than 500.
    let stock = tmp.path().join("stock");
    let ini = "default_location = stock.test\nhealth_check = /missing\nhealth_timeout = 10\n";
    wsgi_app(&stock, "stock", ini, NEEDS_MIGRATION);
    let out = deploy(&agent, tmp.path(), &stock, &[]);
    assert!(
        !out.status.success(),
        "an explicit check must answer below 400"
    );
    assert!(
        stderr(&out).contains("GET /missing answered 404"),
        "{}",
        stderr(&out)
    );
    let django = tmp.path().join("django");
    let ini = "default_location = django.test\n";
    let app_py = "def application(environ, start_response):\n    start_response('404 Not Found', [])\n    return [b'Page not found']\n";
    wsgi_app(&django, "django", ini, app_py);
    deployed(&agent, tmp.path(), &django, &[]);
    assert_eq!(get(&agent.front, "django.test", "/").status, 404);
}

#[test]
fn a_failing_health_check_or_update_fetch_means_no_switch() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    let good = "default_location = shop.test\nhealth_check = /\n[variables]\nVERSION = 1\n";
    wsgi_app(&app, "shop", good, ECHO_APP);
    deployed(&agent, tmp.path(), &app, &[]);
    assert_eq!(get(&agent.front, "shop.test", "/").body, "version 1");

    let check = |ini: &str, app_py: &str, expected: &[&str]| {
        let dir = tmp
            .path()
            .join(format!("bad-{}", blake3::hash(ini.as_bytes()).to_hex()));
        wsgi_app(&dir, "shop", ini, app_py);
        let out = deploy(&agent, tmp.path(), &dir, &[]);
        assert!(!out.status.success(), "a broken release was accepted");
        let err = stderr(&out);
        // `once:` must be said exactly once, `not:` never; anything else at least once.
        for needle in expected {
            if let Some(once) = needle.strip_prefix("once:") {
                assert_eq!(err.matches(once).count(), 1, "{once:?} not once in:\n{err}");
            } else if let Some(absent) = needle.strip_prefix("not:") {
                assert!(!err.contains(absent), "{absent:?} in:\n{err}");
            } else {
                assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
            }
        }
        // The old release never stopped serving.
        assert_eq!(get(&agent.front, "shop.test", "/").body, "version 1");
    };
    check(
        "health_check = /fail\nhealth_timeout = 2\n[variables]\nVERSION = 2\n",
        ECHO_APP,
        &[
            "failed at health check",
            "GET /fail answered 500",
            "hint: the previous release keeps serving",
        ],
    );
    check(
        "[variables]\nVERSION = 3\n",
        "import sys\nprint('cannot import the settings', file=sys.stderr)\nraise SystemExit(4)\n",
        &[
            "failed at start",
            "before it answered GET /",
            "cannot import the settings",
        ],
    );
    check(
        "update_fetch = /fail\n[variables]\nVERSION = 4\n",
        ECHO_APP,
        &[
            "failed at update_fetch /fail",
            "answered 500",
            "failing on purpose",
        ],
    );
    check(
        "update_fetch = script: echo migrating; exit 3\n[variables]\nVERSION = 5\n",
        ECHO_APP,
        &[
            "failed at update_fetch script: echo migrating; exit 3",
            "exited with status 3",
            // Its output, once; not the web process's boot lines.
            "once:migrating\n",
            "not:its last output",
        ],
    );
    let releases = agent
        .silver()
        .args(["releases", "shop", "--json"])
        .output()
        .unwrap();
    let list = json(&stdout(&releases));
    let failed = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "failed")
        .count();
    assert_eq!(failed, 4, "{list}");
}

#[test]
fn hosts_wildcards_and_path_prefixes_route_to_their_apps() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    for (name, locations) in [
        ("exact", vec!["www.example.test"]),
        ("wild", vec!["*.example.test"]),
        ("api", vec!["www.example.test/api", "api.example.test"]),
        ("any", vec!["*"]),
    ] {
        let dir = tmp.path().join(name);
        wsgi_app(
            &dir,
            name,
            &format!("[variables]\nVERSION = {name}\n"),
            ECHO_APP,
        );
        let mut args = vec![];
        for l in &locations {
            args.extend(["--location", l]);
        }
        deployed(&agent, tmp.path(), &dir, &args);
    }
    let check = |host: &str, path: &str, expected: &str| {
        let got = get(&agent.front, host, path);
        assert_eq!(got.body, format!("version {expected}"), "{host}{path}");
    };
    check("www.example.test", "/", "exact");
    check("WWW.Example.Test:8080", "/x", "exact");
    check("shop.example.test", "/", "wild");
    check("www.example.test", "/api", "api");
    check("www.example.test", "/api/v1", "api");
    check("www.example.test", "/apix", "exact");
    check("api.example.test", "/", "api");
    check("elsewhere.org", "/", "any");
    let paths = json(&get(&agent.front, "www.example.test", "/api/v1/paths").body);
    assert_eq!(paths["SCRIPT_NAME"], "/api");
    assert_eq!(paths["PATH_INFO"], "/v1/paths");
    let forged = request(
        &agent.front,
        "GET",
        "shop.example.test",
        "/headers",
        "X-Silver-Script-Name: /evil\r\nX-Forwarded-For: 10.9.9.9\r\n",
    );
    let headers = json(&forged.body);
    assert!(
        headers.get("HTTP_X_SILVER_SCRIPT_NAME").is_none(),
        "{headers}"
    );
    // The client's own chain is not trusted: the router says who connected.
    assert_eq!(headers["HTTP_X_FORWARDED_FOR"], "127.0.0.1");
    assert_eq!(headers["HTTP_X_FORWARDED_PROTO"], "http");
    assert_eq!(headers["scheme"], "http");

    // A location another app holds is refused before anything is uploaded, and nothing changes.
    let dir = tmp.path().join("thief");
    wsgi_app(&dir, "thief", "", ECHO_APP);
    let artifacts = || {
        std::fs::read_dir(agent.root.join("artifacts"))
            .unwrap()
            .count()
    };
    let before = artifacts();
    let out = deploy(
        &agent,
        tmp.path(),
        &dir,
        &["--location", "api.example.test"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("location `api.example.test` is already served by app `api`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        artifacts(),
        before,
        "the manifest was sent before the refusal"
    );
    // Its app.ini's default_location is checked too.
    let dir = tmp.path().join("squatter");
    wsgi_app(
        &dir,
        "squatter",
        "default_location = www.example.test\n",
        ECHO_APP,
    );
    let out = deploy(&agent, tmp.path(), &dir, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("location `www.example.test` is already served by app `exact`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(artifacts(), before);
    check("api.example.test", "/", "api");
}

#[test]
fn maintenance_logs_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    wsgi_app(
        &app,
        "blog",
        "default_location = blog.test\n[variables]\nVERSION = 1\nGREETING = it's me\n",
        ECHO_APP,
    );
    deployed(&agent, tmp.path(), &app, &[]);

    let ok = agent.silver().args(["disable", "blog"]).output().unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
    let down = get(&agent.front, "blog.test", "/");
    assert_eq!(down.status, 503);
    assert!(down.body.contains("down for maintenance"), "{}", down.body);
    assert!(down.header("retry-after").is_some());
    let ok = agent.silver().args(["enable", "blog"]).output().unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(get(&agent.front, "blog.test", "/").body, "version 1");

    get(&agent.front, "blog.test", "/logged-request");
    let logs = eventually(Duration::from_secs(10), "the request is logged", || {
        let out = agent
            .silver()
            .args(["logs", "blog", "--process", "web", "-n", "50"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        match text.contains("GET /logged-request") {
            true => Ok(text),
            false => Err(text),
        }
    });
    assert!(logs.contains("GET /logged-request"), "{logs}");
    assert!(logs.contains(" web["), "{logs}");
    let missing = agent
        .silver()
        .args(["logs", "blog", "--process", "nope"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no log for process `nope`"),
        "{}",
        stderr(&missing)
    );

    let run = agent
        .silver()
        .args([
            "run",
            "blog",
            "--",
            "sh",
            "-c",
            "echo \"$SILVER_APP_NAME $GREETING\"; echo oops >&2; exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(7), "{}", stderr(&run));
    assert_eq!(stdout(&run), "blog it's me\n");
    assert!(stderr(&run).contains("oops"));
    let pwd = agent
        .silver()
        .args(["run", "blog", "--", "pwd"])
        .output()
        .unwrap();
    assert!(
        stdout(&pwd).contains("/apps/blog/releases/"),
        "{}",
        stdout(&pwd)
    );
}

#[test]
fn a_crashed_process_comes_back_and_workers_run_beside_web() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("app.ini"),
        "[production]\napp_name = own\ndefault_location = own.test\n\
         [processes]\nweb = python3 server.py\nticker = python3 -u ticker.py\n",
    )
    .unwrap();
    std::fs::write(
        app.join("server.py"),
        r#"import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":
            os._exit(1)
        body = ("pid %d" % os.getpid()).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#,
    )
    .unwrap();
    std::fs::write(
        app.join("ticker.py"),
        "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.2)\n",
    )
    .unwrap();
    deployed(&agent, tmp.path(), &app, &[]);
    let before = get(&agent.front, "own.test", "/").body;
    assert!(before.starts_with("pid "), "{before}");
    let _ = std::panic::catch_unwind(|| get(&agent.front, "own.test", "/crash"));
    let after = eventually(Duration::from_secs(20), "the app serves again", || {
        let got = get(&agent.front, "own.test", "/");
        match got.status == 200 {
            true => Ok(got.body),
            false => Err(format!("{got:?}")),
        }
    });
    assert!(
        after.starts_with("pid ") && after != before,
        "{before} then {after}"
    );
    let logs = agent.silver().args(["logs", "own"]).output().unwrap();
    let text = stdout(&logs);
    assert!(text.contains("ticker["), "{text}");
    assert!(text.contains("[silver] web exited with status 1"), "{text}");
}

#[test]
fn deploys_under_load_drop_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let dirs: Vec<_> = (1..=2)
        .map(|v| {
            let dir = tmp.path().join(format!("v{v}"));
            wsgi_app(
                &dir,
                "load",
                &format!("default_location = load.test\n[variables]\nVERSION = {v}\n"),
                ECHO_APP,
            );
            dir
        })
        .collect();
    deployed(&agent, tmp.path(), &dirs[0], &[]);
    let front = agent.front.clone();
    let load = Load::start(&front, "load.test", "/", 4, |got| {
        got.status == 200 && got.body.starts_with("version ")
    });
    for round in 0..4 {
        let dir = &dirs[(round + 1) % 2];
        deployed(&agent, tmp.path(), dir, &[]);
        let want = format!("version {}", (round + 1) % 2 + 1);
        // Once the deploy has returned, every new request reaches the new release.
        assert_eq!(get(&front, "load.test", "/").body, want);
    }
    let total = load.stop_all_good();
    assert!(total > 20, "only {total} requests");
}

#[test]
fn websockets_pass_through_the_router() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("ws");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("app.ini"),
        "[production]\napp_name = ws\ndefault_location = ws.test\n[processes]\nweb = python3 ws.py\n",
    )
    .unwrap();
    std::fs::write(app.join("ws.py"), WS_SERVER).unwrap();
    deployed(&agent, tmp.path(), &app, &[]);
    assert_eq!(get(&agent.front, "ws.test", "/").body, "plain http");

    let mut s = std::net::TcpStream::connect(agent.front.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let mask = [1u8, 2, 3, 4];
    let text = b"hello";
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
    let mut reply = [0u8; 2 + 11];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[2..], b"echo: hello");
}

#[test]
fn a_restarted_agent_brings_its_apps_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("node");
    let app = tmp.path().join("app");
    wsgi_app(
        &app,
        "back",
        "default_location = back.test\n[variables]\nVERSION = 1\n",
        ECHO_APP,
    );
    let mut agent = Agent::start(&root, &[]);
    let first = deployed(&agent, tmp.path(), &app, &[]);
    std::fs::write(app.join("static/style.css"), "/* v2 */\n").unwrap();
    deployed(&agent, tmp.path(), &app, &[]);
    assert_eq!(get(&agent.front, "back.test", "/").body, "version 1");
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    drop(agent);
    let agent = Agent::start(&root, &[]);
    eventually(Duration::from_secs(30), "the app is back", || {
        let got = get(&agent.front, "back.test", "/");
        match got.body == "version 1" {
            true => Ok(()),
            false => Err(format!("{got:?}")),
        }
    });
    // The release the live one replaced keeps its versioned assets across the restart.
    let old = get(
        &agent.front,
        "back.test",
        &format!("/.silver/static/{}/style.css", &first[3..15]),
    );
    assert_eq!(old.status, 200, "{old:?}");
    assert_eq!(old.body, "/* back */\n");
}

#[test]
fn a_failed_first_deploy_does_not_claim_an_earlier_release_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    let ini = "default_location = first.test\nhealth_check = /fail\nhealth_timeout = 2\n";
    wsgi_app(&app, "first", ini, ECHO_APP);
    let out = deploy(&agent, tmp.path(), &app, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(!err.contains("previous release keeps serving"), "{err}");
    assert!(
        err.contains("hint: no earlier release of `first` serves, so nothing does"),
        "{err}"
    );
}

#[test]
fn silver_run_scripts_and_workers_see_the_apps_own_python() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    // A `.pth` file in lib/python names a directory of its own...
    std::fs::create_dir_all(app.join("lib/python/extra/deep")).unwrap();
    std::fs::write(app.join("lib/python/extra/deep/deepmod.py"), "X = 'deep'\n").unwrap();
    std::fs::write(app.join("lib/python/extra.pth"), "extra/deep\n").unwrap();
    // ...and a virtualenv in the release has a package and a script.
    let version = String::from_utf8(
        std::process::Command::new("python3")
            .args([
                "-c",
                "import sys; print('python%d.%d' % sys.version_info[:2])",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let site = app.join(format!("venv/lib/{}/site-packages", version.trim()));
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("venvmod.py"), "Y = 'venv'\n").unwrap();
    std::fs::write(app.join("venv/pyvenv.cfg"), "home = /usr/bin\n").unwrap();
    std::fs::create_dir_all(app.join("venv/bin")).unwrap();
    std::fs::write(
        app.join("venv/bin/hello-tool"),
        "#!/bin/sh\necho tool ran\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(app.join("venv/bin/hello-tool"), mode).unwrap();
    }
    // A script line uses all of it before the switch.
    let ini = std::fs::read_to_string(app.join("app.ini")).unwrap();
    std::fs::write(
        app.join("app.ini"),
        ini.replace(
            "[production]\n",
            "[production]\nupdate_fetch = script: python3 -c 'import greeting, deepmod, venvmod' && hello-tool\n",
        ),
    )
    .unwrap();
    deployed(&agent, tmp.path(), &app, &[]);
    let out = agent
        .silver()
        .args(["run", "hello", "--", "/bin/sh", "-c"])
        .arg("python3 -c 'import greeting, deepmod, venvmod; print(deepmod.X, venvmod.Y)' && hello-tool && echo \"$VIRTUAL_ENV\"")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("deep venv"), "{said}");
    assert!(said.contains("tool ran"), "{said}");
    assert!(said.trim_end().ends_with("/venv"), "{said}");
}

#[test]
fn a_redeploy_of_the_live_artifact_restarts_nothing_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("same");
    wsgi_app(&app, "same", "default_location = same.test\n", ECHO_APP);
    deployed(&agent, tmp.path(), &app, &[]);
    let port = || json(&get(&agent.front, "same.test", "/env").body)["PORT"].clone();
    let before = port();
    let out = deploy(&agent, tmp.path(), &app, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is already live on") && stderr(&out).contains("nothing restarted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(port(), before, "the web process was restarted");
    let out = deploy(&agent, tmp.path(), &app, &["--restart"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Deployed"), "{}", stderr(&out));
    assert_ne!(port(), before, "--restart started it again");
}

#[test]
fn static_url_works_at_every_location_of_an_app() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("shop");
    wsgi_app(&app, "shop", "", ECHO_APP);
    deployed(
        &agent,
        tmp.path(),
        &app,
        &["--location", "shop.test/store", "--location", "other.test"],
    );
    for (host, prefix) in [("shop.test", "/store"), ("other.test", "")] {
        let env = json(&get(&agent.front, host, &format!("{prefix}/env")).body);
        let url = env["STATIC_URL"].as_str().unwrap().to_string();
        let css = get(&agent.front, host, &format!("{url}style.css"));
        assert_eq!(css.status, 200, "{host}: {url}");
        assert_eq!(css.body, "/* shop */\n");
    }
}

#[test]
fn a_virtualenv_for_another_python_is_named_at_pack_and_refused_at_deploy() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("old");
    wsgi_app(&app, "old", "", ECHO_APP);
    std::fs::create_dir_all(app.join("venv/lib/python2.7/site-packages")).unwrap();
    std::fs::write(
        app.join("venv/pyvenv.cfg"),
        "home = /root/.pyenv/versions/2.7.18/bin\nversion = 2.7.18\n",
    )
    .unwrap();
    let out = deploy(&agent, tmp.path(), &app, &[]);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains(
            "virtualenv `venv` was made by /root/.pyenv/versions/2.7.18/bin/python (Python 2.7.18)"
        ),
        "{said}"
    );
    assert!(
        said.contains("virtualenv `venv` was made for Python 2.7 by /root/.pyenv/versions/2.7.18/bin/python, but this node's python3 is 3."),
        "{said}"
    );
    assert!(
        said.contains("hint: build the virtualenv with the node's python3"),
        "{said}"
    );
}

#[test]
fn a_virtualenv_with_its_own_gunicorn_runs_on_its_own_python() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("own");
    let app_py = "import sys\ndef application(environ, start_response):\n    start_response('200 OK', [])\n    return [('%s %s' % (sys.prefix, sys.modules['gunicorn'].__file__)).encode()]\n";
    wsgi_app(&app, "own", "default_location = own.test\n", app_py);
    // The system's Python, which every app user may run (a pyenv one under /root is not).
    let made = Command::new("/usr/bin/python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(app.join("venv"))
        .status()
        .unwrap();
    assert!(made.success());
    // gunicorn inside the virtualenv, as `pip install gunicorn` would put it (copied from the
    // system's, so the test needs no network).
    let version = String::from_utf8(
        Command::new("/usr/bin/python3")
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let site = app.join(format!("venv/lib/python{}/site-packages", version.trim()));
    for package in ["gunicorn", "pkg_resources"] {
        let system = Path::new("/usr/lib/python3/dist-packages").join(package);
        copy_dir(&system, &site.join(package));
    }
    deployed(&agent, tmp.path(), &app, &[]);
    let page = get(&agent.front, "own.test", "/").body;
    let (prefix, module) = page.split_once(' ').unwrap();
    assert!(prefix.ends_with("/venv"), "{page}");
    assert!(
        module.starts_with(prefix),
        "the virtualenv's gunicorn serves: {page}"
    );
}

/// An app that wedges on `/busy` and `/lock`, and grows by 80 MiB on `/leak`.
const WEDGING_APP: &str = r#"
import ctypes, os, threading, time
_lock = threading.Lock()
_leak = []

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/busy":
        while 1:
            pass
    if path == "/lock":
        _lock.acquire()
        _lock.acquire()
    if path == "/leak":
        _leak.append(bytearray(80 << 20))
    if path == "/segv":
        ctypes.string_at(0)
    if path.startswith("/nice"):
        # Computes for that long (a request gives way by the CPU it uses, not by time run).
        end = time.thread_time() + float(environ["QUERY_STRING"] or 0)
        while time.thread_time() < end:
            pass
        nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(nice).encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"#;

#[test]
fn a_wedged_request_gets_504_and_its_worker_is_replaced_and_a_leak_is_recycled() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &["--workers", "1"]);
    let app = tmp.path().join("wedge");
    let ini = "default_location = wedge.test\nrequest_timeout = 2\nmax_memory = 64\n";
    wsgi_app(&app, "wedge", ini, WEDGING_APP);
    deployed(&agent, tmp.path(), &app, &[]);
    for bad in ["/busy", "/lock"] {
        let got = get(&agent.front, "wedge.test", bad);
        assert_eq!(got.status, 504, "{bad}: {got:?}");
        assert!(got.body.contains("did not answer within 2 s"), "{got:?}");
        // The only worker was replaced: the app serves again.
        assert_eq!(
            get(&agent.front, "wedge.test", "/").body,
            "ok",
            "after {bad}"
        );
    }
    assert_eq!(get(&agent.front, "wedge.test", "/leak").body, "ok");
    assert_eq!(get(&agent.front, "wedge.test", "/").body, "ok");
    // A request that computes gives way to short ones (the lowest priority past 5 ms of CPU),
    // and the next request runs at the normal priority again.
    assert_eq!(get(&agent.front, "wedge.test", "/nice?0.05").body, "19");
    assert_eq!(get(&agent.front, "wedge.test", "/nice").body, "0");
    // A worker that dies without a word (a segfault) is replaced, and its request named.
    assert_eq!(get(&agent.front, "wedge.test", "/segv").status, 502);
    assert_eq!(get(&agent.front, "wedge.test", "/").body, "ok");
    // A client that gives up on a wedged request frees its worker long before the deadline: a
    // busy loop is stopped by an exception, and its worker serves on.
    abandon(&agent.front, "wedge.test", "/busy");
    let replaced = wait_for_log(&agent, "wedge", "GET /busy was abandoned by its client");
    assert!(replaced.contains("ms; stopping it"), "{replaced}");
    assert_eq!(get(&agent.front, "wedge.test", "/").body, "ok");
    for needle in [
        "GET /busy ran past request_timeout (2 s); replacing worker",
        "GET /lock ran past request_timeout (2 s); replacing worker",
        "over max_memory (64 MiB), after GET /leak",
    ] {
        assert!(
            replaced.contains(needle),
            "missing {needle:?} in:\n{replaced}"
        );
    }
}

/// Sends `GET path` and hangs up once it has waited half a second for the answer.
fn abandon(front: &str, host: &str, path: &str) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(front.trim_start_matches("http://")).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0; 1];
    let got = conn.read(&mut buf);
    assert!(got.is_err(), "{path} answered: {got:?}");
}

/// The app's logs once they contain `needle` (within a minute).
fn wait_for_log(agent: &Agent, app: &str, needle: &str) -> String {
    eventually(
        Duration::from_secs(60),
        &format!("{needle:?} in the logs"),
        || {
            let logs = agent
                .silver()
                .args(["logs", app, "-n", "500"])
                .output()
                .unwrap();
            let text = stdout(&logs);
            match text.contains(needle) {
                true => Ok(text),
                false => Err(text),
            }
        },
    )
}

/// `/hold` says it holds (a file `held-<pid>` in the app's home, its `data/`), then waits until
/// the file `release` appears there.
const HOLDING_APP: &str = r#"
import os, time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/hold":
        open(os.path.join(os.environ["HOME"], "held-%d" % os.getpid()), "w").close()
        while not os.path.exists(os.path.join(os.environ["HOME"], "release")):
            time.sleep(0.05)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]
"#;

#[test]
fn the_pool_grows_while_workers_are_held_and_shrinks_back() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &["--workers", "1"]);
    let app = tmp.path().join("pool");
    wsgi_app(&app, "pool", "default_location = pool.test\n", HOLDING_APP);
    deployed(&agent, tmp.path(), &app, &[]);
    let front = agent.front.clone();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let front = front.clone();
            std::thread::spawn(move || get(&front, "pool.test", "/hold").body)
        })
        .collect();
    // Once both are held, each by a worker of its own (the second one only if the pool grew),
    // the app still answers.
    let data = agent.root.join("apps/pool/data");
    let held_now = || {
        std::fs::read_dir(&data)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("held-")
            })
            .count()
    };
    eventually(
        Duration::from_secs(60),
        "the pool holds both requests",
        || match held_now() {
            2.. => Ok(()),
            n => Err(format!("{n} held")),
        },
    );
    assert_eq!(get(&agent.front, "pool.test", "/").body, "done");
    std::fs::write(agent.root.join("apps/pool/data/release"), "").unwrap();
    for h in held {
        assert_eq!(h.join().unwrap(), "done");
    }
    // Idle again, it shrinks back to its base (said in the web log).
    eventually(
        Duration::from_secs(60),
        "the pool grows and shrinks",
        || {
            let logs = agent
                .silver()
                .args(["logs", "pool", "-n", "100"])
                .output()
                .unwrap();
            let text = stdout(&logs);
            let both = text.contains("web pool grows to 2 workers")
                && text.contains("web pool shrinks to 1 workers");
            match both {
                true => Ok(()),
                false => Err(text),
            }
        },
    );
}

/// A Silver Lining app: `silversupport` imports, its environment variables, the internal-request
/// flags, and `TEMP`.
const SILVER_LINING_APP: &str = r#"
import json, os
from silversupport.secret import get_secret, get_key
from silversupport.env import is_production

def application(environ, start_response):
    temp = os.environ["TEMP"]
    if environ["PATH_INFO"] == "/update":
        open(os.path.join(temp, "made-by-" + os.environ["SILVER_INSTANCE_NAME"]), "w").close()
        root = os.environ["CONFIG_WRITABLE_ROOT"]
        os.makedirs(os.path.join(root, "sl.test"), exist_ok=True)
        with open(os.path.join(root, "general.txt"), "w") as f:
            f.write("for every host")
        with open(os.path.join(root, "sl.test", "general.txt"), "w") as f:
            f.write("for sl.test")
        if not os.path.lexists(os.path.join(root, "shadow")):
            os.symlink("/etc/shadow", os.path.join(root, "shadow"))
        lines = ["update %s %s" % (environ.get("silverlining.update"), environ.get("silverlining.internal"))]
        lines += ["env %s=%s" % (k, os.environ[k]) for k in sorted(os.environ) if k.startswith("SILVER_")]
        body = "\n".join(lines)
    else:
        body = json.dumps({
            "version": os.environ["SILVER_VERSION"],
            "instance": os.environ["SILVER_INSTANCE_NAME"],
            "host": os.environ["SILVER_CANONICAL_HOSTNAME"],
            "production": is_production(),
            "secret": get_secret(),
            "key": get_key("cookies"),
            "update": "silverlining.update" in environ or "silverlining.internal" in environ,
            "script_name": environ["SCRIPT_NAME"],
            "temp": sorted(os.listdir(temp)),
        })
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"#;

#[test]
fn silver_lining_apps_get_silversupport_their_variables_and_a_fresh_temp() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("sl");
    let ini = "default_location = sl.test\nupdate_fetch = /update\nservice.writable_root =\nservice.files =\n";
    wsgi_app(&app, "sl", ini, SILVER_LINING_APP);
    let out = deploy(&agent, tmp.path(), &app, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    // The update output is printed, as `silver update` printed it.
    let err = stderr(&out);
    assert!(
        err.contains("update_fetch /update | update True True"),
        "{err}"
    );
    assert!(err.contains("| env SILVER_VERSION=silverlining/"), "{err}");
    // A client cannot pose as the node's own request.
    let page = |agent: &Agent| {
        let mut conn =
            std::net::TcpStream::connect(agent.front.trim_start_matches("http://")).unwrap();
        use std::io::{Read, Write};
        write!(
            conn,
            "GET / HTTP/1.0\r\nHost: sl.test\r\nX-Silver-Internal: update\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        json(text.split("\r\n\r\n").nth(1).unwrap())
    };
    let first = page(&agent);
    assert!(first["version"]
        .as_str()
        .unwrap()
        .starts_with("silverlining/silver-"));
    assert_eq!(first["instance"], format!("sl.{}", &id[3..15]));
    assert_eq!(first["host"], "sl.test");
    assert_eq!(first["production"], true);
    assert_eq!(first["update"], false);
    assert_eq!(first["secret"].as_str().unwrap().len(), 48);
    assert_eq!(first["key"].as_str().unwrap().len(), 64);
    assert_eq!(
        first["temp"],
        serde_json::json!([format!("made-by-sl.{}", &id[3..15])])
    );
    // The writable root is served before the app is asked: per host first, then for all.
    assert_eq!(
        get(&agent.front, "sl.test", "/general.txt").body,
        "for sl.test"
    );
    // A link the app planted is not followed: the app answers instead.
    assert!(!get(&agent.front, "sl.test", "/shadow")
        .body
        .contains("root:"));
    // Silver Lining's `silver update DIR LOCATION`, the location positional.
    let updated = agent
        .silver()
        .args(["update", app.to_str().unwrap(), "sl.test/test"])
        .args(["--location", "sl.test", "--location", "*.sl.test"])
        .env("SILVER_CACHE_DIR", tmp.path().join("cache"))
        .output()
        .unwrap();
    assert!(updated.status.success(), "{}", stderr(&updated));
    assert_eq!(
        get(&agent.front, "www.sl.test", "/general.txt").body,
        "for every host"
    );
    let under_test = json(&get(&agent.front, "sl.test", "/test/").body);
    assert_eq!(under_test["script_name"], "/test");
    // The next update empties TEMP; the secret and its keys stay.
    std::fs::write(app.join("changed.txt"), "2").unwrap();
    let id2 = deployed(&agent, tmp.path(), &app, &[]);
    assert_eq!(
        get(&agent.front, "sl.test", "/general.txt").body,
        "for sl.test"
    );
    let second = page(&agent);
    assert_eq!(
        second["temp"],
        serde_json::json!([format!("made-by-sl.{}", &id2[3..15])])
    );
    assert_eq!(second["secret"], first["secret"]);
    assert_eq!(second["key"], first["key"]);
}

#[test]
fn config_on_the_node_reaches_the_app_stays_out_of_logs_and_follows_rollbacks() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    let ini = "default_location = conf.test\n[variables]\nGREETING = from the artifact\n";
    wsgi_app(&app, "conf", ini, ECHO_APP);
    let first = deployed(&agent, tmp.path(), &app, &[]);
    let env = |name: &str| {
        let env = json(&get(&agent.front, "conf.test", "/env").body);
        env[name].as_str().map(String::from)
    };
    assert_eq!(env("GREETING").as_deref(), Some("from the artifact"));

    // A secret from stdin, never on a command line; the live release restarts with it.
    let out = agent
        .silver()
        .args(["config", "set", "conf", "GREETING=hello", "API_KEY=-"])
        .write_stdin("hunter2-very-secret\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("runs with config v1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env("GREETING").as_deref(), Some("hello"));
    assert_eq!(env("API_KEY").as_deref(), Some("hunter2-very-secret"));
    let list = agent
        .silver()
        .args(["config", "list", "conf"])
        .output()
        .unwrap();
    assert_eq!(stdout(&list), "API_KEY\nGREETING\n");
    let shown = agent
        .silver()
        .args(["config", "list", "conf", "--show"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&shown),
        "API_KEY=hunter2-very-secret\nGREETING=hello\n"
    );
    let stored = agent.root.join("apps/conf/config/1.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Names silver sets itself are refused, naming the variable and not echoing values.
    let bad = agent
        .silver()
        .args(["config", "set", "conf", "PORT=1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("config variable `PORT` is set by silver itself"),
        "{}",
        stderr(&bad)
    );
    let bare = agent
        .silver()
        .args(["config", "set", "conf", "s3cr3t-typo"])
        .output()
        .unwrap();
    assert!(!stderr(&bare).contains("s3cr3t-typo"), "{}", stderr(&bare));

    // A new release keeps the config; unset without a restart waits for the next activation.
    std::fs::write(app.join("static/style.css"), "/* v2 */\n").unwrap();
    deployed(&agent, tmp.path(), &app, &[]);
    assert_eq!(env("GREETING").as_deref(), Some("hello"));
    let out = agent
        .silver()
        .args(["config", "unset", "conf", "GREETING", "--no-restart"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env("GREETING").as_deref(), Some("hello"));
    // A rollback brings back the release and the config it ran with (v1).
    let out = agent.silver().args(["rollback", "conf"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&get(&agent.front, "conf.test", "/env").body)["SILVER_RELEASE"],
        first.as_str()
    );
    assert_eq!(env("GREETING").as_deref(), Some("hello"));
    let releases = agent
        .silver()
        .args(["releases", "conf", "--json"])
        .output()
        .unwrap();
    let releases: Vec<serde_json::Value> = serde_json::from_slice(&releases.stdout).unwrap();
    assert!(releases.iter().all(|r| r["config"] == 1), "{releases:?}");

    // The secret is in the config and the app's environment files, and nowhere else: not in
    // the history, the logs, or any other file of the node.
    for entry in walkdir::WalkDir::new(&agent.root) {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path
            .strip_prefix(&agent.root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let allowed =
            rel.starts_with("apps/conf/config/") || rel.starts_with("apps/conf/run/environment.");
        if entry.file_type().is_file() && !allowed {
            let bytes = std::fs::read(path).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("hunter2-very-secret"),
                "the secret is in {rel}"
            );
        }
    }
}

#[test]
fn config_is_taken_before_the_first_deploy_and_a_rollback_to_none_brings_back_none() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    wsgi_app(&app, "early", "default_location = early.test\n", ECHO_APP);
    let env = |name: &str| {
        let env = json(&get(&agent.front, "early.test", "/env").body);
        env[name].as_str().map(String::from)
    };
    // An app that needs its key to pass its health check gets it before it is ever deployed.
    let out = agent
        .silver()
        .args(["config", "set", "early", "API_KEY=-"])
        .write_stdin("k1\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("it applies at the app's first deploy"),
        "{}",
        stderr(&out)
    );
    deployed(&agent, tmp.path(), &app, &[]);
    assert_eq!(env("API_KEY").as_deref(), Some("k1"));
    // A release that ran with no config: a rollback to it brings back exactly that, none.
    let bare = tmp.path().join("bare");
    wsgi_app(&bare, "bare", "default_location = bare.test\n", ECHO_APP);
    deployed(&agent, tmp.path(), &bare, &[]);
    let out = agent
        .silver()
        .args(["config", "set", "bare", "FLAG=on", "--no-restart"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(bare.join("static/style.css"), "/* v2 */\n").unwrap();
    deployed(&agent, tmp.path(), &bare, &[]);
    let flag = || json(&get(&agent.front, "bare.test", "/env").body)["FLAG"].clone();
    assert_eq!(flag(), "on");
    let out = agent.silver().args(["rollback", "bare"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        flag(),
        serde_json::Value::Null,
        "the rolled-back release ran with no config"
    );
}

#[test]
fn a_rollback_runs_no_update_fetch_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    // A migration that is not idempotent: each run appends a line.
    let ini =
        "default_location = mig.test\nservice.files =\nupdate_fetch = script: sh migrate.sh\n";
    wsgi_app(&app, "mig", ini, ECHO_APP);
    std::fs::write(
        app.join("migrate.sh"),
        "echo \"ran $SILVER_RELEASE\" >> \"$CONFIG_FILES/migrations\"\n",
    )
    .unwrap();
    let runs = || {
        let out = agent
            .silver()
            .args([
                "run",
                "mig",
                "--",
                "sh",
                "-c",
                "wc -l < \"$CONFIG_FILES/migrations\"",
            ])
            .output()
            .unwrap();
        stdout(&out).trim().to_string()
    };
    deployed(&agent, tmp.path(), &app, &[]);
    std::fs::write(app.join("static/style.css"), "/* v2 */\n").unwrap();
    deployed(&agent, tmp.path(), &app, &[]);
    assert_eq!(runs(), "2");
    let out = agent.silver().args(["rollback", "mig"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(runs(), "2", "the rollback ran update_fetch again");
    let out = agent
        .silver()
        .args(["activate", "mig", "prev"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(runs(), "2", "activate prev ran update_fetch again");
    let out = agent
        .silver()
        .args(["rollback", "mig", "--migrate"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(runs(), "3", "--migrate runs it");
}

#[test]
fn silver_run_streams_stdin_to_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    wsgi_app(&app, "stdin", "default_location = stdin.test\n", ECHO_APP);
    deployed(&agent, tmp.path(), &app, &[]);
    let run = |args: &[&str], input: Vec<u8>| {
        let out = agent
            .silver()
            .args(["run", "stdin"])
            .args(args)
            .write_stdin(input)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(run(&["--", "cat"], b"hi\n".to_vec()), "hi\n");
    // 100 MB, streamed both ways: counted on the node, echoed back whole.
    let big: Vec<u8> = (0..100_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(run(&["--", "wc", "-c"], big.clone()).trim(), "100000000");
    let out = agent
        .silver()
        .args(["run", "stdin", "--", "sha256sum"])
        .write_stdin(big.clone())
        .output()
        .unwrap();
    let want = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&big))
    };
    assert!(stdout(&out).starts_with(&want), "{}", stdout(&out));
    // `-n` gives it none, as `ssh -n` does.
    assert_eq!(run(&["-n", "--", "cat"], b"not read\n".to_vec()), "");
}

/// Appends `n` from `POST /write?n=` to a file of the app's; `GET /writes` reads it back.
const WRITES_APP: &str = r#"
import os

def application(environ, start_response):
    path = os.path.join(os.environ["CONFIG_FILES"], "writes")
    if environ["REQUEST_METHOD"] == "POST":
        n = environ.get("QUERY_STRING", "").partition("=")[2]
        with open(path, "a") as f:
            f.write(n + "\n")
        body = "ok " + n
    else:
        body = open(path).read() if os.path.exists(path) else ""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"#;

#[test]
fn writes_wait_while_a_migration_runs_and_none_is_lost_to_its_restore() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    wsgi_app(
        &app,
        "hold",
        "default_location = hold.test\nservice.files =\n",
        WRITES_APP,
    );
    deployed(&agent, tmp.path(), &app, &[]);
    assert_eq!(
        request(&agent.front, "POST", "hold.test", "/write?n=before", "").body,
        "ok before"
    );
    // The next release's migration waits for `go`, then fails: its checkpoint is restored.
    let ini =
        "default_location = hold.test\nservice.files =\nupdate_fetch = script: sh migrate.sh\n";
    wsgi_app(&app, "hold", ini, WRITES_APP);
    std::fs::write(
        app.join("migrate.sh"),
        "touch \"$CONFIG_FILES/migrating\"\nwhile [ ! -e \"$CONFIG_FILES/go\" ]; do sleep 0.05; done\necho 'a bug'; exit 1\n",
    )
    .unwrap();
    let deploy = agent
        .spawn_silver()
        .env("SILVER_CACHE_DIR", tmp.path().join("cache"))
        .arg("deploy")
        .arg(&app)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let files = agent.root.join("apps/hold/files");
    eventually(
        Duration::from_secs(60),
        "the migration starts",
        || match files.join("migrating").exists() {
            true => Ok(()),
            false => Err("no `migrating` file".into()),
        },
    );
    // Writes sent while it runs wait at the front door; reads go on being served.
    let addr = agent.front.trim_start_matches("http://").to_string();
    let mut writes: Vec<std::net::TcpStream> = (0..5)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            let head = format!("POST /write?n=during{i} HTTP/1.1\r\nHost: hold.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    assert_eq!(get(&agent.front, "hold.test", "/writes").body, "before\n");
    std::fs::write(files.join("go"), "").unwrap();
    let out = deploy.wait_with_output().unwrap();
    assert!(!out.status.success(), "the failing migration was deployed");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("restored from the checkpoint"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each held write then went to the release that serves, after the restore: all kept.
    for (i, s) in writes.iter_mut().enumerate() {
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "write {i}: {answer}");
        assert!(
            answer.contains(&format!("ok during{i}")),
            "write {i}: {answer}"
        );
    }
    let kept = get(&agent.front, "hold.test", "/writes").body;
    for i in 0..5 {
        assert!(
            kept.contains(&format!("during{i}\n")),
            "write {i} was lost: {kept}"
        );
    }
}

#[test]
fn a_config_directory_is_uploaded_beside_the_artifact_required_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    let ini =
        "default_location = cfg.test\nconfig.required = true\nconfig.checker = checkconf:check\n";
    wsgi_app(&app, "cfg", ini, ECHO_APP);
    std::fs::write(
        app.join("checkconf.py"),
        "import os\ndef check(d):\n    if not os.path.exists(os.path.join(d, 'secret.txt')):\n        raise SystemExit('secret.txt is missing from ' + d)\n",
    )
    .unwrap();
    // Required: no config, no start.
    let out = deploy(&agent, tmp.path(), &app, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("requires a configuration directory (`config.required`)"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--config DIR"), "{}", stderr(&out));
    // Checked: the app's own checker refuses a directory without its secret.
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(conf.join("keys")).unwrap();
    std::fs::write(conf.join("keys/api.pem"), "KEY\n").unwrap();
    let out = deploy(
        &agent,
        tmp.path(),
        &app,
        &["--config", conf.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("config.checker checkconf:check: it refused the configuration"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("secret.txt is missing"),
        "{}",
        stderr(&out)
    );
    // Given and good: the app finds it at $SILVER_APP_CONFIG, outside its release.
    std::fs::write(conf.join("secret.txt"), "hunter2\n").unwrap();
    deployed(
        &agent,
        tmp.path(),
        &app,
        &["--config", conf.to_str().unwrap()],
    );
    let env = json(&get(&agent.front, "cfg.test", "/env").body);
    let dir = env["SILVER_APP_CONFIG"].as_str().unwrap().to_string();
    assert!(dir.contains("/apps/cfg/app-config/"), "{dir}");
    let read = agent
        .silver()
        .args([
            "run",
            "cfg",
            "--",
            "sh",
            "-c",
            "cat \"$SILVER_APP_CONFIG/secret.txt\" \"$SILVER_APP_CONFIG/keys/api.pem\"",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&read), "hunter2\nKEY\n", "{}", stderr(&read));
    // A later deploy without --config keeps the directory in force.
    std::fs::write(app.join("static/style.css"), "/* v2 */\n").unwrap();
    deployed(&agent, tmp.path(), &app, &[]);
    let env = json(&get(&agent.front, "cfg.test", "/env").body);
    assert_eq!(env["SILVER_APP_CONFIG"], dir.as_str());
}

#[test]
fn query_deactivate_and_activate_by_location_as_silver_lining_did() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    wsgi_app(&app, "site", "[variables]\nVERSION = 1\n", ECHO_APP);
    let first = deployed(&agent, tmp.path(), &app, &["--location", "a.test"]);
    wsgi_app(&app, "site", "[variables]\nVERSION = 2\n", ECHO_APP);
    let second = deployed(
        &agent,
        tmp.path(),
        &app,
        &["--location", "a.test", "--location", "b.test/blog"],
    );
    let query = agent.silver().arg("query").output().unwrap();
    assert_eq!(
        stdout(&query),
        format!(
            "Site: site\n  site.{0}: a.test\n  site.{0}: b.test/blog\n",
            &second[3..15]
        )
    );
    // One location goes; the other keeps serving without a restart.
    let out = agent
        .silver()
        .args(["deactivate", "b.test/blog"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("still answers at a.test"),
        "{}",
        stderr(&out)
    );
    assert_eq!(get(&agent.front, "b.test", "/blog/").status, 404);
    assert_eq!(get(&agent.front, "a.test", "/").body, "version 2");
    let out = agent
        .silver()
        .args(["deactivate", "b.test/blog"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("serves `b.test/blog`") && stderr(&out).contains("a.test"),
        "{}",
        stderr(&out)
    );
    // The last one: it serves nowhere, and says so.
    let out = agent
        .silver()
        .args(["deactivate", "a.test"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("serves nowhere now"),
        "{}",
        stderr(&out)
    );
    assert_eq!(get(&agent.front, "a.test", "/").status, 404);
    let query = agent.silver().arg("query").output().unwrap();
    assert!(
        stdout(&query).contains("deactivated (was a.test)"),
        "{}",
        stdout(&query)
    );
    // `activate LOCATION prev`: the previous release, where the app was.
    let out = agent
        .silver()
        .args(["activate", "a.test", "prev"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get(&agent.front, "a.test", "/").body, "version 1");
    assert_eq!(stdout(&out).trim(), first);
}

#[test]
fn debug_single_process_runs_one_worker_until_the_next_deploy() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("app");
    wsgi_app(&app, "solo", "default_location = solo.test\n", ECHO_APP);
    let id = deployed(&agent, tmp.path(), &app, &["--debug-single-process"]);
    for _ in 0..5 {
        assert_eq!(get(&agent.front, "solo.test", "/").status, 200);
    }
    let booted = |label: &str| {
        let logs = agent
            .silver()
            .args(["logs", "solo", "-p", "web", "-n", "500"])
            .output()
            .unwrap();
        stdout(&logs)
            .lines()
            .filter(|l| l.contains(&format!("web[{label}]")) && l.contains("Booting worker"))
            .count()
    };
    assert_eq!(booted(&id[3..15]), 1);
    // The next deploy runs the usual pool again.
    let again = deploy(&agent, tmp.path(), &app, &["--restart"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(booted(&id[3..15]) > 1);
}

/// gunicorn takes any `OSError` from an app for an error on its socket and hangs up without an
/// answer; through silver's shim an app's own (a file it cannot open) answers 500, as any other
/// exception does.
#[test]
fn an_app_that_raises_os_error_answers_500_not_a_hang_up() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    let app = tmp.path().join("oserr");
    let code = r#"
def application(environ, start_response):
    if environ["PATH_INFO"] == "/fail":
        open("/nonexistent/dir/file")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"#;
    wsgi_app(&app, "oserr", "default_location = oserr.test\n", code);
    agent.deployed(&tmp.path().join("cache"), &app, &[]);
    let got = get(&agent.front, "oserr.test", "/fail");
    assert_eq!(got.status, 500, "{got:?}");
    assert_eq!(get(&agent.front, "oserr.test", "/").body, "ok");
}
