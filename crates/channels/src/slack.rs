//! Slack: the Events API in (signed), `chat.postMessage` out.
//!
//! For: one Slack app (one signing secret, one bot token). Not for: Socket Mode,
//! slash commands or interactive payloads (form-encoded; refused as malformed), or
//! multiple workspaces with different tokens.
//!
//! # Inbound (`POST /hooks/slack`)
//! - Verified with Slack's `v0` scheme: `X-Slack-Signature: v0=<hex HMAC-SHA256(
//!   signing_secret, "v0:" + X-Slack-Request-Timestamp + ":" + body)>`, 5-minute window
//!   both ways, exact replays refused ([`crate::signing`]). Slack signs every request,
//!   the `url_verification` handshake included, so the challenge is only answered to
//!   a request that proves it comes from Slack.
//! - `url_verification` → [`InboundOutcome::Reply`] with `{"challenge": …}`.
//! - `event_callback` with a `message` or `app_mention` event → one event: platform id
//!   = channel id, thread = `thread_ts`, sender = user id (stable, unlike display
//!   names), `mentioned` for `app_mention`, direct messages (`channel_type: im`) and
//!   text containing `<@BOTID>`. Slack's `&amp;`/`&lt;`/`&gt;` are unescaped.
//! - Ignored (200, nothing queued): messages with a `bot_id` or subtype `bot_message`,
//!   our own user's messages (loop protection), edits/deletes/joins and other
//!   subtypes, empty text, other event types.
//! - Retries: Slack retries a request it got no 2xx for within 3 s (with
//!   `X-Slack-Retry-Num`, freshly signed). The same message also arrives twice when the
//!   app subscribes to both `message.*` and `app_mention`, with different event ids.
//!   Both are caught by one key, `<channel>:<ts>` (Slack's identity of a message),
//!   which is also the event's `platform_message_id`; a repeat is
//!   [`IgnoreReason::Duplicate`]. [`Channel::forget`] releases the key when queuing
//!   failed, so Slack's retry is processed.
//!
//! # Outbound
//! `POST {api_base}/chat.postMessage` with `Authorization: Bearer <bot token>` and
//! `{channel, text, thread_ts?, unfurl_links: false, unfurl_media: false}`. Text is
//! split at [`MAX_TEXT_UNITS`] UTF-16 units, then `&`, `<`, `>` are escaped: the agent
//! is untrusted, and unescaped it could write `<!channel>` to ping a whole workspace
//! or disguise a link. Unfurling is off so a URL an agent writes is not fetched by
//! Slack's servers (an exfiltration path that needs no human click).
//! Slack answers 200 with `{"ok": false, "error": …}` on failure: `ratelimited` and
//! Slack's transient errors are retried (with `Retry-After`), everything else
//! (`channel_not_found`, `not_in_channel`, `invalid_auth`, …) is permanent.

use std::time::SystemTime;

use http::HeaderMap;
use ironclaw_contract::enums::Provenance;
use ironclaw_ingest::InboundEvent;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::channel::{
    check_body_len, check_id, Channel, IgnoreReason, InboundError, InboundOutcome, OutboundMessage,
    ProtocolReply, SendError, SendReceipt, SLACK,
};
use crate::config::{ConfigError, OutboundSettings, SlackConfig};
use crate::dedup::SeenIds;
use crate::outbound::{Attempt, Outbound};
use crate::ratelimit::Rate;
use crate::secret::Secret;
use crate::signing::{single_header, Scheme, SigningKey, TimestampedHmac};
use crate::split::{split_text, Measure};
use crate::transport::{HttpClient, HttpReply};

pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
pub const RETRY_NUM_HEADER: &str = "x-slack-retry-num";

/// Longest text per message. Slack truncates `text` past 40 000 characters and
/// recommends staying under 4 000; 3 000 (the section-block limit) keeps every part
/// comfortably readable and leaves room for escaping.
pub const MAX_TEXT_UNITS: usize = 3000;

/// Slack allows about one message per second per channel, with short bursts.
pub const RATE: Rate = Rate::new(1.0, 3.0);

const SCHEME: Scheme = Scheme {
    timestamp_header: TIMESTAMP_HEADER,
    signature_header: SIGNATURE_HEADER,
    signature_prefix: "v0=",
    base_prefix: b"v0:",
    base_separator: b":",
};

/// Slack errors worth retrying (everything else in `{"ok": false}` is permanent).
const TRANSIENT_ERRORS: [&str; 6] = [
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// Longest `url_verification` challenge echoed back.
const MAX_CHALLENGE_LEN: usize = 1024;

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    challenge: Option<String>,
    event: Option<serde_json::Value>,
    #[serde(default)]
    authorizations: Vec<Authorization>,
}

#[derive(Debug, Deserialize)]
struct Authorization {
    user_id: Option<String>,
    #[serde(default)]
    is_bot: bool,
}

/// The fields of a `message` / `app_mention` event we use.
#[derive(Debug, Deserialize)]
struct MessageEvent {
    #[serde(rename = "type")]
    kind: String,
    subtype: Option<String>,
    channel: Option<String>,
    user: Option<String>,
    bot_id: Option<String>,
    #[serde(default)]
    text: String,
    ts: Option<String>,
    thread_ts: Option<String>,
    channel_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PostAnswer {
    ok: bool,
    error: Option<String>,
    ts: Option<String>,
}

/// The Slack adapter.
#[derive(Debug)]
pub struct SlackChannel {
    inbound: Option<TimestampedHmac>,
    bot_user_id: Option<String>,
    seen: SeenIds,
    token: Option<Secret>,
    api_base: String,
    http: HttpClient,
    outbound: Outbound,
}

impl SlackChannel {
    pub fn new(cfg: &SlackConfig, settings: &OutboundSettings) -> Result<Self, ConfigError> {
        let secrets: Vec<&str> = cfg
            .bot_token
            .iter()
            .chain(cfg.signing_secret.iter())
            .map(Secret::expose)
            .collect();
        Ok(Self {
            inbound: cfg
                .signing_secret
                .as_ref()
                .map(|s| TimestampedHmac::new(SCHEME, SigningKey::new(s))),
            bot_user_id: cfg.bot_user_id.clone(),
            seen: SeenIds::new(crate::dedup::DEFAULT_CAPACITY),
            token: cfg.bot_token.clone(),
            api_base: cfg.api_base(),
            http: HttpClient::new(settings.timeout, &secrets),
            outbound: Outbound::new(SLACK, settings.retry, RATE),
        })
    }

    fn event(
        &self,
        event: serde_json::Value,
        authorizations: &[Authorization],
        retry: Option<u32>,
    ) -> Result<InboundOutcome, InboundError> {
        let kind = event
            .get("type")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned();
        if kind != "message" && kind != "app_mention" {
            return Ok(InboundOutcome::Ignored(IgnoreReason::Unsupported(format!(
                "event type {:?}",
                kind.chars().take(64).collect::<String>()
            ))));
        }
        let m: MessageEvent = serde_json::from_value(event)
            .map_err(|e| InboundError::Malformed(format!("{kind} event: {e}")))?;
        let own = self.bot_user_id.as_deref().or_else(|| {
            authorizations
                .iter()
                .find(|a| a.is_bot)
                .and_then(|a| a.user_id.as_deref())
        });
        let from_self = own.is_some() && m.user.as_deref() == own;
        if from_self {
            return Ok(InboundOutcome::Ignored(IgnoreReason::OwnMessage));
        }
        if m.bot_id.is_some() || m.subtype.as_deref() == Some("bot_message") {
            return Ok(InboundOutcome::Ignored(IgnoreReason::BotMessage));
        }
        if let Some(sub) = m.subtype.as_deref() {
            if !matches!(sub, "thread_broadcast" | "file_share" | "me_message") {
                return Ok(InboundOutcome::Ignored(IgnoreReason::Unsupported(format!(
                    "message subtype {:?}",
                    sub.chars().take(64).collect::<String>()
                ))));
            }
        }
        let channel = m.channel.ok_or_else(|| missing("event.channel"))?;
        let user = m.user.ok_or_else(|| missing("event.user"))?;
        let ts = m.ts.ok_or_else(|| missing("event.ts"))?;
        check_id("event.channel", &channel)?;
        check_id("event.user", &user)?;
        check_id("event.ts", &ts)?;
        if let Some(t) = &m.thread_ts {
            check_id("event.thread_ts", t)?;
        }
        if m.text.trim().is_empty() {
            return Ok(InboundOutcome::Ignored(IgnoreReason::NoText));
        }
        let mentioned = m.kind == "app_mention"
            || m.channel_type.as_deref() == Some("im")
            || own.is_some_and(|id| mentions(&m.text, id));
        let message_id = format!("{channel}:{ts}");
        if !self.seen.insert(&message_id) {
            return Ok(InboundOutcome::Ignored(IgnoreReason::Duplicate { retry }));
        }
        Ok(InboundOutcome::Events(vec![InboundEvent {
            channel_type: SLACK.into(),
            platform_id: channel,
            instance: None,
            thread_id: m.thread_ts,
            sender_handle: user,
            text: unescape(&m.text),
            mentioned,
            provenance: Provenance::Verified,
            platform_message_id: Some(message_id),
        }]))
    }

    fn classify(&self, reply: Result<HttpReply, String>) -> Attempt {
        let r = match reply {
            Err(transport) => {
                return Attempt::Retry {
                    reason: transport,
                    retry_after: None,
                }
            }
            Ok(r) => r,
        };
        if r.status_is_transient() {
            return Attempt::Retry {
                reason: format!("HTTP {}: {}", r.status, self.http.redact(&r.body_excerpt())),
                retry_after: r.retry_after,
            };
        }
        match serde_json::from_slice::<PostAnswer>(&r.body) {
            Ok(a) if a.ok => Attempt::Sent(a.ts),
            Ok(a) => {
                let error = a.error.unwrap_or_else(|| "unknown_error".into());
                let reason = format!("chat.postMessage: {}", self.http.redact(&error));
                if TRANSIENT_ERRORS.contains(&error.as_str()) {
                    Attempt::Retry {
                        reason,
                        retry_after: r.retry_after,
                    }
                } else {
                    Attempt::Fail(reason)
                }
            }
            Err(_) => {
                let reason = format!(
                    "HTTP {}: unreadable answer: {}",
                    r.status,
                    self.http.redact(&r.body_excerpt())
                );
                if r.is_success() {
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

fn missing(field: &'static str) -> InboundError {
    InboundError::InvalidField {
        field,
        reason: "missing".into(),
    }
}

/// Whether `text` mentions user `id` (`<@U123>` or `<@U123|name>`).
fn mentions(text: &str, id: &str) -> bool {
    let needle = format!("<@{id}");
    text.match_indices(&needle).any(|(i, _)| {
        matches!(
            text.as_bytes().get(i + needle.len()),
            Some(b'>') | Some(b'|')
        )
    })
}

/// Slack's three entities back to characters (`&amp;` last, so `&amp;lt;` stays `&lt;`).
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The three characters Slack's formatting reacts to, neutralised.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Channel for SlackChannel {
    fn channel_type(&self) -> &'static str {
        SLACK
    }

    fn instance(&self) -> &str {
        SLACK
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
                channel: SLACK,
                instance: SLACK.into(),
            })?;
        check_body_len(body)?;
        verifier.verify(headers, body, now)?;
        // Not signed and only informational: a malformed value is treated as absent.
        let retry = single_header(headers, RETRY_NUM_HEADER)
            .ok()
            .flatten()
            .and_then(|v| v.parse::<u32>().ok());
        let env: Envelope =
            serde_json::from_slice(body).map_err(|e| InboundError::Malformed(e.to_string()))?;
        match env.kind.as_str() {
            "url_verification" => {
                let challenge = env.challenge.ok_or_else(|| missing("challenge"))?;
                if challenge.is_empty()
                    || challenge.len() > MAX_CHALLENGE_LEN
                    || challenge.chars().any(char::is_control)
                {
                    return Err(InboundError::InvalidField {
                        field: "challenge",
                        reason: "must be 1-1024 printable characters".into(),
                    });
                }
                let body = serde_json::to_vec(&serde_json::json!({ "challenge": challenge }))
                    .map_err(|e| InboundError::Malformed(e.to_string()))?;
                Ok(InboundOutcome::Reply(ProtocolReply {
                    content_type: "application/json",
                    body,
                }))
            }
            "event_callback" => {
                let event = env.event.ok_or_else(|| missing("event"))?;
                self.event(event, &env.authorizations, retry)
            }
            other => Ok(InboundOutcome::Ignored(IgnoreReason::Unsupported(format!(
                "envelope type {:?}",
                other.chars().take(64).collect::<String>()
            )))),
        }
    }

    fn forget(&self, event: &InboundEvent) {
        if let Some(id) = &event.platform_message_id {
            self.seen.remove(id);
        }
    }

    fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let token = self.token.as_ref().ok_or_else(|| {
            SendError::permanent(SLACK, "outbound is off (no bot token configured)")
        })?;
        let channel = msg.platform_id.trim();
        if channel.is_empty() {
            return Err(SendError::permanent(SLACK, "no channel id"));
        }
        if msg.text.trim().is_empty() {
            return Err(SendError::permanent(SLACK, "empty message"));
        }
        let thread_ts = msg
            .thread_id
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let parts: Vec<String> = split_text(&msg.text, MAX_TEXT_UNITS, Measure::Utf16)
            .into_iter()
            .map(escape)
            .collect();
        let url = format!("{}/chat.postMessage", self.api_base);
        let auth = Zeroizing::new(format!("Bearer {}", token.expose()));
        self.outbound.deliver(msg, &parts, |part| {
            let mut body = serde_json::json!({
                "channel": channel,
                "text": part,
                "unfurl_links": false,
                "unfurl_media": false,
            });
            if let Some(ts) = thread_ts {
                body["thread_ts"] = serde_json::Value::String(ts.to_owned());
            }
            let bytes = match serde_json::to_vec(&body) {
                Ok(b) => b,
                Err(e) => return Attempt::Fail(format!("cannot encode the body: {e}")),
            };
            let reply = self
                .http
                .post_json(&url, &[("authorization", auth.as_str())], &bytes);
            self.classify(reply)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mention_forms() {
        assert!(mentions("hi <@U1>", "U1"));
        assert!(mentions("hi <@U1|bot>", "U1"));
        assert!(!mentions("hi <@U12>", "U1"));
        assert!(!mentions("hi U1", "U1"));
    }

    #[test]
    fn escaping_round_trip() {
        let raw = "a < b && c > <!channel>";
        assert_eq!(escape(raw), "a &lt; b &amp;&amp; c &gt; &lt;!channel&gt;");
        assert_eq!(unescape(&escape(raw)), raw);
        assert_eq!(unescape("&amp;lt;"), "&lt;");
    }
}
