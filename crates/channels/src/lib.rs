//! `ironclaw-channels`: the channel adapters, behind one trait (DESIGN §6).
//!
//! A message from a platform enters through an adapter's
//! [`Channel::verify_and_parse`], which authenticates the request before reading it
//! and yields [`InboundEvent`](ironclaw_ingest::InboundEvent)s for the ingest service,
//! each with provenance `Verified`; Telegram long polling ([`telegram::poll`]) hands
//! its batches to the same service itself. A reply leaves through [`Channel::send`], which splits
//! it to the platform's size limit, paces it per destination, retries transient
//! failures within bounds and says whether a failure is worth retrying later.
//!
//! | module | for |
//! |---|---|
//! | [`channel`] | the [`Channel`] trait and the types crossing it |
//! | [`webhook`] | the signed generic webhook (HMAC-SHA256, both directions) |
//! | [`slack`] | Slack Events API in, `chat.postMessage` out |
//! | [`telegram`] | Telegram webhook or long polling in (the loop: [`telegram::poll`]), `sendMessage` out |
//! | [`webchat`] | the web console's in-memory conversation store with live updates |
//! | [`config`] | credentials from env or a strict file; on/off status without secrets |
//! | [`hub`] | [`Channels`], every configured adapter by channel type and instance |
//! | [`signing`] | timestamped HMAC verification (constant time, window, replay cache) |
//! | [`split`] | UTF-8-safe splitting at paragraph/line/word boundaries |
//! | [`outbound`] | the shared send loop: rate limit, bounded retries, resume |
//! | [`ratelimit`] | per-destination token buckets |
//! | [`secret`] | zeroized, unprintable credentials |
//!
//! Not here: what happens to a verified event (`ironclaw-ingest`, which routes it
//! through `ironclaw-router`), the HTTP server and its auth (`ironclaw-api`), durable
//! delivery state (`ironclaw-delivery`). This crate depends on the ingest crate alone
//! for inbound, never on the router, the registry or SQLCipher.
//!
//! Invariant (DESIGN §2.6): no input crossing a boundary — request bytes, headers,
//! platform answers, configuration — can panic this crate; each refusal is a typed
//! error that says why, and an inbound refusal never queues anything.

pub mod channel;
pub mod config;
mod dedup;
pub mod hub;
pub mod outbound;
pub mod ratelimit;
mod replay;
pub mod secret;
pub mod signing;
pub mod slack;
pub mod split;
pub mod telegram;
mod transport;
pub mod webchat;
pub mod webhook;

pub use channel::{
    Channel, IgnoreReason, InboundError, InboundOutcome, OutboundMessage, ProtocolReply, SendError,
    SendReceipt, MAX_INBOUND_BODY, SLACK, TELEGRAM, WEB, WEBHOOK,
};
pub use config::{AdapterStatus, Availability, ChannelsConfig, ConfigError, OutboundSettings};
pub use hub::Channels;
pub use outbound::RetryPolicy;
pub use secret::Secret;
pub use webchat::{WebChat, WebChatMessage};
