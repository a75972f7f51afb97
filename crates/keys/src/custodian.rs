//! The sealed store of per-session keys, and master rotation.
//!
//! The store is one JSON file, mode 0600:
//!
//! ```json
//! {"version":1,"master_fingerprint":"<16 hex>","keys":{"<session id>":"<hex of nonce||ciphertext>"}}
//! ```
//!
//! Every change rewrites the whole file atomically with [`ironclaw_hostfs::write_private`]
//! (a private temporary file, fsync, rename, fsync the directory), so a crash leaves the
//! old or the new store, never a mix.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use aes_gcm::aead::{Aead, AeadInOut, Payload};
use ironclaw_contract::ids::SessionId;
use ironclaw_contract::key::KEY_LEN;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::fsio;
use crate::master::fill_random;
use crate::{KeyError, MasterKey, SessionKey};

const STORE_VERSION: u64 = 1;
/// Far above any real store (a sealed key costs under 200 bytes of JSON); a bound so a
/// damaged or hostile file cannot make the host allocate without limit.
const MAX_STORE_BYTES: u64 = 64 << 20;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const BLOB_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

#[derive(Deserialize)]
struct VersionProbe {
    version: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u64,
    master_fingerprint: String,
    /// Sealed blobs, hex. Kept as text until a key is asked for, so one damaged entry
    /// fails only its own session (as `Tampered`) instead of the whole store.
    keys: BTreeMap<SessionId, String>,
}

fn parse_store(path: &Path, bytes: &[u8]) -> Result<StoreFile, KeyError> {
    let corrupt = |e: serde_json::Error| KeyError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let probe: VersionProbe = serde_json::from_slice(bytes).map_err(corrupt)?;
    if probe.version != STORE_VERSION {
        return Err(KeyError::UnsupportedVersion {
            path: path.to_owned(),
            version: probe.version,
        });
    }
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// The store at `path`, or `None` if there is no file. The store is held to the same
/// access rules as the master key: its contents are ciphertext, but whoever can write it
/// can roll keys back or drop them, and a loose mode means someone changed it by hand.
fn read_store(path: &Path) -> Result<Option<StoreFile>, KeyError> {
    match fsio::read_private_file(path, MAX_STORE_BYTES)? {
        None => Ok(None),
        Some(bytes) => parse_store(path, &bytes).map(Some),
    }
}

fn serialize_store(
    fingerprint: &str,
    blobs: &BTreeMap<SessionId, String>,
) -> Result<Vec<u8>, KeyError> {
    #[derive(Serialize)]
    struct StoreRef<'a> {
        version: u64,
        master_fingerprint: &'a str,
        keys: &'a BTreeMap<SessionId, String>,
    }
    serde_json::to_vec(&StoreRef {
        version: STORE_VERSION,
        master_fingerprint: fingerprint,
        keys: blobs,
    })
    // Unreachable in practice (strings and a string-keyed map always serialize), but a
    // typed error costs nothing.
    .map_err(|e| KeyError::Corrupt {
        path: PathBuf::from("<sealed key store being written>"),
        reason: e.to_string(),
    })
}

/// Seals `key` for `session` under `master`: hex(nonce || AES-256-GCM ciphertext+tag).
///
/// The associated data is the session id. GCM authenticates it along with the
/// ciphertext, so a blob copied under another session id fails to open instead of
/// handing session B the key of session A: whoever can edit the store can delete keys
/// but cannot move them between sessions.
///
/// The nonce is 96 random bits per seal. Seals under one master number in the
/// thousands, far below the ~2^32 at which random GCM nonces risk a repeat.
fn seal(master: &MasterKey, session: &SessionId, key: &SessionKey) -> Result<String, KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let payload = Payload {
        msg: key.expose(),
        aad: session.as_str().as_bytes(),
    };
    let ct = master
        .cipher()
        .encrypt((&nonce).into(), payload)
        .map_err(|_| KeyError::Seal {
            session: session.clone(),
        })?;
    let mut blob = Vec::with_capacity(BLOB_LEN);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ct);
    Ok(ironclaw_contract::hex::encode(&blob))
}

fn unseal(master: &MasterKey, session: &SessionId, blob: &str) -> Result<SessionKey, KeyError> {
    let tampered = || KeyError::Tampered {
        session: session.clone(),
    };
    let blob = ironclaw_contract::hex::decode(blob).ok_or_else(tampered)?;
    if blob.len() != BLOB_LEN {
        return Err(tampered());
    }
    let (nonce, ct) = blob.split_at(NONCE_LEN);
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| tampered())?;
    let mut buf = Zeroizing::new(ct.to_vec());
    master
        .cipher()
        .decrypt_in_place(nonce.into(), session.as_str().as_bytes(), &mut *buf)
        .map_err(|_| tampered())?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if buf.len() != KEY_LEN {
        return Err(tampered());
    }
    key.copy_from_slice(&buf);
    Ok(SessionKey::from_bytes(*key))
}

fn random_session_key() -> Result<SessionKey, KeyError> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(&mut *k)?;
    Ok(SessionKey::from_bytes(*k))
}

struct State {
    master: MasterKey,
    fingerprint: String,
    /// Sealed blobs only: an unsealed key exists in memory just for the call that
    /// returns it, so a memory disclosure of the long-lived custodian yields ciphertext.
    blobs: BTreeMap<SessionId, String>,
}

/// The durable store of per-session keys, sealed under the master key.
///
/// All methods take `&self` and may be called from several threads; an internal mutex
/// serializes them, so each change is written to disk before the next one starts.
pub struct KeyCustodian {
    path: PathBuf,
    state: Mutex<State>,
}

/// What [`recover_rotation`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// No rotation was in flight.
    Clean,
    /// A stray `<store>.next` without `<master>.next` was removed.
    RemovedOrphan,
    /// The store was still sealed under the old master; the new one was discarded.
    RolledBack,
    /// The store was already sealed under the new master; it was moved into place.
    RolledForward,
}

/// Finishes or rolls back a master rotation that a crash interrupted. Safe (and cheap)
/// to call when none was; [`KeyCustodian::load`] calls it before anything else.
///
/// [`KeyCustodian::rotate_master`] writes `<master>.next` and `<store>.next`, renames the
/// store, then renames the master. The store rename is the commit point, so the store's
/// recorded fingerprint says which side of it the crash fell on:
///
/// - store sealed by `<master>.next` → roll forward (rename it over the master);
/// - store sealed by the current master, or no store → roll back (remove both `.next`);
/// - neither → fail without touching anything, since deleting `<master>.next` could
///   destroy the only key that opens the store.
///
/// # Errors
/// Unreadable or unparseable files, and the unresolvable case above.
pub fn recover_rotation(master_path: &Path, store_path: &Path) -> Result<Recovery, KeyError> {
    let master_next = fsio::sibling(master_path, ".next");
    let store_next = fsio::sibling(store_path, ".next");
    let next = match MasterKey::load(&master_next) {
        Ok(Some(k)) => Some(k),
        Ok(None) => {
            // `<store>.next` is written after `<master>.next` and removed before it, so
            // alone it was sealed under a key that no longer exists: garbage.
            if fsio::remove_if_exists(&store_next)? {
                fsio::fsync_dir(fsio::parent_dir(&store_next))?;
                return Ok(Recovery::RemovedOrphan);
            }
            return Ok(Recovery::Clean);
        }
        // Torn by a crash while it was written. The store is renamed only after
        // `<master>.next` is complete and synced, so this key sealed nothing current.
        Err(KeyError::WrongLength { .. }) => None,
        Err(e) => return Err(e),
    };
    let next_fp = next.as_ref().map(MasterKey::fingerprint);
    let store_fp = read_store(store_path)?.map(|s| s.master_fingerprint);

    if let (Some(nfp), Some(sfp)) = (&next_fp, &store_fp) {
        if nfp == sfp {
            fsio::rename(&master_next, master_path)?;
            fsio::fsync_dir(fsio::parent_dir(master_path))?;
            if fsio::remove_if_exists(&store_next)? {
                fsio::fsync_dir(fsio::parent_dir(&store_next))?;
            }
            return Ok(Recovery::RolledForward);
        }
    }
    if let Some(sfp) = &store_fp {
        let current_fp = MasterKey::load(master_path)?.map(|k| k.fingerprint());
        if current_fp.as_ref() != Some(sfp) {
            return Err(KeyError::RotationUnresolved {
                master_path: master_path.to_owned(),
                store_path: store_path.to_owned(),
                store_fingerprint: sfp.clone(),
                master_fingerprint: current_fp.unwrap_or_else(|| "missing".into()),
                next_fingerprint: next_fp.unwrap_or_else(|| "torn".into()),
            });
        }
    }
    // Store sealed by the current master, or no store at all (nothing sealed under
    // either key): the new key is not needed.
    fsio::remove_if_exists(&store_next)?;
    fsio::fsync_dir(fsio::parent_dir(&store_next))?;
    fsio::remove_if_exists(&master_next)?;
    fsio::fsync_dir(fsio::parent_dir(&master_next))?;
    Ok(Recovery::RolledBack)
}

impl KeyCustodian {
    /// The way to open the host's keys: finishes or rolls back an interrupted rotation
    /// ([`recover_rotation`]), loads the master key (creating it on first start), and
    /// opens the store. Returns the custodian and whether the master key was created.
    ///
    /// # Errors
    /// Everything [`recover_rotation`], [`MasterKey::load_or_create`] and
    /// [`KeyCustodian::open`] refuse, and [`KeyError::MasterMissing`] when the master key
    /// file is gone but a store exists: minting a new master then would only produce a
    /// store nobody can open, so the operator is told to restore the old one.
    pub fn load(master_path: &Path, store_path: &Path) -> Result<(Self, bool), KeyError> {
        recover_rotation(master_path, store_path)?;
        if MasterKey::load(master_path)?.is_none() {
            if let Some(store) = read_store(store_path)? {
                return Err(KeyError::MasterMissing {
                    master_path: master_path.to_owned(),
                    store_path: store_path.to_owned(),
                    store_fingerprint: store.master_fingerprint,
                });
            }
        }
        let (master, created) = MasterKey::load_or_create(master_path)?;
        Ok((Self::open(store_path, master)?, created))
    }

    /// Opens the store at `path` under `master`; a missing file is an empty store.
    ///
    /// This does not recover an interrupted rotation (it has no master key path to
    /// recover with): open through [`KeyCustodian::load`], or call [`recover_rotation`]
    /// first.
    ///
    /// # Errors
    /// [`KeyError::WrongMaster`] if the store was sealed by another master key (fail
    /// closed: a new master must never quietly start an empty store over a full one);
    /// [`KeyError::Corrupt`] / [`KeyError::UnsupportedVersion`] for a file this build
    /// cannot read; the access-rule and I/O errors of the store file.
    pub fn open(path: &Path, master: MasterKey) -> Result<Self, KeyError> {
        let fingerprint = master.fingerprint();
        let blobs = match read_store(path)? {
            None => BTreeMap::new(),
            Some(store) => {
                if store.master_fingerprint != fingerprint {
                    return Err(KeyError::WrongMaster {
                        path: path.to_owned(),
                        store_fingerprint: store.master_fingerprint,
                        master_fingerprint: fingerprint,
                    });
                }
                store.keys
            }
        };
        Ok(Self {
            path: path.to_owned(),
            state: Mutex::new(State {
                master,
                fingerprint,
                blobs,
            }),
        })
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key of `session`, minted from the OS RNG and stored durably on first use.
    /// Every later call returns the same key until [`KeyCustodian::destroy`].
    ///
    /// # Errors
    /// [`KeyError::Tampered`] if a stored blob does not open (it is never silently
    /// replaced: that would hand the session a key its queue files were not made with);
    /// RNG and I/O errors. On an error no key is returned, though after a failed
    /// directory fsync the new key may already be stored and is returned next time.
    pub fn get_or_create(&self, session: &SessionId) -> Result<SessionKey, KeyError> {
        let mut st = self.lock();
        if let Some(blob) = st.blobs.get(session) {
            return unseal(&st.master, session, blob);
        }
        let key = random_session_key()?;
        let blob = seal(&st.master, session, &key)?;
        let mut next = st.blobs.clone();
        next.insert(session.clone(), blob);
        self.commit(&mut st, next)?;
        Ok(key)
    }

    /// The key of `session`, if it has one.
    ///
    /// # Errors
    /// [`KeyError::Tampered`] if its blob does not open under the master key.
    pub fn get(&self, session: &SessionId) -> Result<Option<SessionKey>, KeyError> {
        let st = self.lock();
        st.blobs
            .get(session)
            .map(|blob| unseal(&st.master, session, blob))
            .transpose()
    }

    /// Removes the key of `session` durably; true if there was one. Once this returns
    /// `Ok`, no restart brings the key back.
    ///
    /// # Errors
    /// I/O errors writing the store.
    pub fn destroy(&self, session: &SessionId) -> Result<bool, KeyError> {
        let mut st = self.lock();
        if !st.blobs.contains_key(session) {
            return Ok(false);
        }
        let mut next = st.blobs.clone();
        next.remove(session);
        self.commit(&mut st, next)?;
        Ok(true)
    }

    /// The sessions that have a stored key, in id order.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.lock().blobs.keys().cloned().collect()
    }

    /// The fingerprint of the master key the store is sealed under (safe to log).
    pub fn master_fingerprint(&self) -> String {
        self.lock().fingerprint.clone()
    }

    /// [`MasterKey::derive`] under the current master key. Changes when the master
    /// rotates.
    pub fn derive(&self, purpose: &str) -> SessionKey {
        self.lock().master.derive(purpose)
    }

    /// Replaces the master key at `master_path` with a fresh one and re-seals every
    /// session key under it; returns the new fingerprint.
    ///
    /// Order on disk: `<master>.next` (0600, fsync), `<store>.next` (fsync), rename the
    /// store, rename the master, with a directory fsync after each step. The store rename
    /// is the commit point; [`recover_rotation`] completes or undoes the rest after a
    /// crash at any step.
    ///
    /// # Errors
    /// [`KeyError::MasterMismatch`] if `master_path` does not hold this custodian's
    /// master key (rotating then would orphan the store); [`KeyError::Tampered`] if any
    /// blob does not open, before anything is written, so no key is dropped; RNG and I/O
    /// errors. An I/O error after the store rename leaves the custodian on the new key
    /// and the final step to [`recover_rotation`] at the next start.
    pub fn rotate_master(&self, master_path: &Path) -> Result<String, KeyError> {
        let mut st = self.lock();
        let on_disk = MasterKey::load(master_path)?.ok_or_else(|| {
            KeyError::io(
                "load master key",
                master_path,
                std::io::ErrorKind::NotFound.into(),
            )
        })?;
        let file_fingerprint = on_disk.fingerprint();
        drop(on_disk);
        if file_fingerprint != st.fingerprint {
            return Err(KeyError::MasterMismatch {
                master_path: master_path.to_owned(),
                file_fingerprint,
                custodian_fingerprint: st.fingerprint.clone(),
            });
        }

        let new_master = MasterKey::generate()?;
        let new_fingerprint = new_master.fingerprint();
        let mut new_blobs = BTreeMap::new();
        for (session, blob) in &st.blobs {
            let key = unseal(&st.master, session, blob)?;
            new_blobs.insert(session.clone(), seal(&new_master, session, &key)?);
        }
        let bytes = serialize_store(&new_fingerprint, &new_blobs)?;

        let master_next = fsio::sibling(master_path, ".next");
        let store_next = fsio::sibling(&self.path, ".next");
        let master_dir = fsio::parent_dir(master_path);
        let store_dir = fsio::parent_dir(&self.path);
        // Any `.next` left from an earlier failed attempt is stale: the check above shows
        // the store is still sealed under the master at `master_path`. Each staged file
        // is durable, its directory entry included, once written.
        let staged = (|| {
            fsio::write_private_file(&master_next, new_master.as_bytes())?;
            fsio::write_private_file(&store_next, &bytes)?;
            fsio::rename(&store_next, &self.path)
        })();
        if let Err(e) = staged {
            // Nothing is committed yet; this is the roll-back that recovery would do.
            let _ = fsio::remove_if_exists(&store_next);
            let _ = fsio::remove_if_exists(&master_next);
            let _ = fsio::fsync_dir(store_dir);
            let _ = fsio::fsync_dir(master_dir);
            return Err(e);
        }
        // Committed: the store on disk is sealed under the new master, so every later
        // write must be too, whatever happens to the last step.
        *st = State {
            master: new_master,
            fingerprint: new_fingerprint.clone(),
            blobs: new_blobs,
        };
        fsio::fsync_dir(store_dir)?;
        fsio::rename(&master_next, master_path)?;
        fsio::fsync_dir(master_dir)?;
        Ok(new_fingerprint)
    }

    /// Writes `next` as the whole store and makes it the in-memory state.
    fn commit(&self, st: &mut State, next: BTreeMap<SessionId, String>) -> Result<(), KeyError> {
        let bytes = serialize_store(&st.fingerprint, &next)?;
        match ironclaw_hostfs::write_private(&self.path, &bytes) {
            Ok(()) => {
                st.blobs = next;
                Ok(())
            }
            Err(e) => {
                // If only the directory fsync failed, the new file has the name: keeping
                // the old map in memory then would let a later write resurrect a
                // destroyed key.
                if e.in_place() {
                    st.blobs = next;
                }
                Err(e.into())
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave `State` half-changed: each change
        // is one assignment of a fully built value, made after the disk write that
        // justifies it. So a poisoned lock still guards a committed state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for KeyCustodian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("KeyCustodian")
            .field("path", &self.path)
            .field("master_fingerprint", &st.fingerprint)
            .field("sessions", &st.blobs.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_layout_is_nonce_ciphertext_tag() {
        let m = MasterKey::from_bytes([1; 32]);
        let s = SessionId::new("s1").unwrap();
        let k = SessionKey::from_bytes([2; 32]);
        let blob = seal(&m, &s, &k).unwrap();
        assert_eq!(blob.len(), BLOB_LEN * 2);
        assert_eq!(unseal(&m, &s, &blob).unwrap(), k);
        // Fresh nonce per seal.
        assert_ne!(seal(&m, &s, &k).unwrap(), blob);
        // Other master, other session: no.
        let other = SessionId::new("s2").unwrap();
        assert!(matches!(
            unseal(&m, &other, &blob),
            Err(KeyError::Tampered { .. })
        ));
        assert!(matches!(
            unseal(&MasterKey::from_bytes([3; 32]), &s, &blob),
            Err(KeyError::Tampered { .. })
        ));
        assert!(matches!(
            unseal(&m, &s, "zz"),
            Err(KeyError::Tampered { .. })
        ));
    }
}
