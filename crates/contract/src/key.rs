//! The per-session queue key and its hand-off file.
//!
//! A session key is 32 random bytes minted by the host's key custodian. It reaches the
//! sandbox only as a 0400 file on a per-session tmpfs (DESIGN §2.2). The file holds the
//! key as 64 hex digits (surrounding whitespace allowed) or as exactly 32 raw bytes.
//!
//! Every in-memory copy is zeroized on drop, and no formatting of a key ever shows it.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of a session key in bytes.
pub const KEY_LEN: usize = 32;
/// A key file larger than this cannot be valid; reading stops there.
const MAX_KEY_FILE: u64 = 1024;

/// Why a key could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("session key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("session key: expected 32 raw bytes or 64 hex digits, got {len} bytes")]
    WrongLength { len: usize },
    #[error("session key: 64 characters but not hex digits (first bad character at {at})")]
    NotHex { at: usize },
}

/// A 256-bit queue key.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SessionKey([u8; KEY_LEN]);

impl SessionKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses the contents of a key file (see the module docs).
    pub fn parse(contents: &[u8]) -> Result<Self, KeyError> {
        if contents.len() == KEY_LEN {
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(contents);
            return Ok(Self(k));
        }
        let trimmed = contents.trim_ascii();
        if trimmed.len() != KEY_LEN * 2 {
            return Err(KeyError::WrongLength {
                len: contents.len(),
            });
        }
        let mut k = [0u8; KEY_LEN];
        for (i, pair) in trimmed.chunks_exact(2).enumerate() {
            let hi = crate::hex::digit(pair[0]).ok_or(KeyError::NotHex { at: i * 2 });
            let lo = crate::hex::digit(pair[1]).ok_or(KeyError::NotHex { at: i * 2 + 1 });
            match (hi, lo) {
                (Ok(hi), Ok(lo)) => k[i] = (hi << 4) | lo,
                (Err(e), _) | (_, Err(e)) => {
                    k.zeroize();
                    return Err(e);
                }
            }
        }
        Ok(Self(k))
    }

    /// Reads and parses a key file.
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        let mut buf = Zeroizing::new(Vec::with_capacity(80));
        f.take(MAX_KEY_FILE + 1).read_to_end(&mut buf).map_err(io)?;
        Self::parse(&buf)
    }

    /// The key as 64 lowercase hex digits, in a buffer zeroized on drop.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(KEY_LEN * 2));
        crate::hex::encode_into(&mut s, &self.0);
        s
    }

    /// The raw key bytes, for the crypto layers that need them.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_raw_and_hex_forms() {
        let raw = [0x11u8; 32];
        assert_eq!(SessionKey::parse(&raw).unwrap().expose(), &raw);
        let hex = format!("  {}\n", "ab".repeat(32));
        assert_eq!(
            SessionKey::parse(hex.as_bytes()).unwrap().expose(),
            &[0xab; 32]
        );
        assert_eq!(
            &*SessionKey::from_bytes([0xab; 32]).to_hex(),
            &"ab".repeat(32)
        );
    }

    #[test]
    fn wrong_lengths_and_non_hex_are_typed_errors() {
        assert!(matches!(
            SessionKey::parse(b""),
            Err(KeyError::WrongLength { len: 0 })
        ));
        assert!(matches!(
            SessionKey::parse(&[0u8; 31]),
            Err(KeyError::WrongLength { len: 31 })
        ));
        assert!(matches!(
            SessionKey::parse(&[0u8; 33]),
            Err(KeyError::WrongLength { len: 33 })
        ));
        let bad = format!("{}zz", "a".repeat(62));
        assert!(matches!(
            SessionKey::parse(bad.as_bytes()),
            Err(KeyError::NotHex { at: 62 })
        ));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = SessionKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{k:?}"), "SessionKey(<redacted>)");
    }

    #[test]
    fn oversized_file_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, vec![b'a'; 10_000]).unwrap();
        assert!(matches!(
            SessionKey::read_file(&p),
            Err(KeyError::WrongLength { len: 1025 })
        ));
        assert!(matches!(
            SessionKey::read_file(&dir.path().join("missing")),
            Err(KeyError::Io { .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_is_total(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = SessionKey::parse(&b);
        }

        #[test]
        fn hex_round_trips(k in any::<[u8; 32]>()) {
            let key = SessionKey::from_bytes(k);
            let back = SessionKey::parse(key.to_hex().as_bytes()).unwrap();
            prop_assert_eq!(back.expose(), &k);
        }
    }
}
