//! Durability: changes survive restarts and stay decidable; approved-but-unapplied
//! changes are applied at startup; what is applied is bound to the stored content.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use ironclaw_audit::{AuditEvent, AuditLog};
use ironclaw_contract::enums::{ChangeKind, ChangeStatus, Outcome};
use ironclaw_contract::gateway::Decision;
use ironclaw_contract::time::Timestamp;
use ironclaw_gateway::store::Transition;
use ironclaw_gateway::{
    request_hash, Chain, ChangeRecord, ChangeStore, Gateway, GatewayError, StoreError, CHANGES_FILE,
};
use ironclaw_registry::Registry;
use serde_json::json;

const KEY: u8 = 42;

/// Everything a daemon keeps in its state directory.
struct State {
    dir: tempfile::TempDir,
}

/// One "process": the gateway and its handles, opened from `State`.
struct Daemon {
    gw: Gateway,
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    audit_path: PathBuf,
}

impl State {
    fn new() -> Self {
        let s = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let reg = Registry::open(&s.registry_path(), &cipher(KEY)).unwrap();
        seed(&reg);
        s
    }

    fn registry_path(&self) -> PathBuf {
        self.dir.path().join("registry.db")
    }

    fn changes_path(&self) -> PathBuf {
        self.dir.path().join("changes.db")
    }

    fn store(&self) -> ChangeStore {
        ChangeStore::open(&self.changes_path(), &cipher(KEY)).unwrap()
    }

    fn start(&self) -> Daemon {
        let registry = Arc::new(Registry::open(&self.registry_path(), &cipher(KEY)).unwrap());
        let audit_path = self.dir.path().join("audit.jsonl");
        let audit = Arc::new(AuditLog::open(&audit_path).unwrap());
        let gw = Gateway::new(
            self.store(),
            registry.clone(),
            audit.clone(),
            Chain::standard(self.dir.path().join("mounts")),
        );
        Daemon {
            gw,
            registry,
            audit,
            audit_path,
        }
    }
}

impl Daemon {
    fn events(&self) -> Vec<AuditEvent> {
        events(&self.audit, &self.audit_path)
    }

    fn persona(&self, g: &str) -> String {
        self.registry.agent_group(&gid(g)).unwrap().unwrap().persona
    }

    fn submit(&self, kind: ChangeKind, group: &str, payload: serde_json::Value) -> ChangeRecord {
        self.gw
            .submit(sub(kind, group, payload), &uid(CAROL))
            .unwrap()
    }
}

/// The store transition a human's approval makes, bound to `hash`.
fn approval(hash: &str) -> Transition {
    Transition {
        decision: Some(Decision {
            outcome: Outcome::Approve,
            decided_by: uid(ALICE),
            decided_at: Timestamp::now(),
            request_hash: hash.to_owned(),
        }),
        ..Transition::to(ChangeStatus::Approved)
    }
}

// ---------------------------------------------------------------------------------
// 13. Restart.

#[test]
fn a_pending_change_survives_a_restart_and_is_still_decidable() {
    let state = State::new();
    let rec = {
        let d = state.start();
        d.submit(ChangeKind::Persona, "g1", json!({"persona": "durable"}))
    };
    let id = rec.request.id.clone();

    let done = {
        let d = state.start();
        assert_eq!(*d.gw.pending().unwrap(), vec![rec.clone()]);
        assert_eq!(d.persona("g1"), "");
        // Deciding rules hold after the restart too.
        assert!(matches!(
            d.gw.decide(&id, Outcome::Approve, &uid(CAROL), None),
            Err(GatewayError::Forbidden(_))
        ));
        let done =
            d.gw.decide(&id, Outcome::Approve, &uid(ALICE), None)
                .unwrap();
        assert_eq!(done.status, ChangeStatus::Applied);
        assert_eq!(d.persona("g1"), "durable");
        done
    };

    let d = state.start();
    assert!(d.gw.pending().unwrap().is_empty());
    assert_eq!(d.gw.get(&id).unwrap(), done);
    assert_eq!(d.gw.history(10).unwrap(), vec![done.clone()]);
    assert_eq!(
        done.decision.as_ref().unwrap().request_hash,
        rec.request_hash
    );
    assert_eq!(d.persona("g1"), "durable");
    // Nothing left to recover.
    assert_eq!(d.gw.recover().unwrap(), 0);
    // One chain across the three processes: submit, verdict, refused, decision, applied.
    assert_eq!(
        kinds(&d.events()),
        ["submitted", "verdict", "refused", "decision", "applied"]
    );
}

#[test]
fn the_change_store_refuses_a_wrong_key() {
    let state = State::new();
    drop(state.store());
    let r = ChangeStore::open(&state.changes_path(), &cipher(KEY + 1));
    assert!(matches!(r, Err(StoreError::Db(_))), "{:?}", r.err());
}

#[test]
fn recover_applies_changes_approved_before_a_crash() {
    let state = State::new();
    let (rec, other) = {
        let d = state.start();
        (
            d.submit(ChangeKind::Persona, "g1", json!({"persona": "recovered"})),
            d.submit(
                ChangeKind::Persona,
                "g2",
                json!({"persona": "still pending"}),
            ),
        )
    };
    // The decision reached the store, then the process died before applying it.
    {
        let store = state.store();
        let t = approval(&rec.request_hash);
        assert!(store
            .transition(&rec.request.id, &[ChangeStatus::Pending], &t)
            .unwrap());
        // A compare-and-set: it cannot happen twice.
        assert!(!store
            .transition(&rec.request.id, &[ChangeStatus::Pending], &t)
            .unwrap());
    }

    let d = state.start();
    assert_eq!(d.persona("g1"), "");
    assert_eq!(d.gw.count(ChangeStatus::Approved).unwrap(), 1);
    assert_eq!(d.gw.recover().unwrap(), 1);
    let now = d.gw.get(&rec.request.id).unwrap();
    assert_eq!(now.status, ChangeStatus::Applied);
    assert_eq!(now.decision.unwrap().decided_by, uid(ALICE));
    assert_eq!(d.persona("g1"), "recovered");
    // The other change was not touched.
    assert_eq!(
        d.gw.get(&other.request.id).unwrap().status,
        ChangeStatus::Pending
    );
    assert_eq!(d.persona("g2"), "");
    assert_eq!(d.gw.recover().unwrap(), 0);
    assert_eq!(stat(&d.gw.stats().applied), 1);
    let ev = events_for(&d.events(), &rec.request.id);
    assert_eq!(kinds(&ev), ["submitted", "verdict", "applied"]);
    assert_eq!(
        ev[2],
        AuditEvent::ChangeApplied {
            change_id: rec.request.id.clone(),
            request_hash: rec.request_hash.clone(),
        }
    );
}

/// Applies a change, then rewinds it to `approved` as a crash between the registry
/// commit and the `applied` mark would leave it, and recovers it.
fn reapply(state: &State, d: &Daemon, rec: &ChangeRecord) {
    let store = state.store();
    assert!(store
        .transition(
            &rec.request.id,
            &[ChangeStatus::Applied],
            &Transition::to(ChangeStatus::Approved),
        )
        .unwrap());
    assert_eq!(d.gw.recover().unwrap(), 1);
    assert_eq!(
        d.gw.get(&rec.request.id).unwrap().status,
        ChangeStatus::Applied
    );
}

#[test]
fn applying_twice_after_a_crash_is_idempotent() {
    let state = State::new();
    let d = state.start();
    let approve = |rec: &ChangeRecord, by: &str| {
        let done =
            d.gw.decide(&rec.request.id, Outcome::Approve, &uid(by), None)
                .unwrap();
        assert_eq!(done.status, ChangeStatus::Applied, "{done:?}");
        done
    };

    let mg = d
        .registry
        .get_or_create_messaging_group(
            "slack",
            "C1",
            None,
            true,
            ironclaw_contract::enums::UnknownSenderPolicy::Strict,
        )
        .unwrap()
        .id;
    let wiring = d.submit(
        ChangeKind::Wiring,
        "g1",
        json!({"messaging_group_id": mg.as_str(), "engage_mode": "mention"}),
    );
    approve(&wiring, ALICE);
    let wirings = d.registry.wirings_for(&mg).unwrap();
    assert_eq!(wirings.len(), 1);
    reapply(&state, &d, &wiring);
    assert_eq!(d.registry.wirings_for(&mg).unwrap(), wirings);

    let packages = d.submit(ChangeKind::Packages, "g1", json!({"apt": ["jq"]}));
    approve(&packages, ALICE);
    reapply(&state, &d, &packages);
    let g = d.registry.agent_group(&gid("g1")).unwrap().unwrap();
    assert_eq!(g.packages, vec!["apt:jq".to_owned()]);

    let member = d.submit(
        ChangeKind::Permissions,
        "g1",
        json!({"add_member": "slack:new"}),
    );
    approve(&member, ALICE);
    reapply(&state, &d, &member);
    assert_eq!(d.registry.members_of(&gid("g1")).unwrap().len(), 2);

    let create = d.submit(
        ChangeKind::CreateAgent,
        "delta",
        json!({"name": "Delta", "persona": "p", "enabled_tools": ["read_file"]}),
    );
    approve(&create, OWNER);
    let created = d.registry.agent_group(&gid("delta")).unwrap().unwrap();
    reapply(&state, &d, &create);
    assert_eq!(
        d.registry.agent_group(&gid("delta")).unwrap().unwrap(),
        created
    );

    assert_eq!(stat(&d.gw.stats().apply_failed), 0);
    assert_eq!(stat(&d.gw.stats().applied), 8);
}

// ---------------------------------------------------------------------------------
// 14. Hash binding.

#[test]
fn an_approval_bound_to_another_hash_is_not_applied() {
    let state = State::new();
    let (rec, unbound) = {
        let d = state.start();
        (
            d.submit(ChangeKind::Persona, "g1", json!({"persona": "swapped"})),
            d.submit(ChangeKind::Persona, "g2", json!({"persona": "no decision"})),
        )
    };
    {
        let store = state.store();
        let t = approval(&"0".repeat(64));
        assert!(store
            .transition(&rec.request.id, &[ChangeStatus::Pending], &t)
            .unwrap());
        // Approved with no decision at all.
        assert!(store
            .transition(
                &unbound.request.id,
                &[ChangeStatus::Pending],
                &Transition::to(ChangeStatus::Approved),
            )
            .unwrap());
    }
    let d = state.start();
    assert_eq!(d.gw.recover().unwrap(), 0);
    for (r, g) in [(&rec, "g1"), (&unbound, "g2")] {
        let now = d.gw.get(&r.request.id).unwrap();
        assert_eq!(now.status, ChangeStatus::ApplyFailed);
        assert_eq!(
            now.error.as_deref(),
            Some("the approval does not match the stored request's content hash")
        );
        assert_eq!(d.persona(g), "");
        let ev = events_for(&d.events(), &r.request.id);
        assert_eq!(kinds(&ev), ["submitted", "verdict", "apply_failed"]);
    }
    assert_eq!(stat(&d.gw.stats().apply_failed), 2);
    assert_eq!(stat(&d.gw.stats().applied), 0);
    // Retrying does not launder the mismatch.
    let again = d.gw.retry(&rec.request.id, &uid(ALICE)).unwrap();
    assert_eq!(again.status, ChangeStatus::ApplyFailed);
    assert_eq!(d.persona("g1"), "");
}

fn raw_store(path: &Path) -> rusqlite::Connection {
    ironclaw_contract::db::open_writer(path, &cipher(KEY), &CHANGES_FILE).unwrap()
}

fn assert_corrupt<T: std::fmt::Debug>(r: Result<T, GatewayError>, id: &str) {
    match r {
        Err(GatewayError::Store(StoreError::Corrupt { id: bad, reason })) => {
            assert_eq!(bad, id);
            assert!(!reason.is_empty());
        }
        other => panic!("expected a corrupt-store error, got {other:?}"),
    }
}

#[test]
fn a_request_edited_in_the_store_is_refused_on_read() {
    let state = State::new();
    let d = state.start();
    let rec = d.submit(ChangeKind::Persona, "g1", json!({"persona": "harmless"}));
    let id = rec.request.id.clone();
    {
        let raw = raw_store(&state.changes_path());
        let n = raw
            .execute(
                "UPDATE changes SET request_json = replace(request_json, 'harmless', 'malicious') WHERE id = ?1",
                [id.as_str()],
            )
            .unwrap();
        assert_eq!(n, 1);
        let edited: String = raw
            .query_row(
                "SELECT request_json FROM changes WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .unwrap();
        assert!(edited.contains("malicious"));
    }
    // Still a well-formed request, but not the one that was hashed.
    let get = d.gw.get(&id);
    match &get {
        Err(GatewayError::Store(StoreError::Corrupt { reason, .. })) => {
            assert!(reason.contains("content hash"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_corrupt(get, id.as_str());
    assert_corrupt(
        d.gw.decide(&id, Outcome::Approve, &uid(ALICE), None),
        id.as_str(),
    );
    assert_corrupt(d.gw.pending(), id.as_str());
    assert_eq!(d.persona("g1"), "");
    assert!(!kinds(&d.events()).contains(&"decision"));
}

#[test]
fn an_edited_approved_request_is_never_applied() {
    let state = State::new();
    let rec = {
        let d = state.start();
        d.submit(
            ChangeKind::Permissions,
            "g1",
            json!({"add_member": "slack:ok"}),
        )
    };
    {
        let store = state.store();
        let t = approval(&rec.request_hash);
        assert!(store
            .transition(&rec.request.id, &[ChangeStatus::Pending], &t)
            .unwrap());
        // Between the approval and the apply, someone swaps the request for a grant.
        let raw = raw_store(&state.changes_path());
        let mut req = rec.request.clone();
        req.after = json!({"grant_admin": "slack:ok"});
        let text = String::from_utf8(req.canonical_bytes()).unwrap();
        raw.execute(
            "UPDATE changes SET request_json = ?2 WHERE id = ?1",
            [rec.request.id.as_str(), text.as_str()],
        )
        .unwrap();
        assert_ne!(request_hash(&req), rec.request_hash);
    }
    let d = state.start();
    assert_corrupt(d.gw.recover(), rec.request.id.as_str());
    assert!(!d.registry.is_member(&uid("slack:ok"), &gid("g1")).unwrap());
    assert!(d.registry.roles_of(&uid("slack:ok")).unwrap().is_empty());
    assert!(!kinds(&d.events()).contains(&"applied"));
}

#[test]
fn unparseable_rows_are_corrupt_not_panics() {
    let state = State::new();
    let d = state.start();
    let rec = d.submit(ChangeKind::Persona, "g1", json!({"persona": "x"}));
    let id = rec.request.id.as_str();
    let raw = raw_store(&state.changes_path());
    for (col, value) in [
        ("request_json", "{not json"),
        ("verdicts_json", "[{\"verifier\": 1}]"),
        ("decision_json", "{\"outcome\": \"maybe\"}"),
        ("updated_at", "yesterday"),
    ] {
        let original: Option<String> = raw
            .query_row(
                &format!("SELECT {col} FROM changes WHERE id = ?1"),
                [id],
                |r| r.get(0),
            )
            .unwrap();
        raw.execute(
            &format!("UPDATE changes SET {col} = ?2 WHERE id = ?1"),
            [id, value],
        )
        .unwrap();
        assert_corrupt(d.gw.get(&rec.request.id), id);
        raw.execute(
            &format!("UPDATE changes SET {col} = ?2 WHERE id = ?1"),
            rusqlite::params![id, original],
        )
        .unwrap();
        assert_eq!(d.gw.get(&rec.request.id).unwrap(), rec);
    }
}
