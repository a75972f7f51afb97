//! Slack end to end, live (issue #6): a signed Events API request to `/hooks/slack`
//! reaches the agent in a real `runsc` sandbox, and its reply is posted with
//! `chat.postMessage` — to a fake Slack Web API on 127.0.0.1 — in the thread it was
//! asked in, with the bot token and Slack's escaping. Around it, everything the
//! adapter must refuse or drop: the `url_verification` handshake only when signed;
//! forged, stale, future, unsigned and replayed requests get 401 and queue nothing;
//! bot messages are ignored; Slack's `X-Slack-Retry-Num` retry of an accepted event is
//! not queued twice.
//!
//! "Queued nothing" is shown twice over: no session exists while only refused requests
//! have arrived, and after the one accepted message exactly one reply arrives, quoting
//! it once (the agent answers everything queued in one engage, so a second row would
//! show up as a second reply or a second quotation).
//!
//! Needs root, `runsc` and the static agent (`dev/test.sh` builds it).

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use ironclaw_e2e::live::LiveDir;
use ironclaw_e2e::platform::{channels_file, post_hook, sessions, wire_to_dev_agent, FakePlatform};
use serde_json::{json, Value};
use sha2::Sha256;

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN: &str = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";
const BOT_USER: &str = "U0BOT0001";
const CHANNEL: &str = "C0LIVE001";
/// The thread the question is asked in (its parent message's `ts`).
const THREAD: &str = "1700000000.000100";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Slack's `v0` signature of `body` at `ts` with `secret`.
fn sign_with(secret: &str, ts: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    let tag = mac.finalize().into_bytes();
    format!(
        "v0={}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// POSTs `body` to `/hooks/slack` signed at `ts` (with `extra` headers).
fn slack(
    d: &ironclaw_e2e::Daemon,
    secret: &str,
    ts: u64,
    body: &str,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let ts = ts.to_string();
    let sig = sign_with(secret, &ts, body);
    let mut headers = vec![
        ("X-Slack-Request-Timestamp", ts.as_str()),
        ("X-Slack-Signature", sig.as_str()),
    ];
    headers.extend_from_slice(extra);
    post_hook(d, "slack", &headers, body)
}

/// An `event_callback` envelope around `event`.
fn envelope(event_id: &str, event: Value) -> String {
    json!({
        "token": "deprecated-verification-token",
        "team_id": "T0LIVE",
        "api_app_id": "A0LIVE",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": now(),
        "authorizations": [{"team_id": "T0LIVE", "user_id": BOT_USER, "is_bot": true}],
        "event": event,
    })
    .to_string()
}

#[test]
fn a_signed_slack_mention_reaches_the_sandbox_and_the_reply_lands_in_its_thread() {
    let started = Instant::now();
    let dir = LiveDir::new();
    let api = FakePlatform::start(|req| {
        if req.path == "/chat.postMessage" {
            (
                200,
                json!({"ok": true, "channel": CHANNEL, "ts": "1700000099.000900"}),
            )
        } else {
            (200, json!({"ok": false, "error": "unknown_method"}))
        }
    });
    let channels = channels_file(
        dir.dir.path(),
        &json!({"slack": {
            "signing_secret": SIGNING_SECRET,
            "bot_token": BOT_TOKEN,
            "bot_user_id": BOT_USER,
            "api_base": api.base,
        }}),
    );
    let d = dir.start_dev(&["--channels-file", channels.to_str().unwrap()]);
    wire_to_dev_agent(
        &d,
        &json!({"channel_type": "slack", "platform_id": CHANNEL, "unknown_sender_policy": "public"}),
        // Per thread: the session keeps the thread, and replies go back into it. (In the
        // default `shared` mode one session spans the channel and replies go to the
        // channel itself, as the session's route has no thread.)
        &json!({"engage_mode": "mention", "sender_scope": "all", "session_mode": "per-thread"}),
    );

    // The Request URL handshake: answered only when Slack's signature checks out.
    let challenge = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let (status, body) = slack(&d, SIGNING_SECRET, now(), &challenge, &[]);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let (status, _) = post_hook(&d, "slack", &[], &challenge);
    assert_eq!(status, 401, "an unsigned handshake is refused");

    let question = "why did build 42 fail?";
    let mention = envelope(
        "Ev0LIVE0001",
        json!({
            "type": "app_mention",
            "user": "U0ALICE01",
            "text": format!("<@{BOT_USER}> {question} &lt;logs&gt;"),
            "ts": "1700000000.000200",
            "thread_ts": THREAD,
            "channel": CHANNEL,
            "event_ts": "1700000000.000200",
        }),
    );

    // Refused with 401, nothing queued: forged, stale, from the future, unsigned,
    // a signature over other bytes.
    let t = now();
    let forged = slack(&d, "not-the-signing-secret-at-all-0000", t, &mention, &[]);
    assert_eq!(forged.0, 401, "forged: {}", forged.1);
    let stale = slack(&d, SIGNING_SECRET, t - 600, &mention, &[]);
    assert_eq!(stale.0, 401, "stale: {}", stale.1);
    let future = slack(&d, SIGNING_SECRET, t + 600, &mention, &[]);
    assert_eq!(future.0, 401, "future: {}", future.1);
    let unsigned = post_hook(&d, "slack", &[], &mention);
    assert_eq!(unsigned.0, 401, "unsigned: {}", unsigned.1);
    let ts = t.to_string();
    let other_sig = sign_with(SIGNING_SECRET, &ts, "{}");
    let swapped = post_hook(
        &d,
        "slack",
        &[
            ("X-Slack-Request-Timestamp", &ts),
            ("X-Slack-Signature", &other_sig),
        ],
        &mention,
    );
    assert_eq!(swapped.0, 401, "signature of another body: {}", swapped.1);

    // Authentic but from bots: answered 200, ignored.
    for (id, bot_event) in [
        (
            "Ev0LIVE0002",
            json!({"type": "message", "user": "U0OTHER01", "bot_id": "B0OTHER", "text": format!("<@{BOT_USER}> ping"), "ts": "1700000000.000300", "channel": CHANNEL}),
        ),
        (
            "Ev0LIVE0003",
            json!({"type": "message", "subtype": "bot_message", "bot_id": "B0INTEG", "username": "ci", "text": format!("<@{BOT_USER}> build red"), "ts": "1700000000.000400", "channel": CHANNEL}),
        ),
        (
            "Ev0LIVE0004",
            json!({"type": "message", "user": BOT_USER, "text": "mock: my own earlier reply", "ts": "1700000000.000500", "channel": CHANNEL}),
        ),
    ] {
        let (status, body) = slack(&d, SIGNING_SECRET, now(), &envelope(id, bot_event), &[]);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("ignored"), "{body}");
    }
    assert!(
        sessions(&d).is_empty(),
        "refused and ignored requests started a session"
    );

    // Accepted once.
    let sent_at = Instant::now();
    let (status, body) = slack(&d, SIGNING_SECRET, t, &mention, &[]);
    assert_eq!(status, 200, "{body}\n{}", d.log());
    assert!(!body.contains("ignored"), "{body}");
    // The exact same request again is a replay.
    let replay = slack(&d, SIGNING_SECRET, t, &mention, &[]);
    assert_eq!(replay.0, 401, "replayed: {}", replay.1);
    // Slack's retry (freshly signed, X-Slack-Retry-Num) of the accepted event: 200 so
    // Slack stops retrying, and not queued again.
    let retry = slack(
        &d,
        SIGNING_SECRET,
        t - 1,
        &mention,
        &[
            ("X-Slack-Retry-Num", "1"),
            ("X-Slack-Retry-Reason", "http_timeout"),
        ],
    );
    assert_eq!(retry.0, 200, "retry: {}", retry.1);
    assert!(retry.1.contains("Duplicate"), "retry: {}", retry.1);
    // The same message through the `message.channels` subscription (another event id,
    // same channel and ts): the same message, not queued again.
    let as_message = envelope(
        "Ev0LIVE0005",
        json!({
            "type": "message",
            "channel_type": "channel",
            "user": "U0ALICE01",
            "text": format!("<@{BOT_USER}> {question} &lt;logs&gt;"),
            "ts": "1700000000.000200",
            "thread_ts": THREAD,
            "channel": CHANNEL,
        }),
    );
    let twin = slack(&d, SIGNING_SECRET, now(), &as_message, &[]);
    assert_eq!(twin.0, 200, "{}", twin.1);
    assert!(twin.1.contains("Duplicate"), "{}", twin.1);

    // The reply: chat.postMessage with the bot token, into the thread, escaped.
    let post = api
        .next("/chat.postMessage", Duration::from_secs(90))
        .unwrap_or_else(|| panic!("no chat.postMessage\n{}", d.log()));
    eprintln!(
        "slack: reply posted {:?} after the accepted event",
        sent_at.elapsed()
    );
    assert_eq!(
        post.header("authorization"),
        Some(format!("Bearer {BOT_TOKEN}").as_str())
    );
    assert!(post
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    let msg = post.json();
    assert_eq!(msg["channel"], CHANNEL, "{msg}");
    assert_eq!(
        msg["thread_ts"], THREAD,
        "the reply goes to the thread: {msg}"
    );
    assert_eq!(msg["unfurl_links"], false, "{msg}");
    assert_eq!(msg["unfurl_media"], false, "{msg}");
    let text = msg["text"].as_str().unwrap();
    assert!(text.starts_with("mock: "), "{text}");
    assert_eq!(text.matches(question).count(), 1, "queued once: {text}");
    // Slack's entities were decoded on the way in (the agent saw `<logs>`) and the
    // reply is escaped on the way out: the agent cannot write a live `<@U…>` or
    // `<!channel>`.
    assert!(text.contains("&lt;logs&gt;"), "{text}");
    assert!(
        text.contains(&format!("&lt;@{BOT_USER}&gt;")),
        "the echoed mention is escaped: {text}"
    );

    // Nothing else arrives: the replay, the retry and the twin queued nothing.
    if let Some(extra) = api.next("/chat.postMessage", Duration::from_secs(8)) {
        panic!(
            "a second reply arrived: {}",
            String::from_utf8_lossy(&extra.body)
        );
    }
    let rows = sessions(&d);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["runtime"], "runsc");
    d.stop();
    eprintln!("slack: whole test {:?}", started.elapsed());
}
