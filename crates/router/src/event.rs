//! The checks the router makes on an [`InboundEvent`] before anything is created or
//! written.
//!
//! Not for: the event itself (`ironclaw_ingest::event`, re-exported here), or
//! platform-specific parsing or signature checks (the channel adapters do those and
//! record the result as `provenance`).

use ironclaw_contract::enums::Provenance;

pub use ironclaw_ingest::InboundEvent;

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

/// What can be checked without the registry (which checks the channel type, platform
/// id and instance alphabets itself when the messaging group is looked up, before
/// anything is written).
pub(crate) fn check(event: &InboundEvent) -> Result<Checked<'_>, crate::RouteError> {
    let invalid =
        |field: &'static str, reason: String| crate::RouteError::InvalidEvent { field, reason };
    if event.channel_type.is_empty() {
        return Err(invalid("channel_type", "must not be empty".into()));
    }
    if crate::sender::RESERVED_CHANNEL_TYPES.contains(&event.channel_type.as_str()) {
        return Err(invalid(
            "channel_type",
            format!("{:?} is a reserved principal namespace", event.channel_type),
        ));
    }
    if event.platform_id.is_empty() {
        return Err(invalid("platform_id", "must not be empty".into()));
    }
    if event.provenance == Provenance::Host {
        // Host provenance marks rows the host itself minted (schedules, answers,
        // agent-to-agent); a channel event claiming it would be trusted as such.
        return Err(invalid(
            "provenance",
            "a channel event is verified or unverified, never host".into(),
        ));
    }
    let thread = event.thread_id.as_deref().filter(|t| !t.is_empty());
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
    let platform_message_id = event
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
