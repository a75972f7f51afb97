//! Provider and proxy configuration.

use std::fmt;
use std::time::Duration;

use ironclaw_contract::ids::SessionId;

use crate::ProxyError;

/// A credential. Its value is only reachable through [`Secret::expose`]; `Debug` prints
/// `[redacted]` and there is no `Display`, so it cannot leak into logs or errors by
/// formatting.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for injecting into an upstream request and for redaction.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The providers the proxy knows. The agent names one as the first path segment
/// ([`ProviderKind::prefix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderKind {
    /// Anthropic Messages API (`x-api-key` + `anthropic-version`).
    Anthropic,
    /// OpenAI Chat Completions (`Authorization: Bearer`).
    OpenAi,
    /// OpenRouter (OpenAI wire under `/api/v1`).
    OpenRouter,
    /// Ollama's OpenAI-compatible endpoint (usually no key).
    Ollama,
    /// Any other OpenAI-compatible server (vLLM, llama.cpp, LM Studio, …).
    OpenAiCompatible,
    /// The deterministic mock, answered by the proxy itself in the Anthropic Messages
    /// wire shape: no upstream, no key. For zero-credential runs and tests.
    Mock,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 6] = [
        ProviderKind::Anthropic,
        ProviderKind::OpenAi,
        ProviderKind::OpenRouter,
        ProviderKind::Ollama,
        ProviderKind::OpenAiCompatible,
        ProviderKind::Mock,
    ];

    /// The first path segment that selects this provider: `POST /<prefix>/<api path>`.
    pub fn prefix(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenRouter => "openrouter",
            ProviderKind::Ollama => "ollama",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Mock => "mock",
        }
    }

    pub fn from_prefix(s: &str) -> Option<ProviderKind> {
        Self::ALL.into_iter().find(|k| k.prefix() == s)
    }

    /// The API paths (after the prefix) the proxy forwards for this provider; only
    /// `POST` is forwarded. Everything else (account, files, fine-tuning, admin APIs)
    /// is refused even though the key would allow it upstream.
    pub fn allowed_paths(self) -> &'static [&'static str] {
        match self {
            ProviderKind::Anthropic => &["/v1/messages", "/v1/messages/count_tokens"],
            ProviderKind::OpenAi => &["/v1/chat/completions", "/v1/responses", "/v1/embeddings"],
            ProviderKind::OpenRouter => &["/api/v1/chat/completions"],
            ProviderKind::Ollama => &["/v1/chat/completions", "/api/chat"],
            ProviderKind::OpenAiCompatible => &["/v1/chat/completions"],
            ProviderKind::Mock => &["/v1/messages"],
        }
    }

    /// The base URL used when none is configured.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::OpenAi => Some("https://api.openai.com"),
            ProviderKind::OpenRouter => Some("https://openrouter.ai"),
            ProviderKind::Ollama => Some("http://127.0.0.1:11434"),
            ProviderKind::OpenAiCompatible | ProviderKind::Mock => None,
        }
    }

    /// Whether the provider is usable without a key (local servers, the mock).
    pub fn key_optional(self) -> bool {
        matches!(
            self,
            ProviderKind::Ollama | ProviderKind::OpenAiCompatible | ProviderKind::Mock
        )
    }

    /// Whether calls are forwarded to a server (every provider but the mock, which the
    /// proxy answers itself).
    pub fn has_upstream(self) -> bool {
        self != ProviderKind::Mock
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// One enabled provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: ProviderKind,
    /// `scheme://host[:port][/prefix]`, without a trailing slash; the agent's API path
    /// is appended. `http` is accepted (local servers, tests); keys are sent over it
    /// only because the operator configured that URL. Empty for the mock (no upstream).
    pub base_url: String,
    pub api_key: Option<Secret>,
}

impl ProviderConfig {
    /// The deterministic mock: no base URL, no key.
    pub fn mock() -> Self {
        Self {
            name: ProviderKind::Mock,
            base_url: String::new(),
            api_key: None,
        }
    }

    /// Checks the base URL's shape and that a key is present where one is required.
    /// The mock takes neither: a URL or key configured for it is a mistake the operator
    /// should hear about, not something to ignore.
    pub fn validate(&self) -> Result<(), ProxyError> {
        if !self.name.has_upstream() {
            if !self.base_url.is_empty() || self.api_key.is_some() {
                return Err(ProxyError::Config {
                    what: format!(
                        "{}: the mock is answered by the proxy itself and takes no base URL or key",
                        self.name
                    ),
                });
            }
            return Ok(());
        }
        let url = self.base_url.as_str();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| ProxyError::Config {
                what: format!(
                    "{}: base URL {url:?} must start with http:// or https://",
                    self.name
                ),
            })?;
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() || rest.contains(['?', '#', '@', ' ']) {
            return Err(ProxyError::Config {
                what: format!(
                    "{}: base URL {url:?} needs a host and no query, fragment or userinfo",
                    self.name
                ),
            });
        }
        if self.api_key.is_none() && !self.name.key_optional() {
            return Err(ProxyError::Config {
                what: format!("{}: an API key is required", self.name),
            });
        }
        Ok(())
    }
}

/// A token bucket: `per_second` refill, `burst` capacity (the bucket starts full).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// Called with the session id when a session is parked.
pub type ParkHook = Box<dyn Fn(&SessionId) + Send + Sync>;

/// Everything the proxy enforces.
pub struct ProxyConfig {
    pub providers: Vec<ProviderConfig>,
    /// Request rate per session (`None`: unlimited).
    pub session_rate: Option<RateLimit>,
    /// Request rate per agent group, shared by all its sessions (`None`: unlimited).
    pub group_rate: Option<RateLimit>,
    /// Tokens (input + output, from the provider's `usage`) a session may use before
    /// it is parked (`None`: no budget).
    pub session_token_budget: Option<u64>,
    /// Tokens an agent group may use, summed over its sessions (`None`: no budget).
    pub group_token_budget: Option<u64>,
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
    pub connect_timeout: Duration,
    /// Longest silence while waiting for response headers or the next body bytes.
    pub read_timeout: Duration,
    /// Called (from a worker thread) when a session is parked, so the session manager
    /// can react (notify the user, stop the sandbox, …).
    pub on_park: Option<ParkHook>,
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("providers", &self.providers)
            .field("session_rate", &self.session_rate)
            .field("group_rate", &self.group_rate)
            .field("session_token_budget", &self.session_token_budget)
            .field("group_token_budget", &self.group_token_budget)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("on_park", &self.on_park.as_ref().map(|_| "Fn"))
            .finish()
    }
}

pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 4 * 1024 * 1024;
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

impl Default for ProxyConfig {
    /// No providers, 10 req/s (burst 20) per session, 20 req/s (burst 40) per group,
    /// no token budgets, 4 MiB / 16 MiB size caps, 10 s connect, 300 s read timeout.
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            session_rate: Some(RateLimit {
                per_second: 10.0,
                burst: 20,
            }),
            group_rate: Some(RateLimit {
                per_second: 20.0,
                burst: 40,
            }),
            session_token_budget: None,
            group_token_budget: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(300),
            on_park: None,
        }
    }
}

/// A rate setting: `<per second>/<burst>` or `off`; unset → `default`.
fn rate_from(
    get: &impl Fn(&str) -> Option<String>,
    var: &str,
    default: Option<RateLimit>,
) -> Result<Option<RateLimit>, ProxyError> {
    let Some(v) = get(var) else {
        return Ok(default);
    };
    if v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || ProxyError::Config {
        what: format!("{var}={v:?}: expected <requests per second>/<burst> (e.g. 10/20) or off"),
    };
    let (rate, burst) = v.split_once('/').ok_or_else(bad)?;
    let per_second: f64 = rate.trim().parse().map_err(|_| bad())?;
    let burst: u32 = burst.trim().parse().map_err(|_| bad())?;
    if !(per_second.is_finite() && per_second > 0.0) || burst == 0 {
        return Err(bad());
    }
    Ok(Some(RateLimit { per_second, burst }))
}

impl ProxyConfig {
    /// Providers from the process environment, other settings at their defaults.
    /// See [`ProxyConfig::from_lookup`].
    pub fn from_env() -> Result<Self, ProxyError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Providers from a variable lookup (empty values count as unset):
    ///
    /// | provider | enabled by | base URL override |
    /// |---|---|---|
    /// | anthropic | `ANTHROPIC_API_KEY` | `ANTHROPIC_BASE_URL` |
    /// | openai | `OPENAI_API_KEY` | `OPENAI_BASE_URL` |
    /// | openrouter | `OPENROUTER_API_KEY` | `OPENROUTER_BASE_URL` |
    /// | ollama | `OLLAMA_BASE_URL` (key: `OLLAMA_API_KEY`, optional) | — |
    /// | openai-compatible | `IRONCLAW_OPENAI_COMPAT_BASE_URL` (key: `IRONCLAW_OPENAI_COMPAT_API_KEY`, optional) | — |
    /// | mock | `IRONCLAW_MOCK_PROVIDER=1` (or `true`, `yes`, `on`) | — |
    ///
    /// Request rates: `IRONCLAW_MODEL_SESSION_RATE` (per session) and
    /// `IRONCLAW_MODEL_GROUP_RATE` (per agent group, shared by its sessions), each
    /// `<per second>/<burst>` (e.g. `10/20`) or `off`; unset keeps the default.
    ///
    /// A malformed base URL, mock switch or rate is an error (fail closed), not a
    /// silently skipped setting.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ProxyError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut providers = Vec::new();
        let keyed = [
            (
                ProviderKind::Anthropic,
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_BASE_URL",
            ),
            (ProviderKind::OpenAi, "OPENAI_API_KEY", "OPENAI_BASE_URL"),
            (
                ProviderKind::OpenRouter,
                "OPENROUTER_API_KEY",
                "OPENROUTER_BASE_URL",
            ),
        ];
        for (kind, key_var, url_var) in keyed {
            if let Some(key) = get(key_var) {
                let base_url = get(url_var)
                    .or_else(|| kind.default_base_url().map(str::to_owned))
                    .unwrap_or_default();
                providers.push(ProviderConfig {
                    name: kind,
                    base_url: base_url.trim_end_matches('/').to_owned(),
                    api_key: Some(Secret::new(key)),
                });
            }
        }
        let local = [
            (ProviderKind::Ollama, "OLLAMA_BASE_URL", "OLLAMA_API_KEY"),
            (
                ProviderKind::OpenAiCompatible,
                "IRONCLAW_OPENAI_COMPAT_BASE_URL",
                "IRONCLAW_OPENAI_COMPAT_API_KEY",
            ),
        ];
        for (kind, url_var, key_var) in local {
            if let Some(url) = get(url_var) {
                providers.push(ProviderConfig {
                    name: kind,
                    base_url: url.trim_end_matches('/').to_owned(),
                    api_key: get(key_var).map(Secret::new),
                });
            }
        }
        if let Some(v) = get("IRONCLAW_MOCK_PROVIDER") {
            if parse_switch(&v).ok_or_else(|| ProxyError::Config {
                what: format!(
                    "IRONCLAW_MOCK_PROVIDER={v:?}: expected 1/true/yes/on or 0/false/no/off"
                ),
            })? {
                providers.push(ProviderConfig::mock());
            }
        }
        for p in &providers {
            p.validate()?;
        }
        let defaults = Self::default();
        Ok(Self {
            providers,
            session_rate: rate_from(&get, "IRONCLAW_MODEL_SESSION_RATE", defaults.session_rate)?,
            group_rate: rate_from(&get, "IRONCLAW_MODEL_GROUP_RATE", defaults.group_rate)?,
            ..defaults
        })
    }

    /// Enables the mock provider (idempotent); the daemon does this in `--dev`.
    pub fn enable_mock(&mut self) {
        if self.provider(ProviderKind::Mock).is_none() {
            self.providers.push(ProviderConfig::mock());
        }
    }

    pub(crate) fn provider(&self, kind: ProviderKind) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == kind)
    }
}

/// An on/off environment switch; `None` for anything else.
fn parse_switch(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}
