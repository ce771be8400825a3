//! HTTPS at the front door against Debian's Pebble (a test ACME CA) on loopback: issuance over
//! HTTP-01 and TLS-ALPN-01, HTTP/1.1 and HTTP/2, the redirect, renewal under load, a restart
//! that keeps its certificates, a CA that goes away, and the operator's own certificates.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::pebble::{self, Pebble, PebbleConfig};
use common::registry::free_port;
use common::*;
use serde_json::Value;

/// A node serving HTTPS with ACME from a Pebble that is not started yet (its ports are the
/// node's), and the ECHO app deployed at `host`.
struct Setup {
    agent: Agent,
    pebble_dir: PathBuf,
    listen: u16,
}

fn node(tmp: &Path, host: &str, extra: &[&str]) -> Setup {
    let pebble_dir = tmp.join("pebble");
    let listen = free_port();
    let ca = pebble::listener_certs(&pebble_dir);
    let directory = pebble::directory(listen);
    let mut args = vec![
        "--https",
        "127.0.0.1:0",
        "--acme-directory",
        &directory,
        "--acme-ca-root",
        ca.to_str().unwrap(),
        "--acme-retry",
        "1",
    ];
    args.extend_from_slice(extra);
    let agent = Agent::start(&tmp.join("node"), &args);
    let dir = tmp.join("echo");
    wsgi_app(&dir, "echo", "hsts = 600\n", ECHO_APP);
    agent.deployed(&tmp.join("cache"), &dir, &["--location", host]);
    Setup {
        agent,
        pebble_dir,
        listen,
    }
}

impl Setup {
    fn pebble(&self, validity_secs: u64) -> Pebble {
        Pebble::start(
            &self.pebble_dir,
            &PebbleConfig {
                listen: self.listen,
                http_port: port(&self.agent.front),
                tls_port: port(self.agent.https.as_deref().unwrap()),
                validity_secs,
            },
        )
    }
}

fn port(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn certs(agent: &Agent) -> Value {
    let out = agent.silver().args(["certs", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn entry(agent: &Agent, host: &str) -> Value {
    certs(agent)["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until `host` has a certificate from ACME other than `not`; returns its expiry.
fn issued(agent: &Agent, host: &str, not: Option<u64>) -> u64 {
    eventually(Duration::from_secs(90), "a certificate from Pebble", || {
        let e = entry(agent, host);
        match e["not_after_unix"].as_u64() {
            Some(end) if e["source"] == "acme" && Some(end) != not => Ok(end),
            _ => Err(e.to_string()),
        }
    })
}

/// `curl` against the node's HTTPS for `host`, trusting `root`: (http version, status, body,
/// the served certificate's serial).
fn https_get(
    agent: &Agent,
    host: &str,
    path: &str,
    root: &Path,
    extra: &[&str],
) -> Result<(String, String, String), String> {
    get_over(agent.https.as_deref().unwrap(), host, path, root, extra)
}

/// As `https_get`, to an HTTPS listener by its URL (for threads that do not hold the agent).
fn get_over(
    https: &str,
    host: &str,
    path: &str,
    root: &Path,
    extra: &[&str],
) -> Result<(String, String, String), String> {
    let p = port(https);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(root)
        .args(["--resolve", &format!("{host}:{p}:127.0.0.1")])
        .args(["-w", "\n%{http_version} %{http_code}"])
        .args(extra)
        .arg(format!("https://{host}:{p}{path}"))
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap();
    let (version, status) = last.split_once(' ').unwrap();
    Ok((version.into(), status.into(), body.into()))
}

/// The serial of the certificate the node serves for `host` now, as openssl sees it.
fn served_serial(agent: &Agent, host: &str) -> String {
    let addr = agent
        .https
        .as_deref()
        .unwrap()
        .trim_start_matches("https://")
        .to_string();
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &addr, "-servername", host])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut pem = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut pem).unwrap();
    let _ = child.wait();
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(x509.stdin.as_mut().unwrap(), pem.as_bytes()).unwrap();
    let out = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
#[ignore = "system tier (pebble, gunicorn, curl): cargo test -- --include-ignored"]
fn http01_issues_a_certificate_served_over_h1_and_h2_with_a_redirect() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = node(tmp.path(), "app.test", &[]);
    let pebble = setup.pebble(3600);
    let agent = &setup.agent;
    issued(agent, "app.test", None);
    let e = entry(agent, "app.test");
    assert_eq!(e["challenge"], "http-01", "{e}");
    assert_eq!(e["apps"], serde_json::json!(["echo"]));
    let root = pebble.issuing_root();
    let (version, status, body) =
        https_get(agent, "app.test", "/headers", &root, &["--http1.1"]).unwrap();
    assert_eq!((version.as_str(), status.as_str()), ("1.1", "200"));
    let headers: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(headers["HTTP_X_FORWARDED_PROTO"], "https", "{headers}");
    let (version, status, body) =
        https_get(agent, "app.test", "/headers", &root, &["--http2"]).unwrap();
    assert_eq!((version.as_str(), status.as_str()), ("2", "200"), "{body}");
    let headers: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        headers["HTTP_HOST"],
        format!("app.test:{}", port(agent.https.as_deref().unwrap()))
    );
    // HSTS over HTTPS only.
    let (_, _, head) = https_get(agent, "app.test", "/", &root, &["-I"]).unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=600"),
        "{head}"
    );
    // Plain HTTP for a host with a certificate: a permanent redirect that keeps path and query.
    let front = port(&agent.front);
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .args(["--resolve", &format!("app.test:{front}:127.0.0.1")])
        .arg(format!("http://app.test:{front}/a/b?c=d"))
        .output()
        .unwrap();
    let https = port(agent.https.as_deref().unwrap());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("308 https://app.test:{https}/a/b?c=d")
    );
    // Keys and the account are the agent's alone.
    let tls = agent.root.join("tls");
    assert_eq!(mode(&tls), 0o700);
    assert_eq!(mode(&tls.join("acme/app.test.pem")), 0o600);
    for account in std::fs::read_dir(tls.join("accounts")).unwrap() {
        assert_eq!(mode(&account.unwrap().path()), 0o600);
    }
    // A client that asks for no name gets no certificate (and learns no host name).
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "5"])
        .arg(format!("https://127.0.0.1:{https}/"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
#[ignore = "system tier (pebble, gunicorn, curl): cargo test -- --include-ignored"]
fn tls_alpn01_issues_a_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = node(
        tmp.path(),
        "alpn.test",
        &["--acme-challenge", "tls-alpn-01"],
    );
    let pebble = setup.pebble(3600);
    issued(&setup.agent, "alpn.test", None);
    let e = entry(&setup.agent, "alpn.test");
    assert_eq!(e["challenge"], "tls-alpn-01", "{e}");
    let root = pebble.issuing_root();
    let (_, status, body) = https_get(&setup.agent, "alpn.test", "/", &root, &[]).unwrap();
    assert_eq!(status, "200", "{body}");
}

#[test]
#[ignore = "system tier (pebble, gunicorn, curl, openssl): cargo test -- --include-ignored"]
fn renews_under_load_keeps_certificates_over_a_restart_and_outlives_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let mut setup = node(tmp.path(), "renew.test", &[]);
    // 45 s certificates: renewed about 30 s in.
    let mut pebble = setup.pebble(45);
    let first = issued(&setup.agent, "renew.test", None);
    let root = pebble.issuing_root();
    let serial = served_serial(&setup.agent, "renew.test");
    // Requests run, each on a new connection, while the certificate is replaced.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let https = setup.agent.https.clone();
        let root = root.clone();
        std::thread::spawn(move || {
            let https = https.unwrap();
            while !stop.load(Ordering::Relaxed) {
                match get_over(&https, "renew.test", "/", &root, &[]) {
                    Ok((_, s, _)) if s == "200" => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };
    let second = issued(&setup.agent, "renew.test", Some(first));
    eventually(
        Duration::from_secs(10),
        "the new certificate serves",
        || {
            let now = served_serial(&setup.agent, "renew.test");
            (now != serial).then_some(()).ok_or(now)
        },
    );
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during renewal"
    );
    assert!(ok.load(Ordering::Relaxed) > 10);
    // The CA goes away and the agent restarts: the stored certificate serves at once.
    pebble.stop();
    let renewed = served_serial(&setup.agent, "renew.test");
    setup.agent = restart(setup.agent);
    assert_eq!(served_serial(&setup.agent, "renew.test"), renewed);
    // Its renewal fails: the error shows, and the old certificate keeps serving.
    let e = eventually(Duration::from_secs(60), "the failed renewal shows", || {
        let e = entry(&setup.agent, "renew.test");
        e["error"].as_str().map(|_| e.clone()).ok_or(e.to_string())
    });
    assert!(e["error"].as_str().unwrap().contains("ACME CA"), "{e}");
    assert_eq!(e["not_after_unix"].as_u64(), Some(second));
    assert!(e["failures"].as_u64().unwrap() >= 1);
    let (_, status, _) = https_get(&setup.agent, "renew.test", "/", &root, &[]).unwrap();
    assert_eq!(status, "200");
    let out = setup.agent.silver().arg("certs").output().unwrap();
    assert!(
        stdout(&out).contains("error: the ACME CA at https://127.0.0.1:"),
        "{}",
        stdout(&out)
    );
}

/// Stops the agent and starts it again over the same root, with the same flags.
fn restart(mut agent: Agent) -> Agent {
    let args: Vec<String> = agent.args.clone();
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    let root = agent.root.clone();
    drop(agent);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Agent::start(&root, &args)
}

#[test]
#[ignore = "system tier (gunicorn, curl): cargo test -- --include-ignored"]
fn the_operators_wildcard_certificate_serves_and_a_wildcard_without_one_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        &tmp.path().join("node"),
        &["--https", "127.0.0.1:0", "--no-acme"],
    );
    let dir = tmp.path().join("echo");
    wsgi_app(&dir, "echo", "https = only\n", ECHO_APP);
    agent.deployed(
        &tmp.path().join("cache"),
        &dir,
        &["--location", "*.wild.test", "--location", "plain.test"],
    );
    let e = entry(&agent, "*.wild.test");
    assert!(e["error"].as_str().unwrap().contains("DNS-01"), "{e}");
    assert!(
        e["hint"].as_str().unwrap().contains("silver certs add"),
        "{e}"
    );
    // An internal CA's wildcard certificate.
    let (ca, cert, key) = internal_ca(tmp.path(), "*.wild.test");
    let out = agent
        .silver()
        .args(["certs", "add", "*.wild.test"])
        .arg(&cert)
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, status, _) = https_get(&agent, "a.wild.test", "/", &ca, &[]).unwrap();
    assert_eq!(status, "200");
    // `https = only`: plain HTTP is refused, not redirected.
    let front = port(&agent.front);
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--resolve", &format!("b.wild.test:{front}:127.0.0.1")])
        .arg(format!("http://b.wild.test:{front}/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    // Without a certificate for the host, plain HTTP is served as it is.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--resolve", &format!("plain.test:{front}:127.0.0.1")])
        .arg(format!("http://plain.test:{front}/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    // A key that is not the certificate's, and a certificate for another host, are refused.
    let (_, _, other_key) = internal_ca(&tmp.path().join("other"), "*.wild.test");
    let out = agent
        .silver()
        .args(["certs", "add", "*.wild.test"])
        .arg(&cert)
        .arg(&other_key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not fit"), "{}", stderr(&out));
    let out = agent
        .silver()
        .args(["certs", "add", "plain.test"])
        .arg(&cert)
        .arg(&key)
        .output()
        .unwrap();
    assert!(stderr(&out).contains("not plain.test"), "{}", stderr(&out));
    // Removed: the wildcard has none again.
    let out = agent
        .silver()
        .args(["certs", "remove", "*.wild.test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(https_get(&agent, "a.wild.test", "/", &ca, &[]).is_err());
}

/// A CA and a certificate for `name` it signs: (CA cert, cert, key) files.
fn internal_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (ca, cert, key) = pebble::ca_and_leaf("internal CA", &[name]);
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca).unwrap();
    std::fs::write(&paths.1, cert).unwrap();
    std::fs::write(&paths.2, key).unwrap();
    paths
}

#[test]
#[ignore = "system tier (pebble, gunicorn, curl): cargo test -- --include-ignored"]
fn a_fleet_of_three_gets_one_certificate_whichever_node_the_ca_reaches() {
    let tmp = tempfile::tempdir().unwrap();
    let pebble_dir = tmp.path().join("pebble");
    let listen = free_port();
    let ca = pebble::listener_certs(&pebble_dir);
    // Every node's front door on the same port of its own loopback address, as a fleet's
    // nodes each have port 80.
    let http_port = free_port();
    let agents: Vec<Agent> = (2..=4)
        .map(|i| {
            let http = format!("127.0.0.{i}:{http_port}");
            let root = tmp.path().join(format!("node{i}"));
            let args = ["--http", &http, "--https", "127.0.0.1:0", "--no-acme"];
            let agent = Agent::start(&root, &args);
            let dir = tmp.path().join("echo");
            wsgi_app(&dir, "echo", "", ECHO_APP);
            agent.deployed(
                &tmp.path().join(format!("cache{i}")),
                &dir,
                &["--location", "fleet.test"],
            );
            agent
        })
        .collect();
    let pebble = Pebble::start(
        &pebble_dir,
        &PebbleConfig {
            listen,
            http_port,
            tls_port: free_port(),
            validity_secs: 3600,
        },
    );
    // The CA reaches the middle node only.
    pebble.resolve("fleet.test", "127.0.0.3");
    let hosts: Vec<String> = agents
        .iter()
        .map(|a| {
            format!(
                "{{ url = \"{}\", token_file = \"{}\" }}",
                a.url,
                a.root.join("token").display()
            )
        })
        .collect();
    let inventory = tmp.path().join("fleet.toml");
    std::fs::write(
        &inventory,
        format!("[environments.prod]\nhosts = [{}]\n", hosts.join(", ")),
    )
    .unwrap();
    let fleet_certs = || {
        silver()
            .args(["fleet", "certs", "--env", "prod", "--json", "--inventory"])
            .arg(&inventory)
            .args(["--acme-directory", &pebble::directory(listen)])
            .arg("--acme-ca-root")
            .arg(&ca)
            .arg("--acme-account-dir")
            .arg(tmp.path().join("account"))
            .output()
            .unwrap()
    };
    let out = fleet_certs();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let outcomes: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcomes[0]["host"], "fleet.test", "{outcomes}");
    assert_eq!(outcomes[0]["outcome"], "issued", "{outcomes}");
    let root = pebble.issuing_root();
    let mut ends = Vec::new();
    for agent in &agents {
        let e = entry(agent, "fleet.test");
        assert_eq!(e["source"], "fleet", "{e}");
        ends.push(e["not_after_unix"].as_u64().unwrap());
        let (_, status, _) = https_get(agent, "fleet.test", "/", &root, &[]).unwrap();
        assert_eq!(status, "200");
    }
    assert!(
        ends.windows(2).all(|w| w[0] == w[1]),
        "one certificate: {ends:?}"
    );
    // Nothing is due: a second run orders nothing.
    let out = fleet_certs();
    let outcomes: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcomes[0]["outcome"], "current", "{outcomes}");
}

/// A WebSocket client over TLS in plain Python: the handshake, one masked text frame, the
/// echo. Prints the reply.
const WS_TLS_CLIENT: &str = r#"import socket, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=host)
s.sendall(("GET /chat HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" % host).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
assert head.startswith(b"HTTP/1.1 101"), head
mask = bytes([1, 2, 3, 4])
text = b"hello"
s.sendall(bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text)))
reply = b""
while len(reply) < 13:
    reply += s.recv(13 - len(reply))
print(reply[2:].decode())
"#;

#[test]
#[ignore = "system tier (gunicorn, curl, python3): cargo test -- --include-ignored"]
fn websockets_and_large_uploads_work_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        &tmp.path().join("node"),
        &["--https", "127.0.0.1:0", "--no-acme"],
    );
    let (ca, cert, key) = internal_ca(tmp.path(), "*.tls.test");
    let out = agent
        .silver()
        .args(["certs", "add", "*.tls.test"])
        .arg(&cert)
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join("app.ini"),
        "[production]\napp_name = ws\ndefault_location = ws.tls.test\n[processes]\nweb = python3 ws.py\n",
    )
    .unwrap();
    std::fs::write(ws.join("ws.py"), WS_SERVER).unwrap();
    agent.deployed(&tmp.path().join("cache"), &ws, &[]);
    let echo = tmp.path().join("echo");
    wsgi_app(&echo, "echo", "", ECHO_APP);
    agent.deployed(
        &tmp.path().join("cache"),
        &echo,
        &["--location", "up.tls.test"],
    );
    let https = port(agent.https.as_deref().unwrap());
    let out = Command::new("python3")
        .args(["-c", WS_TLS_CLIENT, "ws.tls.test", &https.to_string()])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "echo: hello");
    // 24 MiB, past the router's in-memory buffer, over HTTP/1.1 and HTTP/2.
    let upload = tmp.path().join("upload.bin");
    let mut bytes = vec![b'x'; 24 << 20];
    bytes.extend_from_slice(b"the-end!");
    std::fs::write(&upload, &bytes).unwrap();
    for version in ["--http1.1", "--http2"] {
        let data = format!("@{}", upload.display());
        let (v, status, body) = https_get(
            &agent,
            "up.tls.test",
            "/echo",
            &ca,
            &[
                version,
                "--data-binary",
                &data,
                "-H",
                "Content-Type: application/octet-stream",
            ],
        )
        .unwrap();
        assert_eq!(status, "200", "{version}: {body}");
        assert_eq!(body, format!("{} the-end!", bytes.len()), "{version} ({v})");
    }
}
