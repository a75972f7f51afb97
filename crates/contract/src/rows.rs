//! The rows of the two queue files.
//!
//! Rows come in two shapes: `New*` is what a writer hands in (no sequence number — the
//! writer's INSERT mints it, so a caller cannot pick one), and the plain struct is what
//! a reader gets back, with the minted `seq`.

use serde::{Deserialize, Serialize};

use crate::enums::{MessageKind, Provenance, Status};
use crate::ids::{AgentGroupId, MessageId, SessionId};
use crate::time::Timestamp;

/// Largest message content either side may write, in bytes. Readers refuse larger rows
/// (without loading them) rather than letting one row exhaust memory.
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;

/// Most rows one read returns; the next read continues where this one stopped.
pub const MAX_BATCH: usize = 1000;

fn check_content(content: &str) -> Result<(), crate::queue::QueueError> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(crate::queue::QueueError::Invalid {
            what: "message content",
            reason: format!("{} bytes; the limit is {MAX_CONTENT_BYTES}", content.len()),
        });
    }
    Ok(())
}

/// Where a message is going or coming from on a platform.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Route {
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub thread_id: Option<String>,
}

/// An inbound message as the host writes it. `status` is derived: `scheduled` when
/// `process_after` is set, `queued` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessageIn {
    pub id: MessageId,
    pub kind: MessageKind,
    pub timestamp: Timestamp,
    pub process_after: Option<Timestamp>,
    pub recurrence: Option<String>,
    pub series_id: Option<String>,
    /// True when the message should engage the agent; false when it only accumulates
    /// as context for the next engaging message.
    pub trigger: bool,
    pub route: Route,
    pub content: String,
    /// Set on agent-to-agent messages: the session that sent it.
    pub source_session_id: Option<SessionId>,
    pub provenance: Provenance,
}

impl NewMessageIn {
    /// Checks what the schema cannot: size limits. Every writer calls this.
    pub fn validate(&self) -> Result<(), crate::queue::QueueError> {
        check_content(&self.content)
    }

    /// The status this message is written with.
    pub fn status(&self) -> Status {
        if self.process_after.is_some() {
            Status::Scheduled
        } else {
            Status::Queued
        }
    }
}

/// An inbound message as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageIn {
    /// Host-minted, even, strictly increasing in write order.
    pub seq: i64,
    pub status: Status,
    pub tries: i64,
    #[serde(flatten)]
    pub message: NewMessageIn,
}

impl MessageIn {
    pub fn id(&self) -> &MessageId {
        &self.message.id
    }

    /// Whether the message may be processed at `now`.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.message.process_after.is_none_or(|t| t <= now)
    }
}

/// An outbound message as the sandbox writes it. The id is also its idempotency key:
/// writing the same id twice stores it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessageOut {
    pub id: MessageId,
    pub in_reply_to: Option<MessageId>,
    pub timestamp: Timestamp,
    pub deliver_after: Option<Timestamp>,
    pub kind: MessageKind,
    pub route: Route,
    pub content: String,
}

impl NewMessageOut {
    /// Checks what the schema cannot: size limits. Every writer calls this.
    pub fn validate(&self) -> Result<(), crate::queue::QueueError> {
        check_content(&self.content)
    }
}

/// An outbound message as the host reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageOut {
    /// Sandbox-minted, odd, strictly increasing in write order.
    pub seq: i64,
    #[serde(flatten)]
    pub message: NewMessageOut,
}

impl MessageOut {
    pub fn id(&self) -> &MessageId {
        &self.message.id
    }

    pub fn is_due(&self, now: Timestamp) -> bool {
        self.message.deliver_after.is_none_or(|t| t <= now)
    }
}

/// What a writer did with an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Stored with this new seq.
    Written { seq: i64 },
    /// The same message (same id, same content) was already stored with this seq.
    AlreadyPresent { seq: i64 },
}

impl WriteOutcome {
    pub fn seq(self) -> i64 {
        match self {
            WriteOutcome::Written { seq } | WriteOutcome::AlreadyPresent { seq } => seq,
        }
    }
}

/// The sandbox's claim on an inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessingAck {
    pub message_id: MessageId,
    /// `processing` or `completed`.
    pub status: Status,
    pub status_changed: Timestamp,
}

impl ProcessingAck {
    /// The position of this ack in `(status_changed, message_id)` order.
    pub fn cursor(&self) -> AckCursor {
        AckCursor {
            status_changed: self.status_changed,
            message_id: self.message_id.clone(),
        }
    }
}

/// A position in the acknowledgement stream; reading resumes after it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AckCursor {
    pub status_changed: Timestamp,
    pub message_id: MessageId,
}

/// A place the agent may send messages to, published by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub name: String,
    pub display_name: Option<String>,
    pub kind: String,
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub agent_group_id: Option<AgentGroupId>,
}

/// Where the session's replies go by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRouting {
    pub channel_type: String,
    pub platform_id: String,
    pub thread_id: Option<String>,
}

/// The host's durable record of one outbound message's delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub message_out_id: MessageId,
    /// `delivered` or `dead_letter`.
    pub status: Status,
    pub platform_message_id: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub updated_at: Timestamp,
}
