//! A signed webhook end to end, live (issue #6): a verified `POST /hooks/webhook/ci`
//! reaches the agent in a real `runsc` sandbox and its reply is POSTed to the
//! instance's URL (a receiver on 127.0.0.1) signed the same way; forged, stale and
//! replayed requests get 401 and queue nothing.
//!
//! The wiring is made the way an operator makes one: `alice` submits it, the owner
//! approves it. Needs root, `runsc` and the static agent (`dev/test.sh` builds it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use ironclaw_e2e::{ironctl, Daemon};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn static_agent() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .ancestors()
        .nth(3)
        .unwrap()
        .join("x86_64-unknown-linux-gnu/release/ironclaw-sandbox");
    assert!(
        bin.exists(),
        "{} is missing: run dev/test.sh",
        bin.display()
    );
    bin
}

fn sign(ts: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One POST the receiver got: headers (lower-cased names) and body.
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

fn receiver() -> (u16, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
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
            let _ = r.read_exact(&mut body);
            let mut conn = r.into_inner();
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = tx.send(Received {
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
    });
    (port, rx)
}

fn hook(addr: &str, ts: &str, sig: &str, body: &str) -> u16 {
    match ureq::post(format!("{addr}/hooks/webhook/ci"))
        .header("Content-Type", "application/json")
        .header("X-IronClaw-Timestamp", ts)
        .header("X-IronClaw-Signature", sig)
        .send(body)
    {
        Ok(r) => r.status().as_u16(),
        Err(ureq::Error::StatusCode(c)) => c,
        Err(e) => panic!("hook: {e}"),
    }
}

#[test]
fn a_signed_webhook_reaches_the_sandbox_and_the_signed_reply_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (port, replies) = receiver();
    let channels = dir.path().join("channels.json");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&channels)
        .unwrap();
    write!(
        f,
        "{}",
        json!({"webhooks": {"ci": {"secret": SECRET, "url": format!("http://127.0.0.1:{port}/replies")}}})
    )
    .unwrap();
    drop(f);
    let socket = state.join("modelproxy.sock");
    let bin = static_agent();
    let d = Daemon::start_dev(
        &state,
        &[
            "--model-proxy-socket",
            socket.to_str().unwrap(),
            "--sandbox-bin",
            bin.to_str().unwrap(),
            "--channels-file",
            channels.to_str().unwrap(),
        ],
    );
    let owner = d.dev_token();
    let ctl = |token: &str, args: &[&str]| ironctl(&d.addr, Some(token), args);

    // The conversation, open to senders of this signed webhook, wired by two humans.
    let mg = ureq::post(format!("{}/v1/registry/messaging-groups", d.addr))
        .header("Authorization", &format!("Bearer {owner}"))
        .send_json(json!({"channel_type": "webhook", "platform_id": "build-42", "instance": "ci", "unknown_sender_policy": "public"}))
        .unwrap()
        .body_mut()
        .read_json::<Value>()
        .unwrap();
    let mg_id = mg["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{mg}"))
        .to_owned();
    let alice = ctl(
        &owner,
        &["--json", "token", "create", "alice", "--role", "admin"],
    )
    .json();
    let alice_token = alice["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{alice}"))
        .to_owned();
    let payload =
        json!({"messaging_group_id": mg_id, "engage_mode": "mention", "sender_scope": "all"})
            .to_string();
    let sub = ctl(
        &alice_token,
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
    let id = sub.json()["id"].as_str().unwrap().to_owned();
    let ok = ctl(&owner, &["change", "approve", &id]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);

    // Refused: forged, stale, from the future — nothing is queued.
    let body = json!({"platform_id": "build-42", "sender": "ci-bot", "text": "build 42 failed: why?", "mentioned": true, "message_id": "evt-1"}).to_string();
    let ts = now().to_string();
    assert_eq!(hook(&d.addr, &ts, &sign(&ts, "{}"), &body), 401, "forged");
    let old = (now() - 600).to_string();
    assert_eq!(hook(&d.addr, &old, &sign(&old, &body), &body), 401, "stale");
    let future = (now() + 600).to_string();
    assert_eq!(
        hook(&d.addr, &future, &sign(&future, &body), &body),
        401,
        "future"
    );
    assert_eq!(hook(&d.addr, &ts, "sha256=00", &body), 401, "malformed");
    let sessions = ctl(&owner, &["--json", "session", "list"]).json();
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        0,
        "{sessions}"
    );

    // Accepted once; the same signed request again is a replay.
    assert_eq!(hook(&d.addr, &ts, &sign(&ts, &body), &body), 200);
    assert_eq!(
        hook(&d.addr, &ts, &sign(&ts, &body), &body),
        401,
        "replayed"
    );

    // The reply is POSTed to the instance's URL, signed with the same secret.
    let got = replies
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("no reply POSTed\n{}", d.log()));
    let header = |k: &str| {
        got.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let rts = header("x-ironclaw-timestamp");
    assert_eq!(header("x-ironclaw-signature"), sign(&rts, &got.body));
    let reply: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(reply["platform_id"], "build-42", "{reply}");
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.starts_with("mock: ") && text.contains("build 42 failed"),
        "{text}"
    );
    // Exactly one session, launched under runsc.
    let sessions = ctl(&owner, &["--json", "session", "list"]).json();
    let rows = sessions["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{sessions}");
    assert_eq!(rows[0]["runtime"], "runsc");
    d.stop();
}
