//! The verifier chain: the standard verifiers through the gateway, and the chain's
//! aggregation with custom verifiers.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use ironclaw_audit::AuditEvent;
use ironclaw_contract::enums::{ChangeKind, ChangeStatus, Outcome, Verdict};
use ironclaw_contract::gateway::ChangeRequest;
use ironclaw_contract::time::Timestamp;
use ironclaw_gateway::payload::{self, ChangePayload};
use ironclaw_gateway::verify::{Verifier, VerifyContext};
use ironclaw_gateway::{Chain, ChangeRecord, GatewayError};
use ironclaw_registry::Registry;
use proptest::prelude::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------
// 9. The standard verifiers, end to end.

/// Submits, and asserts the change was rejected at once by `verifier`: decided by
/// `gateway:verifier`, bound to the request's hash, nothing applied, audited, counted,
/// and no human can approve it afterwards.
fn assert_rejected_by(env: &Env, kind: ChangeKind, group: &str, payload: Value, verifier: &str) {
    let rejected_before = stat(&env.gw.stats().verifier_rejected);
    let groups_before = env.registry.agent_groups().unwrap();
    let rec = env.submit(kind, group, payload.clone());
    let ctx = format!("{kind} {payload}: {rec:?}");

    assert_eq!(rec.status, ChangeStatus::Rejected, "{ctx}");
    let d = rec.decision.clone().unwrap();
    assert_eq!(d.outcome, Outcome::Reject, "{ctx}");
    assert_eq!(d.decided_by, uid("gateway:verifier"), "{ctx}");
    assert_eq!(d.request_hash, rec.request_hash, "{ctx}");
    // The chain stopped at the rejecting verifier: the floor never ran.
    let last = rec.verdicts.last().unwrap();
    assert_eq!(last.verifier, verifier, "{ctx}");
    assert_eq!(last.verdict, Verdict::Reject, "{ctx}");
    assert!(
        rec.verdicts[..rec.verdicts.len() - 1]
            .iter()
            .all(|v| v.verdict == Verdict::Pass),
        "{ctx}"
    );
    assert!(!rec
        .verdicts
        .iter()
        .any(|v| v.verifier == "always-require-human"));
    assert_eq!(env.registry.agent_groups().unwrap(), groups_before, "{ctx}");
    assert_eq!(
        stat(&env.gw.stats().verifier_rejected),
        rejected_before + 1,
        "{ctx}"
    );

    let id = &rec.request.id;
    let events = events_for(&env.events(), id);
    assert_eq!(
        kinds(&events),
        ["submitted", "verdict", "decision"],
        "{ctx}"
    );
    match &events[1] {
        AuditEvent::VerdictRecorded {
            verdict, reason, ..
        } => {
            assert_eq!(*verdict, Verdict::Reject);
            assert!(reason.starts_with(&format!("{verifier}: ")), "{reason}");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(
        events[2],
        AuditEvent::DecisionRecorded {
            change_id: id.clone(),
            outcome: Outcome::Reject,
            decided_by: uid("gateway:verifier"),
            request_hash: rec.request_hash.clone(),
        }
    );

    // A human cannot overrule the verifier.
    let r = env.gw.decide(id, Outcome::Approve, &uid(OWNER), None);
    assert!(
        matches!(
            r,
            Err(GatewayError::WrongState {
                status: ChangeStatus::Rejected,
                ..
            })
        ),
        "{ctx}: {r:?}"
    );
    assert_eq!(env.gw.get(id).unwrap(), rec);
    assert_eq!(env.registry.agent_groups().unwrap(), groups_before, "{ctx}");
}

/// Submits and asserts every verifier passed and the floor held the change.
fn assert_held(env: &Env, kind: ChangeKind, group: &str, payload: Value) -> ChangeRecord {
    let rec = env.submit(kind, group, payload.clone());
    assert_eq!(rec.status, ChangeStatus::Pending, "{payload}: {rec:?}");
    assert_eq!(rec.decision, None);
    let names: Vec<&str> = rec.verdicts.iter().map(|v| v.verifier.as_str()).collect();
    assert_eq!(names, STANDARD_CHAIN);
    assert_eq!(rec.verdicts.last().unwrap().verdict, Verdict::RequireHuman);
    assert!(rec.verdicts.iter().all(|v| v.verdict != Verdict::Reject));
    rec
}

#[test]
fn package_names_with_shell_syntax_are_rejected() {
    let env = Env::new();
    for bad in [
        "; rm -rf /",
        "a && curl x",
        "$(whoami)",
        "`id`",
        "a|b",
        "a b",
        "-x",
        "a/../b",
        "a>b",
        "a\nb",
        "",
    ] {
        assert_rejected_by(
            &env,
            ChangeKind::Packages,
            "g1",
            json!({ "apt": [bad] }),
            "package-name",
        );
        assert_rejected_by(
            &env,
            ChangeKind::Packages,
            "g1",
            json!({ "npm": ["ok-one", bad] }),
            "package-name",
        );
    }
    assert!(env.group("g1").packages.is_empty());
}

#[test]
fn clean_packages_are_held_for_a_human() {
    let env = Env::new();
    assert_held(
        &env,
        ChangeKind::Packages,
        "g1",
        json!({"apt": ["ripgrep", "g++"], "npm": ["@scope/pkg", "lib-foo_1.2"]}),
    );
    assert!(env.group("g1").packages.is_empty());
}

#[test]
fn mounts_outside_the_allowlist_are_rejected() {
    let env = Env::new();
    let prefix = env.mount_prefix();
    let p = prefix.to_str().unwrap();
    let m = |source: &str, target: &str| json!({"mounts": [{"source": source, "target": target}]});
    for payload in [
        m("/etc", "/mnt/etc"),
        m("/etc/passwd", "/mnt/passwd"),
        // Traversal through the prefix.
        m(&format!("{p}/../../etc"), "/mnt/x"),
        m(&format!("{p}/a/../../b"), "/mnt/x"),
        // The prefix itself, and a sibling sharing its spelling.
        m(p, "/mnt/all"),
        m(&format!("{p}-evil/x"), "/mnt/x"),
        m("relative/path", "/mnt/x"),
        // Targets: only strictly below /mnt.
        m(&format!("{p}/a"), "/etc/cron.d"),
        m(&format!("{p}/a"), "/mnt"),
        m(&format!("{p}/a"), "/mntx/a"),
        m(&format!("{p}/a"), "/mnt/../etc"),
        m(&format!("{p}/a"), "mnt/a"),
        m(&format!("{p}/a"), "/"),
        // One bad entry spoils the list.
        json!({"mounts": [
            {"source": format!("{p}/ok"), "target": "/mnt/ok"},
            {"source": "/root/.ssh", "target": "/mnt/ssh"},
        ]}),
    ] {
        assert_rejected_by(&env, ChangeKind::Mounts, "g1", payload, "mount-allowlist");
    }
    assert!(env.group("g1").mounts.is_empty());
}

#[test]
fn clean_mounts_are_held_for_a_human() {
    let env = Env::new();
    let p = env.mount_prefix();
    let p = p.to_str().unwrap();
    assert_held(
        &env,
        ChangeKind::Mounts,
        "g1",
        json!({"mounts": [
            {"source": format!("{p}/data"), "target": "/mnt/data"},
            {"source": format!("{p}/deep/er"), "target": "/mnt/x/y", "read_only": false},
        ]}),
    );
    // Clearing every mount is also a change a human decides.
    assert_held(&env, ChangeKind::Mounts, "g1", json!({"mounts": []}));
}

#[test]
fn unknown_and_forbidden_tool_names_are_rejected() {
    let env = Env::new();
    for names in [
        json!(["set_persona"]),
        json!(["read_file", "shell"]),
        json!(["approve_change"]),
        json!(["web_search"]),
        json!(["READ_FILE"]),
        json!([""]),
    ] {
        for op in ["replace", "add", "remove"] {
            assert_rejected_by(
                &env,
                ChangeKind::EnabledTools,
                "g1",
                json!({ op: names }),
                "tool-catalog",
            );
        }
    }
    // The same check covers a new agent's tools.
    assert_rejected_by(
        &env,
        ChangeKind::CreateAgent,
        "sneaky",
        json!({"name": "sneaky", "enabled_tools": ["read_file", "exec"]}),
        "tool-catalog",
    );
    assert!(env.registry.agent_group(&gid("sneaky")).unwrap().is_none());
}

#[test]
fn catalog_tools_are_held_for_a_human() {
    let env = Env::new();
    assert_held(
        &env,
        ChangeKind::EnabledTools,
        "g1",
        json!({"add": ["read_file", "request_capability_change"]}),
    );
    assert_held(&env, ChangeKind::EnabledTools, "g1", json!({"replace": []}));
    assert_held(
        &env,
        ChangeKind::EnabledTools,
        "g1",
        json!({"remove": ["send_message"]}),
    );
}

#[test]
fn egress_hosts_must_be_public_dns_names() {
    let env = Env::new();
    for bad in [
        "10.0.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "*.example.com",
        "*",
        "localhost",
        "LOCALHOST",
        "api.localhost",
        "printer.local",
        "metadata.google.internal",
        "https://x.com",
        "x.com:443",
        "x.com/path",
        "com",
        "a..b",
        "-a.com",
        "",
        "[::1]",
    ] {
        assert_rejected_by(
            &env,
            ChangeKind::Permissions,
            "g1",
            json!({ "egress": ["api.example.com", bad] }),
            "egress-host",
        );
    }
    assert!(env.group("g1").egress.is_empty());
    assert_held(
        &env,
        ChangeKind::Permissions,
        "g1",
        json!({"egress": ["api.pagerduty.com", "Status.Example.com"]}),
    );
}

#[test]
fn wiring_needs_an_existing_messaging_group() {
    let env = Env::new();
    assert_rejected_by(
        &env,
        ChangeKind::Wiring,
        "g1",
        json!({"messaging_group_id": "mg_missing", "engage_mode": "mention"}),
        "wiring-target",
    );
    let mg = env.messaging_group("C42");
    assert_held(
        &env,
        ChangeKind::Wiring,
        "g1",
        json!({"messaging_group_id": mg.as_str(), "engage_mode": "mention"}),
    );
    assert!(env.registry.wirings_for(&mg).unwrap().is_empty());
}

#[test]
fn create_agent_of_an_existing_group_is_rejected() {
    let env = Env::new();
    assert_rejected_by(
        &env,
        ChangeKind::CreateAgent,
        "g1",
        json!({"name": "g1"}),
        "create-agent",
    );
    assert_rejected_by(
        &env,
        ChangeKind::CreateAgent,
        "g2",
        json!({"name": "Some other name", "id": "g2"}),
        "create-agent",
    );
    assert_eq!(env.group("g1").name, "group g1");

    // A free id: held, and the create-agent verifier's reason is the one reported.
    let rec = assert_held(
        &env,
        ChangeKind::CreateAgent,
        "fresh",
        json!({"name": "Fresh"}),
    );
    let ca = rec
        .verdicts
        .iter()
        .find(|v| v.verifier == "create-agent")
        .unwrap();
    assert_eq!(ca.verdict, Verdict::RequireHuman);
    assert_eq!(ca.reason, "creates agent group fresh");
    let events = events_for(&env.events(), &rec.request.id);
    assert_eq!(
        events[1],
        AuditEvent::VerdictRecorded {
            change_id: rec.request.id.clone(),
            verdict: Verdict::RequireHuman,
            reason: "create-agent: creates agent group fresh".into(),
        }
    );
}

#[test]
fn mcp_access_is_rejected_without_configured_servers() {
    let env = Env::new();
    assert_rejected_by(
        &env,
        ChangeKind::McpAccess,
        "g1",
        json!({"server": "github", "tools": ["create_issue"]}),
        "mcp-server",
    );
    assert_rejected_by(
        &env,
        ChangeKind::McpAccess,
        "g1",
        json!({"server": "github"}),
        "mcp-server",
    );
    assert!(env.group("g1").mcp_grants.is_empty());
}

#[test]
fn kinds_without_a_specific_verifier_are_still_held() {
    let env = Env::new();
    assert_held(&env, ChangeKind::Persona, "g1", json!({"persona": ""}));
    for p in [
        json!({"add_member": "slack:new"}),
        json!({"remove_member": FRANK}),
        json!({"grant_admin": "operator:new"}),
        json!({"revoke_admin": DANA}),
    ] {
        assert_held(&env, ChangeKind::Permissions, "g1", p);
    }
    assert!(!env
        .registry
        .is_member(&uid("slack:new"), &gid("g1"))
        .unwrap());
}

// ---------------------------------------------------------------------------------
// 10. Chain aggregation, with custom verifiers.

type Answer = Result<(Verdict, String), String>;

/// A verifier that always gives the same answer and counts its calls.
struct Fixed {
    name: &'static str,
    answer: Answer,
    calls: Arc<AtomicUsize>,
}

impl Verifier for Fixed {
    fn name(&self) -> &'static str {
        self.name
    }
    fn verify(&self, _: &VerifyContext<'_>) -> Answer {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.answer.clone()
    }
}

fn fixed(name: &'static str, answer: Answer) -> (Box<dyn Verifier>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    (
        Box::new(Fixed {
            name,
            answer,
            calls: calls.clone(),
        }),
        calls,
    )
}

fn pass(name: &'static str) -> Box<dyn Verifier> {
    fixed(name, Ok((Verdict::Pass, format!("{name} ok")))).0
}

fn sample_request() -> (ChangeRequest, ChangePayload) {
    let after = json!({"persona": "x"});
    let req = ChangeRequest {
        id: cid("chg_test"),
        kind: ChangeKind::Persona,
        agent_group_id: gid("g1"),
        requested_by: uid(CAROL),
        before: None,
        after: after.clone(),
        reason: None,
        created_at: Timestamp::now(),
    };
    let p = payload::parse(ChangeKind::Persona, &after).unwrap();
    (req, p)
}

fn run(chain: &Chain) -> ironclaw_gateway::verify::ChainOutcome {
    let (req, p) = sample_request();
    let registry = Registry::in_memory();
    chain.run(&VerifyContext {
        request: &req,
        payload: &p,
        registry: &registry,
    })
}

fn verdict_names(out: &ironclaw_gateway::verify::ChainOutcome) -> Vec<(&str, Verdict)> {
    out.verdicts
        .iter()
        .map(|v| (v.verifier.as_str(), v.verdict))
        .collect()
}

#[test]
fn an_empty_chain_still_requires_a_human() {
    let chain = Chain::new(vec![]);
    assert_eq!(chain.names(), ["always-require-human"]);
    let out = run(&chain);
    assert_eq!(out.verdict, Verdict::RequireHuman);
    assert_eq!(
        out.reason,
        "always-require-human: every change needs a human decision"
    );
    assert_eq!(
        verdict_names(&out),
        [("always-require-human", Verdict::RequireHuman)]
    );
}

#[test]
fn all_passing_verifiers_still_end_at_the_floor() {
    let chain = Chain::new(vec![pass("a"), pass("b")]);
    assert_eq!(chain.names(), ["a", "b", "always-require-human"]);
    let out = run(&chain);
    assert_eq!(out.verdict, Verdict::RequireHuman);
    assert_eq!(
        verdict_names(&out),
        [
            ("a", Verdict::Pass),
            ("b", Verdict::Pass),
            ("always-require-human", Verdict::RequireHuman)
        ]
    );
    assert_eq!(out.verdicts[0].reason, "a ok");
}

#[test]
fn the_standard_chain_lists_its_verifiers_in_order() {
    assert_eq!(Chain::standard("/srv/m".into()).names(), STANDARD_CHAIN);
}

#[test]
fn a_reject_short_circuits_the_chain() {
    let (first, first_calls) = fixed("first", Ok((Verdict::Pass, "fine".into())));
    let (rej, rej_calls) = fixed("rejector", Ok((Verdict::Reject, "nope".into())));
    let (after, after_calls) = fixed("after", Ok((Verdict::Pass, "never".into())));
    let chain = Chain::new(vec![first, rej, after]);
    let out = run(&chain);
    assert_eq!(out.verdict, Verdict::Reject);
    assert_eq!(out.reason, "rejector: nope");
    assert_eq!(
        verdict_names(&out),
        [("first", Verdict::Pass), ("rejector", Verdict::Reject)]
    );
    assert_eq!(first_calls.load(Ordering::SeqCst), 1);
    assert_eq!(rej_calls.load(Ordering::SeqCst), 1);
    assert_eq!(after_calls.load(Ordering::SeqCst), 0);
}

#[test]
fn a_reject_after_require_human_wins() {
    let (rh, _) = fixed("holder", Ok((Verdict::RequireHuman, "look".into())));
    let (rej, _) = fixed("rejector", Ok((Verdict::Reject, "nope".into())));
    let out = run(&Chain::new(vec![rh, rej]));
    assert_eq!(out.verdict, Verdict::Reject);
    assert_eq!(out.reason, "rejector: nope");
    assert_eq!(out.verdicts.len(), 2);
}

#[test]
fn a_verifier_error_is_a_reject() {
    let (err, _) = fixed("broken", Err("database on fire".into()));
    let (after, after_calls) = fixed("after", Ok((Verdict::Pass, "never".into())));
    let out = run(&Chain::new(vec![pass("a"), err, after]));
    assert_eq!(out.verdict, Verdict::Reject);
    assert_eq!(out.reason, "broken: error: database on fire");
    let last = out.verdicts.last().unwrap();
    assert_eq!(last.verifier, "broken");
    assert_eq!(last.verdict, Verdict::Reject);
    assert_eq!(last.reason, "error: database on fire");
    assert_eq!(after_calls.load(Ordering::SeqCst), 0);
}

#[test]
fn the_first_require_human_reason_is_reported() {
    let (one, _) = fixed("one", Ok((Verdict::RequireHuman, "first".into())));
    let (two, two_calls) = fixed("two", Ok((Verdict::RequireHuman, "second".into())));
    let out = run(&Chain::new(vec![pass("p"), one, two]));
    assert_eq!(out.verdict, Verdict::RequireHuman);
    assert_eq!(out.reason, "one: first");
    // Holding does not stop the chain: later verifiers still get to reject.
    assert_eq!(two_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        verdict_names(&out),
        [
            ("p", Verdict::Pass),
            ("one", Verdict::RequireHuman),
            ("two", Verdict::RequireHuman),
            ("always-require-human", Verdict::RequireHuman)
        ]
    );
}

#[test]
fn custom_chains_through_the_gateway() {
    // Passing verifiers cannot remove the floor: still pending.
    let env = Env::with_chain(|_| Chain::new(vec![pass("lenient")]));
    let rec = env.submit(ChangeKind::Persona, "g1", json!({"persona": "x"}));
    assert_eq!(rec.status, ChangeStatus::Pending);
    assert_eq!(rec.verdicts.len(), 2);
    assert_eq!(env.group("g1").persona, "");

    // A verifier error rejects the change like a verifier reject does.
    let env = Env::with_chain(|_| Chain::new(vec![fixed("broken", Err("cannot tell".into())).0]));
    let rec = env.submit(ChangeKind::Persona, "g1", json!({"persona": "x"}));
    assert_eq!(rec.status, ChangeStatus::Rejected);
    assert_eq!(
        rec.decision.as_ref().unwrap().decided_by,
        uid("gateway:verifier")
    );
    assert_eq!(rec.verdicts[0].reason, "error: cannot tell");
    assert_eq!(stat(&env.gw.stats().verifier_rejected), 1);
    let events = env.events();
    assert_eq!(kinds(&events), ["submitted", "verdict", "decision"]);
    assert_eq!(
        events[1],
        AuditEvent::VerdictRecorded {
            change_id: rec.request.id.clone(),
            verdict: Verdict::Reject,
            reason: "broken: error: cannot tell".into(),
        }
    );
    assert_eq!(env.group("g1").persona, "");
}

// ---------------------------------------------------------------------------------
// Properties: what the verifiers let through, the registry accepts.

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A package name either is rejected at submit or, once approved, applies: the
    /// verifier never holds for a human a name the registry would then refuse, and
    /// never lets through a name with shell syntax.
    #[test]
    fn package_verdicts_agree_with_the_registry(name in "[ -~]{0,12}") {
        let env = Env::new();
        let rec = env.submit(ChangeKind::Packages, "g1", json!({"apt": [name.clone()]}));
        let shell = name.is_empty()
            || name.contains(|c: char| " ;&|$`()<>\\'\"*?!#~=:{}[],%^".contains(c))
            || name.starts_with(['-', '.', '_', '/', '+']);
        if rec.status == ChangeStatus::Pending {
            prop_assert!(!shell, "{name:?} was held");
            let done = env.approve(&rec.request.id, ALICE);
            prop_assert_eq!(done.status, ChangeStatus::Applied, "{:?}: {:?}", name, done.error);
            prop_assert_eq!(env.group("g1").packages, vec![format!("apt:{name}")]);
        } else {
            prop_assert_eq!(rec.status, ChangeStatus::Rejected);
            prop_assert!(env.group("g1").packages.is_empty());
        }
    }

    /// The same for mounts: a source/target the allowlist holds for a human is one
    /// the registry stores once approved.
    #[test]
    fn mount_verdicts_agree_with_the_registry(
        src in "(/|//|\\./|\\.\\./|[a-z]{1,3}|/\\.|/){1,6}",
        dst in "(/|//|\\./|\\.\\./|[a-z]{1,3}|/\\.|/){1,6}",
    ) {
        let env = Env::new();
        let p = env.mount_prefix();
        let source = format!("{}/{src}", p.display());
        let target = format!("/mnt/{dst}");
        let rec = env.submit(
            ChangeKind::Mounts,
            "g1",
            json!({"mounts": [{"source": source, "target": target}]}),
        );
        if rec.status == ChangeStatus::Pending {
            let done = env.approve(&rec.request.id, ALICE);
            prop_assert_eq!(
                done.status, ChangeStatus::Applied,
                "{} -> {} held but not applicable: {:?}", source, target, done.error
            );
            let g = env.group("g1");
            prop_assert_eq!(g.mounts.len(), 1);
            prop_assert_eq!(&g.mounts[0].source, &source);
            prop_assert_eq!(&g.mounts[0].target, &target);
            prop_assert!(!source.contains("/../") && !source.ends_with("/.."));
        } else {
            prop_assert_eq!(rec.status, ChangeStatus::Rejected);
        }
    }
}
