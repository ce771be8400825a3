//! Names and ids as types: parsed once where they enter (CLI flags, HTTP paths and bodies, files
//! read back), then carried as types, so no handler or store function re-checks a string.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::{ArtifactId as Id, Hash};

/// The name of an app. It becomes a directory on the node (`apps/<name>/`), a file name, a
/// database role and a Unix user suffix, so the rules are those all four accept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppName(String);

/// Why a string is not an app name: the rule it breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameRule {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {} characters", AppName::MAX_LEN)]
    TooLong,
    #[error("it must start with a lowercase letter or a digit")]
    First,
    #[error("only lowercase letters, digits, `-`, `_` and `.` are allowed")]
    Chars,
}

impl AppName {
    pub const MAX_LEN: usize = 64;
    /// The rules, as a hint shows them.
    pub const RULES: &'static str =
        "1 to 64 lowercase letters, digits, `-`, `_` or `.`, starting with a letter or digit";

    pub fn parse(name: &str) -> Result<AppName, NameRule> {
        // Each check names the attack it blocks:
        // an empty name would make `apps/` itself the app directory;
        let first = name.chars().next().ok_or(NameRule::Empty)?;
        // an overlong name overflows file-name and user-name limits (a 500 instead of a 400);
        if name.len() > Self::MAX_LEN {
            return Err(NameRule::TooLong);
        }
        // a leading `.` or `-` makes `..`, hidden files and option-like arguments (`-rf`);
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(NameRule::First);
        }
        // `/`, NUL and other bytes would walk out of `apps/` or break the C strings below it;
        // uppercase would let `Blog` and `blog` share a Unix user and a database role.
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
        if !name.chars().all(ok) {
            return Err(NameRule::Chars);
        }
        Ok(AppName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for AppName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for AppName {
    fn as_ref(&self) -> &std::path::Path {
        self.0.as_ref()
    }
}

impl std::str::FromStr for AppName {
    type Err = NameRule;
    fn from_str(s: &str) -> Result<AppName, NameRule> {
        AppName::parse(s)
    }
}

impl Serialize for AppName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AppName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AppName, D::Error> {
        let s = String::deserialize(d)?;
        AppName::parse(&s)
            .map_err(|rule| serde::de::Error::custom(format!("`{s}` is not an app name: {rule}")))
    }
}

/// An artifact id as people type it: `b3:` and 12 to 64 hex digits, or the digits alone, as
/// every message prints them. The node resolves it to one `Id` or says why it cannot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdPrefix(String);

/// Why a string is not an id or id prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdRule {
    #[error("it has fewer than {} hex digits", IdPrefix::MIN_LEN)]
    TooShort,
    #[error("it has more than 64 hex digits")]
    TooLong,
    #[error("only lowercase hex digits (0-9, a-f) may follow `b3:`")]
    Chars,
}

impl IdPrefix {
    pub const MIN_LEN: usize = 12;

    pub fn parse(s: &str) -> Result<IdPrefix, IdRule> {
        let hex = s.strip_prefix("b3:").unwrap_or(s);
        // Non-hex bytes (`/`, `..`, NUL) would reach file names under `artifacts/`.
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(IdRule::Chars);
        }
        // A short prefix could silently name a different release than the one meant.
        if hex.len() < Self::MIN_LEN {
            return Err(IdRule::TooShort);
        }
        if hex.len() > 64 {
            return Err(IdRule::TooLong);
        }
        Ok(IdPrefix(hex.to_string()))
    }

    /// The hex digits, without `b3:`.
    pub fn hex(&self) -> &str {
        &self.0
    }

    /// The whole id, when all 64 digits were given.
    pub fn full(&self) -> Option<Id> {
        Hash::from_hex(&self.0).map(Id)
    }

    pub fn matches(&self, id: &Id) -> bool {
        id.0.to_hex().starts_with(&self.0)
    }

    /// Resolves against the ids at hand: exactly one must match.
    pub fn resolve<'a>(&self, ids: impl IntoIterator<Item = &'a Id>) -> Result<Id, Unresolved> {
        let found: Vec<Id> = ids
            .into_iter()
            .filter(|id| self.matches(id))
            .copied()
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(Unresolved::Unknown),
            many => Err(Unresolved::Ambiguous(many.len())),
        }
    }
}

/// Why a prefix names no single id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    Unknown,
    Ambiguous(usize),
}

impl From<Id> for IdPrefix {
    fn from(id: Id) -> IdPrefix {
        IdPrefix(id.0.to_hex())
    }
}

impl fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b3:{}", self.0)
    }
}

impl std::str::FromStr for IdPrefix {
    type Err = IdRule;
    fn from_str(s: &str) -> Result<IdPrefix, IdRule> {
        IdPrefix::parse(s)
    }
}

impl Serialize for IdPrefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IdPrefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IdPrefix, D::Error> {
        let s = String::deserialize(d)?;
        IdPrefix::parse(&s).map_err(|rule| {
            serde::de::Error::custom(format!("`{s}` is not an artifact id: {rule}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_name(input: &str, expected: Result<(), NameRule>) {
        assert_eq!(AppName::parse(input).map(|_| ()), expected, "{input:?}");
    }

    #[test]
    fn app_names() {
        check_name("blog", Ok(()));
        check_name("9lives", Ok(()));
        check_name("my-app_2.v1", Ok(()));
        check_name(&"a".repeat(64), Ok(()));
        check_name("", Err(NameRule::Empty));
        check_name(&"a".repeat(65), Err(NameRule::TooLong));
        check_name("..", Err(NameRule::First));
        check_name(".hidden", Err(NameRule::First));
        check_name("-rf", Err(NameRule::First));
        check_name("Blog", Err(NameRule::First));
        check_name("bLog", Err(NameRule::Chars));
        check_name("a/b", Err(NameRule::Chars));
        check_name("/tmp", Err(NameRule::First));
        check_name("a\0b", Err(NameRule::Chars));
        check_name("a b", Err(NameRule::Chars));
        check_name("ä", Err(NameRule::First));
    }

    fn check_id(input: &str, expected: Result<&str, IdRule>) {
        let got = IdPrefix::parse(input);
        assert_eq!(
            got.as_ref().map(IdPrefix::hex).map_err(|e| *e),
            expected,
            "{input:?}"
        );
    }

    #[test]
    fn id_prefixes() {
        let full = "93ce24d04e46".to_string() + &"0".repeat(52);
        check_id("93ce24d04e46", Ok("93ce24d04e46"));
        check_id("b3:93ce24d04e46", Ok("93ce24d04e46"));
        check_id(&full, Ok(&full));
        check_id("93ce24d04e4", Err(IdRule::TooShort));
        check_id("b3:", Err(IdRule::TooShort));
        check_id(&(full.clone() + "0"), Err(IdRule::TooLong));
        check_id("93CE24D04E46", Err(IdRule::Chars));
        check_id("../../etc/passwd", Err(IdRule::Chars));
        check_id("93ce24d04e46\0", Err(IdRule::Chars));
        assert!(IdPrefix::parse(&full).unwrap().full().is_some());
        assert!(IdPrefix::parse("93ce24d04e46").unwrap().full().is_none());
    }

    #[test]
    fn resolve_prefixes() {
        let a = Id(Hash::from_hex(&("aaaaaaaaaaaa".to_string() + &"0".repeat(52))).unwrap());
        let b = Id(Hash::from_hex(&("aaaaaaaaaaaa".to_string() + &"1".repeat(52))).unwrap());
        let ids = [a, b];
        let p = |s: &str| IdPrefix::parse(s).unwrap();
        assert_eq!(
            p("aaaaaaaaaaaa").resolve(&ids),
            Err(Unresolved::Ambiguous(2))
        );
        assert_eq!(p("aaaaaaaaaaaa1").resolve(&ids), Ok(b));
        assert_eq!(p("bbbbbbbbbbbb").resolve(&ids), Err(Unresolved::Unknown));
    }
}
