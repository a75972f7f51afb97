//! The tamper-evident audit chain: append-only hash-chained JSON lines.
//!
//! Every decision the control plane takes about an agent — a change submitted, a
//! verifier's verdict, a human's approval or refusal, a change applied, a session
//! launched, a token minted — is appended to `<state-dir>/audit.jsonl` *before* the
//! caller acts on it, and the caller fails closed when the append fails.
//!
//! # Format
//!
//! One JSON object per line:
//!
//! ```text
//! {"seq":N,"time":"<canonical Timestamp>","prev_hash":"<64 hex>","event":{...},"hash":"<64 hex>"}
//! ```
//!
//! - `seq` starts at 1 and increases by exactly 1 per line;
//! - `prev_hash` is the previous record's `hash`; the first record's is 64 zeros
//!   ([`GENESIS_HASH`]);
//! - `hash` is the lowercase hex SHA-256 of the canonical bytes of
//!   `{"seq":…,"time":…,"prev_hash":…,"event":…}` (those four fields in that order,
//!   compact, the event's object keys sorted at every depth — exactly what
//!   `serde_json::to_vec` produces for such a struct with the event as a
//!   `serde_json::Value`);
//! - the line itself must be the canonical encoding of its record, byte for byte, so
//!   *any* change to a line is detected, including ones that would not change its
//!   parsed value (whitespace, escapes, duplicate keys).
//!
//! Verification works on `serde_json::Value` events, so a verifier checks records whose
//! event types it does not know (a newer daemon's log); [`AuditRecord::event`] types an
//! event when the caller needs it. The envelope (the five fields) is fixed: an extra
//! top-level field is a broken chain, because it would not be covered by the hash.
//!
//! # What it is for
//!
//! - **Tamper evidence.** Editing a record, reordering records, deleting or duplicating
//!   a record anywhere before the last one breaks the chain, and [`verify`] names the
//!   first bad record (seq and line).
//! - **Durability.** [`AuditLog::append`] returns only after the line is written with a
//!   single `write` and `fdatasync`ed: an `Ok` is on disk. A crash in the middle of a
//!   write leaves a partial last line (a torn tail); [`AuditLog::open`] drops it and
//!   records that it did ([`AuditEvent::TornTailRecovered`]).
//! - **Failing closed.** [`AuditLog::open`] refuses a broken chain rather than appending
//!   to a tampered log, and refuses a file that group or others can read or write.
//!
//! # What it is not for
//!
//! - It does not *prevent* anything: root (or whoever owns the state directory) can
//!   delete or rewrite the file. It detects edits, reorders and deletions *within* the
//!   chain.
//! - Truncation of whole trailing lines cannot be detected from the file alone — a
//!   shorter chain is still a valid chain, and so is an emptied file (0 records). That
//!   needs an anchor kept elsewhere (the daemon's own state, a copy shipped off the
//!   machine): [`verify_against`] checks a log against one; [`AuditLog::last_seq`] and
//!   [`AuditLog::last_hash`] give the values to keep.
//! - A chain rewritten from some point on with fresh hashes is only detected against an
//!   anchor past that point, for the same reason. There is no key in the hash.
//!
//! # Rule for events: no payloads, no secrets
//!
//! The audit log is meant to be read by operators and shipped to other systems. An
//! event names *who* did *what* to *which* object and carries hashes of content, never
//! the content itself: no message text, no persona or tool bodies, no request payloads,
//! no tokens, keys or passwords (a [`AuditEvent::TokenCreated`] names the token, not its
//! secret). When a change's content matters, record its `request_hash`. Events also
//! carry no floating-point numbers: serde_json does not guarantee that a float parses
//! back to the same bits, which would break a record's hash.

mod event;
mod log;
mod record;
mod verify;

pub use event::AuditEvent;
pub use log::{AuditError, AuditLog};
pub use record::{AuditRecord, EventError, GENESIS_HASH, MAX_LINE_BYTES};
pub use verify::{verify, verify_against, ChainError, ChainErrorKind, VerifyReport};
