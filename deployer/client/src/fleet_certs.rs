//! One certificate per host name for a whole fleet (design §10). The client places the ACME
//! order, puts the HTTP-01 answer on every node's router through its agent (so whichever node
//! the CA reaches answers), then hands the certificate and key to every node over the same
//! authenticated channel as releases. No shared storage, no DNS API.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use futures_util::future::join_all;
use silver_acme::{AcmeConfig, Answer, Cert, CertHost, Challenge};
use silver_wire::api::{CertUpload, CertView, CertsView, Http01Answer};

use crate::deploy::Node;
use crate::error::Error;
use crate::fleet::OnEvent;

/// The CA, and where the client keeps its account (0600).
#[derive(Debug, Clone)]
pub struct FleetAcme {
    pub config: AcmeConfig,
    pub account_dir: PathBuf,
}

/// What happened to one host name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostOutcome {
    pub host: String,
    /// `issued`, `current` (every node has one not yet due), `skipped` (the operator's, or
    /// ACME cannot issue it) or `failed`.
    pub outcome: String,
    pub serial: Option<String>,
    pub not_after_unix: Option<u64>,
    pub error: Option<String>,
}

/// Orders a certificate for every host the fleet's locations name that some node lacks or
/// has due, and installs it on every node. Every node must answer: a certificate given to
/// some of them only would leave the others serving an old one.
pub async fn fleet_certs(
    nodes: &[Node],
    acme: &FleetAcme,
    on_event: OnEvent,
) -> Result<Vec<HostOutcome>, Error> {
    let views: Vec<CertsView> = join_all(nodes.iter().map(Node::certs))
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut outcomes = Vec::new();
    let mut account = None;
    for (host, entries) in by_host(&views) {
        let outcome = match plan(&host, &entries) {
            Plan::Skip(why) => skipped(&host, "skipped", why),
            Plan::Current => skipped(&host, "current", None),
            Plan::Order(host) => {
                on_event(host.as_str(), "ordering a certificate for the fleet");
                match order(nodes, acme, &mut account, &host).await {
                    Ok(cert) => {
                        on_event(host.as_str(), "installed on every node");
                        HostOutcome {
                            host: host.to_string(),
                            outcome: "issued".into(),
                            serial: Some(cert.serial.clone()),
                            not_after_unix: Some(cert.not_after_unix()),
                            error: None,
                        }
                    }
                    Err(e) => {
                        let why = crate::error::chain(&e);
                        on_event(host.as_str(), &format!("failed: {why}"));
                        skipped(host.as_str(), "failed", Some(why))
                    }
                }
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

enum Plan {
    Skip(Option<String>),
    Current,
    Order(CertHost),
}

/// Each host name the nodes' locations name, with every node's entry for it.
fn by_host(views: &[CertsView]) -> BTreeMap<String, Vec<CertView>> {
    let mut hosts: BTreeMap<String, Vec<CertView>> = BTreeMap::new();
    for view in views {
        for entry in view.hosts.iter().filter(|e| !e.apps.is_empty()) {
            hosts
                .entry(entry.host.clone())
                .or_default()
                .push(entry.clone());
        }
    }
    hosts
}

/// Whether the fleet needs a new certificate for `host`: a node without one, or with one
/// due, unless the operator gave it one (that is the operator's to renew).
fn plan(host: &str, entries: &[CertView]) -> Plan {
    let host = match CertHost::parse(host) {
        Ok(host) => host,
        Err(e) => return Plan::Skip(Some(e.to_string())),
    };
    if let Some(refusal) = host.acme_refusal() {
        return Plan::Skip(Some(refusal));
    }
    if entries
        .iter()
        .any(|e| e.source.as_deref() == Some("operator"))
    {
        return Plan::Skip(Some("the operator's certificate serves it".into()));
    }
    let now = unix(SystemTime::now());
    let due = |e: &CertView| match (e.source.as_deref(), e.renew_at_unix) {
        (Some("fleet"), Some(renew)) => renew <= now,
        _ => true,
    };
    match entries.iter().any(due) {
        true => Plan::Order(host),
        false => Plan::Current,
    }
}

fn skipped(host: &str, outcome: &str, error: Option<String>) -> HostOutcome {
    HostOutcome {
        host: host.to_string(),
        outcome: outcome.into(),
        serial: None,
        not_after_unix: None,
        error,
    }
}

async fn order(
    nodes: &[Node],
    acme: &FleetAcme,
    account: &mut Option<silver_acme::Account>,
    host: &CertHost,
) -> Result<Cert, Error> {
    if account.is_none() {
        *account =
            Some(silver_acme::load_or_create_account(&acme.config, &acme.account_dir).await?);
    }
    let account = account.as_ref().expect("set above");
    let responder = FanOut(nodes);
    let directory = &acme.config.directory;
    let cert = silver_acme::issue(account, directory, host, Challenge::Http01, &responder).await?;
    let upload = CertUpload {
        host: host.to_string(),
        chain_pem: cert.chain_pem.clone(),
        key_pem: cert.key_pem.clone(),
        fleet: true,
    };
    for result in join_all(nodes.iter().map(|n| n.add_cert(&upload))).await {
        result?;
    }
    Ok(cert)
}

/// Puts an HTTP-01 answer on every node; the CA may reach any of them.
struct FanOut<'a>(&'a [Node]);

impl silver_acme::Responder for FanOut<'_> {
    async fn present(&self, answer: &Answer) -> Result<(), silver_acme::Error> {
        let Answer::Http01 {
            host,
            token,
            key_authorization,
        } = answer
        else {
            unreachable!("a fleet orders over HTTP-01 only");
        };
        let body = Http01Answer {
            token: token.clone(),
            key_authorization: key_authorization.clone(),
        };
        let placed = join_all(self.0.iter().map(|n| n.put_http01(&body))).await;
        for (node, result) in self.0.iter().zip(placed) {
            if let Err(e) = result {
                return Err(silver_acme::Error::Answer {
                    host: host.clone(),
                    challenge: Challenge::Http01,
                    said: silver_types::Said::new(
                        &format!("node {}: {}", node.url(), crate::error::chain(&e)),
                        &[],
                    ),
                });
            }
        }
        Ok(())
    }

    async fn withdraw(&self, answer: &Answer) {
        if let Answer::Http01 { token, .. } = answer {
            let _ = join_all(self.0.iter().map(|n| n.delete_http01(token))).await;
        }
    }
}

impl Node {
    /// Places an HTTP-01 answer on the node's router.
    pub async fn put_http01(&self, answer: &Http01Answer) -> Result<Http01Answer, Error> {
        let req = self.authed(
            self.http
                .put(self.endpoint("/v1/acme/http-01"))
                .json(answer),
        );
        self.call(req).await
    }

    /// Takes an HTTP-01 answer off the node's router.
    pub async fn delete_http01(&self, token: &str) -> Result<serde_json::Value, Error> {
        let path = format!("/v1/acme/http-01/{token}");
        let req = self.authed(self.http.delete(self.endpoint(&path)));
        self.call(req).await
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
