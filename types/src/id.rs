//! Content hashes and artifact ids: BLAKE3, written as lowercase hex.

use serde::Serialize;

/// A BLAKE3 content hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<Hash> {
        // Uppercase hex would give two spellings of one manifest, hence two ids.
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Hash(out))
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl From<blake3::Hash> for Hash {
    fn from(h: blake3::Hash) -> Hash {
        Hash(*h.as_bytes())
    }
}

/// An artifact id: `b3:` + the BLAKE3 of the manifest bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArtifactId(pub Hash);

impl ArtifactId {
    pub fn short(&self) -> String {
        self.0.to_hex()[..12].to_string()
    }
    /// Parses a full id, `b3:<64 hex>`.
    pub fn parse(s: &str) -> Option<ArtifactId> {
        Hash::from_hex(s.strip_prefix("b3:")?).map(ArtifactId)
    }
    /// Whether `s` names this id, fully or as a short prefix of at least 12 digits.
    pub fn matches(&self, s: &str) -> bool {
        let hex = s.strip_prefix("b3:").unwrap_or(s);
        hex.len() >= 12 && self.0.to_hex().starts_with(hex)
    }
}

impl std::fmt::Display for ArtifactId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b3:{}", self.0.to_hex())
    }
}

impl serde::Serialize for ArtifactId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Files read back (the history) hold full ids; anything else is refused, not guessed at.
impl<'de> serde::Deserialize<'de> for ArtifactId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ArtifactId, D::Error> {
        let s = String::deserialize(d)?;
        ArtifactId::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{s}` is not a full artifact id (b3: and 64 hex digits)"
            ))
        })
    }
}
