//! The host master key.

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use aes_gcm::{Aes256Gcm, KeyInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::fsio;
use crate::{KeyError, SessionKey};

/// Length of the master key in bytes; its file holds exactly this many raw bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// SHA-256's block size. HMAC zero-pads a shorter key to this length (RFC 2104 §2).
const HMAC_BLOCK: usize = 64;

/// The fingerprint's label lies outside the `ironclaw/<purpose>/v1` family that
/// [`MasterKey::derive`] uses (it does not start with `ironclaw/`), so no purpose,
/// not even `"fingerprint"`, yields a derived key whose first bytes are published as
/// the fingerprint.
const FINGERPRINT_LABEL: &[u8] = b"ironclaw-fingerprint/v1";

/// The host's 256-bit root secret. Zeroized on drop; no formatting shows it.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl MasterKey {
    /// Wraps existing key bytes. Real keys come from [`MasterKey::load_or_create`]; this
    /// exists for tests and tools.
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the OS RNG.
    pub(crate) fn generate() -> Result<Self, KeyError> {
        let mut k = Self([0; MASTER_KEY_LEN]);
        fill_random(&mut k.0)?;
        Ok(k)
    }

    /// Loads the master key at `path`, creating it if the file does not exist. Returns
    /// the key and whether it was created.
    ///
    /// # Errors
    /// The file is refused if it is not a regular file (a symlink included), if group or
    /// other has any permission bit (the error gives the `chmod 600` fix), or if it is not
    /// exactly 32 bytes long; I/O and RNG failures are reported with the path.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        let dir = fsio::parent_dir(path);
        let staging = fsio::sibling(path, ".new");
        // A leftover from a crash during creation is either a torn file or a second name
        // for the current key. Neither is needed, and a second name would keep the old
        // key alive on disk after a rotation replaced it.
        if fsio::remove_if_exists(&staging)? {
            fsio::fsync_dir(dir)?;
        }
        if let Some(k) = Self::load(path)? {
            return Ok((k, false));
        }
        let key = Self::generate()?;
        // Written under a staging name and linked into place, so a crash never leaves a
        // torn `master.key` that every later start would refuse.
        fsio::write_private_file(&staging, &key.0)?;
        // Unlike rename, `hard_link` refuses to replace an existing name: if another
        // process created the key in the meantime, its key wins and ours is discarded.
        let linked = fs::hard_link(&staging, path);
        fsio::remove_if_exists(&staging)?;
        fsio::fsync_dir(dir)?;
        match linked {
            Ok(()) => Ok((key, true)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => match Self::load(path)? {
                Some(k) => Ok((k, false)),
                None => Err(KeyError::io("load", path, e)),
            },
            Err(e) => Err(KeyError::io("create", path, e)),
        }
    }

    /// Loads the key at `path` with the checks of [`MasterKey::load_or_create`]; `None` if
    /// there is no file.
    pub(crate) fn load(path: &Path) -> Result<Option<Self>, KeyError> {
        let limit = MASTER_KEY_LEN as u64;
        let bytes = match fsio::read_private_file(path, limit) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(KeyError::TooLarge { path, len, .. }) => {
                return Err(KeyError::WrongLength { path, len })
            }
            Err(e) => return Err(e),
        };
        let mut k = Self([0; MASTER_KEY_LEN]);
        if bytes.len() != MASTER_KEY_LEN {
            return Err(KeyError::WrongLength {
                path: path.to_owned(),
                len: bytes.len() as u64,
            });
        }
        k.0.copy_from_slice(&bytes);
        Ok(Some(k))
    }

    /// A 32-byte key bound to this master key and `purpose`:
    /// HMAC-SHA256(master, `"ironclaw/" + purpose + "/v1"`). The host's databases do not
    /// use it (their keys are sealed, [`crate::HostFile`], so they outlive a rotation).
    ///
    /// Deterministic, and independent per purpose: the label is fixed text around the
    /// purpose, so distinct purposes give distinct HMAC inputs, and knowing one derived
    /// key reveals nothing about another or about the master. Rotating the master
    /// changes every derived key.
    pub fn derive(&self, purpose: &str) -> SessionKey {
        let mut label = Vec::with_capacity(purpose.len() + 12);
        label.extend_from_slice(b"ironclaw/");
        label.extend_from_slice(purpose.as_bytes());
        label.extend_from_slice(b"/v1");
        let out = self.prf(&label);
        SessionKey::from_bytes(*out)
    }

    /// 16 hex digits identifying this key, safe to log: the first 8 bytes of an HMAC
    /// under the key, which reveal nothing about it. A sealed store records the
    /// fingerprint of the master that sealed it.
    pub fn fingerprint(&self) -> String {
        let out = self.prf(FINGERPRINT_LABEL);
        ironclaw_contract::hex::encode(&out[..8])
    }

    /// The AEAD that seals session keys.
    pub(crate) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&self.0).into())
    }

    pub(crate) fn as_bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }

    fn prf(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        // Padding the key to the block size ourselves gives exactly the MAC that the
        // fallible `new_from_slice` would compute (HMAC zero-pads short keys), through a
        // constructor that cannot fail.
        let mut block = Zeroizing::new([0u8; HMAC_BLOCK]);
        block[..MASTER_KEY_LEN].copy_from_slice(&self.0);
        let mut mac = <Hmac<Sha256> as KeyInit>::new((&*block).into());
        mac.update(label);
        let mut tag = mac.finalize().into_bytes();
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&tag);
        tag.as_mut_slice().zeroize();
        out
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Fills `buf` from the OS RNG (getrandom), the only source of key material and nonces.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), KeyError> {
    getrandom::fill(buf).map_err(|e| KeyError::Rng {
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_hmac_key_equals_the_standard_construction() {
        let m = MasterKey::from_bytes([7; 32]);
        let mut std_mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[7; 32]).unwrap();
        std_mac.update(b"ironclaw/x/v1");
        let expected = std_mac.finalize().into_bytes();
        assert_eq!(m.derive("x").expose().as_slice(), expected.as_slice());
    }

    #[test]
    fn fingerprint_is_not_a_prefix_of_any_derived_key() {
        let m = MasterKey::from_bytes([9; 32]);
        let fp = m.fingerprint();
        assert_eq!(fp.len(), 16);
        for purpose in ["fingerprint", "", "registry-db"] {
            assert!(!m.derive(purpose).to_hex().starts_with(&fp));
        }
    }
}
