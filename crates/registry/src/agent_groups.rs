//! Agent groups: storage of the record and all its capability fields.

use ironclaw_contract::ids::AgentGroupId;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{invalid, not_found, RegistryError};
use crate::model::AgentGroup;
use crate::rows::{json, parse, revalidate, to_json};

type R<T> = Result<T, RegistryError>;

const TABLE: &str = "agent_groups";
const SELECT: &str = "SELECT id, name, provider, model, persona, enabled_tools, packages, \
                      mounts, egress, mcp_grants, created_at FROM agent_groups";

pub(crate) fn get(c: &Connection, id: &AgentGroupId) -> R<Option<AgentGroup>> {
    let raw = c
        .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id.as_str()], Raw::from_row)
        .optional()?;
    raw.map(Raw::decode).transpose()
}

/// All groups, sorted by id.
pub(crate) fn list(c: &Connection) -> R<Vec<AgentGroup>> {
    let mut stmt = c.prepare_cached(&format!("{SELECT} ORDER BY id"))?;
    let raws = stmt
        .query_map([], Raw::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(Raw::decode).collect()
}

pub(crate) fn exists(c: &Connection, id: &AgentGroupId) -> R<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM agent_groups WHERE id = ?1")?
            .query_row([id.as_str()], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

/// Fails with `NotFound` unless the group exists. Writes call this before relying on
/// the foreign key, so the caller learns *which* reference was dangling.
pub(crate) fn require(c: &Connection, id: &AgentGroupId) -> R<()> {
    if exists(c, id)? {
        Ok(())
    } else {
        Err(not_found("agent group", id.as_str()))
    }
}

/// Inserts a new group; fails if the id is taken.
pub(crate) fn create(c: &Connection, g: AgentGroup) -> R<AgentGroup> {
    let g = g.normalized()?;
    if exists(c, &g.id)? {
        return Err(RegistryError::AlreadyExists {
            what: "agent group",
            id: g.id.into_string(),
        });
    }
    upsert(c, &g)?;
    Ok(g)
}

/// Inserts or wholly replaces a group.
pub(crate) fn put(c: &Connection, g: AgentGroup) -> R<AgentGroup> {
    let g = g.normalized()?;
    upsert(c, &g)?;
    Ok(g)
}

/// Read-modify-write of one group. The id cannot change (that would be a create) and
/// `created_at` is kept.
pub(crate) fn update(
    c: &Connection,
    id: &AgentGroupId,
    f: impl FnOnce(&mut AgentGroup) -> R<()>,
) -> R<AgentGroup> {
    let mut g = get(c, id)?.ok_or_else(|| not_found("agent group", id.as_str()))?;
    let created_at = g.created_at;
    f(&mut g)?;
    if &g.id != id {
        return Err(invalid("id", "an update cannot change the group's id"));
    }
    g.created_at = created_at;
    put(c, g)
}

fn upsert(c: &Connection, g: &AgentGroup) -> R<()> {
    c.prepare_cached(
        "INSERT INTO agent_groups (id, name, provider, model, persona, enabled_tools, \
             packages, mounts, egress, mcp_grants, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, provider = excluded.provider, \
             model = excluded.model, persona = excluded.persona, \
             enabled_tools = excluded.enabled_tools, packages = excluded.packages, \
             mounts = excluded.mounts, egress = excluded.egress, \
             mcp_grants = excluded.mcp_grants, created_at = excluded.created_at",
    )?
    .execute(params![
        g.id.as_str(),
        g.name,
        g.provider,
        g.model,
        g.persona,
        to_json("enabled_tools", &g.enabled_tools)?,
        to_json("packages", &g.packages)?,
        to_json("mounts", &g.mounts)?,
        to_json("egress", &g.egress)?,
        to_json("mcp_grants", &g.mcp_grants)?,
        g.created_at.to_canonical(),
    ])?;
    Ok(())
}

/// A row as stored, before decoding.
struct Raw([String; 11]);

impl Raw {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self([
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
            r.get(10)?,
        ]))
    }

    fn decode(self) -> R<AgentGroup> {
        let [id, name, provider, model, persona, tools, packages, mounts, egress, mcp, created] =
            self.0;
        let k = id.as_str();
        let g = AgentGroup {
            id: parse(TABLE, k, "id", k)?,
            name,
            provider,
            model,
            persona,
            enabled_tools: json(TABLE, k, "enabled_tools", &tools)?,
            packages: json(TABLE, k, "packages", &packages)?,
            mounts: json(TABLE, k, "mounts", &mounts)?,
            egress: json(TABLE, k, "egress", &egress)?,
            mcp_grants: json(TABLE, k, "mcp_grants", &mcp)?,
            created_at: parse(TABLE, k, "created_at", &created)?,
        };
        revalidate(TABLE, k, g, AgentGroup::normalized)
    }
}
