//! Platform retries: the same platform message routed once.
//!
//! For: recognising an event whose `(messaging group, platform_message_id)` was routed
//! moments ago — platforms redeliver a webhook when their first delivery timed out,
//! and without this a slow agent would receive every such message twice. The
//! messaging group stands for (channel type, instance, platform id): the registry
//! keeps exactly one per triple.
//!
//! Not for: durable, exactly-once delivery. The memory is bounded (a time window and
//! an entry cap, oldest forgotten first) and lost on restart; a retry arriving after
//! the window, after eviction or after a restart is routed again. An event whose
//! routing failed is forgotten at once, so the platform's retry is routed again
//! (at-least-once: wirings written before the failure see the message twice). A
//! retry arriving while the first attempt is still routing is a duplicate, even if
//! that attempt then fails.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ironclaw_contract::ids::MessagingGroupId;

type Key = (MessagingGroupId, String);

/// The recently routed platform messages.
pub(crate) struct RecentMessages {
    window: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    seen: HashMap<Key, Instant>,
    /// The keys of `seen` in claim order, oldest first (kept in step with `seen`).
    order: VecDeque<(Key, Instant)>,
}

impl RecentMessages {
    /// A window of `window`, holding at most `capacity` messages. Either being zero
    /// turns deduplication off.
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation below leaves both collections consistent before it could
        // panic (they only allocate), so a poisoned lock still guards a valid state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `(mg, platform_message_id)` for routing: `None` if it was claimed within
    /// the window (a duplicate), otherwise a claim that is kept by [`Claim::keep`] and
    /// released if dropped without it (routing failed, or panicked).
    pub(crate) fn claim(
        &self,
        mg: &MessagingGroupId,
        platform_message_id: &str,
    ) -> Option<Claim<'_>> {
        if self.window.is_zero() || self.capacity == 0 {
            return Some(Claim {
                recent: self,
                key: None,
            });
        }
        let now = Instant::now();
        let key = (mg.clone(), platform_message_id.to_owned());
        let mut inner = self.lock();
        inner.expire(now, self.window);
        if inner.seen.contains_key(&key) {
            return None;
        }
        while inner.seen.len() >= self.capacity {
            let Some((old, _)) = inner.order.pop_front() else {
                break;
            };
            inner.seen.remove(&old);
        }
        inner.seen.insert(key.clone(), now);
        inner.order.push_back((key.clone(), now));
        Some(Claim {
            recent: self,
            key: Some(key),
        })
    }

    fn release(&self, key: &Key) {
        let mut inner = self.lock();
        if inner.seen.remove(key).is_some() {
            // Rare (routing failures only), so a linear scan is fine.
            inner.order.retain(|(k, _)| k != key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().seen.len()
    }
}

impl Inner {
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some((key, at)) = self.order.front() {
            if now.duration_since(*at) < window {
                break;
            }
            self.seen.remove(key);
            self.order.pop_front();
        }
    }
}

/// A claimed platform message; released on drop unless kept.
pub(crate) struct Claim<'a> {
    recent: &'a RecentMessages,
    key: Option<Key>,
}

impl Claim<'_> {
    /// Routing succeeded: remember the message for the rest of the window.
    pub(crate) fn keep(mut self) {
        self.key = None;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.recent.release(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mg(s: &str) -> MessagingGroupId {
        MessagingGroupId::new(s).unwrap()
    }

    #[test]
    fn kept_claims_are_duplicates_and_released_ones_are_not() {
        let r = RecentMessages::new(Duration::from_secs(60), 10);
        r.claim(&mg("a"), "1").unwrap().keep();
        assert!(r.claim(&mg("a"), "1").is_none());
        // Another group or another message id is not a duplicate.
        r.claim(&mg("b"), "1").unwrap().keep();
        r.claim(&mg("a"), "2").unwrap().keep();
        // A claim dropped without `keep` (a failed route) is forgotten.
        drop(r.claim(&mg("a"), "3").unwrap());
        r.claim(&mg("a"), "3").unwrap().keep();
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn an_in_flight_claim_is_a_duplicate() {
        let r = RecentMessages::new(Duration::from_secs(60), 10);
        let first = r.claim(&mg("a"), "1").unwrap();
        assert!(r.claim(&mg("a"), "1").is_none());
        first.keep();
    }

    #[test]
    fn capacity_evicts_the_oldest() {
        let r = RecentMessages::new(Duration::from_secs(60), 2);
        for id in ["1", "2", "3"] {
            r.claim(&mg("a"), id).unwrap().keep();
        }
        assert_eq!(r.len(), 2);
        assert!(r.claim(&mg("a"), "3").is_none());
        assert!(r.claim(&mg("a"), "2").is_none());
        r.claim(&mg("a"), "1").unwrap().keep();
    }

    #[test]
    fn the_window_expires() {
        let r = RecentMessages::new(Duration::from_millis(20), 10);
        r.claim(&mg("a"), "1").unwrap().keep();
        std::thread::sleep(Duration::from_millis(40));
        r.claim(&mg("a"), "1").unwrap().keep();
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn zero_window_or_capacity_turns_it_off() {
        for r in [
            RecentMessages::new(Duration::ZERO, 10),
            RecentMessages::new(Duration::from_secs(1), 0),
        ] {
            r.claim(&mg("a"), "1").unwrap().keep();
            r.claim(&mg("a"), "1").unwrap().keep();
            assert_eq!(r.len(), 0);
        }
    }
}
