//! The services an app names in `app.ini` (`service.<name> =`, design §4 and §6): each behind
//! one [`Service`] trait, in a file of its own, and reached through one [`Registry`].
//!
//! - `files`, `writable_root` ([`files`]): a directory of the app's own, kept across releases.
//! - `postgresql`, `postgis` ([`postgresql`]): a role and a database on the node's PostgreSQL.
//! - `mysql` ([`mysql`]): a user and a database on the node's MariaDB.
//! - `redis` ([`redis`]): a user confined to its key prefix on the node's Redis.
//! - `couchdb` ([`couchdb`]): a user and a database on the node's CouchDB.
//!
//! Adding a service: a variant of `silver_types::ServiceKind`, a file here implementing
//! [`Service`], and its arm in [`Registry::new`]; the compiler names every other place.

mod admin_url;
pub mod couchdb;
pub mod dumps;
pub mod files;
pub mod mysql;
pub mod postgresql;
pub mod redis;
mod service;

use std::collections::BTreeMap;

use silver_types::{AppName, ServiceKind};

use crate::error::Error;

pub use admin_url::AdminUrl;
pub use postgresql::Postgres;
pub use service::{Service, Tenant};

/// The servers behind the services, as the agent's flags name them.
#[derive(Debug, Clone, Default)]
pub struct Servers {
    /// The node's PostgreSQL, for `service.postgresql` and `service.postgis`.
    pub postgres: Option<Postgres>,
    /// The node's Redis, for `service.redis`.
    pub redis: redis::Redis,
    /// The node's MariaDB, for `service.mysql`.
    pub mysql: mysql::Mysql,
    /// The node's CouchDB HTTP API, for `service.couchdb`.
    pub couchdb: couchdb::Couchdb,
}

/// Every service this node provides, by kind: made once, when the runtime starts.
#[derive(Debug)]
pub struct Registry {
    services: BTreeMap<ServiceKind, Box<dyn Service>>,
}

impl Registry {
    pub fn new(servers: &Servers) -> Registry {
        let make = |kind: ServiceKind| -> Box<dyn Service> {
            match kind {
                ServiceKind::Files => Box::new(files::Dir::Files),
                ServiceKind::WritableRoot => Box::new(files::Dir::WritableRoot),
                ServiceKind::Postgresql | ServiceKind::Postgis => {
                    Box::new(postgresql::Postgresql {
                        server: servers.postgres.clone(),
                        postgis: kind == ServiceKind::Postgis,
                    })
                }
                ServiceKind::Mysql => Box::new(servers.mysql.clone()),
                ServiceKind::Couchdb => Box::new(servers.couchdb.clone()),
                ServiceKind::Redis => Box::new(servers.redis.clone()),
            }
        };
        Registry {
            services: ServiceKind::ALL.iter().map(|&k| (k, make(k))).collect(),
        }
    }

    pub fn get(&self, kind: ServiceKind) -> &dyn Service {
        self.services[&kind].as_ref()
    }
}

/// An app's services on this node: who it is, what its release names, and the registry.
#[derive(Debug, Clone, Copy)]
pub struct AppData<'a> {
    pub tenant: Tenant<'a>,
    /// The services its release names (`service.<name> = settings`).
    pub services: &'a [(ServiceKind, String)],
    pub registry: &'a Registry,
}

impl AppData<'_> {
    /// The services whose data a backup holds, one per data name (`postgis` over
    /// `postgresql` when both are named: it is the one that installs the extension).
    pub fn data_kinds(&self) -> Vec<ServiceKind> {
        let mut by_name: BTreeMap<&str, ServiceKind> = BTreeMap::new();
        for (kind, _) in self.services {
            let name = kind.data_name();
            let slot = by_name.entry(name).or_insert(*kind);
            *slot = (*slot).max(*kind);
        }
        let mut kinds: Vec<ServiceKind> = by_name.into_values().collect();
        kinds.sort();
        kinds
    }

    /// The app's service whose data goes by `name` in a backup.
    pub fn kind_of_data(&self, name: &str) -> Option<ServiceKind> {
        self.data_kinds()
            .into_iter()
            .find(|k| k.data_name() == name)
    }

    /// Whether the app keeps any data a checkpoint would hold.
    pub fn has_data(&self) -> bool {
        !self.services.is_empty()
    }

    pub fn service(&self, kind: ServiceKind) -> &dyn Service {
        self.registry.get(kind)
    }
}

/// Provisions every service of an app; returns their variables. One provisioning per app at a
/// time: an activation and a `silver run` at once would race on the same role (PostgreSQL
/// answers `tuple concurrently updated`) and the same CouchDB user document.
pub fn provision(d: &AppData) -> Result<Vec<(String, String)>, Error> {
    let lock = app_lock(d.tenant.app);
    let _held = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut env = Vec::new();
    for (kind, _settings) in d.services {
        env.extend(d.registry.get(*kind).provision(&d.tenant)?);
    }
    Ok(env)
}

/// The lock that serializes provisioning of one app within this process.
fn app_lock(app: &AppName) -> std::sync::Arc<std::sync::Mutex<()>> {
    static LOCKS: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<AppName, std::sync::Arc<std::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut locks = LOCKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    locks.entry(app.clone()).or_default().clone()
}

/// Silver Lining's `packages`: the node must already have them (a baked image lists them in its
/// recipe). Returns an error naming the missing ones; a node without dpkg cannot tell and passes.
pub fn check_packages(app: &AppName, packages: &[String]) -> Result<(), Error> {
    if packages.is_empty() {
        return Ok(());
    }
    let mut query = std::process::Command::new("dpkg-query");
    query
        .args(["-W", "-f", "${Package} ${db:Status-Status}\n"])
        .args(packages);
    let Ok(out) = crate::command::run(query, crate::command::Stdin::Null, crate::command::ADMIN)
    else {
        tracing::warn!(%app, "no dpkg-query: cannot check the app's packages");
        return Ok(());
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_suffix(" installed"))
        .map(|p| p.split(':').next().unwrap_or(p))
        .collect();
    let missing: Vec<&str> = packages
        .iter()
        .map(String::as_str)
        .filter(|p| !installed.contains(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::MissingPackages {
        app: app.clone(),
        missing: missing.iter().map(|p| p.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::AppPaths;

    #[test]
    fn packages_the_node_lacks_are_named() {
        check_packages(&AppName::parse("blog").unwrap(), &["coreutils".into()]).unwrap();
        let err = check_packages(
            &AppName::parse("blog").unwrap(),
            &["coreutils".into(), "no-such-package-xyz".into()],
        )
        .unwrap_err();
        assert!(
            err.to_string().ends_with("lacks: no-such-package-xyz"),
            "{err}"
        );
        let hint = err.hint().unwrap();
        assert!(
            hint.contains("apt-get install no-such-package-xyz"),
            "{hint}"
        );
    }

    /// Every kind has its service, its data name is a kind's name, and its dump is a file a
    /// backup carries.
    #[test]
    fn the_registry_serves_every_kind() {
        let registry = Registry::new(&Servers::default());
        for &kind in ServiceKind::ALL {
            let _ = registry.get(kind);
            let name = kind.data_name();
            assert!(ServiceKind::parse(name).is_some(), "{kind}: {name}");
            assert!(
                silver_wire::api::BACKUP_FILES.contains(&kind.dump_file()),
                "{kind}"
            );
        }
    }

    #[test]
    fn services_are_provisioned_or_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let app = AppName::parse("blog").unwrap();
        let paths = AppPaths::new(dir.path().to_path_buf());
        let registry = Registry::new(&Servers::default());
        let check = |kinds: &[ServiceKind]| {
            let services: Vec<(ServiceKind, String)> =
                kinds.iter().map(|k| (*k, String::new())).collect();
            let tenant = Tenant {
                node: "0a1b2c3d",
                app: &app,
                paths: &paths,
                user: None,
            };
            provision(&AppData {
                tenant,
                services: &services,
                registry: &registry,
            })
            .map(|env| env.into_iter().map(|(k, _)| k).collect::<Vec<_>>())
            .map_err(|e| e.to_string())
        };
        assert_eq!(check(&[ServiceKind::Files]).unwrap(), ["CONFIG_FILES"]);
        assert!(dir.path().join("files").is_dir());
        let err = check(&[ServiceKind::Postgis]).unwrap_err();
        assert!(err.contains("this node has no PostgreSQL"), "{err}");
    }
}
