//! The change store: every change request and its state, durable across restarts.
//!
//! One SQLCipher file (`<state>/changes.db`, keyed from the master key) opened through
//! the contract's builder, or an in-memory SQLite database with the same SQL for tests.
//! Transitions are compare-and-set on the current status, so two deciders racing on one
//! change cannot both win, and a decided change cannot be decided again.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use ironclaw_contract::db::{open_writer, Cipher, DbError};
use ironclaw_contract::enums::ChangeStatus;
use ironclaw_contract::gateway::{ChangeRequest, Decision, VerifierVerdict};
use ironclaw_contract::ids::ChangeId;
use ironclaw_contract::schema::FileKind;
use ironclaw_contract::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The change store's file kind.
pub const CHANGES_FILE: FileKind = FileKind {
    name: "changes",
    version: 1,
    // "ICCH"
    application_id: 0x4943_4348,
    ddl: DDL,
};

const DDL: &str = r#"
CREATE TABLE changes (
    id             TEXT NOT NULL PRIMARY KEY,
    kind           TEXT NOT NULL,
    agent_group_id TEXT NOT NULL,
    requested_by   TEXT NOT NULL,
    request_json   TEXT NOT NULL,
    request_hash   TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'applied', 'apply_failed', 'rejected')),
    verdicts_json  TEXT NOT NULL,
    decision_json  TEXT,
    error          TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
) STRICT;
CREATE INDEX changes_by_status ON changes (status, created_at, id);
"#;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("change store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("change {id}: stored record is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("change {0} already exists")]
    Duplicate(ChangeId),
}

/// A change request and everything that happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub request: ChangeRequest,
    /// Hex SHA-256 of the request's canonical bytes; decisions bind to it.
    pub request_hash: String,
    pub status: ChangeStatus,
    pub verdicts: Vec<VerifierVerdict>,
    pub decision: Option<Decision>,
    /// Why applying failed, for `apply_failed`.
    pub error: Option<String>,
    pub updated_at: Timestamp,
}

/// Hex SHA-256 of a request's canonical bytes.
pub fn request_hash(req: &ChangeRequest) -> String {
    let digest = Sha256::digest(req.canonical_bytes());
    ironclaw_contract::hex::encode(&digest)
}

pub struct ChangeStore {
    conn: Mutex<Connection>,
}

const COLUMNS: &str =
    "id, request_json, request_hash, status, verdicts_json, decision_json, error, updated_at";

impl ChangeStore {
    pub fn open(path: &Path, cipher: &Cipher) -> Result<Self, StoreError> {
        Ok(Self {
            conn: Mutex::new(open_writer(path, cipher, &CHANGES_FILE)?),
        })
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(DDL)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // The connection holds no invariant a panicking holder could break half-way
        // (every multi-statement change is one SQL transaction).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, rec: &ChangeRecord) -> Result<(), StoreError> {
        let r = &rec.request;
        let result = self.conn().execute(
            "INSERT INTO changes (id, kind, agent_group_id, requested_by, request_json, request_hash, status, \
             verdicts_json, decision_json, error, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                r.id.as_str(),
                r.kind.as_str(),
                r.agent_group_id.as_str(),
                r.requested_by.as_str(),
                String::from_utf8_lossy(&r.canonical_bytes()),
                rec.request_hash,
                rec.status.as_str(),
                serde_json::to_string(&rec.verdicts).unwrap_or_else(|_| "[]".into()),
                rec.decision.as_ref().and_then(|d| serde_json::to_string(d).ok()),
                rec.error,
                r.created_at.to_canonical(),
                rec.updated_at.to_canonical(),
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                Err(StoreError::Duplicate(r.id.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a change that never became visible (its audit record could not be
    /// written).
    pub fn remove(&self, id: &ChangeId) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM changes WHERE id = ?1", [id.as_str()])?;
        Ok(())
    }

    pub fn get(&self, id: &ChangeId) -> Result<Option<ChangeRecord>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM changes WHERE id = ?1"),
                [id.as_str()],
                raw_row,
            )
            .optional()?;
        row.map(decode).transpose()
    }

    /// Changes in `status`, oldest first.
    pub fn with_status(&self, status: ChangeStatus) -> Result<Vec<ChangeRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM changes WHERE status = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt
            .query_map([status.as_str()], raw_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(decode).collect()
    }

    /// Decided changes, most recently updated first.
    pub fn history(&self, limit: usize) -> Result<Vec<ChangeRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM changes WHERE status != 'pending' ORDER BY updated_at DESC, id LIMIT ?1"
        ))?;
        let rows = stmt
            .query_map([limit as i64], raw_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(decode).collect()
    }

    pub fn count(&self, status: ChangeStatus) -> Result<u64, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT count(*) FROM changes WHERE status = ?1",
            [status.as_str()],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }

    /// Moves a change from one of `from` to `to`, setting the given fields. Returns
    /// false (and changes nothing) if the change is not currently in one of `from`.
    pub fn transition(
        &self,
        id: &ChangeId,
        from: &[ChangeStatus],
        to: &Transition,
    ) -> Result<bool, StoreError> {
        let from_list = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE changes SET status = ?2, \
             verdicts_json = COALESCE(?3, verdicts_json), \
             decision_json = COALESCE(?4, decision_json), \
             error = ?5, updated_at = ?6 \
             WHERE id = ?1 AND status IN ({from_list})"
        );
        let changed = self.conn().execute(
            &sql,
            params![
                id.as_str(),
                to.status.as_str(),
                to.verdicts
                    .as_ref()
                    .and_then(|v| serde_json::to_string(v).ok()),
                to.decision
                    .as_ref()
                    .and_then(|d| serde_json::to_string(d).ok()),
                to.error,
                Timestamp::now().to_canonical(),
            ],
        )?;
        Ok(changed == 1)
    }
}

/// The new state of a change in [`ChangeStore::transition`].
#[derive(Debug, Clone)]
pub struct Transition {
    pub status: ChangeStatus,
    pub verdicts: Option<Vec<VerifierVerdict>>,
    pub decision: Option<Decision>,
    pub error: Option<String>,
}

impl Transition {
    pub fn to(status: ChangeStatus) -> Self {
        Self {
            status,
            verdicts: None,
            decision: None,
            error: None,
        }
    }
}

type RawRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn decode(raw: RawRow) -> Result<ChangeRecord, StoreError> {
    let (id, request_json, hash, status, verdicts, decision, error, updated_at) = raw;
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.clone(),
        reason,
    };
    let request =
        ChangeRequest::from_json(request_json.as_bytes()).map_err(|e| corrupt(e.to_string()))?;
    // The approval binds to this hash: a stored request that no longer matches it was
    // altered after submission and must not be decided or applied.
    if request_hash(&request) != hash {
        return Err(corrupt("request does not match its content hash".into()));
    }
    Ok(ChangeRecord {
        status: status
            .parse()
            .map_err(|e: ironclaw_contract::enums::UnknownValue| corrupt(e.to_string()))?,
        verdicts: serde_json::from_str(&verdicts).map_err(|e| corrupt(format!("verdicts: {e}")))?,
        decision: decision
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(|e| corrupt(format!("decision: {e}")))?,
        error,
        updated_at: Timestamp::parse(&updated_at).map_err(|e| corrupt(e.to_string()))?,
        request,
        request_hash: hash,
    })
}
