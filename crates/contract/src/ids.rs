//! Validated identifiers.
//!
//! Every id that crosses a boundary (HTTP path, queue row, CLI argument) is parsed into
//! one of these newtypes first. Session, group and change ids end up as file-system path
//! components, so their alphabet excludes `/`, `\`, `.` and anything else a path could
//! misread; the check happens once, in the constructor, and a value of the type is proof
//! it passed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string was refused as an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} bytes long; the limit is {max}")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} {value:?} contains {ch:?} at byte {at}; allowed: {allowed}")]
    BadChar {
        kind: &'static str,
        value: String,
        ch: char,
        at: usize,
        allowed: &'static str,
    },
    #[error("{kind} {value:?} must start with a letter or digit")]
    BadStart { kind: &'static str, value: String },
}

/// The shape every id kind is checked against.
struct Rule {
    kind: &'static str,
    max: usize,
    allowed: &'static str,
    extra: &'static [u8],
}

impl Rule {
    fn check(&self, s: &str) -> Result<(), IdError> {
        if s.is_empty() {
            return Err(IdError::Empty { kind: self.kind });
        }
        if s.len() > self.max {
            return Err(IdError::TooLong {
                kind: self.kind,
                len: s.len(),
                max: self.max,
            });
        }
        for (at, ch) in s.char_indices() {
            let ok =
                ch.is_ascii_alphanumeric() || (ch.is_ascii() && self.extra.contains(&(ch as u8)));
            if !ok {
                return Err(IdError::BadChar {
                    kind: self.kind,
                    value: s.to_owned(),
                    ch,
                    at,
                    allowed: self.allowed,
                });
            }
        }
        // Leading punctuation is refused so that no id can look like a flag (`-x`) or a
        // hidden / relative path component.
        if !s.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(IdError::BadStart {
                kind: self.kind,
                value: s.to_owned(),
            });
        }
        Ok(())
    }
}

/// Path-safe ids: letters, digits, `_` and `-`.
const PATH_SAFE: &str = "ASCII letters, digits, '_' and '-'";
const PATH_SAFE_EXTRA: &[u8] = b"_-";

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:expr, $allowed:expr, $extra:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The longest accepted value, in bytes.
            pub const MAX_LEN: usize = $max;
            const RULE: Rule = Rule { kind: $kind, max: $max, allowed: $allowed, extra: $extra };

            /// Parses and validates `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                Self::RULE.check(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A session: one sandbox, one pair of queue files. Becomes a directory name.
    SessionId, "session id", 64, PATH_SAFE, PATH_SAFE_EXTRA
);
id_type!(
    /// An agent group (persona, tools, grants, workspace). Becomes a directory name.
    AgentGroupId, "agent group id", 64, PATH_SAFE, PATH_SAFE_EXTRA
);
id_type!(
    /// A messaging group: one chat, channel or conversation on a platform.
    MessagingGroupId, "messaging group id", 64, PATH_SAFE, PATH_SAFE_EXTRA
);
id_type!(
    /// A change request held at the gateway. Server-minted; appears in URLs.
    ChangeId, "change id", 64, PATH_SAFE, PATH_SAFE_EXTRA
);
id_type!(
    /// A queue message (inbound or outbound). Outbound ids double as idempotency keys.
    MessageId, "message id", 128, "ASCII letters, digits, '_', '-', '.' and ':'", b"_-.:"
);
id_type!(
    /// A principal: `<namespace>:<handle>` such as `slack:U123`, `operator:alice` or
    /// `sandbox:<session>`.
    UserId, "user id", 128, "ASCII letters, digits, '_', '-', '.', ':', '@' and '+'", b"_-.:@+"
);

/// The namespace of principals that speak for a sandbox. They can request changes but
/// never decide them (DESIGN §2.4).
pub const SANDBOX_NAMESPACE: &str = "sandbox";

impl UserId {
    /// The principal a sandboxed session acts as.
    pub fn for_sandbox(session: &SessionId) -> Self {
        // A session id is alphanumeric plus `_-`, all of which are allowed in a user id,
        // and `sandbox:` + 64 bytes stays under the 128-byte limit.
        Self(format!("{SANDBOX_NAMESPACE}:{session}"))
    }

    /// The part before the first `:`, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.0.split_once(':').map(|(ns, _)| ns)
    }

    /// True for `sandbox:*` principals.
    pub fn is_sandbox(&self) -> bool {
        self.namespace() == Some(SANDBOX_NAMESPACE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unsafe_path_components_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../escape",
            "a/b",
            "a\\b",
            "x..y",
            "-rf",
            "_x",
            "a b",
            "é",
            "a\0b",
        ] {
            assert!(SessionId::new(bad).is_err(), "{bad:?} accepted");
            assert!(AgentGroupId::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["ses_0123456789abcdef", "g1", "dev-agent", "A_b-9"] {
            assert_eq!(SessionId::new(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn length_limits_are_enforced() {
        assert!(SessionId::new("a".repeat(64)).is_ok());
        assert_eq!(
            SessionId::new("a".repeat(65)),
            Err(IdError::TooLong {
                kind: "session id",
                len: 65,
                max: 64
            })
        );
        assert!(MessageId::new("m".repeat(128)).is_ok());
        assert!(MessageId::new("m".repeat(129)).is_err());
    }

    #[test]
    fn user_ids_know_their_namespace() {
        let s = SessionId::new("ses_1").unwrap();
        let u = UserId::for_sandbox(&s);
        assert_eq!(u.as_str(), "sandbox:ses_1");
        assert!(u.is_sandbox());
        assert!(!UserId::new("slack:alice").unwrap().is_sandbox());
        assert!(!UserId::new("sandboxer:x").unwrap().is_sandbox());
        assert!(!UserId::new("admin").unwrap().is_sandbox());
        assert!(UserId::new("operator:alice@example.com").is_ok());
    }

    #[test]
    fn serde_validates() {
        let ok: SessionId = serde_json::from_str("\"ses_1\"").unwrap();
        assert_eq!(ok.as_str(), "ses_1");
        assert!(serde_json::from_str::<SessionId>("\"../x\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"ses_1\"");
    }

    proptest! {
        #[test]
        fn session_id_accepts_exactly_the_path_safe_alphabet(s in "\\PC{0,80}") {
            let expected = !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && s.as_bytes()[0].is_ascii_alphanumeric();
            let got = SessionId::new(s.clone());
            prop_assert_eq!(got.is_ok(), expected);
            if let Ok(id) = got {
                // A valid id is a single, plain path component.
                let p = std::path::Path::new(id.as_str());
                prop_assert_eq!(p.components().count(), 1);
                prop_assert!(matches!(p.components().next(), Some(std::path::Component::Normal(_))));
            }
        }

        #[test]
        fn valid_ids_round_trip(s in "[a-zA-Z0-9][a-zA-Z0-9_.:@+-]{0,100}") {
            let u = UserId::new(s.clone()).unwrap();
            prop_assert_eq!(u.to_string(), s.clone());
            let back: UserId = serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
            prop_assert_eq!(back, u);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = String::from_utf8_lossy(&b).into_owned();
            let _ = SessionId::new(s.clone());
            let _ = MessageId::new(s.clone());
            let _ = UserId::new(s);
        }
    }
}
