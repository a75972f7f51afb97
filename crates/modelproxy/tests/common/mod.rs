//! Test fixtures: a fake provider on 127.0.0.1 (axum) that records what it receives,
//! a tiny HTTP/1.1-over-unix-socket client, and a proxy wired to both.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use ironclaw_audit::{AuditEvent, AuditLog};
use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_modelproxy::{ModelProxy, ProxyConfig, SessionListener};

pub const ANT_KEY: &str = "sk-ant-TESTKEY-0123456789abcdef";
pub const OAI_KEY: &str = "sk-oai-TESTKEY-fedcba9876543210";
pub const PROMPT_MARKER: &str = "PROMPT-MARKER-7f3a";
pub const COMPLETION_MARKER: &str = "COMPLETION-MARKER-91c2";

/// What the fake provider received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
pub struct Fake {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

/// A body that yields `chunks` with a short pause between them (so the proxy sees
/// them as separate reads).
struct Chunked {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}

fn streamed(chunks: Vec<Vec<u8>>, content_type: &str) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for c in chunks {
            if tx.send(Bytes::from(c)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut resp = Response::new(Body::new(Chunked { rx }));
    resp.headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    resp
}

fn json(v: serde_json::Value) -> Response {
    let mut resp = Response::new(Body::from(v.to_string()));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

/// The fake provider. `x-fake-mode` (forwarded by the proxy like any harmless header)
/// picks the answer: `json` (default), `stream`, `echo-key`, `echo-key-stream`, `big`
/// (endless-ish stream), `big-json` (declared length over any small cap).
async fn fake(State(fake): State<Fake>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap().to_vec();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers,
        body,
    };
    fake.seen.lock().unwrap().push(seen.clone());
    let mode = seen.header("x-fake-mode").unwrap_or("json").to_owned();
    // The credential the proxy injected, as a misbehaving provider might echo it.
    let cred = seen
        .header("x-api-key")
        .map(str::to_owned)
        .or_else(|| {
            seen.header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let anthropic = seen.path == "/v1/messages";
    match mode.as_str() {
        "stream" if anthropic => streamed(
            vec![
                b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\n\n".to_vec(),
                format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{COMPLETION_MARKER}\"}}}}\n\n").into_bytes(),
                b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":6}}\n\n".to_vec(),
                b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_vec(),
            ],
            "text/event-stream",
        ),
        "stream" => streamed(
            vec![
                b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"he\"}}]}\n\n".to_vec(),
                b"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"send_message\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n".to_vec(),
                b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":4}}\n\n".to_vec(),
                b"data: [DONE]\n\n".to_vec(),
            ],
            "text/event-stream",
        ),
        "echo-key" => json(serde_json::json!({
            "error": {"type": "authentication_error", "message": format!("bad key {cred} rejected")}
        })),
        "echo-key-stream" => {
            let event = format!("data: {{\"text\":\"leak {cred} end\"}}\n\n").into_bytes();
            // Split in the middle of the key.
            let at = event.len() / 2;
            streamed(
                vec![event[..at].to_vec(), event[at..].to_vec()],
                "text/event-stream",
            )
        }
        "big" => streamed(vec![vec![b'x'; 32 * 1024]; 8], "text/event-stream"),
        "big-json" => json(serde_json::json!({ "pad": "y".repeat(200 * 1024) })),
        "status-500" => {
            let mut r = json(serde_json::json!({"error": {"type": "overloaded", "message": "busy"}}));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
        _ if anthropic => json(serde_json::json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [
                {"type": "text", "text": COMPLETION_MARKER},
                {"type": "tool_use", "id": "toolu_1", "name": "send_message", "input": {"text": "hi"}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5}
        })),
        _ => json(serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": COMPLETION_MARKER,
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "send_message", "arguments": "{\"text\":\"hi\"}"}}]
            }}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        })),
    }
}

/// Starts the fake provider; returns it and its base URL.
pub async fn start_fake() -> (Fake, String) {
    let fake = Fake::default();
    let app = axum::Router::new()
        .fallback(fake_handler)
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (fake, format!("http://{addr}"))
}

async fn fake_handler(st: State<Fake>, req: Request) -> Response {
    fake(st, req).await
}

/// A proxy config with Anthropic and OpenAI pointed at the fake, via the same
/// variables the daemon reads.
pub fn config(base: &str) -> ProxyConfig {
    let base = base.to_owned();
    ProxyConfig::from_lookup(move |k| match k {
        "ANTHROPIC_API_KEY" => Some(ANT_KEY.to_owned()),
        "OPENAI_API_KEY" => Some(OAI_KEY.to_owned()),
        "ANTHROPIC_BASE_URL" | "OPENAI_BASE_URL" => Some(base.clone()),
        _ => None,
    })
    .unwrap()
}

pub fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

pub fn gid(s: &str) -> AgentGroupId {
    AgentGroupId::new(s).unwrap()
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub audit_path: PathBuf,
    pub audit: Arc<AuditLog>,
    pub proxy: Arc<ModelProxy>,
    pub fake: Fake,
    pub base: String,
}

impl Env {
    pub async fn new(tweak: impl FnOnce(&mut ProxyConfig)) -> Env {
        let (fake, base) = start_fake().await;
        let dir = tempfile::tempdir().unwrap();
        let audit_path = dir.path().join("audit.jsonl");
        let audit = Arc::new(AuditLog::open(&audit_path).unwrap());
        let mut cfg = config(&base);
        tweak(&mut cfg);
        let proxy = ModelProxy::new(cfg, Arc::clone(&audit)).unwrap();
        Env {
            dir,
            audit_path,
            audit,
            proxy,
            fake,
            base,
        }
    }

    pub fn sock(&self, session: &str) -> PathBuf {
        self.dir
            .path()
            .join("modelproxy.sock.d")
            .join(format!("{session}.sock"))
    }

    pub async fn session(&self, session: &str, group: &str) -> SessionListener {
        self.proxy
            .listen(sid(session), gid(group), &self.sock(session))
            .await
            .unwrap()
    }

    /// Every audit event so far (after flushing the writer).
    pub fn events(&self) -> Vec<AuditEvent> {
        self.proxy.flush_audit();
        self.audit
            .tail(10_000)
            .unwrap()
            .iter()
            .map(|r| r.event().unwrap())
            .collect()
    }

    pub fn model_calls(&self) -> Vec<AuditEvent> {
        self.events()
            .into_iter()
            .filter(|e| matches!(e, AuditEvent::ModelCall { .. }))
            .collect()
    }
}

/// A response as the sandbox sees it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// False when a chunked body ended without its terminating chunk (cut stream).
    pub complete: bool,
    /// Chunks as they were framed on the wire (chunked responses only).
    pub chunks: Vec<Vec<u8>>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A tiny HTTP/1.1 client over a unix socket (blocking; `Connection: close`).
pub fn call_blocking(
    sock: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    // The proxy may refuse (and close) before reading the body: that is not an error.
    let _ = s.write_all(req.as_bytes()).and_then(|()| s.write_all(body));
    let mut raw = Vec::new();
    // A cut stream may end with a reset; keep what arrived.
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    parse(&raw)
}

pub async fn call(
    sock: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let sock = sock.to_owned();
    let method = method.to_owned();
    let path = path.to_owned();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = body.to_vec();
    tokio::task::spawn_blocking(move || {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        call_blocking(&sock, &method, &path, &h, &body)
    })
    .await
    .unwrap()
}

fn parse(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if !chunked {
        return Resp {
            status,
            headers,
            body: rest.to_vec(),
            complete: true,
            chunks: Vec::new(),
        };
    }
    let mut body = Vec::new();
    let mut chunks = Vec::new();
    let mut pos = 0;
    let mut complete = false;
    while let Some(nl) = rest[pos..].windows(2).position(|w| w == b"\r\n") {
        let size_line = std::str::from_utf8(&rest[pos..pos + nl]).unwrap();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap();
        pos += nl + 2;
        if size == 0 {
            complete = true;
            break;
        }
        if pos + size > rest.len() {
            body.extend_from_slice(&rest[pos..]);
            break;
        }
        chunks.push(rest[pos..pos + size].to_vec());
        body.extend_from_slice(&rest[pos..pos + size]);
        pos += size + 2;
    }
    Resp {
        status,
        headers,
        body,
        complete,
        chunks,
    }
}

pub fn anthropic_body(stream: bool) -> Vec<u8> {
    serde_json::json!({
        "model": "claude-test", "max_tokens": 100, "stream": stream,
        "messages": [{"role": "user", "content": PROMPT_MARKER}],
        "tools": [{"name": "send_message", "description": "send", "input_schema": {"type": "object"}}]
    })
    .to_string()
    .into_bytes()
}

pub fn openai_body(stream: bool) -> Vec<u8> {
    serde_json::json!({
        "model": "gpt-test", "stream": stream,
        "messages": [{"role": "user", "content": PROMPT_MARKER}],
        "tools": [{"type": "function", "function": {"name": "send_message", "parameters": {"type": "object"}}}]
    })
    .to_string()
    .into_bytes()
}
