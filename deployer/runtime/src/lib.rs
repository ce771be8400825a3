//! The live side of a node, and of `silver serve`: the releases that run (`live`), what to run
//! for one (`launch`), its processes under supervision (`supervise`) with their logs (`logs`),
//! the front door (`router` for requests, `front_door` for connections), services (`services`), the app's environment (`environment`), and
//! the dev server (`dev`). It never touches the node's store: the caller hands it directories
//! and a flip to run at the switch.

#![allow(clippy::result_large_err)]

mod activation;
mod command;
pub mod cron;
pub mod data;
pub mod dev;
pub mod environment;
mod error;
pub mod front_door;
pub mod identity;
mod internal;
pub mod launch;
mod live;
pub mod logs;
pub mod paths;
pub mod php;
pub mod restore;
pub mod router;
pub mod services;
pub mod shared;
mod shed;
mod static_cache;
pub mod supervise;
pub mod tasks;
pub mod tls;
pub mod users;
mod writable;

pub use error::{chain as error_chain, BackupProblem, Cause, Error, Failure, Step, TaskProblem};
pub use live::*;
pub use paths::AppPaths;
