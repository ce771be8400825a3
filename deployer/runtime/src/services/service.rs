//! The trait every service implements, and the app it is called for.

use std::path::Path;

use silver_types::AppName;

use crate::error::Error;
use crate::paths::AppPaths;
use crate::supervise::AppUser;

/// One service a node provides to its apps. Every method works on one app (the [`Tenant`]),
/// and reaches only what that app's own credentials reach.
///
/// A restore is `stage` then `switch`; a clear is `stage(None)` then `switch`; a failed or
/// interrupted stage is undone by `discard`. Each of the three may run again after a crash
/// (`restore.rs` journals which ran), so each is idempotent.
pub trait Service: Send + Sync + std::fmt::Debug {
    /// Makes the app's share of the service (idempotent) and returns its environment
    /// variables (`CONFIG_*`, `DATABASE_URL`, …).
    fn provision(&self, t: &Tenant) -> Result<Vec<(String, String)>, Error>;
    /// Writes the app's data to `out`, a new file.
    fn dump(&self, t: &Tenant, out: &Path) -> Result<(), Error>;
    /// Builds a staged copy from `dump` (None: empty) beside the live data, which it leaves alone.
    fn stage(&self, t: &Tenant, dump: Option<&Path>) -> Result<(), Error>;
    /// Swaps the staged copy in; nothing to do when there is none (swapped already).
    fn switch(&self, t: &Tenant) -> Result<(), Error>;
    /// Drops the staged copy, if any.
    fn discard(&self, t: &Tenant) -> Result<(), Error>;
}

/// The one app a service call is about: everything that names its databases, users, secret
/// files and directories (through [`crate::identity::Identity`] and [`AppPaths`]).
#[derive(Debug, Clone, Copy)]
pub struct Tenant<'a> {
    pub node: &'a str,
    pub app: &'a AppName,
    pub paths: &'a AppPaths,
    pub user: Option<&'a AppUser>,
}
