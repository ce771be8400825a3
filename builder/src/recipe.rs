//! An image recipe (design §7): TOML, one file per image in `image-recipes/`.
//!
//! ```toml
//! [image]
//! name = "debian-bookworm"
//! distribution = "debian"             # debian or ubuntu
//! suite = "bookworm"
//! mirror = "http://deb.debian.org/debian"
//! keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
//! architecture = "amd64"              # amd64 or arm64
//! disk_size = "4G"                    # the raw disk: K, M, G or T
//! formats = ["rootfs", "raw", "qcow2", "kernel"]
//!
//! [packages]
//! include = ["systemd-sysv", "linux-image-amd64", "openssh-server"]
//!
//! [[files]]
//! path = "/etc/motd"                  # absolute, in the image
//! content = "A silver node.\n"        # or: source = "files/motd" (relative to the recipe)
//! mode = "0644"
//! owner = "root:root"
//!
//! [[users]]
//! name = "silver"
//! system = true
//! home = "/var/lib/silver"
//!
//! [services]
//! enable = ["ssh.service", "silver-agent.service"]
//!
//! [agent]
//! root = "/var/lib/silver"
//! listen = "127.0.0.1:7330"           # the control API (reach it over ssh)
//! remote = "0.0.0.0:7331"             # the control API over TLS, once a node gets a certificate
//! http = "0.0.0.0:80"                 # the front door
//! https = "0.0.0.0:443"               # and over HTTPS (optional)
//! ```
//!
//! Unknown fields are errors (a typo must not be silently ignored), and so are values that
//! make no sense; both name the field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, FieldProblem};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub image: Image,
    #[serde(default)]
    pub packages: Packages,
    #[serde(default)]
    pub files: Vec<File>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub services: Services,
    pub agent: Agent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub name: String,
    pub distribution: String,
    pub suite: String,
    pub mirror: String,
    pub keyring: String,
    #[serde(default = "default_architecture")]
    pub architecture: String,
    pub disk_size: String,
    pub formats: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    #[serde(default)]
    pub include: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub path: String,
    pub content: Option<String>,
    pub source: Option<String>,
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default = "default_owner")]
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub system: bool,
    pub home: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub shell: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    #[serde(default)]
    pub enable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    #[serde(default = "default_agent_root")]
    pub root: String,
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The control API over TLS, for remote clients. Only listens on a node whose first-boot
    /// settings bring a certificate (`/etc/silver/agent.env`, written by the seed).
    #[serde(default = "default_remote")]
    pub remote: String,
    #[serde(default = "default_http")]
    pub http: String,
    /// The front door over HTTPS (certificates from ACME, the fleet or the operator); none
    /// unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<String>,
}

impl Default for Agent {
    fn default() -> Agent {
        Agent {
            root: default_agent_root(),
            listen: default_listen(),
            remote: default_remote(),
            http: default_http(),
            https: None,
        }
    }
}

fn default_architecture() -> String {
    "amd64".into()
}
fn default_mode() -> String {
    "0644".into()
}
fn default_owner() -> String {
    "root:root".into()
}
fn default_agent_root() -> String {
    "/var/lib/silver".into()
}
fn default_listen() -> String {
    "127.0.0.1:7330".into()
}
fn default_remote() -> String {
    "0.0.0.0:7331".into()
}
fn default_http() -> String {
    "0.0.0.0:80".into()
}

/// The output formats a bake can write.
pub const FORMATS: &[&str] = &["rootfs", "raw", "qcow2", "kernel"];

impl Recipe {
    /// Reads and checks a recipe file.
    pub fn load(path: &Path) -> Result<Recipe, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Recipe::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Recipe, Error> {
        let recipe: Recipe = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: silver_types::Said::whole(&e.to_string().trim().replace('\n', "\n  "), &[]),
        })?;
        recipe.check(path)?;
        Ok(recipe)
    }

    /// The disk size in bytes.
    pub fn disk_bytes(&self) -> u64 {
        parse_size(&self.image.disk_size).unwrap_or(0)
    }

    /// Where a file's `source` is read from: relative to the recipe's directory.
    pub fn source_path(recipe_path: &Path, source: &str) -> PathBuf {
        recipe_path.parent().unwrap_or(Path::new(".")).join(source)
    }

    /// Every field's value, in the order the recipe lists them; the first bad one is the error.
    fn check(&self, path: &Path) -> Result<(), Error> {
        let checks = [
            check_image(&self.image),
            check_packages(&self.packages),
            check_files(&self.files),
            check_users(&self.users),
            check_services(&self.services),
            check_agent(&self.agent),
        ];
        match checks.into_iter().find_map(Result::err) {
            Some(Invalid { field, problem }) => Err(Error::Invalid {
                path: path.to_path_buf(),
                field,
                problem,
            }),
            None => Ok(()),
        }
    }
}

/// A field that fails its check, and why.
struct Invalid {
    field: String,
    problem: FieldProblem,
}

fn invalid(field: &str, problem: FieldProblem) -> Invalid {
    Invalid {
        field: field.into(),
        problem,
    }
}

/// ``field: `value` rule``: a value that breaks the rule of its field.
fn breaks(field: &str, value: &str, rule: &'static str) -> Invalid {
    let value = value.to_string();
    invalid(field, FieldProblem::Value { value, rule })
}

fn check_image(image: &Image) -> Result<(), Invalid> {
    if !matches!(image.distribution.as_str(), "debian" | "ubuntu") {
        return Err(invalid(
            "image.distribution",
            FieldProblem::NotOneOf {
                value: image.distribution.clone(),
                allowed: "`debian` or `ubuntu`",
            },
        ));
    }
    if !matches!(image.architecture.as_str(), "amd64" | "arm64") {
        return Err(invalid(
            "image.architecture",
            FieldProblem::NotOneOf {
                value: image.architecture.clone(),
                allowed: "`amd64` or `arm64`",
            },
        ));
    }
    if !is_name(&image.name) {
        return Err(breaks(
            "image.name",
            &image.name,
            "may hold only letters, digits, `-`, `_` and `.`",
        ));
    }
    if !is_name(&image.suite) {
        return Err(breaks("image.suite", &image.suite, "is not a suite name"));
    }
    if !(image.mirror.starts_with("http://") || image.mirror.starts_with("https://")) {
        return Err(breaks(
            "image.mirror",
            &image.mirror,
            "must be an http:// or https:// URL",
        ));
    }
    if !image.keyring.starts_with('/') {
        return Err(breaks(
            "image.keyring",
            &image.keyring,
            "must be an absolute path to a keyring",
        ));
    }
    match parse_size(&image.disk_size) {
        Some(n) if n >= 512 << 20 => {}
        _ => {
            return Err(breaks(
                "image.disk_size",
                &image.disk_size,
                "must be a size of at least 512M, like `4G` or `2048M`",
            ))
        }
    }
    if image.formats.is_empty() {
        return Err(invalid(
            "image.formats",
            FieldProblem::NoFormats { formats: FORMATS },
        ));
    }
    if let Some(f) = image
        .formats
        .iter()
        .find(|f| !FORMATS.contains(&f.as_str()))
    {
        return Err(invalid(
            "image.formats",
            FieldProblem::UnknownFormat {
                format: f.clone(),
                formats: FORMATS,
            },
        ));
    }
    Ok(())
}

fn check_packages(packages: &Packages) -> Result<(), Invalid> {
    if let Some(p) = packages.include.iter().find(|p| !is_package(p)) {
        return Err(breaks(
            "packages.include",
            p,
            "is not a Debian package name",
        ));
    }
    Ok(())
}

fn check_files(files: &[File]) -> Result<(), Invalid> {
    for (i, f) in files.iter().enumerate() {
        let field = |name: &str| format!("files[{i}].{name}");
        if !f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
            return Err(breaks(
                &field("path"),
                &f.path,
                "must be an absolute path with no `..`",
            ));
        }
        match (&f.content, &f.source) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => return Err(invalid(&field("content"), FieldProblem::ContentOrSource)),
        }
        if u32::from_str_radix(&f.mode, 8).map_or(true, |m| m > 0o7777) {
            return Err(breaks(
                &field("mode"),
                &f.mode,
                "must be an octal mode like `0644`",
            ));
        }
        let owner_ok = f
            .owner
            .split_once(':')
            .is_some_and(|(u, g)| is_name(u) && is_name(g));
        if !owner_ok {
            return Err(breaks(&field("owner"), &f.owner, "must be `user:group`"));
        }
    }
    Ok(())
}

fn check_users(users: &[User]) -> Result<(), Invalid> {
    for (i, u) in users.iter().enumerate() {
        if !is_name(&u.name) || u.name.starts_with(['-', '.']) {
            return Err(breaks(
                &format!("users[{i}].name"),
                &u.name,
                "is not a user name",
            ));
        }
    }
    Ok(())
}

fn check_services(services: &Services) -> Result<(), Invalid> {
    if let Some(s) = services
        .enable
        .iter()
        .find(|s| !is_name(s.trim_end_matches(".service")) && !s.contains('@'))
    {
        return Err(breaks("services.enable", s, "is not a systemd unit name"));
    }
    Ok(())
}

fn check_agent(agent: &Agent) -> Result<(), Invalid> {
    for (field, value) in [
        ("agent.listen", &agent.listen),
        ("agent.remote", &agent.remote),
        ("agent.http", &agent.http),
        ("agent.https", agent.https.as_ref().unwrap_or(&agent.http)),
    ] {
        if value.parse::<std::net::SocketAddr>().is_err() {
            return Err(breaks(
                field,
                value,
                "must be an address like 127.0.0.1:7330",
            ));
        }
    }
    if !agent.root.starts_with('/') {
        return Err(breaks(
            "agent.root",
            &agent.root,
            "must be an absolute path",
        ));
    }
    Ok(())
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Debian policy: lowercase letters, digits, `+`, `-`, `.`; at least two characters, starting
/// with a letter or digit. An `=version` pin is allowed.
fn is_package(s: &str) -> bool {
    let name = s.split_once('=').map_or(s, |(n, _)| n);
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

/// `4G`, `2048M`, `512M`, or a plain byte count.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().ok()?;
    let shift = match unit {
        "" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[image]
name = "debian-bookworm"
distribution = "debian"
suite = "bookworm"
mirror = "http://deb.debian.org/debian"
keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
disk_size = "4G"
formats = ["rootfs", "raw"]

[packages]
include = ["systemd-sysv", "python3", "linux-image-amd64"]

[[files]]
path = "/etc/motd"
content = "hello\n"

[[users]]
name = "silver"
system = true

[services]
enable = ["ssh.service", "silver-agent"]

[agent]
"#;

    /// Replaces `from` with `to` in the good recipe and checks the outcome: `Ok(())` or the
    /// error's text.
    fn check(from: &str, to: &str, expected: Result<(), &str>) {
        assert!(GOOD.contains(from), "{from}");
        let text = GOOD.replacen(from, to, 1);
        let got = Recipe::parse(&text, Path::new("r.toml"))
            .map(|_| ())
            .map_err(|e| e.to_string());
        match expected {
            Ok(()) => assert!(got.is_ok(), "{from} -> {to}: {got:?}"),
            Err(fragment) => {
                let err = got.expect_err(to);
                assert!(
                    err.contains(fragment),
                    "{from} -> {to}:\n{err}\nwanted {fragment}"
                );
            }
        }
    }

    #[test]
    fn recipes_and_their_errors() {
        check("", "", Ok(()));
        check("[agent]\n", "[agent]\nhttp = \"127.0.0.1:8080\"\n", Ok(()));
        check(
            "disk_size = \"4G\"",
            "disk_size = \"4G\"\ncolour = \"blue\"",
            Err("unknown field `colour`"),
        );
        check(
            "name = \"silver\"",
            "name = \"silver\"\nshel = \"/bin/sh\"",
            Err("unknown field `shel`"),
        );
        check(
            "distribution = \"debian\"",
            "distribution = \"arch\"",
            Err("`image.distribution` is `arch`"),
        );
        check(
            "disk_size = \"4G\"",
            "disk_size = \"4Q\"",
            Err("`image.disk_size` `4Q` must be a size"),
        );
        check(
            "disk_size = \"4G\"",
            "disk_size = \"100M\"",
            Err("at least 512M"),
        );
        check(
            "formats = [\"rootfs\", \"raw\"]",
            "formats = [\"iso\"]",
            Err("`image.formats` has `iso`"),
        );
        check(
            "\"python3\"",
            "\"Python3\"",
            Err("`packages.include` `Python3` is not a Debian package name"),
        );
        check(
            "path = \"/etc/motd\"",
            "path = \"etc/motd\"",
            Err("`files[0].path`"),
        );
        check(
            "content = \"hello\\n\"",
            "content = \"x\"\nsource = \"y\"",
            Err("`files[0].content` give exactly one"),
        );
        check(
            "content = \"hello\\n\"",
            "content = \"x\"\nmode = \"0999\"",
            Err("`files[0].mode`"),
        );
        check(
            "content = \"hello\\n\"",
            "content = \"x\"\nowner = \"root\"",
            Err("`files[0].owner`"),
        );
        check(
            "[agent]\n",
            "[agent]\nlisten = \"localhost\"\n",
            Err("`agent.listen`"),
        );
        check(
            "mirror = \"http://deb.debian.org/debian\"",
            "mirror = \"deb.debian.org\"",
            Err("`image.mirror`"),
        );
        check("[agent]\n", "", Err("missing field `agent`"));
    }

    #[test]
    fn the_shipped_recipes_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../image-recipes");
        for name in ["debian-bookworm.toml", "ubuntu-noble.toml"] {
            let recipe = Recipe::load(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            for package in ["gunicorn", "php-fpm", "php-cli", "php-mysql"] {
                assert!(
                    recipe.packages.include.iter().any(|p| p == package),
                    "{name}: {package}"
                );
            }
            assert!(
                recipe
                    .services
                    .enable
                    .iter()
                    .any(|s| s.starts_with("silver-agent")),
                "{name}"
            );
            for f in recipe.files.iter().filter_map(|f| f.source.as_ref()) {
                assert!(
                    Recipe::source_path(&dir.join(name), f).is_file(),
                    "{name}: {f}"
                );
            }
        }
    }
}
