//! The sweep over real agents (unsandboxed runtime): a killed agent is relaunched with
//! backoff, one that keeps dying is parked, a stuck one (stale heartbeat) is restarted,
//! and a stopped session with a due message is woken.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ironclaw_contract::queue::InboundWriter;
use ironclaw_registry::SessionStatus;
use ironclaw_session::Liveness;
use ironclaw_sweep::{Sweep, SweepAction, SweepConfig};
use ironclaw_testkit::{agent_binary, message_in, SessionWorld};

fn world(agent: impl Into<PathBuf>, poll_ms: u64) -> SessionWorld {
    SessionWorld::builder()
        .agent(agent)
        .poll_interval_ms(poll_ms)
        .build()
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

fn sweep(w: &SessionWorld, config: SweepConfig) -> Sweep {
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
    let mut inbound = w.manager.inbound_writer(&w.session).unwrap();
    inbound
        .write_message(&message_in("m1", "wake up").build())
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
