//! `ironctl status`: the daemon's `/v1/status` for a human. Reads only; `--json` prints
//! the API's JSON as is.

use serde_json::Value;

use crate::doctor::human_duration;
use crate::output::s;

fn num(v: &Value, p: &str) -> u64 {
    v.pointer(p).and_then(Value::as_u64).unwrap_or(0)
}

fn counts(v: Option<&Value>) -> Vec<(String, u64)> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn joined(items: &[(String, u64)]) -> String {
    items
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lines `status` prints, so tests can check them without a terminal.
pub fn render(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = |label: &str, text: String| out.push(format!("{label:<13} {text}"));
    line(
        "daemon",
        format!(
            "ironclaw-controlplane {}, up {} (since {})",
            s(v, "/version"),
            human_duration(num(v, "/uptime_seconds")),
            s(v, "/started_at")
        ),
    );
    if v.pointer("/ready") == Some(&Value::Bool(true)) {
        line("ready", "yes".into());
    } else {
        line("ready", format!("NO: {}", s(v, "/not_ready_reason")));
    }
    line(
        "runtime",
        match v.pointer("/runtime").and_then(Value::as_str) {
            Some("unsandboxed") => "UNSANDBOXED (--dev without runsc)".into(),
            Some(r) => r.to_owned(),
            None => "none (this daemon runs no sessions)".into(),
        },
    );
    for n in v
        .pointer("/notices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        line("notice", n.as_str().unwrap_or_default().to_owned());
    }

    let sessions = counts(v.pointer("/sessions"));
    let total: u64 = sessions.iter().map(|(_, n)| n).sum();
    line(
        "sessions",
        if total == 0 {
            "0".into()
        } else {
            format!("{total} ({})", joined(&sessions))
        },
    );
    let parked: Vec<String> = v
        .pointer("/parked_sessions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let by: Vec<&str> = p
                .pointer("/parked_by")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!(
                "{} (group {}, by {})",
                s(p, "/id"),
                s(p, "/agent_group_id"),
                by.join(" and ")
            )
        })
        .collect();
    if parked.is_empty() {
        line("parked", "none".into());
    } else {
        for p in parked {
            line("parked", format!("{p}; `ironctl session resume ID`"));
        }
    }

    let changes: Vec<(String, u64)> = counts(v.pointer("/changes"))
        .into_iter()
        .filter(|(k, n)| k != "pending" && *n > 0)
        .collect();
    let pending = num(v, "/changes/pending");
    line(
        "changes",
        if changes.is_empty() {
            format!("{pending} pending")
        } else {
            format!("{pending} pending ({})", joined(&changes))
        },
    );

    match v.pointer("/channels").and_then(Value::as_array) {
        None => line("channels", "none".into()),
        Some(chs) => {
            for c in chs {
                let name = if s(c, "/instance") == s(c, "/channel_type") {
                    s(c, "/channel_type")
                } else {
                    format!("{}/{}", s(c, "/channel_type"), s(c, "/instance"))
                };
                let dir = |d: &str| match c.pointer(&format!("/{d}")).and_then(Value::as_str) {
                    Some("on") => format!("{d} on"),
                    _ => format!("{d} off ({})", s(c, &format!("/{d}_off_reason"))),
                };
                line(
                    "channel",
                    format!("{name}: {}; {}", dir("inbound"), dir("outbound")),
                );
            }
        }
    }

    match v.pointer("/model_proxy").filter(|m| !m.is_null()) {
        None => line("model proxy", "none".into()),
        Some(m) => {
            let providers: Vec<&str> = m
                .pointer("/providers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            line(
                "model proxy",
                format!(
                    "providers {}; {} calls, {} refused{}; tokens in {} / out {}",
                    if providers.is_empty() {
                        "NONE".to_owned()
                    } else {
                        providers.join(", ")
                    },
                    num(m, "/calls"),
                    num(m, "/refusals"),
                    {
                        let r = counts(m.pointer("/refusals_by_reason"));
                        if r.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", joined(&r))
                        }
                    },
                    num(m, "/input_tokens"),
                    num(m, "/output_tokens"),
                ),
            );
        }
    }
    line("audit", format!("last seq {}", s(v, "/audit_last_seq")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_every_section() {
        let v = json!({
            "version": "0.1.0",
            "started_at": "2025-01-01T00:00:00.000000000Z",
            "uptime_seconds": 125,
            "ready": false,
            "not_ready_reason": "sessions cannot run: no image",
            "notices": ["dev mode"],
            "runtime": "unsandboxed",
            "changes": {"pending": 2, "approved": 0, "applied": 3, "apply_failed": 0, "rejected": 1},
            "sessions": {"running": 1, "parked": 1},
            "parked_sessions": [{"id": "ses_a", "agent_group_id": "g", "parked_by": ["sweep", "model_proxy"]}],
            "channels": [
                {"channel_type": "web", "instance": "web", "inbound": "on", "inbound_off_reason": null, "outbound": "on", "outbound_off_reason": null},
                {"channel_type": "webhook", "instance": "ci", "inbound": "on", "inbound_off_reason": null, "outbound": "off", "outbound_off_reason": "no url"}
            ],
            "model_proxy": {"providers": ["mock"], "calls": 7, "calls_by_provider": {"mock": {"200": 6, "429": 1}}, "refusals": 1, "refusals_by_reason": {"rate_limited": 1}, "input_tokens": 10, "output_tokens": 20},
            "audit_last_seq": 42
        });
        let text = render(&v).join("\n");
        for want in [
            "ironclaw-controlplane 0.1.0, up 2m5s",
            "NO: sessions cannot run: no image",
            "UNSANDBOXED",
            "notice        dev mode",
            "sessions      2 (parked 1, running 1)",
            "ses_a (group g, by sweep and model_proxy)",
            "2 pending (applied 3, rejected 1)",
            "channel       web: inbound on; outbound on",
            "webhook/ci: inbound on; outbound off (no url)",
            "providers mock; 7 calls, 1 refused (rate_limited 1); tokens in 10 / out 20",
            "last seq 42",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }

    #[test]
    fn renders_a_minimal_status() {
        let text = render(&json!({
            "version": "0.1.0", "uptime_seconds": 1, "ready": true, "runtime": null,
            "changes": {"pending": 0}, "sessions": {}, "parked_sessions": [],
            "channels": null, "model_proxy": null, "audit_last_seq": 0
        }))
        .join("\n");
        for want in [
            "ready         yes",
            "none (this daemon runs no sessions)",
            "sessions      0",
            "parked        none",
            "changes       0 pending",
            "channels      none",
            "model proxy   none",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }
}
