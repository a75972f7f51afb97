//! The encrypted files themselves: round trip, key handling, what is on disk, the
//! database-enforced rules, concurrency of writers and refusal of bad files.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Barrier};

use ironclaw_contract::db::{open_writer, Cipher, DbError};
use ironclaw_contract::enums::MessageKind;
use ironclaw_contract::ids::{MessageId, SessionId};
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::queue::{InboundReader, InboundWriter, OutboundReader, OutboundWriter};
use ironclaw_contract::rows::{NewMessageIn, NewMessageOut, Route};
use ironclaw_contract::sandbox_queue::{EncryptedInboundReader, EncryptedOutboundWriter};
use ironclaw_contract::schema::QueueFile;
use ironclaw_contract::time::Timestamp;
use ironclaw_queue::{
    EncryptedInboundWriter, EncryptedOutboundReader, ProvisionError, QueueFactory,
};
use ironclaw_testkit::message_in;

fn key(b: u8) -> Cipher {
    Cipher::Key(SessionKey::from_bytes([b; 32]))
}

fn msg_in(id: &str, content: &str) -> NewMessageIn {
    message_in(id, content).build()
}

fn msg_out(id: &str, content: &str) -> NewMessageOut {
    NewMessageOut {
        id: MessageId::new(id).unwrap(),
        in_reply_to: None,
        timestamp: Timestamp::now(),
        deliver_after: None,
        kind: MessageKind::Chat,
        route: Route::default(),
        content: content.to_owned(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn session(dir: &Path, cipher: &Cipher) -> (QueueFactory, SessionId) {
    let f = QueueFactory::new(HostLayout::new(dir));
    let id = SessionId::new("ses_test").unwrap();
    f.provision(&id, cipher).unwrap();
    (f, id)
}

#[test]
fn inbound_round_trip_read_only_wrong_key_and_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (f, id) = session(dir.path(), &key(0x11));
    let path = f.layout().inbound_db(&id);
    let mut w = f.inbound_writer(&id, &key(0x11)).unwrap();
    w.write_message(&msg_in("m1", "secret-hello")).unwrap();

    let mut r = EncryptedInboundReader::open(&path, key(0x11)).unwrap();
    let got = r.pending_messages(Timestamp::now()).unwrap().rows;
    assert_eq!(got[0].message.content, "secret-hello");

    // Wrong key: refused at open, with the typed error.
    match EncryptedInboundReader::open(&path, key(0x22)) {
        Err(DbError::WrongKey { .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened with the wrong key"),
    }
    assert!(matches!(
        EncryptedInboundWriter::open(&path, &key(0x22)),
        Err(DbError::WrongKey { .. })
    ));

    // No plaintext anywhere in the file.
    let raw = std::fs::read(&path).unwrap();
    assert!(!contains(&raw, b"secret-hello"));
    assert!(!contains(&raw, b"SQLite format 3"));
    assert!(
        !contains(&raw, b"messages_in"),
        "schema text is encrypted too"
    );
}

#[test]
fn a_write_through_the_read_connection_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (f, id) = session(dir.path(), &key(0x11));
    let path = f.layout().inbound_db(&id);
    let err = ironclaw_contract::db::read_snapshot(&path, &key(0x11), QueueFile::Inbound, Default::default(), |conn| {
        conn.execute(
            "INSERT INTO messages_in (id, seq, kind, timestamp, status, \"trigger\", content, provenance) \
             VALUES ('evil', 2, 'chat', 'x', 'queued', 1, 'x', 'host')",
            [],
        )
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("read") || err.to_string().contains("query"),
        "{err}"
    );
    assert!(f
        .inbound_reader(&id, key(0x11))
        .unwrap()
        .pending_messages(Timestamp::now())
        .unwrap()
        .rows
        .is_empty());
}

#[test]
fn journal_holds_no_plaintext_mid_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (f, id) = session(dir.path(), &key(0x33));
    let path = f.layout().outbound_db(&id);
    let mut w = EncryptedOutboundWriter::open(&path, &key(0x33)).unwrap();
    w.write_message(&msg_out("o1", "secret-journal-text"))
        .unwrap();
    // A second transaction that rewrites the page holding the secret puts that page's
    // original image in the rollback journal. Capture the journal before the commit.
    let conn = open_writer(&path, &key(0x33), QueueFile::Outbound).unwrap();
    conn.execute_batch(
        "BEGIN IMMEDIATE; UPDATE messages_out SET content = 'other' WHERE id = 'o1';",
    )
    .unwrap();
    let journal = ironclaw_contract::db::journal_path(&path);
    let j = std::fs::read(&journal).expect("journal exists during the write transaction");
    assert!(!j.is_empty());
    assert!(
        !contains(&j, b"secret-journal-text"),
        "journal leaks plaintext"
    );
    conn.execute_batch("ROLLBACK").unwrap();
    let db = std::fs::read(&path).unwrap();
    assert!(!contains(&db, b"secret-journal-text"));
}

#[test]
fn outbound_round_trip_and_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let (f, id) = session(dir.path(), &key(0x33));
    let mut w = EncryptedOutboundWriter::open(&f.layout().outbound_db(&id), &key(0x33)).unwrap();
    w.write_message(&msg_out("o1", "reply")).unwrap();
    let mut r = f.outbound_reader(&id, key(0x33)).unwrap();
    assert_eq!(
        r.due_messages(Timestamp::now(), 0).unwrap().rows[0]
            .message
            .content,
        "reply"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let l = f.layout();
    for d in [l.session_dir(&id), l.inbound_dir(&id), l.outbound_dir(&id)] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for p in [l.inbound_db(&id), l.outbound_db(&id)] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

#[test]
fn provisioning_a_session_keeps_the_search_bit_of_the_shared_parent() {
    let dir = tempfile::tempdir().unwrap();
    let (f, _first) = session(dir.path(), &key(7));
    let sessions = f.layout().sessions_dir();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sessions), 0o700, "created private");
    // A sandbox runtime opened it for its gofer's traversal; a new session provisioned
    // meanwhile must not close it again, but loses anything looser than search.
    std::fs::set_permissions(&sessions, std::fs::Permissions::from_mode(0o755)).unwrap();
    let second = SessionId::new("second").unwrap();
    f.provision(&second, &key(8)).unwrap();
    assert_eq!(mode(&sessions), 0o711);
    assert_eq!(mode(&f.layout().session_dir(&second)), 0o700);
}

#[test]
fn provisioning_is_idempotent_and_checks_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (f, id) = session(dir.path(), &key(1));
    f.inbound_writer(&id, &key(1))
        .unwrap()
        .write_message(&msg_in("keep", "me"))
        .unwrap();
    EncryptedOutboundWriter::open(&f.layout().outbound_db(&id), &key(1))
        .unwrap()
        .write_message(&msg_out("o", "me too"))
        .unwrap();
    f.provision(&id, &key(1)).unwrap();
    assert_eq!(
        f.inbound_reader(&id, key(1))
            .unwrap()
            .pending_messages(Timestamp::now())
            .unwrap()
            .rows
            .len(),
        1
    );
    assert_eq!(
        f.outbound_reader(&id, key(1))
            .unwrap()
            .due_messages(Timestamp::now(), 0)
            .unwrap()
            .rows
            .len(),
        1
    );
    assert!(matches!(
        f.provision(&id, &key(2)),
        Err(ProvisionError::Db(DbError::WrongKey { .. }))
    ));
    // Another session with another key is independent.
    f.provision(&SessionId::new("ses_other").unwrap(), &key(2))
        .unwrap();
    f.remove(&id).unwrap();
    assert!(!f.layout().session_dir(&id).exists());
    assert!(matches!(
        f.inbound_writer(&id, &key(1)),
        Err(DbError::NotProvisioned { .. })
    ));
    assert!(matches!(
        f.inbound_reader(&id, key(1)),
        Err(DbError::NotProvisioned { .. })
    ));
}

#[test]
fn the_database_itself_refuses_wrong_parity_and_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let (f, id) = session(dir.path(), &key(5));
    let conn = open_writer(&f.layout().inbound_db(&id), &key(5), QueueFile::Inbound).unwrap();
    let insert = |seq: i64, kind: &str, status: &str| {
        conn.execute(
            "INSERT INTO messages_in (id, seq, kind, timestamp, status, \"trigger\", content, provenance) \
             VALUES (?1, ?2, ?3, 'x', ?4, 1, 'c', 'host')",
            rusqlite::params![format!("m{seq}{kind}{status}"), seq, kind, status],
        )
    };
    assert!(
        insert(3, "chat", "queued").is_err(),
        "odd inbound seq accepted"
    );
    assert!(insert(0, "chat", "queued").is_err(), "zero seq accepted");
    assert!(
        insert(2, "bogus", "queued").is_err(),
        "unknown kind accepted"
    );
    assert!(
        insert(2, "chat", "processing").is_err(),
        "ack status in messages_in accepted"
    );
    assert!(
        insert(2, "chat", "scheduled").is_err(),
        "scheduled without process_after accepted"
    );
    insert(2, "chat", "queued").unwrap();
    assert!(
        insert(2, "chat", "queued").is_err(),
        "duplicate seq accepted"
    );

    let out = open_writer(&f.layout().outbound_db(&id), &key(5), QueueFile::Outbound).unwrap();
    let insert_out = |seq: i64| {
        out.execute(
            "INSERT INTO messages_out (id, seq, timestamp, kind, content) VALUES (?1, ?2, 'x', 'chat', 'c')",
            rusqlite::params![format!("o{seq}"), seq],
        )
    };
    assert!(insert_out(2).is_err(), "even outbound seq accepted");
    insert_out(1).unwrap();
    assert!(out.execute("INSERT INTO messages_out (id, seq, timestamp, kind, content) VALUES ('n', 5, 'x', 'chat', NULL)", []).is_err());
}

#[test]
fn concurrent_inbound_writers_never_collide() {
    // Router, sweep and delivery each hold their own connection: 8 threads × 25 writes.
    let dir = tempfile::tempdir().unwrap();
    let (f, id) = session(dir.path(), &key(9));
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (f, id, barrier) = (f.clone(), id.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut w = f.inbound_writer(&id, &key(9)).unwrap();
                barrier.wait();
                (0..25)
                    .map(|i| w.write_message(&msg_in(&format!("t{t}-{i}"), "x")).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).map(|i| i * 2).collect::<Vec<_>>());
    let rows = f
        .inbound_reader(&id, key(9))
        .unwrap()
        .pending_messages(Timestamp::now())
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 200);
}

#[test]
fn concurrent_outbound_writers_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let (f, id) = session(dir.path(), &key(0));
    let path = f.layout().outbound_db(&id);
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut w = EncryptedOutboundWriter::open(&path, &key(0)).unwrap();
                barrier.wait();
                (0..25)
                    .map(|i| {
                        w.write_message(&msg_out(&format!("t{t}-{i}"), "x"))
                            .unwrap()
                            .seq()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..100).map(|i| i * 2 + 1).collect::<Vec<_>>());
}

#[test]
fn bad_files_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);

    // Garbage that is not a whole number of pages.
    std::fs::write(p("garbage.db"), b"this is not a database at all").unwrap();
    let e = EncryptedInboundReader::open(p("garbage.db"), key(1))
        .err()
        .unwrap();
    assert!(matches!(e, DbError::NotOurFile { .. }), "{e}");
    let e = EncryptedInboundWriter::open(&p("garbage.db"), &key(1))
        .err()
        .unwrap();
    assert!(matches!(e, DbError::NotOurFile { .. }), "{e}");

    // A real queue file cut short.
    let (f, id) = session(dir.path(), &key(1));
    f.inbound_writer(&id, &key(1))
        .unwrap()
        .write_message(&msg_in("m", "x"))
        .unwrap();
    let full = std::fs::read(f.layout().inbound_db(&id)).unwrap();
    std::fs::write(p("truncated.db"), &full[..full.len() - 100]).unwrap();
    let e = EncryptedInboundReader::open(p("truncated.db"), key(1))
        .err()
        .unwrap();
    assert!(matches!(e, DbError::NotOurFile { .. }), "{e}");

    // Whole pages of random-looking bytes: indistinguishable from a wrong key.
    let noise: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(p("noise.db"), &noise).unwrap();
    let e = EncryptedInboundReader::open(p("noise.db"), key(1))
        .err()
        .unwrap();
    assert!(matches!(e, DbError::WrongKey { .. }), "{e}");

    // An unencrypted SQLite database.
    rusqlite::Connection::open(p("plain.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    let e = EncryptedInboundReader::open(p("plain.db"), key(1))
        .err()
        .unwrap();
    assert!(
        matches!(e, DbError::NotOurFile { ref reason, .. } if reason.contains("unencrypted")),
        "{e}"
    );

    // The outbound file opened as inbound.
    let e = EncryptedInboundReader::open(f.layout().outbound_db(&id), key(1))
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            DbError::WrongFile {
                expected: "inbound",
                found: "outbound",
                ..
            }
        ),
        "{e}"
    );
    let e = EncryptedOutboundReader::open(f.layout().inbound_db(&id), key(1))
        .err()
        .unwrap();
    assert!(matches!(e, DbError::WrongFile { .. }), "{e}");

    // A newer schema version, and an unknown older one.
    let conn = open_writer(&f.layout().inbound_db(&id), &key(1), QueueFile::Inbound).unwrap();
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(conn);
    let e = EncryptedInboundReader::open(f.layout().inbound_db(&id), key(1))
        .err()
        .unwrap();
    assert!(matches!(e, DbError::SchemaTooNew { found: 99, .. }), "{e}");
    let e = EncryptedInboundWriter::open(&f.layout().inbound_db(&id), &key(1))
        .err()
        .unwrap();
    assert!(matches!(e, DbError::SchemaTooNew { found: 99, .. }), "{e}");

    // A missing file.
    let e = EncryptedInboundReader::open(p("missing.db"), key(1))
        .err()
        .unwrap();
    assert!(matches!(e, DbError::NotProvisioned { .. }), "{e}");

    // A key file of the wrong length is its own typed error (before any database).
    std::fs::write(p("short.key"), [0u8; 16]).unwrap();
    assert!(SessionKey::read_file(&p("short.key")).is_err());
}

#[test]
fn rows_a_sandbox_forged_are_rejected_one_by_one() {
    // The sandbox owns outbound.db and holds its key: it can write anything, even
    // replace the schema. The host must refuse bad rows individually, never crash.
    let dir = tempfile::tempdir().unwrap();
    let (f, id) = session(dir.path(), &key(3));
    let path = f.layout().outbound_db(&id);
    let mut w = EncryptedOutboundWriter::open(&path, &key(3)).unwrap();
    w.write_message(&msg_out("good-1", "fine")).unwrap();
    let conn = open_writer(&path, &key(3), QueueFile::Outbound).unwrap();
    // Drop the CHECK constraints the way a hostile sandbox could.
    conn.execute_batch(
        "ALTER TABLE messages_out RENAME TO old; \
         CREATE TABLE messages_out (id, seq, in_reply_to, timestamp, deliver_after, recurrence, kind, platform_id, channel_type, thread_id, content); \
         INSERT INTO messages_out SELECT * FROM old; DROP TABLE old;",
    )
    .unwrap();
    let bad = [
        "('../etc', 3, NULL, '2020-01-01T00:00:00Z', NULL, NULL, 'chat', NULL, NULL, NULL, 'x')",
        "('even', 4, NULL, '2020-01-01T00:00:00Z', NULL, NULL, 'chat', NULL, NULL, NULL, 'x')",
        "('kind', 5, NULL, '2020-01-01T00:00:00Z', NULL, NULL, 'exec', NULL, NULL, NULL, 'x')",
        "('time', 7, NULL, 'yesterday', NULL, NULL, 'chat', NULL, NULL, NULL, 'x')",
        "('blob', 9, NULL, '2020-01-01T00:00:00Z', NULL, NULL, 'chat', NULL, NULL, NULL, x'00ff')",
        "('null', 11, NULL, '2020-01-01T00:00:00Z', NULL, NULL, 'chat', NULL, NULL, NULL, NULL)",
        "('huge', 13, NULL, '2020-01-01T00:00:00Z', NULL, NULL, 'chat', NULL, NULL, NULL, zeroblob(2000000))",
        "('good-2', 15, NULL, '2020-01-01T00:00:00Z', NULL, NULL, 'chat', NULL, NULL, NULL, 'also fine')",
    ];
    for row in bad {
        conn.execute(&format!("INSERT INTO messages_out VALUES {row}"), [])
            .unwrap();
    }
    drop(conn);
    let batch = EncryptedOutboundReader::open(&path, key(3))
        .unwrap()
        .due_messages(Timestamp::now(), 0)
        .unwrap();
    let good: Vec<&str> = batch.rows.iter().map(|m| m.id().as_str()).collect();
    assert_eq!(good, vec!["good-1", "good-2"]);
    let rejected: Vec<Option<&str>> = batch.rejected.iter().map(|r| r.raw_id.as_deref()).collect();
    assert_eq!(rejected.len(), 7, "{:?}", batch.rejected);
    assert!(rejected.contains(&Some("huge")));
    assert!(batch.rejected.iter().all(|r| !r.reason.is_empty()));
}

#[test]
fn the_reader_sees_commits_while_a_writer_connection_stays_open() {
    // Holding a write connection open (but idle) must not stop the lock-free reader.
    let dir = tempfile::tempdir().unwrap();
    let (f, id) = session(dir.path(), &key(4));
    let mut w = f.inbound_writer(&id, &key(4)).unwrap();
    w.write_message(&msg_in("h1", "hi")).unwrap();
    let mut r = f.inbound_reader(&id, key(4)).unwrap();
    assert_eq!(r.pending_messages(Timestamp::now()).unwrap().rows.len(), 1);
    w.write_message(&msg_in("h2", "again")).unwrap();
    assert_eq!(r.pending_messages(Timestamp::now()).unwrap().rows.len(), 2);
}
