//! The model proxy end to end: real unix sockets, a fake provider on 127.0.0.1, the
//! real audit log.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use ironclaw_audit::AuditEvent;
use ironclaw_modelproxy::{ProviderKind, ProxyConfig, ProxyError, RateLimit};

fn assert_proxy_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["type"], "ironclaw_proxy", "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_only_from_the_proxy_and_both_shapes_work() {
    let env = Env::new(|_| {}).await;
    let l = env.session("ses-1", "grp-a").await;
    let forged = [
        ("content-type", "application/json"),
        ("authorization", "Bearer sandbox-forged-token"),
        ("x-api-key", "sandbox-forged-key"),
        ("api-key", "sandbox-forged-azure"),
        ("x-goog-api-key", "sandbox-forged-goog"),
        ("x-amz-security-token", "sandbox-forged-amz"),
        ("proxy-authorization", "Basic Zm9yZ2Vk"),
        ("cookie", "session=forged"),
        ("anthropic-version", "2023-06-01"),
        ("accept-encoding", "gzip"),
    ];

    // Anthropic, JSON with tool use and usage.
    let r = call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &forged,
        &anthropic_body(false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["content"][1]["name"], "send_message");
    assert_eq!(v["usage"]["input_tokens"], 10);
    let seen = env.fake.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some(ANT_KEY));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    for h in [
        "authorization",
        "api-key",
        "x-goog-api-key",
        "x-amz-security-token",
        "proxy-authorization",
        "cookie",
    ] {
        assert_eq!(seen.header(h), None, "{h} reached the provider");
    }
    assert!(!seen
        .headers
        .iter()
        .any(|(_, v)| v.contains("sandbox-forged")));
    assert_ne!(
        seen.header("accept-encoding"),
        Some("gzip"),
        "bodies must come uncompressed"
    );
    assert_eq!(
        seen.body,
        anthropic_body(false),
        "the body is forwarded untouched"
    );

    // OpenAI, JSON with tool calls.
    let r = call(
        l.path(),
        "POST",
        "/openai/v1/chat/completions",
        &forged,
        &openai_body(false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "send_message"
    );
    let seen = env.fake.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    let bearer = format!("Bearer {OAI_KEY}");
    assert_eq!(seen.header("authorization"), Some(bearer.as_str()));
    assert_eq!(seen.header("x-api-key"), None);
    assert!(!seen
        .headers
        .iter()
        .any(|(_, v)| v.contains("sandbox-forged") || v.contains(ANT_KEY)));

    // Anthropic without a version header gets the default one.
    call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &[("content-type", "application/json")],
        &anthropic_body(false),
    )
    .await;
    assert_eq!(
        env.fake.last().header("anthropic-version"),
        Some("2023-06-01")
    );

    // Streams pass through in order, as event-stream.
    let r = call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &[
            ("content-type", "application/json"),
            ("x-fake-mode", "stream"),
        ],
        &anthropic_body(true),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    let order = [
        "message_start",
        COMPLETION_MARKER,
        "message_delta",
        "message_stop",
    ];
    let pos: Vec<usize> = order.iter().map(|m| text.find(m).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(
        r.chunks.len() >= 2,
        "streamed chunk by chunk, not buffered: {:?}",
        r.chunks.len()
    );

    let r = call(
        l.path(),
        "POST",
        "/openai/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("x-fake-mode", "stream"),
        ],
        &openai_body(true),
    )
    .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.find("\"he\"").unwrap() < text.find("call_1").unwrap());
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    // Stream usage was counted: 10+5 (json) + 7+3 (json) + 10+5 (json) + 11+6 + 8+4.
    let st = env.proxy.stats();
    assert_eq!(st.input_tokens, 10 + 7 + 10 + 11 + 8);
    assert_eq!(st.output_tokens, 5 + 3 + 5 + 6 + 4);
    assert_eq!(st.calls["anthropic"][&200], 3);
    assert_eq!(st.calls["openai"][&200], 2);
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_403_with_a_json_error_and_never_reach_upstream() {
    let env = Env::new(|_| {}).await;
    let l = env.session("ses-1", "grp-a").await;
    let ct = [("content-type", "application/json")];
    let cases: &[(&str, &str, &str)] = &[
        (
            "POST",
            "/openrouter/api/v1/chat/completions",
            "provider_not_configured",
        ),
        (
            "POST",
            "/ollama/v1/chat/completions",
            "provider_not_configured",
        ),
        ("POST", "/evil.example.com/v1/messages", "unknown_provider"),
        ("POST", "/v1/messages", "unknown_provider"),
        ("POST", "/", "unknown_provider"),
        ("POST", "/openai/v1/files", "path_not_allowed"),
        (
            "POST",
            "/anthropic/v1/messages/../../admin",
            "path_not_allowed",
        ),
        (
            "POST",
            "/anthropic/v1/organizations/keys",
            "path_not_allowed",
        ),
        ("POST", "/anthropic", "path_not_allowed"),
        ("GET", "/anthropic/v1/messages", "method_not_allowed"),
        (
            "DELETE",
            "/openai/v1/chat/completions",
            "method_not_allowed",
        ),
        (
            "POST",
            "/anthropic/v1/messages?beta=true",
            "query_not_allowed",
        ),
    ];
    for (method, path, code) in cases {
        let r = call(l.path(), method, path, &ct, &anthropic_body(false)).await;
        assert_proxy_error(&r, 403, code);
    }
    assert_eq!(env.fake.count(), 0, "upstream was contacted");
    let st = env.proxy.stats();
    assert_eq!(st.refusals["unknown_provider"], 3);
    assert_eq!(st.refusals["provider_not_configured"], 2);
    // Each refusal is audited too, without the provider being contacted.
    let calls = env.model_calls();
    assert_eq!(calls.len(), cases.len());
    assert!(calls
        .iter()
        .all(|e| matches!(e, AuditEvent::ModelCall { status: 403, .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_is_413_without_upstream() {
    let env = Env::new(|c| c.max_request_bytes = 512).await;
    let l = env.session("ses-1", "grp-a").await;
    let big = vec![b'a'; 4096];
    let r = call(l.path(), "POST", "/anthropic/v1/messages", &[], &big).await;
    assert_proxy_error(&r, 413, "request_too_large");
    // Exactly at the limit is fine.
    let ok = vec![b' '; 512];
    let r = call(l.path(), "POST", "/anthropic/v1/messages", &[], &ok).await;
    assert_eq!(r.status, 200);
    assert_eq!(env.fake.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_chunked_request_without_length_is_413() {
    use std::io::{Read, Write};
    let env = Env::new(|c| c.max_request_bytes = 1024).await;
    let l = env.session("ses-1", "grp-a").await;
    let path = l.path().to_owned();
    let raw = tokio::task::spawn_blocking(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
        s.write_all(b"POST /anthropic/v1/messages HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n").unwrap();
        let chunk = vec![b'a'; 600];
        for _ in 0..4 {
            let _ = s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
            let _ = s.write_all(&chunk);
            let _ = s.write_all(b"\r\n");
        }
        let _ = s.write_all(b"0\r\n\r\n");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("request_too_large"), "{raw}");
    assert_eq!(env.fake.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_is_cut_and_audited_as_failed() {
    let env = Env::new(|c| c.max_response_bytes = 64 * 1024).await;
    let l = env.session("ses-1", "grp-a").await;
    // A stream of 256 KiB: cut after 64 KiB.
    let r = call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &[("x-fake-mode", "big")],
        &anthropic_body(true),
    )
    .await;
    assert_eq!(r.status, 200, "headers went out before the cap was reached");
    assert!(!r.complete, "the stream must be cut, not ended cleanly");
    assert!(r.body.len() <= 64 * 1024);
    // A JSON body whose declared length is over the cap: refused outright.
    let r = call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &[("x-fake-mode", "big-json")],
        &anthropic_body(false),
    )
    .await;
    assert_proxy_error(&r, 502, "response_too_large");
    let calls = env.model_calls();
    assert_eq!(calls.len(), 2);
    for c in &calls {
        let AuditEvent::ModelCall { status, .. } = c else {
            unreachable!()
        };
        assert_eq!(*status, 502, "{c:?}");
    }
    assert_eq!(env.proxy.stats().refusals["response_too_large"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_rate_cap_gives_429_with_retry_after() {
    let env = Env::new(|c| {
        c.session_rate = Some(RateLimit {
            per_second: 0.2,
            burst: 2,
        });
        c.group_rate = None;
    })
    .await;
    let l = env.session("ses-1", "grp-a").await;
    let l2 = env.session("ses-2", "grp-a").await;
    for _ in 0..2 {
        let r = call(
            l.path(),
            "POST",
            "/anthropic/v1/messages",
            &[],
            &anthropic_body(false),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &[],
        &anthropic_body(false),
    )
    .await;
    assert_proxy_error(&r, 429, "rate_limited");
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&secs), "{secs}");
    // Another session has its own bucket.
    let r = call(
        l2.path(),
        "POST",
        "/anthropic/v1/messages",
        &[],
        &anthropic_body(false),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(env.fake.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_rate_cap_spans_the_groups_sessions() {
    let env = Env::new(|c| {
        c.session_rate = None;
        c.group_rate = Some(RateLimit {
            per_second: 0.2,
            burst: 3,
        });
    })
    .await;
    let a1 = env.session("ses-1", "grp-a").await;
    let a2 = env.session("ses-2", "grp-a").await;
    let b1 = env.session("ses-3", "grp-b").await;
    for sock in [a1.path(), a1.path(), a2.path()] {
        let r = call(
            sock,
            "POST",
            "/openai/v1/chat/completions",
            &[],
            &openai_body(false),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = call(
        a2.path(),
        "POST",
        "/openai/v1/chat/completions",
        &[],
        &openai_body(false),
    )
    .await;
    assert_proxy_error(&r, 429, "rate_limited");
    assert!(r.header("retry-after").is_some());
    let r = call(
        b1.path(),
        "POST",
        "/openai/v1/chat/completions",
        &[],
        &openai_body(false),
    )
    .await;
    assert_eq!(r.status, 200, "another group is not affected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_budget_parks_the_session_until_resumed() {
    let parked_hook = Arc::new(AtomicUsize::new(0));
    let hook = Arc::clone(&parked_hook);
    let env = Env::new(move |c| {
        c.session_token_budget = Some(20);
        c.on_park = Some(Box::new(move |s| {
            assert_eq!(s.as_str(), "ses-1");
            hook.fetch_add(1, Ordering::SeqCst);
        }));
    })
    .await;
    let l = env.session("ses-1", "grp-a").await;
    let other = env.session("ses-2", "grp-a").await;
    let s1 = sid("ses-1");
    // 15 tokens: under budget.
    let r = call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &[],
        &anthropic_body(false),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(!env.proxy.is_parked(&s1));
    // 15 more (streamed, usage from SSE): 30 >= 20 → parked after this call.
    let r = call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &[("x-fake-mode", "stream")],
        &anthropic_body(true),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert!(env.proxy.is_parked(&s1));
    assert_eq!(env.proxy.session_tokens(&s1), 15 + 17);
    let before = env.fake.count();
    for _ in 0..2 {
        let r = call(
            l.path(),
            "POST",
            "/anthropic/v1/messages",
            &[],
            &anthropic_body(false),
        )
        .await;
        assert_proxy_error(&r, 429, "session_parked");
    }
    assert_eq!(
        env.fake.count(),
        before,
        "a parked session reaches no provider"
    );
    assert_eq!(parked_hook.load(Ordering::SeqCst), 1, "hook called once");
    // Other sessions are unaffected by a session budget.
    let r = call(
        other.path(),
        "POST",
        "/anthropic/v1/messages",
        &[],
        &anthropic_body(false),
    )
    .await;
    assert_eq!(r.status, 200);
    let parked: Vec<_> = env
        .events()
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::SessionParked { session_id, reason } => Some((session_id, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].0, s1);
    assert!(parked[0].1.contains("budget"), "{}", parked[0].1);

    assert!(env.proxy.resume(&s1));
    assert!(!env.proxy.is_parked(&s1));
    let r = call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &[],
        &anthropic_body(false),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(!env.proxy.resume(&s1), "not parked any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_budget_parks_every_session_of_the_group() {
    let env = Env::new(|c| c.group_token_budget = Some(25)).await;
    let a1 = env.session("ses-1", "grp-a").await;
    let a2 = env.session("ses-2", "grp-a").await;
    let r = call(
        a1.path(),
        "POST",
        "/anthropic/v1/messages",
        &[],
        &anthropic_body(false),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(
        a2.path(),
        "POST",
        "/anthropic/v1/messages",
        &[],
        &anthropic_body(false),
    )
    .await;
    assert_eq!(r.status, 200);
    // 30 >= 25: ses-2 crossed it and is parked; ses-1 is refused (and parked) next.
    assert!(env.proxy.is_parked(&sid("ses-2")));
    let r = call(
        a1.path(),
        "POST",
        "/anthropic/v1/messages",
        &[],
        &anthropic_body(false),
    )
    .await;
    assert_proxy_error(&r, 429, "budget_exhausted");
    assert!(env.proxy.is_parked(&sid("ses-1")));
    assert_eq!(env.fake.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_keys_come_back_redacted() {
    let env = Env::new(|_| {}).await;
    let l = env.session("ses-1", "grp-a").await;
    for (path, key, body) in [
        ("/anthropic/v1/messages", ANT_KEY, anthropic_body(false)),
        ("/openai/v1/chat/completions", OAI_KEY, openai_body(false)),
    ] {
        let r = call(
            l.path(),
            "POST",
            path,
            &[("x-fake-mode", "echo-key")],
            &body,
        )
        .await;
        assert_eq!(r.status, 200);
        let text = r.text();
        assert!(!text.contains(key), "{text}");
        assert!(text.contains("bad key [redacted] rejected"), "{text}");
        // Length was recomputed for the redacted body.
        assert_eq!(
            r.header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            r.body.len()
        );

        let r = call(
            l.path(),
            "POST",
            path,
            &[("x-fake-mode", "echo-key-stream")],
            &body,
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(r.complete);
        let text = r.text();
        assert!(!text.contains(key), "{text}");
        assert_eq!(text, "data: {\"text\":\"leak [redacted] end\"}\n\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_audit_record_per_call_without_bodies_or_keys() {
    let env = Env::new(|_| {}).await;
    let l = env.session("ses-1", "grp-a").await;
    let forged = [("authorization", "Bearer sandbox-forged-token")];
    let r = call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &forged,
        &anthropic_body(false),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(
        l.path(),
        "POST",
        "/openai/v1/chat/completions",
        &[("x-fake-mode", "stream")],
        &openai_body(true),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &[("x-fake-mode", "status-500")],
        &anthropic_body(false),
    )
    .await;
    assert_eq!(r.status, 500, "provider errors pass through");
    let r = call(l.path(), "GET", "/anthropic/v1/messages", &[], b"").await;
    assert_eq!(r.status, 403);

    let calls = env.model_calls();
    assert_eq!(calls.len(), 4);
    let expect = [
        ("anthropic", "/v1/messages", 200u16, 10u64, 5u64),
        ("openai", "/v1/chat/completions", 200, 8, 4),
        ("anthropic", "/v1/messages", 500, 0, 0),
        ("anthropic", "/v1/messages", 403, 0, 0),
    ];
    for (ev, (prov, p, st, inp, out)) in calls.iter().zip(expect) {
        let AuditEvent::ModelCall {
            session_id,
            agent_group_id,
            provider,
            path,
            status,
            request_bytes,
            input_tokens,
            output_tokens,
            ..
        } = ev
        else {
            unreachable!()
        };
        assert_eq!(session_id.as_str(), "ses-1");
        assert_eq!(agent_group_id.as_str(), "grp-a");
        assert_eq!(
            (provider.as_str(), path.as_str(), *status),
            (prov, p, st),
            "{ev:?}"
        );
        assert_eq!((*input_tokens, *output_tokens), (inp, out), "{ev:?}");
        if st == 200 {
            assert!(*request_bytes > 0);
        }
    }
    let raw = std::fs::read_to_string(&env.audit_path).unwrap();
    for needle in [
        ANT_KEY,
        OAI_KEY,
        "sandbox-forged",
        PROMPT_MARKER,
        COMPLETION_MARKER,
        "send_message",
    ] {
        assert!(!raw.contains(needle), "audit file contains {needle}");
    }
    env.audit.verify().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_private_replace_stale_ones_and_are_removed_on_shutdown() {
    let env = Env::new(|_| {}).await;
    let path = env.sock("ses-1");
    let l = env.session("ses-1", "grp-a").await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    l.shutdown().await;
    assert!(!path.exists(), "shutdown removes the socket");

    // A stale socket (left by a crash) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    assert!(path.exists());
    let l = env.session("ses-1", "grp-a").await;
    let r = call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &[],
        &anthropic_body(false),
    )
    .await;
    assert_eq!(r.status, 200);
    drop(l);
    assert!(!path.exists(), "drop removes the socket too");

    // Anything else at the path is not deleted.
    std::fs::write(&path, b"not a socket").unwrap();
    let err = env
        .proxy
        .listen(sid("ses-1"), gid("grp-a"), &path)
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_socket_answers_healthz_only() {
    let env = Env::new(|_| {}).await;
    let path = env.dir.path().join("run").join("modelproxy.sock");
    let base = env.proxy.serve_base(&path).await.unwrap();
    let r = call(&path, "GET", "/healthz", &[], b"").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["providers"], serde_json::json!(["anthropic", "openai"]));
    let r = call(
        &path,
        "POST",
        "/anthropic/v1/messages",
        &[],
        &anthropic_body(false),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "ironclaw_proxy");
    assert_eq!(env.fake.count(), 0);
    base.shutdown().await;
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_provider_is_a_502_json_error() {
    let env = Env::new(|c| {
        // A port nothing listens on.
        c.providers[0].base_url = "http://127.0.0.1:9".into();
        c.connect_timeout = std::time::Duration::from_secs(2);
    })
    .await;
    let l = env.session("ses-1", "grp-a").await;
    let r = call(
        l.path(),
        "POST",
        "/anthropic/v1/messages",
        &[],
        &anthropic_body(false),
    )
    .await;
    assert!(r.status == 502 || r.status == 504, "{}", r.status);
    assert_eq!(r.json()["error"]["type"], "ironclaw_proxy");
    assert!(!r.text().contains(ANT_KEY));
}

#[test]
fn config_from_env_lookup() {
    let cfg = ProxyConfig::from_lookup(|k| match k {
        "ANTHROPIC_API_KEY" => Some("sk-ant-xyz-12345678".into()),
        "OPENROUTER_API_KEY" => Some("  ".into()),
        "OLLAMA_BASE_URL" => Some("http://127.0.0.1:11434/".into()),
        _ => None,
    })
    .unwrap();
    let kinds: Vec<_> = cfg.providers.iter().map(|p| p.name).collect();
    assert_eq!(kinds, [ProviderKind::Anthropic, ProviderKind::Ollama]);
    assert_eq!(cfg.providers[0].base_url, "https://api.anthropic.com");
    assert_eq!(cfg.providers[1].base_url, "http://127.0.0.1:11434");
    assert!(cfg.providers[1].api_key.is_none());
    assert_eq!(cfg.max_request_bytes, 4 * 1024 * 1024);
    assert_eq!(cfg.max_response_bytes, 16 * 1024 * 1024);
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("sk-ant-xyz"), "{dbg}");
    assert!(dbg.contains("[redacted]"));

    let err = ProxyConfig::from_lookup(|k| match k {
        "OPENAI_API_KEY" => Some("sk-1234567890".into()),
        "OPENAI_BASE_URL" => Some("ftp://nope".into()),
        _ => None,
    })
    .unwrap_err();
    assert!(matches!(err, ProxyError::Config { .. }), "{err}");
    assert!(!err.to_string().contains("sk-1234567890"));
}

#[test]
fn rate_limits_come_from_the_environment_or_keep_their_defaults() {
    let defaults = ProxyConfig::from_lookup(|_| None).unwrap();
    let d = ProxyConfig::default();
    assert_eq!(defaults.session_rate, d.session_rate);
    assert_eq!(defaults.group_rate, d.group_rate);

    let cfg = ProxyConfig::from_lookup(|k| match k {
        "IRONCLAW_MODEL_SESSION_RATE" => Some(" 2.5/7 ".into()),
        "IRONCLAW_MODEL_GROUP_RATE" => Some("OFF".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(
        cfg.session_rate,
        Some(RateLimit {
            per_second: 2.5,
            burst: 7
        })
    );
    assert_eq!(cfg.group_rate, None);

    for bad in [
        "10", "x/2", "10/0", "0/5", "-1/5", "inf/5", "10/-1", "10/2/3",
    ] {
        let err = ProxyConfig::from_lookup(|k| {
            (k == "IRONCLAW_MODEL_SESSION_RATE").then(|| bad.to_owned())
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("IRONCLAW_MODEL_SESSION_RATE"),
            "{bad}: {err}"
        );
    }
}
