//! The switch: the candidate's route replaces the old one in one step, and the release it
//! replaced drains (its requests in flight finish, up to a grace) and stops.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use silver_types::ServiceKind;

use super::candidate::Candidate;
use crate::router::{AppRoute, Backend};
use crate::supervise::Supervised;

/// The route that sends the app's traffic to `c`: its locations, its backend, its static
/// files and those of the release it replaces (`previous`: label and directory), whose
/// versioned URLs stay valid while pages that name them are still out there.
pub fn route(
    c: &Candidate,
    backend: Option<Arc<Backend>>,
    previous: Option<(String, PathBuf)>,
    maintenance: bool,
) -> AppRoute {
    let mut statics = vec![(c.label.clone(), c.dir.join("static"))];
    statics.extend(previous);
    AppRoute {
        locations: c.locations.clone(),
        backend,
        statics,
        maintenance,
        request_timeout: Some(Duration::from_secs(c.config.request_timeout_secs)),
        writable_root: c
            .config
            .services
            .iter()
            .any(|(kind, _)| *kind == ServiceKind::WritableRoot)
            .then(|| c.paths.writable_root()),
        https: c.config.https,
        hsts_max_age: c.config.hsts_max_age_secs,
        slow_paths: c.config.slow_paths.clone(),
        php_root: c
            .config
            .php_root
            .as_ref()
            .filter(|_| c.config.is_php())
            .map(|root| c.dir.join(root)),
    }
}

/// How long a replaced release may take: to finish its requests, then to exit.
#[derive(Debug, Clone, Copy)]
pub struct Graces {
    pub drain: Duration,
    pub stop: Duration,
}

/// Waits until the replaced release has no request in flight (up to the drain grace), then
/// stops its processes, each given the stop grace.
pub async fn drain(
    label: &str,
    processes: Vec<Supervised>,
    backend: Option<Arc<Backend>>,
    graces: Graces,
) {
    if let Some(b) = &backend {
        let mut in_flight = b.watch_in_flight();
        let idle = in_flight.wait_for(|n| *n == 0);
        let _ = tokio::time::timeout(graces.drain, idle).await;
        tracing::info!(release = %label, in_flight = b.in_flight(), "drained");
    }
    let stops = processes.into_iter().map(|p| p.stop(graces.stop));
    futures_util::future::join_all(stops).await;
}
