//! The provisioner: from an image layout and a trust policy to a read-only rootfs
//! directory runsc can use, cached by manifest digest.
//!
//! For: the order of operations (trust, then integrity of every blob, then unpacking),
//! and the on-disk cache under `<state>/images/` (`HostLayout::images_dir`). Not for:
//! the checks themselves (`verify`, `unpack`), or building the OCI runtime spec.
//!
//! Layout of the cache:
//! ```text
//! <images_dir>/rootfs/<hex>/         the rootfs (0755), complete
//! <images_dir>/rootfs/<hex>.ready    marker, written last (content: the digest)
//! <images_dir>/rootfs/.tmp-<hex>-*/  an unpack in progress (0700)
//! <images_dir>/rootfs/.<hex>.ready.tmp-<16 hex>
//!                                    a marker write in progress (hostfs's temporary)
//! <images_dir>/staging/<random>/     verified copies of layer blobs (0700), removed after use
//! ```
//! A rootfs is used only with its marker. A rootfs directory without one is what a
//! crash between rename and marker leaves: it is deleted and unpacked again, and
//! leftover temporary directories and marker files are removed. The marker lives
//! beside the rootfs, not inside it, so it never shows up in the sandbox.
//!
//! One provisioner per images directory: calls are serialized by an in-process lock;
//! two daemons sharing a state directory are not supported.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::digest::Digest;
use crate::layout::{self, LayoutReader};
use crate::policy::TrustPolicy;
use crate::unpack::{self, LayerError, UnpackState};
use crate::verify::{self, Trust, VerifyError};

const ROOTFS_DIR: &str = "rootfs";
const STAGING_DIR: &str = "staging";
const TMP_PREFIX: &str = ".tmp-";
const READY_SUFFIX: &str = ".ready";

/// Bounds on what the provisioner will read and write for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest JSON document (index, manifest, config, signature manifest).
    pub max_json_bytes: u64,
    /// Largest layer blob (compressed size, as stored).
    pub max_layer_bytes: u64,
    /// Most layers in one image.
    pub max_layers: usize,
    /// Most tar entries over all layers.
    pub max_entries: u64,
    /// Largest single file.
    pub max_entry_bytes: u64,
    /// Largest total of file sizes over all layers.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    /// Generous for the sandbox image (one ~10 MiB binary and two small files), small
    /// enough that a hostile layout cannot fill the disk or hold the daemon for long.
    fn default() -> Self {
        Self {
            max_json_bytes: 4 * 1024 * 1024,
            max_layer_bytes: 512 * 1024 * 1024,
            max_layers: 16,
            max_entries: 10_000,
            max_entry_bytes: 256 * 1024 * 1024,
            max_total_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Provisioning failed; nothing was left in the cache.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("refusing image layout {layout}: {source}")]
    Verify {
        layout: PathBuf,
        #[source]
        source: VerifyError,
    },
    #[error("refusing image layout {layout}: {source}")]
    Layer {
        layout: PathBuf,
        #[source]
        source: LayerError,
    },
    #[error("image cache: {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ProvisionError {
    /// The verification failure, if that is what this is (for callers that report
    /// "untrusted" differently from "broken").
    pub fn as_verify(&self) -> Option<&VerifyError> {
        match self {
            Self::Verify { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The layer refusal, if that is what this is.
    pub fn as_layer(&self) -> Option<&LayerError> {
        match self {
            Self::Layer { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ProvisionError {
    let path = path.to_owned();
    move |source| ProvisionError::Io {
        action,
        path,
        source,
    }
}

/// A host-file step's failure as the cache's I/O error (the step, the path it acted on,
/// the OS error).
fn hostfs_err(e: ironclaw_hostfs::HostFsError) -> ProvisionError {
    let (action, path, source) = e.into_parts();
    ProvisionError::Io {
        action,
        path,
        source,
    }
}

/// A provisioned rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    /// The image's manifest digest (for launch receipts and the audit chain).
    pub manifest_digest: Digest,
    /// `<images_dir>/rootfs/<hex>`: give this to the OCI spec as `root.path`, read-only.
    pub path: PathBuf,
    /// Why the image was trusted.
    pub trust: Trust,
    /// True when an existing cached rootfs was reused.
    pub reused: bool,
}

/// Verifies image layouts and unpacks them into cached rootfs directories.
#[derive(Debug)]
pub struct Provisioner {
    images_dir: PathBuf,
    limits: Limits,
    lock: Mutex<()>,
}

impl Provisioner {
    /// A provisioner caching under `images_dir` (normally `HostLayout::images_dir()`).
    pub fn new(images_dir: impl Into<PathBuf>) -> Self {
        Self {
            images_dir: images_dir.into(),
            limits: Limits::default(),
            lock: Mutex::new(()),
        }
    }

    /// Replaces the default limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Where the rootfs of `digest` is (or would be) cached.
    pub fn rootfs_path(&self, digest: &Digest) -> PathBuf {
        self.images_dir.join(ROOTFS_DIR).join(digest.hex())
    }

    /// Verifies the image in `layout_dir` against `policy` and returns its rootfs,
    /// unpacking it unless a complete cached copy exists.
    ///
    /// Order, and why: (1) the manifest's bytes are checked against its digest and the
    /// digest against the policy (pin or signature) — before anything else of the image
    /// is even read; (2) the config and every layer blob are checked against their
    /// digests and sizes, layers being copied into a private staging area as they are
    /// hashed; (3) only then are the staged copies unpacked, into a temporary directory
    /// that becomes the rootfs by an atomic rename. The trust decision is made on every
    /// call, also when the rootfs is cached: a policy change takes effect at once.
    pub fn provision(
        &self,
        layout_dir: &Path,
        policy: &TrustPolicy,
    ) -> Result<Rootfs, ProvisionError> {
        // A poisoned lock only means another call panicked mid-way; the on-disk state is
        // re-validated below (marker, temp cleanup), so it is safe to carry on.
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let refuse = |source: VerifyError| ProvisionError::Verify {
            layout: layout_dir.to_owned(),
            source,
        };

        let (reader, index) = LayoutReader::open(layout_dir, self.limits.max_json_bytes)
            .map_err(|e| refuse(e.into()))?;
        let trusted =
            verify::trusted_manifest(&reader, &index, policy, &self.limits).map_err(refuse)?;
        let digest = trusted.digest.clone();

        let rootfs_root = self.images_dir.join(ROOTFS_DIR);
        create_dir(&self.images_dir, 0o755)?;
        create_dir(&rootfs_root, 0o755)?;
        let final_dir = rootfs_root.join(digest.hex());
        let marker = rootfs_root.join(format!("{}{READY_SUFFIX}", digest.hex()));

        if cached(&final_dir, &marker, &digest)? {
            return Ok(Rootfs {
                manifest_digest: digest,
                path: final_dir,
                trust: trusted.trust,
                reused: true,
            });
        }
        // Not (completely) cached: clear what a crash may have left for this digest and
        // any unpack that never finished.
        remove_path(&marker)?;
        remove_path(&final_dir)?;
        remove_stale(&rootfs_root, TMP_PREFIX)?;
        // And the temporary file of a marker write a crash interrupted (no other writer
        // of this directory runs: calls are serialized, one provisioner per directory).
        ironclaw_hostfs::remove_stale_temp_files(&rootfs_root).map_err(hostfs_err)?;

        // (2) Every remaining blob, verified before anything is unpacked.
        let diff_ids = verify::config_diff_ids(&reader, &trusted, &self.limits).map_err(refuse)?;
        let staging_root = self.images_dir.join(STAGING_DIR);
        create_dir(&staging_root, 0o700)?;
        remove_stale(&staging_root, "")?;
        let staging = TempDir::create(&staging_root.join(random_name("")?))?;
        let mut staged = Vec::new();
        for (i, layer) in trusted.manifest.layers.iter().enumerate() {
            let path = staging.path().join(format!("layer-{i}"));
            reader
                .copy_verified(layer, &path, self.limits.max_layer_bytes)
                .map_err(|e| refuse(e.into()))?;
            staged.push(path);
        }

        // (3) Unpack the verified copies.
        let tmp = TempDir::create(
            &rootfs_root.join(random_name(&format!("{TMP_PREFIX}{}-", digest.hex()))?),
        )?;
        let mut state = UnpackState::default();
        for ((layer, path), diff_id) in trusted.manifest.layers.iter().zip(&staged).zip(&diff_ids) {
            // Both checked by `trusted_manifest`: a supported media type.
            let gzip = verify::layer_compression(&layer.media_type).unwrap_or(false);
            let blob = File::open(path).map_err(io_err("open", path))?;
            unpack::unpack_layer(
                blob,
                gzip,
                &layer.digest,
                diff_id,
                tmp.path(),
                &mut state,
                &self.limits,
            )
            .map_err(|source| ProvisionError::Layer {
                layout: layout_dir.to_owned(),
                source,
            })?;
        }
        drop(staging);

        // runsc (and the gofer) must be able to traverse and read the rootfs.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", tmp.path()))?;
        layout::fsync_dir(tmp.path()).map_err(io_err("fsync", tmp.path()))?;
        fs::rename(tmp.path(), &final_dir).map_err(io_err("rename into place", &final_dir))?;
        tmp.disarm();
        layout::fsync_dir(&rootfs_root).map_err(io_err("fsync", &rootfs_root))?;
        // Fsyncs the directory itself: the marker is durable once this returns.
        write_marker(&marker, &digest)?;
        Ok(Rootfs {
            manifest_digest: digest,
            path: final_dir,
            trust: trusted.trust,
            reused: false,
        })
    }
}

/// Whether a complete rootfs for `digest` is cached: the directory (a real one, not a
/// symlink) and a marker naming this digest.
fn cached(dir: &Path, marker: &Path, digest: &Digest) -> Result<bool, ProvisionError> {
    let dir_ok = match fs::symlink_metadata(dir) {
        Ok(m) => m.file_type().is_dir(),
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => return Err(io_err("inspect", dir)(e)),
    };
    if !dir_ok {
        return Ok(false);
    }
    let mut content = String::new();
    match fs::symlink_metadata(marker) {
        Ok(m) if m.file_type().is_file() && m.len() <= 128 => {
            File::open(marker)
                .and_then(|mut f| f.read_to_string(&mut content))
                .map_err(io_err("read", marker))?;
        }
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("inspect", marker)(e)),
    }
    Ok(content.trim_end() == digest.to_string())
}

/// Puts the marker for `digest` in place with the host's one atomic writer
/// ([`ironclaw_hostfs::write_atomic`]: a temporary file beside it never reached through
/// a link, its mode set, fsync, rename, fsync of the directory). 0644: it names a
/// public digest, and the rootfs beside it is world-readable anyway.
fn write_marker(marker: &Path, digest: &Digest) -> Result<(), ProvisionError> {
    ironclaw_hostfs::write_atomic(
        marker,
        format!("{digest}\n").as_bytes(),
        ironclaw_hostfs::FileMode::WorldReadable,
    )
    .map_err(hostfs_err)
}

/// Creates `dir` (and parents) with `mode` if missing; an existing one is left as is.
fn create_dir(dir: &Path, mode: u32) -> Result<(), ProvisionError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        Ok(_) => Err(io_err("use as a directory", dir)(io::Error::new(
            ErrorKind::AlreadyExists,
            "exists and is not a directory",
        ))),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(io_err("create directory", dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", dir))
        }
        Err(e) => Err(io_err("inspect", dir)(e)),
    }
}

/// Removes a file, symlink or directory tree at `path` if present (never following a
/// symlink: `remove_dir_all` does not, and a symlink is removed as a file).
fn remove_path(path: &Path) -> Result<(), ProvisionError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => fs::remove_dir_all(path).map_err(io_err("remove", path)),
        Ok(_) => fs::remove_file(path).map_err(io_err("remove", path)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("inspect", path)(e)),
    }
}

/// Removes every entry of `dir` whose name starts with `prefix` (all, for "").
fn remove_stale(dir: &Path, prefix: &str) -> Result<(), ProvisionError> {
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            remove_path(&entry.path())?;
        }
    }
    Ok(())
}

fn random_name(prefix: &str) -> Result<String, ProvisionError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| ProvisionError::Io {
        action: "draw random bytes for",
        path: PathBuf::from("a temporary directory name"),
        source: io::Error::other(e.to_string()),
    })?;
    Ok(format!(
        "{prefix}{}",
        ironclaw_contract::hex::encode(&bytes)
    ))
}

/// A private (0700) directory removed on drop unless disarmed.
struct TempDir {
    path: PathBuf,
    armed: bool,
}

impl TempDir {
    fn create(path: &Path) -> Result<Self, ProvisionError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(io_err("create directory", path))?;
        Ok(Self {
            path: path.to_owned(),
            armed: true,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            // Best effort; a leftover is removed by the next provision call.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
