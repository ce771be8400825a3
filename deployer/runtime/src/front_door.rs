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
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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

/// Serves `router` on `listener` over plain HTTP/1.1 until `shutdown` resolves, then lets
/// requests in flight finish (the caller bounds that wait). Never returns an error: a failed
/// accept is logged and retried.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: FrontConfig,
    shutdown: impl Future<Output = ()> + Send,
) {
    accept_loop(listener, &config, shutdown, |tcp, addr, stop| {
        let service = service(&router, addr, Scheme::Http);
        let builder = builder(&config, Protocol::Http1);
        async move { drive(builder, TokioIo::new(tcp), service, addr, stop).await }
    })
    .await
}

/// As [`serve`], over TLS: the certificate by SNI from `certs`, then HTTP/2 or HTTP/1.1 as
/// ALPN chose. A handshake for a TLS-ALPN-01 validation ends there: the CA has seen what it
/// came for.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    config: FrontConfig,
    certs: Arc<crate::tls::Certs>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config());
    accept_loop(listener, &config, shutdown, |tcp, addr, stop| {
        let acceptor = acceptor.clone();
        let router = router.clone();
        let config = config.clone();
        async move {
            // The handshake shares the header deadline: a client that opens a connection and
            // sends nothing holds it no longer than one that sends half a request.
            let tls = match tokio::time::timeout(config.header_timeout, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(client = %addr, error = %e, "front door: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %addr, "front door: TLS handshake timed out");
                    return;
                }
            };
            let protocol = match tls.get_ref().1.alpn_protocol() {
                Some(crate::tls::ACME_TLS_ALPN) => return,
                Some(b"h2") => Protocol::Http2,
                _ => Protocol::Http1,
            };
            let service = service(&router, addr, Scheme::Https);
            drive(
                builder(&config, protocol),
                TokioIo::new(tls),
                service,
                addr,
                stop,
            )
            .await
        }
    })
    .await
}

/// The scheme a request arrived over, as an extension the router reads: it decides the
/// forwarded `X-Forwarded-Proto`, and whether an app's HTTPS policy redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

/// Accepts connections until `shutdown`, holds each client address to its share of them, and
/// hands each to `connection` in a task of its own; then tells those tasks to finish and waits.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    config: &FrontConfig,
    shutdown: impl Future<Output = ()> + Send,
    connection: F,
) where
    F: Fn(tokio::net::TcpStream, SocketAddr, tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
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
        let served = connection(tcp, addr, stop_rx.clone());
        tracker.spawn(async move {
            let _slot = slot;
            served.await
        });
    }
    let _ = stop_tx.send(true);
    tracker.close();
    tracker.wait().await;
}

/// Serves one connection; when the agent stops, finishes the request in flight, then closes
/// instead of keeping alive.
async fn drive<I, S>(
    builder: hyper_util::server::conn::auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    addr: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection_with_upgrades(io, service);
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        _ = async { let _ = stop.wait_for(|stop| *stop).await; } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(client = %addr, error = %e, "front door: connection ended");
    }
}

/// HTTP/1.1 with a deadline for the headers: a client that sends them byte by byte, or never
/// finishes them, is cut off instead of holding a connection open for ever (slowloris). HTTP/2
/// only where ALPN chose it.
fn builder(
    config: &FrontConfig,
    protocol: Protocol,
) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let mut builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    builder
}

/// The router as a hyper service, with the client's address where `ConnectInfo` looks for it.
fn service(
    router: &Router,
    addr: SocketAddr,
    scheme: Scheme,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future + Send,
> + Clone {
    let router = router.clone();
    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(addr));
        request.extensions_mut().insert(scheme);
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
