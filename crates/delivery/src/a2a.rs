//! Agent-to-agent messages: an outbound chat row addressed to `channel_type = "agent"`,
//! `platform_id = <target agent group>`.
//!
//! Deny by default: the sender's agent group needs the destination (`agent`, target)
//! granted through the gateway. A message carries its hop count (the sender's own
//! depth + 1, from the inbound row that started the chain), and chains deeper than
//! [`A2aLimits::hop_limit`] are refused, so two agents cannot ping-pong forever. Each
//! sending group has a per-minute quota. Delivered rows go to every session of the
//! target group with `source_session_id` set, and the targets are rung.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ironclaw_contract::enums::{MessageKind, Provenance};
use ironclaw_contract::ids::{AgentGroupId, MessageId, SessionId};
use ironclaw_contract::queue::{InboundWriter, QueueError};
use ironclaw_contract::rows::{MessageOut, NewMessageIn, Route};
use ironclaw_contract::time::Timestamp;
use ironclaw_registry::Session;

use crate::retry::Failure;
use crate::Delivery;

/// The channel type that addresses another agent group.
pub const AGENT_CHANNEL: &str = "agent";

#[derive(Debug, Clone, Copy)]
pub struct A2aLimits {
    pub hop_limit: u32,
    pub sends_per_minute: u32,
}

impl Default for A2aLimits {
    fn default() -> Self {
        Self {
            hop_limit: 5,
            sends_per_minute: 120,
        }
    }
}

pub(crate) struct A2a {
    limits: A2aLimits,
    /// Chain depth of the latest message a session received from another agent.
    hops: Mutex<HashMap<SessionId, u32>>,
    windows: Mutex<HashMap<AgentGroupId, (Instant, u32)>>,
}

impl A2a {
    pub(crate) fn new(limits: A2aLimits) -> Self {
        Self {
            limits,
            hops: Mutex::default(),
            windows: Mutex::default(),
        }
    }

    pub(crate) fn send(
        &self,
        d: &Delivery,
        from: &Session,
        msg: &MessageOut,
    ) -> Result<(), Failure> {
        let target: AgentGroupId = msg
            .message
            .route
            .platform_id
            .as_deref()
            .unwrap_or("")
            .parse()
            .map_err(|e| {
                Failure::permanent(format!("agent message without a valid target group: {e}"))
            })?;
        let granted = d
            .registry()
            .is_allowed_destination(&from.agent_group_id, AGENT_CHANNEL, target.as_str())
            .map_err(|e| Failure::retryable(format!("registry: {e}")))?;
        if !granted {
            return Err(Failure::permanent(format!(
                "agent group {} has no grant to message agent group {target}",
                from.agent_group_id
            )));
        }
        let depth = self
            .hops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&from.id)
            .copied()
            .unwrap_or(0);
        if depth >= self.limits.hop_limit {
            return Err(Failure::permanent(format!(
                "agent-to-agent chain is {depth} hops deep; the limit is {}",
                self.limits.hop_limit
            )));
        }
        {
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let w = windows
                .entry(from.agent_group_id.clone())
                .or_insert((now, 0));
            if now.duration_since(w.0) >= Duration::from_secs(60) {
                *w = (now, 0);
            }
            if w.1 >= self.limits.sends_per_minute {
                let mut f = Failure::retryable(format!(
                    "agent group {} is over its quota of {} agent messages per minute",
                    from.agent_group_id, self.limits.sends_per_minute
                ));
                f.retry_after =
                    Some(Duration::from_secs(60).saturating_sub(now.duration_since(w.0)));
                return Err(f);
            }
            w.1 += 1;
        }
        let targets: Vec<SessionId> = d
            .registry()
            .sessions()
            .map_err(|e| Failure::retryable(format!("registry: {e}")))?
            .into_iter()
            .filter(|s| s.agent_group_id == target)
            .map(|s| s.id)
            .collect();
        if targets.is_empty() {
            return Err(Failure::permanent(format!(
                "agent group {target} has no session"
            )));
        }
        for sid in &targets {
            let mut w = d
                .manager()
                .inbound_writer(sid)
                .map_err(|e| Failure::retryable(e.to_string()))?;
            let id =
                MessageId::new(format!("a2a-{}", msg.id())).unwrap_or_else(|_| msg.id().clone());
            let row = NewMessageIn {
                id,
                kind: MessageKind::Chat,
                timestamp: Timestamp::now(),
                process_after: None,
                recurrence: None,
                series_id: None,
                trigger: true,
                route: Route::default(),
                content: msg.message.content.clone(),
                source_session_id: Some(from.id.clone()),
                // Another agent wrote it: nothing about it is verified by a platform.
                provenance: Provenance::Unverified,
            };
            match w.write_message(&row) {
                Ok(_) | Err(QueueError::DuplicateId { .. }) => {}
                Err(e) => return Err(Failure::retryable(e.to_string())),
            }
            self.hops
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(sid.clone(), depth + 1);
            d.manager().ring(sid);
        }
        Ok(())
    }
}
