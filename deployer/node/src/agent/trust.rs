//! `GET /v1/trust` and `POST /v1/trust`: the node's trust policy, and replacing it. A new
//! policy takes effect only when the current one's root role signed it, so a stolen node token
//! cannot swap the keys; the first policy is installed on the node itself (`trust.toml`, or
//! baked into its image).

use axum::extract::State;
use axum::Json;
use silver_trust::Policy;

use super::extract::JsonBody;
use super::{blocking, AgentState, ApiErr};
use crate::error::Error;
use silver_wire::api::*;

pub(super) async fn show(State(state): State<AgentState>) -> Result<Json<TrustView>, ApiErr> {
    let store = state.store.clone();
    let policy = blocking(move || store.trust_policy()).await?;
    policy
        .map(|p| Json(view(&p)))
        .ok_or_else(|| Error::NoTrustPolicy.into())
}

pub(super) async fn rotate(
    State(state): State<AgentState>,
    JsonBody(req): JsonBody<TrustRotation>,
) -> Result<Json<TrustView>, ApiErr> {
    let store = state.store.clone();
    let new = blocking(move || {
        let path = store.layout().trust_policy();
        let current = store.trust_policy()?.ok_or(Error::NoTrustPolicy)?;
        let new = current.check_rotation(&req.policy, &req.signatures, &path)?;
        safefs::write_atomic(&path, req.policy.as_bytes(), safefs::WriteOptions::PRIVATE)
            .map_err(|e| Error::io(&path, e))?;
        tracing::info!(who = %req.who, environment = %new.environment, "trust policy rotated");
        Ok(new)
    })
    .await?;
    Ok(Json(view(&new)))
}

fn view(policy: &Policy) -> TrustView {
    let role = |r: &silver_trust::policy::Role| TrustRole {
        keys: r.keys.iter().map(silver_trust::keys::public_id).collect(),
        threshold: r.threshold,
    };
    let mut roles = std::collections::BTreeMap::new();
    roles.insert("build".to_string(), role(&policy.build));
    roles.insert("promote".to_string(), role(&policy.promote));
    if let Some(root) = &policy.root {
        roles.insert("root".to_string(), role(root));
    }
    TrustView {
        environment: policy.environment.clone(),
        roles,
    }
}
