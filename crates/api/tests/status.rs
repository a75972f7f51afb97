//! `GET /v1/status` over the real router: every field the daemon reports, fed by a
//! registry with sessions (one parked by the sweep, one by the model proxy's budget),
//! real channel adapters and a stand-in model proxy.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ironclaw_api::{ApiParts, ApiState, Limits, ModelProxyCounters, ModelProxyView};
use ironclaw_audit::AuditLog;
use ironclaw_channels::{Channels, ChannelsConfig};
use ironclaw_contract::enums::{SessionMode, UnknownSenderPolicy};
use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_gateway::{Chain, ChangeStore, Gateway};
use ironclaw_identity::TokenStore;
use ironclaw_registry::{AgentGroup, Registry, Role, RoleGrant, SessionStatus, User};
use serde_json::{json, Value};
use tower::ServiceExt;

/// A model proxy that has answered a few calls and holds one session parked.
struct FakeProxy {
    parked: SessionId,
}

impl ModelProxyView for FakeProxy {
    fn counters(&self) -> ModelProxyCounters {
        let mut calls = BTreeMap::new();
        calls.insert(
            "mock".to_owned(),
            BTreeMap::from([(200u16, 5u64), (429, 2)]),
        );
        calls.insert("anthropic".to_owned(), BTreeMap::from([(200u16, 1u64)]));
        ModelProxyCounters {
            providers: vec!["anthropic".into(), "mock".into()],
            calls,
            refusals: BTreeMap::from([("rate_limited".to_owned(), 1), ("budget".to_owned(), 1)]),
            input_tokens: 100,
            output_tokens: 40,
        }
    }

    fn is_parked(&self, session: &SessionId) -> bool {
        *session == self.parked
    }
}

struct World {
    state: ApiState,
    token: String,
    registry: Arc<Registry>,
    gateway: Arc<Gateway>,
    _tmp: tempfile::TempDir,
}

fn world(channels: Option<Arc<Channels>>) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::in_memory());
    let audit = Arc::new(AuditLog::open(&tmp.path().join("audit.jsonl")).unwrap());
    let tokens = Arc::new(TokenStore::open(&tmp.path().join("tokens")).unwrap());
    let (record, secret) = tokens.create("owner", None).unwrap();
    registry
        .put_user(User {
            id: record.principal.clone(),
            kind: "operator".into(),
            display_name: "owner".into(),
        })
        .unwrap();
    registry
        .grant_role(&RoleGrant {
            user_id: record.principal,
            role: Role::Owner,
            scope: None,
        })
        .unwrap();
    registry
        .create_agent_group(AgentGroup::new(
            AgentGroupId::new("g1").unwrap(),
            "Group one",
            "mock",
            "",
        ))
        .unwrap();
    let gateway = Arc::new(Gateway::new(
        ChangeStore::in_memory().unwrap(),
        registry.clone(),
        audit.clone(),
        Chain::standard(tmp.path().join("mounts")),
    ));
    let state = ApiState::new(ApiParts {
        gateway: gateway.clone(),
        registry: registry.clone(),
        audit,
        tokens,
        sessions: None,
        channels,
        ingest: None,
        limits: Limits::default(),
        version: "test".into(),
    });
    state.set_not_ready(None);
    World {
        state,
        token: secret.expose().to_owned(),
        registry,
        gateway,
        _tmp: tmp,
    }
}

fn status(w: &World) -> (StatusCode, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = ironclaw_api::router(w.state.clone())
            .oneshot(
                Request::get("/v1/status")
                    .header("authorization", format!("Bearer {}", w.token))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (code, serde_json::from_slice(&bytes).unwrap())
    })
}

/// Three sessions of `g1`: returns their ids.
fn sessions(registry: &Registry) -> Vec<SessionId> {
    let group = AgentGroupId::new("g1").unwrap();
    let mg = registry
        .get_or_create_messaging_group("slack", "C1", None, true, UnknownSenderPolicy::Strict)
        .unwrap();
    ["t1", "t2", "t3"]
        .iter()
        .map(|t| {
            registry
                .resolve_session(&group, &mg.id, Some(t), SessionMode::PerThread)
                .unwrap()
                .id
        })
        .collect()
}

#[test]
fn status_reports_everything_an_operator_checks_first() {
    let channels = Channels::from_config(
        &ChannelsConfig::from_json(
            br#"{"webhooks": {"ci": {"secret": "0123456789abcdef0123456789abcdef"}}}"#,
        )
        .unwrap(),
    )
    .unwrap();
    let w = world(Some(Arc::new(channels)));
    let ids = sessions(&w.registry);
    w.registry
        .set_session_status(&ids[0], SessionStatus::Running)
        .unwrap();
    w.registry
        .set_session_status(&ids[1], SessionStatus::Parked)
        .unwrap();
    w.state.set_model_proxy(Arc::new(FakeProxy {
        parked: ids[2].clone(),
    }));
    w.gateway
        .submit(
            ironclaw_gateway::Submission {
                kind: "persona".parse().unwrap(),
                agent_group_id: AgentGroupId::new("g1").unwrap(),
                payload: json!({"persona": "terse"}),
                reason: None,
            },
            &"operator:owner".parse().unwrap(),
        )
        .unwrap();

    let (code, v) = status(&w);
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["version"], "test");
    assert!(
        v["started_at"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{v}"
    );
    assert!(v["uptime_seconds"].as_u64().is_some());
    assert_eq!(v["ready"], true);
    assert_eq!(v["runtime"], Value::Null, "no session manager here");
    assert_eq!(v["changes"]["pending"], 1);
    assert_eq!(v["sessions"], json!({"new": 1, "running": 1, "parked": 1}));

    // Parked: by the sweep (registry) and by the model proxy (budget), with the group.
    let parked = v["parked_sessions"].as_array().unwrap();
    assert_eq!(parked.len(), 2, "{v}");
    let by = |id: &SessionId| {
        parked
            .iter()
            .find(|p| p["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not parked in {v}"))
            .clone()
    };
    assert_eq!(by(&ids[1])["parked_by"], json!(["sweep"]));
    assert_eq!(by(&ids[2])["parked_by"], json!(["model_proxy"]));
    assert_eq!(by(&ids[2])["agent_group_id"], "g1");

    // Channels: each adapter, on or off with the setting that turns it on, no secret.
    let chans = v["channels"].as_array().unwrap();
    let ch = |t: &str, i: &str| {
        chans
            .iter()
            .find(|c| c["channel_type"] == t && c["instance"] == i)
            .unwrap_or_else(|| panic!("{t}/{i} missing from {v}"))
            .clone()
    };
    let hook = ch("webhook", "ci");
    assert_eq!(hook["inbound"], "on");
    assert_eq!(hook["inbound_off_reason"], Value::Null);
    assert_eq!(hook["outbound"], "off");
    assert!(hook["outbound_off_reason"]
        .as_str()
        .is_some_and(|r| r.contains("url")));
    assert_eq!(ch("slack", "slack")["inbound"], "off");
    assert_eq!(ch("web", "web")["outbound"], "on");
    assert!(
        !v.to_string().contains("0123456789abcdef"),
        "a secret leaked"
    );

    // The model proxy's counters: calls include refusals.
    let m = &v["model_proxy"];
    assert_eq!(m["providers"], json!(["anthropic", "mock"]));
    assert_eq!(m["calls"], 8);
    assert_eq!(m["calls_by_provider"]["mock"], json!({"200": 5, "429": 2}));
    assert_eq!(m["refusals"], 2);
    assert_eq!(
        m["refusals_by_reason"],
        json!({"budget": 1, "rate_limited": 1})
    );
    assert_eq!(m["input_tokens"], 100);
    assert_eq!(m["output_tokens"], 40);
    assert!(v["audit_last_seq"].as_u64().unwrap() >= 1);
}

#[test]
fn status_without_channels_or_proxy_says_null_not_empty() {
    let w = world(None);
    let (code, v) = status(&w);
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["channels"], Value::Null);
    assert_eq!(v["model_proxy"], Value::Null);
    assert_eq!(v["parked_sessions"], json!([]));
    assert_eq!(v["sessions"], json!({}));
}

/// The `required` list of the `Status` schema in docs/openapi.yaml.
fn documented_status_fields() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.yaml"
    ))
    .unwrap();
    let schema = doc
        .split_once("\n    Status:\n")
        .expect("a Status schema")
        .1;
    let list = schema
        .split_once("required: [")
        .expect("Status has a required list")
        .1
        .split_once(']')
        .unwrap()
        .0;
    let mut names: Vec<String> = list
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    names.sort();
    names
}

#[test]
fn every_status_field_is_documented_and_required() {
    let w = world(None);
    let (_, v) = status(&w);
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, documented_status_fields());
}
