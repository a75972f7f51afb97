//! The normalised inbound message every channel adapter hands to the ingest service.
//!
//! Not for: platform-specific parsing or signature checks (the channel adapters do
//! those and record the result as `provenance`), or the checks routing makes before
//! anything is created or written (the router's).

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
