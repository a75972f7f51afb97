//! The gateway's lifecycle: submit, decide (who may, and when), races, metrics.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Barrier;

use common::*;
use ironclaw_audit::AuditEvent;
use ironclaw_contract::enums::{ChangeKind, ChangeStatus, Outcome, Verdict};
use ironclaw_contract::ids::ChangeId;
use ironclaw_gateway::{request_hash, GatewayError};
use ironclaw_registry::{Role, RoleGrant};
use serde_json::json;

fn persona(env: &Env, text: &str) -> ironclaw_gateway::ChangeRecord {
    env.submit(ChangeKind::Persona, "g1", json!({ "persona": text }))
}

// ---------------------------------------------------------------------------------
// 1. Submit holds every change for a human.

#[test]
fn submit_holds_the_change_pending_with_every_verdict_and_applies_nothing() {
    let env = Env::new();
    let before = env.group("g1");
    let rec = persona(&env, "be terse");

    assert_eq!(rec.status, ChangeStatus::Pending);
    assert_eq!(rec.decision, None);
    assert_eq!(rec.error, None);
    let names: Vec<&str> = rec.verdicts.iter().map(|v| v.verifier.as_str()).collect();
    assert_eq!(names, STANDARD_CHAIN);
    let (floor, rest) = rec.verdicts.split_last().unwrap();
    assert_eq!(floor.verdict, Verdict::RequireHuman);
    assert_eq!(floor.reason, "every change needs a human decision");
    assert!(rest.iter().all(|v| v.verdict == Verdict::Pass), "{rest:?}");

    // The stored request is what was submitted, with server-side fields filled in.
    let req = &rec.request;
    assert!(req.id.as_str().starts_with("chg_"), "{}", req.id);
    assert_eq!(req.id.as_str().len(), 4 + 32);
    assert_eq!(req.kind, ChangeKind::Persona);
    assert_eq!(req.agent_group_id, gid("g1"));
    assert_eq!(req.requested_by, uid(CAROL));
    assert_eq!(req.after, json!({"persona": "be terse"}));
    assert_eq!(req.before, Some(json!({"persona": ""})));
    assert_eq!(req.reason.as_deref(), Some("test"));
    assert_eq!(rec.request_hash, request_hash(req));
    assert_eq!(rec.request_hash.len(), 64);

    // Nothing applied.
    assert_eq!(env.group("g1"), before);
    assert_eq!(env.gw.get(&req.id).unwrap(), rec);
    assert_eq!(*env.gw.pending().unwrap(), vec![rec.clone()]);
    assert_eq!(env.gw.count(ChangeStatus::Pending).unwrap(), 1);
    assert!(env.gw.history(10).unwrap().is_empty());

    // Audited: submit, then the chain's verdict; nothing else.
    assert_eq!(
        env.events(),
        vec![
            AuditEvent::ChangeSubmitted {
                change_id: req.id.clone(),
                kind: ChangeKind::Persona,
                agent_group_id: gid("g1"),
                requested_by: uid(CAROL),
                request_hash: rec.request_hash.clone(),
            },
            AuditEvent::VerdictRecorded {
                change_id: req.id.clone(),
                verdict: Verdict::RequireHuman,
                reason: "always-require-human: every change needs a human decision".into(),
            },
        ]
    );
    assert_eq!(stat(&env.gw.stats().submitted), 1);
    assert_eq!(stat(&env.gw.stats().applied), 0);
    assert_eq!(stat(&env.gw.stats().approved), 0);

    // Ids are minted per submission.
    let other = persona(&env, "be terse");
    assert_ne!(other.request.id, req.id);
    assert_ne!(other.request_hash, rec.request_hash);
}

#[test]
fn sandbox_principals_may_submit() {
    let env = Env::new();
    let rec = env.submit_as(
        SANDBOX,
        ChangeKind::EnabledTools,
        "g1",
        json!({"add": ["read_file"]}),
    );
    assert_eq!(rec.status, ChangeStatus::Pending);
    assert_eq!(rec.request.requested_by, uid(SANDBOX));
    assert!(env.group("g1").enabled_tools.is_empty());
}

#[test]
fn a_keyed_submission_is_held_once_however_often_it_is_retried() {
    let env = Env::new();
    let submit = |key: &str| {
        env.gw
            .submit_once(
                sub(
                    ChangeKind::EnabledTools,
                    "g1",
                    json!({"add": ["read_file"]}),
                ),
                &uid(SANDBOX),
                key,
            )
            .unwrap()
    };
    let first = submit("out-7");
    let events = env.events().len();
    // The retry of a caller that crashed before recording the submit.
    let again = submit("out-7");
    assert_eq!(again.request.id, first.request.id);
    assert_eq!(env.events().len(), events, "a retry records nothing");
    assert_eq!(env.gw.pending().unwrap().len(), 1);
    // Still the same change after a human decided it.
    env.gw
        .decide(&first.request.id, Outcome::Reject, &uid(ALICE), None)
        .unwrap();
    assert_eq!(submit("out-7").status, ChangeStatus::Rejected);
    // Another key, or the same key from another requester, is another change.
    assert_ne!(submit("out-8").request.id, first.request.id);
    let other = env
        .gw
        .submit_once(
            sub(
                ChangeKind::EnabledTools,
                "g1",
                json!({"add": ["read_file"]}),
            ),
            &uid(CAROL),
            "out-7",
        )
        .unwrap();
    assert_ne!(other.request.id, first.request.id);
}

// ---------------------------------------------------------------------------------
// 2./3. Approve and reject.

#[test]
fn approval_by_another_admin_applies_exactly_once_and_binds_to_the_hash() {
    let env = Env::new();
    let rec = env.submit(
        ChangeKind::Packages,
        "g1",
        json!({"apt": ["ripgrep"], "npm": ["left-pad"]}),
    );
    let id = rec.request.id.clone();

    let done = env.approve(&id, ALICE);
    assert_eq!(done.status, ChangeStatus::Applied);
    assert_eq!(done.error, None);
    assert_eq!(done.request, rec.request);
    assert_eq!(done.verdicts, rec.verdicts);
    let d = done.decision.clone().unwrap();
    assert_eq!(d.outcome, Outcome::Approve);
    assert_eq!(d.decided_by, uid(ALICE));
    assert_eq!(d.request_hash, rec.request_hash);
    assert_eq!(d.request_hash, request_hash(&done.request));
    assert_eq!(env.gw.get(&id).unwrap(), done);

    assert_eq!(
        env.group("g1").packages,
        vec!["apt:ripgrep".to_owned(), "npm:left-pad".to_owned()]
    );
    assert!(env.gw.pending().unwrap().is_empty());
    assert_eq!(env.gw.history(10).unwrap(), vec![done.clone()]);
    assert_eq!(env.gw.count(ChangeStatus::Applied).unwrap(), 1);

    let events = env.events();
    assert_eq!(
        kinds(&events),
        ["submitted", "verdict", "decision", "applied"]
    );
    assert_eq!(
        events[2],
        AuditEvent::DecisionRecorded {
            change_id: id.clone(),
            outcome: Outcome::Approve,
            decided_by: uid(ALICE),
            request_hash: rec.request_hash.clone(),
        }
    );
    assert_eq!(
        events[3],
        AuditEvent::ChangeApplied {
            change_id: id.clone(),
            request_hash: rec.request_hash.clone(),
        }
    );

    // A second approval is refused (409) and changes nothing.
    let again = env.gw.decide(&id, Outcome::Approve, &uid(BOB), None);
    assert!(
        matches!(
            again,
            Err(GatewayError::WrongState { ref id, status: ChangeStatus::Applied, expected: "pending" })
                if *id == rec.request.id
        ),
        "{again:?}"
    );
    assert_eq!(env.gw.get(&id).unwrap(), done);
    assert_eq!(env.group("g1").packages.len(), 2);
    assert_eq!(env.events().len(), 4);
    assert_eq!(stat(&env.gw.stats().approved), 1);
    assert_eq!(stat(&env.gw.stats().applied), 1);
}

#[test]
fn rejection_records_the_decision_and_applies_nothing() {
    let env = Env::new();
    let before = env.group("g1");
    let rec = persona(&env, "be evil");
    let id = rec.request.id.clone();

    let done = env
        .gw
        .decide(&id, Outcome::Reject, &uid(BOB), None)
        .unwrap();
    assert_eq!(done.status, ChangeStatus::Rejected);
    let d = done.decision.clone().unwrap();
    assert_eq!(d.outcome, Outcome::Reject);
    assert_eq!(d.decided_by, uid(BOB));
    assert_eq!(d.request_hash, rec.request_hash);
    assert_eq!(env.group("g1"), before);
    assert!(env.gw.pending().unwrap().is_empty());
    assert_eq!(env.gw.history(10).unwrap(), vec![done.clone()]);

    let events = env.events();
    assert_eq!(kinds(&events), ["submitted", "verdict", "decision"]);
    assert_eq!(
        events[2],
        AuditEvent::DecisionRecorded {
            change_id: id.clone(),
            outcome: Outcome::Reject,
            decided_by: uid(BOB),
            request_hash: rec.request_hash.clone(),
        }
    );

    // A rejected change cannot be approved afterwards.
    let late = env.gw.decide(&id, Outcome::Approve, &uid(ALICE), None);
    assert!(
        matches!(
            late,
            Err(GatewayError::WrongState {
                status: ChangeStatus::Rejected,
                ..
            })
        ),
        "{late:?}"
    );
    assert_eq!(env.gw.get(&id).unwrap(), done);
    assert_eq!(env.group("g1"), before);
    assert_eq!(stat(&env.gw.stats().rejected), 1);
    assert_eq!(stat(&env.gw.stats().approved), 0);
    assert_eq!(stat(&env.gw.stats().applied), 0);
}

// ---------------------------------------------------------------------------------
// 4./5. Who may never decide.

/// Asserts `decide` was refused with 403, audited as refused (with `reason_part` in
/// the reason), and left the change pending.
fn assert_refused(
    env: &Env,
    id: &ChangeId,
    outcome: Outcome,
    decider: &str,
    claimed: Option<&str>,
    reason_part: &str,
) {
    let refused_before = stat(&env.gw.stats().refused);
    let n_events = env.events().len();
    let claimed = claimed.map(uid);
    let r = env.gw.decide(id, outcome, &uid(decider), claimed.as_ref());
    match &r {
        Err(GatewayError::Forbidden(reason)) => {
            assert!(
                reason.contains(reason_part),
                "{reason:?} lacks {reason_part:?}"
            )
        }
        other => panic!("{decider} deciding: expected Forbidden, got {other:?}"),
    }
    let events = env.events();
    assert_eq!(events.len(), n_events + 1, "exactly one audit record");
    match events.last().unwrap() {
        AuditEvent::DecisionRefused {
            change_id,
            attempted_by,
            reason,
        } => {
            assert_eq!(change_id, id);
            assert_eq!(attempted_by, &uid(decider));
            assert!(reason.contains(reason_part), "{reason:?}");
        }
        other => panic!("expected DecisionRefused, got {other:?}"),
    }
    let rec = env.gw.get(id).unwrap();
    assert_eq!(rec.status, ChangeStatus::Pending);
    assert_eq!(rec.decision, None);
    assert_eq!(stat(&env.gw.stats().refused), refused_before + 1);
}

#[test]
fn the_requester_can_neither_approve_nor_reject_their_own_change() {
    let env = Env::new();
    // Alice is a global admin and could decide anyone else's change.
    let rec = env.submit_as(ALICE, ChangeKind::Persona, "g1", json!({"persona": "mine"}));
    let id = rec.request.id.clone();
    assert_refused(
        &env,
        &id,
        Outcome::Approve,
        ALICE,
        None,
        "requested this change",
    );
    assert_refused(
        &env,
        &id,
        Outcome::Reject,
        ALICE,
        None,
        "requested this change",
    );
    // Naming herself with --by changes nothing.
    assert_refused(
        &env,
        &id,
        Outcome::Approve,
        ALICE,
        Some(ALICE),
        "requested this change",
    );
    assert_eq!(env.group("g1").persona, "");
    assert_eq!(stat(&env.gw.stats().refused), 3);
    assert_eq!(stat(&env.gw.stats().approved), 0);
    assert_eq!(stat(&env.gw.stats().rejected), 0);

    // Another admin still can.
    assert_eq!(env.approve(&id, BOB).status, ChangeStatus::Applied);
    assert_eq!(env.group("g1").persona, "mine");
}

#[test]
fn the_owner_cannot_approve_their_own_change_either() {
    let env = Env::new();
    let rec = env.submit_as(
        OWNER,
        ChangeKind::CreateAgent,
        "new-agent",
        json!({"name": "new agent"}),
    );
    assert_refused(
        &env,
        &rec.request.id,
        Outcome::Approve,
        OWNER,
        None,
        "requested this change",
    );
    assert!(env
        .registry
        .agent_group(&gid("new-agent"))
        .unwrap()
        .is_none());
}

#[test]
fn a_sandbox_never_decides_even_holding_a_role() {
    // A durable registry, so a role row can be planted behind the registry's back
    // (its API refuses grants to sandbox principals).
    let dir = tempfile::tempdir().unwrap();
    let reg_path = dir.path().join("registry.db");
    let registry = ironclaw_registry::Registry::open(&reg_path, &cipher(7)).unwrap();
    seed(&registry);
    assert!(registry
        .grant_role(&RoleGrant {
            user_id: uid(SANDBOX),
            role: Role::Owner,
            scope: None,
        })
        .is_err());
    {
        let raw = ironclaw_contract::db::open_writer(
            &reg_path,
            &cipher(7),
            &ironclaw_registry::REGISTRY_FILE,
        )
        .unwrap();
        raw.execute(
            "INSERT INTO roles (user_id, role, agent_group_id) VALUES (?1, 'owner', NULL), (?1, 'admin', NULL), (?1, 'admin', 'g1')",
            [SANDBOX],
        )
        .unwrap();
    }
    // The planted rows are there: the registry reports the sandbox as an owner for
    // plain access...
    assert_eq!(
        registry.access(&uid(SANDBOX), &gid("g1")).unwrap().reason,
        ironclaw_registry::AccessReason::Owner
    );

    let registry = std::sync::Arc::new(registry);
    let audit = std::sync::Arc::new(
        ironclaw_audit::AuditLog::open(&dir.path().join("audit.jsonl")).unwrap(),
    );
    let gw = ironclaw_gateway::Gateway::new(
        ironclaw_gateway::ChangeStore::in_memory().unwrap(),
        registry.clone(),
        audit.clone(),
        ironclaw_gateway::Chain::standard(dir.path().join("mounts")),
    );
    let env = Env {
        dir,
        registry,
        audit,
        gw,
    };

    let rec = persona(&env, "let me out");
    let id = rec.request.id.clone();
    let why = "sandbox principals never decide changes";
    assert_refused(&env, &id, Outcome::Approve, SANDBOX, None, why);
    assert_refused(&env, &id, Outcome::Reject, SANDBOX, None, why);
    assert_refused(&env, &id, Outcome::Approve, SANDBOX, Some(SANDBOX), why);
    // Nor through a create_agent (which checks owner / global admin instead).
    let create = env.submit(ChangeKind::CreateAgent, "escape", json!({"name": "escape"}));
    assert_refused(
        &env,
        &create.request.id,
        Outcome::Approve,
        SANDBOX,
        None,
        why,
    );
    // A sandbox approving its own request: refused as well.
    let own = env.submit_as(
        SANDBOX,
        ChangeKind::Persona,
        "g1",
        json!({"persona": "mine"}),
    );
    assert_refused(
        &env,
        &own.request.id,
        Outcome::Approve,
        SANDBOX,
        None,
        "sandbox",
    );
    assert_eq!(env.group("g1").persona, "");
    assert!(env.registry.agent_group(&gid("escape")).unwrap().is_none());
}

#[test]
fn a_claimed_decider_must_be_the_authenticated_one() {
    let env = Env::new();
    let rec = persona(&env, "claimed");
    let id = rec.request.id.clone();
    // Bob authenticated, but claims to be Alice.
    assert_refused(&env, &id, Outcome::Approve, BOB, Some(ALICE), "--by");
    assert_refused(&env, &id, Outcome::Reject, BOB, Some(ALICE), "--by");
    // Even an unprivileged caller claiming an admin is refused for the claim.
    assert_refused(&env, &id, Outcome::Approve, FRANK, Some(ALICE), "--by");
    assert_eq!(env.group("g1").persona, "");

    let done = env
        .gw
        .decide(&id, Outcome::Approve, &uid(BOB), Some(&uid(BOB)))
        .unwrap();
    assert_eq!(done.status, ChangeStatus::Applied);
    assert_eq!(done.decision.unwrap().decided_by, uid(BOB));
    assert_eq!(env.group("g1").persona, "claimed");
}

// ---------------------------------------------------------------------------------
// 6. Role checks.

#[test]
fn only_owners_and_admins_of_the_target_group_decide() {
    let env = Env::new();
    let not_admin = "is not an owner or an admin of agent group g1";

    let rec = persona(&env, "v1");
    let id = rec.request.id.clone();
    assert_refused(&env, &id, Outcome::Approve, FRANK, None, not_admin);
    assert_refused(&env, &id, Outcome::Reject, FRANK, None, not_admin);
    assert_refused(&env, &id, Outcome::Approve, ERIN, None, not_admin);
    assert_refused(
        &env,
        &id,
        Outcome::Approve,
        "operator:stranger",
        None,
        not_admin,
    );
    // Deciding needs a role even to reject, and the requester has none.
    assert_refused(
        &env,
        &id,
        Outcome::Reject,
        CAROL,
        None,
        "requested this change",
    );
    assert_eq!(env.group("g1").persona, "");

    // The admin scoped to g1 may.
    assert_eq!(env.approve(&id, DANA).status, ChangeStatus::Applied);
    assert_eq!(env.group("g1").persona, "v1");

    // A global admin may.
    let rec = persona(&env, "v2");
    assert_eq!(
        env.approve(&rec.request.id, ALICE).status,
        ChangeStatus::Applied
    );
    // The owner may.
    let rec = persona(&env, "v3");
    assert_eq!(
        env.approve(&rec.request.id, OWNER).status,
        ChangeStatus::Applied
    );
    assert_eq!(env.group("g1").persona, "v3");

    // Erin is the one who decides for g2, Dana is not.
    let rec = env.submit(ChangeKind::Persona, "g2", json!({"persona": "g2 v1"}));
    assert_refused(
        &env,
        &rec.request.id,
        Outcome::Approve,
        DANA,
        None,
        "is not an owner or an admin of agent group g2",
    );
    assert_eq!(
        env.approve(&rec.request.id, ERIN).status,
        ChangeStatus::Applied
    );
    assert_eq!(env.group("g2").persona, "g2 v1");
}

#[test]
fn revoking_a_role_takes_the_right_to_decide_away() {
    let env = Env::new();
    let rec = persona(&env, "after revoke");
    env.registry
        .revoke_role(&RoleGrant {
            user_id: uid(DANA),
            role: Role::Admin,
            scope: Some(gid("g1")),
        })
        .unwrap();
    assert_refused(
        &env,
        &rec.request.id,
        Outcome::Approve,
        DANA,
        None,
        "is not an owner or an admin",
    );
}

#[test]
fn creating_an_agent_needs_an_owner_or_a_global_admin() {
    let env = Env::new();
    let needs = "creating an agent group needs one";
    let a = env.submit(
        ChangeKind::CreateAgent,
        "researcher",
        json!({"name": "Researcher"}),
    );
    let id = a.request.id.clone();
    assert_refused(&env, &id, Outcome::Approve, DANA, None, needs);
    assert_refused(&env, &id, Outcome::Approve, ERIN, None, needs);
    assert_refused(&env, &id, Outcome::Approve, FRANK, None, needs);
    assert_refused(&env, &id, Outcome::Reject, DANA, None, needs);
    assert!(env
        .registry
        .agent_group(&gid("researcher"))
        .unwrap()
        .is_none());

    // A global admin may.
    assert_eq!(env.approve(&id, ALICE).status, ChangeStatus::Applied);
    assert_eq!(env.group("researcher").name, "Researcher");

    // The owner may.
    let b = env.submit(ChangeKind::CreateAgent, "writer", json!({"name": "Writer"}));
    assert_eq!(
        env.approve(&b.request.id, OWNER).status,
        ChangeStatus::Applied
    );
    assert_eq!(env.group("writer").name, "Writer");
}

// ---------------------------------------------------------------------------------
// 7. Unknown ids, decided changes, races.

#[test]
fn deciding_an_unknown_change_is_not_found() {
    let env = Env::new();
    let ghost = cid("chg_00000000000000000000000000000000");
    for outcome in [Outcome::Approve, Outcome::Reject] {
        let r = env.gw.decide(&ghost, outcome, &uid(ALICE), None);
        assert!(
            matches!(&r, Err(GatewayError::NotFound(id)) if *id == ghost),
            "{r:?}"
        );
    }
    assert!(matches!(env.gw.get(&ghost), Err(GatewayError::NotFound(_))));
    assert!(matches!(
        env.gw.retry(&ghost, &uid(ALICE)),
        Err(GatewayError::NotFound(_))
    ));
    // Nothing recorded, nothing counted.
    assert!(env.events().is_empty());
    assert_eq!(stat(&env.gw.stats().refused), 0);
}

#[test]
fn the_first_decision_stands() {
    let env = Env::new();
    let rec = persona(&env, "first");
    let id = rec.request.id.clone();
    let first = env.approve(&id, ALICE);
    assert_eq!(first.status, ChangeStatus::Applied);

    for (outcome, by) in [(Outcome::Reject, BOB), (Outcome::Approve, DANA)] {
        let r = env.gw.decide(&id, outcome, &uid(by), None);
        assert!(
            matches!(
                r,
                Err(GatewayError::WrongState {
                    status: ChangeStatus::Applied,
                    expected: "pending",
                    ..
                })
            ),
            "{r:?}"
        );
    }
    let now = env.gw.get(&id).unwrap();
    assert_eq!(now, first);
    assert_eq!(now.decision.unwrap().decided_by, uid(ALICE));
    assert_eq!(env.group("g1").persona, "first");
    assert_eq!(
        kinds(&env.events()),
        ["submitted", "verdict", "decision", "applied"]
    );
}

#[test]
fn twenty_racing_approvals_apply_once() {
    let env = Env::new();
    let deciders: Vec<String> = (0..20).map(|i| format!("operator:adm{i}")).collect();
    // 15 global admins and 5 plain members.
    for (i, d) in deciders.iter().enumerate() {
        if i < 15 {
            env.registry
                .grant_role(&RoleGrant {
                    user_id: uid(d),
                    role: Role::Admin,
                    scope: None,
                })
                .unwrap();
        } else {
            env.registry.add_member(&uid(d), &gid("g1")).unwrap();
        }
    }
    let rec = env.submit(
        ChangeKind::EnabledTools,
        "g1",
        json!({"add": ["read_file"]}),
    );
    let id = rec.request.id.clone();

    let barrier = Barrier::new(deciders.len());
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = deciders
            .iter()
            .map(|d| {
                let (env, id, barrier) = (&env, &id, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    env.gw.decide(id, Outcome::Approve, &uid(d), None)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1, "{results:?}");
    assert_eq!(ok[0].status, ChangeStatus::Applied);
    let mut wrong_state = 0;
    let mut forbidden = 0;
    for r in &results {
        match r {
            Ok(_) => {}
            Err(GatewayError::WrongState {
                status: ChangeStatus::Applied,
                ..
            }) => wrong_state += 1,
            Err(GatewayError::Forbidden(_)) => forbidden += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((wrong_state, forbidden), (14, 5));

    let events = env.events();
    let k = kinds(&events);
    assert_eq!(k.iter().filter(|k| **k == "decision").count(), 1);
    assert_eq!(k.iter().filter(|k| **k == "applied").count(), 1);
    assert_eq!(k.iter().filter(|k| **k == "refused").count(), 5);
    assert_eq!(stat(&env.gw.stats().approved), 1);
    assert_eq!(stat(&env.gw.stats().applied), 1);
    assert_eq!(stat(&env.gw.stats().refused), 5);
    assert_eq!(env.group("g1").enabled_tools, vec!["read_file".to_owned()]);
    let winner = env.gw.get(&id).unwrap().decision.unwrap().decided_by;
    assert_eq!(&winner, &ok[0].decision.as_ref().unwrap().decided_by);
}

#[test]
fn racing_approve_and_reject_have_one_winner() {
    let env = Env::new();
    let admins: Vec<String> = (0..10).map(|i| format!("operator:racer{i}")).collect();
    for a in &admins {
        env.registry
            .grant_role(&RoleGrant {
                user_id: uid(a),
                role: Role::Admin,
                scope: Some(gid("g1")),
            })
            .unwrap();
    }
    let rec = persona(&env, "contested");
    let id = rec.request.id.clone();
    let barrier = Barrier::new(admins.len());
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = admins
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (env, id, barrier) = (&env, &id, &barrier);
                let outcome = if i % 2 == 0 {
                    Outcome::Approve
                } else {
                    Outcome::Reject
                };
                s.spawn(move || {
                    barrier.wait();
                    (outcome, env.gw.decide(id, outcome, &uid(a), None))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let (outcome, _) = winners[0];
    let fin = env.gw.get(&id).unwrap();
    assert_eq!(fin.decision.as_ref().unwrap().outcome, *outcome);
    match outcome {
        Outcome::Approve => {
            assert_eq!(fin.status, ChangeStatus::Applied);
            assert_eq!(env.group("g1").persona, "contested");
        }
        Outcome::Reject => {
            assert_eq!(fin.status, ChangeStatus::Rejected);
            assert_eq!(env.group("g1").persona, "");
        }
    }
    for (_, r) in &results {
        assert!(
            matches!(r, Ok(_) | Err(GatewayError::WrongState { .. })),
            "{r:?}"
        );
    }
    let k = kinds(&env.events());
    assert_eq!(k.iter().filter(|k| **k == "decision").count(), 1);
}

// ---------------------------------------------------------------------------------
// 8. Refused at submit: nothing stored.

fn assert_nothing_stored(env: &Env) {
    assert!(env.gw.pending().unwrap().is_empty());
    assert!(env.gw.history(100).unwrap().is_empty());
    for s in [
        ChangeStatus::Pending,
        ChangeStatus::Approved,
        ChangeStatus::Applied,
        ChangeStatus::ApplyFailed,
        ChangeStatus::Rejected,
    ] {
        assert_eq!(env.gw.count(s).unwrap(), 0);
    }
    assert!(env.events().is_empty(), "{:?}", env.events());
    assert_eq!(stat(&env.gw.stats().submitted), 0);
}

#[test]
fn unknown_target_group_is_refused() {
    let env = Env::new();
    for kind in [
        ChangeKind::Persona,
        ChangeKind::EnabledTools,
        ChangeKind::Permissions,
    ] {
        let payload = match kind {
            ChangeKind::Persona => json!({"persona": "x"}),
            ChangeKind::EnabledTools => json!({"add": ["read_file"]}),
            _ => json!({"add_member": "slack:x"}),
        };
        let r = env.gw.submit(sub(kind, "nope", payload), &uid(CAROL));
        assert!(
            matches!(&r, Err(GatewayError::UnknownGroup(g)) if *g == gid("nope")),
            "{r:?}"
        );
    }
    assert_nothing_stored(&env);
    assert!(env.registry.agent_group(&gid("nope")).unwrap().is_none());
}

#[test]
fn kinds_this_control_plane_cannot_apply_are_refused() {
    let env = Env::new();
    for kind in [ChangeKind::McpRegister, ChangeKind::SkillInstall] {
        let r = env.gw.submit(
            sub(kind, "g1", json!({"name": "x", "command": "y"})),
            &uid(CAROL),
        );
        match r {
            Err(GatewayError::Invalid(msg)) => {
                assert!(msg.contains("cannot be applied"), "{msg}")
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
    assert_nothing_stored(&env);
}

#[test]
fn invalid_payloads_are_refused_and_nothing_is_stored() {
    let env = Env::new();
    let cases = [
        (ChangeKind::Persona, json!({})),
        (
            ChangeKind::Persona,
            json!({"persona": "x", "egress": ["evil.com"]}),
        ),
        (ChangeKind::Persona, json!({"instructions": "x"})),
        (ChangeKind::Persona, json!("be kind")),
        (ChangeKind::Persona, json!(null)),
        (ChangeKind::Persona, json!({"persona": 5})),
        (ChangeKind::Persona, json!({"persona": "x".repeat(4097)})),
        (ChangeKind::EnabledTools, json!(["read_file"])),
        (ChangeKind::EnabledTools, json!({"tools": ["read_file"]})),
        (
            ChangeKind::EnabledTools,
            json!({"add": ["read_file"], "remove": ["send_message"]}),
        ),
        (ChangeKind::EnabledTools, json!({"add": "read_file"})),
        (ChangeKind::Packages, json!({})),
        (
            ChangeKind::Packages,
            json!({"apt": ["ripgrep"], "pip": ["x"]}),
        ),
        (ChangeKind::Packages, json!({"unexpected": true})),
        (ChangeKind::Mounts, json!({})),
        (
            ChangeKind::Mounts,
            json!([{"source": "/a", "target": "/mnt/a"}]),
        ),
        (
            ChangeKind::Mounts,
            json!({"mounts": [{"source": "/a", "target": "/mnt/a", "mode": "rw"}]}),
        ),
        (
            ChangeKind::Wiring,
            json!({"messaging_group_id": "mg_1", "engage_mode": "sometimes"}),
        ),
        (ChangeKind::Wiring, json!({"messaging_group_id": "mg_1"})),
        (
            ChangeKind::Wiring,
            json!({"messaging_group_id": "../mg", "engage_mode": "mention"}),
        ),
        (ChangeKind::Permissions, json!({"add_member": "../x"})),
        (
            ChangeKind::Permissions,
            json!({"add_member": "slack:a", "grant_admin": "slack:a"}),
        ),
        (ChangeKind::Permissions, json!({"make_owner": "slack:a"})),
        (
            ChangeKind::Permissions,
            json!({"egress": "api.example.com"}),
        ),
        (ChangeKind::McpAccess, json!({"tools": ["x"]})),
        (ChangeKind::McpAccess, json!({"server": "s", "extra": 1})),
    ];
    for (kind, payload) in cases {
        let r = env.gw.submit(sub(kind, "g1", payload.clone()), &uid(CAROL));
        assert!(
            matches!(r, Err(GatewayError::Invalid(_))),
            "{kind} {payload}: {r:?}"
        );
    }
    for payload in [
        json!({}),
        json!({"name": "../etc"}),
        json!({"name": "a/b"}),
        json!({"name": "x", "id": "../x"}),
        json!({"name": "x", "folder": "x"}),
        json!({"name": "x", "persona": "p".repeat(4097)}),
    ] {
        let r = env.gw.submit(
            sub(ChangeKind::CreateAgent, "x", payload.clone()),
            &uid(CAROL),
        );
        assert!(
            matches!(r, Err(GatewayError::Invalid(_))),
            "{payload}: {r:?}"
        );
    }
    assert_nothing_stored(&env);
    assert_eq!(env.group("g1").persona, "");
}

#[test]
fn create_agent_must_name_the_group_it_creates() {
    let env = Env::new();
    // The payload derives "my-researcher"; the change names another group.
    let r = env.gw.submit(
        sub(
            ChangeKind::CreateAgent,
            "g1",
            json!({"name": "My Researcher"}),
        ),
        &uid(CAROL),
    );
    match r {
        Err(GatewayError::Invalid(msg)) => assert!(msg.contains("my-researcher"), "{msg}"),
        other => panic!("{other:?}"),
    }
    let r = env.gw.submit(
        sub(
            ChangeKind::CreateAgent,
            "other",
            json!({"name": "x", "id": "custom"}),
        ),
        &uid(CAROL),
    );
    assert!(matches!(r, Err(GatewayError::Invalid(_))), "{r:?}");
    assert_nothing_stored(&env);

    // create_agent is the one kind whose group need not exist.
    let ok = env.submit(
        ChangeKind::CreateAgent,
        "my-researcher",
        json!({"name": "My Researcher"}),
    );
    assert_eq!(ok.status, ChangeStatus::Pending);
    assert_eq!(ok.request.before, None);
}

#[test]
fn reasons_are_bounded() {
    let env = Env::new();
    let mut s = sub(ChangeKind::Persona, "g1", json!({"persona": "x"}));
    s.reason = Some("r".repeat(4097));
    assert!(matches!(
        env.gw.submit(s.clone(), &uid(CAROL)),
        Err(GatewayError::Invalid(_))
    ));
    assert_nothing_stored(&env);
    s.reason = Some("r".repeat(4096));
    assert_eq!(
        env.gw.submit(s, &uid(CAROL)).unwrap().status,
        ChangeStatus::Pending
    );
}

// ---------------------------------------------------------------------------------
// 15. Metrics move with what happened.

#[test]
fn counters_match_the_operations_performed() {
    let env = Env::new();
    let s = env.gw.stats();

    let a = persona(&env, "a");
    let b = persona(&env, "b");
    let c = persona(&env, "c");
    let evil = env.submit(ChangeKind::Packages, "g1", json!({"apt": ["; rm -rf /"]}));
    assert_eq!(evil.status, ChangeStatus::Rejected);
    // Refused at submit: not counted.
    let _ = env
        .gw
        .submit(sub(ChangeKind::Persona, "g1", json!({})), &uid(CAROL));
    let _ = env.gw.submit(
        sub(ChangeKind::Persona, "nope", json!({"persona": "x"})),
        &uid(CAROL),
    );
    assert_eq!(stat(&s.submitted), 4);
    assert_eq!(stat(&s.verifier_rejected), 1);

    env.approve(&a.request.id, ALICE);
    env.gw
        .decide(&b.request.id, Outcome::Reject, &uid(ALICE), None)
        .unwrap();
    // Refusals: a member, self, and a forged --by.
    for (by, claimed) in [(FRANK, None), (CAROL, None), (BOB, Some(ALICE))] {
        let claimed = claimed.map(uid);
        assert!(matches!(
            env.gw
                .decide(&c.request.id, Outcome::Approve, &uid(by), claimed.as_ref()),
            Err(GatewayError::Forbidden(_))
        ));
    }
    // Wrong state and unknown ids are not refusals.
    let _ = env
        .gw
        .decide(&a.request.id, Outcome::Approve, &uid(BOB), None);
    let _ = env.gw.decide(
        &cid("chg_ffffffffffffffffffffffffffffffff"),
        Outcome::Approve,
        &uid(BOB),
        None,
    );
    // An apply that fails: submitted while the package list had room, approved after
    // another change filled it past the registry's limit.
    let names = |p: &str, n: usize| (0..n).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    let fill = env.submit(
        ChangeKind::Packages,
        "g1",
        json!({"apt": names("fill", 200)}),
    );
    let bad = env.submit(
        ChangeKind::Packages,
        "g1",
        json!({"apt": names("more", 100)}),
    );
    assert_eq!(
        env.approve(&fill.request.id, BOB).status,
        ChangeStatus::Applied
    );
    assert_eq!(
        env.approve(&bad.request.id, BOB).status,
        ChangeStatus::ApplyFailed
    );

    assert_eq!(stat(&s.submitted), 6);
    assert_eq!(stat(&s.verifier_rejected), 1);
    assert_eq!(stat(&s.approved), 3);
    assert_eq!(stat(&s.rejected), 1);
    assert_eq!(stat(&s.refused), 3);
    assert_eq!(stat(&s.applied), 2);
    assert_eq!(stat(&s.apply_failed), 1);

    // And the store agrees.
    assert_eq!(env.gw.count(ChangeStatus::Pending).unwrap(), 1);
    assert_eq!(env.gw.count(ChangeStatus::Applied).unwrap(), 2);
    assert_eq!(env.gw.count(ChangeStatus::Rejected).unwrap(), 2);
    assert_eq!(env.gw.count(ChangeStatus::ApplyFailed).unwrap(), 1);
    assert_eq!(env.gw.history(100).unwrap().len(), 5);
    assert_eq!(env.gw.history(2).unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------
// A change is decidable only once the verifiers have spoken.

/// A verifier that rejects, but only when the test lets it finish.
struct Gate {
    entered: std::sync::Arc<Barrier>,
    release: std::sync::Arc<Barrier>,
}

impl ironclaw_gateway::verify::Verifier for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }
    fn verify(
        &self,
        _: &ironclaw_gateway::verify::VerifyContext<'_>,
    ) -> Result<(Verdict, String), String> {
        self.entered.wait();
        self.release.wait();
        Ok((Verdict::Reject, "malicious".into()))
    }
}

#[test]
fn a_change_cannot_be_approved_while_its_verifiers_run() {
    use std::sync::Arc;
    use std::time::Duration;

    let entered = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let env = Env::with_chain(|_| {
        ironclaw_gateway::Chain::new(vec![Box::new(Gate {
            entered: entered.clone(),
            release: release.clone(),
        })])
    });

    let env = &env;
    std::thread::scope(|s| {
        let submitter = s.spawn(|| {
            env.gw
                .submit(
                    sub(ChangeKind::Persona, "g1", json!({"persona": "evil"})),
                    &uid(CAROL),
                )
                .unwrap()
        });
        entered.wait();
        // The verifier is running. The change may be listed, but not decided.
        let listed = env.gw.pending().unwrap();
        assert_eq!(listed.len(), 1);
        let id = listed[0].request.id.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            let r = env.gw.decide(&id, Outcome::Approve, &uid(ALICE), None);
            tx.send(r).unwrap();
        });
        let early = rx.recv_timeout(Duration::from_millis(100));
        // Let the verifier finish before asserting, so a failure cannot hang the test.
        release.wait();
        let rec = submitter.join().unwrap();
        assert!(
            early.is_err(),
            "a decision completed before the verifiers finished: {early:?}; then {rec:?}"
        );
        let decided = rx.recv().unwrap();

        assert_eq!(rec.status, ChangeStatus::Rejected, "{rec:?}");
        assert_eq!(
            rec.decision.as_ref().unwrap().decided_by,
            uid("gateway:verifier")
        );
        assert!(
            matches!(
                decided,
                Err(GatewayError::WrongState {
                    status: ChangeStatus::Rejected,
                    ..
                })
            ),
            "{decided:?}"
        );
    });
    assert_eq!(env.group("g1").persona, "");
    assert_eq!(stat(&env.gw.stats().applied), 0);
    assert_eq!(stat(&env.gw.stats().approved), 0);
    let k = kinds(&env.events());
    assert_eq!(k, ["submitted", "verdict", "decision"]);
}

// ---------------------------------------------------------------------------------
// The pending list (cached between writes) never lags behind the store.

#[test]
fn the_pending_list_follows_every_write() {
    let env = Env::new();
    let ids = |env: &Env| -> Vec<ChangeId> {
        env.gw
            .pending()
            .unwrap()
            .iter()
            .map(|r| r.request.id.clone())
            .collect()
    };
    assert!(ids(&env).is_empty());
    assert!(env.gw.pending_cached().is_some());

    let a = persona(&env, "a");
    assert!(
        env.gw.pending_cached().is_none(),
        "a submit drops the cache"
    );
    assert_eq!(ids(&env), vec![a.request.id.clone()]);
    // Listed with its verdicts, exactly as stored.
    assert_eq!(
        *env.gw.pending().unwrap(),
        vec![env.gw.get(&a.request.id).unwrap()]
    );

    let b = persona(&env, "b");
    assert_eq!(ids(&env), [a.request.id.clone(), b.request.id.clone()]);

    // A verifier-rejected submission never shows up.
    env.submit(ChangeKind::Packages, "g1", json!({"apt": ["$(id)"]}));
    assert_eq!(ids(&env), [a.request.id.clone(), b.request.id.clone()]);

    // A refusal changes nothing; the cache may stay.
    let _ = env
        .gw
        .decide(&a.request.id, Outcome::Approve, &uid(FRANK), None);
    assert_eq!(ids(&env), [a.request.id.clone(), b.request.id.clone()]);

    env.approve(&a.request.id, ALICE);
    assert_eq!(ids(&env), vec![b.request.id.clone()]);
    env.gw
        .decide(&b.request.id, Outcome::Reject, &uid(ALICE), None)
        .unwrap();
    assert!(ids(&env).is_empty());
    assert_eq!(
        env.gw.pending().unwrap().len() as u64,
        env.gw.count(ChangeStatus::Pending).unwrap()
    );
}

#[test]
fn concurrent_submits_and_reads_leave_an_exact_pending_list() {
    let env = Env::new();
    let submitted: Vec<ChangeId> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..50 {
                        let list = env.gw.pending().unwrap();
                        // Every listed change really is pending.
                        for r in list.iter() {
                            assert_eq!(r.status, ChangeStatus::Pending);
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let env = &env;
                s.spawn(move || {
                    (0..5)
                        .map(|i| persona(env, &format!("w{w} {i}")).request.id)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap();
        }
        writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut listed: Vec<ChangeId> = env
        .gw
        .pending()
        .unwrap()
        .iter()
        .map(|r| r.request.id.clone())
        .collect();
    let mut expected = submitted.clone();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);

    // Deciding half of them concurrently leaves exactly the other half.
    std::thread::scope(|s| {
        for id in submitted.iter().step_by(2) {
            let env = &env;
            s.spawn(move || env.approve(id, BOB));
        }
        s.spawn(|| {
            for _ in 0..50 {
                let _ = env.gw.pending().unwrap();
            }
        });
    });
    let mut left: Vec<ChangeId> = env
        .gw
        .pending()
        .unwrap()
        .iter()
        .map(|r| r.request.id.clone())
        .collect();
    let mut expected: Vec<ChangeId> = submitted.iter().skip(1).step_by(2).cloned().collect();
    left.sort();
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(env.gw.count(ChangeStatus::Applied).unwrap(), 10);
}
