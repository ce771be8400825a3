//! Validation of the relative paths an artifact may hold, shared by pack (refuse early) and unpack (refuse hostile input).

use std::fmt;

/// Why a path cannot be an artifact path. Each variant names the attack or accident it blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    /// An empty name would alias the staging directory itself.
    Empty,
    /// Non-UTF-8 names cannot be written into the text manifest unambiguously.
    NotUtf8,
    /// `/etc/passwd`: an absolute entry would be written outside the staging directory.
    Absolute,
    /// `a/../../x`: traversal out of the staging directory.
    DotDot,
    /// `a/./b` or a trailing `/.`: two spellings of one path defeat the duplicate check.
    Dot,
    /// `a//b` or `a/`: two spellings of one path defeat the duplicate check.
    EmptyComponent,
    /// NUL truncates paths in C; newlines and tabs forge manifest lines; escapes spoof terminals.
    ControlChar(char),
    /// Resource exhaustion and PATH_MAX failures on the node.
    TooLong { bytes: usize, max: usize },
    /// Deep nesting exhausts file descriptors and stack in naive tools.
    TooDeep { depth: usize, max: usize },
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathProblem::Empty => write!(f, "the path is empty"),
            PathProblem::NotUtf8 => write!(f, "the name is not valid UTF-8"),
            PathProblem::Absolute => write!(f, "the path is absolute"),
            PathProblem::DotDot => write!(f, "the path has a `..` component"),
            PathProblem::Dot => write!(f, "the path has a `.` component"),
            PathProblem::EmptyComponent => write!(f, "the path has an empty component"),
            PathProblem::ControlChar(c) => {
                write!(
                    f,
                    "the name contains the control character U+{:04X}",
                    *c as u32
                )
            }
            PathProblem::TooLong { bytes, max } => {
                write!(f, "the path is {bytes} bytes long, over the limit of {max}")
            }
            PathProblem::TooDeep { depth, max } => {
                write!(
                    f,
                    "the path is {depth} levels deep, over the limit of {max}"
                )
            }
        }
    }
}

/// Checks that `raw` is a canonical relative artifact path within the given limits.
pub fn check_path(raw: &[u8], max_bytes: usize, max_depth: usize) -> Result<&str, PathProblem> {
    let path = std::str::from_utf8(raw).map_err(|_| PathProblem::NotUtf8)?;
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    check_chars(path)?;
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    if path.len() > max_bytes {
        return Err(PathProblem::TooLong {
            bytes: path.len(),
            max: max_bytes,
        });
    }
    let mut depth = 0;
    for component in path.split('/') {
        match component {
            "" => return Err(PathProblem::EmptyComponent),
            "." => return Err(PathProblem::Dot),
            ".." => return Err(PathProblem::DotDot),
            _ => depth += 1,
        }
    }
    if depth > max_depth {
        return Err(PathProblem::TooDeep {
            depth,
            max: max_depth,
        });
    }
    Ok(path)
}

/// Checks a symlink target: any shape is allowed (resolution is checked elsewhere), but not
/// bytes that would forge manifest lines or truncate in C.
pub fn check_link_target(raw: &[u8], max_bytes: usize) -> Result<&str, PathProblem> {
    let target = std::str::from_utf8(raw).map_err(|_| PathProblem::NotUtf8)?;
    if target.is_empty() {
        return Err(PathProblem::Empty);
    }
    if target.len() > max_bytes {
        return Err(PathProblem::TooLong {
            bytes: target.len(),
            max: max_bytes,
        });
    }
    check_chars(target)?;
    Ok(target)
}

fn check_chars(s: &str) -> Result<(), PathProblem> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(PathProblem::ControlChar(c)),
        None => Ok(()),
    }
}

/// `dir/name`, or `name` at the top (`dir` is `""`).
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The parent of an artifact path, `""` for top-level entries.
pub fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// Every proper ancestor of `path`, nearest last: `a/b/c` gives `a`, `a/b`.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// The relative path from directory `from_dir` to `to` (both artifact paths, `""` is the root).
pub fn relative(from_dir: &str, to: &str) -> String {
    let from: Vec<&str> = from_dir.split('/').filter(|c| !c.is_empty()).collect();
    let to_parts: Vec<&str> = to.split('/').filter(|c| !c.is_empty()).collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut out: Vec<&str> = vec![".."; from.len() - common];
    out.extend(&to_parts[common..]);
    if out.is_empty() {
        ".".to_string()
    } else {
        out.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expected: Result<&str, PathProblem>) {
        assert_eq!(
            check_path(input, 64, 4),
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn paths() {
        check(b"app.py", Ok("app.py"));
        check(b"static/css/site.css", Ok("static/css/site.css"));
        check(b"with space/x", Ok("with space/x"));
        check(b"\xc3\xa9t\xc3\xa9", Ok("été"));
        check(b"", Err(PathProblem::Empty));
        check(b"/etc/passwd", Err(PathProblem::Absolute));
        check(b"a/../../x", Err(PathProblem::DotDot));
        check(b"..", Err(PathProblem::DotDot));
        check(b"./a", Err(PathProblem::Dot));
        check(b"a//b", Err(PathProblem::EmptyComponent));
        check(b"a/", Err(PathProblem::EmptyComponent));
        check(b"a\nfile\tb", Err(PathProblem::ControlChar('\n')));
        check(b"a\x00b", Err(PathProblem::ControlChar('\0')));
        check(b"a\xc2\x85b", Err(PathProblem::ControlChar('\u{85}')));
        check(b"\xff\xfe", Err(PathProblem::NotUtf8));
        check(b"a/b/c/d/e", Err(PathProblem::TooDeep { depth: 5, max: 4 }));
        check(
            &[b'x'; 65],
            Err(PathProblem::TooLong { bytes: 65, max: 64 }),
        );
    }

    #[test]
    fn relative_paths() {
        let check = |from: &str, to: &str, expected: &str| assert_eq!(relative(from, to), expected);
        check("venv/bin", "venv/bin/python3", "python3");
        check(
            "venv/lib/python3.11/site-packages",
            "src/pkg",
            "../../../../src/pkg",
        );
        check("", "a/b", "a/b");
        check("a/b", "", "../..");
        check("a", "a", ".");
    }

    #[test]
    fn ancestors_nearest_last() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(ancestors("a").count(), 0);
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
    }
}
