//! The `clock` check: the daemon's `Date` header against this host's clock, discounting
//! what the measurement itself blurs (whole seconds, the request's round trip). Audit
//! times and replay windows depend on the two agreeing.
//!
//! Not for: taking the measurement ([`super::daemon`]'s probe does, with the health
//! request).

use std::time::{Duration, SystemTime};

use super::finding::{fail, not_checked, pass, warn, Check};

/// The daemon's clock against ours.
#[derive(Debug, Clone)]
pub enum ClockFacts {
    /// The daemon's `Date` header and the local clock before and after the request.
    Observed {
        date: Option<String>,
        before: SystemTime,
        after: SystemTime,
    },
    Unknown,
}

/// How far apart the clocks are, beyond what the measurement itself blurs: the header
/// has whole seconds, and the request took `after - before`.
pub fn clock_skew(date: SystemTime, before: SystemTime, after: SystemTime) -> Duration {
    let rtt = after.duration_since(before).unwrap_or_default();
    let mid = before + rtt / 2;
    let raw = match date.duration_since(mid) {
        Ok(ahead) => ahead,
        Err(behind) => behind.duration(),
    };
    raw.saturating_sub(Duration::from_secs(1) + rtt / 2)
}

pub fn check_clock(f: &ClockFacts) -> Check {
    const N: &str = "clock";
    let fix = "enable time sync on both hosts (timedatectl set-ntp true, or chrony): audit times and replay windows depend on it";
    let ClockFacts::Observed {
        date,
        before,
        after,
    } = f
    else {
        return not_checked(N);
    };
    let Some(date) = date else {
        return warn(N, "the daemon sent no Date header", "upgrade the daemon");
    };
    let Ok(theirs) = httpdate::parse_http_date(date) else {
        return warn(
            N,
            format!("unreadable Date header {date:?}"),
            "upgrade the daemon",
        );
    };
    let skew = clock_skew(theirs, *before, *after).as_secs();
    if skew > 300 {
        fail(
            N,
            format!("this host and the daemon differ by ~{skew} s (> 5 min)"),
            fix,
        )
    } else if skew > 60 {
        warn(
            N,
            format!("this host and the daemon differ by ~{skew} s (> 60 s)"),
            fix,
        )
    } else {
        pass(N, "within a second or so of the daemon")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::level;
    use crate::doctor::finding::Level;

    #[test]
    fn clock_branches() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |offset: i64| {
            let t = if offset >= 0 {
                now + Duration::from_secs(offset as u64)
            } else {
                now - Duration::from_secs((-offset) as u64)
            };
            ClockFacts::Observed {
                date: Some(httpdate::fmt_http_date(t)),
                before: now,
                after: now + Duration::from_millis(20),
            }
        };
        let l = |f: ClockFacts| level(check_clock(&f));
        assert_eq!(l(at(0)), Level::Pass);
        assert_eq!(l(at(1)), Level::Pass);
        assert_eq!(l(at(-30)), Level::Pass);
        assert_eq!(l(at(90)), Level::Warn);
        assert_eq!(l(at(-90)), Level::Warn);
        assert_eq!(l(at(400)), Level::Fail);
        assert_eq!(l(at(-400)), Level::Fail);
        assert_eq!(
            l(ClockFacts::Observed {
                date: None,
                before: now,
                after: now
            }),
            Level::Warn
        );
        assert_eq!(
            l(ClockFacts::Observed {
                date: Some("yesterday".into()),
                before: now,
                after: now
            }),
            Level::Warn
        );
        assert_eq!(l(ClockFacts::Unknown), Level::Fail);
    }

    #[test]
    fn skew_discounts_the_measurement_blur() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let t1 = t0 + Duration::from_secs(4);
        // The request took 4 s: a Date 3 s after its midpoint is within the blur.
        assert_eq!(
            clock_skew(t0 + Duration::from_secs(5), t0, t1),
            Duration::ZERO
        );
        assert_eq!(
            clock_skew(t0 + Duration::from_secs(100), t0, t1),
            Duration::from_secs(95)
        );
    }
}
