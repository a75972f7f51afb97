//! The runsc container id: validated once, here, before it becomes a runsc argument, a
//! bundle directory name (`<state>/bundles/<id>`) and part of a cgroup path.
//!
//! Not for: session or group ids — those are the contract's; a container id is derived
//! from a session id with [`ContainerId::for_session`].

use std::fmt;

use ironclaw_contract::ids::SessionId;

/// Why a string was refused as a container id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerIdError {
    #[error("container id must not be empty")]
    Empty,
    #[error("container id is {len} bytes long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("container id {value:?} contains {ch:?}; allowed: ASCII letters, digits, '_' and '-'")]
    BadChar { value: String, ch: char },
    #[error("container id {value:?} must start with a letter or digit")]
    BadStart { value: String },
}

/// A runsc container id.
///
/// Alphabet: ASCII letters, digits, `_` and `-`, starting with a letter or digit, at
/// most [`ContainerId::MAX_LEN`] bytes. This is a strict subset of what runsc accepts
/// (`^[\w+\-.]+$`): `.` is left out so that no id can be `.`/`..` or carry a dot-segment
/// into the bundle path, and a leading `-` is refused so no id reads as a flag.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

/// Prefix of every container id derived from a session.
pub const SESSION_PREFIX: &str = "ironclaw-";

impl ContainerId {
    /// The longest accepted id, in bytes. Long enough for [`SESSION_PREFIX`] plus the
    /// longest session id (64).
    pub const MAX_LEN: usize = 96;

    /// Parses and validates `s`.
    pub fn new(s: impl Into<String>) -> Result<Self, ContainerIdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(ContainerIdError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(ContainerIdError::TooLong {
                len: s.len(),
                max: Self::MAX_LEN,
            });
        }
        if let Some(ch) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(ContainerIdError::BadChar { value: s, ch });
        }
        if !s.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(ContainerIdError::BadStart { value: s });
        }
        Ok(Self(s))
    }

    /// `ironclaw-<session>`. Infallible: a session id is 1–64 bytes of letters, digits,
    /// `_` and `-` (checked by its own constructor), so the result is 10–73 bytes of the
    /// same alphabet and starts with `i`.
    pub fn for_session(session: &SessionId) -> Self {
        Self(format!("{SESSION_PREFIX}{}", session.as_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContainerId({:?})", self.0)
    }
}

impl std::str::FromStr for ContainerId {
    type Err = ContainerIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for ContainerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_safe_alphabet() {
        for ok in [
            "a",
            "ironclaw-ses_1",
            "A9-_x",
            &"x".repeat(ContainerId::MAX_LEN),
        ] {
            assert!(ContainerId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(ContainerId::new(""), Err(ContainerIdError::Empty));
        assert!(matches!(
            ContainerId::new("x".repeat(ContainerId::MAX_LEN + 1)),
            Err(ContainerIdError::TooLong { .. })
        ));
        for bad in ["..", ".", "a.b", "a/b", "a b", "é", "a\0", "a:b", "a+b"] {
            assert!(
                matches!(ContainerId::new(bad), Err(ContainerIdError::BadChar { .. })),
                "{bad:?}"
            );
        }
        for bad in ["-a", "_a"] {
            assert!(
                matches!(
                    ContainerId::new(bad),
                    Err(ContainerIdError::BadStart { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn session_ids_always_make_valid_container_ids() {
        let longest = SessionId::new("s".repeat(SessionId::MAX_LEN)).unwrap();
        let id = ContainerId::for_session(&longest);
        assert_eq!(ContainerId::new(id.as_str()).unwrap(), id);
        let id = ContainerId::for_session(&SessionId::new("ses_1").unwrap());
        assert_eq!(id.as_str(), "ironclaw-ses_1");
    }
}
