//! Cosign-compatible keys and signatures: ECDSA P-256 key pairs (cosign's default), the
//! "simple signing" payload, and the signature manifest stored beside the image in the
//! layout, in the shape `cosign save` writes.
//!
//! For: generating and loading signing keys, signing an image layout, and checking one
//! signature against one public key (all cryptography goes through the `sigstore`
//! crate). Not for: deciding which keys are trusted (`policy`), or which image a layout
//! holds and whether it may run (`verify`).
//!
//! Byte-for-byte with cosign:
//! - the payload is exactly the JSON cosign signs (`simple_signing_payload`), compact,
//!   with cosign's field order and `"optional":null`;
//! - the signature is ASN.1 DER ECDSA over SHA-256 of the payload, base64 (standard
//!   alphabet, padded) in the layer annotation `dev.cosignproject.cosign/signature`;
//! - the payload is a layer of media type `application/vnd.dev.cosign.simplesigning.v1+json`
//!   of a manifest whose `index.json` entry carries both `kind:
//!   dev.cosignproject.cosign/sigs` (what `cosign save`/`cosign load` use) and the tag
//!   `org.opencontainers.image.ref.name: sha256-<hex>.sig` (cosign's tag-based discovery
//!   name, so copying the layout to a registry tag by tag gives cosign what it looks for).
//! - Public keys are PEM `PUBLIC KEY` (SPKI), like `cosign.pub`. Private keys we write
//!   are unencrypted PKCS#8 `PRIVATE KEY` PEM, mode 0600 (cosign writes an encrypted
//!   `ENCRYPTED SIGSTORE PRIVATE KEY`; `cosign import-key-pair` converts ours, and
//!   [`SigningKey::load_encrypted`] reads cosign's).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ironclaw_hostfs::FileMode;
use serde::{Deserialize, Serialize};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, SigStoreSigner, Signature, SigningScheme};
use zeroize::Zeroizing;

use crate::digest::Digest;
use crate::layout::{
    self, Descriptor, LayoutError, LayoutReader, LayoutWriter, Manifest, ANNOTATION_KIND,
    ANNOTATION_REF_NAME, ANNOTATION_SIGNATURE, KIND_SIGNATURES, MEDIA_OCI_CONFIG,
    MEDIA_OCI_MANIFEST, MEDIA_SIMPLE_SIGNING,
};

/// `critical.type` of every cosign container image signature.
pub(crate) const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";
/// File names [`generate_signing_key`] writes.
pub const PRIVATE_KEY_FILE: &str = "image-signing.key";
pub const PUBLIC_KEY_FILE: &str = "image-signing.pub";
/// The docker-reference [`crate::build_and_sign`] signs for. Cosign itself ignores this
/// field when verifying, and so does the provisioner; it is informational.
pub const DEFAULT_REFERENCE: &str = "ironclaw-sandbox";

/// Largest key file read (a P-256 PEM is under 300 bytes; cosign's encrypted one ~600).
const MAX_KEY_FILE: u64 = 16 * 1024;
/// Largest signature payload read (cosign's is ~250 bytes plus optional claims).
pub(crate) const MAX_PAYLOAD: u64 = 64 * 1024;
/// The signing scheme: the only one accepted for signing and for trusted keys.
const SCHEME: SigningScheme = SigningScheme::ECDSA_P256_SHA256_ASN1;

/// A key that cannot be generated, read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a regular file; refusing to use it as a key")]
    NotRegularFile { path: PathBuf },
    #[error("private key {path} has mode {mode:04o}: it may be readable by others; chmod 600 it (and consider it leaked)")]
    LoosePermissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path} already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
    #[error("{what}: {detail}")]
    Invalid { what: String, detail: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

impl KeyError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// A layout that cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "docker reference {0:?} is not valid (expected 1-255 characters of [A-Za-z0-9._/:@-])"
    )]
    BadReference(String),
}

/// A trusted cosign public key (ECDSA P-256).
#[derive(Clone)]
pub struct PublicKey {
    key: CosignVerificationKey,
    pem: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("sha256", &Digest::of(self.pem.as_bytes()).to_string())
            .finish()
    }
}

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY` (what `cosign generate-key-pair` writes to
    /// `cosign.pub`). Anything but an ECDSA P-256 key is refused: accepting every
    /// scheme sigstore knows would multiply what a stolen or weak key could do.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let trimmed = pem.trim();
        if !trimmed.starts_with("-----BEGIN PUBLIC KEY-----")
            || !trimmed.ends_with("-----END PUBLIC KEY-----")
        {
            return Err(KeyError::Invalid {
                what: "public key".into(),
                detail: "expected one PEM block \"PUBLIC KEY\"".into(),
            });
        }
        let key = CosignVerificationKey::from_pem(trimmed.as_bytes(), &SCHEME).map_err(|e| {
            KeyError::Invalid {
                what: "public key".into(),
                detail: format!("not an ECDSA P-256 public key: {e}"),
            }
        })?;
        Ok(Self {
            key,
            pem: format!("{trimmed}\n"),
        })
    }

    /// Reads a public key file (which must be a regular file).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let bytes = read_key_file(path, false)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::Invalid {
            what: format!("public key {}", path.display()),
            detail: "not UTF-8 text".into(),
        })?;
        Self::from_pem(text).map_err(|e| match e {
            KeyError::Invalid { detail, .. } => KeyError::Invalid {
                what: format!("public key {}", path.display()),
                detail,
            },
            other => other,
        })
    }

    /// The PEM text (ends with a newline).
    pub fn to_pem(&self) -> &str {
        &self.pem
    }

    /// Whether `signature_b64` (cosign's annotation value) is a valid signature of
    /// `payload` by this key. Verification is done by `sigstore`.
    pub(crate) fn verifies(&self, payload: &[u8], signature_b64: &str) -> bool {
        self.key
            .verify_signature(Signature::Base64Encoded(signature_b64.as_bytes()), payload)
            .is_ok()
    }
}

/// A private ECDSA P-256 signing key.
pub struct SigningKey {
    signer: SigStoreSigner,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    // Never the private half.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        let signer = SCHEME.create_signer().map_err(|e| KeyError::Invalid {
            what: "new signing key".into(),
            detail: e.to_string(),
        })?;
        Self::from_signer(signer)
    }

    fn from_signer(signer: SigStoreSigner) -> Result<Self, KeyError> {
        let public_pem = signer
            .to_sigstore_keypair()
            .and_then(|kp| kp.public_key_to_pem())
            .map_err(|e| KeyError::Invalid {
                what: "signing key".into(),
                detail: e.to_string(),
            })?;
        let public = PublicKey::from_pem(&public_pem)?;
        Ok(Self { signer, public })
    }

    /// Loads an unencrypted PKCS#8 `PRIVATE KEY` PEM (what [`generate_signing_key`]
    /// writes). The file must be a regular file with no group/other permission bits: a
    /// key others could read may already be someone else's key, and signing with it
    /// would give a false sense of protection.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        Self::load_encrypted(path, b"")
    }

    /// Loads a cosign key (`ENCRYPTED SIGSTORE PRIVATE KEY` / `ENCRYPTED COSIGN PRIVATE
    /// KEY`, scrypt + secretbox, as `cosign generate-key-pair` writes) with its password;
    /// with an empty password, also an unencrypted PKCS#8 key. Same file checks as
    /// [`SigningKey::load`].
    pub fn load_encrypted(path: &Path, password: &[u8]) -> Result<Self, KeyError> {
        let pem = read_key_file(path, true)?;
        let invalid = |detail: String| KeyError::Invalid {
            what: format!("signing key {}", path.display()),
            detail,
        };
        let pair = SigStoreKeyPair::from_encrypted_pem(&pem, password).map_err(|e| {
            invalid(format!(
                "not a readable ECDSA P-256 private key (wrong password, or not PEM): {e}"
            ))
        })?;
        let signer = pair
            .to_sigstore_signer(&SCHEME)
            .map_err(|e| invalid(format!("not an ECDSA P-256 key: {e}")))?;
        Self::from_signer(signer)
    }

    /// The public half, to put in a trust policy.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The base64 DER ECDSA signature of `payload`.
    pub(crate) fn sign(&self, payload: &[u8]) -> Result<String, KeyError> {
        let der = self
            .signer
            .sign(payload)
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(der))
    }

    fn private_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let pair = self
            .signer
            .to_sigstore_keypair()
            .map_err(|e| KeyError::Invalid {
                what: "signing key".into(),
                detail: e.to_string(),
            })?;
        let pem = pair.private_key_to_pem().map_err(|e| KeyError::Invalid {
            what: "signing key".into(),
            detail: e.to_string(),
        })?;
        Ok(Zeroizing::new(pem.as_str().to_owned()))
    }
}

/// Where [`generate_signing_key`] put the two halves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    /// `<dir>/image-signing.key`, PKCS#8 PEM, mode 0600.
    pub private_key: PathBuf,
    /// `<dir>/image-signing.pub`, SPKI PEM (`cosign.pub` format), mode 0644.
    pub public_key: PathBuf,
}

/// Generates a signing key pair into `dir` (created 0700 if missing). Refuses to
/// overwrite an existing key file: losing a signing key silently would orphan every
/// image it signed.
pub fn generate_signing_key(dir: &Path) -> Result<KeyFiles, KeyError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| KeyError::io("create directory", dir, e))?;
    }
    let files = KeyFiles {
        private_key: dir.join(PRIVATE_KEY_FILE),
        public_key: dir.join(PUBLIC_KEY_FILE),
    };
    for p in [&files.private_key, &files.public_key] {
        if fs::symlink_metadata(p).is_ok() {
            return Err(KeyError::Exists { path: p.clone() });
        }
    }
    let key = SigningKey::generate()?;
    let private = key.private_pem()?;
    if let Err(e) = ironclaw_hostfs::create_private(&files.private_key, private.as_bytes()) {
        if e.in_place() {
            // Written, but its name may not survive a crash: without its public half it
            // is no key pair (see below).
            let _ = fs::remove_file(&files.private_key);
        }
        return Err(key_file_error(&files.private_key, e));
    }
    let public = key.public.pem.as_bytes();
    if let Err(e) = ironclaw_hostfs::create_file(&files.public_key, public, FileMode::WorldReadable)
    {
        // Half a key pair is worse than none: the operator would keep a private key
        // whose public half nobody can trust. Both halves in place with only the
        // directory fsync failed is a whole pair: it stays.
        if !e.in_place() {
            let _ = fs::remove_file(&files.private_key);
        }
        return Err(key_file_error(&files.public_key, e));
    }
    Ok(files)
}

/// A key file's creation error ([`ironclaw_hostfs::create_file`]: `O_CREAT | O_EXCL |
/// O_NOFOLLOW`, the mode given at creation and set again, fsync of the file and of its
/// directory) in this module's terms: anything already at `path` (a file, a planted
/// symlink) is [`KeyError::Exists`]; any other step is [`KeyError::Io`] naming it.
fn key_file_error(path: &Path, e: ironclaw_hostfs::HostFsError) -> KeyError {
    let (action, at, source) = e.into_parts();
    if action == "create" && source.kind() == ErrorKind::AlreadyExists {
        return KeyError::Exists {
            path: path.to_owned(),
        };
    }
    KeyError::Io {
        action,
        path: at,
        source,
    }
}

/// Reads a key file: a regular file (not a symlink), bounded; for a private key also
/// no group/other permission bits. Checks run on the opened file and its identity is
/// compared with the lstat, so a file swapped in between cannot slip through.
fn read_key_file(path: &Path, private: bool) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let before = fs::symlink_metadata(path).map_err(|e| KeyError::io("inspect", path, e))?;
    if !before.file_type().is_file() {
        return Err(KeyError::NotRegularFile {
            path: path.to_owned(),
        });
    }
    let file = File::open(path).map_err(|e| KeyError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| KeyError::io("inspect", path, e))?;
    if meta.dev() != before.dev() || meta.ino() != before.ino() || !meta.is_file() {
        return Err(KeyError::NotRegularFile {
            path: path.to_owned(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if private && mode & 0o077 != 0 {
        return Err(KeyError::LoosePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| KeyError::io("read", path, e))?;
    if buf.len() as u64 > MAX_KEY_FILE {
        return Err(KeyError::TooLarge {
            path: path.to_owned(),
            limit: MAX_KEY_FILE,
        });
    }
    Ok(buf)
}

/// The simple-signing payload (field order is cosign's; do not reorder).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SimpleSigning {
    pub critical: Critical,
    /// Cosign writes `null` unless annotations were given; never acted upon here.
    pub optional: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Critical {
    pub identity: Identity,
    pub image: ImageClaim,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ImageClaim {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// The exact bytes cosign signs for `reference` at `digest`:
/// `{"critical":{"identity":{"docker-reference":"<ref>"},"image":{"docker-manifest-digest":"sha256:<hex>"},"type":"cosign container image signature"},"optional":null}`.
pub fn simple_signing_payload(reference: &str, digest: &Digest) -> Result<Vec<u8>, SignError> {
    // The charset also guarantees serde_json and Go's encoder produce the same bytes (Go
    // escapes <, > and & inside strings; none can occur here).
    let valid = !reference.is_empty()
        && reference.len() <= 255
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/:@-".contains(&b));
    if !valid {
        return Err(SignError::BadReference(
            reference.chars().take(300).collect(),
        ));
    }
    let payload = SimpleSigning {
        critical: Critical {
            identity: Identity {
                docker_reference: reference.to_owned(),
            },
            image: ImageClaim {
                docker_manifest_digest: digest.to_string(),
            },
            kind: COSIGN_SIGNATURE_TYPE.to_owned(),
        },
        optional: None,
    };
    serde_json::to_vec(&payload).map_err(|source| {
        SignError::Layout(LayoutError::Json {
            what: "signature payload".into(),
            source,
        })
    })
}

/// The config of a signature manifest, in the shape cosign (go-containerregistry)
/// writes for one: zero times, empty platform, one diff id per payload layer.
#[derive(Serialize)]
struct SignatureConfig<'a> {
    architecture: &'a str,
    created: &'a str,
    history: Vec<History<'a>>,
    os: &'a str,
    rootfs: SignatureRootfs,
    config: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
}

#[derive(Serialize)]
struct SignatureRootfs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<Digest>,
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Signs the one image in the layout at `layout_dir` with `key`, for `reference`, and
/// stores the signature the way cosign does (see the module docs). Signing again with
/// another key adds a layer to the same signature manifest (cosign's co-signing); the
/// same key and image again changes nothing (ECDSA here is deterministic, RFC 6979).
/// Returns the signed manifest digest.
pub fn sign_layout(
    layout_dir: &Path,
    key: &SigningKey,
    reference: &str,
) -> Result<Digest, SignError> {
    let max_json = crate::Limits::default().max_json_bytes;
    let (reader, mut index) = LayoutReader::open(layout_dir, max_json)?;
    let (image, signature_entries) = layout::split_index(&index)?;
    // Sign only a manifest whose bytes match its digest: a signature is a promise about
    // exactly those bytes.
    reader.read_verified(&image, max_json)?;
    let digest = image.digest.clone();
    let tag = digest.cosign_signature_tag();

    let payload = simple_signing_payload(reference, &digest)?;
    let signature = key.sign(&payload)?;

    // Start from this image's existing signature manifest, if there is one.
    // That is the entry tagged `sha256-<hex>.sig`, or one `cosign save` wrote (marked
    // only by `kind`, since a saved layout holds a single image).
    let existing = signature_entries
        .iter()
        .find(|d| d.annotation(ANNOTATION_REF_NAME) == Some(tag.as_str()))
        .or_else(|| {
            signature_entries
                .iter()
                .find(|d| d.annotation(ANNOTATION_REF_NAME).is_none())
        })
        .cloned();
    let mut layers = match &existing {
        Some(d) => {
            let bytes = reader.read_verified(d, max_json)?;
            let m: Manifest = layout::parse_json(&bytes, "signature manifest")?;
            m.layers
        }
        None => Vec::new(),
    };
    let writer = LayoutWriter::existing(layout_dir);
    let mut payload_desc = writer.write_blob(MEDIA_SIMPLE_SIGNING, &payload)?;
    payload_desc
        .annotations
        .insert(ANNOTATION_SIGNATURE.to_owned(), signature);
    if layers.contains(&payload_desc) {
        return Ok(digest);
    }
    layers.push(payload_desc);

    let config = SignatureConfig {
        architecture: "",
        created: ZERO_TIME,
        history: vec![History { created: ZERO_TIME }],
        os: "",
        rootfs: SignatureRootfs {
            kind: "layers",
            diff_ids: layers.iter().map(|l| l.digest.clone()).collect(),
        },
        config: BTreeMap::new(),
    };
    let (config_desc, _) = writer.write_json_blob(MEDIA_OCI_CONFIG, &config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_MANIFEST.to_owned()),
        config: config_desc,
        layers,
    };
    let (mut manifest_desc, _) = writer.write_json_blob(MEDIA_OCI_MANIFEST, &manifest)?;
    manifest_desc
        .annotations
        .insert(ANNOTATION_KIND.to_owned(), KIND_SIGNATURES.to_owned());
    manifest_desc
        .annotations
        .insert(ANNOTATION_REF_NAME.to_owned(), tag.clone());

    if let Some(old) = &existing {
        index.manifests.retain(|d| d != old);
    }
    index.manifests.push(manifest_desc);
    writer.write_index(&index)?;
    layout::fsync_dir(layout_dir).map_err(|e| LayoutError::io("fsync directory", layout_dir, e))?;
    Ok(digest)
}

/// A signature layer of a signature manifest, as read from an untrusted layout.
pub(crate) fn signature_of(layer: &Descriptor) -> Option<&str> {
    layer.annotation(ANNOTATION_SIGNATURE)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A signature made by the real `cosign sign` over a real payload, with its public
    /// key: test vector from the sigstore-rs test suite (public test data).
    const COSIGN_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----";
    const COSIGN_SIGNATURE: &str =
        "MEUCIQD6q/COgzOyW0YH1Dk+CCYSt4uAhm3FDHUwvPI55zwnlwIgE0ZK58ZOWpZw8YVmBapJhBqCfdPekIknimuO0xH8Jh8=";
    const COSIGN_REFERENCE: &str = "registry-testing.svc.lan/busybox";
    const COSIGN_DIGEST: &str =
        "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b";

    #[test]
    fn payload_is_byte_for_byte_what_cosign_signed() {
        let digest = Digest::parse(COSIGN_DIGEST).unwrap();
        let ours = simple_signing_payload(COSIGN_REFERENCE, &digest).unwrap();
        let cosigns = br#"{"critical":{"identity":{"docker-reference":"registry-testing.svc.lan/busybox"},"image":{"docker-manifest-digest":"sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"},"type":"cosign container image signature"},"optional":null}"#;
        assert_eq!(ours, cosigns.to_vec());
        // And cosign's own signature over it verifies with our verifier: same bytes,
        // same signature encoding, same hash.
        let key = PublicKey::from_pem(COSIGN_PUBLIC_KEY).unwrap();
        assert!(key.verifies(&ours, COSIGN_SIGNATURE));
        let mut tampered = ours.clone();
        tampered[40] ^= 1;
        assert!(!key.verifies(&tampered, COSIGN_SIGNATURE));
    }

    #[test]
    fn our_signatures_verify_with_sigstore_and_only_with_our_key() {
        let a = SigningKey::generate().unwrap();
        let b = SigningKey::generate().unwrap();
        let payload = simple_signing_payload("x/y", &Digest::of(b"m")).unwrap();
        let sig = a.sign(&payload).unwrap();
        assert!(a.public_key().verifies(&payload, &sig));
        assert!(!b.public_key().verifies(&payload, &sig));
        assert!(!a.public_key().verifies(b"other", &sig));
        assert!(!a.public_key().verifies(&payload, "not base64!"));
        // A signature made directly with sigstore's signer (not through our wrapper)
        // verifies too.
        let raw = SCHEME.create_signer().unwrap();
        let raw_pub = PublicKey::from_pem(
            &raw.to_sigstore_keypair()
                .unwrap()
                .public_key_to_pem()
                .unwrap(),
        )
        .unwrap();
        let raw_sig = base64::engine::general_purpose::STANDARD.encode(raw.sign(&payload).unwrap());
        assert!(raw_pub.verifies(&payload, &raw_sig));
    }

    #[test]
    fn bad_references_and_non_p256_keys_are_refused() {
        let d = Digest::of(b"");
        for r in ["", "a\"b", "a<b", "a b", &"x".repeat(256)] {
            assert!(simple_signing_payload(r, &d).is_err(), "{r:?}");
        }
        assert!(PublicKey::from_pem("hello").is_err());
        let p384 = SigningScheme::ECDSA_P384_SHA384_ASN1
            .create_signer()
            .unwrap();
        let pem = p384
            .to_sigstore_keypair()
            .unwrap()
            .public_key_to_pem()
            .unwrap();
        assert!(PublicKey::from_pem(&pem).is_err());
    }

    #[test]
    fn key_files_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let keydir = dir.path().join("keys");
        let files = generate_signing_key(&keydir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.private_key), 0o600);
        assert_eq!(mode(&files.public_key), 0o644);
        assert_eq!(mode(&keydir), 0o700);
        let key = SigningKey::load(&files.private_key).unwrap();
        let public = PublicKey::load(&files.public_key).unwrap();
        assert_eq!(key.public_key().to_pem(), public.to_pem());
        // No overwrite.
        assert!(matches!(
            generate_signing_key(&keydir),
            Err(KeyError::Exists { .. })
        ));
        // A private key others can read is refused.
        fs::set_permissions(&files.private_key, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SigningKey::load(&files.private_key),
            Err(KeyError::LoosePermissions { mode: 0o644, .. })
        ));
        // Debug never shows the private key.
        fs::set_permissions(&files.private_key, fs::Permissions::from_mode(0o600)).unwrap();
        let text = fs::read_to_string(&files.private_key).unwrap();
        let body: String = text.lines().nth(1).unwrap().chars().take(20).collect();
        assert!(!format!("{key:?}").contains(&body));
    }

    /// The key files are created through the host's one writer of new files: a
    /// symlink planted at either name, even one planted after the up-front check, is
    /// `Exists` (never followed, never replaced), and no half key pair is left.
    #[test]
    fn a_planted_link_at_a_key_file_is_exists_and_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let keydir = dir.path().join("keys");
        fs::create_dir(&keydir).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"victim").unwrap();
        let missing = dir.path().join("missing");
        for name in [PRIVATE_KEY_FILE, PUBLIC_KEY_FILE] {
            for target in [&victim, &missing] {
                let link = keydir.join(name);
                let _ = fs::remove_file(&link);
                std::os::unix::fs::symlink(target, &link).unwrap();
                // Past the up-front check: what a link planted in between meets.
                let e = key_file_error(
                    &link,
                    ironclaw_hostfs::create_private(&link, b"key").unwrap_err(),
                );
                assert!(
                    matches!(&e, KeyError::Exists { path } if *path == link),
                    "{e}"
                );
                assert_eq!(
                    e.to_string(),
                    format!(
                        "{} already exists; refusing to overwrite a key",
                        link.display()
                    )
                );
                assert!(matches!(
                    generate_signing_key(&keydir),
                    Err(KeyError::Exists { .. })
                ));
                assert!(fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink());
                fs::remove_file(&link).unwrap();
                let names: Vec<_> = fs::read_dir(&keydir).unwrap().collect();
                assert!(names.is_empty(), "{names:?}");
            }
        }
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        assert!(!missing.exists());
        // Any other failure keeps its step and path.
        let e = key_file_error(
            &keydir.join("no/such/key"),
            ironclaw_hostfs::create_private(&keydir.join("no/such/key"), b"k").unwrap_err(),
        );
        assert!(
            e.to_string().starts_with(&format!(
                "create {}: ",
                keydir.join("no/such/key").display()
            )),
            "{e}"
        );
    }

    /// scrypt at cosign's parameters takes ~20 s per key in an unoptimized build, so
    /// this runs on request: `cargo test -p ironclaw-image --release -- --ignored`.
    #[test]
    #[ignore = "slow without optimizations (scrypt); run with --release -- --ignored"]
    fn cosign_encrypted_private_keys_load_with_their_password() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let pair = key.signer.to_sigstore_keypair().unwrap();
        let encrypted = pair.private_key_to_encrypted_pem(b"hunter2").unwrap();
        assert!(encrypted.contains("ENCRYPTED SIGSTORE PRIVATE KEY"));
        let path = dir.path().join("cosign.key");
        ironclaw_hostfs::create_private(&path, encrypted.as_bytes()).unwrap();
        let loaded = SigningKey::load_encrypted(&path, b"hunter2").unwrap();
        assert_eq!(loaded.public_key().to_pem(), key.public_key().to_pem());
        assert!(SigningKey::load_encrypted(&path, b"wrong").is_err());
        assert!(SigningKey::load(&path).is_err());
    }
}
