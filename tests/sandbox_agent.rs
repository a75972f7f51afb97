//! The real `ironclaw-sandbox` binary against real encrypted queue files, a host-side
//! doorbell and a fake model proxy socket (no sandbox yet: that is the isolation
//! tests' job). This test plays the host with the host crates.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironclaw_contract::db::Cipher;
use ironclaw_contract::enums::Status;
use ironclaw_contract::ids::SessionId;
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::{HostLayout, HEARTBEAT_FILE_NAME};
use ironclaw_contract::queue::{InboundWriter, OutboundReader};
use ironclaw_contract::rows::MessageOut;
use ironclaw_contract::time::Timestamp;
use ironclaw_e2e::binary;
use ironclaw_queue::QueueFactory;
use ironclaw_testkit::message_in;
use serde_json::{json, Value};

const KEY: [u8; 32] = [0x42; 32];

/// What the fake proxy saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<String>,
    user_text: String,
}

/// A fake model proxy: Anthropic-shaped answers `fake: <last user text>`, after
/// failing the first `fail_first` requests with 503.
struct FakeProxy {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeProxy {
    fn start(path: &Path, fail_first: usize) -> Self {
        let listener = UnixListener::bind(path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let n = log.lock().unwrap().len();
                if let Some(s) = answer(conn, n < fail_first) {
                    log.lock().unwrap().push(s);
                }
            }
        });
        Self { seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(conn: UnixStream, fail: bool) -> Option<Seen> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end().to_owned();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
        headers.push(h);
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let req: Value = serde_json::from_slice(&body).ok()?;
    let user_text = req["messages"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| match &m["content"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(blocks) => blocks
                .iter()
                .find_map(|b| b["text"].as_str().map(str::to_owned)),
            _ => None,
        })
        .unwrap_or_default();
    let (status, reply) = if fail {
        (
            "503 Service Unavailable",
            json!({"type":"error","error":{"type":"overloaded","message":"try later"}}),
        )
    } else {
        (
            "200 OK",
            json!({
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": format!("fake: {user_text}")}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 3, "output_tokens": 2}
            }),
        )
    };
    let body = reply.to_string();
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    Some(Seen {
        path,
        headers,
        user_text,
    })
}

/// One provisioned session and the agent process serving it.
struct Host {
    _dir: tempfile::TempDir,
    layout: HostLayout,
    factory: QueueFactory,
    sid: SessionId,
    cipher: Cipher,
    key_file: PathBuf,
    model_socket: PathBuf,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(dir.path());
        let factory = QueueFactory::new(layout.clone());
        let sid = SessionId::new("sess-e2e").unwrap();
        let cipher = Cipher::Key(SessionKey::from_bytes(KEY));
        factory.provision(&sid, &cipher).unwrap();
        std::fs::create_dir_all(layout.heartbeat_dir(&sid)).unwrap();
        let key_file = dir.path().join("session.key");
        std::fs::write(&key_file, KEY).unwrap();
        let model_socket = dir.path().join("model.sock");
        Self {
            _dir: dir,
            layout,
            factory,
            sid,
            cipher,
            key_file,
            model_socket,
        }
    }

    fn spawn_agent(&self, poll_ms: u64) -> Agent {
        let child = Command::new(binary("ironclaw-sandbox"))
            .arg("--inbound")
            .arg(self.layout.inbound_db(&self.sid))
            .arg("--outbound")
            .arg(self.layout.outbound_db(&self.sid))
            .arg("--key-file")
            .arg(&self.key_file)
            .arg("--model-socket")
            .arg(&self.model_socket)
            .arg("--doorbell-socket")
            .arg(self.layout.doorbell_socket(&self.sid))
            .arg("--heartbeat-dir")
            .arg(self.layout.heartbeat_dir(&self.sid))
            .arg("--poll-interval-ms")
            .arg(poll_ms.to_string())
            .arg("--enabled-tools")
            .arg("send_message")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Agent { child }
    }

    fn send(&self, id: &str, text: &str) {
        let mut w = self
            .factory
            .inbound_writer(&self.sid, &self.cipher)
            .unwrap();
        w.write_message(&message_in(id, text).build()).unwrap();
    }

    fn outbound(&self) -> Vec<MessageOut> {
        let mut r = self
            .factory
            .outbound_reader(&self.sid, self.cipher.clone())
            .unwrap();
        r.due_messages(Timestamp::now(), 0).unwrap().rows
    }

    fn wait_for_reply(&self, within: Duration) -> Option<MessageOut> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(m) = self.outbound().into_iter().next() {
                return Some(m);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn completed(&self) -> usize {
        let mut r = self
            .factory
            .outbound_reader(&self.sid, self.cipher.clone())
            .unwrap();
        r.processing_acks(Status::Completed, None)
            .unwrap()
            .rows
            .len()
    }
}

struct Agent {
    child: Child,
}

impl Agent {
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_agent_answers_on_a_ring_rings_back_beats_and_stops_on_sigterm() {
    let host = Host::new();
    let proxy = FakeProxy::start(&host.model_socket, 0);
    let bell = UnixListener::bind(host.layout.doorbell_socket(&host.sid)).unwrap();
    // A 20 s poll interval: only the doorbell can explain a prompt answer.
    let mut agent = host.spawn_agent(20_000);
    let (mut conn, _) = bell.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();

    let started = Instant::now();
    host.send("m1", "hello agent");
    conn.write_all(b"!").unwrap();
    let mut rang = [0u8; 1];
    conn.read_exact(&mut rang).unwrap();
    let reply = host.wait_for_reply(Duration::from_secs(1)).expect("reply");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(reply.message.content, "fake: hello agent");
    assert_eq!(reply.message.in_reply_to.as_ref().unwrap().as_str(), "m1");
    assert_eq!(reply.seq % 2, 1);
    assert_eq!(host.completed(), 1);

    let seen = proxy.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/mock/v1/messages");
    assert_eq!(seen[0].user_text, "hello agent");
    for h in &seen[0].headers {
        let name = h.split(':').next().unwrap().to_ascii_lowercase();
        assert!(
            !["authorization", "x-api-key", "api-key"].contains(&name.as_str()),
            "the agent sent a credential header: {h}"
        );
    }

    let beat = host
        .layout
        .heartbeat_dir(&host.sid)
        .join(HEARTBEAT_FILE_NAME);
    let stamp: Timestamp = std::fs::read_to_string(&beat)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(stamp <= Timestamp::now());

    agent.terminate();
    let code = agent.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", agent.stderr());
}

#[test]
fn provider_errors_are_retried_with_backoff_until_the_answer_comes() {
    let host = Host::new();
    let proxy = FakeProxy::start(&host.model_socket, 2);
    host.send("m1", "are you there");
    let mut agent = host.spawn_agent(50);
    // Two failures wait 0.5–1 s and 1–2 s.
    let reply = host
        .wait_for_reply(Duration::from_secs(20))
        .unwrap_or_else(|| {
            panic!("no reply; agent said: {}", {
                agent.terminate();
                agent.stderr()
            })
        });
    assert_eq!(reply.message.content, "fake: are you there");
    assert_eq!(proxy.seen().len(), 3);
    assert_eq!(host.outbound().len(), 1, "the retried engage wrote once");
    agent.terminate();
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(0));
    let log = agent.stderr();
    assert!(log.contains("provider error (attempt 2)"), "{log}");
}

#[test]
fn a_corrupted_inbound_file_makes_the_agent_exit_5() {
    let host = Host::new();
    let _proxy = FakeProxy::start(&host.model_socket, 0);
    let mut agent = host.spawn_agent(50);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "{}",
        agent.stderr()
    );
    std::fs::write(host.layout.inbound_db(&host.sid), vec![0x17; 3 * 4096]).unwrap();
    let code = agent.wait_exit(Duration::from_secs(20));
    let log = agent.stderr();
    assert_eq!(code, Some(5), "{log}");
    assert!(log.contains("corrupt"), "{log}");
}
