//! `app.ini` as typed settings: what the runtime needs to run an app, checked line by line.
//!
//! Silver Lining's `[production]` keys, plus extensions in the spirit of 30loops' `thirty.ini`:
//!
//! ```ini
//! [production]
//! app_name = blog
//! runner = src/app.py          ; a WSGI file exposing `application`
//! update_fetch = /update       ; internal request after start, before the switch
//!     script: bin/migrate
//! default_location = blog.example.com/
//! health_check = /health       ; polled before traffic moves (default /)
//! health_timeout = 30          ; seconds (default 30)
//! service.postgis =
//!
//! [processes]
//! web = gunicorn app:application   ; takes traffic on $PORT (a runner makes one by default)
//! mailer = python bin/mailer.py    ; any other name is a worker: no traffic
//!
//! [variables]
//! MODE = production
//! ```

use serde::Serialize;

use crate::appini::{AppIni, Value};
use crate::error::{Error, IniProblem, Rule};
use crate::ServiceKind;

/// The runtime's view of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppConfig {
    pub runner: Option<String>,
    pub platform: String,
    /// `php_root` (PHP apps): the directory, relative to the app, whose files other than
    /// `.php` the router serves as they are and below which `silver_next_path()` looks.
    pub php_root: Option<String>,
    /// The app's `php.ini` settings (`php.memory_limit`, `php.upload_max_filesize`).
    pub php: PhpSettings,
    pub update_fetch: Vec<UpdateFetch>,
    pub default_location: Option<Location>,
    /// `service.<name> = <settings>`.
    pub services: Vec<(ServiceKind, String)>,
    /// `config.<name> = <value>`.
    pub config: Vec<(String, String)>,
    pub processes: Vec<Process>,
    pub variables: Vec<(String, String)>,
    /// Silver Lining's `packages`: Debian packages the node must have.
    pub packages: Vec<String>,
    pub health_check: String,
    /// The health check passes with a status below this: 500 for the default `/`, 400 for an
    /// explicit path.
    pub health_below: u16,
    pub health_timeout_secs: u64,
    /// `request_timeout` (seconds, default 30): a request running longer gets a 504 and the
    /// worker holding it is replaced.
    pub request_timeout_secs: u64,
    /// `slow_paths`: URL path prefixes (below the app's location) whose requests are slow by
    /// design (a 20 s report): never ended early while others wait, only at `request_timeout`.
    pub slow_paths: Vec<String>,
    /// `max_memory` (MiB, default 512): a worker that grows past it is replaced after the
    /// request it is serving.
    pub max_memory_mb: u64,
    /// `https`: what plain HTTP gets once the host has a certificate (default `redirect`).
    pub https: HttpsPolicy,
    /// `hsts` (seconds): sent as `Strict-Transport-Security: max-age=N` over HTTPS only.
    pub hsts_max_age_secs: Option<u64>,
    /// `[cron]`: jobs run on a schedule.
    pub cron: Vec<crate::cron::CronJob>,
    /// Tasks the app queues (`silversupport.tasks.add`): how many run at once, so they never
    /// take the whole web pool (`task_concurrency`, default 2) …
    pub task_concurrency: u64,
    /// … how many the queue holds, queued, running and dead (`task_queue_size`, default
    /// 100000): past it a new task is refused …
    pub task_queue_size: u64,
    /// … and how many attempts a task gets before it is dead (`task_attempts`, default 5).
    pub task_attempts: u64,
    /// `shared_database = VAR`: the environment variable (`silver config set`, `[variables]`)
    /// that holds the `postgresql://` URL of a database every node of the app reaches. With
    /// one, a cron tick runs on one node of the fleet and tasks queue there.
    pub shared_database: Option<crate::VarName>,
}

/// A PHP app's `php.ini` settings from app.ini, in PHP's own size notation (`128M`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PhpSettings {
    pub memory_limit: Option<String>,
    pub upload_max_filesize: Option<String>,
}

impl AppConfig {
    /// `platform = php`.
    pub fn is_php(&self) -> bool {
        self.platform == "php"
    }
}

/// What a request over plain HTTP gets, for an app whose host the front door has a
/// certificate for (without one, HTTP is served as it is: there is nowhere to send it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpsPolicy {
    /// A permanent redirect (308, which keeps the method and body) to the same URL over HTTPS.
    #[default]
    Redirect,
    /// Refused with a 403 that says to use HTTPS: a client that sent a credential over plain
    /// HTTP learns at once, instead of being redirected after the credential has crossed the
    /// network in the clear.
    Only,
    /// Served over both, as they are.
    Both,
}

impl HttpsPolicy {
    pub fn parse(given: &str) -> Option<HttpsPolicy> {
        match given {
            "redirect" => Some(HttpsPolicy::Redirect),
            "only" => Some(HttpsPolicy::Only),
            "both" => Some(HttpsPolicy::Both),
            _ => None,
        }
    }
}

impl AppConfig {
    /// A `config.<name>` setting (Silver Lining's `config.required`, `config.default`,
    /// `config.checker`).
    pub fn config_value(&self, name: &str) -> Option<&str> {
        self.config
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// `config.required = true`: the app does not start without a config directory.
    pub fn config_required(&self) -> bool {
        self.config_value("required")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "on"))
    }
}

/// One step run after the new release starts and before traffic moves to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum UpdateFetch {
    /// An internal request to this URL path.
    Url(String),
    /// A command run in the app's environment.
    Script(String),
}

/// Where an app answers: `host[/path]`. Written and read as that text (CLI, JSON, files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub host: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    pub name: String,
    pub command: String,
    /// Takes HTTP traffic on `$PORT` (the `web` process); workers take none.
    pub web: bool,
}

impl AppConfig {
    /// Reads and checks the settings; every invalid value is an error naming its line.
    pub fn from_ini(ini: &AppIni) -> Result<AppConfig, Error> {
        let err = |line: usize, problem: IniProblem| line_error(ini, line, problem);
        let get = |key: &str| ini.production(key);
        let runner = get("runner")
            .map(|v| {
                check_relative(&v.value)
                    .map(|()| v.value.clone())
                    .map_err(|why| {
                        err(
                            v.line,
                            IniProblem::value("runner", &v.value, Rule::Fixed(why)),
                        )
                    })
            })
            .transpose()?;
        let platform = platform(ini);
        let php_root = get("php_root")
            .map(|v| {
                let root = v.value.trim_end_matches('/');
                check_relative(root)
                    .map(|()| root.to_string())
                    .map_err(|why| {
                        err(
                            v.line,
                            IniProblem::value("php_root", &v.value, Rule::Fixed(why)),
                        )
                    })
            })
            .transpose()?;
        let php = PhpSettings {
            memory_limit: php_size(ini, "php.memory_limit")?,
            upload_max_filesize: php_size(ini, "php.upload_max_filesize")?,
        };
        let update_fetch = match get("update_fetch") {
            Some(v) => parse_update_fetch(v).map_err(|(line, m)| err(line, m))?,
            None => vec![],
        };
        let default_location = get("default_location")
            .map(|v| {
                Location::parse(&v.value).map_err(|why| {
                    err(
                        v.line,
                        IniProblem::value("default_location", &v.value, Rule::Fixed(why)),
                    )
                })
            })
            .transpose()?;
        let (health_check, health_below, health_timeout_secs) = health(ini)?;
        let request_timeout_secs = whole_number(ini, "request_timeout", 30, 1..=3600, "seconds")?;
        let max_memory_mb = whole_number(ini, "max_memory", 512, 16..=1 << 20, "MiB")?;
        let slow_paths = slow_paths(ini)?;
        let https = match get("https") {
            Some(v) => HttpsPolicy::parse(&v.value).ok_or_else(|| {
                err(
                    v.line,
                    IniProblem::value(
                        "https",
                        &v.value,
                        Rule::Fixed("must be `redirect`, `only` or `both`"),
                    ),
                )
            })?,
            None => HttpsPolicy::default(),
        };
        let hsts_max_age_secs = match get("hsts") {
            Some(_) => Some(whole_number(ini, "hsts", 0, 0..=63_072_000, "seconds")?),
            None => None,
        };
        Ok(AppConfig {
            runner,
            platform,
            php_root,
            php,
            update_fetch,
            default_location,
            services: services(ini)?,
            config: config(ini)?,
            processes: processes(ini)?,
            variables: variables(ini)?,
            packages: packages(ini),
            health_check,
            health_below,
            health_timeout_secs,
            request_timeout_secs,
            slow_paths,
            max_memory_mb,
            https,
            hsts_max_age_secs,
            cron: crate::cron::jobs(ini).map_err(|(line, m)| err(line, m))?,
            task_concurrency: whole_number(ini, "task_concurrency", 2, 1..=256, "tasks")?,
            task_queue_size: whole_number(
                ini,
                "task_queue_size",
                100_000,
                1..=10_000_000,
                "tasks",
            )?,
            task_attempts: whole_number(ini, "task_attempts", 5, 1..=100, "attempts")?,
            shared_database: shared_database(ini)?,
        })
    }
}

/// `shared_database`: the name of a variable, never a URL (which would put a password in the
/// artifact).
fn shared_database(ini: &AppIni) -> Result<Option<crate::VarName>, Error> {
    let Some(v) = ini.production("shared_database") else {
        return Ok(None);
    };
    crate::VarName::parse(&v.value).map(Some).map_err(|_| {
        let rule = Rule::Fixed(
            "must name an environment variable (`SHARED_DATABASE_URL`) whose value, set with \
             `silver config set`, is the postgresql:// URL",
        );
        line_error(
            ini,
            v.line,
            IniProblem::value("shared_database", &v.value, rule),
        )
    })
}

fn line_error(ini: &AppIni, line: usize, problem: IniProblem) -> Error {
    Error::AppIni {
        path: ini.path.clone(),
        line,
        problem,
    }
}

/// `health_check` (default `/`), the status it must answer below (500 for the default, which
/// only proves the app is not broken; 400 for a path the app names for the purpose), and
/// `health_timeout` in seconds (default 30).
fn health(ini: &AppIni) -> Result<(String, u16, u64), Error> {
    let err = |line: usize, problem: IniProblem| line_error(ini, line, problem);
    let get = |key: &str| ini.production(key);
    let (health_check, health_below) = match get("health_check") {
        Some(v) if v.value.starts_with('/') && !v.value.contains(char::is_whitespace) => {
            (v.value.clone(), 400)
        }
        Some(v) => {
            return Err(err(
                v.line,
                IniProblem::value(
                    "health_check",
                    &v.value,
                    Rule::Fixed("must be a URL path starting with `/`"),
                ),
            ))
        }
        None => ("/".into(), 500),
    };
    let health_timeout_secs = match get("health_timeout") {
        Some(v) => v
            .value
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=3600).contains(s))
            .ok_or_else(|| {
                err(
                    v.line,
                    IniProblem::value(
                        "health_timeout",
                        &v.value,
                        Rule::Range {
                            unit: "seconds",
                            min: 1,
                            max: 3600,
                        },
                    ),
                )
            })?,
        None => 30,
    };
    Ok((health_check, health_below, health_timeout_secs))
}

/// A whole-number setting within `range`, or `default` when absent; anything else is an error
/// naming its line.
fn whole_number(
    ini: &AppIni,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    unit: &'static str,
) -> Result<u64, Error> {
    let Some(v) = ini.production(key) else {
        return Ok(default);
    };
    v.value
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            let rule = Rule::Range {
                unit,
                min: *range.start(),
                max: *range.end(),
            };
            line_error(ini, v.line, IniProblem::value(key, &v.value, rule))
        })
}

/// `service.<name> = <settings>`, each a service silver offers: one it does not is refused when
/// the app is packed, naming its line, not when a node first tries to provision it.
fn services(ini: &AppIni) -> Result<Vec<(ServiceKind, String)>, Error> {
    let production = ini
        .section("production")
        .map(|s| s.entries.as_slice())
        .unwrap_or(&[]);
    let mut services = Vec::new();
    for (key, v) in production {
        let Some(name) = key.strip_prefix("service.") else {
            continue;
        };
        // Silver Lining's `service.php` installed PHP on the node; silver's nodes have it.
        if name == "php" {
            continue;
        }
        let kind = ServiceKind::parse(name).ok_or_else(|| Error::UnknownService {
            path: ini.path.clone(),
            line: v.line,
            service: name.to_string(),
        })?;
        services.push((kind, v.value.clone()));
    }
    Ok(services)
}

/// Silver Lining's `config.<name>` settings that silver honours.
pub const CONFIG_SETTINGS: &[&str] = &["required", "default", "checker", "template"];

/// `config.<name> = <value>`, each one silver honours. Anything else is refused when packed:
/// `config.secret = hunter2` would otherwise ship a secret inside the artifact and do nothing.
fn config(ini: &AppIni) -> Result<Vec<(String, String)>, Error> {
    let production = ini
        .section("production")
        .map(|s| s.entries.as_slice())
        .unwrap_or(&[]);
    let mut config = Vec::new();
    for (key, v) in production {
        let Some(name) = key.strip_prefix("config.") else {
            continue;
        };
        if !CONFIG_SETTINGS.contains(&name) {
            return Err(Error::UnknownConfig {
                path: ini.path.clone(),
                line: v.line,
                name: name.to_string(),
                known: CONFIG_SETTINGS,
            });
        }
        if name == "default" {
            check_relative(&v.value).map_err(|why| {
                line_error(
                    ini,
                    v.line,
                    IniProblem::value("config.default", &v.value, Rule::Fixed(why)),
                )
            })?;
        }
        config.push((name.to_string(), v.value.clone()));
    }
    Ok(config)
}

/// `[processes]` (which may hold `web`) and `[workers]` (30loops' spelling, no `web`).
fn processes(ini: &AppIni) -> Result<Vec<Process>, Error> {
    let err = |line: usize, problem: IniProblem| line_error(ini, line, problem);
    let mut processes: Vec<Process> = Vec::new();
    // `[processes]` may hold `web`; `[workers]` holds only workers (30loops' spelling).
    let sections = ["processes", "workers"]
        .iter()
        .filter_map(|s| ini.section(s).map(|sec| (*s, sec)));
    for (section_name, section) in sections {
        for (name, v) in &section.entries {
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(err(v.line, IniProblem::ProcessName { name: name.clone() }));
            }
            if v.value.is_empty() {
                return Err(err(v.line, IniProblem::NoCommand { name: name.clone() }));
            }
            if processes.iter().any(|p| &p.name == name)
                || (name == "web" && section_name == "workers")
            {
                return Err(err(v.line, IniProblem::Twice { name: name.clone() }));
            }
            processes.push(Process {
                name: name.clone(),
                command: v.value.clone(),
                web: name == "web",
            });
        }
    }
    Ok(processes)
}

/// Silver Lining's `packages`: Debian package names, comma- or space-separated.
/// `platform`: as written, else `php` for a `.php` runner (Silver Lining's simple-php example
/// names none), else `python`.
pub fn platform(ini: &AppIni) -> String {
    match (ini.production("platform"), ini.production("runner")) {
        (Some(p), _) => p.value.clone(),
        (None, Some(r)) if r.value.ends_with(".php") => "php".into(),
        (None, _) => "python".into(),
    }
}

/// A `php.ini` size (`128M`, `2G`, `512K`, bytes): written into the app's php.ini as it is, so
/// nothing but digits and one unit letter may pass.
fn php_size(ini: &AppIni, key: &str) -> Result<Option<String>, Error> {
    let Some(v) = ini.production(key) else {
        return Ok(None);
    };
    let value = v.value.trim();
    let digits = value.trim_end_matches(['K', 'M', 'G', 'k', 'm', 'g']);
    let one_unit = value.len() - digits.len() <= 1;
    if one_unit && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Some(value.to_string()));
    }
    let rule = Rule::Fixed("must be a size like 128M, 2G or 512K");
    Err(line_error(ini, v.line, IniProblem::value(key, value, rule)))
}

/// `slow_paths = /reports/ /export`: URL paths, separated by spaces or commas.
fn slow_paths(ini: &AppIni) -> Result<Vec<String>, Error> {
    let Some(v) = ini.production("slow_paths") else {
        return Ok(vec![]);
    };
    let paths: Vec<String> = v
        .value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    match paths.iter().find(|p| !p.starts_with('/')) {
        Some(bad) => Err(line_error(
            ini,
            v.line,
            IniProblem::value(
                "slow_paths",
                bad,
                Rule::Fixed("must be URL paths starting with `/`, separated by spaces or commas"),
            ),
        )),
        None => Ok(paths),
    }
}

fn packages(ini: &AppIni) -> Vec<String> {
    ini.production("packages")
        .map(|v| {
            v.value
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// `[variables]`, with names in the case they were written in.
fn variables(ini: &AppIni) -> Result<Vec<(String, String)>, Error> {
    let err = |line: usize, problem: IniProblem| line_error(ini, line, problem);
    let mut variables = Vec::new();
    if let Some(section) = ini.section("variables") {
        for (_, v) in &section.entries {
            // Keys are lowercased by the parser; variables keep the case they were written in.
            let key = original_key(ini, v);
            let valid = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(err(v.line, IniProblem::VariableName { name: key }));
            }
            variables.push((key, v.value.clone()));
        }
    }
    Ok(variables)
}

fn original_key(ini: &AppIni, value: &Value) -> String {
    ini.raw_key(value.line).unwrap_or_default()
}

fn parse_update_fetch(v: &Value) -> Result<Vec<UpdateFetch>, (usize, IniProblem)> {
    v.value
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let line = line.trim();
            if let Some(script) = line.strip_prefix("script:") {
                let script = script.trim();
                if script.is_empty() {
                    return Err((v.line + i, IniProblem::NoScript));
                }
                Ok(UpdateFetch::Script(script.to_string()))
            } else if line.starts_with('/') {
                Ok(UpdateFetch::Url(line.to_string()))
            } else {
                let rule = Rule::Fixed("is neither a URL path (`/…`) nor `script: <command>`");
                Err((v.line + i, IniProblem::value("update_fetch", line, rule)))
            }
        })
        .collect()
}

impl Location {
    /// `host[/path]`: a host name, `*.suffix` for a wildcard, or `*` for the catch-all; the path
    /// defaults to `/` and loses any trailing `/`.
    pub fn parse(text: &str) -> Result<Location, &'static str> {
        // `http://example.com/` would otherwise become host `http:` and path `//example.com/`.
        if text.contains("://") {
            return Err("has a scheme: a location is host[/path], e.g. `example.com/blog`, without `http://`");
        }
        let (host, path) = text
            .split_once('/')
            .map_or((text, "/".to_string()), |(h, p)| (h, format!("/{p}")));
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*' | ':'));
        if !host_ok {
            return Err("must be host[/path], with a host of letters, digits, `.`, `-` (`*.` for a wildcard, `*` for any host)");
        }
        let wildcard_ok = host == "*"
            || match host.strip_prefix("*.") {
                Some(rest) => !rest.contains('*') && !rest.is_empty(),
                None => !host.contains('*'),
            };
        if !wildcard_ok {
            return Err("may use `*` only as a leading `*.`, or alone for any host");
        }
        let path_ok = path.split('/').all(|c| {
            c != ".."
                && c != "."
                && !c.contains(|ch: char| ch.is_control() || ch == '?' || ch == '#' || ch == '%')
        });
        if !path_ok {
            return Err("has a path with `.`, `..`, `?`, `#`, `%` or control characters");
        }
        let trimmed = path.trim_end_matches('/');
        Ok(Location {
            host: host.to_ascii_lowercase(),
            path: if trimmed.is_empty() {
                "/".into()
            } else {
                trimmed.into()
            },
        })
    }
}

impl std::str::FromStr for Location {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Location, &'static str> {
        Location::parse(s)
    }
}

impl Serialize for Location {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Location {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Location, D::Error> {
        let s = String::deserialize(d)?;
        Location::parse(&s).map_err(|why| serde::de::Error::custom(format!("location `{s}` {why}")))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path == "/" {
            write!(f, "{}", self.host)
        } else {
            write!(f, "{}{}", self.host, self.path)
        }
    }
}

fn check_relative(path: &str) -> Result<(), &'static str> {
    if path.starts_with('/') {
        return Err("must be relative to the app directory");
    }
    if path.split('/').any(|c| c == "..") {
        return Err("must stay inside the app directory");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn check(text: &str, expected: Result<&str, &str>) {
        let got = AppIni::parse(text, Path::new("app.ini"))
            .and_then(|ini| AppConfig::from_ini(&ini))
            .map(|c| serde_json::to_string(&c).unwrap())
            .map_err(|e| e.to_string());
        match expected {
            Ok(fragment) => assert!(
                got.as_ref().is_ok_and(|j| j.contains(fragment)),
                "{text}\ngot {got:?}\nwanted {fragment}"
            ),
            Err(message) => {
                assert_eq!(got.as_ref().map_err(String::as_str), Err(message), "{text}")
            }
        }
    }

    #[test]
    fn settings() {
        check(
            "[production]\npackages = libxml2, libpq5 curl\n",
            Ok(r#""packages":["libxml2","libpq5","curl"]"#),
        );
        check(
            "[processes]\nweb = ./server\n[workers]\nmailer = ./mail\n",
            Ok(
                r#""processes":[{"name":"web","command":"./server","web":true},{"name":"mailer","command":"./mail","web":false}]"#,
            ),
        );
        check(
            "[processes]\nmailer = a\n[workers]\nmailer = b\n",
            Err("app.ini:4: process `mailer` is defined twice (or `web` under [workers])"),
        );
        check(
            "[production]\nrunner = src/app.py\n",
            Ok(r#""runner":"src/app.py","platform":"python""#),
        );
        check(
            "[production]\n",
            Ok(r#""health_check":"/","health_below":500,"health_timeout_secs":30"#),
        );
        check(
            "[production]\nrequest_timeout = 5\nmax_memory = 64\n",
            Ok(r#""request_timeout_secs":5,"slow_paths":[],"max_memory_mb":64"#),
        );
        check(
            "[production]\nplatform = php\nrunner = site/runner.php\nphp_root = site/\nphp.memory_limit = 256M\nservice.php =\n",
            Ok(r#""platform":"php","php_root":"site","php":{"memory_limit":"256M","upload_max_filesize":null}"#),
        );
        check(
            "[production]\nphp.upload_max_filesize = 8M; evil=1\n",
            Err("app.ini:2: php.upload_max_filesize `8M; evil=1` must be a size like 128M, 2G or 512K"),
        );
        check(
            "[production]\nphp_root = ../up\n",
            Err("app.ini:2: php_root `../up` must stay inside the app directory"),
        );
        check(
            "[production]\nslow_paths = /reports/, /export\n",
            Ok(r#""slow_paths":["/reports/","/export"]"#),
        );
        check(
            "[production]\nslow_paths = /reports/ export\n",
            Err("app.ini:2: slow_paths `export` must be URL paths starting with `/`, separated by spaces or commas"),
        );
        check(
            "[production]\nrequest_timeout = 0\n",
            Err("app.ini:2: request_timeout `0` must be a whole number of seconds from 1 to 3600"),
        );
        check(
            "[production]\nhealth_check = /healthz\nhealth_timeout = 5\n",
            Ok(r#""health_check":"/healthz","health_below":400,"health_timeout_secs":5"#),
        );
        check(
            "[production]\nupdate_fetch = /update\n  script: bin/migrate --all\n",
            Ok(
                r#""update_fetch":[{"kind":"url","value":"/update"},{"kind":"script","value":"bin/migrate --all"}]"#,
            ),
        );
        check(
            "[production]\ndefault_location = Blog.Example.com/news\n",
            Ok(r#""default_location":"blog.example.com/news""#),
        );
        check(
            "[production]\ndefault_location = *.example.com\n",
            Ok(r#""default_location":"*.example.com""#),
        );
        check(
            "[production]\nservice.postgis =\nconfig.template = x\n",
            Ok(r#""services":[["postgis",""]],"config":[["template","x"]]"#),
        );
        // Silver Lining's functional-test app declares every service it offered.
        check(
            "[production]\nservice.files =\nservice.writable_root =\nservice.couchdb =\nservice.postgis =\nservice.mysql =\nservice.redis =\nservice.postgres =\n",
            Ok(
                r#""services":[["files",""],["writable_root",""],["couchdb",""],["postgis",""],["mysql",""],["redis",""],["postgresql",""]]"#,
            ),
        );
        check(
            "[production]\napp_name = x\nservice.mongodb =\n",
            Err("app.ini:3: service `mongodb` is not one silver offers"),
        );
        check(
            "[production]\nservice.files =\nservice.memcache =\n",
            Err("app.ini:3: service `memcache` is not one silver offers"),
        );
        check(
            "[production]\n[processes]\nweb = gunicorn app:application\nmailer = python mail.py\n",
            Ok(
                r#"{"name":"web","command":"gunicorn app:application","web":true},{"name":"mailer","command":"python mail.py","web":false}"#,
            ),
        );
        check(
            "[production]\n[variables]\nMODE = production\n_Debug = 0\n",
            Ok(r#""variables":[["MODE","production"],["_Debug","0"]]"#),
        );
    }

    #[test]
    fn invalid_values_name_their_line() {
        check(
            "[production]\nrunner = /srv/app.py\n",
            Err("app.ini:2: runner `/srv/app.py` must be relative to the app directory"),
        );
        check(
            "[production]\nrunner = ../app.py\n",
            Err("app.ini:2: runner `../app.py` must stay inside the app directory"),
        );
        check(
            "[production]\nhealth_check = health\n",
            Err("app.ini:2: health_check `health` must be a URL path starting with `/`"),
        );
        check(
            "[production]\n\nhealth_timeout = soon\n",
            Err(
                "app.ini:3: health_timeout `soon` must be a whole number of seconds from 1 to 3600",
            ),
        );
        check("[production]\nupdate_fetch = /a\n  /b\n  fetch me\n", Err("app.ini:4: update_fetch `fetch me` is neither a URL path (`/…`) nor `script: <command>`"));
        check("[production]\ndefault_location = bad host\n", Err("app.ini:2: default_location `bad host` must be host[/path], with a host of letters, digits, `.`, `-` (`*.` for a wildcard, `*` for any host)"));
        check(
            "[production]\ndefault_location = a.*.com\n",
            Err("app.ini:2: default_location `a.*.com` may use `*` only as a leading `*.`, or alone for any host"),
        );
        check(
            "[production]\n[processes]\nweb server = x\n",
            Err("app.ini:3: process name `web server` may hold only letters, digits, `-` and `_`"),
        );
        check(
            "[production]\n[processes]\nweb =\n",
            Err("app.ini:3: process `web` has no command"),
        );
        check(
            "[production]\n[variables]\n2FAST = x\n",
            Err("app.ini:3: variable name `2FAST` is not a valid environment variable name"),
        );
    }
}
