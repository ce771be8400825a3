//! `GET /v1/certs`, `POST /v1/certs` and `DELETE /v1/certs/{host}`: the front door's
//! certificates, and the operator's own (wildcards, internal CAs).

use axum::extract::{Path, State};
use axum::Json;
use silver_acme::{Cert, CertHost};

use super::extract::JsonBody;
use super::{AgentState, ApiErr};
use crate::error::Error;
use crate::store::certs::Source;
use silver_wire::api::*;

pub(super) async fn show(State(state): State<AgentState>) -> Json<CertsView> {
    Json(state.certs.view(state.runtime.routes()))
}

pub(super) async fn add(
    State(state): State<AgentState>,
    JsonBody(req): JsonBody<CertUpload>,
) -> Result<Json<CertsView>, ApiErr> {
    let host = CertHost::parse(&req.host).map_err(Error::from)?;
    let cert = Cert::parse(host.as_str(), &req.chain_pem, &req.key_pem).map_err(Error::from)?;
    // Caught here, not at the first handshake of a visitor: a key for another certificate, a
    // certificate for another host, one already expired.
    silver_runtime::tls::certified_key(host.as_str(), &req.chain_pem, &req.key_pem)
        .map_err(Error::from)?;
    let fits = cert.names.iter().any(|n| n == host.as_str())
        || (!host.is_wildcard() && cert.covers(host.as_str()));
    if !fits {
        return Err(Error::CertNotFor {
            host: host.to_string(),
            names: cert.names.clone(),
        }
        .into());
    }
    if cert.not_after <= std::time::SystemTime::now() {
        return Err(Error::CertExpired {
            host: host.to_string(),
        }
        .into());
    }
    let source = match req.fleet {
        true => Source::Fleet,
        false => Source::Operator,
    };
    let certs = state.certs.clone();
    let added = host.clone();
    super::blocking(move || certs.add(&added, source, cert)).await?;
    tracing::info!(%host, source = source.as_str(), "certificate added");
    Ok(Json(state.certs.view(state.runtime.routes())))
}

pub(super) async fn remove(
    State(state): State<AgentState>,
    Path(host): Path<String>,
) -> Result<Json<CertsView>, ApiErr> {
    let host = CertHost::parse(&host).map_err(Error::from)?;
    let certs = state.certs.clone();
    let gone = host.clone();
    if !super::blocking(move || certs.remove(&gone)).await? {
        return Err(Error::NoCert {
            host: host.to_string(),
        }
        .into());
    }
    tracing::info!(%host, "certificate removed");
    Ok(Json(state.certs.view(state.runtime.routes())))
}

/// `PUT /v1/acme/http-01`: a fleet's client places the answer to its order's HTTP-01 challenge
/// on every node, so whichever node the CA reaches answers.
pub(super) async fn put_http01(
    State(state): State<AgentState>,
    JsonBody(req): JsonBody<Http01Answer>,
) -> Result<Json<Http01Answer>, ApiErr> {
    let token = silver_acme::Http01Token::parse(&req.token).map_err(Error::from)?;
    // The key authorization is `token.thumbprint`: anything else would let a token holder make
    // the front door say arbitrary words under the challenge path.
    let thumbprint = req
        .key_authorization
        .strip_prefix(token.as_str())
        .and_then(|rest| rest.strip_prefix('.'));
    if thumbprint.is_none_or(|thumb| silver_acme::Http01Token::parse(thumb).is_err()) {
        return Err(Error::Acme(silver_acme::Error::BadToken {
            given: req.key_authorization.clone(),
        })
        .into());
    }
    state
        .certs
        .live
        .set_http01(token.as_str(), &req.key_authorization);
    Ok(Json(req))
}

/// `DELETE /v1/acme/http-01/{token}`: the order is over.
pub(super) async fn delete_http01(
    State(state): State<AgentState>,
    Path(token): Path<String>,
) -> Result<Json<serde_json::Value>, ApiErr> {
    let token = silver_acme::Http01Token::parse(&token).map_err(Error::from)?;
    state.certs.live.clear_http01(token.as_str());
    Ok(Json(serde_json::json!({})))
}
