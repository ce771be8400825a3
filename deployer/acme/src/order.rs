//! One ACME order for one host: answer the challenge through a [`Responder`], wait for the CA
//! to validate, finalize with a fresh key, fetch the chain.

use std::future::Future;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use silver_types::Said;

use crate::cert::Cert;
use crate::error::Error;
use crate::host::CertHost;

/// The challenges silver answers. DNS-01 is not one: it needs the DNS provider's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Challenge {
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl Challenge {
    /// The other one: what a failed order tries next (as Caddy learns which one works).
    pub fn other(self) -> Challenge {
        match self {
            Challenge::Http01 => Challenge::TlsAlpn01,
            Challenge::TlsAlpn01 => Challenge::Http01,
        }
    }

    pub fn parse(given: &str) -> Option<Challenge> {
        match given {
            "http-01" => Some(Challenge::Http01),
            "tls-alpn-01" => Some(Challenge::TlsAlpn01),
            _ => None,
        }
    }

    fn acme(self) -> ChallengeType {
        match self {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        }
    }
}

impl std::fmt::Display for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        })
    }
}

/// What the CA must find while it validates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "challenge", rename_all = "kebab-case")]
pub enum Answer {
    /// `GET http://HOST/.well-known/acme-challenge/TOKEN` answers `key_authorization`.
    Http01 {
        host: String,
        token: String,
        key_authorization: String,
    },
    /// A TLS handshake for HOST with ALPN `acme-tls/1` gets a certificate carrying `digest`.
    TlsAlpn01 { host: String, digest: Vec<u8> },
}

impl Answer {
    pub fn host(&self) -> &str {
        match self {
            Answer::Http01 { host, .. } | Answer::TlsAlpn01 { host, .. } => host,
        }
    }
}

/// Puts an answer where the CA will look, and takes it away afterwards.
pub trait Responder: Sync {
    fn present(&self, answer: &Answer) -> impl Future<Output = Result<(), Error>> + Send;
    fn withdraw(&self, answer: &Answer) -> impl Future<Output = ()> + Send;
}

/// How long the CA gets to validate, and then to sign.
const VALIDATION: Duration = Duration::from_secs(90);

/// Orders a certificate for `host` over `challenge`. `directory` names the CA in errors.
pub async fn issue(
    account: &Account,
    directory: &str,
    host: &CertHost,
    challenge: Challenge,
    responder: &impl Responder,
) -> Result<Cert, Error> {
    let acme = |doing: &'static str| move |e| Error::acme(directory, doing, e);
    let identifiers = [Identifier::Dns(host.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(acme("placing an order"))?;
    let answers = answer_all(&mut order, host, challenge, responder, directory).await;
    let validated = match &answers {
        Ok(_) => order
            .poll_ready(&RetryPolicy::new().timeout(VALIDATION))
            .await
            .map_err(acme("waiting for validation")),
        Err(_) => Ok(OrderStatus::Invalid),
    };
    for answer in answers.iter().flatten() {
        responder.withdraw(answer).await;
    }
    answers?;
    if validated? != OrderStatus::Ready {
        let said = why_invalid(&mut order).await;
        return Err(Error::Invalid {
            host: host.to_string(),
            challenge,
            said: Said::new(&said, &[]),
        });
    }
    let key_pem = order.finalize().await.map_err(acme("finalizing"))?;
    let chain = order
        .poll_certificate(&RetryPolicy::new().timeout(VALIDATION))
        .await
        .map_err(acme("fetching the certificate"))?;
    Cert::parse(host.as_str(), &chain, &key_pem)
}

/// Presents an answer for every pending authorization and tells the CA to look.
async fn answer_all(
    order: &mut instant_acme::Order,
    host: &CertHost,
    challenge: Challenge,
    responder: &impl Responder,
    directory: &str,
) -> Result<Vec<Answer>, Error> {
    let mut answers = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization =
            authorization.map_err(|e| Error::acme(directory, "reading an authorization", e))?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(Error::Invalid {
                    host: host.to_string(),
                    challenge,
                    said: Said::new(&format!("the authorization is {other:?}"), &[]),
                })
            }
        }
        let mut handle =
            authorization
                .challenge(challenge.acme())
                .ok_or_else(|| Error::NotOffered {
                    host: host.to_string(),
                    challenge,
                })?;
        let key_authorization = handle.key_authorization();
        let answer = match challenge {
            Challenge::Http01 => Answer::Http01 {
                host: host.to_string(),
                token: handle.token.clone(),
                key_authorization: key_authorization.as_str().to_string(),
            },
            Challenge::TlsAlpn01 => Answer::TlsAlpn01 {
                host: host.to_string(),
                digest: key_authorization.digest().as_ref().to_vec(),
            },
        };
        responder.present(&answer).await?;
        answers.push(answer);
        handle
            .set_ready()
            .await
            .map_err(|e| Error::acme(directory, "saying the challenge is ready", e))?;
    }
    Ok(answers)
}

/// The CA's own words on why validation failed: the failed challenge's error, else the order's.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    {
        let mut authorizations = order.authorizations();
        while let Some(Ok(authorization)) = authorizations.next().await {
            for challenge in &authorization.challenges {
                if let Some(problem) = &challenge.error {
                    return problem.to_string();
                }
            }
        }
    }
    match &order.state().error {
        Some(problem) => problem.to_string(),
        None => format!("the order is {:?}", order.state().status),
    }
}
