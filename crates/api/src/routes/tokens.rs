//! Operator tokens. Minting and revoking need an owner; the new operator's role is
//! granted in the registry in the same request, and both facts are audited.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ironclaw_audit::AuditEvent;
use ironclaw_registry::{Role, RoleGrant, User};
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

fn require_owner(state: &ApiState, who: &ironclaw_contract::ids::UserId) -> Result<(), ApiError> {
    if state.inner.registry.is_owner(who)? {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{who} is not an owner; only owners manage tokens"
        )))
    }
}

pub async fn create(
    State(state): State<ApiState>,
    Authed(who): Authed,
    ApiJson(b): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    blocking(move || {
        require_owner(&state, &who.user_id)?;
        let (record, secret) = state.inner.tokens.create(&b.name, Some(&who.user_id)).map_err(identity_error)?;
        let principal = record.principal.clone();
        let rest = (|| {
            state
                .inner
                .registry
                .put_user(User { id: principal.clone(), kind: "operator".into(), display_name: b.name.clone() })?;
            state.inner.registry.grant_role(&RoleGrant { user_id: principal.clone(), role: b.role, scope: None })?;
            state
                .inner
                .audit
                .append(AuditEvent::TokenCreated { name: b.name.clone(), principal: principal.clone(), created_by: who.user_id.clone() })
                .map_err(|e| ApiError::internal(format!("audit log: {e}")))?;
            Ok::<_, ApiError>(())
        })();
        if let Err(e) = rest {
            // A token whose secret was never shown must not stay usable.
            let _ = state.inner.tokens.revoke(&b.name, &who.user_id);
            return Err(e);
        }
        Ok((
            StatusCode::CREATED,
            Json(json!({"name": b.name, "principal": principal, "role": b.role, "token": secret.expose()})),
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
        require_owner(&state, &who.user_id)?;
        if name == who.name {
            return Err(ApiError::bad_request(
                "you cannot revoke the token you are using; another owner must",
            ));
        }
        let revoked = state
            .inner
            .tokens
            .revoke(&name, &who.user_id)
            .map_err(identity_error)?;
        if !revoked {
            return Err(ApiError::not_found(format!("no active token named {name}")));
        }
        // The operator's roles end with its token, so a later token under the same name
        // starts with only the role it is created with.
        let principal = ironclaw_identity::operator_user_id(&name).map_err(identity_error)?;
        for grant in state.inner.registry.roles_of(&principal)? {
            state.inner.registry.revoke_role(&grant)?;
        }
        state
            .inner
            .audit
            .append(AuditEvent::TokenRevoked {
                name: name.clone(),
                revoked_by: who.user_id,
            })
            .map_err(|e| ApiError::internal(format!("audit log: {e}")))?;
        Ok(Json(json!({"revoked": name})))
    })
    .await
}
