//! The web console chat's policy: which operator may talk to which agent group, and
//! what a conversation needs to reach it.
//!
//! For: `POST /v1/chat/send`, before the message is routed. [`open_conversation`] maps
//! the operator to the web identity `web:<name>` — made a member of the agent group
//! only if the operator may use the group, so the router's access rules then apply
//! unchanged — makes sure the conversation is a messaging group (closed to strangers,
//! like any new chat) wired to the agent group, and audits the membership it grants.
//!
//! Not for: authenticating the operator (the API's bearer token does), recording the
//! message or routing it (the web chat store and the ingest service do).

use ironclaw_audit::{AuditError, AuditEvent, AuditLog};
use ironclaw_contract::enums::{
    EngageMode, IgnoredMessagePolicy, SenderScope, SessionMode, UnknownSenderPolicy,
};
use ironclaw_contract::ids::{AgentGroupId, UserId};
use ironclaw_registry::{MessagingGroup, Registry, RegistryError, User, Wiring};

/// The channel type of the web chat (the channel adapters' `WEB`).
pub const WEB: &str = "web";

/// The operator talking, as the API authenticated them.
#[derive(Debug, Clone, Copy)]
pub struct WebChatOperator<'a> {
    /// Whose access to the agent group decides, and who the audit record names.
    pub principal: &'a UserId,
    /// The operator's name: their web identity is `web:<name>`, and the router sees
    /// their messages from the sender handle `<name>`.
    pub name: &'a str,
}

/// Why a conversation could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WebChatError {
    /// The agent group does not exist.
    #[error("no agent group {0}")]
    UnknownGroup(AgentGroupId),
    /// The operator may not use the agent group.
    #[error("{operator} may not use agent group {group}")]
    Forbidden {
        operator: UserId,
        group: AgentGroupId,
    },
    /// The operator's name does not make a valid principal id.
    #[error("web identity: {0}")]
    Identity(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The membership was granted but could not be audited.
    #[error("audit log: {0}")]
    Audit(#[source] AuditError),
}

/// Makes `conversation` (a web chat conversation id, already checked by the caller)
/// ready to carry `operator`'s messages to `group`: the web identity is a member of
/// the group (granted, and audited, only if the operator may use the group), and the
/// conversation is a messaging group with a wiring to the group (mention-engaged, as
/// every web message mentions the agent; one shared session). Idempotent. Blocks on
/// the registry and the audit log.
pub fn open_conversation(
    registry: &Registry,
    audit: &AuditLog,
    operator: WebChatOperator<'_>,
    group: &AgentGroupId,
    conversation: &str,
) -> Result<MessagingGroup, WebChatError> {
    if registry.agent_group(group)?.is_none() {
        return Err(WebChatError::UnknownGroup(group.clone()));
    }
    // The operator's web identity, a member of the group only if the operator may use
    // the group: the router's access rules then apply unchanged.
    let web_user = UserId::new(format!("{WEB}:{}", operator.name))
        .map_err(|e| WebChatError::Identity(e.to_string()))?;
    if !registry.access(&web_user, group)?.allowed {
        if !registry.access(operator.principal, group)?.allowed {
            return Err(WebChatError::Forbidden {
                operator: operator.principal.clone(),
                group: group.clone(),
            });
        }
        registry.put_user(User {
            id: web_user.clone(),
            kind: "human".into(),
            display_name: operator.name.to_owned(),
        })?;
        registry.add_member(&web_user, group)?;
        audit
            .append(AuditEvent::RegistryChanged {
                by: operator.principal.clone(),
                what: format!("member {web_user} of {group} (web chat)"),
            })
            .map_err(WebChatError::Audit)?;
    }
    // A read first: every message but a conversation's first finds its group, and the
    // create path takes the registry's write lock, which a busy console would
    // otherwise contend on for every message.
    let mg = match registry.find_messaging_group(WEB, conversation, None)? {
        Some(mg) => mg,
        None => registry.write(|tx| {
            tx.get_or_create_messaging_group(
                WEB,
                conversation,
                None,
                false,
                UnknownSenderPolicy::Strict,
            )
        })?,
    };
    if !registry
        .wirings_for(&mg.id)?
        .iter()
        .any(|w| &w.agent_group_id == group)
    {
        registry.put_wiring(Wiring {
            id: String::new(),
            messaging_group_id: mg.id.clone(),
            agent_group_id: group.clone(),
            engage_mode: EngageMode::Mention,
            engage_pattern: None,
            sender_scope: SenderScope::All,
            ignored_message_policy: IgnoredMessagePolicy::Drop,
            session_mode: SessionMode::Shared,
            priority: 1,
        })?;
    }
    Ok(mg)
}
