//! The proxy's own `mock` provider over real unix sockets: refusals, caps, budgets,
//! audit, and the base socket. (The agent's Anthropic client against it, and its
//! equivalence with the agent's in-process mock, are tested in
//! `tests/agent_modelproxy.rs`, which may depend on both crates.)

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
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
