use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use ironclaw_contract::enums::ChangeStatus;
use serde_json::{json, Value};

use super::blocking;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::ApiState;

pub async fn status(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let inner = &state.inner;
        let mut changes = BTreeMap::new();
        for s in ChangeStatus::ALL {
            changes.insert(s.as_str(), inner.gateway.count(*s)?);
        }
        let mut sessions: BTreeMap<String, u64> = BTreeMap::new();
        for s in inner.registry.sessions()? {
            *sessions.entry(s.status.as_str().to_owned()).or_insert(0) += 1;
        }
        let not_ready = inner
            .not_ready
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let notices = inner
            .notices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(Json(json!({
            "version": inner.version,
            "uptime_seconds": inner.started.elapsed().as_secs(),
            "ready": not_ready.is_none(),
            "not_ready_reason": not_ready,
            "notices": notices,
            "changes": changes,
            "sessions": sessions,
            "audit_last_seq": inner.audit.last_seq(),
        })))
    })
    .await
}

pub async fn whoami(
    State(state): State<ApiState>,
    Authed(who): Authed,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let roles = state.inner.registry.roles_of(&who.user_id)?;
        Ok(Json(
            json!({"name": who.name, "user_id": who.user_id, "roles": roles}),
        ))
    })
    .await
}
