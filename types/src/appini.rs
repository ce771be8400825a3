//! `app.ini`: Silver Lining's app description, parsed with line numbers so every complaint names its line.
//!
//! The format is Python's configparser dialect as Silver Lining used it: `[section]` headers,
//! `key = value` or `key: value`, `#`/`;` comment lines, and indented continuation lines.

use crate::names::AppName;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, IniProblem, Rule};

/// One `key = value` with the line it started on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Value {
    pub value: String,
    pub line: usize,
}

/// A section, keys in file order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<(String, Value)>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// A parsed `app.ini`.
#[derive(Debug, Clone, Serialize)]
pub struct AppIni {
    pub path: PathBuf,
    pub sections: Vec<Section>,
    /// Keys as written (the sections hold them lowercased, as configparser does), by line.
    #[serde(skip)]
    raw_keys: Vec<(usize, String)>,
    /// Problems that do not stop a pack: unknown keys, named by line.
    pub warnings: Vec<String>,
}

/// The `[production]` keys Silver Lining knew, and the extensions silver adds.
const PRODUCTION_KEYS: &[&str] = &[
    "app_name",
    "runner",
    "platform",
    "version",
    "update_fetch",
    "default_location",
    "default_host",
    "packages",
    "php_root",
    "php.memory_limit",
    "php.upload_max_filesize",
    "writable_root_location",
    "health_check",
    "health_timeout",
    "request_timeout",
    "slow_paths",
    "max_memory",
    "https",
    "hsts",
    "requires",
    "python_version",
    "task_concurrency",
    "task_queue_size",
    "task_attempts",
    "shared_database",
];
/// Key prefixes that take any suffix (`service.postgis`, `config.template`).
const PRODUCTION_PREFIXES: &[&str] = &["service.", "config."];
/// Sections silver reads; others get a warning.
const KNOWN_SECTIONS: &[&str] = &[
    "production",
    "variables",
    "processes",
    "workers",
    "devel",
    "cron",
];

impl AppIni {
    /// Reads `APP_DIR/app.ini`. A missing file is an error: it is what makes a directory an app.
    pub fn load(app_dir: &Path) -> Result<AppIni, Error> {
        let path = app_dir.join("app.ini");
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !app_dir.is_dir() {
                    return Err(Error::NoAppDir {
                        path: app_dir.to_path_buf(),
                    });
                }
                return Err(Error::NoAppIni { path });
            }
            Err(source) => return Err(Error::Read { path, source }),
        };
        let text = String::from_utf8(text).map_err(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            Error::AppIni {
                path: path.clone(),
                line,
                problem: IniProblem::NotUtf8,
            }
        })?;
        AppIni::parse(&text, &path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<AppIni, Error> {
        let err = |line: usize, problem: IniProblem| Error::AppIni {
            path: path.to_path_buf(),
            line,
            problem,
        };
        let mut sections: Vec<Section> = Vec::new();
        let mut raw_keys = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            if raw.starts_with([' ', '\t']) {
                // A continuation line extends the previous value, as in configparser.
                let Some((_, value)) = sections.last_mut().and_then(|s| s.entries.last_mut())
                else {
                    return Err(err(line, IniProblem::NoKeyAbove));
                };
                value.value.push('\n');
                value.value.push_str(trimmed);
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest.strip_suffix(']').ok_or_else(|| {
                    err(
                        line,
                        IniProblem::Unclosed {
                            text: trimmed.into(),
                        },
                    )
                })?;
                sections.push(Section {
                    name: name.trim().to_string(),
                    line,
                    entries: vec![],
                });
                continue;
            }
            let Some(section) = sections.last_mut() else {
                return Err(err(
                    line,
                    IniProblem::BeforeSection {
                        text: trimmed.into(),
                    },
                ));
            };
            let split = trimmed.find(['=', ':']).ok_or_else(|| {
                err(
                    line,
                    IniProblem::NotKeyValue {
                        text: trimmed.into(),
                    },
                )
            })?;
            let key = trimmed[..split].trim();
            if key.is_empty() {
                return Err(err(line, IniProblem::NoKey));
            }
            let value = trimmed[split + 1..].trim().to_string();
            raw_keys.push((line, key.to_string()));
            section
                .entries
                .push((key.to_ascii_lowercase(), Value { value, line }));
        }
        let mut ini = AppIni {
            path: path.to_path_buf(),
            sections,
            raw_keys,
            warnings: vec![],
        };
        ini.warnings = ini.unknown_keys();
        ini.validate()?;
        Ok(ini)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The key on `line` as it was written.
    pub fn raw_key(&self, line: usize) -> Option<String> {
        self.raw_keys
            .iter()
            .find(|(l, _)| *l == line)
            .map(|(_, k)| k.clone())
    }

    /// `[production] key`.
    pub fn production(&self, key: &str) -> Option<&Value> {
        self.section("production")?.get(key)
    }

    fn unknown_keys(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let file = self.path.display();
        for section in &self.sections {
            if !KNOWN_SECTIONS.contains(&section.name.as_str()) {
                warnings.push(format!(
                    "{file}:{}: unknown section `[{}]` is ignored{}",
                    section.line,
                    section.name,
                    did_you_mean(&section.name, KNOWN_SECTIONS, |s| format!("[{s}]"))
                ));
                continue;
            }
            if section.name != "production" {
                continue;
            }
            for (key, value) in &section.entries {
                let known = PRODUCTION_KEYS.contains(&key.as_str())
                    || PRODUCTION_PREFIXES.iter().any(|p| key.starts_with(p));
                if !known {
                    warnings.push(format!(
                        "{file}:{}: unknown key `{key}` in [production] is ignored{}",
                        value.line,
                        did_you_mean(key, PRODUCTION_KEYS, |k| k.to_string())
                    ));
                }
            }
        }
        warnings
    }

    fn validate(&self) -> Result<(), Error> {
        if let Some(v) = self.production("app_name") {
            AppName::parse(&v.value).map_err(|why| Error::AppIni {
                path: self.path.clone(),
                line: v.line,
                problem: IniProblem::value("app_name", &v.value, Rule::Name(why)),
            })?;
        }
        if let Some(v) = self.production("platform") {
            if !matches!(
                v.value.as_str(),
                "python" | "php" | "wsgi" | "static" | "process"
            ) {
                return Err(Error::AppIni {
                    path: self.path.clone(),
                    line: v.line,
                    problem: IniProblem::value(
                        "platform",
                        &v.value,
                        Rule::Fixed("is not one of python, php, wsgi, static, process"),
                    ),
                });
            }
        }
        Ok(())
    }
}

/// `; did you mean `runner`?` when a known word is one or two typos away, else nothing.
fn did_you_mean(given: &str, known: &[&str], show: impl Fn(&str) -> String) -> String {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(given, k), k))
        .filter(|(distance, k)| *distance <= 2 && *distance < k.len() / 2 + 1)
        .min()
        .map(|(_, k)| format!("; did you mean `{}`?", show(k)))
        .unwrap_or_default()
}

/// Resolves the app's name: `[production] app_name`, else the directory's name.
pub fn app_name(app_dir: &Path, ini: &AppIni) -> Result<AppName, Error> {
    if let Some(v) = ini.production("app_name") {
        // `validate` checked it when the file was read.
        return AppName::parse(&v.value).map_err(|why| Error::AppName {
            name: v.value.clone(),
            source_of_name: "app.ini's app_name".into(),
            why,
        });
    }
    let canonical = app_dir.canonicalize().map_err(|source| Error::Read {
        path: app_dir.into(),
        source,
    })?;
    let name = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    AppName::parse(&name).map_err(|why| Error::AppName {
        name: name.clone(),
        source_of_name: "the directory's name; app.ini sets no app_name".into(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<(Option<&str>, usize), &str>) {
        let got = AppIni::parse(text, Path::new("app.ini"))
            .map(|ini| {
                (
                    ini.production("app_name").map(|v| v.value.clone()),
                    ini.warnings.len(),
                )
            })
            .map_err(|e| e.to_string());
        let expected = expected
            .map(|(n, w)| (n.map(String::from), w))
            .map_err(String::from);
        assert_eq!(got, expected, "app.ini:\n{text}");
    }

    #[test]
    fn parsing() {
        check(
            "[production]\napp_name = blog\nrunner = src/app.py\n",
            Ok((Some("blog"), 0)),
        );
        check(
            "[production]\napp_name: blog\n; comment\n# comment\n",
            Ok((Some("blog"), 0)),
        );
        check(
            "[production]\nservice.postgis =\nconfig.template = x\n",
            Ok((None, 0)),
        );
        check(
            "[production]\napp_name = a\ncolour = blue\n",
            Ok((Some("a"), 1)),
        );
        check("[production]\nupdate_fetch = /a\n  /b\n", Ok((None, 0)));
        check("[weird]\nx = 1\n", Ok((None, 1)));
        check("app_name = x\n", Err("app.ini:1: `app_name = x` comes before any `[section]` header; start the file with `[production]`"));
        check(
            "[production\n",
            Err("app.ini:1: `[production`: a section header ends with `]`"),
        );
        check(
            "[production]\njust words\n",
            Err("app.ini:2: `just words` is not `key = value`"),
        );
        check(
            "[production]\n\napp_name = -bad\n",
            Err("app.ini:3: app_name `-bad` is invalid: it must start with a lowercase letter or a digit"),
        );
        check(
            "[production]\nplatform = cobol\n",
            Err("app.ini:2: platform `cobol` is not one of python, php, wsgi, static, process"),
        );
        check(
            "  indented\n",
            Err("app.ini:1: indented line with no key above it"),
        );
    }
}
