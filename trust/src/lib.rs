//! Who built an artifact and who promoted it where: signed records in minisign's Ed25519
//! format, and the trust policy a node checks them against before it activates anything.
//! Pure functions over bytes and keys: no HTTP, no store (the node keeps the records and the
//! highest sequence it has taken).

mod error;
pub mod keys;
pub mod policy;
pub mod records;

pub use error::Error;
pub use policy::{Accepted, Policy, Request};
pub use records::{Build, Promotion, SignedRecord, Statement};

#[cfg(test)]
mod tests;
