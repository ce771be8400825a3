//! The node agent and the deploy client: the only crate that speaks HTTP.
//!
//! The agent (`agent`) keeps a content-addressed store (`store`) and makes releases current;
//! the client (`client`) uploads only the objects a node lacks (`wire`) and drives activation.
//! Both sides share the API types in `proto`.

#![allow(clippy::result_large_err)]

pub mod agent;
pub mod client;
pub mod environment;
mod error;
pub mod proto;
pub mod store;
pub mod tls;
pub mod tunnel;
pub mod wire;

pub use error::Error;
