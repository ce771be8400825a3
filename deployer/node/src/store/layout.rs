//! The node's store on disk: every path under its root, named here once. Nothing else joins a
//! name onto the root (an app's own directory is [`AppDir`]'s, and under it the runtime's
//! state is `AppPaths`').
//!
//! ```text
//! objects/<2 hex>/<62 hex>   content-addressed files      objects/tmp/   uploads in progress
//! artifacts/<64 hex>         committed manifests          apps/<app>/    AppDir
//! token   node-id   redis-default.secret   registry-auth.json   (0600)
//! registry/parts/<sha256 hex>   manifest parts pulled before
//! ```

use std::path::{Path, PathBuf};

use silver_types::AppName;

use super::AppDir;

/// A store's root, as paths.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn objects(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// Where an object of this hash lives: two levels, so no directory holds millions.
    pub fn object(&self, hex: &str) -> PathBuf {
        self.objects().join(&hex[..2]).join(&hex[2..])
    }

    /// Uploads in progress and other scratch files, on the objects' file system (renamed into
    /// place), emptied at start-up.
    pub fn objects_tmp(&self) -> PathBuf {
        self.objects().join("tmp")
    }

    pub fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    pub fn artifact(&self, hex: &str) -> PathBuf {
        self.artifacts().join(hex)
    }

    /// The node's trust policy (`silver trust`): with one, nothing activates without signed
    /// build and promotion records.
    pub fn trust_policy(&self) -> PathBuf {
        self.root.join("trust.toml")
    }

    /// Registry credentials for pulls, in Docker's format (0600, the agent's alone).
    pub fn registry_auth(&self) -> PathBuf {
        self.root.join("registry-auth.json")
    }

    /// Manifest parts fetched from registries, by sha256: a node pulling the next release of
    /// an app fetches only the parts that changed.
    pub fn registry_parts(&self) -> PathBuf {
        self.root.join("registry/parts")
    }

    /// The front door's certificates and ACME's state (0700; every file in it 0600).
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }

    pub fn apps(&self) -> PathBuf {
        self.root.join("apps")
    }

    /// The app's directory; the only way to a path under `apps/<app>/`.
    pub fn app(&self, app: &AppName) -> AppDir {
        AppDir {
            dir: self.apps().join(app),
        }
    }

    /// The control API's bearer token (0600).
    pub fn token(&self) -> PathBuf {
        self.root.join("token")
    }

    /// The node's id (0600), made once.
    pub fn node_id(&self) -> PathBuf {
        self.root.join("node-id")
    }

    /// The password the agent gives a Redis `default` user that anyone could use.
    pub fn redis_default_secret(&self) -> PathBuf {
        self.root.join("redis-default.secret")
    }

    /// Whether this looks like a store (it has its objects).
    pub fn is_store(&self) -> bool {
        self.objects().is_dir()
    }
}
