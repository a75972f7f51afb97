//! Per-destination token buckets for outbound sends.
//!
//! For: keeping each adapter under its platform's per-chat rate (Slack and Telegram
//! both allow about one message per second per conversation, with short bursts) so a
//! long split reply or a chatty agent is paced here instead of being answered 429.
//! Not for: inbound rate limiting (the API layer does that) or retry backoff
//! ([`crate::outbound`]).
//!
//! Time is a parameter (`Instant`), so the arithmetic is tested without sleeping.
//! Bounded: idle buckets (refilled to full) are dropped when the map grows past
//! [`MAX_DESTINATIONS`]; a dropped bucket is indistinguishable from a full one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Destinations tracked before idle buckets are pruned.
pub const MAX_DESTINATIONS: usize = 10_000;

/// Sustained rate and burst for one destination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second (> 0).
    pub per_second: f64,
    /// Bucket size: how many sends may go back to back (≥ 1).
    pub burst: f64,
}

impl Rate {
    pub const fn new(per_second: f64, burst: f64) -> Self {
        Self { per_second, burst }
    }

    fn sane(self) -> Self {
        let per_second = if self.per_second.is_finite() && self.per_second > 0.0 {
            self.per_second
        } else {
            1.0
        };
        let burst = if self.burst.is_finite() && self.burst >= 1.0 {
            self.burst
        } else {
            1.0
        };
        Self { per_second, burst }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate: rate.sane(),
            buckets: Mutex::default(),
        }
    }

    /// Takes one token for `key` at `now`, or says how long until one is available
    /// (nothing is taken then).
    pub fn try_acquire(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let Rate { per_second, burst } = self.rate;
        // Poison: each bucket is a plain value replaced whole; nothing is half-written.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_DESTINATIONS && !buckets.contains_key(key) {
            buckets.retain(|_, b| {
                let refill = now.saturating_duration_since(b.at).as_secs_f64() * per_second;
                b.tokens + refill < burst
            });
        }
        let b = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_second).min(burst);
        b.at = b.at.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_paced_per_destination() {
        let l = RateLimiter::new(Rate::new(2.0, 3.0));
        let t0 = Instant::now();
        for _ in 0..3 {
            l.try_acquire("C1", t0).unwrap();
        }
        let wait = l.try_acquire("C1", t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Another destination has its own bucket.
        l.try_acquire("C2", t0).unwrap();
        // After the wait, exactly one more.
        l.try_acquire("C1", t0 + wait).unwrap();
        assert!(l.try_acquire("C1", t0 + wait).is_err());
    }

    #[test]
    fn insane_rates_are_clamped() {
        let l = RateLimiter::new(Rate::new(f64::NAN, 0.0));
        let t0 = Instant::now();
        l.try_acquire("x", t0).unwrap();
        assert!(l.try_acquire("x", t0).is_err());
    }
}
