//! The DDL of the two queue files and their versions.
//!
//! Stricter than the Go schema it descends from: `STRICT` tables (column types are
//! enforced), `NOT NULL` wherever a value is always written, CHECK constraints on every
//! closed vocabulary and on seq parity (inbound even, outbound odd), `UNIQUE(seq)`, and
//! a version in `PRAGMA user_version` plus a file-kind tag in `PRAGMA application_id`,
//! both checked at every open. The file itself therefore refuses a wrong-parity row,
//! even from a writer that bypassed this crate.

/// A kind of encrypted database file: its name, schema, version and file tag. The queue
/// files are two kinds; host crates define their own (the registry, the change store)
/// and open them through the same builder, so every encrypted file of the system gets
/// the same cipher settings and the same checks at open.
#[derive(Debug, PartialEq, Eq)]
pub struct FileKind {
    pub name: &'static str,
    /// Stored in `PRAGMA user_version`; checked at every open.
    pub version: i64,
    /// Stored in `PRAGMA application_id`; tells one kind of file from another.
    pub application_id: i64,
    /// Executed once, in one transaction, when the file is created.
    pub ddl: &'static str,
}

/// Anything that names a [`FileKind`].
pub trait FileSchema: Copy {
    fn kind(self) -> &'static FileKind;
}

impl FileSchema for &'static FileKind {
    fn kind(self) -> &'static FileKind {
        self
    }
}

pub const INBOUND: FileKind = FileKind {
    name: "inbound",
    version: INBOUND_VERSION,
    application_id: INBOUND_APPLICATION_ID,
    ddl: INBOUND_DDL,
};

pub const OUTBOUND: FileKind = FileKind {
    name: "outbound",
    version: OUTBOUND_VERSION,
    application_id: OUTBOUND_APPLICATION_ID,
    ddl: OUTBOUND_DDL,
};

impl FileSchema for QueueFile {
    fn kind(self) -> &'static FileKind {
        match self {
            QueueFile::Inbound => &INBOUND,
            QueueFile::Outbound => &OUTBOUND,
        }
    }
}

/// Which of the two queue files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFile {
    Inbound,
    Outbound,
}

impl QueueFile {
    pub fn name(self) -> &'static str {
        self.kind().name
    }

    /// The name of the queue file kind tagged `application_id`, if it is one.
    pub fn name_of_tag(application_id: i64) -> Option<&'static str> {
        [QueueFile::Inbound, QueueFile::Outbound]
            .into_iter()
            .find(|f| f.kind().application_id == application_id)
            .map(QueueFile::name)
    }
}

pub const INBOUND_VERSION: i64 = 1;
pub const OUTBOUND_VERSION: i64 = 1;
/// "ICQI" — IronClaw queue, inbound.
pub const INBOUND_APPLICATION_ID: i64 = 0x4943_5149;
/// "ICQO" — IronClaw queue, outbound.
pub const OUTBOUND_APPLICATION_ID: i64 = 0x4943_514F;

/// `inbound.db`: written only by the host.
pub const INBOUND_DDL: &str = r#"
CREATE TABLE messages_in (
    id                TEXT    NOT NULL PRIMARY KEY,
    seq               INTEGER NOT NULL UNIQUE CHECK (seq > 0 AND seq % 2 = 0),
    kind              TEXT    NOT NULL CHECK (kind IN ('chat', 'task', 'webhook', 'system')),
    timestamp         TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('queued', 'scheduled', 'completed')),
    process_after     TEXT,
    recurrence        TEXT,
    series_id         TEXT,
    tries             INTEGER NOT NULL DEFAULT 0 CHECK (tries >= 0),
    "trigger"         INTEGER NOT NULL CHECK ("trigger" IN (0, 1)),
    platform_id       TEXT,
    channel_type      TEXT,
    thread_id         TEXT,
    content           TEXT    NOT NULL,
    source_session_id TEXT,
    on_wake           INTEGER NOT NULL DEFAULT 0 CHECK (on_wake IN (0, 1)),
    provenance        TEXT    NOT NULL CHECK (provenance IN ('verified', 'unverified', 'host')),
    CHECK ((status = 'scheduled') = (process_after IS NOT NULL) OR status = 'completed')
) STRICT;
CREATE INDEX messages_in_by_status ON messages_in (status, seq);
CREATE TABLE destinations (
    name           TEXT NOT NULL PRIMARY KEY,
    display_name   TEXT,
    type           TEXT NOT NULL,
    channel_type   TEXT,
    platform_id    TEXT,
    agent_group_id TEXT
) STRICT;
CREATE TABLE session_routing (
    id           INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    channel_type TEXT    NOT NULL,
    platform_id  TEXT    NOT NULL,
    thread_id    TEXT
) STRICT;
CREATE TABLE delivered (
    message_out_id      TEXT    NOT NULL PRIMARY KEY,
    platform_message_id TEXT,
    status              TEXT    NOT NULL CHECK (status IN ('delivered', 'dead_letter')),
    attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error          TEXT,
    delivered_at        TEXT    NOT NULL
) STRICT;
"#;

/// `outbound.db`: written only by the sandbox.
pub const OUTBOUND_DDL: &str = r#"
CREATE TABLE messages_out (
    id            TEXT    NOT NULL PRIMARY KEY,
    seq           INTEGER NOT NULL UNIQUE CHECK (seq > 0 AND seq % 2 = 1),
    in_reply_to   TEXT,
    timestamp     TEXT    NOT NULL,
    deliver_after TEXT,
    recurrence    TEXT,
    kind          TEXT    NOT NULL CHECK (kind IN ('chat', 'task', 'webhook', 'system')),
    platform_id   TEXT,
    channel_type  TEXT,
    thread_id     TEXT,
    content       TEXT    NOT NULL
) STRICT;
CREATE TABLE processing_ack (
    message_id     TEXT NOT NULL PRIMARY KEY,
    status         TEXT NOT NULL CHECK (status IN ('processing', 'completed')),
    status_changed TEXT NOT NULL
) STRICT;
CREATE TABLE session_state (
    key        TEXT NOT NULL PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE TABLE container_state (
    id                       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    current_tool             TEXT,
    tool_declared_timeout_ms INTEGER,
    tool_started_at          TEXT,
    updated_at               TEXT NOT NULL
) STRICT;
"#;

/// The seq expression of the inbound INSERT: even, strictly increasing. Evaluated
/// inside the INSERT, which holds the write lock from its first step, so two writers
/// can never read the same maximum.
pub const NEXT_INBOUND_SEQ: &str = "(SELECT COALESCE(MAX(seq), 0) + 2 FROM messages_in)";
/// The seq expression of the outbound INSERT: odd, strictly increasing.
pub const NEXT_OUTBOUND_SEQ: &str = "(SELECT COALESCE(MAX(seq), -1) + 2 FROM messages_out)";
