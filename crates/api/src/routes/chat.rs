//! Web chat: an authenticated operator talks to an agent group.
//!
//! `POST /v1/chat/send` opens the conversation to the agent group under the web chat
//! policy (`ironclaw_router::webchat`: the operator's web identity `web:<name>`, a
//! member of the group only if the operator may use the group; the messaging group and
//! its wiring), records the message in the web chat store, and hands it to the ingest
//! service like any channel's — provenance `verified`, because the bearer token
//! authenticated it. Replies arrive through delivery into the same store:
//! `GET …/messages?after=` reads them, `GET …/stream` pushes them (server-sent events).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use ironclaw_channels::WebChat;
use ironclaw_contract::ids::AgentGroupId;
use ironclaw_ingest::OnInvalid;
use ironclaw_router::webchat::{self, WebChatError, WebChatOperator};
use serde::Deserialize;
use serde_json::{json, Value};

use super::parse_id;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::limits::ApiJson;
use crate::ApiState;

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
    let ingest = state
        .inner
        .ingest
        .clone()
        .ok_or_else(|| unavailable("router"))?;
    let st = state.clone();
    let conv = conversation.clone();
    let text = body.text.clone();
    let (message, report) = tokio::task::spawn_blocking(move || {
        let operator = WebChatOperator {
            principal: &who.user_id,
            name: &who.name,
        };
        webchat::open_conversation(&st.inner.registry, &st.inner.audit, operator, &group, &conv)
            .map_err(web_chat_error)?;
        let message = chat
            .post_user_message(&conv, None, &who.name, &text)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let received = ingest.receive(&[message.inbound_event()], OnInvalid::Stop);
        if let Some(stopped) = received.stopped {
            return Err(ApiError::internal(format!("routing: {}", stopped.error)));
        }
        let report = received
            .reports
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::internal("routing: no report"))?;
        Ok((message, report))
    })
    .await
    .map_err(|e| ApiError::internal(format!("worker failed: {e}")))??;
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

/// The web chat policy's refusals as the API has always answered them.
fn web_chat_error(e: WebChatError) -> ApiError {
    match e {
        WebChatError::UnknownGroup(_) => ApiError::not_found(e.to_string()),
        WebChatError::Forbidden { .. } => ApiError::forbidden(e.to_string()),
        WebChatError::Registry(e) => e.into(),
        WebChatError::Identity(_) | WebChatError::Audit(_) => ApiError::internal(e.to_string()),
    }
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
