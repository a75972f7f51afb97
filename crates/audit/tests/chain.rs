//! The audit chain end to end: appends, reopen, concurrency, every kind of tampering,
//! torn tails, permissions, forward compatibility.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ironclaw_audit::{
    verify, verify_against, AuditError, AuditEvent, AuditLog, ChainError, ChainErrorKind,
    GENESIS_HASH,
};
use ironclaw_contract::enums::{ChangeKind, Outcome, Verdict};
use ironclaw_contract::ids::{AgentGroupId, ChangeId, SessionId, UserId};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn change(n: usize) -> ChangeId {
    ChangeId::new(format!("chg_{n}")).unwrap()
}

fn user(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// One event of every kind, cycling on `n`.
fn event(n: usize) -> AuditEvent {
    let group = AgentGroupId::new("dev-agent").unwrap();
    let session = SessionId::new(format!("ses_{n}")).unwrap();
    match n % 16 {
        0 => AuditEvent::ChangeSubmitted {
            change_id: change(n),
            kind: ChangeKind::Persona,
            agent_group_id: group,
            requested_by: user("sandbox:ses_1"),
            request_hash: "ab".repeat(32),
        },
        1 => AuditEvent::VerdictRecorded {
            change_id: change(n),
            verdict: Verdict::RequireHuman,
            reason: "touches the persona".into(),
        },
        2 => AuditEvent::DecisionRecorded {
            change_id: change(n),
            outcome: Outcome::Approve,
            decided_by: user("operator:alice"),
            request_hash: "cd".repeat(32),
        },
        3 => AuditEvent::DecisionRefused {
            change_id: change(n),
            attempted_by: user("sandbox:ses_1"),
            reason: "sandbox principals cannot decide".into(),
        },
        4 => AuditEvent::ChangeApplied {
            change_id: change(n),
            request_hash: "ef".repeat(32),
        },
        5 => AuditEvent::ApplyFailed {
            change_id: change(n),
            error: "registry: disk full".into(),
        },
        6 => AuditEvent::TokenCreated {
            name: "ci".into(),
            principal: user("operator:ci"),
            created_by: user("operator:alice"),
        },
        7 => AuditEvent::TokenRevoked {
            name: "ci".into(),
            revoked_by: user("operator:alice"),
        },
        8 => AuditEvent::DaemonStarted {
            version: "0.1.0".into(),
        },
        9 => AuditEvent::TornTailRecovered { dropped_bytes: 17 },
        11 => AuditEvent::RegistryChanged {
            by: user("operator:alice"),
            what: "user slack:bob".into(),
        },
        10 => AuditEvent::SessionLaunched {
            session_id: session,
            agent_group_id: group,
            runtime: "runsc".into(),
            spec_hash: "01".repeat(32),
            image_digest: format!("sha256:{}", "23".repeat(32)),
            runtime_version: "runsc release-20260101.0".into(),
            mounts: vec!["/s/inbound -> /run/ironclaw/queue/inbound (ro)".into()],
        },
        12 => AuditEvent::SessionStopped {
            session_id: session,
            reason: "idle".into(),
        },
        13 => AuditEvent::ModelCall {
            session_id: session,
            agent_group_id: group,
            provider: "anthropic".into(),
            path: "/v1/messages".into(),
            status: 200,
            request_bytes: 512,
            response_bytes: 2048,
            input_tokens: 100,
            output_tokens: 40,
            duration_ms: 850,
        },
        15 => AuditEvent::ChangeRetried {
            change_id: change(n),
            retried_by: user("operator:alice"),
            request_hash: "ab".repeat(32),
        },
        _ => AuditEvent::SessionParked {
            session_id: session,
            reason: "token budget reached".into(),
        },
    }
}

/// A log of `n` records under a fresh temp dir.
fn log_with(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    for i in 0..n {
        let rec = log.append(event(i)).unwrap();
        assert_eq!(rec.seq, i as u64 + 1);
    }
    (dir, path)
}

/// The file's lines, each with its `\n`.
fn lines(path: &Path) -> Vec<Vec<u8>> {
    fs::read(path)
        .unwrap()
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    fs::write(path, lines.concat()).unwrap();
}

fn broken(path: &Path) -> ChainError {
    verify(path).expect_err("the chain should be broken")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn reopen_continues_the_chain() {
    let (_dir, path) = log_with(3);
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.last_seq(), 3);
    let third = log.tail(1).unwrap().remove(0);
    assert_eq!(third.seq, 3);
    assert_eq!(log.last_hash(), third.hash);

    let fourth = log.append(event(3)).unwrap();
    assert_eq!(fourth.seq, 4);
    assert_eq!(fourth.prev_hash, third.hash);
    drop(log);

    let log = AuditLog::open(&path).unwrap();
    let fifth = log.append(event(4)).unwrap();
    assert_eq!((fifth.seq, &fifth.prev_hash), (5, &fourth.hash));

    let all = log.tail(100).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].prev_hash, GENESIS_HASH);
    for pair in all.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let report = verify(&path).unwrap();
    assert_eq!(
        (report.records, report.last_seq, report.last_hash),
        (5, 5, fifth.hash)
    );
}

#[test]
fn every_event_kind_round_trips_through_the_file() {
    let (_dir, path) = log_with(12);
    let log = AuditLog::open(&path).unwrap();
    for (i, rec) in log.tail(12).unwrap().iter().enumerate() {
        assert_eq!(rec.event().unwrap(), event(i));
    }
    // The wire tag is the snake_case variant name.
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(r#""type":"change_submitted""#));
    assert!(text.contains(r#""type":"torn_tail_recovered""#));
    assert!(text.contains(r#""kind":"persona""#));
}

#[test]
fn concurrent_appends_form_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = Arc::new(AuditLog::open(&path).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| log.append(event(t * 25 + i)).unwrap().seq)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    assert_eq!(log.last_seq(), 200);
    assert_eq!(verify(&path).unwrap().records, 200);
}

#[test]
fn an_intact_log_verifies_and_an_empty_one_is_an_empty_chain() {
    let (_dir, path) = log_with(7);
    let report = verify(&path).unwrap();
    assert_eq!((report.records, report.last_seq), (7, 7));

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("audit.jsonl");
    drop(AuditLog::open(&empty).unwrap());
    let report = verify(&empty).unwrap();
    assert_eq!(
        (report.records, report.last_seq, report.last_hash.as_str()),
        (0, 0, GENESIS_HASH)
    );
}

#[test]
fn flipping_any_byte_of_any_record_is_caught_at_that_record() {
    const N: usize = 6;
    let (_dir, path) = log_with(N);
    let original = lines(&path);
    for (idx, line) in original.iter().enumerate() {
        let seq = idx as u64 + 1;
        // Every byte of the line, its newline included, with two different flips.
        for pos in 0..line.len() {
            for mask in [0x01u8, 0x20] {
                let mut tampered = original.clone();
                tampered[idx][pos] ^= mask;
                write_lines(&path, &tampered);
                let err = broken(&path);
                assert_eq!(
                    (err.seq, err.line),
                    (Some(seq), idx + 1),
                    "flip {mask:#x} at byte {pos} of line {}: {err}",
                    idx + 1
                );
            }
        }
    }
    write_lines(&path, &original);
    assert_eq!(verify(&path).unwrap().records, N as u64);
}

#[test]
fn a_value_edit_is_a_hash_mismatch_and_says_so() {
    let (_dir, path) = log_with(5);
    let text = fs::read_to_string(&path).unwrap();
    // Record 2 is the verdict; make the verifier say something else.
    let edited = text.replacen("touches the persona", "touches the weather", 1);
    assert_ne!(text, edited);
    fs::write(&path, edited).unwrap();
    let err = broken(&path);
    assert_eq!(err.reason, ChainErrorKind::HashMismatch);
    assert_eq!(
        err.to_string(),
        "audit chain broken at seq 2 (line 2): hash mismatch — the record was edited"
    );
}

#[test]
fn a_non_canonical_line_is_caught_even_when_its_value_is_unchanged() {
    let (_dir, path) = log_with(3);
    let text = fs::read_to_string(&path).unwrap();
    // Same JSON value, different bytes: a space in the first record's event.
    let edited = text.replacen(r#""type":"#, r#""type": "#, 1);
    fs::write(&path, edited).unwrap();
    let err = broken(&path);
    assert_eq!(
        (err.seq, err.line, err.reason),
        (Some(1), 1, ChainErrorKind::NonCanonical)
    );
}

#[test]
fn reordering_deleting_and_duplicating_lines_name_the_right_seq() {
    let (_dir, path) = log_with(6);
    let original = lines(&path);

    let mut swapped = original.clone();
    swapped.swap(2, 3);
    write_lines(&path, &swapped);
    let err = broken(&path);
    assert_eq!(
        (err.seq, err.line, err.reason),
        (
            Some(3),
            3,
            ChainErrorKind::SeqMismatch {
                expected: 3,
                found: 4
            }
        )
    );

    let mut deleted = original.clone();
    deleted.remove(2);
    write_lines(&path, &deleted);
    let err = broken(&path);
    assert_eq!(
        (err.seq, err.line, err.reason.clone()),
        (
            Some(3),
            3,
            ChainErrorKind::SeqMismatch {
                expected: 3,
                found: 4
            }
        )
    );
    assert!(err.to_string().contains("deleted"), "{err}");

    let mut duplicated = original.clone();
    duplicated.insert(3, original[2].clone());
    write_lines(&path, &duplicated);
    let err = broken(&path);
    assert_eq!(
        (err.seq, err.line, err.reason.clone()),
        (
            Some(4),
            4,
            ChainErrorKind::SeqMismatch {
                expected: 4,
                found: 3
            }
        )
    );
    assert!(err.to_string().contains("duplicated"), "{err}");

    // Deleting the first line: the chain must start at seq 1.
    write_lines(&path, &original[1..]);
    assert_eq!(broken(&path).seq, Some(1));
}

#[test]
fn a_record_from_another_chain_is_a_prev_hash_mismatch() {
    let (_dir_a, a) = log_with(5);
    let (_dir_b, b) = log_with(5);
    // Same events, but different times, so different hashes.
    let mut spliced = lines(&a);
    spliced[3] = lines(&b)[3].clone();
    write_lines(&a, &spliced);
    let err = broken(&a);
    assert_eq!(
        (err.seq, err.line, err.reason),
        (Some(4), 4, ChainErrorKind::PrevHashMismatch)
    );
}

#[test]
fn a_torn_tail_is_reported_by_verify_and_recovered_by_open() {
    for junk in [&b"{\"seq\":4,\"ti"[..], &[0u8; 512][..], &b"{"[..]] {
        let (_dir, path) = log_with(3);
        let intact = fs::read(&path).unwrap();
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(junk).unwrap();
        drop(f);

        let err = broken(&path);
        assert_eq!(
            (err.seq, err.line, err.reason),
            (
                Some(4),
                4,
                ChainErrorKind::TornTail {
                    bytes: junk.len() as u64
                }
            )
        );

        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.last_seq(), 4);
        let rec = log.tail(1).unwrap().remove(0);
        assert_eq!(
            rec.event().unwrap(),
            AuditEvent::TornTailRecovered {
                dropped_bytes: junk.len() as u64
            }
        );
        // The intact prefix is untouched; the junk is gone.
        assert!(fs::read(&path).unwrap().starts_with(&intact));
        assert_eq!(verify(&path).unwrap().records, 4);
        assert_eq!(log.append(event(0)).unwrap().seq, 5);
        assert_eq!(verify(&path).unwrap().records, 5);
    }
}

#[test]
fn a_torn_first_line_is_recovered_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    drop(AuditLog::open(&path).unwrap());
    fs::write(&path, b"{\"seq\":1,").unwrap();
    let log = AuditLog::open(&path).unwrap();
    let recs = log.tail(10).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].prev_hash, GENESIS_HASH);
    assert_eq!(verify(&path).unwrap().records, 1);
}

#[test]
fn a_complete_line_is_never_treated_as_a_torn_tail() {
    // A newline-terminated bad last line is a broken chain, not a crash artifact.
    let (_dir, path) = log_with(3);
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":4,\"ti\n").unwrap();
    drop(f);
    let before = fs::read(&path).unwrap();
    match AuditLog::open(&path) {
        Err(AuditError::Chain(e)) => {
            assert_eq!((e.seq, e.line), (Some(4), 4));
            assert!(matches!(e.reason, ChainErrorKind::Unparseable { .. }));
        }
        other => panic!("expected a chain error, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before, "open must not modify it");

    // A complete record that lost only its newline was not left by our writes either:
    // open refuses rather than silently dropping a whole record.
    let (_dir, path) = log_with(3);
    let mut bytes = fs::read(&path).unwrap();
    bytes.pop();
    fs::write(&path, &bytes).unwrap();
    let err = broken(&path);
    assert_eq!(
        (err.seq, err.line),
        (Some(3), 3),
        "verify reports the unterminated record"
    );
    assert!(matches!(err.reason, ChainErrorKind::TornTail { .. }));
    assert!(matches!(AuditLog::open(&path), Err(AuditError::Chain(_))));
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn open_refuses_a_tampered_log_and_leaves_it_alone() {
    let (_dir, path) = log_with(4);
    let text = fs::read_to_string(&path).unwrap();
    let edited = text.replacen("operator:alice", "operator:mallo", 1);
    assert_ne!(text, edited);
    fs::write(&path, &edited).unwrap();
    let err = AuditLog::open(&path).unwrap_err();
    let msg = err.to_string();
    match err {
        AuditError::Chain(e) => assert_eq!(e.seq, Some(3)),
        other => panic!("expected a chain error, got {other:?}"),
    }
    assert!(msg.contains("refusing to append"), "{msg}");
    assert_eq!(fs::read_to_string(&path).unwrap(), edited);
}

#[test]
fn the_file_is_0600_and_a_wider_mode_is_refused() {
    let (_dir, path) = log_with(1);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = AuditLog::open(&path).unwrap_err();
    assert!(
        matches!(err, AuditError::Permissions { mode: 0o640, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("chmod 600 {}", path.display())),
        "{msg}"
    );

    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(AuditLog::open(&path).unwrap().last_seq(), 1);
}

#[test]
fn a_symlink_is_refused() {
    let (dir, path) = log_with(1);
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert!(matches!(
        AuditLog::open(&link),
        Err(AuditError::NotAFile { .. })
    ));
}

#[test]
fn tail_returns_the_last_records_in_order() {
    let (_dir, path) = log_with(10);
    let log = AuditLog::open(&path).unwrap();
    let seqs = |n| {
        log.tail(n)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(3), vec![8, 9, 10]);
    assert_eq!(seqs(1), vec![10]);
    assert_eq!(seqs(100), (1..=10).collect::<Vec<_>>());
    assert!(seqs(0).is_empty());
}

#[test]
fn a_second_writer_is_detected_and_appends_stop() {
    let (_dir, path) = log_with(2);
    let log = AuditLog::open(&path).unwrap();
    let other = AuditLog::open(&path).unwrap();
    other.append(event(5)).unwrap();
    assert!(matches!(
        log.append(event(6)),
        Err(AuditError::ChangedUnderneath { .. })
    ));
    assert!(matches!(
        log.append(event(6)),
        Err(AuditError::Broken { .. })
    ));
    drop(other);
    // The file itself is still one valid chain.
    assert_eq!(verify(&path).unwrap().records, 3);
}

#[test]
fn an_unknown_event_type_verifies_but_does_not_type() {
    let (_dir, path) = log_with(2);
    let log = AuditLog::open(&path).unwrap();
    let prev = log.last_hash();
    drop(log);

    // A newer daemon's record, built by hand from the documented format.
    #[derive(serde::Serialize)]
    struct Hashed<'a> {
        seq: u64,
        time: &'a str,
        prev_hash: &'a str,
        event: &'a serde_json::Value,
    }
    let time = "2031-01-02T03:04:05.000000006Z";
    let event = serde_json::json!({"type": "quantum_leap", "how_far": 3, "who": "operator:sam"});
    let hash = hex(&Sha256::digest(
        serde_json::to_vec(&Hashed {
            seq: 3,
            time,
            prev_hash: &prev,
            event: &event,
        })
        .unwrap(),
    ));
    let envelope = |extra: &str| {
        format!(
            r#"{{"seq":3,"time":"{time}","prev_hash":"{prev}","event":{},"hash":"{hash}"{extra}}}"#,
            serde_json::to_string(&event).unwrap()
        )
    };
    let intact = fs::read(&path).unwrap();

    // An extra envelope field is outside the hash, so it is refused.
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    writeln!(f, "{}", envelope(r#","note":"x""#)).unwrap();
    drop(f);
    let err = broken(&path);
    assert_eq!(err.seq, Some(3));
    assert!(matches!(err.reason, ChainErrorKind::Unparseable { .. }));

    fs::write(&path, &intact).unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    writeln!(f, "{}", envelope("")).unwrap();
    drop(f);

    let report = verify(&path).unwrap();
    assert_eq!(
        (report.records, report.last_hash.as_str()),
        (3, hash.as_str())
    );

    // This version still opens and extends the log, and types what it knows.
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.append(event_known()).unwrap().prev_hash, hash);
    let recs = log.tail(2).unwrap();
    let err = recs[0].event().unwrap_err();
    assert_eq!(err.event_type, "quantum_leap");
    assert_eq!(err.seq, 3);
    assert_eq!(recs[1].event().unwrap(), event_known());
}

fn event_known() -> AuditEvent {
    AuditEvent::DaemonStarted {
        version: "0.1.0".into(),
    }
}

#[test]
fn new_fields_in_a_known_event_are_ignored_when_typing() {
    let rec: ironclaw_audit::AuditRecord = serde_json::from_str(&format!(
        r#"{{"seq":1,"time":"2026-01-01T00:00:00.000000000Z","prev_hash":"{GENESIS_HASH}","event":{{"type":"daemon_started","version":"9","build":"x"}},"hash":"{GENESIS_HASH}"}}"#
    ))
    .unwrap();
    assert_eq!(
        rec.event().unwrap(),
        AuditEvent::DaemonStarted {
            version: "9".into()
        }
    );
}

#[test]
fn verify_against_an_anchor_detects_truncation_and_rewrites() {
    let (_dir, path) = log_with(6);
    let log = AuditLog::open(&path).unwrap();
    let (seq, hash) = (log.last_seq(), log.last_hash());
    drop(log);
    assert_eq!(verify_against(&path, seq, &hash).unwrap().records, 6);
    assert_eq!(verify_against(&path, 0, GENESIS_HASH).unwrap().records, 6);

    // Records after the anchor are fine.
    let anchor4 = AuditLog::open(&path).unwrap().tail(3).unwrap()[0].clone();
    assert_eq!(anchor4.seq, 4);
    assert!(verify_against(&path, 4, &anchor4.hash).is_ok());

    let err = verify_against(&path, 4, GENESIS_HASH).unwrap_err();
    assert_eq!(
        (err.seq, err.reason),
        (Some(4), ChainErrorKind::AnchorMismatch)
    );

    // Dropping the last two lines leaves a valid chain that only the anchor exposes.
    let all = lines(&path);
    write_lines(&path, &all[..4]);
    assert_eq!(verify(&path).unwrap().records, 4);
    let err = verify_against(&path, seq, &hash).unwrap_err();
    assert_eq!(
        (err.seq, err.line, err.reason),
        (
            Some(5),
            5,
            ChainErrorKind::Truncated {
                anchor_seq: 6,
                last_seq: 4
            }
        )
    );
}

#[test]
fn a_missing_file_is_unreadable_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let err = verify(&dir.path().join("nope.jsonl")).unwrap_err();
    assert_eq!((err.seq, err.line), (None, 0));
    assert!(matches!(err.reason, ChainErrorKind::Unreadable { .. }));
    assert!(err.to_string().starts_with("cannot read the audit log"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn verify_and_open_never_panic_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..400)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        fs::write(&path, &bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let _ = verify(&path);
        let _ = AuditLog::open(&path);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_chain_never_panic_and_never_verify_unnoticed(
        junk in proptest::collection::vec(any::<u8>(), 1..200)
    ) {
        let (_dir, path) = log_with(3);
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&junk).unwrap();
        drop(f);
        // Junk is never a valid 4th record (it would need a right hash).
        let err = verify(&path).unwrap_err();
        prop_assert_eq!(err.seq, Some(4));
        let _ = AuditLog::open(&path);
    }
}
