//! The Bearer scheme end to end over HTTP on loopback: a registry that answers 401 with a
//! challenge, and a token service that trades the user's credentials for a token scoped to the
//! repository. (Debian's docker-registry has no token service of its own; this one speaks the
//! distribution spec's token protocol, in process.)

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use silver_registry::{Reference, Registry, RegistryConfig};

const MANIFEST: &str = r#"{"schemaVersion":2}"#;

#[derive(Clone)]
struct Realm {
    base: Arc<String>,
}

async fn manifest(State(realm): State<Realm>, headers: HeaderMap) -> impl IntoResponse {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer t0k3n") {
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            MANIFEST,
        )
            .into_response();
    }
    let challenge = format!(
        "Bearer realm=\"{}/token\",service=\"test-registry\",scope=\"repository:team/app:pull\"",
        realm.base
    );
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", challenge)],
        "",
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    service: String,
    scope: String,
}

async fn token(Query(q): Query<TokenQuery>, headers: HeaderMap) -> impl IntoResponse {
    // "ci:s3cret", as Basic.
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok());
    if basic != Some("Basic Y2k6czNjcmV0")
        || q.service != "test-registry"
        || q.scope != "repository:team/app:pull"
    {
        return (StatusCode::UNAUTHORIZED, "{}").into_response();
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        r#"{"token":"t0k3n"}"#,
    )
        .into_response()
}

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/v2/team/app/manifests/{target}", get(manifest))
        .route("/token", get(token))
        .with_state(Realm {
            base: Arc::new(base.clone()),
        });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base.trim_start_matches("http://").to_string()
}

fn config(dir: &std::path::Path, registry: &str, password: &str) -> RegistryConfig {
    let auth = dir.join("auth.json");
    std::fs::write(
        &auth,
        format!(r#"{{"auths": {{"{registry}": {{"username": "ci", "password": "{password}"}}}}}}"#),
    )
    .unwrap();
    RegistryConfig {
        auth_files: vec![auth],
        ..RegistryConfig::default()
    }
}

#[tokio::test]
async fn a_bearer_challenge_is_answered_with_a_token_for_the_repository() {
    let addr = serve().await;
    let tmp = tempfile::tempdir().unwrap();
    let reference = Reference::parse(&format!("{addr}/team/app:v1")).unwrap();

    let registry = Registry::connect(&reference, &config(tmp.path(), &addr, "s3cret")).unwrap();
    let (bytes, _) = registry.manifest(&reference).await.unwrap();
    assert_eq!(bytes, MANIFEST.as_bytes());

    let registry = Registry::connect(&reference, &config(tmp.path(), &addr, "wrong")).unwrap();
    let e = registry.manifest(&reference).await.unwrap_err().to_string();
    assert!(e.contains("refused the ones given"), "{e}");
    assert!(!e.contains("wrong"), "a password in a message: {e}");

    let none = RegistryConfig {
        auth_files: vec![],
        ..RegistryConfig::default()
    };
    let e = Registry::connect(&reference, &none)
        .unwrap()
        .manifest(&reference)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("none were found"), "{e}");
}
