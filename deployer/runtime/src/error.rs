//! The runtime's errors: each names the app, path, process or service it concerns, and says
//! what to do in `hint()`.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use silver_types::{AppName, Said};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{app}` has no release prepared by a fleet deploy on this node")]
    NotPrepared { app: AppName },
    #[error("cannot put `{app}` back on its previous release: {why}")]
    Revert { app: AppName, why: String },
    #[error("I/O error on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot watch `{}` for changes", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("runner `{runner}` is not a Python file: the node runs WSGI apps from a `.py` file that defines `application`, or a `[processes] web` command")]
    NotPython { runner: String },
    #[error("location `{location}` is already served by app `{other}` on this node")]
    LocationTaken { location: String, other: AppName },
    #[error("the app user `{user}` cannot reach `{}` (mode {mode:04o})", dir.display())]
    Unreachable {
        user: String,
        dir: PathBuf,
        mode: u32,
    },
    #[error("cannot run useradd to make the app's user `{name}`")]
    UserAdd {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("useradd refused to make the app's user `{name}`: {message}")]
    UserAddRefused { name: String, message: Said },
    #[error("user `{name}` exists but the agent did not make it (its comment is `{comment}`)")]
    UserTaken { name: String, comment: String },
    #[error("PostgreSQL role `{role}` for app `{app}` exists but this node did not make it (its comment is `{comment}`)")]
    RoleTaken {
        app: AppName,
        role: String,
        comment: String,
    },
    #[error("app `{app}` needs service `{service}`, but this node has no PostgreSQL")]
    NoPostgres { app: AppName, service: String },
    #[error("app `{app}` needs packages this node lacks: {}", missing.join(", "))]
    MissingPackages { app: AppName, missing: Vec<String> },
    #[error("cannot run `{program}` to reach PostgreSQL")]
    NoPsql {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot talk to PostgreSQL")]
    PostgresPipe {
        #[source]
        source: io::Error,
    },
    #[error("PostgreSQL refused to provision the app's database: {message}")]
    PostgresRefused { message: Said },
    #[error("app `{app}` needs service `redis`, but the node's Redis at {addr} does not answer")]
    NoRedis {
        app: AppName,
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("Redis at {addr} asks for a password the agent does not have: {message}")]
    RedisNeedsAdmin { addr: String, message: Said },
    #[error("the restore of `{app}` is committed, but not every service has switched to it yet")]
    RestoreUnfinished {
        app: AppName,
        #[source]
        source: Box<Error>,
    },
    #[error("{service} `{name}` for app `{app}` belongs to something else ({owner})")]
    IdentityTaken {
        app: AppName,
        service: &'static str,
        name: String,
        owner: String,
    },
    #[error("key `{key}` of app `{app}` is a Redis {kind}, which silver cannot back up yet")]
    RedisKeyKind {
        app: AppName,
        key: String,
        kind: String,
    },
    #[error("Redis at {addr} refused to provision the app's user: {message}")]
    RedisRefused { addr: String, message: Said },
    #[error("`{}` is not a backup silver can restore: {why}", path.display())]
    BadBackup { path: PathBuf, why: BackupProblem },
    #[error("the backup holds data of service `{service}`, which app `{app}` does not have")]
    BackupServiceMissing { app: AppName, service: String },
    #[error("`{program}` failed on the app's database: {message}")]
    DatabaseTool { program: String, message: Said },
    #[error(
        "app `{app}` needs service `mysql`, but the node's MariaDB at {addr} cannot be reached"
    )]
    NoMysql {
        app: AppName,
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "app `{app}` needs service `couchdb`, but the node's CouchDB at {addr} does not answer"
    )]
    NoCouchdb {
        app: AppName,
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("CouchDB at {addr} refused: {message}")]
    CouchdbRefused { addr: String, message: Said },
    #[error("MariaDB at {addr} refused to provision the app's database: {message}")]
    MysqlRefused { addr: String, message: Said },
    #[error("a runtime worker stopped while {doing}")]
    Worker {
        doing: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error(transparent)]
    AppConfig(#[from] silver_types::Error),
    #[error("the app's shared database at {shown} did not answer as it should")]
    SharedDb {
        shown: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("task refused for `{app}`: {problem}")]
    Task { app: AppName, problem: TaskProblem },
    #[error(
        "release {release} of `{app}` failed at {}: {}{}",
        .failure.step,
        .failure.cause,
        tail(log_tail)
    )]
    Activation {
        app: AppName,
        release: String,
        failure: Failure,
        /// The last lines the new process wrote.
        log_tail: Vec<String>,
        /// Whether an earlier release of the app still serves (false on a first deploy).
        previous_serves: bool,
    },
}

/// Why a backup (or one of its files) is refused: each is one kind of hostile or damaged input.
#[derive(Debug, thiserror::Error)]
pub enum BackupProblem {
    #[error("entry `{entry}` points outside its directory")]
    Outside { entry: String },
    #[error("entry `{entry}` is a {kind}, and only files, directories and links are restored")]
    EntryKind { entry: String, kind: String },
    #[error("entry `{entry}` has set-id or sticky bits")]
    SetId { entry: String },
    #[error("line {line} is longer than {max_mib} MiB")]
    LineTooLong { line: usize, max_mib: usize },
    #[error("line {line}: {said}")]
    Line { line: usize, said: Said },
    #[error("{0}")]
    NotPlain(safefs::NotPlain),
    /// `backup.json` does not parse.
    #[error("{0}")]
    Manifest(Said),
    #[error("format {format} is newer than this node knows (1)")]
    Newer { format: u32 },
    #[error("it is missing, though backup.json lists its service")]
    Missing,
    /// The tar a backup travelled in holds what no backup does.
    #[error("{0}")]
    Tar(safefs::flat_tar::Refused),
    #[error("it has no `backup.json`")]
    NoManifest,
    /// A database refused what the dump holds (its own words).
    #[error("`{program}` refused it: {said}")]
    Refused { program: String, said: Said },
}

/// Why a task is refused, or a task command cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum TaskProblem {
    #[error("the queue is full ({limit} tasks, `task_queue_size`)")]
    Full { limit: u64 },
    #[error("`{path}` is not a path: a task's path starts with `/` and holds no spaces or control characters")]
    BadPath { path: String },
    #[error("`{method}` is not a method a task can use (GET, POST, PUT, PATCH, DELETE)")]
    BadMethod { method: String },
    #[error("its delay or ETA is more than 30 days away")]
    TooFar,
    #[error("its idempotency key is longer than 256 bytes or holds control characters")]
    BadKey,
    #[error("its body is not valid base64")]
    BadBody,
    #[error("there is no task {id}")]
    NoTask { id: silver_types::task::TaskId },
    #[error("task {id} is running")]
    Running { id: silver_types::task::TaskId },
    #[error("the app's queue is not open on this node (the app is not live here)")]
    NotOpen,
}

/// Why an activation stopped: the step, and its cause kept whole (its own causes and hint).
#[derive(Debug)]
pub struct Failure {
    pub step: Step,
    pub cause: Cause,
}

impl Failure {
    pub fn new(step: Step, cause: impl Into<Cause>) -> Failure {
        Failure {
            step,
            cause: cause.into(),
        }
    }
}

/// Why a release is not started at all on this node.
#[derive(Debug, thiserror::Error)]
pub enum StartRefusal {
    #[error("this WSGI app runs under gunicorn, which this node does not have")]
    NoGunicorn,
    #[error("virtualenv `{venv}` was made for Python {wanted} by {home}/python, but this node's python3 is {node}")]
    VenvMismatch {
        venv: String,
        wanted: String,
        home: String,
        node: String,
    },
    #[error("the app requires a configuration directory (`config.required`), and none was given")]
    NoConfig,
    #[error("this PHP app (`platform = php`) runs under php-fpm, which this node does not have")]
    NoPhpFpm,
}

impl StartRefusal {
    fn hint(&self) -> &'static str {
        match self {
            StartRefusal::NoGunicorn => "install it on the node: `sudo apt-get install gunicorn` (or ship gunicorn in the app's virtualenv)",
            StartRefusal::VenvMismatch { .. } => "build the virtualenv with the node's python3 (`python3 -m venv`), install gunicorn into it (then its own Python serves it, if the node has that Python), or leave it out with .silverignore and vendor its packages into lib/python",
            StartRefusal::NoPhpFpm => "install it on the node: `sudo apt-get install php-fpm php-cli php-mysql`",
            StartRefusal::NoConfig => "deploy with `--config DIR` (Silver Lining's `silver update --config DIR`), or give the app a `config.default` directory",
        }
    }
}

/// What stopped a step.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// One of the runtime's own errors (a service that could not be provisioned, a checkpoint
    /// that could not be taken): told with its causes, and its hint is the failure's.
    #[error("{}", chain(.0))]
    Error(Box<Error>),
    /// What the app or its script did, in the words a deployer reads: how a process ended, what
    /// a request answered (status and the start of its body), a script's last lines.
    #[error("{0}")]
    App(String),
    /// A check before the app starts, which it would otherwise fail in a way that never names
    /// its cause.
    #[error("{0}")]
    Refused(StartRefusal),
    /// The caller's flip (the node's `current`), in its own words.
    #[error("{0}")]
    Flip(String),
    /// A failure after which the checkpoint taken before `update_fetch` was put back (or could
    /// not be): the first failure, then what became of the data.
    #[error("{first}\n{restore}")]
    RolledBack { first: Box<Cause>, restore: String },
}

impl Cause {
    fn hint(&self) -> Option<String> {
        match self {
            Cause::Error(e) => e.hint(),
            Cause::Refused(refusal) => Some(refusal.hint().into()),
            Cause::RolledBack { first, .. } => first.hint(),
            Cause::App(_) | Cause::Flip(_) => None,
        }
    }
}

impl From<Error> for Cause {
    fn from(e: Error) -> Cause {
        Cause::Error(Box::new(e))
    }
}

/// An error and its causes on one line (`a: b: c`), as a deployer reads it.
pub use silver_types::error_chain as chain;

/// Where an activation stopped, in the order a release goes through them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    ProvisionServices,
    Start,
    HealthCheck,
    ConfigChecker(String),
    Checkpoint,
    UpdateFetch(silver_types::appconfig::UpdateFetch),
    Flip,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use silver_types::appconfig::UpdateFetch;
        match self {
            Step::ProvisionServices => f.write_str("provision services"),
            Step::Start => f.write_str("start"),
            Step::HealthCheck => f.write_str("health check"),
            Step::Checkpoint => f.write_str("checkpoint"),
            Step::ConfigChecker(checker) => write!(f, "config.checker {checker}"),
            Step::UpdateFetch(UpdateFetch::Url(path)) => write!(f, "update_fetch {path}"),
            Step::UpdateFetch(UpdateFetch::Script(s)) => write!(f, "update_fetch script: {s}"),
            Step::Flip => f.write_str("flip"),
        }
    }
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut text = String::from("\n  its last output:");
    for line in lines {
        text.push_str("\n  | ");
        text.push_str(line);
    }
    text
}

impl Error {
    /// What to do about the cause of an activation failure alone (`silver serve` says the
    /// rest itself).
    pub fn cause_hint(&self) -> Option<String> {
        match self {
            Error::Activation { failure, .. } => failure.cause.hint(),
            other => other.hint(),
        }
    }

    pub fn io(path: &Path, source: io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// What to do about it, printed on its own line.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Listen { .. } => "is another silver (or server) listening there? pick another --port".into(),
            Error::LocationTaken { .. } => "choose another with --location HOST[/PATH]".into(),
            Error::Unreachable { dir, .. } => format!(
                "apps run unprivileged and must enter every directory above their release: `chmod o+x {}`, or put the agent's root elsewhere (default /var/lib/silver)",
                dir.display()
            ),
            Error::NoPostgres { .. } => "install it (apt-get install postgresql), or name one with --postgres-url postgresql://ADMIN@HOST:PORT/postgres (or SILVER_POSTGRES_URL)".into(),
            Error::PostgresRefused { .. } => "check the administrator's login: as root silver is the local cluster's `postgres` superuser; without root it logs in over the local socket as you (`sudo -u postgres createuser -s $USER` makes that role); or name one with --postgres-url".into(),
            Error::NoMysql { .. } | Error::MysqlRefused { .. } => "install it (apt-get install mariadb-server mariadb-client), or start the agent with --mysql-url mysql://ADMIN:PASSWORD@HOST:PORT".into(),
            Error::NoCouchdb { .. } | Error::CouchdbRefused { .. } => "run CouchDB there (or `pouchdb-server`, from npm, which speaks its API), or start the agent with --couchdb-url http://[ADMIN:PASSWORD@]HOST:PORT".into(),
            Error::NoRedis { .. } => "install it (apt-get install redis-server) or start the agent with --redis-url redis://[:ADMIN_PASSWORD@]HOST:PORT".into(),
            Error::RedisRefused { .. } => "the agent needs Redis 6 or later (ACLs) and an administrator's login: --redis-url redis://USER:PASSWORD@HOST:PORT".into(),
            Error::MissingPackages { missing, .. } => format!(
                "add them to the node's image recipe, or install them (apt-get install {})",
                missing.join(" ")
            ),
            Error::UserAdd { .. } | Error::UserAddRefused { .. } => "the agent makes one system user per app with useradd, as root; check that useradd works on this node".into(),
            Error::UserTaken { name, .. } => format!(
                "the agent never takes over a user it did not make, as that would hand the app its files; remove `{name}` (userdel) if it is unused, or run the app elsewhere"
            ),
            Error::RestoreUnfinished { .. } => "the agent finishes it when it next starts, or before the next restore of the app (`silver checkpoints APP` shows it in progress); fix the cause above, then restart the agent".into(),
            Error::RedisNeedsAdmin { addr, .. } => format!(
                "pass the administrator's login: --redis-url redis://USER:PASSWORD@{addr} (or SILVER_REDIS_URL)"
            ),
            Error::IdentityTaken { name, .. } => format!(
                "the agent never takes over what it did not make for this app; drop `{name}` if it is unused, or give this node its own server"
            ),
            Error::RoleTaken { role, .. } => format!(
                "the agent never takes over a role it did not make; drop `{role}` if it is unused, or give this node its own PostgreSQL"
            ),
            Error::BackupServiceMissing { service, .. } => format!(
                "restore onto an app whose app.ini has `service.{service} =`, or deploy such a release first"
            ),
            Error::BadBackup { .. } => "give the directory (or .tar.zst/.tar.gz) that `silver backup` wrote, unchanged".into(),
            Error::NotPython { .. } => "point `runner` at the app's WSGI `.py` file".into(),
            Error::Task { app, problem: TaskProblem::Full { .. } } => format!(
                "try again later, raise `task_queue_size` in app.ini, or retry or drop the dead tasks that `silver tasks {app}` lists"
            ),
            Error::Task { app, problem: TaskProblem::NoTask { .. } } => format!(
                "`silver tasks {app}` lists the queued and dead tasks; a task that ran to a 2xx is gone"
            ),
            Error::AppConfig(e) => return e.hint(),
            Error::Activation {
                app,
                previous_serves,
                failure,
                ..
            } => {
                let state = if *previous_serves {
                    format!("the previous release keeps serving; see `silver logs {app}` and `silver releases {app}`")
                } else {
                    format!("no earlier release of `{app}` serves, so nothing does; see `silver logs {app}`")
                };
                match failure.cause.hint() {
                    // Two hints, one per line: the CLI shows each on its own.
                    Some(cause) => format!("{cause}\n{state}"),
                    None => state,
                }
            }
            _ => return None,
        })
    }
}

impl silver_types::Hint for Error {
    fn hint(&self) -> Option<String> {
        Error::hint(self)
    }
}
