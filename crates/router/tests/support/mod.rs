//! Fixtures: a real in-memory registry, a real gateway (in-memory change store, audit
//! file in a temp dir, the daemon's standard verifier chain) and an in-memory sink.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use ironclaw_audit::AuditLog;
use ironclaw_contract::enums::{
    EngageMode, IgnoredMessagePolicy, Provenance, SenderScope, SessionMode, UnknownSenderPolicy,
};
use ironclaw_contract::ids::{AgentGroupId, MessagingGroupId, SessionId, UserId};
use ironclaw_contract::rows::NewMessageIn;
use ironclaw_gateway::{Chain, ChangeStore, Gateway};
use ironclaw_registry::{AgentGroup, Registry, Role, RoleGrant, Wiring};
use ironclaw_router::{Appended, InboundEvent, InboundSink, Router, RouterConfig, SinkError};
use tempfile::TempDir;

pub fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

pub fn gid(s: &str) -> AgentGroupId {
    AgentGroupId::new(s).unwrap()
}

/// Records every append; can be told to fail.
#[derive(Default)]
pub struct MemorySink {
    pub rows: Mutex<Vec<(SessionId, NewMessageIn)>>,
    /// Fail the append with this 0-based index (counting attempts).
    pub fail_at: Mutex<Option<usize>>,
    attempts: Mutex<usize>,
}

impl InboundSink for MemorySink {
    fn append(&self, session: &SessionId, msg: &NewMessageIn) -> Result<Appended, SinkError> {
        let mut attempts = self.attempts.lock().unwrap();
        let n = *attempts;
        *attempts += 1;
        if *self.fail_at.lock().unwrap() == Some(n) {
            return Err(SinkError::new(
                "open inbound writer",
                std::io::Error::other("disk on fire"),
            ));
        }
        let mut rows = self.rows.lock().unwrap();
        // Like a queue file: a row id is unique within its session.
        if rows.iter().any(|(s, m)| s == session && m.id == msg.id) {
            return Ok(Appended::AlreadyQueued);
        }
        rows.push((session.clone(), msg.clone()));
        Ok(Appended::New)
    }
}

impl MemorySink {
    pub fn rows(&self) -> Vec<(SessionId, NewMessageIn)> {
        self.rows.lock().unwrap().clone()
    }
}

pub struct Env {
    pub dir: TempDir,
    pub registry: Arc<Registry>,
    pub gateway: Arc<Gateway>,
    pub sink: Arc<MemorySink>,
    pub router: Router,
}

impl Env {
    /// Groups `g1`, `g2`, `g3`; `slack:alice` is the owner.
    pub fn new() -> Self {
        Self::with_config(RouterConfig::default())
    }

    pub fn with_config(config: RouterConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = Arc::new(Registry::in_memory());
        for g in ["g1", "g2", "g3"] {
            registry
                .create_agent_group(AgentGroup::new(gid(g), format!("group {g}"), "mock", ""))
                .unwrap();
        }
        registry
            .grant_role(&RoleGrant {
                user_id: uid("slack:alice"),
                role: Role::Owner,
                scope: None,
            })
            .unwrap();
        let audit = Arc::new(AuditLog::open(&dir.path().join("audit.jsonl")).unwrap());
        let gateway = Arc::new(Gateway::new(
            ChangeStore::in_memory().unwrap(),
            registry.clone(),
            audit,
            Chain::standard(dir.path().join("mounts")),
        ));
        let sink = Arc::new(MemorySink::default());
        let router = Router::new(gateway.clone(), sink.clone(), config);
        Self {
            dir,
            registry,
            gateway,
            sink,
            router,
        }
    }

    /// The messaging group of (`slack`, `platform`), created with `policy`.
    pub fn mg(&self, platform: &str, policy: UnknownSenderPolicy) -> MessagingGroupId {
        self.registry
            .get_or_create_messaging_group("slack", platform, None, true, policy)
            .unwrap()
            .id
    }

    /// Another router over the same registry, gateway and sink: the daemon after a
    /// restart (its in-memory state is new, the durable state is the same).
    pub fn new_router(&self, config: RouterConfig) -> Router {
        Router::new(self.gateway.clone(), self.sink.clone(), config)
    }

    pub fn wire(&self, w: Wiring) -> Wiring {
        self.registry.put_wiring(w).unwrap()
    }
}

/// A `pattern .` wiring: shared sessions, drop, all senders, priority 0.
pub fn wiring(id: &str, mg: &MessagingGroupId, group: &str) -> Wiring {
    Wiring {
        id: id.to_owned(),
        messaging_group_id: mg.clone(),
        agent_group_id: gid(group),
        engage_mode: EngageMode::Pattern,
        engage_pattern: Some(".".to_owned()),
        sender_scope: SenderScope::All,
        ignored_message_policy: IgnoredMessagePolicy::Drop,
        session_mode: SessionMode::Shared,
        priority: 0,
    }
}

pub fn mention(mut w: Wiring, mode: EngageMode) -> Wiring {
    w.engage_mode = mode;
    w.engage_pattern = None;
    w
}

/// A verified Slack message on `C1` from `handle`.
pub fn event(handle: &str, text: &str) -> InboundEvent {
    InboundEvent {
        channel_type: "slack".to_owned(),
        platform_id: "C1".to_owned(),
        instance: None,
        thread_id: None,
        sender_handle: handle.to_owned(),
        text: text.to_owned(),
        mentioned: false,
        provenance: Provenance::Verified,
        platform_message_id: None,
    }
}
