//! Helpers shared by the end-to-end tests: the real binary, fixture copies, output redaction.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

pub mod pebble;
pub mod registry;
pub mod servers;

/// Polls `check` every tenth of a second until it gives `Ok`, for at most `within`; then fails
/// the test naming `what` and the last thing `check` said. The one way tests wait for
/// something nothing tells them about (a server that comes up, a line in a log).
pub fn eventually<T>(
    within: std::time::Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if std::time::Instant::now() >= deadline => {
                panic!("{what}: not within {} s; last: {last}", within.as_secs())
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

/// The real `silver` binary, with colors off and no inherited reproducibility knobs.
pub fn silver() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("silver").unwrap();
    cmd.env("NO_COLOR", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("SILVER_LOG");
    cmd
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Copies a fixture app into `dest` (which must not exist).
pub fn copy_fixture(name: &str, dest: &Path) {
    copy_dir(&fixtures().join(name), dest);
}

pub fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let to = dest.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Sets every mtime under `dir` (the directory too) to `secs` after the epoch, so two copies of
/// a tree differ in time without the test waiting for the clock.
pub fn set_mtimes(dir: &Path, secs: u64) {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    for entry in walkdir::WalkDir::new(dir).contents_first(true) {
        let entry = entry.unwrap();
        if entry.path_is_symlink() {
            continue;
        }
        let file = std::fs::File::open(entry.path()).unwrap();
        file.set_modified(when).unwrap();
    }
}

/// stderr (or stdout) with temp paths, ids and digests replaced by stable placeholders.
pub fn redact(text: &str, tmp: &Path) -> String {
    let mut out = text.replace(tmp.to_str().unwrap(), "[TMP]");
    let patterns = [
        (r"b3:[0-9a-f]{64}", "[ID]"),
        (r"-[0-9a-f]{12}\.silver", "-[ID12].silver"),
        (r"\b[0-9a-f]{64}\b", "[SHA256]"),
    ];
    for (pattern, replacement) in patterns {
        out = regex_lite::Regex::new(pattern)
            .unwrap()
            .replace_all(&out, replacement)
            .into_owned();
    }
    out
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `silver pack APP -o OUT --json EXTRA…` and returns the report.
pub fn pack_report(app: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let output = silver()
        .arg("pack")
        .arg(app)
        .arg("-o")
        .arg(out)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Packs `app` into `out` with the real binary; returns the id and the archive's path.
pub fn pack_dir(app: &Path, out: &Path) -> (String, PathBuf) {
    let report = pack_report(app, out, &[]);
    (
        report["id"].as_str().unwrap().to_string(),
        PathBuf::from(report["archive"].as_str().unwrap()),
    )
}

/// `silver verify ARCHIVE --id ID`, which must pass.
pub fn verified(archive: &Path, id: &str) {
    silver()
        .arg("verify")
        .arg(archive)
        .arg("--id")
        .arg(id)
        .assert()
        .success()
        .stdout(format!("{id}\n"));
}

/// `silver unpack ARCHIVE DEST`, which must succeed.
pub fn unpacked(archive: &Path, dest: &Path) {
    silver()
        .arg("unpack")
        .arg(archive)
        .arg(dest)
        .assert()
        .success();
}

/// Every path under `dir`, depth first, `dir` itself left out.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect()
}

/// A real `silver agent` process on a loopback port, killed when dropped.
pub struct Agent {
    pub child: std::process::Child,
    pub url: String,
    /// The front door, where the apps answer.
    pub front: String,
    /// The front door's HTTPS listener (`https://127.0.0.1:PORT`), with `--https`.
    pub https: Option<String>,
    pub root: PathBuf,
    pub token: String,
    /// The flags it was started with, after `--root`, `--listen` and `--http`.
    pub args: Vec<String>,
}

impl Agent {
    pub fn start(root: &Path, extra: &[&str]) -> Agent {
        Agent::start_with_env(root, extra, &[])
    }

    /// As `start`, with variables set in the agent's environment.
    pub fn start_with_env(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Agent {
        use std::io::BufRead;
        use std::os::unix::fs::PermissionsExt;
        // Apps run as `nobody` when the tests run as root: it must be able to reach the store.
        if let Some(parent) = root.parent() {
            std::fs::create_dir_all(parent).unwrap();
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let bin = assert_cmd::cargo::cargo_bin("silver");
        let mut child = std::process::Command::new(bin)
            .args(["agent", "--root"])
            .arg(root)
            .args(["--listen", "127.0.0.1:0"])
            .args(match extra.contains(&"--http") {
                true => &[][..],
                false => &["--http", "127.0.0.1:0"][..],
            })
            .args(extra)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(agent_log(root))
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut front = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        stdout.read_line(&mut front).unwrap();
        let https = extra.contains(&"--https").then(|| {
            let mut https = String::new();
            stdout.read_line(&mut https).unwrap();
            https.trim().to_string()
        });
        assert!(
            line.starts_with("http://127.0.0.1:") || line.starts_with("https://127.0.0.1:"),
            "agent said {line:?}"
        );
        let token = std::fs::read_to_string(root.join("token"))
            .unwrap()
            .trim()
            .to_string();
        Agent {
            child,
            url: line.trim().to_string(),
            front: front.trim().to_string(),
            https,
            args: extra.iter().map(|s| s.to_string()).collect(),
            root: root.to_path_buf(),
            token,
        }
    }

    /// `silver deploy APP EXTRA…` to this node, keeping delta bases under `cache`.
    pub fn deploy(&self, cache: &Path, app: &Path, extra: &[&str]) -> Output {
        self.silver()
            .env("SILVER_CACHE_DIR", cache)
            .arg("deploy")
            .arg(app)
            .args(extra)
            .output()
            .unwrap()
    }

    /// As `deploy`, which must succeed; returns the id.
    pub fn deployed(&self, cache: &Path, app: &Path, extra: &[&str]) -> String {
        let out = self.deploy(cache, app, extra);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    }

    /// `silver` with this node's address and credential in the environment.
    pub fn silver(&self) -> assert_cmd::Command {
        let mut cmd = silver();
        cmd.env("SILVER_NODE", &self.url)
            .env("SILVER_TOKEN", &self.token);
        cmd
    }

    /// As `silver`, for a command the test talks to while it runs.
    /// `silver ARGS... --json` against this node, which must succeed: what it printed, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.silver().args(args).arg("--json").output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    }

    pub fn spawn_silver(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("silver"));
        cmd.env("NO_COLOR", "1")
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("SILVER_LOG")
            .env("SILVER_NODE", &self.url)
            .env("SILVER_TOKEN", &self.token);
        cmd
    }
}

/// A small deterministic generator for tests that kill at random moments: the seed is printed,
/// so a failure can be replayed.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Where an agent's log goes: nowhere, or appended to a file in the directory
/// `SILVER_TEST_AGENT_LOG` names (to read what an agent did in a failing test).
fn agent_log(root: &Path) -> std::process::Stdio {
    let Some(dir) = std::env::var_os("SILVER_TEST_AGENT_LOG") else {
        return std::process::Stdio::null();
    };
    let name = root.display().to_string().replace('/', "_");
    let path = Path::new(&dir).join(format!("{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    eprintln!("agent log: {}", path.display());
    file.into()
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_app_users(&self.root);
    }
}

/// As root, the agent made a system user per app; a test node's users go with it, so runs of
/// the suite do not fill the machine's system uid range.
pub fn remove_app_users(root: &Path) {
    let Ok(id) = std::fs::read_to_string(root.join("node-id")) else {
        return;
    };
    let suffix = format!(" on node {}", id.trim());
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 4 && fields[4].starts_with("silver app ") && fields[4].ends_with(&suffix)
        {
            // Forced: the app's processes may still be on their way out.
            let _ = std::process::Command::new("userdel")
                .args(["--force", fields[0]])
                .output();
        }
    }
}

/// One raw HTTP/1.1 request to `url` + `path`; returns (status, body).
pub fn http(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    http_with(url, method, path, token, body, "")
}

/// As `http`, with extra header lines (each ending in `\r\n`).
pub fn http_with(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    headers: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A response from the front door: status, lowercased header lines, body.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.headers
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
    }
}

/// GET `path` from `front` (http://ip:port) as if for `host`.
pub fn get(front: &str, host: &str, path: &str) -> Got {
    request(front, "GET", host, path, "")
}

/// One HTTP/1.1 request with `Connection: close`; a chunked body is decoded.
pub fn request(front: &str, method: &str, host: &str, path: &str, headers: &str) -> Got {
    use std::io::{Read, Write};
    let addr = front.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = head.to_ascii_lowercase();
    let body = if headers.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Got {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Writes a small WSGI app into `dir`: `app.ini` (the `[production]` lines given, after
/// `app_name` and `runner = app.py`, then any further sections) and `app.py`.
pub fn wsgi_app(dir: &Path, name: &str, ini_extra: &str, app_py: &str) {
    std::fs::create_dir_all(dir.join("static")).unwrap();
    std::fs::write(
        dir.join("app.ini"),
        format!("[production]\napp_name = {name}\nrunner = app.py\n{ini_extra}"),
    )
    .unwrap();
    std::fs::write(dir.join("app.py"), app_py).unwrap();
    std::fs::write(dir.join("static/style.css"), format!("/* {name} */\n")).unwrap();
}

/// A WSGI app that answers with its version (`VERSION` from `[variables]`), the environment it
/// sees (`/env`), its WSGI paths (`/paths`) and forwarded headers (`/headers`).
pub const ECHO_APP: &str = r#"
import json, os

def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.endswith("/env") or path == "/env":
        body = json.dumps(dict(os.environ))
    elif path.endswith("/paths"):
        body = json.dumps({"SCRIPT_NAME": environ.get("SCRIPT_NAME", ""), "PATH_INFO": path})
    elif path.endswith("/headers"):
        body = json.dumps({k: v for k, v in environ.items() if k.startswith("HTTP_")} | {"scheme": environ["wsgi.url_scheme"]})
    elif path == "/echo":
        data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        body = "%d %s" % (len(data), data[-8:].decode())
    elif path == "/fail":
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"failing on purpose\n"]
    else:
        body = "version " + os.environ.get("VERSION", "?")
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
"#;

/// A WebSocket echo server in plain Python (the handshake and unmasked text frames only).
pub const WS_SERVER: &str = r#"import base64, hashlib, os, socket, threading
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def serve(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096)
    head = data.decode()
    if "upgrade: websocket" not in head.lower():
        body = b"plain http"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        conn.close(); return
    key = [l.split(":", 1)[1].strip() for l in head.split("\r\n") if l.lower().startswith("sec-websocket-key")][0]
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    while True:
        hdr = conn.recv(2)
        if len(hdr) < 2: return
        n = hdr[1] & 0x7f
        mask = conn.recv(4)
        payload = b""
        while len(payload) < n: payload += conn.recv(n - len(payload))
        text = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        reply = b"echo: " + text
        conn.sendall(bytes([0x81, len(reply)]) + reply)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"]))); s.listen(16)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Clients that GET one page in a loop until stopped: load for the "no request dropped"
/// checks around deploys.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Load {
    /// `clients` threads GET `path` for `host` from `front`; `good` says which answers count.
    pub fn start(
        front: &str,
        host: &str,
        path: &str,
        clients: usize,
        good: fn(&Got) -> bool,
    ) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (stop, front) = (stop.clone(), front.to_string());
                let (host, path) = (host.to_string(), path.to_string());
                std::thread::spawn(move || {
                    let (mut ok, mut failed) = (0, vec![]);
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let got = get(&front, &host, &path);
                        match good(&got) {
                            true => ok += 1,
                            false => failed.push(format!("{} {}", got.status, got.body)),
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops the clients and asserts that every answer was good; returns how many there were.
    pub fn stop_all_good(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut total = 0;
        for client in self.clients {
            let (ok, failed) = client.join().unwrap();
            assert!(failed.is_empty(), "failed requests: {failed:?}");
            total += ok;
        }
        total
    }
}
