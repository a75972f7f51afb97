use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::blocking;
use crate::error::ApiError;
use crate::ApiState;

#[derive(Deserialize)]
pub struct LimitQuery {
    limit: Option<usize>,
}

pub async fn tail(
    State(state): State<ApiState>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let audit = state.inner.audit.clone();
    let records = blocking(move || {
        audit
            .tail(limit)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    Ok(Json(json!({"records": records})))
}

pub async fn verify(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let audit = state.inner.audit.clone();
    blocking(move || {
        Ok(Json(match audit.verify() {
            Ok(r) => json!({"ok": true, "records": r.records, "last_seq": r.last_seq, "last_hash": r.last_hash}),
            Err(e) => json!({"ok": false, "error": e.to_string(), "seq": e.seq, "line": e.line}),
        }))
    })
    .await
}
