//! Wirings: which agent groups a messaging group's messages are routed to.

use ironclaw_contract::ids::MessagingGroupId;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::RegistryError;
use crate::mint::unique_id;
use crate::model::Wiring;
use crate::rows::{parse, revalidate};
use crate::{agent_groups, messaging_groups};

type R<T> = Result<T, RegistryError>;

const TABLE: &str = "wirings";
const SELECT: &str = "SELECT id, messaging_group_id, agent_group_id, engage_mode, \
                      engage_pattern, sender_scope, ignored_message_policy, session_mode, \
                      priority FROM wirings";

pub(crate) fn get(c: &Connection, id: &str) -> R<Option<Wiring>> {
    let raw = c
        .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], Raw::from_row)
        .optional()?;
    raw.map(Raw::decode).transpose()
}

/// The wirings of `mg` in routing order: priority descending, then id ascending, so
/// equal priorities still route deterministically.
pub(crate) fn for_messaging_group(c: &Connection, mg: &MessagingGroupId) -> R<Vec<Wiring>> {
    let mut stmt = c.prepare_cached(&format!(
        "{SELECT} WHERE messaging_group_id = ?1 ORDER BY priority DESC, id ASC"
    ))?;
    let raws = stmt
        .query_map([mg.as_str()], Raw::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(Raw::decode).collect()
}

/// Inserts or replaces a wiring, minting its id if empty. Both groups must exist.
pub(crate) fn put(c: &Connection, w: Wiring) -> R<Wiring> {
    let mut w = w.normalized()?;
    messaging_groups::require(c, &w.messaging_group_id)?;
    agent_groups::require(c, &w.agent_group_id)?;
    if w.id.is_empty() {
        w.id = unique_id(c, "wr_", TABLE)?;
    }
    c.prepare_cached(
        "INSERT INTO wirings (id, messaging_group_id, agent_group_id, engage_mode, \
             engage_pattern, sender_scope, ignored_message_policy, session_mode, priority) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (id) DO UPDATE SET messaging_group_id = excluded.messaging_group_id, \
             agent_group_id = excluded.agent_group_id, engage_mode = excluded.engage_mode, \
             engage_pattern = excluded.engage_pattern, sender_scope = excluded.sender_scope, \
             ignored_message_policy = excluded.ignored_message_policy, \
             session_mode = excluded.session_mode, priority = excluded.priority",
    )?
    .execute(params![
        w.id,
        w.messaging_group_id.as_str(),
        w.agent_group_id.as_str(),
        w.engage_mode.as_str(),
        w.engage_pattern,
        w.sender_scope.as_str(),
        w.ignored_message_policy.as_str(),
        w.session_mode.as_str(),
        w.priority,
    ])?;
    Ok(w)
}

struct Raw {
    id: String,
    mg: String,
    ag: String,
    engage_mode: String,
    engage_pattern: Option<String>,
    sender_scope: String,
    ignored: String,
    session_mode: String,
    priority: i64,
}

impl Raw {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            mg: r.get(1)?,
            ag: r.get(2)?,
            engage_mode: r.get(3)?,
            engage_pattern: r.get(4)?,
            sender_scope: r.get(5)?,
            ignored: r.get(6)?,
            session_mode: r.get(7)?,
            priority: r.get(8)?,
        })
    }

    fn decode(self) -> R<Wiring> {
        let k = self.id.clone();
        let k = k.as_str();
        let w = Wiring {
            messaging_group_id: parse(TABLE, k, "messaging_group_id", &self.mg)?,
            agent_group_id: parse(TABLE, k, "agent_group_id", &self.ag)?,
            engage_mode: parse(TABLE, k, "engage_mode", &self.engage_mode)?,
            engage_pattern: self.engage_pattern,
            sender_scope: parse(TABLE, k, "sender_scope", &self.sender_scope)?,
            ignored_message_policy: parse(TABLE, k, "ignored_message_policy", &self.ignored)?,
            session_mode: parse(TABLE, k, "session_mode", &self.session_mode)?,
            priority: self.priority,
            id: self.id,
        };
        if w.id.is_empty() {
            return Err(crate::error::corrupt(TABLE, k, "empty id"));
        }
        revalidate(TABLE, k, w, Wiring::normalized)
    }
}
