//! The deterministic `mock` provider (`POST /mock/v1/messages`), answered by the proxy
//! itself: no upstream, no credential.
//!
//! It speaks the Anthropic Messages wire shape (what the agent's `AnthropicProvider`
//! sends and parses) and behaves exactly like the agent's in-process `MockProvider`, so
//! an agent pointed at the proxied mock and one using the in-process mock take the same
//! turns:
//!
//! - If the last message carries a `tool_result` block (the first one in it), the reply
//!   is `mock: tool result: <content>` (or `mock: tool error: <content>`).
//! - Otherwise the user text is the first non-blank text of the most recent `user`
//!   message. If it contains `tool:<name>` for a tool offered in `tools`, the reply is
//!   one `tool_use` block (id `mocktool_1`) with the arguments from the first `{` after
//!   the directive through the last `}` (`{}` if there are none; unparsable arguments
//!   are passed as a JSON string).
//! - Otherwise the reply is `mock: <user text, trimmed>`.
//!
//! Usage is reported so budgets can be exercised: input tokens are the request body's
//! bytes / 4, output tokens the reply content's JSON bytes / 4 (both rounded up).
//! Streaming is not offered (the agent never asks for it): `"stream": true` is a 400.

use ironclaw_mock_directive::{directive, MOCK_TOOL_CALL_ID};
use serde_json::{json, Value};

use crate::usage::Usage;

/// Why a request to the mock was refused (→ 400 with the proxy's JSON error body).
#[derive(Debug, thiserror::Error)]
pub(crate) enum MockError {
    #[error("the request body is not JSON: {0}")]
    NotJson(String),
    #[error("the request does not have the Anthropic Messages shape: {0}")]
    Shape(String),
    #[error("the mock provider does not stream; send \"stream\": false")]
    Stream,
}

impl MockError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            MockError::NotJson(_) | MockError::Shape(_) => "bad_request",
            MockError::Stream => "stream_not_supported",
        }
    }
}

fn shape(msg: impl Into<String>) -> MockError {
    MockError::Shape(msg.into())
}

/// The mock's answer: a complete Messages response body and the usage it reports.
#[derive(Debug)]
pub(crate) struct MockAnswer {
    pub body: Vec<u8>,
    pub usage: Usage,
}

/// One content block, as far as the mock cares.
enum Block<'a> {
    Text(&'a str),
    ToolResult { content: String, is_error: bool },
    Other,
}

struct Message<'a> {
    user: bool,
    blocks: Vec<Block<'a>>,
}

/// Text of a `tool_result`'s `content`: a string, or the text blocks of an array
/// (joined), or nothing.
fn tool_result_text(v: Option<&Value>, at: &str) -> Result<String, MockError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(items)) => {
            let mut out = String::new();
            for item in items {
                let obj = item
                    .as_object()
                    .ok_or_else(|| shape(format!("{at}.content: blocks must be objects")))?;
                if obj.get("type").and_then(Value::as_str) == Some("text") {
                    let t = obj.get("text").and_then(Value::as_str).ok_or_else(|| {
                        shape(format!(
                            "{at}.content: a text block needs a string \"text\""
                        ))
                    })?;
                    out.push_str(t);
                }
            }
            Ok(out)
        }
        Some(_) => Err(shape(format!(
            "{at}.content must be a string or an array of blocks"
        ))),
    }
}

fn parse_block<'a>(b: &'a Value, at: &str) -> Result<Block<'a>, MockError> {
    let obj = b
        .as_object()
        .ok_or_else(|| shape(format!("{at} must be an object")))?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| shape(format!("{at} needs a string \"type\"")))?;
    match kind {
        "text" => obj
            .get("text")
            .and_then(Value::as_str)
            .map(Block::Text)
            .ok_or_else(|| shape(format!("{at}: a text block needs a string \"text\""))),
        "tool_result" => {
            if !obj.get("tool_use_id").is_some_and(Value::is_string) {
                return Err(shape(format!(
                    "{at}: a tool_result block needs a string \"tool_use_id\""
                )));
            }
            let is_error = match obj.get("is_error") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(shape(format!("{at}.is_error must be a boolean"))),
            };
            Ok(Block::ToolResult {
                content: tool_result_text(obj.get("content"), at)?,
                is_error,
            })
        }
        "tool_use" => {
            for k in ["id", "name"] {
                if !obj.get(k).is_some_and(Value::is_string) {
                    return Err(shape(format!(
                        "{at}: a tool_use block needs a string {k:?}"
                    )));
                }
            }
            Ok(Block::Other)
        }
        // Images, documents, thinking, …: nothing the mock reads.
        _ => Ok(Block::Other),
    }
}

fn parse_messages(v: &Value) -> Result<Vec<Message<'_>>, MockError> {
    let list = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| shape("\"messages\" must be an array"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let user = match m.get("role").and_then(Value::as_str) {
            Some("user") => true,
            Some("assistant") => false,
            _ => {
                return Err(shape(format!(
                    "{at}.role must be \"user\" or \"assistant\""
                )))
            }
        };
        let blocks = match m.get("content") {
            // The wire's shorthand for one text block.
            Some(Value::String(s)) => vec![Block::Text(s)],
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(j, b)| parse_block(b, &format!("{at}.content[{j}]")))
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(shape(format!(
                    "{at}.content must be a string or an array of blocks"
                )))
            }
        };
        out.push(Message { user, blocks });
    }
    Ok(out)
}

fn offered_tools(v: &Value) -> Result<Vec<&str>, MockError> {
    match v.get("tools") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(tools)) => tools
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| shape(format!("tools[{i}] needs a string \"name\"")))
            })
            .collect(),
        Some(_) => Err(shape("\"tools\" must be an array")),
    }
}

/// The reply content blocks for a parsed request.
fn reply(messages: &[Message<'_>], tools: &[&str]) -> (Vec<Value>, &'static str) {
    if let Some(last) = messages.last() {
        let result = last.blocks.iter().find_map(|b| match b {
            Block::ToolResult { content, is_error } => Some((content, *is_error)),
            _ => None,
        });
        if let Some((content, is_error)) = result {
            let what = if is_error { "error" } else { "result" };
            let text = format!("mock: tool {what}: {content}");
            return (vec![json!({"type": "text", "text": text})], "end_turn");
        }
    }
    let text = messages
        .iter()
        .rev()
        .find(|m| m.user)
        .and_then(|m| {
            m.blocks.iter().find_map(|b| match b {
                Block::Text(t) if !t.trim().is_empty() => Some(*t),
                _ => None,
            })
        })
        .unwrap_or("");
    if let Some((name, input)) = directive(text) {
        if tools.contains(&name.as_str()) {
            return (
                vec![
                    json!({"type": "tool_use", "id": MOCK_TOOL_CALL_ID, "name": name, "input": input}),
                ],
                "tool_use",
            );
        }
    }
    let text = format!("mock: {}", text.trim());
    (vec![json!({"type": "text", "text": text})], "end_turn")
}

fn approx_tokens(bytes: usize) -> u64 {
    u64::try_from(bytes.div_ceil(4)).unwrap_or(u64::MAX)
}

/// Answers one Messages request body.
pub(crate) fn answer(body: &[u8]) -> Result<MockAnswer, MockError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| MockError::NotJson(e.to_string()))?;
    if !v.is_object() {
        return Err(shape("the body must be a JSON object"));
    }
    match v.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => return Err(MockError::Stream),
        Some(_) => return Err(shape("\"stream\" must be a boolean")),
    }
    let model = match v.get("model") {
        None | Some(Value::Null) => "mock",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(shape("\"model\" must be a string")),
    };
    let messages = parse_messages(&v)?;
    let tools = offered_tools(&v)?;
    let (content, stop_reason) = reply(&messages, &tools);
    let content = Value::Array(content);
    let usage = Usage {
        input: approx_tokens(body.len()),
        output: approx_tokens(content.to_string().len()).max(1),
    };
    let resp = json!({
        "id": "msg_mock",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {"input_tokens": usage.input, "output_tokens": usage.output},
    });
    Ok(MockAnswer {
        body: resp.to_string().into_bytes(),
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(v: Value) -> Value {
        let a = answer(v.to_string().as_bytes()).unwrap();
        serde_json::from_slice(&a.body).unwrap()
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": [{"type": "text", "text": text}]})
    }

    fn tools(names: &[&str]) -> Value {
        Value::Array(
            names
                .iter()
                .map(|n| json!({"name": n, "description": "", "input_schema": {"type": "object"}}))
                .collect(),
        )
    }

    #[test]
    fn echoes_the_last_user_text_trimmed() {
        let r = ask(
            json!({"model": "m", "messages": [user("first"), {"role": "assistant", "content": "x"}, user("  hello  ")]}),
        );
        assert_eq!(
            r["content"],
            json!([{"type": "text", "text": "mock: hello"}])
        );
        assert_eq!(r["stop_reason"], "end_turn");
        assert_eq!(r["model"], "m");
        assert!(r["usage"]["input_tokens"].as_u64().unwrap() > 0);
        assert!(r["usage"]["output_tokens"].as_u64().unwrap() > 0);
        // String content is the wire's shorthand for one text block.
        let r = ask(json!({"messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(r["content"][0]["text"], "mock: hi");
        // Blank text blocks are skipped, as the agent's `first_text` does.
        let r = ask(
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "  "}, {"type": "text", "text": "b"}]}]}),
        );
        assert_eq!(r["content"][0]["text"], "mock: b");
    }

    #[test]
    fn directive_for_an_offered_tool_is_a_tool_use() {
        let r = ask(json!({
            "messages": [user(r#"run tool:read_file {"path":"/x"} please"#)],
            "tools": tools(&["read_file"]),
        }));
        assert_eq!(
            r["content"],
            json!([{"type": "tool_use", "id": "mocktool_1", "name": "read_file", "input": {"path": "/x"}}])
        );
        assert_eq!(r["stop_reason"], "tool_use");
        let r = ask(
            json!({"messages": [user("tool:read_file {not json}")], "tools": tools(&["read_file"])}),
        );
        assert_eq!(r["content"][0]["input"], json!("{not json}"));
        let r = ask(json!({"messages": [user("tool:read_file")], "tools": tools(&["read_file"])}));
        assert_eq!(r["content"][0]["input"], json!({}));
    }

    #[test]
    fn directive_for_a_tool_not_offered_is_echoed() {
        let r = ask(json!({"messages": [user("tool:exec {}")], "tools": tools(&["read_file"])}));
        assert_eq!(r["content"][0]["text"], "mock: tool:exec {}");
    }

    #[test]
    fn tool_results_are_reported() {
        let call = json!({"role": "assistant", "content": [{"type": "tool_use", "id": "mocktool_1", "name": "read_file", "input": {}}]});
        let result = |content: Value, err: bool| json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "mocktool_1", "content": content, "is_error": err}]});
        let r = ask(json!({
            "messages": [user("tool:read_file {}"), call, result(json!("FILE-42"), false)],
            "tools": tools(&["read_file"]),
        }));
        assert_eq!(r["content"][0]["text"], "mock: tool result: FILE-42");
        let r = ask(json!({
            "messages": [user("tool:read_file {}"), call, result(json!([{"type": "text", "text": "no such file"}]), true)],
        }));
        assert_eq!(r["content"][0]["text"], "mock: tool error: no such file");
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for (body, code) in [
            (&b"not json"[..], "bad_request"),
            (b"[1,2]", "bad_request"),
            (b"{}", "bad_request"),
            (br#"{"messages": {}}"#, "bad_request"),
            (
                br#"{"messages": [{"role": "system", "content": "x"}]}"#,
                "bad_request",
            ),
            (br#"{"messages": [{"role": "user"}]}"#, "bad_request"),
            (
                br#"{"messages": [{"role": "user", "content": [1]}]}"#,
                "bad_request",
            ),
            (
                br#"{"messages": [{"role": "user", "content": [{"text": "x"}]}]}"#,
                "bad_request",
            ),
            (
                br#"{"messages": [{"role": "user", "content": [{"type": "text"}]}]}"#,
                "bad_request",
            ),
            (br#"{"messages": [], "tools": [{}]}"#, "bad_request"),
            (br#"{"messages": [], "tools": "x"}"#, "bad_request"),
            (br#"{"messages": [], "model": 3}"#, "bad_request"),
            (
                br#"{"messages": [], "stream": true}"#,
                "stream_not_supported",
            ),
        ] {
            let e = answer(body).unwrap_err();
            assert_eq!(e.code(), code, "{}: {e}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn usage_grows_with_the_request() {
        let small = answer(json!({"messages": [user("a")]}).to_string().as_bytes()).unwrap();
        let big = answer(
            json!({"messages": [user(&"a".repeat(4000))]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert!(big.usage.input >= 1000);
        assert!(big.usage.output > small.usage.output);
        assert!(small.usage.input > 0);
    }
}
