//! Credentials as a type: zeroized on drop, unprintable by accident.
//!
//! For: every token and signing secret the adapters hold. Not for: deciding where a
//! secret comes from (that is [`crate::config`]) or redacting free text (the HTTP
//! layer redacts its error strings with `ironclaw_obs::Redactor`).

use std::fmt;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// A credential. Its value is reachable only through [`Secret::expose`]; `Debug`
/// prints `Secret([redacted])`, there is no `Display` and no `Serialize`, so it cannot
/// reach a log line, an error message or an API response by formatting. The buffer is
/// zeroized when the value is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The raw value, to sign with, to put in a header, or to register for redaction.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Deserialized straight into the zeroizing buffer (no intermediate copy is
        // left behind by this impl; serde_json's own scratch buffer is outside our reach).
        String::deserialize(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("xoxb-very-secret-token");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(s.expose(), "xoxb-very-secret-token");
    }
}
