//! `GET /metrics` (Prometheus text), `GET /v1/status` (the figures, their history, markers and
//! the verdict), `POST /v1/status/link` (a signed link for a browser) and `GET /status` (the
//! page). The first two and the page take the node's token or its read-only token; the page
//! also takes a signed link, because a browser cannot send a bearer token.

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use silver_wire::api::{StatusLink, StatusView};

use super::AgentState;

/// Longest a signed link stays valid.
const LINK_MAX_SECS: u64 = 24 * 3600;

#[derive(Debug, Deserialize)]
pub(super) struct StatusQuery {
    /// Hours of history: up to 24 at 10 s, beyond at 5 min (default 1).
    #[serde(default = "one")]
    hours: u64,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
pub(super) struct LinkQuery {
    #[serde(default = "one")]
    hours: u64,
    exp: Option<u64>,
    sig: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LinkRequest {
    /// Minutes the link stays valid (default 60, at most a day).
    #[serde(default)]
    minutes: Option<u64>,
}

pub(super) async fn metrics(State(state): State<AgentState>) -> Response {
    let certs = state.certs.view(state.runtime.routes());
    let text = state.metrics.prometheus(&certs);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub(super) async fn status(
    State(state): State<AgentState>,
    Query(q): Query<StatusQuery>,
) -> Json<StatusView> {
    Json(view(&state, q.hours).await)
}

pub(super) async fn link(
    State(state): State<AgentState>,
    Json(req): Json<LinkRequest>,
) -> Json<StatusLink> {
    let secs = req
        .minutes
        .unwrap_or(60)
        .saturating_mul(60)
        .clamp(60, LINK_MAX_SECS);
    let exp = crate::metrics::unix_now() + secs;
    Json(StatusLink {
        path: format!("/status?exp={exp}&sig={}", sign(&state, exp)),
        expires_unix: exp,
    })
}

pub(super) async fn page(State(state): State<AgentState>, Query(q): Query<LinkQuery>) -> Response {
    let view = view(&state, q.hours).await;
    let certs = state.certs.view(state.runtime.routes());
    let html = crate::metrics::page::render(&view, &certs);
    (
        // The page holds the node's figures: no cache may keep them, no other site frame it.
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        Html(html),
    )
        .into_response()
}

async fn view(state: &AgentState, hours: u64) -> StatusView {
    let metrics = state.metrics.clone();
    let store = state.store.clone();
    let certs = state.certs.view(state.runtime.routes());
    tokio::task::spawn_blocking(move || metrics.status(&store, hours, &certs))
        .await
        .expect("the status view does not panic")
}

/// The node's token or its read-only token as a bearer, or (for the page) a signed link that
/// has not expired. Anything else gets a 401.
pub(super) async fn read_access(
    State(state): State<AgentState>,
    request: Request,
    next: Next,
) -> Response {
    let bearer = super::bearer(&request)
        .is_some_and(|g| g == *state.token || state.read_token.as_deref() == Some(&g));
    let linked = request.uri().path() == "/status" && signed(&state, request.uri().query());
    if bearer || linked {
        return next.run(request).await;
    }
    tracing::warn!(path = %request.uri().path(), "status request without a valid credential");
    super::api_error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong credential, or an expired link",
        Some("send `Authorization: Bearer <token>` (the node's or its read-only token), or open a new link from `silver status --open`"),
    )
}

/// A link's signature: keyed BLAKE3 over its expiry, keyed by the node token's hash. It cannot
/// be made without the token, and a new token voids every link.
fn sign(state: &AgentState, exp: u64) -> String {
    let key = state.token.as_bytes();
    blake3::keyed_hash(key, format!("silver status page until {exp}").as_bytes())
        .to_hex()
        .to_string()
}

fn signed(state: &AgentState, query: Option<&str>) -> bool {
    let Some(query) = query else { return false };
    let Ok(q) = serde_urlencoded_query(query) else {
        return false;
    };
    let (Some(exp), Some(sig)) = (q.exp, q.sig) else {
        return false;
    };
    let now = crate::metrics::unix_now();
    if exp < now || exp > now + LINK_MAX_SECS {
        return false;
    }
    // Compared as BLAKE3 hashes: constant time.
    blake3::Hash::from_hex(&sig)
        .is_ok_and(|given| given == blake3::Hash::from_hex(sign(state, exp)).expect("hex"))
}

fn serde_urlencoded_query(query: &str) -> Result<LinkQuery, ()> {
    axum::extract::Query::<LinkQuery>::try_from_uri(&format!("/?{query}").parse().map_err(|_| ())?)
        .map(|q| q.0)
        .map_err(|_| ())
}
