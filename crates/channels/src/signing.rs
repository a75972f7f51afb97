//! Request signatures: HMAC-SHA256 over a timestamped base string, compared in
//! constant time, inside a replay window, with exact replays refused.
//!
//! For: the signed webhook (`sha256=` over `ts "." body`) and Slack (`v0=` over
//! `"v0:" ts ":" body`), which share everything but the header names and the base
//! string; and for producing the webhook's outbound signature. Not for: Telegram,
//! whose only proof is a shared secret token (see `telegram`), or for parsing
//! payloads (only authenticated bytes reach a parser).
//!
//! Security reasoning, in the order the checks run:
//! 1. The signature is checked first, so only a holder of the secret learns anything
//!    about our clock or replay state from the error it gets.
//! 2. The MAC is recomputed and compared with `subtle::ConstantTimeEq`: the time taken
//!    does not depend on how many leading bytes of a forged signature were right.
//! 3. The timestamp must lie within ±[`REPLAY_WINDOW`] of `now`, so a captured request
//!    is useless after five minutes (and a request "from the future" cannot be banked
//!    for later).
//! 4. Inside the window, a replay cache of the MACs already accepted refuses an
//!    exact replay. The MAC is a function of (timestamp, body), so a legitimate retry
//!    must be re-signed with a fresh timestamp — which both our outbound webhook and
//!    Slack do.
//! 5. Header values are taken only when they occur once: two timestamp headers are an
//!    ambiguity an attacker could use against a proxy that reads the other one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::channel::InboundError;
use crate::replay::ReplayCache;
use crate::secret::Secret;

/// How far a request timestamp may be from our clock, in either direction.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(300);

/// SHA-256's block size: HMAC keys are padded (or first hashed) to this length.
const BLOCK: usize = 64;

/// An HMAC-SHA256 key.
///
/// Built with the RFC 2104 key schedule done by hand (hash keys longer than a block,
/// zero-pad to a block) so that construction is infallible — `Hmac::new_from_slice`
/// returns a `Result` although HMAC accepts any key — and the padded block is zeroized.
pub struct SigningKey {
    block: Zeroizing<[u8; BLOCK]>,
}

impl SigningKey {
    pub fn new(secret: &Secret) -> Self {
        Self::from_bytes(secret.expose().as_bytes())
    }

    pub fn from_bytes(secret: &[u8]) -> Self {
        let mut block = Zeroizing::new([0u8; BLOCK]);
        if secret.len() > BLOCK {
            let digest = Sha256::digest(secret);
            block[..digest.len()].copy_from_slice(&digest);
        } else {
            block[..secret.len()].copy_from_slice(secret);
        }
        Self { block }
    }

    /// HMAC-SHA256 of the concatenation of `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new((&*self.block).into());
        for p in parts {
            mac.update(p);
        }
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; 32];
        out.copy_from_slice(&tag);
        out
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

/// One signing scheme: where the timestamp and signature are, and what is signed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scheme {
    pub timestamp_header: &'static str,
    pub signature_header: &'static str,
    /// Prefix of the signature header value before the hex (`sha256=`, `v0=`).
    pub signature_prefix: &'static str,
    /// The base string is `base_prefix ts base_separator body`.
    pub base_prefix: &'static [u8],
    pub base_separator: &'static [u8],
}

/// A verifier for one scheme and one secret, with its own replay cache.
#[derive(Debug)]
pub(crate) struct TimestampedHmac {
    scheme: Scheme,
    key: SigningKey,
    replay: ReplayCache,
    window: Duration,
}

impl TimestampedHmac {
    pub fn new(scheme: Scheme, key: SigningKey) -> Self {
        Self {
            scheme,
            key,
            replay: ReplayCache::new(crate::replay::DEFAULT_CAPACITY),
            window: REPLAY_WINDOW,
        }
    }

    /// Authenticates `body`: signature, window, replay — in that order (module docs).
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), InboundError> {
        let s = &self.scheme;
        let ts_text = single_header(headers, s.timestamp_header)?
            .ok_or(InboundError::MissingHeader(s.timestamp_header))?;
        let sig_text = single_header(headers, s.signature_header)?
            .ok_or(InboundError::MissingHeader(s.signature_header))?;
        let ts = parse_unix_seconds(s.timestamp_header, ts_text)?;
        let presented = parse_hex_signature(s.signature_header, s.signature_prefix, sig_text)?;
        let expected = self
            .key
            .mac(&[s.base_prefix, ts_text.as_bytes(), s.base_separator, body]);
        if !bool::from(expected.ct_eq(&presented)) {
            return Err(InboundError::BadSignature);
        }
        check_window(ts, now, self.window)?;
        let expires = ts.saturating_add(self.window.as_secs());
        self.replay.insert(expected, expires, unix_seconds(now))
    }
}

/// Seconds since the Unix epoch (a clock before 1970 reads as 0).
pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Refuses a timestamp outside `now ± window`.
pub(crate) fn check_window(ts: u64, now: SystemTime, window: Duration) -> Result<(), InboundError> {
    let now = unix_seconds(now);
    let window_secs = window.as_secs();
    if now >= ts {
        let age_secs = now - ts;
        if age_secs > window_secs {
            return Err(InboundError::Stale {
                age_secs,
                window_secs,
            });
        }
    } else {
        let ahead_secs = ts - now;
        if ahead_secs > window_secs {
            return Err(InboundError::FromFuture {
                ahead_secs,
                window_secs,
            });
        }
    }
    Ok(())
}

/// The value of a header that must occur at most once, as visible ASCII.
pub(crate) fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h str>, InboundError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(InboundError::MalformedHeader {
            name,
            reason: "sent more than once".into(),
        });
    }
    let text = first.to_str().map_err(|_| InboundError::MalformedHeader {
        name,
        reason: "not visible ASCII".into(),
    })?;
    Ok(Some(text))
}

/// Unix seconds as plain decimal digits (no sign, no spaces, at most 12 digits).
pub(crate) fn parse_unix_seconds(name: &'static str, text: &str) -> Result<u64, InboundError> {
    let bad = |reason: &str| InboundError::MalformedHeader {
        name,
        reason: reason.into(),
    };
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expected unix seconds (decimal digits)"));
    }
    text.parse::<u64>()
        .map_err(|_| bad("expected unix seconds (decimal digits)"))
}

/// `<prefix><64 hex digits>` → the 32 signature bytes.
pub(crate) fn parse_hex_signature(
    name: &'static str,
    prefix: &str,
    text: &str,
) -> Result<[u8; 32], InboundError> {
    let bad = |reason: String| InboundError::MalformedHeader { name, reason };
    let hex = text
        .strip_prefix(prefix)
        .ok_or_else(|| bad(format!("expected {prefix}<64 hex digits>")))?;
    if hex.len() != 64 {
        return Err(bad(format!("expected {prefix}<64 hex digits>")));
    }
    let bytes = ironclaw_contract::hex::decode(hex)
        .ok_or_else(|| bad(format!("expected {prefix}<64 hex digits>")))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// Constant-time equality of two secrets of possibly different lengths: both are
/// hashed first, so neither the content nor the length of the expected value leaks
/// through timing.
pub(crate) fn secrets_equal(presented: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(presented);
    let b = Sha256::digest(expected);
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_schedule_equals_the_standard_hmac() {
        for len in [0usize, 1, 16, 63, 64, 65, 200] {
            let secret: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut std_mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret).unwrap();
            std_mac.update(b"12345.");
            std_mac.update(b"body");
            let expected = std_mac.finalize().into_bytes();
            let ours = SigningKey::from_bytes(&secret).mac(&[b"12345", b".", b"body"]);
            assert_eq!(ours.as_slice(), expected.as_slice(), "key length {len}");
        }
    }

    #[test]
    fn rfc4231_test_case_2() {
        let mac = SigningKey::from_bytes(b"Jefe").mac(&[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            ironclaw_contract::hex::encode(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn window_both_directions() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let w = REPLAY_WINDOW;
        assert!(check_window(1_000_000, now, w).is_ok());
        assert!(check_window(1_000_000 - 300, now, w).is_ok());
        assert!(check_window(1_000_000 + 300, now, w).is_ok());
        assert!(matches!(
            check_window(1_000_000 - 301, now, w),
            Err(InboundError::Stale { age_secs: 301, .. })
        ));
        assert!(matches!(
            check_window(1_000_000 + 301, now, w),
            Err(InboundError::FromFuture {
                ahead_secs: 301,
                ..
            })
        ));
    }

    #[test]
    fn timestamps_are_strict_digits() {
        for bad in ["", "-1", "+5", " 5", "1e9", "0x10", "1234567890123"] {
            assert!(parse_unix_seconds("t", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_unix_seconds("t", "1700000000").unwrap(),
            1_700_000_000
        );
    }

    #[test]
    fn signatures_need_prefix_and_64_hex() {
        let hex = "ab".repeat(32);
        assert!(parse_hex_signature("s", "v0=", &format!("v0={hex}")).is_ok());
        assert!(parse_hex_signature("s", "v0=", &hex).is_err());
        assert!(parse_hex_signature("s", "v0=", &format!("v0={}", &hex[..62])).is_err());
        assert!(parse_hex_signature("s", "v0=", &format!("v0={}zz", &hex[..62])).is_err());
    }

    #[test]
    fn secret_comparison() {
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"abcd"));
    }
}
