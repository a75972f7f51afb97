//! Shared fixtures for the gateway's integration tests.
//!
//! Every test file includes this module, and not every file uses every helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ironclaw_audit::{AuditEvent, AuditLog};
use ironclaw_contract::db::Cipher;
use ironclaw_contract::enums::{ChangeKind, ChangeStatus, Outcome, UnknownSenderPolicy};
use ironclaw_contract::ids::{AgentGroupId, ChangeId, MessagingGroupId, UserId};
use ironclaw_contract::key::SessionKey;
use ironclaw_gateway::{Chain, ChangeRecord, ChangeStore, Gateway, Submission};
use ironclaw_registry::{AgentGroup, Registry, Role, RoleGrant};
use serde_json::Value;
use tempfile::TempDir;

pub fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

pub fn gid(s: &str) -> AgentGroupId {
    AgentGroupId::new(s).unwrap()
}

pub fn cid(s: &str) -> ChangeId {
    ChangeId::new(s).unwrap()
}

pub fn cipher(n: u8) -> Cipher {
    Cipher::Key(SessionKey::from_bytes([n; 32]))
}

// The cast of principals every fixture registry holds.
/// Global owner.
pub const OWNER: &str = "operator:root";
/// Global admins.
pub const ALICE: &str = "operator:alice";
pub const BOB: &str = "operator:bob";
/// Admin scoped to `g1`.
pub const DANA: &str = "operator:dana";
/// Admin scoped to `g2`.
pub const ERIN: &str = "operator:erin";
/// Plain member of `g1`.
pub const FRANK: &str = "slack:frank";
/// No role, no membership; submits most changes.
pub const CAROL: &str = "operator:carol";
/// A sandboxed session's principal.
pub const SANDBOX: &str = "sandbox:ses_x";

/// Creates `g1` and `g2` and grants the cast above their roles.
pub fn seed(registry: &Registry) {
    for g in ["g1", "g2"] {
        registry
            .create_agent_group(AgentGroup::new(gid(g), format!("group {g}"), "mock", ""))
            .unwrap();
    }
    let grant = |user: &str, role, scope: Option<&str>| {
        registry
            .grant_role(&RoleGrant {
                user_id: uid(user),
                role,
                scope: scope.map(gid),
            })
            .unwrap();
    };
    grant(OWNER, Role::Owner, None);
    grant(ALICE, Role::Admin, None);
    grant(BOB, Role::Admin, None);
    grant(DANA, Role::Admin, Some("g1"));
    grant(ERIN, Role::Admin, Some("g2"));
    registry.add_member(&uid(FRANK), &gid("g1")).unwrap();
}

/// An in-memory registry and change store, a real audit file in a temp dir, and the
/// daemon's standard chain with `<tmp>/mounts` as the mount prefix.
pub struct Env {
    pub dir: TempDir,
    pub registry: Arc<Registry>,
    pub audit: Arc<AuditLog>,
    pub gw: Gateway,
}

impl Env {
    pub fn new() -> Self {
        Self::with_chain(|dir| Chain::standard(dir.join("mounts")))
    }

    pub fn with_chain(chain: impl FnOnce(&Path) -> Chain) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = Arc::new(Registry::in_memory());
        seed(&registry);
        let audit = Arc::new(AuditLog::open(&dir.path().join("audit.jsonl")).unwrap());
        let gw = Gateway::new(
            ChangeStore::in_memory().unwrap(),
            registry.clone(),
            audit.clone(),
            chain(dir.path()),
        );
        Self {
            dir,
            registry,
            audit,
            gw,
        }
    }

    pub fn mount_prefix(&self) -> PathBuf {
        self.dir.path().join("mounts")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// Every audit event so far, after checking the whole chain on disk.
    pub fn events(&self) -> Vec<AuditEvent> {
        events(&self.audit, &self.audit_path())
    }

    pub fn submit(&self, kind: ChangeKind, group: &str, payload: Value) -> ChangeRecord {
        self.submit_as(CAROL, kind, group, payload)
    }

    pub fn submit_as(
        &self,
        requester: &str,
        kind: ChangeKind,
        group: &str,
        payload: Value,
    ) -> ChangeRecord {
        self.gw
            .submit(sub(kind, group, payload), &uid(requester))
            .unwrap_or_else(|e| panic!("submit failed: {e}"))
    }

    pub fn approve(&self, id: &ChangeId, by: &str) -> ChangeRecord {
        self.gw
            .decide(id, Outcome::Approve, &uid(by), None)
            .unwrap_or_else(|e| panic!("approve by {by} failed: {e}"))
    }

    /// Submits as carol, approves as alice (or the owner for `create_agent`), and
    /// asserts the change applied.
    pub fn apply(&self, kind: ChangeKind, group: &str, payload: Value) -> ChangeRecord {
        let rec = self.submit(kind, group, payload.clone());
        assert_eq!(rec.status, ChangeStatus::Pending, "{payload}: {rec:?}");
        let by = if kind == ChangeKind::CreateAgent {
            OWNER
        } else {
            ALICE
        };
        let done = self.approve(&rec.request.id, by);
        assert_eq!(done.status, ChangeStatus::Applied, "{payload}: {done:?}");
        assert_eq!(done.error, None);
        done
    }

    pub fn group(&self, g: &str) -> AgentGroup {
        self.registry.agent_group(&gid(g)).unwrap().unwrap()
    }

    pub fn messaging_group(&self, platform_id: &str) -> MessagingGroupId {
        self.registry
            .get_or_create_messaging_group(
                "slack",
                platform_id,
                None,
                true,
                UnknownSenderPolicy::Strict,
            )
            .unwrap()
            .id
    }
}

pub fn sub(kind: ChangeKind, group: &str, payload: Value) -> Submission {
    Submission {
        kind,
        agent_group_id: gid(group),
        payload,
        reason: Some("test".into()),
    }
}

/// Verifies the chain in `path` and returns every typed event in it.
pub fn events(audit: &AuditLog, path: &Path) -> Vec<AuditEvent> {
    let report = ironclaw_audit::verify(path).unwrap();
    let records = audit.tail(usize::MAX).unwrap();
    assert_eq!(records.len() as u64, report.records);
    records.iter().map(|r| r.event().unwrap()).collect()
}

/// The events about one change.
pub fn events_for(all: &[AuditEvent], id: &ChangeId) -> Vec<AuditEvent> {
    all.iter()
        .filter(|e| match e {
            AuditEvent::ChangeSubmitted { change_id, .. }
            | AuditEvent::VerdictRecorded { change_id, .. }
            | AuditEvent::DecisionRecorded { change_id, .. }
            | AuditEvent::DecisionRefused { change_id, .. }
            | AuditEvent::ChangeApplied { change_id, .. }
            | AuditEvent::ChangeRetried { change_id, .. }
            | AuditEvent::ApplyFailed { change_id, .. } => change_id == id,
            _ => false,
        })
        .cloned()
        .collect()
}

/// The `type` tags of events, for compact assertions on their order.
pub fn kinds(events: &[AuditEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e {
            AuditEvent::ChangeSubmitted { .. } => "submitted",
            AuditEvent::VerdictRecorded { .. } => "verdict",
            AuditEvent::DecisionRecorded { .. } => "decision",
            AuditEvent::DecisionRefused { .. } => "refused",
            AuditEvent::ChangeApplied { .. } => "applied",
            AuditEvent::ApplyFailed { .. } => "apply_failed",
            AuditEvent::ChangeRetried { .. } => "retried",
            _ => "other",
        })
        .collect()
}

/// The names of the standard chain, in order.
pub const STANDARD_CHAIN: &[&str] = &[
    "mount-allowlist",
    "package-name",
    "tool-catalog",
    "egress-host",
    "wiring-target",
    "create-agent",
    "mcp-server",
    "registry-dry-run",
    "always-require-human",
];

pub fn stat(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(std::sync::atomic::Ordering::Relaxed)
}
