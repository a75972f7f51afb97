//! Admission and budgets: everything decided before the body is read — the provider
//! named by the path, `POST` only, the allowed API paths, no query string, a parked
//! session, an exhausted token budget, the session and group rate caps, the declared
//! size — and, after a call, counting its tokens and parking the session when a budget
//! is reached.
//!
//! What this file is for: the allow/refuse decision and the budget bookkeeping. What it
//! is not for: reading the body ([`super::body`]), filtering headers
//! ([`super::headers`]), or the token-bucket arithmetic itself ([`crate::limits`]).

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use ironclaw_audit::AuditEvent;
use ironclaw_contract::ids::SessionId;

use super::accounting::{audit_path, CallRecord};
use super::refusal::Refusal;
use super::{Ident, ModelProxy};
use crate::config::{ProviderConfig, ProviderKind};
use crate::limits::retry_after_secs;
use crate::usage::Usage;

impl ModelProxy {
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
    pub(super) fn account(&self, ident: &Ident, usage: Usage) {
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
    pub(super) fn admit(
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

    pub(super) fn too_large(&self, len: u64) -> Refusal {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "request body of {len} bytes exceeds the {} byte limit",
                self.config.max_request_bytes
            ),
        )
    }
}
