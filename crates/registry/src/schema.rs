//! The registry file: its kind tag, version and DDL.
//!
//! The database enforces what it can on its own, so that a bug or a hand edit cannot
//! store what the Rust validation would refuse: `STRICT` tables, CHECK constraints on
//! every closed vocabulary, foreign keys from every reference to the group it names,
//! the partition key of a session unique per mode, an owner grant never scoped.

use ironclaw_contract::schema::FileKind;

/// "ICRG" — IronClaw registry.
pub const REGISTRY_APPLICATION_ID: i64 = 0x4943_5247;
pub const REGISTRY_VERSION: i64 = 1;

/// The registry's file kind, for [`ironclaw_contract::db::open_writer`].
pub static REGISTRY_FILE: FileKind = FileKind {
    name: "registry",
    version: REGISTRY_VERSION,
    application_id: REGISTRY_APPLICATION_ID,
    ddl: REGISTRY_DDL,
};

/// Capability lists are JSON arrays: they are always read and written whole, with the
/// group, so a column each keeps the row the unit of change.
pub const REGISTRY_DDL: &str = r#"
CREATE TABLE agent_groups (
    id            TEXT NOT NULL PRIMARY KEY,
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    provider      TEXT NOT NULL CHECK (provider IN
                      ('mock', 'anthropic', 'openai', 'openrouter', 'ollama', 'openai-compatible')),
    model         TEXT NOT NULL,
    persona       TEXT NOT NULL CHECK (length(CAST(persona AS BLOB)) <= 4096),
    enabled_tools TEXT NOT NULL CHECK (json_valid(enabled_tools) AND json_type(enabled_tools) = 'array'),
    packages      TEXT NOT NULL CHECK (json_valid(packages) AND json_type(packages) = 'array'),
    mounts        TEXT NOT NULL CHECK (json_valid(mounts) AND json_type(mounts) = 'array'),
    egress        TEXT NOT NULL CHECK (json_valid(egress) AND json_type(egress) = 'array'),
    mcp_grants    TEXT NOT NULL CHECK (json_valid(mcp_grants) AND json_type(mcp_grants) = 'array'),
    created_at    TEXT NOT NULL
) STRICT;

CREATE TABLE messaging_groups (
    id                    TEXT    NOT NULL PRIMARY KEY,
    channel_type          TEXT    NOT NULL,
    platform_id           TEXT    NOT NULL,
    instance              TEXT    NOT NULL,
    is_group              INTEGER NOT NULL CHECK (is_group IN (0, 1)),
    unknown_sender_policy TEXT    NOT NULL CHECK (unknown_sender_policy IN ('strict', 'request_approval', 'public')),
    UNIQUE (channel_type, platform_id, instance)
) STRICT;

CREATE TABLE wirings (
    id                     TEXT    NOT NULL PRIMARY KEY,
    messaging_group_id     TEXT    NOT NULL REFERENCES messaging_groups (id),
    agent_group_id         TEXT    NOT NULL REFERENCES agent_groups (id),
    engage_mode            TEXT    NOT NULL CHECK (engage_mode IN ('pattern', 'mention', 'mention-sticky')),
    engage_pattern         TEXT,
    sender_scope           TEXT    NOT NULL CHECK (sender_scope IN ('all', 'known')),
    ignored_message_policy TEXT    NOT NULL CHECK (ignored_message_policy IN ('drop', 'accumulate')),
    session_mode           TEXT    NOT NULL CHECK (session_mode IN ('shared', 'per-thread', 'agent-shared')),
    priority               INTEGER NOT NULL,
    CHECK ((engage_mode = 'pattern') = (engage_pattern IS NOT NULL))
) STRICT;
CREATE INDEX wirings_by_messaging_group ON wirings (messaging_group_id, priority DESC, id);
CREATE INDEX wirings_by_agent_group ON wirings (agent_group_id);

CREATE TABLE users (
    id           TEXT NOT NULL PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('human', 'operator', 'bot')),
    display_name TEXT NOT NULL
) STRICT;

-- No foreign key to users: roles are granted to principals of identity providers,
-- which need not have a users row. A scoped grant does reference its group, so a
-- grant cannot wait, dangling, for a group of that id to be created later.
CREATE TABLE roles (
    user_id        TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('owner', 'admin')),
    agent_group_id TEXT REFERENCES agent_groups (id),
    CHECK (role = 'admin' OR agent_group_id IS NULL)
) STRICT;
-- NULLs are distinct in a UNIQUE constraint; the expression makes the global scope
-- one value so an identical global grant conflicts (and is ignored).
CREATE UNIQUE INDEX roles_unique ON roles (user_id, role, ifnull(agent_group_id, ''));

CREATE TABLE members (
    agent_group_id TEXT NOT NULL REFERENCES agent_groups (id),
    user_id        TEXT NOT NULL,
    PRIMARY KEY (agent_group_id, user_id)
) STRICT;

CREATE TABLE destinations (
    agent_group_id TEXT NOT NULL REFERENCES agent_groups (id),
    channel_type   TEXT NOT NULL,
    platform_id    TEXT NOT NULL,
    PRIMARY KEY (agent_group_id, channel_type, platform_id)
) STRICT;

CREATE TABLE sessions (
    id                 TEXT NOT NULL PRIMARY KEY,
    agent_group_id     TEXT NOT NULL REFERENCES agent_groups (id),
    messaging_group_id TEXT NOT NULL REFERENCES messaging_groups (id),
    thread_id          TEXT,
    mode               TEXT NOT NULL CHECK (mode IN ('shared', 'per-thread', 'agent-shared')),
    partition_key      TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('new', 'running', 'stopped', 'parked')),
    created_at         TEXT NOT NULL,
    last_active        TEXT NOT NULL,
    UNIQUE (mode, partition_key),
    CHECK (mode = 'per-thread' OR thread_id IS NULL)
) STRICT;
"#;
