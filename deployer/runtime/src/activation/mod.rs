//! Activation as explicit stages (design §4), each a module of plain functions over a
//! [`candidate::Candidate`], in the order a release goes through them:
//!
//! 1. `candidate`: the release to bring up, and the environment its processes get;
//! 2. `stage`: its directories and the files silver puts there (the runtime then provisions
//!    its services through `crate::services`);
//! 3. `start`: the checks that would otherwise fail unreadably, then its processes, beside the
//!    live ones;
//! 4. `probe`: internal requests to it ("answers at all", the health check);
//! 5. `hooks`: `config.checker` and `update_fetch` (after a checkpoint of the app's data);
//! 6. `switch`: its route replaces the old one, and the replaced release drains and stops;
//! 7. `pool`: a gunicorn app's workers sized by the requests that are stuck.
//!
//! `live.rs` runs them in order and holds the state between them (the live releases, the
//! routes, the log sinks, the service registry); no stage module reaches back into it. A
//! failure at any stage is a [`crate::Failure`]: the step and its cause, kept whole.

pub mod candidate;
pub mod hooks;
pub mod pool;
pub mod probe;
pub mod stage;
pub mod start;
pub mod switch;
