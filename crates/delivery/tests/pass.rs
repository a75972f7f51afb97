//! Delivery passes over a session's real encrypted queue files, rows written as the
//! sandbox writes them: every row delivered exactly once, also past the first page of a
//! read (a session with more replies than one read returns), and a row not yet due
//! is waited for, never skipped.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use ironclaw_contract::db::Cipher;
use ironclaw_contract::enums::MessageKind;
use ironclaw_contract::ids::{MessageId, SessionId};
use ironclaw_contract::queue::OutboundWriter;
use ironclaw_contract::rows::{NewMessageOut, Route, MAX_BATCH};
use ironclaw_contract::sandbox_queue::EncryptedOutboundWriter;
use ironclaw_contract::time::Timestamp;
use ironclaw_delivery::{A2aLimits, Address, Delivery, Dispatcher, Failure};
use ironclaw_gateway::{Chain, ChangeStore, Gateway};
use ironclaw_testkit::SessionWorld;

/// Records what it was asked to send.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(String, String)>>,
}

impl Dispatcher for Recorder {
    fn send(
        &self,
        to: &Address,
        text: &str,
        _message_id: &MessageId,
    ) -> Result<Option<String>, Failure> {
        self.sent
            .lock()
            .unwrap()
            .push((to.platform_id.clone(), text.to_owned()));
        Ok(None)
    }
}

struct World {
    _world: SessionWorld,
    delivery: Delivery,
    recorder: Arc<Recorder>,
    writer: EncryptedOutboundWriter,
    session: SessionId,
}

fn world() -> World {
    // The agent is never launched: the rows below are written as the agent would write them.
    let w = SessionWorld::builder().build();
    w.manager.provision_queues(&w.session).unwrap();
    // The test writes outbound as the agent would, with the key the agent is handed.
    let cipher = Cipher::Key(w.keys.get_or_create(&w.session).unwrap());
    let writer = EncryptedOutboundWriter::open(&w.layout.outbound_db(&w.session), &cipher).unwrap();
    let gateway = Arc::new(Gateway::new(
        ChangeStore::in_memory().unwrap(),
        w.registry.clone(),
        w.audit.clone(),
        Chain::standard(w.root().join("mounts")),
    ));
    let recorder = Arc::new(Recorder::default());
    let delivery = Delivery::new(
        w.manager.clone(),
        w.registry.clone(),
        gateway,
        recorder.clone(),
        A2aLimits {
            hop_limit: 3,
            sends_per_minute: 60,
        },
    );
    World {
        session: w.session.clone(),
        _world: w,
        delivery,
        recorder,
        writer,
    }
}

fn reply(id: &str, text: &str, deliver_after: Option<Timestamp>) -> NewMessageOut {
    NewMessageOut {
        id: MessageId::new(id).unwrap(),
        in_reply_to: None,
        timestamp: Timestamp::now(),
        deliver_after,
        kind: MessageKind::Chat,
        route: Route::default(),
        content: text.into(),
    }
}

#[test]
fn a_session_with_more_replies_than_a_read_returns_gets_every_one_exactly_once() {
    let mut w = world();
    let n = MAX_BATCH + 37;
    for i in 0..n {
        w.writer
            .write_message(&reply(&format!("r{i}"), &format!("reply {i}"), None))
            .unwrap();
    }
    // A pass delivers for at most PASS_BUDGET, then the next one goes on.
    let mut delivered = 0;
    let mut passes = 0;
    while delivered < n {
        let r = w.delivery.pass(&w.session).unwrap();
        assert!(r.delivered > 0, "a pass made no progress after {delivered}");
        delivered += r.delivered;
        passes += 1;
        assert!(passes < 100, "too many passes");
    }
    assert_eq!(delivered, n);
    // Later passes find nothing new, then exactly what is new.
    assert_eq!(w.delivery.pass(&w.session).unwrap().delivered, 0);
    w.writer
        .write_message(&reply("late", "one more", None))
        .unwrap();
    assert_eq!(w.delivery.pass(&w.session).unwrap().delivered, 1);
    let sent = w.recorder.sent.lock().unwrap();
    assert_eq!(sent.len(), n + 1);
    let mut texts: Vec<&str> = sent.iter().map(|(_, t)| t.as_str()).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), n + 1, "a reply was sent twice");
    assert!(sent.iter().all(|(to, _)| to == "c1"));
}

#[test]
fn a_reply_not_yet_due_is_waited_for_and_not_skipped() {
    let mut w = world();
    let soon = Timestamp::from_unix_nanos(Timestamp::now().unix_nanos() + 400_000_000).unwrap();
    w.writer.write_message(&reply("a", "now", None)).unwrap();
    w.writer
        .write_message(&reply("b", "later", Some(soon)))
        .unwrap();
    w.writer
        .write_message(&reply("c", "now too", None))
        .unwrap();
    assert_eq!(w.delivery.pass(&w.session).unwrap().delivered, 2);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(w.delivery.pass(&w.session).unwrap().delivered, 1);
    let sent: Vec<String> = w
        .recorder
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|(_, t)| t.clone())
        .collect();
    assert_eq!(sent, ["now", "now too", "later"]);
}
