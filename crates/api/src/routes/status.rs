//! `GET /v1/status` and `GET /v1/whoami`: what an operator checks first.
//!
//! Status is one read of everything cheap to count: version and uptime, readiness and
//! notices, the session runtime, changes by status, sessions by status and which are
//! parked, each channel adapter on or off, the model proxy's counters, the audit head.
//! Not here: anything that walks a large store (the audit chain is verified by
//! `/v1/audit/verify`, not on every status call) or any secret (channel and provider
//! credentials appear only as on/off and provider names).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use ironclaw_channels::{AdapterStatus, Availability};
use ironclaw_contract::enums::ChangeStatus;
use ironclaw_registry::SessionStatus;
use serde_json::{json, Value};

use super::blocking;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::{ApiState, ModelProxyCounters};

pub async fn status(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let inner = &state.inner;
        let mut changes = BTreeMap::new();
        for s in ChangeStatus::ALL {
            changes.insert(s.as_str(), inner.gateway.count(*s)?);
        }
        let proxy = inner
            .model_proxy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut sessions: BTreeMap<String, u64> = BTreeMap::new();
        let mut parked = Vec::new();
        for s in inner.registry.sessions()? {
            *sessions.entry(s.status.as_str().to_owned()).or_insert(0) += 1;
            // Two independent parkings: the sweep's (repeated failures, recorded in the
            // registry) and the model proxy's (budget, held in memory). Either one keeps
            // the session from working until an operator resumes it.
            let mut by = Vec::new();
            if s.status == SessionStatus::Parked {
                by.push("sweep");
            }
            if proxy.as_ref().is_some_and(|p| p.is_parked(&s.id)) {
                by.push("model_proxy");
            }
            if !by.is_empty() {
                parked.push(json!({
                    "id": s.id,
                    "agent_group_id": s.agent_group_id,
                    "parked_by": by,
                }));
            }
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
        let channels = inner
            .channels
            .as_ref()
            .map(|c| c.status().iter().map(channel).collect::<Vec<_>>());
        Ok(Json(json!({
            "version": inner.version,
            "started_at": inner.started_at,
            "uptime_seconds": inner.started.elapsed().as_secs(),
            "ready": not_ready.is_none(),
            "not_ready_reason": not_ready,
            "notices": notices,
            "runtime": inner.sessions.as_ref().map(|m| m.runtime_kind().as_str()),
            "changes": changes,
            "sessions": sessions,
            "parked_sessions": parked,
            "channels": channels,
            "model_proxy": proxy.map(|p| model_proxy(&p.counters())),
            "audit_last_seq": inner.audit.last_seq(),
        })))
    })
    .await
}

fn availability(a: &Availability) -> (&'static str, Option<&str>) {
    match a {
        Availability::On => ("on", None),
        Availability::Off(why) => ("off", Some(why.as_str())),
    }
}

/// One adapter: each direction on or off, and for off the setting that would turn it on.
fn channel(a: &AdapterStatus) -> Value {
    let (inbound, inbound_off) = availability(&a.inbound);
    let (outbound, outbound_off) = availability(&a.outbound);
    json!({
        "channel_type": a.channel_type,
        "instance": a.instance,
        "inbound": inbound,
        "inbound_off_reason": inbound_off,
        "outbound": outbound,
        "outbound_off_reason": outbound_off,
    })
}

fn model_proxy(c: &ModelProxyCounters) -> Value {
    let calls: u64 = c.calls.values().flat_map(|by| by.values()).sum();
    let refusals: u64 = c.refusals.values().sum();
    // JSON object keys are strings; statuses become "200", "429", ….
    let by_provider: BTreeMap<&str, BTreeMap<String, u64>> = c
        .calls
        .iter()
        .map(|(p, by)| {
            (
                p.as_str(),
                by.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            )
        })
        .collect();
    json!({
        "providers": c.providers,
        "calls": calls,
        "calls_by_provider": by_provider,
        "refusals": refusals,
        "refusals_by_reason": c.refusals,
        "input_tokens": c.input_tokens,
        "output_tokens": c.output_tokens,
    })
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
