//! `ironctl chat send`: talk to an agent group over the web chat API and wait for its
//! answer.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{CliError, Client};

/// Sends `text` and prints the agent's replies as they arrive, until one arrives and
/// no more follow for a moment, or `wait` passes.
pub fn send(
    c: &Client,
    as_json: bool,
    group: &str,
    conversation: Option<&str>,
    text: &str,
    wait: Duration,
) -> Result<(), CliError> {
    let mut body = json!({"agent_group_id": group, "text": text});
    if let Some(conv) = conversation {
        body["conversation_id"] = json!(conv);
    }
    let sent = c.send("POST", "/v1/chat/send", Some(&body))?;
    let conv = sent
        .pointer("/conversation_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut after = sent
        .pointer("/message_id")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if sent.pointer("/engaged") != Some(&Value::Bool(true)) {
        if as_json {
            crate::output::json(&sent);
        } else {
            eprintln!("the message did not engage the agent: {}", sent["outcomes"]);
        }
        return Err(CliError::Api {
            status: 409,
            code: "not_engaged".into(),
            message: "no wiring engaged the agent for this message".into(),
        });
    }
    let deadline = Instant::now() + wait;
    let mut got_reply: Option<Instant> = None;
    let mut replies = Vec::new();
    while Instant::now() < deadline {
        // After the first reply, wait briefly for follow-ups, then stop.
        if got_reply.is_some_and(|t| t.elapsed() > Duration::from_millis(800)) {
            break;
        }
        let v = c.get(&format!("/v1/chat/{conv}/messages?after={after}"))?;
        for m in v
            .pointer("/messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            after = after.max(m.pointer("/id").and_then(Value::as_u64).unwrap_or(after));
            if m.pointer("/role").and_then(Value::as_str) == Some("agent") {
                if !as_json {
                    println!(
                        "{}",
                        m.pointer("/text").and_then(Value::as_str).unwrap_or("")
                    );
                }
                replies.push(m.clone());
                got_reply.get_or_insert_with(Instant::now);
            }
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    if as_json {
        crate::output::json(&json!({"conversation_id": conv, "replies": replies}));
    } else {
        eprintln!("(conversation {conv}; continue it with --conversation {conv})");
    }
    if replies.is_empty() {
        return Err(CliError::Api {
            status: 504,
            code: "no_reply".into(),
            message: format!("no reply within {} s", wait.as_secs()),
        });
    }
    Ok(())
}
