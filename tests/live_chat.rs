//! The daemon's main job, live (issue #6): web chat in → router → encrypted inbound →
//! the agent in a real `runsc` sandbox → the model proxy's mock → outbound → delivery
//! → the web chat store. And a privileged action from the agent becomes a change
//! request by `sandbox:<session>` that changes nothing until a human decides.
//!
//! Needs root, `runsc` and the static agent (`.ci/run` builds it); never skipped.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ironclaw_e2e::chat::ChatApi;
use ironclaw_e2e::ironctl;
use ironclaw_e2e::live::LiveDir;
use serde_json::{json, Value};

/// The first agent reply after `after`, or the test fails with the daemon's log.
fn agent_reply(
    api: &ChatApi,
    conversation: &str,
    after: u64,
    within: Duration,
    log: &dyn Fn() -> String,
) -> Value {
    api.agent_reply(conversation, after, within)
        .unwrap_or_else(|| {
            panic!(
                "no agent reply in {conversation}\n--- daemon log ---\n{}",
                log()
            )
        })
}

#[test]
fn web_chat_reaches_a_sandboxed_agent_and_back_and_privileged_actions_wait_for_a_human() {
    let live = LiveDir::new();
    let d = live.start_dev(&[]);
    let api = ChatApi::new(&d.addr, &d.dev_token());
    let log = || d.log();

    let started = Instant::now();
    let sent = api.post(
        "/v1/chat/send",
        &json!({"agent_group_id": "dev-agent", "text": "hello sandbox"}),
    );
    assert_eq!(sent["engaged"], true, "{sent}");
    let conv = sent["conversation_id"].as_str().unwrap().to_owned();
    let reply = agent_reply(&api, &conv, 0, Duration::from_secs(60), &log);
    let text = reply["text"].as_str().unwrap();
    assert!(text.starts_with("mock: "), "{text}");
    assert!(text.contains("hello sandbox"), "{text}");
    eprintln!("first reply (cold launch) after {:?}", started.elapsed());

    // The conversation continues in the same session, now warm.
    let last = reply["id"].as_u64().unwrap();
    let t = Instant::now();
    api.post(
        "/v1/chat/send",
        &json!({"agent_group_id": "dev-agent", "text": "second", "conversation_id": conv}),
    );
    let second = agent_reply(&api, &conv, last, Duration::from_secs(30), &log);
    assert!(second["text"].as_str().unwrap().contains("second"));
    eprintln!("warm reply after {:?}", t.elapsed());
    let sessions = ironctl(&d.addr, Some(&api.token), &["--json", "session", "list"]).json();
    let web: Vec<&Value> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["runtime"] == "runsc")
        .collect();
    assert_eq!(web.len(), 1, "{sessions}");
    let sid = web[0]["id"].as_str().unwrap().to_owned();

    // A privileged action from the agent: held for a human, requested by the sandbox.
    let directive = r#"tool:request_capability_change {"kind":"persona","payload":{"persona":"You are a pirate."},"reason":"user asked"}"#;
    let last = second["id"].as_u64().unwrap();
    api.post(
        "/v1/chat/send",
        &json!({"agent_group_id": "dev-agent", "text": directive, "conversation_id": conv}),
    );
    agent_reply(&api, &conv, last, Duration::from_secs(30), &log);
    let deadline = Instant::now() + Duration::from_secs(20);
    let pending = loop {
        let p = ironctl(&d.addr, Some(&api.token), &["--json", "change", "pending"]).json();
        let found = p["changes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .any(|c| c.to_string().contains(&format!("sandbox:{sid}")))
            })
            .unwrap_or(false);
        if found || Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        pending.to_string().contains(&format!("sandbox:{sid}")),
        "no change request by sandbox:{sid}: {pending}\n{}",
        d.log()
    );
    // Nothing changed yet.
    let group = ironctl(
        &d.addr,
        Some(&api.token),
        &["--json", "registry", "agent-groups", "dev-agent"],
    )
    .json();
    assert!(!group.to_string().contains("pirate"), "{group}");

    // The CLI path README's first command uses.
    let out = ironctl(
        &d.addr,
        Some(&api.token),
        &["chat", "send", "--group", "dev-agent", "via ironctl"],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("via ironctl"), "{}", out.stdout);
    d.stop();
}
