//! Virtualenvs shipped inside an app (PEP 405: a directory holding `pyvenv.cfg`): where one is,
//! and which Python made it, so pack can warn and the node can refuse one it cannot run.

use std::path::{Path, PathBuf};

/// A virtualenv in an app or release directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Venv {
    /// Its directory.
    pub dir: PathBuf,
    /// `home` in `pyvenv.cfg`: the directory of the interpreter that made it.
    pub home: Option<String>,
    /// `version` (or `version_info`) in `pyvenv.cfg`, e.g. `3.12.1`.
    pub version: Option<String>,
}

impl Venv {
    /// `major.minor` of the Python that made it, e.g. `3.12`.
    pub fn python(&self) -> Option<String> {
        let v = self.version.as_deref()?;
        let mut parts = v.split('.');
        Some(format!("{}.{}", parts.next()?, parts.next()?))
    }

    /// Whether the interpreter that made it lives outside the system's `/usr`: a pyenv, conda
    /// or Homebrew Python that a node does not have, or that the app's user cannot enter.
    pub fn made_outside_usr(&self) -> bool {
        self.home
            .as_deref()
            .is_some_and(|h| !h.starts_with("/usr/") && h != "/usr")
    }
}

/// The virtualenv in `dir`: `dir` itself, or the first directory right inside it (by name)
/// that holds `pyvenv.cfg`.
pub fn find(dir: &Path) -> Option<Venv> {
    if dir.join("pyvenv.cfg").is_file() {
        return Some(read(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("pyvenv.cfg").is_file())
        .collect();
    found.sort();
    found.first().map(|d| read(d))
}

fn read(dir: &Path) -> Venv {
    let text = std::fs::read_to_string(dir.join("pyvenv.cfg")).unwrap_or_default();
    let get = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    Venv {
        dir: dir.to_path_buf(),
        home: get("home"),
        version: get("version").or_else(|| get("version_info")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cfg: &str, python: Option<&str>, outside: bool) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("venv")).unwrap();
        std::fs::write(dir.path().join("venv/pyvenv.cfg"), cfg).unwrap();
        let venv = find(dir.path()).unwrap();
        assert_eq!(venv.dir, dir.path().join("venv"));
        assert_eq!(venv.python().as_deref(), python, "{cfg}");
        assert_eq!(venv.made_outside_usr(), outside, "{cfg}");
    }

    #[test]
    fn pyvenv_cfg() {
        check("home = /usr/bin\nversion = 3.11.2\n", Some("3.11"), false);
        check(
            "home = /root/.pyenv/versions/3.12.1/bin\nversion_info = 3.12.1.final.0\n",
            Some("3.12"),
            true,
        );
        check("home = /usr/bin\n", None, false);
    }
}
