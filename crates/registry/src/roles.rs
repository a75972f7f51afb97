//! Role grants: owner (always global) and admin (global or scoped to one group).

use ironclaw_contract::ids::{AgentGroupId, UserId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::agent_groups;
use crate::error::{invalid, RegistryError};
use crate::model::{Role, RoleGrant};
use crate::rows::parse;

type R<T> = Result<T, RegistryError>;

const TABLE: &str = "roles";

/// Grants a role. Returns whether anything changed (an identical grant is a no-op).
///
/// Refused: a scoped owner grant (the Go system silently widened it to global, so a
/// grant meant for one group gave power over all of them), a grant to a `sandbox:*`
/// principal (sandboxes request changes, never decide them), and a scope naming a
/// group that does not exist.
pub(crate) fn grant(c: &Connection, g: &RoleGrant) -> R<bool> {
    check(g)?;
    if let Some(scope) = &g.scope {
        agent_groups::require(c, scope)?;
    }
    let n = c
        .prepare_cached(
            "INSERT INTO roles (user_id, role, agent_group_id) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            g.user_id.as_str(),
            g.role.as_str(),
            g.scope.as_ref().map(AgentGroupId::as_str)
        ])?;
    Ok(n > 0)
}

/// Removes exactly this grant (a global admin grant does not revoke a scoped one or
/// vice versa). Returns whether it existed.
pub(crate) fn revoke(c: &Connection, g: &RoleGrant) -> R<bool> {
    let n = c
        .prepare_cached(
            "DELETE FROM roles WHERE user_id = ?1 AND role = ?2 \
             AND agent_group_id IS ?3",
        )?
        .execute(params![
            g.user_id.as_str(),
            g.role.as_str(),
            g.scope.as_ref().map(AgentGroupId::as_str)
        ])?;
    Ok(n > 0)
}

/// Whether `user` holds `role` with exactly `scope` (`None` = global).
pub(crate) fn holds(
    c: &Connection,
    user: &UserId,
    role: Role,
    scope: Option<&AgentGroupId>,
) -> R<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM roles WHERE user_id = ?1 AND role = ?2 AND agent_group_id IS ?3",
    )?
    .query_row(
        params![
            user.as_str(),
            role.as_str(),
            scope.map(AgentGroupId::as_str)
        ],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// Every grant `user` holds, sorted by role, then scope (global first).
pub(crate) fn of_user(c: &Connection, user: &UserId) -> R<Vec<RoleGrant>> {
    let mut stmt = c.prepare_cached(
        "SELECT role, agent_group_id FROM roles WHERE user_id = ?1 \
         ORDER BY role, agent_group_id",
    )?;
    let raws = stmt
        .query_map([user.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter()
        .map(|(role, scope)| {
            let k = user.as_str();
            let g = RoleGrant {
                user_id: user.clone(),
                role: parse(TABLE, k, "role", &role)?,
                scope: scope
                    .map(|s| parse(TABLE, k, "agent_group_id", &s))
                    .transpose()?,
            };
            check(&g).map_err(|e| crate::error::corrupt(TABLE, k, e))?;
            Ok(g)
        })
        .collect()
}

fn check(g: &RoleGrant) -> R<()> {
    if g.role == Role::Owner && g.scope.is_some() {
        return Err(invalid(
            "scope",
            "an owner grant is always global; grant a scoped admin instead",
        ));
    }
    if g.user_id.is_sandbox() {
        return Err(invalid(
            "user_id",
            format!(
                "{} is a sandbox principal and cannot hold a role",
                g.user_id
            ),
        ));
    }
    Ok(())
}
