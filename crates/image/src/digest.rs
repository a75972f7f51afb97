//! OCI content digests: `sha256:` followed by 64 lowercase hex digits, the one way this
//! crate names a blob, a manifest or a cached rootfs.
//!
//! For: parsing digests out of untrusted JSON and operator policy files, and computing
//! them. Not for: other algorithms. OCI also allows `sha512:`; it is refused here, so
//! there is exactly one hashing code path to get right, and a digest string is also a
//! safe path component (64 hex digits, nothing else) wherever it names a file.

use std::fmt;
use std::io::{self, Write};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

const PREFIX: &str = "sha256:";
const HEX_LEN: usize = 64;

/// A value that is not a `sha256:<64 lowercase hex>` digest.
#[derive(Debug, thiserror::Error)]
#[error(
    "{value:?} is not a sha256 digest (expected \"sha256:\" followed by 64 lowercase hex digits)"
)]
pub struct DigestError {
    /// The offending value, cut to a readable length.
    pub value: String,
}

/// A validated sha256 content digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    /// Exactly 64 lowercase hex digits (checked by every constructor).
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    ///
    /// Uppercase hex is refused rather than folded: OCI requires lowercase, every tool
    /// prints lowercase, and accepting two spellings of one digest invites two cache
    /// entries or a pin that silently fails to match.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let hex = value.strip_prefix(PREFIX).filter(|h| {
            h.len() == HEX_LEN && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        match hex {
            Some(h) => Ok(Self { hex: h.to_owned() }),
            None => Err(DigestError {
                value: value.chars().take(100).collect(),
            }),
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hash(&Sha256::digest(bytes))
    }

    fn from_hash(out: &[u8]) -> Self {
        Self {
            hex: ironclaw_contract::hex::encode(out),
        }
    }

    /// The 64 hex digits, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The tag cosign stores an image's signatures under: `sha256-<hex>.sig`.
    pub fn cosign_signature_tag(&self) -> String {
        format!("sha256-{}.sig", self.hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes and counts everything written through it, so a blob's digest
/// and size come from the very bytes that were stored.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The digest and byte count of everything written, and the inner writer.
    pub(crate) fn finish(self) -> (Digest, u64, W) {
        (
            Digest::from_hash(&self.hasher.finalize()),
            self.written,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        // Hash only what the inner writer accepted, so digest and contents agree.
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts everything read through it (used to check a layer's
/// uncompressed `diff_id` while it is being unpacked).
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: io::Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    pub(crate) fn finish(self) -> (Digest, u64) {
        (Digest::from_hash(&self.hasher.finalize()), self.read)
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_lowercase_sha256() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d = Digest::parse(empty).unwrap();
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.to_string(), empty);
        assert_eq!(
            d.cosign_signature_tag(),
            "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.sig"
        );
        for bad in [
            "",
            "sha256:",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha256:../../../../etc/passwd00000000000000000000000000000000000000000",
            " sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hashing_writer_matches_one_shot_digest() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (d, n, inner) = w.finish();
        assert_eq!(d, Digest::of(b"hello world"));
        assert_eq!(n, 11);
        assert_eq!(inner, b"hello world");
    }
}
