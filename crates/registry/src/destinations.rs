//! Destinations: the targets an agent group is permitted to send to.

use ironclaw_contract::ids::AgentGroupId;
use rusqlite::{params, Connection, OptionalExtension};

use crate::agent_groups;
use crate::error::RegistryError;
use crate::model::Destination;
use crate::rows::revalidate;

type R<T> = Result<T, RegistryError>;

/// Permits a destination; the group must exist. Returns whether anything changed.
pub(crate) fn add(c: &Connection, d: Destination) -> R<bool> {
    let d = d.normalized()?;
    agent_groups::require(c, &d.agent_group_id)?;
    let n = c
        .prepare_cached(
            "INSERT INTO destinations (agent_group_id, channel_type, platform_id) \
             VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            d.agent_group_id.as_str(),
            d.channel_type,
            d.platform_id
        ])?;
    Ok(n > 0)
}

/// Withdraws a destination. Returns whether it existed.
pub(crate) fn remove(c: &Connection, d: &Destination) -> R<bool> {
    let n = c
        .prepare_cached(
            "DELETE FROM destinations WHERE agent_group_id = ?1 AND channel_type = ?2 \
             AND platform_id = ?3",
        )?
        .execute(params![
            d.agent_group_id.as_str(),
            d.channel_type,
            d.platform_id
        ])?;
    Ok(n > 0)
}

/// Exact match of (group, channel type, platform id).
pub(crate) fn is_allowed(
    c: &Connection,
    group: &AgentGroupId,
    channel_type: &str,
    platform_id: &str,
) -> R<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM destinations WHERE agent_group_id = ?1 AND channel_type = ?2 \
             AND platform_id = ?3",
    )?
    .query_row(params![group.as_str(), channel_type, platform_id], |_| {
        Ok(())
    })
    .optional()?
    .is_some())
}

/// The destinations of `group`, sorted by channel type, then platform id.
pub(crate) fn of_group(c: &Connection, group: &AgentGroupId) -> R<Vec<Destination>> {
    let mut stmt = c.prepare_cached(
        "SELECT channel_type, platform_id FROM destinations WHERE agent_group_id = ?1 \
         ORDER BY channel_type, platform_id",
    )?;
    let raws = stmt
        .query_map([group.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter()
        .map(|(channel_type, platform_id)| {
            let d = Destination {
                agent_group_id: group.clone(),
                channel_type,
                platform_id,
            };
            revalidate("destinations", group.as_str(), d, Destination::normalized)
        })
        .collect()
}
