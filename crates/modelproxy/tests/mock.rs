//! The proxy's own `mock` provider over real unix sockets: the agent's Anthropic client
//! against it, equivalence with the agent's in-process mock, refusals, caps, budgets,
//! audit, and the base socket.

mod common;

use common::*;
use ironclaw_agent::http::UnixHttp;
use ironclaw_agent::provider::MOCK_TOOL_CALL_ID;
use ironclaw_agent::{
    AnthropicProvider, Conversation, Message, MockProvider, ModelTurn, Provider, ToolSpec,
};
use ironclaw_audit::AuditEvent;
use ironclaw_modelproxy::{
    ProviderConfig, ProviderKind, ProxyConfig, ProxyError, RateLimit, BASE_GROUP, BASE_SESSION,
};
use serde_json::json;

const MOCK: &str = "/mock/v1/messages";

fn assert_proxy_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["type"], "ironclaw_proxy", "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
}

fn body(text: &str) -> Vec<u8> {
    json!({
        "model": "mock-model", "max_tokens": 100,
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
    })
    .to_string()
    .into_bytes()
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
async fn mock_answers_on_a_session_socket_with_no_upstream_and_is_audited() {
    let env = Env::new(|c| c.enable_mock()).await;
    let l = env.session("ses-1", "grp-a").await;
    let r = call(
        l.path(),
        "POST",
        MOCK,
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer sandbox-forged"),
        ],
        &body("  hello  "),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "mock-model");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "mock: hello"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    let (inp, out) = (
        v["usage"]["input_tokens"].as_u64().unwrap(),
        v["usage"]["output_tokens"].as_u64().unwrap(),
    );
    assert_eq!(inp, (body("  hello  ").len() as u64).div_ceil(4));
    assert!(out > 0);
    assert_eq!(env.fake.count(), 0, "the mock has no upstream");

    let st = env.proxy.stats();
    assert_eq!(st.calls["mock"][&200], 1);
    assert_eq!((st.input_tokens, st.output_tokens), (inp, out));
    assert_eq!(env.proxy.session_tokens(&sid("ses-1")), inp + out);
    let calls = env.model_calls();
    assert_eq!(calls.len(), 1);
    let AuditEvent::ModelCall {
        session_id,
        agent_group_id,
        provider,
        path,
        status,
        request_bytes,
        response_bytes,
        input_tokens,
        output_tokens,
        ..
    } = &calls[0]
    else {
        unreachable!()
    };
    assert_eq!(
        (session_id.as_str(), agent_group_id.as_str()),
        ("ses-1", "grp-a")
    );
    assert_eq!(
        (provider.as_str(), path.as_str(), *status),
        ("mock", "/v1/messages", 200)
    );
    assert_eq!(*request_bytes, body("  hello  ").len() as u64);
    assert_eq!(*response_bytes, r.body.len() as u64);
    assert_eq!((*input_tokens, *output_tokens), (inp, out));
    let raw = std::fs::read_to_string(&env.audit_path).unwrap();
    assert!(!raw.contains("hello"), "the audit record holds no content");
    l.shutdown().await;
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
async fn the_mock_is_refused_unless_enabled() {
    let env = Env::new(|_| {}).await;
    let l = env.session("ses-1", "grp-a").await;
    let r = call(l.path(), "POST", MOCK, &[], &body("hello")).await;
    assert_proxy_error(&r, 403, "provider_not_configured");
    let calls = env.model_calls();
    assert!(matches!(
        &calls[..],
        [AuditEvent::ModelCall { provider, status: 403, .. }] if provider == "mock"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_to_the_mock_is_a_400_json_error_never_a_crash() {
    let env = Env::new(|c| {
        c.enable_mock();
        c.session_rate = None;
        c.group_rate = None;
    })
    .await;
    let l = env.session("ses-1", "grp-a").await;
    let cases: &[(&[u8], &str)] = &[
        (b"", "bad_request"),
        (b"not json", "bad_request"),
        (b"\xff\xfe\x00", "bad_request"),
        (b"null", "bad_request"),
        (b"{\"messages\": 3}", "bad_request"),
        (
            b"{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}",
            "bad_request",
        ),
        (
            b"{\"messages\": [{\"role\": \"user\", \"content\": [null]}]}",
            "bad_request",
        ),
        (
            b"{\"messages\": [], \"tools\": [{\"name\": 1}]}",
            "bad_request",
        ),
        (
            b"{\"messages\": [], \"stream\": true}",
            "stream_not_supported",
        ),
    ];
    for (b, code) in cases {
        let r = call(l.path(), "POST", MOCK, &[], b).await;
        assert_proxy_error(&r, 400, code);
    }
    // Still serving.
    let r = call(l.path(), "POST", MOCK, &[], &body("still here")).await;
    assert_eq!(r.json()["content"][0]["text"], "mock: still here");
    // Other routes of the mock are refused like any provider's.
    for (method, path, status, code) in [
        (
            "POST",
            "/mock/v1/messages/count_tokens",
            403,
            "path_not_allowed",
        ),
        ("POST", "/mock/v1/chat/completions", 403, "path_not_allowed"),
        ("GET", MOCK, 403, "method_not_allowed"),
        ("POST", "/mock/v1/messages?x=1", 403, "query_not_allowed"),
    ] {
        let r = call(l.path(), method, path, &[], &body("x")).await;
        assert_proxy_error(&r, status, code);
    }
    let st = env.proxy.stats();
    assert_eq!(st.refusals["bad_request"], 8);
    assert_eq!(st.refusals["stream_not_supported"], 1);
    assert_eq!(st.calls["mock"][&400], 9);
    assert_eq!(env.model_calls().len(), cases.len() + 1 + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_calls_meet_the_size_cap_rate_cap_and_budget() {
    // Size cap: 413 before the mock sees the body.
    let env = Env::new(|c| {
        c.enable_mock();
        c.max_request_bytes = 256;
    })
    .await;
    let l = env.session("ses-1", "grp-a").await;
    let r = call(l.path(), "POST", MOCK, &[], &body(&"x".repeat(1000))).await;
    assert_proxy_error(&r, 413, "request_too_large");
    let r = call(l.path(), "POST", MOCK, &[], &body("small")).await;
    assert_eq!(r.status, 200);

    // Response cap: the mock's answer is held to it too.
    let env = Env::new(|c| {
        c.enable_mock();
        c.max_response_bytes = 64;
    })
    .await;
    let l = env.session("ses-1", "grp-a").await;
    let r = call(l.path(), "POST", MOCK, &[], &body("a long enough reply")).await;
    assert_proxy_error(&r, 502, "response_too_large");

    // Rate cap.
    let env = Env::new(|c| {
        c.enable_mock();
        c.session_rate = Some(RateLimit {
            per_second: 0.2,
            burst: 2,
        });
    })
    .await;
    let l = env.session("ses-1", "grp-a").await;
    for _ in 0..2 {
        assert_eq!(
            call(l.path(), "POST", MOCK, &[], &body("hi")).await.status,
            200
        );
    }
    let r = call(l.path(), "POST", MOCK, &[], &body("hi")).await;
    assert_proxy_error(&r, 429, "rate_limited");
    assert!(r.header("retry-after").is_some());

    // Token budget: the reported usage counts, parks the session, resume clears it.
    let env = Env::new(|c| {
        c.enable_mock();
        c.session_token_budget = Some(60);
    })
    .await;
    let l = env.session("ses-1", "grp-a").await;
    let s1 = sid("ses-1");
    let r = call(l.path(), "POST", MOCK, &[], &body("hi")).await;
    assert_eq!(r.status, 200);
    let first = env.proxy.session_tokens(&s1);
    assert!(first > 0 && first < 60, "{first}");
    assert!(!env.proxy.is_parked(&s1));
    let r = call(l.path(), "POST", MOCK, &[], &body(&"y".repeat(400))).await;
    assert_eq!(r.status, 200);
    assert!(env.proxy.is_parked(&s1));
    let r = call(l.path(), "POST", MOCK, &[], &body("hi")).await;
    assert_proxy_error(&r, 429, "session_parked");
    assert!(env
        .events()
        .iter()
        .any(|e| matches!(e, AuditEvent::SessionParked { session_id, .. } if *session_id == s1)));
    assert!(env.proxy.resume(&s1));
    let r = call(l.path(), "POST", MOCK, &[], &body("hi")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_socket_serves_the_mock_under_its_own_identity() {
    let env = Env::new(|c| c.enable_mock()).await;
    let path = env.dir.path().join("run").join("modelproxy.sock");
    let base = env.proxy.serve_base(&path).await.unwrap();
    let r = call(&path, "GET", "/healthz", &[], b"").await;
    assert_eq!(
        r.json()["providers"],
        json!(["anthropic", "openai", "mock"])
    );
    let r = call(&path, "POST", MOCK, &[], &body("hello")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["content"][0]["text"], "mock: hello");
    // Real providers are not reachable from the base socket.
    let r = call(
        &path,
        "POST",
        "/anthropic/v1/messages",
        &[],
        &anthropic_body(false),
    )
    .await;
    assert_proxy_error(&r, 404, "not_found");
    assert_eq!(env.fake.count(), 0);
    let calls = env.model_calls();
    assert_eq!(calls.len(), 1);
    assert!(matches!(
        &calls[0],
        AuditEvent::ModelCall { session_id, agent_group_id, provider, status: 200, .. }
            if session_id.as_str() == BASE_SESSION
                && agent_group_id.as_str() == BASE_GROUP
                && provider == "mock"
    ));
    base.shutdown().await;
    assert!(!path.exists());

    // Without the mock, the base socket refuses it like a session would.
    let env = Env::new(|_| {}).await;
    let path = env.dir.path().join("modelproxy.sock");
    let _base = env.proxy.serve_base(&path).await.unwrap();
    let r = call(&path, "POST", MOCK, &[], &body("hello")).await;
    assert_proxy_error(&r, 403, "provider_not_configured");
}

#[test]
fn mock_switch_and_config() {
    let on = |v: &str| {
        ProxyConfig::from_lookup(|k| (k == "IRONCLAW_MOCK_PROVIDER").then(|| v.to_owned()))
    };
    for v in ["1", "true", "YES", " on "] {
        let kinds: Vec<_> = on(v).unwrap().providers.iter().map(|p| p.name).collect();
        assert_eq!(kinds, [ProviderKind::Mock], "{v}");
    }
    for v in ["0", "false", "no", "off", ""] {
        assert!(on(v).unwrap().providers.is_empty(), "{v}");
    }
    let err = on("maybe").unwrap_err();
    assert!(matches!(err, ProxyError::Config { .. }), "{err}");

    let mut cfg = ProxyConfig::default();
    cfg.enable_mock();
    cfg.enable_mock();
    assert_eq!(cfg.providers.len(), 1);
    assert!(ProviderConfig::mock().validate().is_ok());
    let mut with_url = ProviderConfig::mock();
    with_url.base_url = "http://127.0.0.1:1".into();
    assert!(with_url.validate().is_err());
    let mut with_key = ProviderConfig::mock();
    with_key.api_key = Some(ironclaw_modelproxy::Secret::new("sk-12345678"));
    assert!(with_key.validate().is_err());
    assert!(!ProviderKind::Mock.has_upstream());
    assert_eq!(ProviderKind::from_prefix("mock"), Some(ProviderKind::Mock));
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
