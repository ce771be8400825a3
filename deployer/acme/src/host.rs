//! `CertHost`: a name a certificate can be for, parsed where it enters.

use std::fmt;

use crate::error::Error;

/// A DNS name in lower case (`app.example.com`) or a wildcard over one label (`*.example.com`).
/// Never an address, the catch-all `*`, or a name with an empty label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct CertHost(String);

impl CertHost {
    pub fn parse(given: &str) -> Result<CertHost, Error> {
        let bad = |why| Error::BadHost {
            given: given.to_string(),
            why,
        };
        let name = given.trim_end_matches('.').to_ascii_lowercase();
        let labels = name.strip_prefix("*.").unwrap_or(&name);
        if name.len() > 253 || labels.is_empty() {
            return Err(bad("is not a host name"));
        }
        if labels.parse::<std::net::IpAddr>().is_ok() {
            return Err(bad("is an address; certificates here are for host names"));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !labels.split('.').all(label_ok) {
            return Err(bad(
                "is not a host name (letters, digits and `-` in dot-separated labels)",
            ));
        }
        Ok(CertHost(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `*.example.com`: ACME issues these only over DNS-01, which needs the DNS provider's API.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// Why no ACME CA issues a certificate for this name over HTTP-01 or TLS-ALPN-01, or None
    /// if one may.
    pub fn acme_refusal(&self) -> Option<String> {
        if self.is_wildcard() {
            return Some(format!("ACME cannot issue {self}: CAs issue wildcards only over DNS-01, which needs your DNS provider's API, and silver answers HTTP-01 and TLS-ALPN-01"));
        }
        let name = self.0.as_str();
        let local = !name.contains('.')
            || [".localhost", ".local", ".invalid", ".internal"]
                .iter()
                .any(|s| name.ends_with(s));
        local.then(|| format!("{self} is not a public name: ACME CAs do not issue for it"))
    }

    /// Whether a certificate for this name serves `host` (one label under a wildcard).
    pub fn covers(&self, host: &str) -> bool {
        match self.0.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .and_then(|label| label.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            None => self.0 == host,
        }
    }
}

impl fmt::Display for CertHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An HTTP-01 token (RFC 8555 §8.3): base64url, so it is one safe path segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http01Token(String);

impl Http01Token {
    pub fn parse(given: &str) -> Result<Http01Token, Error> {
        let ok = (16..=256).contains(&given.len())
            && given
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        match ok {
            true => Ok(Http01Token(given.to_string())),
            false => Err(Error::BadToken {
                given: given.chars().take(64).collect(),
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for CertHost {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CertHost::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(given: &str, expected: Option<&str>) {
        let got = CertHost::parse(given).ok().map(|h| h.to_string());
        assert_eq!(got.as_deref(), expected, "{given}");
    }

    #[test]
    fn parses_names_and_refuses_the_rest() {
        check("App.Example.COM.", Some("app.example.com"));
        check("*.example.com", Some("*.example.com"));
        check("localhost", Some("localhost"));
        check("*", None);
        check("127.0.0.1", None);
        check("::1", None);
        check("a..b", None);
        check("-a.b", None);
        check("a_b.c", None);
        check("*.*.b", None);
        check("", None);
        check("a.b/c", None);
    }

    fn refused(host: &str, refused: bool) {
        let host = CertHost::parse(host).unwrap();
        assert_eq!(host.acme_refusal().is_some(), refused, "{host}");
    }

    #[test]
    fn acme_orders_for_public_names_only() {
        refused("app.example.com", false);
        refused("app.test", false);
        refused("*.example.com", true);
        refused("localhost", true);
        refused("app.localhost", true);
        refused("printer.local", true);
    }

    #[test]
    fn a_wildcard_covers_one_label() {
        let w = CertHost::parse("*.example.com").unwrap();
        assert!(w.covers("a.example.com"));
        assert!(!w.covers("example.com"));
        assert!(!w.covers("a.b.example.com"));
        assert!(!w.covers("aexample.com"));
        assert!(CertHost::parse("x.y").unwrap().covers("x.y"));
    }
}
