//! The control plane's HTTP API (axum).
//!
//! - Routes: health and readiness (open), metrics, change requests and decisions, the
//!   audit chain, the registry (read, plus the identity-only writes), operator tokens,
//!   status. Every route is listed in [`ROUTES`] and documented in `docs/openapi.yaml`;
//!   a test fails when one is missing from the other.
//! - JSON in snake_case; every error is `{"error": {"code", "message"}}`.
//! - Hardening on by default: per-client rate limit (429 + `Retry-After`), header limit
//!   (431), body limit (413), request timeout, optional TLS (rustls).
//! - Authentication: a bearer token naming an operator ([`ironclaw_identity`]); the
//!   authenticated principal is what the gateway records, never a claimed name.
//!
//! Not here: policy. Who may decide what is the gateway's and the registry's, who may
//! chat with which agent group is the router's (`ironclaw_router::webchat`), and what
//! happens to a verified message is the ingest service's (`ironclaw_ingest::Ingest`);
//! this crate maps HTTP onto them.

mod auth;
mod error;
mod limits;
mod metrics;
mod routes;
mod serve;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use ironclaw_audit::AuditLog;
use ironclaw_contract::ids::SessionId;
use ironclaw_contract::time::Timestamp;
use ironclaw_gateway::Gateway;
use ironclaw_identity::TokenStore;
use ironclaw_registry::Registry;

pub use error::ApiError;
pub use limits::Limits;
pub use routes::{router, ROUTES};
pub use serve::{serve, ServeError, TlsConfig};

/// Everything a handler can reach.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    gateway: Arc<Gateway>,
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    tokens: Arc<TokenStore>,
    /// `None` when the daemon runs no sessions (e.g. API-only tests).
    sessions: Option<Arc<ironclaw_session::SessionManager>>,
    /// Channel adapters (web chat store, hook verification); `None` in API-only tests.
    channels: Option<Arc<ironclaw_channels::Channels>>,
    /// Where verified messages go (routed, queued, sessions woken); `None` in API-only
    /// tests and when the daemon runs no sessions.
    ingest: Option<ironclaw_ingest::Ingest>,
    metrics: metrics::Metrics,
    limits: Limits,
    rate_limiter: limits::RateLimiter,
    /// `None` when ready; otherwise why not.
    not_ready: RwLock<Option<String>>,
    /// Shown in `/readyz` and `/v1/status` (e.g. "unsandboxed dev isolator").
    notices: RwLock<Vec<String>>,
    started: Instant,
    /// When this state was built (≈ daemon start), for `/v1/status`.
    started_at: Timestamp,
    version: String,
    /// The model proxy's counters and parking, for `/v1/status`; `None` until the daemon
    /// sets it (and in API-only tests).
    model_proxy: RwLock<Option<Arc<dyn ModelProxyView>>>,
}

/// The model proxy as `/v1/status` reports it. The daemon implements this over its
/// proxy, so the API needs no dependency on the proxy crate and API-only tests run
/// without one (`"model_proxy": null`).
pub trait ModelProxyView: Send + Sync {
    /// Counters since the daemon started.
    fn counters(&self) -> ModelProxyCounters;
    /// Whether the proxy holds `session` parked (a token budget was reached).
    fn is_parked(&self, session: &SessionId) -> bool;
}

/// A snapshot of the model proxy's counters. Never holds a key or a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelProxyCounters {
    /// Configured providers by prefix (`anthropic`, `openai`, `mock`, …).
    pub providers: Vec<String>,
    /// Every call the proxy answered, refused ones included, by provider and status.
    pub calls: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Calls the proxy refused or failed itself, by reason code.
    pub refusals: BTreeMap<String, u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What the API is built from.
pub struct ApiParts {
    pub gateway: Arc<Gateway>,
    pub registry: Arc<Registry>,
    pub audit: Arc<AuditLog>,
    pub tokens: Arc<TokenStore>,
    pub sessions: Option<Arc<ironclaw_session::SessionManager>>,
    pub channels: Option<Arc<ironclaw_channels::Channels>>,
    pub ingest: Option<ironclaw_ingest::Ingest>,
    pub limits: Limits,
    pub version: String,
}

impl ApiState {
    pub fn new(parts: ApiParts) -> Self {
        let rate_limiter =
            limits::RateLimiter::new(parts.limits.rate_limit_rps, parts.limits.rate_limit_burst);
        Self {
            inner: Arc::new(Inner {
                gateway: parts.gateway,
                registry: parts.registry,
                audit: parts.audit,
                tokens: parts.tokens,
                sessions: parts.sessions,
                channels: parts.channels,
                ingest: parts.ingest,
                metrics: metrics::Metrics::default(),
                limits: parts.limits,
                rate_limiter,
                not_ready: RwLock::new(Some("starting".into())),
                notices: RwLock::new(Vec::new()),
                started: Instant::now(),
                started_at: Timestamp::now(),
                version: parts.version,
                model_proxy: RwLock::new(None),
            }),
        }
    }

    /// Marks the daemon ready (`None`) or not ready with a reason (`/readyz` → 503).
    pub fn set_not_ready(&self, reason: Option<String>) {
        *self
            .inner
            .not_ready
            .write()
            .unwrap_or_else(|p| p.into_inner()) = reason;
    }

    /// Adds an operator-visible notice (shown by `/readyz` and `/v1/status`).
    pub fn add_notice(&self, notice: impl Into<String>) {
        self.inner
            .notices
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(notice.into());
    }

    /// Gives `/v1/status` the model proxy's counters and parked sessions.
    pub fn set_model_proxy(&self, view: Arc<dyn ModelProxyView>) {
        *self
            .inner
            .model_proxy
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(view);
    }
}
