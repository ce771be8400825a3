//! Internal requests to an app's live release (design §4, §11): a `[cron]` job's GET and a
//! queued task's request, sent to the release's web process with the marks the router gives
//! the node's own requests. No client can send those marks: the router drops every
//! `X-Silver-*` header it is given.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

/// Where a live release answers internal requests.
#[derive(Clone)]
pub struct Target {
    pub label: String,
    /// The host and path prefix of its first location, as the router would send them.
    pub host: String,
    pub prefix: String,
    /// Its web process; None for an app without one.
    pub addr: Option<SocketAddr>,
    pub request_timeout: Duration,
}

/// One internal request.
pub struct Request<'a> {
    pub method: &'a str,
    /// Below the release's location (`/tasks/cleanup?full=1`).
    pub path: &'a str,
    pub body: bytes::Bytes,
    pub content_type: Option<&'a str>,
    /// `X-Silver-Internal`: `cron` or `task`.
    pub kind: &'a str,
    /// Further `X-Silver-*` marks: the job's name, the task's id and attempt.
    pub marks: Vec<(&'static str, String)>,
    pub deadline: Duration,
}

/// What an internal request came to.
pub struct Answer {
    /// A 2xx status.
    pub ok: bool,
    /// The status, or why there was none (`deadline (30 s) passed`).
    pub outcome: String,
    /// The end of the answer's body, for the record.
    pub body: bytes::Bytes,
}

/// Sends `request` to the release's web process.
pub async fn send(target: &Target, request: Request<'_>) -> Answer {
    let Some(addr) = target.addr else {
        return failed("the app has no web process to request it from".into());
    };
    let Ok(method) = reqwest::Method::from_bytes(request.method.as_bytes()) else {
        return failed(format!("`{}` is not an HTTP method", request.method));
    };
    let url = format!("http://{addr}{}{}", target.prefix, request.path);
    let mut builder = client()
        .request(method, url)
        .timeout(request.deadline)
        .header("host", &target.host)
        .header("x-forwarded-proto", "http")
        .header("x-silver-internal", request.kind);
    for (name, value) in request.marks {
        builder = builder.header(name, value);
    }
    if !target.prefix.is_empty() {
        builder = builder.header("x-silver-script-name", &target.prefix);
    }
    if let Some(kind) = request.content_type {
        builder = builder.header("content-type", kind);
    }
    match builder.body(request.body).send().await {
        Ok(answer) => {
            let status = answer.status();
            Answer {
                ok: status.is_success(),
                outcome: status.as_u16().to_string(),
                body: answer.bytes().await.unwrap_or_default(),
            }
        }
        Err(e) if e.is_timeout() => failed(format!(
            "deadline ({} s) passed",
            request.deadline.as_secs()
        )),
        Err(e) => failed(format!(
            "could not request it: {}",
            silver_types::error_chain(&e)
        )),
    }
}

fn failed(outcome: String) -> Answer {
    Answer {
        ok: false,
        outcome,
        body: bytes::Bytes::new(),
    }
}

/// One client for every internal request: its connections to each release are kept and
/// reused, which matters when a queue of thousands of tasks drains.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap_or_default()
    })
}
