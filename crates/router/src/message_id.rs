//! Ids of the inbound rows the router writes.
//!
//! Format `in_<unix-nanos>_<12 lowercase hex>` (the reference system's). Unique by
//! construction within a process: the nanosecond part is strictly increasing per
//! router (a clock that stalls or steps back is overtaken by one nanosecond per id),
//! so two rows of one fan-out, or two routes in the same nanosecond, never share it.
//! Across restarts (where the clock may have stepped back) the 48 random bits keep a
//! collision in one session's inbound file out of reach; if one happened anyway the
//! queue refuses the duplicate id rather than overwriting a row.

use std::sync::atomic::{AtomicU64, Ordering};

use ironclaw_contract::ids::{MessageId, MessagingGroupId};
use ironclaw_contract::time::Timestamp;
use sha2::{Digest, Sha256};

/// The row id of a platform message, as one wiring routes it: the same on every
/// delivery of the message, so a session's queue refuses a redelivery as a duplicate id
/// even after the router's memory of recent messages is gone (a restart, the window,
/// eviction). Per wiring, as rows were before: two wirings that share a session each
/// write their own row (one may accumulate while the other engages), and two agent
/// groups answering one message never share a reply id.
/// `inp_` + the first 128 bits of SHA-256 over the messaging group id, the wiring id and
/// the platform's id, NUL-separated, in hex. Ids contain no NUL, so inputs never
/// collide.
pub(crate) fn for_platform(
    mg: &MessagingGroupId,
    wiring: &str,
    platform_message_id: &str,
) -> Result<MessageId, String> {
    let mut h = Sha256::new();
    h.update(mg.as_str().as_bytes());
    h.update([0u8]);
    h.update(wiring.as_bytes());
    h.update([0u8]);
    h.update(platform_message_id.as_bytes());
    let hex = ironclaw_contract::hex::encode(&h.finalize()[..16]);
    // Always valid (36 bytes of letters, digits and '_'); the error path is for a
    // future change of the id alphabet, reported rather than panicking.
    MessageId::new(format!("inp_{hex}")).map_err(|e| e.to_string())
}

pub(crate) struct MessageIds {
    last_nanos: AtomicU64,
}

impl MessageIds {
    pub(crate) fn new() -> Self {
        Self {
            last_nanos: AtomicU64::new(0),
        }
    }

    /// A fresh id. Fails only if the OS random source does.
    pub(crate) fn mint(&self, now: Timestamp) -> Result<MessageId, String> {
        // Before 1970 or after 2554 only with a broken clock; the counter still
        // keeps ids unique.
        let now = u64::try_from(now.unix_nanos()).unwrap_or(0);
        let prev = self
            .last_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            // The closure always returns `Some`, so this is the `Ok` value either way.
            .unwrap_or_else(|v| v);
        let nanos = now.max(prev.saturating_add(1));
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| e.to_string())?;
        let hex = ironclaw_contract::hex::encode(&random);
        // Digits, lowercase hex and `_` are all in the message id alphabet, and the
        // length (at most 3 + 20 + 1 + 12) is far below its limit.
        MessageId::new(format!("in_{nanos}_{hex}")).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_strict_order() {
        let ids = MessageIds::new();
        let t = Timestamp::parse("2026-06-16T09:00:00Z").unwrap();
        let a = ids.mint(t).unwrap();
        let b = ids.mint(t).unwrap();
        let parts: Vec<&str> = a.as_str().split('_').collect();
        assert_eq!(parts.len(), 3, "{a}");
        assert_eq!(parts[0], "in");
        assert_eq!(parts[1], t.unix_nanos().to_string());
        assert_eq!(parts[2].len(), 12);
        assert!(parts[2]
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        let nanos = |id: &MessageId| {
            id.as_str()
                .split('_')
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        // Same clock reading, still a later nanosecond.
        assert_eq!(nanos(&b), nanos(&a) + 1);
        // A clock stepping back does not go back either.
        let earlier = Timestamp::parse("2020-01-01T00:00:00Z").unwrap();
        assert_eq!(nanos(&ids.mint(earlier).unwrap()), nanos(&a) + 2);
    }
}
