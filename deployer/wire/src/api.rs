//! The agent's HTTP API: request and response bodies shared by the agent and the client.
//!
//! | method and path | body | answer |
//! | --- | --- | --- |
//! | `GET /v1/health` | | [`Health`] (no credential needed) |
//! | `PUT /v1/artifacts/{id}` | manifest (see below) | [`ArtifactResponse`]: what is missing |
//! | `POST /v1/objects` | object frames (see `wire`), may be zstd; `X-Silver-Artifact: b3:<id>` | [`StoredResponse`] |
//! | `POST /v1/artifacts/{id}/commit` | | [`ArtifactResponse`] |
//! | `POST /v1/pull` | [`PullRequest`] | [`PullResponse`]: the node fetched the artifact from a registry |
//! | `POST /v1/apps/{app}/preflight` | [`PreflightRequest`] | [`PreflightResponse`] (422 if a location is taken) |
//! | `POST /v1/apps/{app}/deploy` | [`ActivateRequest`] | [`ActivateResponse`] |
//! | `POST /v1/apps/{app}/activate` | [`ActivateRequest`] | [`ActivateResponse`] |
//! | `POST /v1/apps/{app}/rollback` | [`RollbackRequest`] | [`ActivateResponse`] |
//! | `GET /v1/apps/{app}/releases` | | [`Vec<Release>`] |
//! | `POST /v1/apps/{app}/pins` | [`PinRequest`] | [`Vec<String>`]: the pinned ids |
//! | `POST /v1/gc` | [`GcRequest`] | [`GcReport`] |
//! | `POST /v1/apps/{app}/fleet/prepare` | [`FleetPrepare`] | [`FleetStatus`]: started and checked beside the live release, no traffic |
//! | `POST /v1/apps/{app}/fleet/commit` | [`FleetStep`] | [`FleetStatus`]: flipped; the old release keeps running |
//! | `POST /v1/apps/{app}/fleet/confirm` | [`FleetStep`] | [`FleetStatus`]: the old release drains |
//! | `POST /v1/apps/{app}/fleet/abort` | [`FleetStep`] | [`FleetStatus`]: back on the old release |
//! | `GET /v1/apps/{app}/fleet` | | [`FleetStatus`] of the last fleet deploy (404: none) |
//! | `GET /v1/trust` | | [`TrustView`] (404 without a policy) |
//! | `POST /v1/trust` | [`TrustRotation`] | [`TrustView`] of the new policy |
//! | `POST /v1/apps/{app}/maintenance` | [`MaintenanceRequest`] | [`MaintenanceRequest`] |
//! | `POST /v1/apps/{app}/backup?who=W` | | a tar: `backup.json` ([`BackupInfo`]) and one dump per service |
//! | `POST /v1/apps/{app}/restore?who=W` | that tar | [`BackupInfo`] of the backup restored |
//! | `POST /v1/apps/{app}/clear?who=W` | | [`ActivateResponse`] (after `update_fetch` ran again; NDJSON as deploy) |
//! | `GET /v1/apps/{app}/config?show=true` | | [`ConfigView`] (values only with `show`) |
//! | `POST /v1/apps/{app}/config` | [`ConfigChange`] | [`ConfigView`] of the new version, names only |
//! | `POST /v1/apps/{app}/app-config` | a tar of the directory | [`AppConfigUploaded`] |
//! | `POST /v1/apps/{app}/deactivate` | [`DeactivateRequest`] | [`DeactivateResponse`] |
//! | `GET /v1/apps/{app}/checkpoints` | | [`Vec<BackupInfo>`], oldest first |
//! | `GET /v1/apps/{app}/logs?process=P&lines=N&follow=true` | | text, one line per log line |
//! | `POST /v1/apps/{app}/run` | [`RunRequest`], or its head then stdin ([`RUN_CONTENT_TYPE`]) | run frames (see [`RunFrame`]) |
//!
//! A manifest or an object stream may be sent with `Content-Encoding: zstd`. A manifest may also
//! be a zstd delta against a manifest the node has: `X-Silver-Base: b3:<id>` names it (412 if the
//! node does not have it; the client then sends the whole manifest).
//!
//! Errors are [`ApiError`] with a status: 401 no or wrong credential, 404 unknown app or release,
//! 409 lock held, 413 too large, 422 refused input, 507 not enough free space.

use serde::{Deserialize, Serialize};
use silver_types::{AppName, ArtifactId, IdPrefix, Location, SignedRecord};
pub use silver_types::{VarName, VarProblem, VarValue};
use std::collections::BTreeMap;

/// The files a backup may hold, and nothing else: `backup.json` and one dump per service
/// (`ServiceKind::dump_file`, so a new service's dump travels without another list to edit).
pub static BACKUP_FILES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let mut files = vec!["backup.json"];
    for kind in silver_types::ServiceKind::ALL.iter().copied() {
        if !files.contains(&kind.dump_file()) {
            files.push(kind.dump_file());
        }
    }
    files
});

/// What a backup's `backup.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub format: u32,
    pub app: AppName,
    /// The release that was live (or about to run `update_fetch`) when it was taken.
    pub release: String,
    /// UTC, RFC 3339.
    pub created: String,
    /// The services it holds data of, by kind (`files`, `writable_root`, `postgresql`).
    pub services: Vec<String>,
}

/// Where a restore is (`restore.json` on the node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestorePhase {
    /// Staged copies are being built: a crash undoes the restore.
    Staging,
    /// Every copy is staged and being swapped in: a crash finishes the restore.
    Switching,
}

/// The journal of a restore in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreJournal {
    pub phase: RestorePhase,
    /// The services it replaces, by kind (`files`, `postgresql`, …).
    pub services: Vec<String>,
    /// What is restored: a backup of which app, taken when; or `clear`.
    pub source: String,
    /// UTC, RFC 3339.
    pub started: String,
}

/// What the agent did about a restore a crash interrupted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    /// `finished` (every service holds the restored data) or `undone` (every service holds
    /// the data it had before).
    pub outcome: String,
    pub journal: RestoreJournal,
    /// UTC, RFC 3339.
    pub recovered: String,
}

/// `silver checkpoints`: the checkpoints, a restore in progress, and the last one a crash
/// interrupted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointsView {
    pub checkpoints: Vec<BackupInfo>,
    #[serde(default)]
    pub restoring: Option<RestoreJournal>,
    #[serde(default)]
    pub last_recovered: Option<RestoreOutcome>,
}

/// An app's config on the node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigView {
    pub app: AppName,
    /// The version in force (0: never set).
    pub version: u32,
    /// Each name, with its value only when asked (`show`).
    pub vars: std::collections::BTreeMap<VarName, Option<String>>,
    /// The live release, which a restart would bring the new config to.
    pub current: Option<String>,
}

/// A change to an app's config: a new version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigChange {
    #[serde(default)]
    pub set: std::collections::BTreeMap<VarName, VarValue>,
    #[serde(default)]
    pub unset: Vec<VarName>,
    pub who: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    pub show: bool,
}

/// Who asks for a data operation (`?who=`), for the app's lock and the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoQuery {
    pub who: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub version: String,
    pub apps: Vec<AppStatus>,
    /// The front door's address (where the apps' public traffic goes).
    #[serde(default)]
    pub front: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppStatus {
    pub name: AppName,
    pub current: Option<String>,
    /// The id12 of the release whose processes serve now (None if nothing runs).
    #[serde(default)]
    pub running: Option<String>,
    #[serde(default)]
    pub maintenance: bool,
    #[serde(default)]
    pub locations: Vec<String>,
    /// The locations it had before `silver deactivate` took its last one (it serves nowhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deactivated: Vec<String>,
}

/// `silver deactivate LOCATION`: the app stops answering there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeactivateRequest {
    pub location: Location,
    pub who: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeactivateResponse {
    pub app: AppName,
    /// Where it still answers; empty: nowhere, and its processes were stopped.
    pub locations: Vec<String>,
}

/// The header naming the artifact an object upload (`POST /v1/objects`) is for: its frames are
/// checked against the sizes that artifact's manifest claims, and its space was reserved then.
pub const ARTIFACT_HEADER: &str = "x-silver-artifact";

/// The header naming a delta's base manifest.
pub const BASE_HEADER: &str = "x-silver-base";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredResponse {
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactResponse {
    pub id: String,
    pub entries: usize,
    /// BLAKE3 hex of the objects the node still lacks (none once committed).
    pub missing: Vec<String>,
}

/// Fetch an artifact from an OCI registry into the node's store (only the packs holding files
/// it lacks), verifying every blob's digest and every file's BLAKE3.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullRequest {
    /// `REGISTRY/REPO@sha256:…`: by digest, since a tag can move. The node parses it.
    pub reference: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullResponse {
    pub id: ArtifactId,
    /// The app its app.ini names, if it names one.
    pub app: Option<AppName>,
    pub packs_total: usize,
    pub packs_fetched: usize,
    /// Bytes fetched from the registry: manifests, parts and packs.
    pub bytes_fetched: u64,
    pub objects_stored: u64,
    /// The signed records kept beside the artifact in the registry, read with the node's own
    /// credentials: the deployer sends them back with the activation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<SignedRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActivateRequest {
    /// The whole id, or a unique prefix of at least 12 hex digits.
    pub id: IdPrefix,
    /// `user@host` of whoever asked, recorded in the history.
    pub who: String,
    /// `host[/path]` where the app answers; empty keeps the app's locations (or, the first
    /// time, its `default_location`, or any host).
    #[serde(default)]
    pub locations: Vec<Location>,
    /// Take an artifact whose app.ini names another app (the user said so on purpose).
    #[serde(default)]
    pub other_app: bool,
    /// Start it again even if it is the release already live (otherwise nothing restarts).
    #[serde(default)]
    pub restart: bool,
    /// A configuration directory uploaded for it (`--config DIR`), by the id its upload got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_config: Option<String>,
    /// Run one web worker and never grow the pool (`--debug-single-process`), until the next
    /// activation.
    #[serde(default)]
    pub single_process: bool,
    /// Run `update_fetch` even when going back to a release that already ran it (`silver
    /// activate --migrate`); a deploy always runs it.
    #[serde(default)]
    pub migrate: bool,
    /// Signed build and promotion records: a node with a trust policy activates nothing
    /// without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<SignedRecord>,
}

/// What an upload of a configuration directory made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppConfigUploaded {
    /// Named in [`ActivateRequest::app_config`].
    pub id: String,
}

/// Asked before an upload: where would the app answer, and is that free?
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreflightRequest {
    /// As in [`ActivateRequest`]; empty keeps the app's locations.
    #[serde(default)]
    pub locations: Vec<Location>,
    /// The artifact's `default_location`, used when the app has none yet.
    #[serde(default)]
    pub default_location: Option<Location>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreflightResponse {
    /// Where the app would answer.
    pub locations: Vec<Location>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// Without an id: back to the previous good release.
    pub id: Option<IdPrefix>,
    pub who: String,
    /// Run the release's `update_fetch` again (`--migrate`); a rollback runs none by default,
    /// as Capistrano and Silver Lining's `activate prev` do: its migrations ran already.
    #[serde(default)]
    pub migrate: bool,
    /// Under a trust policy, a rollback is a new promotion of the old id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<SignedRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActivateResponse {
    pub app: AppName,
    pub id: ArtifactId,
    pub previous: Option<ArtifactId>,
    /// True when the release was already live and nothing was restarted.
    #[serde(default)]
    pub unchanged: bool,
    /// What `update_fetch` printed, each line `<step> | <line>`.
    #[serde(default)]
    pub update_output: Vec<String>,
    /// False when the release was already staged.
    pub staged_now: bool,
    #[serde(default)]
    pub locations: Vec<Location>,
    /// The processes now running for it.
    #[serde(default)]
    pub processes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaintenanceRequest {
    /// True shows the 503 maintenance page instead of the app.
    pub maintenance: bool,
}

/// `silver cron run APP JOB`: one of the live release's `[cron]` jobs, now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CronRunRequest {
    pub job: String,
}

/// `silver tasks retry|drop APP [ID...]`: the tasks named, or with none every dead task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TasksRequest {
    #[serde(default)]
    pub ids: Option<Vec<silver_types::task::TaskId>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    /// The command and its arguments, run in the live release with the app's environment.
    pub argv: Vec<String>,
    pub who: String,
}

/// The content type of a `silver run` request whose body streams the command's stdin: the
/// request as JSON behind its 4-byte big-endian length, then the stdin bytes to their end. (A
/// plain `application/json` body is the request alone, with no stdin.)
pub const RUN_CONTENT_TYPE: &str = "application/x-silver-run";

/// The largest request head a `silver run` body may start with.
pub const MAX_RUN_HEAD: usize = 1 << 20;

/// `silver run`'s answer is a stream of frames: a kind byte, a 4-byte big-endian length, then
/// that many bytes. The last frame is `Exit`, holding the exit code as 4 bytes (128 + signal
/// for a signal, as shells report it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RunFrame {
    Stdout = 1,
    Stderr = 2,
    Exit = 3,
}

impl RunFrame {
    pub fn encode(self, data: &[u8]) -> Vec<u8> {
        let mut frame = Vec::with_capacity(5 + data.len());
        frame.push(self as u8);
        frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
        frame.extend_from_slice(data);
        frame
    }

    pub fn from_byte(b: u8) -> Option<RunFrame> {
        match b {
            1 => Some(RunFrame::Stdout),
            2 => Some(RunFrame::Stderr),
            3 => Some(RunFrame::Exit),
            _ => None,
        }
    }
}

/// What an activation was asked as; the history keeps it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Deploy,
    Activate,
    Rollback,
    /// `silver clear`: the data was dropped and the current release ran `update_fetch` again.
    Clear,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Activate => "activate",
            Action::Rollback => "rollback",
            Action::Clear => "clear",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One release and what it is now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Release {
    pub id: String,
    /// Unix seconds of its latest record.
    pub time: u64,
    pub who: String,
    pub state: ReleaseState,
    pub reason: Option<String>,
    /// The config version (`silver config`) it last ran with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<u32>,
    /// Who built it, from its signed build record (`ci@runner, commit abc123`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_by: Option<String>,
    /// Who promoted it, from the last signed promotion the node took (`alice to production,
    /// sequence 7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_by: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseState {
    Active,
    Previous,
    Failed,
    Staged,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinRequest {
    pub id: IdPrefix,
    /// True to pin (gc keeps it), false to unpin.
    pub pinned: bool,
}

/// A fleet deploy's first phase on one node: stage, provision, start beside the live release
/// and health-check it, with no traffic. The app stays locked by the deploy until it is
/// confirmed or aborted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetPrepare {
    /// The fleet deploy's id, the same on every node.
    pub deploy: String,
    pub id: IdPrefix,
    pub who: String,
    #[serde(default)]
    pub locations: Vec<Location>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<SignedRecord>,
    /// Run `update_fetch` here (one node per shared database does: "migrate once").
    pub migrate: bool,
    /// Once committed, revert by itself unless confirmed within this many seconds.
    pub confirm_within_secs: u64,
}

/// Commit, confirm or abort a fleet deploy on one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetStep {
    pub deploy: String,
    pub who: String,
    /// Why (an abort's reason, kept in the history).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FleetPhase {
    Prepared,
    Committed,
    Confirmed,
    /// Undone before or after the commit: the previous release serves.
    Aborted,
}

/// One node's part of a fleet deploy, as its durable record (`apps/<app>/fleet.json`) says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetStatus {
    pub app: AppName,
    pub deploy: String,
    pub phase: FleetPhase,
    pub id: ArtifactId,
    pub previous: Option<ArtifactId>,
    /// Where the app answered before: a revert (or a restart that undoes the commit) puts
    /// these back.
    #[serde(default)]
    pub previous_locations: Vec<String>,
    pub who: String,
    /// Unix milliseconds of the flip, once committed.
    #[serde(default)]
    pub committed_ms: Option<u64>,
    /// Unix seconds by which a committed deploy must be confirmed, or it reverts by itself.
    #[serde(default)]
    pub deadline: Option<u64>,
    /// Why it was aborted.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub update_output: Vec<String>,
    /// The answers of the new release since its commit, and of the release it replaced.
    #[serde(default)]
    pub new: Option<ReleaseStats>,
    #[serde(default)]
    pub old: Option<ReleaseStats>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseStats {
    pub requests: u64,
    pub server_errors: u64,
    /// The upper bound of the latency bucket holding the 99th percentile.
    pub p99_ms: Option<u64>,
}

/// A node's trust policy, by key ids (as `minisign` prints them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrustView {
    pub environment: String,
    /// `build`, `promote`, `root`: each role's key ids and threshold.
    pub roles: std::collections::BTreeMap<String, TrustRole>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrustRole {
    pub keys: Vec<String>,
    pub threshold: usize,
}

/// A new trust policy (the text of a `trust.toml`) and signatures over it by the current
/// policy's root role (or, without one, its promote role).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrustRotation {
    pub policy: String,
    pub signatures: Vec<String>,
    pub who: String,
}

/// The front door's certificates: one entry per host the node's locations name, and per
/// certificate the operator added.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertsView {
    /// Where HTTPS is served, if it is.
    pub https: Option<String>,
    /// The ACME directory certificates come from; None when ACME is off.
    pub acme_directory: Option<String>,
    pub hosts: Vec<CertView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertView {
    pub host: String,
    /// Apps with a location at this host.
    pub apps: Vec<String>,
    /// `acme` or `operator`; None while there is no certificate.
    pub source: Option<String>,
    pub names: Vec<String>,
    pub not_after_unix: Option<u64>,
    /// When ACME renews it.
    pub renew_at_unix: Option<u64>,
    /// The challenge that last worked (or is tried next).
    pub challenge: Option<String>,
    /// Why there is no certificate, or why the last renewal failed.
    pub error: Option<String>,
    pub hint: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    pub next_attempt_unix: Option<u64>,
}

/// `silver certs add`: a certificate chain and its key, both PEM, for a host or a wildcard.
#[derive(Clone, Serialize, Deserialize)]
pub struct CertUpload {
    pub host: String,
    pub chain_pem: String,
    pub key_pem: String,
    /// Ordered for the whole fleet by a deploying client, not given by the operator.
    #[serde(default)]
    pub fleet: bool,
}

/// An HTTP-01 answer a fleet's client places on every node while its order is under way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Http01Answer {
    pub token: String,
    pub key_authorization: String,
}

impl std::fmt::Debug for CertUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never in a log line.
        f.debug_struct("CertUpload")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// `GET /v1/status`: the node's figures now, their recent history, deploy markers, each
/// release's before and after, the sizing verdict and the alerts that are firing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    pub node: String,
    pub now_unix: u64,
    /// Seconds between the points of `series`.
    pub step_secs: u64,
    /// The node's latest sample, by field (`cpu_busy`, `mem_available_bytes`, ...).
    pub current: BTreeMap<String, f64>,
    /// `node`, and `app:<name>` for each app: its fields over the window.
    pub series: BTreeMap<String, SeriesView>,
    pub apps: Vec<AppFigures>,
    pub markers: Vec<Marker>,
    pub releases: Vec<ReleaseImpact>,
    pub verdict: Verdict,
    pub alerts: Vec<AlertView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesView {
    pub fields: Vec<String>,
    pub t: Vec<u64>,
    /// `values[field][point]`; None where there was no value (no request, no sample).
    pub values: Vec<Vec<Option<f32>>>,
}

/// One app's latest sample, by field (`rps`, `rps_5xx`, `p95_ms`, `memory_bytes`, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppFigures {
    pub app: String,
    pub release: String,
    pub figures: BTreeMap<String, f64>,
}

/// A deploy, rollback, activation, clear or config change, on every graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub t: u64,
    pub app: String,
    /// `deploy`, `rollback`, `activate`, `clear` or `config`.
    pub kind: String,
    /// The release (id12), or the config version.
    pub what: String,
    pub ok: bool,
}

/// A release's error rate and latency in equal windows before and after it went live.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseImpact {
    pub app: String,
    pub what: String,
    pub t: u64,
    pub window_secs: u64,
    pub before: Impact,
    pub after: Impact,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Impact {
    pub requests: f64,
    pub error_rate: Option<f64>,
    pub p95_ms: Option<f64>,
}

/// Whether the node is the right size, and the figures that decide it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    /// `too small`, `fine`, `oversized`, or `unknown` before there is enough history.
    pub size: String,
    pub line: String,
    pub span_secs: u64,
    pub figures: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertView {
    /// `5xx`, `disk`, `certificate`, `size`.
    pub name: String,
    /// The app, host or disk it is about.
    pub subject: String,
    pub message: String,
    pub since_unix: u64,
}

/// `POST /v1/status/link`: a link to the status page a browser can open without the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusLink {
    /// Path and query on the agent's control address.
    pub path: String,
    pub expires_unix: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcRequest {
    /// Releases to keep per app besides the current, previous and pinned ones.
    pub keep: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GcReport {
    pub releases_removed: Vec<String>,
    pub objects_removed: u64,
    pub bytes_freed: u64,
}

/// The media type a deployer asks for (`Accept`) to see an activation as it happens: one JSON
/// `ActivateEvent` per line.
pub const NDJSON: &str = "application/x-ndjson";

/// One line of a streamed activation: what `update_fetch` prints, as it prints it, then the
/// outcome. A failure comes in-band (the 200 went out with the first line), with the status
/// and body the plain answer would have had.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivateEvent {
    /// `<step> | <line>`.
    Line(String),
    Done(ActivateResponse),
    Failed {
        status: u16,
        error: ApiError,
    },
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub hint: Option<String>,
    /// For 409: who holds the app's lock and since when (unix seconds).
    pub holder: Option<String>,
    pub since: Option<u64>,
}

/// Unix seconds as `2026-11-22 05:13:14 UTC`, as messages and listings show a time.
pub fn utc(secs: u64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    datetime(secs).format(format).expect("a UTC time formats")
}

/// Unix seconds as RFC 3339 (`2026-11-22T05:13:14Z`), as files record a time: it sorts as
/// text and every tool reads it.
pub fn rfc3339(secs: u64) -> String {
    let format = time::format_description::well_known::Rfc3339;
    datetime(secs).format(&format).expect("a UTC time formats")
}

/// Now, to the millisecond, as log lines start: `2026-11-22T06:15:31.123Z`.
pub fn now_millis() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(format)
        .expect("a UTC time formats")
}

fn datetime(secs: u64) -> time::OffsetDateTime {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_and_values() {
        let check = |name: &str, expected: Result<(), &str>| {
            let got = VarName::parse(name).map(|_| ());
            match expected {
                Ok(()) => assert_eq!(got, Ok(()), "{name}"),
                Err(why) => assert!(got.unwrap_err().to_string().contains(why), "{name}"),
            }
        };
        check("API_KEY", Ok(()));
        check("PATHS", Ok(()));
        check("PORT", Err("set by silver"));
        check("SILVER_X", Err("set by silver"));
        for loader in [
            "PATH",
            "PYTHONPATH",
            "PYTHONHOME",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "GLIBC_TUNABLES",
        ] {
            check(loader, Err("programs and libraries"));
        }
        check("1X", Err("not a variable name"));
        assert!(VarValue::parse("x".repeat(VarValue::MAX_BYTES)).is_ok());
        let big = VarValue::parse("x".repeat(VarValue::MAX_BYTES + 1)).unwrap_err();
        assert!(big.to_string().contains("64 KiB"), "{big}");
        assert!(VarValue::parse("a\0b".into())
            .unwrap_err()
            .to_string()
            .contains("NUL"));
        assert_eq!(
            format!("{:?}", VarValue::parse("hunter2".into()).unwrap()),
            "VarValue(7 bytes)"
        );
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(1_795_324_394), "2026-11-22 05:13:14 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::rfc3339(1_795_324_394), "2026-11-22T05:13:14Z");
        let now = super::now_millis();
        assert_eq!(
            (now.len(), &now[10..11], &now[19..20], &now[23..]),
            (24, "T", ".", "Z")
        );
    }
}
