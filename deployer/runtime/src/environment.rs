//! The environment every process of an app gets, and `silver run` too (design §5), and the two
//! files that hand it to scripts: `environment.json` and `environment.conf`.

use silver_types::AppName;
use std::collections::BTreeMap;
use std::path::Path;

use silver_types::appconfig::AppConfig;

use crate::error::Error;
use crate::supervise::AppUser;

/// What the node knows about one running release.
#[derive(Debug, Clone)]
pub struct EnvContext<'a> {
    pub app: &'a AppName,
    /// The full id, or `dev` under `silver serve`.
    pub release: &'a str,
    /// The app's canonical host (its first location).
    pub hostname: &'a str,
    /// The per-app log directory, outside the release.
    pub logs: &'a Path,
    /// Where the router serves this release's `static/`, versioned.
    pub static_url: &'a str,
    /// The port a web process listens on (workers get none).
    pub port: Option<u16>,
    /// Variables of provisioned services (`CONFIG_*`, `DATABASE_URL`, …).
    pub services: &'a [(String, String)],
    /// The release's short label (its name in `SILVER_INSTANCE_NAME`).
    pub label: &'a str,
    /// The app's temporary directory (`TEMP`, `TMPDIR`), emptied on every update.
    pub tmp: &'a Path,
    /// The node's config for the app (`silver config set`): its secrets, never in the artifact.
    pub settings: &'a BTreeMap<silver_types::VarName, silver_types::VarValue>,
}

/// `SILVER_VERSION`: Silver Lining's `silverlining/…` on a node, `devel/…` under `silver serve`
/// (what `silversupport.env.is_production()` tells apart).
pub fn silver_version(dev: bool) -> String {
    let platform = if dev { "devel" } else { "silverlining" };
    format!("{platform}/silver-{}", env!("CARGO_PKG_VERSION"))
}

/// The variables, sorted by name. Services come first, then the app's `[variables]`, then the
/// node's config for it (which overrides what the artifact says, as Heroku's config vars do),
/// then silver's own, which win: an app cannot misstate its release or port.
pub fn environment(config: &AppConfig, ctx: &EnvContext) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.extend(ctx.services.iter().cloned());
    env.extend(config.variables.iter().cloned());
    env.extend(
        ctx.settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_str().to_string())),
    );
    env.insert("SILVER_APP_NAME".into(), ctx.app.to_string());
    env.insert("SILVER_RELEASE".into(), ctx.release.into());
    env.insert("SILVER_CANONICAL_HOSTNAME".into(), ctx.hostname.into());
    env.insert("SILVER_LOGS".into(), ctx.logs.display().to_string());
    env.insert("STATIC_URL".into(), ctx.static_url.into());
    let dev = ctx.release == "dev";
    env.insert("SILVER_VERSION".into(), silver_version(dev));
    env.insert(
        "SILVER_INSTANCE_NAME".into(),
        format!("{}.{}", ctx.app, ctx.label),
    );
    for name in ["TEMP", "TMPDIR"] {
        env.insert(name.into(), ctx.tmp.display().to_string());
    }
    if let Some(port) = ctx.port {
        env.insert("PORT".into(), port.to_string());
    }
    env
}

/// Writes `environment.json` (one object) and `environment.conf` (`NAME='value'` lines that
/// `sh` can source) into `dir`, each replaced atomically, mode 0600 and given to `owner`: they
/// hold the app's passwords, which no other app's user may read.
pub fn write_environment(
    dir: &Path,
    env: &BTreeMap<String, String>,
    owner: Option<&AppUser>,
) -> Result<(), Error> {
    let json = serde_json::to_vec_pretty(env).expect("strings serialize");
    let conf: String = env
        .iter()
        .map(|(k, v)| format!("{k}={}\n", shell_quote(v)))
        .collect();
    for (name, body) in [
        ("environment.json", json),
        ("environment.conf", conf.into_bytes()),
    ] {
        let path = dir.join(name);
        let options = safefs::WriteOptions {
            mode: 0o600,
            durability: safefs::Durability::Atomic,
        };
        safefs::write_atomic(&path, &body, options).map_err(|e| Error::io(&path, e))?;
        if let Some(user) = owner {
            std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
                .map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// `value` as one POSIX sh word (the `shlex` crate, as the client and builder quote).
pub(crate) fn shell_quote(text: &str) -> String {
    // NUL ends a C string: no shell word holds one, so none is kept (none reaches here from
    // the CLI, and config values refuse it).
    shlex::try_quote(&text.replace('\0', ""))
        .expect("only NUL fails to quote")
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ini: &str) -> AppConfig {
        let ini = silver_types::appini::AppIni::parse(ini, Path::new("app.ini")).unwrap();
        AppConfig::from_ini(&ini).unwrap()
    }

    #[test]
    fn silver_variables_win_and_services_come_first() {
        let id = format!("b3:{}", "ab".repeat(32));
        let services = [
            ("DATABASE_URL".to_string(), "postgres://x".to_string()),
            ("MODE".to_string(), "service".to_string()),
        ];
        let app = AppName::parse("blog").unwrap();
        let ctx = EnvContext {
            app: &app,
            release: &id,
            hostname: "blog.example.com",
            logs: Path::new("/var/lib/silver/apps/blog/logs"),
            static_url: "/_static/abababababab/",
            port: Some(8001),
            services: &services,
            label: "abababababab",
            tmp: Path::new("/var/lib/silver/apps/blog/tmp"),
            settings: &[(
                silver_types::VarName::parse("MODE").unwrap(),
                silver_types::VarValue::parse("config".into()).unwrap(),
            )]
            .into_iter()
            .collect(),
        };
        let env = environment(
            &config("[production]\n[variables]\nMODE = app\nPORT = 1\nGreeting = it's\n"),
            &ctx,
        );
        let check = |k: &str, v: &str| assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        check("MODE", "config");
        check("PORT", "8001");
        check("DATABASE_URL", "postgres://x");
        check("SILVER_RELEASE", &id);
        check("SILVER_APP_NAME", "blog");
        check("SILVER_CANONICAL_HOSTNAME", "blog.example.com");
        check("SILVER_LOGS", "/var/lib/silver/apps/blog/logs");
        check("STATIC_URL", "/_static/abababababab/");
        check("Greeting", "it's");
        check("SILVER_INSTANCE_NAME", "blog.abababababab");
        check("TEMP", "/var/lib/silver/apps/blog/tmp");
        check("TMPDIR", "/var/lib/silver/apps/blog/tmp");
        assert!(env["SILVER_VERSION"].starts_with("silverlining/silver-"));
        let worker = environment(
            &config("[production]\n"),
            &EnvContext {
                port: None,
                ..ctx.clone()
            },
        );
        assert!(!worker.contains_key("PORT"));
    }

    #[test]
    fn the_files_round_trip_through_sh_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let env: BTreeMap<String, String> = [("A", "plain"), ("B", "it's $HOME `x` \"q\"\nnext")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        write_environment(dir.path(), &env, None).unwrap();
        let json: BTreeMap<String, String> =
            serde_json::from_slice(&std::fs::read(dir.path().join("environment.json")).unwrap())
                .unwrap();
        assert_eq!(json, env);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(". ./environment.conf; printf '%s' \"$B\"")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), env["B"]);
    }
}
