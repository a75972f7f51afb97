//! The normalised inbound message every channel adapter hands to the router, and the
//! checks the router makes on it before anything is created or written.
//!
//! Not for: platform-specific parsing or signature checks (the channel adapters do
//! those and record the result as `provenance`).

use ironclaw_contract::enums::Provenance;
use serde::{Deserialize, Serialize};

/// One message from a channel, after the adapter verified (or could not verify) where
/// it came from. Everything in it except `provenance` is what the platform claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundEvent {
    /// Platform name: `web`, `webhook`, `slack`, `telegram`, …
    pub channel_type: String,
    /// Chat or channel id on that platform.
    pub platform_id: String,
    /// Adapter instance (a workspace, a bot); `None` means the channel type itself.
    pub instance: Option<String>,
    /// Thread within the chat, if the platform has threads.
    pub thread_id: Option<String>,
    /// The platform-native sender handle (namespaced by the router as
    /// `<channel_type>:<handle>`).
    pub sender_handle: String,
    pub text: String,
    /// The agent was @-mentioned (or addressed directly, e.g. a DM or the web chat).
    pub mentioned: bool,
    /// Whether the adapter verified the platform's signature on this event.
    pub provenance: Provenance,
    /// The platform's id of this message, for dedup of platform retries.
    pub platform_message_id: Option<String>,
}

/// Longest thread id accepted: the registry's limit, checked here too so that a bad
/// thread is refused before any wiring writes (the registry would refuse it only at
/// the first session lookup, after earlier wirings had written).
pub const THREAD_ID_MAX_BYTES: usize = 256;

/// Longest platform message id accepted (it is kept in the dedup memory).
pub const PLATFORM_MESSAGE_ID_MAX_BYTES: usize = 256;

/// The parts of an event the router uses after checking them.
pub(crate) struct Checked<'a> {
    /// `None` for no thread or an empty one (a message outside any thread).
    pub thread: Option<&'a str>,
    /// `None` for no id or an empty one.
    pub platform_message_id: Option<&'a str>,
}

impl InboundEvent {
    /// What can be checked without the registry (which checks the channel type,
    /// platform id and instance alphabets itself when the messaging group is looked
    /// up, before anything is written).
    pub(crate) fn check(&self) -> Result<Checked<'_>, crate::RouteError> {
        let invalid =
            |field: &'static str, reason: String| crate::RouteError::InvalidEvent { field, reason };
        if self.channel_type.is_empty() {
            return Err(invalid("channel_type", "must not be empty".into()));
        }
        if crate::sender::RESERVED_CHANNEL_TYPES.contains(&self.channel_type.as_str()) {
            return Err(invalid(
                "channel_type",
                format!("{:?} is a reserved principal namespace", self.channel_type),
            ));
        }
        if self.platform_id.is_empty() {
            return Err(invalid("platform_id", "must not be empty".into()));
        }
        if self.provenance == Provenance::Host {
            // Host provenance marks rows the host itself minted (schedules, answers,
            // agent-to-agent); a channel event claiming it would be trusted as such.
            return Err(invalid(
                "provenance",
                "a channel event is verified or unverified, never host".into(),
            ));
        }
        let thread = self.thread_id.as_deref().filter(|t| !t.is_empty());
        if let Some(t) = thread {
            if t.len() > THREAD_ID_MAX_BYTES {
                return Err(invalid(
                    "thread_id",
                    format!("{} bytes; the limit is {THREAD_ID_MAX_BYTES}", t.len()),
                ));
            }
            if t.chars().any(char::is_control) {
                return Err(invalid("thread_id", "contains a control character".into()));
            }
        }
        let platform_message_id = self
            .platform_message_id
            .as_deref()
            .filter(|m| !m.is_empty());
        if let Some(m) = platform_message_id {
            if m.len() > PLATFORM_MESSAGE_ID_MAX_BYTES {
                return Err(invalid(
                    "platform_message_id",
                    format!(
                        "{} bytes; the limit is {PLATFORM_MESSAGE_ID_MAX_BYTES}",
                        m.len()
                    ),
                ));
            }
        }
        Ok(Checked {
            thread,
            platform_message_id,
        })
    }
}
