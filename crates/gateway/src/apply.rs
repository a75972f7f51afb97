//! Appliers: the registry effects of each kind of change.
//!
//! Each function runs inside one registry transaction opened by the gateway, so all
//! effects of a change commit together or not at all. Effects are idempotent (set,
//! union, upsert keyed by the change id), because a crash between the registry commit
//! and the change store's `applied` mark makes the gateway apply the change again at
//! startup.

use ironclaw_contract::gateway::ChangeRequest;
use ironclaw_contract::ids::AgentGroupId;
use ironclaw_registry::{
    AgentGroup, MountGrant, Registry, RegistryError, RegistryTx, Role, RoleGrant, Wiring,
};
use serde_json::{json, Value};

use crate::payload::{ChangePayload, PermissionsChange, ToolsChange};

fn union(into: &mut Vec<String>, add: &[String]) {
    for a in add {
        if !into.contains(a) {
            into.push(a.clone());
        }
    }
}

/// Applies `payload` (parsed from `req.after`) to the registry.
pub fn apply(
    tx: &mut RegistryTx<'_>,
    req: &ChangeRequest,
    payload: &ChangePayload,
) -> Result<(), RegistryError> {
    let group = &req.agent_group_id;
    match payload {
        ChangePayload::Persona(p) => {
            tx.update_agent_group(group, |g| {
                g.persona = p.persona.clone();
                Ok(())
            })?;
        }
        ChangePayload::EnabledTools(t) => {
            tx.update_agent_group(group, |g| {
                match t {
                    ToolsChange::Replace(names) => g.enabled_tools = names.clone(),
                    ToolsChange::Add(names) => union(&mut g.enabled_tools, names),
                    ToolsChange::Remove(names) => g.enabled_tools.retain(|n| !names.contains(n)),
                }
                Ok(())
            })?;
        }
        ChangePayload::Packages(p) => {
            let names: Vec<String> = p
                .apt
                .iter()
                .map(|n| format!("apt:{n}"))
                .chain(p.npm.iter().map(|n| format!("npm:{n}")))
                .collect();
            tx.update_agent_group(group, |g| {
                union(&mut g.packages, &names);
                Ok(())
            })?;
        }
        ChangePayload::Mounts(m) => {
            let mounts: Vec<MountGrant> = m
                .mounts
                .iter()
                .map(|r| MountGrant {
                    source: r.source.clone(),
                    target: r.target.clone(),
                    read_only: r.read_only,
                })
                .collect();
            tx.update_agent_group(group, |g| {
                g.mounts = mounts;
                Ok(())
            })?;
        }
        ChangePayload::Wiring(w) => {
            tx.put_wiring(Wiring {
                // Keyed by the change, so applying it twice updates one wiring.
                id: format!(
                    "wr_{}",
                    &req.id
                        .as_str()
                        .trim_start_matches("chg_")
                        .chars()
                        .take(16)
                        .collect::<String>()
                ),
                messaging_group_id: w.messaging_group_id.clone(),
                agent_group_id: group.clone(),
                engage_mode: w.engage_mode,
                engage_pattern: w.engage_pattern.clone(),
                sender_scope: w.sender_scope,
                ignored_message_policy: w.ignored_message_policy,
                session_mode: w.session_mode,
                priority: w.priority,
            })?;
        }
        ChangePayload::Permissions(p) => match p {
            PermissionsChange::AddMember(u) => {
                tx.add_member(u, group)?;
            }
            PermissionsChange::RemoveMember(u) => {
                tx.remove_member(u, group)?;
            }
            PermissionsChange::GrantAdmin(u) => {
                tx.grant_role(&RoleGrant {
                    user_id: u.clone(),
                    role: Role::Admin,
                    scope: Some(group.clone()),
                })?;
            }
            PermissionsChange::RevokeAdmin(u) => {
                tx.revoke_role(&RoleGrant {
                    user_id: u.clone(),
                    role: Role::Admin,
                    scope: Some(group.clone()),
                })?;
            }
            PermissionsChange::Egress(hosts) => {
                let hosts: Vec<String> = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
                tx.update_agent_group(group, |g| {
                    g.egress = hosts;
                    Ok(())
                })?;
            }
        },
        ChangePayload::CreateAgent(c) => {
            let mut g = AgentGroup::new(
                group.clone(),
                c.name.clone(),
                c.provider.clone(),
                c.model.clone(),
            );
            g.persona = c.persona.clone();
            g.enabled_tools = c.enabled_tools.clone();
            let wanted = g.clone();
            match tx.create_agent_group(g) {
                Ok(_) => {}
                // Applied already (a crash after the registry commit): the group is
                // exactly what this change creates — nothing left to do. A group of
                // this id that differs (another change created it, or it was edited
                // since) is a failure, never a silent "applied".
                Err(RegistryError::AlreadyExists { .. })
                    if tx
                        .agent_group(group)?
                        .is_some_and(|existing| is_created_by(&existing, wanted)) => {}
                Err(e) => return Err(e),
            }
        }
        ChangePayload::McpAccess(m) => {
            return Err(RegistryError::Invalid {
                field: "mcp_access",
                reason: format!(
                    "MCP server {:?} is not configured on this control plane",
                    m.server
                ),
            });
        }
    }
    Ok(())
}

/// Whether `existing` is the group `wanted` (as given to `create_agent_group`) would
/// have been stored as: every field equal after normalization, except `created_at`.
fn is_created_by(existing: &AgentGroup, wanted: AgentGroup) -> bool {
    wanted.normalized().is_ok_and(|mut w| {
        w.created_at = existing.created_at;
        &w == existing
    })
}

/// The part of the group's current state a change would replace, shown to the human
/// next to the request.
pub fn before_state(
    registry: &Registry,
    group: &AgentGroupId,
    payload: &ChangePayload,
) -> Result<Option<Value>, RegistryError> {
    let Some(g) = registry.agent_group(group)? else {
        return Ok(None);
    };
    Ok(Some(match payload {
        ChangePayload::Persona(_) => json!({"persona": g.persona}),
        ChangePayload::EnabledTools(_) => json!({"enabled_tools": g.enabled_tools}),
        ChangePayload::Packages(_) => json!({"packages": g.packages}),
        ChangePayload::Mounts(_) => json!({"mounts": g.mounts}),
        ChangePayload::Permissions(PermissionsChange::Egress(_)) => json!({"egress": g.egress}),
        ChangePayload::Permissions(_) => json!({"members": registry.members_of(group)?}),
        ChangePayload::McpAccess(_) => json!({"mcp_grants": g.mcp_grants}),
        ChangePayload::Wiring(_) | ChangePayload::CreateAgent(_) => return Ok(None),
    }))
}
