//! The records of the host data model.
//!
//! Plain data with public fields: a value of these types is *not* proof of validity
//! (anyone can build one). Validity is enforced where it matters, at every write
//! and at every read-back.

use ironclaw_contract::enums::{EngageMode, IgnoredMessagePolicy, SenderScope, SessionMode};
use ironclaw_contract::ids::{AgentGroupId, MessagingGroupId, SessionId, UserId};
use ironclaw_contract::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The model providers an agent group may name.
pub const PROVIDERS: &[&str] = &[
    "mock",
    "anthropic",
    "openai",
    "openrouter",
    "ollama",
    "openai-compatible",
];

/// The kinds of user.
pub const USER_KINDS: &[&str] = &["human", "operator", "bot"];

/// An agent group: one persona with its tools and grants, shared by its sessions.
///
/// Every field after `persona` is a capability. All of them are persisted (the Go
/// durable backend kept only id and name, so grants silently vanished on restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct AgentGroup {
    pub id: AgentGroupId,
    /// 1–80 characters, no control characters.
    pub name: String,
    /// One of [`PROVIDERS`].
    pub provider: String,
    /// The provider's model name; empty means the provider's default.
    pub model: String,
    /// At most 4096 bytes; trailing newlines are trimmed on write.
    #[serde(default)]
    pub persona: String,
    /// Tool names (`[a-z][a-z0-9_]{0,63}`), deduplicated, order kept. Empty means only
    /// the mandatory tools, never "all" (the Go system read empty as "every tool").
    #[serde(default)]
    pub enabled_tools: Vec<String>,
    /// Packages installed into the sandbox image.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Host paths mounted into the sandbox.
    #[serde(default)]
    pub mounts: Vec<MountGrant>,
    /// Hostnames the sandbox may reach.
    #[serde(default)]
    pub egress: Vec<String>,
    /// MCP servers and the tools of each the group may call.
    #[serde(default)]
    pub mcp_grants: Vec<McpGrant>,
    pub created_at: Timestamp,
}

impl AgentGroup {
    /// A group with no capabilities beyond the mandatory tools, created now.
    pub fn new(
        id: AgentGroupId,
        name: impl Into<String>,
        provider: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        Self {
            id,
            name: name.into(),
            provider: provider.into(),
            model: model.into(),
            persona: String::new(),
            enabled_tools: Vec::new(),
            packages: Vec::new(),
            mounts: Vec::new(),
            egress: Vec::new(),
            mcp_grants: Vec::new(),
            created_at: Timestamp::now(),
        }
    }
}

/// A host path mounted into an agent group's sandboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct MountGrant {
    /// Absolute host path.
    pub source: String,
    /// Absolute path inside the sandbox.
    pub target: String,
    pub read_only: bool,
}

/// Access to some tools of one MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct McpGrant {
    pub server: String,
    /// The tools granted, listed explicitly: an empty list is refused rather than read
    /// as "all declared tools" (which would let a server widen a grant by declaring
    /// more tools later).
    pub tools: Vec<String>,
}

/// One chat, channel or conversation on a platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct MessagingGroup {
    pub id: MessagingGroupId,
    pub channel_type: String,
    pub platform_id: String,
    /// Which installation of the channel; defaults to the channel type.
    pub instance: String,
    pub is_group: bool,
    pub unknown_sender_policy: ironclaw_contract::enums::UnknownSenderPolicy,
}

/// Routes a messaging group's messages to an agent group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Wiring {
    /// Minted (`wr_` + 16 hex) when empty.
    #[serde(default)]
    pub id: String,
    pub messaging_group_id: MessagingGroupId,
    pub agent_group_id: AgentGroupId,
    pub engage_mode: EngageMode,
    /// Required with [`EngageMode::Pattern`], refused with the other modes.
    #[serde(default)]
    pub engage_pattern: Option<String>,
    pub sender_scope: SenderScope,
    pub ignored_message_policy: IgnoredMessagePolicy,
    pub session_mode: SessionMode,
    #[serde(default)]
    pub priority: i64,
}

/// A principal known to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct User {
    pub id: UserId,
    /// One of [`USER_KINDS`].
    pub kind: String,
    pub display_name: String,
}

ironclaw_contract::wire_enum!(
    /// A privileged role.
    Role, "role", {
        /// Always global.
        Owner => "owner",
        /// Global, or scoped to one agent group.
        Admin => "admin",
    }
);

/// A role held by a user, globally (`scope: None`) or for one agent group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct RoleGrant {
    pub user_id: UserId,
    pub role: Role,
    #[serde(default)]
    pub scope: Option<AgentGroupId>,
}

/// Unprivileged access of a user to an agent group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Member {
    pub user_id: UserId,
    pub agent_group_id: AgentGroupId,
}

/// A target an agent group is permitted to send to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Destination {
    pub agent_group_id: AgentGroupId,
    pub channel_type: String,
    pub platform_id: String,
}

ironclaw_contract::wire_enum!(
    /// The lifecycle state of a session's sandbox.
    SessionStatus, "session status", {
        New => "new",
        Running => "running",
        Stopped => "stopped",
        Parked => "parked",
    }
);

/// One conversation of an agent group: one sandbox, one pair of queue files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Session {
    pub id: SessionId,
    pub agent_group_id: AgentGroupId,
    /// For `agent-shared` sessions: the messaging group of the first message.
    pub messaging_group_id: MessagingGroupId,
    /// Only `per-thread` sessions keep a thread.
    pub thread_id: Option<String>,
    /// The mode the session was created under; lookups under another mode never
    /// match it.
    pub mode: SessionMode,
    /// The partition key under `mode`: `<agent group>/<messaging group>` (shared),
    /// `<agent group>/<messaging group>/<thread or "">` (per-thread), or
    /// `<agent group>` (agent-shared). Unique together with `mode`.
    pub partition_key: String,
    pub status: SessionStatus,
    pub created_at: Timestamp,
    pub last_active: Timestamp,
}

ironclaw_contract::wire_enum!(
    /// Why [`crate::Registry::access`] allowed or denied.
    AccessReason, "access reason", {
        Owner => "owner",
        GlobalAdmin => "global-admin",
        ScopedAdmin => "scoped-admin",
        Member => "member",
        NoAccess => "no-access",
    }
);

/// The outcome of an access check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Access {
    pub allowed: bool,
    pub reason: AccessReason,
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::str::FromStr;

    use super::*;

    /// serde's derived names and the `as_str` strings (used in SQL) must agree.
    #[test]
    fn serde_names_equal_wire_strings() {
        fn check<T: Serialize + fmt::Display + FromStr + PartialEq + fmt::Debug>(all: &[T])
        where
            <T as FromStr>::Err: fmt::Debug,
        {
            for v in all {
                let json = serde_json::to_string(v).unwrap();
                assert_eq!(json, format!("\"{v}\""));
                assert_eq!(&v.to_string().parse::<T>().unwrap(), v);
            }
        }
        check(Role::ALL);
        check(SessionStatus::ALL);
        check(AccessReason::ALL);
        assert_eq!(AccessReason::GlobalAdmin.as_str(), "global-admin");
        assert!("Owner".parse::<Role>().is_err());
    }
}
