//! Reading an app's logs and running one-off commands in its environment (`silver logs`,
//! `silver run`). Both stream their answers and are bounded by the client, not a timeout.

use std::path::PathBuf;
use std::process::Stdio;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use silver_types::AppName;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::activate::candidate;
use super::extract::App;
use super::{blocking, AgentState, ApiErr};
use crate::error::Error;
use silver_runtime::logs;
use silver_runtime::supervise::Spec;
use silver_wire::api::{RunFrame, RunRequest};

#[derive(Debug, Deserialize)]
pub(super) struct LogQuery {
    process: Option<String>,
    #[serde(default = "default_lines")]
    lines: usize,
    #[serde(default)]
    follow: bool,
}

fn default_lines() -> usize {
    100
}

pub(super) async fn logs(
    State(state): State<AgentState>,
    App(app): App,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiErr> {
    let dir = state.store.app(&app).runtime().logs();
    let files = log_files(&dir, q.process.as_deref(), &app)?;
    let lines = q.lines.min(100_000);
    let tail_files = files.clone();
    let tail = blocking(move || {
        logs::tail(&tail_files, lines).map_err(|e| Error::io(&PathBuf::from("logs"), e))
    })
    .await?;
    let text: String = tail.into_iter().map(|l| l + "\n").collect();
    if !q.follow {
        return Ok(Response::new(Body::from(text)));
    }
    let (tx, rx) = mpsc::channel::<String>(256);
    let _ = tx.send(text).await;
    for (process, path) in files {
        tokio::spawn(logs::follow(path, process, tx.clone()));
    }
    drop(tx);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|s| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(s)));
    Ok(Response::new(Body::from_stream(stream)))
}

use tokio_stream::StreamExt as _;

/// `(process, path)` of the logs asked for: one process, or all of them.
fn log_files(
    dir: &std::path::Path,
    process: Option<&str>,
    app: &AppName,
) -> Result<Vec<(String, PathBuf)>, Error> {
    if let Some(p) = process {
        if p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::BadProcess {
                name: p.to_string(),
            });
        }
        let path = dir.join(format!("{p}.log"));
        if !path.is_file() {
            return Err(Error::NoLog {
                app: app.clone(),
                process: p.to_string(),
            });
        }
        return Ok(vec![(p.to_string(), path)]);
    }
    let entries = std::fs::read_dir(dir).map_err(|_| Error::NoLogs { app: app.clone() })?;
    let mut files: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log").map(|p| (p.to_string(), e.path()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Runs a command in the live release, as the app's user, with its environment; streams its
/// output as frames and ends with its exit code. The command dies if the client goes away.
pub(super) async fn run(
    State(state): State<AgentState>,
    App(app): App,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiErr> {
    let mut body = body.into_data_stream();
    let (req, first) = run_head(&headers, &mut body).await?;
    if req.argv.is_empty() {
        return Err(Error::EmptyCommand.into());
    }
    let store = state.store.clone();
    let name = app.clone();
    let mut c = blocking(move || {
        let id = store
            .current(&name)?
            .ok_or(Error::NoCurrent { app: name.clone() })?;
        candidate(&store, &name, &id, vec![], false)
    })
    .await?;
    c.user = state.runtime.app_user(&app).await?;
    state.runtime.provision(&mut c).await?;
    // Only the program name: arguments may carry secrets.
    tracing::info!(%app, who = %req.who, program = %req.argv[0], "run");
    let spec = Spec {
        name: "run".into(),
        release: c.label.clone(),
        argv: req.argv.clone(),
        env: c.env(None, state.runtime.config().bytecode_cache),
        cwd: c.dir.clone(),
        user: c.user.clone(),
        log: logs::LogSink::Stderr {
            prefix: String::new(),
        },
        stop_signal: silver_runtime::supervise::Signal::SIGTERM,
    };
    let mut cmd = silver_runtime::supervise::command(&spec);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| Error::CannotRun {
        app: app.clone(),
        program: req.argv[0].clone(),
        source,
    })?;
    tokio::spawn(feed(child.stdin.take(), first, body));
    let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
    let out = pump(child.stdout.take(), RunFrame::Stdout, tx.clone());
    let err = pump(child.stderr.take(), RunFrame::Stderr, tx.clone());
    tokio::spawn(async move {
        let status = tokio::select! {
            status = child.wait() => status.ok(),
            // The client hung up: stop the command rather than leave it running unowned.
            _ = tx.closed() => None,
        };
        let _ = tokio::join!(out, err);
        let code = status.map_or(130, exit_code);
        let _ = tx.send(RunFrame::Exit.encode(&code.to_be_bytes())).await;
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|b| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(b)));
    Ok(Response::new(Body::from_stream(stream)))
}

/// The request a run body starts with, and the stdin bytes that came with it: a streamed body
/// (`RUN_CONTENT_TYPE`) is its head, then stdin; a JSON one is the request alone.
async fn run_head(
    headers: &axum::http::HeaderMap,
    body: &mut axum::body::BodyDataStream,
) -> Result<(RunRequest, Vec<u8>), ApiErr> {
    let bad = |why: String| {
        ApiErr(Error::BadBody {
            route: "POST /v1/apps/{app}/run".into(),
            why: silver_types::Said::new(&why, &[]),
        })
    };
    let streamed = headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == silver_wire::api::RUN_CONTENT_TYPE.as_bytes());
    let mut buf: Vec<u8> = Vec::new();
    // Bytes until the head is whole: a JSON body to its end; a streamed one to its length.
    let wanted = |buf: &[u8]| -> Option<usize> {
        let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        Some(4 + len)
    };
    loop {
        if streamed && wanted(&buf).is_some_and(|w| buf.len() >= w) {
            break;
        }
        if buf.len() > silver_wire::api::MAX_RUN_HEAD + 4 {
            return Err(bad(format!(
                "its request is over {} bytes",
                silver_wire::api::MAX_RUN_HEAD
            )));
        }
        match body.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(bad(e.to_string())),
            None if streamed => return Err(bad("it ended before its request".into())),
            None => break,
        }
    }
    let (json, rest) = match wanted(&buf).filter(|_| streamed) {
        Some(end) => (&buf[4..end], buf[end..].to_vec()),
        None => (&buf[..], Vec::new()),
    };
    let req = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    Ok((req, rest))
}

/// Writes what the client streams to the command's stdin, then closes it (EOF). A command that
/// stops reading ends the copy; a client that stops sending closes stdin.
async fn feed(
    stdin: Option<tokio::process::ChildStdin>,
    first: Vec<u8>,
    mut body: axum::body::BodyDataStream,
) {
    use tokio::io::AsyncWriteExt;
    let Some(mut stdin) = stdin else { return };
    if stdin.write_all(&first).await.is_err() {
        return;
    }
    while let Some(Ok(chunk)) = body.next().await {
        if stdin.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = stdin.shutdown().await;
}

fn pump(
    pipe: Option<impl AsyncRead + Unpin + Send + 'static>,
    kind: RunFrame,
    tx: mpsc::Sender<Vec<u8>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut buf = vec![0u8; 16 << 10];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 || tx.send(kind.encode(&buf[..n])).await.is_err() {
                return;
            }
        }
    })
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
