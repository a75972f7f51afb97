//! The queue files across the real gVisor boundary, under load (issue #5;
//! `RUNSC-NOTES.md`: POSIX locks do not cross the boundary, so only the snapshot read
//! protocol keeps reads correct while the other side commits).
//!
//! One session runs the static agent in a live `runsc` sandbox, launched by the
//! production `SessionManager` + `RunscRuntime` from a signed image (see
//! `benches/runsc_world/mod.rs` for why the library and not the daemon). While it runs:
//!
//! - **inbound, host → sandbox**: a host thread writes 5,000 messages, each its own
//!   commit, in bursts of 50 (ringing the doorbell after each) whenever no more than 10
//!   are outstanding, while the agent reads the same file from inside the sandbox;
//! - **outbound, sandbox → host**: another host thread reads the agent's outbound rows
//!   and processing acks while the agent commits them, and retires completed inbound
//!   rows every 100 ms (as the delivery loop does) — a second stream of inbound commits.
//!
//! **Why `--max-batch 1`.** "Each way" means at least 5,000 inbound rows and at least
//! 5,000 outbound rows. The agent writes one reply per engage and engages up to 64
//! due messages at once, and the mock model answers a whole batch prompt with one
//! reply (it acts on the first `tool:` directive of the prompt only, so a `send_message`
//! directive per message does not give a row per message either). So the agent runs
//! with `--max-batch 1` (passed through `ManagerConfig::extra_agent_args`): one engage,
//! one model call and one reply per message, plus its `processing` and `completed`
//! acks — 5,000 reply rows and 10,000 ack commits on outbound. `--poll-interval-ms 10`
//! because each engage lasts at least one heartbeat slice (`min(200 ms, poll
//! interval)`: the engage's keep-alive thread is joined after its sleep), which at the
//! default 2 s interval alone would cap the agent at 5 messages a second. The model
//! proxy's per-session rate limit (10 calls/s by default) is off for the same reason.
//!
//! **Why bursts and a low-water mark.** The agent re-reads every pending row at every
//! step, and a read is only accepted if no commit landed during it; so a host that
//! commits without pause, or a large backlog, starves the agent's reads (measured here:
//! with 500 outstanding and bursts of 250 the agent managed under 2 messages a second,
//! most reads retried). Bursts of 50 over a backlog of at most 10 keep every burst's
//! commits landing during the agent's reads while letting it make progress.
//!
//! Checked, every one exact:
//! - every inbound id is completed exactly once (the processing-ack stream names each
//!   id once and nothing else), and the ack stream read incrementally equals a full
//!   re-read at the end; every inbound row is retired;
//! - exactly one reply per inbound id, its `in_reply_to` a written inbound id, its
//!   content `mock: <that message's content>` (so every read on either side that was
//!   acted upon saw exactly the bytes written), no outbound id twice, seqs increasing,
//!   and every outbound row decodes (`Batch::rejected` empty on every read);
//! - the model was called exactly once per message (no message engaged twice);
//! - the same sandbox served the whole run (still running at the end, no corrupt-queue
//!   exit), and it stops cleanly on SIGTERM.
//!
//! Host reads that found no stable snapshot (`DbError::Unstable`, the writer kept
//! committing) are retried on the next poll — the protocol working — and counted.
//!
//! Needs root, `runsc` and the static agent (`.ci/run` builds it). Never skipped.
//! Takes about 6 minutes on 2 cores (the agent's cycle under gVisor's ptrace platform
//! is ≈ 50–60 ms a message; the figures are printed at the end, progress every 30 s).

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "benches/runsc_world/mod.rs"]
mod runsc_world;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironclaw_contract::db::DbError;
use ironclaw_contract::enums::Status;
use ironclaw_contract::ids::{MessageId, SessionId};
use ironclaw_contract::queue::{InboundReader, InboundWriter, OutboundReader, QueueError};
use ironclaw_contract::rows::{AckCursor, NewMessageIn, ProcessingAck};
use ironclaw_contract::time::Timestamp;
use ironclaw_modelproxy::ProxyConfig;
use ironclaw_session::{LaunchOutcome, Liveness, SessionManager};
use ironclaw_testkit::message_in;

use runsc_world::{static_agent, RunscWorld};

const MESSAGES: usize = 5_000;
/// Rows the host writes back to back (each its own commit)...
const BURST: usize = 50;
/// ...whenever no more than this many are written but not yet completed.
const LOW_WATER: usize = 10;
/// How often the host retires completed inbound rows.
const RETIRE_EVERY: Duration = Duration::from_millis(100);
/// Agent flags: one message per engage, short heartbeat slices (see the module docs).
const AGENT_ARGS: &[&str] = &["--max-batch", "1", "--poll-interval-ms", "10"];
/// Fails the test (with progress) if the exchange has not finished by then.
const DEADLINE: Duration = Duration::from_secs(600);
/// Fails the test (with a diagnosis) when nothing new arrives for this long.
const STALL: Duration = Duration::from_secs(60);

fn inbound_id(i: usize) -> MessageId {
    MessageId::new(format!("in-{i:05}")).unwrap()
}

fn index_of(id: &MessageId) -> Option<usize> {
    let n: usize = id.as_str().strip_prefix("in-")?.parse().ok()?;
    (n < MESSAGES && inbound_id(n) == *id).then_some(n)
}

/// Deterministic, distinct content of varying length (up to a few hundred bytes, so
/// rows straddle pages), so a reply proves which bytes the agent read. No surrounding
/// whitespace: the agent trims what it sends to the model.
fn payload(i: usize) -> String {
    let h = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17);
    format!("stress {i} {h:016x} {}", "z".repeat(i % 389 + 1))
}

fn message(i: usize) -> NewMessageIn {
    message_in(inbound_id(i).to_string(), payload(i)).build()
}

fn is_unstable(e: &QueueError) -> bool {
    matches!(e, QueueError::Db(DbError::Unstable { .. }))
}

/// What the host's outbound side saw.
#[derive(Default)]
struct Seen {
    /// Reply rows by the inbound index they answer.
    replies: HashMap<usize, MessageId>,
    outbound_ids: HashSet<MessageId>,
    /// Completion time (sandbox clock, ns) by inbound index.
    completed: HashMap<usize, i128>,
    after_seq: i64,
    cursor: Option<AckCursor>,
    to_retire: Vec<MessageId>,
    last_retire: Option<Instant>,
    retired: usize,
    reads: u64,
    unstable_reads: u64,
}

impl Seen {
    fn done(&self) -> bool {
        self.completed.len() == MESSAGES
            && self.replies.len() == MESSAGES
            && self.to_retire.is_empty()
    }

    /// Median time between consecutive completions, by the sandbox's clock: the
    /// agent's cycle per message.
    fn median_cycle_ms(&self) -> f64 {
        let mut times: Vec<i128> = self.completed.values().copied().collect();
        times.sort_unstable();
        let mut gaps: Vec<i128> = times.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_unstable();
        gaps.get(gaps.len() / 2).map_or(0.0, |g| *g as f64 / 1e6)
    }
}

/// One poll of the host's outbound side: new rows, new completed acks, and the
/// retirement of completed inbound rows when due. Returns whether anything new was seen.
fn poll_outbound(
    out: &mut impl OutboundReader,
    inbound: &mut impl InboundWriter,
    written: usize,
    seen: &mut Seen,
) -> bool {
    let mut progress = false;
    seen.reads += 1;
    match out.due_messages(Timestamp::now(), seen.after_seq) {
        Ok(batch) => {
            assert!(
                batch.rejected.is_empty(),
                "outbound rows that do not decode: {:?}",
                batch.rejected
            );
            for row in batch.rows {
                assert!(row.seq > seen.after_seq, "seq went backwards: {row:?}");
                seen.after_seq = row.seq;
                let id = row.message.id.clone();
                assert!(
                    seen.outbound_ids.insert(id.clone()),
                    "outbound id {id} read twice"
                );
                let to = row
                    .message
                    .in_reply_to
                    .clone()
                    .unwrap_or_else(|| panic!("outbound row {id} answers nothing: {row:?}"));
                let i = index_of(&to)
                    .unwrap_or_else(|| panic!("{id} answers {to}, which was never written"));
                assert!(i < written, "{id} answers {to} before it was written");
                assert_eq!(
                    row.message.content,
                    format!("mock: {}", payload(i)),
                    "the reply to {to} does not match what was written"
                );
                if let Some(first) = seen.replies.insert(i, id.clone()) {
                    panic!("{to} answered twice: {first} and {id}");
                }
                progress = true;
            }
        }
        Err(e) if is_unstable(&e) => seen.unstable_reads += 1,
        Err(e) => panic!("outbound read failed: {e}"),
    }
    seen.reads += 1;
    match out.processing_acks(Status::Completed, seen.cursor.as_ref()) {
        Ok(batch) => {
            assert!(
                batch.rejected.is_empty(),
                "ack rows that do not decode: {:?}",
                batch.rejected
            );
            if let Some(last) = batch.rows.last() {
                seen.cursor = Some(last.cursor());
                progress = true;
            }
            for ack in batch.rows {
                let i = index_of(&ack.message_id).unwrap_or_else(|| {
                    panic!("ack for {}, which was never written", ack.message_id)
                });
                let at = ack.status_changed.unix_nanos();
                assert!(
                    seen.completed.insert(i, at).is_none(),
                    "{} completed twice in the ack stream",
                    ack.message_id
                );
                seen.to_retire.push(ack.message_id);
            }
        }
        Err(e) if is_unstable(&e) => seen.unstable_reads += 1,
        Err(e) => panic!("ack read failed: {e}"),
    }
    // As the delivery loop does: retired rows leave the agent's pending set.
    let due = seen.last_retire.is_none_or(|t| t.elapsed() >= RETIRE_EVERY)
        || seen.completed.len() == MESSAGES;
    if due && !seen.to_retire.is_empty() {
        seen.retired += inbound
            .retire(&seen.to_retire)
            .expect("retire completed inbound rows");
        seen.to_retire.clear();
        seen.last_retire = Some(Instant::now());
    }
    progress
}

/// Every completed ack, read from the start (paginated).
fn all_completed_acks(out: &mut impl OutboundReader) -> Vec<ProcessingAck> {
    let mut all = Vec::new();
    let mut cursor: Option<AckCursor> = None;
    loop {
        let batch = match out.processing_acks(Status::Completed, cursor.as_ref()) {
            Ok(b) => b,
            Err(e) if is_unstable(&e) => continue,
            Err(e) => panic!("final ack read: {e}"),
        };
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        let Some(last) = batch.rows.last() else {
            return all;
        };
        cursor = Some(last.cursor());
        all.extend(batch.rows);
    }
}

fn agent_tail(manager: &SessionManager, sid: &SessionId) -> String {
    manager
        .last_output(sid)
        .unwrap_or_else(|| "(no agent output kept)".into())
}

/// What the host sees when the exchange stalls: the queue directories, a host-side
/// snapshot read of inbound, and the agent's last words.
fn diagnose(manager: &SessionManager, sid: &SessionId) -> String {
    let layout = manager.layout();
    let mut out = String::new();
    for dir in [layout.inbound_dir(sid), layout.outbound_dir(sid)] {
        out.push_str(&format!("{}:\n", dir.display()));
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.push_str(&format!("  {} {len}\n", e.file_name().to_string_lossy()));
        }
    }
    let read = manager
        .inbound_reader(sid)
        .map_err(|e| e.to_string())
        .and_then(|mut r| {
            r.pending_messages(Timestamp::now())
                .map_err(|e| e.to_string())
        });
    match read {
        Ok(b) => out.push_str(&format!("host read of inbound: {} pending\n", b.rows.len())),
        Err(e) => out.push_str(&format!("host read of inbound failed: {e}\n")),
    }
    out.push_str(&format!("agent: {}", agent_tail(manager, sid)));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_messages_each_way_cross_the_runsc_boundary_exactly_once() {
    let agent = static_agent();
    let mut proxy = ProxyConfig::from_lookup(|_| None).unwrap();
    proxy.session_rate = None;
    proxy.group_rate = None;
    let world = RunscWorld::new(&agent, proxy);
    let rootfs = world.provision(&world.layout.images_dir());
    let (manager, mut rung) = world.manager(world.runtime(&rootfs), AGENT_ARGS);
    let sid = world.new_session("stress");
    match manager.ensure_running(&sid).await {
        Ok(LaunchOutcome::Launched(live)) => {
            assert_eq!(live.launched.runtime.as_str(), "runsc");
        }
        other => panic!("launch: {other:?}"),
    }
    // The doorbell is how the writer wakes the agent between polls.
    let connected = Instant::now() + Duration::from_secs(30);
    while !manager.doorbells().connected(&sid) {
        assert!(
            Instant::now() < connected,
            "the sandboxed agent never connected its doorbell: {}",
            agent_tail(&manager, &sid)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let written = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));

    // Host → sandbox.
    let writer = {
        let (manager, sid) = (Arc::clone(&manager), sid.clone());
        let (written, completed, failed) = (
            Arc::clone(&written),
            Arc::clone(&completed),
            Arc::clone(&failed),
        );
        tokio::task::spawn_blocking(move || {
            let mut w = manager.inbound_writer(&sid).unwrap();
            for i in 0..MESSAGES {
                if i % BURST == 0 {
                    while i.saturating_sub(completed.load(Ordering::Relaxed)) > LOW_WATER {
                        if failed.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                w.write_message(&message(i)).unwrap();
                written.store(i + 1, Ordering::Release);
                manager.ring(&sid);
            }
        })
    };

    // Sandbox → host.
    let reader = {
        let (manager, sid) = (Arc::clone(&manager), sid.clone());
        let (written, completed, failed) = (
            Arc::clone(&written),
            Arc::clone(&completed),
            Arc::clone(&failed),
        );
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let run = std::panic::AssertUnwindSafe(|| {
                let mut out = manager.outbound_reader(&sid).unwrap();
                let mut retirer = manager.inbound_writer(&sid).unwrap();
                let mut seen = Seen::default();
                let mut last_progress = Instant::now();
                let mut last_report = Instant::now();
                while !seen.done() {
                    let now = Instant::now();
                    assert!(
                        now - started < DEADLINE && now - last_progress < STALL,
                        "stalled or past the deadline ({:.0} s in, {:.0} s without progress): {} of {MESSAGES} written, {} completed, {} replies\n{}",
                        (now - started).as_secs_f64(),
                        (now - last_progress).as_secs_f64(),
                        written.load(Ordering::Acquire),
                        seen.completed.len(),
                        seen.replies.len(),
                        diagnose(&manager, &sid)
                    );
                    if now - last_report >= Duration::from_secs(30) {
                        eprintln!(
                            "live_stress: {:.0} s: {} written, {} completed, {} replies",
                            (now - started).as_secs_f64(),
                            written.load(Ordering::Acquire),
                            seen.completed.len(),
                            seen.replies.len()
                        );
                        last_report = now;
                    }
                    // Loaded before reading: a reply seen now answers a message written by then.
                    let w = written.load(Ordering::Acquire);
                    if poll_outbound(&mut out, &mut retirer, w, &mut seen) {
                        last_progress = Instant::now();
                    }
                    completed.store(seen.completed.len(), Ordering::Relaxed);
                    // Until the agent rings (it does after each write), or 50 ms.
                    let _ = handle
                        .block_on(tokio::time::timeout(Duration::from_millis(50), rung.recv()));
                    while rung.try_recv().is_ok() {}
                }
                seen
            });
            let result = std::panic::catch_unwind(run);
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            result
        })
    };

    // Both finish before anything is torn down (the writer stops when the reader fails).
    let read = reader.await.unwrap();
    let wrote = writer.await;
    let seen = match read {
        Ok(seen) => seen,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    wrote.unwrap();
    let elapsed = started.elapsed();

    // The same sandbox served the whole run.
    assert_eq!(
        manager.liveness(&sid).await.unwrap(),
        Liveness::Running,
        "the sandbox is gone: {}",
        agent_tail(&manager, &sid)
    );
    let tail = agent_tail(&manager, &sid);
    assert!(!tail.contains("corrupt"), "agent: {tail}");

    // A final full read agrees with what was acted upon incrementally.
    let mut out = manager.outbound_reader(&sid).unwrap();
    let acks = all_completed_acks(&mut out);
    let ack_ids: HashSet<MessageId> = acks.iter().map(|a| a.message_id.clone()).collect();
    assert_eq!(acks.len(), MESSAGES, "completed acks");
    assert_eq!(ack_ids.len(), MESSAGES, "distinct completed acks");
    assert!((0..MESSAGES).all(|i| ack_ids.contains(&inbound_id(i))));
    assert_eq!(seen.completed.len(), MESSAGES);
    let mut all_rows = 0;
    let mut after = 0;
    loop {
        let batch = match out.due_messages(Timestamp::now(), after) {
            Ok(b) => b,
            Err(e) if is_unstable(&e) => continue,
            Err(e) => panic!("final outbound read: {e}"),
        };
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        let Some(last) = batch.rows.last() else { break };
        after = last.seq;
        for row in &batch.rows {
            assert!(seen.outbound_ids.contains(&row.message.id), "{row:?}");
        }
        all_rows += batch.rows.len();
    }
    assert_eq!(all_rows, MESSAGES, "outbound rows");
    assert_eq!(seen.outbound_ids.len(), MESSAGES);
    assert_eq!(seen.retired, MESSAGES, "inbound rows retired");
    let pending = manager
        .inbound_reader(&sid)
        .unwrap()
        .pending_messages(Timestamp::now())
        .unwrap();
    assert!(pending.rows.is_empty() && pending.rejected.is_empty());

    // One model call per message: none was engaged twice.
    let stats = world.proxy.stats();
    let calls: u64 = stats.calls.values().flat_map(|by| by.values()).sum();
    assert_eq!(calls, MESSAGES as u64, "model calls: {stats:?}");
    assert!(stats.refusals.is_empty(), "proxy refusals: {stats:?}");

    let queue_retries = tail.matches("ironclaw-sandbox: queue:").count();
    println!(
        "live_stress: {MESSAGES} inbound rows written by the host and read in the sandbox, \
         {MESSAGES} replies (+ {} ack commits) written in the sandbox and read by the host, \
         in {:.1} s ({:.1} messages/s each way; agent cycle median {:.1} ms); host outbound \
         reads {} ({} found no stable snapshot and were retried); agent reads that gave up \
         after 60 attempts, in its last 8 KiB of stderr: {queue_retries}",
        2 * MESSAGES,
        elapsed.as_secs_f64(),
        MESSAGES as f64 / elapsed.as_secs_f64(),
        seen.median_cycle_ms(),
        seen.reads,
        seen.unstable_reads,
    );

    // SIGTERM: the agent finishes its step and exits; the container is removed.
    assert!(manager.stop(&sid, "stress test over").await.unwrap());
    assert!(world.containers().is_empty(), "{:?}", world.containers());
}
