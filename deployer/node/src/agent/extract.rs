//! What a request carries, parsed before any handler runs: the `{app}` and `{id}` of a route and
//! JSON bodies. A value that does not parse is a 400 naming the rule it breaks, and the handler
//! (so the store) never sees it.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use packer::Id;
use serde::de::DeserializeOwned;
use silver_types::{AppName, IdPrefix};

use super::ApiErr;
use crate::error::Error;

/// The `{app}` segment of a route.
pub struct App(pub AppName);

impl<S: Send + Sync> FromRequestParts<S> for App {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<App, ApiErr> {
        // axum percent-decodes the segment, so `%2F` arrives as `/` and `%00` as NUL: both are
        // refused by the name's rules, which is what keeps them out of `apps/`.
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| bad_path(parts, e.body_text()))?;
        AppName::parse(&raw)
            .map(App)
            .map_err(|rule| ApiErr(Error::BadAppName { name: raw, rule }))
    }
}

/// The `{id}` segment of an artifact route: a whole id, since the client sends what it packed.
pub struct ArtifactId(pub Id);

impl<S: Send + Sync> FromRequestParts<S> for ArtifactId {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ArtifactId, ApiErr> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| bad_path(parts, e.body_text()))?;
        let prefix = IdPrefix::parse(&raw).map_err(|rule| {
            ApiErr(Error::BadId {
                given: raw.clone(),
                rule,
            })
        })?;
        prefix.full().map(ArtifactId).ok_or_else(|| {
            ApiErr(Error::BadId {
                given: raw,
                rule: silver_types::names::IdRule::TooShort,
            })
        })
    }
}

/// A JSON body whose fields parse into types (`AppName`, `IdPrefix`) as it is read.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiErr;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody<T>, ApiErr> {
        let route = request.uri().path().to_string();
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|axum::Json(v)| JsonBody(v))
            .map_err(|e: JsonRejection| {
                ApiErr(Error::BadBody {
                    route,
                    why: silver_types::Said::new(&e.body_text(), &[]),
                })
            })
    }
}

fn bad_path(parts: &Parts, why: String) -> ApiErr {
    ApiErr(Error::BadBody {
        route: parts.uri.path().to_string(),
        why: silver_types::Said::new(&why, &[]),
    })
}
