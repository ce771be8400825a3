//! Relocation ("relative-path fixing"): rewrites that let an app run from any directory.
//!
//! Every rewrite is a pure function of (path, content, source root), so pack is reproducible, and
//! every one is reported as a [`Fixup`]. The source tree itself is never touched.

use memchr::memmem;
use serde::Serialize;

use crate::path;

/// The absolute spellings of the app's source directory (as given and canonical), no trailing `/`.
#[derive(Debug, Clone)]
pub struct Roots(Vec<String>, Vec<memmem::Finder<'static>>);

impl Roots {
    pub fn new(forms: impl IntoIterator<Item = String>) -> Roots {
        let mut forms: Vec<String> = forms
            .into_iter()
            .map(|f| f.trim_end_matches('/').to_string())
            .filter(|f| !f.is_empty())
            .collect();
        // Longest first, so `/a/b` wins over `/a` when one is a prefix of the other.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        // Built once: every file of the app is searched for these.
        let finders = forms
            .iter()
            .map(|f| memmem::Finder::new(f.as_bytes()).into_owned())
            .collect();
        Roots(forms, finders)
    }

    pub fn forms(&self) -> &[String] {
        &self.0
    }

    /// The artifact path of an absolute path inside the app (`""` is the root itself).
    pub fn to_artifact(&self, abs: &str) -> Option<String> {
        self.0.iter().find_map(|root| {
            let rest = abs.strip_prefix(root.as_str())?;
            if rest.is_empty() {
                return Some(String::new());
            }
            let rest = rest.strip_prefix('/')?;
            // Normalize `a/./b` and `a//b`; `..` is left to the symlink check to judge.
            Some(
                rest.split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .collect::<Vec<_>>()
                    .join("/"),
            )
        })
    }

    /// Whether `content` mentions any spelling of the root.
    pub fn mentioned_in(&self, content: &[u8]) -> bool {
        self.1.iter().any(|f| f.find(content).is_some())
    }
}

/// One rewrite done at pack time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fixup {
    pub path: String,
    pub kind: FixupKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixupKind {
    /// An absolute symlink into the app became relative.
    LinkRelativized,
    /// A symlink to an interpreter outside the app was kept as a system link.
    SystemLink,
    /// Absolute lines of a `.pth` file became relative to the file.
    Pth,
    /// The path in an `.egg-link` became relative.
    EggLink,
    /// A `#!` naming an interpreter inside the app became a relocatable launcher.
    Shebang,
    /// A virtualenv activate script now finds its virtualenv from its own location.
    Activate,
    /// `pyvenv.cfg`'s informational `command` line no longer names the source directory.
    PyvenvCfg,
    /// A Python string literal holding an absolute path inside the app became relative to `__file__`.
    PythonPath,
    /// A wheel `RECORD` row now has the hash and size of the file as relocated.
    Record,
    /// A PEP 610 `direct_url.json` naming a directory or file inside the app now names it
    /// relative to the `.dist-info` directory.
    DirectUrl,
}

impl std::fmt::Display for FixupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// What a symlink becomes in the artifact.
pub fn relocate_link(
    roots: &Roots,
    path: &str,
    target: &str,
    is_system: impl Fn(&str) -> bool,
) -> (String, Option<Fixup>) {
    if !target.starts_with('/') {
        return (target.to_string(), None);
    }
    if let Some(inside) = roots.to_artifact(target) {
        let relative = path::relative(path::parent(path), &inside);
        let detail = format!("{target} -> {relative}");
        return (
            relative,
            Some(Fixup {
                path: path.into(),
                kind: FixupKind::LinkRelativized,
                detail,
            }),
        );
    }
    let fixup = is_system(target).then(|| Fixup {
        path: path.into(),
        kind: FixupKind::SystemLink,
        detail: format!("{target} (must exist on the node)"),
    });
    (target.to_string(), fixup)
}

/// Rewrites a file's content so it no longer depends on where the app was packed.
/// Returns `None` when nothing needs to change.
pub fn relocate_content(roots: &Roots, path: &str, content: &[u8]) -> Option<(Vec<u8>, Fixup)> {
    if !roots.mentioned_in(content) {
        return None;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let (text, kind) = if content.starts_with(b"#!") {
        (shebang(roots, path, content)?, FixupKind::Shebang)
    } else {
        let text = std::str::from_utf8(content).ok()?;
        if name.ends_with(".pth") {
            (pth(roots, path, text)?, FixupKind::Pth)
        } else if name.ends_with(".egg-link") {
            (egg_link(roots, path, text)?, FixupKind::EggLink)
        } else if let Some(shell) = activation_shell(name) {
            (activate(roots, path, &shell, text)?, FixupKind::Activate)
        } else if name == "pyvenv.cfg" {
            (pyvenv_cfg(roots, text)?, FixupKind::PyvenvCfg)
        } else if path.ends_with(".dist-info/direct_url.json") {
            (direct_url(roots, path, text)?, FixupKind::DirectUrl)
        } else if name.ends_with(".py") {
            (python_strings(roots, path, text)?, FixupKind::PythonPath)
        } else {
            return None;
        }
    };
    let detail = describe(kind);
    Some((
        text.into_bytes(),
        Fixup {
            path: path.into(),
            kind,
            detail,
        },
    ))
}

fn describe(kind: FixupKind) -> String {
    match kind {
        FixupKind::Shebang => "interpreter found relative to the script".into(),
        FixupKind::Pth => "absolute entries made relative to the .pth file".into(),
        FixupKind::EggLink => "egg path made relative".into(),
        FixupKind::Activate => "VIRTUAL_ENV computed from the script's location".into(),
        FixupKind::PyvenvCfg => "source directory dropped from `command`".into(),
        FixupKind::PythonPath => "absolute paths made relative to __file__".into(),
        FixupKind::Record => "rows of relocated files rehashed".into(),
        FixupKind::DirectUrl => "file URL made relative to the .dist-info directory".into(),
        FixupKind::LinkRelativized | FixupKind::SystemLink => String::new(),
    }
}

/// `#!/src/app/venv/bin/python` becomes the sh/Python polyglot that pip itself writes for long
/// paths: `sh` runs the first lines, Python sees them as a string literal.
fn shebang(roots: &Roots, path: &str, content: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(content).ok()?;
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    if first == "#!/bin/sh" {
        return pip_launcher(roots, path, rest);
    }
    let line = first.strip_prefix("#!")?.trim();
    let (interpreter, args) = line.split_once([' ', '\t']).unwrap_or((line, ""));
    let inside = roots.to_artifact(interpreter)?;
    let base = inside.rsplit('/').next()?;
    if !base.starts_with("python") {
        return None;
    }
    let relative = path::relative(path::parent(path), &inside);
    let args = args.trim();
    let args = if args.is_empty() {
        String::new()
    } else {
        format!(" {args}")
    };
    Some(format!(
        "#!/bin/sh\n'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")/{relative}\"{args} \"$0\" \"$@\"\n' '''\n{rest}"
    ))
}

/// pip's own launcher for interpreters with long paths (over 127 bytes, the kernel's shebang
/// limit): `#!/bin/sh` then `'''exec' /abs/python "$0" "$@"`. The path becomes relative too.
fn pip_launcher(roots: &Roots, path: &str, rest: &str) -> Option<String> {
    let (second, tail) = rest.split_once('\n')?;
    let command = second.strip_prefix("'''exec' ")?;
    let (interpreter, args) = match command.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"')?,
        None => command.split_once(' ')?,
    };
    let inside = roots.to_artifact(interpreter)?;
    let relative = path::relative(path::parent(path), &inside);
    let args = if args.is_empty() || args.starts_with(' ') {
        args.to_string()
    } else {
        format!(" {args}")
    };
    Some(format!(
        "#!/bin/sh\n'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")/{relative}\"{args}\n{tail}"
    ))
}

/// `.pth` lines that are paths are joined to the site directory by `site.py`, so relative works.
fn pth(roots: &Roots, path: &str, text: &str) -> Option<String> {
    let dir = path::parent(path);
    let mut changed = false;
    let out = map_lines(text, |line| {
        if line.starts_with("import ") || line.starts_with("import\t") {
            return None;
        }
        let inside = roots.to_artifact(line.trim_end())?;
        changed = true;
        Some(path::relative(dir, &inside))
    });
    changed.then_some(out)
}

fn egg_link(roots: &Roots, path: &str, text: &str) -> Option<String> {
    let dir = path::parent(path);
    let mut first = true;
    let mut changed = false;
    let out = map_lines(text, |line| {
        let was_first = std::mem::replace(&mut first, false);
        let inside = roots.to_artifact(line.trim_end()).filter(|_| was_first)?;
        changed = true;
        Some(path::relative(dir, &inside))
    });
    changed.then_some(out)
}

/// The `file://` URL of a PEP 610 `direct_url.json` (written by `pip install -e .` and
/// `pip install ./dir`) when it names something inside the app, made relative to the file's
/// directory, as `.pth` and `.egg-link` entries are. pip only reports this URL (`pip list`,
/// `pip freeze`); it never opens it at run time. Only the URL's JSON string is replaced, so the
/// rest of the file keeps pip's bytes.
fn direct_url(roots: &Roots, path: &str, text: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    let url = json.get("url")?.as_str()?;
    // `file:///abs` only: `file://host/...` names another machine.
    let absolute = percent_encoding::percent_decode_str(url.strip_prefix("file://")?)
        .decode_utf8()
        .ok()?;
    let inside = roots.to_artifact(&absolute)?;
    let relative = format!(
        "file:{}",
        percent_encoding::utf8_percent_encode(
            &path::relative(path::parent(path), &inside),
            URL_PATH
        )
    );
    let (old, new) = (
        serde_json::to_string(url).ok()?,
        serde_json::to_string(&relative).ok()?,
    );
    text.contains(&old).then(|| text.replacen(&old, &new, 1))
}

/// What Python's `urllib.parse.quote` (pip's `path_to_url`) escapes: every byte but letters,
/// digits, `_.-~` and `/`.
const URL_PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

/// How one shell's activation script can name its virtualenv from where the script is.
struct Shell {
    /// An expression for the virtualenv's directory, in the shell's syntax.
    expr: &'static str,
    /// Lines put first and last in the script.
    prologue: &'static str,
    epilogue: &'static str,
    /// Quotes around the path are replaced with it (else the expression goes inside them).
    quotes: &'static [(&'static str, &'static str)],
}

impl Shell {
    /// A shell whose expression stands in for the path, with nothing added around the script.
    const fn new(expr: &'static str, quotes: &'static [(&'static str, &'static str)]) -> Shell {
        Shell {
            expr,
            prologue: "",
            epilogue: "",
            quotes,
        }
    }
}

const SH_QUOTES: &[(&str, &str)] = &[("'", "'"), ("\"", "\"")];

/// The activation scripts venv, virtualenv and uv write into a virtualenv's `bin/`.
fn activation_shell(name: &str) -> Option<Shell> {
    Some(match name {
        "activate" => Shell::new(
            r#""$(cd "$(dirname -- "${BASH_SOURCE[0]:-$0}")/.." && pwd)""#,
            SH_QUOTES,
        ),
        "activate.fish" => Shell::new(
            "(builtin realpath (dirname (status filename))/..)",
            SH_QUOTES,
        ),
        // csh cannot tell where a sourced script is (uv leaves activate.csh out of its
        // relocatable virtualenvs for that reason). Rather than activate a path that no longer
        // exists, the script says so and skips to its end; the path is gone from it.
        "activate.csh" => Shell {
            prologue: concat!(
                "echo \"activate.csh: csh cannot find a moved virtualenv; use bin/activate or activate.fish\" > /dev/stderr\n",
                "goto _silver_moved\n",
            ),
            epilogue: "\n_silver_moved:\n",
            ..Shell::new(r#""(moved)""#, SH_QUOTES)
        },
        "activate.nu" => Shell::new(
            "(path self | path dirname | path dirname)",
            &[("r#'", "'#"), ("'", "'"), ("\"", "\"")],
        ),
        "activate.xsh" => Shell::new(
            "__import__('os').path.dirname(__import__('os').path.dirname(__import__('os').path.abspath(__file__)))",
            SH_QUOTES,
        ),
        "activate.bat" | "deactivate.bat" => Shell::new("%~dp0..", &[]),
        _ => return None,
    })
}

/// Replaces every spelling of the virtualenv's absolute path in an activation script with
/// `shell`'s expression for it, so the script activates the virtualenv wherever it is.
fn activate(roots: &Roots, path: &str, shell: &Shell, text: &str) -> Option<String> {
    let venv = path::parent(path::parent(path));
    let literals: Vec<String> = roots
        .forms()
        .iter()
        .map(|root| match venv {
            "" => root.clone(),
            venv => format!("{root}/{venv}"),
        })
        .collect();
    let mut out = String::with_capacity(text.len() + 256);
    let mut rest = text;
    let mut changed = false;
    while let Some((at, literal)) = first_literal(rest, &literals) {
        let (before, after) = (&rest[..at], &rest[at + literal.len()..]);
        let opened = shell.quotes.iter().find(|(open, _)| before.ends_with(open));
        match opened {
            // `'/venv'` becomes the expression, and `'/venv/bin'` the expression then `'/bin'`.
            Some((open, close)) => {
                out.push_str(&before[..before.len() - open.len()]);
                out.push_str(shell.expr);
                rest = match after.strip_prefix(close) {
                    Some(after) => after,
                    None => {
                        out.push_str(open);
                        after
                    }
                };
            }
            None => {
                out.push_str(before);
                out.push_str(shell.expr);
                rest = after;
            }
        }
        changed = true;
    }
    out.push_str(rest);
    changed.then(|| format!("{}{out}{}", shell.prologue, shell.epilogue))
}

/// The first of `literals` in `text` that is a whole path (not the start of a longer name).
fn first_literal<'a>(text: &str, literals: &'a [String]) -> Option<(usize, &'a str)> {
    let whole = |at: usize, literal: &str| {
        let next = text[at + literal.len()..].chars().next();
        !next.is_some_and(|c| c.is_alphanumeric() || "._-".contains(c))
    };
    literals
        .iter()
        .filter_map(|literal| {
            let at = text
                .match_indices(literal.as_str())
                .map(|(at, _)| at)
                .find(|&at| whole(at, literal))?;
            Some((at, literal.as_str()))
        })
        .min_by_key(|&(at, literal)| (at, std::cmp::Reverse(literal.len())))
}

fn pyvenv_cfg(roots: &Roots, text: &str) -> Option<String> {
    let mut changed = false;
    let out = map_lines(text, |line| {
        let rest = line.strip_prefix("command")?;
        if !roots.mentioned_in(rest.as_bytes()) {
            return None;
        }
        changed = true;
        let mut rest = rest.to_string();
        for root in roots.forms() {
            rest = rest
                .replace(&format!("{root}/"), "")
                .replace(root.as_str(), ".");
        }
        Some(format!("command{rest}"))
    });
    changed.then_some(out)
}

/// `'/src/app/src/pkg'` becomes `__import__('os').path.join(__import__('os').path.dirname(__file__), '../../src/pkg')`:
/// setuptools' editable finders keep such literals.
fn python_strings(roots: &Roots, path: &str, text: &str) -> Option<String> {
    let dir = path::parent(path);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    'scan: while let Some(i) = rest.find(['\'', '"']) {
        let quote = rest.as_bytes()[i] as char;
        let prefixed = i > 0 && rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        let after = &rest[i + 1..];
        for root in roots.forms() {
            if prefixed || !after.starts_with(root.as_str()) {
                continue;
            }
            let Some(end) = after.find([quote, '\n', '\\']) else {
                continue;
            };
            if after.as_bytes()[end] as char != quote {
                continue;
            }
            let Some(inside) = roots.to_artifact(&after[..end]) else {
                continue;
            };
            let relative = path::relative(dir, &inside);
            out.push_str(&rest[..i]);
            out.push_str(&format!(
                "__import__('os').path.join(__import__('os').path.dirname(__file__), {quote}{relative}{quote})"
            ));
            rest = &after[end + 1..];
            changed = true;
            continue 'scan;
        }
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// Whether `path` is a wheel's `RECORD` (`…/<name>.dist-info/RECORD`).
pub fn is_record(path: &str) -> bool {
    path.ends_with(".dist-info/RECORD")
}

/// Re-hashes the rows of a `RECORD` whose files pack rewrites, so the record matches what the
/// artifact holds (and two copies of a virtualenv made in different places agree). `read` gives
/// a file's content by artifact path. Only files pack can rewrite are looked at: scripts in
/// `bin/` directories, `.pth`, `.egg-link` and editable finders.
pub fn relocate_record(
    roots: &Roots,
    path: &str,
    text: &str,
    read: impl Fn(&str) -> Option<Vec<u8>>,
) -> Option<(Vec<u8>, Fixup)> {
    use sha2::Digest;
    let site = path::parent(path::parent(path));
    let mut changed = false;
    let out = map_lines(text, |line| {
        let mut fields = line.rsplitn(3, ',');
        let (_size, _hash, file) = (fields.next()?, fields.next()?, fields.next()?);
        let candidate = file.contains("bin/")
            || file.ends_with(".pth")
            || file.ends_with(".egg-link")
            || file.contains("__editable__")
            || file.ends_with(".dist-info/direct_url.json");
        if !candidate || file.starts_with('"') {
            return None;
        }
        let (target, content) = record_target(site, file)
            .into_iter()
            .find_map(|target| Some((target.clone(), read(&target)?)))?;
        let (new, _) = relocate_content(roots, &target, &content)?;
        changed = true;
        Some(format!(
            "{file},sha256={},{}",
            b64url(&sha2::Sha256::digest(&new)),
            new.len()
        ))
    });
    changed.then(|| {
        (
            out.into_bytes(),
            Fixup {
                path: path.into(),
                kind: FixupKind::Record,
                detail: describe(FixupKind::Record),
            },
        )
    })
}

/// Where a `RECORD` row's file may be, first where the row says. `pip install --target DIR`
/// installs into a temporary prefix and then moves its `bin/` into `DIR/bin/`, so a row
/// `../../bin/x` written from the prefix's `lib/python` is found at `DIR/bin/x`.
fn record_target(site: &str, file: &str) -> Vec<String> {
    let moved = file
        .strip_prefix("../../bin/")
        .map(|rest| path::join(site, &format!("bin/{rest}")));
    resolve(site, file).into_iter().chain(moved).collect()
}

/// `dir` joined with a relative path, `..` resolved; `None` if it leaves the artifact.
fn resolve(dir: &str, relative: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    for c in relative.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(parts.join("/"))
}

/// URL-safe base64 without padding, as wheel RECORDs write hashes.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Applies `f` to each line (without its ending), keeping line endings exactly.
fn map_lines(text: &str, mut f: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, ending) = match line.strip_suffix("\r\n") {
            Some(b) => (b, "\r\n"),
            None => line.strip_suffix('\n').map_or((line, ""), |b| (b, "\n")),
        };
        match f(body) {
            Some(new) => {
                out.push_str(&new);
                out.push_str(ending);
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Roots {
        Roots::new(["/src/app".to_string(), "/real/src/app".to_string()])
    }

    fn check(path: &str, content: &str, expected: Option<&str>) {
        let got = relocate_content(&roots(), path, content.as_bytes())
            .map(|(c, _)| String::from_utf8(c).unwrap());
        assert_eq!(got.as_deref(), expected, "{path}");
    }

    #[test]
    fn content_fixups() {
        check("app.py", "print('hello')\n", None);
        check(
            "venv/bin/gunicorn",
            "#!/src/app/venv/bin/python3\nimport sys\n",
            Some("#!/bin/sh\n'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")/python3\" \"$0\" \"$@\"\n' '''\nimport sys\n"),
        );
        check(
            "scripts/tool",
            "#!/real/src/app/venv/bin/python -E\nx\n",
            Some("#!/bin/sh\n'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")/../venv/bin/python\" -E \"$0\" \"$@\"\n' '''\nx\n"),
        );
        check("bin/other", "#!/src/app/bin/node\n", None);
        check(
            "venv/bin/pip",
            "#!/bin/sh\n'''exec' /src/app/venv/bin/python3 \"$0\" \"$@\"\n' '''\nimport pip\n",
            Some("#!/bin/sh\n'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")/python3\" \"$0\" \"$@\"\n' '''\nimport pip\n"),
        );
        check(
            "venv/lib/python3.11/site-packages/easy-install.pth",
            "/src/app/src/pkg\nimport sys\n/usr/lib/x\n",
            Some("../../../../src/pkg\nimport sys\n/usr/lib/x\n"),
        );
        check(
            "venv/lib/python3.11/site-packages/pkg.egg-link",
            "/src/app/src/pkg\n.",
            Some("../../../../src/pkg\n."),
        );
        check(
            "venv/bin/activate",
            "x\nVIRTUAL_ENV=\"/src/app/venv\"\nexport VIRTUAL_ENV\n",
            Some("x\nVIRTUAL_ENV=\"$(cd \"$(dirname -- \"${BASH_SOURCE[0]:-$0}\")/..\" && pwd)\"\nexport VIRTUAL_ENV\n"),
        );
        // virtualenv's own activate, which checks the path before using it.
        check(
            "venv/bin/activate",
            "if [ ! -d /src/app/venv ] &&\n    VIRTUAL_ENV=/src/app/venv\n",
            Some("if [ ! -d \"$(cd \"$(dirname -- \"${BASH_SOURCE[0]:-$0}\")/..\" && pwd)\" ] &&\n    VIRTUAL_ENV=\"$(cd \"$(dirname -- \"${BASH_SOURCE[0]:-$0}\")/..\" && pwd)\"\n"),
        );
        check(
            "venv/bin/activate.csh",
            "source '/src/app/venv'\"/\"'bin'\"/deactivate.csh\"\nsetenv VIRTUAL_ENV '/real/src/app/venv'\n",
            Some("echo \"activate.csh: csh cannot find a moved virtualenv; use bin/activate or activate.fish\" > /dev/stderr\ngoto _silver_moved\nsource \"(moved)\"\"/\"'bin'\"/deactivate.csh\"\nsetenv VIRTUAL_ENV \"(moved)\"\n\n_silver_moved:\n"),
        );
        check(
            "venv/bin/activate.fish",
            "set -gx VIRTUAL_ENV '/src/app/venv'\nset -gx PATH '/src/app/venv/bin' $PATH\n",
            Some("set -gx VIRTUAL_ENV (builtin realpath (dirname (status filename))/..)\nset -gx PATH (builtin realpath (dirname (status filename))/..)'/bin' $PATH\n"),
        );
        check(
            "venv/bin/activate.nu",
            "    const virtual_env = '/src/app/venv'\n    let virtual_env = r#'/src/app/venv'#\n",
            Some("    const virtual_env = (path self | path dirname | path dirname)\n    let virtual_env = (path self | path dirname | path dirname)\n"),
        );
        check(
            "venv/bin/activate.xsh",
            "self.embedded_virtual_env = '/src/app/venv'\n",
            Some("self.embedded_virtual_env = __import__('os').path.dirname(__import__('os').path.dirname(__import__('os').path.abspath(__file__)))\n"),
        );
        check(
            "venv/bin/activate.bat",
            "@for %%i in (\"/src/app/venv\") do @set \"VIRTUAL_ENV=%%~fi\"\n",
            Some("@for %%i in (\"%~dp0..\") do @set \"VIRTUAL_ENV=%%~fi\"\n"),
        );
        // Another virtualenv whose name starts the same is not this one.
        check("venv/bin/activate", "X=/src/app/venv2\n", None);
        check(
            "venv/pyvenv.cfg",
            "home = /usr/bin\ncommand = /usr/bin/python3 -m venv /src/app/venv\n",
            Some("home = /usr/bin\ncommand = /usr/bin/python3 -m venv venv\n"),
        );
        check(
            "venv/lib/python3.11/site-packages/__editable___pkg_finder.py",
            "MAPPING = {'pkg': '/src/app/src/pkg'}\nX = r'/src/app/raw'\n",
            Some("MAPPING = {'pkg': __import__('os').path.join(__import__('os').path.dirname(__file__), '../../../../src/pkg')}\nX = r'/src/app/raw'\n"),
        );
        check("notes.txt", "built in /src/app\n", None);
        let direct_url = "venv/lib/python3.11/site-packages/pkg-1.0.dist-info/direct_url.json";
        check(
            direct_url,
            r#"{"dir_info": {"editable": true}, "url": "file:///src/app/src/pkg"}"#,
            Some(r#"{"dir_info": {"editable": true}, "url": "file:../../../../../src/pkg"}"#),
        );
        // The app itself, installed editable, through the other spelling of its root.
        check(
            direct_url,
            r#"{"dir_info": {"editable": true}, "url": "file:///real/src/app"}"#,
            Some(r#"{"dir_info": {"editable": true}, "url": "file:../../../../.."}"#),
        );
        check(
            direct_url,
            r#"{"archive_info": {}, "url": "file:///src/app/dist/my%20pkg-1.0.whl"}"#,
            Some(r#"{"archive_info": {}, "url": "file:../../../../../dist/my%20pkg-1.0.whl"}"#),
        );
        // Outside the app, another host, or not a direct_url.json: left alone.
        check(
            direct_url,
            r#"{"dir_info": {}, "url": "file:///src/other"}"#,
            None,
        );
        check(
            direct_url,
            r#"{"dir_info": {}, "url": "file://host/src/app/x"}"#,
            None,
        );
        check(
            "pkg/direct_url.json",
            r#"{"url": "file:///src/app/x"}"#,
            None,
        );
    }

    #[test]
    fn records_follow_relocated_files() {
        let script = b"#!/src/app/venv/bin/python3\nimport pip\n".to_vec();
        let record = "pip/__init__.py,sha256=abc,10\n../../../bin/pip,sha256=old,40\npip-1.dist-info/RECORD,,\n";
        let read = |p: &str| (p == "venv/bin/pip").then(|| script.clone());
        let (new, fixup) = relocate_record(
            &roots(),
            "venv/lib/python3.11/site-packages/pip-1.dist-info/RECORD",
            record,
            read,
        )
        .unwrap();
        let (relocated, _) = relocate_content(&roots(), "venv/bin/pip", &script).unwrap();
        use sha2::Digest;
        let expected = format!(
            "../../../bin/pip,sha256={},{}",
            b64url(&sha2::Sha256::digest(&relocated)),
            relocated.len()
        );
        let new = String::from_utf8(new).unwrap();
        assert!(new.contains(&expected), "{new}");
        assert!(new.starts_with("pip/__init__.py,sha256=abc,10\n"));
        assert_eq!(fixup.kind, FixupKind::Record);

        // `pip install --target lib/python`: the row was written before pip moved `bin/`.
        let read = |p: &str| (p == "lib/python/bin/pip").then(|| script.clone());
        let (new, _) = relocate_record(
            &roots(),
            "lib/python/pip-1.dist-info/RECORD",
            "../../bin/pip,sha256=old,40\n",
            read,
        )
        .unwrap();
        let (relocated, _) = relocate_content(&roots(), "lib/python/bin/pip", &script).unwrap();
        let expected = format!(
            "../../bin/pip,sha256={},{}\n",
            b64url(&sha2::Sha256::digest(&relocated)),
            relocated.len()
        );
        assert_eq!(String::from_utf8(new).unwrap(), expected);
        assert_eq!(b64url(b"\xfb\xff"), "-_8");
        assert_eq!(b64url(b"abc"), "YWJj");
    }

    #[test]
    fn links() {
        let system = |t: &str| t.starts_with("/usr/");
        let check = |path: &str, target: &str, expected: &str, kind: Option<FixupKind>| {
            let (t, fixup) = relocate_link(&roots(), path, target, system);
            assert_eq!(
                (t.as_str(), fixup.map(|f| f.kind)),
                (expected, kind),
                "{path} -> {target}"
            );
        };
        check("venv/bin/python", "python3", "python3", None);
        check(
            "venv/bin/python3",
            "/usr/bin/python3",
            "/usr/bin/python3",
            Some(FixupKind::SystemLink),
        );
        check(
            "venv/lib64",
            "/src/app/venv/lib",
            "lib",
            Some(FixupKind::LinkRelativized),
        );
        check(
            "current",
            "/real/src/app/releases/1",
            "releases/1",
            Some(FixupKind::LinkRelativized),
        );
        check("x", "/etc/passwd", "/etc/passwd", None);
    }
}
