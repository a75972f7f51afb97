//! Model providers: the [`Provider`] trait and the deterministic [`MockProvider`].
//!
//! A provider turns a [`Conversation`] and the offered [`ToolSpec`]s into one
//! [`ModelTurn`]. Providers never retry: pacing retries is the poll loop's job.

use crate::conversation::{Block, Conversation, ModelTurn, Role, ToolCall, ToolSpec};

/// Largest response body a provider accepts, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Why a model turn could not be had. Every variant is retryable by the loop (with
/// backoff); none is a panic.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("model proxy request: {0}")]
    Transport(String),
    #[error("model proxy returned {status}: {message}")]
    Status { status: u16, message: String },
    #[error("model response is {len} bytes or more; the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("model response is not valid: {0}")]
    BadResponse(String),
    #[error("model called tool {name:?}, which was not offered")]
    UnknownTool { name: String },
}

/// A source of model turns.
pub trait Provider {
    /// One turn given the conversation so far and the tools on offer.
    fn complete(
        &mut self,
        conversation: &Conversation,
        tools: &[ToolSpec],
    ) -> Result<ModelTurn, ProviderError>;
}

impl<P: Provider + ?Sized> Provider for &mut P {
    fn complete(
        &mut self,
        conversation: &Conversation,
        tools: &[ToolSpec],
    ) -> Result<ModelTurn, ProviderError> {
        (**self).complete(conversation, tools)
    }
}

impl<P: Provider + ?Sized> Provider for Box<P> {
    fn complete(
        &mut self,
        conversation: &Conversation,
        tools: &[ToolSpec],
    ) -> Result<ModelTurn, ProviderError> {
        (**self).complete(conversation, tools)
    }
}

/// Refuses a turn that calls a tool that was not offered (wire providers call this on
/// what they parsed).
pub fn check_tool_names(turn: &ModelTurn, tools: &[ToolSpec]) -> Result<(), ProviderError> {
    for call in &turn.tool_calls {
        if !tools.iter().any(|t| t.name == call.name) {
            return Err(ProviderError::UnknownTool {
                name: call.name.chars().take(80).collect(),
            });
        }
    }
    Ok(())
}

/// The deterministic offline provider: no network, no credential.
///
/// - If the last message carries a tool result, it replies
///   `mock: tool result: <content>` (or `mock: tool error: …`).
/// - Otherwise it takes the user text (the first non-empty text block of the most
///   recent user message). If that contains `tool:<name>` for an offered tool, it calls
///   the tool with the arguments from the first `{` after the directive through the last
///   `}` (`{}` if there are none; unparsable arguments are passed as a JSON string so the
///   tool reports them).
/// - Otherwise it replies `mock: <user text, trimmed>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MockProvider;

/// The id the mock gives its tool calls (shared with the model proxy's mock).
pub use ironclaw_mock_directive::MOCK_TOOL_CALL_ID;

impl Provider for MockProvider {
    fn complete(
        &mut self,
        conversation: &Conversation,
        tools: &[ToolSpec],
    ) -> Result<ModelTurn, ProviderError> {
        if let Some(last) = conversation.messages.last() {
            let result = last.content.iter().find_map(|b| match b {
                Block::ToolResult {
                    content, is_error, ..
                } => Some((content, *is_error)),
                _ => None,
            });
            if let Some((content, is_error)) = result {
                let what = if is_error { "error" } else { "result" };
                return Ok(ModelTurn::text(format!("mock: tool {what}: {content}")));
            }
        }
        let text = conversation
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .and_then(|m| m.first_text())
            .unwrap_or("");
        if let Some((name, input)) = directive(text) {
            if tools.iter().any(|t| t.name == name) {
                return Ok(ModelTurn {
                    text: String::new(),
                    tool_calls: vec![ToolCall {
                        id: MOCK_TOOL_CALL_ID.to_owned(),
                        name,
                        input,
                    }],
                });
            }
        }
        Ok(ModelTurn::text(format!("mock: {}", text.trim())))
    }
}

/// Parses `tool:<name> <args>` out of `text`: the mock's directive grammar, shared with
/// the model proxy's mock so both answer the same prompt the same way.
pub use ironclaw_mock_directive::directive;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{Message, ToolResult};
    use serde_json::json;

    fn spec(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: String::new(),
            input_schema: json!({"type": "object"}),
        }
    }

    fn conv(text: &str) -> Conversation {
        Conversation {
            system: String::new(),
            messages: vec![Message::user_text(text)],
        }
    }

    #[test]
    fn echoes_without_directive() {
        let t = MockProvider.complete(&conv("  hello  "), &[]).unwrap();
        assert_eq!(t, ModelTurn::text("mock: hello"));
    }

    #[test]
    fn emits_offered_tool_call_with_exact_args() {
        let t = MockProvider
            .complete(
                &conv(r#"run tool:read_file {"path":"/x"} please"#),
                &[spec("read_file")],
            )
            .unwrap();
        assert_eq!(t.tool_calls.len(), 1);
        assert_eq!(t.tool_calls[0].name, "read_file");
        assert_eq!(t.tool_calls[0].input, json!({"path": "/x"}));
    }

    #[test]
    fn ignores_unoffered_tool() {
        let t = MockProvider
            .complete(&conv("tool:exec {}"), &[spec("read_file")])
            .unwrap();
        assert!(t.tool_calls.is_empty());
        assert_eq!(t.text, "mock: tool:exec {}");
    }

    #[test]
    fn reports_tool_result() {
        let mut c = conv("tool:read_file {}");
        c.messages.push(Message::tool_results(vec![ToolResult {
            tool_use_id: MOCK_TOOL_CALL_ID.into(),
            content: "FILE-CONTENTS-42".into(),
            is_error: false,
        }]));
        let t = MockProvider.complete(&c, &[spec("read_file")]).unwrap();
        assert_eq!(t.text, "mock: tool result: FILE-CONTENTS-42");
    }

    #[test]
    fn garbage_args_become_a_string() {
        let t = MockProvider
            .complete(&conv("tool:read_file {not json}"), &[spec("read_file")])
            .unwrap();
        assert_eq!(t.tool_calls[0].input, json!("{not json}"));
    }

    #[test]
    fn unknown_tool_names_are_refused() {
        let turn = ModelTurn {
            text: String::new(),
            tool_calls: vec![ToolCall {
                id: "1".into(),
                name: "set_persona".into(),
                input: json!({}),
            }],
        };
        assert!(matches!(
            check_tool_names(&turn, &[spec("read_file")]),
            Err(ProviderError::UnknownTool { .. })
        ));
    }
}
