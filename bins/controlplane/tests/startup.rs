//! The daemon's flags and its fail-closed startup checks (no server needed).

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ironclaw-controlplane");

#[test]
fn help_documents_the_flags() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--api-addr",
        "--state-dir",
        "--model-proxy-socket",
        "--dev",
        "--log-format",
        "--rate-limit-rps",
        "--rate-limit-burst",
        "--max-body-bytes",
        "--max-header-bytes",
        "--tls-cert",
        "--tls-key",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn tls_needs_both_cert_and_key() {
    let out = Command::new(BIN)
        .args(["--tls-cert", "/tmp/c.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_state_dir_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .args(["--api-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 700"), "{err}");
}

#[test]
fn a_loose_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = state.join("master.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .args(["--api-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn an_unusable_model_proxy_socket_location_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let sock = blocker.join("modelproxy.sock");
    let out = Command::new(BIN)
        .arg("--dev")
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--model-proxy-socket")
        .arg(&sock)
        .args(["--api-addr", "127.0.0.1:0"])
        .env_remove("IRONCLAW_API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("model proxy"), "{err}");
    assert!(err.contains("not-a-dir"), "{err}");
    assert!(err.contains("--model-proxy-socket"), "{err}");
}

#[test]
fn a_malformed_provider_setting_is_refused_without_echoing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--dev")
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--model-proxy-socket")
        .arg(dir.path().join("mp.sock"))
        .args(["--api-addr", "127.0.0.1:0"])
        .env_remove("IRONCLAW_API_TOKEN")
        .env("OPENAI_API_KEY", "sk-startup-test-0123456789")
        .env("OPENAI_BASE_URL", "ftp://nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("model proxy configuration"), "{err}");
    assert!(!err.contains("sk-startup-test"), "{err}");
    assert!(!dir.path().join("mp.sock").exists());
}
