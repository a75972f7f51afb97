//! The outbound HTTP exchange: one POST, a bounded response, redacted errors.
//!
//! For: the adapters' platform calls (Slack `chat.postMessage`, Telegram
//! `sendMessage`/`getUpdates`, the signed webhook POST). Not for: deciding whether
//! to retry (adapters classify a reply into an [`crate::outbound::Attempt`]) or
//! pacing ([`crate::ratelimit`]).
//!
//! Security: the client never follows redirects (a redirect could carry a bot token
//! in a URL, or a signed body, to another host), ignores `HTTP(S)_PROXY` from the
//! environment (credentials go only where the configuration says), reads at most
//! [`MAX_RESPONSE_BODY`] of any answer, and passes every error string through a
//! [`Redactor`] holding the adapter's credentials (a transport error can quote the
//! URL, and Telegram's URL contains the bot token).

use std::io::Read;
use std::time::Duration;

use ironclaw_obs::Redactor;

/// Most of a platform answer that is read (the interesting part is a small JSON object).
pub(crate) const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// Longest `Retry-After` honoured; longer requests are capped (delivery reschedules).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Default per-request timeout (connect + send + answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// A platform's answer.
#[derive(Debug)]
pub(crate) struct HttpReply {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// At most the client's limit ([`MAX_RESPONSE_BODY`] by default) of the body.
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether a non-2xx status is worth retrying: 408, 425, 429 and every 5xx.
    pub fn status_is_transient(&self) -> bool {
        matches!(self.status, 408 | 425 | 429) || self.status >= 500
    }

    /// The body as text for an error message: lossy, trimmed, at most 300 chars.
    pub fn body_excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let t = text.trim();
        let mut out: String = t.chars().take(300).collect();
        if t.chars().count() > 300 {
            out.push('…');
        }
        out
    }
}

pub(crate) struct HttpClient {
    agent: ureq::Agent,
    /// Most of an answer that is read.
    max_body: u64,
    /// Holds the adapter's credentials in clear: never printed (manual `Debug`).
    redactor: Redactor,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpClient { .. }")
    }
}

impl HttpClient {
    /// `secrets`: every credential of the adapter, plus anything else that must not
    /// appear in an error (a webhook URL may embed a token).
    pub fn new(timeout: Duration, secrets: &[&str]) -> Self {
        let mut redactor = Redactor::new();
        for s in secrets {
            redactor.add(*s);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .proxy(None)
            .user_agent("ironclaw-channels")
            .timeout_global(Some(timeout))
            .build()
            .into();
        Self {
            agent,
            redactor,
            max_body: MAX_RESPONSE_BODY,
        }
    }

    /// Reads answers up to `max_body` bytes instead of [`MAX_RESPONSE_BODY`]: for the
    /// calls whose answer is data rather than a small status object (`getUpdates`).
    pub fn with_max_body(mut self, max_body: u64) -> Self {
        self.max_body = max_body;
        self
    }

    /// `text` with the adapter's credentials replaced.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// POSTs `body` as JSON. `Err` is a transport failure (no answer), already redacted.
    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpReply, String> {
        let mut req = self
            .agent
            .post(url)
            .content_type("application/json; charset=utf-8");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let result = req.send(body);
        self.finish(result)
    }

    fn finish(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<HttpReply, String> {
        let mut resp = result.map_err(|e| self.redact(&e.to_string()))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = Vec::new();
        // A body that cannot be read to the end still leaves the status, which is what
        // classification needs; the partial body is kept for the error text.
        let _ = resp
            .body_mut()
            .as_reader()
            .take(self.max_body)
            .read_to_end(&mut body);
        Ok(HttpReply {
            status,
            retry_after,
            body,
        })
    }
}

/// `Retry-After` as delta-seconds (the form Slack and Telegram send), capped at
/// [`MAX_RETRY_AFTER`]. An HTTP-date or garbage gives `None` (the caller backs off).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = v.parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Checks an API base URL or webhook target: `https://`, or `http://` to a loopback
/// host only (tests and a local relay; anything else would put tokens and signed
/// bodies on the wire in clear).
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".into());
    }
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("must start with https:// (or http:// to a loopback host)".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains('@') {
        return Err("must not contain credentials (user@host)".into());
    }
    if !https {
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.split(':').next().unwrap_or(""),
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err("plain http:// is only allowed to a loopback host; use https://".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_only() {
        assert_eq!(parse_retry_after("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("999999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(""), None);
    }

    #[test]
    fn urls() {
        for ok in [
            "https://slack.com/api",
            "https://hooks.example.org/in?x=1&mail=a@b.org",
            "http://127.0.0.1:8080/hook",
            "http://localhost/x",
            "http://[::1]:9/x",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.org/hook",
            "ftp://x",
            "https://",
            "https:///path",
            "https://user:pw@example.org/",
            "http://127.0.0.1.evil.org/",
            "https://exa mple.org",
            "example.org",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
