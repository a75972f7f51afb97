//! Regression: SQLCipher's process-wide initialization raced when several threads keyed
//! their first databases at the same moment (one `PRAGMA key` failed). This test binary
//! is its own process, so the 16 opens below are the first keyings in it.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Barrier};

use ironclaw_contract::db::{open_writer, Cipher};
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::schema::QueueFile;

#[test]
fn sixteen_threads_key_their_first_databases_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16u8)
        .map(|i| {
            let (path, barrier) = (dir.path().join(format!("q{i}.db")), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                open_writer(
                    &path,
                    &Cipher::Key(SessionKey::from_bytes([i; 32])),
                    QueueFile::Inbound,
                )
                .map(drop)
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
}

/// The same race seen later in a process: keyings (serialized) interleaved with other
/// threads' page I/O and connection teardown on unrelated files, many times over.
#[test]
fn keying_while_other_connections_work_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let dir = dir.path().to_owned();
            std::thread::spawn(move || {
                for n in 0..150u32 {
                    let path = dir.join(format!("t{t}-{n}.db"));
                    let cipher = Cipher::Key(SessionKey::from_bytes([t ^ (n as u8); 32]));
                    let file = if n % 2 == 0 {
                        QueueFile::Inbound
                    } else {
                        QueueFile::Outbound
                    };
                    let conn = open_writer(&path, &cipher, file)
                        .map_err(|e| format!("thread {t} open {n}: {e}"))?;
                    drop(conn);
                    // Reopen the now-existing file: the salt comes from its header.
                    open_writer(&path, &cipher, file)
                        .map_err(|e| format!("thread {t} reopen {n}: {e}"))?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
}
