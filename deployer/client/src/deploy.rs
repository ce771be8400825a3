//! The deploy client: talks to a node's agent with reqwest.
//!
//! A deploy asks which objects the node lacks, streams exactly those out of the verified archive
//! in one request, records the manifest, then asks for activation (waiting on the app's lock
//! unless told not to).

use silver_types::appconfig::Location;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use packer::{Entry, Hash, Kind, Limits, Manifest, Progress, ReadConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use silver_types::{AppName, IdPrefix};

use crate::error::Error;
use silver_wire::api::*;
use silver_wire::frames::frame_header;

/// How to reach a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `http://host:port`, `https://host:port` or `ssh://[user@]host[:port]`.
    pub url: String,
    pub token: Option<String>,
    /// With ssh: the agent's address as seen on the node.
    pub agent_addr: String,
    /// With ssh: the ssh program and options.
    pub ssh_command: String,
    /// With https: a CA certificate (PEM) to trust besides the system's, e.g. the node's own.
    pub ca_cert: Option<PathBuf>,
    /// With ssh and no token: the agent's token file on the node, read over ssh.
    pub remote_token_file: String,
}

impl NodeConfig {
    pub fn new(url: &str, token: Option<String>) -> NodeConfig {
        NodeConfig {
            url: url.into(),
            token,
            agent_addr: "127.0.0.1:7330".into(),
            ssh_command: "ssh".into(),
            ca_cert: None,
            remote_token_file: "/var/lib/silver/token".into(),
        }
    }
}

/// A connected node.
pub struct Node {
    base: String,
    token: Option<String>,
    pub(crate) http: reqwest::Client,
    /// Kept open for as long as the node is used.
    _tunnel: Option<crate::tunnel::Tunnel>,
}

impl Node {
    pub fn connect(config: &NodeConfig) -> Result<Node, Error> {
        if config.url.starts_with("ssh://") {
            let target = crate::tunnel::SshTarget::parse(&config.url)?;
            let token = match &config.token {
                Some(t) => t.clone(),
                None => crate::tunnel::remote_token(
                    &target,
                    &config.ssh_command,
                    &config.remote_token_file,
                    &config.url,
                )?,
            };
            let tunnel = crate::tunnel::Tunnel::open(
                &target,
                &config.agent_addr,
                &config.ssh_command,
                &config.url,
            )?;
            let mut node = Node::connect(&NodeConfig {
                url: format!("http://{}", tunnel.local),
                token: Some(token),
                ..config.clone()
            })?;
            node._tunnel = Some(tunnel);
            return Ok(node);
        }
        let url = config.url.trim_end_matches('/');
        let bad = |why: &'static str| Error::BadNode {
            url: config.url.clone(),
            why,
        };
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| bad("the scheme must be http://, https:// or ssh://"))?;
        if rest.is_empty() || rest.contains('/') {
            return Err(bad("expected scheme://host:port with no path"));
        }
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = &config.ca_cert {
            builder = builder.add_root_certificate(crate::tls::ca_certificate(ca)?);
        }
        let http = builder
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("silver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Connect {
                node: url.into(),
                source: e,
            })?;
        Ok(Node {
            base: url.to_string(),
            token: config.token.clone(),
            http,
            _tunnel: None,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    pub async fn health(&self) -> Result<Health, Error> {
        self.call(self.http.get(self.endpoint("/v1/health"))).await
    }

    pub async fn releases(&self, app: &AppName) -> Result<Vec<Release>, Error> {
        self.call(
            self.authed(
                self.http
                    .get(self.endpoint(&format!("/v1/apps/{app}/releases"))),
            ),
        )
        .await
    }

    /// The live release's `[cron]` jobs, each with its last and next run.
    pub async fn cron_jobs(
        &self,
        app: &AppName,
    ) -> Result<Vec<silver_types::cron::JobStatus>, Error> {
        let url = self.endpoint(&format!("/v1/apps/{app}/cron"));
        self.call(self.authed(self.http.get(url))).await
    }

    /// Runs a `[cron]` job now; answers with its runs (retries too) once they end.
    pub async fn cron_run(
        &self,
        app: &AppName,
        job: &str,
    ) -> Result<Vec<silver_types::cron::RunRecord>, Error> {
        let request = silver_wire::api::CronRunRequest { job: job.into() };
        self.post(&format!("/v1/apps/{app}/cron/run"), &request)
            .await
    }

    /// The app's task queue: counts, dead tasks, the next queued ones.
    pub async fn tasks(&self, app: &AppName) -> Result<silver_types::task::TaskList, Error> {
        let url = self.endpoint(&format!("/v1/apps/{app}/tasks"));
        self.call(self.authed(self.http.get(url))).await
    }

    /// Retries (`"retry"`) or drops (`"drop"`) the tasks named, or every dead task with none.
    pub async fn tasks_change(
        &self,
        app: &AppName,
        change: &str,
        ids: Option<Vec<silver_types::task::TaskId>>,
    ) -> Result<Vec<silver_types::task::TaskId>, Error> {
        let request = silver_wire::api::TasksRequest { ids };
        self.post(&format!("/v1/apps/{app}/tasks/{change}"), &request)
            .await
    }

    /// Makes a staged release current; `migrate` runs its `update_fetch` even if it ran before.
    pub async fn activate(
        &self,
        app: &AppName,
        id: &IdPrefix,
        who: &str,
        other_app: bool,
        migrate: bool,
        records: Vec<silver_types::SignedRecord>,
    ) -> Result<ActivateResponse, Error> {
        self.post(
            &format!("/v1/apps/{app}/activate"),
            &ActivateRequest {
                id: id.clone(),
                who: who.into(),
                locations: vec![],
                other_app,
                restart: false,
                app_config: None,
                single_process: false,
                migrate,
                records,
            },
        )
        .await
    }

    /// Goes back to a release that ran before; `migrate` runs its `update_fetch` again.
    pub async fn rollback(
        &self,
        app: &AppName,
        id: Option<&IdPrefix>,
        who: &str,
        migrate: bool,
        records: Vec<silver_types::SignedRecord>,
    ) -> Result<ActivateResponse, Error> {
        self.post(
            &format!("/v1/apps/{app}/rollback"),
            &RollbackRequest {
                id: id.cloned(),
                who: who.into(),
                migrate,
                records,
            },
        )
        .await
    }

    pub async fn pin(
        &self,
        app: &AppName,
        id: &IdPrefix,
        pinned: bool,
    ) -> Result<Vec<String>, Error> {
        self.post(
            &format!("/v1/apps/{app}/pins"),
            &PinRequest {
                id: id.clone(),
                pinned,
            },
        )
        .await
    }

    /// Has the node fetch `reference` (`REGISTRY/REPO@DIGEST`) from its registry.
    pub async fn pull(&self, reference: &str) -> Result<PullResponse, Error> {
        let request = PullRequest {
            reference: reference.to_string(),
        };
        self.post("/v1/pull", &request).await
    }

    /// The node's trust policy (`Error::Api` with 404 when it has none).
    pub async fn trust(&self) -> Result<TrustView, Error> {
        let req = self.authed(self.http.get(self.endpoint("/v1/trust")));
        self.call(req).await
    }

    /// Replaces the node's trust policy with one its current root role signed.
    pub async fn rotate_trust(&self, rotation: &TrustRotation) -> Result<TrustView, Error> {
        self.post("/v1/trust", rotation).await
    }

    /// The node's figures over the last `hours`, markers, releases, verdict and alerts.
    pub async fn status(&self, hours: u64) -> Result<StatusView, Error> {
        let path = format!("/v1/status?hours={hours}");
        let req = self.authed(self.http.get(self.endpoint(&path)));
        self.call(req).await
    }

    /// A signed link to the status page, valid for `minutes`.
    pub async fn status_link(&self, minutes: u64) -> Result<StatusLink, Error> {
        self.post(
            "/v1/status/link",
            &serde_json::json!({ "minutes": minutes }),
        )
        .await
    }

    /// The agent's own address as this client reaches it (through a tunnel, for ssh).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The front door's certificates, and why a host has none.
    pub async fn certs(&self) -> Result<CertsView, Error> {
        let req = self.authed(self.http.get(self.endpoint("/v1/certs")));
        self.call(req).await
    }

    /// Adds the operator's certificate for a host or wildcard.
    pub async fn add_cert(&self, upload: &CertUpload) -> Result<CertsView, Error> {
        self.post("/v1/certs", upload).await
    }

    /// Removes a host's certificate (the operator's, else ACME's).
    pub async fn remove_cert(&self, host: &str) -> Result<CertsView, Error> {
        let host = percent_encoding::utf8_percent_encode(host, percent_encoding::NON_ALPHANUMERIC);
        let req = self.authed(
            self.http
                .delete(self.endpoint(&format!("/v1/certs/{host}"))),
        );
        self.call(req).await
    }

    pub async fn gc(&self, keep: usize) -> Result<GcReport, Error> {
        self.post("/v1/gc", &GcRequest { keep }).await
    }

    pub async fn maintenance(&self, app: &AppName, on: bool) -> Result<MaintenanceRequest, Error> {
        self.post(
            &format!("/v1/apps/{app}/maintenance"),
            &MaintenanceRequest { maintenance: on },
        )
        .await
    }

    /// The app's log lines as they come (forever, with `follow`), each chunk to `out`.
    pub async fn logs(
        &self,
        app: &AppName,
        process: Option<&str>,
        lines: usize,
        follow: bool,
        mut out: impl FnMut(&[u8]),
    ) -> Result<(), Error> {
        let mut query: Vec<(&str, String)> =
            vec![("lines", lines.to_string()), ("follow", follow.to_string())];
        if let Some(p) = process {
            query.push(("process", p.to_string()));
        }
        let req = self
            .authed(
                self.http
                    .get(self.endpoint(&format!("/v1/apps/{app}/logs"))),
            )
            .query(&query);
        let mut resp = self.send(req).await?;
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.lost(e))? {
            out(&chunk);
        }
        Ok(())
    }

    /// Runs a command in the app's live release; output goes to `out` as it comes. Returns the
    /// command's exit code.
    /// Runs `argv` in the app's live release; `stdin` (if any) streams to the command as it
    /// runs, and its output comes back frame by frame to `out`. Returns its exit code.
    pub async fn run(
        &self,
        app: &AppName,
        argv: &[String],
        who: &str,
        stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
        mut out: impl FnMut(RunFrame, &[u8]),
    ) -> Result<i32, Error> {
        let json = serde_json::to_vec(&RunRequest {
            argv: argv.to_vec(),
            who: who.into(),
        })
        .expect("plain data");
        let mut head = (json.len() as u32).to_be_bytes().to_vec();
        head.extend_from_slice(&json);
        let head = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(head))]);
        let body = match stdin {
            Some(stdin) => reqwest::Body::wrap_stream(futures_util::StreamExt::chain(
                head,
                tokio_util::io::ReaderStream::with_capacity(stdin, 64 << 10),
            )),
            None => reqwest::Body::wrap_stream(head),
        };
        let req = self
            .authed(
                self.http
                    .post(self.endpoint(&format!("/v1/apps/{app}/run"))),
            )
            .header(reqwest::header::CONTENT_TYPE, RUN_CONTENT_TYPE)
            .body(body);
        let mut resp = self.send(req).await?;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.lost(e))? {
            buf.extend_from_slice(&chunk);
            while buf.len() >= 5 {
                let len = u32::from_be_bytes(buf[1..5].try_into().expect("4 bytes")) as usize;
                if buf.len() < 5 + len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..5 + len).collect();
                match RunFrame::from_byte(frame[0]) {
                    Some(RunFrame::Exit) if len == 4 => {
                        return Ok(i32::from_be_bytes(frame[5..9].try_into().expect("4 bytes")))
                    }
                    Some(kind) => out(kind, &frame[5..]),
                    None => break,
                }
            }
        }
        Err(Error::NoExitCode {
            node: self.base.clone(),
        })
    }

    pub(crate) fn lost(&self, e: reqwest::Error) -> Error {
        Error::Connect {
            node: self.base.clone(),
            source: e,
        }
    }

    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Error> {
        self.call(self.authed(self.http.post(self.endpoint(path)).json(body)))
            .await
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        let resp = self.send(req).await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| self.lost(e))?;
        // Anything but the JSON the API defines is not an agent (often: the front door's port).
        serde_json::from_slice(&body).map_err(|_| Error::NotAnAgent {
            node: self.base.clone(),
            status,
        })
    }

    /// Sends a request; any answer but a success becomes the matching error.
    pub(crate) async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let resp = req.send().await.map_err(|e| self.lost(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_none() {
            return Err(Error::NoToken {
                node: self.base.clone(),
            });
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(Error::Unauthorized {
                node: self.base.clone(),
            });
        }
        let body: Option<ApiError> = resp.json().await.ok();
        Err(self.failure(status.as_u16(), body))
    }

    /// The error for an answer with `status` and error body `body`.
    fn failure(&self, status: u16, body: Option<ApiError>) -> Error {
        match body {
            Some(ApiError {
                holder: Some(holder),
                since: Some(since),
                ..
            }) if status == 409 => Error::Busy { holder, since },
            Some(e) => Error::Api {
                node: self.base.clone(),
                status,
                message: silver_types::Said::whole(&e.error, &[]),
                hint: e.hint,
            },
            None => Error::NotAnAgent {
                node: self.base.clone(),
                status,
            },
        }
    }

    /// POSTs an activation and hands each line of `update_fetch` output to `on_line` as the
    /// node streams it.
    pub(crate) async fn activate_watched(
        &self,
        path: &str,
        body: &impl Serialize,
        on_line: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ActivateResponse, Error> {
        let req = self.authed(self.http.post(self.endpoint(path)).json(body));
        let mut resp = self
            .send(req.header(reqwest::header::ACCEPT, NDJSON))
            .await?;
        let status = resp.status().as_u16();
        let not_an_agent = || Error::NotAnAgent {
            node: self.base.clone(),
            status,
        };
        let mut pending = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.lost(e))? {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                match serde_json::from_slice(&line).map_err(|_| not_an_agent())? {
                    ActivateEvent::Line(text) => on_line(&text),
                    ActivateEvent::Done(done) => return Ok(done),
                    ActivateEvent::Failed { status, error } => {
                        return Err(self.failure(status, Some(error)))
                    }
                }
            }
        }
        // An agent that answers in one piece (one from before streaming).
        serde_json::from_slice(&pending).map_err(|_| not_an_agent())
    }
}

/// How to deploy.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub app: AppName,
    /// The app was named on purpose (`--app`): the node takes an artifact packed for another.
    pub other_app: bool,
    /// `user@host`, recorded in the node's history.
    pub who: String,
    /// Fail at once when another activation holds the app's lock.
    pub no_wait: bool,
    pub limits: Limits,
    /// Where manifests sent before are kept, as delta bases for the next deploy.
    pub cache_dir: Option<PathBuf>,
    /// `host[/path]` where the app should answer; empty keeps what the node has.
    pub locations: Vec<silver_types::appconfig::Location>,
    /// Restart the release even if it is already live.
    pub restart: bool,
    /// A configuration directory to upload beside the artifact (`SILVER_APP_CONFIG`).
    pub app_config: Option<PathBuf>,
    /// One web worker, never more, until the next activation.
    pub single_process: bool,
    /// Signed build and promotion records, for a node with a trust policy.
    pub records: Vec<silver_types::SignedRecord>,
}

/// What `silver deploy --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    pub app: AppName,
    pub id: silver_types::ArtifactId,
    pub node: String,
    pub previous: Option<silver_types::ArtifactId>,
    /// The release was already live: nothing was restarted.
    pub unchanged: bool,
    /// What `update_fetch` printed, each line `<step> | <line>`.
    pub update_output: Vec<String>,
    /// Request bodies sent: the (compressed) manifest and the (compressed) objects.
    pub bytes_sent: u64,
    pub manifest_bytes_sent: u64,
    /// The base the manifest was sent as a delta against, if any.
    pub manifest_base: Option<String>,
    pub objects_sent: usize,
    pub objects_skipped: usize,
    /// Where the app now answers on the node's front door.
    pub locations: Vec<silver_types::Location>,
    /// The processes running for the release.
    pub processes: Vec<String>,
    pub phases_ms: Phases,
    /// What the node fetched from the registry, when it pulled the artifact itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulled: Option<PullResponse>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    pub manifest: u128,
    pub upload: u128,
    pub commit: u128,
    pub activate: u128,
}

/// zstd level for manifests: small, sent once, worth squeezing.
const MANIFEST_LEVEL: i32 = 12;
/// zstd level for the object stream: fast enough not to slow a loopback or LAN upload.
const UPLOAD_LEVEL: i32 = 1;

/// Deploys `archive` to `node`. `on_wait` is told who holds the lock while deploy waits.
pub async fn deploy(
    node: &Node,
    archive: &Path,
    opts: &DeployOptions,
    progress: Arc<dyn Progress + Send + Sync>,
    on_wait: impl Fn(&str, u64),
) -> Result<DeployReport, Error> {
    preflight(node, archive, opts).await?;
    let sent = send_artifact(node, archive, opts, progress.clone()).await?;
    let (manifest, mut phases) = (sent.manifest, sent.phases);

    let t = Instant::now();
    let activated = activate_configured(node, manifest.id, opts, progress, on_wait).await?;
    phases.activate = t.elapsed().as_millis();
    if let Some(dir) = &opts.cache_dir {
        cache_manifest(dir, &manifest);
    }
    let upload = Upload {
        bytes_sent: sent.bytes_sent,
        manifest_bytes_sent: sent.manifest_bytes_sent,
        manifest_base: sent.manifest_base,
        objects_sent: sent.objects_sent,
        objects_skipped: sent.objects_skipped,
    };
    Ok(report(node, opts, activated, upload, phases, None))
}

/// What an upload moved (nothing when the node pulled the artifact itself).
#[derive(Default)]
struct Upload {
    bytes_sent: u64,
    manifest_bytes_sent: u64,
    manifest_base: Option<String>,
    objects_sent: usize,
    objects_skipped: usize,
}

/// Uploads the `--config` directory if one was given, then activates `id`, waiting on the
/// app's lock and showing `update_fetch`'s lines as they come.
async fn activate_configured(
    node: &Node,
    id: packer::Id,
    opts: &DeployOptions,
    progress: Arc<dyn Progress + Send + Sync>,
    on_wait: impl Fn(&str, u64),
) -> Result<ActivateResponse, Error> {
    let app_config = match &opts.app_config {
        Some(dir) => Some(node.upload_app_config(&opts.app, dir).await?),
        None => None,
    };
    let on_line = |line: &str| progress.note(line);
    activate_waiting(node, id, opts, app_config, on_wait, &on_line).await
}

fn report(
    node: &Node,
    opts: &DeployOptions,
    activated: ActivateResponse,
    upload: Upload,
    phases: Phases,
    pulled: Option<PullResponse>,
) -> DeployReport {
    DeployReport {
        app: opts.app.clone(),
        id: activated.id,
        node: node.base.clone(),
        previous: activated.previous,
        unchanged: activated.unchanged,
        update_output: activated.update_output,
        bytes_sent: upload.bytes_sent,
        manifest_bytes_sent: upload.manifest_bytes_sent,
        manifest_base: upload.manifest_base,
        objects_sent: upload.objects_sent,
        objects_skipped: upload.objects_skipped,
        locations: activated.locations,
        processes: activated.processes,
        phases_ms: phases,
        pulled,
    }
}

/// What sending an artifact to a node moved.
pub struct Sent {
    pub manifest: Manifest,
    pub bytes_sent: u64,
    pub manifest_bytes_sent: u64,
    pub manifest_base: Option<String>,
    pub objects_sent: usize,
    pub objects_skipped: usize,
    pub phases: Phases,
}

/// Puts `archive` in the node's store: the manifest (a delta when this machine kept the
/// node's current one), the objects it lacks, then the commit. Activates nothing.
pub async fn send_artifact(
    node: &Node,
    archive: &Path,
    opts: &DeployOptions,
    progress: Arc<dyn Progress + Send + Sync>,
) -> Result<Sent, Error> {
    let mut phases = Phases::default();
    let t = Instant::now();
    let manifest = {
        let (archive, limits) = (archive.to_path_buf(), opts.limits.clone());
        tokio::task::spawn_blocking(move || packer::read_manifest(&archive, &limits))
            .await
            .map_err(join_err)??
    };
    let objects = manifest.distinct_objects();
    let (sent_manifest, base, missing) =
        send_manifest(node, &manifest, &opts.app, opts.cache_dir.as_deref()).await?;
    let missing: HashSet<Hash> = missing.iter().filter_map(|h| Hash::from_hex(h)).collect();
    phases.manifest = t.elapsed().as_millis();

    let t = Instant::now();
    let mut bytes_sent = sent_manifest;
    if !missing.is_empty() {
        let total: u64 = objects
            .iter()
            .filter(|(h, _)| missing.contains(h))
            .map(|(_, s)| s)
            .sum();
        bytes_sent += upload(
            node,
            archive,
            &manifest.id,
            &missing,
            total,
            &opts.limits,
            progress,
        )
        .await?;
    }
    phases.upload = t.elapsed().as_millis();

    let t = Instant::now();
    let _: ArtifactResponse = node
        .post(&format!("/v1/artifacts/{}/commit", manifest.id), &())
        .await?;
    phases.commit = t.elapsed().as_millis();
    Ok(Sent {
        bytes_sent,
        manifest_bytes_sent: sent_manifest,
        manifest_base: base,
        objects_sent: missing.len(),
        objects_skipped: objects.len() - missing.len(),
        manifest,
        phases,
    })
}

/// Deploys an artifact the node has just pulled from a registry ([`Node::pull`]): nothing
/// goes through this machine but the request.
pub async fn activate_pulled(
    node: &Node,
    pulled: PullResponse,
    opts: &DeployOptions,
    progress: Arc<dyn Progress + Send + Sync>,
    on_wait: impl Fn(&str, u64),
) -> Result<DeployReport, Error> {
    let t = Instant::now();
    let activated = activate_configured(node, pulled.id, opts, progress, on_wait).await?;
    let phases = Phases {
        activate: t.elapsed().as_millis(),
        ..Phases::default()
    };
    Ok(report(
        node,
        opts,
        activated,
        Upload::default(),
        phases,
        Some(pulled),
    ))
}

/// Asks the node to make the release current; while another activation holds the app's lock,
/// says who (`on_wait`) and asks again, unless `no_wait`.
async fn activate_waiting(
    node: &Node,
    id: packer::Id,
    opts: &DeployOptions,
    app_config: Option<String>,
    on_wait: impl Fn(&str, u64),
    on_line: &(dyn Fn(&str) + Send + Sync),
) -> Result<ActivateResponse, Error> {
    let path = format!("/v1/apps/{}/deploy", opts.app);
    let request = ActivateRequest {
        id: id.into(),
        who: opts.who.clone(),
        locations: opts.locations.clone(),
        other_app: opts.other_app,
        restart: opts.restart,
        app_config,
        single_process: opts.single_process,
        migrate: false,
        records: opts.records.clone(),
    };
    loop {
        match node.activate_watched(&path, &request, on_line).await {
            Err(Error::Busy { holder, since }) if !opts.no_wait => {
                on_wait(&holder, since);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(Error::Busy { holder, since }) => {
                return Err(Error::Locked {
                    app: opts.app.clone(),
                    holder,
                    since,
                })
            }
            other => return other,
        }
    }
}

/// Sends the manifest zstd-compressed, as a delta against the app's current manifest when this
/// machine kept a copy of it. Returns the bytes sent, the base used, and what the node lacks.
/// Asks the node whether the app's locations are free before anything is uploaded.
async fn preflight(node: &Node, archive: &Path, opts: &DeployOptions) -> Result<(), Error> {
    let default_location = {
        let (archive, limits) = (archive.to_path_buf(), opts.limits.clone());
        tokio::task::spawn_blocking(move || packed_default_location(&archive, &limits))
            .await
            .map_err(join_err)?
    };
    let request = PreflightRequest {
        locations: opts.locations.clone(),
        default_location,
    };
    let _: PreflightResponse = node
        .post(&format!("/v1/apps/{}/preflight", opts.app), &request)
        .await?;
    Ok(())
}

/// The `default_location` of the artifact's app.ini, reading the archive only as far as it.
/// None if it has none, or if its app.ini cannot be read (activation then says why).
fn packed_default_location(archive: &Path, limits: &Limits) -> Option<Location> {
    struct AppIni {
        want: Option<u64>,
        bytes: Vec<u8>,
    }
    impl packer::Visitor for AppIni {
        fn wants(&mut self, entry: &packer::Entry) -> bool {
            let wanted = entry.path == "app.ini";
            if wanted {
                self.want = Some(entry.size());
            }
            wanted
        }
        fn chunk(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            self.bytes.extend_from_slice(bytes);
            // Entries come in path order and app.ini is near the front: stop once it is read.
            match self.want {
                Some(size) if self.bytes.len() as u64 >= size => {
                    Err(std::io::Error::other("app.ini read"))
                }
                _ => Ok(()),
            }
        }
    }
    let mut visitor = AppIni {
        want: None,
        bytes: vec![],
    };
    let config = ReadConfig {
        limits: limits.clone(),
        ..Default::default()
    };
    let _ = packer::read_with(archive, &config, &mut visitor);
    let text = String::from_utf8(visitor.bytes).ok()?;
    let ini = silver_types::appini::AppIni::parse(&text, Path::new("app.ini")).ok()?;
    silver_types::appconfig::AppConfig::from_ini(&ini)
        .ok()?
        .default_location
}

async fn send_manifest(
    node: &Node,
    manifest: &Manifest,
    app: &AppName,
    cache: Option<&Path>,
) -> Result<(u64, Option<String>, Vec<String>), Error> {
    let health = node.health().await?;
    let current = health
        .apps
        .iter()
        .find(|a| &a.name == app)
        .and_then(|a| a.current.clone());
    let base = current.and_then(|id| {
        cache
            .and_then(|dir| std::fs::read(dir.join(id.trim_start_matches("b3:"))).ok())
            .map(|bytes| (id, bytes))
    });
    let url = node.endpoint(&format!("/v1/artifacts/{}", manifest.id));
    if let Some((base_id, dictionary)) = &base {
        let body = compress(&manifest.bytes, dictionary)?;
        let len = body.len() as u64;
        let req = node.authed(
            node.http
                .put(&url)
                .header("content-encoding", "zstd")
                .header(BASE_HEADER, base_id.as_str())
                .body(body),
        );
        match node.call::<ArtifactResponse>(req).await {
            Ok(resp) => return Ok((len, Some(base_id.clone()), resp.missing)),
            // The node no longer has the base (gc): send the whole manifest instead.
            Err(Error::Api { status: 412, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let body = compress(&manifest.bytes, &[])?;
    let len = body.len() as u64;
    let req = node.authed(
        node.http
            .put(&url)
            .header("content-encoding", "zstd")
            .body(body),
    );
    let resp: ArtifactResponse = node.call(req).await?;
    Ok((len, None, resp.missing))
}

fn compress(bytes: &[u8], dictionary: &[u8]) -> Result<Vec<u8>, Error> {
    let mut compressor = zstd::bulk::Compressor::with_dictionary(MANIFEST_LEVEL, dictionary)
        .map_err(|e| Error::io(Path::new("(manifest)"), e))?;
    // The whole base must be in reach, as `zstd --patch-from` arranges.
    let window = (bytes.len().max(dictionary.len()) * 2)
        .next_power_of_two()
        .trailing_zeros()
        .clamp(20, 27);
    compressor
        .set_parameter(zstd::zstd_safe::CParameter::WindowLog(window))
        .map_err(|e| Error::io(Path::new("(manifest)"), e))?;
    compressor
        .compress(bytes)
        .map_err(|e| Error::io(Path::new("(manifest)"), e))
}

/// Keeps a manifest this machine deployed, named by id, for the next deploy's delta. Best effort.
fn cache_manifest(dir: &Path, manifest: &Manifest) {
    let path = dir.join(manifest.id.0.to_hex());
    if path.exists() {
        return;
    }
    let options = safefs::WriteOptions {
        mode: 0o644,
        durability: safefs::Durability::Atomic,
    };
    let ok = std::fs::create_dir_all(dir)
        .and_then(|()| safefs::write_atomic(&path, &manifest.bytes, options));
    if let Err(e) = ok {
        tracing::debug!(dir = %dir.display(), error = %e, "could not cache the manifest");
    }
}

/// Each distinct content once, with its size, in manifest order.
/// Streams the missing objects out of the archive (verifying all of it), zstd-compressed, as one
/// request body. Returns the compressed bytes sent.
#[allow(clippy::too_many_arguments)]
async fn upload(
    node: &Node,
    archive: &Path,
    id: &packer::Id,
    missing: &HashSet<Hash>,
    total: u64,
    limits: &Limits,
    progress: Arc<dyn Progress + Send + Sync>,
) -> Result<u64, Error> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    progress.start("uploading", total);
    let reader = {
        let (archive, missing, limits) = (archive.to_path_buf(), missing.clone(), limits.clone());
        let tx = tx.clone();
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            let sink = ChannelWriter {
                tx: tx.clone(),
                bytes: 0,
            };
            let encoder =
                zstd::Encoder::new(sink, UPLOAD_LEVEL).map_err(|e| Error::io(&archive, e))?;
            let mut visitor = Uploader {
                missing,
                sent: HashSet::new(),
                out: encoder,
                progress,
            };
            let config = ReadConfig {
                limits,
                ..Default::default()
            };
            let result = packer::read_with(&archive, &config, &mut visitor);
            match result {
                Ok(_) => {
                    let sink = visitor.out.finish().map_err(|e| Error::io(&archive, e))?;
                    Ok(sink.bytes)
                }
                Err(e) => {
                    // Cut the body short so the agent refuses the torn upload.
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    Err(Error::Artifact(e))
                }
            }
        })
    };
    drop(tx);
    let body = tokio_stream::wrappers::ReceiverStream::new(rx);
    let req = node.authed(
        node.http
            .post(node.endpoint("/v1/objects"))
            .header("content-encoding", "zstd")
            .header(silver_wire::api::ARTIFACT_HEADER, id.to_string())
            .body(reqwest::Body::wrap_stream(body)),
    );
    let sent: Result<StoredResponse, Error> = node.call(req).await;
    progress.finish();
    let bytes = reader.await.map_err(join_err)??;
    sent?;
    Ok(bytes)
}

/// Hands compressed bytes to the request body.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    bytes: u64,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len() as u64;
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("the node stopped reading the upload"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Uploader {
    missing: HashSet<Hash>,
    sent: HashSet<Hash>,
    out: zstd::Encoder<'static, ChannelWriter>,
    progress: Arc<dyn Progress + Send + Sync>,
}

impl packer::Visitor for Uploader {
    fn wants(&mut self, entry: &Entry) -> bool {
        let (Kind::File { hash, size } | Kind::Exec { hash, size }) = entry.kind else {
            return false;
        };
        if !self.missing.contains(&hash) || !self.sent.insert(hash) {
            return false;
        }
        std::io::Write::write_all(&mut self.out, &frame_header(&hash.0, size)).is_ok()
    }

    fn chunk(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.progress.advance(bytes.len() as u64);
        std::io::Write::write_all(&mut self.out, bytes)
    }
}

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::Worker {
        what: e.to_string(),
    }
}
