//! The web console chat: an in-memory, bounded conversation store with live updates.
//!
//! For: the API's chat endpoints — the user's messages are recorded when posted
//! ([`WebChat::post_user_message`]), agent replies arrive through [`Channel::send`]
//! from delivery, and the UI reads with [`WebChat::messages_after`] and follows
//! [`WebChat::subscribe`] (the API turns it into SSE). Not for: authentication (the
//! API's bearer auth covers every web chat request, so there is no inbound hook and
//! `verify_and_parse` refuses) or durability (the conversation itself lives in the
//! session queues; this is the console's view of it, lost on restart).
//!
//! Ids are one process-wide, strictly increasing sequence, seeded from the clock in
//! microseconds: after a restart new ids are still larger than any a browser holds, so
//! `messages_after(old_cursor)` keeps working. Bounds: the newest
//! `max_messages_per_conversation` messages per conversation, and at most
//! `max_conversations` conversations (the least recently active is dropped).
//!
//! Following without gaps: subscribe first, then read `messages_after(cursor)`, then
//! take live messages skipping ids ≤ the last one read. A subscriber that falls more
//! than [`LIVE_BUFFER`] messages behind gets [`SubscriptionError::Lagged`] and catches up
//! with `messages_after`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use ironclaw_contract::enums::Provenance;
use ironclaw_contract::rows::MAX_CONTENT_BYTES;
use ironclaw_contract::time::Timestamp;
use ironclaw_ingest::InboundEvent;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::channel::{
    id_problem, Channel, InboundError, InboundOutcome, OutboundMessage, SendError, SendReceipt, WEB,
};
use crate::config::WebChatConfig;

/// Live messages buffered for slow subscribers.
pub const LIVE_BUFFER: usize = 1024;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Agent,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebChatMessage {
    pub id: u64,
    pub conversation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    pub role: Role,
    /// The user's handle for user messages; `None` for agent replies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    pub text: String,
    pub timestamp: Timestamp,
}

impl WebChatMessage {
    /// A user's message as the ingest service takes it: provenance `verified` (the
    /// API's bearer token authenticated the operator), addressed to the agent
    /// (`mentioned`), its store id as the platform message id.
    pub fn inbound_event(&self) -> InboundEvent {
        InboundEvent {
            channel_type: WEB.into(),
            platform_id: self.conversation.clone(),
            instance: None,
            thread_id: self.thread_id.clone(),
            sender_handle: self.sender.clone().unwrap_or_default(),
            text: self.text.clone(),
            mentioned: true,
            provenance: Provenance::Verified,
            platform_message_id: Some(self.id.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebChatError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// Messages were missed; read them with `messages_after`.
    #[error("{skipped} live messages were missed")]
    Lagged { skipped: u64 },
    #[error("the web chat store is gone")]
    Closed,
}

#[derive(Debug)]
struct Conversation {
    messages: VecDeque<WebChatMessage>,
    last_id: u64,
}

#[derive(Debug)]
struct State {
    next_id: u64,
    conversations: HashMap<String, Conversation>,
}

/// The store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct WebChat {
    limits: WebChatConfig,
    state: Mutex<State>,
    live: broadcast::Sender<WebChatMessage>,
}

impl WebChat {
    pub fn new(limits: WebChatConfig) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
            .unwrap_or(0);
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Self {
            limits: WebChatConfig {
                max_messages_per_conversation: limits.max_messages_per_conversation.max(1),
                max_conversations: limits.max_conversations.max(1),
            },
            state: Mutex::new(State {
                next_id: seed.max(1),
                conversations: HashMap::new(),
            }),
            live,
        }
    }

    /// Records a message the user posted (the API calls this, then routes it).
    pub fn post_user_message(
        &self,
        conversation: &str,
        thread_id: Option<&str>,
        sender: &str,
        text: &str,
    ) -> Result<WebChatMessage, WebChatError> {
        check("sender", sender)?;
        self.append(conversation, thread_id, Role::User, Some(sender), text)
    }

    /// Records an agent reply (what [`Channel::send`] does).
    pub fn post_agent_reply(
        &self,
        conversation: &str,
        thread_id: Option<&str>,
        text: &str,
    ) -> Result<WebChatMessage, WebChatError> {
        self.append(conversation, thread_id, Role::Agent, None, text)
    }

    /// Up to `limit` messages of `conversation` with an id greater than `after_id`,
    /// oldest first. Unknown conversation → empty.
    pub fn messages_after(
        &self,
        conversation: &str,
        after_id: u64,
        limit: usize,
    ) -> Vec<WebChatMessage> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .conversations
            .get(conversation)
            .map(|c| {
                c.messages
                    .iter()
                    .filter(|m| m.id > after_id)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Live messages of `conversation` from now on.
    pub fn subscribe(&self, conversation: &str) -> WebChatSubscription {
        WebChatSubscription {
            conversation: conversation.to_owned(),
            rx: self.live.subscribe(),
        }
    }

    fn append(
        &self,
        conversation: &str,
        thread_id: Option<&str>,
        role: Role,
        sender: Option<&str>,
        text: &str,
    ) -> Result<WebChatMessage, WebChatError> {
        check("conversation", conversation)?;
        if let Some(t) = thread_id {
            check("thread_id", t)?;
        }
        if text.trim().is_empty() {
            return Err(WebChatError::Invalid {
                field: "text",
                reason: "must not be empty".into(),
            });
        }
        if text.len() > MAX_CONTENT_BYTES {
            return Err(WebChatError::Invalid {
                field: "text",
                reason: format!("{} bytes; the limit is {MAX_CONTENT_BYTES}", text.len()),
            });
        }
        // Poison: every mutation below leaves the state consistent at each step.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let id = state.next_id;
        state.next_id = id.saturating_add(1);
        let msg = WebChatMessage {
            id,
            conversation: conversation.to_owned(),
            thread_id: thread_id.map(str::to_owned),
            role,
            sender: sender.map(str::to_owned),
            text: text.to_owned(),
            timestamp: Timestamp::now(),
        };
        if !state.conversations.contains_key(conversation)
            && state.conversations.len() >= self.limits.max_conversations
        {
            let oldest = state
                .conversations
                .iter()
                .min_by_key(|(_, c)| c.last_id)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                state.conversations.remove(&k);
            }
        }
        let conv = state
            .conversations
            .entry(conversation.to_owned())
            .or_insert_with(|| Conversation {
                messages: VecDeque::new(),
                last_id: 0,
            });
        while conv.messages.len() >= self.limits.max_messages_per_conversation {
            conv.messages.pop_front();
        }
        conv.messages.push_back(msg.clone());
        conv.last_id = id;
        // Sent under the lock so live order equals id order. No subscriber is not an
        // error: the message is in the store for the next read.
        let _ = self.live.send(msg.clone());
        Ok(msg)
    }
}

fn check(field: &'static str, value: &str) -> Result<(), WebChatError> {
    match id_problem(value) {
        None => Ok(()),
        Some(reason) => Err(WebChatError::Invalid {
            field,
            reason: reason.into(),
        }),
    }
}

/// Live messages of one conversation.
#[derive(Debug)]
pub struct WebChatSubscription {
    conversation: String,
    rx: broadcast::Receiver<WebChatMessage>,
}

impl WebChatSubscription {
    /// The next live message of this conversation.
    pub async fn recv(&mut self) -> Result<WebChatMessage, SubscriptionError> {
        loop {
            match self.rx.recv().await {
                Ok(m) if m.conversation == self.conversation => return Ok(m),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    return Err(SubscriptionError::Lagged { skipped })
                }
                Err(broadcast::error::RecvError::Closed) => return Err(SubscriptionError::Closed),
            }
        }
    }

    /// The next live message if one is already waiting (`Ok(None)`: none yet).
    pub fn try_recv(&mut self) -> Result<Option<WebChatMessage>, SubscriptionError> {
        loop {
            match self.rx.try_recv() {
                Ok(m) if m.conversation == self.conversation => return Ok(Some(m)),
                Ok(_) => continue,
                Err(broadcast::error::TryRecvError::Empty) => return Ok(None),
                Err(broadcast::error::TryRecvError::Lagged(skipped)) => {
                    return Err(SubscriptionError::Lagged { skipped })
                }
                Err(broadcast::error::TryRecvError::Closed) => {
                    return Err(SubscriptionError::Closed)
                }
            }
        }
    }
}

impl Channel for WebChat {
    fn channel_type(&self) -> &'static str {
        WEB
    }

    fn instance(&self) -> &str {
        WEB
    }

    /// Web chat has no hook: messages enter through the authenticated API.
    fn verify_and_parse(
        &self,
        _headers: &HeaderMap,
        _body: &[u8],
        _now: SystemTime,
    ) -> Result<InboundOutcome, InboundError> {
        Err(InboundError::NotConfigured {
            channel: WEB,
            instance: WEB.into(),
        })
    }

    fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let m = self
            .post_agent_reply(&msg.platform_id, msg.thread_id.as_deref(), &msg.text)
            .map_err(|e| SendError::permanent(WEB, e.to_string()))?;
        Ok(SendReceipt {
            platform_message_ids: vec![m.id.to_string()],
            parts: 1,
        })
    }
}
