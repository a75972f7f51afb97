//! The OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) and
//! the JSON documents in it: index, manifest, descriptor, image config.
//!
//! For: the serde types, bounded and digest-checked reads of blobs from a layout we did
//! not write, and crash-safe writes of the layouts we do write. Not for: deciding whether
//! an image is trusted (`verify`), or unpacking layers (`unpack`).
//!
//! Everything read from a layout is untrusted until its bytes hash to the digest that
//! named them: every read here is bounded by a size limit *and* checked against the
//! descriptor's size and digest before a single byte is parsed or returned. The JSON
//! types accept unknown fields (other tools add `platform`, `artifactType`, `urls`, …)
//! but nothing here acts on a field it does not know.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingWriter};

pub(crate) const OCI_LAYOUT_FILE: &str = "oci-layout";
pub(crate) const INDEX_FILE: &str = "index.json";
pub(crate) const LAYOUT_VERSION: &str = "1.0.0";

pub(crate) const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const MEDIA_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const MEDIA_DOCKER_MANIFEST: &str =
    "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const MEDIA_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub(crate) const MEDIA_DOCKER_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The media type of a cosign signature payload (a layer of the signature manifest).
pub(crate) const MEDIA_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// The layer annotation holding a cosign signature (base64 of the DER ECDSA signature).
pub(crate) const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// The standard OCI tag annotation on an `index.json` entry.
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation `cosign save` puts on each `index.json` entry to say what it is.
pub(crate) const ANNOTATION_KIND: &str = "kind";
pub(crate) const KIND_IMAGE: &str = "dev.cosignproject.cosign/image";
pub(crate) const KIND_SIGNATURES: &str = "dev.cosignproject.cosign/sigs";
pub(crate) const KIND_ATTESTATIONS: &str = "dev.cosignproject.cosign/atts";

/// Something wrong with an image layout: unreadable, malformed, or bytes that do not
/// match the digest or size that names them.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not a regular file (symlinks and special files are refused in an image layout)"
    )]
    NotRegularFile { path: PathBuf },
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("blob {digest} is {actual} bytes but its descriptor says {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {expected} does not match its digest: its content hashes to {actual} (tampered or corrupt)")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("{what} is not valid JSON of the expected shape: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported image layout: {0}")]
    Unsupported(String),
    #[error("index.json holds no image manifest")]
    NoImage,
    #[error("index.json holds {count} image manifests ({digests}); exactly one is expected")]
    AmbiguousImage { count: usize, digests: String },
}

impl LayoutError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub(crate) fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest,
            size,
            annotations: BTreeMap::new(),
        }
    }

    pub(crate) fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }
}

/// `index.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// An image manifest (also the shape of a cosign signature manifest).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// The part of an image config the provisioner checks: the uncompressed digest of each
/// layer, verified while the layer is unpacked.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfigRootfs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ImageConfigView {
    #[serde(default)]
    pub os: Option<String>,
    pub rootfs: ConfigRootfs,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayoutFile {
    image_layout_version: String,
}

/// Where a manifest in `index.json` belongs, by the annotations cosign and OCI tools use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryRole {
    Image,
    Signatures,
    /// Attestations, SBOMs and other cosign attachments: not needed to run the image.
    Ignored,
}

pub(crate) fn entry_role(d: &Descriptor) -> EntryRole {
    let kind = d.annotation(ANNOTATION_KIND);
    let tag = d.annotation(ANNOTATION_REF_NAME).unwrap_or("");
    if kind == Some(KIND_SIGNATURES) || is_cosign_tag(tag, ".sig") {
        EntryRole::Signatures
    } else if kind == Some(KIND_ATTESTATIONS)
        || is_cosign_tag(tag, ".att")
        || is_cosign_tag(tag, ".sbom")
    {
        EntryRole::Ignored
    } else {
        EntryRole::Image
    }
}

/// `sha256-<64 hex><suffix>`: cosign's tag-based discovery names.
fn is_cosign_tag(tag: &str, suffix: &str) -> bool {
    tag.strip_prefix("sha256-")
        .and_then(|rest| rest.strip_suffix(suffix))
        .is_some_and(|hex| Digest::parse(&format!("sha256:{hex}")).is_ok())
}

/// The image manifest of `index` and the signature manifests beside it.
///
/// Exactly one image manifest is accepted: with two, which one the operator meant to
/// run would be a guess, and a guess is how the wrong image gets launched. Nested
/// indexes (multi-platform images) are refused for the same reason.
pub(crate) fn split_index(
    index: &ImageIndex,
) -> Result<(Descriptor, Vec<Descriptor>), LayoutError> {
    let mut images = Vec::new();
    let mut signatures = Vec::new();
    for d in &index.manifests {
        match entry_role(d) {
            EntryRole::Signatures => signatures.push(d.clone()),
            EntryRole::Ignored => {}
            EntryRole::Image => match d.media_type.as_str() {
                MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => images.push(d.clone()),
                MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST => {
                    return Err(LayoutError::Unsupported(format!(
                        "index.json entry {} is a nested index (a multi-platform image); \
                         export a single-platform image",
                        d.digest
                    )))
                }
                other => {
                    return Err(LayoutError::Unsupported(format!(
                        "index.json entry {} has media type {other:?}",
                        d.digest
                    )))
                }
            },
        }
    }
    match images.len() {
        0 => Err(LayoutError::NoImage),
        1 => Ok((images.remove(0), signatures)),
        count => Err(LayoutError::AmbiguousImage {
            count,
            digests: images
                .iter()
                .map(|d| d.digest.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Read access to a layout we did not write.
pub(crate) struct LayoutReader {
    dir: PathBuf,
    max_json: u64,
}

impl LayoutReader {
    /// Opens `dir`, checking `oci-layout`, and returns the reader and the parsed index.
    pub(crate) fn open(dir: &Path, max_json: u64) -> Result<(Self, ImageIndex), LayoutError> {
        let reader = Self {
            dir: dir.to_owned(),
            max_json,
        };
        let layout_bytes = read_bounded(&dir.join(OCI_LAYOUT_FILE), max_json, OCI_LAYOUT_FILE)?;
        let layout: OciLayoutFile = parse_json(&layout_bytes, OCI_LAYOUT_FILE)?;
        if layout.image_layout_version != LAYOUT_VERSION {
            return Err(LayoutError::Unsupported(format!(
                "imageLayoutVersion {:?} (expected {LAYOUT_VERSION:?})",
                layout.image_layout_version
            )));
        }
        let index_bytes = read_bounded(&dir.join(INDEX_FILE), max_json, INDEX_FILE)?;
        let index: ImageIndex = parse_json(&index_bytes, INDEX_FILE)?;
        if index.schema_version != 2 {
            return Err(LayoutError::Unsupported(format!(
                "index.json schemaVersion {} (expected 2)",
                index.schema_version
            )));
        }
        if let Some(mt) = index
            .media_type
            .as_deref()
            .filter(|m| *m != MEDIA_OCI_INDEX)
        {
            return Err(LayoutError::Unsupported(format!(
                "index.json media type {mt:?}"
            )));
        }
        Ok((reader, index))
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        // The hex is validated (64 hex digits), so this cannot leave `blobs/sha256/`.
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    /// The bytes of a small (JSON) blob, checked against `desc`'s size and digest.
    pub(crate) fn read_verified(
        &self,
        desc: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, LayoutError> {
        let limit = limit.min(self.max_json);
        if desc.size > limit {
            return Err(LayoutError::TooLarge {
                what: format!("blob {} ({})", desc.digest, desc.media_type),
                size: desc.size,
                limit,
            });
        }
        let path = self.blob_path(&desc.digest);
        let bytes = read_bounded(&path, desc.size, &format!("blob {}", desc.digest)).map_err(
            |e| match e {
                // A blob longer than its descriptor says is a size mismatch, not a limit.
                LayoutError::TooLarge { size, .. } => LayoutError::SizeMismatch {
                    digest: desc.digest.clone(),
                    expected: desc.size,
                    actual: size,
                },
                other => other,
            },
        )?;
        check_size_and_digest(desc, bytes.len() as u64, &Digest::of(&bytes))?;
        Ok(bytes)
    }

    /// Copies a (layer) blob into a new private file at `dest`, hashing the very bytes
    /// written, and checks them against `desc`. The caller unpacks from `dest`, which
    /// only it can write, so what is unpacked is exactly what was verified, even if the
    /// layout directory changes underneath us.
    pub(crate) fn copy_verified(
        &self,
        desc: &Descriptor,
        dest: &Path,
        limit: u64,
    ) -> Result<(), LayoutError> {
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(|e| LayoutError::io("create", dest, e))?;
        let out = self.stream_verified(desc, limit, out)?;
        out.sync_all()
            .map_err(|e| LayoutError::io("fsync", dest, e))
    }

    /// Streams a blob into `sink`, hashing the very bytes written, and checks them
    /// against `desc`. Returns the sink.
    pub(crate) fn stream_verified<W: Write>(
        &self,
        desc: &Descriptor,
        limit: u64,
        sink: W,
    ) -> Result<W, LayoutError> {
        if desc.size > limit {
            return Err(LayoutError::TooLarge {
                what: format!("blob {} ({})", desc.digest, desc.media_type),
                size: desc.size,
                limit,
            });
        }
        let src_path = self.blob_path(&desc.digest);
        let src = open_regular(&src_path)?;
        let mut w = HashingWriter::new(sink);
        // Read one byte past the declared size, so a longer blob is caught, not cut.
        io::copy(&mut src.take(desc.size + 1), &mut w)
            .map_err(|e| LayoutError::io("read", &src_path, e))?;
        let (digest, written, sink) = w.finish();
        check_size_and_digest(desc, written, &digest)?;
        Ok(sink)
    }
}

fn check_size_and_digest(desc: &Descriptor, size: u64, digest: &Digest) -> Result<(), LayoutError> {
    if size != desc.size {
        return Err(LayoutError::SizeMismatch {
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: size,
        });
    }
    if *digest != desc.digest {
        return Err(LayoutError::DigestMismatch {
            expected: desc.digest.clone(),
            actual: digest.clone(),
        });
    }
    Ok(())
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, LayoutError> {
    serde_json::from_slice(bytes).map_err(|source| LayoutError::Json {
        what: what.to_owned(),
        source,
    })
}

/// Opens `path` only if it is a regular file (not a symlink, FIFO or device: a FIFO
/// would block the provisioner forever, a symlink could make it read any host file).
fn open_regular(path: &Path) -> Result<File, LayoutError> {
    let meta = fs::symlink_metadata(path).map_err(|e| LayoutError::io("inspect", path, e))?;
    if !meta.file_type().is_file() {
        return Err(LayoutError::NotRegularFile {
            path: path.to_owned(),
        });
    }
    let file = File::open(path).map_err(|e| LayoutError::io("open", path, e))?;
    // Re-check on the opened file: the name may have been swapped since the lstat.
    let opened = file
        .metadata()
        .map_err(|e| LayoutError::io("inspect", path, e))?;
    if !opened.file_type().is_file() {
        return Err(LayoutError::NotRegularFile {
            path: path.to_owned(),
        });
    }
    Ok(file)
}

/// Reads a regular file of at most `limit` bytes.
fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, LayoutError> {
    let file = open_regular(path)?;
    let mut buf = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| LayoutError::io("read", path, e))?;
    if buf.len() as u64 > limit {
        return Err(LayoutError::TooLarge {
            what: what.to_owned(),
            size: buf.len() as u64,
            limit,
        });
    }
    Ok(buf)
}

/// Write access to a layout this crate is creating or signing.
pub(crate) struct LayoutWriter {
    dir: PathBuf,
}

impl LayoutWriter {
    /// Starts a new layout in the (existing, empty) directory `dir`.
    pub(crate) fn create(dir: &Path) -> Result<Self, LayoutError> {
        for sub in [dir.join("blobs"), dir.join("blobs").join("sha256")] {
            fs::create_dir(&sub).map_err(|e| LayoutError::io("create directory", &sub, e))?;
            fs::set_permissions(&sub, fs::Permissions::from_mode(0o755))
                .map_err(|e| LayoutError::io("chmod", &sub, e))?;
        }
        let w = Self {
            dir: dir.to_owned(),
        };
        let layout = serde_json::to_vec(&OciLayoutFile {
            image_layout_version: LAYOUT_VERSION.to_owned(),
        })
        .map_err(|source| LayoutError::Json {
            what: OCI_LAYOUT_FILE.to_owned(),
            source,
        })?;
        w.replace_file(&dir.join(OCI_LAYOUT_FILE), &layout)?;
        Ok(w)
    }

    /// An existing layout, to add blobs and rewrite `index.json`.
    pub(crate) fn existing(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Stores `bytes` as a blob; returns its descriptor.
    pub(crate) fn write_blob(
        &self,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Descriptor, LayoutError> {
        let digest = Digest::of(bytes);
        let path = self.dir.join("blobs").join("sha256").join(digest.hex());
        self.replace_file(&path, bytes)?;
        Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
    }

    /// Serializes `value` (compact, field order fixed by its type) and stores it.
    pub(crate) fn write_json_blob<T: Serialize>(
        &self,
        media_type: &str,
        value: &T,
    ) -> Result<(Descriptor, Vec<u8>), LayoutError> {
        let bytes = serde_json::to_vec(value).map_err(|source| LayoutError::Json {
            what: media_type.to_owned(),
            source,
        })?;
        Ok((self.write_blob(media_type, &bytes)?, bytes))
    }

    pub(crate) fn write_index(&self, index: &ImageIndex) -> Result<(), LayoutError> {
        let bytes = serde_json::to_vec(index).map_err(|source| LayoutError::Json {
            what: INDEX_FILE.to_owned(),
            source,
        })?;
        self.replace_file(&self.dir.join(INDEX_FILE), &bytes)
    }

    /// Puts `bytes` in place of `path` with the host's one atomic writer
    /// ([`ironclaw_hostfs::write_atomic`]: a temporary file beside it that is never
    /// reached through a link, fsync, rename, fsync of the directory), so a reader (or a
    /// crash) sees the old file or the new one, never a torn one. Mode 0644: an image
    /// holds no secret, and runsc's host side must be able to read what we unpack.
    fn replace_file(&self, path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
        ironclaw_hostfs::write_atomic(path, bytes, ironclaw_hostfs::FileMode::WorldReadable)
            .map_err(|e| {
                let (action, path, source) = e.into_parts();
                LayoutError::Io {
                    action,
                    path,
                    source,
                }
            })
    }
}

/// Makes the entries of directory `dir` durable (names survive a crash):
/// [`ironclaw_hostfs::fsync_dir`], with the OS error alone, for the callers to name the
/// step in their own error.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    ironclaw_hostfs::fsync_dir(dir).map_err(|e| e.into_parts().2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(annotations: &[(&str, &str)], media_type: &str, digest_byte: u8) -> Descriptor {
        let mut d = Descriptor::new(media_type, Digest::of(&[digest_byte]), 1);
        for (k, v) in annotations {
            d.annotations.insert((*k).to_owned(), (*v).to_owned());
        }
        d
    }

    #[test]
    fn index_roles_follow_cosign_annotations_and_tags() {
        let sig_tag = Digest::of(b"x").cosign_signature_tag();
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_INDEX.into()),
            manifests: vec![
                desc(&[(ANNOTATION_REF_NAME, "latest")], MEDIA_OCI_MANIFEST, 1),
                desc(&[(ANNOTATION_REF_NAME, &sig_tag)], MEDIA_OCI_MANIFEST, 2),
                desc(&[(ANNOTATION_KIND, KIND_SIGNATURES)], MEDIA_OCI_MANIFEST, 3),
                desc(
                    &[(ANNOTATION_KIND, KIND_ATTESTATIONS)],
                    MEDIA_OCI_MANIFEST,
                    4,
                ),
            ],
        };
        let (image, sigs) = split_index(&index).unwrap();
        assert_eq!(image.digest, Digest::of(&[1]));
        assert_eq!(sigs.len(), 2);
    }

    #[test]
    fn two_images_or_a_nested_index_are_refused() {
        let two = ImageIndex {
            schema_version: 2,
            media_type: None,
            manifests: vec![
                desc(&[], MEDIA_OCI_MANIFEST, 1),
                desc(&[], MEDIA_DOCKER_MANIFEST, 2),
            ],
        };
        assert!(matches!(
            split_index(&two),
            Err(LayoutError::AmbiguousImage { count: 2, .. })
        ));
        let nested = ImageIndex {
            schema_version: 2,
            media_type: None,
            manifests: vec![desc(&[], MEDIA_OCI_INDEX, 1)],
        };
        assert!(matches!(
            split_index(&nested),
            Err(LayoutError::Unsupported(_))
        ));
        let empty = ImageIndex {
            schema_version: 2,
            media_type: None,
            manifests: vec![],
        };
        assert!(matches!(split_index(&empty), Err(LayoutError::NoImage)));
    }
}
