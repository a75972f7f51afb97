//! The signed webhook channel from the outside, for live tests: signing requests the
//! way a sender must (`X-IronClaw-Timestamp`, `X-IronClaw-Signature: sha256=<hex>` over
//! `timestamp + "." + body`), a receiver on 127.0.0.1 for the replies the daemon POSTs,
//! and wiring a conversation to an agent group the way operators do.

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::{ironctl, Daemon};

/// `sha256=<hex>` of HMAC-SHA256(secret, `ts.body`).
pub fn sign(secret: &str, ts: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `POST /hooks/webhook/{instance}` with the given timestamp and signature header;
/// the status, or the transport error (a daemon that is down).
pub fn post_signed(
    addr: &str,
    instance: &str,
    ts: &str,
    signature: &str,
    body: &str,
) -> Result<u16, String> {
    match ureq::post(format!("{addr}/hooks/webhook/{instance}"))
        .header("Content-Type", "application/json")
        .header("X-IronClaw-Timestamp", ts)
        .header("X-IronClaw-Signature", signature)
        .send(body)
    {
        Ok(r) => Ok(r.status().as_u16()),
        Err(ureq::Error::StatusCode(c)) => Ok(c),
        Err(e) => Err(e.to_string()),
    }
}

/// Signs `body` now with `secret` and posts it.
pub fn post(addr: &str, instance: &str, secret: &str, body: &str) -> Result<u16, String> {
    let ts = now().to_string();
    post_signed(addr, instance, &ts, &sign(secret, &ts, body), body)
}

/// One POST the receiver got: headers (lower-cased names) and body.
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// A plain HTTP/1.1 receiver on 127.0.0.1 answering `200 ok` to every request. Returns
/// its port and every request it got, in arrival order.
pub fn receiver() -> (u16, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
    let port = listener.local_addr().expect("receiver address").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let Some(req) = crate::platform::read_request(&mut r) else {
                continue;
            };
            let mut conn = r.into_inner();
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = tx.send(Received {
                headers: req.headers,
                body: String::from_utf8_lossy(&req.body).into_owned(),
            });
        }
    });
    (port, rx)
}

/// Writes a channels file (0600) with one signed webhook instance whose replies go to
/// `url`.
pub fn write_channels_file(path: &Path, instance: &str, secret: &str, url: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create the channels file");
    write!(
        f,
        "{}",
        json!({"webhooks": {instance: {"secret": secret, "url": url}}})
    )
    .expect("write the channels file");
}

/// Opens the webhook conversation `platform_id` of `instance` to any sender and wires
/// it to `group` (engage on mention): the messaging group created by the owner, the
/// wiring submitted by a second operator (`alice`, an admin) and approved by the
/// owner, as the gateway requires.
pub fn wire_public_conversation(
    d: &Daemon,
    owner: &str,
    instance: &str,
    platform_id: &str,
    group: &str,
) {
    let mg = ureq::post(format!("{}/v1/registry/messaging-groups", d.addr))
        .header("Authorization", &format!("Bearer {owner}"))
        .send_json(json!({"channel_type": "webhook", "platform_id": platform_id, "instance": instance, "unknown_sender_policy": "public"}))
        .expect("create the messaging group")
        .body_mut()
        .read_json::<Value>()
        .expect("a JSON answer");
    let mg_id = mg["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no messaging group id in {mg}"))
        .to_owned();
    let alice = ironctl(
        &d.addr,
        Some(owner),
        &["--json", "token", "create", "alice", "--role", "admin"],
    )
    .json();
    let alice_token = alice["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {alice}"))
        .to_owned();
    let payload =
        json!({"messaging_group_id": mg_id, "engage_mode": "mention", "sender_scope": "all"})
            .to_string();
    let sub = ironctl(
        &d.addr,
        Some(&alice_token),
        &[
            "--json",
            "change",
            "submit",
            "--kind",
            "wiring",
            "--group",
            group,
            "--payload",
            &payload,
        ],
    );
    assert_eq!(sub.code, 0, "{}{}", sub.stdout, sub.stderr);
    let id = sub.json()["id"].as_str().expect("a change id").to_owned();
    let ok = ironctl(&d.addr, Some(owner), &["change", "approve", &id]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
}

/// The body of message `n` of a numbered series to the conversation `platform_id`: text
/// `<tag>-<n>.`, platform message id `<tag>-<n>`, mentioning the agent.
pub fn numbered_message(platform_id: &str, tag: &str, n: u64) -> String {
    json!({
        "platform_id": platform_id,
        "sender": "ci-bot",
        "text": format!("{tag}-{n}."),
        "mentioned": true,
        "message_id": format!("{tag}-{n}"),
    })
    .to_string()
}

/// The message numbers a reply answers: every `<tag>-<n>.` in its text (the mock echoes
/// a whole batch, so one reply can answer several).
pub fn numbers_answered(reply: &Received, tag: &str) -> Vec<u64> {
    let v: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    let text = v["text"].as_str().unwrap_or_default();
    text.split(&format!("{tag}-"))
        .skip(1)
        .filter_map(|rest| rest.split_once('.').and_then(|(n, _)| n.parse().ok()))
        .collect()
}
