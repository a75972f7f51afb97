//! `cargo bench -p ironclaw-queue`: what encryption costs on the queue path.
//!
//! Writes 10,000 inbound messages (one transaction each, as the router does) and reads
//! them back through the sandbox-side reader, once on an SQLCipher file and once on a
//! plaintext file through the same code, and prints the ratio (target: encrypted ≤
//! 1.5× plain). Then measures a reopen-and-poll of an empty inbound queue, the agent's
//! idle cost per poll (target: median ≤ 2 ms).
//!
//! Set `IRONCLAW_BENCH_MESSAGES` to change the message count.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ironclaw_contract::db::Cipher;
use ironclaw_contract::ids::{MessageId, SessionId};
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::queue::{InboundReader, InboundWriter};
use ironclaw_contract::rows::NewMessageIn;
use ironclaw_contract::time::Timestamp;
use ironclaw_queue::QueueFactory;
use ironclaw_testkit::message_in;

struct Run {
    write: Duration,
    read: Duration,
}

fn message(i: usize) -> NewMessageIn {
    message_in(
        format!("in_{i}"),
        format!("message {i}: the quick brown fox jumps over the lazy dog"),
    )
    .route("web", "conv-1")
    .build()
}

fn write_then_read(cipher: &Cipher, count: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let factory = QueueFactory::new(HostLayout::new(dir.path()));
    let id = SessionId::new("ses_bench").unwrap();
    factory.provision(&id, cipher).unwrap();
    let mut writer = factory.inbound_writer(&id, cipher).unwrap();

    let start = Instant::now();
    for i in 0..count {
        writer.write_message(&message(i)).unwrap();
    }
    let write = start.elapsed();

    // Read everything back in reader-sized batches; retiring a batch (host work, not
    // the reader's) is excluded from the timing.
    let mut reader = factory.inbound_reader(&id, cipher.clone()).unwrap();
    let mut read = Duration::ZERO;
    let mut total = 0;
    loop {
        let start = Instant::now();
        let batch = reader.pending_messages(Timestamp::now()).unwrap();
        read += start.elapsed();
        if batch.rows.is_empty() {
            break;
        }
        total += batch.rows.len();
        let ids: Vec<MessageId> = batch.rows.iter().map(|m| m.id().clone()).collect();
        writer.retire(&ids).unwrap();
    }
    assert_eq!(total, count);
    Run { write, read }
}

fn empty_poll_median(cipher: &Cipher, polls: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let factory = QueueFactory::new(HostLayout::new(dir.path()));
    let id = SessionId::new("ses_idle").unwrap();
    factory.provision(&id, cipher).unwrap();
    let mut reader = factory.inbound_reader(&id, cipher.clone()).unwrap();
    let mut samples: Vec<Duration> = (0..polls)
        .map(|_| {
            let start = Instant::now();
            let batch = reader.pending_messages(Timestamp::now()).unwrap();
            let t = start.elapsed();
            assert!(batch.rows.is_empty());
            t
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Targets apply to the optimized `cargo bench` run, not to the quick smoke run that
/// `cargo test --benches` makes of an unoptimized build.
fn verdict(quick: bool, met: bool) -> &'static str {
    match (quick, met) {
        (true, _) => "not judged in a quick unoptimized run",
        (false, true) => "met",
        (false, false) => "MISSED",
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and only
    // wants to know the benchmark builds and runs.
    let quick = !std::env::args().any(|a| a == "--bench");
    let count: usize = std::env::var("IRONCLAW_BENCH_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 200 } else { 10_000 });
    let key = Cipher::Key(SessionKey::from_bytes([0x5a; 32]));
    let plain = Cipher::Plaintext;

    // Warm up the file system and both code paths once.
    write_then_read(&plain, count.min(200));
    write_then_read(&key, count.min(200));

    let p = write_then_read(&plain, count);
    let e = write_then_read(&key, count);
    println!("queue round trip, {count} messages (one transaction each), same run:");
    println!(
        "  plaintext: write {:9.1} ms   read {:7.1} ms   total {:9.1} ms",
        ms(p.write),
        ms(p.read),
        ms(p.write + p.read)
    );
    println!(
        "  encrypted: write {:9.1} ms   read {:7.1} ms   total {:9.1} ms",
        ms(e.write),
        ms(e.read),
        ms(e.write + e.read)
    );
    let ratio = (e.write + e.read).as_secs_f64() / (p.write + p.read).as_secs_f64();
    println!(
        "  ratio encrypted/plain: write {:.2}x   read {:.2}x   total {:.2}x   (target total <= 1.50x: {})",
        e.write.as_secs_f64() / p.write.as_secs_f64(),
        e.read.as_secs_f64() / p.read.as_secs_f64(),
        ratio,
        verdict(quick, ratio <= 1.5)
    );

    let polls = if quick { 50 } else { 1000 };
    let idle_plain = empty_poll_median(&plain, polls);
    let idle_enc = empty_poll_median(&key, polls);
    println!("reopen-and-poll of an empty inbound queue, median of {polls}:");
    println!(
        "  plaintext {:.3} ms   encrypted {:.3} ms   ratio {:.2}x   (target encrypted <= 2 ms: {})",
        ms(idle_plain),
        ms(idle_enc),
        idle_enc.as_secs_f64() / idle_plain.as_secs_f64(),
        verdict(quick, idle_enc <= Duration::from_millis(2))
    );
}
