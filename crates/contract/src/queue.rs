//! The four queue traits.
//!
//! Each session has two files with exactly one writer each:
//!
//! | | `inbound.db` | `outbound.db` |
//! |---|---|---|
//! | host | [`InboundWriter`] | [`OutboundReader`] |
//! | sandbox | [`InboundReader`] | [`OutboundWriter`] |
//!
//! The sandbox is handed an `InboundReader + OutboundWriter` and nothing else; the
//! durable inbound writer is implemented only in the host crate `ironclaw-queue`, which
//! the sandbox binary does not link — so sandbox code cannot even name a write to
//! inbound. The read-only connection (`query_only`) and the read-only bind mount are the
//! second and third layers.
//!
//! Sequence numbers are never supplied by callers: writers take `New*` rows and mint the
//! seq inside the INSERT (host even, sandbox odd).

use std::collections::BTreeMap;

use crate::enums::Status;
use crate::ids::MessageId;
use crate::rows::{
    AckCursor, DeliveryRecord, Destination, MessageIn, MessageOut, NewMessageIn, NewMessageOut,
    ProcessingAck, SessionRouting, WriteOutcome,
};
use crate::time::Timestamp;

/// A failure of a queue operation.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The file could not be opened, decrypted, validated or read.
    #[cfg(feature = "db")]
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// A message with this id exists with different content (outbound ids are
    /// idempotency keys, so reusing one for a different message is a bug).
    #[error("message id {id} is already used by a different message")]
    IdempotencyConflict { id: MessageId },
    /// A message with this id already exists (inbound ids are unique).
    #[error("message id {id} already exists")]
    DuplicateId { id: MessageId },
    /// The caller passed something the schema would refuse.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

/// A row the reader could not turn into a typed value. The other rows of the same read
/// are still returned: one bad row never blocks a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    /// SQLite rowid (or position, for the in-memory backend): stable for the file.
    pub rowid: i64,
    /// The id column as stored, if it was text.
    pub raw_id: Option<String>,
    pub reason: String,
}

/// The result of a read: the valid rows and the ones that were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<T> {
    pub rows: Vec<T>,
    pub rejected: Vec<RejectedRow>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            rejected: Vec::new(),
        }
    }
}

/// Host side of `inbound.db`: the only writer of the file.
pub trait InboundWriter: Send {
    /// Appends a message; returns the even seq minted for it.
    fn write_message(&mut self, msg: &NewMessageIn) -> Result<i64, QueueError>;
    /// Marks inbound messages as retired (`completed`) once the sandbox has acked them,
    /// so that readers stop seeing them. Returns how many rows changed.
    fn retire(&mut self, ids: &[MessageId]) -> Result<usize, QueueError>;
    /// Inserts or replaces destinations by name (never deletes).
    fn upsert_destinations(&mut self, destinations: &[Destination]) -> Result<(), QueueError>;
    /// Sets where the session's replies go by default.
    fn set_session_routing(&mut self, routing: &SessionRouting) -> Result<(), QueueError>;
    /// Records that an outbound message was delivered. Returns false if it already was.
    fn mark_delivered(
        &mut self,
        id: &MessageId,
        platform_message_id: Option<&str>,
    ) -> Result<bool, QueueError>;
    /// Records that an outbound message will not be delivered.
    fn mark_dead_letter(
        &mut self,
        id: &MessageId,
        attempts: i64,
        error: &str,
    ) -> Result<(), QueueError>;
    /// The delivery record of an outbound message, if any.
    fn delivery(&mut self, id: &MessageId) -> Result<Option<DeliveryRecord>, QueueError>;
}

/// Sandbox side of `inbound.db`: read-only.
pub trait InboundReader: Send {
    /// Messages with status `queued` or `scheduled` that are due at `now`, by seq.
    fn pending_messages(&mut self, now: Timestamp) -> Result<Batch<MessageIn>, QueueError>;
    /// Scheduled messages that are not yet due, by seq (for the host's sweep and the
    /// agent's `list_tasks`).
    fn scheduled_messages(&mut self) -> Result<Batch<MessageIn>, QueueError>;
    /// Published destinations, by name.
    fn destinations(&mut self) -> Result<Vec<Destination>, QueueError>;
    /// The session's default route, if the host has set one.
    fn session_routing(&mut self) -> Result<Option<SessionRouting>, QueueError>;
}

/// Sandbox side of `outbound.db`: the only writer of the file.
pub trait OutboundWriter: Send {
    /// Appends a message, minting an odd seq — or, if a message with the same id and
    /// content is already stored, returns its seq without writing anything.
    fn write_message(&mut self, msg: &NewMessageOut) -> Result<WriteOutcome, QueueError>;
    /// Claims inbound messages (`processing`).
    fn mark_processing(&mut self, ids: &[MessageId]) -> Result<(), QueueError>;
    /// Finishes inbound messages (`completed`).
    fn mark_completed(&mut self, ids: &[MessageId]) -> Result<(), QueueError>;
    /// Stores a piece of the agent's durable loop state.
    fn put_state(&mut self, key: &str, value: &str) -> Result<(), QueueError>;
    /// Reads back the agent's durable loop state.
    fn load_state(&mut self) -> Result<BTreeMap<String, String>, QueueError>;
    /// Inbound ids this session has already completed, among `ids`.
    fn completed_among(&mut self, ids: &[MessageId]) -> Result<Vec<MessageId>, QueueError>;
    /// Inbound ids an engage claimed (`processing`) and never completed, among `ids`:
    /// the batch of an attempt that crashed or failed part-way.
    fn claimed_among(&mut self, ids: &[MessageId]) -> Result<Vec<MessageId>, QueueError>;
}

/// Host side of `outbound.db`: read-only.
pub trait OutboundReader: Send {
    /// Messages with `seq > after_seq` that are due at `now`, by seq.
    fn due_messages(
        &mut self,
        now: Timestamp,
        after_seq: i64,
    ) -> Result<Batch<MessageOut>, QueueError>;
    /// Acknowledgements with `status`, ordered by `(status_changed, message_id)` and
    /// starting after `after` (see [`ProcessingAck::cursor`]), at most
    /// [`crate::rows::MAX_BATCH`].
    fn processing_acks(
        &mut self,
        status: Status,
        after: Option<&AckCursor>,
    ) -> Result<Batch<ProcessingAck>, QueueError>;
}
