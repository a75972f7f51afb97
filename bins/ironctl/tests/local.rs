//! `doctor`, `backup` and `restore` without a daemon: what they say and how they exit
//! when there is nothing (or nothing valid) to work on. The live versions are in the
//! end-to-end tests (tests/doctor.rs, tests/backup.rs).

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ironctl");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("IRONCLAW_ADDR", "http://127.0.0.1:9")
        .env_remove("IRONCLAW_API_TOKEN")
        .env_remove("IRONCLAW_STATE_DIR")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn doctor_without_a_daemon_fails_with_the_fix_and_checks_the_files_anyway() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(&["--json", "doctor", "--state-dir", state.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = |name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v}"))
            .clone()
    };
    let daemon = check("daemon");
    assert_eq!(daemon["level"], "fail");
    assert!(daemon["detail"].as_str().unwrap().contains("127.0.0.1:9"));
    assert!(daemon["fix"].as_str().unwrap().contains("IRONCLAW_ADDR"));
    // A state dir others can list is a FAIL with its fix, daemon or not.
    let dir = check("state dir");
    assert_eq!(dir["level"], "fail");
    assert_eq!(
        dir["fix"].as_str().unwrap(),
        format!("chmod 700 {}", state.display())
    );
    // Loopback over plain HTTP is fine, but a loopback URL alone says nothing about
    // where else the daemon listens: without its bind address, a warning.
    assert_eq!(check("tls or tailnet")["level"], "pass");
    if std::fs::metadata("/etc/ironclaw/ironclaw.env").is_err()
        && std::env::var_os("IRONCLAW_API_ADDR").is_none()
    {
        assert_eq!(check("api address")["level"], "warn");
    }
    let bound = Command::new(BIN)
        .args(["--json", "doctor", "--state-dir", state.to_str().unwrap()])
        .env("IRONCLAW_ADDR", "http://127.0.0.1:9")
        .env("IRONCLAW_API_ADDR", "127.0.0.1:9")
        .env_remove("IRONCLAW_API_TOKEN")
        .output()
        .unwrap();
    let bound: serde_json::Value = serde_json::from_slice(&bound.stdout).unwrap();
    let api = bound["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "api address")
        .unwrap();
    assert_eq!(api["level"], "pass", "{api}");
    // What needs the daemon is not passed on faith.
    assert_eq!(check("sandbox image")["level"], "fail");
    assert_eq!(check("clock")["level"], "fail");
    assert!(v["summary"]["fail"].as_u64().unwrap() >= 4);
}

#[test]
fn doctor_text_names_each_check_and_a_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&["doctor", "--state-dir", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAIL  daemon"), "{stdout}");
    assert!(stdout.contains("fix: start it"), "{stdout}");
    assert!(stdout.contains("checks:"), "{stdout}");
    assert!(text(&out.stderr).contains("failed"));
}

#[test]
fn backup_refuses_what_is_not_a_state_dir_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("b.tar");
    let missing = run(&[
        "backup",
        "--state-dir",
        tmp.path().join("nope").to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing.stderr));
    // An empty directory has no audit log and no master key.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run(&[
        "backup",
        "--state-dir",
        empty.to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("audit.jsonl"));
    assert!(!out_file.exists());
    // An archive inside the directory it copies is refused.
    let inside = empty.join("b.tar");
    let out = run(&[
        "backup",
        "--state-dir",
        empty.to_str().unwrap(),
        "--out",
        inside.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("inside the state directory"));
    // No staging directory is left behind either.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("staging"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn restore_refuses_a_missing_or_foreign_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let out = run(&[
        "restore",
        "--from",
        tmp.path().join("none.tar").to_str().unwrap(),
        "--state-dir",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    std::fs::write(tmp.path().join("x"), b"x").unwrap();
    let foreign = tmp.path().join("foreign.tar");
    assert!(Command::new("tar")
        .arg("cf")
        .arg(&foreign)
        .arg("-C")
        .arg(tmp.path())
        .arg("x")
        .status()
        .unwrap()
        .success());
    let out = run(&[
        "restore",
        "--from",
        foreign.to_str().unwrap(),
        "--state-dir",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not an ironctl backup"));
    assert!(!target.exists(), "a refused restore created the target");
}
