use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::ApiState;

pub async fn healthz(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "version": state.inner.version}))
}

pub async fn readyz(State(state): State<ApiState>) -> Response {
    let mut reason = state
        .inner
        .not_ready
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if reason.is_none() {
        // The state dir is where the audit log lives.
        if let Some(dir) = state.inner.audit.path().parent() {
            reason = state_dir_writable(dir.to_owned()).await;
        }
    }
    let notices = state
        .inner
        .notices
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match reason {
        None => (
            StatusCode::OK,
            Json(json!({"status": "ready", "notices": notices})),
        )
            .into_response(),
        Some(r) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": r, "notices": notices})),
        )
            .into_response(),
    }
}

pub async fn metrics(State(state): State<ApiState>) -> Response {
    let body = state.inner.metrics.render(state.inner.gateway.stats());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// How long a state-dir probe result is reused: `/readyz` is open and unthrottled, and
/// the probe writes (and syncs) a page.
const PROBE_TTL: Duration = Duration::from_secs(1);
/// The probe's file: a staging name (`.tmp`), which backups leave out.
const PROBE_NAME: &str = ".readyz-probe.tmp";

/// `None` if a page can be written and synced in `dir`; otherwise why not, naming the
/// directory and the fix. A full disk makes every write the daemon must make (audit
/// records, decisions, queued messages) fail, so the daemon is not ready until space
/// is freed; it recovers by itself when it is.
async fn state_dir_writable(dir: PathBuf) -> Option<String> {
    static LAST: Mutex<Option<(PathBuf, Instant, Option<String>)>> = Mutex::new(None);
    if let Some((p, at, r)) = LAST.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        if *p == dir && at.elapsed() < PROBE_TTL {
            return r.clone();
        }
    }
    let d = dir.clone();
    let result = tokio::task::spawn_blocking(move || probe(&d))
        .await
        .unwrap_or_else(|e| Some(format!("state dir probe failed: {e}")));
    *LAST.lock().unwrap_or_else(|p| p.into_inner()) = Some((dir, Instant::now(), result.clone()));
    result
}

fn probe(dir: &Path) -> Option<String> {
    let path = dir.join(PROBE_NAME);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(&[0u8; 4096])?;
        f.sync_data()
    })();
    let _ = std::fs::remove_file(&path);
    match written {
        Ok(()) => None,
        Err(e) if e.raw_os_error() == Some(ENOSPC) || e.raw_os_error() == Some(EDQUOT) => {
            Some(format!(
                "no space left on the state dir {}: writes (audit records, decisions, queued messages) fail until space is freed there; the daemon recovers by itself",
                dir.display()
            ))
        }
        Err(e) => Some(format!(
            "the state dir {} cannot be written ({e}): check the filesystem and its permissions",
            dir.display()
        )),
    }
}

/// `ENOSPC` and `EDQUOT` on Linux.
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;
