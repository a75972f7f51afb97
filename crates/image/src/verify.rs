//! Deciding whether the image in a layout may run: the manifest digest is pinned by the
//! trust policy, or the layout carries a valid cosign signature over exactly that
//! digest by a trusted key; and every blob the image is made of hashes to its digest.
//!
//! For: the trust decision and the integrity checks that precede any unpacking. Not
//! for: unpacking (`unpack`) or caching (`provision`).
//!
//! Nothing from a layout is believed before its bytes match the digest that names
//! them, and a signature is checked over the exact payload bytes before the payload is
//! parsed. The payload must then bind the signature to *this* manifest digest: a valid
//! signature for another image (copied next to ours) proves nothing about ours.

use std::fmt;
use std::io;
use std::path::Path;

use crate::cosign::{self, SimpleSigning, COSIGN_SIGNATURE_TYPE, MAX_PAYLOAD};
use crate::digest::Digest;
use crate::layout::{
    self, Descriptor, LayoutError, LayoutReader, Manifest, MEDIA_DOCKER_CONFIG,
    MEDIA_DOCKER_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_LAYER_TAR_GZIP, MEDIA_OCI_CONFIG,
    MEDIA_SIMPLE_SIGNING,
};
use crate::policy::TrustPolicy;
use crate::Limits;

/// At most this many signature manifests and signature layers are examined: each costs
/// a read and an ECDSA verification per trusted key, and an attacker who can write to
/// the layout must not be able to make the provisioner spin.
const MAX_SIGNATURE_MANIFESTS: usize = 8;
const MAX_SIGNATURES: usize = 64;

/// Why an image was trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Its manifest digest is pinned in the policy.
    Pinned,
    /// It carries a valid signature by the trusted key of this name.
    Signed { key: String },
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::Pinned => f.write_str("pinned digest"),
            Trust::Signed { key } => write!(f, "cosign signature by {key:?}"),
        }
    }
}

/// Why an image was not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UntrustedReason {
    /// Not pinned, and the policy trusts no key.
    NotPinned,
    /// Not pinned, and the layout holds no signature.
    Unsigned,
    /// Not pinned, and no signature in the layout is a valid signature of this manifest
    /// by a trusted key; one line per signature examined.
    NoValidSignature { examined: Vec<String> },
}

impl fmt::Display for UntrustedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPinned => f.write_str(
                "its manifest digest is not pinned in the trust policy (and the policy trusts no signing key)",
            ),
            Self::Unsigned => f.write_str(
                "its manifest digest is not pinned and the layout carries no cosign signature",
            ),
            Self::NoValidSignature { examined } => write!(
                f,
                "its manifest digest is not pinned and no signature is valid: {}",
                examined.join("; ")
            ),
        }
    }
}

/// An image that may not be used.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("image {digest} is not trusted: {reason}")]
    Untrusted {
        digest: Digest,
        reason: UntrustedReason,
    },
    #[error("image {digest}: {detail}")]
    BadImage { digest: Digest, detail: String },
}

impl VerifyError {
    fn bad(digest: &Digest, detail: impl Into<String>) -> Self {
        Self::BadImage {
            digest: digest.clone(),
            detail: detail.into(),
        }
    }
}

/// A layout whose image passed [`verify_image`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedImage {
    pub manifest_digest: Digest,
    pub trust: Trust,
}

/// A manifest whose digest the policy trusts, and whose shape is one we can unpack.
pub(crate) struct TrustedManifest {
    pub digest: Digest,
    pub manifest: Manifest,
    pub trust: Trust,
}

/// Checks a layout completely without unpacking it: the trust decision, then every
/// blob (manifest, config, layers) against its digest and size. This is what an
/// operator runs to check an image by hand; the provisioner does the same and more.
pub fn verify_image(layout_dir: &Path, policy: &TrustPolicy) -> Result<VerifiedImage, VerifyError> {
    let limits = Limits::default();
    let (reader, index) = LayoutReader::open(layout_dir, limits.max_json_bytes)?;
    let trusted = trusted_manifest(&reader, &index, policy, &limits)?;
    config_diff_ids(&reader, &trusted, &limits)?;
    for layer in &trusted.manifest.layers {
        reader.stream_verified(layer, limits.max_layer_bytes, io::sink())?;
    }
    Ok(VerifiedImage {
        manifest_digest: trusted.digest,
        trust: trusted.trust,
    })
}

/// Resolves the image manifest in `index`, verifies its bytes, decides trust, and checks
/// that it is an image we can unpack.
pub(crate) fn trusted_manifest(
    reader: &LayoutReader,
    index: &layout::ImageIndex,
    policy: &TrustPolicy,
    limits: &Limits,
) -> Result<TrustedManifest, VerifyError> {
    let (image, signatures) = layout::split_index(index)?;
    let bytes = reader.read_verified(&image, limits.max_json_bytes)?;
    let digest = image.digest.clone();
    let trust = decide_trust(reader, &digest, &signatures, policy, limits)?;

    let manifest: Manifest = layout::parse_json(&bytes, &format!("manifest {digest}"))?;
    if manifest.schema_version != 2 {
        return Err(VerifyError::bad(
            &digest,
            format!("schemaVersion {} (expected 2)", manifest.schema_version),
        ));
    }
    if let Some(mt) = manifest
        .media_type
        .as_deref()
        .filter(|m| *m != image.media_type)
    {
        return Err(VerifyError::bad(
            &digest,
            format!(
                "manifest says media type {mt:?} but index.json says {:?}",
                image.media_type
            ),
        ));
    }
    if ![MEDIA_OCI_CONFIG, MEDIA_DOCKER_CONFIG].contains(&manifest.config.media_type.as_str()) {
        return Err(VerifyError::bad(
            &digest,
            format!(
                "config media type {:?} is not an image config",
                manifest.config.media_type
            ),
        ));
    }
    if manifest.layers.is_empty() || manifest.layers.len() > limits.max_layers {
        return Err(VerifyError::bad(
            &digest,
            format!(
                "{} layers (expected 1 to {})",
                manifest.layers.len(),
                limits.max_layers
            ),
        ));
    }
    for l in &manifest.layers {
        if layer_compression(&l.media_type).is_none() {
            return Err(VerifyError::bad(
                &digest,
                format!(
                    "layer {} has media type {:?}; only tar and tar+gzip layers are unpacked",
                    l.digest, l.media_type
                ),
            ));
        }
    }
    Ok(TrustedManifest {
        digest,
        manifest,
        trust,
    })
}

/// How a layer's blob is compressed: `Some(false)` plain tar, `Some(true)` gzip,
/// `None` unsupported (zstd, foreign/non-distributable layers, anything else).
pub(crate) fn layer_compression(media_type: &str) -> Option<bool> {
    match media_type {
        MEDIA_LAYER_TAR => Some(false),
        MEDIA_LAYER_TAR_GZIP | MEDIA_DOCKER_LAYER_GZIP => Some(true),
        _ => None,
    }
}

/// Reads the image config (digest-checked) and returns its layer diff ids, one per
/// layer, which the unpacker checks against the uncompressed layer streams.
pub(crate) fn config_diff_ids(
    reader: &LayoutReader,
    trusted: &TrustedManifest,
    limits: &Limits,
) -> Result<Vec<Digest>, VerifyError> {
    let bytes = reader.read_verified(&trusted.manifest.config, limits.max_json_bytes)?;
    let config: layout::ImageConfigView = layout::parse_json(&bytes, "image config")?;
    let digest = &trusted.digest;
    if let Some(os) = config.os.as_deref().filter(|os| *os != "linux") {
        return Err(VerifyError::bad(
            digest,
            format!("config os is {os:?}, not \"linux\""),
        ));
    }
    if config.rootfs.kind != "layers"
        || config.rootfs.diff_ids.len() != trusted.manifest.layers.len()
    {
        return Err(VerifyError::bad(
            digest,
            format!(
                "config rootfs lists {} diff ids of type {:?} for {} layers",
                config.rootfs.diff_ids.len(),
                config.rootfs.kind,
                trusted.manifest.layers.len()
            ),
        ));
    }
    Ok(config.rootfs.diff_ids)
}

fn decide_trust(
    reader: &LayoutReader,
    digest: &Digest,
    signatures: &[Descriptor],
    policy: &TrustPolicy,
    limits: &Limits,
) -> Result<Trust, VerifyError> {
    let untrusted = |reason| VerifyError::Untrusted {
        digest: digest.clone(),
        reason,
    };
    if policy.is_pinned(digest) {
        return Ok(Trust::Pinned);
    }
    if policy.keys().is_empty() {
        return Err(untrusted(UntrustedReason::NotPinned));
    }
    if signatures.is_empty() {
        return Err(untrusted(UntrustedReason::Unsigned));
    }
    if signatures.len() > MAX_SIGNATURE_MANIFESTS {
        return Err(VerifyError::bad(
            digest,
            format!(
                "{} signature manifests (at most {MAX_SIGNATURE_MANIFESTS} are examined)",
                signatures.len()
            ),
        ));
    }
    let mut examined = Vec::new();
    let mut count = 0usize;
    for sig_manifest in signatures {
        // A signature manifest whose bytes do not match its digest is a tampered layout:
        // refuse, do not skip, so tampering is reported rather than hidden.
        let bytes = reader.read_verified(sig_manifest, limits.max_json_bytes)?;
        let m: Manifest = layout::parse_json(&bytes, "signature manifest")?;
        for layer in &m.layers {
            count += 1;
            if count > MAX_SIGNATURES {
                return Err(VerifyError::bad(
                    digest,
                    format!("more than {MAX_SIGNATURES} signatures"),
                ));
            }
            if layer.media_type != MEDIA_SIMPLE_SIGNING {
                examined.push(format!(
                    "layer {} of signature manifest {} has media type {:?}, not a cosign signature",
                    layer.digest, sig_manifest.digest, layer.media_type
                ));
                continue;
            }
            let Some(signature) = cosign::signature_of(layer) else {
                examined.push(format!(
                    "payload {} has no signature annotation",
                    layer.digest
                ));
                continue;
            };
            let payload = reader.read_verified(layer, MAX_PAYLOAD)?;
            // Authenticate first, parse second.
            let Some(key) = policy
                .keys()
                .iter()
                .find(|k| k.key.verifies(&payload, signature))
            else {
                examined.push(format!(
                    "signature over payload {} does not verify with any trusted key",
                    layer.digest
                ));
                continue;
            };
            match payload_binds(&payload, digest) {
                Ok(()) => {
                    return Ok(Trust::Signed {
                        key: key.name.clone(),
                    })
                }
                Err(why) => examined.push(format!(
                    "signature by {:?} over payload {}: {why}",
                    key.name, layer.digest
                )),
            }
        }
    }
    if examined.is_empty() {
        return Err(untrusted(UntrustedReason::Unsigned));
    }
    Err(untrusted(UntrustedReason::NoValidSignature { examined }))
}

/// Whether an authenticated payload is a cosign image signature for `digest`.
///
/// `docker-reference` is not checked, as cosign does not check it by default: the
/// digest is what names the content, and a layout has no registry name to compare.
fn payload_binds(payload: &[u8], digest: &Digest) -> Result<(), String> {
    let doc: SimpleSigning = serde_json::from_slice(payload)
        .map_err(|e| format!("payload is not a cosign simple-signing document: {e}"))?;
    if doc.critical.kind != COSIGN_SIGNATURE_TYPE {
        return Err(format!(
            "payload type is {:?}, not {COSIGN_SIGNATURE_TYPE:?}",
            doc.critical.kind
        ));
    }
    if doc.critical.image.docker_manifest_digest != digest.to_string() {
        return Err(format!(
            "it signs manifest {:?}, not {digest}",
            doc.critical.image.docker_manifest_digest
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_binding_requires_type_and_exact_digest() {
        let d = Digest::of(b"m");
        let good = cosign::simple_signing_payload("r", &d).unwrap();
        assert!(payload_binds(&good, &d).is_ok());
        assert!(payload_binds(&good, &Digest::of(b"other")).is_err());
        let wrong_type = String::from_utf8(good.clone())
            .unwrap()
            .replace(COSIGN_SIGNATURE_TYPE, "atomic container signature");
        assert!(payload_binds(wrong_type.as_bytes(), &d).is_err());
        let upper = String::from_utf8(good)
            .unwrap()
            .replace(d.hex(), &d.hex().to_uppercase());
        assert!(payload_binds(upper.as_bytes(), &d).is_err());
        assert!(payload_binds(b"null", &d).is_err());
    }
}
