//! The deploy client: `Node` speaks to a node's control API (http, https, or http through an
//! ssh tunnel), and `deploy` uploads only the objects the node lacks, then activates. It shares
//! only the wire protocol with the node, so a CI machine that packs and deploys builds no node.

#![allow(clippy::result_large_err)]

mod data;
mod deploy;
mod error;
pub mod fleet;
pub mod fleet_certs;
mod settings;
pub mod tls;
pub mod tunnel;

pub use data::{Format, Place, RestoreLimits};
pub use deploy::*;
pub use error::{chain as error_chain, BackupProblem, Error};
