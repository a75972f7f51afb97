//! The gateway: submit, verify, decide, apply.
//!
//! Invariants enforced here (DESIGN §2.4, §7):
//! - every change is held for a human (the chain's floor);
//! - the decider is the authenticated principal; a claimed `--by` must equal it;
//! - the requester never decides their own change; `sandbox:*` principals never decide;
//!   deciders must be owner or admin of the target group (creating an agent group needs
//!   an owner or a global admin) according to the registry;
//! - a decision binds to the content hash of the stored request, and exactly the
//!   stored request is applied, in one registry transaction;
//! - nothing happens without its audit record: a decision whose audit line cannot be
//!   written is not taken (fail closed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use ironclaw_audit::{AuditError, AuditEvent, AuditLog};
use ironclaw_contract::enums::{ChangeKind, ChangeStatus, Outcome, Verdict};
use ironclaw_contract::gateway::{ChangeRequest, Decision};
use ironclaw_contract::ids::{AgentGroupId, ChangeId, UserId};
use ironclaw_contract::time::Timestamp;
use ironclaw_registry::{Registry, RegistryError};
use serde_json::Value;

use crate::apply;
use crate::payload::{self, PayloadError};
use crate::store::{request_hash, ChangeRecord, ChangeStore, StoreError, Transition};
use crate::verify::{Chain, VerifyContext};

/// Why a gateway operation was refused or failed. The API maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// 400: the request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// 400: the target agent group does not exist.
    #[error("unknown agent group {0:?}; create it first (ironctl registry agent-groups)")]
    UnknownGroup(AgentGroupId),
    /// 404.
    #[error("no change with id {0}")]
    NotFound(ChangeId),
    /// 409: the change is not in a state that allows this.
    #[error("change {id} is {status}, not {expected}")]
    WrongState {
        id: ChangeId,
        status: ChangeStatus,
        expected: &'static str,
    },
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 500: the audit record could not be written, so nothing was done.
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
}

/// What a client submits; the server fills in id, requester and time.
#[derive(Debug, Clone)]
pub struct Submission {
    pub kind: ChangeKind,
    pub agent_group_id: AgentGroupId,
    pub payload: Value,
    pub reason: Option<String>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct GatewayStats {
    pub submitted: AtomicU64,
    pub verifier_rejected: AtomicU64,
    pub approved: AtomicU64,
    pub rejected: AtomicU64,
    pub refused: AtomicU64,
    pub applied: AtomicU64,
    pub apply_failed: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The principal recorded when a verifier, not a human, rejects a change.
fn verifier_principal() -> UserId {
    // A constant literal inside the UserId alphabet.
    UserId::new("gateway:verifier").unwrap_or_else(|_| unreachable!("constant id is valid"))
}

pub struct Gateway {
    store: ChangeStore,
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    chain: Chain,
    /// Decisions and applies are serialized: two approvals of changes to one group can
    /// never interleave their read-modify-write of it, and a decision is checked and
    /// recorded without a race.
    decide_lock: Mutex<()>,
    stats: GatewayStats,
    /// The pending list, read far more often than it changes (operators poll it).
    /// Every store write goes through this type and bumps the generation, so a cached
    /// list is never served after a write made it stale.
    pending_cache: RwLock<PendingCache>,
}

#[derive(Default)]
struct PendingCache {
    generation: u64,
    list: Option<Arc<Vec<ChangeRecord>>>,
}

impl Gateway {
    pub fn new(
        store: ChangeStore,
        registry: Arc<Registry>,
        audit: Arc<AuditLog>,
        chain: Chain,
    ) -> Self {
        Self {
            store,
            registry,
            audit,
            chain,
            decide_lock: Mutex::new(()),
            stats: GatewayStats::default(),
            pending_cache: RwLock::new(PendingCache::default()),
        }
    }

    pub fn stats(&self) -> &GatewayStats {
        &self.stats
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.decide_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Submits a change on behalf of the authenticated `requested_by`.
    pub fn submit(
        &self,
        sub: Submission,
        requested_by: &UserId,
    ) -> Result<ChangeRecord, GatewayError> {
        self.submit_as(sub, requested_by, mint_change_id()?)
    }

    /// [`submit`](Self::submit), at most once per `(requested_by, key)`: the change id
    /// is derived from them, so submitting again — a caller that crashed after the
    /// submit and before recording that it happened, and retries — returns the change
    /// already stored (whatever its status now) and records nothing new. Delivery keys
    /// an agent's request by the outbound row that carried it.
    pub fn submit_once(
        &self,
        sub: Submission,
        requested_by: &UserId,
        key: &str,
    ) -> Result<ChangeRecord, GatewayError> {
        let id = derived_change_id(requested_by, key)?;
        if let Some(existing) = self.store.get(&id)? {
            return Ok(existing);
        }
        match self.submit_as(sub, requested_by, id.clone()) {
            // Submitted meanwhile by another caller with the same key.
            Err(GatewayError::Store(StoreError::Duplicate(_))) => self.get(&id),
            other => other,
        }
    }

    fn submit_as(
        &self,
        sub: Submission,
        requested_by: &UserId,
        id: ChangeId,
    ) -> Result<ChangeRecord, GatewayError> {
        let parsed = payload::parse(sub.kind, &sub.payload).map_err(|e| match e {
            PayloadError::Invalid { .. } | PayloadError::Unsupported(_) => {
                GatewayError::Invalid(e.to_string())
            }
        })?;
        if let payload::ChangePayload::CreateAgent(c) = &parsed {
            let id = c.group_id().map_err(GatewayError::Invalid)?;
            if id != sub.agent_group_id {
                return Err(GatewayError::Invalid(format!(
                    "create_agent creates {id}, but the change names agent group {}",
                    sub.agent_group_id
                )));
            }
        } else if self.registry.agent_group(&sub.agent_group_id)?.is_none() {
            return Err(GatewayError::UnknownGroup(sub.agent_group_id));
        }
        if let Some(r) = &sub.reason {
            if r.len() > 4096 {
                return Err(GatewayError::Invalid(
                    "reason is longer than 4096 bytes".into(),
                ));
            }
        }
        let request = ChangeRequest {
            id,
            kind: sub.kind,
            before: apply::before_state(&self.registry, &sub.agent_group_id, &parsed)?,
            agent_group_id: sub.agent_group_id,
            requested_by: requested_by.clone(),
            after: sub.payload,
            reason: sub.reason,
            created_at: Timestamp::now(),
        };
        let hash = request_hash(&request);
        let mut record = ChangeRecord {
            request,
            request_hash: hash.clone(),
            status: ChangeStatus::Pending,
            verdicts: Vec::new(),
            decision: None,
            error: None,
            updated_at: Timestamp::now(),
        };
        // Held until the verdict is stored: the change is visible from the insert on,
        // and a human must not be able to approve (and apply) it while the verifiers
        // that may reject it are still running.
        let _serial = self.lock();
        self.store.insert(&record)?;
        self.invalidate();
        let submitted = AuditEvent::ChangeSubmitted {
            change_id: record.request.id.clone(),
            kind: record.request.kind,
            agent_group_id: record.request.agent_group_id.clone(),
            requested_by: requested_by.clone(),
            request_hash: hash.clone(),
        };
        if let Err(e) = self.audit.append(submitted) {
            // Not recorded means not submitted.
            self.store.remove(&record.request.id)?;
            self.invalidate();
            return Err(e.into());
        }
        bump(&self.stats.submitted);

        let outcome = self.chain.run(&VerifyContext {
            request: &record.request,
            payload: &parsed,
            registry: &self.registry,
        });
        self.audit.append(AuditEvent::VerdictRecorded {
            change_id: record.request.id.clone(),
            verdict: outcome.verdict,
            reason: outcome.reason.clone(),
        })?;
        record.verdicts = outcome.verdicts.clone();
        let id = record.request.id.clone();
        if outcome.verdict == Verdict::Reject {
            let decision = Decision {
                outcome: Outcome::Reject,
                decided_by: verifier_principal(),
                decided_at: Timestamp::now(),
                request_hash: hash.clone(),
            };
            self.audit.append(AuditEvent::DecisionRecorded {
                change_id: id.clone(),
                outcome: Outcome::Reject,
                decided_by: decision.decided_by.clone(),
                request_hash: hash,
            })?;
            let t = Transition {
                verdicts: Some(outcome.verdicts),
                decision: Some(decision),
                ..Transition::to(ChangeStatus::Rejected)
            };
            self.transition(&id, &[ChangeStatus::Pending], &t)?;
            bump(&self.stats.verifier_rejected);
        } else {
            // Pass cannot happen with the floor in the chain; either way the change
            // waits for a human.
            let t = Transition {
                verdicts: Some(outcome.verdicts),
                ..Transition::to(ChangeStatus::Pending)
            };
            self.transition(&id, &[ChangeStatus::Pending], &t)?;
        }
        self.get(&id)
    }

    pub fn get(&self, id: &ChangeId) -> Result<ChangeRecord, GatewayError> {
        self.store
            .get(id)?
            .ok_or_else(|| GatewayError::NotFound(id.clone()))
    }

    /// Changes waiting for a decision, oldest first.
    pub fn pending(&self) -> Result<Arc<Vec<ChangeRecord>>, GatewayError> {
        if let Some(list) = self.pending_cached() {
            return Ok(list);
        }
        let generation = self.cache().generation;
        let list = Arc::new(self.store.with_status(ChangeStatus::Pending)?);
        let mut cache = self
            .pending_cache
            .write()
            .unwrap_or_else(|p| p.into_inner());
        // Only keep what was read if no write happened meanwhile.
        if cache.generation == generation {
            cache.list = Some(list.clone());
        }
        Ok(list)
    }

    /// The pending list if it is cached: no storage access, so callers on an async
    /// runtime can answer without a blocking thread.
    pub fn pending_cached(&self) -> Option<Arc<Vec<ChangeRecord>>> {
        self.cache().list.clone()
    }

    fn cache(&self) -> std::sync::RwLockReadGuard<'_, PendingCache> {
        self.pending_cache.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every status change goes through here, so the pending cache is always dropped.
    fn transition(
        &self,
        id: &ChangeId,
        from: &[ChangeStatus],
        to: &Transition,
    ) -> Result<bool, StoreError> {
        let moved = self.store.transition(id, from, to);
        self.invalidate();
        moved
    }

    /// Called after every write to the change store.
    fn invalidate(&self) {
        let mut cache = self
            .pending_cache
            .write()
            .unwrap_or_else(|p| p.into_inner());
        cache.generation += 1;
        cache.list = None;
    }

    pub fn history(&self, limit: usize) -> Result<Vec<ChangeRecord>, GatewayError> {
        Ok(self.store.history(limit)?)
    }

    pub fn count(&self, status: ChangeStatus) -> Result<u64, GatewayError> {
        Ok(self.store.count(status)?)
    }

    /// Records `decider`'s decision on a pending change, and applies it if approved.
    /// `claimed` is what the caller said it was (`--by`); it must be the decider.
    pub fn decide(
        &self,
        id: &ChangeId,
        outcome: Outcome,
        decider: &UserId,
        claimed: Option<&UserId>,
    ) -> Result<ChangeRecord, GatewayError> {
        let _serial = self.lock();
        let record = self.get(id)?;
        if let Err(reason) = self.authorize(&record, decider, claimed) {
            bump(&self.stats.refused);
            self.audit.append(AuditEvent::DecisionRefused {
                change_id: id.clone(),
                attempted_by: decider.clone(),
                reason: reason.clone(),
            })?;
            return Err(GatewayError::Forbidden(reason));
        }
        if record.status != ChangeStatus::Pending {
            return Err(GatewayError::WrongState {
                id: id.clone(),
                status: record.status,
                expected: "pending",
            });
        }
        let decision = Decision {
            outcome,
            decided_by: decider.clone(),
            decided_at: Timestamp::now(),
            request_hash: record.request_hash.clone(),
        };
        self.audit.append(AuditEvent::DecisionRecorded {
            change_id: id.clone(),
            outcome,
            decided_by: decider.clone(),
            request_hash: record.request_hash.clone(),
        })?;
        let to = match outcome {
            Outcome::Approve => ChangeStatus::Approved,
            Outcome::Reject => ChangeStatus::Rejected,
        };
        let t = Transition {
            decision: Some(decision),
            ..Transition::to(to)
        };
        if !self.transition(id, &[ChangeStatus::Pending], &t)? {
            let now = self.get(id)?;
            return Err(GatewayError::WrongState {
                id: id.clone(),
                status: now.status,
                expected: "pending",
            });
        }
        match outcome {
            Outcome::Reject => {
                bump(&self.stats.rejected);
                self.get(id)
            }
            Outcome::Approve => {
                bump(&self.stats.approved);
                self.apply_approved(id)
            }
        }
    }

    /// Why `decider` may not decide `record`, if they may not.
    fn authorize(
        &self,
        record: &ChangeRecord,
        decider: &UserId,
        claimed: Option<&UserId>,
    ) -> Result<(), String> {
        if let Some(c) = claimed {
            if c != decider {
                return Err(format!("--by {c} is not the authenticated principal {decider}; omit --by or use your own identity"));
            }
        }
        if decider.is_sandbox() {
            return Err("sandbox principals never decide changes".into());
        }
        if decider == &record.request.requested_by {
            return Err(format!(
                "{decider} requested this change and cannot decide it; another owner or admin must"
            ));
        }
        self.may_decide_kind(record, decider)
    }

    /// The role part of deciding: never a sandbox; an owner or admin of the group
    /// (creating an agent group: an owner or a global admin).
    fn may_decide_kind(&self, record: &ChangeRecord, decider: &UserId) -> Result<(), String> {
        if decider.is_sandbox() {
            return Err("sandbox principals never decide or apply changes".into());
        }
        let group = &record.request.agent_group_id;
        let allowed = if record.request.kind == ChangeKind::CreateAgent {
            self.registry
                .is_owner_or_global_admin(decider)
                .map_err(|e| e.to_string())?
        } else {
            self.registry
                .may_decide(decider, group)
                .map_err(|e| e.to_string())?
        };
        if !allowed {
            return Err(if record.request.kind == ChangeKind::CreateAgent {
                format!(
                    "{decider} is not an owner or global admin; creating an agent group needs one"
                )
            } else {
                format!("{decider} is not an owner or an admin of agent group {group}")
            });
        }
        Ok(())
    }

    /// Applies an `apply_failed` change again (an operator's retry).
    pub fn retry(&self, id: &ChangeId, operator: &UserId) -> Result<ChangeRecord, GatewayError> {
        let _serial = self.lock();
        let record = self.get(id)?;
        if record.status != ChangeStatus::ApplyFailed {
            return Err(GatewayError::WrongState {
                id: id.clone(),
                status: record.status,
                expected: "apply_failed",
            });
        }
        if let Err(reason) = self.may_decide_kind(&record, operator) {
            bump(&self.stats.refused);
            self.audit.append(AuditEvent::DecisionRefused {
                change_id: id.clone(),
                attempted_by: operator.clone(),
                reason: format!("retry refused: {reason}"),
            })?;
            return Err(GatewayError::Forbidden(reason));
        }
        // Who re-applied it is part of the record, like who approved it.
        self.audit.append(AuditEvent::ChangeRetried {
            change_id: id.clone(),
            retried_by: operator.clone(),
            request_hash: record.request_hash.clone(),
        })?;
        self.transition(
            id,
            &[ChangeStatus::ApplyFailed],
            &Transition::to(ChangeStatus::Approved),
        )?;
        self.apply_approved(id)
    }

    /// Applies every change left `approved` by a crash between decision and apply.
    /// Called once at startup. Returns how many were applied.
    pub fn recover(&self) -> Result<usize, GatewayError> {
        let _serial = self.lock();
        let approved = self.store.with_status(ChangeStatus::Approved)?;
        let mut n = 0;
        for rec in approved {
            if self.apply_approved(&rec.request.id)?.status == ChangeStatus::Applied {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Applies the stored request of an approved change. Caller holds the lock.
    fn apply_approved(&self, id: &ChangeId) -> Result<ChangeRecord, GatewayError> {
        // Re-read: what is applied is what was stored (and hash-checked on read), never
        // a copy the caller holds.
        let record = self.get(id)?;
        let bound = record.decision.as_ref().map(|d| d.request_hash.as_str());
        if bound != Some(record.request_hash.as_str()) {
            return self.fail(
                id,
                "the approval does not match the stored request's content hash".into(),
            );
        }
        let parsed = match payload::parse(record.request.kind, &record.request.after) {
            Ok(p) => p,
            Err(e) => return self.fail(id, e.to_string()),
        };
        let effect = self
            .registry
            .write(|tx| apply::apply(tx, &record.request, &parsed));
        match effect {
            Ok(()) => {
                self.transition(
                    id,
                    &[ChangeStatus::Approved],
                    &Transition::to(ChangeStatus::Applied),
                )?;
                bump(&self.stats.applied);
                self.audit.append(AuditEvent::ChangeApplied {
                    change_id: id.clone(),
                    request_hash: record.request_hash,
                })?;
                self.get(id)
            }
            Err(e) => self.fail(id, e.to_string()),
        }
    }

    fn fail(&self, id: &ChangeId, error: String) -> Result<ChangeRecord, GatewayError> {
        let t = Transition {
            error: Some(error.clone()),
            ..Transition::to(ChangeStatus::ApplyFailed)
        };
        self.transition(id, &[ChangeStatus::Approved], &t)?;
        bump(&self.stats.apply_failed);
        self.audit.append(AuditEvent::ApplyFailed {
            change_id: id.clone(),
            error,
        })?;
        self.get(id)
    }
}

/// `chg_` + 32 hex digits from the OS RNG: unguessable, so a change cannot be decided
/// before it exists.
/// `chg_` + 128 bits of SHA-256 over the requester and the key: the same shape as a
/// minted id, so nothing downstream can tell them apart.
fn derived_change_id(requested_by: &UserId, key: &str) -> Result<ChangeId, GatewayError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"ironclaw submit_once\0");
    h.update(requested_by.as_str().as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let hex = ironclaw_contract::hex::encode(&h.finalize()[..16]);
    ChangeId::new(format!("chg_{hex}")).map_err(|e| GatewayError::Invalid(e.to_string()))
}

fn mint_change_id() -> Result<ChangeId, GatewayError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|e| GatewayError::Invalid(format!("OS random source failed: {e}")))?;
    let hex = ironclaw_contract::hex::encode(&b);
    ChangeId::new(format!("chg_{hex}")).map_err(|e| GatewayError::Invalid(e.to_string()))
}
