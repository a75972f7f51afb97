//! Prometheus text exposition of the API's and the gateway's counters.
//!
//! The format is small and fixed (`# HELP`, `# TYPE`, `name{labels} value`), so it is
//! written here directly rather than through a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ironclaw_gateway::GatewayStats;

use crate::ApiState;

#[derive(Default)]
pub struct Metrics {
    /// (method, route template, status) → count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    rate_limited: AtomicU64,
}

impl Metrics {
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    fn record(&self, method: &str, route: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((method.to_owned(), route.to_owned(), status))
            .or_insert(0) += 1;
    }

    /// Renders every counter. `gateway` supplies the change counters.
    pub fn render(&self, gateway: &GatewayStats) -> String {
        let mut out = String::new();
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut out,
            "ironclaw_changes_submitted_total",
            "Change requests accepted by the gateway.",
            &[((), g(&gateway.submitted))],
        );
        header(
            &mut out,
            "ironclaw_change_decisions_total",
            "Decisions on change requests, by outcome and decider.",
        );
        for (outcome, by, v) in [
            ("approve", "human", g(&gateway.approved)),
            ("reject", "human", g(&gateway.rejected)),
            ("reject", "verifier", g(&gateway.verifier_rejected)),
        ] {
            let _ = writeln!(
                out,
                "ironclaw_change_decisions_total{{outcome=\"{outcome}\",by=\"{by}\"}} {v}"
            );
        }
        counter(
            &mut out,
            "ironclaw_change_decisions_refused_total",
            "Decision attempts refused (self-approval, role, sandbox principal).",
            &[((), g(&gateway.refused))],
        );
        counter(
            &mut out,
            "ironclaw_change_applies_total",
            "Approved changes applied.",
            &[((), g(&gateway.applied))],
        );
        counter(
            &mut out,
            "ironclaw_change_apply_failures_total",
            "Approved changes whose apply failed.",
            &[((), g(&gateway.apply_failed))],
        );
        counter(
            &mut out,
            "ironclaw_api_rate_limited_total",
            "Requests refused by the per-client rate limit.",
            &[((), self.rate_limited.load(Ordering::Relaxed))],
        );
        header(
            &mut out,
            "ironclaw_api_requests_total",
            "API requests by method, route and status.",
        );
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((method, route, status), v) in m.iter() {
            let _ = writeln!(
                out,
                "ironclaw_api_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {v}",
                escape(method),
                escape(route)
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
}

fn counter(out: &mut String, name: &str, help: &str, values: &[((), u64)]) {
    header(out, name, help);
    for (_, v) in values {
        let _ = writeln!(out, "{name} {v}");
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counts every request by its route template (never the raw path: ids would explode
/// the label space).
pub async fn count(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    state
        .inner
        .metrics
        .record(&method, &route, resp.status().as_u16());
    resp
}
