//! The `request_approval` unknown-sender policy: an unknown sender's engaging message
//! is not delivered; instead a human is asked, through the gateway, to make the
//! sender a member of the agent group.
//!
//! For: submitting that one kind of change request, once per sender and agent group
//! while it waits. Not for: deciding it (a human does, through the gateway like any
//! other change) or delivering the held message later — it is not kept; once a
//! member, the sender writes again.
//!
//! The request is an ordinary `permissions` change with payload
//! `{"add_member": "<channel>:<handle>"}`, requested by the sender's own principal (so
//! the gateway's rule that a requester never decides their own change holds, and the
//! audit chain names who asked). Two guards keep an unverified channel from flooding
//! the operators' queue: a pending request for the same sender and group is reused,
//! and at most a configured number of such self-requests may wait per agent group.

use std::sync::{Arc, Mutex, PoisonError};

use ironclaw_contract::enums::{ChangeKind, ChangeStatus, Provenance, Verdict};
use ironclaw_contract::ids::{AgentGroupId, MessagingGroupId, UserId};
use ironclaw_gateway::{ChangeRecord, Gateway, Submission};
use serde_json::{json, Value};

use ironclaw_ingest::{Reason, RoutingOutcome};

/// What the human is told about where the request came from.
pub(crate) struct Origin<'a> {
    pub channel_type: &'a str,
    pub platform_id: &'a str,
    pub messaging_group: &'a MessagingGroupId,
    pub provenance: Provenance,
}

pub(crate) struct Approvals {
    gateway: Arc<Gateway>,
    max_pending_per_group: usize,
    /// Serializes check-then-submit, so two messages from one new sender arriving
    /// together make one request, not two.
    submitting: Mutex<()>,
}

impl Approvals {
    pub(crate) fn new(gateway: Arc<Gateway>, max_pending_per_group: usize) -> Self {
        Self {
            gateway,
            max_pending_per_group,
            submitting: Mutex::new(()),
        }
    }

    /// Asks for `sender` to become a member of `group`, or reports the request that
    /// already waits. `outcome` is the wiring's outcome so far; the message is never
    /// delivered on this path.
    pub(crate) fn request_membership(
        &self,
        outcome: RoutingOutcome,
        sender: &UserId,
        group: &AgentGroupId,
        origin: &Origin<'_>,
    ) -> RoutingOutcome {
        let payload = json!({ "add_member": sender.as_str() });
        // Nothing is held across a panic but the guard's `()`.
        let _one_at_a_time = self
            .submitting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let pending = match self.gateway.pending() {
            Ok(p) => p,
            Err(e) => {
                return failed(outcome, format!("reading pending changes: {e}"));
            }
        };
        if let Some(existing) = pending.iter().find(|r| adds_member(r, group, &payload)) {
            let mut o =
                outcome.with_detail(format!("{sender} is waiting for approval to use {group}"));
            o.reason = Reason::ApprovalPending;
            o.change_id = Some(existing.request.id.clone());
            return o;
        }
        let waiting = pending
            .iter()
            .filter(|r| {
                let own = json!({ "add_member": r.request.requested_by.as_str() });
                adds_member(r, group, &own)
            })
            .count();
        if waiting >= self.max_pending_per_group {
            let mut o = outcome.with_detail(format!(
                "{waiting} unknown senders already wait for approval to use {group}; \
                 no request made for {sender}"
            ));
            o.reason = Reason::ApprovalLimit;
            return o;
        }
        let submission = Submission {
            kind: ChangeKind::Permissions,
            agent_group_id: group.clone(),
            payload,
            reason: Some(explain(sender, group, origin)),
        };
        match self.gateway.submit(submission, sender) {
            Ok(record) if record.status == ChangeStatus::Pending => {
                let mut o = outcome.with_detail(format!(
                    "{sender} has no access to {group}; a human was asked to add them"
                ));
                o.reason = Reason::ApprovalRequested;
                o.change_id = Some(record.request.id);
                o
            }
            Ok(record) => {
                let why = rejection(&record);
                let mut o = failed(outcome, why);
                o.change_id = Some(record.request.id);
                o
            }
            Err(e) => failed(outcome, e.to_string()),
        }
    }
}

fn adds_member(record: &ChangeRecord, group: &AgentGroupId, payload: &Value) -> bool {
    record.request.kind == ChangeKind::Permissions
        && &record.request.agent_group_id == group
        && &record.request.after == payload
}

fn failed(outcome: RoutingOutcome, detail: String) -> RoutingOutcome {
    let mut o = outcome.with_detail(detail);
    o.reason = Reason::ApprovalFailed;
    o
}

/// Why a submitted request did not end up pending: a verifier rejected it.
fn rejection(record: &ChangeRecord) -> String {
    record
        .verdicts
        .iter()
        .find(|v| v.verdict == Verdict::Reject)
        .map_or_else(
            || format!("the change is {}", record.status),
            |v| format!("rejected by verifier {}: {}", v.verifier, v.reason),
        )
}

/// The change's reason, for the human deciding it.
fn explain(sender: &UserId, group: &AgentGroupId, origin: &Origin<'_>) -> String {
    let trust = match origin.provenance {
        Provenance::Verified => "the channel verified the message's origin",
        Provenance::Unverified | Provenance::Host => {
            "the channel could NOT verify the message's origin, so the sender handle may be forged"
        }
    };
    format!(
        "{sender} wrote to {}/{} (messaging group {}, unknown-sender policy request_approval) \
         without access to agent group {group}; {trust}. Approving makes {sender} a member of \
         {group}; the message itself was not delivered.",
        origin.channel_type, origin.platform_id, origin.messaging_group,
    )
}
