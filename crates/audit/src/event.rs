//! The typed events this version of the daemon writes.

use ironclaw_contract::enums::{ChangeKind, Outcome, Verdict};
use ironclaw_contract::ids::{AgentGroupId, ChangeId, SessionId, UserId};
use serde::{Deserialize, Serialize};

/// One auditable fact. Serialized as an object tagged by `"type"` (the variant name in
/// snake_case), e.g. `{"type":"change_applied","change_id":"c1","request_hash":"…"}`.
///
/// Events name actors and objects and carry hashes of content, never content or
/// secrets (see the crate docs). Unknown fields in a known event type are ignored when
/// typing a record, so a later version may add fields; an unknown `type` is a typed
/// [`crate::EventError`], not a broken chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A change request reached the gateway.
    ChangeSubmitted {
        change_id: ChangeId,
        kind: ChangeKind,
        agent_group_id: AgentGroupId,
        requested_by: UserId,
        /// Hash of the request content (the content itself stays in the change store).
        request_hash: String,
    },
    /// A verifier gave its opinion of a change.
    VerdictRecorded {
        change_id: ChangeId,
        verdict: Verdict,
        reason: String,
    },
    /// A human decided a change. `request_hash` pins what exactly was approved.
    DecisionRecorded {
        change_id: ChangeId,
        outcome: Outcome,
        decided_by: UserId,
        request_hash: String,
    },
    /// Someone tried to decide a change and was not allowed to (a sandbox principal,
    /// the requester approving their own change, a stale request hash, …).
    DecisionRefused {
        change_id: ChangeId,
        attempted_by: UserId,
        reason: String,
    },
    /// An approved change took effect.
    ChangeApplied {
        change_id: ChangeId,
        request_hash: String,
    },
    /// An operator re-applied a change whose apply had failed.
    ChangeRetried {
        change_id: ChangeId,
        retried_by: UserId,
        request_hash: String,
    },
    /// Applying an approved change failed.
    ApplyFailed { change_id: ChangeId, error: String },
    /// An API token was minted. `name` identifies it; its secret never appears here.
    TokenCreated {
        name: String,
        principal: UserId,
        created_by: UserId,
    },
    /// An API token was revoked.
    TokenRevoked { name: String, revoked_by: UserId },
    /// An operator changed the registry's identity or routing data (users, messaging
    /// groups, operator roles). Capability changes are change requests, not this.
    RegistryChanged { by: UserId, what: String },
    /// The daemon started (and opened this log).
    DaemonStarted { version: String },
    /// [`crate::AuditLog::open`] dropped a partial last line left by a crash.
    TornTailRecovered { dropped_bytes: u64 },
    /// A sandbox was started.
    SessionLaunched {
        session_id: SessionId,
        agent_group_id: AgentGroupId,
        /// `runsc`, or `unsandboxed` for a `--dev` plain process.
        runtime: String,
        /// SHA-256 of the OCI spec handed to the runtime (empty when unsandboxed).
        spec_hash: String,
        /// The image manifest digest of the rootfs (empty when unsandboxed).
        image_digest: String,
        runtime_version: String,
        /// `host -> sandbox (ro|rw)`, in mount order.
        mounts: Vec<String>,
    },
    /// A sandbox was stopped.
    SessionStopped {
        session_id: SessionId,
        reason: String,
    },
    /// One call from a session through the model proxy (allowed or refused). Sizes,
    /// status and token counts only: never bodies, prompts or keys. `status` is the HTTP
    /// status the proxy answered with (502 when a streamed response was cut short).
    ModelCall {
        session_id: SessionId,
        agent_group_id: AgentGroupId,
        provider: String,
        path: String,
        status: u16,
        request_bytes: u64,
        response_bytes: u64,
        input_tokens: u64,
        output_tokens: u64,
        duration_ms: u64,
    },
    /// The model proxy parked a session (token budget reached); every further model
    /// call from it is refused until an operator resumes it.
    SessionParked {
        session_id: SessionId,
        reason: String,
    },
}
