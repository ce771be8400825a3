//! One registry, over HTTP: the distribution API's blob and manifest endpoints, with auth.
//!
//! A 401 is answered once: the challenge says Basic (send the credentials) or Bearer (trade them
//! at the realm for a token scoped to the repository), then the request is sent again.

use std::path::PathBuf;
use std::time::Duration;

use silver_types::Said;
use tokio::sync::Mutex;

use crate::auth::{self, Challenge, Credentials};
use crate::error::Error;
use crate::reference::{self, Digest, Reference};

/// How to reach registries: which may be plain HTTP, where credentials are, and how long to wait.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `host[:port]` of registries named insecure (plain HTTP off loopback, as Docker's
    /// `insecure-registries`).
    pub insecure: Vec<String>,
    /// Credentials files in Docker's format, first match wins.
    pub auth_files: Vec<PathBuf>,
    /// No answer (or no progress of a transfer) for this long fails the request.
    pub timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            auth_files: auth::client_files(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// The largest OCI manifest silver reads (a 6,551-file app's is about 60 KB).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A connection to one registry, for one repository (a Bearer token is scoped to it).
pub struct Registry {
    http: reqwest::Client,
    name: String,
    base: String,
    repository: String,
    credentials: Option<Credentials>,
    authorization: Mutex<Option<String>>,
}

impl Registry {
    pub fn connect(reference: &Reference, config: &RegistryConfig) -> Result<Registry, Error> {
        let plain = reference::is_loopback(&reference.registry)
            || config.insecure.contains(&reference.registry);
        let scheme = if plain { "http" } else { "https" };
        let credentials = auth::find(&reference.registry, &config.auth_files)?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .read_timeout(config.timeout)
            .user_agent(concat!("silver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| Error::Unreachable {
                registry: reference.registry.clone(),
                source,
            })?;
        Ok(Registry {
            http,
            name: reference.registry.clone(),
            base: format!("{scheme}://{}", reference.registry),
            repository: reference.repository.clone(),
            credentials,
            authorization: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the repository holds the blob (a HEAD: no bytes move).
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool, Error> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self
            .send("check a blob", true, || Ok(self.http.head(&url)))
            .await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(self.refused("check a blob", status, None)),
        }
    }

    /// Uploads one blob in a single PUT (the monolithic upload every registry supports).
    /// `body` is called again if the first try met a challenge.
    pub async fn put_blob(
        &self,
        digest: &Digest,
        len: u64,
        body: impl Fn() -> Result<reqwest::Body, Error>,
    ) -> Result<(), Error> {
        let start = self.url("blobs/uploads/");
        let resp = self
            .send("start an upload", true, || {
                Ok(self.http.post(&start).header("content-length", "0"))
            })
            .await?;
        let location = expect(self, resp, 202, "start an upload").await?;
        let location = location
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(String::from)
            .ok_or_else(|| self.refused("start an upload", 202, Some("no Location header")))?;
        let mut url = reqwest::Url::parse(&self.base)
            .and_then(|base| base.join(&location))
            .map_err(|_| {
                self.refused("start an upload", 202, Some("a Location that is not a URL"))
            })?;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .send("upload a blob", true, || {
                Ok(self
                    .http
                    .put(url.clone())
                    .header("content-type", "application/octet-stream")
                    .header("content-length", len.to_string())
                    .body(body()?))
            })
            .await?;
        expect(self, resp, 201, "upload a blob").await?;
        Ok(())
    }

    /// The blob's bytes as they arrive; the caller checks them against `digest`.
    pub async fn blob(&self, digest: &Digest) -> Result<reqwest::Response, Error> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self
            .send("send a blob", false, || Ok(self.http.get(&url)))
            .await?;
        expect(self, resp, 200, &format!("send blob {digest}")).await
    }

    /// Stores `bytes` as the manifest at `target` (a tag or its digest); returns its digest.
    pub async fn put_manifest(&self, target: &str, bytes: &[u8]) -> Result<Digest, Error> {
        let url = self.url(&format!("manifests/{target}"));
        let body = bytes.to_vec();
        let resp = self
            .send("store the manifest", true, || {
                Ok(self
                    .http
                    .put(&url)
                    .header("content-type", OCI_MANIFEST)
                    .body(body.clone()))
            })
            .await?;
        expect(self, resp, 201, "store the manifest").await?;
        Ok(Digest::sha256(bytes))
    }

    /// The manifest at `target`, and its digest, checked when `target` is one.
    pub async fn manifest(&self, reference: &Reference) -> Result<(Vec<u8>, Digest), Error> {
        self.manifest_if_any(reference).await?.ok_or_else(|| {
            self.refused(
                &format!("send the manifest {reference}"),
                404,
                Some("it has no such manifest"),
            )
        })
    }

    /// As [`Registry::manifest`], or None when the registry has none there.
    pub async fn manifest_if_any(
        &self,
        reference: &Reference,
    ) -> Result<Option<(Vec<u8>, Digest)>, Error> {
        let url = self.url(&format!("manifests/{}", reference.target()));
        let resp = self
            .send("send the manifest", false, || {
                Ok(self.http.get(&url).header("accept", OCI_MANIFEST))
            })
            .await?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let resp = expect(self, resp, 200, &format!("send the manifest {reference}")).await?;
        let bytes = read_capped(resp, MAX_MANIFEST_BYTES, reference, "the manifest").await?;
        let digest = match &reference.digest {
            Some(expected) => {
                let mut h = expected.hasher();
                h.update(&bytes);
                let actual = h.finish();
                if actual != *expected {
                    return Err(Error::DigestMismatch {
                        reference: reference.to_string(),
                        what: "the manifest".into(),
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
                actual
            }
            None => Digest::sha256(&bytes),
        };
        Ok(Some((bytes, digest)))
    }

    /// A small blob, whole, checked against its digest.
    pub async fn blob_bytes(
        &self,
        digest: &Digest,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, Error> {
        let resp = self.blob(digest).await?;
        let reference = Reference {
            registry: self.name.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest.clone()),
        };
        let bytes = read_capped(resp, limit, &reference, what).await?;
        let mut h = digest.hasher();
        h.update(&bytes);
        let actual = h.finish();
        if actual != *digest {
            return Err(Error::DigestMismatch {
                reference: reference.to_string(),
                what: what.into(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// Sends a request with the authorization in hand; on a 401, authenticates as the
    /// challenge asks and sends it once more.
    async fn send(
        &self,
        doing: &str,
        push: bool,
        make: impl Fn() -> Result<reqwest::RequestBuilder, Error>,
    ) -> Result<reqwest::Response, Error> {
        let current = self.authorization.lock().await.clone();
        let resp = self.try_send(make()?, current.as_deref()).await?;
        if resp.status() != 401 {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse)
            .ok_or_else(|| self.refused(doing, 401, Some("no challenge it understands")))?;
        let fresh = self.authenticate(&challenge, push).await?;
        *self.authorization.lock().await = Some(fresh.clone());
        let resp = self.try_send(make()?, Some(&fresh)).await?;
        if resp.status() == 401 {
            return Err(Error::Unauthorized {
                registry: self.name.clone(),
                had_credentials: self.credentials.is_some(),
            });
        }
        Ok(resp)
    }

    async fn try_send(
        &self,
        req: reqwest::RequestBuilder,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, Error> {
        let req = match authorization {
            Some(a) => req.header("authorization", a),
            None => req,
        };
        req.send().await.map_err(|source| Error::Unreachable {
            registry: self.name.clone(),
            source: source.without_url(),
        })
    }

    /// The `Authorization` value a challenge asks for.
    async fn authenticate(&self, challenge: &Challenge, push: bool) -> Result<String, Error> {
        let (realm, service, scope) = match challenge {
            Challenge::Basic => {
                return self
                    .credentials
                    .as_ref()
                    .map(Credentials::basic)
                    .ok_or_else(|| Error::Unauthorized {
                        registry: self.name.clone(),
                        had_credentials: false,
                    })
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => (realm, service, scope),
        };
        let actions = if push { "pull,push" } else { "pull" };
        let scope = scope
            .clone()
            .unwrap_or_else(|| format!("repository:{}:{actions}", self.repository));
        let mut url = reqwest::Url::parse(realm).map_err(|_| Error::Token {
            realm: realm.clone(),
            why: Said::new("the realm is not a URL", &[]),
        })?;
        // A token service off loopback must be HTTPS: the credentials travel to it.
        if url.scheme() != "https" && !reference::is_loopback(url.host_str().unwrap_or("")) {
            return Err(Error::Token {
                realm: realm.clone(),
                why: Said::new(
                    "it is not HTTPS, and credentials would travel in clear",
                    &[],
                ),
            });
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", &scope);
        }
        let mut req = self.http.get(url);
        if let Some(c) = &self.credentials {
            req = req.header("authorization", c.basic());
        }
        let resp = req.send().await.map_err(|source| Error::Unreachable {
            registry: self.name.clone(),
            source: source.without_url(),
        })?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(Error::Unauthorized {
                registry: self.name.clone(),
                had_credentials: self.credentials.is_some(),
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let token: Token = resp.json().await.map_err(|e| Error::Token {
            realm: realm.clone(),
            why: Said::new(&format!("HTTP {status}, not a token: {e}"), &[]),
        })?;
        let token = token
            .token
            .or(token.access_token)
            .ok_or_else(|| Error::Token {
                realm: realm.clone(),
                why: Said::new("the answer holds no token", &[]),
            })?;
        Ok(format!("Bearer {token}"))
    }

    pub(crate) fn refused(&self, doing: &str, status: u16, said: Option<&str>) -> Error {
        let secrets = self
            .credentials
            .as_ref()
            .map(Credentials::secrets)
            .unwrap_or_default();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        Error::Refused {
            registry: self.name.clone(),
            doing: doing.to_string(),
            status,
            said: said.map(|s| Said::new(s, &secrets)),
        }
    }
}

/// The response if it has the status wanted; else the registry's refusal, with the first line
/// of its error body.
async fn expect(
    registry: &Registry,
    resp: reqwest::Response,
    status: u16,
    doing: &str,
) -> Result<reqwest::Response, Error> {
    if resp.status().as_u16() == status || (status == 200 && resp.status().is_success()) {
        return Ok(resp);
    }
    let got = resp.status().as_u16();
    if got == 401 {
        return Err(Error::Unauthorized {
            registry: registry.name.clone(),
            had_credentials: registry.credentials.is_some(),
        });
    }
    let body = resp.text().await.unwrap_or_default();
    let said = (!body.trim().is_empty()).then(|| body.chars().take(300).collect::<String>());
    Err(registry.refused(doing, got, said.as_deref()))
}

/// A body read whole, refused past `limit`.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    limit: u64,
    reference: &Reference,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|source| Error::Unreachable {
            registry: reference.registry.clone(),
            source: source.without_url(),
        })?;
        let Some(chunk) = chunk else { break };
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(Error::TooLarge {
                reference: reference.to_string(),
                what: what.into(),
                limit,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
