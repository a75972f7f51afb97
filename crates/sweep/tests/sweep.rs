//! The sweep over real agents (unsandboxed runtime): a killed agent is relaunched with
//! backoff, one that keeps dying is parked, a stuck one (stale heartbeat) is restarted,
//! and a stopped session with a due message is woken.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ironclaw_audit::AuditLog;
use ironclaw_contract::enums::{MessageKind, Provenance, SessionMode, UnknownSenderPolicy};
use ironclaw_contract::ids::{AgentGroupId, MessageId, SessionId};
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::queue::InboundWriter;
use ironclaw_contract::rows::{NewMessageIn, Route};
use ironclaw_contract::time::Timestamp;
use ironclaw_keys::KeyCustodian;
use ironclaw_modelproxy::{ModelProxy, ProxyConfig};
use ironclaw_registry::{AgentGroup, Registry, SessionStatus};
use ironclaw_session::{
    DoorbellHub, Liveness, ManagerConfig, Ownership, SessionManager, UnsandboxedRuntime,
};
use ironclaw_sweep::{Sweep, SweepAction, SweepConfig};

fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("ironclaw-sandbox");
    if !bin.exists() {
        let ok = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "ironclaw-sandbox"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "building ironclaw-sandbox failed");
    }
    bin
}

struct World {
    _dir: tempfile::TempDir,
    manager: Arc<SessionManager>,
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    session: SessionId,
}

fn world(agent: PathBuf, poll_ms: u64) -> World {
    let dir = tempfile::tempdir().unwrap();
    let layout = HostLayout::new(dir.path());
    let (keys, _) = KeyCustodian::load(&layout.master_key(), &layout.sealed_keys()).unwrap();
    let audit = Arc::new(AuditLog::open(&layout.audit_log()).unwrap());
    let registry = Arc::new(Registry::in_memory());
    let group = AgentGroupId::new("g1").unwrap();
    let mg = registry
        .write(|tx| {
            tx.create_agent_group(AgentGroup::new(group.clone(), "t", "mock", ""))?;
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
    let (doorbells, _rung) = DoorbellHub::new();
    let manager = Arc::new(SessionManager::new(
        ManagerConfig {
            layout: layout.clone(),
            model_proxy_base: dir.path().join("mp.sock"),
            ownership: Ownership::DaemonUid,
            extra_agent_args: vec!["--poll-interval-ms".into(), poll_ms.to_string()],
        },
        Arc::clone(&registry),
        Arc::new(keys),
        Arc::clone(&audit),
        proxy,
        doorbells,
        Arc::new(UnsandboxedRuntime::new(agent)),
    ));
    World {
        _dir: dir,
        manager,
        registry,
        audit,
        session,
    }
}

fn fast() -> SweepConfig {
    SweepConfig {
        interval: Duration::from_millis(50),
        heartbeat_stale: Duration::from_secs(30),
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        park_after: 3,
        healthy_after: Duration::from_secs(60),
    }
}

fn sweep(w: &World, config: SweepConfig) -> Sweep {
    Sweep::new(
        Arc::clone(&w.manager),
        Arc::clone(&w.registry),
        Arc::clone(&w.audit),
        config,
    )
}

/// Ticks until `pred` holds for an action, or panics after `ticks`.
async fn tick_until(
    s: &mut Sweep,
    ticks: usize,
    pred: impl Fn(&SweepAction) -> bool,
) -> Vec<SweepAction> {
    let mut seen = Vec::new();
    for _ in 0..ticks {
        let actions = s.tick().await;
        let hit = actions.iter().any(&pred);
        seen.extend(actions);
        if hit {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached; actions: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_relaunched_after_a_backoff() {
    let w = world(agent_binary(), 2000);
    w.manager.ensure_running(&w.session).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f", w.session.as_str()])
        .status()
        .unwrap();
    assert!(killed.success(), "no agent process to kill");
    let mut s = sweep(&w, fast());
    let seen = tick_until(&mut s, 40, |a| matches!(a, SweepAction::Relaunched { .. })).await;
    assert!(
        seen.iter().any(|a| matches!(a, SweepAction::Died { failures: 1, stuck: false, retry_in, .. } if *retry_in == Duration::from_millis(100))),
        "{seen:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        w.manager.liveness(&w.session).await.unwrap(),
        Liveness::Running
    );
    w.manager.stop(&w.session, "test over").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_keeps_dying_is_parked() {
    // `false` exits at once: every launch "succeeds" and dies.
    let w = world(PathBuf::from("/bin/false"), 2000);
    w.manager.ensure_running(&w.session).await.unwrap();
    let mut s = sweep(&w, fast());
    let seen = tick_until(&mut s, 80, |a| matches!(a, SweepAction::Parked { .. })).await;
    let died = seen
        .iter()
        .filter(|a| matches!(a, SweepAction::Died { .. }))
        .count();
    assert_eq!(died, 2, "{seen:?}");
    assert_eq!(
        w.registry.session(&w.session).unwrap().unwrap().status,
        SessionStatus::Parked
    );
    // Parked means parked: the sweep does not launch it again, even with work queued.
    let kinds: Vec<String> = w
        .audit
        .tail(50)
        .unwrap()
        .into_iter()
        .map(|r| r.event["type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(kinds.contains(&"session_parked".to_owned()), "{kinds:?}");
    for _ in 0..5 {
        let actions = s.tick().await;
        assert!(actions.is_empty(), "{actions:?}");
    }
    assert!(w.manager.ensure_running(&w.session).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_agent_is_stopped_and_relaunched() {
    // A 30 s poll interval: the heartbeat is replaced once at start, then not for 30 s.
    let w = world(agent_binary(), 30_000);
    w.manager.ensure_running(&w.session).await.unwrap();
    let mut config = fast();
    config.heartbeat_stale = Duration::from_millis(600);
    let mut s = sweep(&w, config);
    let seen = tick_until(&mut s, 100, |a| matches!(a, SweepAction::Relaunched { .. })).await;
    assert!(
        seen.iter()
            .any(|a| matches!(a, SweepAction::Died { stuck: true, .. })),
        "{seen:?}"
    );
    w.manager.stop(&w.session, "test over").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_session_with_a_due_message_is_woken() {
    let w = world(agent_binary(), 2000);
    // Provision without launching, then queue a message as the router would.
    w.manager.ensure_running(&w.session).await.unwrap();
    w.manager.stop(&w.session, "idle").await.unwrap();
    let cipher = w.manager.cipher(&w.session).unwrap();
    let mut inbound = w
        .manager
        .queues()
        .inbound_writer(&w.session, &cipher)
        .unwrap();
    inbound
        .write_message(&NewMessageIn {
            id: MessageId::new("m1").unwrap(),
            kind: MessageKind::Chat,
            timestamp: Timestamp::now(),
            process_after: None,
            recurrence: None,
            series_id: None,
            trigger: true,
            route: Route::default(),
            content: "wake up".into(),
            source_session_id: None,
            provenance: Provenance::Verified,
        })
        .unwrap();
    let mut s = sweep(&w, fast());
    let actions = s.tick().await;
    assert!(
        actions.contains(&SweepAction::Woken {
            session: w.session.clone()
        }),
        "{actions:?}"
    );
    assert_eq!(
        w.manager.liveness(&w.session).await.unwrap(),
        Liveness::Running
    );
    w.manager.stop(&w.session, "test over").await.unwrap();
}
