//! Inbound verification and parsing: webhook, Slack, Telegram.
//!
//! Every refusal is checked for its exact error and HTTP status; every acceptance for
//! provenance `Verified` and the mapped fields.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use ironclaw_channels::config::{SlackConfig, TelegramConfig, WebhookConfig};
use ironclaw_channels::slack::SlackChannel;
use ironclaw_channels::telegram::TelegramChannel;
use ironclaw_channels::webhook::WebhookChannel;
use ironclaw_channels::{
    Channel, IgnoreReason, InboundError, InboundOutcome, Secret, MAX_INBOUND_BODY,
};
use ironclaw_contract::enums::Provenance;
use ironclaw_ingest::InboundEvent;
use proptest::prelude::*;
use support::{fast_settings, headers, hmac_hex, now, NOW_SECS};

const WEBHOOK_SECRET: &str = "whsec-0123456789abcdef0123456789";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TG_SECRET: &str = "tg-secret-token_0123456789";

fn one_event(outcome: InboundOutcome) -> InboundEvent {
    match outcome {
        InboundOutcome::Events(mut evs) if evs.len() == 1 => evs.remove(0),
        other => panic!("expected one event, got {other:?}"),
    }
}

fn ignored(outcome: InboundOutcome) -> IgnoreReason {
    match outcome {
        InboundOutcome::Ignored(r) => r,
        other => panic!("expected ignored, got {other:?}"),
    }
}

// ---------------------------------------------------------------- webhook

fn webhook() -> WebhookChannel {
    WebhookChannel::new(
        "ci",
        &WebhookConfig {
            secret: Some(Secret::new(WEBHOOK_SECRET)),
            url: None,
        },
        &fast_settings(),
    )
    .unwrap()
}

fn webhook_headers(secret: &str, ts: u64, body: &[u8]) -> http::HeaderMap {
    let ts = ts.to_string();
    let sig = format!(
        "sha256={}",
        hmac_hex(secret.as_bytes(), &[ts.as_bytes(), b".", body])
    );
    headers(&[
        ("X-IronClaw-Timestamp", &ts),
        ("X-IronClaw-Signature", &sig),
    ])
}

const WEBHOOK_BODY: &str = r#"{"platform_id":"build-42","sender":"ci-bot","text":"tests failed","thread_id":"main","message_id":"run-1","mentioned":true}"#;

#[test]
fn webhook_valid_signature_is_accepted_and_mapped() {
    let w = webhook();
    let body = WEBHOOK_BODY.as_bytes();
    let ev = one_event(
        w.verify_and_parse(
            &webhook_headers(WEBHOOK_SECRET, NOW_SECS, body),
            body,
            now(),
        )
        .unwrap(),
    );
    assert_eq!(
        ev,
        InboundEvent {
            channel_type: "webhook".into(),
            platform_id: "build-42".into(),
            instance: Some("ci".into()),
            thread_id: Some("main".into()),
            sender_handle: "ci-bot".into(),
            text: "tests failed".into(),
            mentioned: true,
            provenance: Provenance::Verified,
            platform_message_id: Some("run-1".into()),
        }
    );
}

#[test]
fn webhook_optional_fields_default() {
    let w = webhook();
    let body = br#"{"platform_id":"p","sender":"s","text":"t"}"#;
    let ev = one_event(
        w.verify_and_parse(
            &webhook_headers(WEBHOOK_SECRET, NOW_SECS, body),
            body,
            now(),
        )
        .unwrap(),
    );
    assert!(!ev.mentioned);
    assert_eq!(ev.thread_id, None);
    assert_eq!(ev.platform_message_id, None);
}

#[test]
fn webhook_forged_signature_is_refused() {
    let w = webhook();
    let body = WEBHOOK_BODY.as_bytes();
    let h = webhook_headers("some-other-secret-of-the-attacker", NOW_SECS, body);
    let e = w.verify_and_parse(&h, body, now()).unwrap_err();
    assert_eq!(e, InboundError::BadSignature);
    assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn webhook_tampered_body_is_refused() {
    let w = webhook();
    let h = webhook_headers(WEBHOOK_SECRET, NOW_SECS, WEBHOOK_BODY.as_bytes());
    let tampered = WEBHOOK_BODY.replace("tests failed", "rm -rf /");
    let e = w
        .verify_and_parse(&h, tampered.as_bytes(), now())
        .unwrap_err();
    assert_eq!(e, InboundError::BadSignature);
}

#[test]
fn webhook_missing_headers_are_refused() {
    let w = webhook();
    let body = WEBHOOK_BODY.as_bytes();
    let full = webhook_headers(WEBHOOK_SECRET, NOW_SECS, body);
    let mut no_sig = full.clone();
    no_sig.remove("x-ironclaw-signature");
    let mut no_ts = full.clone();
    no_ts.remove("x-ironclaw-timestamp");
    assert_eq!(
        w.verify_and_parse(&no_sig, body, now()).unwrap_err(),
        InboundError::MissingHeader("x-ironclaw-signature")
    );
    assert_eq!(
        w.verify_and_parse(&no_ts, body, now()).unwrap_err(),
        InboundError::MissingHeader("x-ironclaw-timestamp")
    );
    let e = w
        .verify_and_parse(&http::HeaderMap::new(), body, now())
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn webhook_malformed_and_duplicated_headers_are_refused() {
    let w = webhook();
    let body = WEBHOOK_BODY.as_bytes();
    let good = webhook_headers(WEBHOOK_SECRET, NOW_SECS, body);
    let sig = good["x-ironclaw-signature"].to_str().unwrap().to_owned();
    let bare_hex = sig.trim_start_matches("sha256=").to_owned();
    let cases = [
        headers(&[
            ("X-IronClaw-Timestamp", "17e8"),
            ("X-IronClaw-Signature", &sig),
        ]),
        headers(&[
            ("X-IronClaw-Timestamp", &NOW_SECS.to_string()),
            ("X-IronClaw-Signature", &bare_hex),
        ]),
        headers(&[
            ("X-IronClaw-Timestamp", &NOW_SECS.to_string()),
            ("X-IronClaw-Timestamp", &NOW_SECS.to_string()),
            ("X-IronClaw-Signature", &sig),
        ]),
    ];
    for h in cases {
        let e = w.verify_and_parse(&h, body, now()).unwrap_err();
        assert!(
            matches!(e, InboundError::MalformedHeader { .. }),
            "{h:?} → {e:?}"
        );
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
    }
}

#[test]
fn webhook_stale_and_future_timestamps_are_refused() {
    let w = webhook();
    let body = WEBHOOK_BODY.as_bytes();
    let stale = NOW_SECS - 301;
    let e = w
        .verify_and_parse(&webhook_headers(WEBHOOK_SECRET, stale, body), body, now())
        .unwrap_err();
    assert_eq!(
        e,
        InboundError::Stale {
            age_secs: 301,
            window_secs: 300
        }
    );
    let future = NOW_SECS + 301;
    let e = w
        .verify_and_parse(&webhook_headers(WEBHOOK_SECRET, future, body), body, now())
        .unwrap_err();
    assert_eq!(
        e,
        InboundError::FromFuture {
            ahead_secs: 301,
            window_secs: 300
        }
    );
    assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
    // The edges of the window are inside it.
    let body2 = br#"{"platform_id":"p","sender":"s","text":"edge"}"#;
    for ts in [NOW_SECS - 300, NOW_SECS + 300] {
        assert!(w
            .verify_and_parse(&webhook_headers(WEBHOOK_SECRET, ts, body2), body2, now())
            .is_ok());
    }
}

#[test]
fn webhook_exact_replay_is_refused() {
    let w = webhook();
    let body = WEBHOOK_BODY.as_bytes();
    let h = webhook_headers(WEBHOOK_SECRET, NOW_SECS, body);
    w.verify_and_parse(&h, body, now()).unwrap();
    let later = now() + std::time::Duration::from_secs(60);
    let e = w.verify_and_parse(&h, body, later).unwrap_err();
    assert_eq!(e, InboundError::Replayed);
    assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn webhook_resigned_retry_of_the_same_message_is_a_duplicate_until_forgotten() {
    let w = webhook();
    let body = WEBHOOK_BODY.as_bytes();
    let ev = one_event(
        w.verify_and_parse(
            &webhook_headers(WEBHOOK_SECRET, NOW_SECS, body),
            body,
            now(),
        )
        .unwrap(),
    );
    let retry = webhook_headers(WEBHOOK_SECRET, NOW_SECS + 5, body);
    assert_eq!(
        ignored(w.verify_and_parse(&retry, body, now()).unwrap()),
        IgnoreReason::Duplicate { retry: None }
    );
    // Queuing failed → the HTTP layer forgets the event → the next retry is routed.
    w.forget(&ev);
    let retry2 = webhook_headers(WEBHOOK_SECRET, NOW_SECS + 10, body);
    one_event(w.verify_and_parse(&retry2, body, now()).unwrap());
}

#[test]
fn webhook_bad_bodies_are_400_after_authentication() {
    let w = webhook();
    let cases: [&[u8]; 7] = [
        b"not json",
        b"",
        br#"{"platform_id":"p","sender":"s","text":"t","extra":1}"#,
        br#"{"platform_id":"p","sender":"s"}"#,
        br#"{"platform_id":"","sender":"s","text":"t"}"#,
        br#"{"platform_id":"p","sender":"s","text":"   "}"#,
        br#"{"platform_id":"p\nq","sender":"s","text":"t"}"#,
    ];
    for (i, body) in cases.iter().enumerate() {
        let h = webhook_headers(WEBHOOK_SECRET, NOW_SECS + i as u64, body);
        let e = w.verify_and_parse(&h, body, now()).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{body:?} → {e:?}");
    }
}

#[test]
fn webhook_oversized_body_is_413_before_any_signature_work() {
    let w = webhook();
    let body = vec![b'x'; MAX_INBOUND_BODY + 1];
    let e = w
        .verify_and_parse(&http::HeaderMap::new(), &body, now())
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn webhook_without_secret_is_not_a_hook() {
    let w = WebhookChannel::new("off", &WebhookConfig::default(), &fast_settings()).unwrap();
    let body = WEBHOOK_BODY.as_bytes();
    let e = w
        .verify_and_parse(
            &webhook_headers(WEBHOOK_SECRET, NOW_SECS, body),
            body,
            now(),
        )
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------- Slack

fn slack(bot_user_id: Option<&str>) -> SlackChannel {
    SlackChannel::new(
        &SlackConfig {
            signing_secret: Some(Secret::new(SLACK_SECRET)),
            bot_token: None,
            bot_user_id: bot_user_id.map(str::to_owned),
            api_base: None,
        },
        &fast_settings(),
    )
    .unwrap()
}

fn slack_headers(secret: &str, ts: u64, body: &[u8]) -> http::HeaderMap {
    let ts = ts.to_string();
    let sig = format!(
        "v0={}",
        hmac_hex(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body])
    );
    headers(&[
        ("X-Slack-Request-Timestamp", &ts),
        ("X-Slack-Signature", &sig),
    ])
}

fn slack_event(event: serde_json::Value) -> Vec<u8> {
    serde_json::json!({
        "token": "legacy-verification-token",
        "team_id": "T1",
        "api_app_id": "A1",
        "type": "event_callback",
        "event_id": "Ev1",
        "event_time": NOW_SECS,
        "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": true}],
        "event": event,
    })
    .to_string()
    .into_bytes()
}

fn message(text: &str, ts: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "message", "channel": "C1", "user": "UALICE", "text": text,
        "ts": ts, "channel_type": "channel"
    })
}

#[test]
fn slack_url_verification_answers_the_challenge() {
    let s = slack(None);
    let body = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let out = s
        .verify_and_parse(&slack_headers(SLACK_SECRET, NOW_SECS, body), body, now())
        .unwrap();
    match out {
        InboundOutcome::Reply(r) => {
            assert_eq!(r.content_type, "application/json");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(
                v["challenge"],
                "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn slack_challenge_is_not_answered_without_a_valid_signature() {
    let s = slack(None);
    let body = br#"{"challenge":"abc","type":"url_verification"}"#;
    let e = s
        .verify_and_parse(&slack_headers("wrong-secret", NOW_SECS, body), body, now())
        .unwrap_err();
    assert_eq!(e, InboundError::BadSignature);
}

#[test]
fn slack_message_is_mapped() {
    let s = slack(None);
    let mut ev = message("deploy &amp; check &lt;staging&gt;", "1700000000.000100");
    ev["thread_ts"] = "1699999999.000001".into();
    let body = slack_event(ev);
    let got = one_event(
        s.verify_and_parse(&slack_headers(SLACK_SECRET, NOW_SECS, &body), &body, now())
            .unwrap(),
    );
    assert_eq!(
        got,
        InboundEvent {
            channel_type: "slack".into(),
            platform_id: "C1".into(),
            instance: None,
            thread_id: Some("1699999999.000001".into()),
            sender_handle: "UALICE".into(),
            text: "deploy & check <staging>".into(),
            mentioned: false,
            provenance: Provenance::Verified,
            platform_message_id: Some("C1:1700000000.000100".into()),
        }
    );
}

#[test]
fn slack_mentions() {
    let s = slack(None);
    // <@BOTID> in text (bot id learned from `authorizations`).
    let body = slack_event(message("hey <@UBOT> deploy", "1.1"));
    let ev = one_event(
        s.verify_and_parse(&slack_headers(SLACK_SECRET, NOW_SECS, &body), &body, now())
            .unwrap(),
    );
    assert!(ev.mentioned);
    // Another user mentioned: not us.
    let body = slack_event(message("hey <@UBOTX> deploy", "1.2"));
    let ev = one_event(
        s.verify_and_parse(&slack_headers(SLACK_SECRET, NOW_SECS, &body), &body, now())
            .unwrap(),
    );
    assert!(!ev.mentioned);
    // app_mention.
    let mut m = message("deploy", "1.3");
    m["type"] = "app_mention".into();
    let body = slack_event(m);
    let ev = one_event(
        s.verify_and_parse(&slack_headers(SLACK_SECRET, NOW_SECS, &body), &body, now())
            .unwrap(),
    );
    assert!(ev.mentioned);
    // A direct message.
    let mut m = message("deploy", "1.4");
    m["channel_type"] = "im".into();
    let body = slack_event(m);
    let ev = one_event(
        s.verify_and_parse(&slack_headers(SLACK_SECRET, NOW_SECS, &body), &body, now())
            .unwrap(),
    );
    assert!(ev.mentioned);
}

#[test]
fn slack_bot_and_own_messages_are_ignored() {
    let s = slack(Some("UME"));
    let cases = [
        (
            serde_json::json!({"type":"message","channel":"C1","bot_id":"B1","text":"x","ts":"2.1"}),
            IgnoreReason::BotMessage,
        ),
        (
            serde_json::json!({"type":"message","subtype":"bot_message","channel":"C1","text":"x","ts":"2.2"}),
            IgnoreReason::BotMessage,
        ),
        (
            serde_json::json!({"type":"message","channel":"C1","user":"UME","text":"x","ts":"2.3"}),
            IgnoreReason::OwnMessage,
        ),
        (
            serde_json::json!({"type":"message","subtype":"message_changed","channel":"C1","ts":"2.4","message":{"text":"x"}}),
            IgnoreReason::Unsupported("message subtype \"message_changed\"".into()),
        ),
        (
            serde_json::json!({"type":"message","channel":"C1","user":"U2","text":"  ","ts":"2.5"}),
            IgnoreReason::NoText,
        ),
        (
            serde_json::json!({"type":"reaction_added","user":"U2","reaction":"+1","item":{}}),
            IgnoreReason::Unsupported("event type \"reaction_added\"".into()),
        ),
        (
            // `user` is an object in this event type: must be ignored, not a 400.
            serde_json::json!({"type":"user_change","user":{"id":"U2"}}),
            IgnoreReason::Unsupported("event type \"user_change\"".into()),
        ),
    ];
    for (i, (event, why)) in cases.into_iter().enumerate() {
        let body = slack_event(event);
        let out = s
            .verify_and_parse(
                &slack_headers(SLACK_SECRET, NOW_SECS + i as u64, &body),
                &body,
                now(),
            )
            .unwrap();
        assert_eq!(ignored(out), why);
    }
    // Own id learned from `authorizations` when not configured.
    let s = slack(None);
    let body = slack_event(
        serde_json::json!({"type":"message","channel":"C1","user":"UBOT","text":"x","ts":"3.1"}),
    );
    let out = s
        .verify_and_parse(&slack_headers(SLACK_SECRET, NOW_SECS, &body), &body, now())
        .unwrap();
    assert_eq!(ignored(out), IgnoreReason::OwnMessage);
}

#[test]
fn slack_retry_and_double_subscription_are_deduplicated() {
    let s = slack(None);
    let body = slack_event(message("hello", "5.1"));
    let ev = one_event(
        s.verify_and_parse(&slack_headers(SLACK_SECRET, NOW_SECS, &body), &body, now())
            .unwrap(),
    );
    // Slack's retry: freshly signed, with X-Slack-Retry-Num.
    let mut retry = slack_headers(SLACK_SECRET, NOW_SECS + 3, &body);
    retry.insert("x-slack-retry-num", "1".parse().unwrap());
    retry.insert("x-slack-retry-reason", "http_timeout".parse().unwrap());
    assert_eq!(
        ignored(s.verify_and_parse(&retry, &body, now()).unwrap()),
        IgnoreReason::Duplicate { retry: Some(1) }
    );
    // The same message as an app_mention event (other event id, same channel + ts).
    let mut m = message("hello", "5.1");
    m["type"] = "app_mention".into();
    let body2 = slack_event(m);
    assert_eq!(
        ignored(
            s.verify_and_parse(
                &slack_headers(SLACK_SECRET, NOW_SECS + 4, &body2),
                &body2,
                now()
            )
            .unwrap()
        ),
        IgnoreReason::Duplicate { retry: None }
    );
    // Queuing failed → forget → Slack's next retry is routed.
    s.forget(&ev);
    let mut retry2 = slack_headers(SLACK_SECRET, NOW_SECS + 60, &body);
    retry2.insert("x-slack-retry-num", "2".parse().unwrap());
    one_event(s.verify_and_parse(&retry2, &body, now()).unwrap());
}

#[test]
fn slack_forged_missing_stale_future_and_replayed_are_refused() {
    let s = slack(None);
    let body = slack_event(message("hello", "6.1"));
    assert_eq!(
        s.verify_and_parse(&slack_headers("forged", NOW_SECS, &body), &body, now())
            .unwrap_err(),
        InboundError::BadSignature
    );
    assert_eq!(
        s.verify_and_parse(&http::HeaderMap::new(), &body, now())
            .unwrap_err(),
        InboundError::MissingHeader("x-slack-request-timestamp")
    );
    assert!(matches!(
        s.verify_and_parse(
            &slack_headers(SLACK_SECRET, NOW_SECS - 301, &body),
            &body,
            now()
        )
        .unwrap_err(),
        InboundError::Stale { .. }
    ));
    assert!(matches!(
        s.verify_and_parse(
            &slack_headers(SLACK_SECRET, NOW_SECS + 301, &body),
            &body,
            now()
        )
        .unwrap_err(),
        InboundError::FromFuture { .. }
    ));
    let h = slack_headers(SLACK_SECRET, NOW_SECS, &body);
    s.verify_and_parse(&h, &body, now()).unwrap();
    let e = s.verify_and_parse(&h, &body, now()).unwrap_err();
    assert_eq!(e, InboundError::Replayed);
    assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn slack_garbage_is_400_after_authentication() {
    let s = slack(None);
    let cases: [&[u8]; 5] = [
        b"payload=%7B%22type%22%3A%22block_actions%22%7D",
        b"{}",
        br#"{"type":"event_callback"}"#,
        br#"{"type":"event_callback","event":{"type":"message","channel":"C1","text":"x"}}"#,
        br#"{"type":"url_verification"}"#,
    ];
    for (i, body) in cases.iter().enumerate() {
        let e = s
            .verify_and_parse(
                &slack_headers(SLACK_SECRET, NOW_SECS + i as u64, body),
                body,
                now(),
            )
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{body:?} → {e:?}");
    }
}

// ---------------------------------------------------------------- Telegram

fn telegram() -> TelegramChannel {
    TelegramChannel::new(
        &TelegramConfig {
            bot_token: Some(Secret::new("4242:AAbbCCdd_ee-ff")),
            webhook_secret: Some(Secret::new(TG_SECRET)),
            bot_username: Some("@IronClawBot".into()),
            api_base: None,
            mode: Default::default(),
        },
        &fast_settings(),
    )
    .unwrap()
}

fn tg_headers(secret: &str) -> http::HeaderMap {
    headers(&[("X-Telegram-Bot-Api-Secret-Token", secret)])
}

fn tg_update(update_id: i64, message: serde_json::Value) -> Vec<u8> {
    serde_json::json!({"update_id": update_id, "message": message})
        .to_string()
        .into_bytes()
}

fn tg_message(id: i64, chat: serde_json::Value, text: &str) -> serde_json::Value {
    serde_json::json!({
        "message_id": id,
        "from": {"id": 777, "is_bot": false, "first_name": "Alice", "username": "alice"},
        "chat": chat,
        "date": NOW_SECS,
        "text": text,
    })
}

#[test]
fn telegram_private_message_is_mapped_and_mentioned() {
    let t = telegram();
    let body = tg_update(
        1,
        tg_message(
            10,
            serde_json::json!({"id": 777, "type": "private"}),
            "hello",
        ),
    );
    let ev = one_event(
        t.verify_and_parse(&tg_headers(TG_SECRET), &body, now())
            .unwrap(),
    );
    assert_eq!(
        ev,
        InboundEvent {
            channel_type: "telegram".into(),
            platform_id: "777".into(),
            instance: None,
            thread_id: None,
            sender_handle: "777".into(),
            text: "hello".into(),
            mentioned: true,
            provenance: Provenance::Verified,
            platform_message_id: Some("777:10".into()),
        }
    );
}

#[test]
fn telegram_group_mentions_topics_and_replies() {
    let t = telegram();
    let group = serde_json::json!({"id": -1001234, "type": "supergroup", "title": "ops"});
    // Not addressed.
    let body = tg_update(2, tg_message(11, group.clone(), "just chatting"));
    let ev = one_event(
        t.verify_and_parse(&tg_headers(TG_SECRET), &body, now())
            .unwrap(),
    );
    assert!(!ev.mentioned);
    assert_eq!(ev.platform_id, "-1001234");
    // @botname, case-insensitive; a longer name is not us.
    let body = tg_update(3, tg_message(12, group.clone(), "@ironclawbot deploy"));
    assert!(
        one_event(
            t.verify_and_parse(&tg_headers(TG_SECRET), &body, now())
                .unwrap()
        )
        .mentioned
    );
    let body = tg_update(4, tg_message(13, group.clone(), "@IronClawBot2 deploy"));
    assert!(
        !one_event(
            t.verify_and_parse(&tg_headers(TG_SECRET), &body, now())
                .unwrap()
        )
        .mentioned
    );
    // A reply to the bot's own message (bot id = token prefix 4242).
    let mut m = tg_message(14, group.clone(), "yes please");
    m["reply_to_message"] = serde_json::json!({"message_id": 9, "from": {"id": 4242, "is_bot": true}, "chat": group, "date": 1});
    let body = tg_update(5, m);
    assert!(
        one_event(
            t.verify_and_parse(&tg_headers(TG_SECRET), &body, now())
                .unwrap()
        )
        .mentioned
    );
    // A forum topic message carries its thread.
    let mut m = tg_message(
        15,
        serde_json::json!({"id": -100999, "type": "supergroup", "is_forum": true}),
        "in a topic",
    );
    m["message_thread_id"] = 77.into();
    m["is_topic_message"] = true.into();
    let body = tg_update(6, m);
    let ev = one_event(
        t.verify_and_parse(&tg_headers(TG_SECRET), &body, now())
            .unwrap(),
    );
    assert_eq!(ev.thread_id.as_deref(), Some("77"));
}

#[test]
fn telegram_wrong_or_missing_secret_is_refused() {
    let t = telegram();
    let body = tg_update(
        1,
        tg_message(10, serde_json::json!({"id": 1, "type": "private"}), "hi"),
    );
    let e = t
        .verify_and_parse(&tg_headers("tg-secret-token_0123456788"), &body, now())
        .unwrap_err();
    assert_eq!(e, InboundError::BadSignature);
    assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.verify_and_parse(&tg_headers("short"), &body, now())
            .unwrap_err(),
        InboundError::BadSignature
    );
    assert_eq!(
        t.verify_and_parse(&http::HeaderMap::new(), &body, now())
            .unwrap_err(),
        InboundError::MissingHeader("x-telegram-bot-api-secret-token")
    );
}

#[test]
fn telegram_redelivery_is_a_duplicate_until_forgotten() {
    let t = telegram();
    let body = tg_update(
        8,
        tg_message(20, serde_json::json!({"id": 1, "type": "private"}), "hi"),
    );
    let ev = one_event(
        t.verify_and_parse(&tg_headers(TG_SECRET), &body, now())
            .unwrap(),
    );
    assert_eq!(
        ignored(
            t.verify_and_parse(&tg_headers(TG_SECRET), &body, now())
                .unwrap()
        ),
        IgnoreReason::Duplicate { retry: None }
    );
    t.forget(&ev);
    one_event(
        t.verify_and_parse(&tg_headers(TG_SECRET), &body, now())
            .unwrap(),
    );
}

#[test]
fn telegram_ignores_bots_edits_and_textless_messages() {
    let t = telegram();
    let h = tg_headers(TG_SECRET);
    let mut from_bot = tg_message(30, serde_json::json!({"id": 1, "type": "group"}), "beep");
    from_bot["from"] = serde_json::json!({"id": 55, "is_bot": true, "first_name": "B"});
    assert_eq!(
        ignored(
            t.verify_and_parse(&h, &tg_update(30, from_bot), now())
                .unwrap()
        ),
        IgnoreReason::BotMessage
    );
    let mut sticker = tg_message(31, serde_json::json!({"id": 1, "type": "group"}), "");
    sticker.as_object_mut().unwrap().remove("text");
    sticker["sticker"] = serde_json::json!({"file_id": "x"});
    assert_eq!(
        ignored(
            t.verify_and_parse(&h, &tg_update(31, sticker), now())
                .unwrap()
        ),
        IgnoreReason::NoText
    );
    let edit = serde_json::json!({"update_id": 32, "edited_message": tg_message(1, serde_json::json!({"id": 1, "type": "private"}), "x")});
    assert!(matches!(
        ignored(
            t.verify_and_parse(&h, edit.to_string().as_bytes(), now())
                .unwrap()
        ),
        IgnoreReason::Unsupported(_)
    ));
    // A photo with a caption is routed with the caption as text.
    let mut photo = tg_message(33, serde_json::json!({"id": 1, "type": "private"}), "");
    photo.as_object_mut().unwrap().remove("text");
    photo["caption"] = "look at this".into();
    let ev = one_event(
        t.verify_and_parse(&h, &tg_update(33, photo), now())
            .unwrap(),
    );
    assert_eq!(ev.text, "look at this");
}

#[test]
fn telegram_garbage_is_a_typed_400() {
    let t = telegram();
    let h = tg_headers(TG_SECRET);
    let cases: [&[u8]; 8] = [
        b"",
        b"garbage",
        b"[]",
        b"{}",
        br#"{"update_id":"one"}"#,
        br#"{"update_id":1,"message":{"message_id":1}}"#,
        br#"{"update_id":1,"message":{"message_id":1,"chat":{"id":"x","type":"private"}}}"#,
        br#"{"update_id":1e400}"#,
    ];
    for body in cases {
        let e = t.verify_and_parse(&h, body, now()).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{body:?} → {e:?}");
        assert!(matches!(e, InboundError::Malformed(_)));
    }
}

#[test]
fn telegram_webhook_without_secret_is_off() {
    let t = TelegramChannel::new(
        &TelegramConfig {
            bot_token: Some(Secret::new("4242:AAbbCCdd_ee-ff")),
            ..TelegramConfig::default()
        },
        &fast_settings(),
    )
    .unwrap();
    let body = tg_update(
        1,
        tg_message(1, serde_json::json!({"id": 1, "type": "private"}), "hi"),
    );
    let e = t
        .verify_and_parse(&tg_headers(""), &body, now())
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------- totality

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any authenticated body — the worst case, since parsing only starts after the
    /// signature passes — yields a value or a typed error, never a panic.
    #[test]
    fn any_signed_body_is_handled_without_panic(body in proptest::collection::vec(any::<u8>(), 0..512), json in "\\PC{0,200}") {
        let w = webhook();
        let s = slack(None);
        let t = telegram();
        for b in [body.as_slice(), json.as_bytes()] {
            let _ = w.verify_and_parse(&webhook_headers(WEBHOOK_SECRET, NOW_SECS, b), b, now());
            let _ = s.verify_and_parse(&slack_headers(SLACK_SECRET, NOW_SECS, b), b, now());
            let _ = t.verify_and_parse(&tg_headers(TG_SECRET), b, now());
        }
    }

    /// Arbitrary header values never panic and never authenticate.
    #[test]
    fn arbitrary_headers_never_authenticate(ts in "[ -~]{0,20}", sig in "[ -~]{0,80}") {
        let w = webhook();
        let body = WEBHOOK_BODY.as_bytes();
        let h = headers(&[("X-IronClaw-Timestamp", &ts), ("X-IronClaw-Signature", &sig)]);
        prop_assert!(w.verify_and_parse(&h, body, now()).is_err());
    }
}

/// The curl/openssl recipe in docs/channels.md, with its output computed by
/// `openssl dgst -sha256 -hmac` for these fixed values.
#[test]
fn the_documented_openssl_signature_is_accepted() {
    let w = webhook();
    let body = br#"{"platform_id":"build-42","sender":"ci-bot","text":"hi"}"#;
    let h = headers(&[
        ("X-IronClaw-Timestamp", "1700000000"),
        (
            "X-IronClaw-Signature",
            "sha256=d31f60fcef71e86cf576559607a52b2e892d95150167a11f4a4ef64067f74496",
        ),
    ]);
    one_event(w.verify_and_parse(&h, body, now()).unwrap());
}
