//! Probes: internal requests to the candidate's web process, as the router would send them
//! (the health check, "answers at all", and `update_fetch` URLs).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::candidate::Candidate;
use crate::supervise::Supervised;

/// An internal request and the statuses that pass it.
pub struct Probe<'a> {
    pub path: &'a str,
    /// Passes with a status below this.
    pub below: u16,
    /// An `update_fetch` request (the app sees `silverlining.update`), not a health check.
    pub update: bool,
}

/// The health check's path, where any HTTP answer at all shows the process serves.
pub fn any_answer(c: &Candidate) -> Probe<'_> {
    Probe {
        path: &c.config.health_check,
        below: 600,
        update: false,
    }
}

/// Polls `probe` until it passes, the web process exits, or `timeout` passes.
pub async fn wait_for(
    client: &reqwest::Client,
    c: &Candidate,
    addr: SocketAddr,
    processes: &[Supervised],
    timeout: Duration,
    probe: Probe<'_>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let web = processes.iter().find(|p| p.name == "web");
    loop {
        let exits = web.map(Supervised::exits).filter(|e| e.count > 0);
        if let Some(how) = exits.and_then(|e| e.last) {
            return Err(format!(
                "the web process {how} before it answered GET {}",
                probe.path
            ));
        }
        let last = match fetch(client, c, addr, &probe, Duration::from_secs(5)).await {
            Ok(_) => return Ok(()),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "GET {} did not pass within {} s (last: {last})",
                probe.path,
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One internal GET, as the router would send it. A failing answer is told with its status
/// and the start of its body, where the app usually says what went wrong.
pub async fn fetch(
    client: &reqwest::Client,
    c: &Candidate,
    addr: SocketAddr,
    probe: &Probe<'_>,
    timeout: Duration,
) -> Result<String, String> {
    let path = probe.path;
    let prefix = c.location_prefix();
    let mut request = client
        .get(format!("http://{addr}{prefix}{path}"))
        .timeout(timeout)
        .header("host", c.canonical_host())
        .header("x-forwarded-proto", "http")
        // The router drops X-Silver-* from clients: only the node's own requests carry it. The
        // shim turns it into Silver Lining's `silverlining.internal` and `silverlining.update`.
        .header(
            "x-silver-internal",
            if probe.update { "update" } else { "check" },
        );
    if !prefix.is_empty() {
        request = request.header("x-silver-script-name", &prefix);
    }
    match request.send().await {
        Ok(r) if r.status().as_u16() < probe.below => {
            let body = r.bytes().await.unwrap_or_default();
            Ok(String::from_utf8_lossy(&body[..body.len().min(2048)]).into_owned())
        }
        Ok(r) => {
            let status = r.status();
            let body = r.bytes().await.unwrap_or_default();
            let shown = String::from_utf8_lossy(&body[..body.len().min(2048)]).into_owned();
            let cut = if body.len() > 2048 { "\n(…)" } else { "" };
            Err(format!(
                "GET {path} answered {status}:\n{}{cut}",
                shown.trim_end()
            ))
        }
        Err(e) if e.is_connect() => Err("connection refused".into()),
        Err(e) if e.is_timeout() => Err(format!("GET {path} timed out")),
        Err(e) => Err(format!("GET {path} failed: {e}")),
    }
}

/// A release with no web process: its workers must at least stay up for a moment.
pub async fn stays_up(processes: &[Supervised]) -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    match processes.iter().find(|p| p.exits().count > 0) {
        Some(p) => Err(format!(
            "process `{}` {}",
            p.name,
            p.exits().last.unwrap_or_default()
        )),
        None => Ok(()),
    }
}
