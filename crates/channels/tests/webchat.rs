//! The web chat store: ordering, bounds, subscription, and its `Channel` side.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::SystemTime;

use http::{HeaderMap, StatusCode};
use ironclaw_channels::config::WebChatConfig;
use ironclaw_channels::webchat::{Role, SubscriptionError, LIVE_BUFFER};
use ironclaw_channels::{Channel, OutboundMessage, WebChat};

fn store(per_conversation: usize, conversations: usize) -> WebChat {
    WebChat::new(WebChatConfig {
        max_messages_per_conversation: per_conversation,
        max_conversations: conversations,
    })
}

fn reply(conversation: &str, text: &str) -> OutboundMessage {
    OutboundMessage {
        channel_type: "web".into(),
        instance: None,
        platform_id: conversation.into(),
        thread_id: None,
        text: text.into(),
        message_id: Some("out-1".into()),
    }
}

#[test]
fn messages_are_ordered_with_increasing_ids_and_read_after_a_cursor() {
    let w = store(200, 10);
    let a = w.post_user_message("g1", None, "console", "hello").unwrap();
    let r = w.send(&reply("g1", "hi there")).unwrap();
    let b = w
        .post_user_message("g1", None, "console", "thanks")
        .unwrap();
    let all = w.messages_after("g1", 0, 100);
    assert_eq!(
        all.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["hello", "hi there", "thanks"]
    );
    assert!(all.windows(2).all(|p| p[0].id < p[1].id));
    assert_eq!(all[0].role, Role::User);
    assert_eq!(all[0].sender.as_deref(), Some("console"));
    assert_eq!(all[1].role, Role::Agent);
    assert_eq!(all[1].sender, None);
    assert_eq!(r.first_id(), Some(all[1].id.to_string().as_str()));
    assert_eq!(w.messages_after("g1", a.id, 100).len(), 2);
    assert_eq!(w.messages_after("g1", b.id, 100).len(), 0);
    assert_eq!(w.messages_after("g1", 0, 1).len(), 1);
    assert!(w.messages_after("nobody", 0, 100).is_empty());
    // JSON shape for the API.
    let v = serde_json::to_value(&all[1]).unwrap();
    assert_eq!(v["role"], "agent");
    assert_eq!(v["conversation"], "g1");
    assert!(v.get("sender").is_none());
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn ids_stay_increasing_across_a_restart() {
    let before = store(10, 10)
        .post_user_message("g", None, "u", "x")
        .unwrap()
        .id;
    let after = store(10, 10)
        .post_user_message("g", None, "u", "x")
        .unwrap()
        .id;
    assert!(
        after > before,
        "a browser's cursor from before a restart still works"
    );
}

#[test]
fn per_conversation_bound_keeps_the_newest() {
    let w = store(3, 10);
    for i in 0..5 {
        w.post_user_message("g", None, "u", &format!("m{i}"))
            .unwrap();
    }
    let texts: Vec<_> = w
        .messages_after("g", 0, 100)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["m2", "m3", "m4"]);
}

#[test]
fn conversation_bound_drops_the_least_recently_active() {
    let w = store(10, 2);
    w.post_user_message("a", None, "u", "1").unwrap();
    w.post_user_message("b", None, "u", "2").unwrap();
    w.post_user_message("a", None, "u", "3").unwrap(); // a is now the most recent
    w.post_user_message("c", None, "u", "4").unwrap(); // evicts b
    assert!(w.messages_after("b", 0, 10).is_empty());
    assert_eq!(w.messages_after("a", 0, 10).len(), 2);
    assert_eq!(w.messages_after("c", 0, 10).len(), 1);
}

#[test]
fn invalid_input_is_a_typed_error() {
    let w = store(10, 10);
    assert!(w.post_user_message("", None, "u", "x").is_err());
    assert!(w.post_user_message("g", None, "u", "   ").is_err());
    assert!(w.post_user_message("g\n", None, "u", "x").is_err());
    assert!(w.post_user_message("g", Some(""), "u", "x").is_err());
    assert!(w.post_user_message("g", None, "", "x").is_err());
    assert!(w.send(&reply("", "x")).unwrap_err().is_permanent());
    assert!(w.messages_after("g", 0, 10).is_empty());
}

#[test]
fn web_chat_has_no_hook() {
    let w = store(10, 10);
    let e = w
        .verify_and_parse(&HeaderMap::new(), b"{}", SystemTime::now())
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn subscription_gets_live_messages_of_its_conversation_only() {
    let w = std::sync::Arc::new(store(10, 10));
    let mut sub = w.subscribe("g1");
    let w2 = w.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        w2.post_user_message("g2", None, "u", "other").unwrap();
        w2.send(&reply("g1", "for you")).unwrap();
    });
    let m = tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.text, "for you");
    assert_eq!(m.conversation, "g1");
    task.await.unwrap();
    assert_eq!(sub.try_recv().unwrap(), None);
}

#[test]
fn a_slow_subscriber_is_told_it_lagged() {
    let w = store(10, 10);
    let mut sub = w.subscribe("g");
    for i in 0..(LIVE_BUFFER + 5) {
        w.post_user_message("g", None, "u", &format!("{i}"))
            .unwrap();
    }
    assert!(matches!(
        sub.try_recv(),
        Err(SubscriptionError::Lagged { skipped: 5 })
    ));
    // It then continues with what is still buffered, in order.
    let next = sub.try_recv().unwrap().unwrap();
    assert_eq!(next.text, "5");
}

/// A posted user message is handed to the ingest service as the operator's verified,
/// addressed message, its store id as the platform message id (for the router's dedup).
#[test]
fn a_user_message_becomes_a_verified_addressed_event() {
    let w = store(200, 10);
    let m = w.post_user_message("c1", None, "ann", "hello").unwrap();
    assert_eq!(
        m.inbound_event(),
        ironclaw_ingest::InboundEvent {
            channel_type: "web".into(),
            platform_id: "c1".into(),
            instance: None,
            thread_id: None,
            sender_handle: "ann".into(),
            text: "hello".into(),
            mentioned: true,
            provenance: ironclaw_contract::enums::Provenance::Verified,
            platform_message_id: Some(m.id.to_string()),
        }
    );
}
