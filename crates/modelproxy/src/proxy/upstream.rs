//! The upstream exchange: the HTTPS client, the provider request (base URL + API path,
//! the forwardable headers, the configured key injected — `x-api-key` for Anthropic,
//! `Authorization: Bearer` for the OpenAI family), and the blocking round trip, which
//! also reads a small complete answer on the same worker thread.
//!
//! What this file is for: talking to the provider. What it is not for: deciding what may
//! be sent ([`super::admission`], [`super::headers`]) or turning the answer into the
//! agent's response ([`super::respond`]).

use axum::http::header::{HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};

use super::headers::{connection_listed, forward_request_header};
use super::refusal::Refusal;
use crate::config::{ProviderConfig, ProviderKind, ProxyConfig};

/// The upstream HTTPS client: no redirects, no proxy, identity encoding only, the
/// configured timeouts, and a pool sized for many sessions calling a few hosts.
pub(super) fn agent(config: &ProxyConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
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
        .into()
}

pub(super) fn build_upstream_request(
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
pub(super) struct BodyShape {
    /// A `content-encoding` other than identity (refused: it cannot be checked).
    pub(super) compressed: bool,
    pub(super) sse: bool,
    pub(super) length: Option<u64>,
}

impl BodyShape {
    pub(super) fn of(h: &HeaderMap) -> Self {
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
    pub(super) fn whole(&self) -> bool {
        !self.compressed && !self.sse && self.length.is_some()
    }
}

/// What the upstream worker brings back.
pub(super) struct Fetched {
    pub(super) parts: ureq::http::response::Parts,
    pub(super) body: FetchedBody,
}

pub(super) enum FetchedBody {
    /// A small complete body, already read (up to the cap) on the worker thread.
    Read(Result<Vec<u8>, ureq::Error>),
    /// A stream, a body of unknown length, or one that will be refused.
    Pending(ureq::Body),
}

/// The upstream exchange (blocking): sends the request and, when the answer is a
/// complete body within `max`, reads it too.
pub(super) fn fetch(
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
