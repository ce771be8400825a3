//! The manifest: the canonical, line-oriented list of an artifact's entries, and the id derived from it.
//!
//! Format version 1, UTF-8, one entry per line, sorted by path bytes, fields separated by tabs
//! (paths cannot hold tabs, see `path`):
//!
//! ```text
//! silver-manifest 1
//! dir	static/uploads
//! exec	bin/run	120	<blake3 hex>
//! file	app.py	311	<blake3 hex>
//! link	venv/bin/python	python3
//! ```
//!
//! Modes are implied by the kind: `file` 0644, `exec` 0755, `dir` 0755, `link` 0777.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

pub use silver_types::{ArtifactId as Id, Hash};

use crate::limits::Limits;
use crate::path::{self, PathProblem};

/// The first line of every manifest.
pub const HEADER: &str = "silver-manifest 1";

/// What an entry is. The mode of each kind is fixed, so it never varies between machines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Kind {
    /// A directory with no entries under it (others are implied by their contents).
    Dir,
    File {
        size: u64,
        hash: Hash,
    },
    Exec {
        size: u64,
        hash: Hash,
    },
    Link {
        target: String,
    },
}

impl Kind {
    /// The content hash of a file or executable; None for directories and symlinks.
    pub fn content_hash(&self) -> Option<Hash> {
        match self {
            Kind::File { hash, .. } | Kind::Exec { hash, .. } => Some(*hash),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub path: String,
    #[serde(flatten)]
    pub kind: Kind,
}

impl Entry {
    /// The Unix mode the entry is materialized with.
    pub fn mode(&self) -> u32 {
        match self.kind {
            Kind::File { .. } => 0o644,
            Kind::Exec { .. } | Kind::Dir => 0o755,
            Kind::Link { .. } => 0o777,
        }
    }
    pub fn size(&self) -> u64 {
        match self.kind {
            Kind::File { size, .. } | Kind::Exec { size, .. } => size,
            _ => 0,
        }
    }
}

/// A parsed, validated manifest with its id.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub entries: Vec<Entry>,
    pub bytes: Vec<u8>,
    pub id: Id,
}

/// Why a manifest is not acceptable, with the line (1-based) it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestProblem {
    #[error("line 1 is not the header `{HEADER}`")]
    Header,
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: String },
    #[error("line {line}: entry `{path}`: {problem}")]
    Path {
        line: usize,
        path: String,
        problem: PathProblem,
    },
    #[error("line {line}: `{path}` is out of order or a duplicate (entries must be sorted by path bytes, each once)")]
    Order { line: usize, path: String },
    #[error("line {line}: `{path}` lies under `{ancestor}`, which is not a directory")]
    UnderNonDir {
        line: usize,
        path: String,
        ancestor: String,
    },
    #[error("line {line}: directory `{path}` is listed as empty but has entries under it")]
    DirNotEmpty { line: usize, path: String },
    #[error("line {line}: symlink `{path}` -> `{target}` {problem}")]
    Link {
        line: usize,
        path: String,
        target: String,
        problem: LinkProblem,
    },
    #[error("{entries} entries, over the limit of {max}")]
    TooManyEntries { entries: u64, max: u64 },
    #[error("{bytes} bytes of content, over the limit of {max}")]
    TooManyBytes { bytes: u64, max: u64 },
}

/// Why a symlink is refused. Every variant blocks reads or writes outside the release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkProblem {
    #[error("leaves the app (relative targets must resolve inside it)")]
    Escapes,
    #[error("is absolute and outside the allowed system prefixes")]
    NotSystem,
    #[error("goes through the system link `{0}` and on past it")]
    ThroughSystemLink(String),
    #[error("has a target that is not allowed: {0}")]
    BadTarget(PathProblem),
    #[error("is part of a loop of symlinks")]
    Loop,
}

impl Manifest {
    /// Builds the canonical manifest of a set of entries in any order.
    pub fn from_entries(mut entries: Vec<Entry>) -> Manifest {
        entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        let bytes = format(&entries).into_bytes();
        let id = Id(Hash::of(&bytes));
        Manifest { entries, bytes, id }
    }

    /// Parses manifest bytes strictly: anything that would not be re-formatted byte for byte is refused,
    /// so one tree has exactly one manifest and one id.
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Manifest, ManifestProblem> {
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestProblem::Syntax {
            line: 0,
            what: "not UTF-8".into(),
        })?;
        let body = text.strip_prefix(HEADER).and_then(|t| t.strip_prefix('\n'));
        let body = body.ok_or(ManifestProblem::Header)?;
        let mut entries = Vec::new();
        if !body.is_empty() {
            let Some(body) = body.strip_suffix('\n') else {
                let line = text.lines().count();
                return Err(ManifestProblem::Syntax {
                    line,
                    what: "no newline at the end".into(),
                });
            };
            for (i, line) in body.split('\n').enumerate() {
                let lineno = i + 2;
                if entries.len() as u64 >= limits.max_entries {
                    return Err(ManifestProblem::TooManyEntries {
                        entries: body.split('\n').count() as u64,
                        max: limits.max_entries,
                    });
                }
                entries.push(parse_line(line, lineno, limits)?);
            }
        }
        let manifest = Manifest {
            id: Id(Hash::of(bytes)),
            bytes: bytes.to_vec(),
            entries,
        };
        manifest.validate(limits)?;
        Ok(manifest)
    }

    /// Structural checks shared by pack and unpack: order, ancestry, emptiness, symlinks, totals.
    pub fn validate(&self, limits: &Limits) -> Result<(), ManifestProblem> {
        let count = self.entries.len() as u64;
        if count > limits.max_entries {
            return Err(ManifestProblem::TooManyEntries {
                entries: count,
                max: limits.max_entries,
            });
        }
        let total: u64 = self
            .entries
            .iter()
            .map(Entry::size)
            .fold(0, u64::saturating_add);
        if total > limits.max_total_bytes {
            return Err(ManifestProblem::TooManyBytes {
                bytes: total,
                max: limits.max_total_bytes,
            });
        }
        let index: HashMap<&str, &Kind> = self
            .entries
            .iter()
            .map(|e| (e.path.as_str(), &e.kind))
            .collect();
        let mut previous: Option<&str> = None;
        // Siblings share every ancestor: the ancestors of a run of entries in one directory
        // are looked up once, not once per entry.
        let mut checked_dir: Option<&str> = None;
        for (i, entry) in self.entries.iter().enumerate() {
            let line = i + 2;
            let path = entry.path.as_str();
            // Strictly increasing order rules out duplicates, which could overwrite a verified file.
            if previous.is_some_and(|p| p.as_bytes() >= path.as_bytes()) {
                return Err(ManifestProblem::Order {
                    line,
                    path: path.into(),
                });
            }
            previous = Some(path);
            let dir = path::parent(path);
            if checked_dir != Some(dir) {
                check_ancestors(&index, path, line)?;
                checked_dir = Some(dir);
            }
            if let Kind::Link { target } = &entry.kind {
                check_link(&index, path, target, limits).map_err(|problem| {
                    ManifestProblem::Link {
                        line,
                        path: path.into(),
                        target: target.clone(),
                        problem,
                    }
                })?;
            }
        }
        Ok(())
    }

    pub fn content_bytes(&self) -> u64 {
        self.entries.iter().map(Entry::size).sum()
    }

    /// The distinct file contents, in manifest order, each at its first path: what an upload
    /// sends and what registry packs hold, once each.
    pub fn distinct_objects(&self) -> Vec<(Hash, u64)> {
        let mut seen = std::collections::HashSet::new();
        self.entries
            .iter()
            .filter_map(|e| e.kind.content_hash().map(|h| (h, e.size())))
            .filter(|(h, _)| seen.insert(*h))
            .collect()
    }

    pub fn file_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.kind, Kind::File { .. } | Kind::Exec { .. }))
            .count()
    }
}

fn format(entries: &[Entry]) -> String {
    let mut out = String::with_capacity(64 + entries.len() * 100);
    out.push_str(HEADER);
    out.push('\n');
    for e in entries {
        let _ = match &e.kind {
            Kind::Dir => writeln!(out, "dir\t{}", e.path),
            Kind::File { size, hash } => {
                writeln!(out, "file\t{}\t{size}\t{}", e.path, hash.to_hex())
            }
            Kind::Exec { size, hash } => {
                writeln!(out, "exec\t{}\t{size}\t{}", e.path, hash.to_hex())
            }
            Kind::Link { target } => writeln!(out, "link\t{}\t{target}", e.path),
        };
    }
    out
}

fn parse_line(line: &str, lineno: usize, limits: &Limits) -> Result<Entry, ManifestProblem> {
    let syntax = |what: &str| ManifestProblem::Syntax {
        line: lineno,
        what: what.into(),
    };
    let fields: Vec<&str> = line.split('\t').collect();
    let path = fields
        .get(1)
        .copied()
        .ok_or_else(|| syntax("expected a kind and a path"))?;
    path::check_path(
        path.as_bytes(),
        limits.max_path_bytes,
        limits.max_path_depth,
    )
    .map_err(|problem| ManifestProblem::Path {
        line: lineno,
        path: path.into(),
        problem,
    })?;
    let kind = match (fields[0], fields.len()) {
        ("dir", 2) => Kind::Dir,
        ("file", 4) | ("exec", 4) => {
            let size = parse_size(fields[2]).ok_or_else(|| syntax("invalid size"))?;
            let hash = Hash::from_hex(fields[3]).ok_or_else(|| syntax("invalid BLAKE3 hash"))?;
            if fields[0] == "file" {
                Kind::File { size, hash }
            } else {
                Kind::Exec { size, hash }
            }
        }
        ("link", 3) => Kind::Link {
            target: fields[2].to_string(),
        },
        ("dir" | "file" | "exec" | "link", _) => return Err(syntax("wrong number of fields")),
        (other, _) => return Err(syntax(&format!("unknown kind `{other}`"))),
    };
    Ok(Entry {
        path: path.to_string(),
        kind,
    })
}

/// Decimal without sign or leading zeros: one spelling per number.
fn parse_size(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

fn check_ancestors(
    index: &HashMap<&str, &Kind>,
    path: &str,
    line: usize,
) -> Result<(), ManifestProblem> {
    for ancestor in path::ancestors(path) {
        match index.get(ancestor) {
            None => {}
            // An empty-dir entry with children would be a second spelling of the same tree.
            Some(Kind::Dir) => {
                return Err(ManifestProblem::DirNotEmpty {
                    line,
                    path: ancestor.into(),
                })
            }
            // A file under a symlink would be written through it, outside the release.
            Some(_) => {
                return Err(ManifestProblem::UnderNonDir {
                    line,
                    path: path.into(),
                    ancestor: ancestor.into(),
                })
            }
        }
    }
    Ok(())
}

/// How far symlink resolution may chase links before calling it a loop (Linux uses 40).
const MAX_HOPS: usize = 40;

/// Resolves a symlink against the tree the manifest describes, following other symlinks in it,
/// and refuses any that leaves the tree other than by an absolute link to a system prefix.
pub fn check_link(
    index: &HashMap<&str, &Kind>,
    link_path: &str,
    target: &str,
    limits: &Limits,
) -> Result<(), LinkProblem> {
    path::check_link_target(target.as_bytes(), limits.max_path_bytes)
        .map_err(LinkProblem::BadTarget)?;
    if target.starts_with('/') {
        return if limits.is_system_target(target) {
            Ok(())
        } else {
            Err(LinkProblem::NotSystem)
        };
    }
    let mut stack: Vec<&str> = path::parent(link_path)
        .split('/')
        .filter(|c| !c.is_empty())
        .collect();
    let mut pending: std::collections::VecDeque<&str> = target.split('/').collect();
    let mut hops = 0;
    while let Some(component) = pending.pop_front() {
        match component {
            "" | "." => continue,
            ".." => {
                stack.pop().ok_or(LinkProblem::Escapes)?;
                continue;
            }
            name => stack.push(name),
        }
        let here = stack.join("/");
        let Some(Kind::Link { target: next }) = index.get(here.as_str()) else {
            continue;
        };
        hops += 1;
        if hops > MAX_HOPS {
            return Err(LinkProblem::Loop);
        }
        stack.pop();
        if next.starts_with('/') {
            if !pending.iter().all(|c| c.is_empty() || *c == ".") {
                return Err(LinkProblem::ThroughSystemLink(here));
            }
            // Ends on a system link; that link is checked on its own line.
            return Ok(());
        }
        for c in next.split('/').rev() {
            pending.push_front(c);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File {
                size: content.len() as u64,
                hash: Hash::of(content),
            },
        }
    }
    fn link(path: &str, target: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Link {
                target: target.into(),
            },
        }
    }
    fn dir(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Dir,
        }
    }

    #[test]
    fn round_trip_is_byte_identical() {
        let m = Manifest::from_entries(vec![
            file("b.txt", b"b"),
            dir("empty"),
            link("venv/bin/python", "python3"),
            link("venv/bin/python3", "/usr/bin/python3"),
            Entry {
                path: "run".into(),
                kind: Kind::Exec {
                    size: 2,
                    hash: Hash::of(b"#!"),
                },
            },
            file("a b/c", b""),
        ]);
        let parsed = Manifest::parse(&m.bytes, &Limits::default()).unwrap();
        assert_eq!(parsed.entries, m.entries);
        assert_eq!(parsed.id, m.id);
        assert_eq!(m.entries[0].path, "a b/c");
    }

    fn check(manifest: &str, expected: Result<(), &str>) {
        let got = Manifest::parse(manifest.as_bytes(), &Limits::default())
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(String::as_str),
            expected,
            "manifest:\n{manifest}"
        );
    }

    const H: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn strict_parsing() {
        check("silver-manifest 1\n", Ok(()));
        check(&format!("silver-manifest 1\nfile\ta\t0\t{H}\n"), Ok(()));
        check(
            "silver-manifest 2\n",
            Err("line 1 is not the header `silver-manifest 1`"),
        );
        check(
            &format!("silver-manifest 1\nfile\ta\t00\t{H}\n"),
            Err("line 2: invalid size"),
        );
        check(
            &format!("silver-manifest 1\nfile\ta\t0\t{}\n", H.to_uppercase()),
            Err("line 2: invalid BLAKE3 hash"),
        );
        check(
            &format!("silver-manifest 1\nfile\ta\t0\t{H}"),
            Err("line 2: no newline at the end"),
        );
        check(
            "silver-manifest 1\nfifo\tx\n",
            Err("line 2: unknown kind `fifo`"),
        );
        check(
            "silver-manifest 1\ndir\ta\textra\n",
            Err("line 2: wrong number of fields"),
        );
        check(
            "silver-manifest 1\ndir\t../a\n",
            Err("line 2: entry `../a`: the path has a `..` component"),
        );
        check("silver-manifest 1\ndir\tb\ndir\ta\n", Err("line 3: `a` is out of order or a duplicate (entries must be sorted by path bytes, each once)"));
        check("silver-manifest 1\ndir\ta\ndir\ta\n", Err("line 3: `a` is out of order or a duplicate (entries must be sorted by path bytes, each once)"));
        check(
            "silver-manifest 1\ndir\ta\ndir\ta/b\n",
            Err("line 3: directory `a` is listed as empty but has entries under it"),
        );
        check(
            "silver-manifest 1\nlink\ta\t/etc\ndir\ta/b\n",
            Err(
                "line 2: symlink `a` -> `/etc` is absolute and outside the allowed system prefixes",
            ),
        );
    }

    #[test]
    fn symlinks() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<(), LinkProblem>);
        let cases: &[Case] = &[
            (&[("a", "b")], Ok(())),
            (&[("d/a", "../b")], Ok(())),
            (&[("a", "../b")], Err(LinkProblem::Escapes)),
            (&[("a", "/etc/passwd")], Err(LinkProblem::NotSystem)),
            (&[("a", "/usr/bin/python3")], Ok(())),
            // `up` is a link to the root; `up/..` is the root's parent.
            (
                &[("sub/up", ".."), ("x", "sub/up/../y")],
                Err(LinkProblem::Escapes),
            ),
            (
                &[("p", "/usr/bin/python3"), ("x", "p/../../../etc")],
                Err(LinkProblem::ThroughSystemLink("p".into())),
            ),
            (&[("l1", "l2"), ("l2", "l1")], Err(LinkProblem::Loop)),
            (
                &[("a", "x\ny")],
                Err(LinkProblem::BadTarget(PathProblem::ControlChar('\n'))),
            ),
        ];
        for (links, expected) in cases {
            let entries: Vec<Entry> = links.iter().map(|(p, t)| link(p, t)).collect();
            let m = Manifest::from_entries(entries);
            let got = m.validate(&Limits::default());
            let expected = expected.clone().map_err(|p| p.to_string());
            assert_eq!(
                got.map_err(|e| match e {
                    ManifestProblem::Link { problem, .. } => problem.to_string(),
                    other => other.to_string(),
                }),
                expected,
                "{links:?}"
            );
        }
    }

    #[test]
    fn file_under_symlink_is_refused() {
        let m = Manifest::from_entries(vec![link("a", "b"), file("a/passwd", b"x")]);
        assert!(matches!(
            m.validate(&Limits::default()),
            Err(ManifestProblem::UnderNonDir { .. })
        ));
    }
}
