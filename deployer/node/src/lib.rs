//! The node agent: the control API (`agent`, axum), the content-addressed store that alone owns
//! the node's layout on disk (`store`), and TLS for the control listener (`tls`). It drives
//! `silver-runtime` for everything that runs.

#![allow(clippy::result_large_err)]

pub mod agent;
pub mod certs;
mod error;
pub mod metrics;
pub mod store;
pub mod tls;

pub use error::Error;
