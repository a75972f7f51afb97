//! Outbound sends against fake platform servers on 127.0.0.1.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant, SystemTime};

use ironclaw_channels::config::{SlackConfig, TelegramConfig, WebhookConfig};
use ironclaw_channels::signing::SigningKey;
use ironclaw_channels::slack::SlackChannel;
use ironclaw_channels::split::Measure;
use ironclaw_channels::telegram::{PollError, TelegramChannel, TelegramPoller};
use ironclaw_channels::webhook::{self, WebhookChannel};
use ironclaw_channels::{Channel, InboundError, OutboundMessage, Secret, SendError};
use ironclaw_contract::enums::Provenance;
use serde_json::json;
use support::{fast_settings, Canned, FakeServer};

const TG_TOKEN: &str = "4242:AAbbCCdd_ee-ff-0123456789";
const SLACK_TOKEN: &str = "xoxb-1111-2222-secretsecret";
const WEBHOOK_SECRET: &str = "whsec-0123456789abcdef0123456789";

fn msg(channel: &str, platform: &str, thread: Option<&str>, text: &str) -> OutboundMessage {
    OutboundMessage {
        channel_type: channel.into(),
        instance: None,
        platform_id: platform.into(),
        thread_id: thread.map(str::to_owned),
        text: text.into(),
        message_id: None,
    }
}

fn tg_ok(id: i64) -> Canned {
    Canned::json(
        200,
        json!({"ok": true, "result": {"message_id": id, "chat": {"id": 1, "type": "private"}, "date": 1}}),
    )
}

fn telegram(base: &str) -> TelegramChannel {
    TelegramChannel::new(
        &TelegramConfig {
            bot_token: Some(Secret::new(TG_TOKEN)),
            webhook_secret: None,
            bot_username: None,
            api_base: Some(base.into()),
            mode: Default::default(),
        },
        &fast_settings(),
    )
    .unwrap()
}

fn slack(base: &str) -> SlackChannel {
    SlackChannel::new(
        &SlackConfig {
            signing_secret: None,
            bot_token: Some(Secret::new(SLACK_TOKEN)),
            bot_user_id: None,
            api_base: Some(base.into()),
        },
        &fast_settings(),
    )
    .unwrap()
}

// ---------------------------------------------------------------- Telegram

#[test]
fn telegram_sends_to_the_bot_api_with_topic() {
    let server = FakeServer::start(vec![], tg_ok(4242));
    let t = telegram(&server.base);
    let r = t
        .send(&msg("telegram", "-1001234", Some("77"), "hello"))
        .unwrap();
    assert_eq!(r.first_id(), Some("4242"));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, format!("/bot{TG_TOKEN}/sendMessage"));
    let body = reqs[0].json();
    assert_eq!(body["chat_id"], json!(-1001234));
    assert_eq!(body["message_thread_id"], json!(77));
    assert_eq!(body["text"], "hello");
    assert_eq!(body["link_preview_options"]["is_disabled"], json!(true));
    assert!(body.get("parse_mode").is_none());
}

#[test]
fn telegram_splits_at_4096_without_breaking_multibyte_text() {
    let server = FakeServer::start(vec![tg_ok(1), tg_ok(2), tg_ok(3)], tg_ok(9));
    let t = telegram(&server.base);
    // Cyrillic (2 bytes), emoji (4 bytes, 2 UTF-16 units), CJK (3 bytes), with line
    // breaks now and then: 10 000+ UTF-16 units.
    let mut text = String::new();
    for i in 0..600 {
        text.push_str("Привет мир 😀 你好 ");
        if i % 7 == 0 {
            text.push('\n');
        }
    }
    assert!(Measure::Utf16.len(&text) > 2 * 4096);
    let r = t.send(&msg("telegram", "1", None, &text)).unwrap();
    let reqs = server.requests();
    assert_eq!(r.parts, reqs.len());
    assert_eq!(r.platform_message_ids.len(), reqs.len());
    assert!(reqs.len() >= 3);
    let mut joined = String::new();
    for req in &reqs {
        let part = req.json()["text"].as_str().unwrap().to_owned();
        assert!(Measure::Utf16.len(&part) <= 4096, "part too long");
        assert!(!part.is_empty());
        joined.push_str(&part);
    }
    assert_eq!(joined, text);
}

#[test]
fn telegram_429_retry_after_is_honoured_then_success() {
    let server = FakeServer::start(
        vec![Canned::json(
            429,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
        )],
        tg_ok(5),
    );
    let t = telegram(&server.base);
    let started = Instant::now();
    let r = t.send(&msg("telegram", "1", None, "hi")).unwrap();
    assert_eq!(r.first_id(), Some("5"));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
    assert!(started.elapsed() >= Duration::from_millis(950));
}

#[test]
fn telegram_permanent_error_is_not_retried_and_the_token_never_shows() {
    let server = FakeServer::start(
        vec![],
        Canned::json(
            400,
            json!({"ok": false, "error_code": 400, "description": format!("Bad Request: chat not found (token {TG_TOKEN})")}),
        ),
    );
    let t = telegram(&server.base);
    let e = t.send(&msg("telegram", "1", None, "hi")).unwrap_err();
    assert!(e.is_permanent(), "{e:?}");
    assert_eq!(server.requests().len(), 1);
    let text = format!("{e} {e:?}");
    assert!(text.contains("chat not found"), "{text}");
    assert!(!text.contains("AAbbCCdd"), "token leaked: {text}");
}

#[test]
fn telegram_5xx_is_retried_within_bounds_then_retryable() {
    let server = FakeServer::start(
        vec![],
        Canned::json(
            502,
            json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}),
        ),
    );
    let t = telegram(&server.base);
    let e = t.send(&msg("telegram", "1", None, "hi")).unwrap_err();
    assert!(!e.is_permanent());
    assert_eq!(server.requests().len(), 3, "max_attempts");
}

#[test]
fn telegram_transport_errors_are_retryable_and_redacted() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = telegram(&format!("http://127.0.0.1:{port}"));
    let e = t.send(&msg("telegram", "1", None, "hi")).unwrap_err();
    assert!(!e.is_permanent());
    assert!(!format!("{e:?}").contains("AAbbCCdd"));
}

#[test]
fn telegram_refuses_bad_destinations_without_calling() {
    let server = FakeServer::start(vec![], tg_ok(1));
    let t = telegram(&server.base);
    for m in [
        msg("telegram", "1", Some("general"), "hi"),
        msg("telegram", "", None, "hi"),
        msg("telegram", "1", None, "  "),
    ] {
        assert!(t.send(&m).unwrap_err().is_permanent());
    }
    assert!(server.requests().is_empty());
}

#[test]
fn a_split_message_resumes_after_the_parts_already_sent() {
    // Part 1 ok, part 2 fails three times (max attempts), then everything succeeds.
    let bad = Canned::json(
        500,
        json!({"ok": false, "error_code": 500, "description": "x"}),
    );
    let server = FakeServer::start(vec![tg_ok(1), bad.clone(), bad.clone(), bad], tg_ok(2));
    let t = telegram(&server.base);
    let mut m = msg("telegram", "1", None, &"word ".repeat(1000)); // 5000 chars → 2 parts
    m.message_id = Some("out-7".into());
    let e = t.send(&m).unwrap_err();
    assert!(!e.is_permanent());
    let first = server.requests();
    assert_eq!(first.len(), 4);
    let r = t.send(&m).unwrap();
    let all = server.requests();
    assert_eq!(all.len(), 5, "only the unsent part is sent again");
    assert_eq!(all[4].json()["text"], all[1].json()["text"]);
    assert_eq!(r.platform_message_ids, ["1", "2"]);
}

#[test]
fn telegram_long_polling_with_explicit_offsets() {
    let batch = json!({"ok": true, "result": [
        {"update_id": 100, "message": {"message_id": 1, "from": {"id": 7, "is_bot": false}, "chat": {"id": 7, "type": "private"}, "date": 1, "text": "one"}},
        {"update_id": 101, "message": {"message_id": 2, "chat": "broken"}},
        {"update_id": 102, "edited_message": {}},
    ]});
    let server = FakeServer::start(
        vec![
            Canned::json(200, batch),
            Canned::json(200, json!({"ok": true, "result": []})),
            Canned::json(
                409,
                json!({"ok": false, "error_code": 409, "description": "Conflict: can't use getUpdates method while webhook is active"}),
            ),
        ],
        Canned::json(200, json!({"ok": true, "result": []})),
    );
    let cfg = TelegramConfig {
        bot_token: Some(Secret::new(TG_TOKEN)),
        api_base: Some(server.base.clone()),
        ..TelegramConfig::default()
    };
    let mut p = TelegramPoller::new(&cfg, Duration::from_secs(1)).unwrap();
    let b = p.poll_once().unwrap();
    assert_eq!(b.events.len(), 1);
    assert_eq!(b.events[0].text, "one");
    assert_eq!(b.events[0].provenance, Provenance::Verified);
    assert_eq!(b.rejected.len(), 1);
    assert_eq!(b.rejected[0].0, 101);
    assert_eq!(b.ignored.len(), 1);
    assert_eq!(b.next_offset, Some(103));
    p.acknowledge(&b);
    assert_eq!(p.offset(), Some(103));
    let empty = p.poll_once().unwrap();
    assert!(empty.events.is_empty());
    p.acknowledge(&empty); // an empty batch does not move the offset
    assert_eq!(p.offset(), Some(103));
    let e = p.poll_once().unwrap_err();
    assert!(matches!(e, PollError::Refused { code: 409, .. }), "{e:?}");
    let reqs = server.requests();
    assert_eq!(reqs[0].path, format!("/bot{TG_TOKEN}/getUpdates"));
    assert!(reqs[0].json().get("offset").is_none());
    assert_eq!(reqs[1].json()["offset"], json!(103));
    assert_eq!(reqs[0].json()["allowed_updates"], json!(["message"]));
}

/// A batch bigger than the adapters' 64 KiB answer cap (a few long non-ASCII messages,
/// which Telegram sends `\u`-escaped) is read whole: cut short, it was unreadable, never
/// acknowledged, and fetched again forever.
#[test]
fn telegram_poll_reads_a_batch_larger_than_a_status_answer() {
    let text: String = "ж".repeat(4000);
    let updates: Vec<serde_json::Value> = (0..20)
        .map(|i| json!({"update_id": 1000 + i, "message": {"message_id": i, "from": {"id": 7, "is_bot": false}, "chat": {"id": 7, "type": "private"}, "date": 1, "text": text}}))
        .collect();
    let answer = json!({"ok": true, "result": updates});
    // Escaped as Telegram does: every non-ASCII character as \uXXXX.
    let mut escaped = String::new();
    for c in answer.to_string().chars() {
        if c.is_ascii() {
            escaped.push(c);
        } else {
            escaped.push_str(&format!("\\u{:04x}", c as u32));
        }
    }
    assert!(escaped.len() > 400 * 1024, "{}", escaped.len());
    let server = FakeServer::start(
        vec![Canned {
            status: 200,
            headers: vec![],
            body: escaped,
        }],
        Canned::json(200, json!({"ok": true, "result": []})),
    );
    let cfg = TelegramConfig {
        bot_token: Some(Secret::new(TG_TOKEN)),
        api_base: Some(server.base.clone()),
        ..TelegramConfig::default()
    };
    let mut p = TelegramPoller::new(&cfg, Duration::from_secs(1)).unwrap();
    let b = p.poll_once().unwrap();
    assert_eq!(b.events.len(), 20);
    assert_eq!(b.events[19].text, text);
    assert_eq!(b.next_offset, Some(1020));
    p.acknowledge(&b);
    // A clean stop confirms the acknowledged offset without waiting for updates.
    p.confirm().unwrap();
    let reqs = server.requests();
    let asked = reqs[0].json();
    assert!(asked["limit"].as_u64().unwrap() <= 100, "{asked}");
    let confirm = reqs[1].json();
    assert_eq!(confirm["offset"], json!(1020));
    assert_eq!(confirm["timeout"], json!(0));
}

#[test]
fn telegram_confirm_before_any_batch_calls_nothing() {
    let server = FakeServer::start(vec![], Canned::json(200, json!({"ok": true, "result": []})));
    let cfg = TelegramConfig {
        bot_token: Some(Secret::new(TG_TOKEN)),
        api_base: Some(server.base.clone()),
        ..TelegramConfig::default()
    };
    let p = TelegramPoller::new(&cfg, Duration::from_secs(1)).unwrap();
    p.confirm().unwrap();
    assert!(server.requests().is_empty());
}

#[test]
fn telegram_unacknowledged_batch_is_fetched_again() {
    let server = FakeServer::start(
        vec![],
        Canned::json(
            200,
            json!({"ok": true, "result": [
                {"update_id": 5, "message": {"message_id": 1, "from": {"id": 7, "is_bot": false}, "chat": {"id": 7, "type": "private"}, "date": 1, "text": "x"}}
            ]}),
        ),
    );
    let cfg = TelegramConfig {
        bot_token: Some(Secret::new(TG_TOKEN)),
        api_base: Some(server.base.clone()),
        ..TelegramConfig::default()
    };
    let p = TelegramPoller::new(&cfg, Duration::from_secs(1)).unwrap();
    p.poll_once().unwrap();
    p.poll_once().unwrap();
    let reqs = server.requests();
    assert!(reqs.iter().all(|r| r.json().get("offset").is_none()));
}

// ---------------------------------------------------------------- Slack

#[test]
fn slack_posts_with_bearer_thread_and_escaping() {
    let server = FakeServer::start(
        vec![],
        Canned::json(
            200,
            json!({"ok": true, "channel": "C1", "ts": "1700000000.000200"}),
        ),
    );
    let s = slack(&server.base);
    let r = s
        .send(&msg(
            "slack",
            "C1",
            Some("1699999999.000001"),
            "a < b & <!channel>",
        ))
        .unwrap();
    assert_eq!(r.first_id(), Some("1700000000.000200"));
    let reqs = server.requests();
    assert_eq!(reqs[0].path, "/chat.postMessage");
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {SLACK_TOKEN}").as_str())
    );
    assert!(reqs[0]
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let body = reqs[0].json();
    assert_eq!(body["channel"], "C1");
    assert_eq!(body["thread_ts"], "1699999999.000001");
    assert_eq!(body["text"], "a &lt; b &amp; &lt;!channel&gt;");
    assert_eq!(body["unfurl_links"], json!(false));
    assert_eq!(body["unfurl_media"], json!(false));
}

#[test]
fn slack_ok_false_is_a_permanent_error() {
    let server = FakeServer::start(
        vec![],
        Canned::json(200, json!({"ok": false, "error": "channel_not_found"})),
    );
    let s = slack(&server.base);
    let e = s.send(&msg("slack", "C404", None, "hi")).unwrap_err();
    assert!(
        matches!(&e, SendError::Permanent { reason, .. } if reason.contains("channel_not_found")),
        "{e:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn slack_ratelimited_with_retry_after_is_honoured() {
    let server = FakeServer::start(
        vec![
            Canned::json(429, json!({"ok": false, "error": "ratelimited"}))
                .with_header("Retry-After", "1"),
        ],
        Canned::json(200, json!({"ok": true, "ts": "1.2"})),
    );
    let s = slack(&server.base);
    s.send(&msg("slack", "C1", None, "hi")).unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].at.duration_since(reqs[0].at) >= Duration::from_millis(950));
}

#[test]
fn slack_ok_false_ratelimited_at_http_200_is_retried() {
    let server = FakeServer::start(
        vec![Canned::json(
            200,
            json!({"ok": false, "error": "ratelimited"}),
        )],
        Canned::json(200, json!({"ok": true, "ts": "1.3"})),
    );
    let s = slack(&server.base);
    assert_eq!(
        s.send(&msg("slack", "C1", None, "hi")).unwrap().first_id(),
        Some("1.3")
    );
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn slack_long_text_is_split_and_escaped_per_part() {
    let server = FakeServer::start(vec![], Canned::json(200, json!({"ok": true, "ts": "1.1"})));
    let s = slack(&server.base);
    let text = "x<y ".repeat(1000); // 4000 chars → 2 parts of ≤ 3000 before escaping
    let r = s.send(&msg("slack", "C1", None, &text)).unwrap();
    assert_eq!(r.parts, 2);
    let joined: String = server
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().replace("&lt;", "<"))
        .collect();
    assert_eq!(joined, text);
}

#[test]
fn a_token_less_adapter_refuses_to_send() {
    let s = SlackChannel::new(&SlackConfig::default(), &fast_settings()).unwrap();
    assert!(s
        .send(&msg("slack", "C1", None, "hi"))
        .unwrap_err()
        .is_permanent());
}

// ---------------------------------------------------------------- webhook

fn webhook(url: &str) -> WebhookChannel {
    WebhookChannel::new(
        "ci",
        &WebhookConfig {
            secret: Some(Secret::new(WEBHOOK_SECRET)),
            url: Some(url.into()),
        },
        &fast_settings(),
    )
    .unwrap()
}

#[test]
fn webhook_outbound_signature_round_trips_through_the_inbound_verifier() {
    let server = FakeServer::start(vec![], Canned::json(200, json!({"id": "rcv-1"})));
    let w = webhook(&format!("{}/incoming", server.base));
    let mut m = msg("webhook", "build-42", Some("main"), "all green ✅");
    m.message_id = Some("out-1".into());
    let r = w.send(&m).unwrap();
    assert_eq!(r.first_id(), Some("rcv-1"));
    let req = &server.requests()[0];
    assert_eq!(req.path, "/incoming");
    let h = req.header_map();
    // Our own verifier accepts it…
    webhook::verify_signature(
        SigningKey::new(&Secret::new(WEBHOOK_SECRET)),
        &h,
        &req.body,
        SystemTime::now(),
    )
    .unwrap();
    // …and an independent HMAC over `ts "." body` agrees.
    let ts = req.header("x-ironclaw-timestamp").unwrap();
    let expected = support::hmac_hex(WEBHOOK_SECRET.as_bytes(), &[ts.as_bytes(), b".", &req.body]);
    assert_eq!(
        req.header("x-ironclaw-signature").unwrap(),
        format!("sha256={expected}")
    );
    // Another key, or a changed body, does not verify.
    assert_eq!(
        webhook::verify_signature(
            SigningKey::from_bytes(b"another-secret-xxxxxxxx"),
            &h,
            &req.body,
            SystemTime::now()
        ),
        Err(InboundError::BadSignature)
    );
    let body = req.json();
    assert_eq!(
        body,
        json!({"instance": "ci", "platform_id": "build-42", "thread_id": "main", "text": "all green ✅", "message_id": "out-1"})
    );
}

#[test]
fn webhook_retries_are_resigned() {
    let server = FakeServer::start(
        vec![Canned::json(503, json!({})).with_header("Retry-After", "1")],
        Canned::json(200, json!({})),
    );
    let w = webhook(&server.base);
    let r = w.send(&msg("webhook", "p", None, "x")).unwrap();
    assert_eq!(r.first_id(), None);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_ne!(
        reqs[0].header("x-ironclaw-timestamp"),
        reqs[1].header("x-ironclaw-timestamp"),
        "a retry after ≥ 1 s carries a fresh timestamp"
    );
    for r in &reqs {
        webhook::verify_signature(
            SigningKey::new(&Secret::new(WEBHOOK_SECRET)),
            &r.header_map(),
            &r.body,
            SystemTime::now(),
        )
        .unwrap();
    }
}

#[test]
fn webhook_4xx_is_permanent() {
    let server = FakeServer::start(vec![], Canned::json(404, json!({"error": "no such hook"})));
    let w = webhook(&server.base);
    let e = w.send(&msg("webhook", "p", None, "x")).unwrap_err();
    assert!(e.is_permanent());
    assert!(e.to_string().contains("404"));
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn debug_output_of_adapters_never_shows_credentials() {
    let url = "https://hooks.example.org/in/TOKENINURL-123456";
    let w = WebhookChannel::new(
        "ci",
        &WebhookConfig {
            secret: Some(Secret::new(WEBHOOK_SECRET)),
            url: Some(url.into()),
        },
        &fast_settings(),
    )
    .unwrap();
    let s = SlackChannel::new(
        &SlackConfig {
            signing_secret: Some(Secret::new("slack-signing-SECRET-0123")),
            bot_token: Some(Secret::new(SLACK_TOKEN)),
            bot_user_id: None,
            api_base: None,
        },
        &fast_settings(),
    )
    .unwrap();
    let tg_cfg = TelegramConfig {
        bot_token: Some(Secret::new(TG_TOKEN)),
        webhook_secret: Some(Secret::new("tg-webhook-SECRET-0123456")),
        bot_username: None,
        api_base: None,
        mode: Default::default(),
    };
    let t = TelegramChannel::new(&tg_cfg, &fast_settings()).unwrap();
    let p = TelegramPoller::new(&tg_cfg, Duration::from_secs(1)).unwrap();
    let text = format!("{w:?} {s:?} {t:?} {p:?}");
    for secret in [
        WEBHOOK_SECRET,
        "TOKENINURL",
        "slack-signing-SECRET",
        SLACK_TOKEN,
        "AAbbCCdd",
        "tg-webhook-SECRET",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}
