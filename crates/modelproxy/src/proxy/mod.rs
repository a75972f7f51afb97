//! The proxy itself: the [`ModelProxy`] type, its public operations (listen, serve the
//! base socket, stats, park/resume), and the order of one call ([`ModelProxy::handle`]):
//! admission, body read, the mock or the upstream exchange, the response.
//!
//! What this module is for: composing the steps and holding the shared state (rate
//! buckets, token counts, parked sessions, counters). Each step lives in its own file:
//! - [`admission`]: the checks that need no body (route, method, path, query, parking,
//!   budgets, rate caps, declared size), and the token budgets that park a session;
//! - [`body`]: reading the request body under the cap, and draining a refused one;
//! - [`headers`]: which headers cross the proxy, in each direction;
//! - [`upstream`]: the HTTPS client, the provider request (URL, headers, injected key)
//!   and the blocking exchange;
//! - [`respond`]: the provider's answer to the agent, buffered or streamed;
//! - [`accounting`]: counters, the `ModelCall` audit record and the audit writer;
//! - [`refusal`]: the proxy's own error responses.
//!
//! What it is not for: configuration ([`crate::config`]), the sockets themselves
//! ([`crate::server`]), the mock's wire shape ([`crate::mock`]), token and rate
//! arithmetic ([`crate::usage`], [`crate::limits`]) or key redaction ([`crate::redact`]).

mod accounting;
mod admission;
mod body;
mod headers;
mod refusal;
mod respond;
mod upstream;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::HeaderValue;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use ironclaw_audit::AuditLog;
use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_obs::Redactor;
use serde::Serialize;

use crate::config::{ProviderKind, ProxyConfig};
use crate::limits::Buckets;
use crate::mock;
use crate::redact::redact_bytes;
use crate::server::{self, SessionListener};
use crate::ProxyError;

use accounting::{audit_path, AuditMsg, CallRecord};
use refusal::error_response;
use refusal::Refusal;
use upstream::{build_upstream_request, fetch};

/// Counters for `/metrics`. A snapshot: see [`ModelProxy::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStats {
    /// Calls by provider (`"unknown"` for unrecognised prefixes) and answered status.
    pub calls: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Calls the proxy refused or failed itself, by reason code (`rate_limited`,
    /// `provider_not_configured`, `response_too_large`, …).
    pub refusals: BTreeMap<String, u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// Who is calling: fixed per listener, never taken from the request.
#[derive(Debug, Clone)]
pub(crate) struct Ident {
    pub session: SessionId,
    pub group: AgentGroupId,
}

#[derive(Debug, Default)]
struct State {
    session_buckets: Option<Buckets<SessionId>>,
    group_buckets: Option<Buckets<AgentGroupId>>,
    session_tokens: HashMap<SessionId, u64>,
    group_tokens: HashMap<AgentGroupId, u64>,
    session_groups: HashMap<SessionId, AgentGroupId>,
    parked: HashMap<SessionId, String>,
    stats: ProxyStats,
}

/// The host model proxy. One per daemon; one [`SessionListener`] per session.
pub struct ModelProxy {
    config: ProxyConfig,
    redactor: Redactor,
    keys: Vec<Vec<u8>>,
    agent: ureq::Agent,
    state: Mutex<State>,
    audit_tx: Mutex<std_mpsc::Sender<AuditMsg>>,
}

impl std::fmt::Debug for ModelProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelProxy")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The session id calls on the base socket are attributed to. Minted sessions are
/// `ses_…`, so no real session can share its counters, budget or parking.
pub const BASE_SESSION: &str = "modelproxy-base";
/// The agent group calls on the base socket are attributed to.
pub const BASE_GROUP: &str = "host";

fn base_ident() -> Result<Ident, ProxyError> {
    let bad = |e: ironclaw_contract::ids::IdError| ProxyError::Config {
        what: format!("the base socket's identity: {e}"),
    };
    Ok(Ident {
        session: SessionId::new(BASE_SESSION).map_err(bad)?,
        group: AgentGroupId::new(BASE_GROUP).map_err(bad)?,
    })
}

impl ModelProxy {
    /// Builds the proxy. Fails if a provider's configuration is invalid (fail closed)
    /// or the audit writer thread cannot start. Audit records are appended in order by
    /// one writer thread so that no call waits for an `fsync`; see
    /// [`ModelProxy::flush_audit`].
    pub fn new(config: ProxyConfig, audit: Arc<AuditLog>) -> Result<Arc<ModelProxy>, ProxyError> {
        for p in &config.providers {
            p.validate()?;
        }
        let mut seen = std::collections::HashSet::new();
        for p in &config.providers {
            if !seen.insert(p.name) {
                return Err(ProxyError::Config {
                    what: format!("provider {} is configured twice", p.name),
                });
            }
        }
        let mut redactor = Redactor::new();
        let mut keys = Vec::new();
        for key in config.providers.iter().filter_map(|p| p.api_key.as_ref()) {
            redactor.add(key.expose());
            // Same threshold as `Redactor::add`: shorter values are not redacted.
            if key.expose().len() >= 8 {
                keys.push(key.expose().as_bytes().to_vec());
            }
        }
        let agent = upstream::agent(&config);
        let tx = accounting::spawn_writer(audit)?;
        let state = State {
            session_buckets: config.session_rate.map(Buckets::new),
            group_buckets: config.group_rate.map(Buckets::new),
            ..State::default()
        };
        Ok(Arc::new(ModelProxy {
            config,
            redactor,
            keys,
            agent,
            state: Mutex::new(state),
            audit_tx: Mutex::new(tx),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters, not invariants, half-updated;
        // keep serving rather than poison every later call.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The enabled providers.
    pub fn providers(&self) -> Vec<ProviderKind> {
        self.config.providers.iter().map(|p| p.name).collect()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProxyStats {
        self.state().stats.clone()
    }

    /// Whether `session` is parked (its token budget, or its group's, was reached).
    pub fn is_parked(&self, session: &SessionId) -> bool {
        self.state().parked.contains_key(session)
    }

    /// Operator action: un-parks `session` and starts its token count afresh (and its
    /// group's, if the group's budget was what parked it). Returns whether it was
    /// parked.
    pub fn resume(&self, session: &SessionId) -> bool {
        let mut st = self.state();
        let was = st.parked.remove(session).is_some();
        st.session_tokens.remove(session);
        if let (Some(budget), Some(group)) = (
            self.config.group_token_budget,
            st.session_groups.get(session).cloned(),
        ) {
            if st.group_tokens.get(&group).copied().unwrap_or(0) >= budget {
                st.group_tokens.remove(&group);
            }
        }
        was
    }

    /// Tokens used so far by a session (since it started or was last resumed).
    pub fn session_tokens(&self, session: &SessionId) -> u64 {
        self.state()
            .session_tokens
            .get(session)
            .copied()
            .unwrap_or(0)
    }

    /// Binds the per-session socket at `socket_path` and serves it. Every request on it
    /// is attributed to `session` / `group`. The parent directory is created 0700 if
    /// missing, the socket is made 0600, and a stale socket at the path is replaced
    /// (any other kind of file there is an error).
    pub async fn listen(
        self: &Arc<Self>,
        session: SessionId,
        group: AgentGroupId,
        socket_path: &Path,
    ) -> Result<SessionListener, ProxyError> {
        self.state()
            .session_groups
            .insert(session.clone(), group.clone());
        let ident = Ident {
            session: session.clone(),
            group,
        };
        let proxy = Arc::clone(self);
        let router = axum::Router::new().fallback(move |req: Request| {
            let proxy = Arc::clone(&proxy);
            let ident = ident.clone();
            async move { proxy.handle(&ident, req).await }
        });
        server::bind_and_serve(socket_path, router, Some(session)).await
    }

    /// Forgets a session's rate bucket and group mapping (its token count and parked
    /// flag stay, so a relaunch cannot reset a budget).
    pub fn forget_session(&self, session: &SessionId) {
        let mut st = self.state();
        if let Some(b) = st.session_buckets.as_mut() {
            b.forget(session);
        }
        st.session_groups.remove(session);
    }

    /// Serves the daemon's base socket, for host-side checks (`ironctl doctor`, tests)
    /// and the dev unsandboxed runner: `GET /healthz`, and `/mock/…` calls, which are
    /// handled like a session's (caps, budgets, audit) under the reserved identity
    /// [`BASE_SESSION`] / [`BASE_GROUP`] (403 when the mock is not enabled). It never
    /// forwards to a real provider: keys are reachable only through a session's socket.
    pub async fn serve_base(
        self: &Arc<Self>,
        socket_path: &Path,
    ) -> Result<SessionListener, ProxyError> {
        let ident = base_ident()?;
        self.state()
            .session_groups
            .insert(ident.session.clone(), ident.group.clone());
        let proxy = Arc::clone(self);
        let router = axum::Router::new().fallback(move |req: Request| {
            let proxy = Arc::clone(&proxy);
            let ident = ident.clone();
            async move {
                let path = req.uri().path();
                if req.method() == Method::GET && path == "/healthz" {
                    let body = serde_json::json!({
                        "status": "ok",
                        "providers": proxy.providers().iter().map(|p| p.prefix()).collect::<Vec<_>>(),
                    });
                    let mut resp = Response::new(Body::from(body.to_string()));
                    resp.headers_mut().insert(
                        axum::http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    resp
                } else if path == "/mock" || path.starts_with("/mock/") {
                    proxy.handle(&ident, req).await
                } else {
                    error_response(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        "the base model-proxy socket answers GET /healthz and the mock provider only; sessions use their own socket",
                        None,
                    )
                }
            }
        });
        server::bind_and_serve(socket_path, router, None).await
    }

    /// One call from the session's socket.
    pub(crate) async fn handle(self: Arc<Self>, ident: &Ident, req: Request) -> Response {
        let mut call = CallRecord {
            ident: ident.clone(),
            provider: "unknown".to_owned(),
            path: audit_path(req.uri().path()),
            start: Instant::now(),
            request_bytes: 0,
        };
        let (provider, api_path) = match self.admit(ident, &mut call, &req) {
            Ok(x) => x,
            Err(r) => {
                // Closing a connection with request bytes still unread resets it, so a
                // client still writing a long conversation would see a broken pipe
                // instead of this answer (and lose e.g. a 429's "parked" reason). A body
                // within the cap is read and dropped first; an over-cap one is not.
                if r.status != StatusCode::PAYLOAD_TOO_LARGE {
                    let read = self.discard_body(req.into_body()).await;
                    call.request_bytes = call.request_bytes.max(read);
                }
                return self.refuse(&call, r);
            }
        };
        let (parts, body) = req.into_parts();
        let body = match self.read_body(body, &mut call).await {
            Ok(b) => b,
            Err(r) => return self.refuse(&call, r),
        };
        if !provider.name.has_upstream() {
            return self.answer_mock(&call, &body);
        }
        let upstream = match build_upstream_request(&provider, &api_path, &parts.headers, body) {
            Ok(r) => r,
            Err(r) => return self.refuse(&call, r),
        };
        let proxy = Arc::clone(&self);
        let max = self.config.max_response_bytes;
        // One blocking hand-off for the exchange and, for a small complete body, its
        // reading too: each hop between the runtime and a blocking thread costs two
        // context switches, which is most of the proxy's cost under load.
        let sent = tokio::task::spawn_blocking(move || fetch(&proxy.agent, upstream, max)).await;
        let fetched = match sent {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                let (status, code) = match e {
                    ureq::Error::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
                    _ => (StatusCode::BAD_GATEWAY, "upstream_unreachable"),
                };
                let msg = self.redactor.redact(&format!(
                    "provider {} could not be reached: {e}",
                    provider.name
                ));
                return self.refuse(&call, Refusal::new(status, code, msg));
            }
            Err(_) => {
                return self.refuse(
                    &call,
                    Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        "internal",
                        "upstream worker failed",
                    ),
                )
            }
        };
        self.respond(call, fetched).await
    }

    /// The mock provider's call: answered here, after the same admission, size caps and
    /// body read as a forwarded call, and accounted, audited and redacted the same way.
    fn answer_mock(&self, call: &CallRecord, body: &[u8]) -> Response {
        let answer = match mock::answer(body) {
            Ok(a) => a,
            Err(e) => {
                return self.refuse(
                    call,
                    Refusal::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()),
                )
            }
        };
        let n = u64::try_from(answer.body.len()).unwrap_or(u64::MAX);
        let max = self.config.max_response_bytes;
        if n > max {
            return self.refuse(
                call,
                Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    "response_too_large",
                    format!("the mock's response ({n} bytes) exceeds the {max} byte limit"),
                ),
            );
        }
        // The mock echoes what the sandbox sent; redacting keeps the guarantee that no
        // configured key comes back, whatever the prompt contained.
        let out = redact_bytes(&self.redactor, &answer.body);
        self.account(&call.ident, answer.usage);
        self.record(call, StatusCode::OK.as_u16(), n, answer.usage, None);
        let mut resp = Response::new(Body::from(out));
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}
