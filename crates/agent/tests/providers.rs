//! The socket providers against a fake model proxy on a unix socket.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::thread;

use ironclaw_agent::conversation::{Conversation, Message, ToolSpec};
use ironclaw_agent::http::UnixHttp;
use ironclaw_agent::remote::{openai_request, parse_anthropic, parse_openai};
use ironclaw_agent::{
    Agent, AnthropicProvider, OpenAiProvider, Provider, ProviderError, ToolRegistry,
};
use ironclaw_contract::actions::{parse_action, ActionBody};
use ironclaw_contract::queue::{InboundReader, InboundWriter, OutboundReader};
use ironclaw_contract::rows::SessionRouting;
use ironclaw_contract::time::Timestamp;
use ironclaw_queue::MemoryQueue;
use ironclaw_testkit::message_in;
use serde_json::{json, Value};

/// A received request: path, headers (lowercased names), body.
type Seen = (String, Vec<(String, String)>, Value);

/// Serves each canned raw response to one connection, in order, reporting requests.
fn fake_proxy(responses: Vec<Vec<u8>>) -> (tempfile::TempDir, UnixHttp, mpsc::Receiver<Seen>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for raw in responses {
            let (stream, _) = listener.accept().unwrap();
            let mut r = BufReader::new(&stream);
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let path = line.split(' ').nth(1).unwrap().to_owned();
            let mut headers = Vec::new();
            let mut len = 0;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                if k == "content-length" {
                    len = v.parse().unwrap();
                }
                headers.push((k, v));
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let _ = tx.send((path, headers, serde_json::from_slice(&body).unwrap()));
            let mut w = &stream;
            let _ = w.write_all(&raw);
        }
    });
    let http = UnixHttp::new(path);
    (dir, http, rx)
}

fn ok_json(v: Value) -> Vec<u8> {
    let body = v.to_string();
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn chunked_json(v: Value) -> Vec<u8> {
    let body = v.to_string();
    let (a, b) = body.split_at(body.len() / 2);
    format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
    .into_bytes()
}

fn spec(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: "d".into(),
        input_schema: json!({"type": "object"}),
    }
}

fn setup_queue(content: &str) -> MemoryQueue {
    let mut q = MemoryQueue::new();
    q.set_session_routing(&SessionRouting {
        channel_type: "slack".into(),
        platform_id: "C1".into(),
        thread_id: None,
    })
    .unwrap();
    q.write_message(&message_in("m1", content).build()).unwrap();
    q
}

#[test]
fn anthropic_tool_loop_through_the_socket() {
    let (_d, http, seen) = fake_proxy(vec![
        ok_json(json!({"type": "message", "content": [
            {"type": "text", "text": "Scheduling."},
            {"type": "tool_use", "id": "toolu_1", "name": "schedule_task",
             "input": {"prompt": "standup", "recurrence": "daily"}}
        ], "stop_reason": "tool_use"})),
        chunked_json(json!({"content": [{"type": "text", "text": "Done: daily standup."}]})),
    ]);
    let mut q = setup_queue("remind me daily");
    let batch = q.pending_messages(Timestamp::now()).unwrap().rows;
    let mut agent = Agent::new(
        AnthropicProvider::new(http, "claude-test"),
        ToolRegistry::for_group(&["schedule_task"]).unwrap(),
    );
    agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap();

    let (path, headers, body) = seen.recv().unwrap();
    assert_eq!(path, "/anthropic/v1/messages");
    assert!(headers
        .iter()
        .any(|(k, v)| k == "anthropic-version" && v == "2023-06-01"));
    assert!(!headers
        .iter()
        .any(|(k, _)| k == "x-api-key" || k == "authorization"));
    assert_eq!(body["model"], "claude-test");
    assert!(body["system"].as_str().unwrap().contains("sandbox"));
    let names: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ask_user_question",
            "request_capability_change",
            "schedule_task"
        ]
    );
    let (_, _, body2) = seen.recv().unwrap();
    let msgs = body2["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[1]["content"][1]["type"], "tool_use");
    assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
    assert_eq!(msgs[2]["content"][0]["tool_use_id"], "toolu_1");

    let rows = q.due_messages(Timestamp::now(), 0).unwrap().rows;
    assert_eq!(rows.len(), 2);
    assert!(matches!(
        parse_action(rows[0].message.content.as_bytes()).unwrap(),
        ActionBody::Schedule(_)
    ));
    assert_eq!(rows[1].message.content, "Done: daily standup.");
}

#[test]
fn openai_tool_loop_through_the_socket() {
    let (_d, http, seen) = fake_proxy(vec![
        ok_json(
            json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "request_capability_change",
                 "arguments": "{\"kind\":\"packages\",\"payload\":{\"add\":[\"jq\"]}}"}}
            ]}}]}),
        ),
        ok_json(
            json!({"choices": [{"message": {"role": "assistant", "content": "Requested jq."}}]}),
        ),
    ]);
    let mut q = setup_queue("install jq");
    let batch = q.pending_messages(Timestamp::now()).unwrap().rows;
    let none: [&str; 0] = [];
    let mut agent = Agent::new(
        OpenAiProvider::new(http, "gpt-test").with_path("/openrouter/api/v1/chat/completions"),
        ToolRegistry::for_group(&none).unwrap(),
    );
    agent
        .engage(&batch, &mut q.clone(), &mut q.clone())
        .unwrap();
    let (path, _, body) = seen.recv().unwrap();
    assert_eq!(path, "/openrouter/api/v1/chat/completions");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["tools"][0]["type"], "function");
    let (_, _, body2) = seen.recv().unwrap();
    let msgs = body2["messages"].as_array().unwrap();
    assert_eq!(msgs[2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(msgs[3]["role"], "tool");
    assert_eq!(msgs[3]["tool_call_id"], "call_1");
    let rows = q.due_messages(Timestamp::now(), 0).unwrap().rows;
    assert_eq!(rows.len(), 2);
    match parse_action(rows[0].message.content.as_bytes()).unwrap() {
        ActionBody::Envelope(a) => assert_eq!(a.action, "packages"),
        other => panic!("{other:?}"),
    }
    assert_eq!(rows[1].message.content, "Requested jq.");
}

#[test]
fn bad_responses_are_typed_errors() {
    let tools = [spec("read_file")];
    for garbage in [
        &b"not json"[..],
        b"",
        b"{}",
        b"[]",
        br#"{"content":"x"}"#,
        br#"{"content":[{"type":"tool_use"}]}"#,
    ] {
        assert!(
            matches!(
                parse_anthropic(garbage, &tools),
                Err(ProviderError::BadResponse(_))
            ),
            "{garbage:?}"
        );
    }
    for garbage in [
        &b"not json"[..],
        b"{}",
        br#"{"choices":[]}"#,
        br#"{"choices":[{"message":{"content":5}}]}"#,
        br#"{"choices":[{"message":{"tool_calls":{}}}]}"#,
    ] {
        assert!(
            matches!(
                parse_openai(garbage, &tools),
                Err(ProviderError::BadResponse(_))
            ),
            "{garbage:?}"
        );
    }
    let unknown =
        json!({"content": [{"type": "tool_use", "id": "1", "name": "set_persona", "input": {}}]});
    assert!(matches!(
        parse_anthropic(unknown.to_string().as_bytes(), &tools),
        Err(ProviderError::UnknownTool { .. })
    ));
    let unknown = json!({"choices": [{"message": {"tool_calls": [{"id": "1", "function": {"name": "exec", "arguments": "{}"}}]}}]});
    assert!(matches!(
        parse_openai(unknown.to_string().as_bytes(), &tools),
        Err(ProviderError::UnknownTool { .. })
    ));
    // A tool_use without input replays as {} (Go Q12); bad arguments reach the tool as a string.
    let t = parse_anthropic(
        br#"{"content":[{"type":"tool_use","id":"1","name":"read_file"}]}"#,
        &tools,
    )
    .unwrap();
    assert_eq!(t.tool_calls[0].input, json!({}));
    let t = parse_openai(br#"{"choices":[{"message":{"tool_calls":[{"id":"1","function":{"name":"read_file","arguments":"{oops"}}]}}]}"#, &tools).unwrap();
    assert_eq!(t.tool_calls[0].input, json!("{oops"));
}

#[test]
fn transport_status_and_size_errors() {
    let conv = Conversation {
        system: String::new(),
        messages: vec![Message::user_text("hi")],
    };
    // Nothing listening.
    let mut p = AnthropicProvider::new(UnixHttp::new("/nonexistent/model.sock"), "m");
    assert!(matches!(
        p.complete(&conv, &[]),
        Err(ProviderError::Transport(_))
    ));
    // A proxy refusal carries its message.
    let refusal = br#"{"error":{"type":"ironclaw_proxy","code":"rate_limited","message":"session rate cap"}}"#;
    let raw = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Length: {}\r\n\r\n{}",
        refusal.len(),
        String::from_utf8_lossy(refusal)
    );
    let (_d, http, _seen) = fake_proxy(vec![raw.into_bytes()]);
    let mut p = OpenAiProvider::new(http, "m");
    match p.complete(&conv, &[]) {
        Err(ProviderError::Status {
            status: 429,
            message,
        }) => assert_eq!(message, "session rate cap"),
        other => panic!("{other:?}"),
    }
    // A body over the cap is refused from its header.
    let (_d, mut http, _seen) = fake_proxy(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 17000000\r\n\r\n".to_vec(),
    ]);
    http.max_body = 16 * 1024 * 1024;
    let mut p = AnthropicProvider::new(http, "m");
    assert!(matches!(
        p.complete(&conv, &[]),
        Err(ProviderError::TooLarge { .. })
    ));
}

#[test]
fn openai_request_shape() {
    let conv = Conversation {
        system: "sys".into(),
        messages: vec![Message::user_text("hi")],
    };
    let body = openai_request("m", 10, &conv, &[spec("read_file")]);
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}])
    );
    assert_eq!(
        body["tools"][0]["function"]["parameters"],
        json!({"type": "object"})
    );
}
