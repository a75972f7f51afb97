//! Closed vocabularies and their exact wire strings.
//!
//! Each enum serializes to, and parses from, exactly the strings listed; anything else
//! is a typed [`UnknownValue`] error rather than an open string that some later
//! component has to second-guess.

/// A string that is not one of an enum's wire values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of: {expected}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Defines a closed vocabulary: the enum, its exact wire strings (`as_str`, `ALL`),
/// `Display`, `FromStr` with a typed [`UnknownValue`] error, and serde as those strings.
/// Exported so host crates define their own vocabularies the same way.
#[macro_export]
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            const EXPECTED: &'static str = concat!($($wire, " "),+);

            /// The exact wire string.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::enums::UnknownValue;
            fn from_str(s: &str) -> Result<Self, $crate::enums::UnknownValue> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err($crate::enums::UnknownValue {
                        what: $what,
                        value: s.chars().take(80).collect(),
                        expected: Self::EXPECTED.trim_ascii_end(),
                    }),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

wire_enum!(
    /// What a queue message is.
    MessageKind, "message kind", {
        Chat => "chat",
        Task => "task",
        Webhook => "webhook",
        /// A system action (see [`crate::actions`]); outbound only in practice.
        System => "system",
    }
);

wire_enum!(
    /// The queue status vocabulary. Which column may hold which value is pinned by the
    /// schema's CHECK constraints.
    Status, "status", {
        /// `messages_in`: an immediate message.
        Queued => "queued",
        /// `messages_in`: processable once `process_after` has passed.
        Scheduled => "scheduled",
        /// `processing_ack`: the sandbox has claimed the inbound message.
        Processing => "processing",
        /// `processing_ack`: the sandbox finished it; `messages_in`: the host retired it.
        Completed => "completed",
        /// `delivered`: the host delivered the outbound message (durable dedup marker).
        Delivered => "delivered",
        /// `delivered`: the host gave up on the outbound message after its retries.
        DeadLetter => "dead_letter",
    }
);

wire_enum!(
    /// Whether the host verified where an inbound message came from.
    Provenance, "provenance", {
        /// Signature / secret checked by the channel adapter.
        Verified => "verified",
        /// Accepted without a verifiable origin (e.g. a public channel).
        Unverified => "unverified",
        /// Minted by the host itself (scheduled tasks, answers, agent-to-agent).
        Host => "host",
    }
);

wire_enum!(
    /// How a wiring decides that a message engages its agent.
    EngageMode, "engage mode", {
        Pattern => "pattern",
        Mention => "mention",
        MentionSticky => "mention-sticky",
    }
);

wire_enum!(
    /// Which senders a wiring listens to.
    SenderScope, "sender scope", {
        All => "all",
        Known => "known",
    }
);

wire_enum!(
    /// What happens to a message that does not engage.
    IgnoredMessagePolicy, "ignored message policy", {
        Drop => "drop",
        Accumulate => "accumulate",
    }
);

wire_enum!(
    /// What happens to a message from a sender the registry does not know.
    UnknownSenderPolicy, "unknown sender policy", {
        Strict => "strict",
        RequestApproval => "request_approval",
        Public => "public",
    }
);

wire_enum!(
    /// How messages are partitioned into sessions.
    SessionMode, "session mode", {
        Shared => "shared",
        PerThread => "per-thread",
        AgentShared => "agent-shared",
    }
);

wire_enum!(
    /// The kinds of change a gateway holds for a human.
    ChangeKind, "change kind", {
        Persona => "persona",
        EnabledTools => "enabled_tools",
        Packages => "packages",
        Wiring => "wiring",
        Permissions => "permissions",
        Mounts => "mounts",
        CreateAgent => "create_agent",
        McpAccess => "mcp_access",
        SkillInstall => "skill_install",
        McpRegister => "mcp_register",
    }
);

wire_enum!(
    /// A verifier's opinion of a change request.
    Verdict, "verdict", {
        Pass => "pass",
        Reject => "reject",
        RequireHuman => "require_human",
    }
);

wire_enum!(
    /// Where a change request is in its life.
    ChangeStatus, "change status", {
        /// Held for a human.
        Pending => "pending",
        /// A human approved it; its effects are being applied.
        Approved => "approved",
        /// Its effects are committed.
        Applied => "applied",
        /// Approved, but applying failed; visible, and retryable by an operator.
        ApplyFailed => "apply_failed",
        /// Refused by a verifier or a human.
        Rejected => "rejected",
    }
);

wire_enum!(
    /// A human's decision on a change request.
    Outcome, "decision outcome", {
        Approve => "approve",
        Reject => "reject",
    }
);

wire_enum!(
    /// Named recurrences of a scheduled task (a positive duration is the other form).
    NamedRecurrence, "recurrence", {
        Hourly => "hourly",
        Daily => "daily",
        Weekly => "weekly",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_are_exact_and_round_trip() {
        let pairs: &[(&str, &str)] = &[
            (MessageKind::Chat.as_str(), "chat"),
            (Status::DeadLetter.as_str(), "dead_letter"),
            (EngageMode::MentionSticky.as_str(), "mention-sticky"),
            (
                UnknownSenderPolicy::RequestApproval.as_str(),
                "request_approval",
            ),
            (SessionMode::AgentShared.as_str(), "agent-shared"),
            (ChangeKind::McpRegister.as_str(), "mcp_register"),
            (Verdict::RequireHuman.as_str(), "require_human"),
        ];
        for (got, want) in pairs {
            assert_eq!(got, want);
        }
        for k in ChangeKind::ALL {
            assert_eq!(k.as_str().parse::<ChangeKind>().unwrap(), *k);
            let json = serde_json::to_string(k).unwrap();
            assert_eq!(serde_json::from_str::<ChangeKind>(&json).unwrap(), *k);
        }
        assert_eq!(ChangeKind::ALL.len(), 10);
    }

    #[test]
    fn unknown_values_are_typed_errors() {
        let e = "Chat".parse::<MessageKind>().unwrap_err();
        assert_eq!(e.what, "message kind");
        assert_eq!(e.expected, "chat task webhook system");
        assert!(serde_json::from_str::<ChangeKind>("\"set_persona\"").is_err());
        assert!(serde_json::from_str::<ChangeKind>("3").is_err());
    }
}
