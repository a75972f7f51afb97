//! The proxy itself: admission, forwarding, accounting.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::Path;
use std::pin::Pin;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use ironclaw_audit::{AuditEvent, AuditLog};
use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_obs::Redactor;
use serde::Serialize;

use crate::config::{ProviderConfig, ProviderKind, ProxyConfig};
use crate::limits::{retry_after_secs, Buckets};
use crate::mock;
use crate::redact::{redact_bytes, StreamRedactor};
use crate::server::{self, SessionListener};
use crate::usage::{SseUsage, Usage};
use crate::ProxyError;

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

enum AuditMsg {
    Event(Box<AuditEvent>),
    Flush(std_mpsc::Sender<()>),
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

/// A refusal or failure produced by the proxy itself (not by the provider).
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn response(&self) -> Response {
        error_response(self.status, self.code, &self.message, self.retry_after)
    }
}

/// The JSON error body every refusal carries:
/// `{"error":{"type":"ironclaw_proxy","code":…,"message":…}}`.
pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let body = serde_json::json!({
        "error": {"type": "ironclaw_proxy", "code": code, "message": message}
    });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// What is recorded about one call.
#[derive(Debug)]
struct CallRecord {
    ident: Ident,
    provider: String,
    path: String,
    start: Instant,
    request_bytes: u64,
}

/// How long a refused call's body is read (and dropped) before the refusal is sent
/// regardless.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Longest path kept in an audit record (the path comes from the sandbox).
const MAX_AUDIT_PATH: usize = 256;

fn audit_path(path: &str) -> String {
    let mut end = path.len().min(MAX_AUDIT_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path[..end].to_owned()
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
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .proxy(None)
            .user_agent("ironclaw-modelproxy")
            // Bodies must arrive uncompressed to be checked for keys.
            .accept_encoding("identity")
            .timeout_connect(Some(config.connect_timeout))
            .timeout_per_read(Some(config.read_timeout))
            // Many sessions call the same few hosts at once; ureq's default of 3 idle
            // connections per host would make most calls pay a new TCP + TLS handshake.
            .max_idle_connections(64)
            .max_idle_connections_per_host(32)
            .build()
            .into();
        let (tx, rx) = std_mpsc::channel::<AuditMsg>();
        std::thread::Builder::new()
            .name("modelproxy-audit".into())
            .spawn(move || {
                while let Ok(msg) = rx.recv() {
                    match msg {
                        AuditMsg::Event(ev) => {
                            if let Err(e) = audit.append(*ev) {
                                tracing::error!(error = %e, "model proxy: audit append failed");
                            }
                        }
                        AuditMsg::Flush(ack) => {
                            let _ = ack.send(());
                        }
                    }
                }
            })
            .map_err(ProxyError::AuditThread)?;
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

    fn audit(&self, ev: AuditEvent) {
        let tx = self.audit_tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.send(AuditMsg::Event(Box::new(ev))).is_err() {
            tracing::error!("model proxy: audit writer thread is gone");
        }
    }

    /// Blocks until every audit record queued so far has been appended (and synced).
    pub fn flush_audit(&self) {
        let (ack_tx, ack_rx) = std_mpsc::channel();
        let sent = {
            let tx = self.audit_tx.lock().unwrap_or_else(|p| p.into_inner());
            tx.send(AuditMsg::Flush(ack_tx)).is_ok()
        };
        if sent {
            let _ = ack_rx.recv();
        }
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

    fn record(
        &self,
        call: &CallRecord,
        status: u16,
        response_bytes: u64,
        usage: Usage,
        refusal: Option<&str>,
    ) {
        let duration_ms = u64::try_from(call.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        {
            let mut st = self.state();
            let s = &mut st.stats;
            *s.calls
                .entry(call.provider.clone())
                .or_default()
                .entry(status)
                .or_default() += 1;
            if let Some(code) = refusal {
                *s.refusals.entry(code.to_owned()).or_default() += 1;
            }
            s.input_tokens = s.input_tokens.saturating_add(usage.input);
            s.output_tokens = s.output_tokens.saturating_add(usage.output);
            s.request_bytes = s.request_bytes.saturating_add(call.request_bytes);
            s.response_bytes = s.response_bytes.saturating_add(response_bytes);
        }
        tracing::info!(
            session = %call.ident.session,
            group = %call.ident.group,
            provider = %call.provider,
            path = %call.path,
            status,
            refusal = refusal.unwrap_or(""),
            input_tokens = usage.input,
            output_tokens = usage.output,
            duration_ms,
            "model call"
        );
        self.audit(AuditEvent::ModelCall {
            session_id: call.ident.session.clone(),
            agent_group_id: call.ident.group.clone(),
            provider: call.provider.clone(),
            path: call.path.clone(),
            status,
            request_bytes: call.request_bytes,
            response_bytes,
            input_tokens: usage.input,
            output_tokens: usage.output,
            duration_ms,
        });
    }

    fn refuse(&self, call: &CallRecord, r: Refusal) -> Response {
        self.record(call, r.status.as_u16(), 0, Usage::default(), Some(r.code));
        r.response()
    }

    /// Parks `session` (idempotent); audits and calls the hook on the first park.
    fn park(&self, session: &SessionId, reason: &str) {
        let newly = {
            let mut st = self.state();
            if st.parked.contains_key(session) {
                false
            } else {
                st.parked.insert(session.clone(), reason.to_owned());
                true
            }
        };
        if newly {
            tracing::warn!(session = %session, reason, "model proxy: session parked");
            self.audit(AuditEvent::SessionParked {
                session_id: session.clone(),
                reason: reason.to_owned(),
            });
            if let Some(hook) = &self.config.on_park {
                hook(session);
            }
        }
    }

    /// Which budget, if any, is exhausted for this caller.
    fn budget_exhausted(&self, ident: &Ident) -> Option<String> {
        let st = self.state();
        if let Some(b) = self.config.session_token_budget {
            let used = st.session_tokens.get(&ident.session).copied().unwrap_or(0);
            if used >= b {
                return Some(format!(
                    "session token budget reached ({used} of {b} tokens)"
                ));
            }
        }
        if let Some(b) = self.config.group_token_budget {
            let used = st.group_tokens.get(&ident.group).copied().unwrap_or(0);
            if used >= b {
                return Some(format!(
                    "agent group {} token budget reached ({used} of {b} tokens)",
                    ident.group
                ));
            }
        }
        None
    }

    /// Adds a call's tokens; parks the session when a budget is reached.
    fn account(&self, ident: &Ident, usage: Usage) {
        if usage.total() > 0 {
            let mut st = self.state();
            let s = st.session_tokens.entry(ident.session.clone()).or_default();
            *s = s.saturating_add(usage.total());
            let g = st.group_tokens.entry(ident.group.clone()).or_default();
            *g = g.saturating_add(usage.total());
        }
        if let Some(reason) = self.budget_exhausted(ident) {
            self.park(&ident.session, &reason);
        }
    }

    /// Checks everything that needs no body: route, method, path, parking, budgets,
    /// rate caps, declared size.
    fn admit(
        &self,
        ident: &Ident,
        call: &mut CallRecord,
        req: &Request,
    ) -> Result<(ProviderConfig, String), Refusal> {
        let path = req.uri().path();
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let (prefix, rest) = match trimmed.find('/') {
            Some(i) => (&trimmed[..i], &trimmed[i..]),
            None => (trimmed, ""),
        };
        let Some(kind) = ProviderKind::from_prefix(prefix) else {
            let known: Vec<_> = ProviderKind::ALL.iter().map(|k| k.prefix()).collect();
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "unknown_provider",
                format!(
                    "unknown provider in path {:?}; the first path segment names the provider, one of: {}",
                    audit_path(path),
                    known.join(", ")
                ),
            ));
        };
        call.provider = kind.prefix().to_owned();
        call.path = audit_path(rest);
        let Some(provider) = self.config.provider(kind) else {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "provider_not_configured",
                format!("provider {kind} is not configured on this host (no key / base URL); enabled: {}", {
                    let p: Vec<_> = self.providers().iter().map(|k| k.prefix()).collect();
                    if p.is_empty() { "none".to_owned() } else { p.join(", ") }
                }),
            ));
        };
        if req.method() != Method::POST {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "method_not_allowed",
                format!("only POST is forwarded, not {}", req.method()),
            ));
        }
        if !kind.allowed_paths().contains(&rest) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "path_not_allowed",
                format!(
                    "path {:?} is not forwarded for {kind}; allowed: {}",
                    call.path,
                    kind.allowed_paths().join(", ")
                ),
            ));
        }
        if req.uri().query().is_some() {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "query_not_allowed",
                "query strings are not forwarded",
            ));
        }
        if let Some(reason) = self.state().parked.get(&ident.session).cloned() {
            return Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "session_parked",
                format!("this session is parked ({reason}); an operator must resume it"),
            ));
        }
        if let Some(reason) = self.budget_exhausted(ident) {
            self.park(&ident.session, &reason);
            return Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "budget_exhausted",
                format!("{reason}; this session is parked until an operator resumes it"),
            ));
        }
        {
            let now = Instant::now();
            let mut st = self.state();
            let st = &mut *st;
            let mut wait: Option<(Duration, &str)> = None;
            if let Some(b) = st.session_buckets.as_mut() {
                if let Err(d) = b.check(&ident.session, now) {
                    wait = Some((d, "session"));
                }
            }
            if wait.is_none() {
                if let Some(b) = st.group_buckets.as_mut() {
                    if let Err(d) = b.check(&ident.group, now) {
                        wait = Some((d, "agent group"));
                    }
                }
            }
            if let Some((d, scope)) = wait {
                let secs = retry_after_secs(d);
                return Err(Refusal {
                    retry_after: Some(secs),
                    ..Refusal::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        format!("{scope} request rate cap reached; retry after {secs} s"),
                    )
                });
            }
            if let Some(b) = st.session_buckets.as_mut() {
                b.take(&ident.session, now);
            }
            if let Some(b) = st.group_buckets.as_mut() {
                b.take(&ident.group, now);
            }
        }
        if let Some(len) = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            call.request_bytes = len;
            if len > self.config.max_request_bytes {
                return Err(self.too_large(len));
            }
        }
        Ok((provider.clone(), rest.to_owned()))
    }

    fn too_large(&self, len: u64) -> Refusal {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "request body of {len} bytes exceeds the {} byte limit",
                self.config.max_request_bytes
            ),
        )
    }

    /// Reads the request body, refusing it as soon as it passes the cap.
    async fn read_body(&self, body: Body, call: &mut CallRecord) -> Result<Vec<u8>, Refusal> {
        use http_body::Body as _;
        let max = self.config.max_request_bytes;
        let mut body = body;
        let mut buf = Vec::new();
        loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
            match frame {
                None => break,
                Some(Ok(f)) => {
                    if let Some(data) = f.data_ref() {
                        let len = u64::try_from(buf.len() + data.len()).unwrap_or(u64::MAX);
                        if len > max {
                            call.request_bytes = len;
                            return Err(self.too_large(len));
                        }
                        buf.extend_from_slice(data);
                    }
                }
                Some(Err(e)) => {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        format!("cannot read the request body: {e}"),
                    ))
                }
            }
        }
        call.request_bytes = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        Ok(buf)
    }

    /// Reads and drops a refused call's body, up to the request cap and for at most
    /// [`DISCARD_TIMEOUT`]; returns the bytes read.
    async fn discard_body(&self, body: Body) -> u64 {
        use http_body::Body as _;
        let max = self.config.max_request_bytes;
        let mut body = body;
        let mut read: u64 = 0;
        let drain = async {
            while read <= max {
                match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                    Some(Ok(f)) => {
                        if let Some(data) = f.data_ref() {
                            read = read.saturating_add(data.len() as u64);
                        }
                    }
                    None | Some(Err(_)) => break,
                }
            }
        };
        let _ = tokio::time::timeout(DISCARD_TIMEOUT, drain).await;
        read
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

    async fn respond(self: Arc<Self>, call: CallRecord, fetched: Fetched) -> Response {
        let Fetched { parts, body } = fetched;
        let status = parts.status;
        let shape = BodyShape::of(&parts.headers);
        if shape.compressed {
            return self.refuse(
                &call,
                Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_compressed",
                    "the provider sent a compressed body, which the proxy cannot check for keys",
                ),
            );
        }
        let max = self.config.max_response_bytes;
        let headers = self.response_headers(&parts.headers);
        let too_large = |n: u64| {
            Refusal::new(
                StatusCode::BAD_GATEWAY,
                "response_too_large",
                format!("the provider's response ({n} bytes or more) exceeds the {max} byte limit"),
            )
        };
        if let Some(n) = shape.length {
            if n > max {
                return self.refuse(&call, too_large(n));
            }
        }
        let body = match body {
            FetchedBody::Read(read) => Ok(read),
            FetchedBody::Pending(body) if shape.whole() => {
                tokio::task::spawn_blocking(move || {
                    body.into_with_config().limit(max).read_to_vec()
                })
                .await
            }
            FetchedBody::Pending(body) => {
                // Streaming (SSE, or a body of unknown length): chunk by chunk.
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(16);
                let proxy = Arc::clone(&self);
                let status_code = status.as_u16();
                let is_sse = shape.sse;
                tokio::task::spawn_blocking(move || {
                    proxy.pump(call, status_code, is_sse, body, tx)
                });
                let mut resp = Response::new(Body::new(ChannelBody { rx }));
                *resp.status_mut() = status;
                *resp.headers_mut() = headers;
                return resp;
            }
        };
        // Small, complete JSON: buffered, redacted, accounted, answered with a length.
        let bytes = match body {
            Ok(Ok(b)) => b,
            Ok(Err(ureq::Error::BodyExceedsLimit(_))) => {
                return self.refuse(&call, too_large(max.saturating_add(1)))
            }
            Ok(Err(e)) => {
                let code = if matches!(e, ureq::Error::Timeout(_)) {
                    (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
                } else {
                    (StatusCode::BAD_GATEWAY, "upstream_read_failed")
                };
                let msg = self
                    .redactor
                    .redact(&format!("reading the provider's response failed: {e}"));
                return self.refuse(&call, Refusal::new(code.0, code.1, msg));
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
        let usage = Usage::from_body(&bytes);
        let n = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let out = redact_bytes(&self.redactor, &bytes);
        self.account(&call.ident, usage);
        self.record(&call, status.as_u16(), n, usage, None);
        let mut resp = Response::new(Body::from(out));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }

    /// Copies an upstream body to the agent (blocking thread). Cuts the stream when the
    /// cap is passed or the provider fails; accounts and audits before the agent sees
    /// the end of the body.
    fn pump(
        &self,
        call: CallRecord,
        status: u16,
        is_sse: bool,
        body: ureq::Body,
        tx: tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>,
    ) {
        let max = self.config.max_response_bytes;
        let mut reader = body.into_reader();
        let mut buf = vec![0u8; 16 * 1024];
        let mut total: u64 = 0;
        let mut sse = SseUsage::default();
        let mut whole = Vec::new();
        let mut red = StreamRedactor::new(self.redactor.clone(), self.keys.clone());
        let mut failure: Option<(&'static str, String)> = None;
        let mut client_gone = false;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failure = Some((
                        "upstream_read_failed",
                        format!("provider stream failed: {e}"),
                    ));
                    break;
                }
            };
            total = total.saturating_add(n as u64);
            if total > max {
                failure = Some((
                    "response_too_large",
                    format!("the provider's response exceeded the {max} byte limit; cut"),
                ));
                break;
            }
            let chunk = &buf[..n];
            if is_sse {
                sse.push(chunk);
            } else {
                whole.extend_from_slice(chunk);
            }
            let out = red.push(chunk);
            if !out.is_empty() && tx.blocking_send(Ok(Bytes::from(out))).is_err() {
                client_gone = true;
                break;
            }
        }
        let usage = if is_sse {
            sse.usage
        } else {
            Usage::from_body(&whole)
        };
        self.account(&call.ident, usage);
        match failure {
            None => {
                let tail = red.finish();
                if !client_gone && !tail.is_empty() {
                    let _ = tx.blocking_send(Ok(Bytes::from(tail)));
                }
                self.record(&call, status, total, usage, None);
            }
            Some((code, msg)) => {
                tracing::warn!(session = %call.ident.session, code, "model proxy: response cut");
                self.record(
                    &call,
                    StatusCode::BAD_GATEWAY.as_u16(),
                    total,
                    usage,
                    Some(code),
                );
                let _ = tx.blocking_send(Err(io::Error::other(self.redactor.redact(&msg))));
            }
        }
        drop(tx);
    }

    /// Response headers passed to the agent: no hop-by-hop, no credentials or cookies,
    /// no length (recomputed), and key values redacted.
    fn response_headers(&self, upstream: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        let conn_listed = connection_listed(upstream);
        for (name, value) in upstream {
            let n = name.as_str();
            if HOP_BY_HOP.contains(&n)
                || conn_listed.iter().any(|c| c == n)
                || matches!(
                    n,
                    "content-length"
                        | "content-encoding"
                        | "set-cookie"
                        | "set-cookie2"
                        | "authorization"
                        | "proxy-authorization"
                        | "proxy-authenticate"
                        | "x-api-key"
                        | "api-key"
                )
            {
                continue;
            }
            let value = match value.to_str() {
                Ok(s) if !self.redactor.is_empty() => {
                    match HeaderValue::from_str(&self.redactor.redact(s)) {
                        Ok(v) => v,
                        Err(_) => continue,
                    }
                }
                Ok(_) => value.clone(),
                // Not text: cannot be checked for a key, so it is not passed on.
                Err(_) => continue,
            };
            out.append(name.clone(), value);
        }
        out
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn connection_listed(h: &HeaderMap) -> Vec<String> {
    h.get_all(axum::http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether an incoming (sandbox) header may be forwarded upstream. Credentials of any
/// provider's style, cookies, hop-by-hop and proxy/forwarding headers are dropped; so
/// is anything whose name merely looks like a credential (fail closed).
pub(crate) fn forward_request_header(name: &str) -> bool {
    const DROP: &[&str] = &[
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "cookie",
        "cookie2",
        "host",
        "content-length",
        "expect",
        "accept-encoding",
        "forwarded",
        "via",
    ];
    const LOOKS_SECRET: &[&str] = &[
        "auth",
        "key",
        "token",
        "secret",
        "cookie",
        "session",
        "password",
        "credential",
    ];
    !(DROP.contains(&name)
        || HOP_BY_HOP.contains(&name)
        || name.starts_with("x-amz-")
        || name.starts_with("x-forwarded-")
        || name.starts_with("x-ironclaw-")
        || LOOKS_SECRET.iter().any(|w| name.contains(w)))
}

fn build_upstream_request(
    provider: &ProviderConfig,
    api_path: &str,
    incoming: &HeaderMap,
    body: Vec<u8>,
) -> Result<ureq::http::Request<Vec<u8>>, Refusal> {
    let url = format!("{}{}", provider.base_url, api_path);
    let mut builder = ureq::http::Request::builder().method(Method::POST).uri(url);
    let conn_listed = connection_listed(incoming);
    let mut have_version = false;
    for (name, value) in incoming {
        let n = name.as_str();
        if !forward_request_header(n) || conn_listed.iter().any(|c| c == n) {
            continue;
        }
        have_version |= n == "anthropic-version";
        builder = builder.header(name.clone(), value.clone());
    }
    let bad_key = || {
        Refusal::new(
            StatusCode::BAD_GATEWAY,
            "provider_misconfigured",
            format!(
                "the configured key for {} is not a valid header value",
                provider.name
            ),
        )
    };
    match provider.name {
        ProviderKind::Anthropic => {
            if let Some(key) = &provider.api_key {
                let mut v = HeaderValue::from_str(key.expose()).map_err(|_| bad_key())?;
                v.set_sensitive(true);
                builder = builder.header(HeaderName::from_static("x-api-key"), v);
            }
            if !have_version {
                builder = builder.header("anthropic-version", "2023-06-01");
            }
        }
        _ => {
            if let Some(key) = &provider.api_key {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                    .map_err(|_| bad_key())?;
                v.set_sensitive(true);
                builder = builder.header(axum::http::header::AUTHORIZATION, v);
            }
        }
    }
    builder.body(body).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_GATEWAY,
            "provider_misconfigured",
            format!("cannot build the request for {}: {e}", provider.name),
        )
    })
}

/// How an upstream response body is framed, from its headers.
struct BodyShape {
    /// A `content-encoding` other than identity (refused: it cannot be checked).
    compressed: bool,
    sse: bool,
    length: Option<u64>,
}

impl BodyShape {
    fn of(h: &HeaderMap) -> Self {
        Self {
            compressed: h
                .get(axum::http::header::CONTENT_ENCODING)
                .is_some_and(|enc| !enc.as_bytes().eq_ignore_ascii_case(b"identity")),
            sse: h
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("text/event-stream")),
            length: h
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok()),
        }
    }

    /// A complete body of known length that is buffered rather than streamed.
    fn whole(&self) -> bool {
        !self.compressed && !self.sse && self.length.is_some()
    }
}

/// What the upstream worker brings back.
struct Fetched {
    parts: ureq::http::response::Parts,
    body: FetchedBody,
}

enum FetchedBody {
    /// A small complete body, already read (up to the cap) on the worker thread.
    Read(Result<Vec<u8>, ureq::Error>),
    /// A stream, a body of unknown length, or one that will be refused.
    Pending(ureq::Body),
}

/// The upstream exchange (blocking): sends the request and, when the answer is a
/// complete body within `max`, reads it too.
fn fetch(
    agent: &ureq::Agent,
    req: ureq::http::Request<Vec<u8>>,
    max: u64,
) -> Result<Fetched, ureq::Error> {
    let (parts, body) = agent.run(req)?.into_parts();
    let shape = BodyShape::of(&parts.headers);
    let body = if shape.whole() && shape.length.is_some_and(|n| n <= max) {
        FetchedBody::Read(body.into_with_config().limit(max).read_to_vec())
    } else {
        FetchedBody::Pending(body)
    };
    Ok(Fetched { parts, body })
}

/// A response body fed by the pump thread.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_headers_are_never_forwarded() {
        for h in [
            "authorization",
            "x-api-key",
            "api-key",
            "x-goog-api-key",
            "x-amz-security-token",
            "x-amz-date",
            "proxy-authorization",
            "cookie",
            "connection",
            "transfer-encoding",
            "x-ironclaw-session",
            "openai-api-key",
            "x-auth-token",
            "host",
        ] {
            assert!(!forward_request_header(h), "{h}");
        }
        for h in [
            "content-type",
            "anthropic-version",
            "anthropic-beta",
            "accept",
        ] {
            assert!(forward_request_header(h), "{h}");
        }
    }
}
