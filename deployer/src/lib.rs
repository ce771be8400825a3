//! The node agent and the deploy client: the only crate that speaks HTTP.
//!
//! The agent (`agent`) keeps a content-addressed store (`store`) and makes releases current;
//! the client (`client`) uploads only the objects a node lacks (`wire`) and drives activation.
//! Both sides share the API types in `proto`. The runtime (`runtime`, with `launch`,
//! `supervise` and `logs`) runs the live releases, and the front door (`router`) serves them.

#![allow(clippy::result_large_err)]

pub mod agent;
pub mod client;
pub mod dev;
pub mod environment;
mod error;
pub mod launch;
pub mod logs;
pub mod proto;
pub mod router;
pub mod runtime;
pub mod services;
pub mod store;
pub mod supervise;
pub mod tls;
pub mod tunnel;
pub mod wire;

pub use error::Error;
