//! `silver config` against a node: an app's config (secrets and settings kept on the node), and
//! the health-gated restart that brings a new version to the live release.

use packer::AppName;
use silver_wire::api::*;

use crate::{Error, Node};

impl Node {
    /// The app's config in force: names, and values when `show`.
    pub async fn config(&self, app: &AppName, show: bool) -> Result<ConfigView, Error> {
        let req = self
            .authed(
                self.http
                    .get(self.endpoint(&format!("/v1/apps/{app}/config"))),
            )
            .query(&[("show", show)]);
        self.call(req).await
    }

    /// Makes a new config version; it takes effect at the next activation (or `restart`).
    pub async fn change_config(
        &self,
        app: &AppName,
        change: &ConfigChange,
    ) -> Result<ConfigView, Error> {
        let req = self
            .authed(
                self.http
                    .post(self.endpoint(&format!("/v1/apps/{app}/config"))),
            )
            .json(change);
        self.call(req).await
    }

    /// Starts release `id` again beside itself, health-gated, then switches to it (the config
    /// in force, `update_fetch` output to `on_line`).
    pub async fn restart(
        &self,
        app: &AppName,
        id: &packer::IdPrefix,
        who: &str,
        on_line: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ActivateResponse, Error> {
        let request = ActivateRequest {
            id: id.clone(),
            who: who.into(),
            locations: vec![],
            other_app: true,
            restart: true,
        };
        self.activate_watched(&format!("/v1/apps/{app}/activate"), &request, on_line)
            .await
    }
}
