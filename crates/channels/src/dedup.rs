//! A bounded set of platform message ids already accepted.
//!
//! For: recognising a platform's retry or redelivery of an event we already turned
//! into an [`InboundEvent`](ironclaw_ingest::InboundEvent) (Slack retries a request it
//! got no 200 for within 3 s; Telegram redelivers until it gets a 200), so it is
//! answered "ignored" instead of queued twice. Not for: security (an exact replay of a
//! signed request is refused by [`crate::replay`]); and not durable — after a restart a
//! retry is routed again, and the router's own dedup by `platform_message_id` is the
//! backstop.
//!
//! Bounded FIFO: when full, the oldest id is forgotten, which can only let a very late
//! retry through, never lose a message.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

/// Ids remembered per adapter.
pub(crate) const DEFAULT_CAPACITY: usize = 8192;

#[derive(Debug, Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

pub(crate) struct SeenIds {
    capacity: usize,
    seen: Mutex<Seen>,
}

impl std::fmt::Debug for SeenIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeenIds")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl SeenIds {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seen: Mutex::default(),
        }
    }

    /// Records `id`; false when it was already there.
    pub fn insert(&self, id: &str) -> bool {
        // Poison: the set and the queue are kept consistent at every panic-free step.
        let mut s = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if s.set.contains(id) {
            return false;
        }
        while s.order.len() >= self.capacity {
            match s.order.pop_front() {
                Some(old) => {
                    s.set.remove(&old);
                }
                None => break,
            }
        }
        s.set.insert(id.to_owned());
        s.order.push_back(id.to_owned());
        true
    }

    /// Forgets `id` (its events could not be queued; the platform's retry must pass).
    pub fn remove(&self, id: &str) {
        let mut s = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if s.set.remove(id) {
            s.order.retain(|x| x != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let s = SeenIds::new(2);
        assert!(s.insert("a"));
        assert!(!s.insert("a"));
        assert!(s.insert("b"));
        assert!(s.insert("c")); // evicts "a"
        assert!(s.insert("a"));
        s.remove("a");
        assert!(s.insert("a"));
    }
}
