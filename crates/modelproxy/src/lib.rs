//! The host model proxy (DESIGN §9).
//!
//! Sandboxes have no network. An agent reaches a model only by calling its own
//! session's unix socket, e.g. `POST /anthropic/v1/messages` or
//! `POST /openai/v1/chat/completions`; the first path segment names the provider. The
//! proxy holds the provider keys and forwards allowed calls upstream over HTTPS. The
//! `mock` provider (`POST /mock/v1/messages`, Anthropic wire shape) is answered by the
//! proxy itself, deterministically, with no upstream and no key, when it is enabled
//! ([`ProviderConfig::mock`], `IRONCLAW_MOCK_PROVIDER=1`); it goes through the same
//! admission, caps, budgets and audit as any other call.
//!
//! # What the proxy guarantees
//! - **Identity from the socket.** [`ModelProxy::listen`] binds one socket per session
//!   (0600, parent 0700); every call on it is attributed to that session and its agent
//!   group. Nothing the sandbox sends can claim another identity.
//! - **Allowlist.** Only configured providers (a key, a base URL for local servers, or
//!   the mock switch), only `POST`, only each provider's model API paths
//!   ([`ProviderKind::allowed_paths`]), no query strings. Anything else → 403 with a
//!   JSON error body `{"error":{"type":"ironclaw_proxy","code":…,"message":…}}`, and
//!   the provider is never contacted. A malformed request to the mock → 400 with the
//!   same error body.
//! - **Keys stay on the host.** Every credential-like header the sandbox sends
//!   (`authorization`, `x-api-key`, `api-key`, `x-goog-api-key`, `x-amz-*`,
//!   `proxy-authorization`, cookies, …) is dropped; the configured key is injected
//!   (`x-api-key` for Anthropic, `Authorization: Bearer` for the OpenAI family). Any
//!   configured key value appearing in a response body or header comes back as
//!   `[redacted]`, including a key split across stream chunks. Keys never appear in
//!   `Debug`, logs, errors or audit records.
//! - **Caps.** Request bodies over `max_request_bytes` → 413 before any upstream
//!   contact; responses over `max_response_bytes` are refused (known length) or cut
//!   (streams) and audited as failed (status 502). Per-session and per-agent-group
//!   token buckets → 429 with `Retry-After`. Connect and per-read timeouts upstream.
//! - **Budgets.** Tokens from the providers' `usage` fields count against per-session
//!   and per-group budgets; reaching one parks the session (429 on every call,
//!   [`AuditEvent::SessionParked`](ironclaw_audit::AuditEvent::SessionParked), the
//!   `on_park` hook) until [`ModelProxy::resume`].
//! - **Base socket.** [`ModelProxy::serve_base`] answers `GET /healthz` and the mock
//!   only (attributed to [`BASE_SESSION`] / [`BASE_GROUP`]); it never forwards to a
//!   provider, so no key is usable without a session's socket.
//! - **Accounting.** One [`AuditEvent::ModelCall`](ironclaw_audit::AuditEvent::ModelCall)
//!   per call, refused or not (session, provider, path, status, sizes, tokens,
//!   duration — never bodies or keys), and counters in [`ModelProxy::stats`].
//!
//! # What it does not do
//! - It does not read, filter or store prompts or completions: content is the agent's
//!   business; only `usage` numbers are parsed out of responses.
//! - Token counts are what the provider reports. A provider that reports no `usage`
//!   (e.g. an OpenAI stream without `stream_options.include_usage`) is not counted
//!   against budgets; the request rate cap still applies.
//! - It does not follow redirects, retry, or decompress (it asks for identity encoding
//!   and refuses a compressed answer, since it could not be checked for keys).
//! - Sockets are 0600 for the daemon's uid: giving the sandbox's uid access (chown) and
//!   bind-mounting the socket are the session manager's job.

mod config;
mod error;
mod limits;
mod mock;
mod proxy;
mod redact;
mod server;
mod usage;

pub use config::{
    ParkHook, ProviderConfig, ProviderKind, ProxyConfig, RateLimit, Secret,
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_RESPONSE_BYTES,
};
pub use error::ProxyError;
pub use proxy::{ModelProxy, ProxyStats, BASE_GROUP, BASE_SESSION};
pub use server::SessionListener;
