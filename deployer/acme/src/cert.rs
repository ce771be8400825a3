//! A certificate as the front door serves it: the chain and key in PEM, what it is for and when
//! it ends; and the short-lived certificate that answers a TLS-ALPN-01 challenge.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use silver_types::Said;

use crate::error::Error;
use crate::host::CertHost;

/// A certificate chain (leaf first) and its private key, with the leaf's names and validity.
#[derive(Debug, Clone)]
pub struct Cert {
    pub chain_pem: String,
    pub key_pem: String,
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The leaf's serial number in hex: tells one issuance from the next.
    pub serial: String,
}

impl Cert {
    /// Reads a chain and key given as PEM; `what` names them in errors (a file, a host).
    pub fn parse(what: &str, chain_pem: &str, key_pem: &str) -> Result<Cert, Error> {
        let bad = |why: String| Error::BadCert {
            what: what.to_string(),
            said: Said::new(&why, &[]),
        };
        let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .next()
            .ok_or_else(|| bad("it holds no PEM certificate".into()))?
            .map_err(|e| bad(format!("its PEM does not parse: {e}")))?;
        // Only whether a key is there: the key is never put in an error, even in part.
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|_| bad("the key file holds no PEM private key".into()))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&leaf)
            .map_err(|e| bad(format!("the certificate does not parse: {e}")))?;
        let validity = x509.validity();
        let names = match x509.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        Some(d.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Cert {
            chain_pem: chain_pem.to_string(),
            key_pem: key_pem.to_string(),
            names,
            not_before: at(validity.not_before.timestamp()),
            not_after: at(validity.not_after.timestamp()),
            serial: x509.raw_serial_as_string().replace(':', ""),
        })
    }

    /// Whether one of the certificate's names serves `host`.
    pub fn covers(&self, host: &str) -> bool {
        self.names
            .iter()
            .filter_map(|n| CertHost::parse(n).ok())
            .any(|n| n.covers(host))
    }

    /// When to renew: two thirds into its life, less a jitter of up to a twentieth of it. The
    /// jitter comes from the serial, so every certificate of a fleet's many renews at its own
    /// moment, and a restart does not move it.
    pub fn renew_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        let hash = blake3::hash(self.serial.as_bytes());
        let fraction =
            u16::from_le_bytes([hash.as_bytes()[0], hash.as_bytes()[1]]) as f64 / u16::MAX as f64;
        let jitter = life.mul_f64(fraction / 20.0);
        self.not_before + life * 2 / 3 - jitter
    }

    /// Seconds since the epoch at which it ends.
    pub fn not_after_unix(&self) -> u64 {
        unix(self.not_after)
    }
}

/// The self-signed certificate a TLS-ALPN-01 validation sees (RFC 8737): the host as its only
/// name and the key authorization's digest in the `acmeIdentifier` extension.
pub struct ChallengeCert {
    pub cert_der: Vec<u8>,
    /// PKCS#8.
    pub key_der: Vec<u8>,
}

pub fn alpn_challenge_cert(host: &str, digest: &[u8]) -> Result<ChallengeCert, Error> {
    let fail = |e: rcgen::Error| Error::Answer {
        host: host.to_string(),
        challenge: crate::Challenge::TlsAlpn01,
        said: Said::new(&e.to_string(), &[]),
    };
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()]).map_err(fail)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok(ChallengeCert {
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    })
}

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64)
}

pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str], days: i64) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let now = rcgen::date_time_ymd(2026, 1, 1);
        params.not_before = now;
        params.not_after = now + time_days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn time_days(days: i64) -> time::Duration {
        time::Duration::days(days)
    }

    #[test]
    fn reads_names_validity_and_a_renewal_two_thirds_in() {
        let (chain, key) = self_signed(&["a.example.com", "*.b.example.com"], 90);
        let cert = Cert::parse("test", &chain, &key).unwrap();
        assert_eq!(cert.names, ["a.example.com", "*.b.example.com"]);
        assert!(cert.covers("a.example.com") && cert.covers("x.b.example.com"));
        assert!(!cert.covers("b.example.com"));
        let life = cert.not_after.duration_since(cert.not_before).unwrap();
        assert_eq!(life, Duration::from_secs(90 * 86400));
        let at = cert.renew_at().duration_since(cert.not_before).unwrap();
        assert!(
            at <= life * 2 / 3 && at >= life * 2 / 3 - life / 20,
            "{at:?}"
        );
    }

    #[test]
    fn refuses_what_is_not_a_certificate_and_never_repeats_the_key() {
        let (chain, key) = self_signed(&["a.example.com"], 1);
        let e = Cert::parse("cert.pem", "hello", &key).unwrap_err();
        assert!(e.to_string().contains("cert.pem"), "{e}");
        let e =
            Cert::parse("cert.pem", &chain, "-----BEGIN PRIVATE KEY-----\nsecret\n").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn the_challenge_cert_names_the_host() {
        let c = alpn_challenge_cert("a.example.com", &[7; 32]).unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(&c.cert_der).unwrap();
        let acme_oid = x509_parser::oid_registry::Oid::from(&[1, 3, 6, 1, 5, 5, 7, 1, 31]).unwrap();
        assert!(x509
            .extensions()
            .iter()
            .any(|e| e.oid == acme_oid && e.critical));
    }
}
