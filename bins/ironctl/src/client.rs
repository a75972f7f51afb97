//! The HTTP client: one place that knows the address, the token and the error shape.

use std::time::Duration;

use serde_json::Value;

/// Why a command failed; each maps to a documented exit code.
#[derive(Debug)]
pub enum CliError {
    /// The daemon could not be reached (exit 3).
    Unreachable { addr: String, reason: String },
    /// The daemon answered with an error (exit 1).
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// Bad input on our side (exit 2).
    Usage(String),
    /// A local command (`image build`, `image keygen`) failed on this machine for a
    /// reason other than its input, e.g. an I/O error while writing (exit 1, like a
    /// refused request: the operation did not happen).
    Failed(String),
    /// The audit chain is broken (exit 4).
    AuditBroken(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { .. } | CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } => 3,
            CliError::AuditBroken(_) => 4,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Unreachable { addr, reason } => write!(
                f,
                "cannot reach the control plane at {addr}: {reason}\n  is ironclaw-controlplane running? set --addr or IRONCLAW_ADDR to its API address"
            ),
            CliError::Api { status, code, message } => {
                write!(f, "{message} (HTTP {status}, {code})")?;
                match status {
                    401 => write!(f, "\n  set IRONCLAW_API_TOKEN (or --token) to your operator token"),
                    403 => write!(f, "\n  this needs another identity or role; see `ironctl whoami`"),
                    429 => write!(f, "\n  rate limited; wait and retry"),
                    _ => Ok(()),
                }
            }
            CliError::Usage(m) | CliError::Failed(m) => f.write_str(m),
            CliError::AuditBroken(m) => f.write_str(m),
        }
    }
}

pub struct Client {
    agent: ureq::Agent,
    addr: String,
    token: Option<String>,
}

impl Client {
    pub fn new(addr: &str, token: Option<String>) -> Self {
        Self::with_timeout(addr, token, Duration::from_secs(60))
    }

    /// A client whose every request gives up after `timeout` (doctor: a hung daemon is
    /// a finding, not a wait).
    pub fn with_timeout(addr: &str, token: Option<String>, timeout: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            addr: addr.trim_end_matches('/').to_owned(),
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        let mut req = self.agent.get(self.url(path));
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        self.finish(req.call())
    }

    /// [`Client::get`], plus the response's `Date` header (the daemon's clock, for
    /// `doctor`).
    pub fn get_with_date(&self, path: &str) -> Result<(Value, Option<String>), CliError> {
        let mut req = self.agent.get(self.url(path));
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let result = req.call();
        let date = result.as_ref().ok().and_then(|r| {
            r.headers()
                .get("date")
                .and_then(|d| d.to_str().ok())
                .map(str::to_owned)
        });
        self.finish(result).map(|v| (v, date))
    }

    /// The address this client talks to (no trailing slash).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether a token was given.
    pub fn has_token(&self) -> bool {
        self.token.as_deref().is_some_and(|t| !t.is_empty())
    }

    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let url = self.url(path);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match method {
            "DELETE" => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            _ => {
                let mut r = if method == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                match body {
                    Some(b) => r.send_json(b),
                    None => r.send_empty(),
                }
            }
        };
        self.finish(result)
    }

    fn finish(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, CliError> {
        let mut resp = result.map_err(|e| CliError::Unreachable {
            addr: self.addr.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| CliError::Unreachable {
                addr: self.addr.clone(),
                reason: format!("reading the response: {e}"),
            })?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let code = value
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_owned();
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        Err(CliError::Api {
            status,
            code,
            message,
        })
    }
}
