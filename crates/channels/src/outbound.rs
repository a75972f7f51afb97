//! The send loop every HTTP adapter shares: pace, attempt, retry, resume.
//!
//! For: turning "send these parts to this destination" into platform calls under a
//! per-destination token bucket, with bounded retries on transient failures that
//! honour the platform's `Retry-After`, and a typed verdict (retryable or permanent)
//! for delivery. Not for: what a platform call looks like (the adapter passes a
//! closure) or what counts as transient for a platform (the adapter classifies each
//! answer into an `Attempt`).
//!
//! Bounds: at most [`RetryPolicy::max_attempts`] tries per part and
//! [`RetryPolicy::max_total`] of waiting per `send`; a wait that would overrun the
//! budget is not slept but returned as `SendError::Retryable { retry_after }`, so a
//! blocking delivery thread is never parked for an hour-long `Retry-After`.
//!
//! Resume: when a split message fails after some parts went out, the parts already
//! sent are remembered under the message's idempotency key (bounded, in memory), and
//! the retry starts at the first unsent part — the reader never sees a part twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::channel::{OutboundMessage, SendError, SendReceipt};
use crate::ratelimit::{Rate, RateLimiter};

/// Split messages whose progress is remembered.
const MAX_IN_PROGRESS: usize = 1024;

/// Retry bounds for one `send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per part, the first included (≥ 1).
    pub max_attempts: u32,
    /// Most time one `send` may spend waiting (rate limit and retries together).
    pub max_total: Duration,
    /// First backoff when the platform gave no `Retry-After`; doubles per attempt.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            max_total: Duration::from_secs(30),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// What one platform call came to, as classified by the adapter.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Accepted; the platform's id of the message, if it gave one.
    Sent(Option<String>),
    /// Transient (429, 5xx, timeout, a platform's "ratelimited"): try again.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (bad token, unknown chat, message refused).
    Fail(String),
}

#[derive(Debug)]
struct Progress {
    /// SHA-256 of the destination and text, so a reused key with other content
    /// starts over instead of skipping parts.
    digest: [u8; 32],
    sent: usize,
    ids: Vec<String>,
}

#[derive(Debug, Default)]
struct ProgressTable {
    by_key: HashMap<String, Progress>,
    order: VecDeque<String>,
}

#[derive(Debug)]
pub(crate) struct Outbound {
    channel: &'static str,
    policy: RetryPolicy,
    limiter: RateLimiter,
    progress: Mutex<ProgressTable>,
}

impl Outbound {
    pub fn new(channel: &'static str, policy: RetryPolicy, rate: Rate) -> Self {
        Self {
            channel,
            policy: RetryPolicy {
                max_attempts: policy.max_attempts.max(1),
                ..policy
            },
            limiter: RateLimiter::new(rate),
            progress: Mutex::default(),
        }
    }

    /// Sends `parts` of `msg` in order, each through `attempt`.
    pub fn deliver<P: AsRef<str>>(
        &self,
        msg: &OutboundMessage,
        parts: &[P],
        mut attempt: impl FnMut(&str) -> Attempt,
    ) -> Result<SendReceipt, SendError> {
        let deadline = Instant::now() + self.policy.max_total;
        let key = msg.message_id.as_ref().map(|id| progress_key(msg, id));
        let digest = content_digest(msg);
        let (mut sent, mut ids) = match &key {
            Some(k) => self.resume(k, &digest),
            None => (0, Vec::new()),
        };
        let destination = format!(
            "{}\u{0}{}",
            msg.instance.as_deref().unwrap_or(""),
            msg.platform_id
        );
        while let Some(part) = parts.get(sent) {
            let result = self
                .pace(&destination, deadline)
                .and_then(|()| self.attempt_part(part.as_ref(), deadline, &mut attempt));
            match result {
                Ok(id) => {
                    ids.extend(id);
                    sent += 1;
                }
                Err(e) => {
                    if let Some(k) = &key {
                        if e.is_permanent() || sent == 0 {
                            self.forget(k);
                        } else {
                            self.remember(k, digest, sent, ids);
                        }
                    }
                    return Err(e);
                }
            }
        }
        if let Some(k) = &key {
            self.forget(k);
        }
        Ok(SendReceipt {
            platform_message_ids: ids,
            parts: parts.len(),
        })
    }

    /// Waits for a rate-limit token, or gives up (retryable) if that would overrun
    /// the budget.
    fn pace(&self, destination: &str, deadline: Instant) -> Result<(), SendError> {
        loop {
            let now = Instant::now();
            match self.limiter.try_acquire(destination, now) {
                Ok(()) => return Ok(()),
                Err(wait) if now + wait <= deadline => std::thread::sleep(wait),
                Err(wait) => {
                    return Err(SendError::Retryable {
                        channel: self.channel,
                        reason: "paced by the per-destination rate limit".into(),
                        retry_after: Some(wait),
                    })
                }
            }
        }
    }

    fn attempt_part(
        &self,
        part: &str,
        deadline: Instant,
        attempt: &mut impl FnMut(&str) -> Attempt,
    ) -> Result<Option<String>, SendError> {
        let mut n = 1u32;
        loop {
            match attempt(part) {
                Attempt::Sent(id) => return Ok(id),
                Attempt::Fail(reason) => return Err(SendError::permanent(self.channel, reason)),
                Attempt::Retry {
                    reason,
                    retry_after,
                } => {
                    let wait = retry_after
                        .filter(|d| !d.is_zero())
                        .unwrap_or_else(|| self.policy.backoff(n));
                    if n >= self.policy.max_attempts || Instant::now() + wait > deadline {
                        return Err(SendError::Retryable {
                            channel: self.channel,
                            reason,
                            retry_after: Some(wait),
                        });
                    }
                    std::thread::sleep(wait);
                    n += 1;
                }
            }
        }
    }

    fn resume(&self, key: &str, digest: &[u8; 32]) -> (usize, Vec<String>) {
        // Poison: the table's two collections are updated together with no panic
        // point between them.
        let mut t = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        match t.by_key.get(key) {
            Some(p) if &p.digest == digest => (p.sent, p.ids.clone()),
            Some(_) => {
                t.by_key.remove(key);
                t.order.retain(|k| k != key);
                (0, Vec::new())
            }
            None => (0, Vec::new()),
        }
    }

    fn remember(&self, key: &str, digest: [u8; 32], sent: usize, ids: Vec<String>) {
        let mut t = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        if !t.by_key.contains_key(key) {
            while t.order.len() >= MAX_IN_PROGRESS {
                match t.order.pop_front() {
                    Some(old) => {
                        t.by_key.remove(&old);
                    }
                    None => break,
                }
            }
            t.order.push_back(key.to_owned());
        }
        t.by_key
            .insert(key.to_owned(), Progress { digest, sent, ids });
    }

    fn forget(&self, key: &str) {
        let mut t = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        if t.by_key.remove(key).is_some() {
            t.order.retain(|k| k != key);
        }
    }
}

fn progress_key(msg: &OutboundMessage, id: &str) -> String {
    format!(
        "{}\u{0}{}\u{0}{}",
        msg.instance.as_deref().unwrap_or(""),
        msg.platform_id,
        id
    )
}

fn content_digest(msg: &OutboundMessage) -> [u8; 32] {
    let mut h = Sha256::new();
    for field in [
        msg.platform_id.as_str(),
        msg.thread_id.as_deref().unwrap_or(""),
        msg.text.as_str(),
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&h.finalize());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: Option<&str>) -> OutboundMessage {
        OutboundMessage {
            channel_type: "test".into(),
            instance: None,
            platform_id: "C1".into(),
            thread_id: None,
            text: "a b c".into(),
            message_id: id.map(str::to_owned),
        }
    }

    fn fast() -> Outbound {
        Outbound::new(
            "test",
            RetryPolicy {
                max_attempts: 3,
                max_total: Duration::from_secs(5),
                base_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
            },
            Rate::new(1000.0, 1000.0),
        )
    }

    #[test]
    fn retries_then_succeeds() {
        let o = fast();
        let mut calls = 0;
        let r = o
            .deliver(&msg(None), &["x"], |_| {
                calls += 1;
                if calls < 3 {
                    Attempt::Retry {
                        reason: "503".into(),
                        retry_after: None,
                    }
                } else {
                    Attempt::Sent(Some("id1".into()))
                }
            })
            .unwrap();
        assert_eq!(calls, 3);
        assert_eq!(r.first_id(), Some("id1"));
    }

    #[test]
    fn attempts_are_bounded_and_the_error_is_retryable() {
        let o = fast();
        let mut calls = 0;
        let e = o
            .deliver(&msg(None), &["x"], |_| {
                calls += 1;
                Attempt::Retry {
                    reason: "503".into(),
                    retry_after: None,
                }
            })
            .unwrap_err();
        assert_eq!(calls, 3);
        assert!(!e.is_permanent());
    }

    #[test]
    fn permanent_is_not_retried() {
        let o = fast();
        let mut calls = 0;
        let e = o
            .deliver(&msg(None), &["x"], |_| {
                calls += 1;
                Attempt::Fail("400".into())
            })
            .unwrap_err();
        assert_eq!(calls, 1);
        assert!(e.is_permanent());
    }

    #[test]
    fn a_long_retry_after_is_returned_not_slept() {
        let o = fast();
        let started = Instant::now();
        let e = o
            .deliver(&msg(None), &["x"], |_| Attempt::Retry {
                reason: "429".into(),
                retry_after: Some(Duration::from_secs(3600)),
            })
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn a_retry_resumes_after_the_parts_already_sent() {
        let o = fast();
        let m = msg(Some("out-1"));
        let mut seen = Vec::new();
        let e = o
            .deliver(&m, &["p1", "p2", "p3"], |p| {
                seen.push(p.to_owned());
                if p == "p2" {
                    Attempt::Retry {
                        reason: "503".into(),
                        retry_after: None,
                    }
                } else {
                    Attempt::Sent(Some(format!("id-{p}")))
                }
            })
            .unwrap_err();
        assert!(!e.is_permanent());
        assert_eq!(seen, ["p1", "p2", "p2", "p2"]);
        seen.clear();
        let r = o
            .deliver(&m, &["p1", "p2", "p3"], |p| {
                seen.push(p.to_owned());
                Attempt::Sent(Some(format!("id-{p}")))
            })
            .unwrap();
        assert_eq!(seen, ["p2", "p3"]);
        assert_eq!(r.platform_message_ids, ["id-p1", "id-p2", "id-p3"]);
        assert_eq!(r.parts, 3);
        // Done: the same key again is a fresh send.
        seen.clear();
        o.deliver(&m, &["p1", "p2", "p3"], |p| {
            seen.push(p.to_owned());
            Attempt::Sent(None)
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn other_content_under_the_same_key_starts_over() {
        let o = fast();
        let m = msg(Some("out-1"));
        let _ = o.deliver(&m, &["p1", "p2"], |p| {
            if p == "p1" {
                Attempt::Sent(None)
            } else {
                Attempt::Retry {
                    reason: "x".into(),
                    retry_after: None,
                }
            }
        });
        let mut other = m.clone();
        other.text = "something else".into();
        let mut seen = Vec::new();
        o.deliver(&other, &["q1", "q2"], |p| {
            seen.push(p.to_owned());
            Attempt::Sent(None)
        })
        .unwrap();
        assert_eq!(seen, ["q1", "q2"]);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(500));
        assert_eq!(p.backoff(2), Duration::from_secs(1));
        assert_eq!(p.backoff(10), Duration::from_secs(8));
        assert_eq!(p.backoff(100), Duration::from_secs(8));
    }
}
