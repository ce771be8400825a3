//! The deploy client: `Node` speaks to a node's control API (http, https, or http through an
//! ssh tunnel), and `deploy` uploads only the objects the node lacks, then activates. It shares
//! only the wire protocol with the node, so a CI machine that packs and deploys builds no node.

#![allow(clippy::result_large_err)]

mod data;
mod deploy;
mod error;
mod settings;
pub mod tls;
pub mod tunnel;

pub use data::{Format, Place, RestoreLimits};
pub use deploy::*;
pub use error::Error;

/// Whether `url` answers HTTP (any status) within `timeout`: a blocking probe for callers
/// without a runtime of their own (the builder waiting for a booted node's front door).
pub fn answers_http(url: &str, timeout: std::time::Duration) -> bool {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return false;
    };
    runtime.block_on(async {
        let Ok(client) = reqwest::Client::builder().timeout(timeout).build() else {
            return false;
        };
        // A Host no app claims: the front door answers it (404 or an app's page), which is all
        // this asks.
        client
            .get(url)
            .header(reqwest::header::HOST, "health.invalid")
            .send()
            .await
            .is_ok()
    })
}
