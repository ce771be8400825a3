//! Artifacts in an OCI distribution registry: references, credentials, silver's layout of an
//! artifact as an image manifest, push, and pull. The one crate besides the client and the node
//! that speaks HTTP; it never touches a node's store (the node feeds packs into its own).

#![allow(clippy::result_large_err)]

pub mod auth;
mod error;
pub mod http;
pub mod layout;
pub mod pull;
pub mod push;
pub mod records;
pub mod reference;

pub use error::Error;
pub use http::{Registry, RegistryConfig};
pub use reference::{Digest, Reference};
