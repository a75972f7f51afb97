//! Building the sandbox image: the static `ironclaw-sandbox` binary plus a minimal
//! `/etc` (user and group 65532 `ironclaw`, nothing else) and the empty mount points the
//! runtime spec mounts over, packed as an OCI image layout with one plain tar layer.
//!
//! For: producing a layout whose manifest digest depends only on the binary's bytes,
//! so anyone can rebuild it and get the digest an operator pinned. Not for: signing
//! (`cosign`), or any image other than the sandbox image (there is no Dockerfile-like
//! generality here on purpose: no shell, no interpreter, no package manager).
//!
//! Determinism: entries are sorted by path, every header has mtime 0, uid/gid 0 and no
//! user/group names, the layer is uncompressed (compressor output can change between
//! library versions; tar bytes cannot), the config carries no creation time, and all
//! JSON is compact with a fixed field order.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ironclaw_contract::paths::sandbox;
use serde::Serialize;

use crate::cosign::{self, KeyError, SignError, SigningKey, DEFAULT_REFERENCE};
use crate::digest::Digest;
use crate::layout::{
    Descriptor, ImageIndex, LayoutError, LayoutWriter, Manifest, ANNOTATION_KIND,
    ANNOTATION_REF_NAME, KIND_IMAGE, MEDIA_LAYER_TAR, MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
};

/// Where the agent binary sits in the image (the entrypoint).
pub const SANDBOX_BINARY_PATH: &str = "/ironclaw-sandbox";
/// The agent's user and group id, and its name in `/etc/passwd` and `/etc/group`.
pub const SANDBOX_UID: u32 = 65532;
pub const SANDBOX_USER: &str = "ironclaw";
/// The tag of the image entry in `index.json`.
pub const IMAGE_TAG: &str = "latest";

/// Largest binary accepted (the agent is ~10 MiB).
const MAX_BINARY: u64 = 256 * 1024 * 1024;

/// Directories the runtime spec mounts over. On a read-only rootfs a mount point
/// cannot be created at launch, so each must exist in the image.
const MOUNT_DIRS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/tmp",
    sandbox::INBOUND_DIR,
    sandbox::OUTBOUND_DIR,
    sandbox::KEY_DIR,
    sandbox::CONFIG_DIR,
    sandbox::HEARTBEAT_DIR,
    sandbox::WORKSPACE,
];
/// Unix sockets are bind-mounted onto files: empty placeholders (0444).
const MOUNT_FILES: &[&str] = &[sandbox::MODEL_SOCKET, sandbox::DOORBELL_SOCKET];

/// The image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sandbox binary {path} is larger than {limit} bytes")]
    BinaryTooLarge { path: PathBuf, limit: u64 },
    #[error("sandbox binary {path} cannot run in the image: {why}")]
    NotStaticExecutable { path: PathBuf, why: String },
    #[error(
        "output {path} already exists and is not an empty directory; refusing to overwrite it"
    )]
    OutputExists { path: PathBuf },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BuildError {
    let path = path.to_owned();
    move |source| BuildError::Io {
        action,
        path,
        source,
    }
}

/// A built image layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The layout directory.
    pub layout: PathBuf,
    /// The image manifest digest: what a trust policy pins and a signature covers.
    pub manifest_digest: Digest,
    /// Whether a signature was added.
    pub signed: bool,
}

/// Builds the sandbox image from an `ironclaw-sandbox` binary.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    binary: PathBuf,
}

impl ImageBuilder {
    pub fn new(sandbox_binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: sandbox_binary.into(),
        }
    }

    /// Writes an unsigned layout to `out` (which must not exist, or be an empty
    /// directory). The layout appears complete or not at all.
    pub fn build(&self, out: &Path) -> Result<BuiltImage, BuildError> {
        self.build_inner(out, None)
    }

    /// Writes a layout to `out` signed by `key` for docker reference `reference`.
    pub fn build_signed(
        &self,
        out: &Path,
        key: &SigningKey,
        reference: &str,
    ) -> Result<BuiltImage, BuildError> {
        self.build_inner(out, Some((key, reference)))
    }

    fn build_inner(
        &self,
        out: &Path,
        sign: Option<(&SigningKey, &str)>,
    ) -> Result<BuiltImage, BuildError> {
        check_output(out)?;
        let binary = read_binary(&self.binary)?;
        let architecture =
            elf_architecture(&binary).map_err(|why| BuildError::NotStaticExecutable {
                path: self.binary.clone(),
                why,
            })?;
        // Build beside `out` and rename: a crash or error never leaves a half layout
        // that looks like an image.
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if fs::symlink_metadata(&tmp).is_ok() {
            fs::remove_dir_all(&tmp).map_err(io_err("remove", &tmp))?;
        }
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&tmp)
            .map_err(io_err("create directory", &tmp))?;
        let result = (|| {
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod", &tmp))?;
            let digest = write_layout(&tmp, &binary, architecture)?;
            if let Some((key, reference)) = sign {
                cosign::sign_layout(&tmp, key, reference)?;
            }
            crate::layout::fsync_dir(&tmp).map_err(io_err("fsync", &tmp))?;
            // rename(2) replaces an empty directory at `out`, and fails on a non-empty one.
            fs::rename(&tmp, out).map_err(io_err("rename into place", out))?;
            crate::layout::fsync_dir(&parent).map_err(io_err("fsync", &parent))?;
            Ok(digest)
        })();
        match result {
            Ok(manifest_digest) => Ok(BuiltImage {
                layout: out.to_owned(),
                manifest_digest,
                signed: sign.is_some(),
            }),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }
}

/// Builds the sandbox image from `bin` into `out`, signed with the (unencrypted
/// PKCS#8) private key at `sign_key` if given. The key is loaded before anything is
/// written, so a bad key leaves no output. This is what `ironctl image build` calls.
pub fn build_and_sign(
    bin: &Path,
    out: &Path,
    sign_key: Option<&Path>,
) -> Result<BuiltImage, BuildError> {
    let key = sign_key.map(SigningKey::load).transpose()?;
    let builder = ImageBuilder::new(bin);
    match &key {
        Some(k) => builder.build_signed(out, k, DEFAULT_REFERENCE),
        None => builder.build(out),
    }
}

fn check_output(out: &Path) -> Result<(), BuildError> {
    match fs::symlink_metadata(out) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("inspect", out)(e)),
        Ok(m) if m.file_type().is_dir() => {
            let mut entries = fs::read_dir(out).map_err(io_err("list", out))?;
            if entries.next().is_none() {
                Ok(())
            } else {
                Err(BuildError::OutputExists {
                    path: out.to_owned(),
                })
            }
        }
        Ok(_) => Err(BuildError::OutputExists {
            path: out.to_owned(),
        }),
    }
}

fn read_binary(path: &Path) -> Result<Vec<u8>, BuildError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let meta = file.metadata().map_err(io_err("inspect", path))?;
    if !meta.is_file() {
        return Err(BuildError::NotStaticExecutable {
            path: path.to_owned(),
            why: "not a regular file".into(),
        });
    }
    let mut buf = Vec::new();
    file.take(MAX_BINARY + 1)
        .read_to_end(&mut buf)
        .map_err(io_err("read", path))?;
    if buf.len() as u64 > MAX_BINARY {
        return Err(BuildError::BinaryTooLarge {
            path: path.to_owned(),
            limit: MAX_BINARY,
        });
    }
    Ok(buf)
}

/// The OCI architecture of a 64-bit little-endian ELF executable, refusing anything the
/// image could not run: not ELF, not an executable, or dynamically linked (the image
/// has no dynamic loader, so such a binary would fail at every launch).
fn elf_architecture(elf: &[u8]) -> Result<&'static str, String> {
    // Offsets come from the file: every range is computed with checked arithmetic and
    // read with `get`, so a hostile header yields an error, never a panic.
    let bytes_at = |off: usize, len: usize| off.checked_add(len).and_then(|end| elf.get(off..end));
    let u16_at = |off: usize| bytes_at(off, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at =
        |off: usize| bytes_at(off, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |off: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(bytes_at(off, 8)?);
        Some(u64::from_le_bytes(a))
    };
    if elf.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF executable".into());
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let truncated = || "truncated ELF header".to_string();
    match u16_at(16).ok_or_else(truncated)? {
        2 | 3 => {} // ET_EXEC, or ET_DYN for a static-pie executable
        t => return Err(format!("ELF type {t} is not an executable")),
    }
    let arch = match u16_at(18).ok_or_else(truncated)? {
        62 => "amd64",
        183 => "arm64",
        243 => "riscv64",
        m => return Err(format!("unsupported ELF machine {m}")),
    };
    let phoff = u64_at(32).ok_or_else(truncated)?;
    let phentsize = u64::from(u16_at(54).ok_or_else(truncated)?);
    let phnum = u64::from(u16_at(56).ok_or_else(truncated)?);
    for i in 0..phnum {
        let off = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(|| "program header table out of range".to_string())?;
        const PT_INTERP: u32 = 3;
        match u32_at(off) {
            Some(PT_INTERP) => {
                return Err(
                    "dynamically linked (it names a program interpreter) but the image has no \
                     dynamic loader; build it static (see docs/image-trust.md)"
                        .into(),
                )
            }
            Some(_) => {}
            None => return Err("program header table out of range".into()),
        }
    }
    Ok(arch)
}

/// Adds `path` and all its ancestors as directory entries.
fn add_dirs(path: &str, entries: &mut BTreeMap<String, TarEntry<'_>>) {
    let mut cur = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(part);
        entries.entry(cur.clone()).or_insert(TarEntry::Dir);
    }
}

enum TarEntry<'a> {
    Dir,
    File { mode: u32, data: &'a [u8] },
}

/// The layer: sorted entries, fixed metadata.
fn rootfs_tar(binary: &[u8]) -> io::Result<Vec<u8>> {
    let passwd = format!(
        "{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_UID}:{SANDBOX_USER}:{}:/sbin/nologin\n",
        sandbox::WORKSPACE
    );
    let group = format!("{SANDBOX_USER}:x:{SANDBOX_UID}:\n");

    // Keys are paths without a leading or trailing slash; BTreeMap order puts every
    // directory before its contents (a parent is a prefix of its children).
    let mut entries: BTreeMap<String, TarEntry<'_>> = BTreeMap::new();
    add_dirs("/etc", &mut entries);
    for d in MOUNT_DIRS {
        add_dirs(d, &mut entries);
    }
    for f in MOUNT_FILES {
        if let Some((parent, _)) = f.rsplit_once('/') {
            add_dirs(parent, &mut entries);
        }
        entries.insert(
            f.trim_start_matches('/').to_owned(),
            TarEntry::File {
                mode: 0o444,
                data: b"",
            },
        );
    }
    entries.insert(
        SANDBOX_BINARY_PATH.trim_start_matches('/').to_owned(),
        TarEntry::File {
            mode: 0o555,
            data: binary,
        },
    );
    entries.insert(
        "etc/passwd".into(),
        TarEntry::File {
            mode: 0o444,
            data: passwd.as_bytes(),
        },
    );
    entries.insert(
        "etc/group".into(),
        TarEntry::File {
            mode: 0o444,
            data: group.as_bytes(),
        },
    );

    let mut builder = tar::Builder::new(Vec::new());
    for (path, entry) in &entries {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match entry {
            TarEntry::Dir => {
                h.set_path(format!("{path}/"))?;
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_cksum();
                builder.append(&h, io::empty())?;
            }
            TarEntry::File { mode, data } => {
                h.set_path(path)?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                h.set_cksum();
                builder.append(&h, *data)?;
            }
        }
    }
    builder.into_inner()
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    architecture: &'a str,
    os: &'a str,
    config: RunConfig<'a>,
    rootfs: ConfigRootfs,
}

#[derive(Serialize)]
struct RunConfig<'a> {
    #[serde(rename = "User")]
    user: String,
    #[serde(rename = "Entrypoint")]
    entrypoint: [&'a str; 1],
    #[serde(rename = "WorkingDir")]
    working_dir: &'a str,
}

#[derive(Serialize)]
struct ConfigRootfs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<Digest>,
}

/// Writes the blobs, manifest and index into the empty directory `dir`; returns the
/// manifest digest.
fn write_layout(dir: &Path, binary: &[u8], architecture: &str) -> Result<Digest, BuildError> {
    let tar = rootfs_tar(binary).map_err(io_err("build the layer tar for", dir))?;
    let writer = LayoutWriter::create(dir)?;
    let layer = writer.write_blob(MEDIA_LAYER_TAR, &tar)?;
    let config = ImageConfig {
        architecture,
        os: "linux",
        config: RunConfig {
            user: format!("{SANDBOX_UID}:{SANDBOX_UID}"),
            entrypoint: [SANDBOX_BINARY_PATH],
            working_dir: sandbox::WORKSPACE,
        },
        rootfs: ConfigRootfs {
            kind: "layers",
            // Uncompressed layer: its diff id is its digest.
            diff_ids: vec![layer.digest.clone()],
        },
    };
    let (config_desc, _) = writer.write_json_blob(MEDIA_OCI_CONFIG, &config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_MANIFEST.to_owned()),
        config: config_desc,
        layers: vec![layer],
    };
    let (mut manifest_desc, _): (Descriptor, _) =
        writer.write_json_blob(MEDIA_OCI_MANIFEST, &manifest)?;
    manifest_desc
        .annotations
        .insert(ANNOTATION_KIND.to_owned(), KIND_IMAGE.to_owned());
    manifest_desc
        .annotations
        .insert(ANNOTATION_REF_NAME.to_owned(), IMAGE_TAG.to_owned());
    let digest = manifest_desc.digest.clone();
    writer.write_index(&ImageIndex {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_INDEX.to_owned()),
        manifests: vec![manifest_desc],
    })?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16, interp: bool) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[16..18].copy_from_slice(&2u16.to_le_bytes());
        e[18..20].copy_from_slice(&machine.to_le_bytes());
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&1u16.to_le_bytes());
        let p_type: u32 = if interp { 3 } else { 1 };
        e[64..68].copy_from_slice(&p_type.to_le_bytes());
        e
    }

    #[test]
    fn only_static_64_bit_executables_are_accepted() {
        assert_eq!(elf_architecture(&elf(62, false)), Ok("amd64"));
        assert_eq!(elf_architecture(&elf(183, false)), Ok("arm64"));
        assert!(elf_architecture(&elf(62, true))
            .unwrap_err()
            .contains("dynamically linked"));
        assert!(elf_architecture(&elf(3, false)).is_err());
        assert!(elf_architecture(b"#!/bin/sh\n").is_err());
        assert!(elf_architecture(&elf(62, false)[..40]).is_err());
        // Hostile offsets are errors, not panics.
        for phoff in [u64::MAX, u64::MAX - 3, 1 << 40] {
            let mut far = elf(62, false);
            far[32..40].copy_from_slice(&phoff.to_le_bytes());
            assert!(elf_architecture(&far).is_err());
        }
        let mut many = elf(62, false);
        many[54..56].copy_from_slice(&u16::MAX.to_le_bytes());
        many[56..58].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(elf_architecture(&many).is_err());
    }

    #[test]
    fn the_layer_has_mount_points_and_a_minimal_etc() {
        let tar = rootfs_tar(b"BIN").unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap_or_default();
            seen.push((path, h.mode().unwrap(), data));
        }
        let find = |p: &str| seen.iter().find(|(path, ..)| path == p).cloned();
        assert_eq!(find("ironclaw-sandbox").unwrap().1, 0o555);
        let passwd = find("etc/passwd").unwrap();
        assert_eq!(passwd.1, 0o444);
        assert_eq!(
            passwd.2,
            "ironclaw:x:65532:65532:ironclaw:/workspace:/sbin/nologin\n"
        );
        assert_eq!(find("etc/group").unwrap().2, "ironclaw:x:65532:\n");
        for dir in [
            "run/ironclaw/queue/inbound/",
            "run/ironclaw/queue/outbound/",
            "run/ironclaw/key/",
            "run/ironclaw/config/",
            "run/ironclaw/heartbeat/",
            "workspace/",
            "proc/",
            "dev/",
            "tmp/",
            "etc/",
        ] {
            assert!(find(dir).is_some(), "{dir} missing");
        }
        assert!(find("run/ironclaw/model.sock").is_some());
        // Sorted, and nothing else in /etc.
        let paths: Vec<_> = seen
            .iter()
            .map(|(p, ..)| p.trim_end_matches('/').to_owned())
            .collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert_eq!(paths.iter().filter(|p| p.starts_with("etc/")).count(), 2);
    }
}
