//! Walks an app directory into a list of source entries: ignore rules applied, names checked,
//! special files refused. Reads metadata only; content is read by `pack`.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::error::Error;
use crate::limits::Limits;
use crate::path;

/// One thing found in the source tree, before its content is read.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    /// The artifact path (relative, `/`-separated, validated).
    pub path: String,
    pub kind: SourceKind,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    EmptyDir,
    /// A regular file. Its size and mode come from the `fstat` of the open file when pack reads
    /// it, which spares the walk a `stat` per file.
    File,
    Link {
        target: String,
    },
}

/// How the walk decides what to leave out.
#[derive(Debug, Clone)]
pub struct WalkConfig {
    /// Honor `.gitignore` files (on by default; `--no-gitignore` turns it off).
    pub gitignore: bool,
    /// Pack the file a symlink names, in its place, when the symlink leaves the app other than
    /// to an allowed system prefix (`--dereference`): what a Debian package's tree links to in
    /// the packages beside it (WordPress's `wp-includes/js/underscore.js`).
    pub dereference: bool,
}

/// A symlink that leaves the app, packed as the file it names (read through the link when its
/// content is read). Only a regular file can take a link's place: a directory would bring in a
/// tree the app's author never looked at, and a missing target has nothing to pack.
fn dereferenced(abs: &Path, path: &str, target: &str) -> Result<ChildKind, Error> {
    let why = match std::fs::metadata(abs) {
        Ok(m) if m.is_file() => return Ok(ChildKind::File),
        Ok(_) => "it names a directory; --dereference packs files only",
        Err(_) => "it names nothing on this machine",
    };
    Err(Error::Dereference {
        path: path.to_string(),
        target: target.to_string(),
        why,
    })
}

/// Names never packed: VCS metadata, bytecode caches, editor leftovers.
const ALWAYS_IGNORED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".bzr",
    "_darcs",
    "CVS",
    "__pycache__",
];

fn always_ignored_file(name: &[u8]) -> bool {
    name.ends_with(b".pyc")
        || name.ends_with(b".pyo")
        || name.ends_with(b"~")
        || name.ends_with(b".swp")
        || name.ends_with(b".swo")
        || (name.starts_with(b".#"))
        || (name.starts_with(b"#") && name.ends_with(b"#") && name.len() > 1)
        || name == b".DS_Store"
        // Earlier artifacts and pack leftovers, so `silver pack` run inside the app never packs itself.
        || name.ends_with(b".silver")
        || (name.starts_with(b".silver-pack-") && name.ends_with(b".partial"))
}

/// The file that makes a directory a virtualenv (PEP 405), which `.gitignore` never leaves out.
const VIRTUALENV_MARKER: &str = "pyvenv.cfg";

/// The app's static files, served by the router: `.gitignore` never leaves them out (only
/// `.silverignore` can).
const STATIC_DIR: &str = "static";

/// The file name of the per-app ignore file, in gitignore syntax.
pub const SILVERIGNORE: &str = ".silverignore";

/// Lists every entry to pack under `root`, sorted by path bytes.
pub fn walk(root: &Path, config: &WalkConfig, limits: &Limits) -> Result<Vec<SourceEntry>, Error> {
    let mut entries = Vec::new();
    stream(root, config, limits, &mut |e| {
        entries.push(e);
        true
    })?;
    Ok(entries)
}

/// Hands every entry to pack under `root` to `emit`, already in manifest order (sorted by path
/// bytes), as the walk finds them, so that reading and compressing can start on the first
/// files while the walk goes on. `emit` returns false to stop the walk early.
///
/// One directory at a time, in order: its children sorted with a directory named as if it
/// ended in `/` (so `pip-23.dist-info/…` comes before `pip/…`, as in the manifest). Ignore rules
/// follow the `ignore` crate's walker (with `require_git(false)`, as before): `.silverignore`
/// rules first, then `.gitignore`, each from the deepest directory that has a matching rule.
pub fn stream(
    root: &Path,
    config: &WalkConfig,
    limits: &Limits,
    emit: &mut dyn FnMut(SourceEntry) -> bool,
) -> Result<(), Error> {
    let _span = tracing::debug_span!("walk", root = %root.display()).entered();
    let mut walker = Walker {
        root,
        config,
        limits,
        levels: Vec::new(),
    };
    let mut sink = |e: SourceEntry| -> Result<(), Stop> {
        if emit(e) {
            Ok(())
        } else {
            Err(Stop::Consumer)
        }
    };
    match walker.dir(root, "", &mut sink) {
        Ok(_) | Err(Stop::Consumer) => Ok(()),
        Err(Stop::Failed(e)) => Err(e),
    }
}

/// Why a walk stopped before the end.
enum Stop {
    /// The consumer hung up (it failed, and will report why).
    Consumer,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

type Sink<'a> = dyn FnMut(SourceEntry) -> Result<(), Stop> + 'a;

struct Walker<'a> {
    root: &'a Path,
    config: &'a WalkConfig,
    limits: &'a Limits,
    /// The ignore rules of each directory from the root down to the one being listed.
    levels: Vec<Level>,
}

/// One directory's own ignore files.
struct Level {
    silverignore: Option<ignore::gitignore::Gitignore>,
    gitignore: Option<ignore::gitignore::Gitignore>,
    /// The directory ships whole, whatever `.gitignore` says: a virtualenv (it has a
    /// `pyvenv.cfg`), the app's top-level `static/` (collected assets are often git-ignored,
    /// yet the router serves them), or a directory inside one of those.
    ships_whole: bool,
}

struct Child {
    name: Vec<u8>,
    path: String,
    kind: ChildKind,
}

enum ChildKind {
    Dir,
    File,
    Link(String),
}

/// Where a directory's children go in the manifest's order. A directory has two places: its
/// own entry (`name`, used only if it turns out empty) and its contents (`name/…`).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    key: Vec<u8>,
    child: usize,
    contents: bool,
}

/// Every child's places, in the manifest's order (sorted by path bytes).
fn slots(children: &[Child]) -> Vec<Slot> {
    let mut slots: Vec<Slot> = Vec::with_capacity(children.len() + 4);
    for (i, c) in children.iter().enumerate() {
        slots.push(Slot {
            key: c.name.clone(),
            child: i,
            contents: false,
        });
        if let ChildKind::Dir = c.kind {
            let mut key = c.name.clone();
            key.push(b'/');
            slots.push(Slot {
                key,
                child: i,
                contents: true,
            });
        }
    }
    slots.sort();
    slots
}

impl Walker<'_> {
    /// Emits everything under `dir` (artifact path `rel`); returns whether it emitted anything.
    fn dir(&mut self, dir: &Path, rel: &str, emit: &mut Sink) -> Result<bool, Stop> {
        let names = self.read_dir(dir, rel)?;
        self.levels.push(self.level(dir, rel, &names)?);
        let result = self.children(dir, rel, names, emit);
        self.levels.pop();
        result
    }

    fn children(
        &mut self,
        dir: &Path,
        rel: &str,
        names: Vec<(std::ffi::OsString, std::fs::FileType)>,
        emit: &mut Sink,
    ) -> Result<bool, Stop> {
        let mut children = Vec::with_capacity(names.len());
        for (name, ft) in names {
            if let Some(child) = self.child(dir, rel, name, ft)? {
                children.push(child);
            }
        }
        let slots = slots(&children);
        let mut any = false;
        // Contents walked ahead of their place, when a sibling sorts between a directory's own
        // entry and its contents (`foo`, `foo-bar`, `foo/…`): only then is its emptiness needed early.
        let mut early: Vec<Option<Vec<SourceEntry>>> = children.iter().map(|_| None).collect();
        for (n, slot) in slots.iter().enumerate() {
            let child = &children[slot.child];
            let abs = dir.join(std::ffi::OsStr::from_bytes(&child.name));
            match (&child.kind, slot.contents) {
                (ChildKind::File, _) => {
                    emit(entry(&child.path, SourceKind::File))?;
                    any = true;
                }
                (ChildKind::Link(target), _) => {
                    let kind = SourceKind::Link {
                        target: target.clone(),
                    };
                    emit(entry(&child.path, kind))?;
                    any = true;
                }
                (ChildKind::Dir, false) => {
                    let adjacent = slots
                        .get(n + 1)
                        .is_some_and(|next| next.child == slot.child && next.contents);
                    if adjacent {
                        continue;
                    }
                    let mut buffer = Vec::new();
                    let mut collect = |e: SourceEntry| -> Result<(), Stop> {
                        buffer.push(e);
                        Ok(())
                    };
                    self.dir(&abs, &child.path, &mut collect)?;
                    if buffer.is_empty() {
                        emit(entry(&child.path, SourceKind::EmptyDir))?;
                        any = true;
                    }
                    early[slot.child] = Some(buffer);
                }
                (ChildKind::Dir, true) => match early[slot.child].take() {
                    Some(buffer) => {
                        for e in buffer {
                            emit(e)?;
                            any = true;
                        }
                    }
                    None => {
                        if !self.dir(&abs, &child.path, emit)? {
                            emit(entry(&child.path, SourceKind::EmptyDir))?;
                        }
                        any = true;
                    }
                },
            }
        }
        Ok(any)
    }

    fn read_dir(
        &self,
        dir: &Path,
        rel: &str,
    ) -> Result<Vec<(std::ffi::OsString, std::fs::FileType)>, Error> {
        let unreadable = |source| Error::Unreadable {
            path: self.display(rel),
            source,
        };
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir).map_err(unreadable)? {
            let e = e.map_err(unreadable)?;
            // The type from readdir (d_type) needs no stat; std stats where d_type is missing.
            let ft = e.file_type().map_err(unreadable)?;
            names.push((e.file_name(), ft));
        }
        Ok(names)
    }

    /// The directory's `.silverignore` and (unless turned off) `.gitignore`, when it has them.
    fn level(
        &self,
        dir: &Path,
        rel: &str,
        names: &[(std::ffi::OsString, std::fs::FileType)],
    ) -> Result<Level, Error> {
        let has = |n: &str| names.iter().any(|(name, ft)| name == n && !ft.is_dir());
        let rules = |file: &str| -> Result<Option<ignore::gitignore::Gitignore>, Error> {
            if !has(file) {
                return Ok(None);
            }
            let mut builder = ignore::gitignore::GitignoreBuilder::new(dir);
            let bad = |why: String| Error::Unreadable {
                path: self.display(&path::join(rel, file)),
                source: std::io::Error::other(why),
            };
            if let Some(e) = builder.add(dir.join(file)) {
                return Err(bad(e.to_string()));
            }
            builder.build().map(Some).map_err(|e| bad(e.to_string()))
        };
        Ok(Level {
            ships_whole: self.levels.last().is_some_and(|l| l.ships_whole)
                || has(VIRTUALENV_MARKER)
                || rel == STATIC_DIR,
            silverignore: rules(SILVERIGNORE)?,
            gitignore: if self.config.gitignore {
                rules(".gitignore")?
            } else {
                None
            },
        })
    }

    /// Checks one name found in a directory: `None` when it is ignored.
    fn child(
        &self,
        dir: &Path,
        rel: &str,
        name: std::ffi::OsString,
        ft: std::fs::FileType,
    ) -> Result<Option<Child>, Error> {
        let bytes = name.as_bytes();
        let ignored_name = if ft.is_dir() {
            ALWAYS_IGNORED_DIRS.iter().any(|d| d.as_bytes() == bytes)
        } else {
            always_ignored_file(bytes)
        };
        let abs = dir.join(&name);
        if ignored_name || self.ignored(&abs, ft.is_dir()) {
            return Ok(None);
        }
        let mut raw = Vec::with_capacity(rel.len() + 1 + bytes.len());
        if !rel.is_empty() {
            raw.extend_from_slice(rel.as_bytes());
            raw.push(b'/');
        }
        raw.extend_from_slice(bytes);
        // Only an error needs the lossy form: a name that is not UTF-8 is refused right here.
        let path = path::check_path(&raw, self.limits.max_path_bytes, self.limits.max_path_depth)
            .map_err(|problem| Error::BadPath {
                path: String::from_utf8_lossy(&raw).into_owned(),
                problem,
            })?
            .to_string();
        let kind = if ft.is_dir() {
            ChildKind::Dir
        } else if ft.is_file() {
            ChildKind::File
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&abs).map_err(|source| Error::Unreadable {
                path: path.clone(),
                source,
            })?;
            let target =
                path::check_link_target(target.as_os_str().as_bytes(), self.limits.max_path_bytes)
                    .map_err(|problem| Error::BadPath {
                        path: format!("{path} (symlink target)"),
                        problem,
                    })?;
            match self.config.dereference && self.leaves_app(&abs, target) {
                true => dereferenced(&abs, &path, target)?,
                false => ChildKind::Link(target.to_string()),
            }
        } else {
            return Err(Error::SpecialFile {
                path,
                kind: special_kind(&ft),
            });
        };
        Ok(Some(Child {
            name: bytes.to_vec(),
            path,
            kind,
        }))
    }

    /// Whether the symlink at `abs` resolves, on this machine, outside the app, other than by an
    /// absolute link to an allowed system prefix (a virtualenv's `bin/python`, which stays a link).
    fn leaves_app(&self, abs: &Path, target: &str) -> bool {
        if target.starts_with('/') && self.limits.is_system_target(target) {
            return false;
        }
        let root = std::fs::canonicalize(self.root).unwrap_or_else(|_| self.root.to_path_buf());
        // A target that does not exist leaves the app too: only a file can take its place, and
        // `dereferenced` says there is none.
        std::fs::canonicalize(abs).map_or(true, |resolved| !resolved.starts_with(&root))
    }

    /// The `ignore` crate's precedence: the deepest matching `.silverignore` rule decides; failing
    /// that, the deepest matching `.gitignore` rule. A `!rule` match keeps the path.
    ///
    /// Except that `.gitignore` never leaves out a virtualenv or anything in it. Those rules keep
    /// virtualenvs out of git, not out of the app: uv, virtualenv and Python 3.13's venv write a
    /// `*` `.gitignore` into every virtualenv they make, and most projects list theirs in
    /// `.gitignore`. The runtime puts a shipped virtualenv's site-packages on `sys.path`, so one
    /// inside the app ships unless `.silverignore` leaves it out.
    fn ignored(&self, abs: &Path, is_dir: bool) -> bool {
        let deepest = |pick: &dyn Fn(&Level) -> Option<&ignore::gitignore::Gitignore>| {
            self.levels.iter().rev().find_map(|level| {
                let m = pick(level)?.matched(abs, is_dir);
                (!m.is_none()).then(|| m.is_ignore())
            })
        };
        if let Some(decided) = deepest(&|l| l.silverignore.as_ref()) {
            return decided;
        }
        if self.levels.last().is_some_and(|l| l.ships_whole) {
            return false;
        }
        // Only a directory `.gitignore` would leave out costs a look for `pyvenv.cfg`.
        let top_static = is_dir && self.levels.len() == 1 && abs.ends_with(STATIC_DIR);
        deepest(&|l| l.gitignore.as_ref()).unwrap_or(false)
            && !top_static
            && !(is_dir && abs.join(VIRTUALENV_MARKER).is_file())
    }

    fn display(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.root.display().to_string()
        } else {
            rel.to_string()
        }
    }
}

fn entry(path: &str, kind: SourceKind) -> SourceEntry {
    SourceEntry {
        path: path.to_string(),
        kind,
    }
}

fn special_kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_socket() {
        "socket"
    } else if ft.is_fifo() {
        "FIFO (named pipe)"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tree from `spec` (`d/` an empty directory, `f` a file, `a/b` a file in `a`),
    /// with `ignores` as (path, content) ignore files, and checks the walk against `expected`.
    fn check(spec: &[&str], ignores: &[(&str, &str)], expected: &[&str]) {
        let tmp = tempfile::tempdir().unwrap();
        make(tmp.path(), spec, ignores);
        let got: Vec<String> = walk(
            tmp.path(),
            &WalkConfig {
                gitignore: true,
                dereference: false,
            },
            &Limits::default(),
        )
        .unwrap()
        .into_iter()
        .map(|e| match e.kind {
            SourceKind::EmptyDir => format!("{}/", e.path),
            _ => e.path,
        })
        .collect();
        assert_eq!(got, expected);
    }

    fn make(root: &Path, spec: &[&str], ignores: &[(&str, &str)]) {
        for s in spec {
            let p = root.join(s.trim_end_matches('/'));
            if s.ends_with('/') {
                std::fs::create_dir_all(&p).unwrap();
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, s).unwrap();
            }
        }
        for (path, content) in ignores {
            std::fs::write(root.join(path), content).unwrap();
        }
    }

    #[test]
    fn order_is_path_bytes_with_directories_before_their_contents() {
        // `pip-23.dist-info/…` sorts before `pip/…`, and an empty `foo` before `foo-bar`.
        check(
            &[
                "pip/x",
                "pip-23.dist-info/y",
                "foo/",
                "foo-bar",
                "foo.d/z",
                "a b",
                "a/c",
            ],
            &[],
            &[
                "a b",
                "a/c",
                "foo/",
                "foo-bar",
                "foo.d/z",
                "pip-23.dist-info/y",
                "pip/x",
            ],
        );
    }

    #[test]
    fn a_directory_emptied_by_ignore_rules_is_an_empty_directory() {
        check(
            &["logs/a.log", "logs-old", "src/app.py"],
            &[(".gitignore", "*.log\n")],
            &[".gitignore", "logs/", "logs-old", "src/app.py"],
        );
    }

    #[test]
    fn gitignore_never_leaves_out_the_top_static_dir_but_silverignore_does() {
        let tree = [
            "static/app.css",
            "static/admin/x.js",
            "static/cache.log",
            "src/static/y.css",
            "app.py",
        ];
        check(
            &tree,
            &[(".gitignore", "/static/\n*.log\nsrc/static/\n")],
            &[
                ".gitignore",
                "app.py",
                "src/",
                "static/admin/x.js",
                "static/app.css",
                "static/cache.log",
            ],
        );
        check(
            &tree,
            &[
                (".gitignore", "/static/\n"),
                (".silverignore", "static/admin/\n"),
            ],
            &[
                ".gitignore",
                ".silverignore",
                "app.py",
                "src/static/y.css",
                "static/app.css",
                "static/cache.log",
            ],
        );
    }

    #[test]
    fn gitignore_never_leaves_out_a_virtualenv_but_silverignore_does() {
        let venvs = [
            "venv/pyvenv.cfg",
            "venv/bin/python3",
            "venv/lib/x.log",
            ".venv/pyvenv.cfg",
            ".venv/lib/six.py",
            "build/pyvenv.txt",
            "app.py",
        ];
        // The app's own rules name its virtualenvs; uv and virtualenv put a `*` inside them.
        check(
            &venvs,
            &[
                (".gitignore", "venv/\n.venv\nbuild/\n*.log\n"),
                (".venv/.gitignore", "*\n"),
            ],
            &[
                ".gitignore",
                ".venv/.gitignore",
                ".venv/lib/six.py",
                ".venv/pyvenv.cfg",
                "app.py",
                "venv/bin/python3",
                "venv/lib/x.log",
                "venv/pyvenv.cfg",
            ],
        );
        // `.silverignore` still decides, for the whole virtualenv or part of it.
        check(
            &venvs,
            &[
                (".gitignore", "venv/\n.venv\n"),
                (".silverignore", ".venv/\nvenv/lib/\n"),
            ],
            &[
                ".gitignore",
                ".silverignore",
                "app.py",
                "build/pyvenv.txt",
                "venv/bin/python3",
                "venv/pyvenv.cfg",
            ],
        );
    }

    #[test]
    fn ignore_rules_follow_the_ignore_crate() {
        // A nested .gitignore overrides its parent's; .silverignore overrides .gitignore.
        check(
            &["a/keep.log", "a/x.log", "b.log", "c.tmp", "d"],
            &[
                (".gitignore", "*.log\n"),
                ("a/.gitignore", "!keep.log\n"),
                (".silverignore", "*.tmp\n!b.log\n"),
            ],
            &[
                ".gitignore",
                ".silverignore",
                "a/.gitignore",
                "a/keep.log",
                "b.log",
                "d",
            ],
        );
    }

    #[test]
    fn the_app_gitignore_reaches_into_a_nested_repository() {
        // As the `ignore` crate's walker does without `require_git`: the app is one tree.
        check(
            &["vendor/lib/.git/", "vendor/lib/x.log", "y.log"],
            &[(".gitignore", "*.log\n")],
            &[".gitignore", "vendor/lib/"],
        );
    }

    proptest::proptest! {
        /// Any tree of tricky names walks in exactly manifest order: sorted by path bytes, with
        /// empty directories as entries.
        #[test]
        fn any_tree_walks_in_path_byte_order(
            spec in proptest::collection::vec("[ab.-]{1,3}(/[ab.-]{1,3}){0,2}/?", 1..24)
        ) {
            let tmp = tempfile::tempdir().unwrap();
            for s in &spec {
                if s.split('/').any(|c| c == "." || c == "..") {
                    continue;
                }
                let p = tmp.path().join(s.trim_end_matches('/'));
                // A name already taken by the other kind is skipped.
                if s.ends_with('/') {
                    let _ = std::fs::create_dir_all(&p);
                } else if std::fs::create_dir_all(p.parent().unwrap()).is_ok() && !p.is_dir() {
                    let _ = std::fs::write(&p, "x");
                }
            }
            let got: Vec<String> =
                walk(tmp.path(), &WalkConfig {
                gitignore: true,
                dereference: false,
            }, &Limits::default())
                    .unwrap()
                    .into_iter()
                    .map(|e| e.path)
                    .collect();
            let mut sorted = got.clone();
            sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            proptest::prop_assert_eq!(&got, &sorted);
            // Every file and every empty directory, nothing else.
            let mut reference: Vec<String> = walkdir::WalkDir::new(tmp.path())
                .min_depth(1)
                .into_iter()
                .map(|e| e.unwrap())
                .filter(|e| !e.file_type().is_dir() || std::fs::read_dir(e.path()).unwrap().next().is_none())
                .map(|e| e.path().strip_prefix(tmp.path()).unwrap().to_str().unwrap().to_string())
                .collect();
            reference.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            proptest::prop_assert_eq!(got, reference);
        }
    }
}
