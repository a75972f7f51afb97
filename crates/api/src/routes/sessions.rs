//! Session control: list, start (without a message), stop, resume a parked session.
//! Starting, stopping and resuming act on a running system, so they need an owner or
//! admin of the session's agent group; listing is open to any operator.

use axum::extract::{Path, State};
use axum::Json;
use ironclaw_contract::ids::{AgentGroupId, SessionId, UserId};
use ironclaw_session::{LaunchOutcome, SessionError, SessionManager};
use serde::Deserialize;
use serde_json::{json, Value};

use super::parse_id;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::limits::ApiJson;
use crate::ApiState;

fn manager(state: &ApiState) -> Result<&std::sync::Arc<SessionManager>, ApiError> {
    state.inner.sessions.as_ref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "sessions_unavailable",
            "this daemon runs no sessions",
        )
    })
}

fn session_error(e: SessionError) -> ApiError {
    match e {
        SessionError::UnknownSession(_) | SessionError::UnknownGroup(_) => {
            ApiError::not_found(e.to_string())
        }
        SessionError::Parked(_) => {
            ApiError::new(axum::http::StatusCode::CONFLICT, "parked", e.to_string())
        }
        SessionError::Runtime(ironclaw_session::RuntimeError::Unavailable(_)) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "runtime_unavailable",
            e.to_string(),
        ),
        other => ApiError::internal(other.to_string()),
    }
}

fn require_group_admin(
    state: &ApiState,
    who: &UserId,
    group: &AgentGroupId,
) -> Result<(), ApiError> {
    if state.inner.registry.may_decide(who, group)? {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{who} is not an owner or admin of agent group {group}"
        )))
    }
}

fn group_of(state: &ApiState, id: &SessionId) -> Result<AgentGroupId, ApiError> {
    state
        .inner
        .registry
        .session(id)?
        .map(|s| s.agent_group_id)
        .ok_or_else(|| ApiError::not_found(format!("no session {id}")))
}

pub async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let live = match &state.inner.sessions {
        Some(m) => m.live().await,
        None => Vec::new(),
    };
    let registry = std::sync::Arc::clone(&state.inner.registry);
    let sessions = tokio::task::spawn_blocking(move || registry.sessions())
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))??;
    let rows: Vec<Value> = sessions
        .into_iter()
        .map(|s| {
            let l = live.iter().find(|l| l.session == s.id);
            json!({
                "id": s.id,
                "agent_group_id": s.agent_group_id,
                "status": s.status.as_str(),
                "mode": s.mode.as_str(),
                "runtime": l.map(|l| l.launched.runtime.as_str()),
                "runtime_version": l.map(|l| l.launched.runtime_version.clone()),
                "image_digest": l.and_then(|l| l.launched.image_digest.clone()),
                "started_at": l.map(|l| l.started_at),
                "last_active": s.last_active,
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": rows })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    agent_group_id: String,
}

fn outcome(id: &SessionId, o: &LaunchOutcome) -> Value {
    match o {
        LaunchOutcome::AlreadyRunning => json!({"id": id, "outcome": "already_running"}),
        LaunchOutcome::Launched(l) => json!({
            "id": id,
            "outcome": "launched",
            "runtime": l.launched.runtime.as_str(),
            "runtime_version": l.launched.runtime_version,
            "image_digest": l.launched.image_digest,
        }),
    }
}

pub async fn start(
    State(state): State<ApiState>,
    Authed(who): Authed,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<Json<Value>, ApiError> {
    let group: AgentGroupId = parse_id("agent group id", &body.agent_group_id)?;
    require_group_admin(&state, &who.user_id, &group)?;
    let (id, o) = manager(&state)?
        .start_for_group(&group)
        .await
        .map_err(session_error)?;
    Ok(Json(outcome(&id, &o)))
}

pub async fn stop(
    State(state): State<ApiState>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: SessionId = parse_id("session id", &id)?;
    let group = group_of(&state, &id)?;
    require_group_admin(&state, &who.user_id, &group)?;
    let was_running = manager(&state)?
        .stop(&id, &format!("stopped by {}", who.user_id))
        .await
        .map_err(session_error)?;
    Ok(Json(json!({"id": id, "was_running": was_running})))
}

pub async fn resume(
    State(state): State<ApiState>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: SessionId = parse_id("session id", &id)?;
    let group = group_of(&state, &id)?;
    require_group_admin(&state, &who.user_id, &group)?;
    let o = manager(&state)?.resume(&id).await.map_err(session_error)?;
    Ok(Json(outcome(&id, &o)))
}
