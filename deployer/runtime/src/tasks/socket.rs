//! The endpoint an app queues tasks through: HTTP over a Unix socket in its run directory
//! (`run/tasks.sock`, `$SILVER_TASKS_SOCKET`), which only the app's own user may connect to.
//!
//! ```text
//! POST /tasks   {"path": "/mail/send", "method": "POST", "body": "…" | "body_base64": "…",
//!                "content_type": "application/json", "delay": 30 | "eta": "2026-12-03T18:00:00Z",
//!                "key": "order-42"}
//! → 201 {"id": "…", "duplicate": false}      queued, durably
//! → 200 {"id": "…", "duplicate": true}       the key's task, queued or run before
//! → 400 bad path, method, key, body, delay  · 403 another user  · 429 the queue is full
//! ```

use std::path::Path;
use std::sync::Weak;

use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::net::UnixListener;

use super::store::Dir;
use super::{Queue, MAX_DELAY};
use crate::error::{Error, TaskProblem};

/// The socket's name in the app's run directory.
pub const SOCKET_NAME: &str = "tasks.sock";
/// The largest task body: a task carries an id and some parameters, not an upload.
const MAX_BODY: usize = 1 << 20;

/// A task as the app asks for it, checked: its path, method, key and time are ones the queue
/// can store and run.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    /// When it is due; None: now.
    pub due: Option<DateTime<Utc>>,
    pub key: Option<String>,
}

/// What the app sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wire {
    pub path: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub body_base64: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    /// Seconds from now.
    #[serde(default)]
    pub delay: Option<f64>,
    #[serde(default)]
    pub eta: Option<DateTime<Utc>>,
    #[serde(default)]
    pub key: Option<String>,
}

impl NewTask {
    pub fn parse(wire: Wire, now: DateTime<Utc>) -> Result<NewTask, TaskProblem> {
        let method = wire
            .method
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase();
        // Blocks: methods that tunnel (CONNECT) or that the router never passes.
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            return Err(TaskProblem::BadMethod { method });
        }
        // Blocks: an absolute URL or `//host` that would send the node's request elsewhere,
        // and spaces or control characters that would split the request line.
        let bad_char = |c: char| c.is_whitespace() || c.is_control();
        if !wire.path.starts_with('/')
            || wire.path.starts_with("//")
            || wire.path.contains(bad_char)
        {
            return Err(TaskProblem::BadPath { path: wire.path });
        }
        // Blocks: a key that fills the queue's memory, or control characters in listings.
        if let Some(key) = &wire.key {
            if key.is_empty() || key.len() > 256 || key.contains(char::is_control) {
                return Err(TaskProblem::BadKey);
            }
        }
        let body = match (wire.body, wire.body_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| TaskProblem::BadBody)?,
            (None, None) => Vec::new(),
            (Some(_), Some(_)) => return Err(TaskProblem::BadBody),
        };
        let far = now + chrono::Duration::from_std(MAX_DELAY).unwrap_or_default();
        let due = match (wire.delay, wire.eta) {
            (Some(secs), None) if (0.0..=MAX_DELAY.as_secs_f64()).contains(&secs) => {
                Some(now + chrono::Duration::milliseconds((secs * 1000.0) as i64))
            }
            (None, Some(eta)) if eta <= far => Some(eta),
            (None, None) => None,
            _ => return Err(TaskProblem::TooFar),
        };
        let content_type = wire.content_type.filter(|t| !t.contains(char::is_control));
        Ok(NewTask {
            method,
            path: wire.path,
            body,
            content_type,
            due,
            key: wire.key,
        })
    }
}

/// Binds the socket where the app finds it, connectable by `uid` alone.
///
/// Blocks: another app's user connecting (the socket is 0600 and the app's; and the peer's
/// uid is checked on every request besides), and a link the app planted at the socket's name
/// in its own run directory (the socket is made in the agent's own directory and renamed over
/// whatever is there; a rename replaces a link, never follows it).
pub fn bind(dir: &Dir, run: &Path, uid: u32, gid: u32) -> Result<UnixListener, Error> {
    use std::os::unix::fs::PermissionsExt;
    let fresh = dir.root().join(SOCKET_NAME);
    let _ = std::fs::remove_file(&fresh);
    let listener = UnixListener::bind(&fresh).map_err(|e| Error::io(&fresh, e))?;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::os::unix::fs::lchown(&fresh, Some(uid), Some(gid)))
        .map_err(|e| Error::io(&fresh, e))?;
    let path = run.join(SOCKET_NAME);
    std::fs::rename(&fresh, &path).map_err(|e| Error::io(&path, e))?;
    Ok(listener)
}

/// Serves the socket until the queue closes.
pub async fn serve(queue: Weak<Queue>, listener: UnixListener, uid: u32) {
    let app = Router::new()
        .route("/tasks", post(add))
        .layer(DefaultBodyLimit::max(MAX_BODY * 2))
        .with_state(Endpoint { queue, uid });
    let service = app.into_make_service_with_connect_info::<Peer>();
    if let Err(e) = axum::serve(listener, service).await {
        tracing::warn!(error = %e, "the task socket stopped");
    }
}

#[derive(Clone)]
struct Endpoint {
    queue: Weak<Queue>,
    uid: u32,
}

/// Who is at the other end of a connection, as the kernel says (`SO_PEERCRED`).
#[derive(Clone, Debug)]
struct Peer {
    uid: Option<u32>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, UnixListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, UnixListener>) -> Peer {
        Peer {
            uid: stream.io().peer_cred().ok().map(|c| c.uid()),
        }
    }
}

async fn add(
    State(endpoint): State<Endpoint>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: axum::body::Bytes,
) -> Response {
    // Blocks: a process of another user that reached the socket anyway (a socket whose mode
    // a later chmod widened, root's tools aside).
    if peer.uid != Some(endpoint.uid) {
        return refuse(
            StatusCode::FORBIDDEN,
            "only the app's own user may queue its tasks".into(),
            None,
        );
    }
    let Some(queue) = endpoint.queue.upgrade() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the queue is closing".into(),
            None,
        );
    };
    let wire: Wire = match serde_json::from_slice(&body) {
        Ok(wire) => wire,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the task is not JSON the queue reads: {e}"),
                None,
            )
        }
    };
    let task = match NewTask::parse(wire, Utc::now()) {
        Ok(task) if task.body.len() <= MAX_BODY => task,
        Ok(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a task's body is at most {MAX_BODY} bytes"),
                None,
            )
        }
        Err(problem) => return refuse(StatusCode::BAD_REQUEST, problem.to_string(), None),
    };
    match queue.add(task).await {
        Ok(added) => {
            let status = if added.duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (
                status,
                Json(serde_json::json!({"id": added.id, "duplicate": added.duplicate})),
            )
                .into_response()
        }
        Err(
            e @ Error::Task {
                problem: TaskProblem::Full { .. },
                ..
            },
        ) => refuse(StatusCode::TOO_MANY_REQUESTS, e.to_string(), e.hint()),
        Err(e) => {
            tracing::warn!(error = %silver_types::error_chain(&e), "a task could not be queued");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                silver_types::error_chain(&e),
                None,
            )
        }
    }
}

fn refuse(status: StatusCode, error: String, hint: Option<String>) -> Response {
    (
        status,
        Json(serde_json::json!({"error": error, "hint": hint})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(json: &str) -> Wire {
        serde_json::from_str(json).unwrap()
    }

    /// What the app sends, against what the queue makes of it (or the problem it names).
    fn check(json: &str, expected: Result<(&str, &str, &[u8]), &str>) {
        let got = NewTask::parse(wire(json), Utc::now())
            .map(|t| (t.method, t.path, t.body))
            .map_err(|p| p.to_string());
        let expected = expected
            .map(|(m, p, b)| (m.to_string(), p.to_string(), b.to_vec()))
            .map_err(|e| e.to_string());
        match (&got, &expected) {
            (Err(g), Err(e)) => assert!(g.contains(e.as_str()), "{json}: {g}"),
            _ => assert_eq!(got, expected, "{json}"),
        }
    }

    #[test]
    fn tasks_are_read_and_hostile_ones_refused() {
        check(r#"{"path": "/a?b=1"}"#, Ok(("POST", "/a?b=1", b"")));
        check(
            r#"{"path": "/a", "method": "get", "body": "x"}"#,
            Ok(("GET", "/a", b"x")),
        );
        check(
            r#"{"path": "/a", "body_base64": "AP8="}"#,
            Ok(("POST", "/a", b"\x00\xff")),
        );
        check(r#"{"path": "http://evil/"}"#, Err("is not a path"));
        check(r#"{"path": "//evil/x"}"#, Err("is not a path"));
        check(
            r#"{"path": "/a HTTP/1.1\r\nHost: x"}"#,
            Err("is not a path"),
        );
        check(
            r#"{"path": "/a", "method": "CONNECT"}"#,
            Err("is not a method"),
        );
        check(r#"{"path": "/a", "delay": 99999999}"#, Err("30 days"));
        check(r#"{"path": "/a", "delay": -1}"#, Err("30 days"));
        check(r#"{"path": "/a", "key": ""}"#, Err("idempotency key"));
        check(
            r#"{"path": "/a", "body": "x", "body_base64": "eA=="}"#,
            Err("base64"),
        );
        check(r#"{"path": "/a", "body_base64": "!!"}"#, Err("base64"));
    }
}
