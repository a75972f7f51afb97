//! `ironctl image keygen` and `ironctl image build` with the real static agent: a signed
//! layout verifies under a policy trusting the generated public key, an unsigned build
//! of the same binary (same digest) is refused by that policy, another key's policy
//! refuses the signed one, and bad input exits 2 without writing anything.
//!
//! Needs the static agent (CI builds it before the tests; see `.ci/run`):
//! `RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target
//! x86_64-unknown-linux-gnu -p ironclaw-sandbox`, or `IRONCLAW_SANDBOX_BIN=<path>`.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ironclaw_image::{verify_image, Trust, TrustPolicy, UntrustedReason, VerifyError};

const BIN: &str = env!("CARGO_BIN_EXE_ironctl");

fn static_agent() -> PathBuf {
    if let Some(p) = std::env::var_os("IRONCLAW_SANDBOX_BIN") {
        return PathBuf::from(p);
    }
    // <target>/debug/deps/image-<hash> → <target>
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap();
    let bin = target.join("x86_64-unknown-linux-gnu/release/ironclaw-sandbox");
    assert!(
        bin.exists(),
        "{} is missing: build it with RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox (.ci/run does), or set IRONCLAW_SANDBOX_BIN",
        bin.display()
    );
    bin
}

fn ironctl(args: &[&str]) -> Output {
    Command::new(BIN)
        // Local commands must not need (or touch) a daemon.
        .env("IRONCLAW_ADDR", "http://127.0.0.1:9")
        .env_remove("IRONCLAW_API_TOKEN")
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A policy file trusting the public key at `public` under the name `release`.
fn policy_trusting(dir: &Path, public: &Path) -> TrustPolicy {
    let path = dir.join("policy.json");
    let text = serde_json::json!({
        "version": 1,
        "cosign_keys": [{"name": "release", "path": public}],
    });
    std::fs::write(&path, text.to_string()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    TrustPolicy::load(&path).unwrap()
}

#[test]
fn a_signed_build_verifies_with_the_generated_key_and_an_unsigned_one_is_refused() {
    let agent = static_agent();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");

    let k = ok(&ironctl(&["--json", "image", "keygen", "--out", s(&keys)]));
    let private = PathBuf::from(k["private_key"].as_str().unwrap());
    let public = PathBuf::from(k["public_key"].as_str().unwrap());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&private), 0o600);
    assert_eq!(mode(&public), 0o644);
    assert!(std::fs::read_to_string(&public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));

    // Signed.
    let signed_dir = dir.path().join("signed");
    let b = ok(&ironctl(&[
        "--json",
        "image",
        "build",
        "--sandbox-bin",
        s(&agent),
        "--out",
        s(&signed_dir),
        "--sign-key",
        s(&private),
    ]));
    assert_eq!(b["signed"], true, "{b}");
    let digest = b["manifest_digest"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{b}");

    let policy = policy_trusting(dir.path(), &public);
    let verified = verify_image(&signed_dir, &policy).unwrap();
    assert_eq!(verified.manifest_digest.to_string(), digest);
    assert_eq!(
        verified.trust,
        Trust::Signed {
            key: "release".into()
        }
    );

    // Unsigned: same binary, same digest, but nothing the policy trusts.
    let unsigned_dir = dir.path().join("unsigned");
    let u = ok(&ironctl(&[
        "--json",
        "image",
        "build",
        "--sandbox-bin",
        s(&agent),
        "--out",
        s(&unsigned_dir),
    ]));
    assert_eq!(u["signed"], false, "{u}");
    assert_eq!(u["manifest_digest"].as_str(), Some(digest.as_str()));
    match verify_image(&unsigned_dir, &policy) {
        Err(VerifyError::Untrusted {
            reason: UntrustedReason::Unsigned,
            ..
        }) => {}
        other => panic!("an unsigned image was not refused as unsigned: {other:?}"),
    }

    // Signed by a key the policy does not trust.
    let other_keys = dir.path().join("other-keys");
    let o = ok(&ironctl(&[
        "--json",
        "image",
        "keygen",
        "--out",
        s(&other_keys),
    ]));
    let other_dir = dir.path().join("other-policy");
    std::fs::create_dir(&other_dir).unwrap();
    let other_policy = policy_trusting(&other_dir, Path::new(o["public_key"].as_str().unwrap()));
    match verify_image(&signed_dir, &other_policy) {
        Err(VerifyError::Untrusted {
            reason: UntrustedReason::NoValidSignature { .. },
            ..
        }) => {}
        other => panic!("a signature by an untrusted key was accepted: {other:?}"),
    }

    // The human-readable report names the digest and the signature.
    let text_dir = dir.path().join("text");
    let t = ironctl(&[
        "image",
        "build",
        "--sandbox-bin",
        s(&agent),
        "--out",
        s(&text_dir),
        "--sign-key",
        s(&private),
    ]);
    let stdout = String::from_utf8_lossy(&t.stdout);
    assert_eq!(t.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!("manifest digest: {digest}")),
        "{stdout}"
    );
    assert!(stdout.contains("signed:          yes"), "{stdout}");
}

fn exits_2(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let agent = static_agent();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    ok(&ironctl(&["--json", "image", "keygen", "--out", s(&keys)]));
    let private = keys.join("image-signing.key");

    // An existing key is never overwritten.
    let before = std::fs::read(&private).unwrap();
    exits_2(
        &ironctl(&["image", "keygen", "--out", s(&keys)]),
        "refusing to overwrite a key",
    );
    assert_eq!(std::fs::read(&private).unwrap(), before);

    let out = dir.path().join("img");
    let build = |bin: &Path, key: Option<&Path>| {
        let mut args = vec!["image", "build", "--sandbox-bin", s(bin), "--out", s(&out)];
        if let Some(k) = key {
            args.extend(["--sign-key", s(k)]);
        }
        ironctl(&args)
    };
    // A dynamically linked binary could not start in the image.
    exits_2(&build(Path::new("/bin/sh"), None), "dynamically linked");
    // A missing binary names the flag.
    exits_2(
        &build(&dir.path().join("no-such-binary"), None),
        "--sandbox-bin",
    );
    // A private key others can read is refused before anything is written.
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
    exits_2(&build(&agent, Some(&private)), "chmod 600");
    // A missing key.
    exits_2(
        &build(&agent, Some(&dir.path().join("no-such.key"))),
        "--sign-key",
    );
    assert!(!out.exists(), "a refused build left {}", out.display());

    // --out that holds something is not overwritten.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), b"x").unwrap();
    exits_2(&build(&agent, None), "refusing to overwrite");
    assert_eq!(std::fs::read(out.join("keep")).unwrap(), b"x");
}
