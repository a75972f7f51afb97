//! Regression: SQLCipher's process-wide initialization raced when several threads keyed
//! their first databases at the same moment (one `PRAGMA key` failed). This test binary
//! is its own process, so the 16 opens below are the first keyings in it.

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
