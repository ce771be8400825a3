//! `silver config` against a node: an app's config (secrets and settings kept on the node), and
//! the health-gated restart that brings a new version to the live release.

use silver_types::AppName;
use silver_wire::api::*;

use crate::{Error, Node};

/// The most a configuration directory may hold: it is settings and keys, not data.
const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// The directory as a tar, links kept as links (never followed out of it), in name order.
fn tar_config(dir: &std::path::Path) -> Result<Vec<u8>, Error> {
    let io = |path: &std::path::Path, source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if !dir.is_dir() {
        return Err(Error::BadConfigDir {
            path: dir.to_path_buf(),
            why: "it is not a directory",
        });
    }
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let mut total = 0;
    let mut entries: Vec<_> = walk(dir).map_err(|e| io(dir, e))?;
    entries.sort();
    for path in entries {
        let name = path.strip_prefix(dir).expect("walked under dir");
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        total += meta.len();
        if total > MAX_CONFIG_BYTES {
            return Err(Error::BadConfigDir {
                path: dir.to_path_buf(),
                why: "it holds more than 64 MiB",
            });
        }
        tar.append_path_with_name(&path, name)
            .map_err(|e| io(&path, e))?;
    }
    tar.into_inner().map_err(|e| io(dir, e))
}

/// Every entry under `dir` (not `dir` itself), without following links.
fn walk(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        out.push(entry.path());
        if entry.file_type()?.is_dir() {
            out.extend(walk(&entry.path())?);
        }
    }
    Ok(out)
}

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

    /// Takes `location` from the app; with its last one gone it serves nowhere.
    pub async fn deactivate(
        &self,
        app: &AppName,
        location: &silver_types::appconfig::Location,
        who: &str,
    ) -> Result<DeactivateResponse, Error> {
        let req = self
            .authed(
                self.http
                    .post(self.endpoint(&format!("/v1/apps/{app}/deactivate"))),
            )
            .json(&DeactivateRequest {
                location: location.clone(),
                who: who.into(),
            });
        self.call(req).await
    }

    /// Uploads a configuration directory (`--config DIR`); returns the id an activation names.
    pub async fn upload_app_config(
        &self,
        app: &AppName,
        dir: &std::path::Path,
    ) -> Result<String, Error> {
        let tar = tar_config(dir)?;
        let req = self
            .authed(
                self.http
                    .post(self.endpoint(&format!("/v1/apps/{app}/app-config"))),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
            .body(tar);
        let done: AppConfigUploaded = self.call(req).await?;
        Ok(done.id)
    }

    /// Starts release `id` again beside itself, health-gated, then switches to it (the config
    /// in force, `update_fetch` output to `on_line`).
    pub async fn restart(
        &self,
        app: &AppName,
        id: &silver_types::IdPrefix,
        who: &str,
        on_line: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ActivateResponse, Error> {
        let request = ActivateRequest {
            id: id.clone(),
            who: who.into(),
            locations: vec![],
            other_app: true,
            restart: true,
            app_config: None,
            single_process: false,
            migrate: false,
            records: vec![],
        };
        self.activate_watched(&format!("/v1/apps/{app}/activate"), &request, on_line)
            .await
    }
}
