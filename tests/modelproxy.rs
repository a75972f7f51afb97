//! The daemon's model proxy end to end: the real daemon serves its base socket, the
//! mock answers over it, and the call lands in the audit chain.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use ironclaw_e2e::{ironctl, Daemon};
use serde_json::{json, Value};

/// One HTTP/1.1 request over the unix socket; returns the status and the JSON body.
fn call(sock: &Path, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let mut s = UnixStream::connect(sock).expect("connect to the model proxy socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: model-proxy\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    // A refusal may be answered (and the connection closed) before the body is read:
    // a failed write or a reset after the answer is not an error here.
    let _ = s.write_all(&req);
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let status = head[9..12].parse().unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")),
    )
}

fn model_calls(d: &Daemon, token: &str) -> Vec<Value> {
    let out = ironctl(&d.addr, Some(token), &["--json", "audit", "--limit", "200"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].clone())
        .filter(|e| e["type"] == "model_call")
        .collect()
}

#[test]
fn dev_daemon_serves_the_mock_on_its_base_socket_and_audits_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_dev(&dir.path().join("state"), &[]);
    let owner = d.dev_token();
    let sock = d.model_proxy_socket.clone();
    let meta = std::fs::symlink_metadata(&sock).expect("base socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let (status, health) = call(&sock, "GET", "/healthz", b"");
    assert_eq!(status, 200);
    assert_eq!(health["providers"], json!(["mock"]));

    let body = json!({
        "model": "mock", "max_tokens": 64,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
    })
    .to_string();
    let (status, v) = call(&sock, "POST", "/mock/v1/messages", body.as_bytes());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["content"][0]["text"], "mock: hello");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);

    // Garbage is a JSON 400, and a real provider is not reachable from the base socket.
    let (status, v) = call(&sock, "POST", "/mock/v1/messages", b"{not json");
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["type"], "ironclaw_proxy");
    let (status, v) = call(&sock, "POST", "/anthropic/v1/messages", body.as_bytes());
    assert_eq!(status, 404, "{v}");

    // The audit writer is asynchronous: wait for the records.
    let deadline = Instant::now() + Duration::from_secs(10);
    let calls = loop {
        let calls = model_calls(&d, &owner);
        if calls.len() >= 2 || Instant::now() > deadline {
            break calls;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(calls.len(), 2, "{calls:?}");
    let ok = &calls[0];
    assert_eq!(ok["provider"], "mock");
    assert_eq!(ok["path"], "/v1/messages");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["session_id"], "modelproxy-base");
    assert!(ok["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(calls[1]["status"], 400);
    let verify = ironctl(&d.addr, Some(&owner), &["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    assert!(verify.stdout.contains("intact"), "{}", verify.stdout);

    d.stop();
    assert!(
        std::fs::symlink_metadata(&sock).is_err(),
        "the base socket is removed on shutdown"
    );
}

#[test]
fn outside_dev_without_provider_settings_nothing_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("state"), false, &[]);
    let sock = d.model_proxy_socket.clone();
    let (status, health) = call(&sock, "GET", "/healthz", b"");
    assert_eq!(status, 200);
    assert_eq!(health["providers"], json!([]));
    let (status, v) = call(&sock, "POST", "/mock/v1/messages", b"{}");
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "provider_not_configured");
    d.stop();
}
