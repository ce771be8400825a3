//! TLS for the control API (rustls with the ring provider): the agent's listener that completes
//! each handshake before axum sees the connection, and the PEM loading both sides need.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::error::Error;

/// A slow or silent client may not hold the accept loop longer than this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the server side from a certificate chain and a private key, both PEM.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, Error> {
    let bad = |path: &Path, why: String| Error::BadTls {
        path: path.to_path_buf(),
        why: silver_types::Said::new(&why, &[]),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no certificate in it".into()));
    }
    check_private(key)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad(key, format!("no usable private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad(cert, format!("certificate and key do not fit: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TCP listener whose connections come out already through the TLS handshake.
pub struct TlsListener {
    pub tcp: TcpListener,
    pub acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(e)) => tracing::warn!(%addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::warn!(%addr, "TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Refuses a token or key file other users can read or change (see `safefs::too_open`).
pub(crate) fn check_private(path: &std::path::Path) -> Result<(), Error> {
    match safefs::too_open(path) {
        Ok(None) => Ok(()),
        Ok(Some(mode)) => Err(Error::TooOpen {
            path: path.to_path_buf(),
            mode,
        }),
        Err(e) => Err(Error::io(path, e)),
    }
}
