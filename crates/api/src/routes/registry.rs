//! Registry routes. Reads are open to any operator; writes here are limited to
//! identity and routing fields (users, messaging groups, operator roles) and need an
//! owner or a global admin. Everything that changes what an agent may do — persona,
//! tools, mounts, members, wirings, new agent groups — goes through the gateway as a
//! change request, never through these routes.

use axum::extract::{Path, Query, State};
use axum::Json;
use ironclaw_audit::AuditEvent;
use ironclaw_contract::enums::UnknownSenderPolicy;
use ironclaw_contract::ids::{AgentGroupId, MessagingGroupId, SessionId, UserId};
use ironclaw_registry::{Role, RoleGrant, User};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, parse_id};
use crate::auth::Authed;
use crate::error::ApiError;
use crate::limits::ApiJson;
use crate::ApiState;

fn audit_write(state: &ApiState, by: &UserId, what: String) -> Result<(), ApiError> {
    state
        .inner
        .audit
        .append(AuditEvent::RegistryChanged {
            by: by.clone(),
            what,
        })
        .map(|_| ())
        .map_err(|e| ApiError::internal(format!("audit log: {e}")))
}

fn require_admin(state: &ApiState, who: &UserId) -> Result<(), ApiError> {
    if state.inner.registry.is_owner_or_global_admin(who)? {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{who} is not an owner or global admin"
        )))
    }
}

fn require_owner(state: &ApiState, who: &UserId) -> Result<(), ApiError> {
    if state.inner.registry.is_owner(who)? {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("{who} is not an owner")))
    }
}

pub async fn agent_groups(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        Ok(Json(
            json!({"agent_groups": state.inner.registry.agent_groups()?}),
        ))
    })
    .await
}

pub async fn agent_group(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: AgentGroupId = parse_id("agent group id", &id)?;
    blocking(move || match state.inner.registry.agent_group(&id)? {
        Some(g) => Ok(Json(json!(g))),
        None => Err(ApiError::not_found(format!(
            "agent group {id} does not exist"
        ))),
    })
    .await
}

pub async fn members(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: AgentGroupId = parse_id("agent group id", &id)?;
    blocking(move || {
        Ok(Json(
            json!({"members": state.inner.registry.members_of(&id)?}),
        ))
    })
    .await
}

pub async fn destinations(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: AgentGroupId = parse_id("agent group id", &id)?;
    blocking(move || {
        Ok(Json(
            json!({"destinations": state.inner.registry.destinations_of(&id)?}),
        ))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingGroupBody {
    channel_type: String,
    platform_id: String,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    is_group: bool,
    #[serde(default)]
    unknown_sender_policy: Option<UnknownSenderPolicy>,
}

pub async fn create_messaging_group(
    State(state): State<ApiState>,
    Authed(who): Authed,
    ApiJson(b): ApiJson<MessagingGroupBody>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        require_admin(&state, &who.user_id)?;
        let existed = state
            .inner
            .registry
            .find_messaging_group(&b.channel_type, &b.platform_id, b.instance.as_deref())?
            .is_some();
        let mg = state.inner.registry.get_or_create_messaging_group(
            &b.channel_type,
            &b.platform_id,
            b.instance.as_deref(),
            b.is_group,
            b.unknown_sender_policy
                .unwrap_or(UnknownSenderPolicy::Strict),
        )?;
        if !existed {
            audit_write(
                &state,
                &who.user_id,
                format!(
                    "messaging group {} ({}:{})",
                    mg.id, mg.channel_type, mg.platform_id
                ),
            )?;
        }
        Ok(Json(json!(mg)))
    })
    .await
}

pub async fn messaging_group(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: MessagingGroupId = parse_id("messaging group id", &id)?;
    blocking(move || match state.inner.registry.messaging_group(&id)? {
        Some(g) => Ok(Json(json!(g))),
        None => Err(ApiError::not_found(format!(
            "messaging group {id} does not exist"
        ))),
    })
    .await
}

pub async fn wirings(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: MessagingGroupId = parse_id("messaging group id", &id)?;
    blocking(move || {
        Ok(Json(
            json!({"wirings": state.inner.registry.wirings_for(&id)?}),
        ))
    })
    .await
}

pub async fn user(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: UserId = parse_id("user id", &id)?;
    blocking(move || match state.inner.registry.user(&id)? {
        Some(u) => Ok(Json(json!(u))),
        None => Err(ApiError::not_found(format!("user {id} does not exist"))),
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    kind: String,
    #[serde(default)]
    display_name: String,
}

pub async fn put_user(
    State(state): State<ApiState>,
    Authed(who): Authed,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<UserBody>,
) -> Result<Json<Value>, ApiError> {
    let id: UserId = parse_id("user id", &id)?;
    blocking(move || {
        require_admin(&state, &who.user_id)?;
        let u = User {
            id: id.clone(),
            kind: b.kind,
            display_name: b.display_name,
        };
        state.inner.registry.put_user(u)?;
        audit_write(&state, &who.user_id, format!("user {id}"))?;
        Ok(Json(json!(state.inner.registry.user(&id)?)))
    })
    .await
}

#[derive(Deserialize)]
pub struct UserQuery {
    user_id: String,
}

pub async fn roles(
    State(state): State<ApiState>,
    Query(q): Query<UserQuery>,
) -> Result<Json<Value>, ApiError> {
    let id: UserId = parse_id("user_id", &q.user_id)?;
    blocking(move || Ok(Json(json!({"roles": state.inner.registry.roles_of(&id)?})))).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    user_id: UserId,
    role: Role,
    #[serde(default)]
    agent_group_id: Option<AgentGroupId>,
}

/// Operator roles decide who may approve changes, so only owners grant them.
pub async fn grant_role(
    State(state): State<ApiState>,
    Authed(who): Authed,
    ApiJson(b): ApiJson<RoleBody>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        require_owner(&state, &who.user_id)?;
        let grant = RoleGrant {
            user_id: b.user_id,
            role: b.role,
            scope: b.agent_group_id,
        };
        if state.inner.registry.grant_role(&grant)? {
            audit_write(
                &state,
                &who.user_id,
                format!(
                    "granted {:?} to {} (scope {:?})",
                    grant.role, grant.user_id, grant.scope
                ),
            )?;
        }
        Ok(Json(json!(grant)))
    })
    .await
}

pub async fn revoke_role(
    State(state): State<ApiState>,
    Authed(who): Authed,
    ApiJson(b): ApiJson<RoleBody>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        require_owner(&state, &who.user_id)?;
        let grant = RoleGrant {
            user_id: b.user_id,
            role: b.role,
            scope: b.agent_group_id,
        };
        if grant.user_id == who.user_id && grant.role == Role::Owner {
            return Err(ApiError::bad_request(
                "an owner cannot revoke their own owner role; another owner must",
            ));
        }
        let revoked = state.inner.registry.revoke_role(&grant)?;
        if revoked {
            audit_write(
                &state,
                &who.user_id,
                format!(
                    "revoked {:?} from {} (scope {:?})",
                    grant.role, grant.user_id, grant.scope
                ),
            )?;
        }
        Ok(Json(json!({"revoked": revoked})))
    })
    .await
}

pub async fn sessions(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    blocking(move || Ok(Json(json!({"sessions": state.inner.registry.sessions()?})))).await
}

pub async fn session(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: SessionId = parse_id("session id", &id)?;
    blocking(move || match state.inner.registry.session(&id)? {
        Some(s) => Ok(Json(json!(s))),
        None => Err(ApiError::not_found(format!("session {id} does not exist"))),
    })
    .await
}

#[derive(Deserialize)]
pub struct AccessQuery {
    user_id: String,
    agent_group_id: String,
}

pub async fn access(
    State(state): State<ApiState>,
    Query(q): Query<AccessQuery>,
) -> Result<Json<Value>, ApiError> {
    let user: UserId = parse_id("user_id", &q.user_id)?;
    let group: AgentGroupId = parse_id("agent_group_id", &q.agent_group_id)?;
    blocking(move || Ok(Json(json!(state.inner.registry.access(&user, &group)?)))).await
}
