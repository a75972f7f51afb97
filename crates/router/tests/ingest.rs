//! The router as the ingest service's routing port: its refusals and part-way stops in
//! the port's terms (message unchanged), and the service waking what was written.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};

use ironclaw_contract::enums::UnknownSenderPolicy;
use ironclaw_contract::ids::SessionId;
use ironclaw_contract::rows::NewMessageIn;
use ironclaw_ingest::{InboundEvent, Ingest, OnInvalid, RouteFailure, Wake};
use ironclaw_router::{
    Appended, InboundSink, Reason, RouteError, Router, RouterConfig, SinkError, StopCause,
};
use support::*;

#[derive(Default)]
struct Woken(Mutex<Vec<SessionId>>);

impl Wake for Woken {
    fn wake(&self, session: &SessionId) {
        self.0.lock().unwrap().push(session.clone());
    }
}

fn ingest(env: &Env) -> (Ingest, Arc<Woken>) {
    let woken = Arc::new(Woken::default());
    let router = Arc::new(env.new_router(RouterConfig::default()));
    (Ingest::new(router, woken.clone()), woken)
}

/// A sink failure at the second wiring stops the event: the first wiring's row is
/// written and its session woken, the event and those after it are reported unrouted,
/// and the router's error is still there to read (message and downcast).
#[test]
fn a_sink_failure_stops_ingest_and_the_written_session_is_woken() {
    let env = Env::new();
    let mg = env.mg("C1", UnknownSenderPolicy::Strict);
    env.wire(wiring("w1", &mg, "g1"));
    env.wire(wiring("w2", &mg, "g2"));
    *env.sink.fail_at.lock().unwrap() = Some(1);
    let (ingest, woken) = ingest(&env);
    let events = [event("alice", "hello"), event("alice", "again")];

    let received = ingest.receive(&events, OnInvalid::Stop);

    let stopped = received.stopped.as_ref().expect("stopped");
    assert_eq!(stopped.index, 0);
    assert_eq!(received.unrouted(&events).len(), 2);
    let RouteFailure::Stopped { partial, error } = &stopped.error else {
        panic!("{:?}", stopped.error);
    };
    assert_eq!(partial.outcomes.len(), 1);
    assert_eq!(partial.outcomes[0].reason, Reason::Engaged);
    assert!(
        stopped
            .error
            .to_string()
            .starts_with("routing stopped after 1 outcome(s): inbound sink: open inbound writer"),
        "{}",
        stopped.error
    );
    assert!(matches!(
        error.downcast_ref::<RouteError>(),
        Some(RouteError::Stopped {
            cause: StopCause::Sink(_),
            ..
        })
    ));
    let rows = env.sink.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(*woken.0.lock().unwrap(), [rows[0].0.clone()]);
    assert_eq!(received.woken, [rows[0].0.clone()]);
}

/// An event the router refuses is `Invalid` (retrying cannot help), with the router's
/// message; nothing is written or woken.
#[test]
fn a_refused_event_is_invalid_in_the_ports_terms() {
    let env = Env::new();
    let mg = env.mg("C1", UnknownSenderPolicy::Strict);
    env.wire(wiring("w1", &mg, "g1"));
    let (ingest, woken) = ingest(&env);
    let mut bad = event("alice", "hello");
    bad.platform_id.clear();

    let received = ingest.receive(&[bad.clone()], OnInvalid::Stop);
    let stopped = received.stopped.expect("stopped");
    assert!(matches!(stopped.error, RouteFailure::Invalid(_)));
    assert_eq!(
        stopped.error.to_string(),
        "invalid inbound event: platform_id: must not be empty"
    );

    let received = ingest.receive(&[bad, event("alice", "fine")], OnInvalid::Skip);
    assert!(received.stopped.is_none());
    assert_eq!(received.skipped.len(), 1);
    assert_eq!(env.sink.rows().len(), 1, "only the valid event is written");
    assert_eq!(woken.0.lock().unwrap().len(), 1);
}

/// Queues every row, with no deduplication of its own (so what is not written twice is
/// the router's doing), except one whose text contains "poison": a session whose queue
/// can never be written (its key is missing, say), every time.
#[derive(Default)]
struct PoisonSink {
    rows: Mutex<Vec<String>>,
}

impl InboundSink for PoisonSink {
    fn append(&self, _: &SessionId, msg: &NewMessageIn) -> Result<Appended, SinkError> {
        if msg.content.contains("poison") {
            return Err(SinkError::new(
                "unseal the session key",
                std::io::Error::other("key missing"),
            ));
        }
        self.rows.lock().unwrap().push(msg.content.clone());
        Ok(Appended::New)
    }
}

/// A polled message: chat `chat`, platform message `chat:id`.
fn polled(chat: &str, id: u32, text: &str) -> InboundEvent {
    let mut e = event("7", text);
    e.platform_id = chat.to_owned();
    e.mentioned = true;
    e.platform_message_id = Some(format!("{chat}:{id}"));
    e
}

/// What a poller does while one update keeps failing (Telegram's, in
/// `ironclaw_channels::telegram::poll`): it does not acknowledge the batch, fetches it
/// again and hands the same events to ingest, until it gives up on the failing one and
/// acknowledges past it. Through the real router: the event before the failure, queued
/// by the first attempt, is not written again by the refetch (the router's own
/// deduplication of platform messages), the failing one is routed again each time (a
/// failure releases its claim), and the events after it are written once, when they
/// are finally routed.
#[test]
fn a_refetched_batch_writes_nothing_twice_and_later_events_once() {
    let env = Env::new();
    for (id, chat) in [("w1", "C1"), ("w2", "C2")] {
        let mg = env.mg(chat, UnknownSenderPolicy::Public);
        env.wire(wiring(id, &mg, "g1"));
    }
    let sink = Arc::new(PoisonSink::default());
    let router = Router::new(env.gateway.clone(), sink.clone(), RouterConfig::default());
    let woken = Arc::new(Woken::default());
    let ingest = Ingest::new(Arc::new(router), woken.clone());
    let batch = [
        polled("C1", 100, "hello"),
        polled("C1", 101, "poison"),
        polled("C2", 200, "after"),
    ];
    let rows = || sink.rows.lock().unwrap().clone();

    // The first fetch: "hello" is written, "poison" stops routing, "after" waits.
    let first = ingest.receive(&batch, OnInvalid::Skip);
    let stopped = first.stopped.as_ref().expect("stopped at the poison");
    assert_eq!(stopped.index, 1);
    assert!(matches!(stopped.error, RouteFailure::Stopped { .. }));
    assert!(
        stopped.error.to_string().contains("key missing"),
        "{}",
        stopped.error
    );
    assert_eq!(first.unrouted(&batch).len(), 2);
    assert_eq!(first.reports.len(), 1);
    assert!(!first.reports[0].duplicate);
    assert_eq!(first.woken.len(), 1);
    assert_eq!(rows(), ["hello"]);

    // The refetches: the same batch again, as many times as the poller retries.
    for attempt in 2..=3 {
        let again = ingest.receive(&batch, OnInvalid::Skip);
        let stopped = again.stopped.as_ref().expect("stopped at the poison again");
        assert_eq!(stopped.index, 1, "attempt {attempt}");
        assert!(matches!(stopped.error, RouteFailure::Stopped { .. }));
        assert_eq!(again.reports.len(), 1);
        assert!(
            again.reports[0].duplicate,
            "attempt {attempt}: {:?}",
            again.reports
        );
        assert!(again.woken.is_empty(), "nothing new was written");
        assert_eq!(rows(), ["hello"], "attempt {attempt}");
    }

    // The poller gives up on the poison and acknowledges past it: the platform sends
    // what follows, and it is written once, however often it comes again.
    let rest = ingest.receive(&batch[2..], OnInvalid::Skip);
    assert!(rest.stopped.is_none(), "{:?}", rest.stopped);
    assert!(!rest.reports[0].duplicate);
    assert_eq!(rest.woken.len(), 1);
    assert_eq!(rows(), ["hello", "after"]);
    let redelivered = ingest.receive(&batch[2..], OnInvalid::Skip);
    assert!(redelivered.stopped.is_none());
    assert!(redelivered.reports[0].duplicate);
    assert_eq!(rows(), ["hello", "after"]);
    assert_eq!(
        woken.0.lock().unwrap().len(),
        2,
        "hello's session, then after's"
    );
}
