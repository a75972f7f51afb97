//! The agent's Anthropic client against the model proxy's `mock` provider over a real
//! session socket: a tool call round trip, equivalence with the agent's in-process
//! mock, and a refusal reaching the agent as a status.
//!
//! These tests join two crates that do not depend on each other (the in-sandbox agent
//! and the host model proxy; both speak the mock directive grammar of
//! `ironclaw-mock-directive`), so they live here rather than in either crate.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use ironclaw_agent::http::UnixHttp;
use ironclaw_agent::provider::MOCK_TOOL_CALL_ID;
use ironclaw_agent::{
    AnthropicProvider, Conversation, Message, MockProvider, ModelTurn, Provider, ToolSpec,
};
use ironclaw_audit::{AuditEvent, AuditLog};
use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_modelproxy::{ModelProxy, ProxyConfig, RateLimit, SessionListener};
use serde_json::json;

const MOCK: &str = "/mock/v1/messages";

/// A model proxy with no upstream provider (the tests enable the mock) and its audit log.
struct Env {
    dir: tempfile::TempDir,
    audit: Arc<AuditLog>,
    proxy: Arc<ModelProxy>,
}

impl Env {
    async fn new(tweak: impl FnOnce(&mut ProxyConfig)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let audit = Arc::new(AuditLog::open(&dir.path().join("audit.jsonl")).unwrap());
        let mut cfg = ProxyConfig::from_lookup(|_| None).unwrap();
        tweak(&mut cfg);
        let proxy = ModelProxy::new(cfg, Arc::clone(&audit)).unwrap();
        Env { dir, audit, proxy }
    }

    fn sock(&self, session: &str) -> PathBuf {
        self.dir
            .path()
            .join("modelproxy.sock.d")
            .join(format!("{session}.sock"))
    }

    async fn session(&self, session: &str, group: &str) -> SessionListener {
        self.proxy
            .listen(
                SessionId::new(session).unwrap(),
                AgentGroupId::new(group).unwrap(),
                &self.sock(session),
            )
            .await
            .unwrap()
    }

    /// Every `ModelCall` audit event so far (after flushing the writer).
    fn model_calls(&self) -> Vec<AuditEvent> {
        self.proxy.flush_audit();
        self.audit
            .tail(10_000)
            .unwrap()
            .iter()
            .map(|r| r.event().unwrap())
            .filter(|e| matches!(e, AuditEvent::ModelCall { .. }))
            .collect()
    }
}

fn spec(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: format!("the {name} tool"),
        input_schema: json!({"type": "object"}),
    }
}

/// The agent's Anthropic client pointed at the proxied mock on `sock`.
fn client(sock: &std::path::Path) -> AnthropicProvider {
    AnthropicProvider::new(UnixHttp::new(sock), "mock-model").with_path(MOCK)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_anthropic_client_round_trips_a_tool_call_through_the_mock() {
    let env = Env::new(|c| c.enable_mock()).await;
    let l = env.session("ses-1", "grp-a").await;
    let sock = l.path().to_owned();
    let turns = tokio::task::spawn_blocking(move || {
        let tools = [spec("read_file"), spec("send_message")];
        let mut remote = client(&sock);
        let mut conv = Conversation {
            system: "You are a test.".into(),
            messages: vec![Message::user_text(
                r#"please tool:read_file {"path": "/workspace/notes.md"} now"#,
            )],
        };
        // Turn 1: the directive becomes a tool call, as in-process.
        let t1 = remote.complete(&conv, &tools).unwrap();
        assert_eq!(t1, MockProvider.complete(&conv, &tools).unwrap());
        assert_eq!(t1.text, "");
        assert_eq!(t1.tool_calls.len(), 1);
        assert_eq!(t1.tool_calls[0].id, MOCK_TOOL_CALL_ID);
        assert_eq!(t1.tool_calls[0].name, "read_file");
        assert_eq!(
            t1.tool_calls[0].input,
            json!({"path": "/workspace/notes.md"})
        );
        // Turn 2: the tool result goes back and is reported.
        conv.messages.push(Message::assistant(&t1));
        conv.messages.push(Message::tool_results(vec![
            ironclaw_agent::conversation::ToolResult {
                tool_use_id: t1.tool_calls[0].id.clone(),
                content: "NOTES-CONTENT-17".into(),
                is_error: false,
            },
        ]));
        let t2 = remote.complete(&conv, &tools).unwrap();
        assert_eq!(t2, MockProvider.complete(&conv, &tools).unwrap());
        assert_eq!(t2, ModelTurn::text("mock: tool result: NOTES-CONTENT-17"));
        // An error result, then a plain follow-up message.
        conv.messages.pop();
        conv.messages.push(Message::tool_results(vec![
            ironclaw_agent::conversation::ToolResult {
                tool_use_id: MOCK_TOOL_CALL_ID.into(),
                content: "no such file".into(),
                is_error: true,
            },
        ]));
        let t3 = remote.complete(&conv, &tools).unwrap();
        assert_eq!(t3, ModelTurn::text("mock: tool error: no such file"));
        conv.messages.push(Message::assistant(&t3));
        conv.messages.push(Message::user_text("  thanks  "));
        let t4 = remote.complete(&conv, &tools).unwrap();
        assert_eq!(t4, ModelTurn::text("mock: thanks"));
        4
    })
    .await
    .unwrap();
    let calls = env.model_calls();
    assert_eq!(calls.len(), turns);
    assert!(calls.iter().all(|c| matches!(
        c,
        AuditEvent::ModelCall { provider, status: 200, input_tokens, .. }
            if provider == "mock" && *input_tokens > 0
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxied_mock_takes_the_same_turns_as_the_in_process_mock() {
    let env = Env::new(|c| {
        c.enable_mock();
        c.session_rate = None;
        c.group_rate = None;
    })
    .await;
    let l = env.session("ses-1", "grp-a").await;
    let sock = l.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut remote = client(&sock);
        let offered = [spec("read_file"), spec("send_message")];
        let texts = [
            "hello",
            "   spaced out\n",
            "",
            "tool:read_file",
            "tool:read_file {\"path\": \"a\"}",
            "tool:read_file {not json}",
            "tool:send_message {\"text\": \"hi\"} and } trailing",
            "tool:exec {\"cmd\": \"rm -rf /\"}",
            "tool: read_file {}",
            "tool:read_file2 {}",
            "before tool:send_message{\"a\":[1,{\"b\":2}]}",
            "unicode ✓ tool:read_file {\"p\": \"é\"}",
            "} reversed {",
        ];
        for text in texts {
            for tools in [&offered[..], &[]] {
                let conv = Conversation {
                    system: String::new(),
                    messages: vec![Message::user_text(text)],
                };
                let want = MockProvider.complete(&conv, tools).unwrap();
                let got = remote.complete(&conv, tools).unwrap();
                assert_eq!(got, want, "text {text:?}, {} tools", tools.len());
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_reaches_the_agent_as_a_status_even_with_a_large_body() {
    let env = Env::new(|c| {
        c.enable_mock();
        c.session_rate = Some(RateLimit {
            per_second: 0.01,
            burst: 1,
        });
    })
    .await;
    let l = env.session("ses-1", "grp-a").await;
    let sock = l.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut remote = client(&sock);
        // A long conversation: the body is still being written when the proxy refuses.
        let conv = Conversation {
            system: String::new(),
            messages: vec![Message::user_text("z".repeat(2 * 1024 * 1024))],
        };
        remote.complete(&conv, &[]).unwrap();
        for _ in 0..5 {
            match remote.complete(&conv, &[]) {
                Err(ironclaw_agent::ProviderError::Status { status, message }) => {
                    assert_eq!(status, 429);
                    assert!(message.contains("rate cap"), "{message}");
                }
                other => panic!("expected a 429, got {other:?}"),
            }
        }
    })
    .await
    .unwrap();
}
