//! The API's one error shape: `{"error": {"code": "...", "message": "..."}}`.

use axum::http::{HeaderValue, StatusCode};
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
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
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
