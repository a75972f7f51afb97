//! Bearer-token authentication: every route but `/healthz` and `/readyz` needs a token
//! that names an operator; handlers get the [`Principal`], never a claimed identity.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use ironclaw_identity::Principal;

use crate::error::ApiError;
use crate::ApiState;

/// Authenticates the request or answers 401.
pub async fn require_token(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(ApiError::unauthorized)?;
    let principal = state
        .inner
        .tokens
        .authenticate(presented)
        .ok_or_else(ApiError::unauthorized)?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// The authenticated caller.
pub struct Authed(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Authed)
            .ok_or_else(ApiError::unauthorized)
    }
}
