//! Strict per-kind payload schemas.
//!
//! A change's `after` is parsed into exactly one typed payload for its kind before it is
//! stored: unknown fields, missing fields, a second action in one payload, and kinds
//! this build cannot apply are refused at submit (HTTP 400), so nothing reaches a human
//! that the appliers would not apply exactly as shown. (The Go gateway accepted any
//! JSON and fired effects keyed on payload fields, whatever the kind.)

use serde::{Deserialize, Serialize};
use serde_json::Value;

use ironclaw_contract::enums::{
    ChangeKind, EngageMode, IgnoredMessagePolicy, SenderScope, SessionMode,
};
use ironclaw_contract::ids::{AgentGroupId, MessagingGroupId, UserId};

/// Why a payload was refused at submit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("{kind} payload: {reason}")]
    Invalid { kind: ChangeKind, reason: String },
    #[error("change kind {0} cannot be applied by this control plane")]
    Unsupported(ChangeKind),
}

/// `persona`: the agent group's persona text, replaced as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonaChange {
    pub persona: String,
}

/// `enabled_tools`: exactly one of replace / add / remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum ToolsChange {
    /// The optional tools offered become exactly these (the mandatory tools are always
    /// offered; an empty list therefore restricts the agent to them, never widens it).
    Replace(Vec<String>),
    Add(Vec<String>),
    Remove(Vec<String>),
}

/// `packages`: packages to add to the agent group's image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesChange {
    #[serde(default)]
    pub apt: Vec<String>,
    #[serde(default)]
    pub npm: Vec<String>,
}

/// One host directory to mount into the agent group's sandboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountRequest {
    pub source: String,
    pub target: String,
    #[serde(default = "default_true")]
    pub read_only: bool,
}

fn default_true() -> bool {
    true
}

/// `mounts`: the agent group's extra mounts, replaced as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountsChange {
    pub mounts: Vec<MountRequest>,
}

/// `wiring`: connect the agent group to a messaging group (created or updated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WiringChange {
    pub messaging_group_id: MessagingGroupId,
    pub engage_mode: EngageMode,
    #[serde(default)]
    pub engage_pattern: Option<String>,
    #[serde(default = "default_scope")]
    pub sender_scope: SenderScope,
    #[serde(default = "default_ignored")]
    pub ignored_message_policy: IgnoredMessagePolicy,
    #[serde(default = "default_session_mode")]
    pub session_mode: SessionMode,
    #[serde(default)]
    pub priority: i64,
}

fn default_scope() -> SenderScope {
    SenderScope::Known
}
fn default_ignored() -> IgnoredMessagePolicy {
    IgnoredMessagePolicy::Drop
}
fn default_session_mode() -> SessionMode {
    SessionMode::Shared
}

/// `permissions`: exactly one grant or revocation on the agent group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum PermissionsChange {
    AddMember(UserId),
    RemoveMember(UserId),
    /// An admin scoped to this agent group.
    GrantAdmin(UserId),
    RevokeAdmin(UserId),
    /// The hosts the agent group's sandboxes may reach through the egress broker,
    /// replaced as a whole.
    Egress(Vec<String>),
}

/// `create_agent`: a new agent group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentChange {
    /// Defaults to the name, lower-cased, spaces as `-`.
    #[serde(default)]
    pub id: Option<AgentGroupId>,
    pub name: String,
    #[serde(default)]
    pub persona: String,
    #[serde(default = "default_provider")]
    pub provider: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub enabled_tools: Vec<String>,
}

fn default_provider() -> String {
    "mock".to_owned()
}

impl CreateAgentChange {
    /// The id the new group will get.
    pub fn group_id(&self) -> Result<AgentGroupId, String> {
        match &self.id {
            Some(id) => Ok(id.clone()),
            None => {
                let derived: String = self.name.trim().to_lowercase().replace(' ', "-");
                AgentGroupId::new(derived)
                    .map_err(|e| format!("cannot derive an id from the name: {e}"))
            }
        }
    }
}

/// `mcp_access`: grant the agent group a configured MCP server's tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpAccessChange {
    pub server: String,
    #[serde(default)]
    pub tools: Vec<String>,
}

/// A validated payload: what the appliers will do, exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangePayload {
    Persona(PersonaChange),
    EnabledTools(ToolsChange),
    Packages(PackagesChange),
    Mounts(MountsChange),
    Wiring(WiringChange),
    Permissions(PermissionsChange),
    CreateAgent(CreateAgentChange),
    McpAccess(McpAccessChange),
}

/// Longest persona accepted, in bytes.
pub const MAX_PERSONA_BYTES: usize = 4096;

/// Parses `after` as the payload of `kind`.
pub fn parse(kind: ChangeKind, after: &Value) -> Result<ChangePayload, PayloadError> {
    fn strict<T: serde::de::DeserializeOwned>(
        kind: ChangeKind,
        v: &Value,
    ) -> Result<T, PayloadError> {
        T::deserialize(v).map_err(|e| PayloadError::Invalid {
            kind,
            reason: e.to_string(),
        })
    }
    let invalid = |reason: &str| PayloadError::Invalid {
        kind,
        reason: reason.to_owned(),
    };
    let payload = match kind {
        ChangeKind::Persona => {
            let p: PersonaChange = strict(kind, after)?;
            if p.persona.len() > MAX_PERSONA_BYTES {
                return Err(invalid(&format!(
                    "persona is {} bytes; the limit is {MAX_PERSONA_BYTES}",
                    p.persona.len()
                )));
            }
            ChangePayload::Persona(p)
        }
        ChangeKind::EnabledTools => ChangePayload::EnabledTools(strict(kind, after)?),
        ChangeKind::Packages => {
            let p: PackagesChange = strict(kind, after)?;
            if p.apt.is_empty() && p.npm.is_empty() {
                return Err(invalid("names no package"));
            }
            ChangePayload::Packages(p)
        }
        ChangeKind::Mounts => ChangePayload::Mounts(strict(kind, after)?),
        ChangeKind::Wiring => ChangePayload::Wiring(strict(kind, after)?),
        ChangeKind::Permissions => ChangePayload::Permissions(strict(kind, after)?),
        ChangeKind::CreateAgent => {
            let c: CreateAgentChange = strict(kind, after)?;
            c.group_id().map_err(|e| invalid(&e))?;
            if c.persona.len() > MAX_PERSONA_BYTES {
                return Err(invalid("persona too long"));
            }
            ChangePayload::CreateAgent(c)
        }
        ChangeKind::McpAccess => ChangePayload::McpAccess(strict(kind, after)?),
        // Registering MCP servers and installing skills need subsystems this control
        // plane does not run; accepting them would hold a change no one can apply.
        ChangeKind::McpRegister | ChangeKind::SkillInstall => {
            return Err(PayloadError::Unsupported(kind))
        }
    };
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_schemas() {
        assert!(parse(ChangeKind::Persona, &json!({"persona": "be kind"})).is_ok());
        for bad in [
            json!({}),
            json!({"persona": "x", "egress": ["evil.com"]}),
            json!({"instructions": "x"}),
            json!("x"),
        ] {
            assert!(parse(ChangeKind::Persona, &bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse(ChangeKind::EnabledTools, &json!({"add": ["read_file"]})).unwrap(),
            ChangePayload::EnabledTools(ToolsChange::Add(vec!["read_file".into()]))
        );
        assert!(parse(
            ChangeKind::EnabledTools,
            &json!({"add": ["a"], "remove": ["b"]})
        )
        .is_err());
        assert!(parse(ChangeKind::EnabledTools, &json!(["a"])).is_err());
        assert!(parse(ChangeKind::Packages, &json!({})).is_err());
        assert!(parse(
            ChangeKind::Packages,
            &json!({"apt": ["ripgrep"], "pip": ["x"]})
        )
        .is_err());
        assert!(parse(ChangeKind::Permissions, &json!({"add_member": "slack:bob"})).is_ok());
        assert!(parse(ChangeKind::Permissions, &json!({"add_member": "../x"})).is_err());
        assert!(parse(
            ChangeKind::Wiring,
            &json!({"messaging_group_id": "mg_1", "engage_mode": "sometimes"})
        )
        .is_err());
        assert!(matches!(
            parse(ChangeKind::McpRegister, &json!({})),
            Err(PayloadError::Unsupported(_))
        ));
        assert!(matches!(
            parse(ChangeKind::SkillInstall, &json!({})),
            Err(PayloadError::Unsupported(_))
        ));
    }

    #[test]
    fn create_agent_ids() {
        let c = |v| match parse(ChangeKind::CreateAgent, &v).unwrap() {
            ChangePayload::CreateAgent(c) => c.group_id().unwrap().to_string(),
            _ => unreachable!(),
        };
        assert_eq!(c(json!({"name": "My Researcher"})), "my-researcher");
        assert_eq!(c(json!({"name": "x", "id": "custom"})), "custom");
        assert!(parse(ChangeKind::CreateAgent, &json!({"name": "../etc"})).is_err());
        assert!(parse(ChangeKind::CreateAgent, &json!({"name": "a/b"})).is_err());
        assert!(parse(ChangeKind::CreateAgent, &json!({})).is_err());
    }
}
