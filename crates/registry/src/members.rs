//! Members: unprivileged access of a user to one agent group.

use ironclaw_contract::ids::{AgentGroupId, UserId};
use rusqlite::{params, Connection, OptionalExtension};

use crate::agent_groups;
use crate::error::RegistryError;
use crate::model::Member;
use crate::rows::parse;

type R<T> = Result<T, RegistryError>;

/// Adds a membership; the group must exist. Returns whether anything changed.
pub(crate) fn add(c: &Connection, user: &UserId, group: &AgentGroupId) -> R<bool> {
    agent_groups::require(c, group)?;
    let n = c
        .prepare_cached(
            "INSERT INTO members (agent_group_id, user_id) VALUES (?1, ?2) \
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![group.as_str(), user.as_str()])?;
    Ok(n > 0)
}

/// Removes a membership. Returns whether it existed.
pub(crate) fn remove(c: &Connection, user: &UserId, group: &AgentGroupId) -> R<bool> {
    let n = c
        .prepare_cached("DELETE FROM members WHERE agent_group_id = ?1 AND user_id = ?2")?
        .execute(params![group.as_str(), user.as_str()])?;
    Ok(n > 0)
}

pub(crate) fn is_member(c: &Connection, user: &UserId, group: &AgentGroupId) -> R<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM members WHERE agent_group_id = ?1 AND user_id = ?2")?
            .query_row(params![group.as_str(), user.as_str()], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

/// The members of `group`, sorted by user id.
pub(crate) fn of_group(c: &Connection, group: &AgentGroupId) -> R<Vec<Member>> {
    let mut stmt =
        c.prepare_cached("SELECT user_id FROM members WHERE agent_group_id = ?1 ORDER BY user_id")?;
    let users = stmt
        .query_map([group.as_str()], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    users
        .into_iter()
        .map(|u| {
            Ok(Member {
                user_id: parse("members", group.as_str(), "user_id", &u)?,
                agent_group_id: group.clone(),
            })
        })
        .collect()
}
