//! The host's writer of `inbound.db`.

use std::path::{Path, PathBuf};

use ironclaw_contract::db::{open_writer, sqlite_failure, Cipher, DbError};
use ironclaw_contract::enums::Status;
use ironclaw_contract::ids::MessageId;
use ironclaw_contract::queue::{InboundWriter, QueueError};
use ironclaw_contract::rows::{DeliveryRecord, Destination, NewMessageIn, SessionRouting};
use ironclaw_contract::sandbox_queue::column;
use ironclaw_contract::schema::{QueueFile, NEXT_INBOUND_SEQ};
use ironclaw_contract::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// Writes a session's inbound queue. Several may be open on one file at once (router,
/// sweep, delivery); they coordinate through SQLite's locks, which work here because
/// they are all on the host side of the boundary.
pub struct EncryptedInboundWriter {
    conn: Connection,
    path: PathBuf,
}

impl EncryptedInboundWriter {
    pub fn open(path: &Path, cipher: &Cipher) -> Result<Self, DbError> {
        Ok(Self {
            conn: open_writer(path, cipher, QueueFile::Inbound)?,
            path: path.to_owned(),
        })
    }

    fn err(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> QueueError + '_ {
        sqlite_failure(&self.path, op)
    }
}

fn is_primary_key_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error()
        .is_some_and(|f| f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl InboundWriter for EncryptedInboundWriter {
    fn write_message(&mut self, msg: &NewMessageIn) -> Result<i64, QueueError> {
        msg.validate()?;
        let sql = format!(
            "INSERT INTO messages_in (id, seq, kind, timestamp, status, process_after, recurrence, \
             series_id, tries, \"trigger\", platform_id, channel_type, thread_id, content, \
             source_session_id, on_wake, provenance) \
             VALUES (?1, {NEXT_INBOUND_SEQ}, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9, ?10, ?11, ?12, ?13, 0, ?14) \
             RETURNING seq"
        );
        let result = self.conn.prepare_cached(&sql).and_then(|mut stmt| {
            stmt.query_row(
                params![
                    msg.id.as_str(),
                    msg.kind.as_str(),
                    msg.timestamp.to_canonical(),
                    msg.status().as_str(),
                    msg.process_after.map(Timestamp::to_canonical),
                    msg.recurrence,
                    msg.series_id,
                    msg.trigger,
                    msg.route.platform_id,
                    msg.route.channel_type,
                    msg.route.thread_id,
                    msg.content,
                    msg.source_session_id.as_ref().map(|s| s.as_str()),
                    msg.provenance.as_str(),
                ],
                |r| r.get::<_, i64>(0),
            )
        });
        match result {
            Ok(seq) => Ok(seq),
            Err(e) if is_primary_key_violation(&e) => {
                Err(QueueError::DuplicateId { id: msg.id.clone() })
            }
            Err(e) => Err(self.err("write message")(e)),
        }
    }

    fn retire(&mut self, ids: &[MessageId]) -> Result<usize, QueueError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let err = |op| sqlite_failure(&self.path, op);
        // IMMEDIATE: several host writers share this file (router, sweep, delivery);
        // a deferred transaction that upgrades from read to write can be refused at once
        // with SQLITE_BUSY instead of waiting under the busy timeout.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("begin retire"))?;
        let mut changed = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE messages_in SET status = 'completed' \
                     WHERE id = ?1 AND status IN ('queued', 'scheduled')",
                )
                .map_err(err("prepare retire"))?;
            for id in ids {
                changed += stmt.execute([id.as_str()]).map_err(err("retire"))?;
            }
        }
        tx.commit().map_err(err("commit retire"))?;
        Ok(changed)
    }

    fn upsert_destinations(&mut self, destinations: &[Destination]) -> Result<(), QueueError> {
        let err = |op| sqlite_failure(&self.path, op);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("begin destinations"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO destinations (name, display_name, type, channel_type, platform_id, agent_group_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO UPDATE SET \
                     display_name = excluded.display_name, type = excluded.type, \
                     channel_type = excluded.channel_type, platform_id = excluded.platform_id, \
                     agent_group_id = excluded.agent_group_id",
                )
                .map_err(err("prepare destinations"))?;
            for d in destinations {
                stmt.execute(params![
                    d.name,
                    d.display_name,
                    d.kind,
                    d.channel_type,
                    d.platform_id,
                    d.agent_group_id.as_ref().map(|g| g.as_str()),
                ])
                .map_err(err("write destination"))?;
            }
        }
        tx.commit().map_err(err("commit destinations"))?;
        Ok(())
    }

    fn set_session_routing(&mut self, routing: &SessionRouting) -> Result<(), QueueError> {
        self.conn
            .execute(
                "INSERT INTO session_routing (id, channel_type, platform_id, thread_id) VALUES (1, ?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET channel_type = excluded.channel_type, \
                 platform_id = excluded.platform_id, thread_id = excluded.thread_id",
                params![routing.channel_type, routing.platform_id, routing.thread_id],
            )
            .map_err(self.err("write routing"))?;
        Ok(())
    }

    fn mark_delivered(
        &mut self,
        id: &MessageId,
        platform_message_id: Option<&str>,
    ) -> Result<bool, QueueError> {
        let changed = self
            .conn
            .execute(
                "INSERT INTO delivered (message_out_id, platform_message_id, status, attempts, last_error, delivered_at) \
                 VALUES (?1, ?2, 'delivered', 1, NULL, ?3) ON CONFLICT (message_out_id) DO UPDATE SET \
                 status = 'delivered', platform_message_id = excluded.platform_message_id, \
                 attempts = delivered.attempts + 1, last_error = NULL, delivered_at = excluded.delivered_at \
                 WHERE delivered.status != 'delivered'",
                params![id.as_str(), platform_message_id, Timestamp::now().to_canonical()],
            )
            .map_err(self.err("mark delivered"))?;
        Ok(changed == 1)
    }

    fn mark_dead_letter(
        &mut self,
        id: &MessageId,
        attempts: i64,
        error: &str,
    ) -> Result<(), QueueError> {
        if attempts < 0 {
            return Err(QueueError::Invalid {
                what: "attempts",
                reason: format!("{attempts} is negative"),
            });
        }
        // A delivered message is never downgraded: delivery is a fact.
        self.conn
            .execute(
                "INSERT INTO delivered (message_out_id, platform_message_id, status, attempts, last_error, delivered_at) \
                 VALUES (?1, NULL, 'dead_letter', ?2, ?3, ?4) ON CONFLICT (message_out_id) DO UPDATE SET \
                 status = 'dead_letter', attempts = excluded.attempts, last_error = excluded.last_error, \
                 delivered_at = excluded.delivered_at WHERE delivered.status != 'delivered'",
                params![id.as_str(), attempts, error, Timestamp::now().to_canonical()],
            )
            .map_err(self.err("mark dead letter"))?;
        Ok(())
    }

    fn delivery(&mut self, id: &MessageId) -> Result<Option<DeliveryRecord>, QueueError> {
        let path = self.path.clone();
        let row = self
            .conn
            .query_row(
                "SELECT rowid, message_out_id, status, platform_message_id, attempts, last_error, delivered_at \
                 FROM delivered WHERE message_out_id = ?1",
                [id.as_str()],
                |row| {
                    use column::*;
                    Ok((|| {
                        Ok::<_, String>(DeliveryRecord {
                            message_out_id: parsed(row, 1, "message_out_id")?,
                            status: parsed::<Status>(row, 2, "status")?,
                            platform_message_id: opt_text(row, 3, "platform_message_id")?,
                            attempts: int(row, 4, "attempts")?,
                            last_error: opt_text(row, 5, "last_error")?,
                            updated_at: time(row, 6, "delivered_at")?,
                        })
                    })())
                },
            )
            .optional()
            .map_err(self.err("read delivery"))?;
        row.transpose().map_err(|reason| QueueError::Invalid {
            what: "delivery record",
            reason: format!("{}: {reason}", path.display()),
        })
    }
}
