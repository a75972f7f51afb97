//! Sessions and how messages are partitioned into them.
//!
//! A session is found by its *partition key* under its *mode*, both stored and
//! unique together:
//!
//! | mode           | key                              | thread kept |
//! |----------------|----------------------------------|-------------|
//! | `shared`       | `<agent group>/<messaging group>`| no          |
//! | `per-thread`   | `<agent group>/<messaging group>/<thread or "">` | yes |
//! | `agent-shared` | `<agent group>`                  | no          |
//!
//! Group ids cannot contain `/`, and the thread (arbitrary text) comes last, so a key
//! names exactly one tuple. Because the mode is part of the lookup, a session created
//! under one mode is never returned for another: in the Go system the key was
//! recomputed under the *requested* mode, so a per-thread session could answer a
//! shared lookup and two conversations merged.

use ironclaw_contract::enums::SessionMode;
use ironclaw_contract::ids::{AgentGroupId, MessagingGroupId, SessionId};
use ironclaw_contract::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{corrupt, not_found, RegistryError};
use crate::mint::unique_id;
use crate::model::{Session, SessionStatus};
use crate::rows::parse;
use crate::validate::check_thread_id;
use crate::{agent_groups, messaging_groups};

type R<T> = Result<T, RegistryError>;

const TABLE: &str = "sessions";
const SELECT: &str = "SELECT id, agent_group_id, messaging_group_id, thread_id, mode, \
                      partition_key, status, created_at, last_active FROM sessions";

/// Where a message belongs under one mode.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Partition {
    pub key: String,
    /// The thread the session keeps (per-thread only; never `Some("")`).
    pub thread: Option<String>,
}

impl Partition {
    pub(crate) fn new(
        ag: &AgentGroupId,
        mg: &MessagingGroupId,
        thread: Option<&str>,
        mode: SessionMode,
    ) -> R<Self> {
        // An empty thread is the same as none (a platform message outside a thread).
        let thread = thread.filter(|t| !t.is_empty());
        if let Some(t) = thread {
            check_thread_id(t)?;
        }
        Ok(match mode {
            SessionMode::Shared => Self {
                key: format!("{ag}/{mg}"),
                thread: None,
            },
            SessionMode::PerThread => Self {
                key: format!("{ag}/{mg}/{}", thread.unwrap_or("")),
                thread: thread.map(str::to_owned),
            },
            SessionMode::AgentShared => Self {
                key: ag.to_string(),
                thread: None,
            },
        })
    }
}

pub(crate) fn get(c: &Connection, id: &SessionId) -> R<Option<Session>> {
    let raw = c
        .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id.as_str()], Raw::from_row)
        .optional()?;
    raw.map(Raw::decode).transpose()
}

/// All sessions, sorted by id.
pub(crate) fn list(c: &Connection) -> R<Vec<Session>> {
    let mut stmt = c.prepare_cached(&format!("{SELECT} ORDER BY id"))?;
    let raws = stmt
        .query_map([], Raw::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(Raw::decode).collect()
}

/// The session a message on (`ag`, `mg`, `thread`) belongs to under `mode`, if one
/// exists. Never creates and never touches `last_active`.
pub(crate) fn find(
    c: &Connection,
    ag: &AgentGroupId,
    mg: &MessagingGroupId,
    thread: Option<&str>,
    mode: SessionMode,
) -> R<Option<Session>> {
    let p = Partition::new(ag, mg, thread, mode)?;
    by_key(c, mode, &p.key)
}

fn by_key(c: &Connection, mode: SessionMode, key: &str) -> R<Option<Session>> {
    let raw = c
        .prepare_cached(&format!("{SELECT} WHERE mode = ?1 AND partition_key = ?2"))?
        .query_row([mode.as_str(), key], Raw::from_row)
        .optional()?;
    raw.map(Raw::decode).transpose()
}

/// Finds or creates the session, refreshing `last_active` either way.
pub(crate) fn resolve(
    c: &Connection,
    ag: &AgentGroupId,
    mg: &MessagingGroupId,
    thread: Option<&str>,
    mode: SessionMode,
) -> R<Session> {
    let p = Partition::new(ag, mg, thread, mode)?;
    agent_groups::require(c, ag)?;
    messaging_groups::require(c, mg)?;
    if let Some(mut s) = by_key(c, mode, &p.key)? {
        // Never move backwards if the wall clock does.
        s.last_active = s.last_active.max(Timestamp::now());
        c.prepare_cached("UPDATE sessions SET last_active = ?1 WHERE id = ?2")?
            .execute([s.last_active.to_canonical(), s.id.to_string()])?;
        return Ok(s);
    }
    let id =
        SessionId::new(unique_id(c, "ses_", TABLE)?).map_err(|e| corrupt(TABLE, "<minted>", e))?;
    let now = Timestamp::now();
    let s = Session {
        id,
        agent_group_id: ag.clone(),
        messaging_group_id: mg.clone(),
        thread_id: p.thread,
        mode,
        partition_key: p.key,
        status: SessionStatus::New,
        created_at: now,
        last_active: now,
    };
    c.prepare_cached(
        "INSERT INTO sessions (id, agent_group_id, messaging_group_id, thread_id, mode, \
             partition_key, status, created_at, last_active) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        s.id.as_str(),
        s.agent_group_id.as_str(),
        s.messaging_group_id.as_str(),
        s.thread_id,
        s.mode.as_str(),
        s.partition_key,
        s.status.as_str(),
        s.created_at.to_canonical(),
        s.last_active.to_canonical(),
    ])?;
    Ok(s)
}

pub(crate) fn set_status(c: &Connection, id: &SessionId, status: SessionStatus) -> R<()> {
    let n = c
        .prepare_cached("UPDATE sessions SET status = ?1 WHERE id = ?2")?
        .execute([status.as_str(), id.as_str()])?;
    if n == 0 {
        return Err(not_found("session", id.as_str()));
    }
    Ok(())
}

struct Raw([Option<String>; 9]);

impl Raw {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        let mut cols: [Option<String>; 9] = Default::default();
        for (i, col) in cols.iter_mut().enumerate() {
            *col = r.get(i)?;
        }
        Ok(Self(cols))
    }

    fn decode(self) -> R<Session> {
        let [id, ag, mg, thread, mode, key, status, created, last] = self.0;
        let k = id.clone().unwrap_or_default();
        let k = k.as_str();
        // Only thread_id may be NULL; the schema says so too, this just refuses to
        // trust it.
        let req = |v: Option<String>, col: &str| {
            v.ok_or_else(|| corrupt(TABLE, k, format!("{col} is NULL")))
        };
        let s = Session {
            id: parse(TABLE, k, "id", k)?,
            agent_group_id: parse(TABLE, k, "agent_group_id", &req(ag, "agent_group_id")?)?,
            messaging_group_id: parse(
                TABLE,
                k,
                "messaging_group_id",
                &req(mg, "messaging_group_id")?,
            )?,
            thread_id: thread,
            mode: parse(TABLE, k, "mode", &req(mode, "mode")?)?,
            partition_key: req(key, "partition_key")?,
            status: parse(TABLE, k, "status", &req(status, "status")?)?,
            created_at: parse(TABLE, k, "created_at", &req(created, "created_at")?)?,
            last_active: parse(TABLE, k, "last_active", &req(last, "last_active")?)?,
        };
        // The stored key must be the one its own fields produce, or lookups would
        // silently miss (or hit) it.
        let expected = Partition::new(
            &s.agent_group_id,
            &s.messaging_group_id,
            s.thread_id.as_deref(),
            s.mode,
        )
        .map_err(|e| corrupt(TABLE, k, e))?;
        if expected.key != s.partition_key || expected.thread != s.thread_id {
            return Err(corrupt(
                TABLE,
                k,
                "partition key or thread does not match the session's fields",
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_per_mode_and_unambiguous() {
        let ag = AgentGroupId::new("a").unwrap();
        let mg = MessagingGroupId::new("m").unwrap();
        let k = |t: Option<&str>, m| Partition::new(&ag, &mg, t, m).unwrap();
        assert_eq!(k(Some("t"), SessionMode::Shared).key, "a/m");
        assert_eq!(k(Some("t"), SessionMode::Shared).thread, None);
        assert_eq!(k(Some("t"), SessionMode::PerThread).key, "a/m/t");
        assert_eq!(k(None, SessionMode::PerThread).key, "a/m/");
        assert_eq!(
            k(Some(""), SessionMode::PerThread),
            k(None, SessionMode::PerThread)
        );
        assert_eq!(k(Some("t/x"), SessionMode::PerThread).key, "a/m/t/x");
        assert_eq!(k(Some("t"), SessionMode::AgentShared).key, "a");
        assert!(Partition::new(&ag, &mg, Some("a\nb"), SessionMode::Shared).is_err());
    }
}
