//! A web chat client for live tests and benchmarks: send with `POST /v1/chat/send`, read
//! with `GET /v1/chat/{c}/messages`, and follow replies as they are delivered with the
//! server-sent-event stream `GET /v1/chat/{c}/stream`.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The daemon's API with an operator token.
#[derive(Clone)]
pub struct ChatApi {
    pub addr: String,
    pub token: String,
}

impl ChatApi {
    pub fn new(addr: &str, token: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            token: token.to_owned(),
        }
    }

    pub fn post(&self, path: &str, body: &Value) -> Value {
        let mut resp = ureq::post(format!("{}{path}", self.addr))
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_json(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        resp.body_mut().read_json().expect("a JSON answer")
    }

    pub fn get(&self, path: &str) -> Value {
        let mut resp = ureq::get(format!("{}{path}", self.addr))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        resp.body_mut().read_json().expect("a JSON answer")
    }

    /// Sends `text` to `group`, in `conversation` or a new one; returns the answer
    /// (`conversation_id`, `message_id`, `engaged`, `outcomes`).
    pub fn send(&self, group: &str, conversation: Option<&str>, text: &str) -> Value {
        let mut body = json!({"agent_group_id": group, "text": text});
        if let Some(c) = conversation {
            body["conversation_id"] = json!(c);
        }
        self.post("/v1/chat/send", &body)
    }

    /// Polls for the first agent message after message id `after`.
    pub fn agent_reply(&self, conversation: &str, after: u64, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let v = self.get(&format!("/v1/chat/{conversation}/messages?after={after}"));
            if let Some(m) = v["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["role"] == "agent")
            {
                return Some(m.clone());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Follows the conversation's live stream. Open it before sending: the stream
    /// carries messages stored after it was opened.
    pub fn follow(&self, conversation: &str) -> ChatStream {
        let resp = ureq::get(format!("{}/v1/chat/{conversation}/stream", self.addr))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET stream of {conversation}: {e}"));
        let (tx, rx) = mpsc::channel();
        let reader = BufReader::new(resp.into_body().into_reader());
        std::thread::spawn(move || {
            let mut event = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim().to_owned();
                } else if let Some(data) = line.strip_prefix("data:") {
                    if event == "message" {
                        let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
                            continue;
                        };
                        if tx.send((Instant::now(), v)).is_err() {
                            return;
                        }
                    }
                } else if line.is_empty() {
                    event.clear();
                }
            }
        });
        ChatStream { rx }
    }
}

/// Messages of one conversation as the stream delivers them, with their arrival time.
pub struct ChatStream {
    rx: mpsc::Receiver<(Instant, Value)>,
}

impl ChatStream {
    /// The next agent message, skipping the conversation's user messages, and when it
    /// arrived; `None` after `within`.
    pub fn next_agent(&self, within: Duration) -> Option<(Instant, Value)> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok((at, m)) if m["role"] == "agent" => return Some((at, m)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}
