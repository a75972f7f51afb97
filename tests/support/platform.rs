//! Stand-ins for chat platforms in live tests: a fake platform API on 127.0.0.1 that
//! records every request (Slack `chat.postMessage`, Telegram `sendMessage` and
//! `getUpdates`) and answers what the test decides; a channels file written the way an
//! operator must (0600); and a conversation wired to the dev agent the way an operator
//! wires one (an admin submits, the owner approves).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{ironctl, Daemon};

/// One request the fake platform received.
#[derive(Debug, Clone)]
pub struct PlatformRequest {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl PlatformRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: body is not JSON ({e}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// The fake platform's answer to one request: status and JSON body.
pub type Answer = (u16, Value);

/// A platform API on 127.0.0.1. Every request is answered on its own thread by the
/// test's responder (which may block, as a long poll does), with `connection: close`,
/// and recorded *before* the answer is written: a client that sends its next request
/// only after an answer (split messages, polling) is recorded in order.
pub struct FakePlatform {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    rx: mpsc::Receiver<PlatformRequest>,
    /// Everything received so far, including what [`Self::next`] skipped.
    seen: Arc<Mutex<Vec<PlatformRequest>>>,
}

impl FakePlatform {
    pub fn start<F>(respond: F) -> FakePlatform
    where
        F: Fn(&PlatformRequest) -> Answer + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake platform");
        let port = listener.local_addr().expect("local addr").port();
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond = Arc::new(respond);
        let all = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (tx, all, respond) = (tx.clone(), all.clone(), respond.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn);
                    let Some(req) = read_request(&mut r) else {
                        return;
                    };
                    all.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(req.clone());
                    let _ = tx.send(req.clone());
                    let (status, body) = respond(&req);
                    let body = body.to_string();
                    let mut conn = r.into_inner();
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        FakePlatform {
            base: format!("http://127.0.0.1:{port}"),
            rx,
            seen,
        }
    }

    /// The next request whose path ends with `suffix` within `within` (others are
    /// skipped, still kept in [`Self::seen`]).
    pub fn next(&self, suffix: &str, within: Duration) -> Option<PlatformRequest> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(r) if r.path.ends_with(suffix) => return Some(r),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<PlatformRequest> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Reads one HTTP/1.1 request (head and a `content-length` body).
pub(crate) fn read_request(r: &mut BufReader<std::net::TcpStream>) -> Option<PlatformRequest> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    let mut len = 0;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                len = v.trim().parse().unwrap_or(0);
            }
            headers.push((k, v.trim().to_owned()));
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(PlatformRequest {
        method,
        path,
        headers,
        body,
    })
}

/// Writes `config` as the daemon's channels file in `dir` (0600: the daemon refuses a
/// file others can read).
pub fn channels_file(dir: &Path, config: &Value) -> PathBuf {
    let path = dir.join("channels.json");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .expect("create the channels file");
    write!(f, "{config}").expect("write the channels file");
    path
}

/// Creates the messaging group `group` (a JSON body for
/// `POST /v1/registry/messaging-groups`) and wires it to `dev-agent` with `wiring`
/// (`engage_mode`, `sender_scope`, …): an admin `alice` submits the change, the owner
/// approves it. Returns the messaging group's id.
pub fn wire_to_dev_agent(d: &Daemon, group: &Value, wiring: &Value) -> String {
    let owner = d.dev_token();
    let mg = ureq::post(format!("{}/v1/registry/messaging-groups", d.addr))
        .header("Authorization", &format!("Bearer {owner}"))
        .send_json(group)
        .expect("create the messaging group")
        .body_mut()
        .read_json::<Value>()
        .expect("a JSON answer");
    let mg_id = mg["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no messaging group id: {mg}"))
        .to_owned();
    let alice = ironctl(
        &d.addr,
        Some(&owner),
        &["--json", "token", "create", "alice", "--role", "admin"],
    )
    .json();
    let alice = alice["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{alice}"))
        .to_owned();
    let mut payload = wiring.clone();
    payload["messaging_group_id"] = json!(mg_id);
    let payload = payload.to_string();
    let sub = ironctl(
        &d.addr,
        Some(&alice),
        &[
            "--json",
            "change",
            "submit",
            "--kind",
            "wiring",
            "--group",
            "dev-agent",
            "--payload",
            &payload,
        ],
    );
    assert_eq!(sub.code, 0, "{}{}", sub.stdout, sub.stderr);
    let id = sub.json()["id"].as_str().expect("change id").to_owned();
    let ok = ironctl(&d.addr, Some(&owner), &["change", "approve", &id]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    mg_id
}

/// The daemon's sessions (`ironctl session list`).
pub fn sessions(d: &Daemon) -> Vec<Value> {
    let v = ironctl(
        &d.addr,
        Some(&d.dev_token()),
        &["--json", "session", "list"],
    )
    .json();
    v["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .clone()
}

/// POSTs `body` to `/hooks/<path>` with `headers`; the status and the answer's body.
pub fn post_hook(d: &Daemon, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut req = ureq::post(format!("{}/hooks/{path}", d.addr))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req
        .send(body)
        .unwrap_or_else(|e| panic!("POST /hooks/{path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, text)
}
