//! Request hardening: per-client rate limit, header and body size limits.
//!
//! Every limit answers with the API's JSON error and the status a client can act on:
//! 429 with `Retry-After`, 431, 413. `/healthz` and `/readyz` are exempt from the rate
//! limit so that a load balancer's probes never starve (and never count).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::ApiState;

/// Hardening settings (all on by default; see the daemon's flags).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    /// Sustained requests per second per client; 0 disables the limit.
    pub rate_limit_rps: f64,
    pub rate_limit_burst: u32,
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            rate_limit_rps: 50.0,
            rate_limit_burst: 100,
            request_timeout: Duration::from_secs(30),
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// One token bucket per client address.
pub struct RateLimiter {
    rps: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// Buckets idle this long are full again and can be forgotten.
const IDLE_FORGET: Duration = Duration::from_secs(300);

impl RateLimiter {
    pub fn new(rps: f64, burst: u32) -> Self {
        Self {
            rps,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` to proceed, or `Err(seconds)` to wait before the next request.
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        if self.rps <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now.duration_since(b.last) < IDLE_FORGET);
        }
        let b = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * self.rps).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.rps).ceil().max(1.0) as u64)
        }
    }
}

fn exempt(path: &str) -> bool {
    path == "/healthz" || path == "/readyz"
}

/// Rate limit, then header and declared-body limits, before anything else runs.
pub async fn guard(
    State(state): State<ApiState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !exempt(req.uri().path()) {
        let client = req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if let Err(wait) = state.inner.rate_limiter.check(client) {
            state.inner.metrics.rate_limited();
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry in {wait}s"),
            );
            e.retry_after = Some(wait);
            return Err(e);
        }
    }
    let limits = &state.inner.limits;
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().to_string().len();
    if header_bytes > limits.max_header_bytes {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "request headers are {header_bytes} bytes; the limit is {}",
                limits.max_header_bytes
            ),
        ));
    }
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(body_too_large(limits.max_body_bytes));
    }
    Ok(next.run(req).await)
}

fn body_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body exceeds {limit} bytes"),
    )
}

/// A JSON body, read within the body limit, with the API's error shape on failure.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &ApiState) -> Result<Self, ApiError> {
        let limit = state.inner.limits.max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| body_too_large(limit))?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "request body is empty; send a JSON object",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_after_burst_and_names_the_wait() {
        let rl = RateLimiter::new(1.0, 3);
        let ip = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..3 {
            assert!(rl.check(ip).is_ok());
        }
        assert_eq!(rl.check(ip), Err(1));
        // Another client has its own bucket.
        assert!(rl.check(IpAddr::from([127, 0, 0, 2])).is_ok());
        assert!(RateLimiter::new(0.0, 1).check(ip).is_ok());
    }
}
