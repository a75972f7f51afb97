//! The signed generic webhook: `POST /hooks/webhook/{instance}` in, a signed POST to
//! the instance's URL out.
//!
//! For: connecting anything that can compute an HMAC (CI, a ticketing system, another
//! IronClaw) with the same scheme in both directions. Not for: platform protocols
//! (Slack and Telegram have their own modules).
//!
//! # Signing scheme (both directions)
//!
//! ```text
//! X-IronClaw-Timestamp: <unix seconds>
//! X-IronClaw-Signature: sha256=<lowercase hex of HMAC-SHA256(secret, timestamp + "." + body)>
//! ```
//!
//! The receiver refuses a timestamp more than five minutes from its clock in either
//! direction, and an exact replay of an accepted request within that window (see
//! [`crate::signing`]). A sender that retries must therefore re-sign with a fresh
//! timestamp — ours does, on every attempt.
//!
//! # Inbound body ([`WebhookMessage`], unknown fields refused)
//!
//! ```json
//! {"platform_id": "build-42", "sender": "ci-bot", "text": "tests failed on main",
//!  "thread_id": "main", "message_id": "run-981", "mentioned": true}
//! ```
//!
//! `platform_id`, `sender` and `text` are required (non-empty); `thread_id`,
//! `message_id` and `mentioned` (default false) are optional. A `message_id` seen
//! before for the same `platform_id` (a re-signed retry) is answered "ignored"
//! instead of being queued twice; it is also the router's dedup key.
//!
//! A `message_id` is a **permanent** key within its conversation, not a retry window:
//! the inbound row id is derived from it (with the messaging group and the wiring), and
//! a session's inbound rows are retired once handled, never deleted. A sender that
//! reuses ids — say, a counter that starts over after its own restart — has every
//! reused message refused as already queued: the request is still answered 200 (the
//! router logs `already-queued`), and the agent never sees the message. Use ids that
//! are unique for good (a UUID, or a run id plus a counter), or omit `message_id`.
//!
//! # Outbound body ([`WebhookDelivery`])
//!
//! ```json
//! {"instance": "ci", "platform_id": "build-42", "thread_id": "main",
//!  "text": "…", "message_id": "out-…"}
//! ```
//!
//! Any 2xx is success; an optional JSON answer `{"id": "…"}` becomes the receipt id.
//! 408/425/429/5xx and transport failures are retried (honouring `Retry-After`); any
//! other status is permanent. The text is not split (the receiver has no size limit
//! of ours to respect beyond the queue's 1 MiB).

use std::time::SystemTime;

use http::HeaderMap;
use ironclaw_contract::enums::Provenance;
use ironclaw_ingest::InboundEvent;
use serde::{Deserialize, Serialize};

use crate::channel::{
    check_body_len, check_id, Channel, IgnoreReason, InboundError, InboundOutcome, OutboundMessage,
    SendError, SendReceipt, WEBHOOK,
};
use crate::config::{validate_instance_name, ConfigError, OutboundSettings, WebhookConfig};
use crate::dedup::SeenIds;
use crate::outbound::{Attempt, Outbound};
use crate::ratelimit::Rate;
use crate::secret::Secret;
use crate::signing::{unix_seconds, Scheme, SigningKey, TimestampedHmac};
use crate::transport::{HttpClient, HttpReply};

pub const TIMESTAMP_HEADER: &str = "x-ironclaw-timestamp";
pub const SIGNATURE_HEADER: &str = "x-ironclaw-signature";

/// Per-destination pace of outbound webhook POSTs.
pub const RATE: Rate = Rate::new(10.0, 20.0);

const SCHEME: Scheme = Scheme {
    timestamp_header: TIMESTAMP_HEADER,
    signature_header: SIGNATURE_HEADER,
    signature_prefix: "sha256=",
    base_prefix: b"",
    base_separator: b".",
};

/// The inbound body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookMessage {
    pub platform_id: String,
    pub sender: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default)]
    pub mentioned: bool,
}

/// The outbound body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDelivery {
    pub instance: String,
    pub platform_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// `sha256=<hex>` for `timestamp` and `body` under `key` (what a sender puts in
/// [`SIGNATURE_HEADER`]).
pub fn signature(key: &SigningKey, timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = key.mac(&[ts.as_bytes(), b".", body]);
    format!("sha256={}", ironclaw_contract::hex::encode(&mac))
}

/// The two headers that sign `body` at `timestamp`.
pub fn signed_headers(
    key: &SigningKey,
    timestamp: u64,
    body: &[u8],
) -> [(&'static str, String); 2] {
    [
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (SIGNATURE_HEADER, signature(key, timestamp, body)),
    ]
}

/// Sender-chosen message ids are unique per conversation at most.
fn dedup_key(platform_id: &str, message_id: &str) -> String {
    format!("{platform_id}\u{0}{message_id}")
}

/// Checks a signed webhook request without parsing its body: signature, then the
/// five-minute window. For a Rust receiver of our outbound webhook (another IronClaw,
/// a test). It keeps no replay cache; a long-lived receiver should also refuse a
/// signature it has already accepted, as our inbound side does.
pub fn verify_signature(
    key: SigningKey,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), InboundError> {
    TimestampedHmac::new(SCHEME, key).verify(headers, body, now)
}

struct Target {
    url: String,
    key: SigningKey,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may embed a token (many receivers put one in the path or query).
        f.write_str("Target { url: [redacted], .. }")
    }
}

/// One webhook instance.
#[derive(Debug)]
pub struct WebhookChannel {
    instance: String,
    inbound: Option<TimestampedHmac>,
    seen: SeenIds,
    target: Option<Target>,
    http: HttpClient,
    outbound: Outbound,
}

impl WebhookChannel {
    pub fn new(
        instance: &str,
        cfg: &WebhookConfig,
        settings: &OutboundSettings,
    ) -> Result<Self, ConfigError> {
        validate_instance_name(instance)?;
        let secrets: Vec<&str> = cfg
            .secret
            .iter()
            .map(Secret::expose)
            .chain(cfg.url.as_deref())
            .collect();
        Ok(Self {
            instance: instance.to_owned(),
            inbound: cfg
                .secret
                .as_ref()
                .map(|s| TimestampedHmac::new(SCHEME, SigningKey::new(s))),
            seen: SeenIds::new(crate::dedup::DEFAULT_CAPACITY),
            target: match (&cfg.secret, &cfg.url) {
                (Some(s), Some(url)) => Some(Target {
                    url: url.clone(),
                    key: SigningKey::new(s),
                }),
                _ => None,
            },
            http: HttpClient::new(settings.timeout, &secrets),
            outbound: Outbound::new(WEBHOOK, settings.retry, RATE),
        })
    }

    fn classify(&self, reply: Result<HttpReply, String>) -> Attempt {
        match reply {
            Err(transport) => Attempt::Retry {
                reason: format!("instance {}: {transport}", self.instance),
                retry_after: None,
            },
            Ok(r) if r.is_success() => {
                #[derive(Deserialize)]
                struct Answer {
                    id: Option<serde_json::Value>,
                }
                let id = serde_json::from_slice::<Answer>(&r.body)
                    .ok()
                    .and_then(|a| a.id)
                    .and_then(|v| match v {
                        serde_json::Value::String(s) => Some(s),
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    });
                Attempt::Sent(id)
            }
            Ok(r) => {
                let reason = format!(
                    "instance {}: HTTP {}: {}",
                    self.instance,
                    r.status,
                    self.http.redact(&r.body_excerpt())
                );
                if r.status_is_transient() {
                    Attempt::Retry {
                        reason,
                        retry_after: r.retry_after,
                    }
                } else {
                    Attempt::Fail(reason)
                }
            }
        }
    }
}

impl Channel for WebhookChannel {
    fn channel_type(&self) -> &'static str {
        WEBHOOK
    }

    fn instance(&self) -> &str {
        &self.instance
    }

    fn verify_and_parse(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<InboundOutcome, InboundError> {
        let verifier = self
            .inbound
            .as_ref()
            .ok_or_else(|| InboundError::NotConfigured {
                channel: WEBHOOK,
                instance: self.instance.clone(),
            })?;
        check_body_len(body)?;
        verifier.verify(headers, body, now)?;
        // Only authenticated bytes reach the parser.
        let m: WebhookMessage =
            serde_json::from_slice(body).map_err(|e| InboundError::Malformed(e.to_string()))?;
        check_id("platform_id", &m.platform_id)?;
        check_id("sender", &m.sender)?;
        if let Some(t) = &m.thread_id {
            check_id("thread_id", t)?;
        }
        if let Some(id) = &m.message_id {
            check_id("message_id", id)?;
        }
        if m.text.trim().is_empty() {
            return Err(InboundError::InvalidField {
                field: "text",
                reason: "must not be empty".into(),
            });
        }
        if let Some(id) = &m.message_id {
            if !self.seen.insert(&dedup_key(&m.platform_id, id)) {
                return Ok(InboundOutcome::Ignored(IgnoreReason::Duplicate {
                    retry: None,
                }));
            }
        }
        Ok(InboundOutcome::Events(vec![InboundEvent {
            channel_type: WEBHOOK.into(),
            platform_id: m.platform_id,
            instance: Some(self.instance.clone()),
            thread_id: m.thread_id,
            sender_handle: m.sender,
            text: m.text,
            mentioned: m.mentioned,
            provenance: Provenance::Verified,
            platform_message_id: m.message_id,
        }]))
    }

    fn forget(&self, event: &InboundEvent) {
        if let Some(id) = &event.platform_message_id {
            self.seen.remove(&dedup_key(&event.platform_id, id));
        }
    }

    fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let target = self.target.as_ref().ok_or_else(|| {
            SendError::permanent(
                WEBHOOK,
                format!(
                    "instance {}: outbound is off (needs both a secret and a url)",
                    self.instance
                ),
            )
        })?;
        if msg.platform_id.is_empty() {
            return Err(SendError::permanent(WEBHOOK, "no platform id"));
        }
        let body = serde_json::to_vec(&WebhookDelivery {
            instance: self.instance.clone(),
            platform_id: msg.platform_id.clone(),
            thread_id: msg.thread_id.clone(),
            text: msg.text.clone(),
            message_id: msg.message_id.clone(),
        })
        .map_err(|e| SendError::permanent(WEBHOOK, format!("cannot encode the body: {e}")))?;
        self.outbound.deliver(msg, &[msg.text.as_str()], |_| {
            // Signed afresh on every attempt: the receiver's replay cache refuses a
            // request it has already seen, and its window refuses an old timestamp.
            let [(th, ts), (sh, sig)] =
                signed_headers(&target.key, unix_seconds(SystemTime::now()), &body);
            let reply =
                self.http
                    .post_json(&target.url, &[(th, ts.as_str()), (sh, sig.as_str())], &body);
            self.classify(reply)
        })
    }
}
