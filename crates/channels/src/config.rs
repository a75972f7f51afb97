//! Channel credentials and settings: from the environment or a strict JSON file,
//! validated once, reported without secrets.
//!
//! For: building a [`ChannelsConfig`] (env: [`ChannelsConfig::from_env`]; file:
//! [`ChannelsConfig::from_file`]; exactly one of them: [`ChannelsConfig::load`]),
//! checking every value before an adapter is built, and saying which adapters are on
//! and why the others are off ([`ChannelsConfig::status`]). Not for: building adapters
//! ([`crate::hub::Channels::from_config`]) or receiving credentials over the API —
//! credentials never travel through the API in clear.
//!
//! Rules (fail closed, every refusal names the setting and never its value):
//! - an adapter direction without its credential is **off**, never open: Slack inbound
//!   needs the signing secret, Telegram's webhook needs its secret token, a webhook
//!   instance needs its secret (and a URL to send);
//! - secrets we ask operators to choose (webhook secrets, Telegram's secret token) must
//!   be at least [`MIN_CHOSEN_SECRET_LEN`] characters;
//! - values with leading/trailing whitespace are refused (a pasted newline would
//!   otherwise become part of an HMAC key and fail confusingly later);
//! - URLs must be `https://` (plain `http://` only to a loopback host, for tests);
//! - unknown `IRONCLAW_WEBHOOK_*` variables and unknown JSON fields are errors (a typo
//!   must not silently turn an adapter off);
//! - the file must not be readable by group or others (it holds secrets).
//!
//! Environment variables:
//!
//! | variable | meaning |
//! |---|---|
//! | `IRONCLAW_WEBHOOK_<INSTANCE>_SECRET` | signing secret of webhook instance `<instance>` (lower-cased) |
//! | `IRONCLAW_WEBHOOK_<INSTANCE>_URL` | where that instance's outbound messages are POSTed |
//! | `SLACK_SIGNING_SECRET` | verifies Slack Events API requests (inbound) |
//! | `SLACK_BOT_TOKEN` | `chat.postMessage` (outbound) |
//! | `SLACK_BOT_USER_ID` | optional: the bot's user id, for mentions and own-message filtering |
//! | `IRONCLAW_SLACK_API_BASE` | optional: Web API base URL (tests) |
//! | `TELEGRAM_BOT_TOKEN` | `sendMessage` (outbound) and `getUpdates` long polling |
//! | `TELEGRAM_WEBHOOK_SECRET` | the `secret_token` given to `setWebhook` (inbound webhook) |
//! | `TELEGRAM_BOT_USERNAME` | optional: the bot's username, for `@mentions` |
//! | `TELEGRAM_MODE` | optional: `webhook` (default) or `poll` (the daemon calls `getUpdates`) |
//! | `IRONCLAW_TELEGRAM_API_BASE` | optional: Bot API base URL (tests) |

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::outbound::RetryPolicy;
use crate::secret::Secret;
use crate::transport::{check_url, DEFAULT_TIMEOUT};

/// Shortest secret we accept where the operator chooses it.
pub const MIN_CHOSEN_SECRET_LEN: usize = 16;
/// Largest config file read.
const MAX_FILE_LEN: u64 = 1024 * 1024;

pub const DEFAULT_SLACK_API_BASE: &str = "https://slack.com/api";
pub const DEFAULT_TELEGRAM_API_BASE: &str = "https://api.telegram.org";

const WEBHOOK_ENV_PREFIX: &str = "IRONCLAW_WEBHOOK_";
const FIXED_ENV: [&str; 9] = [
    "SLACK_SIGNING_SECRET",
    "SLACK_BOT_TOKEN",
    "SLACK_BOT_USER_ID",
    "IRONCLAW_SLACK_API_BASE",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_WEBHOOK_SECRET",
    "TELEGRAM_BOT_USERNAME",
    "TELEGRAM_MODE",
    "IRONCLAW_TELEGRAM_API_BASE",
];

/// Why a configuration was refused. Never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting}: {reason}")]
    Invalid { setting: String, reason: String },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("channels config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("both a channels config file and channel environment variables are set ({}); use one source", vars.join(", "))]
    ConflictingSources { vars: Vec<String> },
}

fn invalid(setting: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.into(),
        reason: reason.into(),
    }
}

/// One signed-webhook instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Signs outbound requests and verifies inbound ones.
    pub secret: Option<Secret>,
    /// Where outbound messages are POSTed.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub signing_secret: Option<Secret>,
    pub bot_token: Option<Secret>,
    /// The bot's own user id (`U…`). Also learned per request from the Events API's
    /// `authorizations`.
    pub bot_user_id: Option<String>,
    pub api_base: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    pub bot_token: Option<Secret>,
    pub webhook_secret: Option<Secret>,
    /// Without the leading `@`.
    pub bot_username: Option<String>,
    pub api_base: Option<String>,
    /// How updates reach us. Explicit rather than inferred from which credentials are
    /// set: a bot token alone is also the outbound-only setup, and polling a bot whose
    /// webhook another system uses would fight it for its updates.
    #[serde(default)]
    pub mode: TelegramMode,
}

/// How Telegram updates reach the daemon (`telegram.mode`, `TELEGRAM_MODE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    /// Telegram POSTs to `/hooks/telegram`; on when `webhook_secret` is set.
    #[default]
    Webhook,
    /// The daemon calls `getUpdates` (long polling) with the bot token; no inbound
    /// reachability needed. Excludes `webhook_secret`: Telegram refuses `getUpdates`
    /// while a webhook is set.
    Poll,
}

impl TelegramMode {
    fn parse(value: &str) -> Option<Self> {
        match value {
            "webhook" => Some(Self::Webhook),
            "poll" => Some(Self::Poll),
            _ => None,
        }
    }
}

/// Bounds of the in-memory web chat store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebChatConfig {
    pub max_messages_per_conversation: usize,
    pub max_conversations: usize,
}

impl Default for WebChatConfig {
    fn default() -> Self {
        Self {
            max_messages_per_conversation: 200,
            max_conversations: 1024,
        }
    }
}

/// Timeouts and retry bounds shared by the HTTP adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundSettings {
    /// Per platform call.
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }
}

/// The file form of [`OutboundSettings`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundFile {
    timeout_secs: Option<u64>,
    max_attempts: Option<u32>,
    max_wait_secs: Option<u64>,
}

/// Everything the channel adapters need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelsConfig {
    /// Instance name → settings. Names: `[a-z0-9_-]{1,64}`.
    pub webhooks: BTreeMap<String, WebhookConfig>,
    pub slack: SlackConfig,
    pub telegram: TelegramConfig,
    pub web: WebChatConfig,
    pub outbound: OutboundSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    webhooks: BTreeMap<String, WebhookConfig>,
    #[serde(default)]
    slack: SlackConfig,
    #[serde(default)]
    telegram: TelegramConfig,
    #[serde(default)]
    web: WebChatConfig,
    outbound: Option<OutboundFile>,
}

impl ChannelsConfig {
    /// From the file if one is given, else from the environment. Both at once is
    /// refused: which credential wins must never be a guess.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        match file {
            Some(path) => {
                let vars = channel_env_vars(std::env::vars_os());
                if !vars.is_empty() {
                    return Err(ConfigError::ConflictingSources { vars });
                }
                Self::from_file(path)
            }
            None => Self::from_env(),
        }
    }

    /// From the process environment (see the module docs for the names).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_vars(std::env::vars_os())
    }

    /// From explicit variables (what [`Self::from_env`] does with the process's).
    pub fn from_env_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let mut cfg = ChannelsConfig::default();
        for (k, v) in vars {
            let Ok(name) = k.into().into_string() else {
                continue; // not one of ours: every name we read is ASCII
            };
            let ours = FIXED_ENV.contains(&name.as_str()) || name.starts_with(WEBHOOK_ENV_PREFIX);
            if !ours {
                continue;
            }
            let value = v.into().into_string().map_err(|_| ConfigError::Env {
                var: name.clone(),
                reason: "not valid UTF-8".into(),
            })?;
            if value.is_empty() {
                continue; // empty = unset
            }
            match name.as_str() {
                "SLACK_SIGNING_SECRET" => cfg.slack.signing_secret = Some(Secret::new(value)),
                "SLACK_BOT_TOKEN" => cfg.slack.bot_token = Some(Secret::new(value)),
                "SLACK_BOT_USER_ID" => cfg.slack.bot_user_id = Some(value),
                "IRONCLAW_SLACK_API_BASE" => cfg.slack.api_base = Some(value),
                "TELEGRAM_BOT_TOKEN" => cfg.telegram.bot_token = Some(Secret::new(value)),
                "TELEGRAM_WEBHOOK_SECRET" => cfg.telegram.webhook_secret = Some(Secret::new(value)),
                "TELEGRAM_BOT_USERNAME" => cfg.telegram.bot_username = Some(value),
                "TELEGRAM_MODE" => {
                    cfg.telegram.mode =
                        TelegramMode::parse(&value).ok_or_else(|| ConfigError::Env {
                            var: name.clone(),
                            reason: "expected webhook or poll".into(),
                        })?;
                }
                "IRONCLAW_TELEGRAM_API_BASE" => cfg.telegram.api_base = Some(value),
                _ => {
                    let rest = &name[WEBHOOK_ENV_PREFIX.len()..];
                    let (instance, field) = if let Some(i) = rest.strip_suffix("_SECRET") {
                        (i, "secret")
                    } else if let Some(i) = rest.strip_suffix("_URL") {
                        (i, "url")
                    } else {
                        return Err(ConfigError::Env {
                            var: name,
                            reason: "unknown webhook variable; expected IRONCLAW_WEBHOOK_<INSTANCE>_SECRET or IRONCLAW_WEBHOOK_<INSTANCE>_URL".into(),
                        });
                    };
                    if instance.is_empty()
                        || !instance
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                    {
                        return Err(ConfigError::Env {
                            var: name,
                            reason: "the instance part must be A-Z, 0-9 and _".into(),
                        });
                    }
                    let entry = cfg
                        .webhooks
                        .entry(instance.to_ascii_lowercase())
                        .or_default();
                    if field == "secret" {
                        entry.secret = Some(Secret::new(value));
                    } else {
                        entry.url = Some(value);
                    }
                }
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// From a JSON file (shape in `docs/channels.md`); refused when group- or
    /// world-readable, larger than 1 MiB, or not exactly the documented shape.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let file_err = |reason: String| ConfigError::File {
            path: path.to_owned(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| file_err(e.to_string()))?;
        let meta = file.metadata().map_err(|e| file_err(e.to_string()))?;
        if !meta.is_file() {
            return Err(file_err("not a regular file".into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(file_err(format!(
                    "mode {:o} lets group or others read the secrets in it; chmod 600",
                    mode & 0o777
                )));
            }
        }
        if meta.len() > MAX_FILE_LEN {
            return Err(file_err(format!("larger than {MAX_FILE_LEN} bytes")));
        }
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| file_err(e.to_string()))?;
        Self::from_json(&bytes).map_err(|e| match e {
            ConfigError::Invalid { setting, reason } => file_err(format!("{setting}: {reason}")),
            other => other,
        })
    }

    /// From JSON bytes (no file checks).
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let f: FileConfig = serde_json::from_slice(bytes).map_err(|e| {
            // serde_json's message names fields and positions, never values.
            invalid("channels config", e.to_string())
        })?;
        let mut outbound = OutboundSettings::default();
        if let Some(o) = f.outbound {
            if let Some(t) = o.timeout_secs {
                if !(1..=300).contains(&t) {
                    return Err(invalid("outbound.timeout_secs", "must be 1..=300"));
                }
                outbound.timeout = Duration::from_secs(t);
            }
            if let Some(a) = o.max_attempts {
                if !(1..=20).contains(&a) {
                    return Err(invalid("outbound.max_attempts", "must be 1..=20"));
                }
                outbound.retry.max_attempts = a;
            }
            if let Some(w) = o.max_wait_secs {
                if w > 600 {
                    return Err(invalid("outbound.max_wait_secs", "must be at most 600"));
                }
                outbound.retry.max_total = Duration::from_secs(w);
            }
        }
        let cfg = ChannelsConfig {
            webhooks: f.webhooks,
            slack: f.slack,
            telegram: f.telegram,
            web: f.web,
            outbound,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value (see the module docs for the rules).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, w) in &self.webhooks {
            validate_instance_name(name)?;
            w.validate(name)?;
        }
        self.slack.validate()?;
        self.telegram.validate()?;
        if self.web.max_messages_per_conversation == 0 || self.web.max_conversations == 0 {
            return Err(invalid("web", "bounds must be at least 1"));
        }
        Ok(())
    }

    /// Each adapter, each direction, on or off with the reason. Never shows a secret.
    pub fn status(&self) -> Vec<AdapterStatus> {
        let mut out = Vec::new();
        for (name, w) in &self.webhooks {
            let env = name.to_ascii_uppercase();
            let inbound = if w.secret.is_some() {
                Availability::On
            } else {
                Availability::Off(format!(
                    "no secret (IRONCLAW_WEBHOOK_{env}_SECRET or webhooks.{name}.secret)"
                ))
            };
            let outbound = match (&w.secret, &w.url) {
                (Some(_), Some(_)) => Availability::On,
                (None, _) => Availability::Off(format!(
                    "no secret (IRONCLAW_WEBHOOK_{env}_SECRET or webhooks.{name}.secret)"
                )),
                (Some(_), None) => Availability::Off(format!(
                    "no url (IRONCLAW_WEBHOOK_{env}_URL or webhooks.{name}.url)"
                )),
            };
            out.push(AdapterStatus {
                channel_type: crate::channel::WEBHOOK,
                instance: name.clone(),
                inbound,
                outbound,
            });
        }
        out.push(AdapterStatus {
            channel_type: crate::channel::SLACK,
            instance: crate::channel::SLACK.into(),
            inbound: on_if(
                self.slack.signing_secret.is_some(),
                "no signing secret (SLACK_SIGNING_SECRET or slack.signing_secret)",
            ),
            outbound: on_if(
                self.slack.bot_token.is_some(),
                "no bot token (SLACK_BOT_TOKEN or slack.bot_token)",
            ),
        });
        let tg_inbound = if self.telegram.webhook_secret.is_some() || self.telegram.polls() {
            Availability::On
        } else if self.telegram.bot_token.is_some() {
            Availability::Off(
                "webhook off: no secret token (TELEGRAM_WEBHOOK_SECRET or telegram.webhook_secret); or long polling with the bot token: TELEGRAM_MODE=poll or telegram.mode = \"poll\"".into(),
            )
        } else {
            Availability::Off(
                "no secret token (TELEGRAM_WEBHOOK_SECRET or telegram.webhook_secret) and no bot token for long polling".into(),
            )
        };
        out.push(AdapterStatus {
            channel_type: crate::channel::TELEGRAM,
            instance: crate::channel::TELEGRAM.into(),
            inbound: tg_inbound,
            outbound: on_if(
                self.telegram.bot_token.is_some(),
                "no bot token (TELEGRAM_BOT_TOKEN or telegram.bot_token)",
            ),
        });
        out.push(AdapterStatus {
            channel_type: crate::channel::WEB,
            instance: crate::channel::WEB.into(),
            inbound: Availability::On,
            outbound: Availability::On,
        });
        out
    }
}

impl WebhookConfig {
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        if let Some(s) = &self.secret {
            check_chosen_secret(&format!("webhooks.{name}.secret"), s, |_| true)?;
        }
        if let Some(u) = &self.url {
            check_url(u).map_err(|r| invalid(format!("webhooks.{name}.url"), r))?;
        }
        Ok(())
    }
}

impl SlackConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(s) = &self.signing_secret {
            check_token("slack.signing_secret", s)?;
        }
        if let Some(s) = &self.bot_token {
            check_token("slack.bot_token", s)?;
        }
        if let Some(id) = &self.bot_user_id {
            if id.is_empty()
                || id.len() > 32
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                return Err(invalid(
                    "slack.bot_user_id",
                    "expected a Slack user id such as U0123ABCD",
                ));
            }
        }
        if let Some(u) = &self.api_base {
            check_url(u).map_err(|r| invalid("slack.api_base", r))?;
        }
        Ok(())
    }

    pub(crate) fn api_base(&self) -> String {
        self.api_base
            .as_deref()
            .unwrap_or(DEFAULT_SLACK_API_BASE)
            .trim_end_matches('/')
            .to_owned()
    }
}

impl TelegramConfig {
    /// Whether the daemon long-polls `getUpdates` (validated: the bot token is set).
    pub fn polls(&self) -> bool {
        self.mode == TelegramMode::Poll
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.polls() {
            if self.bot_token.is_none() {
                return Err(invalid(
                    "telegram.mode",
                    "poll needs the bot token (TELEGRAM_BOT_TOKEN or telegram.bot_token)",
                ));
            }
            if self.webhook_secret.is_some() {
                // Fail closed instead of picking one: Telegram refuses getUpdates while
                // a webhook is set, so both configured means one of them silently fails.
                return Err(invalid(
                    "telegram.mode",
                    "poll excludes a webhook secret (Telegram refuses getUpdates while a webhook is set); remove telegram.webhook_secret / TELEGRAM_WEBHOOK_SECRET or use mode webhook",
                ));
            }
        }
        if let Some(t) = &self.bot_token {
            // The token becomes a URL path segment (`/bot<token>/sendMessage`): only
            // the documented `<digits>:<[A-Za-z0-9_-]>` shape can be put there safely.
            let ok = t.expose().split_once(':').is_some_and(|(id, rest)| {
                !id.is_empty()
                    && id.len() <= 20
                    && id.bytes().all(|b| b.is_ascii_digit())
                    && !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
            if !ok {
                return Err(invalid(
                    "telegram.bot_token",
                    "expected <digits>:<letters, digits, _ and -> as issued by @BotFather",
                ));
            }
        }
        if let Some(s) = &self.webhook_secret {
            // Telegram's own rule for secret_token: 1-256 of A-Z a-z 0-9 _ -.
            check_chosen_secret("telegram.webhook_secret", s, |b| {
                b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
            })?;
            if s.len() > 256 {
                return Err(invalid(
                    "telegram.webhook_secret",
                    "Telegram accepts at most 256 characters",
                ));
            }
        }
        if let Some(u) = &self.bot_username {
            let u = u.strip_prefix('@').unwrap_or(u);
            if !(5..=32).contains(&u.len())
                || !u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(invalid(
                    "telegram.bot_username",
                    "expected a Telegram username (5-32 of A-Z a-z 0-9 _)",
                ));
            }
        }
        if let Some(u) = &self.api_base {
            check_url(u).map_err(|r| invalid("telegram.api_base", r))?;
        }
        Ok(())
    }

    pub(crate) fn api_base(&self) -> String {
        self.api_base
            .as_deref()
            .unwrap_or(DEFAULT_TELEGRAM_API_BASE)
            .trim_end_matches('/')
            .to_owned()
    }

    pub(crate) fn bot_username(&self) -> Option<String> {
        self.bot_username
            .as_deref()
            .map(|u| u.strip_prefix('@').unwrap_or(u).to_owned())
    }
}

/// A webhook instance name: it becomes a URL path segment and a registry key.
pub fn validate_instance_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("webhooks.{}", name.chars().take(64).collect::<String>()),
            "instance names are 1-64 of a-z, 0-9, _ and -",
        ))
    }
}

/// A platform-issued credential: non-empty, visible ASCII, no whitespace anywhere
/// (it goes into a header or an HMAC key as is).
fn check_token(setting: &str, s: &Secret) -> Result<(), ConfigError> {
    if s.is_empty() || !s.expose().bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            setting,
            "must be non-empty visible ASCII without whitespace",
        ));
    }
    Ok(())
}

/// A secret the operator chose: long enough, no surrounding whitespace, and (for
/// Telegram) only the allowed characters.
fn check_chosen_secret(
    setting: &str,
    s: &Secret,
    allowed: impl Fn(u8) -> bool,
) -> Result<(), ConfigError> {
    let v = s.expose();
    if v.trim() != v {
        return Err(invalid(setting, "has leading or trailing whitespace"));
    }
    if v.chars().count() < MIN_CHOSEN_SECRET_LEN {
        return Err(invalid(
            setting,
            format!(
                "shorter than {MIN_CHOSEN_SECRET_LEN} characters; generate one with `openssl rand -hex 32`"
            ),
        ));
    }
    if !v.bytes().all(allowed) {
        return Err(invalid(setting, "contains characters that are not allowed"));
    }
    Ok(())
}

fn on_if(on: bool, reason: &str) -> Availability {
    if on {
        Availability::On
    } else {
        Availability::Off(reason.to_owned())
    }
}

/// The names of channel variables set (non-empty) in `vars`.
fn channel_env_vars<I: IntoIterator<Item = (OsString, OsString)>>(vars: I) -> Vec<String> {
    let mut out: Vec<String> = vars
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| FIXED_ENV.contains(&k.as_str()) || k.starts_with(WEBHOOK_ENV_PREFIX))
        .collect();
    out.sort();
    out
}

/// One direction of one adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    On,
    /// Off, and why (names the setting that would turn it on).
    Off(String),
}

impl Availability {
    pub fn is_on(&self) -> bool {
        matches!(self, Availability::On)
    }
}

/// What [`ChannelsConfig::status`] reports for one adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterStatus {
    pub channel_type: &'static str,
    pub instance: String,
    pub inbound: Availability,
    pub outbound: Availability,
}

impl fmt::Display for AdapterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |a: &Availability| match a {
            Availability::On => "on".to_owned(),
            Availability::Off(why) => format!("off ({why})"),
        };
        if self.instance == self.channel_type {
            write!(f, "{}", self.channel_type)?;
        } else {
            write!(f, "{}/{}", self.channel_type, self.instance)?;
        }
        write!(
            f,
            ": inbound {}; outbound {}",
            show(&self.inbound),
            show(&self.outbound)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_env_vars_lists_only_ours_and_only_set_ones() {
        let vars = [
            ("PATH", "/bin"),
            ("SLACK_BOT_TOKEN", "x"),
            ("TELEGRAM_BOT_TOKEN", ""),
            ("IRONCLAW_WEBHOOK_CI_URL", "https://x"),
            ("IRONCLAW_API_TOKEN", "y"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        assert_eq!(
            channel_env_vars(vars),
            ["IRONCLAW_WEBHOOK_CI_URL", "SLACK_BOT_TOKEN"]
        );
    }

    #[test]
    fn telegram_mode_poll_needs_the_token_and_excludes_the_webhook() {
        const TOKEN: &str = "4242:TGTOKEN_0123456789";
        let env = |pairs: &[(&str, &str)]| {
            ChannelsConfig::from_env_vars(pairs.iter().map(|(k, v)| (*k, *v)))
        };
        let polling = env(&[("TELEGRAM_BOT_TOKEN", TOKEN), ("TELEGRAM_MODE", "poll")]).unwrap();
        assert!(polling.telegram.polls());
        let tg = polling
            .status()
            .into_iter()
            .find(|s| s.channel_type == crate::channel::TELEGRAM)
            .unwrap();
        assert!(tg.inbound.is_on(), "{tg}");
        let webhook = env(&[("TELEGRAM_BOT_TOKEN", TOKEN), ("TELEGRAM_MODE", "webhook")]).unwrap();
        assert!(!webhook.telegram.polls());
        assert!(!env(&[("TELEGRAM_BOT_TOKEN", TOKEN)])
            .unwrap()
            .telegram
            .polls());
        for (pairs, setting) in [
            (vec![("TELEGRAM_MODE", "poll")], "telegram.mode"),
            (
                vec![
                    ("TELEGRAM_BOT_TOKEN", TOKEN),
                    ("TELEGRAM_WEBHOOK_SECRET", "tg-WEBHOOK-secret_0123456789"),
                    ("TELEGRAM_MODE", "poll"),
                ],
                "telegram.mode",
            ),
        ] {
            match env(&pairs) {
                Err(ConfigError::Invalid { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
        assert!(matches!(
            env(&[("TELEGRAM_BOT_TOKEN", TOKEN), ("TELEGRAM_MODE", "Polling")]),
            Err(ConfigError::Env { .. })
        ));
        let file = ChannelsConfig::from_json(
            format!(r#"{{"telegram": {{"bot_token": "{TOKEN}", "mode": "poll"}}}}"#).as_bytes(),
        )
        .unwrap();
        assert!(file.telegram.polls());
        assert!(ChannelsConfig::from_json(
            format!(r#"{{"telegram": {{"bot_token": "{TOKEN}", "mode": "push"}}}}"#).as_bytes()
        )
        .is_err());
    }

    #[test]
    fn instance_names() {
        for ok in ["ci", "a", "build-bot_2", &"x".repeat(64)] {
            assert!(validate_instance_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "CI", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(validate_instance_name(bad).is_err(), "{bad}");
        }
    }
}
