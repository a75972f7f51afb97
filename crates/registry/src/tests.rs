//! Tests that need the raw connection: what the schema refuses on its own, and what
//! reads make of rows this crate would never write.

use ironclaw_contract::db::Cipher;
use ironclaw_contract::ids::{AgentGroupId, UserId};
use ironclaw_contract::key::SessionKey;

use crate::{AgentGroup, Registry, RegistryError};

fn both(check: impl Fn(&Registry)) {
    check(&Registry::in_memory());
    let dir = tempfile::tempdir().unwrap();
    let cipher = Cipher::Key(SessionKey::from_bytes([3; 32]));
    check(&Registry::open(&dir.path().join("registry.db"), &cipher).unwrap());
}

fn ag(s: &str) -> AgentGroupId {
    AgentGroupId::new(s).unwrap()
}

#[test]
fn foreign_keys_are_on_in_both_backends() {
    both(|r| {
        let err = r.raw(|c| {
            c.execute(
                "INSERT INTO members (agent_group_id, user_id) VALUES ('nope', 'u:1')",
                [],
            )
        });
        assert!(err.is_err(), "dangling member accepted");
    });
}

#[test]
fn schema_refuses_what_validation_refuses() {
    both(|r| {
        r.create_agent_group(AgentGroup::new(ag("g"), "G", "mock", ""))
            .unwrap();
        for sql in [
            // A scoped owner grant.
            "INSERT INTO roles (user_id, role, agent_group_id) VALUES ('u:1', 'owner', 'g')",
            "INSERT INTO roles (user_id, role) VALUES ('u:1', 'root')",
            "UPDATE agent_groups SET provider = 'bogus'",
            "UPDATE agent_groups SET enabled_tools = '{\"all\": true}'",
            "INSERT INTO sessions VALUES ('s', 'g', 'nope', NULL, 'shared', 'g/nope', 'new', 't', 't')",
        ] {
            assert!(r.raw(|c| c.execute(sql, [])).is_err(), "{sql}");
        }
        // The global-scope uniqueness works despite NULL.
        r.raw(|c| {
            c.execute(
                "INSERT INTO roles (user_id, role) VALUES ('u:1', 'admin')",
                [],
            )
        })
        .unwrap();
        assert!(r
            .raw(|c| c.execute(
                "INSERT INTO roles (user_id, role) VALUES ('u:1', 'admin')",
                []
            ))
            .is_err());
    });
}

#[test]
fn corrupt_rows_are_typed_errors() {
    both(|r| {
        r.create_agent_group(AgentGroup::new(ag("g"), "G", "mock", ""))
            .unwrap();
        // Valid JSON array, invalid content: a tool name no write would accept.
        r.raw(|c| c.execute("UPDATE agent_groups SET enabled_tools = '[\"../x\"]'", []))
            .unwrap();
        let err = r.agent_group(&ag("g")).unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::CorruptRow {
                    table: "agent_groups",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(r.agent_groups().is_err());
        // Not normalized (a duplicate) is corrupt too.
        r.raw(|c| {
            c.execute(
                "UPDATE agent_groups SET enabled_tools = '[\"a\",\"a\"]'",
                [],
            )
        })
        .unwrap();
        assert!(matches!(
            r.agent_group(&ag("g")),
            Err(RegistryError::CorruptRow { .. })
        ));
        r.raw(|c| {
            c.execute(
                "UPDATE agent_groups SET enabled_tools = '[]', created_at = 'yesterday'",
                [],
            )
        })
        .unwrap();
        assert!(matches!(
            r.agent_group(&ag("g")),
            Err(RegistryError::CorruptRow { .. })
        ));
    });
}

#[test]
fn tampered_session_key_is_detected() {
    use ironclaw_contract::enums::{SessionMode, UnknownSenderPolicy};
    both(|r| {
        r.create_agent_group(AgentGroup::new(ag("g"), "G", "mock", ""))
            .unwrap();
        let mg = r
            .get_or_create_messaging_group("slack", "C1", None, true, UnknownSenderPolicy::Strict)
            .unwrap();
        let s = r
            .resolve_session(&ag("g"), &mg.id, Some("t"), SessionMode::PerThread)
            .unwrap();
        r.raw(|c| c.execute("UPDATE sessions SET partition_key = 'g/other/t'", []))
            .unwrap();
        assert!(matches!(
            r.session(&s.id),
            Err(RegistryError::CorruptRow {
                table: "sessions",
                ..
            })
        ));
    });
}

#[test]
fn reentrant_use_is_an_error_not_a_deadlock() {
    let r = Registry::in_memory();
    let err = r.write(|_tx| r.agent_groups().map(|_| ())).unwrap_err();
    assert!(matches!(err, RegistryError::Reentrant), "{err:?}");
    // And the registry is usable afterwards.
    assert!(r.agent_groups().unwrap().is_empty());
}

#[test]
fn a_panicking_write_leaves_nothing_and_the_registry_usable() {
    let r = std::sync::Arc::new(Registry::in_memory());
    let r2 = r.clone();
    let joined = std::thread::spawn(move || {
        r2.write(|tx| {
            tx.create_agent_group(AgentGroup::new(ag("g"), "G", "mock", ""))?;
            panic!("applier bug");
            #[allow(unreachable_code)]
            Ok(())
        })
    })
    .join();
    assert!(joined.is_err());
    assert!(r.agent_group(&ag("g")).unwrap().is_none());
    assert!(!r.is_owner(&UserId::new("u:1").unwrap()).unwrap());
}

#[test]
fn registry_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Registry>();
}
