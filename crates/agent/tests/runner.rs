//! The poll loop over real encrypted queue files: engage once, never twice, accumulate,
//! back off, give up on corruption, stop on request, and ring/hear the doorbell.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironclaw_agent::conversation::{Conversation, ModelTurn, ToolSpec};
use ironclaw_agent::provider::{MockProvider, Provider, ProviderError};
use ironclaw_agent::runner::touch_heartbeat;
use ironclaw_agent::{
    Agent, Backoff, Doorbell, Exit, LoopConfig, NoDoorbell, PollLoop, SocketDoorbell, Step,
    ToolRegistry,
};
use ironclaw_contract::db::Cipher;
use ironclaw_contract::enums::{MessageKind, Status};
use ironclaw_contract::ids::{MessageId, SessionId};
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::queue::{InboundWriter, OutboundReader, OutboundWriter};
use ironclaw_contract::rows::{MessageOut, NewMessageIn, NewMessageOut, Route};
use ironclaw_contract::sandbox_queue::{EncryptedInboundReader, EncryptedOutboundWriter};
use ironclaw_contract::time::Timestamp;
use ironclaw_queue::{EncryptedInboundWriter, QueueFactory};
use ironclaw_testkit::message_in;

fn message(id: &str, content: &str, trigger: bool) -> NewMessageIn {
    message_in(id, content).trigger(trigger).build()
}

/// One session's files, provisioned the way the host does it.
struct Session {
    _dir: tempfile::TempDir,
    layout: HostLayout,
    factory: QueueFactory,
    sid: SessionId,
    cipher: Cipher,
}

impl Session {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(dir.path());
        let factory = QueueFactory::new(layout.clone());
        let sid = SessionId::new("sess-loop").unwrap();
        let cipher = Cipher::Key(SessionKey::from_bytes([9; 32]));
        factory.provision(&sid, &cipher).unwrap();
        Self {
            _dir: dir,
            layout,
            factory,
            sid,
            cipher,
        }
    }

    fn host_in(&self) -> EncryptedInboundWriter {
        self.factory
            .inbound_writer(&self.sid, &self.cipher)
            .unwrap()
    }

    fn outbound(&self) -> Vec<MessageOut> {
        let mut r = self
            .factory
            .outbound_reader(&self.sid, self.cipher.clone())
            .unwrap();
        r.due_messages(Timestamp::now(), 0).unwrap().rows
    }

    fn completed(&self) -> Vec<String> {
        let mut r = self
            .factory
            .outbound_reader(&self.sid, self.cipher.clone())
            .unwrap();
        r.processing_acks(Status::Completed, None)
            .unwrap()
            .rows
            .into_iter()
            .map(|a| a.message_id.as_str().to_owned())
            .collect()
    }

    fn heartbeat(&self) -> std::path::PathBuf {
        self.layout.heartbeat_dir(&self.sid).join("heartbeat")
    }

    fn poll_loop<P: Provider, D: Doorbell>(
        &self,
        provider: P,
        doorbell: D,
        config: LoopConfig,
    ) -> PollLoop<P, EncryptedInboundReader, EncryptedOutboundWriter, D> {
        let inbound =
            EncryptedInboundReader::open(self.layout.inbound_db(&self.sid), self.cipher.clone())
                .unwrap();
        let outbound =
            EncryptedOutboundWriter::open(&self.layout.outbound_db(&self.sid), &self.cipher)
                .unwrap();
        let agent = Agent::new(
            provider,
            ToolRegistry::for_group(&["send_message"]).unwrap(),
        );
        PollLoop::new(agent, inbound, outbound, doorbell, config)
    }
}

fn fast() -> LoopConfig {
    LoopConfig {
        poll_interval: Duration::from_millis(20),
        ..LoopConfig::default()
    }
}

#[test]
fn a_message_is_engaged_once_and_not_again_after_a_restart() {
    let s = Session::new();
    s.host_in()
        .write_message(&message("m1", "hello", true))
        .unwrap();
    let mut lp = s.poll_loop(MockProvider, NoDoorbell, fast());
    assert!(matches!(lp.step(), Step::Engaged { more: false, .. }));
    let out = s.outbound();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].message.content, "mock: hello");
    assert_eq!(s.completed(), ["m1"]);
    // The host has not retired m1 yet: the same loop does not engage it again ...
    assert_eq!(lp.step(), Step::Idle);
    // ... and neither does a fresh process (outbound remembers what was completed).
    let mut restarted = s.poll_loop(MockProvider, NoDoorbell, fast());
    assert_eq!(restarted.step(), Step::Idle);
    assert_eq!(s.outbound().len(), 1);
}

#[test]
fn a_batch_cut_short_by_a_crash_is_engaged_again_alone_and_nothing_is_left_unanswered() {
    let s = Session::new();
    let mut host = s.host_in();
    host.write_message(&message("m1", "one", true)).unwrap();
    host.write_message(&message("m2", "two", true)).unwrap();
    // The attempt that died: it claimed [m1, m2] and wrote their reply, keyed by m1,
    // but never marked them completed.
    let mut crashed =
        EncryptedOutboundWriter::open(&s.layout.outbound_db(&s.sid), &s.cipher).unwrap();
    let (m1, m2) = (MessageId::new("m1").unwrap(), MessageId::new("m2").unwrap());
    crashed.mark_processing(&[m1.clone(), m2.clone()]).unwrap();
    crashed
        .write_message(&NewMessageOut {
            id: ironclaw_agent::engage::reply_id(&m1),
            in_reply_to: Some(m2.clone()),
            timestamp: Timestamp::now(),
            deliver_after: None,
            kind: MessageKind::Chat,
            route: Route::default(),
            content: "mock: one\n\ntwo".into(),
        })
        .unwrap();
    drop(crashed);
    // A message arrives while the agent is down.
    host.write_message(&message("m3", "three", true)).unwrap();

    let mut restarted = s.poll_loop(MockProvider, NoDoorbell, fast());
    // First exactly the claimed batch: its reply is already there and is not written
    // again ...
    match restarted.step() {
        Step::Engaged { report, .. } => {
            assert_eq!(report.written, 0, "{report:?}");
            assert_eq!(report.already_sent, 1, "{report:?}");
        }
        other => panic!("{other:?}"),
    }
    let mut done = s.completed();
    done.sort();
    assert_eq!(done, ["m1", "m2"]);
    // ... then the newer message on its own, answered.
    assert!(matches!(restarted.step(), Step::Engaged { .. }));
    let replies: Vec<String> = s
        .outbound()
        .into_iter()
        .map(|m| m.message.content)
        .collect();
    assert_eq!(replies, ["mock: one\n\ntwo", "mock: three"]);
    assert_eq!(restarted.step(), Step::Idle);
}

#[test]
fn a_claimed_batch_whose_trigger_was_withdrawn_does_not_starve_newer_messages() {
    let s = Session::new();
    let mut host = s.host_in();
    host.write_message(&message("c1", "context", false))
        .unwrap();
    host.write_message(&message("t1", "a task", true)).unwrap();
    // An attempt claimed [c1, t1] and died; the host then withdrew t1 (a cancelled
    // task is retired).
    let mut crashed =
        EncryptedOutboundWriter::open(&s.layout.outbound_db(&s.sid), &s.cipher).unwrap();
    crashed
        .mark_processing(&[MessageId::new("c1").unwrap(), MessageId::new("t1").unwrap()])
        .unwrap();
    drop(crashed);
    host.retire(&[MessageId::new("t1").unwrap()]).unwrap();
    host.write_message(&message("m3", "now answer", true))
        .unwrap();

    let mut restarted = s.poll_loop(MockProvider, NoDoorbell, fast());
    assert!(
        matches!(restarted.step(), Step::Engaged { .. }),
        "the stale claim must not hold the newer message back"
    );
    let replies: Vec<String> = s
        .outbound()
        .into_iter()
        .map(|m| m.message.content)
        .collect();
    assert_eq!(replies, ["mock: context\n\nnow answer"]);
    let mut done = s.completed();
    done.sort();
    assert_eq!(done, ["c1", "m3"]);
}

#[test]
fn non_triggering_messages_wait_for_a_trigger_and_go_together() {
    let s = Session::new();
    let mut host = s.host_in();
    host.write_message(&message("c1", "context one", false))
        .unwrap();
    host.write_message(&message("c2", "context two", false))
        .unwrap();
    let mut lp = s.poll_loop(MockProvider, NoDoorbell, fast());
    assert_eq!(lp.step(), Step::Accumulating { pending: 2 });
    assert!(s.outbound().is_empty());
    host.write_message(&message("t1", "now answer", true))
        .unwrap();
    match lp.step() {
        Step::Engaged { report, more } => {
            assert_eq!(report.written, 1);
            assert!(!more);
        }
        other => panic!("{other:?}"),
    }
    let out = s.outbound();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].message.content,
        "mock: context one\n\ncontext two\n\nnow answer"
    );
    let mut done = s.completed();
    done.sort();
    assert_eq!(done, ["c1", "c2", "t1"]);
}

#[test]
fn a_large_backlog_is_taken_in_bounded_batches() {
    let s = Session::new();
    let mut host = s.host_in();
    for i in 0..5 {
        host.write_message(&message(&format!("m{i}"), &format!("q{i}"), true))
            .unwrap();
    }
    let mut config = fast();
    config.max_batch = 2;
    let mut lp = s.poll_loop(MockProvider, NoDoorbell, config);
    let mores: Vec<bool> = (0..3)
        .map(|_| match lp.step() {
            Step::Engaged { more, .. } => more,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(mores, [true, true, false]);
    assert_eq!(lp.step(), Step::Idle);
    assert_eq!(s.outbound().len(), 3);
    assert_eq!(s.completed().len(), 5);
}

/// Fails `failures` times, then answers.
struct Flaky {
    failures: u32,
    calls: u32,
}

impl Provider for Flaky {
    fn complete(&mut self, _c: &Conversation, _t: &[ToolSpec]) -> Result<ModelTurn, ProviderError> {
        self.calls += 1;
        if self.calls <= self.failures {
            return Err(ProviderError::Status {
                status: 503,
                message: "upstream down".into(),
            });
        }
        Ok(ModelTurn::text("recovered"))
    }
}

#[test]
fn provider_failures_back_off_exponentially_and_a_success_resets() {
    let s = Session::new();
    s.host_in()
        .write_message(&message("m1", "hi", true))
        .unwrap();
    let mut config = fast();
    config.backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(10),
        threshold: 3,
    };
    let mut lp = s.poll_loop(
        Flaky {
            failures: 5,
            calls: 0,
        },
        NoDoorbell,
        config,
    );
    let mut waits = Vec::new();
    for n in 1..=5u32 {
        match lp.step() {
            Step::ProviderFailed { failures, wait, .. } => {
                assert_eq!(failures, n);
                waits.push(wait);
            }
            other => panic!("{other:?}"),
        }
    }
    // Each wait lies in [d/2, d] for d = 1, 2, 4, 8, 10 s.
    for (w, d) in waits.iter().zip([1u64, 2, 4, 8, 10]) {
        let d = Duration::from_secs(d);
        assert!(*w >= d / 2 && *w <= d, "{w:?} not in [{:?}, {d:?}]", d / 2);
    }
    // Nothing was completed while failing; the retry answers and resets the count.
    assert!(s.completed().is_empty());
    assert!(matches!(lp.step(), Step::Engaged { .. }));
    assert_eq!(lp.provider_failures(), 0);
    assert_eq!(s.outbound()[0].message.content, "recovered");
}

#[test]
fn backoff_delays_match_the_schedule() {
    let b = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(10),
        threshold: 5,
    };
    let full: Vec<u64> = (1..=6).map(|n| b.delay(n, 1.0).as_secs()).collect();
    assert_eq!(full, [1, 2, 4, 8, 10, 10]);
    assert_eq!(b.delay(1, 0.0), Duration::from_millis(500));
    assert_eq!(b.delay(2, 0.0), Duration::from_secs(1));
    // Huge failure counts neither overflow nor exceed the cap.
    assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_secs(10));
    // A cap below the base is raised to the base.
    let odd = Backoff {
        base: Duration::from_secs(2),
        max: Duration::from_secs(1),
        threshold: 0,
    };
    assert_eq!(odd.delay(1, 1.0), Duration::from_secs(2));
    assert!(odd.is_open(1), "a threshold below 1 acts as 1");
    assert!(!b.is_open(4) && b.is_open(5));
}

#[test]
fn a_corrupt_inbound_file_ends_the_loop_after_the_streak() {
    let s = Session::new();
    s.host_in()
        .write_message(&message("m1", "hi", true))
        .unwrap();
    let mut lp = s.poll_loop(MockProvider, NoDoorbell, fast());
    assert!(matches!(lp.step(), Step::Engaged { .. }));
    // The file is replaced by garbage of a plausible size.
    std::fs::write(s.layout.inbound_db(&s.sid), vec![0x5a; 8192]).unwrap();
    assert!(matches!(lp.step(), Step::QueueFailed { .. }));
    assert!(matches!(lp.step(), Step::QueueFailed { .. }));
    match lp.step() {
        Step::Fatal(Exit::CorruptQueue { streak, last }) => {
            assert_eq!(streak, 3);
            assert!(!last.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_heartbeat_is_a_fresh_timestamp_every_step() {
    let s = Session::new();
    std::fs::create_dir_all(s.layout.heartbeat_dir(&s.sid)).unwrap();
    let mut config = fast();
    config.heartbeat = Some(s.heartbeat());
    let mut lp = s.poll_loop(MockProvider, NoDoorbell, config);
    let before = Timestamp::now();
    assert_eq!(lp.step(), Step::Idle);
    let text = std::fs::read_to_string(s.heartbeat()).unwrap();
    let stamp: Timestamp = text.trim().parse().unwrap();
    assert!(stamp >= before);
    // Replaced, not appended, and no temporary file left behind.
    touch_heartbeat(&s.heartbeat()).unwrap();
    assert_eq!(
        std::fs::read_to_string(s.heartbeat())
            .unwrap()
            .lines()
            .count(),
        1
    );
    let names: Vec<_> = std::fs::read_dir(s.layout.heartbeat_dir(&s.sid))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["heartbeat"]);
}

#[test]
fn a_stop_request_ends_a_long_poll_wait_promptly() {
    let s = Session::new();
    let mut config = fast();
    config.poll_interval = Duration::from_secs(30);
    let mut lp = s.poll_loop(MockProvider, NoDoorbell, config);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        flag.store(true, Ordering::Relaxed);
    });
    let started = Instant::now();
    assert_eq!(lp.run(&stop), Exit::Stopped);
    setter.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_doorbell_wakes_the_loop_and_is_rung_after_a_reply() {
    let s = Session::new();
    let sock = s.layout.doorbell_socket(&s.sid);
    let listener = UnixListener::bind(&sock).unwrap();
    let mut config = fast();
    // Long enough that only a ring can explain a quick answer.
    config.poll_interval = Duration::from_secs(20);
    let mut lp = s.poll_loop(
        MockProvider,
        SocketDoorbell::new(&sock, Duration::from_millis(10)),
        config,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let agent_stop = Arc::clone(&stop);
    let agent = std::thread::spawn(move || lp.run(&agent_stop));

    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    s.host_in()
        .write_message(&message("m1", "ping", true))
        .unwrap();
    conn.write_all(b"!").unwrap();
    // The agent rings back once it has written the reply.
    let mut byte = [0u8; 1];
    conn.read_exact(&mut byte).unwrap();
    let latency = started.elapsed();
    assert_eq!(s.outbound()[0].message.content, "mock: ping");
    assert!(latency < Duration::from_secs(10), "{latency:?}");
    stop.store(true, Ordering::Relaxed);
    assert_eq!(agent.join().unwrap(), Exit::Stopped);
}

#[test]
fn without_a_doorbell_listener_the_loop_still_polls() {
    let s = Session::new();
    let mut bell = SocketDoorbell::new(s.layout.doorbell_socket(&s.sid), Duration::from_millis(5));
    let t = Instant::now();
    assert!(!bell.wait(Duration::from_millis(30)));
    assert!(t.elapsed() >= Duration::from_millis(30));
    bell.ring();
    assert!(!bell.connected());
}
