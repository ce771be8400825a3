//! Every control route, sent hostile app names and ids in process (`app(state)` and tower's
//! `oneshot`, no socket): each must answer 4xx and leave the store exactly as it was. The
//! `{app}` routes are checked against the router's own source, so a new one cannot be missed.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use silver_node::agent::{app, AgentConfig, AgentState};
use silver_node::store::Store;
use tower::ServiceExt;

const TOKEN: &str = "test-token";

/// The store's whole tree, as (path, is_dir) pairs, to prove a request touched nothing.
fn tree(root: &std::path::Path) -> Vec<(String, bool)> {
    let mut all: Vec<(String, bool)> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| (e.path().display().to_string(), e.file_type().is_dir()))
        .collect();
    all.sort();
    all
}

fn router(root: &std::path::Path) -> axum::Router {
    let store = Store::open(root, packer::Limits::default()).unwrap();
    app(AgentState::new(
        store,
        TOKEN,
        AgentConfig::new(root.to_path_buf()),
    ))
}

/// Sends one request and returns its status and body text.
async fn send(
    router: &axum::Router,
    method: Method,
    uri: &str,
    body: &str,
) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The routes that take `{app}`, with a body each accepts when the name is good.
fn app_routes(app: &str) -> Vec<(Method, String, &'static str)> {
    let id = r#"{"id":"b3:0123456789ab","who":"t@test"}"#;
    vec![
        (Method::GET, format!("/v1/apps/{app}/releases"), ""),
        (Method::GET, format!("/v1/apps/{app}/logs?lines=5"), ""),
        (Method::POST, format!("/v1/apps/{app}/deploy"), id),
        (Method::POST, format!("/v1/apps/{app}/activate"), id),
        (
            Method::POST,
            format!("/v1/apps/{app}/rollback"),
            r#"{"who":"t@test"}"#,
        ),
        (
            Method::POST,
            format!("/v1/apps/{app}/maintenance"),
            r#"{"maintenance":true}"#,
        ),
        (
            Method::POST,
            format!("/v1/apps/{app}/pins"),
            r#"{"id":"0123456789ab","pinned":true}"#,
        ),
        (
            Method::POST,
            format!("/v1/apps/{app}/run"),
            r#"{"argv":["id"],"who":"t@test"}"#,
        ),
        (Method::POST, format!("/v1/apps/{app}/preflight"), "{}"),
        (Method::GET, format!("/v1/apps/{app}/cron"), ""),
        (
            Method::POST,
            format!("/v1/apps/{app}/cron/run"),
            r#"{"job":"tick"}"#,
        ),
        (Method::GET, format!("/v1/apps/{app}/tasks"), ""),
        (
            Method::POST,
            format!("/v1/apps/{app}/tasks/retry"),
            r#"{"ids":null}"#,
        ),
        (
            Method::POST,
            format!("/v1/apps/{app}/tasks/drop"),
            r#"{"ids":null}"#,
        ),
        (
            Method::POST,
            format!("/v1/apps/{app}/deactivate"),
            r#"{"location":"a.test","who":"t@test"}"#,
        ),
        (Method::GET, format!("/v1/apps/{app}/checkpoints"), ""),
        (Method::GET, format!("/v1/apps/{app}/config"), ""),
        (
            Method::POST,
            format!("/v1/apps/{app}/config"),
            r#"{"set":{"A":"1"},"who":"t@test"}"#,
        ),
        (Method::POST, format!("/v1/apps/{app}/backup?who=t"), ""),
        (Method::POST, format!("/v1/apps/{app}/restore?who=t"), ""),
        (Method::POST, format!("/v1/apps/{app}/clear?who=t"), ""),
        (Method::POST, format!("/v1/apps/{app}/app-config"), ""),
        (Method::GET, format!("/v1/apps/{app}/fleet"), ""),
        (
            Method::POST,
            format!("/v1/apps/{app}/fleet/prepare"),
            r#"{"deploy":"d","id":"b3:0123456789ab","who":"t@test","migrate":true,"confirm_within_secs":5}"#,
        ),
        (
            Method::POST,
            format!("/v1/apps/{app}/fleet/commit"),
            r#"{"deploy":"d","who":"t@test"}"#,
        ),
        (
            Method::POST,
            format!("/v1/apps/{app}/fleet/confirm"),
            r#"{"deploy":"d","who":"t@test"}"#,
        ),
        (
            Method::POST,
            format!("/v1/apps/{app}/fleet/abort"),
            r#"{"deploy":"d","who":"t@test"}"#,
        ),
    ]
}

/// The `{app}` routes the agent's router declares, read from its source: a route added there
/// and not to `app_routes` fails `every_app_route_is_attacked`.
fn declared_app_routes() -> std::collections::BTreeSet<String> {
    let source = include_str!("../src/agent/mod.rs");
    source
        .split(".route(")
        .skip(1)
        .filter_map(|rest| rest.split('"').nth(1))
        .filter(|path| path.starts_with("/v1/apps/{app}/"))
        .map(String::from)
        .collect()
}

#[test]
fn every_app_route_is_attacked() {
    let tested: std::collections::BTreeSet<String> = app_routes("{app}")
        .into_iter()
        .map(|(_, uri, _)| uri.split('?').next().unwrap().to_string())
        .collect();
    let declared = declared_app_routes();
    assert!(declared.len() >= 16, "{declared:?}");
    assert_eq!(tested, declared, "app_routes must list every {{app}} route");
}

fn long_name() -> String {
    "a".repeat(300)
}

/// Each `{app}` below is refused by a rule of `AppName`, as the answer must say.
const HOSTILE_NAMES: &[&str] = &[
    "..",
    "%2e%2e",
    "%2Ftmp",
    "%2F..%2F..%2Fetc",
    "a%2Fb",
    "a%00b",
    "Blog",
    "-rf",
    ".hidden",
    "%20",
    "a%20b",
    "%C3%A4",
];

#[tokio::test]
async fn hostile_app_names_get_400_and_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("node");
    let router = router(&root);
    let before = tree(&root);
    let long = long_name();
    let names = HOSTILE_NAMES.iter().copied().chain([long.as_str()]);
    for name in names {
        for (method, uri, body) in app_routes(name) {
            let (status, text) = send(&router, method.clone(), &uri, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {text}");
            assert!(text.contains("not an app name"), "{method} {uri}: {text}");
            assert!(text.contains("hint"), "{method} {uri}: {text}");
        }
    }
    assert_eq!(tree(&root), before, "a refused request changed the store");
}

/// Ids in bodies and paths: malformed ones are 400, well-formed unknown ones 404.
#[tokio::test]
async fn hostile_ids_get_4xx_and_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("node");
    let router = router(&root);
    let before = tree(&root);
    let full = "0".repeat(64);
    let bad_ids = [
        "../../etc/passwd".to_string(),
        "b3:".into(),
        "abc".into(),
        "0123456789A".into(),
        "0123456789AB".into(),
        format!("{full}0"),
        "b3:%2F..".into(),
        "0123456789ab\u{0}".into(),
    ];
    for id in &bad_ids {
        let body = serde_json::json!({"id": id, "who": "t@test"}).to_string();
        for route in ["deploy", "activate", "rollback"] {
            let (status, text) = send(
                &router,
                Method::POST,
                &format!("/v1/apps/blog/{route}"),
                &body,
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{route} {id:?}: {text}");
            assert!(
                text.contains("not an artifact id"),
                "{route} {id:?}: {text}"
            );
        }
        let pin = serde_json::json!({"id": id, "pinned": true}).to_string();
        let (status, text) = send(&router, Method::POST, "/v1/apps/blog/pins", &pin).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "pins {id:?}: {text}");
    }
    for id in [
        "..",
        "%2F..%2F..",
        "b3:0123456789ab",
        "B3:%2e%2e",
        &full[..63],
    ] {
        let (status, text) = send(&router, Method::PUT, &format!("/v1/artifacts/{id}"), "x").await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "PUT artifacts/{id}: {text}"
        );
        let (status, text) = send(
            &router,
            Method::POST,
            &format!("/v1/artifacts/{id}/commit"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "commit {id}: {text}");
    }
    // Well-formed but not on this node: 404, still nothing created.
    let body = r#"{"id":"b3:0123456789ab","who":"t@test"}"#;
    let (status, text) = send(&router, Method::POST, "/v1/apps/blog/deploy", body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("no artifact on this node"), "{text}");
    let (status, text) = send(&router, Method::GET, "/v1/apps/blog/releases", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("never been deployed"), "{text}");
    let (status, text) = send(
        &router,
        Method::POST,
        "/v1/apps/blog/rollback",
        r#"{"who":"t"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("never been deployed"), "{text}");
    assert_eq!(tree(&root), before, "a refused request changed the store");
}

#[tokio::test]
async fn hostile_locations_get_400_and_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("node");
    let router = router(&root);
    let before = tree(&root);
    for location in ["http://example.com/", "", "/blog", "exa mple.com", "a/../b"] {
        let body = serde_json::json!({
            "id": "b3:0123456789ab", "who": "t@test", "locations": [location]
        })
        .to_string();
        for route in ["deploy", "activate"] {
            let uri = format!("/v1/apps/blog/{route}");
            let (status, text) = send(&router, Method::POST, &uri, &body).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{route} {location:?}: {text}"
            );
            assert!(text.contains("location"), "{route} {location:?}: {text}");
        }
    }
    assert_eq!(tree(&root), before, "a refused request changed the store");
}

#[tokio::test]
async fn requests_without_the_token_are_401() {
    let tmp = tempfile::tempdir().unwrap();
    let router = router(&tmp.path().join("node"));
    for (method, uri, body) in app_routes("blog") {
        let request = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .body(Body::from(body))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {uri}"
        );
    }
}
