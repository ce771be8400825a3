//! The FastCGI gateway: HTTP/1.1 from the router on the release's loopback port, FastCGI to the
//! release's php-fpm socket, following Silver Lining's runner contract.
//!
//! Every request runs the master runner (`silver_runner.php`), which runs the app's `runner`:
//! `SCRIPT_NAME` is the request's path (the location's prefix included, as `SILVER_MATCH_PATH`
//! says), the router's `X-Forwarded-*` become `REMOTE_ADDR` and `HTTPS`, and its internal
//! marks (`X-Silver-Internal`, `X-Silver-Cron`, `X-Silver-Script-Name`), which no client can
//! send, become `SILVER_INTERNAL`, `SILVER_CRON` (a cron job's name) and `SILVER_MATCH_PATH`.
//! The answer's CGI headers (`Status:`, `Location:`) become an HTTP response whose body streams
//! as PHP writes it.
//!
//! php-fpm never notices a client that has gone: a wedged script holds its worker until
//! `request_terminate_timeout`. So each request notes its worker's pid on a board
//! (`FpmFiles::board`), and a request dropped before its answer is done (its client hung up,
//! or the router ended it at its deadline or while others waited) that still runs
//! [`ABANDON_AFTER`] after it started is ended (`end_request`). Meanwhile a request that
//! burns CPU gives way to short ones (`give_way`).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use bytes::Bytes;
use fastcgi_client::response::Content;
use fastcgi_client::{Params, StreamExt};
use http_body_util::BodyExt;
use tokio::net::TcpListener;

use super::give_way;
use crate::logs::LogSink;

/// A request dropped before its answer is done, that has run this long, ends its worker: as
/// the WSGI shim does (`silver_wsgi.py`).
const ABANDON_AFTER: Duration = Duration::from_millis(50);
/// How long an abandoned request has to end once told to, before its worker is ended.
const END_GRACE: Duration = Duration::from_millis(50);
/// A request body without a length is read whole first (PHP needs `CONTENT_LENGTH`), up to this.
const MAX_UNSIZED_BODY: usize = 256 << 20;

/// What the gateway needs to reach one release's PHP.
pub struct Target {
    pub app: String,
    pub label: String,
    /// The release's real path (`SILVER_BASE`): the master is rooted there.
    pub release: PathBuf,
    pub runner: String,
    pub php_root: Option<String>,
    pub files: super::FpmFiles,
    /// Where PHP's error output (FastCGI stderr) goes: the release's web log.
    pub log: LogSink,
    /// The priority of each request's worker as it runs.
    pub priorities: super::give_way::Priorities,
}

impl Drop for Target {
    /// The master this gateway served has stopped or is stopping: its start's files go (php-fpm
    /// removes its own socket).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.files.conf);
        let _ = std::fs::remove_dir_all(&self.files.board);
    }
}

/// Serves `listener` until the task is aborted (the release's backend is dropped).
pub async fn serve(listener: TcpListener, target: Arc<Target>) {
    tokio::select! {
        () = accept(listener, target.clone()) => {}
        () = target.priorities.run() => {}
    }
}

async fn accept(listener: TcpListener, target: Arc<Target>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let target = target.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let target = target.clone();
                async move { Ok::<_, Infallible>(answer(&target, request).await) }
            });
            let io = hyper_util::rt::TokioIo::new(tcp);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// One request through php-fpm; a failure to reach it is a 502 that says so.
async fn answer(target: &Arc<Target>, request: Request<hyper::body::Incoming>) -> Response<Body> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    target.priorities.enter(id);
    let watch = Watch {
        target: target.clone(),
        id,
        started: Instant::now(),
        done: false,
    };
    match fastcgi(target, request, id, watch).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(app = %target.app, error = %e, "php-fpm did not answer");
            let mut response = Response::new(Body::from(format!("php-fpm did not answer: {e}\n")));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

async fn fastcgi(
    target: &Target,
    request: Request<hyper::body::Incoming>,
    id: u64,
    watch: Watch,
) -> std::io::Result<Response<Body>> {
    let (parts, body) = request.into_parts();
    let length = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (stdin, length): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, u64) = match length {
        Some(n) => (Box::new(reader(body)), n),
        None => {
            let whole = read_whole(body).await?;
            let n = whole.len() as u64;
            (Box::new(std::io::Cursor::new(whole)), n)
        }
    };
    let params = params(target, &parts, length, id);
    let socket = tokio::net::UnixStream::connect(&target.files.socket).await?;
    let client = fastcgi_client::Client::new_tokio(socket);
    let request = fastcgi_client::Request::new_tokio(params, stdin);
    let mut stream = client
        .execute_once_stream(request)
        .await
        .map_err(std::io::Error::other)?;
    // The CGI headers, then the body as it comes.
    let mut head = Vec::new();
    let body_start = loop {
        match stream.next().await {
            Some(Ok(Content::Stdout(bytes))) => {
                head.extend_from_slice(&bytes);
                if let Some(end) = header_end(&head) {
                    break end;
                }
            }
            Some(Ok(Content::Stderr(bytes))) => log_lines(&target.log, &target.label, &bytes),
            Some(Err(e)) => return Err(std::io::Error::other(e)),
            None => break head.len(), // all headers, or nothing: PHP ended
        }
    };
    let rest = Bytes::copy_from_slice(&head[body_start.min(head.len())..]);
    let mut response = cgi_response(&head[..body_start.min(head.len())])?;
    let log = target.log.clone();
    let label = target.label.clone();
    let body = async_stream_body(rest, stream, log, label, move || watch.finish());
    *response.body_mut() = body;
    Ok(response)
}

/// The answer's body: what came with the headers, then PHP's further output; the request
/// counts as done (its worker is never ended) once php-fpm ends it.
fn async_stream_body<S>(
    first: Bytes,
    stream: S,
    log: LogSink,
    label: String,
    on_end: impl FnOnce() + Send + 'static,
) -> Body
where
    S: futures_util::Stream<Item = Result<Content, fastcgi_client::ClientError>> + Send + 'static,
{
    let first = futures_util::stream::iter((!first.is_empty()).then(|| Ok(first)));
    let mut on_end = Some(on_end);
    let rest = stream.filter_map(move |item| {
        let out = match item {
            Ok(Content::Stdout(bytes)) => Some(Ok(bytes)),
            Ok(Content::Stderr(bytes)) => {
                log_lines(&log, &label, &bytes);
                None
            }
            Err(e) => Some(Err(std::io::Error::other(e))),
        };
        std::future::ready(out)
    });
    let ended = futures_util::stream::poll_fn(move |_| {
        if let Some(f) = on_end.take() {
            f();
        }
        std::task::Poll::Ready(None::<std::io::Result<Bytes>>)
    });
    Body::from_stream(first.chain(rest).chain(ended))
}

/// The end of the CGI header block (after `\r\n\r\n` or `\n\n`).
fn header_end(head: &[u8]) -> Option<usize> {
    let crlf = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = head.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// CGI response headers (RFC 3875 §6) as an HTTP response: `Status: 404 Not Found` sets the
/// status, a `Location:` without one is a 302, everything else is a header.
fn cgi_response(head: &[u8]) -> std::io::Result<Response<Body>> {
    let text = String::from_utf8_lossy(head);
    let mut response = Response::new(Body::empty());
    let mut status = None;
    for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            continue; // not a header: PHP's output before any, dropped as nginx does
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok());
            status = code.and_then(|c| StatusCode::from_u16(c).ok());
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.trim().as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    let redirect = response
        .headers()
        .contains_key(axum::http::header::LOCATION);
    *response.status_mut() = status.unwrap_or(if redirect {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    Ok(response)
}

/// The FastCGI parameters of one request (RFC 3875 §4.1, and what php-fpm reads).
fn params<'a>(
    target: &Target,
    parts: &axum::http::request::Parts,
    length: u64,
    id: u64,
) -> Params<'a> {
    let headers = &parts.headers;
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let path = percent_encoding::percent_decode_str(parts.uri.path())
        .decode_utf8_lossy()
        .into_owned();
    let host = get("host");
    let https = get("x-forwarded-proto") == "https";
    let (server_name, server_port) = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            (name.to_string(), port.to_string())
        }
        _ => (host.clone(), if https { "443" } else { "80" }.to_string()),
    };
    // The router appends the client's address last.
    let forwarded = get("x-forwarded-for");
    let client = forwarded
        .rsplit(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let release = target.release.display().to_string();
    let root = match target.php_root.as_deref() {
        Some(root) => format!("{release}/{root}"),
        None => release.clone(),
    };
    let mut p = Params::default()
        .gateway_interface("CGI/1.1")
        .server_software("silver")
        .server_protocol("HTTP/1.1")
        .request_method(parts.method.as_str().to_string())
        .script_filename(target.files.master_runner.display().to_string())
        .script_name(path.clone())
        .query_string(parts.uri.query().unwrap_or("").to_string())
        .request_uri(uri)
        .document_uri(path)
        .document_root(root)
        .remote_addr(client)
        .server_addr("127.0.0.1")
        .server_name(server_name)
        .content_type(get("content-type"))
        .content_length(length as usize);
    let mut set = |k: &str, v: String| {
        p.insert(k.to_string().into(), v.into());
    };
    set("SERVER_PORT", server_port);
    set("PATH_INFO", String::new());
    if https {
        set("HTTPS", "on".into());
    }
    set("SILVER_BASE", release);
    set("SILVER_RUNNER", target.runner.clone());
    set(
        "SILVER_PHP_ROOT",
        target.php_root.clone().unwrap_or_default(),
    );
    set("SILVER_MATCH_PATH", {
        let prefix = get("x-silver-script-name");
        if prefix.is_empty() {
            "/".into()
        } else {
            prefix
        }
    });
    let internal = get("x-silver-internal");
    // A [cron] job's request: `$_SERVER['SILVER_CRON']` is the job's name.
    let cron = get("x-silver-cron");
    if internal == "cron" && !cron.is_empty() {
        set("SILVER_CRON", cron);
        set("SILVER_CRON_TICK", get("x-silver-cron-tick"));
    }
    // A queued task's request: `$_SERVER['SILVER_TASK']` is its id.
    let task = get("x-silver-task");
    if internal == "task" && !task.is_empty() {
        set("SILVER_TASK", task);
        set("SILVER_TASK_ATTEMPT", get("x-silver-task-attempt"));
    }
    if !internal.is_empty() {
        set("SILVER_INTERNAL", internal);
    }
    set("SILVER_BOARD", target.files.board.display().to_string());
    set("SILVER_REQUEST_ID", id.to_string());
    for (name, value) in http_params(headers) {
        set(&name, value);
    }
    p
}

/// Request headers as `HTTP_*` parameters; repeated ones joined as RFC 9110 §5.3 allows
/// (cookies with `; `). `Content-Type` and `Content-Length` have their own, and silver's
/// internal marks are never passed on as headers.
fn http_params(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out: std::collections::BTreeMap<String, String> = Default::default();
    for (name, value) in headers {
        let name = name.as_str();
        if matches!(name, "content-type" | "content-length" | "proxy")
            || name.starts_with("x-silver-")
        {
            continue; // `Proxy` as HTTP_PROXY would set a proxy for the app's own requests (httpoxy)
        }
        let key = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let sep = if name == "cookie" { "; " } else { ", " };
        out.entry(key)
            .and_modify(|v| {
                v.push_str(sep);
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out.into_iter().collect()
}

fn reader(body: hyper::body::Incoming) -> impl tokio::io::AsyncRead + Send + Unpin {
    let stream = body
        .into_data_stream()
        .map(|r| r.map_err(std::io::Error::other));
    tokio_util::io::StreamReader::new(stream)
}

async fn read_whole(body: hyper::body::Incoming) -> std::io::Result<Vec<u8>> {
    let limited = http_body_util::Limited::new(body, MAX_UNSIZED_BODY);
    let collected = limited.collect().await.map_err(std::io::Error::other)?;
    Ok(collected.to_bytes().to_vec())
}

fn log_lines(log: &LogSink, label: &str, bytes: &[u8]) {
    for line in String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        log.line(label, line);
    }
}

/// One request in flight through php-fpm: if dropped before its answer is done, and it ran
/// long enough to be a wedge rather than a quick hang-up, the worker serving it is ended;
/// otherwise a worker that gave way gets its priority back.
struct Watch {
    target: Arc<Target>,
    id: u64,
    started: Instant,
    done: bool,
}

impl Watch {
    /// php-fpm ended the request: its worker is free again.
    fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The worker goes on, or goes on long enough to end its request: at its own priority.
        self.target.priorities.leave(self.id);
        let note = self.target.files.board.join(self.id.to_string());
        let runtime = tokio::runtime::Handle::try_current();
        let (false, Ok(runtime)) = (self.done, runtime) else {
            let _ = std::fs::remove_file(&note);
            return;
        };
        let (target, id, started) = (self.target.clone(), self.id, self.started);
        runtime.spawn(async move { end_request(&target, id, started).await });
    }
}

/// Ends request `id`, whose answer nobody will read, if it still runs [`ABANDON_AFTER`] after it
/// started (a quick hang-up ends nothing): as PHP ends one at `max_execution_time` (SIGPROF: a
/// fatal error at the script's next step, shutdown functions run, the worker serves on with its
/// opcache warm), or, if it has not ended within [`END_GRACE`] (stuck in a call that never
/// returns to PHP, such as a lock taken twice), by ending the worker; php-fpm forks a fresh one.
async fn end_request(target: &Target, id: u64, started: Instant) {
    use nix::sys::signal::{kill, Signal};
    tokio::time::sleep_until((started + ABANDON_AFTER).into()).await;
    let board = &target.files.board;
    let note = board.join(id.to_string());
    // Only a php-fpm worker (`worker_of`) whose request still runs (its note is there: the
    // runner removes it as the request ends): the note is the app's to write, and must never
    // make the agent signal any other process, nor the next request of a worker that has just
    // finished this one.
    let Some(pid) = give_way::worker_of(board, id) else {
        let _ = std::fs::remove_file(&note);
        return;
    };
    let ran = started.elapsed();
    let worker = nix::unistd::Pid::from_raw(pid);
    let _ = kill(worker, Signal::SIGPROF);
    let since = Instant::now();
    while note.exists() && since.elapsed() < END_GRACE {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let line = if note.exists() {
        let _ = kill(worker, Signal::SIGKILL);
        let _ = std::fs::remove_file(&note);
        format!(
            "[silver] ended php-fpm worker {pid}: its request was dropped, ran {} ms and did \
             not stop when told",
            ran.as_millis()
        )
    } else {
        format!(
            "[silver] stopped a dropped request on php-fpm worker {pid} after {} ms",
            ran.as_millis()
        )
    };
    target.log.line(&target.label, &line);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(head: &str, status: u16, headers: &[(&str, &str)]) {
        let response = cgi_response(head.as_bytes()).unwrap();
        assert_eq!(response.status().as_u16(), status, "{head:?}");
        for (name, value) in headers {
            assert_eq!(response.headers()[*name], *value, "{head:?}");
        }
    }

    #[test]
    fn cgi_headers_become_a_response() {
        check(
            "Content-type: text/html\r\n\r\n",
            200,
            &[("content-type", "text/html")],
        );
        check(
            "Status: 404 Not Found\r\nX-A: b\r\n\r\n",
            404,
            &[("x-a", "b")],
        );
        check("Location: /x/\r\n\r\n", 302, &[("location", "/x/")]);
        check(
            "Status: 301 Moved Permanently\nLocation: /x/\n\n",
            301,
            &[("location", "/x/")],
        );
        check("Status: banana\r\n\r\n", 200, &[]);
        check("", 200, &[]);
    }

    #[test]
    fn the_header_block_ends_at_the_first_blank_line() {
        assert_eq!(header_end(b"A: b\r\n\r\nbody\r\n\r\n"), Some(8));
        assert_eq!(header_end(b"A: b\n\nbody"), Some(6));
        assert_eq!(header_end(b"A: b\r\n"), None);
    }

    #[test]
    fn headers_pass_as_http_params_but_silvers_own_never() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        h.append("x-silver-internal", "update".parse().unwrap());
        h.append("proxy", "http://evil".parse().unwrap());
        h.append("accept", "text/html".parse().unwrap());
        let got = http_params(&h);
        assert_eq!(
            got,
            vec![
                ("HTTP_ACCEPT".to_string(), "text/html".to_string()),
                ("HTTP_COOKIE".to_string(), "a=1; b=2".to_string()),
            ]
        );
    }
}
