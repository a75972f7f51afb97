//! The SessionManager with the real agent binary (unsandboxed runtime), the real model
//! proxy (its mock provider) and real encrypted queue files: launch once under
//! concurrent wakes, answer a message on a ring, hear the agent ring back, stop, end.
//! The same manager under `runsc` is tested in `tests/` with the daemon.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ironclaw_audit::AuditLog;
use ironclaw_contract::queue::{InboundWriter, OutboundReader};
use ironclaw_contract::time::Timestamp;
use ironclaw_registry::SessionStatus;
use ironclaw_session::{LaunchOutcome, RuntimeKind};
use ironclaw_testkit::{agent_binary, message_in, SessionWorld};

fn world() -> SessionWorld {
    SessionWorld::builder()
        .agent(agent_binary())
        .poll_interval_ms(30_000)
        .persona("Be brief.")
        .tools(["send_message"])
        .build()
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
    let mut w = world();
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
    let log = w.manager.layout().session_dir(&sid).join("agent.log");
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
    let mut inbound = w.manager.inbound_writer(&sid).unwrap();
    inbound
        .write_message(&message_in("m1", "hello").build())
        .unwrap();
    assert!(w.manager.ring(&sid));
    // The agent rings back after writing its reply (poll interval is 30 s).
    let rang = tokio::time::timeout(Duration::from_secs(15), w.rung.recv())
        .await
        .expect("the agent rang back")
        .unwrap();
    assert_eq!(rang, sid);
    let mut outbound = w.manager.outbound_reader(&sid).unwrap();
    let rows = outbound.due_messages(Timestamp::now(), 0).unwrap().rows;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].message.content, "mock: hello");

    // The key reached the agent as a 0400 file and is withdrawn at stop.
    let key_file = w.manager.layout().key_dir(&sid).join("session.key");
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
    assert!(!w.manager.layout().inbound_db(&sid).exists());
    w.manager
        .provision_queues(&sid)
        .expect("a fresh key may be minted later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_session_is_not_launched() {
    let w = world();
    w.registry
        .set_session_status(&w.session, SessionStatus::Parked)
        .unwrap();
    let err = w.manager.ensure_running(&w.session).await.unwrap_err();
    assert!(err.to_string().contains("parked"), "{err}");
}
