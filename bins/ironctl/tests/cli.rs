//! The CLI without a daemon: help, usage errors, offline audit verification.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ironctl");

#[test]
fn help_lists_every_command_group_and_exit_codes() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for word in [
        "change",
        "audit",
        "registry",
        "token",
        "session",
        "image",
        "status",
        "whoami",
        "doctor",
        "backup",
        "restore",
        "Exit codes",
    ] {
        assert!(help.contains(word), "{word} missing from --help:\n{help}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(BIN)
        .args(["change", "submit", "--kind", "persona"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args([
            "--addr",
            "http://127.0.0.1:9",
            "change",
            "submit",
            "--kind",
            "persona",
            "--group",
            "g",
            "--payload",
            "{not json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn offline_verify_of_a_missing_log_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["audit", "verify", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit.jsonl"));
}
