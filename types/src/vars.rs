//! Config variables set on a node (`silver config set NAME=VALUE`): names and values checked where
//! they enter, so a store never holds one a process could not start with.

use serde::{Deserialize, Serialize};

/// Why a config variable's name or value is refused; said after its subject ("config
/// variable `PATH` …"), with what to do as its hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarProblem {
    #[error("is not a variable name: letters, digits and `_`, not starting with a digit")]
    NotAName,
    #[error("is set by silver itself (PORT, STATIC_URL, TEMP, TMPDIR, SILVER_*, CONFIG_*)")]
    Reserved,
    #[error("decides which programs and libraries the app loads, which silver sets (PATH, PYTHONPATH, PYTHONHOME, PYTHONUSERBASE, VIRTUAL_ENV, LD_*, GLIBC_TUNABLES, GCONV_PATH)")]
    Loader,
    #[error("holds a NUL byte, which no environment variable can")]
    Nul,
    #[error("is {bytes} bytes, over the {max_kib} KiB a config value may hold")]
    TooLarge { bytes: usize, max_kib: usize },
}

impl crate::hint::Hint for VarProblem {
    fn hint(&self) -> Option<String> {
        Some(match self {
            VarProblem::Loader => "ship libraries in the app's virtualenv or lib/python, and programs in its bin/",
            VarProblem::TooLarge { .. } => "keep large data in a file (service.files, or `silver update --config DIR`) and put its path in the variable",
            _ => return None,
        }.into())
    }
}

/// The name of a config variable (`silver config set NAME=…`): a shell variable name, and not
/// one silver sets itself, which would silently win over it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VarName(String);

impl VarName {
    pub fn parse(name: &str) -> Result<VarName, VarProblem> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || name.len() > 255 {
            return Err(VarProblem::NotAName);
        }
        let reserved = ["PORT", "STATIC_URL", "TEMP", "TMPDIR"].contains(&name)
            || name.starts_with("SILVER_")
            || name.starts_with("CONFIG_");
        if reserved {
            return Err(VarProblem::Reserved);
        }
        // What finds the app's programs and libraries is silver's to set: a `PATH` override
        // breaks `silver run`, a `PYTHONPATH` one the restart, and `LD_PRELOAD` and friends
        // load code into every process of the app (the dynamic loader's and Python's own).
        let loader = [
            "PATH",
            "PYTHONPATH",
            "PYTHONHOME",
            "PYTHONUSERBASE",
            "VIRTUAL_ENV",
        ]
        .contains(&name)
            || ["GLIBC_TUNABLES", "GCONV_PATH"].contains(&name)
            || name.starts_with("LD_");
        if loader {
            return Err(VarProblem::Loader);
        }
        Ok(VarName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for VarName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        VarName::parse(&name).map_err(|why| format!("config variable `{name}` {why}"))
    }
}

impl From<VarName> for String {
    fn from(name: VarName) -> String {
        name.0
    }
}

impl std::fmt::Display for VarName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The value of a config variable: at most [`VarValue::MAX_BYTES`], no NUL. Every process of
/// the app gets it in its environment, and the kernel refuses to start one whose variable is
/// over 128 KiB (`Argument list too long`): a bound here makes that a clear error at
/// `silver config set` instead of a failed restart.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VarValue(String);

impl VarValue {
    pub const MAX_BYTES: usize = 64 * 1024;

    pub fn parse(value: String) -> Result<VarValue, VarProblem> {
        if value.contains('\0') {
            return Err(VarProblem::Nul);
        }
        if value.len() > Self::MAX_BYTES {
            return Err(VarProblem::TooLarge {
                bytes: value.len(),
                max_kib: Self::MAX_BYTES / 1024,
            });
        }
        Ok(VarValue(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Never prints the value: it may be a secret.
impl std::fmt::Debug for VarValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VarValue({} bytes)", self.0.len())
    }
}

impl TryFrom<String> for VarValue {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        VarValue::parse(value).map_err(|why| format!("a config value {why}"))
    }
}

impl From<VarValue> for String {
    fn from(value: VarValue) -> String {
        value.0
    }
}
