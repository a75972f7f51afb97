//! Accounting: what is recorded about each call. One [`CallRecord`] per call becomes
//! the counters of [`ProxyStats`](super::ProxyStats), a tracing line, and one
//! `ModelCall` audit record, appended in order by a single writer thread.
//!
//! What this file is for: recording a call (answered or refused) and the audit writer.
//! What it is not for: deciding whether a call is allowed ([`super::admission`]) or
//! counting tokens against budgets ([`ModelProxy::account`]); it never sees bodies or
//! keys, only sizes, statuses and token counts.

use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Instant;

use axum::response::Response;
use ironclaw_audit::{AuditEvent, AuditLog};

use super::refusal::Refusal;
use super::{Ident, ModelProxy};
use crate::usage::Usage;
use crate::ProxyError;

pub(super) enum AuditMsg {
    Event(Box<AuditEvent>),
    Flush(std_mpsc::Sender<()>),
}

/// What is recorded about one call.
#[derive(Debug)]
pub(super) struct CallRecord {
    pub(super) ident: Ident,
    pub(super) provider: String,
    pub(super) path: String,
    pub(super) start: Instant,
    pub(super) request_bytes: u64,
}

/// Longest path kept in an audit record (the path comes from the sandbox).
const MAX_AUDIT_PATH: usize = 256;

pub(super) fn audit_path(path: &str) -> String {
    let mut end = path.len().min(MAX_AUDIT_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path[..end].to_owned()
}

/// Starts the one writer thread that appends audit records in order, so that no call
/// waits for an `fsync`; returns the channel to it.
pub(super) fn spawn_writer(audit: Arc<AuditLog>) -> Result<std_mpsc::Sender<AuditMsg>, ProxyError> {
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
    Ok(tx)
}

impl ModelProxy {
    pub(super) fn audit(&self, ev: AuditEvent) {
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

    pub(super) fn record(
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

    pub(super) fn refuse(&self, call: &CallRecord, r: Refusal) -> Response {
        self.record(call, r.status.as_u16(), 0, Usage::default(), Some(r.code));
        r.response()
    }
}
