//! The mock provider's directive grammar: `tool:<name> {json}` in a user message asks
//! a mock model to call the tool `<name>` with those arguments.
//!
//! Two mocks speak it: the agent's in-process `MockProvider` (inside the sandbox) and
//! the model proxy's `mock` provider (on the host, `POST /mock/v1/messages`). Both parse
//! prompts here, and both give their tool calls [`MOCK_TOOL_CALL_ID`], so an agent on
//! either mock takes the same turns.
//!
//! What this crate is for: the grammar alone, as a pure function. What it is not for:
//! deciding whether the tool is offered, building a model turn or a wire response
//! (each mock does that in its own shape), or anything the host/sandbox contract
//! carries — this grammar is a test affordance, not part of `ironclaw-contract`.
//!
//! It is linked into the static in-sandbox agent, so it depends on `serde_json` only.

use serde_json::Value;

/// The id both mocks give their tool calls.
pub const MOCK_TOOL_CALL_ID: &str = "mocktool_1";

/// Parses `tool:<name> <args>` out of `text`: the mock's directive grammar, shared by
/// the agent's in-process mock and the model proxy's mock so both answer the same
/// prompt the same way.
///
/// - Only the first `tool:` counts; `<name>` is the ASCII letters and `_` right after
///   it (none → no directive).
/// - The arguments are the first `{` after the directive through the last `}` of the
///   text, parsed as JSON; unparsable arguments come back as a JSON string (so the tool
///   reports them), and no braces (or a `}` before the `{`) means `{}`.
pub fn directive(text: &str) -> Option<(String, Value)> {
    let at = text.find("tool:")?;
    let rest = &text[at + "tool:".len()..];
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic() || *c == '_')
        .collect();
    if name.is_empty() {
        return None;
    }
    let args = match (rest.find('{'), rest.rfind('}')) {
        (Some(open), Some(close)) if close > open => {
            let raw = &rest[open..=close];
            serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
        }
        _ => Value::Object(Default::default()),
    };
    Some((name, args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn name_and_args(text: &str) -> (String, Value) {
        directive(text).unwrap_or_else(|| panic!("no directive in {text:?}"))
    }

    #[test]
    fn exact_args_are_parsed() {
        assert_eq!(
            name_and_args(r#"run tool:read_file {"path":"/x"} please"#),
            ("read_file".to_owned(), json!({"path": "/x"}))
        );
    }

    #[test]
    fn garbage_args_become_a_string() {
        assert_eq!(
            name_and_args("tool:read_file {not json}"),
            ("read_file".to_owned(), json!("{not json}"))
        );
    }

    #[test]
    fn no_braces_means_empty_args() {
        assert_eq!(
            name_and_args("tool:read_file"),
            ("read_file".into(), json!({}))
        );
        assert_eq!(name_and_args("tool:exec } x {"), ("exec".into(), json!({})));
    }

    #[test]
    fn args_run_to_the_last_closing_brace() {
        assert_eq!(
            name_and_args(r#"tool:send_message {"text": "hi"} and } trailing"#).1,
            json!(r#"{"text": "hi"} and }"#)
        );
        assert_eq!(
            name_and_args(r#"before tool:send_message{"a":[1,{"b":2}]}"#),
            ("send_message".into(), json!({"a": [1, {"b": 2}]}))
        );
    }

    #[test]
    fn the_name_is_letters_and_underscores_right_after_the_colon() {
        assert_eq!(directive("tool: read_file {}"), None);
        assert_eq!(directive("hello"), None);
        assert_eq!(directive(""), None);
        assert_eq!(name_and_args("tool:read_file2 {}").0, "read_file");
        assert_eq!(
            name_and_args("unicode ✓ tool:read_file {\"p\": \"é\"}"),
            ("read_file".into(), json!({"p": "é"}))
        );
    }

    #[test]
    fn only_the_first_directive_counts() {
        assert_eq!(name_and_args("tool:a {} tool:b {}").0, "a");
    }
}
