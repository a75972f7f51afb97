//! The engage loop against `MemoryQueue` and against real encrypted queue files.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ironclaw_agent::conversation::{Conversation, ModelTurn, ToolCall, ToolSpec};
use ironclaw_agent::engage::{
    outbound_id, reply_id, system_prompt, ALREADY_SENT_RESULT, TURN_LIMIT_MESSAGE,
};
use ironclaw_agent::provider::{MockProvider, Provider, ProviderError};
use ironclaw_agent::{Agent, ToolRegistry, Workspace, DEFAULT_MAX_TURNS};
use ironclaw_contract::actions::{parse_action, ActionBody};
use ironclaw_contract::db::Cipher;
use ironclaw_contract::enums::{ChangeKind, MessageKind, Status};
use ironclaw_contract::ids::{MessageId, SessionId};
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::queue::{InboundReader, InboundWriter, OutboundReader};
use ironclaw_contract::rows::{MessageIn, MessageOut, NewMessageIn, SessionRouting};
use ironclaw_contract::sandbox_queue::{EncryptedInboundReader, EncryptedOutboundWriter};
use ironclaw_contract::time::Timestamp;
use ironclaw_queue::{MemoryQueue, QueueFactory};
use ironclaw_testkit::message_in;
use serde_json::json;

fn inbound(id: &str, content: &str) -> NewMessageIn {
    message_in(id, content).route("slack", "C123").build()
}

fn routed_queue() -> MemoryQueue {
    let mut q = MemoryQueue::new();
    q.set_session_routing(&SessionRouting {
        channel_type: "slack".into(),
        platform_id: "C123".into(),
        thread_id: Some("t1".into()),
    })
    .unwrap();
    q
}

fn pending(q: &mut impl InboundReader) -> Vec<MessageIn> {
    q.pending_messages(Timestamp::now()).unwrap().rows
}

fn outbound_rows(q: &mut impl OutboundReader) -> Vec<MessageOut> {
    q.due_messages(Timestamp::now(), 0).unwrap().rows
}

fn all_tools() -> ToolRegistry {
    ToolRegistry::all()
}

#[test]
fn plain_message_gets_mock_reply_and_acks() {
    let mut q = routed_queue();
    q.write_message(&inbound("m1", "hello there")).unwrap();
    let batch = pending(&mut q);
    let mut agent = Agent::new(MockProvider, all_tools());
    let (mut inb, mut out) = (q.clone(), q.clone());
    let report = agent.engage(&batch, &mut inb, &mut out).unwrap();
    assert_eq!(report.turns, 1);
    assert_eq!(report.written, 1);
    let rows = outbound_rows(&mut q);
    assert_eq!(rows.len(), 1);
    let m = &rows[0].message;
    assert_eq!(m.content, "mock: [chat via slack C123]\nhello there");
    assert_eq!(m.in_reply_to.as_ref().unwrap().as_str(), "m1");
    assert_eq!(m.id, reply_id(&MessageId::new("m1").unwrap()));
    assert_eq!(m.id.as_str(), "out-m1-reply");
    assert_eq!(m.route.thread_id.as_deref(), Some("t1"));
    let acks = q.processing_acks(Status::Completed, None).unwrap().rows;
    assert_eq!(acks.len(), 1);
}

#[test]
fn a_shared_session_answers_in_the_thread_the_question_came_from() {
    let mut q = MemoryQueue::new();
    q.set_session_routing(&SessionRouting {
        channel_type: "slack".into(),
        platform_id: "C123".into(),
        thread_id: None,
    })
    .unwrap();
    let mut threaded = inbound("m1", "in a thread");
    threaded.route.thread_id = Some("1700000000.000100".into());
    q.write_message(&threaded).unwrap();
    let mut agent = Agent::new(MockProvider, all_tools());
    let batch = pending(&mut q);
    agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap();
    let rows = outbound_rows(&mut q);
    assert_eq!(
        rows[0].message.route.thread_id.as_deref(),
        Some("1700000000.000100")
    );
    // A thread of another chat never redirects the reply.
    let mut q = MemoryQueue::new();
    q.set_session_routing(&SessionRouting {
        channel_type: "slack".into(),
        platform_id: "C999".into(),
        thread_id: None,
    })
    .unwrap();
    q.write_message(&threaded).unwrap();
    let batch = pending(&mut q);
    agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap();
    let rows = outbound_rows(&mut q);
    assert_eq!(rows[0].message.route.platform_id.as_deref(), Some("C999"));
    assert_eq!(rows[0].message.route.thread_id, None);
}

#[test]
fn send_message_directive_writes_chat_row_then_reports() {
    let mut q = routed_queue();
    q.write_message(&inbound("m1", r#"tool:send_message {"text":"hi"}"#))
        .unwrap();
    let batch = pending(&mut q);
    let mut agent = Agent::new(MockProvider, all_tools());
    let report = agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap();
    assert_eq!((report.turns, report.tool_calls, report.written), (2, 1, 2));
    let rows = outbound_rows(&mut q);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].message.content, "hi");
    assert_eq!(rows[0].message.kind, MessageKind::Chat);
    assert_eq!(rows[0].message.in_reply_to, None);
    assert_eq!(rows[0].message.route.platform_id.as_deref(), Some("C123"));
    assert!(rows[1]
        .message
        .content
        .starts_with("mock: tool result: sent 2 bytes"));
    assert_eq!(rows[1].message.in_reply_to.as_ref().unwrap().as_str(), "m1");
}

#[test]
fn schedule_and_capability_directives_write_system_actions() {
    let mut q = routed_queue();
    q.write_message(&inbound(
        "m1",
        r#"tool:schedule_task {"prompt":"water the plants","recurrence":"daily"}"#,
    ))
    .unwrap();
    let batch = pending(&mut q);
    let mut agent = Agent::new(MockProvider, all_tools());
    agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap();

    q.write_message(&inbound(
        "m2",
        r#"please tool:request_capability_change {"kind":"packages","payload":{"add":["jq"]},"reason":"json"}"#,
    ))
    .unwrap();
    // The host sees m1's completed ack and retires it.
    q.retire(&[MessageId::new("m1").unwrap()]).unwrap();
    let batch = pending(&mut q);
    assert_eq!(batch.len(), 1, "m1 was retired");
    agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap();

    let rows = outbound_rows(&mut q);
    let system: Vec<_> = rows
        .iter()
        .filter(|r| r.message.kind == MessageKind::System)
        .collect();
    assert_eq!(system.len(), 2);
    match parse_action(system[0].message.content.as_bytes()).unwrap() {
        ActionBody::Schedule(r) => {
            assert_eq!(r.prompt, "water the plants");
            assert_eq!(r.recurrence, "daily");
        }
        other => panic!("{other:?}"),
    }
    match parse_action(system[1].message.content.as_bytes()).unwrap() {
        ActionBody::Envelope(a) => {
            assert_eq!(a.change_kind(), Some(ChangeKind::Packages));
            assert_eq!(a.payload, Some(json!({"add": ["jq"]})));
            assert_eq!(a.reason.as_deref(), Some("json"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(system[1].message.route.platform_id.as_deref(), Some("C123"));
    // Each engage also replied in chat.
    assert_eq!(rows.len(), 4);
}

#[test]
fn tool_not_offered_is_reported_to_the_model() {
    let mut q = routed_queue();
    q.write_message(&inbound("m1", r#"tool:schedule_task {"prompt":"x"}"#))
        .unwrap();
    let batch = pending(&mut q);
    // Only the mandatory tools: the mock does not call an unoffered tool.
    let none: [&str; 0] = [];
    let mut agent = Agent::new(MockProvider, ToolRegistry::for_group(&none).unwrap());
    agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap();
    let rows = outbound_rows(&mut q);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].message.content.starts_with("mock: "));
}

/// Calls `send_message` on every turn, then fails once `fail_after` calls were made.
struct Scripted {
    calls: usize,
    fail_after: Option<usize>,
    tool: &'static str,
    input: serde_json::Value,
}

impl Provider for Scripted {
    fn complete(
        &mut self,
        _c: &Conversation,
        _tools: &[ToolSpec],
    ) -> Result<ModelTurn, ProviderError> {
        self.calls += 1;
        if self.fail_after.is_some_and(|n| self.calls > n) {
            return Err(ProviderError::Transport("connection reset".into()));
        }
        Ok(ModelTurn {
            text: String::new(),
            tool_calls: vec![ToolCall {
                id: format!("call_{}", self.calls),
                name: self.tool.into(),
                input: self.input.clone(),
            }],
        })
    }
}

#[test]
fn turn_bound_ends_with_a_message_and_completes() {
    let mut q = routed_queue();
    q.write_message(&inbound("m1", "loop forever")).unwrap();
    let batch = pending(&mut q);
    let mut agent = Agent::new(
        Scripted {
            calls: 0,
            fail_after: None,
            tool: "read_persona",
            input: json!({}),
        },
        all_tools(),
    );
    let report = agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap();
    assert!(report.hit_turn_limit);
    assert_eq!(report.turns, DEFAULT_MAX_TURNS);
    assert_eq!(agent.provider.calls, DEFAULT_MAX_TURNS);
    let rows = outbound_rows(&mut q);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].message.content, TURN_LIMIT_MESSAGE);
    assert_eq!(
        q.processing_acks(Status::Completed, None)
            .unwrap()
            .rows
            .len(),
        1
    );
}

#[test]
fn retried_engage_writes_nothing_twice() {
    let mut q = routed_queue();
    q.write_message(&inbound("m1", "send three")).unwrap();
    let batch = pending(&mut q);
    // Attempt 1: three send_message calls go out, then the provider fails.
    let mut agent = Agent::new(
        Scripted {
            calls: 0,
            fail_after: Some(3),
            tool: "send_message",
            input: json!({"text": "progress"}),
        },
        all_tools(),
    );
    let err = agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap_err();
    assert!(err.is_provider());
    assert_eq!(outbound_rows(&mut q).len(), 3);
    assert!(q
        .processing_acks(Status::Completed, None)
        .unwrap()
        .rows
        .is_empty());
    assert_eq!(
        q.processing_acks(Status::Processing, None)
            .unwrap()
            .rows
            .len(),
        1
    );

    // Attempt 2 (same batch): the same three calls, then it would fail later.
    agent.provider = Scripted {
        calls: 0,
        fail_after: Some(5),
        tool: "send_message",
        input: json!({"text": "progress"}),
    };
    let err = agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap_err();
    assert!(err.is_provider());
    assert_eq!(outbound_rows(&mut q).len(), 5, "only slots 3 and 4 are new");

    // Attempt 3: the model now phrases slot 0 differently; it is not re-sent.
    agent.provider = Scripted {
        calls: 0,
        fail_after: Some(1),
        tool: "send_message",
        input: json!({"text": "other words"}),
    };
    let err = agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap_err();
    assert!(err.is_provider());
    let rows = outbound_rows(&mut q);
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.message.content == "progress"));

    // Final attempt with the mock succeeds: the reply has its own id, so it goes out;
    // replaying the finished engage writes nothing.
    let mut mock = Agent::new(MockProvider, all_tools());
    let r1 = mock.engage(&batch, &mut q.clone(), &mut q.clone()).unwrap();
    assert_eq!(r1.written, 1);
    let r2 = mock.engage(&batch, &mut q.clone(), &mut q.clone()).unwrap();
    assert_eq!((r2.written, r2.already_sent), (0, 1));
    let rows = outbound_rows(&mut q);
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[5].message.id, reply_id(&MessageId::new("m1").unwrap()));
    assert_eq!(
        q.processing_acks(Status::Completed, None)
            .unwrap()
            .rows
            .len(),
        1
    );
}

/// Records what the model was told.
struct Recording {
    inner: Scripted,
    seen: Vec<Conversation>,
}

impl Provider for Recording {
    fn complete(&mut self, c: &Conversation, t: &[ToolSpec]) -> Result<ModelTurn, ProviderError> {
        self.seen.push(c.clone());
        self.inner.complete(c, t)
    }
}

#[test]
fn retry_tells_the_model_when_a_step_was_already_sent() {
    let mut q = routed_queue();
    q.write_message(&inbound("m1", "x")).unwrap();
    let batch = pending(&mut q);
    let script = |text: &str, fail_after| Scripted {
        calls: 0,
        fail_after: Some(fail_after),
        tool: "send_message",
        input: json!({ "text": text }),
    };
    let mut agent = Agent::new(script("first words", 1), all_tools());
    agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap_err();
    let mut agent = Agent::new(
        Recording {
            inner: script("second words", 1),
            seen: vec![],
        },
        all_tools(),
    );
    agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap_err();
    let last = agent
        .provider
        .seen
        .last()
        .unwrap()
        .messages
        .last()
        .unwrap()
        .clone();
    match &last.content[0] {
        ironclaw_agent::Block::ToolResult {
            content, is_error, ..
        } => {
            assert_eq!(content, ALREADY_SENT_RESULT);
            assert!(is_error);
        }
        other => panic!("{other:?}"),
    }
    let rows = outbound_rows(&mut q);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].message.content, "first words");
}

#[test]
fn garbage_tool_arguments_are_errors_not_panics() {
    let mut q = routed_queue();
    q.write_message(&inbound("m1", "tool:write_file {not json at all}"))
        .unwrap();
    let batch = pending(&mut q);
    let mut agent = Agent::new(MockProvider, all_tools());
    agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap();
    let rows = outbound_rows(&mut q);
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]
            .message
            .content
            .starts_with("mock: tool error: write_file: bad input"),
        "{}",
        rows[0].message.content
    );
}

#[test]
fn provider_errors_are_typed() {
    let mut q = routed_queue();
    q.write_message(&inbound("m1", "x")).unwrap();
    let batch = pending(&mut q);
    struct Garbage;
    impl Provider for Garbage {
        fn complete(
            &mut self,
            _: &Conversation,
            _: &[ToolSpec],
        ) -> Result<ModelTurn, ProviderError> {
            Err(ProviderError::BadResponse(
                "expected value at line 1 column 1".into(),
            ))
        }
    }
    let mut agent = Agent::new(Garbage, all_tools());
    let err = agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap_err();
    assert!(err.is_provider());
    assert!(err.to_string().contains("not valid"), "{err}");
    assert!(outbound_rows(&mut q).is_empty());
}

#[test]
fn workspace_tools_through_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = routed_queue();
    q.write_message(&inbound(
        "m1",
        r#"tool:write_file {"path":"notes/a.txt","content":"FILE-42"}"#,
    ))
    .unwrap();
    q.write_message(&inbound(
        "m2",
        r#"tool:read_file {"path":"../../etc/passwd"}"#,
    ))
    .unwrap();
    let mut agent = Agent::new(MockProvider, all_tools());
    agent.workspace = Some(Workspace::open(dir.path()).unwrap());
    let batch = pending(&mut q);
    // The mock only follows the first directive of the prompt.
    agent
        .engage(&batch[..1], &mut q.clone(), &mut q.clone())
        .unwrap();
    agent
        .engage(&batch[1..], &mut q.clone(), &mut q.clone())
        .unwrap();
    let rows = outbound_rows(&mut q);
    assert_eq!(
        rows[0].message.content,
        "mock: tool result: wrote 7 bytes to notes/a.txt"
    );
    assert!(
        rows[1].message.content.contains("contains '..'"),
        "{}",
        rows[1].message.content
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes/a.txt")).unwrap(),
        "FILE-42"
    );
}

#[test]
fn system_prompt_frames_then_persona() {
    let base = system_prompt("  ");
    assert!(base.contains("request_capability_change") && base.contains("sandbox"));
    let p = system_prompt("You are a pirate.");
    assert!(p.starts_with(&base));
    assert!(p.ends_with("You are a pirate."));
}

#[test]
fn long_ids_stay_valid_and_distinct() {
    let a = MessageId::new("a".repeat(128)).unwrap();
    let b = MessageId::new(format!("{}b", "a".repeat(127))).unwrap();
    assert_ne!(outbound_id(&a, 1), outbound_id(&b, 1));
    assert_ne!(outbound_id(&a, 1), outbound_id(&a, 2));
    assert_eq!(
        outbound_id(&MessageId::new("m1").unwrap(), 3).as_str(),
        "out-m1-3"
    );
}

#[test]
fn end_to_end_over_encrypted_files() {
    let state = tempfile::tempdir().unwrap();
    let layout = HostLayout::new(state.path());
    let factory = QueueFactory::new(layout.clone());
    let sid = SessionId::new("sess-1").unwrap();
    let cipher = Cipher::Key(SessionKey::from_bytes([7; 32]));
    factory.provision(&sid, &cipher).unwrap();

    // Host side: routing and a message asking for a capability change.
    let mut host_in = factory.inbound_writer(&sid, &cipher).unwrap();
    host_in
        .set_session_routing(&SessionRouting {
            channel_type: "slack".into(),
            platform_id: "C123".into(),
            thread_id: None,
        })
        .unwrap();
    host_in
        .write_message(&inbound(
            "m1",
            r#"tool:request_capability_change {"kind":"enabled_tools","payload":{"add":["web_search"]}}"#,
        ))
        .unwrap();

    // Sandbox side: only the contract's handles.
    let mut reader = EncryptedInboundReader::open(layout.inbound_db(&sid), cipher.clone()).unwrap();
    let mut writer = EncryptedOutboundWriter::open(&layout.outbound_db(&sid), &cipher).unwrap();
    let batch = pending(&mut reader);
    assert_eq!(batch.len(), 1);
    let mut agent = Agent::new(
        MockProvider,
        ToolRegistry::for_group(&["send_message"]).unwrap(),
    );
    let r1 = agent.engage(&batch, &mut reader, &mut writer).unwrap();
    assert_eq!(r1.written, 2);
    // A retry of the same engage (e.g. after a crash before the host retired m1).
    let r2 = agent.engage(&batch, &mut reader, &mut writer).unwrap();
    assert_eq!((r2.written, r2.already_sent), (0, 2));

    // Host reads back.
    let mut host_out = factory.outbound_reader(&sid, cipher.clone()).unwrap();
    let rows = outbound_rows(&mut host_out);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].message.kind, MessageKind::System);
    match parse_action(rows[0].message.content.as_bytes()).unwrap() {
        ActionBody::Envelope(a) => {
            assert_eq!(a.change_kind(), Some(ChangeKind::EnabledTools));
            assert_eq!(a.payload, Some(json!({"add": ["web_search"]})));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rows[1].message.kind, MessageKind::Chat);
    assert!(rows[1]
        .message
        .content
        .starts_with("mock: tool result: submitted to the host"));
    assert!(rows.iter().all(|r| r.seq % 2 == 1));
    let acks = host_out
        .processing_acks(Status::Completed, None)
        .unwrap()
        .rows;
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].message_id.as_str(), "m1");
}
