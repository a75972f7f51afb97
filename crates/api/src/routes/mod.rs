//! The route table.

mod audit;
mod changes;
mod chat;
mod health;
pub(crate) mod hooks;
mod registry;
mod sessions;
mod status;
mod tokens;

use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::error::ApiError;
use crate::{auth, limits, metrics, ApiState};

/// Every route: (method, path). `docs/openapi.yaml` must document each one.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/status"),
    ("GET", "/v1/whoami"),
    ("POST", "/v1/changes"),
    ("GET", "/v1/changes/pending"),
    ("GET", "/v1/changes/history"),
    ("GET", "/v1/changes/{id}"),
    ("POST", "/v1/changes/{id}/decision"),
    ("POST", "/v1/changes/{id}/retry"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/audit/verify"),
    ("GET", "/v1/registry/agent-groups"),
    ("GET", "/v1/registry/agent-groups/{id}"),
    ("GET", "/v1/registry/agent-groups/{id}/members"),
    ("GET", "/v1/registry/agent-groups/{id}/destinations"),
    ("POST", "/v1/registry/messaging-groups"),
    ("GET", "/v1/registry/messaging-groups/{id}"),
    ("GET", "/v1/registry/messaging-groups/{id}/wirings"),
    ("GET", "/v1/registry/users/{id}"),
    ("PUT", "/v1/registry/users/{id}"),
    ("GET", "/v1/registry/roles"),
    ("POST", "/v1/registry/roles"),
    ("POST", "/v1/registry/roles/revoke"),
    ("GET", "/v1/registry/sessions"),
    ("GET", "/v1/registry/sessions/{id}"),
    ("GET", "/v1/registry/access"),
    ("POST", "/v1/chat/send"),
    ("GET", "/v1/chat/{conversation_id}/messages"),
    ("GET", "/v1/chat/{conversation_id}/stream"),
    ("POST", "/hooks/{channel}"),
    ("POST", "/hooks/{channel}/{instance}"),
    ("GET", "/v1/sessions"),
    ("POST", "/v1/sessions"),
    ("POST", "/v1/sessions/{id}/stop"),
    ("POST", "/v1/sessions/{id}/resume"),
    ("POST", "/v1/tokens"),
    ("GET", "/v1/tokens"),
    ("DELETE", "/v1/tokens/{name}"),
];

/// The full router with its middleware.
pub fn router(state: ApiState) -> Router {
    let open = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/hooks/{channel}", post(hooks::hook))
        .route("/hooks/{channel}/{instance}", post(hooks::hook_instance));
    let protected = Router::new()
        .route("/metrics", get(health::metrics))
        .route("/v1/status", get(status::status))
        .route("/v1/whoami", get(status::whoami))
        .route("/v1/changes", post(changes::submit))
        .route("/v1/changes/pending", get(changes::pending))
        .route("/v1/changes/history", get(changes::history))
        .route("/v1/changes/{id}", get(changes::show))
        .route("/v1/changes/{id}/decision", post(changes::decide))
        .route("/v1/changes/{id}/retry", post(changes::retry))
        .route("/v1/audit", get(audit::tail))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/registry/agent-groups", get(registry::agent_groups))
        .route("/v1/registry/agent-groups/{id}", get(registry::agent_group))
        .route(
            "/v1/registry/agent-groups/{id}/members",
            get(registry::members),
        )
        .route(
            "/v1/registry/agent-groups/{id}/destinations",
            get(registry::destinations),
        )
        .route(
            "/v1/registry/messaging-groups",
            post(registry::create_messaging_group),
        )
        .route(
            "/v1/registry/messaging-groups/{id}",
            get(registry::messaging_group),
        )
        .route(
            "/v1/registry/messaging-groups/{id}/wirings",
            get(registry::wirings),
        )
        .route(
            "/v1/registry/users/{id}",
            get(registry::user).merge(put(registry::put_user)),
        )
        .route(
            "/v1/registry/roles",
            get(registry::roles).merge(post(registry::grant_role)),
        )
        .route("/v1/registry/roles/revoke", post(registry::revoke_role))
        .route("/v1/registry/sessions", get(registry::sessions))
        .route("/v1/registry/sessions/{id}", get(registry::session))
        .route("/v1/registry/access", get(registry::access))
        .route(
            "/v1/sessions",
            get(sessions::list).merge(post(sessions::start)),
        )
        .route("/v1/sessions/{id}/stop", post(sessions::stop))
        .route("/v1/chat/send", post(chat::send))
        .route("/v1/chat/{conversation_id}/messages", get(chat::messages))
        .route("/v1/chat/{conversation_id}/stream", get(chat::stream))
        .route("/v1/sessions/{id}/resume", post(sessions::resume))
        .route("/v1/tokens", post(tokens::create).merge(get(tokens::list)))
        .route("/v1/tokens/{name}", delete(tokens::revoke))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let timeout = state.inner.limits.request_timeout;
    open.merge(protected)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn(crate::error::json_errors))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see docs/openapi.yaml")
}

/// Runs blocking storage work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// Parses a path or query id, answering 400 with the id rules on failure.
pub(crate) fn parse_id<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}
