//! The replay cache: MACs of signed requests accepted inside the replay window.
//!
//! For: refusing an exact replay of a signed request while its timestamp is still
//! inside the window (after that, the window check refuses it). Not for: platform
//! retry dedup (that is [`crate::dedup`], keyed by message id, and answers
//! "ignored", not 401).
//!
//! Bounded: at most `capacity` live entries. When it is full of entries that have not
//! expired, a new request is refused with [`InboundError::Busy`] (503) rather than
//! evicting a live entry, which would re-open that request to replay. Only requests
//! with a valid signature are ever inserted, so only the secret's holder can fill it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use crate::channel::InboundError;

/// Live entries per verifier: far above any real platform's rate over five minutes
/// (~170 requests/s), and a few MiB at most.
pub(crate) const DEFAULT_CAPACITY: usize = 50_000;

#[derive(Debug, Default)]
struct Entries {
    /// MAC → expiry (unix seconds).
    by_mac: HashMap<[u8; 32], u64>,
    /// (expiry, MAC), to drop expired entries oldest first.
    by_expiry: BTreeSet<(u64, [u8; 32])>,
}

pub(crate) struct ReplayCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::default(),
        }
    }

    /// Records `mac` (valid until `expires`, unix seconds) or refuses it as a replay.
    pub fn insert(&self, mac: [u8; 32], expires: u64, now: u64) -> Result<(), InboundError> {
        // A poisoned lock only means another thread panicked mid-update; the two maps
        // are updated together below with no panic point in between, so the data is
        // still consistent and refusing every request from now on would be worse.
        let mut e = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(&(exp, old)) = e.by_expiry.first() {
            if exp >= now {
                break;
            }
            e.by_expiry.remove(&(exp, old));
            e.by_mac.remove(&old);
        }
        if e.by_mac.contains_key(&mac) {
            return Err(InboundError::Replayed);
        }
        if e.by_mac.len() >= self.capacity {
            return Err(InboundError::Busy);
        }
        e.by_mac.insert(mac, expires);
        e.by_expiry.insert((expires, mac));
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_mac
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_refused_until_expiry_then_forgotten() {
        let c = ReplayCache::new(10);
        c.insert([1; 32], 100, 50).unwrap();
        assert_eq!(c.insert([1; 32], 100, 60), Err(InboundError::Replayed));
        assert_eq!(c.insert([1; 32], 100, 100), Err(InboundError::Replayed));
        // Past its expiry the entry is pruned (the window check refuses it anyway).
        c.insert([2; 32], 200, 101).unwrap();
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn full_of_live_entries_fails_closed() {
        let c = ReplayCache::new(2);
        c.insert([1; 32], 100, 0).unwrap();
        c.insert([2; 32], 100, 0).unwrap();
        assert_eq!(c.insert([3; 32], 100, 0), Err(InboundError::Busy));
        // The live entries are still refused as replays (nothing was evicted).
        assert_eq!(c.insert([1; 32], 100, 0), Err(InboundError::Replayed));
        // Once they expire there is room again.
        c.insert([3; 32], 300, 101).unwrap();
    }
}
