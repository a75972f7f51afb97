//! Appliers: each kind does exactly what was approved, all or nothing; failed applies
//! are recorded and can be retried.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ironclaw_audit::AuditEvent;
use ironclaw_contract::enums::{
    ChangeKind, ChangeStatus, EngageMode, IgnoredMessagePolicy, Outcome, SenderScope, SessionMode,
};
use ironclaw_gateway::GatewayError;
use ironclaw_registry::{AgentGroup, MountGrant, Role, RoleGrant};
use serde_json::json;

/// `g` with every field but `f`'s changes as they were.
fn expect(before: &AgentGroup, f: impl FnOnce(&mut AgentGroup)) -> AgentGroup {
    let mut g = before.clone();
    f(&mut g);
    g
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------
// 11. Each kind applies exactly what was requested.

#[test]
fn persona_replaces_the_persona_and_nothing_else() {
    let env = Env::new();
    env.apply(
        ChangeKind::EnabledTools,
        "g1",
        json!({"replace": ["read_file"]}),
    );
    let before = env.group("g1");
    let g2_before = env.group("g2");
    env.apply(
        ChangeKind::Persona,
        "g1",
        json!({"persona": "You are careful.\nCite sources."}),
    );
    assert_eq!(
        env.group("g1"),
        expect(&before, |g| g.persona =
            "You are careful.\nCite sources.".into())
    );
    assert_eq!(env.group("g2"), g2_before);

    // An empty persona is a real value: it clears the text.
    env.apply(ChangeKind::Persona, "g1", json!({"persona": ""}));
    assert_eq!(env.group("g1"), before);
}

#[test]
fn enabled_tools_replace_add_and_remove() {
    let env = Env::new();
    let before = env.group("g1");
    env.apply(
        ChangeKind::EnabledTools,
        "g1",
        json!({"replace": ["read_file", "send_message"]}),
    );
    assert_eq!(
        env.group("g1").enabled_tools,
        strings(&["read_file", "send_message"])
    );

    // add: union, order kept, duplicates (old and within the list) dropped.
    env.apply(
        ChangeKind::EnabledTools,
        "g1",
        json!({"add": ["list_dir", "read_file", "list_dir", "write_file"]}),
    );
    assert_eq!(
        env.group("g1").enabled_tools,
        strings(&["read_file", "send_message", "list_dir", "write_file"])
    );

    // remove: only the named ones; naming an absent tool is harmless.
    env.apply(
        ChangeKind::EnabledTools,
        "g1",
        json!({"remove": ["send_message", "schedule_task"]}),
    );
    assert_eq!(
        env.group("g1").enabled_tools,
        strings(&["read_file", "list_dir", "write_file"])
    );

    // replace with a new order.
    env.apply(
        ChangeKind::EnabledTools,
        "g1",
        json!({"replace": ["write_file", "read_file"]}),
    );
    assert_eq!(
        env.group("g1").enabled_tools,
        strings(&["write_file", "read_file"])
    );

    // replace with nothing: back to only the mandatory tools, never "all".
    env.apply(ChangeKind::EnabledTools, "g1", json!({"replace": []}));
    assert_eq!(env.group("g1"), before);
}

#[test]
fn packages_are_prefixed_and_unioned() {
    let env = Env::new();
    env.apply(
        ChangeKind::Packages,
        "g1",
        json!({"apt": ["ripgrep", "jq"], "npm": ["@scope/pkg"]}),
    );
    assert_eq!(
        env.group("g1").packages,
        strings(&["apt:ripgrep", "apt:jq", "npm:@scope/pkg"])
    );
    env.apply(
        ChangeKind::Packages,
        "g1",
        json!({"apt": ["jq", "curl"], "npm": ["jq"]}),
    );
    assert_eq!(
        env.group("g1").packages,
        strings(&[
            "apt:ripgrep",
            "apt:jq",
            "npm:@scope/pkg",
            "apt:curl",
            "npm:jq"
        ])
    );
    assert!(env.group("g2").packages.is_empty());
}

#[test]
fn mounts_are_replaced_as_a_whole() {
    let env = Env::new();
    let p = env.mount_prefix();
    let p = p.to_str().unwrap();
    env.apply(
        ChangeKind::Mounts,
        "g1",
        json!({"mounts": [
            {"source": format!("{p}/a"), "target": "/mnt/a"},
            {"source": format!("{p}/b"), "target": "/mnt/b", "read_only": false},
        ]}),
    );
    assert_eq!(
        env.group("g1").mounts,
        vec![
            MountGrant {
                source: format!("{p}/a"),
                target: "/mnt/a".into(),
                read_only: true,
            },
            MountGrant {
                source: format!("{p}/b"),
                target: "/mnt/b".into(),
                read_only: false,
            },
        ]
    );
    env.apply(
        ChangeKind::Mounts,
        "g1",
        json!({"mounts": [{"source": format!("{p}/c"), "target": "/mnt/c", "read_only": true}]}),
    );
    assert_eq!(
        env.group("g1").mounts,
        vec![MountGrant {
            source: format!("{p}/c"),
            target: "/mnt/c".into(),
            read_only: true,
        }]
    );
    env.apply(ChangeKind::Mounts, "g1", json!({"mounts": []}));
    assert!(env.group("g1").mounts.is_empty());
}

#[test]
fn wiring_connects_the_group_to_the_messaging_group() {
    let env = Env::new();
    let mg = env.messaging_group("C1");
    let done = env.apply(
        ChangeKind::Wiring,
        "g1",
        json!({
            "messaging_group_id": mg.as_str(),
            "engage_mode": "mention",
            "sender_scope": "all",
            "ignored_message_policy": "accumulate",
            "session_mode": "per-thread",
            "priority": 5,
        }),
    );
    let ws = env.registry.wirings_for(&mg).unwrap();
    assert_eq!(ws.len(), 1, "{ws:?}");
    let w = &ws[0];
    assert!(w.id.starts_with("wr_"), "{}", w.id);
    assert_eq!(w.messaging_group_id, mg);
    assert_eq!(w.agent_group_id, gid("g1"));
    assert_eq!(w.engage_mode, EngageMode::Mention);
    assert_eq!(w.engage_pattern, None);
    assert_eq!(w.sender_scope, SenderScope::All);
    assert_eq!(w.ignored_message_policy, IgnoredMessagePolicy::Accumulate);
    assert_eq!(w.session_mode, SessionMode::PerThread);
    assert_eq!(w.priority, 5);
    assert_eq!(env.registry.wiring(&w.id).unwrap().as_ref(), Some(w));
    assert_eq!(done.status, ChangeStatus::Applied);

    // Defaults, and a pattern wiring of another group to the same chat.
    env.apply(
        ChangeKind::Wiring,
        "g2",
        json!({
            "messaging_group_id": mg.as_str(),
            "engage_mode": "pattern",
            "engage_pattern": "^hey",
        }),
    );
    let ws = env.registry.wirings_for(&mg).unwrap();
    assert_eq!(ws.len(), 2);
    let w2 = ws.iter().find(|w| w.agent_group_id == gid("g2")).unwrap();
    assert_eq!(w2.engage_mode, EngageMode::Pattern);
    assert_eq!(w2.engage_pattern.as_deref(), Some("^hey"));
    assert_eq!(w2.sender_scope, SenderScope::Known);
    assert_eq!(w2.ignored_message_policy, IgnoredMessagePolicy::Drop);
    assert_eq!(w2.session_mode, SessionMode::Shared);
    assert_eq!(w2.priority, 0);
    // Routing order: priority descending.
    assert_eq!(ws[0].agent_group_id, gid("g1"));
}

#[test]
fn permissions_members_and_scoped_admins() {
    let env = Env::new();
    let gina = uid("slack:gina");

    env.apply(
        ChangeKind::Permissions,
        "g1",
        json!({"add_member": "slack:gina"}),
    );
    assert!(env.registry.is_member(&gina, &gid("g1")).unwrap());
    assert!(!env.registry.is_member(&gina, &gid("g2")).unwrap());
    // Members never decide.
    assert!(!env.registry.may_decide(&gina, &gid("g1")).unwrap());

    env.apply(
        ChangeKind::Permissions,
        "g1",
        json!({"remove_member": "slack:gina"}),
    );
    assert!(!env.registry.is_member(&gina, &gid("g1")).unwrap());
    assert!(env.registry.is_member(&uid(FRANK), &gid("g1")).unwrap());

    env.apply(
        ChangeKind::Permissions,
        "g1",
        json!({"grant_admin": "slack:gina"}),
    );
    assert_eq!(
        env.registry.roles_of(&gina).unwrap(),
        vec![RoleGrant {
            user_id: gina.clone(),
            role: Role::Admin,
            scope: Some(gid("g1")),
        }]
    );
    assert!(env.registry.may_decide(&gina, &gid("g1")).unwrap());
    assert!(!env.registry.may_decide(&gina, &gid("g2")).unwrap());
    assert!(!env.registry.is_owner_or_global_admin(&gina).unwrap());

    // The new admin can now decide changes to g1, and only g1.
    let rec = env.submit(ChangeKind::Persona, "g1", json!({"persona": "by gina"}));
    assert_eq!(
        env.approve(&rec.request.id, "slack:gina").status,
        ChangeStatus::Applied
    );

    env.apply(
        ChangeKind::Permissions,
        "g1",
        json!({"revoke_admin": "slack:gina"}),
    );
    assert!(env.registry.roles_of(&gina).unwrap().is_empty());
    assert!(!env.registry.may_decide(&gina, &gid("g1")).unwrap());
    // Revoking a scoped admin on g1 does not touch a global admin.
    env.apply(ChangeKind::Permissions, "g1", json!({"revoke_admin": BOB}));
    assert!(env.registry.is_owner_or_global_admin(&uid(BOB)).unwrap());
}

#[test]
fn egress_is_replaced_and_lower_cased() {
    let env = Env::new();
    env.apply(
        ChangeKind::Permissions,
        "g1",
        json!({"egress": ["API.PagerDuty.com", "status.example.com"]}),
    );
    assert_eq!(
        env.group("g1").egress,
        strings(&["api.pagerduty.com", "status.example.com"])
    );
    env.apply(
        ChangeKind::Permissions,
        "g1",
        json!({"egress": ["a.example.com"]}),
    );
    assert_eq!(env.group("g1").egress, strings(&["a.example.com"]));
    env.apply(ChangeKind::Permissions, "g1", json!({"egress": []}));
    assert!(env.group("g1").egress.is_empty());
    assert!(env.group("g2").egress.is_empty());
}

#[test]
fn create_agent_creates_the_group_with_its_persona_and_tools() {
    let env = Env::new();
    env.apply(
        ChangeKind::CreateAgent,
        "my-researcher",
        json!({
            "name": "My Researcher",
            "persona": "Find things.",
            "enabled_tools": ["read_file", "list_dir"],
            "model": "m-1",
        }),
    );
    let g = env.group("my-researcher");
    assert_eq!(g.name, "My Researcher");
    assert_eq!(g.persona, "Find things.");
    assert_eq!(g.enabled_tools, strings(&["read_file", "list_dir"]));
    assert_eq!(g.provider, "mock");
    assert_eq!(g.model, "m-1");
    assert!(g.packages.is_empty() && g.mounts.is_empty() && g.egress.is_empty());
    assert!(g.mcp_grants.is_empty());

    // An explicit id wins over the name.
    env.apply(
        ChangeKind::CreateAgent,
        "custom",
        json!({"name": "Something Else", "id": "custom", "provider": "anthropic"}),
    );
    let g = env.group("custom");
    assert_eq!(g.name, "Something Else");
    assert_eq!(g.provider, "anthropic");
    assert!(env
        .registry
        .agent_group(&gid("something-else"))
        .unwrap()
        .is_none());
}

// ---------------------------------------------------------------------------------
// 12. apply_failed, all or nothing, and retry.

/// Approves a pending change and asserts the apply failed with `error_part`, was
/// audited and counted, and left the registry as it was.
/// A pending `packages` change on g1 that can only fail to apply: it passed every check
/// at submit while the list had room, and another approved change then filled the list
/// past the registry's limit.
fn doomed_packages_change(env: &Env) -> ironclaw_gateway::ChangeRecord {
    let names = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    let fill = env.submit(
        ChangeKind::Packages,
        "g1",
        json!({"apt": names("fill", 200)}),
    );
    let doomed = env.submit(
        ChangeKind::Packages,
        "g1",
        json!({"apt": names("more", 100)}),
    );
    assert_eq!(doomed.status, ChangeStatus::Pending);
    assert_eq!(
        env.approve(&fill.request.id, OWNER).status,
        ChangeStatus::Applied
    );
    doomed
}

fn assert_apply_fails(env: &Env, id: &ironclaw_contract::ids::ChangeId, error_part: &str) {
    let failed_before = stat(&env.gw.stats().apply_failed);
    let groups = env.registry.agent_groups().unwrap();
    let rec = env.approve(id, OWNER);
    assert_eq!(rec.status, ChangeStatus::ApplyFailed, "{rec:?}");
    let err = rec.error.clone().unwrap();
    assert!(err.contains(error_part), "{err:?} lacks {error_part:?}");
    assert_eq!(rec.decision.as_ref().unwrap().outcome, Outcome::Approve);
    assert_eq!(env.gw.get(id).unwrap(), rec);
    assert_eq!(env.registry.agent_groups().unwrap(), groups);
    assert_eq!(stat(&env.gw.stats().apply_failed), failed_before + 1);
    let events = events_for(&env.events(), id);
    assert_eq!(
        kinds(&events),
        ["submitted", "verdict", "decision", "apply_failed"]
    );
    assert_eq!(
        events[3],
        AuditEvent::ApplyFailed {
            change_id: id.clone(),
            error: err,
        }
    );
}

#[test]
fn a_second_create_agent_of_the_same_id_fails_to_apply() {
    let env = Env::new();
    let first = env.submit(
        ChangeKind::CreateAgent,
        "alpha",
        json!({"name": "Alpha", "persona": "one"}),
    );
    // Submitted before the first is approved: the verifier sees a free id.
    let other_name = env.submit(
        ChangeKind::CreateAgent,
        "alpha",
        json!({"name": "Other", "id": "alpha"}),
    );
    assert_eq!(other_name.status, ChangeStatus::Pending);
    let same_name = env.submit(
        ChangeKind::CreateAgent,
        "alpha",
        json!({"name": "Alpha", "persona": "two", "enabled_tools": ["read_file"]}),
    );
    assert_eq!(same_name.status, ChangeStatus::Pending);

    assert_eq!(
        env.approve(&first.request.id, OWNER).status,
        ChangeStatus::Applied
    );
    let alpha = env.group("alpha");
    assert_eq!(alpha.persona, "one");

    assert_apply_fails(&env, &other_name.request.id, "already exists");
    // Same name, different content: must not be reported applied while the
    // approved persona and tools were never applied.
    assert_apply_fails(&env, &same_name.request.id, "already exists");
    assert_eq!(env.group("alpha"), alpha);
    assert_eq!(stat(&env.gw.stats().applied), 1);
    assert_eq!(stat(&env.gw.stats().apply_failed), 2);

    // Retrying fails the same way, recorded again.
    let again = env.gw.retry(&other_name.request.id, &uid(ALICE)).unwrap();
    assert_eq!(again.status, ChangeStatus::ApplyFailed);
    assert!(again.error.unwrap().contains("already exists"));
    assert_eq!(stat(&env.gw.stats().apply_failed), 3);
    let ev = events_for(&env.events(), &other_name.request.id);
    assert_eq!(
        kinds(&ev),
        [
            "submitted",
            "verdict",
            "decision",
            "apply_failed",
            "retried",
            "apply_failed"
        ]
    );
    assert_eq!(env.group("alpha"), alpha);
}

#[test]
fn retry_applies_once_the_obstacle_is_gone() {
    let env = Env::new();
    let a = env.submit(ChangeKind::CreateAgent, "beta", json!({"name": "Beta"}));
    let b = env.submit(
        ChangeKind::CreateAgent,
        "beta",
        json!({"name": "Beta", "persona": "better"}),
    );
    env.approve(&a.request.id, OWNER);
    assert_apply_fails(&env, &b.request.id, "already exists");

    // An operator makes the existing group what the change asked for.
    env.registry
        .update_agent_group(&gid("beta"), |g| {
            g.persona = "better".into();
            Ok(())
        })
        .unwrap();
    let done = env.gw.retry(&b.request.id, &uid(ALICE)).unwrap();
    assert_eq!(done.status, ChangeStatus::Applied, "{done:?}");
    assert_eq!(done.error, None);
    // The decision is the original one.
    assert_eq!(done.decision.unwrap().decided_by, uid(OWNER));
    let ev = events_for(&env.events(), &b.request.id);
    assert_eq!(
        kinds(&ev),
        [
            "submitted",
            "verdict",
            "decision",
            "apply_failed",
            "retried",
            "applied"
        ]
    );
    assert!(
        matches!(&ev[4], AuditEvent::ChangeRetried { retried_by, .. } if *retried_by == uid(ALICE))
    );
    assert_eq!(stat(&env.gw.stats().applied), 2);

    // Retrying an applied change is a wrong state.
    let r = env.gw.retry(&b.request.id, &uid(ALICE));
    assert!(
        matches!(
            r,
            Err(GatewayError::WrongState {
                status: ChangeStatus::Applied,
                expected: "apply_failed",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn retry_only_applies_to_failed_changes() {
    let env = Env::new();
    let pending = env.submit(ChangeKind::Persona, "g1", json!({"persona": "x"}));
    let rejected = env.submit(ChangeKind::Persona, "g1", json!({"persona": "y"}));
    env.gw
        .decide(&rejected.request.id, Outcome::Reject, &uid(ALICE), None)
        .unwrap();
    for (id, status) in [
        (&pending.request.id, ChangeStatus::Pending),
        (&rejected.request.id, ChangeStatus::Rejected),
    ] {
        let r = env.gw.retry(id, &uid(ALICE));
        assert!(
            matches!(
                &r,
                Err(GatewayError::WrongState { status: s, expected: "apply_failed", .. }) if *s == status
            ),
            "{r:?}"
        );
    }
    // A retry never turns a pending change into an applied one.
    assert_eq!(env.group("g1").persona, "");
    assert_eq!(
        env.gw.get(&pending.request.id).unwrap().status,
        ChangeStatus::Pending
    );
}

#[test]
fn a_sandbox_cannot_retry() {
    let env = Env::new();
    let rec = doomed_packages_change(&env);
    assert_apply_fails(&env, &rec.request.id, "the limit is 256");
    let r = env.gw.retry(&rec.request.id, &uid(SANDBOX));
    assert!(matches!(r, Err(GatewayError::Forbidden(_))), "{r:?}");
    assert_eq!(
        env.gw.get(&rec.request.id).unwrap().status,
        ChangeStatus::ApplyFailed
    );
    assert_eq!(stat(&env.gw.stats().apply_failed), 1);
}

#[test]
fn payloads_the_registry_refuses_are_rejected_at_submit() {
    let env = Env::new();
    let p = env.mount_prefix();
    let p = p.to_str().unwrap();
    env.apply(
        ChangeKind::Mounts,
        "g1",
        json!({"mounts": [{"source": format!("{p}/keep"), "target": "/mnt/keep"}]}),
    );
    let before = env.group("g1");
    let mg = env.messaging_group("C9");
    let refused = [
        // Two sources on one target.
        (
            ChangeKind::Mounts,
            json!({"mounts": [
                {"source": format!("{p}/a"), "target": "/mnt/x"},
                {"source": format!("{p}/b"), "target": "/mnt/x"},
            ]}),
            "mounted twice",
        ),
        // A pattern with a mode that takes none.
        (
            ChangeKind::Wiring,
            json!({"messaging_group_id": mg.as_str(), "engage_mode": "mention", "engage_pattern": "x"}),
            "engage_pattern",
        ),
        // A control character in a persona.
        (
            ChangeKind::Persona,
            json!({"persona": "bell \u{7} here"}),
            "control character",
        ),
    ];
    for (kind, payload, why) in refused {
        let rec = env.submit(kind, "g1", payload);
        assert_eq!(rec.status, ChangeStatus::Rejected, "{rec:?}");
        let last = rec
            .verdicts
            .iter()
            .find(|v| v.verifier == "registry-dry-run")
            .unwrap();
        assert!(last.reason.contains(why), "{:?} lacks {why:?}", last.reason);
        // A human never sees it, and the rehearsal left nothing behind.
        assert!(env.gw.pending().unwrap().is_empty());
        assert_eq!(env.group("g1"), before);
        assert!(env.registry.wirings_for(&mg).unwrap().is_empty());
    }
}

#[test]
fn a_failed_apply_leaves_nothing_behind() {
    let env = Env::new();
    let rec = doomed_packages_change(&env);
    let before = env.group("g1");
    assert_apply_fails(&env, &rec.request.id, "the limit is 256");
    assert_eq!(env.group("g1"), before);
    assert_eq!(env.gw.count(ChangeStatus::ApplyFailed).unwrap(), 1);
}

#[test]
fn retry_needs_a_deciders_role() {
    let env = Env::new();
    let rec = doomed_packages_change(&env);
    assert_apply_fails(&env, &rec.request.id, "the limit is 256");
    let refused = stat(&env.gw.stats().refused);
    for who in [FRANK, ERIN, "operator:stranger", SANDBOX] {
        let r = env.gw.retry(&rec.request.id, &uid(who));
        assert!(matches!(r, Err(GatewayError::Forbidden(_))), "{who}: {r:?}");
    }
    assert_eq!(stat(&env.gw.stats().refused), refused + 4);
    assert_eq!(
        env.gw.get(&rec.request.id).unwrap().status,
        ChangeStatus::ApplyFailed
    );
    // The scoped admin of g1 may retry (it fails again, for the same reason).
    let again = env.gw.retry(&rec.request.id, &uid(DANA)).unwrap();
    assert_eq!(again.status, ChangeStatus::ApplyFailed);
    assert_eq!(env.group("g1").packages.len(), 200);

    // Retrying a create_agent needs an owner or a global admin, as deciding it does.
    let a = env.submit(ChangeKind::CreateAgent, "zeta", json!({"name": "Zeta"}));
    let b = env.submit(
        ChangeKind::CreateAgent,
        "zeta",
        json!({"name": "Zeta", "model": "other"}),
    );
    env.approve(&a.request.id, OWNER);
    assert_apply_fails(&env, &b.request.id, "already exists");
    assert!(matches!(
        env.gw.retry(&b.request.id, &uid(DANA)),
        Err(GatewayError::Forbidden(_))
    ));
    assert_eq!(
        env.gw.retry(&b.request.id, &uid(ALICE)).unwrap().status,
        ChangeStatus::ApplyFailed
    );
}
