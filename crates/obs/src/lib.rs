//! Observability: structured logs and secret redaction.
//!
//! - [`init`] installs the process-wide `tracing` subscriber (human text or JSON lines
//!   on stderr, filtered by `RUST_LOG` or the given default).
//! - [`Redactor`] replaces known secret values (provider keys, channel secrets, tokens)
//!   in any text before it is logged or returned.
//!
//! Not here: metrics (the API serves them) and audit (a separate, hash-chained record
//! of decisions — logs are for operators, the audit chain is evidence).

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset.
/// Calling it twice is harmless (the second call keeps the first subscriber).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// The text that replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Replaces occurrences of registered secret values in text.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    // Longest first, so a secret that contains another is replaced whole.
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret. Values shorter than 8 bytes are ignored: redacting them would
    /// shred ordinary text, and no real credential is that short.
    pub fn add(&mut self, secret: impl Into<String>) {
        let s = secret.into();
        if s.len() >= 8 && !self.secrets.contains(&s) {
            self.secrets.push(s);
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every registered secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence_longest_first() {
        let mut r = Redactor::new();
        r.add("sk-ant-secret-123");
        r.add("sk-ant-secret-123-extended");
        r.add("short");
        let text = "key sk-ant-secret-123-extended and sk-ant-secret-123, short stays";
        assert_eq!(r.redact(text), "key [redacted] and [redacted], short stays");
    }
}
