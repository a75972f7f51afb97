//! The sandbox binary's startup checks, against real encrypted queue files.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use ironclaw_contract::db::{open_writer, Cipher};
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::schema::QueueFile;

const BIN: &str = env!("CARGO_BIN_EXE_ironclaw-sandbox");

fn provision(dir: &Path, key: [u8; 32]) {
    let cipher = Cipher::Key(SessionKey::from_bytes(key));
    drop(open_writer(&dir.join("inbound.db"), &cipher, QueueFile::Inbound).unwrap());
    drop(open_writer(&dir.join("outbound.db"), &cipher, QueueFile::Outbound).unwrap());
}

fn run(dir: &Path, key_file: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("--check")
        .arg("--inbound")
        .arg(dir.join("inbound.db"))
        .arg("--outbound")
        .arg(dir.join("outbound.db"))
        .arg("--key-file")
        .arg(key_file)
        .arg("--model-socket")
        .arg(dir.join("model.sock"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn checks_pass_with_the_right_key_in_either_file_form() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path(), [0xab; 32]);
    let _proxy = std::os::unix::net::UnixListener::bind(dir.path().join("model.sock")).unwrap();
    let hex = dir.path().join("hex.key");
    std::fs::write(&hex, format!("{}\n", "ab".repeat(32))).unwrap();
    let raw = dir.path().join("raw.key");
    std::fs::write(&raw, [0xab; 32]).unwrap();
    for key in [&hex, &raw] {
        let (code, text) = run(dir.path(), key);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("ok"), "{text}");
    }
}

#[test]
fn startup_failures_are_clear_and_distinct() {
    let dir = tempfile::tempdir().unwrap();
    provision(dir.path(), [0xab; 32]);

    let (code, text) = run(dir.path(), &dir.path().join("missing.key"));
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("missing.key"), "{text}");

    let short = dir.path().join("short.key");
    std::fs::write(&short, [1u8; 16]).unwrap();
    let (code, text) = run(dir.path(), &short);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("expected 32 raw bytes or 64 hex digits"),
        "{text}"
    );

    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, [0xcd; 32]).unwrap();
    let (code, text) = run(dir.path(), &wrong);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("does not decrypt"), "{text}");
    assert!(
        !text.contains(&"cd".repeat(32)),
        "key material in output: {text}"
    );
}

#[test]
fn help_shows_the_contract_path_defaults() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for p in [
        ironclaw_contract::paths::sandbox::INBOUND_DB,
        ironclaw_contract::paths::sandbox::KEY_FILE,
    ] {
        assert!(help.contains(p), "{p} missing from --help");
    }
}
