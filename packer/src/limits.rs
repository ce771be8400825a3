//! Limits on what reading an artifact may cost, and the system prefixes symlinks may leave to.

use serde::Serialize;

/// Bounds applied when reading an artifact (and at pack time, so that a pack never produces what
/// a node would refuse). Every default is documented in the README's limits table.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Entries in the manifest (files, directories, symlinks).
    pub max_entries: u64,
    /// Sum of all file sizes.
    pub max_total_bytes: u64,
    /// Bytes in one path or symlink target.
    pub max_path_bytes: usize,
    /// Components in one path.
    pub max_path_depth: usize,
    /// Size of the manifest itself.
    pub max_manifest_bytes: u64,
    /// zstd window, as a power of two: the decoder's memory is about 2^this bytes.
    pub max_window_log: u32,
    /// Absolute symlink targets allowed ("system links"); `*` matches one path component.
    pub system_prefixes: Vec<String>,
}

/// Where an interpreter may live outside the app. A virtualenv's `bin/python` points at one.
pub const DEFAULT_SYSTEM_PREFIXES: &[&str] = &[
    "/usr/",
    "/bin/",
    "/sbin/",
    "/lib/",
    "/lib64/",
    "/opt/",
    "/root/.pyenv/versions/",
    "/home/*/.pyenv/versions/",
    "/root/.local/share/uv/python/",
    "/home/*/.local/share/uv/python/",
];

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1_000_000,
            max_total_bytes: 16 << 30,
            max_path_bytes: 1024,
            max_path_depth: 64,
            max_manifest_bytes: 256 << 20,
            max_window_log: 27,
            system_prefixes: DEFAULT_SYSTEM_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl Limits {
    /// Whether an absolute symlink target is under one of the allowed system prefixes.
    pub fn is_system_target(&self, target: &str) -> bool {
        // `/usr/../etc/shadow` would match `/usr/` textually: refuse any dot component outright.
        if target
            .split('/')
            .skip(1)
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return false;
        }
        self.system_prefixes
            .iter()
            .any(|p| prefix_matches(p, target))
    }
}

fn prefix_matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_end_matches('/');
    let pat: Vec<&str> = pattern.split('/').collect();
    let parts: Vec<&str> = path.split('/').collect();
    // A prefix names a directory: the target must be strictly inside it.
    parts.len() > pat.len() && pat.iter().zip(&parts).all(|(p, c)| *p == "*" || p == c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_targets() {
        let limits = Limits::default();
        let check = |target: &str, expected: bool| {
            assert_eq!(limits.is_system_target(target), expected, "{target}")
        };
        check("/usr/bin/python3", true);
        check("/usr/bin/python3.11", true);
        check("/root/.pyenv/versions/3.11.7/bin/python3", true);
        check("/home/ci/.pyenv/versions/3.12.1/bin/python3", true);
        check("/home/ci/secrets", false);
        check("/usr", false);
        check("/usr/../etc/shadow", false);
        check("/usr//bin", false);
        check("/etc/shadow", false);
        check("/tmp/x", false);
    }
}
