//! End-to-end tests of the public API: build, sign, verify, provision; and every refusal
//! the provisioner promises, each with a crafted layout. No runsc, no network.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ironclaw_image::{
    build_and_sign, generate_signing_key, sign_layout, simple_signing_payload, verify_image,
    BuildError, Digest, ImageBuilder, KeyFiles, LayerError, LayoutError, Provisioner, PublicKey,
    Refusal, SigningKey, Trust, TrustPolicy, UntrustedReason, VerifyError, DEFAULT_REFERENCE,
};
use serde_json::{json, Value};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------
// Fixtures

/// A minimal static x86-64 ELF (header + one PT_LOAD program header) followed by
/// `payload`: enough for the builder's checks, distinct per payload.
fn fake_sandbox_binary(dir: &Path, payload: &[u8]) -> PathBuf {
    let mut e = vec![0u8; 64 + 56];
    e[..4].copy_from_slice(b"\x7fELF");
    e[4] = 2; // 64-bit
    e[5] = 1; // little-endian
    e[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    e[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    e[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    e[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    e[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(payload);
    let path = dir.join(format!("sandbox-{}", Digest::of(payload).hex()));
    fs::write(&path, e).unwrap();
    path
}

struct World {
    tmp: TempDir,
}

impl World {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }
    fn binary(&self, payload: &[u8]) -> PathBuf {
        fake_sandbox_binary(self.tmp.path(), payload)
    }
    fn build(&self, name: &str, payload: &[u8]) -> (PathBuf, Digest) {
        let out = self.path(name);
        let built = ImageBuilder::new(self.binary(payload)).build(&out).unwrap();
        assert!(!built.signed);
        (out, built.manifest_digest)
    }
    fn keys(&self, name: &str) -> KeyFiles {
        generate_signing_key(&self.path(name)).unwrap()
    }
    fn provisioner(&self) -> Provisioner {
        Provisioner::new(self.path("state/images"))
    }
    fn rootfs_entries(&self) -> Vec<String> {
        match fs::read_dir(self.path("state/images/rootfs")) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn key_policy(name: &str, files: &KeyFiles) -> TrustPolicy {
    TrustPolicy::from_parts(
        [],
        [(name.to_owned(), PublicKey::load(&files.public_key).unwrap())],
    )
    .unwrap()
}

fn pin_policy(digest: &Digest) -> TrustPolicy {
    TrustPolicy::from_parts([digest.clone()], []).unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn write_blob(layout: &Path, bytes: &[u8]) -> Value {
    let d = Digest::of(bytes);
    fs::write(layout.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    json!({"digest": d.to_string(), "size": bytes.len()})
}

/// Writes a layout by hand around `layer` (what another tool, or an attacker, could
/// produce): returns its manifest digest.
fn handmade_layout(dir: &Path, layer: &[u8], gzip: bool, diff_id: Option<Digest>) -> Digest {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let stored = if gzip {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(layer).unwrap();
        enc.finish().unwrap()
    } else {
        layer.to_vec()
    };
    let mut layer_desc = write_blob(dir, &stored);
    layer_desc["mediaType"] = json!(if gzip {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    });
    let diff_id = diff_id.unwrap_or_else(|| Digest::of(layer));
    let config = json!({"os": "linux", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]}});
    let mut config_desc = write_blob(dir, config.to_string().as_bytes());
    config_desc["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let manifest = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc, "layers": [layer_desc]});
    let mut manifest_desc = write_blob(dir, manifest.to_string().as_bytes());
    manifest_desc["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    let digest = Digest::parse(manifest_desc["digest"].as_str().unwrap()).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [manifest_desc]});
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
    digest
}

/// One raw tar entry; names are written byte for byte, unvalidated.
struct Raw<'a> {
    name: &'a str,
    kind: tar::EntryType,
    mode: u32,
    link: &'a str,
    data: &'a [u8],
}

fn raw(name: &'static str, kind: tar::EntryType, mode: u32, link: &'static str) -> Raw<'static> {
    Raw {
        name,
        kind,
        mode,
        link,
        data: b"",
    }
}

fn tar_of(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            old.linkname = [0; 100];
            old.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        }
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

// ---------------------------------------------------------------------------------
// Build

#[test]
fn the_same_binary_builds_the_same_manifest_digest() {
    let w = World::new();
    let (a, da) = w.build("a", b"agent v1");
    let (b, db) = w.build("b", b"agent v1");
    assert_eq!(da, db);
    // Byte-identical layouts, not just the digest.
    for f in ["oci-layout", "index.json"] {
        assert_eq!(
            fs::read(a.join(f)).unwrap(),
            fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    let mut blobs_a: Vec<_> = fs::read_dir(a.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    blobs_a.sort();
    assert_eq!(blobs_a.len(), 3); // layer, config, manifest
    for name in &blobs_a {
        let bytes = fs::read(a.join("blobs/sha256").join(name)).unwrap();
        assert_eq!(bytes, fs::read(b.join("blobs/sha256").join(name)).unwrap());
        // Every blob is named by its content.
        assert_eq!(Digest::of(&bytes).hex(), name.to_string_lossy());
    }
    let (_, dc) = w.build("c", b"agent v2");
    assert_ne!(da, dc);

    // The config says how to run it.
    let index = read_json(&a.join("index.json"));
    let manifest = read_json(&blob(&a, index["manifests"][0]["digest"].as_str().unwrap()));
    let config = read_json(&blob(&a, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["Entrypoint"], json!(["/ironclaw-sandbox"]));
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
}

#[test]
fn the_builder_refuses_dynamic_binaries_and_existing_output() {
    let w = World::new();
    let bin = w.binary(b"x");
    let mut bytes = fs::read(&bin).unwrap();
    bytes[64..68].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
    let dynamic = w.path("dynamic");
    fs::write(&dynamic, bytes).unwrap();
    let err = ImageBuilder::new(&dynamic)
        .build(&w.path("out"))
        .unwrap_err();
    assert!(
        matches!(err, BuildError::NotStaticExecutable { .. }),
        "{err}"
    );
    assert!(!w.path("out").exists());

    fs::create_dir(w.path("full")).unwrap();
    fs::write(w.path("full/keep"), b"x").unwrap();
    let err = ImageBuilder::new(&bin).build(&w.path("full")).unwrap_err();
    assert!(matches!(err, BuildError::OutputExists { .. }), "{err}");
    assert_eq!(fs::read(w.path("full/keep")).unwrap(), b"x");
    // An empty directory is fine.
    fs::create_dir(w.path("empty")).unwrap();
    ImageBuilder::new(&bin).build(&w.path("empty")).unwrap();

    // A missing or loose key leaves no output at all.
    let err = build_and_sign(&bin, &w.path("signed"), Some(&w.path("nokey"))).unwrap_err();
    assert!(matches!(err, BuildError::Key(_)), "{err}");
    assert!(!w.path("signed").exists());
}

// ---------------------------------------------------------------------------------
// Sign and verify

#[test]
fn a_signed_image_provisions_with_its_key_and_the_rootfs_is_locked_down() {
    let w = World::new();
    let keys = w.keys("keys");
    let out = w.path("image");
    let built = build_and_sign(&w.binary(b"agent"), &out, Some(&keys.private_key)).unwrap();
    assert!(built.signed);
    let policy = key_policy("release", &keys);

    assert_eq!(
        verify_image(&out, &policy).unwrap().trust,
        Trust::Signed {
            key: "release".into()
        }
    );
    let rootfs = w.provisioner().provision(&out, &policy).unwrap();
    assert_eq!(rootfs.manifest_digest, built.manifest_digest);
    assert_eq!(
        rootfs.trust,
        Trust::Signed {
            key: "release".into()
        }
    );
    assert!(!rootfs.reused);
    assert_eq!(
        rootfs.path,
        w.path("state/images/rootfs")
            .join(built.manifest_digest.hex())
    );
    let p = &rootfs.path;
    assert_eq!(mode(p), 0o755);
    assert_eq!(mode(&p.join("ironclaw-sandbox")), 0o555);
    assert_eq!(
        fs::read(p.join("ironclaw-sandbox")).unwrap(),
        fs::read(w.binary(b"agent")).unwrap()
    );
    assert_eq!(mode(&p.join("etc/passwd")), 0o444);
    assert_eq!(mode(&p.join("etc/group")), 0o444);
    assert_eq!(
        fs::read_to_string(p.join("etc/passwd")).unwrap(),
        "ironclaw:x:65532:65532:ironclaw:/workspace:/sbin/nologin\n"
    );
    for d in [
        "etc",
        "proc",
        "dev",
        "tmp",
        "workspace",
        "run/ironclaw/queue/inbound",
        "run/ironclaw/key",
    ] {
        assert!(p.join(d).is_dir(), "{d}");
        assert_eq!(mode(&p.join(d)), 0o755, "{d}");
    }
    // Nothing in the rootfs is writable by group or others, and no ready marker inside.
    let mut stack = vec![p.clone()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap().path();
            assert_eq!(mode(&e) & 0o022, 0, "{}", e.display());
            if e.is_dir() {
                stack.push(e);
            }
        }
    }
    assert!(!p.join(".ironclaw-rootfs-ready").exists());
    // The staging area was cleaned up.
    assert_eq!(
        fs::read_dir(w.path("state/images/staging"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn an_unsigned_image_is_refused_under_a_key_policy() {
    let w = World::new();
    let keys = w.keys("keys");
    let (out, digest) = w.build("image", b"agent");
    let err = w
        .provisioner()
        .provision(&out, &key_policy("release", &keys))
        .unwrap_err();
    match err.as_verify() {
        Some(VerifyError::Untrusted {
            digest: d,
            reason: UntrustedReason::Unsigned,
        }) => assert_eq!(*d, digest),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("not trusted"), "{err}");
    assert!(w.rootfs_entries().is_empty());
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let w = World::new();
    let signer = w.keys("signer");
    let other = w.keys("other");
    let out = w.path("image");
    build_and_sign(&w.binary(b"agent"), &out, Some(&signer.private_key)).unwrap();
    let err = w
        .provisioner()
        .provision(&out, &key_policy("other", &other))
        .unwrap_err();
    assert!(
        matches!(
            err.as_verify(),
            Some(VerifyError::Untrusted {
                reason: UntrustedReason::NoValidSignature { .. },
                ..
            })
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("does not verify with any trusted key"),
        "{err}"
    );
    assert!(w.rootfs_entries().is_empty());
}

#[test]
fn a_valid_signature_for_another_image_does_not_transfer() {
    let w = World::new();
    let keys = w.keys("keys");
    let signed = w.path("signed");
    build_and_sign(&w.binary(b"good"), &signed, Some(&keys.private_key)).unwrap();
    let (victim, _) = w.build("victim", b"evil");
    // Copy the signature manifest (and its blobs) of the good image next to the evil one.
    let signed_index = read_json(&signed.join("index.json"));
    let sig_entry = signed_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["kind"] == "dev.cosignproject.cosign/sigs")
        .unwrap()
        .clone();
    for e in fs::read_dir(signed.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let dest = victim.join("blobs/sha256").join(e.file_name());
        if !dest.exists() {
            fs::copy(e.path(), dest).unwrap();
        }
    }
    let mut index = read_json(&victim.join("index.json"));
    index["manifests"].as_array_mut().unwrap().push(sig_entry);
    fs::write(victim.join("index.json"), index.to_string()).unwrap();

    let err = w
        .provisioner()
        .provision(&victim, &key_policy("k", &keys))
        .unwrap_err();
    assert!(err.to_string().contains("it signs manifest"), "{err}");
}

#[test]
fn co_signing_adds_signatures_and_re_signing_changes_nothing() {
    let w = World::new();
    let a = w.keys("a");
    let b = w.keys("b");
    let out = w.path("image");
    let built = build_and_sign(&w.binary(b"agent"), &out, Some(&a.private_key)).unwrap();
    let key_b = SigningKey::load(&b.private_key).unwrap();
    assert_eq!(
        sign_layout(&out, &key_b, DEFAULT_REFERENCE).unwrap(),
        built.manifest_digest
    );
    let index_once = fs::read(out.join("index.json")).unwrap();
    sign_layout(&out, &key_b, DEFAULT_REFERENCE).unwrap();
    assert_eq!(fs::read(out.join("index.json")).unwrap(), index_once);
    for (name, files) in [("a", &a), ("b", &b)] {
        let rootfs = w
            .provisioner()
            .provision(&out, &key_policy(name, files))
            .unwrap();
        assert_eq!(rootfs.trust, Trust::Signed { key: name.into() });
    }
    // One signature manifest, with two signature layers.
    let index = read_json(&out.join("index.json"));
    let sigs: Vec<_> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["kind"] == "dev.cosignproject.cosign/sigs")
        .collect();
    assert_eq!(sigs.len(), 1);
    let m = read_json(&blob(&out, sigs[0]["digest"].as_str().unwrap()));
    assert_eq!(m["layers"].as_array().unwrap().len(), 2);
}

/// The signature is stored in cosign's format, and checks out with sigstore's own API
/// used directly (not through this crate's verifier).
#[test]
fn the_signature_is_stored_the_way_cosign_stores_it() {
    use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};
    let w = World::new();
    let keys = w.keys("keys");
    let out = w.path("image");
    let built = build_and_sign(&w.binary(b"agent"), &out, Some(&keys.private_key)).unwrap();
    let digest = built.manifest_digest;

    let index = read_json(&out.join("index.json"));
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["digest"], digest.to_string());
    assert_eq!(
        entries[0]["annotations"]["kind"],
        "dev.cosignproject.cosign/image"
    );
    let sig = &entries[1];
    assert_eq!(
        sig["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(sig["annotations"]["kind"], "dev.cosignproject.cosign/sigs");
    assert_eq!(
        sig["annotations"]["org.opencontainers.image.ref.name"],
        format!("sha256-{}.sig", digest.hex())
    );
    let sig_manifest = read_json(&blob(&out, sig["digest"].as_str().unwrap()));
    assert_eq!(sig_manifest["schemaVersion"], 2);
    let layer = &sig_manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = fs::read(blob(&out, layer["digest"].as_str().unwrap())).unwrap();
    assert_eq!(
        String::from_utf8(payload.clone()).unwrap(),
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"ironclaw-sandbox"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
        )
    );
    assert_eq!(
        payload,
        simple_signing_payload(DEFAULT_REFERENCE, &digest).unwrap()
    );
    let signature = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    let pem = fs::read(&keys.public_key).unwrap();
    let key =
        CosignVerificationKey::from_pem(&pem, &SigningScheme::ECDSA_P256_SHA256_ASN1).unwrap();
    key.verify_signature(Signature::Base64Encoded(signature.as_bytes()), &payload)
        .unwrap();
    // The signature manifest's config lists the payload as its one layer.
    let config = read_json(&blob(
        &out,
        sig_manifest["config"]["digest"].as_str().unwrap(),
    ));
    assert_eq!(config["rootfs"]["diff_ids"], json!([layer["digest"]]));
}

/// A signature written by hand in cosign's layout with sigstore's signer (no code of
/// this crate on the signing side) is accepted: the verifier reads the format, not just
/// its own output.
#[test]
fn a_cosign_format_signature_made_with_sigstore_directly_is_accepted() {
    use base64::Engine as _;
    use sigstore::crypto::SigningScheme;
    let w = World::new();
    let (out, digest) = w.build("image", b"agent");
    let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .unwrap();
    let public_pem = signer
        .to_sigstore_keypair()
        .unwrap()
        .public_key_to_pem()
        .unwrap();
    // Cosign's payload for a registry reference (the provisioner ignores it, as cosign does).
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"registry.example/ironclaw/sandbox"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let signature =
        base64::engine::general_purpose::STANDARD.encode(signer.sign(payload.as_bytes()).unwrap());
    let mut payload_desc = write_blob(&out, payload.as_bytes());
    payload_desc["mediaType"] = json!("application/vnd.dev.cosign.simplesigning.v1+json");
    payload_desc["annotations"] = json!({ "dev.cosignproject.cosign/signature": signature });
    let config = json!({"architecture": "", "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
        "rootfs": {"type": "layers", "diff_ids": [payload_desc["digest"]]}, "config": {}});
    let mut config_desc = write_blob(&out, config.to_string().as_bytes());
    config_desc["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc, "layers": [payload_desc]});
    let mut manifest_desc = write_blob(&out, manifest.to_string().as_bytes());
    manifest_desc["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    // As `cosign save` marks it: by `kind` only.
    manifest_desc["annotations"] = json!({"kind": "dev.cosignproject.cosign/sigs"});
    let mut index = read_json(&out.join("index.json"));
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(manifest_desc);
    fs::write(out.join("index.json"), index.to_string()).unwrap();

    let policy = TrustPolicy::from_parts(
        [],
        [(
            "cosign".to_owned(),
            PublicKey::from_pem(&public_pem).unwrap(),
        )],
    )
    .unwrap();
    let rootfs = w.provisioner().provision(&out, &policy).unwrap();
    assert_eq!(
        rootfs.trust,
        Trust::Signed {
            key: "cosign".into()
        }
    );
}

// ---------------------------------------------------------------------------------
// Pins

#[test]
fn a_pinned_digest_needs_no_signature_and_a_mismatched_pin_is_refused() {
    let w = World::new();
    let (out, digest) = w.build("image", b"agent");
    let rootfs = w
        .provisioner()
        .provision(&out, &pin_policy(&digest))
        .unwrap();
    assert_eq!(rootfs.trust, Trust::Pinned);

    let (other, other_digest) = w.build("other", b"agent v2");
    let err = w
        .provisioner()
        .provision(&other, &pin_policy(&digest))
        .unwrap_err();
    match err.as_verify() {
        Some(VerifyError::Untrusted {
            digest: d,
            reason: UntrustedReason::NotPinned,
        }) => assert_eq!(*d, other_digest),
        _ => panic!("{err}"),
    }
    assert_eq!(w.rootfs_entries().len(), 2); // the first image's rootfs and marker only
}

#[test]
fn a_policy_file_with_pins_works_and_one_with_unknown_fields_is_refused() {
    let w = World::new();
    let (out, digest) = w.build("image", b"agent");
    let path = w.path("policy.json");
    fs::write(
        &path,
        json!({"version": 1, "pinned_digests": [digest.to_string()]}).to_string(),
    )
    .unwrap();
    let policy = TrustPolicy::load(&path).unwrap();
    w.provisioner().provision(&out, &policy).unwrap();

    fs::write(
        &path,
        json!({"version": 1, "pinned_digests": [digest.to_string()], "insecure": true}).to_string(),
    )
    .unwrap();
    let err = TrustPolicy::load(&path).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `insecure`"),
        "{err}"
    );
    fs::write(&path, b"").unwrap();
    assert!(TrustPolicy::load(&path).is_err());
    fs::write(&path, br#"{"version": 1}"#).unwrap();
    assert!(TrustPolicy::load(&path)
        .unwrap_err()
        .to_string()
        .contains("trusts no key"));
}

// ---------------------------------------------------------------------------------
// Integrity: verified before anything is unpacked

#[test]
fn a_tampered_layer_is_refused_before_unpacking() {
    let w = World::new();
    let (out, digest) = w.build("image", b"agent");
    let manifest = read_json(&blob(&out, &digest.to_string()));
    let layer_path = blob(&out, manifest["layers"][0]["digest"].as_str().unwrap());
    let mut bytes = fs::read(&layer_path).unwrap();
    let last = bytes.len() - 1100; // inside the tar, past the headers
    bytes[last] ^= 0x01;
    fs::write(&layer_path, &bytes).unwrap();

    let err = w
        .provisioner()
        .provision(&out, &pin_policy(&digest))
        .unwrap_err();
    assert!(
        matches!(
            err.as_verify(),
            Some(VerifyError::Layout(LayoutError::DigestMismatch { .. }))
        ),
        "{err}"
    );
    // Nothing was unpacked: no rootfs, no temporary directory, no staged copy.
    assert!(w.rootfs_entries().is_empty(), "{:?}", w.rootfs_entries());
    assert_eq!(
        fs::read_dir(w.path("state/images/staging"))
            .unwrap()
            .count(),
        0
    );
    assert!(verify_image(&out, &pin_policy(&digest)).is_err());

    // A blob with bytes appended is a size mismatch.
    bytes[last] ^= 0x01;
    bytes.push(0);
    fs::write(&layer_path, &bytes).unwrap();
    let err = w
        .provisioner()
        .provision(&out, &pin_policy(&digest))
        .unwrap_err();
    assert!(
        matches!(
            err.as_verify(),
            Some(VerifyError::Layout(LayoutError::SizeMismatch { .. }))
        ),
        "{err}"
    );
}

#[test]
fn a_tampered_manifest_or_config_is_refused() {
    let w = World::new();
    let (out, digest) = w.build("image", b"agent");
    let manifest_path = blob(&out, &digest.to_string());
    let manifest = read_json(&manifest_path);
    let config_path = blob(&out, manifest["config"]["digest"].as_str().unwrap());
    let original = fs::read(&config_path).unwrap();
    fs::write(
        &config_path,
        String::from_utf8(original.clone())
            .unwrap()
            .replace("65532", "00000"),
    )
    .unwrap();
    let err = w
        .provisioner()
        .provision(&out, &pin_policy(&digest))
        .unwrap_err();
    assert!(
        matches!(
            err.as_verify(),
            Some(VerifyError::Layout(LayoutError::DigestMismatch { .. }))
        ),
        "{err}"
    );
    fs::write(&config_path, original).unwrap();

    let mut m = fs::read(&manifest_path).unwrap();
    m[10] ^= 0x20;
    fs::write(&manifest_path, m).unwrap();
    let err = w
        .provisioner()
        .provision(&out, &pin_policy(&digest))
        .unwrap_err();
    assert!(
        matches!(
            err.as_verify(),
            Some(VerifyError::Layout(LayoutError::DigestMismatch { .. }))
        ),
        "{err}"
    );
    assert!(w.rootfs_entries().is_empty());
}

// ---------------------------------------------------------------------------------
// Layer safety, through the provisioner

fn refused(entries: &[Raw<'_>]) -> (Refusal, World) {
    let w = World::new();
    let layout = w.path("evil");
    let digest = handmade_layout(&layout, &tar_of(entries), false, None);
    let err = w
        .provisioner()
        .provision(&layout, &pin_policy(&digest))
        .unwrap_err();
    assert!(err.to_string().contains("refused entry"), "{err}");
    let reason = match err.as_layer() {
        Some(LayerError::Refused { reason, .. }) => reason.clone(),
        _ => panic!("{err}"),
    };
    // Nothing half-unpacked is left, and nothing became a rootfs.
    assert!(w.rootfs_entries().is_empty(), "{:?}", w.rootfs_entries());
    (reason, w)
}

#[test]
fn malicious_layers_are_refused() {
    use tar::EntryType::*;
    let data = |name, data| Raw {
        name,
        kind: Regular,
        mode: 0o644,
        link: "",
        data,
    };
    let (r, w) = refused(&[data("../x", b"pwned")]);
    assert_eq!(r, Refusal::ParentComponent);
    assert!(!w.path("state/images/x").exists());
    assert!(!w.path("state/images/rootfs/x").exists());

    assert_eq!(
        refused(&[data("/tmp/x", b"pwned")]).0,
        Refusal::AbsolutePath
    );
    assert_eq!(
        refused(&[data("etc/../../x", b"pwned")]).0,
        Refusal::ParentComponent
    );
    assert!(matches!(
        refused(&[raw("link", Symlink, 0o777, "/etc/shadow")]).0,
        Refusal::AbsoluteSymlink { .. }
    ));
    assert!(matches!(
        refused(&[raw("a/link", Symlink, 0o777, "../../outside")]).0,
        Refusal::EscapingSymlink { .. }
    ));
    // The classic: a symlink to a directory, then a file written "through" it.
    assert_eq!(
        refused(&[raw("d", Symlink, 0o777, "."), data("d/x", b"")]).0,
        Refusal::ParentNotDirectory
    );
    assert_eq!(
        refused(&[raw("dev/null", Char, 0o666, "")]).0,
        Refusal::DeviceNode
    );
    assert_eq!(
        refused(&[raw("dev/sda", Block, 0o660, "")]).0,
        Refusal::DeviceNode
    );
    assert_eq!(refused(&[raw("pipe", Fifo, 0o644, "")]).0, Refusal::Fifo);
    let (r, w) = refused(&[Raw {
        name: "bin/su",
        kind: Regular,
        mode: 0o4755,
        link: "",
        data: b"x",
    }]);
    assert_eq!(r, Refusal::SetId { mode: 0o4755 });
    drop(w);
    assert!(matches!(
        refused(&[raw("h", Link, 0o644, "/etc/shadow")]).0,
        Refusal::BadHardlink { .. }
    ));
}

#[test]
fn a_gzip_layer_unpacks_and_its_diff_id_is_checked() {
    let w = World::new();
    let tar = tar_of(&[Raw {
        name: "hello",
        kind: tar::EntryType::Regular,
        mode: 0o644,
        link: "",
        data: b"world",
    }]);
    let good = w.path("good");
    let digest = handmade_layout(&good, &tar, true, None);
    let rootfs = w
        .provisioner()
        .provision(&good, &pin_policy(&digest))
        .unwrap();
    assert_eq!(fs::read(rootfs.path.join("hello")).unwrap(), b"world");

    let bad = w.path("bad");
    let digest = handmade_layout(&bad, &tar, true, Some(Digest::of(b"something else")));
    let err = w
        .provisioner()
        .provision(&bad, &pin_policy(&digest))
        .unwrap_err();
    assert!(
        matches!(err.as_layer(), Some(LayerError::DiffIdMismatch { .. })),
        "{err}"
    );
    assert!(!w.path("state/images/rootfs").join(digest.hex()).exists());
}

#[test]
fn two_images_in_one_layout_are_refused() {
    let w = World::new();
    let (out, digest) = w.build("image", b"agent");
    let mut index = read_json(&out.join("index.json"));
    let mut second = index["manifests"][0].clone();
    second["annotations"] = json!({});
    second["digest"] = json!(Digest::of(b"x").to_string());
    index["manifests"].as_array_mut().unwrap().push(second);
    fs::write(out.join("index.json"), index.to_string()).unwrap();
    let err = w
        .provisioner()
        .provision(&out, &pin_policy(&digest))
        .unwrap_err();
    assert!(
        matches!(
            err.as_verify(),
            Some(VerifyError::Layout(LayoutError::AmbiguousImage {
                count: 2,
                ..
            }))
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------
// Cache

#[test]
fn a_cached_rootfs_is_reused_and_a_half_unpacked_one_is_discarded() {
    let w = World::new();
    let (out, digest) = w.build("image", b"agent");
    let policy = pin_policy(&digest);
    let prov = w.provisioner();
    let first = prov.provision(&out, &policy).unwrap();
    assert!(!first.reused);
    let second = prov.provision(&out, &policy).unwrap();
    assert!(second.reused);
    assert_eq!(first.path, second.path);
    // A new provisioner (a daemon restart) reuses it too.
    assert!(w.provisioner().provision(&out, &policy).unwrap().reused);

    // Trust is decided on every call, also for a cached rootfs.
    let (_, other) = w.build("other", b"x");
    assert!(w
        .provisioner()
        .provision(&out, &pin_policy(&other))
        .is_err());

    // A crash between rename and marker: rootfs without marker, junk inside; plus an
    // unpack that never finished.
    let marker = w
        .path("state/images/rootfs")
        .join(format!("{}.ready", digest.hex()));
    assert!(marker.is_file());
    fs::remove_file(&marker).unwrap();
    fs::write(first.path.join("junk"), b"half").unwrap();
    let stale_tmp = w.path("state/images/rootfs/.tmp-deadbeef-0123");
    fs::create_dir(&stale_tmp).unwrap();
    fs::write(stale_tmp.join("partial"), b"x").unwrap();

    let again = prov.provision(&out, &policy).unwrap();
    assert!(!again.reused);
    assert!(!again.path.join("junk").exists());
    assert!(again.path.join("ironclaw-sandbox").is_file());
    assert!(!stale_tmp.exists());
    assert!(marker.is_file());

    // A marker naming another digest does not count either.
    fs::write(&marker, format!("{}\n", Digest::of(b"other"))).unwrap();
    assert!(!prov.provision(&out, &policy).unwrap().reused);
}

/// The marker is written by the host's one atomic writer (0644, never through a link),
/// and the temporary file of a marker write a crash interrupted is removed by the next
/// unpack (its name is random, so nothing writes over it).
#[test]
fn a_marker_write_a_crash_interrupted_leaves_nothing_behind() {
    let w = World::new();
    let (out, digest) = w.build("image", b"agent");
    let policy = pin_policy(&digest);
    let prov = w.provisioner();
    prov.provision(&out, &policy).unwrap();
    let root = w.path("state/images/rootfs");
    let marker = root.join(format!("{}.ready", digest.hex()));
    // The crash: the marker never made it, its temporary file did. And a symlink where
    // the marker goes is replaced, not followed.
    fs::remove_file(&marker).unwrap();
    let stale = root.join(format!(".{}.ready.tmp-0123456789abcdef", digest.hex()));
    fs::write(&stale, b"sha256:half").unwrap();
    let victim = w.path("victim");
    fs::write(&victim, b"victim").unwrap();
    std::os::unix::fs::symlink(&victim, &marker).unwrap();

    assert!(!prov.provision(&out, &policy).unwrap().reused);
    assert!(!stale.exists());
    assert_eq!(fs::read(&victim).unwrap(), b"victim");
    let meta = fs::symlink_metadata(&marker).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    assert_eq!(fs::read_to_string(&marker).unwrap(), format!("{digest}\n"));
    let mut entries = w.rootfs_entries();
    entries.sort();
    assert_eq!(
        entries,
        [digest.hex().to_string(), format!("{}.ready", digest.hex())]
    );
    assert!(prov.provision(&out, &policy).unwrap().reused);
}
