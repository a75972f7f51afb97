//! Platform webhooks: `POST /hooks/{channel}` and `POST /hooks/{channel}/{instance}`.
//!
//! No bearer token here — platforms cannot send one. Each request is verified by its
//! channel adapter (HMAC signatures with a replay window, Slack's signing secret,
//! Telegram's secret token) before anything is parsed or queued; a forged, stale or
//! replayed request gets 401 and queues nothing. Verified events go to the ingest
//! service, which routes them and launches (if needed) and rings the sessions they
//! engaged; when it could not queue them all, the adapter forgets the ones not queued
//! (so the platform's retry is not dropped as a duplicate) and the answer is 503.

use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ironclaw_channels::{InboundError, InboundOutcome};
use ironclaw_ingest::OnInvalid;
use serde_json::json;

use crate::error::ApiError;
use crate::ApiState;

fn inbound_error(e: &InboundError) -> ApiError {
    let status = e.status();
    ApiError::new(status, e.code(), e.to_string())
}

pub async fn hook(
    State(state): State<ApiState>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, channel, None, headers, body).await
}

pub async fn hook_instance(
    State(state): State<ApiState>,
    Path((channel, instance)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, channel, Some(instance), headers, body).await
}

async fn handle(
    state: ApiState,
    channel: String,
    instance: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(channels) = state.inner.channels.clone() else {
        return ApiError::not_found("no channels are configured").into_response();
    };
    let outcome = match channels.verify_and_parse(
        &channel,
        instance.as_deref(),
        &headers,
        &body,
        SystemTime::now(),
    ) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(channel = %channel.chars().take(32).collect::<String>(), error = %e, "hook refused");
            return inbound_error(&e).into_response();
        }
    };
    match outcome {
        InboundOutcome::Reply(reply) => {
            ([(header::CONTENT_TYPE, reply.content_type)], reply.body).into_response()
        }
        InboundOutcome::Ignored(why) => {
            tracing::info!(channel = %channel, reason = ?why, "hook ignored");
            (
                StatusCode::OK,
                axum::Json(json!({"ok": true, "ignored": format!("{why:?}")})),
            )
                .into_response()
        }
        InboundOutcome::Events(events) => {
            let Some(ingest) = state.inner.ingest.clone() else {
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "router_unavailable",
                    "this daemon routes no messages",
                )
                .into_response();
            };
            let (events, received) = match ingest.receive_async(events, OnInvalid::Stop).await {
                Ok(r) => r,
                Err(e) => return ApiError::internal(format!("worker failed: {e}")).into_response(),
            };
            let Some(stopped) = &received.stopped else {
                return (StatusCode::OK, axum::Json(json!({"ok": true}))).into_response();
            };
            // Let the platform's retry through the adapter's dedup.
            if let Some(adapter) = channels.get(&channel, instance.as_deref()) {
                for event in received.unrouted(&events) {
                    adapter.forget(event);
                }
            }
            tracing::error!(error = %stopped.error, "routing a verified hook failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "routing_failed",
                stopped.error.to_string(),
            )
            .into_response()
        }
    }
}
