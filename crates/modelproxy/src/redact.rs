//! Key redaction over byte streams.
//!
//! Replacement itself is [`ironclaw_obs::Redactor`] (text only). Bodies are bytes and
//! arrive in chunks, so this module:
//! - splits bytes into valid UTF-8 runs and invalid bytes (an invalid byte can never be
//!   part of a textual key, so splitting there loses nothing) and redacts each run;
//! - for streams, holds back the shortest tail that could still be the start of a key
//!   (or an incomplete UTF-8 character) until the next chunk arrives, so a key split
//!   across chunks is still caught, while ordinary SSE events (ending in `\n\n`) pass
//!   through without delay.

use ironclaw_obs::Redactor;

/// Redacts every registered key in `bytes`.
pub(crate) fn redact_bytes(r: &Redactor, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.extend_from_slice(r.redact(s).as_bytes());
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // `valid_up_to` guarantees this prefix is UTF-8.
                if let Ok(s) = std::str::from_utf8(valid) {
                    out.extend_from_slice(r.redact(s).as_bytes());
                }
                let bad = e.error_len().unwrap_or(after.len());
                out.extend_from_slice(&after[..bad]);
                rest = &after[bad..];
            }
        }
    }
    out
}

/// Chunk-by-chunk redaction with a carry-over window.
#[derive(Debug)]
pub(crate) struct StreamRedactor {
    redactor: Redactor,
    /// Raw key values (only to decide how much tail to hold back).
    keys: Vec<Vec<u8>>,
    carry: Vec<u8>,
}

impl StreamRedactor {
    pub(crate) fn new(redactor: Redactor, keys: Vec<Vec<u8>>) -> Self {
        Self {
            redactor,
            keys,
            carry: Vec::new(),
        }
    }

    /// Feeds a chunk; returns the bytes that are safe to emit now.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.keys.is_empty() {
            return chunk.to_vec();
        }
        self.carry.extend_from_slice(chunk);
        let redacted = redact_bytes(&self.redactor, &self.carry);
        let hold = self.hold_len(&redacted);
        let cut = redacted.len() - hold;
        self.carry = redacted[cut..].to_vec();
        let mut out = redacted;
        out.truncate(cut);
        out
    }

    /// The held-back tail at end of stream.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let tail = std::mem::take(&mut self.carry);
        redact_bytes(&self.redactor, &tail)
    }

    /// Length of the longest suffix of `buf` that is a proper prefix of some key, or an
    /// incomplete UTF-8 sequence.
    fn hold_len(&self, buf: &[u8]) -> usize {
        let mut hold = 0;
        for key in &self.keys {
            let max = key.len().saturating_sub(1).min(buf.len());
            for n in (hold + 1..=max).rev() {
                if buf[buf.len() - n..] == key[..n] {
                    hold = n;
                    break;
                }
            }
        }
        // An incomplete trailing UTF-8 character (at most 3 bytes) is held too, so the
        // next chunk completes it before text redaction sees it.
        let n = buf.len();
        for k in 1..=n.min(3) {
            let b = buf[n - k];
            if b & 0xC0 == 0xC0 {
                let need = if b >= 0xF0 {
                    4
                } else if b >= 0xE0 {
                    3
                } else {
                    2
                };
                if need > k {
                    hold = hold.max(k);
                }
                break;
            }
            if b & 0xC0 != 0x80 {
                break;
            }
        }
        hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-test-SECRETSECRET-0123";

    fn sr() -> StreamRedactor {
        let mut r = Redactor::new();
        r.add(KEY);
        StreamRedactor::new(r, vec![KEY.as_bytes().to_vec()])
    }

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = sr();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.push(c));
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn key_split_anywhere_is_redacted() {
        let text = format!("data: {{\"t\":\"{KEY}\"}}\n\n");
        let b = text.as_bytes();
        for i in 0..b.len() {
            for j in i..b.len() {
                let out = run(&[&b[..i], &b[i..j], &b[j..]]);
                let s = String::from_utf8(out).unwrap();
                assert_eq!(s, "data: {\"t\":\"[redacted]\"}\n\n", "split at {i},{j}");
            }
        }
    }

    #[test]
    fn sse_event_is_not_delayed() {
        let mut s = sr();
        let out = s.push(b"data: {\"x\":1}\n\n");
        assert_eq!(out, b"data: {\"x\":1}\n\n");
        // A tail that could start a key is held back.
        let out = s.push(b"data: sk-te");
        assert_eq!(out, b"data: ");
        assert_eq!(s.finish(), b"sk-te");
    }

    #[test]
    fn invalid_utf8_passes_and_split_chars_survive() {
        let mut input = vec![0xff, 0xfe];
        input.extend_from_slice(KEY.as_bytes());
        input.extend_from_slice("é€".as_bytes());
        let expect = {
            let mut e = vec![0xff, 0xfe];
            e.extend_from_slice(b"[redacted]");
            e.extend_from_slice("é€".as_bytes());
            e
        };
        for i in 0..input.len() {
            assert_eq!(run(&[&input[..i], &input[i..]]), expect, "split at {i}");
        }
    }
}
