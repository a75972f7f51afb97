//! Bearer tokens and the digest that is stored instead of them.
//!
//! A minted token is `icw_` followed by 64 lowercase hex digits encoding 32 bytes from
//! the OS RNG. The prefix makes a leaked token recognisable to secret scanners and to a
//! human reading a log; the entropy is all in the hex part.
//!
//! Only SHA-256(token) is ever written down. A fast hash is the right tool here, not a
//! password KDF (argon2, scrypt, bcrypt): a KDF's slowness exists to make guessing a
//! *low-entropy* secret from its hash expensive, but a 256-bit random token cannot be
//! guessed at any hash speed, so a KDF would only add latency to every API request.
//! Preimage resistance of SHA-256 is all that is needed for a stolen token file not to
//! yield usable tokens.

use std::fmt;

use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::IdentityError;

/// The prefix of every token this crate mints.
pub const TOKEN_PREFIX: &str = "icw_";
/// Hex digits after [`TOKEN_PREFIX`] in a minted token.
pub const TOKEN_HEX_LEN: usize = 64;
/// Random bytes in a minted token.
const TOKEN_BYTES: usize = TOKEN_HEX_LEN / 2;
/// Presented values longer than this are refused without being hashed, so an attacker
/// cannot make every request hash megabytes. Far above any token this crate accepts.
pub const MAX_PRESENTED_LEN: usize = 256;
/// The shortest caller-provided token [`crate::TokenStore::adopt`] accepts.
pub const MIN_ADOPTED_LEN: usize = 32;

/// A SHA-256 digest of a token.
pub(crate) type TokenDigest = [u8; 32];

/// A bearer token in plaintext: shown to a human once, then dropped.
///
/// The buffer is zeroized on drop, there is deliberately no `Clone` (every copy is one
/// more place for the secret to linger) and neither `Debug` nor anything else prints it;
/// [`SecretToken::expose`] is the one way to read it.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretToken(String);

impl SecretToken {
    /// Mints a new token from the OS RNG.
    pub(crate) fn generate() -> Result<Self, IdentityError> {
        let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
        getrandom::fill(raw.as_mut_slice()).map_err(IdentityError::Rng)?;
        // Allocated at its final size so pushing never reallocates and leaves a
        // non-zeroized copy behind in freed memory.
        let mut s = String::with_capacity(TOKEN_PREFIX.len() + TOKEN_HEX_LEN);
        s.push_str(TOKEN_PREFIX);
        ironclaw_contract::hex::encode_into(&mut s, raw.as_slice());
        Ok(Self(s))
    }

    /// The token text, e.g. to show it to the operator once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn digest(&self) -> TokenDigest {
        digest(&self.0)
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

/// SHA-256 of a token's text.
pub(crate) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Checks a caller-provided token before [`crate::TokenStore::adopt`] registers it.
///
/// Length and alphabet are checked; entropy cannot be, which is why adoption is meant
/// for development setups only. Printable ASCII only: whitespace would be trimmed or
/// split by some HTTP stack along the way, and control or non-ASCII bytes cannot travel
/// reliably in an `Authorization` header, so such a token would never authenticate.
pub(crate) fn check_adoptable(token: &str) -> Result<(), IdentityError> {
    let weak = |reason| Err(IdentityError::WeakToken { reason });
    if token.chars().count() < MIN_ADOPTED_LEN {
        return weak("is shorter than 32 characters");
    }
    if token.len() > MAX_PRESENTED_LEN {
        return weak("is longer than 256 bytes, which authentication refuses");
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return weak("contains whitespace or control characters");
    }
    if !token.is_ascii() {
        return weak("contains non-ASCII characters, which HTTP headers cannot carry reliably");
    }
    Ok(())
}

/// Lowercase hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    ironclaw_contract::hex::encode(bytes)
}

/// Parses exactly 64 lowercase hex digits, the stored form of a digest.
///
/// Uppercase is refused so that each digest has exactly one spelling in the file.
pub(crate) fn parse_digest_hex(s: &str) -> Option<TokenDigest> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        *o = (val(pair[0])? << 4) | val(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn minted_tokens_have_the_documented_shape() {
        let a = SecretToken::generate().unwrap();
        let b = SecretToken::generate().unwrap();
        for t in [&a, &b] {
            let s = t.expose();
            assert_eq!(s.len(), TOKEN_PREFIX.len() + TOKEN_HEX_LEN);
            let hex = s.strip_prefix(TOKEN_PREFIX).unwrap();
            assert!(hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
            assert!(check_adoptable(s).is_ok());
        }
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn debug_is_redacted() {
        let t = SecretToken::generate().unwrap();
        let d = format!("{t:?}");
        assert_eq!(d, "SecretToken(<redacted>)");
        assert!(!d.contains(&t.expose()[4..12]));
    }

    #[test]
    fn digest_matches_a_known_vector() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            to_hex(&digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn adoptable_token_rules() {
        let ok = "x".repeat(32);
        assert!(check_adoptable(&ok).is_ok());
        assert!(check_adoptable(&"x".repeat(256)).is_ok());
        for bad in [
            String::new(),
            "x".repeat(31),
            "x".repeat(257),
            format!("{} ", "x".repeat(32)),
            format!("{}\tx", "x".repeat(32)),
            format!("{}\0", "x".repeat(32)),
            format!("{}\u{7f}", "x".repeat(32)),
            format!("{}é", "x".repeat(32)),
            format!("Bearer {}", "x".repeat(32)),
        ] {
            let err = check_adoptable(&bad).unwrap_err();
            assert!(matches!(err, IdentityError::WeakToken { .. }), "{bad:?}");
            if !bad.is_empty() {
                assert!(!err.to_string().contains(&bad));
            }
        }
    }

    proptest! {
        #[test]
        fn hex_round_trips(b in any::<[u8; 32]>()) {
            prop_assert_eq!(parse_digest_hex(&to_hex(&b)), Some(b));
            // Uppercase is refused unless it spells the same text as lowercase.
            let upper = to_hex(&b).to_uppercase();
            prop_assert_eq!(parse_digest_hex(&upper).is_some(), upper == to_hex(&b));
        }

        #[test]
        fn parse_digest_hex_is_total(s in "\\PC{0,80}") {
            let _ = parse_digest_hex(&s);
        }
    }
}
