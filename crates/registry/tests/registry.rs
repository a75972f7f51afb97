//! Behaviour of the registry, each test run against both backends: the in-memory
//! database and a durable SQLCipher file.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ironclaw_contract::db::{Cipher, DbError};
use ironclaw_contract::enums::{
    EngageMode, IgnoredMessagePolicy, SenderScope, SessionMode, UnknownSenderPolicy,
};
use ironclaw_contract::ids::{AgentGroupId, MessagingGroupId, UserId};
use ironclaw_contract::key::SessionKey;
use ironclaw_registry::{
    AccessReason, AgentGroup, Destination, McpGrant, MessagingGroup, MountGrant, Registry,
    RegistryError, Role, RoleGrant, SessionStatus, User, Wiring,
};

fn cipher(b: u8) -> Cipher {
    Cipher::Key(SessionKey::from_bytes([b; 32]))
}

/// Defines a module per behaviour with one test per backend.
macro_rules! both {
    ($(fn $name:ident($r:ident: &Registry) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($r: &Registry) $body

            #[test]
            fn in_memory() {
                run(&Registry::in_memory());
            }

            #[test]
            fn durable() {
                let dir = tempfile::tempdir().unwrap();
                run(&Registry::open(&dir.path().join("registry.db"), &cipher(7)).unwrap());
            }
        }
    )*};
}

fn ag(s: &str) -> AgentGroupId {
    AgentGroupId::new(s).unwrap()
}

fn user(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn group(r: &Registry, id: &str) -> AgentGroupId {
    r.create_agent_group(AgentGroup::new(ag(id), id, "mock", ""))
        .unwrap()
        .id
}

fn mg(r: &Registry, platform_id: &str) -> MessagingGroup {
    r.get_or_create_messaging_group(
        "slack",
        platform_id,
        None,
        true,
        UnknownSenderPolicy::Strict,
    )
    .unwrap()
}

fn grant(u: &str, role: Role, scope: Option<&str>) -> RoleGrant {
    RoleGrant {
        user_id: user(u),
        role,
        scope: scope.map(ag),
    }
}

fn wiring(mg: &MessagingGroupId, ag: &AgentGroupId, id: &str, priority: i64) -> Wiring {
    Wiring {
        id: id.into(),
        messaging_group_id: mg.clone(),
        agent_group_id: ag.clone(),
        engage_mode: EngageMode::Mention,
        engage_pattern: None,
        sender_scope: SenderScope::Known,
        ignored_message_policy: IgnoredMessagePolicy::Drop,
        session_mode: SessionMode::Shared,
        priority,
    }
}

/// A group with every capability field set, for persistence tests.
fn full_group(id: &str) -> AgentGroup {
    let mut g = AgentGroup::new(ag(id), "Research bot", "openai-compatible", "qwen2.5:7b");
    g.persona = "You are careful.\n\nCite sources.".into();
    g.enabled_tools = vec!["web_fetch".into(), "send_message".into()];
    g.packages = vec!["ripgrep".into(), "requests==2.31".into()];
    g.mounts = vec![
        MountGrant {
            source: "/srv/corpus".into(),
            target: "/workspace/corpus".into(),
            read_only: true,
        },
        MountGrant {
            source: "/srv/out".into(),
            target: "/workspace/out".into(),
            read_only: false,
        },
    ];
    g.egress = vec!["api.github.com".into(), "pypi.org".into()];
    g.mcp_grants = vec![McpGrant {
        server: "github".into(),
        tools: vec!["get_issue".into(), "list-repos".into()],
    }];
    g
}

both! {
    fn messaging_group_get_or_create(r: &Registry) {
        let a = mg(r, "C1");
        assert_eq!(a.instance, "slack", "instance defaults to the channel type");
        assert!(a.id.as_str().starts_with("mg_") && a.id.as_str().len() == 19);
        assert!(a.is_group);

        // Same triple, same group — and creation flags do not update it.
        let again = r
            .get_or_create_messaging_group("slack", "C1", Some("slack"), false, UnknownSenderPolicy::Public)
            .unwrap();
        assert_eq!(again, a);

        let other = r
            .get_or_create_messaging_group("slack", "C1", Some("work"), false, UnknownSenderPolicy::Public)
            .unwrap();
        assert_ne!(other.id, a.id);
        assert_eq!(other.instance, "work");
        assert_eq!(other.unknown_sender_policy, UnknownSenderPolicy::Public);

        assert_ne!(mg(r, "C2").id, a.id);
        assert_eq!(r.messaging_group(&a.id).unwrap(), Some(a.clone()));
        assert_eq!(r.find_messaging_group("slack", "C1", None).unwrap(), Some(a));
        assert_eq!(r.find_messaging_group("slack", "C9", None).unwrap(), None);
        let ids: Vec<_> = r.messaging_groups().unwrap().into_iter().map(|g| g.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert_eq!(ids.len(), 3);

        assert!(matches!(
            r.get_or_create_messaging_group("Slack!", "C1", None, true, UnknownSenderPolicy::Strict),
            Err(RegistryError::Invalid { field: "channel_type", .. })
        ));
        assert!(matches!(
            r.get_or_create_messaging_group("slack", "", None, true, UnknownSenderPolicy::Strict),
            Err(RegistryError::Invalid { field: "platform_id", .. })
        ));
    }

    fn sessions_partition_by_mode(r: &Registry) {
        let g = group(r, "g");
        let h = group(r, "h");
        let m1 = mg(r, "C1").id;
        let m2 = mg(r, "C2").id;

        // shared: threads collapse, thread not kept.
        let s1 = r.resolve_session(&g, &m1, Some("t1"), SessionMode::Shared).unwrap();
        let s2 = r.resolve_session(&g, &m1, Some("t2"), SessionMode::Shared).unwrap();
        assert_eq!(s1.id, s2.id);
        assert_eq!(s1.thread_id, None);
        assert_eq!(s1.status, SessionStatus::New);
        assert!(s1.id.as_str().starts_with("ses_") && s1.id.as_str().len() == 20);
        assert!(s2.last_active >= s1.last_active);
        assert_ne!(r.resolve_session(&g, &m2, None, SessionMode::Shared).unwrap().id, s1.id);

        // per-thread: threads split; none and "" are the same thread.
        let p1 = r.resolve_session(&g, &m1, Some("t1"), SessionMode::PerThread).unwrap();
        let p2 = r.resolve_session(&g, &m1, Some("t2"), SessionMode::PerThread).unwrap();
        assert_ne!(p1.id, p2.id);
        assert_ne!(p1.id, s1.id, "a per-thread session is not the shared one");
        assert_eq!(p1.thread_id.as_deref(), Some("t1"));
        let p0 = r.resolve_session(&g, &m1, None, SessionMode::PerThread).unwrap();
        assert_eq!(r.resolve_session(&g, &m1, Some(""), SessionMode::PerThread).unwrap().id, p0.id);

        // agent-shared: collapses across messaging groups, partitions by agent group,
        // keeps the first messaging group.
        let a1 = r.resolve_session(&g, &m1, Some("t1"), SessionMode::AgentShared).unwrap();
        let a2 = r.resolve_session(&g, &m2, Some("t9"), SessionMode::AgentShared).unwrap();
        assert_eq!(a1.id, a2.id);
        assert_eq!(a2.messaging_group_id, m1);
        let b = r.resolve_session(&h, &m1, None, SessionMode::AgentShared).unwrap();
        assert_ne!(b.id, a1.id);

        // find never creates, and never crosses modes.
        let before = r.sessions().unwrap().len();
        let m3 = mg(r, "C3").id;
        assert!(r.find_session(&g, &m3, None, SessionMode::Shared).unwrap().is_none());
        assert!(r.find_session(&h, &m2, Some("t1"), SessionMode::PerThread).unwrap().is_none());
        assert_eq!(r.sessions().unwrap().len(), before);
        assert_eq!(
            r.find_session(&g, &m1, Some("t1"), SessionMode::PerThread).unwrap().map(|s| s.id),
            Some(p1.id.clone())
        );

        // A per-thread session alone is NOT returned by a shared lookup.
        let k = group(r, "k");
        let only = r.resolve_session(&k, &m1, Some("t1"), SessionMode::PerThread).unwrap();
        assert!(r.find_session(&k, &m1, Some("t1"), SessionMode::Shared).unwrap().is_none());
        assert!(r.find_session(&k, &m1, None, SessionMode::AgentShared).unwrap().is_none());
        assert_ne!(r.resolve_session(&k, &m1, Some("t1"), SessionMode::Shared).unwrap().id, only.id);

        // Status, listing, lookups.
        r.set_session_status(&p1.id, SessionStatus::Running).unwrap();
        assert_eq!(r.session(&p1.id).unwrap().unwrap().status, SessionStatus::Running);
        let ids: Vec<_> = r.sessions().unwrap().into_iter().map(|s| s.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        let ghost = ironclaw_contract::ids::SessionId::new("ses_ghost").unwrap();
        assert!(matches!(
            r.set_session_status(&ghost, SessionStatus::Parked),
            Err(RegistryError::NotFound { what: "session", .. })
        ));
        assert!(matches!(
            r.resolve_session(&ag("nope"), &m1, None, SessionMode::Shared),
            Err(RegistryError::NotFound { what: "agent group", .. })
        ));
    }

    fn access_precedence(r: &Registry) {
        let g = group(r, "g");
        let other = group(r, "other");
        r.grant_role(&grant("u:owner", Role::Owner, None)).unwrap();
        r.grant_role(&grant("u:gadmin", Role::Admin, None)).unwrap();
        r.grant_role(&grant("u:sadmin", Role::Admin, Some("g"))).unwrap();
        r.grant_role(&grant("u:elsewhere", Role::Admin, Some("other"))).unwrap();
        r.add_member(&user("u:member"), &g).unwrap();
        // Roles outrank membership: an owner who is also a member is reported as owner.
        r.add_member(&user("u:owner"), &g).unwrap();
        r.grant_role(&grant("u:both", Role::Admin, Some("g"))).unwrap();
        r.grant_role(&grant("u:both", Role::Admin, None)).unwrap();

        let table = [
            ("u:owner", AccessReason::Owner, true, true),
            ("u:gadmin", AccessReason::GlobalAdmin, true, true),
            ("u:sadmin", AccessReason::ScopedAdmin, true, true),
            ("u:both", AccessReason::GlobalAdmin, true, true),
            ("u:member", AccessReason::Member, true, false),
            ("u:elsewhere", AccessReason::NoAccess, false, false),
            ("u:stranger", AccessReason::NoAccess, false, false),
        ];
        for (u, reason, allowed, decides) in table {
            let a = r.access(&user(u), &g).unwrap();
            assert_eq!((a.reason, a.allowed), (reason, allowed), "{u}");
            assert_eq!(r.may_decide(&user(u), &g).unwrap(), decides, "{u}");
        }
        assert_eq!(r.access(&user("u:elsewhere"), &other).unwrap().reason, AccessReason::ScopedAdmin);
        assert!(r.is_owner(&user("u:owner")).unwrap());
        assert!(!r.is_owner(&user("u:gadmin")).unwrap());
        assert!(r.is_owner_or_global_admin(&user("u:gadmin")).unwrap());
        assert!(!r.is_owner_or_global_admin(&user("u:sadmin")).unwrap());

        // An owner's access does not depend on the group existing.
        let unknown = ag("not-created");
        assert_eq!(r.access(&user("u:owner"), &unknown).unwrap().reason, AccessReason::Owner);
        assert_eq!(r.access(&user("u:sadmin"), &unknown).unwrap().reason, AccessReason::NoAccess);

        // Identical grant is a no-op; revoke and remove take access away.
        assert!(!r.grant_role(&grant("u:sadmin", Role::Admin, Some("g"))).unwrap());
        assert_eq!(r.roles_of(&user("u:both")).unwrap(), vec![
            grant("u:both", Role::Admin, None),
            grant("u:both", Role::Admin, Some("g")),
        ]);
        assert!(r.revoke_role(&grant("u:sadmin", Role::Admin, Some("g"))).unwrap());
        assert!(!r.revoke_role(&grant("u:sadmin", Role::Admin, Some("g"))).unwrap());
        assert_eq!(r.access(&user("u:sadmin"), &g).unwrap().reason, AccessReason::NoAccess);
        // Revoking the global grant leaves the scoped one.
        assert!(r.revoke_role(&grant("u:both", Role::Admin, None)).unwrap());
        assert_eq!(r.access(&user("u:both"), &g).unwrap().reason, AccessReason::ScopedAdmin);
        assert!(r.remove_member(&user("u:member"), &g).unwrap());
        assert_eq!(r.access(&user("u:member"), &g).unwrap().reason, AccessReason::NoAccess);
        assert!(r.revoke_role(&grant("u:owner", Role::Owner, None)).unwrap());
        assert_eq!(r.access(&user("u:owner"), &g).unwrap().reason, AccessReason::Member);
        assert_eq!(r.members_of(&g).unwrap().len(), 1);
    }

    fn scoped_owner_and_sandbox_roles_refused(r: &Registry) {
        group(r, "g");
        assert!(matches!(
            r.grant_role(&grant("u:1", Role::Owner, Some("g"))),
            Err(RegistryError::Invalid { field: "scope", .. })
        ));
        assert!(r.roles_of(&user("u:1")).unwrap().is_empty());
        assert!(!r.is_owner(&user("u:1")).unwrap());
        assert!(matches!(
            r.grant_role(&grant("sandbox:ses_1", Role::Admin, None)),
            Err(RegistryError::Invalid { field: "user_id", .. })
        ));
        assert!(matches!(
            r.grant_role(&grant("u:1", Role::Admin, Some("missing"))),
            Err(RegistryError::NotFound { what: "agent group", .. })
        ));
    }

    fn wirings_order_and_references(r: &Registry) {
        let g = group(r, "g");
        let m = mg(r, "C1").id;
        r.put_wiring(wiring(&m, &g, "b", 5)).unwrap();
        r.put_wiring(wiring(&m, &g, "a", 5)).unwrap();
        r.put_wiring(wiring(&m, &g, "z", 10)).unwrap();
        r.put_wiring(wiring(&m, &g, "c", -1)).unwrap();
        let minted = r.put_wiring(wiring(&m, &g, "", 0)).unwrap();
        assert!(minted.id.starts_with("wr_") && minted.id.len() == 19);
        let order: Vec<_> = r.wirings_for(&m).unwrap().into_iter().map(|w| w.id).collect();
        assert_eq!(order, ["z", "a", "b", minted.id.as_str(), "c"]);

        // Upsert by id.
        r.put_wiring(wiring(&m, &g, "c", 100)).unwrap();
        assert_eq!(r.wirings_for(&m).unwrap()[0].id, "c");
        assert_eq!(r.wiring("c").unwrap().unwrap().priority, 100);

        // Unknown groups are refused, and nothing is written.
        let ghost_mg = MessagingGroupId::new("mg_ghost").unwrap();
        assert!(matches!(
            r.put_wiring(wiring(&ghost_mg, &g, "x", 0)),
            Err(RegistryError::NotFound { what: "messaging group", .. })
        ));
        assert!(matches!(
            r.put_wiring(wiring(&m, &ag("ghost"), "x", 0)),
            Err(RegistryError::NotFound { what: "agent group", .. })
        ));
        assert!(r.wiring("x").unwrap().is_none());

        // Pattern rules.
        let mut w = wiring(&m, &g, "p", 0);
        w.engage_mode = EngageMode::Pattern;
        assert!(matches!(r.put_wiring(w.clone()), Err(RegistryError::Invalid { field: "engage_pattern", .. })));
        w.engage_pattern = Some("^deploy".into());
        assert_eq!(r.put_wiring(w).unwrap().engage_pattern.as_deref(), Some("^deploy"));
        let mut w = wiring(&m, &g, "q", 0);
        w.engage_pattern = Some(".".into());
        assert!(r.put_wiring(w).is_err());
        assert!(r.put_wiring(wiring(&m, &g, "../x", 0)).is_err());
    }

    fn failed_write_leaves_nothing(r: &Registry) {
        let result: Result<(), RegistryError> = r.write(|tx| {
            let g = tx.create_agent_group(AgentGroup::new(ag("g"), "G", "mock", ""))?;
            tx.add_member(&user("u:1"), &g.id)?;
            tx.grant_role(&grant("u:2", Role::Admin, Some("g")))?;
            // Reads inside the transaction see its writes.
            assert!(tx.agent_group(&g.id)?.is_some());
            assert_eq!(tx.access(&user("u:1"), &g.id)?.reason, AccessReason::Member);
            Err(RegistryError::Invalid { field: "test", reason: "abort".into() })
        });
        assert!(result.is_err());
        assert!(r.agent_group(&ag("g")).unwrap().is_none());
        assert!(r.members_of(&ag("g")).unwrap().is_empty());
        assert!(r.roles_of(&user("u:2")).unwrap().is_empty());
        assert_eq!(r.access(&user("u:1"), &ag("g")).unwrap().reason, AccessReason::NoAccess);

        // A failure midway (second write invalid) also undoes the first.
        let err = r.write(|tx| {
            tx.create_agent_group(AgentGroup::new(ag("g"), "G", "mock", ""))?;
            tx.create_agent_group(AgentGroup::new(ag("g"), "again", "mock", ""))
        });
        assert!(matches!(err, Err(RegistryError::AlreadyExists { what: "agent group", .. })));
        assert!(r.agent_groups().unwrap().is_empty());

        // And a successful write commits everything.
        r.write(|tx| {
            let g = tx.create_agent_group(AgentGroup::new(ag("g"), "G", "mock", ""))?;
            tx.add_member(&user("u:1"), &g.id)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(r.access(&user("u:1"), &ag("g")).unwrap().reason, AccessReason::Member);
    }

    fn agent_group_validation(r: &Registry) {
        let try_put = |f: &dyn Fn(&mut AgentGroup)| {
            let mut g = AgentGroup::new(ag("g"), "G", "mock", "");
            f(&mut g);
            r.put_agent_group(g)
        };
        let refused = |f: &dyn Fn(&mut AgentGroup), field: &str| match try_put(f) {
            Err(RegistryError::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected {field} refused, got {other:?}"),
        };
        refused(&|g| g.name = String::new(), "name");
        refused(&|g| g.name = "x".repeat(81), "name");
        refused(&|g| g.name = "bad\u{1b}[31m".into(), "name");
        refused(&|g| g.provider = "Anthropic".into(), "provider");
        refused(&|g| g.persona = "p".repeat(4097), "persona");
        refused(&|g| g.enabled_tools = vec!["Bash".into()], "enabled_tools");
        refused(&|g| g.enabled_tools = vec!["rm -rf".into()], "enabled_tools");
        refused(&|g| g.packages = vec!["--index-url=http://evil".into()], "packages");
        refused(&|g| g.mounts = vec![MountGrant { source: "rel".into(), target: "/x".into(), read_only: true }], "mounts.source");
        refused(&|g| g.mounts = vec![MountGrant { source: "/a".into(), target: "/x/../etc".into(), read_only: true }], "mounts.target");
        refused(&|g| g.egress = vec!["https://x.com".into()], "egress");
        refused(&|g| g.mcp_grants = vec![McpGrant { server: "gh".into(), tools: vec![] }], "mcp_grants.tools");
        assert!(r.agent_groups().unwrap().is_empty());

        // Accepted at the limits; persona newlines trimmed; empty tools stay empty.
        let g = try_put(&|g| {
            g.name = "é".repeat(80);
            g.persona = format!("{}\n\n", "p".repeat(4096));
        })
        .unwrap();
        assert_eq!(g.persona.len(), 4096);
        assert!(g.enabled_tools.is_empty());
        assert_eq!(r.agent_group(&g.id).unwrap(), Some(g));

        // update: read-modify-write; id cannot change; created_at kept.
        let before = r.agent_group(&ag("g")).unwrap().unwrap();
        let after = r
            .update_agent_group(&ag("g"), |g| {
                g.enabled_tools.push("web_fetch".into());
                g.created_at = ironclaw_contract::time::Timestamp::parse("2000-01-01T00:00:00Z").unwrap();
                Ok(())
            })
            .unwrap();
        assert_eq!(after.enabled_tools, ["web_fetch"]);
        assert_eq!(after.created_at, before.created_at);
        assert!(r.update_agent_group(&ag("g"), |g| { g.id = ag("h"); Ok(()) }).is_err());
        assert!(matches!(
            r.update_agent_group(&ag("nope"), |_| Ok(())),
            Err(RegistryError::NotFound { .. })
        ));
        assert!(matches!(
            r.create_agent_group(AgentGroup::new(ag("g"), "G", "mock", "")),
            Err(RegistryError::AlreadyExists { .. })
        ));
    }

    fn users_members_destinations(r: &Registry) {
        let g = group(r, "g");
        let u = User { id: user("slack:U1"), kind: "human".into(), display_name: "Ada".into() };
        r.put_user(u.clone()).unwrap();
        assert_eq!(r.user(&u.id).unwrap(), Some(u.clone()));
        assert!(r.put_user(User { kind: "root".into(), ..u.clone() }).is_err());
        assert_eq!(r.users().unwrap(), vec![u]);

        assert!(r.add_member(&user("slack:U1"), &g).unwrap());
        assert!(!r.add_member(&user("slack:U1"), &g).unwrap());
        assert!(r.is_member(&user("slack:U1"), &g).unwrap());
        assert!(matches!(
            r.add_member(&user("slack:U1"), &ag("ghost")),
            Err(RegistryError::NotFound { .. })
        ));

        let d = |c: &str, p: &str| Destination { agent_group_id: g.clone(), channel_type: c.into(), platform_id: p.into() };
        assert!(r.add_destination(d("slack", "C2")).unwrap());
        assert!(r.add_destination(d("agent", "other")).unwrap());
        assert!(!r.add_destination(d("slack", "C2")).unwrap());
        assert!(r.is_allowed_destination(&g, "slack", "C2").unwrap());
        assert!(!r.is_allowed_destination(&g, "slack", "C3").unwrap());
        assert_eq!(r.destinations_of(&g).unwrap(), vec![d("agent", "other"), d("slack", "C2")]);
        assert!(r.remove_destination(&d("slack", "C2")).unwrap());
        assert!(!r.is_allowed_destination(&g, "slack", "C2").unwrap());
    }
}

#[test]
fn every_capability_field_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let (stored, mg_id, session) = {
        let r = Registry::open(&path, &cipher(9)).unwrap();
        let stored = r.create_agent_group(full_group("research")).unwrap();
        let m = mg(&r, "C1");
        r.put_wiring(wiring(&m.id, &stored.id, "w1", 3)).unwrap();
        r.grant_role(&grant("u:a", Role::Admin, Some("research")))
            .unwrap();
        r.add_member(&user("u:m"), &stored.id).unwrap();
        let s = r
            .resolve_session(&stored.id, &m.id, Some("t"), SessionMode::PerThread)
            .unwrap();
        (stored, m.id, s)
    };
    assert_eq!(
        stored,
        full_group("research").tap_created_at(stored.created_at)
    );

    let r = Registry::open(&path, &cipher(9)).unwrap();
    assert_eq!(r.agent_group(&stored.id).unwrap(), Some(stored.clone()));
    assert_eq!(r.wirings_for(&mg_id).unwrap()[0].id, "w1");
    assert_eq!(
        r.access(&user("u:a"), &stored.id).unwrap().reason,
        AccessReason::ScopedAdmin
    );
    assert_eq!(
        r.access(&user("u:m"), &stored.id).unwrap().reason,
        AccessReason::Member
    );
    assert_eq!(r.session(&session.id).unwrap(), Some(session.clone()));
    assert_eq!(
        r.find_session(&stored.id, &mg_id, Some("t"), SessionMode::PerThread)
            .unwrap()
            .map(|s| s.id),
        Some(session.id)
    );
}

trait TapCreatedAt {
    fn tap_created_at(self, t: ironclaw_contract::time::Timestamp) -> Self;
}

impl TapCreatedAt for AgentGroup {
    fn tap_created_at(mut self, t: ironclaw_contract::time::Timestamp) -> Self {
        self.created_at = t;
        self
    }
}

#[test]
fn wrong_key_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    Registry::open(&path, &cipher(1))
        .unwrap()
        .create_agent_group(AgentGroup::new(ag("g"), "G", "mock", ""))
        .unwrap();
    match Registry::open(&path, &cipher(2)) {
        Err(RegistryError::Db(DbError::WrongKey { .. })) => {}
        other => panic!("expected WrongKey, got {other:?}"),
    }
    // The right key still opens it.
    assert!(Registry::open(&path, &cipher(1))
        .unwrap()
        .agent_group(&ag("g"))
        .unwrap()
        .is_some());
}

#[test]
fn a_queue_file_is_not_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbound.db");
    drop(
        ironclaw_contract::db::open_writer(
            &path,
            &cipher(1),
            ironclaw_contract::schema::QueueFile::Inbound,
        )
        .unwrap(),
    );
    match Registry::open(&path, &cipher(1)) {
        Err(RegistryError::Db(DbError::WrongFile {
            expected: "registry",
            found: "inbound",
            ..
        })) => {}
        other => panic!("expected WrongFile, got {other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn durable_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    drop(Registry::open(&path, &cipher(1)).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

mod json {
    use super::*;
    use proptest::prelude::*;

    fn tool() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_]{0,20}"
    }

    fn group_strategy() -> impl Strategy<Value = AgentGroup> {
        (
            "[a-z0-9][a-z0-9_-]{0,20}",
            "\\PC{1,40}",
            proptest::sample::select(ironclaw_registry::PROVIDERS),
            "[a-z0-9.:-]{0,20}",
            "\\PC{0,200}",
            proptest::collection::vec(tool(), 0..6),
            proptest::collection::vec("[a-z][a-z0-9.=-]{0,15}", 0..4),
            proptest::collection::vec(
                (
                    "/[a-z]{1,8}(/[a-z0-9]{1,8}){0,2}",
                    "/[a-z]{1,8}",
                    any::<bool>(),
                ),
                0..3,
            ),
            proptest::collection::vec("[a-z]{1,10}(\\.[a-z]{2,5}){1,2}", 0..4),
            proptest::collection::vec(
                (
                    "[a-z][a-z0-9-]{0,10}",
                    proptest::collection::vec("[a-zA-Z][a-zA-Z0-9_.-]{0,12}", 1..4),
                ),
                0..3,
            ),
            0i128..4_000_000_000_000_000_000,
        )
            .prop_map(
                |(
                    id,
                    name,
                    provider,
                    model,
                    persona,
                    tools,
                    packages,
                    mounts,
                    egress,
                    mcp,
                    nanos,
                )| {
                    AgentGroup {
                        id: ag(&id),
                        name,
                        provider: provider.to_string(),
                        model,
                        persona,
                        enabled_tools: tools,
                        packages,
                        mounts: mounts
                            .into_iter()
                            .map(|(source, target, read_only)| MountGrant {
                                source,
                                target,
                                read_only,
                            })
                            .collect(),
                        egress,
                        mcp_grants: mcp
                            .into_iter()
                            .map(|(server, tools)| McpGrant { server, tools })
                            .collect(),
                        created_at: ironclaw_contract::time::Timestamp::from_unix_nanos(nanos)
                            .unwrap(),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn agent_group_json_round_trip(g in group_strategy()) {
            let json = serde_json::to_string(&g).unwrap();
            let back: AgentGroup = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &g);
            // Field names on the wire are snake_case.
            prop_assert!(json.contains("\"enabled_tools\"") && json.contains("\"mcp_grants\""));
        }

        #[test]
        fn normalized_groups_round_trip_through_the_database(g in group_strategy()) {
            // Whatever validation accepts, the database returns unchanged.
            if let Ok(n) = g.normalized() {
                let r = Registry::in_memory();
                let stored = r.put_agent_group(n.clone()).unwrap();
                prop_assert_eq!(&stored, &n);
                prop_assert_eq!(r.agent_group(&n.id).unwrap(), Some(n));
            }
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let g = AgentGroup::new(ag("g"), "G", "mock", "");
        let mut v = serde_json::to_value(&g).unwrap();
        v["enable_tools"] = serde_json::json!(["bash"]);
        assert!(serde_json::from_value::<AgentGroup>(v).is_err());
    }
}
