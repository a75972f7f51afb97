//! Whether a message engages a wiring's agent: the three engage modes, and the
//! compiled-pattern cache behind `pattern`.
//!
//! For: the pure decision from (mode, pattern, text, mentioned). Not for: stickiness
//! (`mention-sticky` continues a conversation only if a session already exists, which
//! needs the registry — the router does that), access, or sender scope.
//!
//! Patterns are compiled with the `regex` crate, whose matching time is linear in the
//! text for every pattern (no backtracking blow-up, like Go's RE2): a wiring's pattern
//! is operator input and the text is anyone's, so `^(a+)+$` against a long run of `a`
//! must not stall routing. The text is cut to its first 64 KiB (on a character
//! boundary) before matching, and each compiled program is bounded in size, so one
//! evaluation costs bounded time and memory whatever either side sends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ironclaw_contract::enums::EngageMode;
use regex::{Regex, RegexBuilder};

/// Only the first this-many bytes of a message are matched against a pattern.
pub(crate) const MATCH_TEXT_MAX_BYTES: usize = 64 * 1024;

/// The pattern that matches everything, the empty message included (a wiring that
/// takes every message says so explicitly rather than by a regex that happens to).
pub(crate) const MATCH_ALL: &str = ".";

/// Upper bound on one compiled pattern (program and lazy-DFA cache each). A pattern
/// that needs more is refused as an engage error rather than allowed to hold memory
/// in a long-lived cache. The registry limits patterns to 1 KiB of text; these limits
/// bound what that text may expand into (`\w{1000}` with Unicode classes is large).
const PROGRAM_MAX_BYTES: usize = 1024 * 1024;
const DFA_MAX_BYTES: usize = 1024 * 1024;

/// Why a message's engagement could not be decided. Reported on the wiring's outcome;
/// never stops routing of the other wirings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngageError {
    /// A `pattern` wiring without a pattern (the registry refuses such a wiring; this
    /// is a row edited behind its back).
    #[error("engage mode pattern without a pattern")]
    MissingPattern,
    /// The pattern does not compile (or compiles beyond the size bound).
    #[error("invalid pattern: {0}")]
    InvalidPattern(String),
}

/// A bounded cache of compiled patterns, keyed by the pattern text. Compile failures
/// are cached too, so a broken wiring costs one compile, not one per message.
pub(crate) struct PatternCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    /// Pattern → (compiled or the compile error, last use).
    entries: HashMap<String, (Compiled, u64)>,
    /// A use counter: the least recently used entry has the smallest stamp.
    clock: u64,
}

type Compiled = Result<Arc<Regex>, EngageError>;

impl PatternCache {
    /// A cache of at most `capacity` patterns (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// Decides whether a message engages under `mode`.
    pub(crate) fn evaluate(
        &self,
        mode: EngageMode,
        pattern: Option<&str>,
        text: &str,
        mentioned: bool,
    ) -> Result<bool, EngageError> {
        match mode {
            // Stickiness is the router's (it needs the registry); here both modes
            // engage exactly when the agent was mentioned.
            EngageMode::Mention | EngageMode::MentionSticky => Ok(mentioned),
            EngageMode::Pattern => {
                let pattern = pattern.ok_or(EngageError::MissingPattern)?;
                if pattern == MATCH_ALL {
                    return Ok(true);
                }
                let re = self.compiled(pattern)?;
                Ok(re.is_match(truncate(text, MATCH_TEXT_MAX_BYTES)))
            }
        }
    }

    fn compiled(&self, pattern: &str) -> Compiled {
        // A panic while holding the lock can only come from the regex crate itself;
        // the map is still a valid cache (an entry is inserted whole or not at all).
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.clock += 1;
        let now = inner.clock;
        if let Some((compiled, used)) = inner.entries.get_mut(pattern) {
            *used = now;
            return compiled.clone();
        }
        // Compiled under the lock: compiles are rare (once per distinct pattern) and
        // bounded by the size limits, and this keeps two threads from compiling the
        // same pattern twice.
        let compiled = compile(pattern);
        if inner.entries.len() >= self.capacity {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                inner.entries.remove(&k);
            }
        }
        inner
            .entries
            .insert(pattern.to_owned(), (compiled.clone(), now));
        compiled
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }
}

fn compile(pattern: &str) -> Compiled {
    RegexBuilder::new(pattern)
        .size_limit(PROGRAM_MAX_BYTES)
        .dfa_size_limit(DFA_MAX_BYTES)
        .build()
        .map(Arc::new)
        .map_err(|e| EngageError::InvalidPattern(one_line(&e.to_string())))
}

/// The regex crate's errors draw the pattern with a caret on several lines; an outcome
/// reason is one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character
/// boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    // Index 0 is always a boundary, so this stops.
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn eval(
        mode: EngageMode,
        pattern: Option<&str>,
        text: &str,
        mentioned: bool,
    ) -> Result<bool, EngageError> {
        PatternCache::new(8).evaluate(mode, pattern, text, mentioned)
    }

    /// The reference's engage pins, plus the stricter error for a bad pattern.
    #[test]
    fn engage_table() {
        use EngageMode::*;
        /// (mode, pattern, text, mentioned, expected; `Err` = an engage error).
        type Case<'a> = (EngageMode, Option<&'a str>, &'a str, bool, Result<bool, ()>);
        let cases: &[Case<'_>] = &[
            (
                Pattern,
                Some("(?i)deploy"),
                "please DEPLOY now",
                false,
                Ok(true),
            ),
            (
                Pattern,
                Some("deploy"),
                "please deploy now",
                false,
                Ok(true),
            ),
            (Pattern, Some("deploy"), "hello", false, Ok(false)),
            (Pattern, Some("deploy"), "hello", true, Ok(false)),
            // Match-all sentinel: even the empty message.
            (Pattern, Some("."), "", false, Ok(true)),
            (Pattern, Some("."), "anything", false, Ok(true)),
            // Only the exact sentinel is special: `.+` is a regex like any other.
            (Pattern, Some(".+"), "", false, Ok(false)),
            // Unanchored search.
            (Pattern, Some("ploy"), "deployment", false, Ok(true)),
            (Pattern, Some("^ploy"), "deployment", false, Ok(false)),
            // Invalid patterns are errors (Go: silently false), never panics.
            (Pattern, Some("(unclosed"), "(unclosed", false, Err(())),
            (Pattern, Some("a{99999999}"), "a", false, Err(())),
            (Pattern, None, "x", false, Err(())),
            (Mention, None, "x", true, Ok(true)),
            (Mention, None, "x", false, Ok(false)),
            (MentionSticky, None, "x", true, Ok(true)),
            (MentionSticky, None, "x", false, Ok(false)),
        ];
        for (mode, pattern, text, mentioned, want) in cases {
            let got = eval(*mode, *pattern, text, *mentioned).map_err(|_| ());
            assert_eq!(got, *want, "{mode} {pattern:?} {text:?} {mentioned}");
        }
    }

    #[test]
    fn catastrophic_backtracking_pattern_returns_promptly() {
        let text = format!("{}!", "a".repeat(50_000));
        let start = Instant::now();
        assert_eq!(
            eval(EngageMode::Pattern, Some("^(a+)+$"), &text, false),
            Ok(false)
        );
        // Linear time: microseconds to milliseconds, even unoptimized. The bound is
        // loose so a loaded CI machine cannot make it flaky; a backtracking engine
        // would take longer than the universe.
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn text_is_matched_only_up_to_64_kib() {
        let head = "x".repeat(MATCH_TEXT_MAX_BYTES - 4);
        let inside = format!("{head}tail and more");
        let outside = format!("{head}....tail");
        assert_eq!(
            eval(EngageMode::Pattern, Some("tail"), &inside, false),
            Ok(true)
        );
        assert_eq!(
            eval(EngageMode::Pattern, Some("tail"), &outside, false),
            Ok(false)
        );
    }

    #[test]
    fn truncation_backs_off_to_a_char_boundary() {
        // "é" is two bytes; a cut in its middle keeps the byte before it.
        let s = format!("{}é", "a".repeat(9));
        assert_eq!(truncate(&s, 10), "a".repeat(9));
        assert_eq!(truncate(&s, 11), s);
        assert_eq!(truncate("", 0), "");
        assert_eq!(truncate("€", 2), "");
        // A multi-byte character straddling 64 KiB does not panic.
        let t = format!("{}€€", "a".repeat(MATCH_TEXT_MAX_BYTES - 1));
        assert_eq!(eval(EngageMode::Pattern, Some("€"), &t, false), Ok(false));
    }

    #[test]
    fn invalid_pattern_error_is_one_line() {
        let e = eval(EngageMode::Pattern, Some("(unclosed"), "", false).unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(e.to_string().starts_with("invalid pattern: "), "{e}");
    }

    #[test]
    fn cache_is_bounded_and_keeps_recent_patterns() {
        let cache = PatternCache::new(2);
        let m = |p: &str| cache.evaluate(EngageMode::Pattern, Some(p), "abc", false);
        assert_eq!(m("a"), Ok(true));
        assert_eq!(m("b"), Ok(true));
        assert_eq!(m("a"), Ok(true)); // `a` is now the most recent
        assert_eq!(m("z"), Ok(false)); // evicts `b`
        assert_eq!(cache.len(), 2);
        assert!(m("(").is_err());
        assert!(m("(").is_err()); // the cached failure
        assert_eq!(cache.len(), 2);
        // The match-all sentinel never takes a slot.
        let fresh = PatternCache::new(1);
        assert_eq!(
            fresh.evaluate(EngageMode::Pattern, Some("."), "", false),
            Ok(true)
        );
        assert_eq!(fresh.len(), 0);
    }
}
