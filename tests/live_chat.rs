//! The daemon's main job, live (issue #6): web chat in → router → encrypted inbound →
//! the agent in a real `runsc` sandbox → the model proxy's mock → outbound → delivery
//! → the web chat store. And a privileged action from the agent becomes a change
//! request by `sandbox:<session>` that changes nothing until a human decides.
//!
//! Needs root, `runsc` and the static agent (`.ci/run` builds it); never skipped.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ironclaw_e2e::{ironctl, Daemon};
use serde_json::{json, Value};

fn static_agent() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .ancestors()
        .nth(3)
        .unwrap()
        .join("x86_64-unknown-linux-gnu/release/ironclaw-sandbox");
    assert!(
        bin.exists(),
        "{} is missing: RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox",
        bin.display()
    );
    bin
}

struct Api {
    addr: String,
    token: String,
}

impl Api {
    fn post(&self, path: &str, body: &Value) -> Value {
        let mut resp = ureq::post(format!("{}{path}", self.addr))
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_json(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        resp.body_mut().read_json().unwrap()
    }

    fn get(&self, path: &str) -> Value {
        let mut resp = ureq::get(format!("{}{path}", self.addr))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        resp.body_mut().read_json().unwrap()
    }

    /// Waits for an agent message in the conversation after `after`.
    fn agent_reply(
        &self,
        conversation: &str,
        after: u64,
        within: Duration,
        log: &dyn Fn() -> String,
    ) -> Value {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let v = self.get(&format!("/v1/chat/{conversation}/messages?after={after}"));
            if let Some(m) = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["role"] == "agent")
            {
                return m.clone();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "no agent reply in {conversation}\n--- daemon log ---\n{}",
            log()
        );
    }
}

#[test]
fn web_chat_reaches_a_sandboxed_agent_and_back_and_privileged_actions_wait_for_a_human() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = state.join("modelproxy.sock");
    let bin = static_agent();
    let d = Daemon::start_dev(
        &state,
        &[
            "--model-proxy-socket",
            socket.to_str().unwrap(),
            "--sandbox-bin",
            bin.to_str().unwrap(),
        ],
    );
    let api = Api {
        addr: d.addr.clone(),
        token: d.dev_token(),
    };
    let log = || d.log();

    let started = Instant::now();
    let sent = api.post(
        "/v1/chat/send",
        &json!({"agent_group_id": "dev-agent", "text": "hello sandbox"}),
    );
    assert_eq!(sent["engaged"], true, "{sent}");
    let conv = sent["conversation_id"].as_str().unwrap().to_owned();
    let reply = api.agent_reply(&conv, 0, Duration::from_secs(60), &log);
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
    let second = api.agent_reply(&conv, last, Duration::from_secs(30), &log);
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
    api.agent_reply(&conv, last, Duration::from_secs(30), &log);
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
