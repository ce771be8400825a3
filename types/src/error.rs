//! The types crate's one error: `app.ini` read and checked, each error naming its file and line.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{}` is missing: every app has an `app.ini` at its root", path.display())]
    NoAppIni { path: PathBuf },
    #[error("`{}` is not an app directory: it does not exist or is not a directory", path.display())]
    NoAppDir { path: PathBuf },
    #[error("{}:{line}: {problem}", path.display())]
    AppIni {
        path: PathBuf,
        line: usize,
        problem: IniProblem,
    },
    #[error("{}:{line}: service `{service}` is not one silver offers", path.display())]
    UnknownService {
        path: PathBuf,
        line: usize,
        service: String,
    },
    #[error("{}:{line}: `config.{name}` is not a setting silver knows", path.display())]
    UnknownConfig {
        path: PathBuf,
        line: usize,
        name: String,
        /// The settings silver honours, for the hint.
        known: &'static [&'static str],
    },
    #[error("`{name}` is not a valid app name ({source_of_name}): {why}")]
    AppName {
        name: String,
        source_of_name: String,
        why: crate::names::NameRule,
    },
}

/// What is wrong with one line of `app.ini`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IniProblem {
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("indented line with no key above it")]
    NoKeyAbove,
    #[error("`{text}`: a section header ends with `]`")]
    Unclosed { text: String },
    #[error("`{text}` comes before any `[section]` header; start the file with `[production]`")]
    BeforeSection { text: String },
    #[error("`{text}` is not `key = value`")]
    NotKeyValue { text: String },
    #[error("a key is missing before `=`")]
    NoKey,
    /// A value that breaks a rule of its key: said as ``key `value` rule``.
    #[error("{key} `{value}` {rule}")]
    Value {
        key: String,
        value: String,
        rule: Rule,
    },
    #[error("process name `{name}` may hold only letters, digits, `-` and `_`")]
    ProcessName { name: String },
    #[error("process `{name}` has no command")]
    NoCommand { name: String },
    #[error("process `{name}` is defined twice (or `web` under [workers])")]
    Twice { name: String },
    #[error("variable name `{name}` is not a valid environment variable name")]
    VariableName { name: String },
    #[error("`script:` needs a command")]
    NoScript,
    #[error("cron job `{job}`: {problem}")]
    Cron { job: String, problem: CronProblem },
}

/// What is wrong with a `[cron]` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronProblem {
    #[error("job names hold only letters, digits, `-` and `_` (at most 64)")]
    Name,
    #[error("is defined twice")]
    Twice,
    #[error("has no schedule: write `NAME = SCHEDULE TARGET`")]
    Empty,
    #[error(
        "has no target: write `SCHEDULE /path` (an internal request) or `SCHEDULE script:COMMAND`"
    )]
    NoTarget,
    #[error(
        "`{schedule}` is not a schedule: {why}; write 5 cron fields (`*/5 * * * *`), \
         `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`, or `every N minutes|hours`"
    )]
    Schedule { schedule: String, why: String },
    #[error(
        "`{target}` is not a URL path: a job requests a path of the app itself (`/tasks/x`), \
         or runs `script:COMMAND`"
    )]
    Target { target: String },
    #[error("unknown time zone `{zone}`; use an IANA name such as `Europe/Paris` or `UTC`")]
    TimeZone { zone: String },
    #[error("{option} `{value}` must be {rule}")]
    Option {
        option: String,
        value: String,
        rule: &'static str,
    },
    #[error("`{option}` is not an option; a job's options are timezone, deadline, retries and every_node")]
    UnknownOption { option: String },
    #[error("there is no such job in [cron]; define it as `NAME = SCHEDULE TARGET` first")]
    NoSuchJob,
}

/// The rule a value of `app.ini` breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    /// One of the fixed rules, in words (a path that must stay inside the app, a location's
    /// form, the platforms there are).
    #[error("{0}")]
    Fixed(&'static str),
    #[error("is invalid: {0}")]
    Name(crate::names::NameRule),
    #[error("must be a whole number of {unit} from {min} to {max}")]
    Range {
        unit: &'static str,
        min: u64,
        max: u64,
    },
}

impl IniProblem {
    /// ``key `value` rule``, for a value `rule` refuses.
    pub fn value(key: &str, value: &str, rule: Rule) -> IniProblem {
        IniProblem::Value {
            key: key.to_string(),
            value: value.to_string(),
            rule,
        }
    }
}

impl Error {
    /// A one-line suggestion of what to do, printed on its own line under the error.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::NoAppDir { .. } => "give the directory that holds the app's `app.ini`".into(),
            Error::NoAppIni { .. } => "create `app.ini` with a `[production]` section, e.g. `app_name = myapp`".into(),
            Error::AppIni { .. } => "fix that line of `app.ini`; the keys are listed in the README".into(),
            Error::UnknownService { service, .. } if service == "mongodb" => format!(
                "MongoDB is not offered (Debian does not ship it, and Silver Lining's own did not work); the services are {}",
                crate::ServiceKind::names().join(", ")
            ),
            Error::UnknownService { .. } => format!(
                "remove that line or name one of the services: {}",
                crate::ServiceKind::names().join(", ")
            ),
            Error::UnknownConfig { known, .. } => format!(
                "the settings are config.{}; a secret belongs on the node, never in the artifact: `silver config set APP NAME=-` reads it from stdin",
                known.join(", config.")
            ),
            Error::AppName { .. } => format!("set `app_name` in the `[production]` section of `app.ini` to {}", crate::names::AppName::RULES),
            Error::Read { .. } => return None,
        })
    }
}

impl crate::hint::Hint for Error {
    fn hint(&self) -> Option<String> {
        Error::hint(self)
    }
}
