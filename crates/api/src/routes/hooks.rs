//! Platform webhooks: `POST /hooks/{channel}` and `POST /hooks/{channel}/{instance}`.
//!
//! No bearer token here — platforms cannot send one. Each request is verified by its
//! channel adapter (HMAC signatures with a replay window, Slack's signing secret,
//! Telegram's secret token) before anything is parsed or queued; a forged, stale or
//! replayed request gets 401 and queues nothing. Verified events go to the router;
//! the sessions it names are launched if needed and rung.

use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ironclaw_channels::{InboundError, InboundOutcome};
use ironclaw_contract::ids::SessionId;
use serde_json::json;

use crate::error::ApiError;
use crate::ApiState;

/// Launches (if needed) and rings each session, in the background: the caller's
/// response does not wait for a sandbox to start.
pub(crate) fn wake(state: &ApiState, sessions: &[SessionId]) {
    let Some(manager) = state.inner.sessions.clone() else {
        return;
    };
    for sid in sessions {
        let (m, sid) = (manager.clone(), sid.clone());
        tokio::spawn(async move {
            match m.ensure_running(&sid).await {
                Ok(_) => {
                    m.ring(&sid);
                }
                Err(e) => tracing::warn!(session = %sid, error = %e, "waking the session failed"),
            }
        });
    }
}

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
            let Some(router) = state.inner.router.clone() else {
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "router_unavailable",
                    "this daemon routes no messages",
                )
                .into_response();
            };
            let adapter = channels.get(&channel, instance.as_deref());
            let routed = tokio::task::spawn_blocking(move || {
                let mut wake = Vec::new();
                for event in &events {
                    match router.route_inbound(event) {
                        Ok(report) => {
                            let reasons: Vec<String> =
                                report.outcomes.iter().map(|o| o.to_string()).collect();
                            tracing::info!(channel = %event.channel_type, platform = %event.platform_id, outcomes = ?reasons, "hook routed");
                            wake.extend(report.wake)
                        }
                        Err(e) => {
                            // Let the platform's retry through the adapter's dedup.
                            if let Some(a) = &adapter {
                                a.forget(event);
                            }
                            return Err((wake, e.to_string()));
                        }
                    }
                }
                Ok(wake)
            })
            .await;
            match routed {
                Ok(Ok(wake_list)) => {
                    wake(&state, &wake_list);
                    (StatusCode::OK, axum::Json(json!({"ok": true}))).into_response()
                }
                Ok(Err((wake_list, e))) => {
                    wake(&state, &wake_list);
                    tracing::error!(error = %e, "routing a verified hook failed");
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "routing_failed", e)
                        .into_response()
                }
                Err(e) => ApiError::internal(format!("worker failed: {e}")).into_response(),
            }
        }
    }
}
