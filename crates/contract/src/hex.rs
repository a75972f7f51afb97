//! Lowercase hex, the one encoding of keys, hashes, digests and sealed blobs in text.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends the lowercase hex of `bytes` to `out` (callers holding secrets pass a
/// zeroizing buffer).
pub fn encode_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// The lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    encode_into(&mut s, bytes);
    s
}

/// The value of one hex digit (either case).
pub fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The bytes of `s`; `None` for an odd length or any non-hex character.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| Some((digit(p[0])? << 4) | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn rejects_odd_and_non_hex() {
        assert_eq!(super::decode("abc"), None);
        assert_eq!(super::decode("zz"), None);
        assert_eq!(super::decode("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(super::decode(""), Some(vec![]));
        assert_eq!(super::encode(&[0x0a, 0xff]), "0aff");
    }

    proptest! {
        #[test]
        fn round_trips(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(super::decode(&super::encode(&b)), Some(b));
        }
    }
}
