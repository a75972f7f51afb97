use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::ApiState;

pub async fn healthz(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "version": state.inner.version}))
}

pub async fn readyz(State(state): State<ApiState>) -> Response {
    let reason = state
        .inner
        .not_ready
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let notices = state
        .inner
        .notices
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match reason {
        None => (
            StatusCode::OK,
            Json(json!({"status": "ready", "notices": notices})),
        )
            .into_response(),
        Some(r) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": r, "notices": notices})),
        )
            .into_response(),
    }
}

pub async fn metrics(State(state): State<ApiState>) -> Response {
    let body = state.inner.metrics.render(state.inner.gateway.stats());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
