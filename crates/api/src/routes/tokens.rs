//! Operator tokens: `POST /v1/tokens`, `GET /v1/tokens`, `DELETE /v1/tokens/{name}`.
//! The rules (owners only, the role with the token, audited, never your own token)
//! are the gateway's [`Operators`]; this maps them onto HTTP.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ironclaw_gateway::{OperatorError, Operators};
use ironclaw_registry::Role;
use serde::Deserialize;
use serde_json::{json, Value};

use super::blocking;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::limits::ApiJson;
use crate::ApiState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    role: Role,
}

fn operators(state: &ApiState) -> Operators<'_> {
    Operators {
        tokens: &state.inner.tokens,
        registry: &state.inner.registry,
        audit: &state.inner.audit,
    }
}

fn operator_error(e: OperatorError) -> ApiError {
    match e {
        OperatorError::NotOwner(_) => ApiError::forbidden(e.to_string()),
        OperatorError::OwnToken => ApiError::bad_request(e.to_string()),
        OperatorError::NoSuchToken(_) => ApiError::not_found(e.to_string()),
        OperatorError::Identity(e) => identity_error(e),
        OperatorError::Registry(e) => e.into(),
        OperatorError::Audit(_) => ApiError::internal(e.to_string()),
    }
}

pub async fn create(
    State(state): State<ApiState>,
    Authed(who): Authed,
    ApiJson(b): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    blocking(move || {
        let (record, secret) = operators(&state)
            .mint(&who.user_id, &b.name, b.role)
            .map_err(operator_error)?;
        Ok((
            StatusCode::CREATED,
            Json(json!({"name": b.name, "principal": record.principal, "role": b.role, "token": secret.expose()})),
        ))
    })
    .await
}

fn identity_error(e: ironclaw_identity::IdentityError) -> ApiError {
    use ironclaw_identity::IdentityError as E;
    match e {
        E::InvalidName { .. } | E::WeakToken { .. } => ApiError::bad_request(e.to_string()),
        E::NameTaken { .. } | E::TokenInUse { .. } => {
            ApiError::new(axum::http::StatusCode::CONFLICT, "conflict", e.to_string())
        }
        _ => ApiError::internal(e.to_string()),
    }
}

pub async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    blocking(move || Ok(Json(json!({"tokens": state.inner.tokens.list()})))).await
}

pub async fn revoke(
    State(state): State<ApiState>,
    Authed(who): Authed,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        operators(&state)
            .revoke(&who.user_id, &who.name, &name)
            .map_err(operator_error)?;
        Ok(Json(json!({"revoked": name})))
    })
    .await
}
