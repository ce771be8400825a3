//! The shedder: ends the requests that hold an app's workers far longer than its normal latency
//! while other requests wait for a worker, so a few wedged requests cannot starve the rest when
//! their clients wait for an answer instead of hanging up.
//!
//! A worker pool serves `capacity` requests at once; the rest queue. A request that busy-loops,
//! deadlocks or sleeps holds its worker until `request_timeout` (30 s by default), and at 1% of
//! the load the pool is soon all wedges. uWSGI's `harakiri` and mod_wsgi's `request-timeout`
//! bound that with one fixed limit, which must be long enough for the slowest legitimate page.
//! This instead follows the app: while requests queue, one that has run more than
//! [`FACTOR`] times the app's normal latency (the best 95th percentile of its 10-s windows
//! over the last five minutes; never less than [`FLOOR`]) is answered
//! with a 503 and its connection to the app closed, which ends the worker holding it; the
//! oldest go first, and never more than are waiting. With no queue nothing is ended: a slow
//! request that keeps no one waiting runs to `request_timeout`. Paths an app marks slow by
//! design (`slow_paths` in app.ini) are never ended early.

use std::sync::Weak;
use std::time::Duration;

use crate::logs::LogSink;
use crate::router::Backend;

/// How far past the app's normal latency (its best recent p95) a request must run to be ended
/// while others wait: ten times is far outside any tail a healthy app has.
pub const FACTOR: u32 = 10;
/// Never end a request younger than this, however fast the app normally is: a fresh worker
/// costs a fork, and a worker ends itself only once its request has run this long
/// (`silver_wsgi.py`, the PHP gateway).
pub const FLOOR: Duration = Duration::from_millis(50);
/// How often it looks while requests queue (they turn old by age alone): at 1% of 3,000
/// requests a second, each millisecond a wedge is held costs 3% of a worker.
const TICK: Duration = Duration::from_millis(10);

/// The shedder for one backend: runs until the backend is dropped. `timeout` is the app's
/// `request_timeout`, past which the router ends requests anyway.
pub async fn run(backend: Weak<Backend>, timeout: Duration, log: LogSink, label: String) {
    let Some(mut in_flight) = backend.upgrade().map(|b| b.watch_in_flight()) else {
        return;
    };
    loop {
        let queued = match backend.upgrade() {
            Some(b) => b.queued(),
            None => return,
        };
        // No queue, nothing to end: sleep until the count of requests changes.
        if queued == 0 {
            if in_flight.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::time::sleep(TICK).await;
        let Some(b) = backend.upgrade() else { return };
        let Some(limit) = b.normal_ms().map(|ms| limit(ms, timeout)) else {
            continue; // too few answers yet to know what normal is
        };
        let waiting = b.queued();
        let ended = b.shed_older_than(limit, waiting);
        if ended > 0 {
            let line = format!(
                "[silver] ended {ended} request(s) running past {} ms ({FACTOR}× the app's normal p95) while {waiting} waited",
                limit.as_millis()
            );
            log.line(&label, &line);
        }
    }
}

/// The age past which a request is ended while others wait, given the app's recent p95.
pub fn limit(p95_ms: u64, timeout: Duration) -> Duration {
    let scaled = Duration::from_millis(p95_ms.saturating_mul(FACTOR as u64));
    scaled.clamp(FLOOR, timeout.max(FLOOR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{AppRoute, Routes};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use std::sync::Arc;
    use tower::ServiceExt;

    /// An app that answers at once, except `/wedge` and `/slow/…`, which never answer.
    async fn app() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
            if uri.path() == "/wedge" || uri.path().starts_with("/slow") {
                std::future::pending::<()>().await;
            }
            "ok"
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    fn get(path: &str) -> Request<Body> {
        Request::get(path)
            .header("host", "shed.test")
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_wedge_is_ended_while_others_wait_but_a_slow_path_is_not() {
        let backend = crate::router::Backend::new(app().await, 1);
        let routes = Routes::default();
        let route = AppRoute {
            locations: vec![silver_types::appconfig::Location::parse("shed.test").unwrap()],
            backend: Some(backend.clone()),
            request_timeout: Some(Duration::from_secs(30)),
            slow_paths: vec!["/slow/".into()],
            ..AppRoute::default()
        };
        routes.set(&silver_types::AppName::parse("shed").unwrap(), route);
        let front = crate::router::front(routes, None);
        // What normal is: 150 quick answers.
        for _ in 0..150 {
            let answer = front.clone().oneshot(get("/ok")).await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
        }
        assert!(backend.normal_ms().is_some_and(|ms| ms <= 5));
        let log = crate::logs::LogSink::Stderr { prefix: "t".into() };
        tokio::spawn(run(
            Arc::downgrade(&backend),
            Duration::from_secs(30),
            log,
            "t".into(),
        ));
        // A slow path and a wedge hold the one worker while a third request waits.
        let slow = tokio::spawn(front.clone().oneshot(get("/slow/report")));
        let wedge = tokio::spawn(front.clone().oneshot(get("/wedge")));
        let waiting = tokio::spawn(front.clone().oneshot(get("/wedge")));
        let ended = tokio::time::timeout(Duration::from_secs(5), wedge).await;
        let ended = ended.expect("the wedge was not ended").unwrap().unwrap();
        assert_eq!(ended.status(), StatusCode::SERVICE_UNAVAILABLE);
        // The second wedge goes too: it is then the old one others wait behind…
        let ended = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        let ended = ended
            .expect("the second wedge was not ended")
            .unwrap()
            .unwrap();
        assert_eq!(ended.status(), StatusCode::SERVICE_UNAVAILABLE);
        // …but the slow path is never ended early, queue or not.
        assert!(!slow.is_finished(), "a slow path was ended early");
        assert_eq!(backend.stats().deadline_ends, 2);
        slow.abort();
    }

    fn check(p95_ms: u64, timeout_secs: u64, expected_ms: u64) {
        let got = limit(p95_ms, Duration::from_secs(timeout_secs));
        assert_eq!(got, Duration::from_millis(expected_ms), "p95 {p95_ms} ms");
    }

    #[test]
    fn the_limit_follows_the_app_between_the_floor_and_the_deadline() {
        check(1, 30, 50);
        check(5, 30, 50);
        check(10, 30, 100);
        check(20, 30, 200);
        check(50, 30, 500);
        check(1_000, 30, 10_000);
        check(5_000, 30, 30_000);
        check(u64::MAX, 30, 30_000);
    }
}
