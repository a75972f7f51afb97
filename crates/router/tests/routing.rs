//! `Router::route_inbound` against a real registry and gateway: the reference
//! system's router tests and parity specs, then the stricter behaviours.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use ironclaw_contract::enums::{
    ChangeKind, ChangeStatus, EngageMode, IgnoredMessagePolicy, MessageKind, Outcome, Provenance,
    SenderScope, SessionMode, Status, UnknownSenderPolicy,
};
use ironclaw_contract::rows::MAX_CONTENT_BYTES;
use ironclaw_registry::{Role, RoleGrant};
use ironclaw_router::{Reason, RouteError, RouterConfig, StopCause};
use serde_json::json;
use support::*;

use UnknownSenderPolicy::{Public, RequestApproval, Strict};

fn reasons(report: &ironclaw_router::RouteReport) -> Vec<Reason> {
    report.outcomes.iter().map(|o| o.reason).collect()
}

// --- the reference's checklist ---------------------------------------------------

#[test]
fn fan_out_in_priority_order_one_trigger_row_per_session_two_wakes() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(wiring("w-low", &mg, "g2"));
    env.wire({
        let mut w = wiring("w-high", &mg, "g1");
        w.priority = 2;
        w
    });
    let r = env.router.route_inbound(&event("alice", "hello")).unwrap();
    assert_eq!(r.messaging_group_id, mg);
    let groups: Vec<&str> = r
        .outcomes
        .iter()
        .map(|o| o.agent_group_id.as_str())
        .collect();
    assert_eq!(groups, ["g1", "g2"]);
    assert!(r
        .outcomes
        .iter()
        .all(|o| o.engaged && o.reason == Reason::Engaged));
    assert_eq!(r.outcomes[0].to_string(), "engaged (trigger=1)");
    let sessions: Vec<_> = r
        .outcomes
        .iter()
        .map(|o| o.session_id.clone().unwrap())
        .collect();
    assert_ne!(sessions[0], sessions[1]);
    assert_eq!(r.wake, sessions);
    let rows = env.sink.rows();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(_, m)| m.trigger));
    assert_eq!(rows[0].0, sessions[0]);
    assert_eq!(rows[1].0, sessions[1]);
    assert!(r.engaged() && !r.duplicate);
}

#[test]
fn equal_priorities_route_by_wiring_id() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(wiring("wb", &mg, "g1"));
    env.wire(wiring("wa", &mg, "g2"));
    let r = env.router.route_inbound(&event("alice", "hi")).unwrap();
    let ids: Vec<&str> = r.outcomes.iter().map(|o| o.wiring_id.as_str()).collect();
    assert_eq!(ids, ["wa", "wb"]);
}

#[test]
fn the_row_is_a_queued_chat_message_with_the_events_route() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire({
        let mut w = wiring("w1", &mg, "g1");
        w.session_mode = SessionMode::PerThread;
        w
    });
    let mut ev = event("alice", "deploy the thing");
    ev.thread_id = Some("T9".into());
    let r = env.router.route_inbound(&ev).unwrap();
    let (session, row) = env.sink.rows().pop().unwrap();
    assert_eq!(Some(&session), r.outcomes[0].session_id.as_ref());
    assert_eq!(Some(&row.id), r.outcomes[0].message_id.as_ref());
    assert!(row.id.as_str().starts_with("in_"), "{}", row.id);
    assert_eq!(row.kind, MessageKind::Chat);
    assert_eq!(row.status(), Status::Queued);
    assert_eq!(row.process_after, None);
    assert_eq!(row.route.channel_type.as_deref(), Some("slack"));
    assert_eq!(row.route.platform_id.as_deref(), Some("C1"));
    assert_eq!(row.route.thread_id.as_deref(), Some("T9"));
    assert_eq!(row.content, "deploy the thing");
    assert_eq!(row.source_session_id, None);
    assert_eq!(row.provenance, Provenance::Verified);
    assert!(row.trigger);
    row.validate().unwrap();
}

#[test]
fn identity_namespacing_a_handle_cannot_claim_another_namespace() {
    let env = Env::new();
    env.registry
        .grant_role(&RoleGrant {
            user_id: uid("evil:owner"),
            role: Role::Owner,
            scope: None,
        })
        .unwrap();
    let mg = env.mg("C1", Strict);
    env.wire(wiring("w1", &mg, "g1"));
    // `evil:owner` on Slack is `slack:evil`, who has nothing.
    let r = env
        .router
        .route_inbound(&event("evil:owner", "hi"))
        .unwrap();
    assert_eq!(r.outcomes.len(), 1);
    let o = &r.outcomes[0];
    assert!(!o.engaged);
    assert_eq!(o.session_id, None);
    assert_eq!(o.reason, Reason::AccessDenied);
    assert_eq!(o.to_string(), "access-denied: no-access");
    assert!(r.wake.is_empty());
    let r = env.router.route_inbound(&event("alice", "hi")).unwrap();
    assert!(r.outcomes[0].engaged);
}

#[test]
fn engage_mode_pattern_engages_or_drops() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire({
        let mut w = wiring("w1", &mg, "g1");
        w.engage_pattern = Some("deploy".into());
        w
    });
    let r = env
        .router
        .route_inbound(&event("alice", "please deploy now"))
        .unwrap();
    assert_eq!(reasons(&r), [Reason::Engaged]);
    assert_eq!(r.wake.len(), 1);
    let r = env
        .router
        .route_inbound(&event("alice", "hello there"))
        .unwrap();
    assert_eq!(reasons(&r), [Reason::Dropped]);
    assert_eq!(r.outcomes[0].to_string(), "not-engaged: dropped");
    assert_eq!(r.outcomes[0].session_id, None);
    assert!(r.wake.is_empty());
    assert_eq!(env.sink.rows().len(), 1);
}

#[test]
fn engage_mode_mention_engages_only_when_mentioned() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(mention(wiring("w1", &mg, "g1"), EngageMode::Mention));
    let r = env.router.route_inbound(&event("alice", "hi")).unwrap();
    assert_eq!(reasons(&r), [Reason::Dropped]);
    let mut ev = event("alice", "@bot hi");
    ev.mentioned = true;
    let r = env.router.route_inbound(&ev).unwrap();
    assert_eq!(reasons(&r), [Reason::Engaged]);
    // Mention mode has no stickiness: the follow-up is dropped although a session exists.
    let r = env
        .router
        .route_inbound(&event("alice", "and then?"))
        .unwrap();
    assert_eq!(reasons(&r), [Reason::Dropped]);
    assert_eq!(env.sink.rows().len(), 1);
}

#[test]
fn engage_mode_mention_sticky_continues_an_existing_session() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(mention(wiring("w1", &mg, "g1"), EngageMode::MentionSticky));
    let r = env.router.route_inbound(&event("alice", "hi")).unwrap();
    assert_eq!(reasons(&r), [Reason::Dropped]);
    assert_eq!(r.outcomes[0].session_id, None);
    assert!(
        env.registry.sessions().unwrap().is_empty(),
        "a sticky lookup never creates"
    );

    let mut ev = event("alice", "@bot hi");
    ev.mentioned = true;
    let first = env.router.route_inbound(&ev).unwrap();
    assert_eq!(reasons(&first), [Reason::Engaged]);
    let follow = env
        .router
        .route_inbound(&event("alice", "and then?"))
        .unwrap();
    assert_eq!(reasons(&follow), [Reason::Engaged]);
    assert_eq!(follow.outcomes[0].session_id, first.outcomes[0].session_id);
    assert!(follow.outcomes[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("sticky"));
    assert_eq!(first.wake.len() + follow.wake.len(), 2);
}

#[test]
fn access_denied_writes_nothing_and_wakes_nothing() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(wiring("w1", &mg, "g1"));
    let r = env.router.route_inbound(&event("mallory", "hi")).unwrap();
    assert_eq!(reasons(&r), [Reason::AccessDenied]);
    assert!(!r.outcomes[0].engaged);
    assert_eq!(r.outcomes[0].session_id, None);
    assert!(r.wake.is_empty());
    assert!(env.sink.rows().is_empty());
    assert!(env.registry.sessions().unwrap().is_empty());
}

#[test]
fn accumulate_writes_a_non_trigger_row_without_wake() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire({
        let mut w = mention(wiring("w1", &mg, "g1"), EngageMode::Mention);
        w.ignored_message_policy = IgnoredMessagePolicy::Accumulate;
        w
    });
    let r = env
        .router
        .route_inbound(&event("alice", "context"))
        .unwrap();
    assert_eq!(reasons(&r), [Reason::Accumulated]);
    assert_eq!(r.outcomes[0].to_string(), "accumulated (trigger=0)");
    assert!(!r.outcomes[0].engaged);
    assert!(r.outcomes[0].session_id.is_some());
    assert!(r.wake.is_empty());
    let rows = env.sink.rows();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].1.trigger);
}

#[test]
fn drop_creates_no_session_and_no_row() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(mention(wiring("w1", &mg, "g1"), EngageMode::Mention));
    env.router
        .route_inbound(&event("alice", "chatter"))
        .unwrap();
    assert!(env.sink.rows().is_empty());
    assert!(env.registry.sessions().unwrap().is_empty());
}

#[test]
fn session_modes_partition_as_documented() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    let mg2 = env.mg("C2", Strict);
    for (id, group, mode) in [
        ("shared", "g1", SessionMode::Shared),
        ("thread", "g2", SessionMode::PerThread),
        ("agent", "g3", SessionMode::AgentShared),
    ] {
        for m in [&mg, &mg2] {
            env.wire({
                let mut w = wiring(&format!("{id}-{m}"), m, group);
                w.session_mode = mode;
                w
            });
        }
    }
    let send = |platform: &str, thread: Option<&str>| {
        let mut ev = event("alice", "hi");
        ev.platform_id = platform.to_owned();
        ev.thread_id = thread.map(str::to_owned);
        let r = env.router.route_inbound(&ev).unwrap();
        let by_group = |g: &str| {
            r.outcomes
                .iter()
                .find(|o| o.agent_group_id.as_str() == g)
                .and_then(|o| o.session_id.clone())
                .unwrap()
        };
        (by_group("g1"), by_group("g2"), by_group("g3"))
    };
    let a = send("C1", Some("t1"));
    let b = send("C1", Some("t2"));
    let a2 = send("C1", Some("t1"));
    let c = send("C2", Some("t1"));
    let none = send("C1", None);
    // shared: thread ignored, messaging groups split.
    assert_eq!(a.0, b.0);
    assert_ne!(a.0, c.0);
    // per-thread: threads split, the same thread repeats.
    assert_ne!(a.1, b.1);
    assert_eq!(a.1, a2.1);
    assert_ne!(a.1, none.1);
    assert_eq!(
        env.registry
            .session(&a.1)
            .unwrap()
            .unwrap()
            .thread_id
            .as_deref(),
        Some("t1")
    );
    // agent-shared: one session across messaging groups and threads, per agent group.
    assert_eq!(a.2, b.2);
    assert_eq!(a.2, c.2);
    assert_ne!(a.2, a.0);
}

#[test]
fn an_empty_thread_is_no_thread() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire({
        let mut w = wiring("w1", &mg, "g1");
        w.session_mode = SessionMode::PerThread;
        w
    });
    let mut ev = event("alice", "hi");
    let s1 = env.router.route_inbound(&ev).unwrap().outcomes[0]
        .session_id
        .clone();
    ev.thread_id = Some(String::new());
    let s2 = env.router.route_inbound(&ev).unwrap().outcomes[0]
        .session_id
        .clone();
    assert_eq!(s1, s2);
    assert!(env
        .sink
        .rows()
        .iter()
        .all(|(_, m)| m.route.thread_id.is_none()));
}

#[test]
fn sender_scope_known_admits_members_only() {
    // Under `public` the scope gate is what keeps a known-only wiring closed (under
    // `strict` the access gate already refused the stranger).
    for (policy, stranger) in [
        (Public, Reason::SenderScope),
        (Strict, Reason::AccessDenied),
    ] {
        let env = Env::new();
        env.registry
            .add_member(&uid("slack:bob"), &gid("g1"))
            .unwrap();
        let mg = env.mg("C1", policy);
        env.wire({
            let mut w = wiring("w1", &mg, "g1");
            w.sender_scope = SenderScope::Known;
            w
        });
        let member = env.router.route_inbound(&event("bob", "hi")).unwrap();
        assert_eq!(reasons(&member), [Reason::Engaged], "{policy}");
        let other = env.router.route_inbound(&event("mallory", "hi")).unwrap();
        assert_eq!(reasons(&other), [stranger], "{policy}");
        if stranger == Reason::SenderScope {
            assert_eq!(
                other.outcomes[0].to_string(),
                "sender-scope: unknown sender for known-only wiring"
            );
        }
        assert_eq!(member.wake.len() + other.wake.len(), 1);
    }
}

#[test]
fn access_precedence_every_grant_engages_and_says_why() {
    let env = Env::new();
    let grant = |u: &str, role, scope: Option<&str>| {
        env.registry
            .grant_role(&RoleGrant {
                user_id: uid(u),
                role,
                scope: scope.map(gid),
            })
            .unwrap();
    };
    grant("slack:gadmin", Role::Admin, None);
    grant("slack:sadmin", Role::Admin, Some("g1"));
    grant("slack:other", Role::Admin, Some("g2"));
    env.registry
        .add_member(&uid("slack:member"), &gid("g1"))
        .unwrap();
    // The owner is also a member: the first match (owner) is the reason.
    env.registry
        .add_member(&uid("slack:alice"), &gid("g1"))
        .unwrap();
    let mg = env.mg("C1", Strict);
    env.wire(wiring("w1", &mg, "g1"));
    for (handle, why) in [
        ("alice", "owner"),
        ("gadmin", "global-admin"),
        ("sadmin", "scoped-admin"),
        ("member", "member"),
    ] {
        let r = env.router.route_inbound(&event(handle, "hi")).unwrap();
        assert_eq!(reasons(&r), [Reason::Engaged], "{handle}");
        assert_eq!(
            r.outcomes[0].detail.as_deref(),
            Some(format!("sender slack:{handle}: {why}").as_str())
        );
    }
    let r = env.router.route_inbound(&event("other", "hi")).unwrap();
    assert_eq!(reasons(&r), [Reason::AccessDenied]);
}

#[test]
fn a_bad_pattern_is_reported_and_later_wirings_still_route() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire({
        let mut w = wiring("w1", &mg, "g1");
        w.engage_pattern = Some("(unclosed".into());
        w.priority = 5;
        w
    });
    env.wire(wiring("w2", &mg, "g2"));
    let r = env
        .router
        .route_inbound(&event("alice", "(unclosed"))
        .unwrap();
    assert_eq!(reasons(&r), [Reason::EngageEvalError, Reason::Engaged]);
    let label = r.outcomes[0].to_string();
    assert!(
        label.starts_with("engage-eval-error: invalid pattern"),
        "{label}"
    );
    assert_eq!(r.outcomes[0].session_id, None);
    assert_eq!(r.wake.len(), 1);
}

#[test]
fn catastrophic_pattern_does_not_stall_routing() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire({
        let mut w = wiring("w1", &mg, "g1");
        w.engage_pattern = Some("^(a+)+$".into());
        w
    });
    let text = format!("{}!", "a".repeat(50_000));
    let start = std::time::Instant::now();
    let r = env.router.route_inbound(&event("alice", &text)).unwrap();
    assert_eq!(reasons(&r), [Reason::Dropped]);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn no_wirings_no_outcomes() {
    let env = Env::new();
    let r = env.router.route_inbound(&event("alice", "hi")).unwrap();
    assert!(r.outcomes.is_empty() && r.wake.is_empty());
}

// --- messaging groups and event validation ----------------------------------------

#[test]
fn the_messaging_group_is_created_strict_once_and_kept() {
    let env = Env::new();
    let mut ev = event("alice", "hi");
    ev.platform_id = "NEW".into();
    let r1 = env.router.route_inbound(&ev).unwrap();
    let mg = env
        .registry
        .messaging_group(&r1.messaging_group_id)
        .unwrap()
        .unwrap();
    assert_eq!(mg.unknown_sender_policy, Strict);
    assert_eq!(mg.instance, "slack");
    // `None` and the channel type are the same instance; another instance is another group.
    ev.instance = Some("slack".into());
    assert_eq!(
        env.router.route_inbound(&ev).unwrap().messaging_group_id,
        mg.id
    );
    ev.instance = Some("workspace-2".into());
    assert_ne!(
        env.router.route_inbound(&ev).unwrap().messaging_group_id,
        mg.id
    );
    // An existing group's policy is not touched by routing.
    let open = env.mg("OPEN", Public);
    ev.instance = None;
    ev.platform_id = "OPEN".into();
    env.router.route_inbound(&ev).unwrap();
    assert_eq!(
        env.registry
            .messaging_group(&open)
            .unwrap()
            .unwrap()
            .unknown_sender_policy,
        Public
    );
}

#[test]
fn invalid_events_are_refused_before_anything_is_created() {
    let env = Env::new();
    type Mutation = Box<dyn Fn(&mut ironclaw_router::InboundEvent)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("channel_type", Box::new(|e| e.channel_type.clear())),
        ("platform_id", Box::new(|e| e.platform_id.clear())),
        (
            "channel_type",
            Box::new(|e| e.channel_type = "Slack!".into()),
        ),
        (
            "channel_type",
            Box::new(|e| e.channel_type = "sandbox".into()),
        ),
        ("platform_id", Box::new(|e| e.platform_id = "C\n1".into())),
        (
            "instance",
            Box::new(|e| e.instance = Some("Bad Instance".into())),
        ),
        (
            "thread_id",
            Box::new(|e| e.thread_id = Some("t".repeat(257))),
        ),
        (
            "thread_id",
            Box::new(|e| e.thread_id = Some("a\u{7}".into())),
        ),
        ("provenance", Box::new(|e| e.provenance = Provenance::Host)),
        (
            "platform_message_id",
            Box::new(|e| e.platform_message_id = Some("m".repeat(257))),
        ),
    ];
    for (field, mutate) in cases {
        let mut ev = event("alice", "hi");
        mutate(&mut ev);
        match env.router.route_inbound(&ev) {
            Err(RouteError::InvalidEvent { field: f, .. }) => assert_eq!(f, field, "{ev:?}"),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(env.registry.messaging_groups().unwrap().is_empty());
}

/// The router's thread limit is the registry's: the longest thread it lets through
/// is one the registry stores.
#[test]
fn the_thread_limit_matches_the_registry() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire({
        let mut w = wiring("w1", &mg, "g1");
        w.session_mode = SessionMode::PerThread;
        w
    });
    let max = ironclaw_router::event::THREAD_ID_MAX_BYTES;
    let mut ev = event("alice", "hi");
    ev.thread_id = Some("t".repeat(max));
    let r = env.router.route_inbound(&ev).unwrap();
    assert_eq!(reasons(&r), [Reason::Engaged]);
    // One byte more, and the registry would refuse it too (the router refuses it
    // up front, see `invalid_events_are_refused_before_anything_is_created`).
    let longer = "t".repeat(max + 1);
    assert!(env
        .registry
        .resolve_session(&gid("g1"), &mg, Some(&longer), SessionMode::PerThread)
        .is_err());
}

// --- stricter: unknown-sender policies ----------------------------------------------

#[test]
fn public_lets_any_sender_engage_and_says_so() {
    let env = Env::new();
    let mg = env.mg("C1", Public);
    env.wire(wiring("w1", &mg, "g1"));
    for handle in ["mallory", "bob#1234", ""] {
        let r = env.router.route_inbound(&event(handle, "hi")).unwrap();
        assert_eq!(reasons(&r), [Reason::Engaged], "{handle:?}");
        assert!(r.outcomes[0]
            .detail
            .as_deref()
            .unwrap()
            .ends_with("public messaging group"));
    }
}

#[test]
fn strict_refuses_senders_that_cannot_be_principals() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(wiring("w1", &mg, "g1"));
    for handle in ["bob#1234", "", "bob smith"] {
        let r = env.router.route_inbound(&event(handle, "hi")).unwrap();
        assert_eq!(reasons(&r), [Reason::AccessDenied], "{handle:?}");
    }
    assert!(env.sink.rows().is_empty());
}

#[test]
fn request_approval_asks_once_and_admits_after_a_human_approves() {
    let env = Env::new();
    let mg = env.mg("C1", RequestApproval);
    env.wire(wiring("w1", &mg, "g1"));

    let r = env
        .router
        .route_inbound(&event("bob", "let me in"))
        .unwrap();
    let o = &r.outcomes[0];
    assert_eq!(o.reason, Reason::ApprovalRequested);
    assert!(!o.engaged && o.session_id.is_none() && r.wake.is_empty());
    assert!(env.sink.rows().is_empty(), "not delivered");
    let change = o.change_id.clone().unwrap();
    assert_eq!(
        o.to_string(),
        format!("access-denied: approval requested ({change})")
    );

    let pending = env.gateway.pending().unwrap();
    assert_eq!(pending.len(), 1);
    let req = &pending[0].request;
    assert_eq!(req.id, change);
    assert_eq!(req.kind, ChangeKind::Permissions);
    assert_eq!(req.agent_group_id, gid("g1"));
    assert_eq!(req.requested_by, uid("slack:bob"));
    assert_eq!(req.after, json!({"add_member": "slack:bob"}));
    let why = req.reason.as_deref().unwrap();
    assert!(
        why.contains("slack/C1") && why.contains("verified"),
        "{why}"
    );

    // The same sender again: the waiting request is reused, not duplicated.
    let again = env.router.route_inbound(&event("bob", "hello?")).unwrap();
    assert_eq!(again.outcomes[0].reason, Reason::ApprovalPending);
    assert_eq!(again.outcomes[0].change_id.as_ref(), Some(&change));
    assert_eq!(env.gateway.pending().unwrap().len(), 1);

    // A human approves; bob is now a member and engages.
    let decided = env
        .gateway
        .decide(&change, Outcome::Approve, &uid("slack:alice"), None)
        .unwrap();
    assert_eq!(decided.status, ChangeStatus::Applied);
    let after = env.router.route_inbound(&event("bob", "thanks")).unwrap();
    assert_eq!(reasons(&after), [Reason::Engaged]);
    assert_eq!(env.sink.rows().len(), 1);
}

#[test]
fn request_approval_only_for_engaging_messages_and_nameable_senders() {
    let env = Env::new();
    let mg = env.mg("C1", RequestApproval);
    env.wire(mention(wiring("w1", &mg, "g1"), EngageMode::Mention));
    // Chatter that does not address the agent asks nobody.
    let r = env.router.route_inbound(&event("bob", "chatter")).unwrap();
    assert_eq!(reasons(&r), [Reason::AccessDenied]);
    // A handle that cannot be a principal cannot be granted anything.
    let mut ev = event("bob#1234", "@bot hi");
    ev.mentioned = true;
    let r = env.router.route_inbound(&ev).unwrap();
    assert_eq!(reasons(&r), [Reason::AccessDenied]);
    assert!(env.gateway.pending().unwrap().is_empty());
    // Known senders are not affected by the policy.
    let mut ev = event("alice", "@bot hi");
    ev.mentioned = true;
    assert_eq!(
        reasons(&env.router.route_inbound(&ev).unwrap()),
        [Reason::Engaged]
    );
}

#[test]
fn request_approval_is_bounded_per_agent_group() {
    let env = Env::with_config(RouterConfig {
        max_pending_approvals_per_group: 2,
        ..RouterConfig::default()
    });
    let mg = env.mg("C1", RequestApproval);
    env.wire(wiring("w1", &mg, "g1"));
    env.wire(wiring("w2", &mg, "g2"));
    let mut seen = Vec::new();
    for handle in ["s1", "s2", "s3"] {
        let r = env.router.route_inbound(&event(handle, "hi")).unwrap();
        seen.push(reasons(&r));
    }
    assert_eq!(
        seen[0],
        [Reason::ApprovalRequested, Reason::ApprovalRequested]
    );
    assert_eq!(
        seen[1],
        [Reason::ApprovalRequested, Reason::ApprovalRequested]
    );
    assert_eq!(seen[2], [Reason::ApprovalLimit, Reason::ApprovalLimit]);
    assert_eq!(env.gateway.pending().unwrap().len(), 4);
    // A waiting request for the sender is reused whoever made it: an operator's
    // request for s3 to join g1 answers s3's next message there.
    let by_operator = env
        .gateway
        .submit(
            ironclaw_gateway::Submission {
                kind: ChangeKind::Permissions,
                agent_group_id: gid("g1"),
                payload: json!({"add_member": "slack:s3"}),
                reason: None,
            },
            &uid("slack:alice"),
        )
        .unwrap();
    let r = env.router.route_inbound(&event("s3", "hi")).unwrap();
    assert_eq!(
        reasons(&r),
        [Reason::ApprovalPending, Reason::ApprovalLimit]
    );
    assert_eq!(
        r.outcomes[0].change_id.as_ref(),
        Some(&by_operator.request.id)
    );
    assert_eq!(env.gateway.pending().unwrap().len(), 5);
}

#[test]
fn unverified_requests_warn_the_human() {
    let env = Env::new();
    let mg = env.mg("C1", RequestApproval);
    env.wire(wiring("w1", &mg, "g1"));
    let mut ev = event("bob", "hi");
    ev.provenance = Provenance::Unverified;
    env.router.route_inbound(&ev).unwrap();
    let pending = env.gateway.pending().unwrap();
    let why = pending[0].request.reason.as_deref().unwrap();
    assert!(why.contains("could NOT verify"), "{why}");
}

// --- stricter: provenance, size, dedup, failures -----------------------------------

#[test]
fn provenance_travels_into_the_row() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(wiring("w1", &mg, "g1"));
    for p in [Provenance::Verified, Provenance::Unverified] {
        let mut ev = event("alice", "hi");
        ev.provenance = p;
        env.router.route_inbound(&ev).unwrap();
    }
    let got: Vec<Provenance> = env.sink.rows().iter().map(|(_, m)| m.provenance).collect();
    assert_eq!(got, [Provenance::Verified, Provenance::Unverified]);
}

#[test]
fn oversized_content_is_refused_whole_not_truncated() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(wiring("w1", &mg, "g1"));
    let r = env
        .router
        .route_inbound(&event("alice", &"x".repeat(MAX_CONTENT_BYTES + 1)))
        .unwrap();
    assert_eq!(reasons(&r), [Reason::ContentTooLarge]);
    assert_eq!(r.outcomes[0].session_id, None);
    assert!(r.wake.is_empty());
    assert!(env.sink.rows().is_empty());
    assert!(env.registry.sessions().unwrap().is_empty());
    // Exactly at the limit is written in full.
    let r = env
        .router
        .route_inbound(&event("alice", &"x".repeat(MAX_CONTENT_BYTES)))
        .unwrap();
    assert_eq!(reasons(&r), [Reason::Engaged]);
    assert_eq!(env.sink.rows()[0].1.content.len(), MAX_CONTENT_BYTES);
}

#[test]
fn platform_retries_are_routed_once() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(wiring("w1", &mg, "g1"));
    let mut ev = event("alice", "hi");
    ev.platform_message_id = Some("1700000000.000100".into());
    let first = env.router.route_inbound(&ev).unwrap();
    assert!(!first.duplicate);
    let retry = env.router.route_inbound(&ev).unwrap();
    assert!(retry.duplicate);
    assert!(retry.outcomes.is_empty() && retry.wake.is_empty());
    assert_eq!(retry.messaging_group_id, mg);
    assert_eq!(env.sink.rows().len(), 1);
    // Another message id, or the same id in another chat, is not a retry.
    ev.platform_message_id = Some("1700000000.000200".into());
    assert!(!env.router.route_inbound(&ev).unwrap().duplicate);
    ev.platform_id = "C2".into();
    assert!(!env.router.route_inbound(&ev).unwrap().duplicate);
    // Without an id there is nothing to deduplicate on.
    ev.platform_id = "C1".into();
    ev.platform_message_id = None;
    env.router.route_inbound(&ev).unwrap();
    env.router.route_inbound(&ev).unwrap();
    assert_eq!(env.sink.rows().len(), 4);
}

#[test]
fn with_the_retry_window_off_the_queue_still_refuses_a_redelivery() {
    let env = Env::with_config(RouterConfig {
        dedup_window: Duration::ZERO,
        ..RouterConfig::default()
    });
    let mg = env.mg("C1", Strict);
    env.wire(wiring("w1", &mg, "g1"));
    let mut ev = event("alice", "hi");
    ev.platform_message_id = Some("m1".into());
    let first = env.router.route_inbound(&ev).unwrap();
    assert_eq!(first.outcomes[0].reason, Reason::Engaged);
    // Not caught by the (disabled) window, but by the row id the platform id fixes.
    let again = env.router.route_inbound(&ev).unwrap();
    assert!(!again.duplicate);
    assert_eq!(again.outcomes[0].reason, Reason::AlreadyQueued);
    assert!(!again.outcomes[0].engaged);
    assert!(again.wake.is_empty(), "a redelivery wakes nothing");
    assert_eq!(again.outcomes[0].message_id, first.outcomes[0].message_id);
    assert_eq!(env.sink.rows().len(), 1);
    // Another platform message of the same chat is new.
    ev.platform_message_id = Some("m2".into());
    assert_eq!(
        env.router.route_inbound(&ev).unwrap().outcomes[0].reason,
        Reason::Engaged
    );
    assert_eq!(env.sink.rows().len(), 2);
}

#[test]
fn wirings_sharing_a_session_each_write_their_row_and_the_engaging_one_wakes_it() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    // Higher priority: accumulates (the message does not mention the agent).
    env.wire({
        let mut w = mention(wiring("w1", &mg, "g1"), EngageMode::Mention);
        w.ignored_message_policy = IgnoredMessagePolicy::Accumulate;
        w.priority = 5;
        w
    });
    // Lower priority, same agent group and so the same shared session: engages.
    env.wire(wiring("w2", &mg, "g1"));
    // A second agent group on the same chat.
    env.wire(wiring("w3", &mg, "g2"));
    let mut ev = event("alice", "hello");
    ev.platform_message_id = Some("m1".into());
    let r = env.router.route_inbound(&ev).unwrap();
    assert_eq!(
        reasons(&r),
        [Reason::Accumulated, Reason::Engaged, Reason::Engaged]
    );
    assert_eq!(r.outcomes[0].session_id, r.outcomes[1].session_id);
    assert_eq!(r.wake.len(), 2, "both agent groups' sessions are woken");
    let ids: std::collections::HashSet<_> =
        r.outcomes.iter().map(|o| o.message_id.clone()).collect();
    assert_eq!(ids.len(), 3, "each wiring's row has its own id: {ids:?}");
    assert_eq!(env.sink.rows().len(), 3);
    // Redelivered: every wiring finds its own row already queued.
    let again = env
        .new_router(RouterConfig::default())
        .route_inbound(&ev)
        .unwrap();
    assert!(again
        .outcomes
        .iter()
        .all(|o| o.reason == Reason::AlreadyQueued));
    assert!(again.wake.is_empty());
    assert_eq!(env.sink.rows().len(), 3);
}

#[test]
fn a_redelivery_after_a_restart_is_refused_by_the_queue() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(wiring("w1", &mg, "g1"));
    let mut ev = event("alice", "hi");
    ev.platform_message_id = Some("m1".into());
    env.router.route_inbound(&ev).unwrap();
    // A new router (a restarted daemon) has no memory of recent messages.
    let restarted = env.new_router(RouterConfig::default());
    let again = restarted.route_inbound(&ev).unwrap();
    assert!(!again.duplicate, "the new router's window is empty");
    assert_eq!(again.outcomes[0].reason, Reason::AlreadyQueued);
    assert_eq!(env.sink.rows().len(), 1);
    // Messages without a platform id have nothing to be recognised by.
    ev.platform_message_id = None;
    restarted.route_inbound(&ev).unwrap();
    restarted.route_inbound(&ev).unwrap();
    assert_eq!(env.sink.rows().len(), 3);
}

#[test]
fn a_sink_failure_stops_routing_with_the_outcomes_so_far() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    for (id, group, priority) in [("w1", "g1", 3), ("w2", "g2", 2), ("w3", "g3", 1)] {
        env.wire({
            let mut w = wiring(id, &mg, group);
            w.priority = priority;
            w
        });
    }
    *env.sink.fail_at.lock().unwrap() = Some(1);
    let mut ev = event("alice", "hi");
    ev.platform_message_id = Some("m1".into());
    let err = env.router.route_inbound(&ev).unwrap_err();
    let RouteError::Stopped { partial, cause } = &err else {
        panic!("{err:?}")
    };
    assert!(matches!(cause, StopCause::Sink(_)), "{cause:?}");
    assert!(err.to_string().contains("disk on fire"), "{err}");
    // The first wiring was written and must still be woken; the third never ran.
    assert_eq!(reasons(partial), [Reason::Engaged]);
    assert_eq!(
        partial.wake,
        [partial.outcomes[0].session_id.clone().unwrap()]
    );
    assert_eq!(env.sink.rows().len(), 1);
    // The failed event is not remembered: the platform's retry is routed (again).
    let retry = env.router.route_inbound(&ev).unwrap();
    assert!(!retry.duplicate);
    assert_eq!(retry.outcomes.len(), 3);
}

#[test]
fn message_ids_are_unique_across_a_fan_out_and_repeated_routes() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(wiring("w1", &mg, "g1"));
    env.wire(wiring("w2", &mg, "g2"));
    for _ in 0..50 {
        env.router.route_inbound(&event("alice", "hi")).unwrap();
    }
    let ids: HashSet<String> = env
        .sink
        .rows()
        .iter()
        .map(|(_, m)| m.id.to_string())
        .collect();
    assert_eq!(ids.len(), 100);
}

#[test]
fn two_wirings_sharing_a_session_wake_it_once() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    for id in ["w1", "w2"] {
        env.wire({
            let mut w = wiring(id, &mg, "g1");
            w.session_mode = SessionMode::AgentShared;
            w
        });
    }
    let r = env.router.route_inbound(&event("alice", "hi")).unwrap();
    assert_eq!(r.outcomes.len(), 2);
    assert_eq!(r.wake.len(), 1);
}

#[test]
fn the_report_serializes_with_machine_readable_reasons() {
    let env = Env::new();
    let mg = env.mg("C1", Strict);
    env.wire(wiring("w1", &mg, "g1"));
    let r = env.router.route_inbound(&event("mallory", "hi")).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["outcomes"][0]["reason"], "access-denied");
    assert_eq!(v["outcomes"][0]["session_id"], serde_json::Value::Null);
    assert_eq!(v["duplicate"], false);
}
