//! Telegram: Bot API updates in (webhook with a secret token, or long polling),
//! `sendMessage` out.
//!
//! For: one bot (one token). Not for: inline queries, callback buttons, payments,
//! edited messages or channel posts (all answered "ignored").
//!
//! # Inbound, webhook (`POST /hooks/telegram`)
//! Telegram's only proof of origin is the `secret_token` given to `setWebhook`, sent
//! back in `X-Telegram-Bot-Api-Secret-Token`. It is compared in constant time (both
//! sides hashed first, so not even its length leaks). There is no timestamp and no
//! signature over the body, so "stale" and "replayed" cannot be told apart from
//! Telegram's own redelivery (it redelivers an update until it gets a 2xx): a repeated
//! message (same chat and message id) is answered [`IgnoreReason::Duplicate`] — never
//! queued twice — and
//! [`Channel::forget`] releases it when queuing failed. Without a configured secret
//! the webhook is off (404), never open.
//!
//! # Inbound, long polling ([`TelegramPoller`]; the loop that runs it is [`poll`])
//! `getUpdates` with `offset` = last `update_id` + 1, which is also how Telegram learns
//! that earlier updates were received: an update stays on Telegram's side (up to 24
//! hours), and is returned again to any `getUpdates` without a higher offset, until a
//! call *with* a higher offset confirms it. So the offset lives with Telegram, not in
//! our state: [`TelegramPoller::acknowledge`] only moves the offset the next call
//! sends, and a daemon that stops before that call (or [`TelegramPoller::confirm`])
//! gets the batch again after a restart — at least once, never lost. The offset is
//! deliberately not persisted: after a week without updates Telegram may restart its
//! ids at a random, possibly lower, value, and a stored offset above them would confirm
//! (drop) new updates unseen. Events are `Verified`: they come over TLS from the Bot
//! API, authenticated by our token. Telegram refuses `getUpdates` while a webhook is
//! set; use one or the other ([`crate::config::TelegramMode`]).
//!
//! # Update → event
//! Only `message` updates with `text` (or a `caption`): platform id = chat id, thread
//! = `message_thread_id` of a forum-topic message, sender = the numeric user id
//! (usernames can be changed and re-registered by someone else, so they are no
//! identity), `mentioned` in private chats, when the text contains `@<bot username>`,
//! or when replying to one of the bot's messages. Messages from bots are ignored.
//! `platform_message_id` = `<chat id>:<message id>`.
//!
//! # Outbound
//! `POST {api_base}/bot<token>/sendMessage` with `{chat_id, text, message_thread_id?,
//! link_preview_options: {is_disabled: true}}`; no `parse_mode`, so the agent's text
//! is shown literally. Split at 4096 UTF-16 units. `{"ok": false}` answers: 429 (with
//! `parameters.retry_after`) and 5xx are retried, other codes are permanent. The token
//! is in the URL path, so every error string is redacted.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use ironclaw_contract::enums::Provenance;
use ironclaw_ingest::InboundEvent;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::channel::{
    check_body_len, check_id, Channel, IgnoreReason, InboundError, InboundOutcome, OutboundMessage,
    SendError, SendReceipt, TELEGRAM,
};
use crate::config::{ConfigError, OutboundSettings, TelegramConfig};
use crate::dedup::SeenIds;

pub mod poll;
use crate::outbound::{Attempt, Outbound};
use crate::ratelimit::Rate;
use crate::secret::Secret;
use crate::signing::{secrets_equal, single_header};
use crate::split::{split_text, Measure};
use crate::transport::{HttpClient, HttpReply, MAX_RETRY_AFTER};

pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Telegram's limit for one message's text.
pub const MAX_TEXT_UNITS: usize = 4096;

/// Telegram allows about one message per second per chat (and 20 per minute in
/// groups; a 429 beyond that is retried with its `retry_after`).
pub const RATE: Rate = Rate::new(1.0, 3.0);

/// Updates asked for per `getUpdates` call (Telegram's default and maximum is 100).
/// Bounded so that a batch always fits in [`MAX_UPDATES_BODY`]: one update is at most
/// a few hundred KiB even with a 4096-unit text, its caption and a quoted reply all
/// `\u`-escaped.
pub const UPDATES_PER_CALL: u32 = 20;

/// Most of a `getUpdates` answer that is read. The adapters' default (64 KiB, sized for
/// a status object) cut a batch of a few long non-ASCII messages short; the truncated
/// JSON was unreadable, the batch was never acknowledged, and every retry got the same
/// batch again: polling was wedged for good.
pub const MAX_UPDATES_BODY: u64 = 8 * 1024 * 1024;

#[derive(Debug, Deserialize)]
struct Update {
    update_id: i64,
    message: Option<Message>,
}

#[derive(Debug, Deserialize)]
struct Message {
    message_id: i64,
    message_thread_id: Option<i64>,
    #[serde(default)]
    is_topic_message: bool,
    from: Option<User>,
    chat: Chat,
    text: Option<String>,
    caption: Option<String>,
    reply_to_message: Option<Box<Replied>>,
}

#[derive(Debug, Deserialize)]
struct Replied {
    from: Option<User>,
}

#[derive(Debug, Deserialize)]
struct User {
    id: i64,
    #[serde(default)]
    is_bot: bool,
}

#[derive(Debug, Deserialize)]
struct Chat {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
struct Answer<T> {
    ok: bool,
    result: Option<T>,
    error_code: Option<i64>,
    description: Option<String>,
    parameters: Option<AnswerParameters>,
}

#[derive(Debug, Deserialize)]
struct AnswerParameters {
    retry_after: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct SentMessage {
    message_id: i64,
}

/// How updates are turned into events (shared by the webhook and the poller).
#[derive(Debug, Clone)]
struct UpdateParser {
    /// Lower-cased, without `@`.
    bot_username: Option<String>,
    /// The numeric prefix of the bot token (the bot's user id).
    bot_id: Option<i64>,
}

impl UpdateParser {
    fn new(cfg: &TelegramConfig) -> Self {
        Self {
            bot_username: cfg.bot_username().map(|u| u.to_ascii_lowercase()),
            bot_id: cfg
                .bot_token
                .as_ref()
                .and_then(|t| t.expose().split_once(':'))
                .and_then(|(id, _)| id.parse().ok()),
        }
    }

    /// One update → its outcome. `Err` only for an update that is not a Telegram
    /// update at all (a `message` without `chat`, ids out of range…).
    fn parse(&self, update: Update) -> Result<InboundOutcome, InboundError> {
        let Some(m) = update.message else {
            return Ok(InboundOutcome::Ignored(IgnoreReason::Unsupported(format!(
                "update {} is not a new message",
                update.update_id
            ))));
        };
        let from = match &m.from {
            Some(u) if u.is_bot => {
                let own = self.bot_id == Some(u.id);
                return Ok(InboundOutcome::Ignored(if own {
                    IgnoreReason::OwnMessage
                } else {
                    IgnoreReason::BotMessage
                }));
            }
            Some(u) => u.id,
            None => {
                return Ok(InboundOutcome::Ignored(IgnoreReason::Unsupported(
                    "message without a sender".into(),
                )))
            }
        };
        let Some(text) = m.text.or(m.caption).filter(|t| !t.trim().is_empty()) else {
            return Ok(InboundOutcome::Ignored(IgnoreReason::NoText));
        };
        let private = m.chat.kind == "private";
        let named = self.bot_username.as_deref().is_some_and(|name| {
            let lower = text.to_lowercase();
            let needle = format!("@{name}");
            lower.match_indices(&needle).any(|(i, _)| {
                // `@name` followed by a non-username character (or the end).
                !lower[i + needle.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        });
        let replied_to_bot = self.bot_id.is_some()
            && m.reply_to_message
                .as_ref()
                .and_then(|r| r.from.as_ref())
                .map(|u| u.id)
                == self.bot_id;
        let thread_id = if m.is_topic_message {
            m.message_thread_id.map(|t| t.to_string())
        } else {
            None
        };
        let platform_id = m.chat.id.to_string();
        check_id("message.chat.id", &platform_id)?;
        Ok(InboundOutcome::Events(vec![InboundEvent {
            channel_type: TELEGRAM.into(),
            platform_message_id: Some(format!("{platform_id}:{}", m.message_id)),
            platform_id,
            instance: None,
            thread_id,
            sender_handle: from.to_string(),
            text,
            mentioned: private || named || replied_to_bot,
            provenance: Provenance::Verified,
        }]))
    }
}

/// The Telegram adapter.
#[derive(Debug)]
pub struct TelegramChannel {
    webhook_secret: Option<Secret>,
    parser: UpdateParser,
    seen: SeenIds,
    token: Option<Secret>,
    api_base: String,
    http: HttpClient,
    outbound: Outbound,
}

impl TelegramChannel {
    pub fn new(cfg: &TelegramConfig, settings: &OutboundSettings) -> Result<Self, ConfigError> {
        let secrets: Vec<&str> = cfg
            .bot_token
            .iter()
            .chain(cfg.webhook_secret.iter())
            .map(Secret::expose)
            .collect();
        Ok(Self {
            webhook_secret: cfg.webhook_secret.clone(),
            parser: UpdateParser::new(cfg),
            seen: SeenIds::new(crate::dedup::DEFAULT_CAPACITY),
            token: cfg.bot_token.clone(),
            api_base: cfg.api_base(),
            http: HttpClient::new(settings.timeout, &secrets),
            outbound: Outbound::new(TELEGRAM, settings.retry, RATE),
        })
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
        match serde_json::from_slice::<Answer<SentMessage>>(&r.body) {
            Ok(a) if a.ok && r.is_success() => {
                Attempt::Sent(a.result.map(|m| m.message_id.to_string()))
            }
            Ok(a) => {
                let code = a.error_code.unwrap_or(i64::from(r.status));
                let reason = format!(
                    "sendMessage: {code} {}",
                    self.http
                        .redact(a.description.as_deref().unwrap_or("(no description)"))
                );
                let retry_after = a
                    .parameters
                    .and_then(|p| p.retry_after)
                    .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
                    .or(r.retry_after);
                if code == 429 || code >= 500 || r.status_is_transient() {
                    Attempt::Retry {
                        reason,
                        retry_after,
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
                if r.is_success() || r.status_is_transient() {
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

impl Channel for TelegramChannel {
    fn channel_type(&self) -> &'static str {
        TELEGRAM
    }

    fn instance(&self) -> &str {
        TELEGRAM
    }

    fn verify_and_parse(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        _now: SystemTime,
    ) -> Result<InboundOutcome, InboundError> {
        let expected = self
            .webhook_secret
            .as_ref()
            .ok_or_else(|| InboundError::NotConfigured {
                channel: TELEGRAM,
                instance: TELEGRAM.into(),
            })?;
        check_body_len(body)?;
        let presented = single_header(headers, SECRET_HEADER)?
            .ok_or(InboundError::MissingHeader(SECRET_HEADER))?;
        if !secrets_equal(presented.as_bytes(), expected.expose().as_bytes()) {
            return Err(InboundError::BadSignature);
        }
        let update: Update =
            serde_json::from_slice(body).map_err(|e| InboundError::Malformed(e.to_string()))?;
        let outcome = self.parser.parse(update)?;
        if let InboundOutcome::Events(events) = &outcome {
            // A redelivered update carries the same message: one key covers both.
            let fresh = events
                .iter()
                .filter_map(|e| e.platform_message_id.as_deref())
                .all(|id| self.seen.insert(id));
            if !fresh {
                return Ok(InboundOutcome::Ignored(IgnoreReason::Duplicate {
                    retry: None,
                }));
            }
        }
        Ok(outcome)
    }

    fn forget(&self, event: &InboundEvent) {
        if let Some(id) = &event.platform_message_id {
            self.seen.remove(id);
        }
    }

    fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let token = self.token.as_ref().ok_or_else(|| {
            SendError::permanent(TELEGRAM, "outbound is off (no bot token configured)")
        })?;
        let chat = msg.platform_id.trim();
        if chat.is_empty() {
            return Err(SendError::permanent(TELEGRAM, "no chat id"));
        }
        // A numeric id is sent as a number, `@channelname` as a string.
        let chat_id = match chat.parse::<i64>() {
            Ok(n) => serde_json::Value::from(n),
            Err(_) => serde_json::Value::from(chat),
        };
        let thread = match msg.thread_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) => Some(t.parse::<i64>().map_err(|_| {
                // Sending to the chat's general topic instead would put the reply
                // somewhere nobody asked for it.
                SendError::permanent(
                    TELEGRAM,
                    format!("thread id {t:?} is not a Telegram topic id"),
                )
            })?),
        };
        if msg.text.trim().is_empty() {
            return Err(SendError::permanent(TELEGRAM, "empty message"));
        }
        let parts = split_text(&msg.text, MAX_TEXT_UNITS, Measure::Utf16);
        let url = Zeroizing::new(format!(
            "{}/bot{}/sendMessage",
            self.api_base,
            token.expose()
        ));
        self.outbound.deliver(msg, &parts, |part| {
            let mut body = serde_json::json!({
                "chat_id": chat_id,
                "text": part,
                "link_preview_options": {"is_disabled": true},
            });
            if let Some(t) = thread {
                body["message_thread_id"] = serde_json::Value::from(t);
            }
            let bytes = match serde_json::to_vec(&body) {
                Ok(b) => b,
                Err(e) => return Attempt::Fail(format!("cannot encode the body: {e}")),
            };
            self.classify(self.http.post_json(&url, &[], &bytes))
        })
    }
}

/// Why a `getUpdates` call gave nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    #[error("getUpdates: {0} (retryable)")]
    Transport(String),
    /// Telegram refused (409 while a webhook is set, 401 for a revoked token, 429…).
    #[error("getUpdates refused: {code} {description}")]
    Refused {
        code: i64,
        description: String,
        retry_after: Option<Duration>,
    },
    #[error("unreadable getUpdates answer: {0}")]
    Malformed(String),
}

/// What one `getUpdates` call brought.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PollBatch {
    /// Routable messages (provenance `Verified`).
    pub events: Vec<InboundEvent>,
    /// The `update_id` each of `events` came from (same order and length): what a
    /// caller acknowledges up to when it gives up on one event.
    pub event_updates: Vec<i64>,
    /// Updates received but not routed, and why.
    pub ignored: Vec<IgnoreReason>,
    /// Updates that could not be parsed (update id, error); they are skipped, since
    /// Telegram would send them again unchanged forever otherwise.
    pub rejected: Vec<(i64, InboundError)>,
    /// The offset that confirms this batch (`None`: the batch was empty).
    pub next_offset: Option<i64>,
}

/// Long polling with `getUpdates`.
///
/// Offsets are explicit so nothing is lost: [`TelegramPoller::poll_once`] never moves
/// the offset; the caller calls [`TelegramPoller::acknowledge`] once the batch's events
/// are queued. Until then the next `poll_once` returns the same updates again (and
/// after a restart, Telegram redelivers whatever was never confirmed to it: the next
/// `poll_once` after `acknowledge` confirms, or [`TelegramPoller::confirm`] when
/// stopping).
pub struct TelegramPoller {
    http: HttpClient,
    /// Contains the bot token: zeroized, never printed (manual `Debug`).
    url: Zeroizing<String>,
    parser: UpdateParser,
    offset: Option<i64>,
    timeout: Duration,
}

impl std::fmt::Debug for TelegramPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramPoller")
            .field("offset", &self.offset)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TelegramPoller {
    /// `timeout`: how long Telegram holds a call open waiting for updates (≤ 50 s).
    pub fn new(cfg: &TelegramConfig, timeout: Duration) -> Result<Self, ConfigError> {
        let token = cfg.bot_token.as_ref().ok_or_else(|| ConfigError::Invalid {
            setting: "telegram.bot_token".into(),
            reason: "required for long polling".into(),
        })?;
        let timeout = timeout.min(Duration::from_secs(50));
        Ok(Self {
            // The HTTP timeout must outlast the long poll itself.
            http: HttpClient::new(timeout + Duration::from_secs(10), &[token.expose()])
                .with_max_body(MAX_UPDATES_BODY),
            url: Zeroizing::new(format!(
                "{}/bot{}/getUpdates",
                cfg.api_base(),
                token.expose()
            )),
            parser: UpdateParser::new(cfg),
            offset: None,
            timeout,
        })
    }

    pub fn offset(&self) -> Option<i64> {
        self.offset
    }

    /// Confirms `batch`: the next call starts after it.
    pub fn acknowledge(&mut self, batch: &PollBatch) {
        if let Some(next) = batch.next_offset {
            self.offset = Some(self.offset.map_or(next, |o| o.max(next)));
        }
    }

    /// Tells Telegram that everything acknowledged so far was received, without
    /// waiting for updates (for a clean stop: otherwise only the next
    /// [`Self::poll_once`] would, and a restart would get the last batch again). What
    /// this call returns is not routed and so stays unconfirmed. Nothing to do before
    /// the first acknowledgement.
    pub fn confirm(&self) -> Result<(), PollError> {
        if self.offset.is_none() {
            return Ok(());
        }
        self.call(0, 1).map(|_| ())
    }

    /// One `getUpdates` call (blocks up to the poll timeout).
    pub fn poll_once(&self) -> Result<PollBatch, PollError> {
        let raw = self.call(self.timeout.as_secs(), UPDATES_PER_CALL)?;
        let mut batch = PollBatch::default();
        let mut max_id: Option<i64> = None;
        for raw in raw {
            let id = raw.get("update_id").and_then(serde_json::Value::as_i64);
            let Some(id) = id else {
                return Err(PollError::Malformed("an update without update_id".into()));
            };
            max_id = Some(max_id.map_or(id, |m| m.max(id)));
            let parsed = serde_json::from_value::<Update>(raw)
                .map_err(|e| InboundError::Malformed(e.to_string()))
                .and_then(|u| self.parser.parse(u));
            match parsed {
                Ok(InboundOutcome::Events(events)) => {
                    batch
                        .event_updates
                        .extend(std::iter::repeat_n(id, events.len()));
                    batch.events.extend(events);
                }
                Ok(InboundOutcome::Ignored(why)) => batch.ignored.push(why),
                Ok(InboundOutcome::Reply(_)) => {}
                Err(e) => batch.rejected.push((id, e)),
            }
        }
        batch.next_offset = max_id.and_then(|m| m.checked_add(1));
        Ok(batch)
    }

    /// `getUpdates` from the current offset: the raw updates.
    fn call(&self, timeout_secs: u64, limit: u32) -> Result<Vec<serde_json::Value>, PollError> {
        let mut body = serde_json::json!({
            "timeout": timeout_secs,
            "limit": limit,
            "allowed_updates": ["message"],
        });
        if let Some(o) = self.offset {
            body["offset"] = serde_json::Value::from(o);
        }
        let bytes = serde_json::to_vec(&body).map_err(|e| PollError::Malformed(e.to_string()))?;
        let r = self
            .http
            .post_json(&self.url, &[], &bytes)
            .map_err(PollError::Transport)?;
        let answer: Answer<Vec<serde_json::Value>> = match serde_json::from_slice(&r.body) {
            Ok(a) => a,
            // A gateway's HTML error page, not Telegram's JSON: retryable like a
            // transport failure when the status says so.
            Err(_) if r.status_is_transient() => {
                return Err(PollError::Transport(format!(
                    "HTTP {}: {}",
                    r.status,
                    self.http.redact(&r.body_excerpt())
                )))
            }
            Err(e) => return Err(PollError::Malformed(self.http.redact(&e.to_string()))),
        };
        if !answer.ok || !r.is_success() {
            return Err(PollError::Refused {
                code: answer.error_code.unwrap_or(i64::from(r.status)),
                description: self
                    .http
                    .redact(answer.description.as_deref().unwrap_or("(no description)")),
                retry_after: answer
                    .parameters
                    .and_then(|p| p.retry_after)
                    .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
                    .or(r.retry_after),
            });
        }
        Ok(answer.result.unwrap_or_default())
    }
}
