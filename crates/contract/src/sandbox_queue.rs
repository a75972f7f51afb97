//! The sandbox's durable queue handles: [`EncryptedInboundReader`] (read-only, lock-free,
//! reopened per read) and [`EncryptedOutboundWriter`] (the one writer of `outbound.db`).
//!
//! There is deliberately no inbound writer here: it lives in the host crate
//! `ironclaw-queue`, which the sandbox binary does not link. The host also uses
//! [`EncryptedInboundReader`] to read its own inbound file (the sweep's due scan).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::db::{open_writer, read_snapshot, sqlite_failure, Cipher, DbError, SnapshotPolicy};
use crate::enums::{MessageKind, Provenance, Status};
use crate::ids::{MessageId, SessionId};
use crate::queue::{Batch, InboundReader, OutboundWriter, QueueError, RejectedRow};
use crate::rows::{
    Destination, MessageIn, NewMessageIn, NewMessageOut, Route, SessionRouting, WriteOutcome,
    MAX_BATCH,
};
use crate::schema::{QueueFile, NEXT_OUTBOUND_SEQ};
use crate::time::Timestamp;

/// Reads `inbound.db` through the snapshot protocol; every call opens a fresh
/// connection so the other side's commits are always seen.
pub struct EncryptedInboundReader {
    path: PathBuf,
    cipher: Cipher,
    policy: SnapshotPolicy,
}

impl EncryptedInboundReader {
    /// Checks that the file opens with this key and is an inbound queue, then returns a
    /// reader. Nothing is held open between reads.
    pub fn open(path: impl Into<PathBuf>, cipher: Cipher) -> Result<Self, DbError> {
        let reader = Self {
            path: path.into(),
            cipher,
            policy: SnapshotPolicy::default(),
        };
        read_snapshot(
            &reader.path,
            &reader.cipher,
            QueueFile::Inbound,
            reader.policy,
            |_| Ok(()),
        )?;
        Ok(reader)
    }

    pub fn with_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T>(&self, f: impl FnMut(&Connection) -> rusqlite::Result<T>) -> Result<T, QueueError> {
        Ok(read_snapshot(
            &self.path,
            &self.cipher,
            QueueFile::Inbound,
            self.policy,
            f,
        )?)
    }

    /// Reads messages matching `filter` (an SQL condition over `messages_in` with at
    /// most one parameter, `?1`), by seq, at most [`MAX_BATCH`].
    fn messages(&self, filter: &str, now: Option<&str>) -> Result<Batch<MessageIn>, QueueError> {
        let sql = format!(
            "SELECT rowid, id, seq, kind, timestamp, status, process_after, recurrence, series_id, \
             tries, \"trigger\", platform_id, channel_type, thread_id, content, source_session_id, \
             provenance FROM messages_in WHERE {filter} ORDER BY seq LIMIT {MAX_BATCH}"
        );
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = match now {
                Some(now) => stmt.query([now])?,
                None => stmt.query([])?,
            };
            let mut batch = Batch::default();
            while let Some(row) = rows.next()? {
                match decode_message_in(row) {
                    Ok(m) => batch.rows.push(m),
                    Err(reason) => batch.rejected.push(rejected(row, reason)),
                }
            }
            Ok(batch)
        })
    }
}

/// Captures what can be said about a row that failed to decode.
pub fn rejected(row: &Row<'_>, reason: String) -> RejectedRow {
    RejectedRow {
        rowid: row.get::<_, i64>(0).unwrap_or(-1),
        raw_id: row.get::<_, String>(1).ok(),
        reason,
    }
}

/// Column decoders that turn any stored value into a typed value or a reason.
pub mod column {
    use rusqlite::types::ValueRef;
    use rusqlite::Row;

    use crate::time::Timestamp;

    pub fn text(row: &Row<'_>, idx: usize, name: &str) -> Result<String, String> {
        opt_text(row, idx, name)?.ok_or_else(|| format!("{name} is NULL"))
    }

    pub fn opt_text(row: &Row<'_>, idx: usize, name: &str) -> Result<Option<String>, String> {
        match row.get_ref(idx).map_err(|e| format!("{name}: {e}"))? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(b) => String::from_utf8(b.to_vec())
                .map(Some)
                .map_err(|_| format!("{name} is not UTF-8")),
            other => Err(format!(
                "{name} has type {:?}, expected text",
                other.data_type()
            )),
        }
    }

    pub fn int(row: &Row<'_>, idx: usize, name: &str) -> Result<i64, String> {
        match row.get_ref(idx).map_err(|e| format!("{name}: {e}"))? {
            ValueRef::Integer(i) => Ok(i),
            other => Err(format!(
                "{name} has type {:?}, expected integer",
                other.data_type()
            )),
        }
    }

    pub fn parsed<T: std::str::FromStr>(row: &Row<'_>, idx: usize, name: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        text(row, idx, name)?
            .parse()
            .map_err(|e| format!("{name}: {e}"))
    }

    pub fn opt_parsed<T: std::str::FromStr>(
        row: &Row<'_>,
        idx: usize,
        name: &str,
    ) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        opt_text(row, idx, name)?
            .map(|s| s.parse().map_err(|e| format!("{name}: {e}")))
            .transpose()
    }

    pub fn time(row: &Row<'_>, idx: usize, name: &str) -> Result<Timestamp, String> {
        parsed(row, idx, name)
    }

    pub fn opt_time(row: &Row<'_>, idx: usize, name: &str) -> Result<Option<Timestamp>, String> {
        opt_parsed(row, idx, name)
    }
}

/// Decodes the column list used by [`EncryptedInboundReader`] (rowid first).
fn decode_message_in(row: &Row<'_>) -> Result<MessageIn, String> {
    use column::*;
    let trigger = match int(row, 10, "trigger")? {
        0 => false,
        1 => true,
        n => return Err(format!("trigger is {n}, expected 0 or 1")),
    };
    let seq = int(row, 2, "seq")?;
    if seq <= 0 || seq % 2 != 0 {
        return Err(format!("seq {seq} is not a positive even number"));
    }
    let tries = int(row, 9, "tries")?;
    Ok(MessageIn {
        seq,
        status: parsed::<Status>(row, 5, "status")?,
        tries,
        message: NewMessageIn {
            id: parsed::<MessageId>(row, 1, "id")?,
            kind: parsed::<MessageKind>(row, 3, "kind")?,
            timestamp: time(row, 4, "timestamp")?,
            process_after: opt_time(row, 6, "process_after")?,
            recurrence: opt_text(row, 7, "recurrence")?,
            series_id: opt_text(row, 8, "series_id")?,
            trigger,
            route: Route {
                platform_id: opt_text(row, 11, "platform_id")?,
                channel_type: opt_text(row, 12, "channel_type")?,
                thread_id: opt_text(row, 13, "thread_id")?,
            },
            content: text(row, 14, "content")?,
            source_session_id: opt_parsed::<SessionId>(row, 15, "source_session_id")?,
            provenance: parsed::<Provenance>(row, 16, "provenance")?,
        },
    })
}

impl InboundReader for EncryptedInboundReader {
    fn pending_messages(&mut self, now: Timestamp) -> Result<Batch<MessageIn>, QueueError> {
        // Canonical timestamps are fixed-width, so the text comparison is a time
        // comparison; the typed check below is a second guard, not the filter.
        let now_text = now.to_canonical();
        let mut batch = self.messages(
            "status IN ('queued', 'scheduled') AND (process_after IS NULL OR process_after <= ?1)",
            Some(&now_text),
        )?;
        batch.rows.retain(|m| m.is_due(now));
        Ok(batch)
    }

    fn scheduled_messages(&mut self) -> Result<Batch<MessageIn>, QueueError> {
        self.messages("status = 'scheduled'", None)
    }

    fn destinations(&mut self) -> Result<Vec<Destination>, QueueError> {
        let rows = self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT rowid, name, display_name, type, channel_type, platform_id, agent_group_id \
                 FROM destinations ORDER BY name",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                use column::*;
                let d = (|| {
                    Ok::<_, String>(Destination {
                        name: text(row, 1, "name")?,
                        display_name: opt_text(row, 2, "display_name")?,
                        kind: text(row, 3, "type")?,
                        channel_type: opt_text(row, 4, "channel_type")?,
                        platform_id: opt_text(row, 5, "platform_id")?,
                        agent_group_id: opt_parsed(row, 6, "agent_group_id")?,
                    })
                })();
                out.push(d.map_err(|r| rejected(row, r)));
            }
            Ok(out)
        })?;
        // The host writes destinations; a row it wrote that does not decode is a host
        // bug, reported rather than skipped.
        rows.into_iter()
            .map(|r| {
                r.map_err(|rej| QueueError::Invalid {
                    what: "destination row",
                    reason: format!("rowid {}: {}", rej.rowid, rej.reason),
                })
            })
            .collect()
    }

    fn session_routing(&mut self) -> Result<Option<SessionRouting>, QueueError> {
        let row = self.read(|conn| {
            conn.query_row(
                "SELECT channel_type, platform_id, thread_id FROM session_routing WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                },
            )
            .optional()
        })?;
        Ok(
            row.map(|(channel_type, platform_id, thread_id)| SessionRouting {
                channel_type,
                platform_id,
                thread_id,
            }),
        )
    }
}

/// The one writer of `outbound.db`. Holds its connection for the life of the process.
pub struct EncryptedOutboundWriter {
    conn: Connection,
    path: PathBuf,
}

impl EncryptedOutboundWriter {
    pub fn open(path: &Path, cipher: &Cipher) -> Result<Self, DbError> {
        Ok(Self {
            conn: open_writer(path, cipher, QueueFile::Outbound)?,
            path: path.to_owned(),
        })
    }

    /// The ids among `ids` whose ack is `status` now.
    fn acked_among(
        &mut self,
        ids: &[MessageId],
        status: Status,
    ) -> Result<Vec<MessageId>, QueueError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM processing_ack WHERE message_id = ?1 AND status = ?2")
            .map_err(sqlite_failure(&self.path, "read acks"))?;
        let mut found = Vec::new();
        for id in ids {
            if stmt
                .exists(params![id.as_str(), status.as_str()])
                .map_err(sqlite_failure(&self.path, "read acks"))?
            {
                found.push(id.clone());
            }
        }
        Ok(found)
    }

    fn upsert_acks(&mut self, ids: &[MessageId], status: Status) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now().to_canonical();
        // IMMEDIATE: take the write lock up front, waiting for it under the busy
        // timeout. A deferred transaction that reads first and upgrades later can be
        // refused at once with SQLITE_BUSY when another writer holds the lock.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite_failure(&self.path, "begin ack"))?;
        {
            // A completed claim never goes back to processing: a retried engage of an
            // already finished message must not look unfinished to the host.
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO processing_ack (message_id, status, status_changed) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (message_id) DO UPDATE SET status = excluded.status, \
                     status_changed = excluded.status_changed WHERE processing_ack.status != 'completed'",
                )
                .map_err(sqlite_failure(&self.path, "prepare ack"))?;
            for id in ids {
                stmt.execute(params![id.as_str(), status.as_str(), now])
                    .map_err(sqlite_failure(&self.path, "write ack"))?;
            }
        }
        tx.commit()
            .map_err(sqlite_failure(&self.path, "commit ack"))?;
        Ok(())
    }
}

impl OutboundWriter for EncryptedOutboundWriter {
    fn write_message(&mut self, msg: &NewMessageOut) -> Result<WriteOutcome, QueueError> {
        msg.validate()?;
        let sql = format!(
            "INSERT INTO messages_out (id, seq, in_reply_to, timestamp, deliver_after, kind, \
             platform_id, channel_type, thread_id, content) \
             VALUES (?1, {NEXT_OUTBOUND_SEQ}, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (id) DO NOTHING RETURNING seq"
        );
        let written: Option<i64> = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![
                        msg.id.as_str(),
                        msg.in_reply_to.as_ref().map(MessageId::as_str),
                        msg.timestamp.to_canonical(),
                        msg.deliver_after.map(Timestamp::to_canonical),
                        msg.kind.as_str(),
                        msg.route.platform_id,
                        msg.route.channel_type,
                        msg.route.thread_id,
                        msg.content,
                    ],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(sqlite_failure(&self.path, "write message"))?;
        if let Some(seq) = written {
            return Ok(WriteOutcome::Written { seq });
        }
        // The id is taken: the same message retried is fine, a different one is a bug.
        let (seq, same) = self
            .conn
            .query_row(
                "SELECT seq, in_reply_to IS ?2 AND deliver_after IS ?3 AND kind = ?4 AND platform_id IS ?5 \
                 AND channel_type IS ?6 AND thread_id IS ?7 AND content = ?8 FROM messages_out WHERE id = ?1",
                params![
                    msg.id.as_str(),
                    msg.in_reply_to.as_ref().map(MessageId::as_str),
                    msg.deliver_after.map(Timestamp::to_canonical),
                    msg.kind.as_str(),
                    msg.route.platform_id,
                    msg.route.channel_type,
                    msg.route.thread_id,
                    msg.content,
                ],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?)),
            )
            .map_err(sqlite_failure(&self.path, "read existing message"))?;
        if same {
            Ok(WriteOutcome::AlreadyPresent { seq })
        } else {
            Err(QueueError::IdempotencyConflict { id: msg.id.clone() })
        }
    }

    fn mark_processing(&mut self, ids: &[MessageId]) -> Result<(), QueueError> {
        self.upsert_acks(ids, Status::Processing)
    }

    fn mark_completed(&mut self, ids: &[MessageId]) -> Result<(), QueueError> {
        self.upsert_acks(ids, Status::Completed)
    }

    fn put_state(&mut self, key: &str, value: &str) -> Result<(), QueueError> {
        self.conn
            .prepare_cached(
                "INSERT INTO session_state (key, value, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .and_then(|mut s| s.execute(params![key, value, Timestamp::now().to_canonical()]))
            .map_err(sqlite_failure(&self.path, "write state"))?;
        Ok(())
    }

    fn load_state(&mut self) -> Result<BTreeMap<String, String>, QueueError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM session_state")
            .map_err(sqlite_failure(&self.path, "read state"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .and_then(|rows| rows.collect::<Result<BTreeMap<_, _>, _>>())
            .map_err(sqlite_failure(&self.path, "read state"))?;
        Ok(rows)
    }

    fn completed_among(&mut self, ids: &[MessageId]) -> Result<Vec<MessageId>, QueueError> {
        self.acked_among(ids, Status::Completed)
    }

    fn claimed_among(&mut self, ids: &[MessageId]) -> Result<Vec<MessageId>, QueueError> {
        self.acked_among(ids, Status::Processing)
    }
}
