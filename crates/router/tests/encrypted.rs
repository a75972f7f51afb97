//! The router writing into real encrypted inbound queues, through a sink shaped like
//! the daemon's (provision the session's files, open its writer, append), and the
//! sandbox's reader seeing exactly what was routed.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use ironclaw_contract::db::Cipher;
use ironclaw_contract::enums::{
    EngageMode, IgnoredMessagePolicy, Provenance, Status, UnknownSenderPolicy,
};
use ironclaw_contract::ids::SessionId;
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::queue::{InboundReader, InboundWriter, QueueError};
use ironclaw_contract::rows::NewMessageIn;
use ironclaw_contract::time::Timestamp;
use ironclaw_queue::QueueFactory;
use ironclaw_router::{Appended, InboundSink, Reason, Router, RouterConfig, SinkError};
use support::*;

struct QueueSink {
    factory: QueueFactory,
    cipher: Cipher,
}

impl InboundSink for QueueSink {
    fn append(&self, session: &SessionId, msg: &NewMessageIn) -> Result<Appended, SinkError> {
        self.factory
            .provision(session, &self.cipher)
            .map_err(|e| SinkError::new("provision session queues", e))?;
        let mut writer = self
            .factory
            .inbound_writer(session, &self.cipher)
            .map_err(|e| SinkError::new("open inbound writer", e))?;
        match writer.write_message(msg) {
            Ok(_) => Ok(Appended::New),
            Err(QueueError::DuplicateId { .. }) => Ok(Appended::AlreadyQueued),
            Err(e) => Err(e.into()),
        }
    }
}

#[test]
fn routed_rows_land_encrypted_and_read_back_exactly() {
    let env = Env::new();
    let state = tempfile::tempdir().unwrap();
    let cipher = Cipher::Key(SessionKey::from_bytes([7; 32]));
    let factory = QueueFactory::new(HostLayout::new(state.path()));
    let router = Router::new(
        env.gateway.clone(),
        Arc::new(QueueSink {
            factory: factory.clone(),
            cipher: cipher.clone(),
        }),
        RouterConfig::default(),
    );
    let mg = env.mg("C1", UnknownSenderPolicy::Strict);
    env.wire({
        let mut w = mention(wiring("w1", &mg, "g1"), EngageMode::Mention);
        w.ignored_message_policy = IgnoredMessagePolicy::Accumulate;
        w
    });

    let mut context = event("alice", "some context");
    context.provenance = Provenance::Unverified;
    let r1 = router.route_inbound(&context).unwrap();
    assert_eq!(r1.outcomes[0].reason, Reason::Accumulated);
    let mut ask = event("alice", "@bot what now? — ünïcødé");
    ask.mentioned = true;
    ask.thread_id = Some("T1".into());
    let r2 = router.route_inbound(&ask).unwrap();
    assert_eq!(r2.outcomes[0].reason, Reason::Engaged);
    let session = r2.wake[0].clone();
    assert_eq!(r1.outcomes[0].session_id.as_ref(), Some(&session));

    let mut reader = factory.inbound_reader(&session, cipher).unwrap();
    let batch = reader.pending_messages(Timestamp::now()).unwrap();
    assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
    let rows = batch.rows;
    assert_eq!(rows.len(), 2);
    // Host rows get even, increasing seqs.
    assert!(rows.iter().all(|m| m.seq % 2 == 0));
    assert!(rows[0].seq < rows[1].seq);
    assert!(rows.iter().all(|m| m.status == Status::Queued));
    let (first, second) = (&rows[0].message, &rows[1].message);
    assert_eq!(Some(&first.id), r1.outcomes[0].message_id.as_ref());
    assert_eq!(first.content, "some context");
    assert!(!first.trigger);
    assert_eq!(first.provenance, Provenance::Unverified);
    assert_eq!(Some(&second.id), r2.outcomes[0].message_id.as_ref());
    assert_eq!(second.content, "@bot what now? — ünïcødé");
    assert!(second.trigger);
    assert_eq!(second.provenance, Provenance::Verified);
    assert_eq!(second.route.channel_type.as_deref(), Some("slack"));
    assert_eq!(second.route.platform_id.as_deref(), Some("C1"));
    assert_eq!(second.route.thread_id.as_deref(), Some("T1"));

    // On disk it is ciphertext: the text is nowhere in the file.
    let bytes = std::fs::read(factory.layout().inbound_db(&session)).unwrap();
    assert!(!bytes.windows(12).any(|w| w == b"some context"));

    // A wrong key cannot read it.
    let wrong = Cipher::Key(SessionKey::from_bytes([8; 32]));
    let refused = match factory.inbound_reader(&session, wrong) {
        Err(_) => true,
        Ok(mut r) => r.pending_messages(Timestamp::now()).is_err(),
    };
    assert!(refused);
}
