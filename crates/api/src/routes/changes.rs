use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use ironclaw_contract::enums::{ChangeKind, Outcome};
use ironclaw_contract::ids::{AgentGroupId, ChangeId, UserId};
use ironclaw_gateway::{ChangeRecord, Submission};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, parse_id};
use crate::auth::Authed;
use crate::error::ApiError;
use crate::limits::ApiJson;
use crate::ApiState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    kind: String,
    agent_group_id: String,
    #[serde(default)]
    payload: Option<Value>,
    /// If given, must be the authenticated principal.
    #[serde(default)]
    requested_by: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

pub async fn submit(
    State(state): State<ApiState>,
    Authed(who): Authed,
    ApiJson(body): ApiJson<SubmitBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let kind: ChangeKind = body
        .kind
        .parse()
        .map_err(|e| ApiError::bad_request(format!("{e}")))?;
    let group: AgentGroupId = parse_id("agent_group_id", &body.agent_group_id)?;
    if let Some(claimed) = &body.requested_by {
        let claimed: UserId = parse_id("requested_by", claimed)?;
        if claimed != who.user_id {
            return Err(ApiError::forbidden(format!(
                "requested_by {claimed} is not the authenticated principal {}; omit it or use your own token",
                who.user_id
            )));
        }
    }
    let sub = Submission {
        kind,
        agent_group_id: group,
        payload: body.payload.unwrap_or(json!({})),
        reason: body.reason,
    };
    let gw = state.inner.gateway.clone();
    let rec = blocking(move || Ok(gw.submit(sub, &who.user_id)?)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": rec.request.id, "status": rec.status, "verdicts": rec.verdicts})),
    ))
}

pub async fn pending(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let gw = state.inner.gateway.clone();
    let changes = match gw.pending_cached() {
        Some(list) => list,
        None => blocking(move || Ok(gw.pending()?)).await?,
    };
    Ok(Json(json!({"changes": *changes})))
}

#[derive(Deserialize)]
pub struct LimitQuery {
    limit: Option<usize>,
}

pub async fn history(
    State(state): State<ApiState>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let gw = state.inner.gateway.clone();
    let changes = blocking(move || Ok(gw.history(limit)?)).await?;
    Ok(Json(json!({"changes": changes})))
}

pub async fn show(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ChangeRecord>, ApiError> {
    let id: ChangeId = parse_id("change id", &id)?;
    let gw = state.inner.gateway.clone();
    Ok(Json(blocking(move || Ok(gw.get(&id)?)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    outcome: String,
    /// If given, must be the authenticated principal.
    #[serde(default)]
    decided_by: Option<String>,
}

pub async fn decide(
    State(state): State<ApiState>,
    Authed(who): Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<ChangeRecord>, ApiError> {
    let id: ChangeId = parse_id("change id", &id)?;
    let outcome: Outcome = body
        .outcome
        .parse()
        .map_err(|_| ApiError::bad_request("outcome must be \"approve\" or \"reject\""))?;
    let claimed: Option<UserId> = body
        .decided_by
        .as_deref()
        .map(|s| parse_id("decided_by", s))
        .transpose()?;
    let gw = state.inner.gateway.clone();
    let rec =
        blocking(move || Ok(gw.decide(&id, outcome, &who.user_id, claimed.as_ref())?)).await?;
    Ok(Json(rec))
}

pub async fn retry(
    State(state): State<ApiState>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<ChangeRecord>, ApiError> {
    let id: ChangeId = parse_id("change id", &id)?;
    let gw = state.inner.gateway.clone();
    Ok(Json(
        blocking(move || Ok(gw.retry(&id, &who.user_id)?)).await?,
    ))
}
