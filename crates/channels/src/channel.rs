//! The one trait every adapter implements, and the types that cross it.
//!
//! For: the contract between the HTTP layer / delivery and an adapter — what a
//! verified inbound request turns into ([`InboundOutcome`]), how a refusal maps to an
//! HTTP status ([`InboundError::status`]), what a send needs ([`OutboundMessage`]) and
//! how it fails ([`SendError`], retryable or permanent). Not for: any platform's wire
//! format (each adapter module owns its own) or routing (the router decides what an
//! event engages).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use ironclaw_ingest::InboundEvent;

/// Channel type of the signed generic webhook.
pub const WEBHOOK: &str = "webhook";
/// Channel type of Slack.
pub const SLACK: &str = "slack";
/// Channel type of Telegram.
pub const TELEGRAM: &str = "telegram";
/// Channel type of the web console chat.
pub const WEB: &str = "web";

/// Largest inbound request body any adapter reads. Real platform payloads are a few
/// KiB. The bound is checked before the signature is computed; the HTTP layer should
/// apply the same limit to the request body so an oversized one is never buffered.
pub const MAX_INBOUND_BODY: usize = 256 * 1024;

/// A channel adapter: verifies and parses what a platform sends us, and sends what an
/// agent writes back.
///
/// The inbound half is pure and synchronous (no I/O, the clock is a parameter), so the
/// HTTP layer can call it inline and tests can pin time. The outbound half blocks
/// (HTTP with retries and rate-limit waits): delivery calls it from a blocking thread.
pub trait Channel: Send + Sync {
    /// The channel type this adapter speaks: [`WEBHOOK`], [`SLACK`], [`TELEGRAM`] or [`WEB`].
    fn channel_type(&self) -> &'static str;

    /// The adapter instance (for channel types with one instance, the channel type).
    fn instance(&self) -> &str;

    /// Authenticates one inbound request and turns it into events.
    ///
    /// On `Err`, nothing may be queued: [`InboundError::status`] is the HTTP status to
    /// answer with. On `Ok`, every event carries `Provenance::Verified`.
    fn verify_and_parse(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<InboundOutcome, InboundError>;

    /// Tells the adapter that the events of an accepted request could not be queued,
    /// so a platform retry of `event` must be processed rather than ignored as a
    /// duplicate. The HTTP layer calls it before answering 5xx. Default: nothing to undo.
    fn forget(&self, _event: &InboundEvent) {}

    /// Sends one message, split into as many platform messages as its size limit needs.
    fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError>;
}

/// What an authenticated inbound request amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundOutcome {
    /// Messages for the ingest service, each with provenance `Verified`.
    Events(Vec<InboundEvent>),
    /// A protocol answer the HTTP layer must send with status 200 and nothing queued
    /// (Slack's `url_verification` challenge).
    Reply(ProtocolReply),
    /// Authentic, but nothing to route; answer 200 so the platform does not retry.
    Ignored(IgnoreReason),
}

/// A response body the platform's protocol requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolReply {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// Why an authentic request produced no event (for logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Our own bot wrote it (answering it would loop).
    OwnMessage,
    /// Another bot or an integration wrote it.
    BotMessage,
    /// Already accepted (a platform retry or redelivery); `retry` is the platform's
    /// retry counter when it sent one.
    Duplicate { retry: Option<u32> },
    /// An event type or subtype the adapter does not route (edits, joins, reactions…).
    Unsupported(String),
    /// A message without text (a sticker, a file without caption…).
    NoText,
}

/// Why an inbound request was refused. Every variant maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    // --- 401: not authenticated; nothing may be queued.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {name}: {reason}")]
    MalformedHeader { name: &'static str, reason: String },
    #[error("the signature (or secret token) does not match")]
    BadSignature,
    #[error("the request timestamp is {age_secs} s old; requests older than {window_secs} s are refused")]
    Stale { age_secs: u64, window_secs: u64 },
    #[error("the request timestamp is {ahead_secs} s in the future; at most {window_secs} s of clock skew is accepted")]
    FromFuture { ahead_secs: u64, window_secs: u64 },
    #[error("this exact signed request was already accepted (replay)")]
    Replayed,

    // --- 413
    #[error("the body is {len} bytes; the limit is {max}")]
    TooLarge { len: usize, max: usize },

    // --- 400: authentic but unusable.
    #[error("unparsable payload: {0}")]
    Malformed(String),
    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },

    // --- 404: no such hook (an adapter without inbound credentials does not exist).
    #[error("no inbound {channel} adapter {instance:?} is configured")]
    NotConfigured {
        channel: &'static str,
        instance: String,
    },

    // --- 503: the replay cache is full of live entries; refusing is the fail-closed
    // answer (evicting a live entry would let its replay through).
    #[error("too many signed requests inside the replay window; retry later")]
    Busy,
}

impl InboundError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            InboundError::MissingHeader(_)
            | InboundError::MalformedHeader { .. }
            | InboundError::BadSignature
            | InboundError::Stale { .. }
            | InboundError::FromFuture { .. }
            | InboundError::Replayed => StatusCode::UNAUTHORIZED,
            InboundError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            InboundError::Malformed(_) | InboundError::InvalidField { .. } => {
                StatusCode::BAD_REQUEST
            }
            InboundError::NotConfigured { .. } => StatusCode::NOT_FOUND,
            InboundError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short stable code for JSON error bodies and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            InboundError::MissingHeader(_) => "missing_signature",
            InboundError::MalformedHeader { .. } => "malformed_signature",
            InboundError::BadSignature => "bad_signature",
            InboundError::Stale { .. } => "stale_request",
            InboundError::FromFuture { .. } => "future_request",
            InboundError::Replayed => "replayed_request",
            InboundError::TooLarge { .. } => "payload_too_large",
            InboundError::Malformed(_) => "malformed_payload",
            InboundError::InvalidField { .. } => "invalid_payload",
            InboundError::NotConfigured { .. } => "not_found",
            InboundError::Busy => "busy",
        }
    }
}

/// One message to send: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub channel_type: String,
    /// The adapter instance; `None` means the channel type itself.
    pub instance: Option<String>,
    /// Chat / channel / conversation id on the platform.
    pub platform_id: String,
    pub thread_id: Option<String>,
    pub text: String,
    /// Idempotency key, normally the outbound queue row id. When a message split into
    /// several parts fails half-way, a retry with the same key resumes after the parts
    /// already sent instead of repeating them.
    pub message_id: Option<String>,
}

/// What a successful send did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendReceipt {
    /// The platform's id of each part that returned one, in order.
    pub platform_message_ids: Vec<String>,
    /// How many platform messages the text was split into.
    pub parts: usize,
}

impl SendReceipt {
    /// The id of the first part (what a single-id caller records).
    pub fn first_id(&self) -> Option<&str> {
        self.platform_message_ids.first().map(String::as_str)
    }
}

/// Why a send failed. Delivery retries [`SendError::Retryable`] later (honouring
/// `retry_after`) and dead-letters [`SendError::Permanent`] at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("{channel}: {reason} (retryable)")]
    Retryable {
        channel: &'static str,
        reason: String,
        /// The platform asked us to wait at least this long.
        retry_after: Option<Duration>,
    },
    #[error("{channel}: {reason}")]
    Permanent {
        channel: &'static str,
        reason: String,
    },
}

impl SendError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Permanent { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Retryable { retry_after, .. } => *retry_after,
            SendError::Permanent { .. } => None,
        }
    }

    pub(crate) fn permanent(channel: &'static str, reason: impl Into<String>) -> Self {
        SendError::Permanent {
            channel,
            reason: reason.into(),
        }
    }
}

/// Longest platform id, thread id, sender handle or message id accepted from a payload.
pub(crate) const MAX_ID_LEN: usize = 256;

/// Checks an identifier taken from an inbound payload: non-empty, bounded, no control
/// characters (ids end up in logs, registry keys and outbound URLs/bodies).
pub(crate) fn check_id(field: &'static str, value: &str) -> Result<(), InboundError> {
    match id_problem(value) {
        None => Ok(()),
        Some(reason) => Err(InboundError::InvalidField {
            field,
            reason: reason.to_owned(),
        }),
    }
}

/// The problem with an identifier, if any (shared by inbound checks and the web chat).
pub(crate) fn id_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        Some("must not be empty")
    } else if value.len() > MAX_ID_LEN {
        Some("longer than 256 bytes")
    } else if value.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    }
}

/// Refuses a body over [`MAX_INBOUND_BODY`] (before any signature work).
pub(crate) fn check_body_len(body: &[u8]) -> Result<(), InboundError> {
    if body.len() > MAX_INBOUND_BODY {
        return Err(InboundError::TooLarge {
            len: body.len(),
            max: MAX_INBOUND_BODY,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_are_401_and_nothing_else_is() {
        let auth = [
            InboundError::MissingHeader("x"),
            InboundError::MalformedHeader {
                name: "x",
                reason: String::new(),
            },
            InboundError::BadSignature,
            InboundError::Stale {
                age_secs: 1,
                window_secs: 1,
            },
            InboundError::FromFuture {
                ahead_secs: 1,
                window_secs: 1,
            },
            InboundError::Replayed,
        ];
        for e in auth {
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED, "{e}");
        }
        assert_eq!(
            InboundError::TooLarge { len: 2, max: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            InboundError::Malformed(String::new()).status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("platform_id", "C123").is_ok());
        assert!(check_id("platform_id", "").is_err());
        assert!(check_id("platform_id", "a\nb").is_err());
        assert!(check_id("platform_id", &"x".repeat(257)).is_err());
    }
}
