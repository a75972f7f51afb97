//! The image trust policy: which sandbox images the provisioner may unpack.
//!
//! For: parsing and validating the operator's policy file (JSON) into pinned manifest
//! digests and trusted cosign public keys. Not for: evaluating a layout against it
//! (`verify`).
//!
//! The format, strict by design (unknown fields are an error, so a typo such as
//! `"pinned_digest"` cannot silently turn into "trust nothing extra" or, worse, be read
//! by a later version as something else):
//!
//! ```json
//! {
//!   "version": 1,
//!   "pinned_digests": ["sha256:<64 hex>"],
//!   "cosign_keys": [
//!     { "name": "release", "path": "image-signing.pub" },
//!     { "name": "ci", "pem": "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n" }
//!   ]
//! }
//! ```
//!
//! An image is trusted when its manifest digest is pinned **or** it carries a valid
//! cosign signature by one of the keys. A policy that pins nothing and names no key
//! would trust nothing; it is refused at load time with a clear error rather than
//! accepted as a policy under which every launch fails later for a less obvious reason.
//! Relative key paths are resolved against the policy file's directory.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cosign::{KeyError, PublicKey};
use crate::digest::Digest;

/// The only policy format version.
pub const POLICY_VERSION: u32 = 1;
const MAX_POLICY_FILE: u64 = 1024 * 1024;

/// A policy that cannot be used. Every variant means "refuse": there is no fallback to
/// a weaker policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read trust policy {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("trust policy {path} is not a regular file")]
    NotRegularFile { path: PathBuf },
    #[error("trust policy {path} is writable by group or others (mode {mode:04o}); anyone who can edit it decides which images run: chmod go-w it")]
    Writable { path: PathBuf, mode: u32 },
    #[error("trust policy {path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("trust policy {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("trust policy {path} has version {found}; this build understands version {POLICY_VERSION} only")]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("trust policy {path} pins no digest and trusts no key: no image could ever be trusted, refusing the policy")]
    Empty { path: PathBuf },
    #[error(
        "trust policy {path}: cosign_keys[{index}] must have exactly one of \"path\" and \"pem\""
    )]
    KeySource { path: PathBuf, index: usize },
    #[error("trust policy {path}: cosign key {name:?}: {source}")]
    Key {
        path: PathBuf,
        name: String,
        #[source]
        source: KeyError,
    },
    #[error("trust policy {path}: two cosign keys are named {name:?}")]
    DuplicateKeyName { path: PathBuf, name: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    #[serde(default)]
    pinned_digests: Vec<Digest>,
    #[serde(default)]
    cosign_keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    pem: Option<String>,
}

/// A trusted cosign key with the name errors and receipts use for it.
#[derive(Debug, Clone)]
pub(crate) struct TrustedKey {
    pub name: String,
    pub key: PublicKey,
}

/// A validated, non-empty trust policy.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    pins: BTreeSet<Digest>,
    keys: Vec<TrustedKey>,
}

impl TrustPolicy {
    /// Reads and validates the policy file at `path`. The file must be a regular file
    /// that group and others cannot write (whoever can edit it chooses what runs).
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let io_err = |source| PolicyError::Io {
            path: path.to_owned(),
            source,
        };
        // Symlinks are followed (operators link policies from config management), but
        // what they point to must be a regular file: checked before opening (opening a
        // FIFO would block) and again on the opened file (the name may be swapped).
        if !fs::metadata(path).map_err(io_err)?.is_file() {
            return Err(PolicyError::NotRegularFile {
                path: path.to_owned(),
            });
        }
        let file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(PolicyError::NotRegularFile {
                path: path.to_owned(),
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(PolicyError::Writable {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = String::new();
        file.take(MAX_POLICY_FILE + 1)
            .read_to_string(&mut text)
            .map_err(io_err)?;
        if text.len() as u64 > MAX_POLICY_FILE {
            return Err(PolicyError::TooLarge {
                path: path.to_owned(),
                limit: MAX_POLICY_FILE,
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base)
    }

    /// Parses policy JSON; `origin` names it in errors, `base_dir` anchors relative key
    /// paths.
    pub fn from_json(text: &str, origin: &Path, base_dir: &Path) -> Result<Self, PolicyError> {
        Self::parse(text, origin, base_dir)
    }

    fn parse(text: &str, origin: &Path, base_dir: &Path) -> Result<Self, PolicyError> {
        let file: PolicyFile = serde_json::from_str(text).map_err(|source| PolicyError::Parse {
            path: origin.to_owned(),
            source,
        })?;
        if file.version != POLICY_VERSION {
            return Err(PolicyError::UnsupportedVersion {
                path: origin.to_owned(),
                found: file.version,
            });
        }
        let mut keys: Vec<TrustedKey> = Vec::new();
        for (index, entry) in file.cosign_keys.into_iter().enumerate() {
            let (key, default_name) = match (entry.path, entry.pem) {
                (Some(p), None) => {
                    let full = if p.is_absolute() { p } else { base_dir.join(p) };
                    let name = full.display().to_string();
                    (PublicKey::load(&full), name)
                }
                (None, Some(pem)) => (PublicKey::from_pem(&pem), format!("cosign_keys[{index}]")),
                _ => {
                    return Err(PolicyError::KeySource {
                        path: origin.to_owned(),
                        index,
                    })
                }
            };
            let name = entry.name.unwrap_or(default_name);
            let key = key.map_err(|source| PolicyError::Key {
                path: origin.to_owned(),
                name: name.clone(),
                source,
            })?;
            if keys.iter().any(|k| k.name == name) {
                return Err(PolicyError::DuplicateKeyName {
                    path: origin.to_owned(),
                    name,
                });
            }
            keys.push(TrustedKey { name, key });
        }
        let pins: BTreeSet<Digest> = file.pinned_digests.into_iter().collect();
        Self::new(pins, keys).ok_or_else(|| PolicyError::Empty {
            path: origin.to_owned(),
        })
    }

    /// A policy from values already in hand (tests, embedding). `None` when it would
    /// trust nothing.
    pub fn from_parts(
        pins: impl IntoIterator<Item = Digest>,
        keys: impl IntoIterator<Item = (String, PublicKey)>,
    ) -> Option<Self> {
        Self::new(
            pins.into_iter().collect(),
            keys.into_iter()
                .map(|(name, key)| TrustedKey { name, key })
                .collect(),
        )
    }

    fn new(pins: BTreeSet<Digest>, keys: Vec<TrustedKey>) -> Option<Self> {
        if pins.is_empty() && keys.is_empty() {
            None
        } else {
            Some(Self { pins, keys })
        }
    }

    /// Whether `digest` is pinned.
    pub fn is_pinned(&self, digest: &Digest) -> bool {
        self.pins.contains(digest)
    }

    /// The pinned digests.
    pub fn pins(&self) -> impl Iterator<Item = &Digest> {
        self.pins.iter()
    }

    /// The names of the trusted keys.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.name.as_str())
    }

    pub(crate) fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const PIN: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(text: &str) -> Result<TrustPolicy, PolicyError> {
        TrustPolicy::from_json(text, Path::new("policy.json"), Path::new("/nonexistent"))
    }

    #[test]
    fn a_pin_only_policy_parses() {
        let p = parse(&format!(r#"{{"version":1,"pinned_digests":["{PIN}"]}}"#)).unwrap();
        assert!(p.is_pinned(&Digest::parse(PIN).unwrap()));
        assert_eq!(p.key_names().count(), 0);
    }

    #[test]
    fn unknown_fields_anywhere_are_refused() {
        for text in [
            format!(r#"{{"version":1,"pinned_digests":["{PIN}"],"allow_unsigned":true}}"#),
            format!(r#"{{"version":1,"pinned_digest":["{PIN}"]}}"#),
            r#"{"version":1,"cosign_keys":[{"pem":"x","fingerprint":"y"}]}"#.to_owned(),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(matches!(err, PolicyError::Parse { .. }), "{text}: {err}");
            assert!(err.to_string().contains("unknown field"), "{err}");
        }
    }

    #[test]
    fn empty_unparsable_and_wrong_version_policies_are_refused() {
        assert!(matches!(
            parse(r#"{"version":1}"#),
            Err(PolicyError::Empty { .. })
        ));
        assert!(matches!(
            parse(r#"{"version":1,"pinned_digests":[],"cosign_keys":[]}"#),
            Err(PolicyError::Empty { .. })
        ));
        assert!(matches!(parse(""), Err(PolicyError::Parse { .. })));
        assert!(matches!(parse("{"), Err(PolicyError::Parse { .. })));
        assert!(matches!(parse("[]"), Err(PolicyError::Parse { .. })));
        assert!(matches!(
            parse(&format!(r#"{{"version":2,"pinned_digests":["{PIN}"]}}"#)),
            Err(PolicyError::UnsupportedVersion { found: 2, .. })
        ));
        // A malformed pin is a parse error naming the value.
        let err = parse(r#"{"version":1,"pinned_digests":["sha256:ABC"]}"#).unwrap_err();
        assert!(err.to_string().contains("sha256:ABC"), "{err}");
        // A key entry needs exactly one source, and the key must be P-256.
        assert!(matches!(
            parse(r#"{"version":1,"cosign_keys":[{"name":"k"}]}"#),
            Err(PolicyError::KeySource { index: 0, .. })
        ));
        assert!(matches!(
            parse(r#"{"version":1,"cosign_keys":[{"pem":"junk"}]}"#),
            Err(PolicyError::Key { .. })
        ));
        assert!(matches!(
            parse(r#"{"version":1,"cosign_keys":[{"path":"missing.pub"}]}"#),
            Err(PolicyError::Key { .. })
        ));
    }

    #[test]
    fn keys_load_from_relative_paths_and_group_writable_policies_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::cosign::generate_signing_key(dir.path()).unwrap();
        let pem = fs::read_to_string(&files.public_key).unwrap();
        let policy = dir.path().join("policy.json");
        let text = serde_json::json!({
            "version": 1,
            "cosign_keys": [
                {"name": "file", "path": crate::cosign::PUBLIC_KEY_FILE},
                {"name": "inline", "pem": pem},
            ]
        })
        .to_string();
        fs::write(&policy, &text).unwrap();
        fs::set_permissions(&policy, fs::Permissions::from_mode(0o644)).unwrap();
        let p = TrustPolicy::load(&policy).unwrap();
        assert_eq!(p.key_names().collect::<Vec<_>>(), ["file", "inline"]);

        fs::set_permissions(&policy, fs::Permissions::from_mode(0o664)).unwrap();
        assert!(matches!(
            TrustPolicy::load(&policy),
            Err(PolicyError::Writable { mode: 0o664, .. })
        ));
        assert!(matches!(
            TrustPolicy::load(&dir.path().join("absent.json")),
            Err(PolicyError::Io { .. })
        ));
        let dup = text.replace("\"inline\"", "\"file\"");
        assert!(matches!(
            TrustPolicy::from_json(&dup, &policy, dir.path()),
            Err(PolicyError::DuplicateKeyName { .. })
        ));
    }
}
