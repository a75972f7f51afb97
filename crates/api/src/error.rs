//! The API's one error shape: `{"error": {"code": "...", "message": "..."}}`.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ironclaw_gateway::GatewayError;
use ironclaw_registry::RegistryError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>; ironctl reads IRONCLAW_API_TOKEN)",
        )
    }
    /// A failure of the daemon itself (500) — except a full disk under the state dir,
    /// which is the operator's to fix and passes: 507 `insufficient_storage`.
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        if is_disk_full(&message) {
            return Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                format!("{message}: the disk under the state dir is full: free space there; the daemon recovers by itself"),
            );
        }
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

/// Whether an error (as the stores and the audit log word it) is a full disk: SQLite's
/// `SQLITE_FULL`, or `ENOSPC`/`EDQUOT` from the OS.
fn is_disk_full(message: &str) -> bool {
    [
        "database or disk is full",
        "No space left on device",
        "os error 28)",
        "Disk quota exceeded",
        "os error 122)",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let message = e.to_string();
        match e {
            GatewayError::Invalid(_) | GatewayError::UnknownGroup(_) => Self::bad_request(message),
            GatewayError::NotFound(_) => Self::not_found(message),
            GatewayError::WrongState { .. } => Self::new(StatusCode::CONFLICT, "conflict", message),
            GatewayError::Forbidden(_) => Self::forbidden(message),
            GatewayError::Audit(_) | GatewayError::Store(_) | GatewayError::Registry(_) => {
                tracing::error!(error = %message, "gateway failure");
                Self::internal(message)
            }
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let message = e.to_string();
        match e {
            RegistryError::NotFound { .. } => Self::not_found(message),
            RegistryError::Invalid { .. } | RegistryError::AlreadyExists { .. } => {
                Self::bad_request(message)
            }
            _ => {
                tracing::error!(error = %message, "registry failure");
                Self::internal(message)
            }
        }
    }
}

/// Rewrites any error response that is not already JSON (extractor rejections from
/// axum, 405, the timeout layer's 408) into the API's error shape, keeping its status
/// and headers, so clients only ever parse one error format.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "error",
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}
