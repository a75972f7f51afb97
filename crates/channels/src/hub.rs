//! The set of configured adapters, looked up by channel type and instance.
//!
//! For: the daemon's single handle on every channel — the API routes
//! `POST /hooks/{channel}[/{instance}]` through [`Channels::verify_and_parse`],
//! delivery sends through [`Channels::send`], the web chat endpoints use
//! [`Channels::web_chat`]. Not for: deciding which adapters exist (that is the
//! configuration: an adapter without credentials is off, see [`ChannelsConfig::status`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::channel::{
    Channel, InboundError, InboundOutcome, OutboundMessage, SendError, SendReceipt, SLACK,
    TELEGRAM, WEB, WEBHOOK,
};
use crate::config::{AdapterStatus, ChannelsConfig, ConfigError, TelegramConfig};
use crate::slack::SlackChannel;
use crate::telegram::{TelegramChannel, TelegramPoller};
use crate::webchat::WebChat;
use crate::webhook::WebhookChannel;

/// Every adapter of the process.
pub struct Channels {
    /// (channel type, instance) → adapter. Instance = channel type for single-instance
    /// channels.
    adapters: BTreeMap<(&'static str, String), Arc<dyn Channel>>,
    web: Arc<WebChat>,
    status: Vec<AdapterStatus>,
    /// Telegram's settings when `telegram.mode` is `poll` (validated: a token is set).
    telegram_poll: Option<TelegramConfig>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("adapters", &self.adapters.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Channels {
    /// Builds every adapter that has at least one direction configured, plus the web
    /// chat (always on).
    pub fn from_config(cfg: &ChannelsConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut adapters: BTreeMap<(&'static str, String), Arc<dyn Channel>> = BTreeMap::new();
        for (name, w) in &cfg.webhooks {
            if w.secret.is_some() {
                adapters.insert(
                    (WEBHOOK, name.clone()),
                    Arc::new(WebhookChannel::new(name, w, &cfg.outbound)?),
                );
            }
        }
        if cfg.slack.signing_secret.is_some() || cfg.slack.bot_token.is_some() {
            adapters.insert(
                (SLACK, SLACK.into()),
                Arc::new(SlackChannel::new(&cfg.slack, &cfg.outbound)?),
            );
        }
        if cfg.telegram.webhook_secret.is_some() || cfg.telegram.bot_token.is_some() {
            adapters.insert(
                (TELEGRAM, TELEGRAM.into()),
                Arc::new(TelegramChannel::new(&cfg.telegram, &cfg.outbound)?),
            );
        }
        let web = Arc::new(WebChat::new(cfg.web));
        adapters.insert((WEB, WEB.into()), web.clone());
        Ok(Self {
            adapters,
            web,
            status: cfg.status(),
            telegram_poll: cfg.telegram.polls().then(|| cfg.telegram.clone()),
        })
    }

    /// A long poller for Telegram when the configuration asks for polling, `None`
    /// otherwise. `timeout`: how long each `getUpdates` waits for updates.
    pub fn telegram_poller(
        &self,
        timeout: Duration,
    ) -> Option<Result<TelegramPoller, ConfigError>> {
        self.telegram_poll
            .as_ref()
            .map(|cfg| TelegramPoller::new(cfg, timeout))
    }

    /// The adapter for `channel_type` and `instance` (`None` = the channel type).
    pub fn get(&self, channel_type: &str, instance: Option<&str>) -> Option<Arc<dyn Channel>> {
        let instance = instance.unwrap_or(channel_type);
        self.adapters
            .iter()
            .find(|((t, i), _)| *t == channel_type && i == instance)
            .map(|(_, a)| a.clone())
    }

    /// Verifies one hook request; an unknown channel or instance is
    /// [`InboundError::NotConfigured`] (404).
    pub fn verify_and_parse(
        &self,
        channel_type: &str,
        instance: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<InboundOutcome, InboundError> {
        match self.get(channel_type, instance) {
            Some(a) => a.verify_and_parse(headers, body, now),
            None => Err(InboundError::NotConfigured {
                channel: known_type(channel_type),
                instance: instance.unwrap_or(channel_type).chars().take(64).collect(),
            }),
        }
    }

    /// Sends through the adapter the message names; none configured → permanent.
    pub fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        match self.get(&msg.channel_type, msg.instance.as_deref()) {
            Some(a) => a.send(msg),
            None => Err(SendError::Permanent {
                channel: known_type(&msg.channel_type),
                reason: format!(
                    "no {:?} adapter {:?} is configured",
                    msg.channel_type.chars().take(64).collect::<String>(),
                    msg.instance.as_deref().unwrap_or(&msg.channel_type)
                ),
            }),
        }
    }

    /// The web chat store.
    pub fn web_chat(&self) -> &Arc<WebChat> {
        &self.web
    }

    /// What the configuration turned on and off (as at construction).
    pub fn status(&self) -> &[AdapterStatus] {
        &self.status
    }
}

/// The static name of a channel type, for errors (`"unknown"` for anything else).
fn known_type(t: &str) -> &'static str {
    [WEBHOOK, SLACK, TELEGRAM, WEB]
        .into_iter()
        .find(|k| *k == t)
        .unwrap_or("unknown")
}
