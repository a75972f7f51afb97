//! Who sent a message, as a principal the registry can hold grants for.
//!
//! For: turning a platform's untrusted sender handle into `<channel_type>:<handle>`,
//! the id roles and memberships are granted to. Not for: deciding what that principal
//! may do (the registry's access precedence) or verifying the handle (the channel
//! adapter's signature check, recorded as the message's provenance).
//!
//! The channel type is prepended by the host, never taken from the handle: a handle is
//! cut at its first `:`, so a Slack user who calls themselves `operator:root` is
//! `slack:operator`, not the operator `root`.

use ironclaw_contract::ids::{UserId, SANDBOX_NAMESPACE};

/// Channel types that would make a platform sender speak as a host principal. A
/// `sandbox:*` id names a session's agent (which requests changes and may never
/// decide them); a channel must not be able to mint one.
pub(crate) const RESERVED_CHANNEL_TYPES: &[&str] = &[SANDBOX_NAMESPACE];

/// `<channel_type>:<handle>`: both trimmed, the handle cut at its first `:` (and the
/// kept part trimmed again). Total: any input gives a string, which may or may not be
/// a valid [`UserId`]; a sender whose string is not one (empty handle, characters
/// outside the id alphabet, too long) holds no grant.
///
/// ```
/// use ironclaw_router::namespace_user_id;
/// assert_eq!(namespace_user_id("slack", "other:owner"), "slack:other");
/// ```
pub fn namespace_user_id(channel_type: &str, handle: &str) -> String {
    let handle = handle.trim();
    let handle = handle.split_once(':').map_or(handle, |(before, _)| before);
    format!("{}:{}", channel_type.trim(), handle.trim())
}

/// The sender as a principal, or `None` when the handle cannot be one: it is empty, or
/// uses characters outside the [`UserId`] alphabet (`discord:bob#1234`), or is too
/// long. Such a sender can hold no grant, so it has no access of its own; only a
/// `public` messaging group lets it engage.
pub(crate) fn sender_principal(namespaced: &str) -> Option<UserId> {
    if namespaced.ends_with(':') {
        // An empty handle names nobody; granting `slack:` access would grant it to
        // every sender whose handle the adapter failed to read.
        return None;
    }
    UserId::new(namespaced).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's pinned examples.
    #[test]
    fn namespacing_table() {
        let cases = [
            (("slack", "alice"), "slack:alice"),
            (("discord", "bob#1234"), "discord:bob#1234"),
            (("slack", "other:owner"), "slack:other"),
            (("slack", "a:b:c"), "slack:a"),
            ((" slack ", " alice "), "slack:alice"),
            (("slack", ""), "slack:"),
            // Trimmed again after the cut.
            (("slack", " a :b"), "slack:a"),
            (("slack", ":x"), "slack:"),
        ];
        for ((channel, handle), want) in cases {
            assert_eq!(
                namespace_user_id(channel, handle),
                want,
                "{channel:?} {handle:?}"
            );
        }
    }

    #[test]
    fn principals() {
        assert_eq!(
            sender_principal("slack:alice").map(UserId::into_string),
            Some("slack:alice".to_owned())
        );
        assert_eq!(sender_principal("slack:"), None);
        assert_eq!(sender_principal("discord:bob#1234"), None);
        assert_eq!(sender_principal("slack:bob smith"), None);
        assert_eq!(
            sender_principal(&format!("slack:{}", "a".repeat(200))),
            None
        );
    }
}
