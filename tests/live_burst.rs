//! A crash in the middle of a burst, live (issue #6): 500 signed webhook messages to
//! one conversation, the daemon killed with SIGKILL part-way through and restarted on
//! the same state, and every message answered exactly once.
//!
//! The sender behaves like a platform: a message is sent until the daemon answers 200,
//! so one whose 200 was lost to the crash is sent again (re-signed) after the restart.
//! The agent answers in batches (the mock echoes the whole batch, which is one user
//! turn), so "answered exactly once" is checked per message: each message's token
//! appears in exactly one reply POSTed to the receiver, and no reply is POSTed twice.
//!
//! Needs root, `runsc` and the static agent (`dev/test.sh` builds it); never skipped.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironclaw_e2e::live::LiveDir;
use ironclaw_e2e::webhook::{self, Received};
use serde_json::Value;

const SECRET: &str = "burst-secret-0123456789abcdef0123";
const INSTANCE: &str = "ci";
const MESSAGES: usize = 500;
/// The sender has had this many messages accepted when the daemon is killed.
const KILL_AFTER: usize = 200;

fn body(i: usize) -> String {
    webhook::numbered_message("burst", "burst", i as u64)
}

#[test]
fn every_message_of_a_burst_is_answered_exactly_once_across_a_sigkill() {
    let live = LiveDir::new();
    let (port, replies) = webhook::receiver();
    let channels = live.dir.path().join("channels.json");
    webhook::write_channels_file(
        &channels,
        INSTANCE,
        SECRET,
        &format!("http://127.0.0.1:{port}/replies"),
    );
    let d = live.start_dev(&[
        "--channels-file",
        channels.to_str().unwrap(),
        "--rate-limit-rps",
        "0",
    ]);
    let owner = d.dev_token();
    webhook::wire_public_conversation(&d, &owner, INSTANCE, "burst", "dev-agent");

    // The sender: each message until it is accepted, in order, retrying through the
    // crash like a platform does.
    let addr = d.addr.clone();
    let accepted = Arc::new(AtomicUsize::new(0));
    let sender = {
        let accepted = Arc::clone(&accepted);
        std::thread::spawn(move || {
            let mut resent = 0usize;
            for i in 0..MESSAGES {
                let b = body(i);
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    match webhook::post(&addr, INSTANCE, SECRET, &b) {
                        Ok(200) => break,
                        Ok(401) => panic!("message {i} refused as unauthenticated"),
                        Ok(_) | Err(_) => {
                            resent += 1;
                            assert!(Instant::now() < deadline, "message {i} never accepted");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
                accepted.fetch_add(1, Ordering::SeqCst);
            }
            resent
        })
    };

    while accepted.load(Ordering::SeqCst) < KILL_AFTER {
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed_at = accepted.load(Ordering::SeqCst);
    let d = d.crash_and_restart(true);
    let resent = sender.join().expect("sender thread");
    // A platform that never saw its acknowledgements (they were lost with the old
    // daemon) delivers again: the last messages accepted before the crash, re-signed.
    // The restarted daemon has forgotten the recent platform ids it held in memory.
    for i in killed_at.saturating_sub(10)..killed_at {
        assert_eq!(
            webhook::post(&d.addr, INSTANCE, SECRET, &body(i)),
            Ok(200),
            "redelivery of message {i}"
        );
    }
    eprintln!("killed after {killed_at} accepted; {resent} sends retried across the crash; 10 redelivered");

    // Every message answered, then a quiet period in which no duplicate may arrive.
    // Replies are told apart by their `message_id` (the outbound row id, stable across
    // attempts): the one reply whose POST succeeded just before the crash, but whose
    // "delivered" mark had not been committed, is POSTed again after the restart with
    // the same id. No HTTP sender can close that window alone; the stable id is what
    // lets a receiver drop the repeat, and this receiver does.
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    let mut seen_ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut take = |r: Received, count: &mut BTreeMap<u64, usize>| {
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let id = v["message_id"].as_str().unwrap_or_default().to_owned();
        assert!(!id.is_empty(), "a reply without a message_id: {}", r.body);
        let n = seen_ids.entry(id).or_default();
        *n += 1;
        if *n == 1 {
            for m in webhook::numbers_answered(&r, "burst") {
                *count.entry(m).or_default() += 1;
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while count.len() < MESSAGES {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(r) = replies.recv_timeout(left) else {
            let missing: Vec<u64> = (0..MESSAGES as u64)
                .filter(|i| !count.contains_key(i))
                .collect();
            panic!(
                "{} of {MESSAGES} messages never answered (first: {:?})\n{}",
                missing.len(),
                &missing[..missing.len().min(20)],
                d.log()
            );
        };
        take(r, &mut count);
    }
    while let Ok(r) = replies.recv_timeout(Duration::from_secs(8)) {
        take(r, &mut count);
    }
    let twice: Vec<(u64, usize)> = count
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, c)| (*n, *c))
        .collect();
    assert!(
        twice.is_empty(),
        "answered by more than one reply (message, replies): {twice:?}\n{}",
        d.log()
    );
    assert!(count.keys().all(|n| *n < MESSAGES as u64));
    let posts: usize = seen_ids.values().sum();
    let repeated: Vec<(&String, &usize)> = seen_ids.iter().filter(|(_, n)| **n > 1).collect();
    // Delivery is sequential per session: only the row in flight at the crash can be
    // repeated, and only once.
    assert!(
        repeated.len() <= 1 && repeated.iter().all(|(_, n)| **n == 2),
        "replies POSTed more than once: {repeated:?}"
    );
    let posts = format!(
        "{posts} POSTs of {} distinct replies ({} repeated across the crash)",
        seen_ids.len(),
        repeated.len()
    );
    eprintln!("{MESSAGES} messages answered exactly once: {posts}");
    d.stop();
}
