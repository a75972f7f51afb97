//! Telegram end to end, live (issue #6), both ways updates can arrive, each against a
//! fake Bot API on 127.0.0.1 and the agent in a real `runsc` sandbox.
//!
//! - Webhook: an update with the right `X-Telegram-Bot-Api-Secret-Token` reaches the
//!   agent and the reply comes back by `sendMessage` (token in the path, numeric chat
//!   id, no `parse_mode`); a missing or wrong secret is 401 and queues nothing; a
//!   replayed update (Telegram has no timestamp or body signature, so a replay cannot
//!   be told from its own redelivery) is answered "ignored" and queued once; a reply
//!   longer than 4096 UTF-16 units arrives as several `sendMessage` calls, in order,
//!   that concatenate to the whole reply.
//! - Long polling (`telegram.mode = "poll"`): the daemon calls `getUpdates`, survives
//!   a failing call, routes the batch, and only then moves the offset; an update sent
//!   while the daemon is down is delivered after the restart, and the one answered
//!   before it is not delivered again.
//!
//! Needs root, `runsc` and the static agent (`dev/test.sh` builds it).

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ironclaw_e2e::live::LiveDir;
use ironclaw_e2e::platform::{
    channels_file, post_hook, sessions, wire_to_dev_agent, FakePlatform, PlatformRequest,
};
use serde_json::{json, Value};

const TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
const SECRET: &str = "tg_live_secret-0123456789abcdef";
const BOT: &str = "ironclaw_live_bot";
const GROUP: i64 = -1_001_234_567_890;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn update(update_id: i64, message_id: i64, chat: Value, text: &str) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": {"id": 4242, "is_bot": false, "first_name": "Alice", "username": "alice"},
            "chat": chat,
            "date": now(),
            "text": text,
        }
    })
}

fn send_message_path() -> String {
    format!("/bot{TOKEN}/sendMessage")
}

/// Answers `sendMessage` as Telegram does, numbering the messages.
fn sent(req: &PlatformRequest, n: &Mutex<i64>) -> (u16, Value) {
    let mut n = n.lock().unwrap();
    *n += 1;
    let chat = req.json()["chat_id"].clone();
    (
        200,
        json!({"ok": true, "result": {"message_id": *n, "chat": {"id": chat}, "date": now(), "text": "…"}}),
    )
}

fn webhook(d: &ironclaw_e2e::Daemon, secret: Option<&str>, body: &str) -> (u16, String) {
    match secret {
        Some(s) => post_hook(
            d,
            "telegram",
            &[("X-Telegram-Bot-Api-Secret-Token", s)],
            body,
        ),
        None => post_hook(d, "telegram", &[], body),
    }
}

#[test]
fn telegram_webhook_updates_reach_the_sandbox_and_long_replies_arrive_split_in_order() {
    let started = Instant::now();
    let dir = LiveDir::new();
    let counter = Mutex::new(0);
    let api = FakePlatform::start(move |req| {
        if req.path == send_message_path() {
            sent(req, &counter)
        } else {
            (
                404,
                json!({"ok": false, "error_code": 404, "description": "Not Found"}),
            )
        }
    });
    let channels = channels_file(
        dir.dir.path(),
        &json!({"telegram": {
            "bot_token": TOKEN,
            "webhook_secret": SECRET,
            "bot_username": BOT,
            "api_base": api.base,
        }}),
    );
    let d = dir.start_dev(&["--channels-file", channels.to_str().unwrap()]);
    wire_to_dev_agent(
        &d,
        &json!({"channel_type": "telegram", "platform_id": GROUP.to_string(), "unknown_sender_policy": "public"}),
        &json!({"engage_mode": "mention", "sender_scope": "all"}),
    );
    let chat = json!({"id": GROUP, "type": "supergroup", "title": "ops"});
    let question = "is the deploy done?";
    let first = update(9001, 10, chat.clone(), &format!("@{BOT} {question}")).to_string();

    // Without the secret token, or with another one: 401, nothing queued.
    let (status, body) = webhook(&d, None, &first);
    assert_eq!(status, 401, "missing: {body}");
    let (status, body) = webhook(&d, Some("tg_live_secret-0123456789abcdeF"), &first);
    assert_eq!(status, 401, "wrong: {body}");
    let (status, body) = webhook(&d, Some(""), &first);
    assert_eq!(status, 401, "empty: {body}");
    // Authentic, but from a bot: ignored.
    let mut from_bot = update(9000, 9, chat.clone(), &format!("@{BOT} ping"));
    from_bot["message"]["from"] = json!({"id": 99, "is_bot": true, "first_name": "OtherBot"});
    let (status, body) = webhook(&d, Some(SECRET), &from_bot.to_string());
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("BotMessage"), "{body}");
    assert!(
        sessions(&d).is_empty(),
        "a refused update started a session"
    );

    // Accepted; the same update again (Telegram's redelivery, or a replay of a
    // captured request — indistinguishable without a timestamp) is not queued again.
    let sent_at = Instant::now();
    let (status, body) = webhook(&d, Some(SECRET), &first);
    assert_eq!(status, 200, "{body}\n{}", d.log());
    assert!(!body.contains("ignored"), "{body}");
    let (status, body) = webhook(&d, Some(SECRET), &first);
    assert_eq!(status, 200, "replayed: {body}");
    assert!(body.contains("Duplicate"), "replayed: {body}");

    let reply = api
        .next(&send_message_path(), Duration::from_secs(90))
        .unwrap_or_else(|| panic!("no sendMessage\n{}", d.log()));
    eprintln!(
        "telegram: reply sent {:?} after the accepted update",
        sent_at.elapsed()
    );
    let msg = reply.json();
    assert_eq!(msg["chat_id"], json!(GROUP), "numeric chat id: {msg}");
    assert!(msg.get("parse_mode").is_none(), "{msg}");
    assert!(msg.get("message_thread_id").is_none(), "{msg}");
    assert_eq!(msg["link_preview_options"]["is_disabled"], true, "{msg}");
    let text = msg["text"].as_str().unwrap();
    assert!(text.starts_with("mock: "), "{text}");
    assert_eq!(text.matches(question).count(), 1, "queued once: {text}");

    // A long question: the mock echoes it, the reply exceeds Telegram's 4096 UTF-16
    // units and arrives in parts, in order. Multi-unit characters (é is one UTF-16
    // unit but two UTF-8 bytes, 🦀 two units) keep the counting honest.
    let long: String = (0..150)
        .map(|i| {
            format!(
                "line {i:03}: the crab 🦀 says the café is open, {}\n",
                "x".repeat(40)
            )
        })
        .collect();
    let long_update = update(9002, 11, chat.clone(), &format!("@{BOT} {long}")).to_string();
    let t = Instant::now();
    let (status, body) = webhook(&d, Some(SECRET), &long_update);
    assert_eq!(status, 200, "{body}");
    let mut parts = Vec::new();
    let mut joined = String::new();
    while !joined.trim_end().ends_with(long.trim_end()) {
        let part = api
            .next(&send_message_path(), Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!(
                    "the long reply stopped after {} part(s)\n{}",
                    parts.len(),
                    d.log()
                )
            });
        let m = part.json();
        assert_eq!(m["chat_id"], json!(GROUP), "{m}");
        let p = m["text"].as_str().unwrap().to_owned();
        assert!(
            p.encode_utf16().count() <= 4096,
            "part of {} units",
            p.encode_utf16().count()
        );
        joined.push_str(&p);
        parts.push(p);
    }
    eprintln!(
        "telegram: {}-char reply in {} sendMessage calls after {:?}",
        joined.chars().count(),
        parts.len(),
        t.elapsed()
    );
    assert!(joined.encode_utf16().count() > 2 * 4096, "{}", joined.len());
    assert!(parts.len() >= 3, "{} parts", parts.len());
    assert!(joined.starts_with("mock: "), "{}", &joined[..80]);
    assert_eq!(joined.matches("line 000:").count(), 1);
    assert_eq!(joined.matches("line 149:").count(), 1);
    // In order: every line appears once, after the previous one.
    let mut at = 0;
    for i in 0..150 {
        let needle = format!("line {i:03}:");
        let pos = joined[at..]
            .find(&needle)
            .unwrap_or_else(|| panic!("{needle} missing or out of order"));
        at += pos + needle.len();
    }

    // Nothing else: the replayed update queued nothing.
    if let Some(extra) = api.next(&send_message_path(), Duration::from_secs(8)) {
        panic!(
            "an extra sendMessage: {}",
            String::from_utf8_lossy(&extra.body)
        );
    }
    let rows = sessions(&d);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["runtime"], "runsc");
    d.stop();
    eprintln!("telegram webhook: whole test {:?}", started.elapsed());
}

/// What the fake Bot API holds for `getUpdates`: Telegram's semantics — an update is
/// returned until a call with a higher offset confirms it.
#[derive(Default)]
struct Updates {
    pending: Vec<Value>,
    /// The `offset` of every `getUpdates` call, in order.
    offsets: Vec<Option<i64>>,
    /// The next calls that fail (a gateway's 502).
    failures: usize,
}

fn get_updates(req: &PlatformRequest, state: &Mutex<Updates>) -> (u16, Value) {
    let body = req.json();
    let offset = body["offset"].as_i64();
    let limit = body["limit"].as_u64().unwrap_or(100) as usize;
    let out: Vec<Value> = {
        let mut s = state.lock().unwrap();
        s.offsets.push(offset);
        if s.failures > 0 {
            s.failures -= 1;
            return (
                502,
                json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}),
            );
        }
        if let Some(o) = offset {
            s.pending.retain(|u| u["update_id"].as_i64().unwrap() >= o);
        }
        s.pending.iter().take(limit).cloned().collect()
    };
    if out.is_empty() {
        // A short long poll: the daemon asks again soon.
        let hold = Duration::from_millis(300)
            .min(Duration::from_secs(body["timeout"].as_u64().unwrap_or(0)));
        std::thread::sleep(hold);
    }
    (200, json!({"ok": true, "result": out}))
}

#[test]
fn telegram_long_polling_routes_batches_and_loses_nothing_across_a_restart() {
    let started = Instant::now();
    let dir = LiveDir::new();
    let state = Arc::new(Mutex::new(Updates {
        failures: 1,
        ..Updates::default()
    }));
    let counter = Mutex::new(0);
    let fake = state.clone();
    let api = FakePlatform::start(move |req| {
        if req.path == format!("/bot{TOKEN}/getUpdates") {
            get_updates(req, &fake)
        } else if req.path == send_message_path() {
            sent(req, &counter)
        } else {
            (
                404,
                json!({"ok": false, "error_code": 404, "description": "Not Found"}),
            )
        }
    });
    let channels = channels_file(
        dir.dir.path(),
        &json!({"telegram": {"bot_token": TOKEN, "mode": "poll", "api_base": api.base}}),
    );
    let args = ["--channels-file", channels.to_str().unwrap()];
    let d = dir.start_dev(&args);
    // Polling, not the webhook: the hook is off.
    let (status, _) = webhook(&d, Some(SECRET), "{}");
    assert_eq!(status, 404);
    wire_to_dev_agent(
        &d,
        &json!({"channel_type": "telegram", "platform_id": "777", "unknown_sender_policy": "public"}),
        &json!({"engage_mode": "mention", "sender_scope": "all"}),
    );
    let private = json!({"id": 777, "type": "private", "first_name": "Alice"});
    let sent_at = Instant::now();
    state
        .lock()
        .unwrap()
        .pending
        .push(update(500, 1, private.clone(), "hello by long polling"));
    let reply = api
        .next(&send_message_path(), Duration::from_secs(90))
        .unwrap_or_else(|| panic!("no sendMessage\n{}", d.log()));
    eprintln!(
        "telegram polling: reply sent {:?} after the update was offered",
        sent_at.elapsed()
    );
    let msg = reply.json();
    assert_eq!(msg["chat_id"], json!(777), "{msg}");
    let text = msg["text"].as_str().unwrap();
    assert!(text.starts_with("mock: "), "{text}");
    assert_eq!(text.matches("hello by long polling").count(), 1, "{text}");

    // The batch was acknowledged: a later call confirms it with offset 501.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state.lock().unwrap().offsets.contains(&Some(501)) {
        assert!(Instant::now() < deadline, "no getUpdates with offset 501");
        std::thread::sleep(Duration::from_millis(50));
    }
    {
        let s = state.lock().unwrap();
        assert_eq!(
            s.offsets[0], None,
            "the first call starts at Telegram's own offset"
        );
        assert!(s.pending.is_empty(), "update 500 is confirmed");
        // The 502 was retried (after a back-off), and calls before the update arrived
        // carried no offset: nothing had been acknowledged yet.
        let first_ack = s.offsets.iter().position(|o| *o == Some(501)).unwrap();
        assert!(first_ack >= 2, "{:?}", s.offsets);
        assert!(
            s.offsets[..first_ack].iter().all(Option::is_none),
            "{:?}",
            s.offsets
        );
    }
    let log = d.log();
    assert!(log.contains("long polling started"), "{log}");
    assert!(
        log.contains("getUpdates failed"),
        "the 502 was logged and retried: {log}"
    );
    // Every getUpdates carried the bot token in its path, and asked only for messages.
    let polls: Vec<Value> = api
        .seen()
        .iter()
        .filter(|r| r.path.ends_with("/getUpdates"))
        .map(PlatformRequest::json)
        .collect();
    assert!(polls
        .iter()
        .all(|p| p["allowed_updates"] == json!(["message"])));

    // Down: an update arrives while no daemon runs. After the restart it is delivered,
    // and the one answered before is not delivered again.
    let t = Instant::now();
    d.stop();
    eprintln!("telegram polling: the daemon stopped in {:?}", t.elapsed());
    let calls_before = state.lock().unwrap().offsets.len();
    state
        .lock()
        .unwrap()
        .pending
        .push(update(501, 2, private, "sent while the daemon was down"));
    let restarted_at = Instant::now();
    let d = dir.start_dev(&args);
    let reply = api
        .next(&send_message_path(), Duration::from_secs(90))
        .unwrap_or_else(|| panic!("no sendMessage after the restart\n{}", d.log()));
    eprintln!(
        "telegram polling: reply after the restart {:?} after start",
        restarted_at.elapsed()
    );
    let text = reply.json()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("sent while the daemon was down"), "{text}");
    assert!(
        !text.contains("hello by long polling"),
        "redelivered: {text}"
    );
    assert_eq!(
        state.lock().unwrap().offsets[calls_before],
        None,
        "a restarted poller starts from what Telegram has not had confirmed"
    );
    if let Some(extra) = api.next(&send_message_path(), Duration::from_secs(8)) {
        panic!(
            "an extra sendMessage: {}",
            String::from_utf8_lossy(&extra.body)
        );
    }
    assert_eq!(sessions(&d).len(), 1);
    d.stop();
    eprintln!("telegram polling: whole test {:?}", started.elapsed());
}
