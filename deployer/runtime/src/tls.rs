//! The front door's certificates: which one each TLS handshake gets (by SNI: the exact host,
//! then `*.parent`), the TLS-ALPN-01 challenge certificates, and the HTTP-01 answers. All are
//! swapped in place: a new certificate serves the next handshake, while connections already
//! open keep theirs, so a renewal drops none.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use silver_types::Said;

/// The ALPN protocol of a TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Certificates and challenge answers, shared by the front door, the router and the agent.
#[derive(Debug, Default)]
pub struct Certs {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By host name as a location names it: `app.example.com` or `*.example.com`.
    by_host: HashMap<String, Arc<CertifiedKey>>,
    /// TLS-ALPN-01 answers by host, shown only to a handshake that asks for `acme-tls/1`.
    alpn: HashMap<String, Arc<CertifiedKey>>,
    /// HTTP-01 answers: token to key authorization.
    http01: HashMap<String, String>,
}

/// A chain and key that do not make a certificate the front door can serve.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {said}")]
pub struct BadCert {
    pub what: String,
    pub said: Said,
}

impl Certs {
    /// Serves `chain_pem` with `key_pem` for `host` from the next handshake on.
    pub fn install(&self, host: &str, key: Arc<CertifiedKey>) {
        self.write().by_host.insert(host.to_string(), key);
    }

    pub fn remove(&self, host: &str) {
        self.write().by_host.remove(host);
    }

    /// Whether a handshake for `host` gets a certificate (its own or a wildcard's).
    pub fn serves(&self, host: &str) -> bool {
        lookup(&self.read().by_host, host).is_some()
    }

    pub fn set_alpn(
        &self,
        host: &str,
        cert_der: Vec<u8>,
        key_pkcs8: Vec<u8>,
    ) -> Result<(), BadCert> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8));
        // Not `certified`: its check parses the certificate as webpki does, which refuses the
        // critical `acmeIdentifier` extension RFC 8737 requires. The key is our own, just made.
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| BadCert {
                what: host.to_string(),
                said: Said::new(&e.to_string(), &[]),
            })?;
        let key = Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(cert_der)],
            signing,
        ));
        self.write().alpn.insert(host.to_string(), key);
        Ok(())
    }

    pub fn clear_alpn(&self, host: &str) {
        self.write().alpn.remove(host);
    }

    pub fn set_http01(&self, token: &str, key_authorization: &str) {
        self.write()
            .http01
            .insert(token.to_string(), key_authorization.to_string());
    }

    pub fn clear_http01(&self, token: &str) {
        self.write().http01.remove(token);
    }

    /// The key authorization for an HTTP-01 token, while its order is under way.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.read().http01.get(token).cloned()
    }

    /// rustls's server side: HTTP/2 and HTTP/1.1 by ALPN, and `acme-tls/1` for validations.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        // Returning clients resume instead of paying for a full handshake: stateless tickets
        // (keys rotated every 6 hours, kept in memory only), as nginx and Caddy do by default,
        // and a larger cache of sessions by id for clients that do not take tickets.
        match rustls::crypto::ring::Ticketer::new() {
            Ok(ticketer) => config.ticketer = ticketer,
            Err(e) => tracing::warn!(error = %e, "TLS session tickets are off"),
        }
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(8192);
        // One ticket per handshake, as Caddy (Go's crypto/tls) sends and OpenSSL after a
        // resumption: rustls's default of two doubles what a returning client must decrypt and
        // store on every connection, for a second parallel resumption few clients make.
        config.send_tls13_tickets = 1;
        Arc::new(config)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // No SNI, no certificate: guessing one would show a host's name to whoever asks.
        let host = hello.server_name()?.to_ascii_lowercase();
        let validation = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        let inner = self.read();
        if validation {
            return inner.alpn.get(&host).cloned();
        }
        lookup(&inner.by_host, &host)
    }
}

/// The host's own certificate, else the wildcard one label up.
fn lookup(map: &HashMap<String, Arc<CertifiedKey>>, host: &str) -> Option<Arc<CertifiedKey>> {
    if let Some(key) = map.get(host) {
        return Some(key.clone());
    }
    let (_, parent) = host.split_once('.')?;
    map.get(&format!("*.{parent}")).cloned()
}

/// Checks a PEM chain and key and makes what a handshake serves: refuses a key that does not
/// fit the certificate (the handshake would fail for every client, long after the change).
pub fn certified_key(
    what: &str,
    chain_pem: &str,
    key_pem: &str,
) -> Result<Arc<CertifiedKey>, BadCert> {
    let bad = |why: String| BadCert {
        what: what.to_string(),
        said: Said::new(&why, &[]),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("the certificate's PEM does not parse: {e}")))?;
    if chain.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    // Only whether it parses: a key never goes into an error, even in part.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| bad("no usable private key in the key file".into()))?;
    certified(what, chain, key)
}

fn certified(
    what: &str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, BadCert> {
    let bad = |why: String| BadCert {
        what: what.to_string(),
        said: Said::new(&why, &[]),
    };
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| bad(format!("the key does not fit the certificate: {e}")))?;
    Ok(Arc::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(names: &[&str]) -> Arc<CertifiedKey> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        certified_key("test", &cert.pem(), &key.serialize_pem()).unwrap()
    }

    #[test]
    fn exact_host_then_the_wildcard_one_label_up() {
        let map = HashMap::from([
            ("a.example.com".to_string(), key(&["a.example.com"])),
            ("*.example.com".to_string(), key(&["*.example.com"])),
        ]);
        let exact = lookup(&map, "a.example.com").unwrap();
        assert!(Arc::ptr_eq(&exact, &map["a.example.com"]));
        let wild = lookup(&map, "b.example.com").unwrap();
        assert!(Arc::ptr_eq(&wild, &map["*.example.com"]));
        assert!(lookup(&map, "x.b.example.com").is_none());
        assert!(lookup(&map, "example.com").is_none());
    }

    #[test]
    fn a_key_that_does_not_fit_is_refused() {
        let a = rcgen::KeyPair::generate().unwrap();
        let b = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_string()])
            .unwrap()
            .self_signed(&a)
            .unwrap();
        let e = certified_key("a.test", &cert.pem(), &b.serialize_pem()).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        let e = certified_key("a.test", "nonsense", &a.serialize_pem()).unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
    }
}
