//! The deploy client: talks to a node's agent with reqwest.
//!
//! A deploy asks which objects the node lacks, streams exactly those out of the verified archive
//! in one request, records the manifest, then asks for activation (waiting on the app's lock
//! unless told not to).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use packer::{Entry, Hash, Kind, Limits, Manifest, Progress, ReadConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::proto::*;
use crate::store::file_hash;
use crate::wire::frame_header;

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
}

impl NodeConfig {
    pub fn new(url: &str, token: Option<String>) -> NodeConfig {
        NodeConfig {
            url: url.into(),
            token,
            agent_addr: "127.0.0.1:7330".into(),
            ssh_command: "ssh".into(),
        }
    }
}

/// A connected node.
pub struct Node {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    /// Kept open for as long as the node is used.
    _tunnel: Option<crate::tunnel::Tunnel>,
}

impl Node {
    pub fn connect(config: &NodeConfig) -> Result<Node, Error> {
        if config.url.starts_with("ssh://") {
            let target = crate::tunnel::SshTarget::parse(&config.url)?;
            let tunnel = crate::tunnel::Tunnel::open(
                &target,
                &config.agent_addr,
                &config.ssh_command,
                &config.url,
            )?;
            let mut node = Node::connect(&NodeConfig {
                url: format!("http://{}", tunnel.local),
                ..config.clone()
            })?;
            node._tunnel = Some(tunnel);
            return Ok(node);
        }
        let url = config.url.trim_end_matches('/');
        let bad = |why: &str| Error::BadNode {
            url: config.url.clone(),
            why: why.into(),
        };
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| bad("the scheme must be http://, https:// or ssh://"))?;
        if rest.is_empty() || rest.contains('/') {
            return Err(bad("expected scheme://host:port with no path"));
        }
        let http = reqwest::Client::builder()
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

    pub async fn releases(&self, app: &str) -> Result<Vec<Release>, Error> {
        self.call(
            self.authed(
                self.http
                    .get(self.endpoint(&format!("/v1/apps/{app}/releases"))),
            ),
        )
        .await
    }

    pub async fn activate(
        &self,
        app: &str,
        id: &str,
        who: &str,
    ) -> Result<ActivateResponse, Error> {
        self.post(
            &format!("/v1/apps/{app}/activate"),
            &ActivateRequest {
                id: id.into(),
                who: who.into(),
            },
        )
        .await
    }

    pub async fn rollback(
        &self,
        app: &str,
        id: Option<&str>,
        who: &str,
    ) -> Result<ActivateResponse, Error> {
        self.post(
            &format!("/v1/apps/{app}/rollback"),
            &RollbackRequest {
                id: id.map(String::from),
                who: who.into(),
            },
        )
        .await
    }

    pub async fn gc(&self, keep: usize) -> Result<GcReport, Error> {
        self.post("/v1/gc", &GcRequest { keep }).await
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Error> {
        self.call(self.authed(self.http.post(self.endpoint(path)).json(body)))
            .await
    }

    async fn call<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, Error> {
        let resp = req.send().await.map_err(|e| Error::Connect {
            node: self.base.clone(),
            source: e,
        })?;
        let status = resp.status();
        if status.is_success() {
            return resp.json().await.map_err(|e| Error::Connect {
                node: self.base.clone(),
                source: e,
            });
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(Error::Unauthorized {
                node: self.base.clone(),
            });
        }
        let body: Option<ApiError> = resp.json().await.ok();
        Err(match body {
            Some(ApiError {
                holder: Some(holder),
                since: Some(since),
                ..
            }) if status == reqwest::StatusCode::CONFLICT => Error::Locked {
                app: String::new(),
                holder,
                since,
            },
            Some(e) => Error::Api {
                node: self.base.clone(),
                status: status.as_u16(),
                message: e.error,
                hint: e.hint,
            },
            None => Error::Api {
                node: self.base.clone(),
                status: status.as_u16(),
                message: status.to_string(),
                hint: None,
            },
        })
    }
}

/// How to deploy.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub app: String,
    /// `user@host`, recorded in the node's history.
    pub who: String,
    /// Fail at once when another activation holds the app's lock.
    pub no_wait: bool,
    pub limits: Limits,
}

/// What `silver deploy --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    pub app: String,
    pub id: String,
    pub node: String,
    pub previous: Option<String>,
    pub bytes_sent: u64,
    pub objects_sent: usize,
    pub objects_skipped: usize,
    pub phases_ms: Phases,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    pub check: u128,
    pub upload: u128,
    pub manifest: u128,
    pub activate: u128,
}

/// Deploys `archive` to `node`. `on_wait` is told who holds the lock while deploy waits.
pub async fn deploy(
    node: &Node,
    archive: &Path,
    opts: &DeployOptions,
    progress: Arc<dyn Progress + Send + Sync>,
    on_wait: impl Fn(&str, u64),
) -> Result<DeployReport, Error> {
    let mut phases = Phases::default();
    let t = Instant::now();
    let manifest = {
        let (archive, limits) = (archive.to_path_buf(), opts.limits.clone());
        tokio::task::spawn_blocking(move || packer::read_manifest(&archive, &limits))
            .await
            .map_err(join_err)??
    };
    let objects = distinct_objects(&manifest);
    let request = MissingRequest {
        hashes: objects.iter().map(|(h, _)| h.to_hex()).collect(),
        sizes: objects.iter().map(|(_, s)| *s).collect(),
    };
    let missing: MissingResponse = node.post("/v1/objects/missing", &request).await?;
    let missing: HashSet<Hash> = missing
        .missing
        .iter()
        .filter_map(|h| Hash::from_hex(h))
        .collect();
    phases.check = t.elapsed().as_millis();

    let t = Instant::now();
    let mut bytes_sent = 0;
    if !missing.is_empty() {
        let total: u64 = objects
            .iter()
            .filter(|(h, _)| missing.contains(h))
            .map(|(_, s)| s)
            .sum();
        bytes_sent += upload(node, archive, &missing, total, &opts.limits, progress).await?;
    }
    phases.upload = t.elapsed().as_millis();

    let t = Instant::now();
    let put = node.authed(
        node.http
            .put(node.endpoint(&format!("/v1/artifacts/{}", manifest.id)))
            .body(manifest.bytes.clone()),
    );
    let _: ArtifactResponse = node.call(put).await?;
    bytes_sent += manifest.bytes.len() as u64;
    phases.manifest = t.elapsed().as_millis();

    let t = Instant::now();
    let path = format!("/v1/apps/{}/deploy", opts.app);
    let request = ActivateRequest {
        id: manifest.id.to_string(),
        who: opts.who.clone(),
    };
    let activated: ActivateResponse = loop {
        match node.post(&path, &request).await {
            Err(Error::Locked { holder, since, .. }) if !opts.no_wait => {
                on_wait(&holder, since);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(Error::Locked { holder, since, .. }) => {
                return Err(Error::Locked {
                    app: opts.app.clone(),
                    holder,
                    since,
                })
            }
            other => break other?,
        }
    };
    phases.activate = t.elapsed().as_millis();
    Ok(DeployReport {
        app: opts.app.clone(),
        id: activated.id,
        node: node.base.clone(),
        previous: activated.previous,
        bytes_sent,
        objects_sent: missing.len(),
        objects_skipped: objects.len() - missing.len(),
        phases_ms: phases,
    })
}

/// Each distinct content once, with its size, in manifest order.
fn distinct_objects(manifest: &Manifest) -> Vec<(Hash, u64)> {
    let mut seen = HashSet::new();
    manifest
        .entries
        .iter()
        .filter_map(|e| file_hash(&e.kind).map(|h| (h, e.size())))
        .filter(|(h, _)| seen.insert(*h))
        .collect()
}

/// Streams the missing objects out of the archive (verifying all of it) as one request body.
async fn upload(
    node: &Node,
    archive: &Path,
    missing: &HashSet<Hash>,
    total: u64,
    limits: &Limits,
    progress: Arc<dyn Progress + Send + Sync>,
) -> Result<u64, Error> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let reader = {
        let (archive, missing, limits) = (archive.to_path_buf(), missing.clone(), limits.clone());
        let tx = tx.clone();
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            let mut visitor = Uploader {
                missing,
                sent: HashSet::new(),
                tx,
                bytes: 0,
                progress,
            };
            let config = ReadConfig {
                limits,
                ..Default::default()
            };
            let result = packer::read_with(&archive, &config, &mut visitor);
            if let Err(e) = &result {
                // Cut the body short so the agent refuses the torn upload.
                let _ = visitor
                    .tx
                    .blocking_send(Err(std::io::Error::other(e.to_string())));
            }
            result.map(|_| visitor.bytes)
        })
    };
    drop(tx);
    progress.start("uploading", total);
    let body = tokio_stream::wrappers::ReceiverStream::new(rx);
    let req = node.authed(
        node.http
            .post(node.endpoint("/v1/objects"))
            .body(reqwest::Body::wrap_stream(body)),
    );
    let sent: Result<StoredResponse, Error> = node.call(req).await;
    progress.finish();
    let bytes = reader.await.map_err(join_err)??;
    sent?;
    Ok(bytes)
}

struct Uploader {
    missing: HashSet<Hash>,
    sent: HashSet<Hash>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    bytes: u64,
    progress: Arc<dyn Progress + Send + Sync>,
}

impl Uploader {
    fn send(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.bytes += bytes.len() as u64;
        self.tx
            .blocking_send(Ok(bytes))
            .map_err(|_| std::io::Error::other("the node stopped reading the upload"))
    }
}

impl packer::Visitor for Uploader {
    fn wants(&mut self, entry: &Entry) -> bool {
        let (Kind::File { hash, size } | Kind::Exec { hash, size }) = entry.kind else {
            return false;
        };
        if !self.missing.contains(&hash) || !self.sent.insert(hash) {
            return false;
        }
        self.send(Bytes::copy_from_slice(&frame_header(&hash.0, size)))
            .is_ok()
    }

    fn chunk(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.progress.advance(bytes.len() as u64);
        self.send(Bytes::copy_from_slice(bytes))
    }
}

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::Corrupt(format!("worker failed: {e}"))
}
