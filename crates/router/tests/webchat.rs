//! The web chat policy: who may chat with an agent group, and what a conversation
//! needs (the operator's web identity as a member, a messaging group, a wiring), with
//! the membership audited once.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use ironclaw_audit::{AuditEvent, AuditLog};
use ironclaw_contract::enums::{
    EngageMode, IgnoredMessagePolicy, Provenance, SenderScope, SessionMode, UnknownSenderPolicy,
};
use ironclaw_registry::{Role, RoleGrant};
use ironclaw_router::webchat::{self, WebChatError, WebChatOperator, WEB};
use ironclaw_router::{InboundEvent, Reason};
use support::*;

fn audit(env: &Env) -> Arc<AuditLog> {
    Arc::new(AuditLog::open(&env.dir.path().join("webchat-audit.jsonl")).unwrap())
}

fn registry_changes(audit: &AuditLog) -> Vec<String> {
    audit
        .tail(100)
        .unwrap()
        .iter()
        .filter_map(|r| match r.event().ok()? {
            AuditEvent::RegistryChanged { by, what } => Some(format!("{by}: {what}")),
            _ => None,
        })
        .collect()
}

fn grant(env: &Env, user: &str, role: Role, scope: Option<&str>) {
    env.registry
        .grant_role(&RoleGrant {
            user_id: uid(user),
            role,
            scope: scope.map(gid),
        })
        .unwrap();
}

#[test]
fn an_unknown_agent_group_is_refused() {
    let env = Env::new();
    let audit = audit(&env);
    let principal = uid("operator:ann");
    let op = WebChatOperator {
        principal: &principal,
        name: "ann",
    };
    let e = webchat::open_conversation(&env.registry, &audit, op, &gid("nope"), "c1").unwrap_err();
    assert!(matches!(e, WebChatError::UnknownGroup(_)), "{e:?}");
    assert_eq!(e.to_string(), "no agent group nope");
}

#[test]
fn an_operator_without_access_is_refused_and_nothing_is_created() {
    let env = Env::new();
    let audit = audit(&env);
    grant(&env, "operator:bob", Role::Admin, Some("g2"));
    let principal = uid("operator:bob");
    let op = WebChatOperator {
        principal: &principal,
        name: "bob",
    };
    let e = webchat::open_conversation(&env.registry, &audit, op, &gid("g1"), "c1").unwrap_err();
    assert!(matches!(e, WebChatError::Forbidden { .. }), "{e:?}");
    assert_eq!(e.to_string(), "operator:bob may not use agent group g1");
    assert!(!env.registry.is_member(&uid("web:bob"), &gid("g1")).unwrap());
    assert!(env
        .registry
        .find_messaging_group(WEB, "c1", None)
        .unwrap()
        .is_none());
    assert!(registry_changes(&audit).is_empty());
}

/// The operator's web identity becomes a member (audited once), the conversation a
/// closed messaging group with one mention wiring per agent group; opening it again
/// changes nothing. A message from the operator then engages through the router's
/// ordinary access rules.
#[test]
fn a_permitted_operator_gets_a_member_identity_and_a_wired_conversation() {
    let env = Env::new();
    let audit = audit(&env);
    grant(&env, "operator:ann", Role::Admin, Some("g1"));
    let principal = uid("operator:ann");
    let op = WebChatOperator {
        principal: &principal,
        name: "ann",
    };
    let mg = webchat::open_conversation(&env.registry, &audit, op, &gid("g1"), "c1").unwrap();
    let again = webchat::open_conversation(&env.registry, &audit, op, &gid("g1"), "c1").unwrap();
    assert_eq!(mg.id, again.id);
    assert_eq!(mg.unknown_sender_policy, UnknownSenderPolicy::Strict);
    assert!(env.registry.is_member(&uid("web:ann"), &gid("g1")).unwrap());
    assert_eq!(
        registry_changes(&audit),
        ["operator:ann: member web:ann of g1 (web chat)"]
    );
    let wirings = env.registry.wirings_for(&mg.id).unwrap();
    assert_eq!(wirings.len(), 1);
    let w = &wirings[0];
    assert_eq!(w.agent_group_id, gid("g1"));
    assert_eq!(w.engage_mode, EngageMode::Mention);
    assert_eq!(w.engage_pattern, None);
    assert_eq!(w.sender_scope, SenderScope::All);
    assert_eq!(w.ignored_message_policy, IgnoredMessagePolicy::Drop);
    assert_eq!(w.session_mode, SessionMode::Shared);
    assert_eq!(w.priority, 1);

    let report = env
        .router
        .route_inbound(&InboundEvent {
            channel_type: WEB.into(),
            platform_id: "c1".into(),
            instance: None,
            thread_id: None,
            sender_handle: "ann".into(),
            text: "hello".into(),
            mentioned: true,
            provenance: Provenance::Verified,
            platform_message_id: Some("1".into()),
        })
        .unwrap();
    assert_eq!(report.outcomes.len(), 1);
    assert_eq!(report.outcomes[0].reason, Reason::Engaged);
    assert_eq!(report.wake.len(), 1);
}

/// An operator whose web identity is already a member (an owner's, say, granted
/// earlier) is not granted or audited again; a second agent group on the same
/// conversation adds its own wiring.
#[test]
fn a_second_group_adds_a_wiring_and_a_member_is_not_granted_twice() {
    let env = Env::new();
    let audit = audit(&env);
    grant(&env, "operator:ann", Role::Owner, None);
    let principal = uid("operator:ann");
    let op = WebChatOperator {
        principal: &principal,
        name: "ann",
    };
    let mg = webchat::open_conversation(&env.registry, &audit, op, &gid("g1"), "c1").unwrap();
    webchat::open_conversation(&env.registry, &audit, op, &gid("g2"), "c1").unwrap();
    let mut groups: Vec<String> = env
        .registry
        .wirings_for(&mg.id)
        .unwrap()
        .iter()
        .map(|w| w.agent_group_id.to_string())
        .collect();
    groups.sort();
    assert_eq!(groups, ["g1", "g2"]);
    assert_eq!(registry_changes(&audit).len(), 2, "one grant per group");
    webchat::open_conversation(&env.registry, &audit, op, &gid("g2"), "c2").unwrap();
    assert_eq!(registry_changes(&audit).len(), 2, "already a member of g2");
}
