//! `REGISTRY/REPO[:TAG][@DIGEST]`, parsed where it enters (CLI, HTTP) and carried as a type.
//!
//! The grammar is the distribution spec's, with one rule of silver's own: the registry's host is
//! always named. Docker reads `library/app` as Docker Hub's; silver refuses it, so a typo never
//! pushes an artifact to a public registry.

use std::fmt;

use crate::error::Error;

/// A content digest: `sha256:` + 64 hex digits, or `sha512:` + 128 (the only two the OCI spec
/// lets a registry require).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, Error> {
        let bad = || Error::BadDigest {
            given: s.chars().take(150).collect(),
        };
        let (algorithm, hex) = s.split_once(':').ok_or_else(bad)?;
        let (algorithm, len) = match algorithm {
            "sha256" => (Algorithm::Sha256, 64),
            "sha512" => (Algorithm::Sha512, 128),
            _ => return Err(bad()),
        };
        // Lowercase only: two spellings of one digest would be two blobs to a cache.
        if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest::from_sha256(sha2::Sha256::digest(bytes).into())
    }

    pub fn from_sha256(bytes: [u8; 32]) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(bytes),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A hasher of this digest's algorithm, to check bytes as they stream.
    pub fn hasher(&self) -> Hasher {
        match self.algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Default::default()),
            Algorithm::Sha512 => Hasher::Sha512(Default::default()),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = match self.algorithm {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        };
        write!(f, "{algorithm}:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Hashes a blob as it streams, in its digest's algorithm.
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> Digest {
        use sha2::Digest as _;
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

/// Where an artifact lives: a registry, a repository in it, and a tag or a digest (or both: the
/// digest wins, the tag is for humans).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`, as the registry's URL and its credentials are keyed.
    pub registry: String,
    /// `team/app`: lowercase path components.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, Error> {
        let bad = |why: &'static str| Error::BadReference {
            given: s.chars().take(300).collect(),
            why,
        };
        if s.contains("://") {
            return Err(bad(
                "write it without a scheme: REGISTRY/REPO[:TAG][@DIGEST]",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest)?)),
            None => (s, None),
        };
        let (registry, path) = rest.split_once('/').ok_or_else(|| {
            bad("it names no registry host: write REGISTRY/REPO, e.g. 127.0.0.1:5000/myapp")
        })?;
        if !is_registry_host(registry) {
            return Err(bad(
                "its first part is not a registry host (it needs a dot, a port or `localhost`): write REGISTRY/REPO, e.g. ghcr.io/team/myapp",
            ));
        }
        // A tag's colon comes after the last slash; a colon before it would be a port.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
            _ => (path, None),
        };
        if !is_repository(repository) {
            return Err(bad(
                "the repository must be lowercase letters, digits and `._-` between slashes",
            ));
        }
        if let Some(tag) = tag {
            if !is_tag(tag) {
                return Err(bad("a tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"));
            }
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(String::from),
            digest,
        })
    }

    /// The registry's host without its port.
    pub fn host(&self) -> &str {
        host_of(&self.registry)
    }

    /// The same repository at `digest`.
    pub fn at(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// What the manifest endpoint takes: the digest if known, else the tag, else `latest`.
    pub fn target(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Reference, Error> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// True for a host on 127.0.0.0/8, `::1` or `localhost`: the only registries silver talks to
/// over plain HTTP without being told (Docker's own default insecure range).
pub fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

fn is_registry_host(s: &str) -> bool {
    let valid = !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    valid && (s.contains('.') || s.contains(':') || s == "localhost")
}

fn is_repository(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('/').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes.iter().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        })
}

fn is_tag(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(&str, &str, Option<&str>, bool), &str>) {
        match (Reference::parse(input), expected) {
            (Ok(r), Ok((registry, repo, tag, digest))) => {
                assert_eq!(
                    (
                        r.registry.as_str(),
                        r.repository.as_str(),
                        r.tag.as_deref(),
                        r.digest.is_some()
                    ),
                    (registry, repo, tag, digest),
                    "{input}"
                );
                assert_eq!(
                    Reference::parse(&r.to_string()).unwrap(),
                    r,
                    "round trip of {input}"
                );
            }
            (Err(e), Err(why)) => assert!(e.to_string().contains(why), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn references() {
        let d = format!("sha256:{}", "a".repeat(64));
        check(
            "127.0.0.1:5000/app",
            Ok(("127.0.0.1:5000", "app", None, false)),
        );
        check(
            "127.0.0.1:5000/team/app:v1",
            Ok(("127.0.0.1:5000", "team/app", Some("v1"), false)),
        );
        check(
            &format!("ghcr.io/t/app@{d}"),
            Ok(("ghcr.io", "t/app", None, true)),
        );
        check(
            &format!("localhost/app:x@{d}"),
            Ok(("localhost", "app", Some("x"), true)),
        );
        check("library/app", Err("not a registry host"));
        check("app", Err("names no registry host"));
        check("https://ghcr.io/app", Err("without a scheme"));
        check("ghcr.io/App", Err("lowercase"));
        check("ghcr.io/a//b", Err("lowercase"));
        check("ghcr.io/app:-x", Err("a tag is"));
        check("ghcr.io/app@sha256:abc", Err("not a digest"));
        check(
            &format!("ghcr.io/app@md5:{}", "a".repeat(32)),
            Err("not a digest"),
        );
        check(
            &format!("ghcr.io/app@sha256:{}", "A".repeat(64)),
            Err("not a digest"),
        );
    }

    #[test]
    fn loopback_is_plain_http_and_nothing_else_is() {
        for (registry, loopback) in [
            ("127.0.0.1:5000", true),
            ("127.9.9.9", true),
            ("localhost:5000", true),
            ("[::1]:5000", true),
            ("10.0.0.1:5000", false),
            ("127.0.0.1.evil.example", false),
            ("localhost.evil.example", false),
        ] {
            assert_eq!(is_loopback(registry), loopback, "{registry}");
        }
    }

    #[test]
    fn digests_check_their_bytes() {
        let d = Digest::sha256(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = d.hasher();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finish(), d);
    }
}
