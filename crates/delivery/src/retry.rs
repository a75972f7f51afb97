//! Per-message retry state: exponential backoff between attempts, dead letter after
//! [`MAX_ATTEMPTS`] or at the first permanent failure.
//!
//! The state is in memory: after a restart a still-failing message gets a fresh set of
//! attempts, which is the safe direction (nothing is dead-lettered that might have
//! gone through). What a restart must never do — deliver twice — is prevented by the
//! durable `delivered` table, not by this.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ironclaw_contract::ids::MessageId;

/// Attempts before a retryable failure is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 8;
const BASE: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(300);

/// Why a message was not finished.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub message: String,
    /// Retrying cannot help (refused destination, invalid action, 4xx).
    pub permanent: bool,
    /// The platform asked to wait this long.
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
            retry_after: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Attempts {
    count: u32,
    next: Instant,
}

#[derive(Debug, Default)]
pub struct RetryState {
    failing: HashMap<MessageId, Attempts>,
}

impl RetryState {
    /// Whether the message may be attempted now.
    pub fn due(&self, id: &MessageId) -> bool {
        self.failing
            .get(id)
            .is_none_or(|a| Instant::now() >= a.next)
    }

    /// Records a failure; returns the attempts so far and whether to dead-letter.
    pub fn failed(&mut self, id: &MessageId, f: &Failure) -> (u32, bool) {
        let a = self.failing.entry(id.clone()).or_insert(Attempts {
            count: 0,
            next: Instant::now(),
        });
        a.count += 1;
        let backoff = BASE
            .checked_mul(1 << (a.count - 1).min(16))
            .unwrap_or(MAX_DELAY)
            .min(MAX_DELAY);
        a.next = Instant::now() + f.retry_after.unwrap_or(backoff).max(backoff.min(BASE));
        (a.count, f.permanent || a.count >= MAX_ATTEMPTS)
    }

    pub fn forget(&mut self, id: &MessageId) {
        self.failing.remove(id);
    }

    /// Messages currently waiting for a retry.
    pub fn len(&self) -> usize {
        self.failing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.failing.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_failures_back_off_then_dead_letter() {
        let mut s = RetryState::default();
        let id = MessageId::new("out-1").unwrap();
        assert!(s.due(&id));
        for n in 1..MAX_ATTEMPTS {
            assert_eq!(s.failed(&id, &Failure::retryable("503")), (n, false));
            assert!(!s.due(&id), "attempt {n} is not due at once");
        }
        assert_eq!(
            s.failed(&id, &Failure::retryable("503")),
            (MAX_ATTEMPTS, true)
        );
        s.forget(&id);
        assert!(s.due(&id) && s.is_empty());
    }

    #[test]
    fn a_permanent_failure_dead_letters_at_once_and_retry_after_is_honoured() {
        let mut s = RetryState::default();
        let a = MessageId::new("a").unwrap();
        assert_eq!(s.failed(&a, &Failure::permanent("403")), (1, true));
        let b = MessageId::new("b").unwrap();
        let mut f = Failure::retryable("429");
        f.retry_after = Some(Duration::from_secs(30));
        s.failed(&b, &f);
        let next = s.failing[&b].next;
        assert!(next >= Instant::now() + Duration::from_secs(29));
    }
}
