//! Token buckets (request rate) and token budgets (model usage).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// One token bucket per key. A bucket starts full (`burst`), refills continuously at
/// `per_second` up to `burst`, and each request costs one token.
#[derive(Debug)]
pub(crate) struct Buckets<K> {
    limit: RateLimit,
    map: HashMap<K, Bucket>,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let limit = RateLimit {
            per_second: if limit.per_second.is_finite() && limit.per_second > 0.0 {
                limit.per_second
            } else {
                // A non-positive rate would never refill; treat it as "burst only,
                // then one per hour" rather than dividing by zero below.
                1.0 / 3600.0
            },
            burst: limit.burst.max(1),
        };
        Self {
            limit,
            map: HashMap::new(),
        }
    }

    fn refill(&mut self, key: &K, now: Instant) -> &mut Bucket {
        let limit = self.limit;
        let b = self.map.entry(key.clone()).or_insert(Bucket {
            tokens: f64::from(limit.burst),
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        b.last = now;
        b
    }

    /// `Ok(())` if a token is available (without taking it), else how long until one is.
    pub(crate) fn check(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        let per_second = self.limit.per_second;
        let b = self.refill(key, now);
        if b.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_second))
        }
    }

    /// Takes one token (call after [`Buckets::check`] succeeded for every bucket that
    /// applies, so a refusal by one bucket does not drain another).
    pub(crate) fn take(&mut self, key: &K, now: Instant) {
        let b = self.refill(key, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }

    pub(crate) fn forget(&mut self, key: &K) {
        self.map.remove(key);
    }
}

/// Seconds for a `Retry-After` header: rounded up, at least 1.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let mut b = Buckets::new(RateLimit {
            per_second: 10.0,
            burst: 2,
        });
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(b.check(&"s", t0).is_ok());
            b.take(&"s", t0);
        }
        let wait = b.check(&"s", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        assert_eq!(retry_after_secs(wait), 1);
        // Keys are independent.
        assert!(b.check(&"other", t0).is_ok());
        // 100 ms later one token is back.
        assert!(b.check(&"s", t0 + Duration::from_millis(101)).is_ok());
    }

    #[test]
    fn zero_rate_and_burst_do_not_panic() {
        let mut b = Buckets::new(RateLimit {
            per_second: 0.0,
            burst: 0,
        });
        let t0 = Instant::now();
        assert!(b.check(&1, t0).is_ok());
        b.take(&1, t0);
        let wait = b.check(&1, t0).unwrap_err();
        assert!(wait > Duration::from_secs(3000));
    }
}
