//! The token file and its in-memory cache.
//!
//! File format (`<state>/tokens`, mode 0600):
//!
//! ```json
//! {"version": 1, "tokens": [{"name": "alice", "principal": "operator:alice",
//!   "token_sha256": "<64 hex>", "created_at": "<rfc3339>", "created_by": null,
//!   "revoked_at": null, "revoked_by": null}]}
//! ```
//!
//! Records are never deleted: a revoked record stays as the history of who held a
//! token when, and keeps the audit trail's `operator:<name>` meaningful.
//!
//! Every change rewrites the whole file atomically (temporary file, fsync, rename, fsync
//! of the directory), so a crash leaves either the old or the new file, never a torn
//! one. Anything unexpected on open — loose permissions, a symlink, unparseable or
//! inconsistent content — is a typed error: a token file that cannot be trusted must
//! lock everyone out, not silently become an empty (or attacker-chosen) token set.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use ironclaw_contract::ids::UserId;
use ironclaw_contract::time::Timestamp;
use serde::{Deserialize, Serialize};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::name::{operator_user_id, validate_name};
use crate::token::{
    check_adoptable, digest, parse_digest_hex, to_hex, SecretToken, TokenDigest, MAX_PRESENTED_LEN,
};
use crate::{IdentityError, Principal};

/// The only file format version this build reads and writes.
const FILE_VERSION: u64 = 1;
/// A token file larger than this is refused. One record is ~350 bytes, so this holds
/// tens of thousands of records (revoked ones included) while bounding what a
/// corrupted or hostile file can make the process allocate.
const MAX_FILE_LEN: u64 = 8 << 20;
/// Hex digits of the digest shown to identify a token.
const PREFIX_HEX_LEN: usize = 8;

/// One token as operators see it: who it belongs to and its history. Carries no secret:
/// only an 8-hex-digit prefix of the token's SHA-256, enough to tell tokens apart in a
/// listing (and to match one the operator holds), never enough to stand in for the
/// stored digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// The operator name.
    pub name: String,
    /// `operator:<name>`.
    pub principal: UserId,
    /// The first 8 hex digits of SHA-256(token).
    pub hash_prefix: String,
    pub created_at: Timestamp,
    /// Who created the token; `None` for bootstrap (`ironctl`, `--dev`).
    pub created_by: Option<UserId>,
    /// When the token was revoked (or replaced); `None` while it is active.
    pub revoked_at: Option<Timestamp>,
    /// Who revoked it, if known.
    pub revoked_by: Option<UserId>,
}

impl TokenRecord {
    /// True until the token is revoked.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

impl fmt::Display for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) sha256 {}… created {}",
            self.name, self.principal, self.hash_prefix, self.created_at
        )?;
        if let Some(by) = &self.created_by {
            write!(f, " by {by}")?;
        }
        match (&self.revoked_at, &self.revoked_by) {
            (None, _) => f.write_str(", active"),
            (Some(at), None) => write!(f, ", revoked {at}"),
            (Some(at), Some(by)) => write!(f, ", revoked {at} by {by}"),
        }
    }
}

/// A record with the full digest it is matched on.
#[derive(Clone)]
struct Entry {
    record: TokenRecord,
    digest: TokenDigest,
    /// Prebuilt so that `authenticate` does not allocate a `UserId` per request.
    principal: Principal,
}

impl Entry {
    fn new(
        name: &str,
        user_id: UserId,
        digest: TokenDigest,
        created_at: Timestamp,
        created_by: Option<UserId>,
    ) -> Self {
        let hex = to_hex(&digest);
        Self {
            record: TokenRecord {
                name: name.to_owned(),
                principal: user_id.clone(),
                hash_prefix: hex[..PREFIX_HEX_LEN].to_owned(),
                created_at,
                created_by,
                revoked_at: None,
                revoked_by: None,
            },
            digest,
            principal: Principal {
                name: name.to_owned(),
                user_id,
            },
        }
    }

    fn is_active(&self) -> bool {
        self.record.is_active()
    }

    fn revoke(&mut self, at: Timestamp, by: Option<UserId>) {
        self.record.revoked_at = Some(at);
        self.record.revoked_by = by;
    }

    fn to_file(&self) -> FileRecord {
        FileRecord {
            name: self.record.name.clone(),
            principal: self.record.principal.clone(),
            token_sha256: to_hex(&self.digest),
            created_at: self.record.created_at,
            created_by: self.record.created_by.clone(),
            revoked_at: self.record.revoked_at,
            revoked_by: self.record.revoked_by.clone(),
        }
    }
}

/// The on-disk document.
///
/// Unknown fields are refused rather than ignored: a hand edit such as `"revoked": ...`
/// (for `revoked_at`) must not silently leave a token active.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    version: u64,
    tokens: Vec<FileRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRecord {
    name: String,
    principal: UserId,
    token_sha256: String,
    created_at: Timestamp,
    #[serde(default)]
    created_by: Option<UserId>,
    #[serde(default)]
    revoked_at: Option<Timestamp>,
    #[serde(default)]
    revoked_by: Option<UserId>,
}

/// Read first, so that a future version is reported as such rather than as whatever
/// shape mismatch its records would cause.
#[derive(Deserialize)]
struct VersionProbe {
    version: u64,
}

/// The operator tokens of one control plane, backed by a JSON file.
///
/// [`authenticate`](Self::authenticate) runs on every API request and reads only the
/// in-memory cache. The cache is refreshed by this store's own changes (each of which
/// first re-reads the file, so a change made meanwhile by another process — `ironctl`
/// on the same state dir — is kept rather than overwritten) and by
/// [`reload`](Self::reload). Two processes changing the file at the very same moment
/// can still lose one change; changes are rare, human-driven operations.
pub struct TokenStore {
    path: PathBuf,
    entries: RwLock<Vec<Entry>>,
    /// Serializes changes so that read-modify-write cycles never interleave. Separate
    /// from `entries` so that authentication never waits for an fsync.
    writer: Mutex<()>,
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .field("records", &self.read().len())
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    /// Opens the token file at `path`. A missing file is an empty store; nothing is
    /// written until the first change.
    pub fn open(path: &Path) -> Result<TokenStore, IdentityError> {
        let entries = load(path)?;
        Ok(TokenStore {
            path: path.to_owned(),
            entries: RwLock::new(entries),
            writer: Mutex::new(()),
        })
    }

    /// The token file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file, e.g. on SIGHUP after `ironctl` changed it. On error the cache
    /// is left as it was.
    pub fn reload(&self) -> Result<(), IdentityError> {
        let _w = self.lock_writer();
        let fresh = load(&self.path)?;
        *self.write() = fresh;
        Ok(())
    }

    /// Mints a token for operator `name`. The token is returned once and never stored;
    /// the caller shows it to the operator and drops it.
    ///
    /// Refuses an invalid name and a name that already has an active token
    /// ([`IdentityError::NameTaken`]); use [`rotate`](Self::rotate) to replace one.
    pub fn create(
        &self,
        name: &str,
        created_by: Option<&UserId>,
    ) -> Result<(TokenRecord, SecretToken), IdentityError> {
        let user_id = operator_user_id(name)?;
        let token = SecretToken::generate()?;
        let digest = token.digest();
        // A digest collision with another active token would need a 2^-128 birthday
        // event on 256-bit random tokens; it is not checked for.
        let record = self.mutate(|entries| {
            if active_index(entries, name).is_some() {
                return Err(IdentityError::NameTaken {
                    name: name.to_owned(),
                });
            }
            let entry = Entry::new(name, user_id, digest, Timestamp::now(), created_by.cloned());
            let record = entry.record.clone();
            entries.push(entry);
            Ok((record, true))
        })?;
        Ok((record, token))
    }

    /// Who presents `presented`, if anyone.
    ///
    /// `presented` is the bare token: the caller strips `Bearer `. Values longer than
    /// 256 bytes are refused without hashing. The digest is compared against every
    /// active record in constant time and the scan never stops early, so the response
    /// time says nothing about which record, or how much of one, matched. (With SHA-256
    /// in front an attacker cannot steer digest bytes anyway; the constant-time scan
    /// removes the question rather than relying on that argument.)
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        if presented.is_empty() || presented.len() > MAX_PRESENTED_LEN {
            return None;
        }
        let wanted = digest(presented);
        let entries = self.read();
        let mut found = Choice::from(0);
        let mut index: u64 = 0;
        for (i, entry) in entries.iter().enumerate() {
            // Whether a record is revoked is not secret, so branching on it leaks
            // nothing about the presented value.
            if !entry.is_active() {
                continue;
            }
            let eq = entry.digest[..].ct_eq(&wanted[..]);
            index.conditional_assign(&(i as u64), eq);
            found |= eq;
        }
        if bool::from(found) {
            let i = usize::try_from(index).ok()?;
            entries.get(i).map(|e| e.principal.clone())
        } else {
            None
        }
    }

    /// Every record, active and revoked, oldest first.
    pub fn list(&self) -> Vec<TokenRecord> {
        self.read().iter().map(|e| e.record.clone()).collect()
    }

    /// True when no token is active: nobody can authenticate (bootstrap is needed).
    pub fn is_empty(&self) -> bool {
        !self.read().iter().any(Entry::is_active)
    }

    /// Revokes the active token of `name`. Returns whether there was one. The record
    /// stays in the file, marked revoked.
    pub fn revoke(&self, name: &str, revoked_by: &UserId) -> Result<bool, IdentityError> {
        validate_name(name)?;
        self.mutate(|entries| match active_index(entries, name) {
            Some(i) => {
                entries[i].revoke(Timestamp::now(), Some(revoked_by.clone()));
                Ok((true, true))
            }
            None => Ok((false, false)),
        })
    }

    /// Replaces the active token of `name` with a new one in a single durable write:
    /// there is no moment at which both, or neither, are valid on disk.
    pub fn rotate(&self, name: &str, by: &UserId) -> Result<SecretToken, IdentityError> {
        let user_id = operator_user_id(name)?;
        let token = SecretToken::generate()?;
        let digest = token.digest();
        self.mutate(|entries| {
            let i = active_index(entries, name).ok_or_else(|| IdentityError::NoActiveToken {
                name: name.to_owned(),
            })?;
            let now = Timestamp::now();
            entries[i].revoke(now, Some(by.clone()));
            entries.push(Entry::new(name, user_id, digest, now, Some(by.clone())));
            Ok(((), true))
        })?;
        Ok(token)
    }

    /// Registers a caller-provided token for `name` (for `--dev`, where the operator
    /// sets `IRONCLAW_API_TOKEN`).
    ///
    /// Refuses tokens shorter than 32 characters, longer than 256 bytes, or with
    /// whitespace, control or non-ASCII characters, and a token that is already the
    /// active token of another operator (one token must name one principal). If `name`
    /// already holds this very token it is returned unchanged and nothing is written,
    /// so adopting on every start is idempotent. If `name` holds a different token,
    /// that one is revoked and the new one added in one write.
    pub fn adopt(
        &self,
        name: &str,
        token: &str,
        created_by: Option<&UserId>,
    ) -> Result<TokenRecord, IdentityError> {
        let user_id = operator_user_id(name)?;
        check_adoptable(token)?;
        let wanted = digest(token);
        self.mutate(|entries| {
            // Plain comparisons are fine here: this is configuration the operator
            // supplies, not a guessing oracle reachable over the API.
            if let Some(other) = entries
                .iter()
                .find(|e| e.is_active() && e.record.name != name && e.digest == wanted)
            {
                return Err(IdentityError::TokenInUse {
                    name: other.record.name.clone(),
                });
            }
            let now = Timestamp::now();
            match active_index(entries, name) {
                Some(i) if entries[i].digest == wanted => Ok((entries[i].record.clone(), false)),
                current => {
                    if let Some(i) = current {
                        entries[i].revoke(now, created_by.cloned());
                    }
                    let entry = Entry::new(name, user_id, wanted, now, created_by.cloned());
                    let record = entry.record.clone();
                    entries.push(entry);
                    Ok((record, true))
                }
            }
        })
    }

    /// Runs one read-modify-write cycle: re-read the file, apply `change`, persist if
    /// `change` reports a modification, then publish the result to the cache.
    fn mutate<T>(
        &self,
        change: impl FnOnce(&mut Vec<Entry>) -> Result<(T, bool), IdentityError>,
    ) -> Result<T, IdentityError> {
        let _w = self.lock_writer();
        let mut entries = load(&self.path)?;
        let (out, changed) = change(&mut entries)?;
        if changed {
            if let Err(e) = persist(&self.path, &entries) {
                // The failure may have come after the rename (directory fsync), in
                // which case the new file is what readers see. Mirror whatever is on
                // disk so a revocation that landed is honoured; if even that read
                // fails, keep the old cache.
                if let Ok(on_disk) = load(&self.path) {
                    *self.write() = on_disk;
                }
                return Err(e);
            }
        }
        *self.write() = entries;
        Ok(out)
    }

    // Lock poisoning is ignored deliberately: the cache is only ever replaced whole by
    // a single assignment, so a panic elsewhere cannot leave it half-updated, and the
    // writer mutex guards no data at all.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Entry>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The index of `name`'s active record. The file invariants allow at most one.
fn active_index(entries: &[Entry], name: &str) -> Option<usize> {
    entries
        .iter()
        .position(|e| e.is_active() && e.record.name == name)
}

fn io_err(path: &Path, op: &'static str, source: io::Error) -> IdentityError {
    IdentityError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// Refuses any group or other permission bit. The file holds only digests, but write
/// access would let anyone add their own, and read access is an offline-attack surface
/// nobody needs.
fn check_mode(path: &Path, mode: u32) -> Result<(), IdentityError> {
    if mode & 0o077 != 0 {
        return Err(IdentityError::InsecurePermissions {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// Reads and validates the token file; a missing file is an empty store.
fn load(path: &Path) -> Result<Vec<Entry>, IdentityError> {
    let link_meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path, "inspect", e)),
    };
    let kind = link_meta.file_type();
    if kind.is_symlink() {
        return Err(IdentityError::Symlink {
            path: path.to_owned(),
        });
    }
    // Checked before opening: opening a FIFO would block.
    if !kind.is_file() {
        return Err(IdentityError::NotAFile {
            path: path.to_owned(),
        });
    }
    check_mode(path, link_meta.mode())?;

    let replaced = || IdentityError::Replaced {
        path: path.to_owned(),
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(replaced()),
        Err(e) => return Err(io_err(path, "open", e)),
    };
    // `open` follows symlinks, so the name could have been swapped for one between
    // the `lstat` above and the `open`. Comparing device and inode of what was opened
    // with what was inspected closes that window without an O_NOFOLLOW flag (whose
    // value differs between architectures and would need libc).
    let meta = file.metadata().map_err(|e| io_err(path, "inspect", e))?;
    if meta.dev() != link_meta.dev() || meta.ino() != link_meta.ino() {
        return Err(replaced());
    }
    check_mode(path, meta.mode())?;
    if meta.len() > MAX_FILE_LEN {
        return Err(IdentityError::TooLarge {
            path: path.to_owned(),
            len: meta.len(),
            max: MAX_FILE_LEN,
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, "read", e))?;
    let len = bytes.len() as u64;
    if len > MAX_FILE_LEN {
        return Err(IdentityError::TooLarge {
            path: path.to_owned(),
            len,
            max: MAX_FILE_LEN,
        });
    }
    parse(path, &bytes)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>, IdentityError> {
    let corrupt = |reason: String| IdentityError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let json_err = |e: serde_json::Error| corrupt(redact_quoted(&e.to_string()));

    // serde would also read a struct from a JSON array (`[1, []]`); only the documented
    // object form is accepted.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(corrupt("not a JSON object".to_owned()));
    }
    let probe: VersionProbe = serde_json::from_slice(bytes).map_err(json_err)?;
    if probe.version != FILE_VERSION {
        return Err(IdentityError::UnsupportedVersion {
            path: path.to_owned(),
            version: probe.version,
        });
    }
    let doc: FileDoc = serde_json::from_slice(bytes).map_err(json_err)?;

    let mut entries = Vec::with_capacity(doc.tokens.len());
    for (i, r) in doc.tokens.into_iter().enumerate() {
        let user_id = operator_user_id(&r.name).map_err(|e| corrupt(format!("record {i}: {e}")))?;
        if r.principal != user_id {
            return Err(corrupt(format!(
                "record {i}: principal {} does not match name {:?}",
                r.principal, r.name
            )));
        }
        let digest = parse_digest_hex(&r.token_sha256).ok_or_else(|| {
            corrupt(format!(
                "record {i} ({}): token_sha256 is not 64 lowercase hex digits",
                r.name
            ))
        })?;
        if r.revoked_by.is_some() && r.revoked_at.is_none() {
            return Err(corrupt(format!(
                "record {i} ({}): revoked_by is set but revoked_at is not",
                r.name
            )));
        }
        let mut entry = Entry::new(&r.name, user_id, digest, r.created_at, r.created_by);
        entry.record.revoked_at = r.revoked_at;
        entry.record.revoked_by = r.revoked_by;
        entries.push(entry);
    }

    // The invariants every change maintains. A file breaking them was edited by hand
    // or by something else; guessing which record was meant is not this crate's call.
    let mut names = HashSet::new();
    let mut digests = HashSet::new();
    for (i, e) in entries.iter().enumerate().filter(|(_, e)| e.is_active()) {
        if !names.insert(e.record.name.as_str()) {
            return Err(corrupt(format!(
                "record {i}: operator {:?} has more than one active token",
                e.record.name
            )));
        }
        if !digests.insert(e.digest) {
            return Err(corrupt(format!(
                "record {i} ({}): the same token is active for two operators",
                e.record.name
            )));
        }
    }
    Ok(entries)
}

/// serde_json quotes offending string values in its messages ("invalid type: string
/// \"…\", expected u64"). A hand-edited file could hold a digest, or even a pasted
/// token, in the wrong place, so quoted text is elided; field names (in backticks) and
/// positions stay, which is what an operator needs to find the problem.
fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            out.push(c);
            continue;
        }
        out.push_str("\"…\"");
        // Skip to the closing quote, honouring backslash escapes.
        while let Some(q) = chars.next() {
            match q {
                '\\' => {
                    chars.next();
                }
                '"' => break,
                _ => {}
            }
        }
    }
    out
}

/// Writes `entries` to `path` atomically and durably, through the host's one private-file
/// writer: a 0600 temporary file beside it (never through a link), fsync, rename, fsync
/// of the directory. Its random temporary name keeps two processes writing at once
/// (the daemon and `ironctl`) out of each other's way.
fn persist(path: &Path, entries: &[Entry]) -> Result<(), IdentityError> {
    let doc = FileDoc {
        version: FILE_VERSION,
        tokens: entries.iter().map(Entry::to_file).collect(),
    };
    let mut json = serde_json::to_vec_pretty(&doc)
        .map_err(|e| io_err(path, "serialize", io::Error::other(e)))?;
    json.push(b'\n');
    ironclaw_hostfs::write_private(path, &json).map_err(|e| {
        let (op, path, source) = e.into_parts();
        io_err(&path, op, source)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_text_is_redacted() {
        assert_eq!(
            redact_quoted(r#"invalid type: string "abc\"def", expected u64 at line 1"#),
            "invalid type: string \"…\", expected u64 at line 1"
        );
        assert_eq!(
            redact_quoted("missing field `name`"),
            "missing field `name`"
        );
        assert_eq!(redact_quoted("open \"forever"), "open \"…\"");
    }

    #[test]
    fn record_display_shows_only_the_prefix() {
        let d = digest("icw_example");
        let e = Entry::new(
            "alice",
            operator_user_id("alice").unwrap(),
            d,
            Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
            None,
        );
        let full = to_hex(&d);
        let shown = format!("{} {:?}", e.record, e.record);
        assert!(shown.contains(&full[..8]));
        assert!(!shown.contains(&full[..9]), "{shown}");
        assert_eq!(
            e.record.to_string(),
            format!(
                "alice (operator:alice) sha256 {}… created 2026-01-01T00:00:00.000000000Z, active",
                &full[..8]
            )
        );
    }
}
