//! The daemon checks: whether it answers and accepts the operator token (`daemon`), and
//! whether it is ready to run sandboxed sessions (`sandbox image`), from `/healthz` and
//! `/v1/status`. The same request also times the daemon's clock ([`super::clock`]).
//!
//! Not for: what the daemon reports about providers ([`super::provider`]) or the audit
//! chain ([`super::audit`]), which have their own groups.

use std::time::SystemTime;

use serde_json::Value;

use super::clock::ClockFacts;
use super::finding::{fail, not_checked, pass, warn, Check};
use crate::client::{CliError, Client};

/// What the daemon said.
#[derive(Debug, Clone)]
pub enum DaemonFacts {
    /// `/healthz` did not answer.
    Unreachable { addr: String, reason: String },
    /// It answered `/healthz` but `/v1/status` failed (no token, refused token, …).
    Refused {
        addr: String,
        status: u16,
        message: String,
        had_token: bool,
    },
    /// `/v1/status`.
    Up { addr: String, status: Value },
}

impl DaemonFacts {
    pub(super) fn status(&self) -> Option<&Value> {
        match self {
            DaemonFacts::Up { status, .. } => Some(status),
            _ => None,
        }
    }
}

pub fn check_daemon(f: &DaemonFacts) -> Check {
    const N: &str = "daemon";
    match f {
        DaemonFacts::Unreachable { addr, reason } => fail(
            N,
            format!("cannot reach {addr}: {reason}"),
            "start it (systemctl start ironclaw-controlplane), or point --addr / IRONCLAW_ADDR at its API address",
        ),
        DaemonFacts::Refused {
            addr,
            status,
            message,
            had_token,
        } => {
            let fix = if *had_token {
                "the token was refused: set IRONCLAW_API_TOKEN (or --token) to a valid operator token (`ironctl token create` on the owner's side)"
            } else {
                "set IRONCLAW_API_TOKEN (or --token) to your operator token"
            };
            fail(
                N,
                format!("{addr} answers, but /v1/status says HTTP {status}: {message}"),
                fix,
            )
        }
        DaemonFacts::Up { addr, status } => {
            let uptime = status
                .pointer("/uptime_seconds")
                .and_then(Value::as_u64)
                .map(human_duration)
                .unwrap_or_else(|| "?".into());
            let version = status
                .pointer("/version")
                .and_then(Value::as_str)
                .unwrap_or("?");
            pass(
                N,
                format!("ironclaw-controlplane {version} at {addr}, up {uptime}"),
            )
        }
    }
}

/// `3d4h`, `2h5m`, `4m10s`, `12s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

pub fn check_image(status: Option<&Value>) -> Check {
    const N: &str = "sandbox image";
    let Some(s) = status else {
        return not_checked(N);
    };
    if s.pointer("/ready") != Some(&Value::Bool(true)) {
        let reason = s
            .pointer("/not_ready_reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return fail(
            N,
            format!("the daemon is not ready: {reason}"),
            "build and sign the image (`ironctl image build`), start the daemon with --image and --trust-policy, and read its log",
        );
    }
    match s.pointer("/runtime").and_then(Value::as_str) {
        Some("runsc") => pass(
            N,
            "ready: sessions run under runsc from a verified, cached image",
        ),
        Some("unsandboxed") => warn(
            N,
            "sessions run UNSANDBOXED as plain host processes (--dev without runsc)",
            "install runsc (apt-get install -y runsc) and restart the daemon",
        ),
        Some(other) => warn(N, format!("unknown runtime {other}"), "upgrade ironctl"),
        None => warn(
            N,
            "the daemon runs no sessions",
            "start the daemon normally (not API-only)",
        ),
    }
}

pub(super) fn probe_daemon(c: &Client) -> (DaemonFacts, ClockFacts) {
    let before = SystemTime::now();
    let health = c.get_with_date("/healthz");
    let after = SystemTime::now();
    let addr = c.addr().to_owned();
    let date = match health {
        Ok((_, date)) => date,
        Err(CliError::Api { status, .. }) if status != 404 => None,
        Err(e) => {
            let reason = match e {
                CliError::Unreachable { reason, .. } => reason,
                other => other.to_string(),
            };
            return (
                DaemonFacts::Unreachable { addr, reason },
                ClockFacts::Unknown,
            );
        }
    };
    let clock = ClockFacts::Observed {
        date,
        before,
        after,
    };
    let facts = match c.get("/v1/status") {
        Ok(status) => DaemonFacts::Up { addr, status },
        Err(CliError::Api {
            status, message, ..
        }) => DaemonFacts::Refused {
            addr,
            status,
            message,
            had_token: c.has_token(),
        },
        Err(e) => DaemonFacts::Unreachable {
            addr,
            reason: e.to_string(),
        },
    };
    (facts, clock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::level;
    use crate::doctor::finding::Level;
    use serde_json::json;

    #[test]
    fn daemon_branches() {
        let addr = "http://127.0.0.1:8787".to_owned();
        let down = DaemonFacts::Unreachable {
            addr: addr.clone(),
            reason: "connection refused".into(),
        };
        assert_eq!(level(check_daemon(&down)), Level::Fail);
        for had_token in [true, false] {
            let refused = DaemonFacts::Refused {
                addr: addr.clone(),
                status: 401,
                message: "bad token".into(),
                had_token,
            };
            let c = check_daemon(&refused);
            assert_eq!(c.level, Level::Fail);
            assert_eq!(
                c.fix.as_deref().is_some_and(|f| f.contains("refused")),
                had_token
            );
        }
        let up = DaemonFacts::Up {
            addr,
            status: json!({"version": "0.1.0", "uptime_seconds": 3725}),
        };
        let c = check_daemon(&up);
        assert_eq!(level(c.clone()), Level::Pass);
        assert!(
            c.detail.contains("0.1.0") && c.detail.contains("1h2m"),
            "{c:?}"
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(65), "1m5s");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(2 * 86400 + 3600), "2d1h");
    }

    #[test]
    fn image_branches() {
        assert_eq!(level(check_image(None)), Level::Fail);
        let l = |v: Value| level(check_image(Some(&v)));
        assert_eq!(
            l(json!({"ready": false, "not_ready_reason": "sessions cannot run: image"})),
            Level::Fail
        );
        assert_eq!(l(json!({"ready": true, "runtime": "runsc"})), Level::Pass);
        assert_eq!(
            l(json!({"ready": true, "runtime": "unsandboxed"})),
            Level::Warn
        );
        assert_eq!(l(json!({"ready": true, "runtime": null})), Level::Warn);
        assert_eq!(l(json!({"ready": true, "runtime": "kata"})), Level::Warn);
    }
}
