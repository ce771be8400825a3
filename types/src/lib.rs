//! silver's domain types, parsed where they enter (CLI, HTTP, files read back) and then passed
//! around as types: app names, artifact ids and prefixes, locations, services, config variables,
//! and `app.ini` read as an [`AppConfig`]. The artifact format (`packer`), the wire protocol and
//! the runtime all use these; this crate uses none of them, and has no network code.

#![allow(clippy::result_large_err)]

pub mod appconfig;
pub mod appini;
pub mod cron;
mod error;
mod hint;
pub mod id;
pub mod names;
mod said;
mod service;
pub mod task;
pub mod vars;

pub use appconfig::{AppConfig, Location, Process, UpdateFetch};
pub use appini::AppIni;
pub use error::{CronProblem, Error, IniProblem, Rule};
pub use hint::Hint;
pub use id::{ArtifactId, Hash};
pub use names::{AppName, IdPrefix};
pub use said::{error_chain, Said};

/// A signed record as it travels and is kept: the statement's exact bytes (JSON) and its
/// minisign signatures, each a `.minisig` file's text. `silver-trust` reads and checks them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedRecord {
    pub statement: String,
    pub signatures: Vec<String>,
}
pub use service::ServiceKind;
pub use vars::{VarName, VarProblem, VarValue};
