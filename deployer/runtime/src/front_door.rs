//! The front door's connection handling: accepts public connections, holds each client address
//! to a number of them, gives every connection a deadline for its headers, and serves HTTP/1.1
//! with upgrades through the router (`router::front`). The router decides what a request means;
//! this module decides which connections may speak at all.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Limits on public connections.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// A connection whose request headers are not complete within this is closed.
    pub header_timeout: Duration,
    /// Open connections allowed from one client address; more are closed at once.
    pub max_client_connections: usize,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            header_timeout: Duration::from_secs(30),
            max_client_connections: 512,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight finish
/// (the caller bounds that wait). Never returns an error: a failed accept is logged and retried.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: FrontConfig,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tracker = tokio_util::task::TaskTracker::new();
    let counts = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "front door: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Blocks one client address from holding every connection the node can keep open
        // (a slow-header flood from one host).
        let Some(slot) = Slot::take(&counts, addr.ip(), config.max_client_connections) else {
            tracing::debug!(client = %addr.ip(), "front door: too many connections from one client");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let connection = http1(&config)
            .serve_connection(TokioIo::new(tcp), service(&router, addr))
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = async { let _ = stop.wait_for(|stop| *stop).await; } => {
                    // Finishes the request in flight, then closes instead of keeping alive.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(client = %addr, error = %e, "front door: connection ended");
            }
        });
    }
    let _ = stop_tx.send(true);
    tracker.close();
    tracker.wait().await;
}

/// HTTP/1.1 with a deadline for the headers: a client that sends them byte by byte, or never
/// finishes them, is cut off instead of holding a connection open for ever (slowloris).
fn http1(config: &FrontConfig) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true);
    builder
}

/// The router as a hyper service, with the client's address where `ConnectInfo` looks for it.
fn service(
    router: &Router,
    addr: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future + Send,
> + Clone {
    let router = router.clone();
    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(addr));
        router.clone().oneshot(request.map(axum::body::Body::new))
    })
}

/// One open connection counted against its client address; gives the place back when dropped.
struct Slot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Slot {
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut map = counts
            .lock()
            .expect("the connection count is never poisoned");
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .expect("the connection count is never poisoned");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_client_and_given_back() {
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = Slot::take(&counts, a, 2).unwrap();
        let _second = Slot::take(&counts, a, 2).unwrap();
        assert!(
            Slot::take(&counts, a, 2).is_none(),
            "a third from one client"
        );
        assert!(
            Slot::take(&counts, b, 2).is_some(),
            "another client is not held up"
        );
        drop(first);
        assert!(
            Slot::take(&counts, a, 2).is_some(),
            "a closed connection frees its place"
        );
    }
}
