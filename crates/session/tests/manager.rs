//! The SessionManager with the real agent binary (unsandboxed runtime), the real model
//! proxy (its mock provider) and real encrypted queue files: launch once under
//! concurrent wakes, answer a message on a ring, hear the agent ring back, stop, end.
//! The same manager under `runsc` is tested in `tests/` with the daemon.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironclaw_audit::AuditLog;
use ironclaw_contract::enums::{MessageKind, Provenance};
use ironclaw_contract::enums::{SessionMode, UnknownSenderPolicy};
use ironclaw_contract::ids::{AgentGroupId, MessageId, SessionId};
use ironclaw_contract::queue::{InboundWriter, OutboundReader};
use ironclaw_contract::rows::{NewMessageIn, Route};
use ironclaw_contract::time::Timestamp;
use ironclaw_keys::KeyCustodian;
use ironclaw_modelproxy::{ModelProxy, ProxyConfig};
use ironclaw_registry::{AgentGroup, Registry, SessionStatus};
use ironclaw_session::{
    DoorbellHub, LaunchOutcome, ManagerConfig, Ownership, RuntimeKind, SessionManager,
    UnsandboxedRuntime,
};

/// The agent binary of this workspace, built on demand so this test also works when
/// run on its own (`cargo test -p ironclaw-session`).
fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join("ironclaw-sandbox");
    if !bin.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "ironclaw-sandbox"])
            .status()
            .unwrap();
        assert!(status.success(), "building ironclaw-sandbox failed");
    }
    bin
}

struct World {
    _dir: tempfile::TempDir,
    manager: Arc<SessionManager>,
    rung: tokio::sync::mpsc::UnboundedReceiver<SessionId>,
    audit: Arc<AuditLog>,
    registry: Arc<Registry>,
    session: SessionId,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let layout = ironclaw_contract::paths::HostLayout::new(&state);
    let (keys, _) = KeyCustodian::load(&layout.master_key(), &layout.sealed_keys()).unwrap();
    let audit = Arc::new(AuditLog::open(&layout.audit_log()).unwrap());
    let registry = Arc::new(Registry::in_memory());
    let group = AgentGroupId::new("g1").unwrap();
    let mg = registry
        .write(|tx| {
            let mut g = AgentGroup::new(group.clone(), "test", "mock", "");
            g.persona = "Be brief.".into();
            g.enabled_tools = vec!["send_message".into()];
            tx.create_agent_group(g)?;
            tx.get_or_create_messaging_group("web", "c1", None, false, UnknownSenderPolicy::Strict)
        })
        .unwrap();
    let session = registry
        .resolve_session(&group, &mg.id, None, SessionMode::Shared)
        .unwrap()
        .id;
    let mut config = ProxyConfig::from_lookup(|_| None).unwrap();
    config.enable_mock();
    let proxy = ModelProxy::new(config, Arc::clone(&audit)).unwrap();
    let (doorbells, rung) = DoorbellHub::new();
    let manager = SessionManager::new(
        ManagerConfig {
            layout: layout.clone(),
            model_proxy_base: state.join("modelproxy.sock"),
            ownership: Ownership::DaemonUid,
            extra_agent_args: vec!["--poll-interval-ms".into(), "30000".into()],
        },
        Arc::clone(&registry),
        Arc::new(keys),
        Arc::clone(&audit),
        proxy,
        doorbells,
        Arc::new(UnsandboxedRuntime::new(agent_binary())),
    );
    World {
        _dir: dir,
        manager: Arc::new(manager),
        rung,
        audit,
        registry,
        session,
    }
}

fn message(id: &str, text: &str) -> NewMessageIn {
    NewMessageIn {
        id: MessageId::new(id).unwrap(),
        kind: MessageKind::Chat,
        timestamp: Timestamp::now(),
        process_after: None,
        recurrence: None,
        series_id: None,
        trigger: true,
        route: Route::default(),
        content: text.into(),
        source_session_id: None,
        provenance: Provenance::Verified,
    }
}

fn audit_kinds(audit: &AuditLog) -> Vec<String> {
    audit
        .tail(100)
        .unwrap()
        .into_iter()
        .map(|r| r.event["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_launches_once_answers_on_a_ring_and_stops() {
    let mut w = world().await;
    let sid = w.session.clone();
    // Concurrent wakes launch one agent.
    let (a, b) = tokio::join!(
        w.manager.ensure_running(&sid),
        w.manager.ensure_running(&sid)
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    let launched = outcomes
        .iter()
        .filter(|o| matches!(o, LaunchOutcome::Launched(_)))
        .count();
    let log = w
        .manager
        .queues()
        .layout()
        .session_dir(&sid)
        .join("agent.log");
    assert_eq!(
        launched,
        1,
        "{outcomes:?}\nagent log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(w.manager.runtime_kind(), RuntimeKind::Unsandboxed);
    assert_eq!(
        w.registry.session(&sid).unwrap().unwrap().status,
        SessionStatus::Running
    );

    // Wait for the agent to connect to its doorbell, then send and ring.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !w.manager.doorbells().connected(&sid) {
        assert!(
            Instant::now() < deadline,
            "the agent never connected its doorbell"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cipher = w.manager.cipher(&sid).unwrap();
    let mut inbound = w.manager.queues().inbound_writer(&sid, &cipher).unwrap();
    inbound.write_message(&message("m1", "hello")).unwrap();
    assert!(w.manager.ring(&sid));
    // The agent rings back after writing its reply (poll interval is 30 s).
    let rang = tokio::time::timeout(Duration::from_secs(15), w.rung.recv())
        .await
        .expect("the agent rang back")
        .unwrap();
    assert_eq!(rang, sid);
    let mut outbound = w
        .manager
        .queues()
        .outbound_reader(&sid, cipher.clone())
        .unwrap();
    let rows = outbound.due_messages(Timestamp::now(), 0).unwrap().rows;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].message.content, "mock: hello");

    // The key reached the agent as a 0400 file and is withdrawn at stop.
    let key_file = w
        .manager
        .queues()
        .layout()
        .key_dir(&sid)
        .join("session.key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o400);
    assert!(w.manager.stop(&sid, "test over").await.unwrap());
    assert!(!key_file.exists());
    assert_eq!(
        w.registry.session(&sid).unwrap().unwrap().status,
        SessionStatus::Stopped
    );
    let kinds = audit_kinds(&w.audit);
    assert!(kinds.contains(&"session_launched".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"session_stopped".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"model_call".to_owned()), "{kinds:?}");
    w.audit.verify().unwrap();

    // Ending the session destroys its key: the files cannot be opened again.
    w.manager.end(&sid, "done").await.unwrap();
    assert!(
        w.manager.cipher(&sid).is_ok(),
        "a fresh key may be minted later"
    );
    assert!(!w.manager.queues().layout().inbound_db(&sid).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_session_is_not_launched() {
    let w = world().await;
    w.registry
        .set_session_status(&w.session, SessionStatus::Parked)
        .unwrap();
    let err = w.manager.ensure_running(&w.session).await.unwrap_err();
    assert!(err.to_string().contains("parked"), "{err}");
}
