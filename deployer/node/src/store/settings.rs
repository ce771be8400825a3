//! An app's config on the node (`silver config`): its secrets and settings, never in the
//! artifact. Every change makes a new numbered version, `config/<n>.json` (0600, owned by the
//! app's user, as its `environment.json` is), and `config/current` names the one in force. The
//! history records the version each activation ran with, so a rollback restores it.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

/// The most bytes an app's config values may hold together: a quarter of `ARG_MAX`, leaving
/// room for the service variables and silver's own.
pub const MAX_CONFIG_BYTES: usize = 512 * 1024;

use silver_runtime::supervise::AppUser;
use silver_types::{AppName, VarName, VarValue};

use super::*;
use crate::error::Error;

/// A config: variable name to value, both checked (`VarName`, `VarValue`).
pub type Settings = BTreeMap<VarName, VarValue>;

impl AppDir {
    pub fn settings_dir(&self) -> PathBuf {
        self.path().join("config")
    }

    /// `config/current`: the version in force.
    pub fn settings_current(&self) -> PathBuf {
        self.settings_dir().join("current")
    }

    /// `app-config/current`: the uploaded configuration directory in force.
    pub fn app_config_current(&self) -> PathBuf {
        self.runtime().app_configs().join("current")
    }
}

impl Store {
    /// The version in force (0: none yet) and its variables.
    pub fn settings(&self, app: &AppName) -> Result<(u32, Settings), Error> {
        let version = self.settings_current(app)?;
        Ok((version, self.settings_version(app, version)?))
    }

    /// The variables of one version (version 0 has none).
    pub fn settings_version(&self, app: &AppName, version: u32) -> Result<Settings, Error> {
        if version == 0 {
            return Ok(Settings::new());
        }
        let path = self.app(app).settings_dir().join(format!("{version}.json"));
        let text = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let raw: BTreeMap<String, String> =
            serde_json::from_slice(&text).map_err(|e| Error::BadRecord {
                path: path.clone(),
                why: silver_types::Said::new(&e.to_string(), &[]),
            })?;
        // Parsed as they are read back: a variable an older agent took and this one refuses
        // (a name silver now sets itself) is left out, and said, rather than failing the app.
        Ok(raw
            .into_iter()
            .filter_map(|(name, value)| {
                let parsed = VarName::parse(&name)
                    .ok()
                    .zip(VarValue::parse(value).ok());
                if parsed.is_none() {
                    tracing::warn!(%app, variable = %name, path = %path.display(), "config variable refused; left out");
                }
                parsed
            })
            .collect())
    }

    /// Writes a new version: the one in force with `set` applied and `unset` removed.
    pub fn change_settings(
        &self,
        app: &AppName,
        set: &Settings,
        unset: &[VarName],
        owner: Option<&AppUser>,
    ) -> Result<(u32, Settings), Error> {
        let (current, mut settings) = self.settings(app)?;
        for name in unset {
            settings.remove(name);
        }
        settings.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        // The kernel refuses to start a process whose environment is over ARG_MAX (2 MiB with
        // the usual 8 MiB stack), with `Argument list too long`: a restart would fail.
        let bytes: usize = settings
            .iter()
            .map(|(k, v)| k.as_str().len() + v.as_str().len() + 2)
            .sum();
        if bytes > MAX_CONFIG_BYTES {
            return Err(Error::ConfigTooLarge {
                app: app.clone(),
                bytes,
                max: MAX_CONFIG_BYTES,
            });
        }
        let dir = self.app(app).settings_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let version = self.settings_latest(app)?.max(current) + 1;
        let path = dir.join(format!("{version}.json"));
        let json = serde_json::to_vec_pretty(&settings).expect("strings serialize");
        safefs::write_atomic(&path, &json, safefs::WriteOptions::PRIVATE)
            .map_err(|e| Error::io(&path, e))?;
        if let Some(user) = owner {
            std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
                .map_err(|e| Error::io(&path, e))?;
        }
        self.set_settings_current(app, version)?;
        Ok((version, settings))
    }

    /// Puts an existing version in force (a rollback to the release that ran with it).
    pub fn set_settings_current(&self, app: &AppName, version: u32) -> Result<(), Error> {
        let dir = self.app(app).settings_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = self.app(app).settings_current();
        safefs::write_atomic(
            &path,
            format!("{version}\n").as_bytes(),
            safefs::WriteOptions::PRIVATE,
        )
        .map_err(|e| Error::io(&path, e))
    }

    /// The config version `id` last ran with (0: none), if it ever went live.
    pub fn settings_of(&self, app: &AppName, id: &Id) -> Result<Option<u32>, Error> {
        Ok(self
            .history(app)?
            .iter()
            .rev()
            .find(|r| r.id == *id && r.ok)
            .map(|r| r.config.unwrap_or(0)))
    }

    /// The uploaded configuration directory (`--config DIR`) the app runs with, if any.
    pub fn app_config(&self, app: &AppName) -> Result<Option<PathBuf>, Error> {
        let dir = self.app(app).runtime().app_configs();
        let path = self.app(app).app_config_current();
        match fs::read_to_string(&path) {
            Ok(id) => Ok(Some(dir.join(id.trim())).filter(|d| d.is_dir())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Makes the uploaded configuration `dir` (under `app-config/`) the one in force.
    pub fn set_app_config(&self, app: &AppName, dir: &std::path::Path) -> Result<(), Error> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = self.app(app).app_config_current();
        safefs::write_atomic(
            &path,
            format!("{name}\n").as_bytes(),
            safefs::WriteOptions::PRIVATE,
        )
        .map_err(|e| Error::io(&path, e))
    }

    fn settings_current(&self, app: &AppName) -> Result<u32, Error> {
        let path = self.app(app).settings_current();
        match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| Error::BadRecord {
                path,
                why: silver_types::Said::new(
                    &format!("`{}` is not a version number", text.trim()),
                    &[],
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// The highest version written, in force or not (a rollback may have gone back past it).
    fn settings_latest(&self, app: &AppName) -> Result<u32, Error> {
        Ok(read_dir(&self.app(app).settings_dir())?
            .iter()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse().ok())
            })
            .max()
            .unwrap_or(0))
    }
}
