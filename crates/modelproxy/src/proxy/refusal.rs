//! The proxy's own refusals and failures, and the JSON error body they carry:
//! `{"error":{"type":"ironclaw_proxy","code":…,"message":…}}` (with `Retry-After` when
//! a rate cap answers).
//!
//! What this file is for: the shape of a refusal. What it is not for: deciding to
//! refuse (each step does) or recording it ([`ModelProxy::refuse`](super::ModelProxy)).
//! Errors a provider returns are passed through as they are, not rewritten here.

use axum::body::Body;
use axum::http::header::HeaderValue;
use axum::http::StatusCode;
use axum::response::Response;

/// A refusal or failure produced by the proxy itself (not by the provider).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    pub(super) retry_after: Option<u64>,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(super) fn response(&self) -> Response {
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
