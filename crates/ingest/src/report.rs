//! What routing did with a message: one outcome per wiring considered, and the
//! sessions the caller must wake.
//!
//! For: reporting (API responses, logs, metrics) in a form a program can branch on —
//! every outcome carries a closed [`Reason`] code, the human detail beside it. Not
//! for: waking sessions; the report only names them.

use std::fmt;

use ironclaw_contract::ids::{AgentGroupId, ChangeId, MessageId, MessagingGroupId, SessionId};
use serde::Serialize;

ironclaw_contract::wire_enum!(
    /// Why a wiring's outcome is what it is. Machine-readable and closed: a new reason
    /// is a new variant, never free text.
    Reason, "routing reason", {
        /// The message engaged the agent: written with `trigger = true`; its session
        /// is in [`RouteReport::wake`].
        Engaged => "engaged",
        /// Not engaging, wiring policy `accumulate`: written with `trigger = false` as
        /// context for the next engaging message; no wake.
        Accumulated => "accumulated",
        /// Not engaging, wiring policy `drop`: nothing written, no session.
        Dropped => "dropped",
        /// The engage decision failed (a bad pattern); this wiring only, not fatal.
        EngageEvalError => "engage-eval-error",
        /// The sender has no access to the agent group and the messaging group's
        /// unknown-sender policy does not let it engage.
        AccessDenied => "access-denied",
        /// Unknown sender under `request_approval`: not delivered; a change request to
        /// make the sender a member was submitted (see `change_id`).
        ApprovalRequested => "approval-requested",
        /// Unknown sender under `request_approval`: not delivered; a request for this
        /// sender and agent group is already waiting for a human (see `change_id`).
        ApprovalPending => "approval-pending",
        /// Unknown sender under `request_approval`: not delivered, and no request
        /// submitted because the agent group already has as many pending sender
        /// requests as the router allows (a flood of new handles cannot flood the
        /// operators' queue).
        ApprovalLimit => "approval-limit",
        /// Unknown sender under `request_approval`: not delivered, and the gateway
        /// refused or failed to record the request (see `detail`).
        ApprovalFailed => "approval-failed",
        /// The wiring listens to known senders only and this one is not known.
        SenderScope => "sender-scope",
        /// The message is larger than a queue row may be; refused, never truncated.
        ContentTooLarge => "content-too-large",
        /// The platform delivered this message again and the session's queue already
        /// holds it (its row id derives from the platform's message id): nothing
        /// written, no wake. Durable, unlike the in-memory retry window: it holds
        /// across daemon restarts for as long as the session's queue keeps the row.
        AlreadyQueued => "already-queued",
    }
);

/// What happened on one wiring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutingOutcome {
    pub wiring_id: String,
    pub agent_group_id: AgentGroupId,
    /// Set whenever a session was resolved (engaged or accumulated), never otherwise.
    pub session_id: Option<SessionId>,
    /// The id of the inbound row written, when one was.
    pub message_id: Option<MessageId>,
    /// True exactly when a row with `trigger = true` was written.
    pub engaged: bool,
    pub reason: Reason,
    /// Specifics for a human: the pattern error, why access was refused, …
    pub detail: Option<String>,
    /// The change request an `approval-*` outcome refers to.
    pub change_id: Option<ChangeId>,
}

impl RoutingOutcome {
    /// The outcome `reason` on wiring `wiring_id` of `agent_group_id`: no session, no
    /// row, not engaged (the router sets those as it gets them).
    pub fn new(wiring_id: &str, agent_group_id: &AgentGroupId, reason: Reason) -> Self {
        Self {
            wiring_id: wiring_id.to_owned(),
            agent_group_id: agent_group_id.clone(),
            session_id: None,
            message_id: None,
            engaged: false,
            reason,
            detail: None,
            change_id: None,
        }
    }

    /// Adds the human detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// The one-line label: the reference system's wording where it had the case
/// (`engaged (trigger=1)`, `not-engaged: dropped`, `access-denied: no-access`, …).
impl fmt::Display for RoutingOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = self.detail.as_deref().unwrap_or("");
        let change = self.change_id.as_ref().map_or("", ChangeId::as_str);
        match self.reason {
            Reason::Engaged => f.write_str("engaged (trigger=1)"),
            Reason::Accumulated => f.write_str("accumulated (trigger=0)"),
            Reason::Dropped => f.write_str("not-engaged: dropped"),
            Reason::EngageEvalError => write!(f, "engage-eval-error: {detail}"),
            Reason::AccessDenied => write!(f, "access-denied: {detail}"),
            Reason::ApprovalRequested => write!(f, "access-denied: approval requested ({change})"),
            Reason::ApprovalPending => write!(f, "access-denied: approval pending ({change})"),
            Reason::ApprovalLimit => write!(f, "access-denied: {detail}"),
            Reason::ApprovalFailed => write!(f, "access-denied: approval request failed: {detail}"),
            Reason::SenderScope => {
                f.write_str("sender-scope: unknown sender for known-only wiring")
            }
            Reason::ContentTooLarge => write!(f, "content-too-large: {detail}"),
            Reason::AlreadyQueued => write!(f, "already-queued: {detail}"),
        }
    }
}

/// Everything routing one event did ([`crate::RouteInbound::route`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteReport {
    pub messaging_group_id: MessagingGroupId,
    /// One per wiring considered, in routing order (priority descending, then wiring
    /// id). Empty for a duplicate.
    pub outcomes: Vec<RoutingOutcome>,
    /// Sessions that got an engaging row, each once, in routing order. The
    /// [`crate::Ingest`] service wakes (launches and rings) them; the router never does.
    pub wake: Vec<SessionId>,
    /// The event repeats a platform message id routed moments ago (a platform retry):
    /// nothing was evaluated or written.
    pub duplicate: bool,
}

impl RouteReport {
    /// An empty report for an event of `messaging_group_id`.
    pub fn new(messaging_group_id: MessagingGroupId) -> Self {
        Self {
            messaging_group_id,
            outcomes: Vec::new(),
            wake: Vec::new(),
            duplicate: false,
        }
    }

    /// Whether any wiring engaged.
    pub fn engaged(&self) -> bool {
        self.outcomes.iter().any(|o| o.engaged)
    }
}
