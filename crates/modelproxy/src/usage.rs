//! Token counts from provider `usage` fields.
//!
//! - Anthropic: `usage.input_tokens` / `usage.output_tokens` (JSON body; in a stream,
//!   `message_start.message.usage` then cumulative `message_delta.usage`).
//! - OpenAI-compatible: `usage.prompt_tokens` / `usage.completion_tokens` (JSON body; in
//!   a stream, the last chunk when the request asked for `stream_options.include_usage`).
//!
//! Counts only ever grow within one response (the maximum seen is kept), so cumulative
//! stream deltas are not double counted.

use serde_json::Value;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub input: u64,
    pub output: u64,
}

impl Usage {
    pub(crate) fn total(self) -> u64 {
        self.input.saturating_add(self.output)
    }

    fn merge_usage_object(&mut self, u: &Value) {
        let get = |k: &str| u.get(k).and_then(Value::as_u64);
        let input = get("input_tokens")
            .map(|i| {
                // Anthropic prompt caching reports cached tokens separately.
                i.saturating_add(get("cache_creation_input_tokens").unwrap_or(0))
                    .saturating_add(get("cache_read_input_tokens").unwrap_or(0))
            })
            .or_else(|| get("prompt_tokens"));
        let output = get("output_tokens").or_else(|| get("completion_tokens"));
        if let Some(i) = input {
            self.input = self.input.max(i);
        }
        if let Some(o) = output {
            self.output = self.output.max(o);
        }
    }

    /// Merges the usage found in one JSON document (a whole body or one SSE event).
    pub(crate) fn merge_json(&mut self, v: &Value) {
        if let Some(u) = v.get("usage") {
            self.merge_usage_object(u);
        }
        if let Some(u) = v.get("message").and_then(|m| m.get("usage")) {
            self.merge_usage_object(u);
        }
        // OpenAI Responses API streams: `response.completed` carries `response.usage`.
        if let Some(u) = v.get("response").and_then(|m| m.get("usage")) {
            self.merge_usage_object(u);
        }
    }

    pub(crate) fn from_body(body: &[u8]) -> Usage {
        let mut u = Usage::default();
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            u.merge_json(&v);
        }
        u
    }
}

/// Reads `data:` lines out of an SSE byte stream, chunk by chunk.
#[derive(Debug, Default)]
pub(crate) struct SseUsage {
    line: Vec<u8>,
    /// Set when the current line outgrew the cap; the rest of it is skipped.
    skipping: bool,
    pub usage: Usage,
}

/// Longest SSE line examined for usage (longer lines are passed through, not parsed).
const MAX_LINE: usize = 1024 * 1024;

impl SseUsage {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        for part in chunk.split_inclusive(|&b| b == b'\n') {
            let complete = part.last() == Some(&b'\n');
            if !self.skipping {
                if self.line.len() + part.len() > MAX_LINE {
                    self.skipping = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            if complete {
                if !self.skipping {
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line);
                }
                self.skipping = false;
                self.line.clear();
            }
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.trim_ascii();
        if data.is_empty() || data == b"[DONE]" {
            return;
        }
        if let Ok(v) = serde_json::from_slice::<Value>(data) {
            self.usage.merge_json(&v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies() {
        let a = br#"{"content":[],"usage":{"input_tokens":12,"output_tokens":7}}"#;
        assert_eq!(
            Usage::from_body(a),
            Usage {
                input: 12,
                output: 7
            }
        );
        let o =
            br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#;
        assert_eq!(
            Usage::from_body(o),
            Usage {
                input: 5,
                output: 3
            }
        );
        assert_eq!(Usage::from_body(b"not json"), Usage::default());
    }

    #[test]
    fn anthropic_stream_split_across_chunks() {
        let stream = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n",
        );
        let b = stream.as_bytes();
        for cut in 0..b.len() {
            let mut s = SseUsage::default();
            s.push(&b[..cut]);
            s.push(&b[cut..]);
            assert_eq!(
                s.usage,
                Usage {
                    input: 25,
                    output: 15
                }
            );
        }
    }

    #[test]
    fn openai_stream_final_usage_chunk() {
        let mut s = SseUsage::default();
        s.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n");
        s.push(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n");
        assert_eq!(
            s.usage,
            Usage {
                input: 9,
                output: 4
            }
        );
    }
}
