//! The builder's one error type; every variant names the recipe and the field it concerns.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the recipe `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, an unknown field or a value of the wrong type (toml names the field and
    /// its line).
    #[error("`{}` is not a valid recipe: {message}", path.display())]
    Parse {
        path: PathBuf,
        message: silver_types::Said,
    },
    #[error("I/O error on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An external tool could not be started at all (not installed, not executable).
    #[error("cannot start {tool}")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    /// The mirror's package resolution listed nothing to install.
    #[error("{tool} resolved no packages (is this mmdebstrap's --verbose output?)")]
    NothingResolved { tool: String },
    /// An external tool (mmdebstrap, tar, mke2fs, qemu-img) failed; its last output follows.
    #[error("{tool} failed: {message}")]
    Tool {
        tool: String,
        message: silver_types::Said,
    },
    /// A value of the right type that makes no sense.
    #[error("`{}`: `{field}` {problem}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        problem: FieldProblem,
    },
}

/// Why a recipe's field is refused.
#[derive(Debug, thiserror::Error)]
pub enum FieldProblem {
    /// A value that breaks the rule of its field.
    #[error("`{value}` {rule}")]
    Value { value: String, rule: &'static str },
    #[error("is `{value}`; it must be {allowed}")]
    NotOneOf {
        value: String,
        allowed: &'static str,
    },
    #[error("is empty; choose from {formats:?}")]
    NoFormats { formats: &'static [&'static str] },
    #[error("has `{format}`; the formats are {formats:?}")]
    UnknownFormat {
        format: String,
        formats: &'static [&'static str],
    },
    #[error("give exactly one of `content` and `source`")]
    ContentOrSource,
    #[error(
        "gives the image no /boot/{prefix}*: add a kernel package (linux-image-amd64 on Debian)"
    )]
    NoKernel { prefix: String },
}

impl Error {
    /// A tool that ran and failed: its exit status and the last `lines` lines of its stderr.
    pub(crate) fn tool_failed(tool: &str, out: &std::process::Output, lines: usize) -> Error {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(lines).collect();
        let text = format!(
            "{}\n  {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
        );
        Error::Tool {
            tool: tool.into(),
            message: silver_types::Said::whole(&text, &[]),
        }
    }
}

impl Error {
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Parse { .. } | Error::Invalid { .. } => Some(
                "see image-recipes/debian-bookworm.toml for every field and its meaning".into(),
            ),
            Error::Tool { tool, .. } if tool == "mmdebstrap --simulate" => Some(
                "the package set is resolved against the recipe's `mirror` before every bake: check it and the network (with a cached bootstrap for the same packages, a bake goes on without the mirror)"
                    .into(),
            ),
            Error::Tool { tool, .. } if tool == "mmdebstrap" => Some(
                "baking needs root, mmdebstrap and the mirror: sudo apt-get install mmdebstrap"
                    .into(),
            ),
            Error::Read { .. }
            | Error::Io { .. }
            | Error::Tool { .. }
            | Error::Spawn { .. }
            | Error::NothingResolved { .. } => None,
        }
    }
}

impl silver_types::Hint for Error {
    fn hint(&self) -> Option<String> {
        Error::hint(self)
    }
}
