//! The certificate and status routes in process (`app(state)` and `oneshot`): hostile hosts,
//! keys, certificates and HTTP-01 tokens are refused with nothing written; the status page
//! opens with a signed link and with nothing else.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use silver_node::agent::{app, AgentConfig, AgentState};
use silver_node::store::Store;
use tower::ServiceExt;

const TOKEN: &str = "test-token";

fn router(root: &std::path::Path) -> axum::Router {
    let store = Store::open(root, packer::Limits::default()).unwrap();
    app(AgentState::new(
        store,
        TOKEN,
        AgentConfig::new(root.to_path_buf()),
    ))
}

async fn send(
    router: &axum::Router,
    method: Method,
    uri: &str,
    body: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 8 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn cert(names: &[&str], days: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(2);
    params.not_after = now + time::Duration::days(days);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn upload(host: &str, chain: &str, key: &str) -> String {
    serde_json::json!({ "host": host, "chain_pem": chain, "key_pem": key }).to_string()
}

/// (host, chain, key) that must be refused, and a word the refusal must hold.
fn check(
    router: &axum::Router,
    root: &std::path::Path,
    host: &str,
    chain: &str,
    key: &str,
    says: &str,
) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, body) = rt.block_on(send(
        router,
        Method::POST,
        "/v1/certs",
        &upload(host, chain, key),
        Some(TOKEN),
    ));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{host}: {body}");
    assert!(body.contains(says), "{host}: {body}");
    assert!(!body.contains("PRIVATE KEY"), "a key in an error: {body}");
    assert!(!root.join("tls").exists(), "{host}: something was written");
}

#[test]
fn hostile_certificate_uploads_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("node");
    let router = router(&root);
    let (chain, key) = cert(&["a.test"], 30);
    let (_, other_key) = cert(&["a.test"], 30);
    let (expired, expired_key) = cert(&["a.test"], -1);
    check(
        &router,
        &root,
        "../../etc/passwd",
        &chain,
        &key,
        "is not a host name",
    );
    check(&router, &root, "*", &chain, &key, "is not a host name");
    check(&router, &root, "127.0.0.1", &chain, &key, "is an address");
    check(&router, &root, "a.test", &chain, &other_key, "does not fit");
    check(
        &router,
        &root,
        "a.test",
        "not pem",
        &key,
        "no PEM certificate",
    );
    check(
        &router,
        &root,
        "a.test",
        &chain,
        "not a key",
        "no PEM private key",
    );
    check(&router, &root, "b.test", &chain, &key, "not b.test");
    check(&router, &root, "*.test", &chain, &key, "not *.test");
    check(&router, &root, "a.test", &expired, &expired_key, "expired");
    // A good one is stored 0600 under a 0700 directory, and listed.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, body) = rt.block_on(send(
        &router,
        Method::POST,
        "/v1/certs",
        &upload("a.test", &chain, &key),
        Some(TOKEN),
    ));
    assert_eq!(status, StatusCode::OK, "{body}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root.join("tls")), 0o700);
    assert_eq!(mode(&root.join("tls/operator/a.test.pem")), 0o600);
    let (_, listed) = rt.block_on(send(&router, Method::GET, "/v1/certs", "", Some(TOKEN)));
    assert!(listed.contains("\"source\":\"operator\""), "{listed}");
    let (status, _) = rt.block_on(send(
        &router,
        Method::DELETE,
        "/v1/certs/nothing.test",
        "",
        Some(TOKEN),
    ));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = rt.block_on(send(&router, Method::GET, "/v1/certs", "", None));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn http01_answers_must_be_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let router = router(&tmp.path().join("node"));
    let good = "abcdefghijklmnop_-0123456789";
    let cases = [
        ("{\"token\":\"../../x\",\"key_authorization\":\"../../x.y\"}".to_string(), StatusCode::BAD_REQUEST),
        (format!("{{\"token\":\"{good}\",\"key_authorization\":\"<script>alert(1)</script>\"}}"), StatusCode::BAD_REQUEST),
        (format!("{{\"token\":\"{good}\",\"key_authorization\":\"{good}.thumbprint_of_the_account\"}}"), StatusCode::OK),
    ];
    for (body, want) in cases {
        let (status, text) =
            send(&router, Method::PUT, "/v1/acme/http-01", &body, Some(TOKEN)).await;
        assert_eq!(status, want, "{body}: {text}");
    }
    let (status, _) = send(
        &router,
        Method::DELETE,
        "/v1/acme/http-01/..%2F..%2Fx",
        "",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_status_page_opens_with_a_signed_link_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let router = router(&tmp.path().join("node"));
    let (status, body) = send(
        &router,
        Method::POST,
        "/v1/status/link",
        "{\"minutes\":5}",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let link: serde_json::Value = serde_json::from_str(&body).unwrap();
    let path = link["path"].as_str().unwrap();
    let (status, html) = send(&router, Method::GET, path, "", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("id=verdict") && html.contains("<svg class=graph"),
        "{html}"
    );
    let tampered = path.replace("exp=", "exp=1");
    let (status, _) = send(&router, Method::GET, &tampered, "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A link opens the page only: not the figures' API, not the control API.
    let query = path.trim_start_matches("/status");
    for other in ["/metrics", "/v1/status", "/v1/certs"] {
        let (status, _) = send(&router, Method::GET, &format!("{other}{query}"), "", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{other}");
    }
    let (status, text) = send(&router, Method::GET, "/metrics", "", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("# TYPE node_load1 gauge"), "{text}");
}
