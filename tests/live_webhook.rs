//! A signed webhook end to end, live (issue #6): a verified `POST /hooks/webhook/ci`
//! reaches the agent in a real `runsc` sandbox and its reply is POSTed to the
//! instance's URL (a receiver on 127.0.0.1) signed the same way; forged, stale and
//! replayed requests get 401 and queue nothing.
//!
//! The wiring is made the way an operator makes one: `alice` submits it, the owner
//! approves it. Needs root, `runsc` and the static agent (`dev/test.sh` builds it).

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ironclaw_e2e::ironctl;
use ironclaw_e2e::live::LiveDir;
use ironclaw_e2e::webhook::{self, now, post_signed, receiver, sign};
use serde_json::{json, Value};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn hook(addr: &str, ts: &str, sig: &str, body: &str) -> u16 {
    post_signed(addr, "ci", ts, sig, body).unwrap_or_else(|e| panic!("hook: {e}"))
}

#[test]
fn a_signed_webhook_reaches_the_sandbox_and_the_signed_reply_comes_back() {
    let live = LiveDir::new();
    let (port, replies) = receiver();
    let channels = live.dir.path().join("channels.json");
    webhook::write_channels_file(
        &channels,
        "ci",
        SECRET,
        &format!("http://127.0.0.1:{port}/replies"),
    );
    let d = live.start_dev(&["--channels-file", channels.to_str().unwrap()]);
    let owner = d.dev_token();
    let ctl = |token: &str, args: &[&str]| ironctl(&d.addr, Some(token), args);

    // The conversation, open to senders of this signed webhook, wired by two humans.
    webhook::wire_public_conversation(&d, &owner, "ci", "build-42", "dev-agent");

    // Refused: forged, stale, from the future — nothing is queued.
    let body = json!({"platform_id": "build-42", "sender": "ci-bot", "text": "build 42 failed: why?", "mentioned": true, "message_id": "evt-1"}).to_string();
    let ts = now().to_string();
    assert_eq!(
        hook(&d.addr, &ts, &sign(SECRET, &ts, "{}"), &body),
        401,
        "forged"
    );
    let old = (now() - 600).to_string();
    assert_eq!(
        hook(&d.addr, &old, &sign(SECRET, &old, &body), &body),
        401,
        "stale"
    );
    let future = (now() + 600).to_string();
    assert_eq!(
        hook(&d.addr, &future, &sign(SECRET, &future, &body), &body),
        401,
        "future"
    );
    assert_eq!(hook(&d.addr, &ts, "sha256=00", &body), 401, "malformed");
    let sessions = ctl(&owner, &["--json", "session", "list"]).json();
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        0,
        "{sessions}"
    );

    // Accepted once; the same signed request again is a replay.
    assert_eq!(hook(&d.addr, &ts, &sign(SECRET, &ts, &body), &body), 200);
    assert_eq!(
        hook(&d.addr, &ts, &sign(SECRET, &ts, &body), &body),
        401,
        "replayed"
    );

    // The reply is POSTed to the instance's URL, signed with the same secret.
    let got = replies
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("no reply POSTed\n{}", d.log()));
    let rts = got.header("x-ironclaw-timestamp");
    assert_eq!(
        got.header("x-ironclaw-signature"),
        sign(SECRET, &rts, &got.body)
    );
    let reply: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(reply["platform_id"], "build-42", "{reply}");
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.starts_with("mock: ") && text.contains("build 42 failed"),
        "{text}"
    );
    // Exactly one session, launched under runsc.
    let sessions = ctl(&owner, &["--json", "session", "list"]).json();
    let rows = sessions["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{sessions}");
    assert_eq!(rows[0]["runtime"], "runsc");
    d.stop();
}
