//! One conformance suite, run against both backends: the durable SQLCipher files and
//! the in-memory queues. Every test is generated twice by `conformance!`.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ironclaw_contract::db::Cipher;
use ironclaw_contract::enums::{MessageKind, Provenance, Status};
use ironclaw_contract::ids::{MessageId, SessionId};
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::queue::{
    InboundReader, InboundWriter, OutboundReader, OutboundWriter, QueueError,
};
use ironclaw_contract::rows::{
    Destination, NewMessageIn, NewMessageOut, Route, SessionRouting, WriteOutcome, MAX_BATCH,
    MAX_CONTENT_BYTES,
};
use ironclaw_contract::sandbox_queue::EncryptedOutboundWriter;
use ironclaw_contract::time::Timestamp;
use ironclaw_queue::{MemoryQueue, QueueFactory};
use ironclaw_testkit::message_in;

/// The four handles of one session, as the host and the sandbox each hold them.
struct Session {
    host_in: Box<dyn InboundWriter>,
    sandbox_in: Box<dyn InboundReader>,
    sandbox_out: Box<dyn OutboundWriter>,
    host_out: Box<dyn OutboundReader>,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Session {
    let q = MemoryQueue::new();
    Session {
        host_in: Box::new(q.clone()),
        sandbox_in: Box::new(q.clone()),
        sandbox_out: Box::new(q.clone()),
        host_out: Box::new(q),
        _dir: None,
    }
}

fn durable() -> Session {
    let dir = tempfile::tempdir().unwrap();
    let factory = QueueFactory::new(HostLayout::new(dir.path()));
    let id = SessionId::new("ses_conformance").unwrap();
    let cipher = Cipher::Key(SessionKey::from_bytes([7; 32]));
    factory.provision(&id, &cipher).unwrap();
    let layout = factory.layout();
    Session {
        host_in: Box::new(factory.inbound_writer(&id, &cipher).unwrap()),
        sandbox_in: Box::new(factory.inbound_reader(&id, cipher.clone()).unwrap()),
        sandbox_out: Box::new(
            EncryptedOutboundWriter::open(&layout.outbound_db(&id), &cipher).unwrap(),
        ),
        host_out: Box::new(factory.outbound_reader(&id, cipher).unwrap()),
        _dir: Some(dir),
    }
}

fn mid(s: &str) -> MessageId {
    MessageId::new(s).unwrap()
}

fn inbound(id: &str, content: &str) -> NewMessageIn {
    message_in(id, content).route("web", "c1").build()
}

fn outbound(id: &str, content: &str) -> NewMessageOut {
    NewMessageOut {
        id: mid(id),
        in_reply_to: Some(mid("m1")),
        timestamp: Timestamp::now(),
        deliver_after: None,
        kind: MessageKind::Chat,
        route: Route::default(),
        content: content.to_owned(),
    }
}

fn later(secs: u64) -> Timestamp {
    Timestamp::now().saturating_add(Duration::from_secs(secs))
}

macro_rules! conformance {
    ($($name:ident => $body:expr;)+) => {
        mod memory_backend {
            use super::*;
            $( #[test] fn $name() { ($body)(memory()) } )+
        }
        mod durable_backend {
            use super::*;
            $( #[test] fn $name() { ($body)(durable()) } )+
        }
    };
}

conformance! {
    inbound_seqs_are_minted_even_and_increasing => |mut s: Session| {
        let seqs: Vec<i64> = (0..4).map(|i| s.host_in.write_message(&inbound(&format!("m{i}"), "x")).unwrap()).collect();
        assert_eq!(seqs, vec![2, 4, 6, 8]);
        let got = s.sandbox_in.pending_messages(Timestamp::now()).unwrap();
        assert_eq!(got.rows.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 4, 6, 8]);
        assert!(got.rejected.is_empty());
    };

    inbound_round_trip_keeps_every_field => |mut s: Session| {
        let mut m = inbound("m1", "hello");
        m.route.thread_id = Some("t9".into());
        m.source_session_id = Some(SessionId::new("ses_other").unwrap());
        m.series_id = Some("series".into());
        m.trigger = false;
        m.provenance = Provenance::Unverified;
        s.host_in.write_message(&m).unwrap();
        let got = s.sandbox_in.pending_messages(Timestamp::now()).unwrap().rows;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message, m);
        assert_eq!(got[0].status, Status::Queued);
        assert_eq!(got[0].tries, 0);
    };

    duplicate_inbound_id_is_refused => |mut s: Session| {
        s.host_in.write_message(&inbound("m1", "a")).unwrap();
        let e = s.host_in.write_message(&inbound("m1", "b")).unwrap_err();
        assert!(matches!(e, QueueError::DuplicateId { .. }), "{e}");
        assert_eq!(s.sandbox_in.pending_messages(Timestamp::now()).unwrap().rows.len(), 1);
    };

    scheduled_messages_wait_until_due => |mut s: Session| {
        let mut future = inbound("later", "run later");
        future.process_after = Some(later(3600));
        future.recurrence = Some("daily".into());
        let mut past = inbound("past", "run now");
        past.process_after = Some(Timestamp::parse("2020-01-01T00:00:00Z").unwrap());
        s.host_in.write_message(&future).unwrap();
        s.host_in.write_message(&past).unwrap();
        s.host_in.write_message(&inbound("now", "now")).unwrap();
        let pending: Vec<String> = s.sandbox_in.pending_messages(Timestamp::now()).unwrap().rows.iter().map(|m| m.id().to_string()).collect();
        assert_eq!(pending, vec!["past", "now"]);
        let in_two_hours = later(7200);
        assert_eq!(s.sandbox_in.pending_messages(in_two_hours).unwrap().rows.len(), 3);
        let scheduled = s.sandbox_in.scheduled_messages().unwrap().rows;
        assert_eq!(scheduled.iter().map(|m| m.id().to_string()).collect::<Vec<_>>(), vec!["later", "past"]);
        assert!(scheduled.iter().all(|m| m.status == Status::Scheduled));
    };

    retired_messages_disappear_from_pending => |mut s: Session| {
        s.host_in.write_message(&inbound("m1", "a")).unwrap();
        s.host_in.write_message(&inbound("m2", "b")).unwrap();
        assert_eq!(s.host_in.retire(&[mid("m1"), mid("unknown")]).unwrap(), 1);
        assert_eq!(s.host_in.retire(&[mid("m1")]).unwrap(), 0);
        let pending = s.sandbox_in.pending_messages(Timestamp::now()).unwrap().rows;
        assert_eq!(pending.iter().map(|m| m.id().to_string()).collect::<Vec<_>>(), vec!["m2"]);
        // The retired row keeps its seq: the next write is not a reuse.
        assert_eq!(s.host_in.write_message(&inbound("m3", "c")).unwrap(), 6);
    };

    reads_are_bounded_by_max_batch => |mut s: Session| {
        for i in 0..(MAX_BATCH + 5) {
            s.host_in.write_message(&inbound(&format!("m{i}"), "x")).unwrap();
        }
        let got = s.sandbox_in.pending_messages(Timestamp::now()).unwrap().rows;
        assert_eq!(got.len(), MAX_BATCH);
        assert_eq!(got[0].seq, 2);
    };

    oversized_content_is_refused_by_writers => |mut s: Session| {
        let big = "x".repeat(MAX_CONTENT_BYTES + 1);
        assert!(matches!(s.host_in.write_message(&inbound("m1", &big)), Err(QueueError::Invalid { .. })));
        assert!(matches!(s.sandbox_out.write_message(&outbound("o1", &big)), Err(QueueError::Invalid { .. })));
        let fits = "y".repeat(MAX_CONTENT_BYTES);
        s.sandbox_out.write_message(&outbound("o2", &fits)).unwrap();
        assert_eq!(s.host_out.due_messages(Timestamp::now(), 0).unwrap().rows[0].message.content.len(), MAX_CONTENT_BYTES);
    };

    destinations_and_routing_round_trip => |mut s: Session| {
        assert_eq!(s.sandbox_in.session_routing().unwrap(), None);
        assert!(s.sandbox_in.destinations().unwrap().is_empty());
        let r = SessionRouting { channel_type: "slack".into(), platform_id: "C1".into(), thread_id: Some("t".into()) };
        s.host_in.set_session_routing(&r).unwrap();
        let r2 = SessionRouting { thread_id: None, ..r };
        s.host_in.set_session_routing(&r2).unwrap();
        assert_eq!(s.sandbox_in.session_routing().unwrap(), Some(r2));
        let d = |name: &str, display: &str| Destination {
            name: name.into(),
            display_name: Some(display.into()),
            kind: "channel".into(),
            channel_type: Some("slack".into()),
            platform_id: Some("C2".into()),
            agent_group_id: None,
        };
        s.host_in.upsert_destinations(&[d("zeta", "Z"), d("alpha", "A")]).unwrap();
        s.host_in.upsert_destinations(&[d("zeta", "Z2")]).unwrap();
        let got = s.sandbox_in.destinations().unwrap();
        assert_eq!(got, vec![d("alpha", "A"), d("zeta", "Z2")]);
    };

    outbound_seqs_are_minted_odd_and_writes_are_idempotent => |mut s: Session| {
        let a = outbound("o1", "first");
        assert_eq!(s.sandbox_out.write_message(&a).unwrap(), WriteOutcome::Written { seq: 1 });
        assert_eq!(s.sandbox_out.write_message(&outbound("o2", "second")).unwrap(), WriteOutcome::Written { seq: 3 });
        // A retried engage writes the same message again: stored once.
        let mut retried = a.clone();
        retried.timestamp = later(5);
        assert_eq!(s.sandbox_out.write_message(&retried).unwrap(), WriteOutcome::AlreadyPresent { seq: 1 });
        // Reusing the id for different content is a bug, not a retry.
        let e = s.sandbox_out.write_message(&outbound("o1", "different")).unwrap_err();
        assert!(matches!(e, QueueError::IdempotencyConflict { .. }), "{e}");
        let due = s.host_out.due_messages(Timestamp::now(), 0).unwrap();
        assert_eq!(due.rows.iter().map(|m| (m.seq, m.message.content.as_str())).collect::<Vec<_>>(), vec![(1, "first"), (3, "second")]);
        assert_eq!(due.rows[0].message, a);
        assert_eq!(s.host_out.due_messages(Timestamp::now(), 1).unwrap().rows.len(), 1);
        assert_eq!(s.host_out.due_messages(Timestamp::now(), 3).unwrap().rows.len(), 0);
    };

    outbound_deliver_after_is_honoured => |mut s: Session| {
        let mut m = outbound("o1", "later");
        m.deliver_after = Some(later(60));
        s.sandbox_out.write_message(&m).unwrap();
        s.sandbox_out.write_message(&outbound("o2", "now")).unwrap();
        let now: Vec<i64> = s.host_out.due_messages(Timestamp::now(), 0).unwrap().rows.iter().map(|m| m.seq).collect();
        assert_eq!(now, vec![3]);
        assert_eq!(s.host_out.due_messages(later(120), 0).unwrap().rows.len(), 2);
    };

    acks_move_forward_only => |mut s: Session| {
        s.sandbox_out.mark_processing(&[]).unwrap();
        s.sandbox_out.mark_processing(&[mid("m1"), mid("m2")]).unwrap();
        let processing = s.host_out.processing_acks(Status::Processing, None).unwrap().rows;
        assert_eq!(processing.iter().map(|a| a.message_id.to_string()).collect::<Vec<_>>(), vec!["m1", "m2"]);
        s.sandbox_out.mark_completed(&[mid("m1")]).unwrap();
        // A retry of m1 must not make it look unfinished again.
        s.sandbox_out.mark_processing(&[mid("m1")]).unwrap();
        let completed = s.host_out.processing_acks(Status::Completed, None).unwrap().rows;
        assert_eq!(completed.len(), 1);
        assert_eq!(completed[0].message_id, mid("m1"));
        assert_eq!(s.host_out.processing_acks(Status::Processing, None).unwrap().rows.len(), 1);
        assert_eq!(s.sandbox_out.completed_among(&[mid("m1"), mid("m2"), mid("m3")]).unwrap(), vec![mid("m1")]);
        // Claimed and never completed: only m2 (m1 finished, m3 was never claimed).
        assert_eq!(s.sandbox_out.claimed_among(&[mid("m1"), mid("m2"), mid("m3")]).unwrap(), vec![mid("m2")]);
    };

    ack_cursor_resumes_after_the_last_seen => |mut s: Session| {
        let ids: Vec<MessageId> = (0..5).map(|i| mid(&format!("m{i}"))).collect();
        s.sandbox_out.mark_completed(&ids[..3]).unwrap();
        let first = s.host_out.processing_acks(Status::Completed, None).unwrap().rows;
        assert_eq!(first.len(), 3);
        let cursor = first.last().unwrap().cursor();
        assert!(s.host_out.processing_acks(Status::Completed, Some(&cursor)).unwrap().rows.is_empty());
        std::thread::sleep(Duration::from_millis(2));
        s.sandbox_out.mark_completed(&ids[3..]).unwrap();
        let next = s.host_out.processing_acks(Status::Completed, Some(&cursor)).unwrap().rows;
        assert_eq!(next.iter().map(|a| a.message_id.to_string()).collect::<Vec<_>>(), vec!["m3", "m4"]);
    };

    session_state_round_trips => |mut s: Session| {
        s.sandbox_out.put_state("loop.buffer", "[1]").unwrap();
        s.sandbox_out.put_state("reset_at", "x").unwrap();
        s.sandbox_out.put_state("loop.buffer", "[2]").unwrap();
        let st = s.sandbox_out.load_state().unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st["loop.buffer"], "[2]");
    };

    delivery_records_are_durable_dedup => |mut s: Session| {
        let o = mid("out-1");
        assert_eq!(s.host_in.delivery(&o).unwrap(), None);
        s.host_in.mark_dead_letter(&mid("out-2"), 5, "HTTP 500").unwrap();
        assert!(s.host_in.mark_delivered(&o, Some("ts.1")).unwrap());
        assert!(!s.host_in.mark_delivered(&o, Some("ts.2")).unwrap());
        let r = s.host_in.delivery(&o).unwrap().unwrap();
        assert_eq!((r.status, r.platform_message_id.as_deref()), (Status::Delivered, Some("ts.1")));
        // A delivered message is never downgraded to dead letter.
        s.host_in.mark_dead_letter(&o, 9, "late failure").unwrap();
        assert_eq!(s.host_in.delivery(&o).unwrap().unwrap().status, Status::Delivered);
        let dl = s.host_in.delivery(&mid("out-2")).unwrap().unwrap();
        assert_eq!((dl.status, dl.attempts, dl.last_error.as_deref()), (Status::DeadLetter, 5, Some("HTTP 500")));
        assert!(s.host_in.mark_dead_letter(&o, -1, "x").is_err());
        // A dead letter can still be delivered by a later manual retry.
        assert!(s.host_in.mark_delivered(&mid("out-2"), None).unwrap());
    };
}
