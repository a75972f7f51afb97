//! The host's reader of `outbound.db`.
//!
//! Everything in this file was written by the sandbox, which holds the key and owns the
//! file: it is untrusted input. Every column is decoded and validated; a row that fails
//! is reported in [`Batch::rejected`] and the rest are still returned, so a bad row
//! neither crashes the host nor blocks the session's other messages. Content larger
//! than [`MAX_CONTENT_BYTES`] is refused without being loaded.

use std::path::{Path, PathBuf};

use ironclaw_contract::db::{read_snapshot, Cipher, DbError, SnapshotPolicy};
use ironclaw_contract::enums::{MessageKind, Status};
use ironclaw_contract::ids::MessageId;
use ironclaw_contract::queue::{Batch, OutboundReader, QueueError};
use ironclaw_contract::rows::{
    AckCursor, MessageOut, NewMessageOut, ProcessingAck, Route, MAX_BATCH, MAX_CONTENT_BYTES,
};
use ironclaw_contract::sandbox_queue::{column, rejected};
use ironclaw_contract::schema::QueueFile;
use ironclaw_contract::time::Timestamp;
use rusqlite::{Connection, Row};

/// Reads a session's outbound queue through the snapshot protocol, reopening the file
/// for every read.
pub struct EncryptedOutboundReader {
    path: PathBuf,
    cipher: Cipher,
    policy: SnapshotPolicy,
}

impl EncryptedOutboundReader {
    /// Checks that the file opens with this key and is an outbound queue.
    pub fn open(path: impl Into<PathBuf>, cipher: Cipher) -> Result<Self, DbError> {
        let reader = Self {
            path: path.into(),
            cipher,
            policy: SnapshotPolicy::default(),
        };
        reader.read(|_| Ok(()))?;
        Ok(reader)
    }

    pub fn with_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T>(&self, f: impl FnMut(&Connection) -> rusqlite::Result<T>) -> Result<T, DbError> {
        read_snapshot(
            &self.path,
            &self.cipher,
            QueueFile::Outbound,
            self.policy,
            f,
        )
    }
}

fn decode_message_out(row: &Row<'_>) -> Result<MessageOut, String> {
    use column::*;
    let size = int(row, 11, "content size")?;
    if size > MAX_CONTENT_BYTES as i64 {
        return Err(format!(
            "content is {size} bytes; the limit is {MAX_CONTENT_BYTES}"
        ));
    }
    let seq = int(row, 2, "seq")?;
    if seq <= 0 || seq % 2 != 1 {
        return Err(format!("seq {seq} is not a positive odd number"));
    }
    Ok(MessageOut {
        seq,
        message: NewMessageOut {
            id: parsed::<MessageId>(row, 1, "id")?,
            in_reply_to: opt_parsed::<MessageId>(row, 3, "in_reply_to")?,
            timestamp: time(row, 4, "timestamp")?,
            deliver_after: opt_time(row, 5, "deliver_after")?,
            kind: parsed::<MessageKind>(row, 6, "kind")?,
            route: Route {
                platform_id: opt_text(row, 7, "platform_id")?,
                channel_type: opt_text(row, 8, "channel_type")?,
                thread_id: opt_text(row, 9, "thread_id")?,
            },
            content: text(row, 10, "content")?,
        },
    })
}

fn decode_ack(row: &Row<'_>) -> Result<ProcessingAck, String> {
    use column::*;
    let status = parsed::<Status>(row, 2, "status")?;
    if !matches!(status, Status::Processing | Status::Completed) {
        return Err(format!(
            "ack status {status} is not processing or completed"
        ));
    }
    Ok(ProcessingAck {
        message_id: parsed(row, 1, "message_id")?,
        status,
        status_changed: time(row, 3, "status_changed")?,
    })
}

impl OutboundReader for EncryptedOutboundReader {
    fn due_messages(
        &mut self,
        now: Timestamp,
        after_seq: i64,
    ) -> Result<Batch<MessageOut>, QueueError> {
        // `octet_length` reads a value's size from the record header without loading
        // it, so an oversized row costs nothing to refuse.
        let sql = format!(
            "SELECT rowid, id, seq, in_reply_to, timestamp, deliver_after, kind, platform_id, \
             channel_type, thread_id, \
             CASE WHEN octet_length(content) > {MAX_CONTENT_BYTES} THEN NULL ELSE content END, \
             octet_length(content) \
             FROM messages_out WHERE seq > ?1 AND (deliver_after IS NULL OR deliver_after <= ?2) \
             ORDER BY seq LIMIT {MAX_BATCH}"
        );
        let now_text = now.to_canonical();
        let mut batch = self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params![after_seq, now_text])?;
            let mut batch = Batch::default();
            while let Some(row) = rows.next()? {
                match decode_message_out(row) {
                    Ok(m) => batch.rows.push(m),
                    Err(reason) => batch.rejected.push(rejected(row, reason)),
                }
            }
            Ok(batch)
        })?;
        batch.rows.retain(|m| m.is_due(now));
        Ok(batch)
    }

    fn processing_acks(
        &mut self,
        status: Status,
        after: Option<&AckCursor>,
    ) -> Result<Batch<ProcessingAck>, QueueError> {
        let sql = format!(
            "SELECT rowid, message_id, status, status_changed FROM processing_ack \
             WHERE status = ?1 AND (status_changed, message_id) > (?2, ?3) \
             ORDER BY status_changed, message_id LIMIT {MAX_BATCH}"
        );
        // The empty string sorts before every timestamp and id.
        let (after_time, after_id) = after
            .map(|c| {
                (
                    c.status_changed.to_canonical(),
                    c.message_id.as_str().to_owned(),
                )
            })
            .unwrap_or_default();
        Ok(self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params![status.as_str(), after_time, after_id])?;
            let mut batch = Batch::default();
            while let Some(row) = rows.next()? {
                match decode_ack(row) {
                    Ok(a) => batch.rows.push(a),
                    Err(reason) => batch.rejected.push(rejected(row, reason)),
                }
            }
            Ok(batch)
        })?)
    }
}
