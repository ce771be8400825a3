//! The front door against hostile clients: forged forwarding headers, bad `Host` lines,
//! malformed chunked bodies, slow headers and one address holding many connections. A real
//! agent and a real gunicorn app behind it, raw bytes over loopback.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// An agent on a fresh root serving `ECHO_APP` as `echo` at `*` and at `www.test/sub`.
fn echo_node(tmp: &std::path::Path, extra: &[&str]) -> Agent {
    let agent = Agent::start(&tmp.join("node"), extra);
    let dir = tmp.join("echo");
    wsgi_app(&dir, "echo", "", ECHO_APP);
    agent.deployed(
        &tmp.join("cache"),
        &dir,
        &["--location", "*", "--location", "www.test/sub"],
    );
    agent
}

fn front_addr(agent: &Agent) -> SocketAddr {
    agent.front.trim_start_matches("http://").parse().unwrap()
}

/// Sends `bytes` from `from` (a loopback address), reads until the server closes; the status.
fn raw_from(from: &str, to: SocketAddr, bytes: &[u8]) -> (u16, String) {
    let mut stream = connect_from(from, to);
    stream.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A connection from a chosen source address: every 127.0.0.0/8 address is this machine's.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from = SocketAddr::new(from.parse().unwrap(), 0);
    socket.bind(&from.into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
}

fn headers_seen(text: &str) -> serde_json::Value {
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn forged_forwarding_headers_are_replaced_at_every_location() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = echo_node(tmp.path(), &[]);
    let front = front_addr(&agent);
    let forged = "X-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Prefix: /evil\r\n\
                  X-Forwarded-Host: evil.test\r\nX-Forwarded-Proto: https\r\n\
                  X-Forwarded-Port: 443\r\nForwarded: for=10.9.9.9;proto=https\r\n\
                  X-Real-IP: 10.9.9.9\r\nX-Silver-Script-Name: /evil\r\n";
    for (host, path, prefix) in [
        ("any.test", "/headers", None),
        ("www.test", "/sub/headers", Some("/sub")),
    ] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{forged}Connection: close\r\n\r\n");
        let (status, text) = raw_from("127.0.0.1", front, request.as_bytes());
        assert_eq!(status, 200, "{text}");
        let seen = headers_seen(&text);
        assert_eq!(seen["HTTP_X_FORWARDED_FOR"], "127.0.0.1", "{host}: {seen}");
        assert_eq!(seen["HTTP_X_REAL_IP"], "127.0.0.1", "{host}: {seen}");
        assert_eq!(seen["HTTP_X_FORWARDED_PROTO"], "http", "{host}: {seen}");
        assert_eq!(seen["HTTP_X_FORWARDED_HOST"], host, "{host}: {seen}");
        assert_eq!(seen["scheme"], "http", "{host}: {seen}");
        for gone in [
            "HTTP_FORWARDED",
            "HTTP_X_FORWARDED_PORT",
            "HTTP_X_SILVER_SCRIPT_NAME",
        ] {
            assert!(seen.get(gone).is_none(), "{host}: {gone} passed: {seen}");
        }
        match prefix {
            Some(p) => assert_eq!(seen["HTTP_X_FORWARDED_PREFIX"], p, "{seen}"),
            None => assert!(seen.get("HTTP_X_FORWARDED_PREFIX").is_none(), "{seen}"),
        }
    }
}

#[test]
fn bad_host_lines_and_malformed_chunks_get_400() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = echo_node(tmp.path(), &[]);
    let front = front_addr(&agent);
    let check = |request: &str, expected: u16| {
        let (status, text) = raw_from("127.0.0.1", front, request.as_bytes());
        assert_eq!(status, expected, "{request:?} got {text}");
    };
    check("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400);
    check(
        "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        400,
    );
    check("GET / HTTP/1.0\r\n\r\n", 200);
    check(
        "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        200,
    );
    // A chunk size that overflows 64 bits, and one that is not hex.
    for size in ["fffffffffffffffffffffff", "zz"] {
        check(
            &format!(
                "POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n{size}\r\nabc\r\n0\r\n\r\n"
            ),
            400,
        );
    }
    check(
        "POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        200,
    );
}

#[test]
fn slow_headers_are_cut_off_and_one_address_cannot_hold_every_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = echo_node(
        tmp.path(),
        &["--header-timeout", "2", "--max-client-connections", "50"],
    );
    let front = front_addr(&agent);
    // 50 connections from one address that never finish their headers.
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = connect_from("127.0.0.2", front);
            s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // The 51st from that address is closed at once, without an answer.
    let (status, text) = raw_from(
        "127.0.0.2",
        front,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 0, "over the limit, yet answered: {text}");
    // Everyone else is served meanwhile.
    for _ in 0..20 {
        let (status, text) = raw_from(
            "127.0.0.1",
            front,
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status, 200, "{text}");
    }
    // Each slow connection is closed by the server once its header deadline passes: reading
    // waits for that event (EOF or a 408), not for a clock.
    for s in &mut slow {
        let mut rest = Vec::new();
        let read = s.read_to_end(&mut rest);
        assert!(
            read.is_ok() || rest.is_empty(),
            "a slow connection was not closed: {read:?}"
        );
        let text = String::from_utf8_lossy(&rest);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    drop(slow);
    // Their places are free again.
    let (status, text) = raw_from(
        "127.0.0.2",
        front,
        b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{text}");
}

/// One gunicorn worker, and an app with a 2 MB page.
const BIG_APP: &str = r#"
def application(environ, start_response):
    body = b"x" * (2 << 20) if environ["PATH_INFO"] == "/big" else b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

#[test]
fn a_slow_upload_or_download_never_holds_the_apps_only_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &["--workers", "1"]);
    let dir = tmp.path().join("one");
    wsgi_app(&dir, "one", "", BIG_APP);
    agent.deployed(&tmp.path().join("cache"), &dir, &["--location", "*"]);
    let front = front_addr(&agent);
    let ok = || {
        let (status, text) = raw_from(
            "127.0.0.1",
            front,
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status, 200, "{text}");
    };
    // An upload that sends 10 of its 1000 bytes and then waits.
    let mut upload = connect_from("127.0.0.2", front);
    upload
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n0123456789",
        )
        .unwrap();
    ok();
    // A download whose client reads nothing.
    let mut download = connect_from("127.0.0.3", front);
    download
        .write_all(b"GET /big HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    ok();
    // Both still complete once their clients get going.
    upload.write_all(&[b'z'; 990]).unwrap();
    let mut answer = Vec::new();
    let mut head = [0u8; 12];
    upload.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "upload");
    download.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "download");
    let _ = download.take(3 << 20).read_to_end(&mut answer);
    assert!(
        answer.len() > 2 << 20,
        "the download was cut: {} bytes",
        answer.len()
    );
}
