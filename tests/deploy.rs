//! The production deployment files (issue #7): the systemd unit passes
//! `systemd-analyze verify` with no warning, `deploy/install.sh` parses, and an install
//! into a staging root (`--root`) lays out the tree the unit expects — private state
//! dir, 0600 env file, binaries, a signed image layout that verifies under the trust
//! policy it wrote (which trusts exactly the generated key, whose private half is gone),
//! a loopback API address without Tailscale — and does it again without losing the
//! operator's settings.
//!
//! Needs `systemd-analyze` (dev/test.sh installs systemd) and the static agent (built
//! by dev/test.sh and .ci/run). Never skipped: a machine without them fails here with
//! the fix in the message. Starting the unit needs systemd as PID 1, which CI does not
//! have: docs/deployment.md describes that check.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ironclaw_e2e::binary;
use ironclaw_image::{verify_image, Trust, TrustPolicy};

const UNIT: &str = "ironclaw-controlplane.service";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn deploy(file: &str) -> PathBuf {
    repo().join("deploy").join(file)
}

fn static_agent() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .ancestors()
        .nth(3)
        .unwrap()
        .join("x86_64-unknown-linux-gnu/release/ironclaw-sandbox");
    assert!(
        bin.exists(),
        "{} is missing: RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox",
        bin.display()
    );
    bin
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs install.sh with the built binaries and the static agent.
fn install(args: &[&str]) -> Output {
    let bin_dir = binary("ironclaw-controlplane").parent().unwrap().to_owned();
    assert!(binary("ironctl").exists());
    Command::new("bash")
        .arg(deploy("install.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--sandbox-bin")
        .arg(static_agent())
        .args(args)
        // What install.sh is given must not leak in from the test's environment.
        .env_remove("IRONCLAW_API_ADDR")
        .output()
        .expect("run bash")
}

fn install_into(root: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    install(&args)
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    // verify insists that ExecStart's binary exists: point it at the built daemon.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(deploy(UNIT)).unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/ironclaw-controlplane"));
    let daemon = binary("ironclaw-controlplane");
    let copy = dir.path().join(UNIT);
    std::fs::write(
        &copy,
        text.replace(
            "/usr/local/bin/ironclaw-controlplane",
            daemon.to_str().unwrap(),
        ),
    )
    .unwrap();
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "systemd-analyze cannot run ({e}): apt-get install -y systemd (dev/test.sh does)"
        ),
    };
    assert!(out.status.success(), "{}", show(&out));
    // An unknown key or a bad value is only a warning (exit 0): none is allowed.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains(UNIT)).collect();
    assert!(warnings.is_empty(), "{}", show(&out));
}

#[test]
fn the_unit_keeps_its_hardening() {
    let text = std::fs::read_to_string(deploy(UNIT)).unwrap();
    let settings: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    let value = |key: &str| -> String {
        let prefix = format!("{key}=");
        let found: Vec<&str> = settings
            .iter()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .collect();
        assert_eq!(found.len(), 1, "{key} must be set exactly once");
        found[0].to_owned()
    };
    // The six capabilities the daemon and runsc were measured to need, and no other.
    let mut caps: Vec<String> = value("CapabilityBoundingSet")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    caps.sort();
    assert_eq!(
        caps,
        [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SYS_ADMIN"
        ]
    );
    assert_eq!(value("ProtectSystem"), "strict");
    assert_eq!(value("ReadWritePaths"), "/var/lib/ironclaw /run/ironclaw");
    assert_eq!(value("RuntimeDirectory"), "ironclaw");
    assert_eq!(value("ProtectHome"), "yes");
    assert_eq!(value("PrivateTmp"), "yes");
    assert_eq!(value("PrivateDevices"), "yes");
    assert_eq!(value("RestrictAddressFamilies"), "AF_UNIX AF_INET AF_INET6");
    assert_eq!(value("LockPersonality"), "yes");
    assert_eq!(value("KillMode"), "mixed");
    assert_eq!(value("Restart"), "on-failure");
    assert_eq!(value("EnvironmentFile"), "-/etc/ironclaw/ironclaw.env");
    // The first owner token goes to a root-only file, never the journal.
    assert_eq!(
        value("StandardOutput"),
        "append:/var/lib/ironclaw/first-owner-token"
    );
}

#[test]
fn install_script_parses() {
    let out = Command::new("bash")
        .arg("-n")
        .arg(deploy("install.sh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn install_into_a_staging_root_lays_out_a_verifiable_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let out = install_into(root, &[]);
    assert!(out.status.success(), "{}", show(&out));

    // Binaries.
    for bin in [
        "usr/local/bin/ironclaw-controlplane",
        "usr/local/bin/ironctl",
    ] {
        assert_eq!(mode(&root.join(bin)), 0o755, "{bin}");
    }
    let agent = root.join("usr/local/lib/ironclaw/ironclaw-sandbox");
    assert_eq!(
        std::fs::read(&agent).unwrap(),
        std::fs::read(static_agent()).unwrap()
    );

    // State dir and env file: private; the env file starts from the example and binds
    // loopback (no Tailscale under --root), never every interface.
    assert_eq!(mode(&root.join("var/lib/ironclaw")), 0o700);
    let env_file = root.join("etc/ironclaw/ironclaw.env");
    assert_eq!(mode(&env_file), 0o600);
    let env = std::fs::read_to_string(&env_file).unwrap();
    let addrs: Vec<&str> = env
        .lines()
        .filter_map(|l| l.strip_prefix("IRONCLAW_API_ADDR="))
        .collect();
    assert_eq!(addrs, ["127.0.0.1:8787"]);
    assert!(env.contains("ANTHROPIC_API_KEY="));

    // The unit, as shipped.
    let unit = root.join("etc/systemd/system").join(UNIT);
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(
        std::fs::read(&unit).unwrap(),
        std::fs::read(deploy(UNIT)).unwrap()
    );

    // The trust policy: valid JSON, version 1, trusting exactly the installed public key
    // (no pins), and the image layout verifies under it by that key's signature.
    let policy_path = root.join("etc/ironclaw/trust-policy.json");
    let policy_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&policy_path).unwrap()).unwrap();
    assert_eq!(policy_json["version"], 1);
    assert!(policy_json.get("pinned_digests").is_none());
    let keys = policy_json["cosign_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["path"], "image-signing.pub");
    let public = root.join("etc/ironclaw/image-signing.pub");
    assert!(std::fs::read_to_string(&public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let image = root.join("usr/local/lib/ironclaw/sandbox-image");
    for f in ["oci-layout", "index.json", "blobs/sha256"] {
        assert!(image.join(f).exists(), "image layout lacks {f}");
    }
    let policy = TrustPolicy::load(&policy_path).expect("the daemon can load the policy");
    let verified = verify_image(&image, &policy).expect("the image verifies under the policy");
    assert_eq!(
        verified.trust,
        Trust::Signed {
            key: "install".into()
        }
    );

    // The signing key was deleted: no private key anywhere in the tree.
    assert_no_private_key(root);

    // No leftovers of the atomic swaps.
    assert!(!root
        .join("usr/local/lib/ironclaw/sandbox-image.new")
        .exists());
    assert!(!root
        .join("usr/local/lib/ironclaw/sandbox-image.old")
        .exists());
}

fn assert_no_private_key(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            assert_no_private_key(&path);
        } else if meta.is_file() && meta.len() < 64 * 1024 {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("PRIVATE KEY"),
                "a private key was left at {}",
                path.display()
            );
        }
    }
}

#[test]
fn install_again_keeps_the_operators_settings_and_re_signs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let first = install_into(root, &[]);
    assert!(first.status.success(), "{}", show(&first));
    let env_file = root.join("etc/ironclaw/ironclaw.env");
    let policy_path = root.join("etc/ironclaw/trust-policy.json");
    // The operator's own settings.
    let edited = "IRONCLAW_API_ADDR=100.64.0.7:8787\nANTHROPIC_API_KEY=sk-test-kept\n";
    std::fs::write(&env_file, edited).unwrap();
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let old_public = std::fs::read(root.join("etc/ironclaw/image-signing.pub")).unwrap();

    let second = install_into(root, &[]);
    assert!(second.status.success(), "{}", show(&second));
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), edited);
    assert_eq!(mode(&env_file), 0o600, "a loose env file is tightened");
    assert_eq!(mode(&root.join("var/lib/ironclaw")), 0o700);
    // A fresh key signed the rebuilt image; the policy (unchanged) trusts it.
    let new_public = std::fs::read(root.join("etc/ironclaw/image-signing.pub")).unwrap();
    assert_ne!(old_public, new_public);
    let policy = TrustPolicy::load(&policy_path).unwrap();
    verify_image(&root.join("usr/local/lib/ironclaw/sandbox-image"), &policy)
        .expect("the re-signed image verifies");
    assert_no_private_key(root);
}

#[test]
fn a_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = install_into(dir.path(), &["--dry-run"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[dry-run]"));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "dry run wrote {left:?}");
}

#[test]
fn install_refuses_every_interface_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    for addr in [
        "0.0.0.0:8787",
        "[::]:8787",
        "[0:0::0]:8787",
        "localhost",
        ":8787",
        // The address is written into the env file: nothing that could break out of
        // its line (or out of a substitution) gets that far.
        "127.0.0.1:80|x",
        "1.2.3.4:80&",
        "127.0.0.1:8787\nIRONCLAW_INJECTED=1",
        "127.0.0.1:8787 ",
        "127.0.0.1:8787#",
        // Not an address the daemon would accept.
        "01.2.3.4:8787",
        "256.1.1.1:8787",
        "1.2.3.4:0",
        "1.2.3.4:65536",
        "[::1]",
    ] {
        let out = install_into(dir.path(), &["--api-addr", addr]);
        assert!(!out.status.success(), "{addr:?} accepted: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--api-addr"),
            "{addr:?}: {}",
            show(&out)
        );
        assert!(
            !dir.path().join("usr").exists() && !dir.path().join("etc").exists(),
            "{addr:?} was refused only after installing: {}",
            show(&out)
        );
    }
    let out = install_into(dir.path(), &["--bogus"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument: --bogus"));
    // A missing static agent is named, with the command that builds it.
    let out = Command::new("bash")
        .arg(deploy("install.sh"))
        .args(["--root", dir.path().to_str().unwrap()])
        .arg("--bin-dir")
        .arg(binary("ironctl").parent().unwrap())
        .args(["--sandbox-bin", "/nonexistent/ironclaw-sandbox"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("crt-static"));
    // Nothing was installed by the refused runs.
    assert!(!dir.path().join("usr").exists(), "{}", show(&out));
}

/// A routable address is allowed (a host may have no other), but said to be one; a
/// loopback, private, tailnet or unique local address is not.
#[test]
fn install_warns_about_a_public_api_address() {
    let dir = tempfile::tempdir().unwrap();
    for (addr, public) in [
        ("8.8.8.8:8787", true),
        ("172.32.0.1:8787", true),
        ("100.128.0.1:8787", true),
        ("[2001:db8::1]:8787", true),
        ("127.0.0.1:8787", false),
        ("10.1.2.3:8787", false),
        ("172.16.0.1:8787", false),
        ("192.168.1.2:8787", false),
        ("100.100.1.2:8787", false),
        ("[::1]:8787", false),
        ("[fd7a:115c:a1e0::1]:8787", false),
    ] {
        let out = install_into(dir.path(), &["--api-addr", addr, "--dry-run"]);
        assert!(out.status.success(), "{addr}: {}", show(&out));
        let warned = String::from_utf8_lossy(&out.stderr).contains("WARNING");
        assert_eq!(warned, public, "{addr}: {}", show(&out));
    }
}
