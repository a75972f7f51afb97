//! The ingest service over a scripted router and a recording waker: order, stopping,
//! the events a caller must forget, skipping invalid events, waking each session once.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ironclaw_contract::enums::Provenance;
use ironclaw_contract::ids::{MessagingGroupId, SessionId};
use ironclaw_ingest::{
    InboundEvent, Ingest, OnInvalid, RouteFailure, RouteInbound, RouteReport, Wake,
};

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

fn event(text: &str) -> InboundEvent {
    InboundEvent {
        channel_type: "webhook".into(),
        platform_id: "chat".into(),
        instance: None,
        thread_id: None,
        sender_handle: "alice".into(),
        text: text.into(),
        mentioned: true,
        provenance: Provenance::Verified,
        platform_message_id: None,
    }
}

/// What the scripted router does with an event, by its text.
enum Script {
    /// Routed; these sessions were engaged.
    Wake(Vec<&'static str>),
    /// Refused as invalid.
    Invalid,
    /// Stopped part-way, after engaging these sessions.
    Stop(Vec<&'static str>),
    /// Failed before any wiring.
    Fail,
}

#[derive(Default)]
struct Scripted {
    script: HashMap<&'static str, Script>,
    routed: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(script: Vec<(&'static str, Script)>) -> Arc<Self> {
        Arc::new(Self {
            script: script.into_iter().collect(),
            routed: Mutex::default(),
        })
    }

    fn routed(&self) -> Vec<String> {
        self.routed.lock().unwrap().clone()
    }
}

fn report(wake: &[&str]) -> RouteReport {
    let mut r = RouteReport::new(MessagingGroupId::new("mg").unwrap());
    r.wake = wake.iter().map(|s| sid(s)).collect();
    r
}

impl RouteInbound for Scripted {
    fn route(&self, event: &InboundEvent) -> Result<RouteReport, RouteFailure> {
        self.routed.lock().unwrap().push(event.text.clone());
        match &self.script[event.text.as_str()] {
            Script::Wake(w) => Ok(report(w)),
            Script::Invalid => Err(RouteFailure::Invalid("invalid inbound event".into())),
            Script::Stop(w) => Err(RouteFailure::Stopped {
                partial: Box::new(report(w)),
                error: "routing stopped after 1 outcome(s): inbound sink: disk on fire".into(),
            }),
            Script::Fail => Err(RouteFailure::Failed("registry: down".into())),
        }
    }
}

#[derive(Default)]
struct Woken(Mutex<Vec<SessionId>>);

impl Wake for Woken {
    fn wake(&self, session: &SessionId) {
        self.0.lock().unwrap().push(session.clone());
    }
}

impl Woken {
    fn all(&self) -> Vec<SessionId> {
        self.0.lock().unwrap().clone()
    }
}

fn ingest(router: &Arc<Scripted>) -> (Ingest, Arc<Woken>) {
    let woken = Arc::new(Woken::default());
    (Ingest::new(router.clone(), woken.clone()), woken)
}

#[test]
fn routes_every_event_in_order_and_wakes_each_session_once() {
    let router = Scripted::new(vec![
        ("a", Script::Wake(vec!["s1", "s2"])),
        ("b", Script::Wake(vec![])),
        ("c", Script::Wake(vec!["s2", "s3"])),
    ]);
    let (ingest, woken) = ingest(&router);
    let events = [event("a"), event("b"), event("c")];
    let received = ingest.receive(&events, OnInvalid::Stop);
    assert_eq!(router.routed(), ["a", "b", "c"]);
    assert_eq!(received.reports.len(), 3);
    assert!(received.stopped.is_none() && received.skipped.is_empty());
    assert!(received.unrouted(&events).is_empty());
    assert_eq!(received.woken, [sid("s1"), sid("s2"), sid("s3")]);
    assert_eq!(woken.all(), [sid("s1"), sid("s2"), sid("s3")]);
}

/// Routing stops at the first failure; the failed event and every one after it are
/// the caller's to forget. The sessions engaged before it — by earlier events, and by
/// the failed event's wirings before the one that failed — have rows and are woken.
/// (The webhook and web chat paths used to drop the failed event's partial wakes.)
#[test]
fn stops_at_the_first_failure_and_still_wakes_what_was_written() {
    let router = Scripted::new(vec![
        ("a", Script::Wake(vec!["s1"])),
        ("b", Script::Stop(vec!["s2"])),
        ("c", Script::Wake(vec!["s3"])),
    ]);
    let (ingest, woken) = ingest(&router);
    let events = [event("a"), event("b"), event("c")];
    let received = ingest.receive(&events, OnInvalid::Stop);
    assert_eq!(
        router.routed(),
        ["a", "b"],
        "nothing after the failure is routed"
    );
    let stopped = received.stopped.as_ref().expect("stopped");
    assert_eq!(stopped.index, 1);
    assert!(matches!(stopped.error, RouteFailure::Stopped { .. }));
    assert_eq!(
        stopped.error.to_string(),
        "routing stopped after 1 outcome(s): inbound sink: disk on fire",
        "the router's message, unchanged"
    );
    let unrouted: Vec<&str> = received
        .unrouted(&events)
        .iter()
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(unrouted, ["b", "c"]);
    assert_eq!(received.reports.len(), 1);
    assert_eq!(woken.all(), [sid("s1"), sid("s2")]);
}

#[test]
fn a_failure_before_any_wiring_stops_too() {
    let router = Scripted::new(vec![("a", Script::Fail), ("b", Script::Wake(vec!["s1"]))]);
    let (ingest, woken) = ingest(&router);
    let events = [event("a"), event("b")];
    for on_invalid in [OnInvalid::Stop, OnInvalid::Skip] {
        let received = ingest.receive(&events, on_invalid);
        let stopped = received.stopped.as_ref().expect("stopped");
        assert_eq!(stopped.index, 0);
        assert!(matches!(stopped.error, RouteFailure::Failed(_)));
        assert_eq!(received.unrouted(&events).len(), 2);
    }
    assert!(woken.all().is_empty());
}

#[test]
fn an_invalid_event_stops_a_request_and_is_skipped_in_a_batch() {
    let router = Scripted::new(vec![
        ("a", Script::Wake(vec!["s1"])),
        ("bad", Script::Invalid),
        ("c", Script::Wake(vec!["s2"])),
    ]);
    let (ingest, _) = ingest(&router);
    let events = [event("a"), event("bad"), event("c")];

    let received = ingest.receive(&events, OnInvalid::Stop);
    let stopped = received.stopped.as_ref().expect("stopped");
    assert_eq!(stopped.index, 1);
    assert!(matches!(stopped.error, RouteFailure::Invalid(_)));
    assert_eq!(received.woken, [sid("s1")]);

    let received = ingest.receive(&events, OnInvalid::Skip);
    assert!(received.stopped.is_none());
    assert!(received.unrouted(&events).is_empty());
    assert_eq!(received.skipped.len(), 1);
    assert_eq!(received.skipped[0].0, 1);
    assert_eq!(received.reports.len(), 2);
    assert_eq!(received.woken, [sid("s1"), sid("s2")]);
}

#[tokio::test]
async fn an_async_caller_gets_its_events_back() {
    let router = Scripted::new(vec![("a", Script::Wake(vec!["s1"])), ("b", Script::Fail)]);
    let (ingest, woken) = ingest(&router);
    let (events, received) = ingest
        .receive_async(vec![event("a"), event("b")], OnInvalid::Stop)
        .await
        .unwrap();
    let unrouted: Vec<&str> = received
        .unrouted(&events)
        .iter()
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(unrouted, ["b"]);
    assert_eq!(woken.all(), [sid("s1")]);
}
