//! Header policy, in both directions: which of the sandbox's request headers may be
//! forwarded (credentials of any provider's style, cookies, hop-by-hop and forwarding
//! headers never are), and which of the provider's response headers reach the agent
//! (no hop-by-hop, credentials or cookies, no length, key values redacted).
//!
//! What this file is for: the allow and drop rules. What it is not for: injecting the
//! configured key ([`super::upstream`]) or redacting bodies ([`crate::redact`]).

use axum::http::header::{HeaderMap, HeaderValue};

use super::ModelProxy;

impl ModelProxy {
    /// Response headers passed to the agent: no hop-by-hop, no credentials or cookies,
    /// no length (recomputed), and key values redacted.
    pub(super) fn response_headers(&self, upstream: &HeaderMap) -> HeaderMap {
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

pub(super) fn connection_listed(h: &HeaderMap) -> Vec<String> {
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
