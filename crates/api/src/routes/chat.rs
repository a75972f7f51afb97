//! Web chat: an authenticated operator talks to an agent group.
//!
//! `POST /v1/chat/send` records the message in the web chat store, makes sure the
//! conversation is a messaging group wired to the agent group, maps the operator to
//! the web identity `web:<name>` (a member of the group only if the operator may use
//! the group), and hands the message to the router like any channel's — provenance
//! `verified`, because the bearer token authenticated it. Replies arrive through
//! delivery into the same store: `GET …/messages?after=` reads them, `GET …/stream`
//! pushes them (server-sent events).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use ironclaw_audit::AuditEvent;
use ironclaw_channels::WebChat;
use ironclaw_contract::enums::{
    EngageMode, IgnoredMessagePolicy, Provenance, SenderScope, SessionMode, UnknownSenderPolicy,
};
use ironclaw_contract::ids::{AgentGroupId, UserId};
use ironclaw_registry::{User, Wiring};
use ironclaw_router::InboundEvent;
use serde::Deserialize;
use serde_json::{json, Value};

use super::parse_id;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::limits::ApiJson;
use crate::ApiState;

/// The channel type of the web chat.
pub const WEB: &str = "web";
const MAX_CONVERSATION_ID: usize = 64;

fn unavailable(what: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "chat_unavailable",
        format!("this daemon has no {what}"),
    )
}

fn web_chat(state: &ApiState) -> Result<std::sync::Arc<WebChat>, ApiError> {
    state
        .inner
        .channels
        .as_ref()
        .map(|c| c.web_chat().clone())
        .ok_or_else(|| unavailable("channels"))
}

fn check_conversation(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CONVERSATION_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid conversation_id: 1–{MAX_CONVERSATION_ID} of [A-Za-z0-9_-]"
        )))
    }
}

fn new_conversation() -> Result<String, ApiError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    Ok(format!("c{}", ironclaw_contract::hex::encode(&b)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    agent_group_id: String,
    text: String,
    #[serde(default)]
    conversation_id: Option<String>,
}

pub async fn send(
    State(state): State<ApiState>,
    Authed(who): Authed,
    ApiJson(body): ApiJson<SendBody>,
) -> Result<Json<Value>, ApiError> {
    let group: AgentGroupId = parse_id("agent_group_id", &body.agent_group_id)?;
    if body.text.trim().is_empty() {
        return Err(ApiError::bad_request("text is blank"));
    }
    let conversation = match body.conversation_id {
        Some(c) => {
            check_conversation(&c)?;
            c
        }
        None => new_conversation()?,
    };
    let chat = web_chat(&state)?;
    let router = state
        .inner
        .router
        .clone()
        .ok_or_else(|| unavailable("router"))?;
    let st = state.clone();
    let conv = conversation.clone();
    let text = body.text.clone();
    let (message, report) = tokio::task::spawn_blocking(move || {
        let registry = &st.inner.registry;
        if registry.agent_group(&group)?.is_none() {
            return Err(ApiError::not_found(format!("no agent group {group}")));
        }
        // The operator's web identity, a member of the group only if the operator
        // may use the group: the router's access rules then apply unchanged.
        let web_user = UserId::new(format!("{WEB}:{}", who.name))
            .map_err(|e| ApiError::internal(format!("web identity: {e}")))?;
        if !registry.access(&web_user, &group)?.allowed {
            if !registry.access(&who.user_id, &group)?.allowed {
                return Err(ApiError::forbidden(format!(
                    "{} may not use agent group {group}",
                    who.user_id
                )));
            }
            registry.put_user(User {
                id: web_user.clone(),
                kind: "human".into(),
                display_name: who.name.clone(),
            })?;
            registry.add_member(&web_user, &group)?;
            st.inner
                .audit
                .append(AuditEvent::RegistryChanged {
                    by: who.user_id.clone(),
                    what: format!("member {web_user} of {group} (web chat)"),
                })
                .map_err(|e| ApiError::internal(format!("audit log: {e}")))?;
        }
        // A read first: every message but a conversation's first finds its group, and
        // the create path takes the registry's write lock, which a busy console would
        // otherwise contend on for every message.
        let mg = match registry.find_messaging_group(WEB, &conv, None)? {
            Some(mg) => mg,
            None => registry.write(|tx| {
                tx.get_or_create_messaging_group(
                    WEB,
                    &conv,
                    None,
                    false,
                    UnknownSenderPolicy::Strict,
                )
            })?,
        };
        if !registry
            .wirings_for(&mg.id)?
            .iter()
            .any(|w| w.agent_group_id == group)
        {
            registry.put_wiring(Wiring {
                id: String::new(),
                messaging_group_id: mg.id.clone(),
                agent_group_id: group.clone(),
                engage_mode: EngageMode::Mention,
                engage_pattern: None,
                sender_scope: SenderScope::All,
                ignored_message_policy: IgnoredMessagePolicy::Drop,
                session_mode: SessionMode::Shared,
                priority: 1,
            })?;
        }
        let message = chat
            .post_user_message(&conv, None, &who.name, &text)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let event = InboundEvent {
            channel_type: WEB.into(),
            platform_id: conv.clone(),
            instance: None,
            thread_id: None,
            sender_handle: who.name.clone(),
            text,
            mentioned: true,
            provenance: Provenance::Verified,
            platform_message_id: Some(message.id.to_string()),
        };
        let report = router
            .route_inbound(&event)
            .map_err(|e| ApiError::internal(format!("routing: {e}")))?;
        Ok((message, report))
    })
    .await
    .map_err(|e| ApiError::internal(format!("worker failed: {e}")))??;
    super::hooks::wake(&state, &report.wake);
    Ok(Json(json!({
        "conversation_id": conversation,
        "message_id": message.id,
        "engaged": report.engaged(),
        "outcomes": report.outcomes.iter().map(|o| json!({
            "agent_group_id": o.agent_group_id,
            "session_id": o.session_id,
            "engaged": o.engaged,
            "reason": o.to_string(),
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfterQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn messages(
    State(state): State<ApiState>,
    Path(conversation): Path<String>,
    Query(q): Query<AfterQuery>,
) -> Result<Json<Value>, ApiError> {
    check_conversation(&conversation)?;
    let chat = web_chat(&state)?;
    let messages = chat.messages_after(&conversation, q.after, q.limit.unwrap_or(100).min(1000));
    Ok(Json(
        json!({"conversation_id": conversation, "messages": messages}),
    ))
}

pub async fn stream(
    State(state): State<ApiState>,
    Path(conversation): Path<String>,
) -> Result<Sse<impl futures_core::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    check_conversation(&conversation)?;
    let chat = web_chat(&state)?;
    let mut sub = chat.subscribe(&conversation);
    let stream = async_stream(move |tx| async move {
        loop {
            let event = match sub.recv().await {
                Ok(m) => Event::default()
                    .event("message")
                    .id(m.id.to_string())
                    .json_data(&m)
                    .unwrap_or_else(|_| Event::default().event("error")),
                Err(ironclaw_channels::webchat::SubscriptionError::Lagged { skipped }) => {
                    Event::default().event("lagged").data(format!(
                        "{skipped} messages missed; read them with GET …/messages?after="
                    ))
                }
                Err(_) => break,
            };
            if tx.send(Ok(event)).await.is_err() {
                break;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A stream fed by a task through a bounded channel (no extra stream crate needed).
fn async_stream<F, Fut>(f: F) -> impl futures_core::Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    ReceiverStream(rx)
}

struct ReceiverStream(tokio::sync::mpsc::Receiver<Result<Event, Infallible>>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Event, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
