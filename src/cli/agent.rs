//! `silver agent`: run the node agent over a store directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::limits::LimitArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store: objects, artifacts, apps (default in production: /var/lib/silver).
    #[arg(long, value_name = "DIR")]
    #[arg(value_parser = super::common::absolute_path)]
    pub root: PathBuf,
    /// Where the control API listens: loopback, or any address with --tls-cert and --tls-key.
    #[arg(long, default_value = "127.0.0.1:7330", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The credential file; created with a new random token if missing [default: ROOT/token].
    #[arg(long, value_name = "FILE")]
    #[arg(value_parser = super::common::absolute_path)]
    pub token_file: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key, serves https and may listen beyond loopback.
    #[arg(
        long,
        env = "SILVER_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    #[arg(value_parser = super::common::absolute_path)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(
        long,
        env = "SILVER_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    #[arg(value_parser = super::common::absolute_path)]
    pub tls_key: Option<PathBuf>,
    /// A second control listener, https only, for remote clients; --listen then stays
    /// plaintext on loopback for SSH tunnels. Needs --tls-cert and --tls-key.
    #[arg(
        long,
        env = "SILVER_TLS_LISTEN",
        value_name = "ADDR",
        requires = "tls_cert"
    )]
    pub tls_listen: Option<SocketAddr>,
    /// Seconds an upload may go without sending a byte.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub idle_timeout: u64,
    /// Seconds any other request may take.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub request_timeout: u64,
    /// Largest upload in one request, in bytes.
    #[arg(long, default_value_t = 16 << 30, value_name = "BYTES")]
    pub max_upload_bytes: u64,
    /// Free bytes to keep on the node: an upload that would leave less is refused up front.
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES")]
    pub min_free_bytes: u64,
    /// Seconds gc spares objects that no release uses yet (a deploy in progress uploads first).
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub gc_grace: u64,
    /// A registry (`host[:port]`) the node may pull from over plain HTTP although it is not on
    /// loopback. Pull credentials are in `<root>/registry-auth.json` (Docker's format, 0600).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Where the front door, the apps' public HTTP, listens (a node uses 0.0.0.0:80).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub http: SocketAddr,
    #[command(flatten)]
    pub https: HttpsArgs,
    /// Sample nothing: no rings under ROOT/metrics, no /metrics figures from the sampler, no
    /// alerts (the status page has only its certificates then).
    #[arg(long)]
    pub no_metrics: bool,
    /// POST each alert (firing and resolved) as JSON to this URL.
    #[arg(long, value_name = "URL")]
    pub alert_webhook: Option<String>,
    /// Run this with `sh -c` on each alert, the alert in SILVER_ALERT, SILVER_ALERT_STATE,
    /// SILVER_ALERT_SUBJECT and SILVER_ALERT_MESSAGE.
    #[arg(long, value_name = "COMMAND")]
    pub alert_command: Option<String>,
    /// A token (file, 0600; made if missing) that may read /metrics and the status and nothing
    /// else: give it to Prometheus.
    #[arg(long, value_name = "FILE")]
    #[arg(value_parser = super::common::absolute_path)]
    pub read_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// HTTPS at the front door, and where its certificates come from.
#[derive(Debug, clap::Args)]
pub struct HttpsArgs {
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) here too (a node uses 0.0.0.0:443), with the
    /// operator's certificates (`silver certs add`) and ACME's for every other host.
    #[arg(long, value_name = "ADDR")]
    pub https: Option<SocketAddr>,
    /// The ACME directory certificates come from.
    #[arg(long, value_name = "URL", default_value = silver_acme::LETS_ENCRYPT)]
    pub acme_directory: String,
    /// Trust this CA root (PEM) for the ACME directory's own HTTPS (a test CA, like Pebble's).
    #[arg(long, value_name = "FILE")]
    #[arg(value_parser = super::common::absolute_path)]
    pub acme_ca_root: Option<PathBuf>,
    /// The contact address the CA writes to about expiring certificates.
    #[arg(long, value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// The challenge a host is tried with first; after a failure the other is tried.
    #[arg(long, value_name = "TYPE", default_value = "http-01", value_parser = ["http-01", "tls-alpn-01"])]
    pub acme_challenge: String,
    /// Seconds before the first retry of a failed order; each further failure doubles it, up
    /// to a day.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub acme_retry: u64,
    /// Serve only the operator's certificates: order none from ACME.
    #[arg(long)]
    pub no_acme: bool,
}

impl HttpsArgs {
    fn acme(&self) -> Option<silver_node::certs::AcmeSettings> {
        (self.https.is_some() && !self.no_acme).then(|| silver_node::certs::AcmeSettings {
            config: silver_acme::AcmeConfig {
                directory: self.acme_directory.clone(),
                ca_root: self.acme_ca_root.clone(),
                email: self.acme_email.clone(),
            },
            first: silver_acme::Challenge::parse(&self.acme_challenge)
                .expect("clap allows only the two"),
            retry_base: Duration::from_secs(self.acme_retry.max(1)),
        })
    }
}

/// The servers the node's services live on; shared with `silver serve`, which provisions the
/// same services locally.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// PostgreSQL for apps with `service.postgresql` or `service.postgis`, as an admin URL
    /// (postgresql://ADMIN@HOST:PORT/postgres) [default as root: the local cluster's `postgres`
    /// superuser, through runuser; without root: the local cluster's socket, as you].
    #[arg(long, env = "SILVER_POSTGRES_URL", value_name = "URL")]
    pub postgres_url: Option<String>,
    /// Redis for apps with `service.redis`, as redis://[[USER]:ADMIN_PASSWORD@]HOST[:PORT]
    /// (6 or later: each app gets an ACL user confined to its key prefix). Give a password
    /// through the environment variable, not the command line, which every user sees.
    #[arg(
        long,
        env = "SILVER_REDIS_URL",
        value_name = "URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// MariaDB for apps with `service.mysql`, as mysql://ADMIN[:PASSWORD]@HOST[:PORT]
    /// [default: the system's root over the local socket, apps on 127.0.0.1:3306]. Give a
    /// password through the environment variable, not the command line.
    #[arg(
        long,
        env = "SILVER_MYSQL_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub mysql_url: Option<String>,
    /// CouchDB's HTTP API for apps with `service.couchdb`, as http://[ADMIN:PASSWORD@]HOST:PORT
    /// (with an administrator, each app gets its own user and a database only it may read).
    #[arg(
        long,
        env = "SILVER_COUCHDB_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:5984",
        hide_env_values = true
    )]
    pub couchdb_url: String,
}

impl ServerArgs {
    pub fn apply(&self, config: &mut silver_runtime::RuntimeConfig) -> anyhow::Result<()> {
        // The URL is not repeated: it may hold the administrator's password.
        config.servers.redis = silver_runtime::services::redis::Redis::from_url(&self.redis_url)
            .context("--redis-url is not a redis://[[user]:password@]host[:port] URL")?;
        // The URL is not repeated: it may hold the administrator's password.
        config.servers.couchdb =
            silver_runtime::services::couchdb::Couchdb::from_url(&self.couchdb_url)
                .context("--couchdb-url is not an http://[admin:password@]host[:port] URL")?;
        if let Some(url) = &self.mysql_url {
            // The URL is not repeated: it may hold the administrator's password.
            config.servers.mysql = silver_runtime::services::mysql::Mysql::from_url(url)
                .context("--mysql-url is not a mysql://user[:password]@host[:port] URL")?;
        }
        config.servers.postgres = match &self.postgres_url {
            Some(url) => Some(
                // The URL is not repeated: it may hold the administrator's password.
                silver_runtime::services::Postgres::from_url(Some(url)).context(
                    "--postgres-url is not a postgresql://[user[:password]@]host[:port]/db URL",
                )?,
            ),
            None if silver_runtime::supervise::running_as_root() => {
                silver_runtime::services::Postgres::from_url(None)
            }
            None => silver_runtime::services::Postgres::local_socket(),
        };
        Ok(())
    }
}

/// How apps run; shared with `silver up`.
#[derive(Debug, clap::Args)]
pub struct RuntimeArgs {
    /// Run every app as this one unprivileged user, with no isolation between apps [default as
    /// root: each app as its own system user, `s<node id>-<app>`, made by the agent].
    #[arg(long, value_name = "USER")]
    pub app_user: Option<String>,
    /// Seconds a replaced release gets to finish its in-flight requests before it is stopped.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub drain_grace: u64,
    /// gunicorn workers per WSGI app, before the pool grows for stuck requests
    /// [default: 2 x cores + 1].
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    #[command(flatten)]
    pub servers: ServerArgs,
    /// Seconds a front-door connection may take to send its request headers before it is closed.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub header_timeout: u64,
    /// Open front-door connections allowed from one client address; more are closed at once.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_client_connections: usize,
}

impl RuntimeArgs {
    pub fn resolve(&self) -> anyhow::Result<silver_runtime::RuntimeConfig> {
        let mut config = silver_runtime::RuntimeConfig {
            users: app_users(self.app_user.as_deref())?,
            drain_grace: Duration::from_secs(self.drain_grace),
            front: silver_runtime::front_door::FrontConfig {
                header_timeout: Duration::from_secs(self.header_timeout.max(1)),
                max_client_connections: self.max_client_connections.max(1),
            },
            ..Default::default()
        };
        if let Some(workers) = self.workers {
            config.gunicorn.workers = workers.max(1);
        }
        self.servers.apply(&mut config)?;
        Ok(config)
    }
}

/// As root, each app runs as its own user (or all as `--app-user`); otherwise they already run
/// unprivileged, as us.
fn app_users(name: Option<&str>) -> anyhow::Result<silver_runtime::users::AppUsers> {
    use silver_runtime::supervise::AppUser;
    use silver_runtime::users::AppUsers;
    if !silver_runtime::supervise::running_as_root() {
        if let Some(name) = name {
            anyhow::bail!(
                "--app-user {name} needs the agent to run as root; without root, apps run as you"
            );
        }
        return Ok(AppUsers::Invoker);
    }
    let Some(name) = name else {
        return Ok(AppUsers::PerApp);
    };
    let user = AppUser::lookup(name)
        .with_context(|| format!("there is no user `{name}` for --app-user on this machine"))?;
    if user.uid == 0 {
        anyhow::bail!("--app-user must not be root: apps run unprivileged");
    }
    Ok(AppUsers::Shared(user))
}

/// Says on stderr, at start, which runner apps may need that the node lacks: every WSGI deploy
/// would fail on it otherwise, and the operator would learn it one deploy at a time.
pub fn say_missing_runners() {
    if silver_runtime::launch::find_program("gunicorn").is_none() {
        crate::ui::warn_with_hint(
            "gunicorn is not installed: WSGI apps (a `runner` in app.ini) cannot start on this node, except from a virtualenv that ships its own",
            "sudo apt-get install gunicorn",
        );
    }
}

/// Says on stderr who apps will run as, so that running without root is never a surprise.
pub fn say_app_users(users: &silver_runtime::users::AppUsers) {
    use silver_runtime::users::AppUsers;
    let said = match users {
        AppUsers::Invoker if silver_runtime::supervise::running_as_root() => format!(
            "run as you (`{}`): a development server runs the app as whoever starts it",
            super::node::user_name()
        ),
        AppUsers::Invoker => format!(
            "run as you (`{}`), not as users of their own: that needs the agent to run as root",
            super::node::user_name()
        ),
        AppUsers::Shared(user) => format!("all run as user `{}` (--app-user)", user.name),
        AppUsers::PerApp => "each run as a system user of its own, `s<node id>-<app>`".into(),
    };
    crate::ui::status("Apps", said);
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.root)
        .with_context(|| format!("failed to create the store `{}`", args.root.display()))?;
    let mut config = silver_node::agent::AgentConfig::new(args.root.clone());
    config.listen = args.listen;
    if let Some(token_file) = args.token_file {
        config.token_file = token_file;
    }
    config.limits = args.limits.resolve();
    config.idle_timeout = Duration::from_secs(args.idle_timeout);
    config.request_timeout = Duration::from_secs(args.request_timeout);
    config.max_upload_bytes = args.max_upload_bytes;
    config.gc_grace = Duration::from_secs(args.gc_grace);
    config.insecure_registries = args.insecure_registries.clone();
    config.free_space_margin = args.min_free_bytes;
    config.tls = args.tls_cert.zip(args.tls_key);
    config.tls_listen = args.tls_listen;
    config.front = args.http;
    config.https = args.https.https;
    config.metrics = !args.no_metrics;
    config.alerts = silver_node::metrics::AlertConfig {
        webhook: args.alert_webhook.clone(),
        command: args.alert_command.clone(),
    };
    config.read_token_file = args.read_token_file.clone();
    config.acme = args.https.acme();
    config.runtime = args.runtime.resolve()?;
    say_app_users(&config.runtime.users);
    say_missing_runners();
    let token_file = config.token_file.clone();
    super::node::runtime()?
        .block_on(silver_node::agent::serve(config, |bound| {
            // The addresses on stdout (data: tests and scripts read them), in one write; the
            // rest on stderr.
            let scheme = if bound.tls { "https" } else { "http" };
            let remote = bound
                .remote
                .map_or(String::new(), |r| format!("\nhttps://{r}"));
            let https = bound
                .https
                .map_or(String::new(), |h| format!("\nhttps://{h}"));
            let addresses = format!(
                "{scheme}://{}\nhttp://{}{https}{remote}\n",
                bound.control, bound.front
            );
            // Pre-formatted, so one write(2); a reader that has gone away is no reason to stop.
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), addresses.as_bytes());
            crate::ui::status(
                "Listening",
                format!(
                    "on {scheme}://{} (token in {})",
                    bound.control,
                    token_file.display()
                ),
            );
            if let Some(remote) = bound.remote {
                crate::ui::status(
                    "Listening",
                    format!("on https://{remote} for remote clients"),
                );
            }
            crate::ui::status("Serving", format!("apps on http://{}", bound.front));
            if let Some(https) = bound.https {
                crate::ui::status("Serving", format!("apps on https://{https}"));
            }
        }))
        .with_context(|| format!("the agent over `{}` stopped", args.root.display()))
}
