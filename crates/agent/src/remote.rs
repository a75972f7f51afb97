//! Providers that reach a model through the host model proxy's unix socket:
//! [`AnthropicProvider`] (Messages API) and [`OpenAiProvider`] (Chat Completions, which
//! also serves OpenRouter, Ollama and other OpenAI-compatible servers).
//!
//! They send no credential (the proxy injects it), ask for non-streamed responses, cap
//! the body at [`MAX_RESPONSE_BYTES`](crate::provider::MAX_RESPONSE_BYTES), and refuse a
//! turn that calls a tool that was not offered. The pure halves (`*_request`,
//! `parse_*`) are public so they can be tested without a socket.

use serde_json::{json, Map, Value};

use crate::conversation::{Block, Conversation, ModelTurn, Role, ToolCall, ToolSpec};
use crate::http::UnixHttp;
use crate::provider::{check_tool_names, Provider, ProviderError};

/// Output tokens asked for per turn.
pub const DEFAULT_MAX_TOKENS: u32 = 16000;

fn bad(msg: impl Into<String>) -> ProviderError {
    ProviderError::BadResponse(msg.into())
}

fn parse_json(body: &[u8]) -> Result<Value, ProviderError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))
}

/// A non-2xx answer: the provider's (or proxy's) `error.message` when there is one.
fn status_error(status: u16, body: &[u8]) -> ProviderError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    ProviderError::Status {
        status,
        message: message.chars().take(500).collect(),
    }
}

// ---------------------------------------------------------------- Anthropic

/// The Anthropic Messages request body (non-streamed).
pub fn anthropic_request(
    model: &str,
    max_tokens: u32,
    conversation: &Conversation,
    tools: &[ToolSpec],
) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": max_tokens,
        "messages": conversation.messages,
    });
    if !conversation.system.is_empty() {
        body["system"] = json!(conversation.system);
    }
    if !tools.is_empty() {
        body["tools"] = json!(tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.input_schema}))
            .collect::<Vec<_>>());
    }
    body
}

/// Parses an Anthropic Messages response into a turn.
pub fn parse_anthropic(body: &[u8], tools: &[ToolSpec]) -> Result<ModelTurn, ProviderError> {
    let v = parse_json(body)?;
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(bad(format!(
            "provider error: {}",
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
        )));
    }
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no \"content\" array"))?;
    let mut turn = ModelTurn::default();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = b
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("text block without text"))?;
                turn.text.push_str(t);
            }
            Some("tool_use") => {
                let field = |k: &str| {
                    b.get(k)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| bad(format!("tool_use block without {k}")))
                };
                turn.tool_calls.push(ToolCall {
                    id: field("id")?,
                    name: field("name")?,
                    // A missing input replays as `{}` (the Go system's Q12).
                    input: b.get("input").cloned().unwrap_or_else(|| json!({})),
                });
            }
            // Thinking and other block kinds carry nothing the loop acts on.
            _ => {}
        }
    }
    check_tool_names(&turn, tools)?;
    Ok(turn)
}

/// Anthropic Messages API through the proxy. The default route is Anthropic
/// (`POST /anthropic/v1/messages`); [`AnthropicProvider::with_path`] selects another
/// route of the same wire shape, e.g. the proxy's own deterministic mock
/// (`/mock/v1/messages`).
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    pub http: UnixHttp,
    pub model: String,
    pub max_tokens: u32,
    pub path: String,
}

impl AnthropicProvider {
    pub fn new(http: UnixHttp, model: impl Into<String>) -> Self {
        Self {
            http,
            model: model.into(),
            max_tokens: DEFAULT_MAX_TOKENS,
            path: "/anthropic/v1/messages".to_owned(),
        }
    }

    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
}

impl Provider for AnthropicProvider {
    fn complete(
        &mut self,
        conversation: &Conversation,
        tools: &[ToolSpec],
    ) -> Result<ModelTurn, ProviderError> {
        let body = anthropic_request(&self.model, self.max_tokens, conversation, tools);
        let resp = self.http.post_json(
            &self.path,
            &[("anthropic-version", "2023-06-01")],
            body.to_string().as_bytes(),
        )?;
        if !(200..300).contains(&resp.status) {
            return Err(status_error(resp.status, &resp.body));
        }
        parse_anthropic(&resp.body, tools)
    }
}

// ---------------------------------------------------------------- OpenAI

/// Translates the conversation into Chat Completions messages.
fn openai_messages(conversation: &Conversation) -> Vec<Value> {
    let mut out = Vec::new();
    if !conversation.system.is_empty() {
        out.push(json!({"role": "system", "content": conversation.system}));
    }
    for m in &conversation.messages {
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut results = Vec::new();
        for b in &m.content {
            match b {
                Block::Text { text: t } => {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(t);
                }
                Block::ToolUse { id, name, input } => calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": input.to_string()},
                })),
                Block::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => results.push(json!({
                    "role": "tool",
                    "tool_call_id": tool_use_id,
                    "content": if *is_error { format!("error: {content}") } else { content.clone() },
                })),
            }
        }
        match m.role {
            Role::Assistant => {
                let mut msg = Map::new();
                msg.insert("role".into(), json!("assistant"));
                msg.insert(
                    "content".into(),
                    if text.is_empty() {
                        Value::Null
                    } else {
                        json!(text)
                    },
                );
                if !calls.is_empty() {
                    msg.insert("tool_calls".into(), Value::Array(calls));
                }
                out.push(Value::Object(msg));
            }
            Role::User => {
                out.extend(results);
                if !text.is_empty() {
                    out.push(json!({"role": "user", "content": text}));
                }
            }
        }
    }
    out
}

/// The Chat Completions request body (non-streamed).
pub fn openai_request(
    model: &str,
    max_tokens: u32,
    conversation: &Conversation,
    tools: &[ToolSpec],
) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": max_tokens,
        "messages": openai_messages(conversation),
    });
    if !tools.is_empty() {
        body["tools"] = json!(tools
            .iter()
            .map(|t| json!({"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.input_schema,
            }}))
            .collect::<Vec<_>>());
    }
    body
}

/// Parses a Chat Completions response into a turn. Arguments that are not JSON are
/// passed on as a JSON string, so the tool (not the loop) tells the model what is wrong.
pub fn parse_openai(body: &[u8], tools: &[ToolSpec]) -> Result<ModelTurn, ProviderError> {
    let v = parse_json(body)?;
    if let Some(msg) = v.pointer("/error/message").and_then(Value::as_str) {
        return Err(bad(format!("provider error: {msg}")));
    }
    let message = v
        .pointer("/choices/0/message")
        .ok_or_else(|| bad("no choices[0].message"))?;
    let mut turn = ModelTurn::default();
    match message.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => turn.text = s.clone(),
        Some(_) => return Err(bad("message content is not a string")),
    }
    match message.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for c in calls {
                let name = c
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("tool call without function.name"))?;
                let id = c
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("tool call without id"))?;
                let input = match c.pointer("/function/arguments") {
                    None | Some(Value::Null) => json!({}),
                    Some(Value::String(s)) if s.trim().is_empty() => json!({}),
                    Some(Value::String(s)) => {
                        serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
                    }
                    Some(other) => other.clone(),
                };
                turn.tool_calls.push(ToolCall {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    input,
                });
            }
        }
        Some(_) => return Err(bad("tool_calls is not an array")),
    }
    check_tool_names(&turn, tools)?;
    Ok(turn)
}

/// Chat Completions through the proxy. The default route is OpenAI
/// (`/openai/v1/chat/completions`); [`OpenAiProvider::with_path`] selects another
/// OpenAI-compatible provider (e.g. `/openrouter/api/v1/chat/completions`,
/// `/ollama/v1/chat/completions`).
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    pub http: UnixHttp,
    pub model: String,
    pub max_tokens: u32,
    pub path: String,
}

impl OpenAiProvider {
    pub fn new(http: UnixHttp, model: impl Into<String>) -> Self {
        Self {
            http,
            model: model.into(),
            max_tokens: DEFAULT_MAX_TOKENS,
            path: "/openai/v1/chat/completions".to_owned(),
        }
    }

    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
}

impl Provider for OpenAiProvider {
    fn complete(
        &mut self,
        conversation: &Conversation,
        tools: &[ToolSpec],
    ) -> Result<ModelTurn, ProviderError> {
        let body = openai_request(&self.model, self.max_tokens, conversation, tools);
        let resp = self
            .http
            .post_json(&self.path, &[], body.to_string().as_bytes())?;
        if !(200..300).contains(&resp.status) {
            return Err(status_error(resp.status, &resp.body));
        }
        parse_openai(&resp.body, tools)
    }
}
