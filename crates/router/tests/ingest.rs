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
use ironclaw_ingest::{Ingest, OnInvalid, RouteFailure, Wake};
use ironclaw_router::{Reason, RouteError, RouterConfig, StopCause};
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
