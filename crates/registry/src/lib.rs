//! The host's data model and its access precedence.
//!
//! What the registry holds: agent groups (persona, provider, and every capability
//! field — tools, packages, mounts, egress, MCP grants), messaging groups, the wirings
//! between them, users, role grants, memberships, permitted destinations, and
//! sessions with their partitioning. What it answers: who may use an agent group and
//! why ([`Registry::access`]), who may decide changes to it
//! ([`Registry::may_decide`]), which session a message belongs to
//! ([`Registry::resolve_session`]).
//!
//! What it is *not* for: deciding whether a capability change is allowed. That is the
//! gateway's job; the registry only stores the outcome. The write methods for
//! capability fields ([`RegistryTx::put_agent_group`],
//! [`RegistryTx::update_agent_group`], roles, members, wirings, destinations) exist
//! for the gateway's appliers — an API layer must route such writes through the
//! gateway, never call them straight from a request (the Go admin API did, which
//! made the gateway optional).
//!
//! Design:
//!
//! - **One implementation, two backends.** [`Registry::open`] is a durable SQLCipher
//!   file opened through the project's one builder
//!   ([`ironclaw_contract::db::open_writer`]) with the registry's own file kind
//!   ([`REGISTRY_FILE`]); [`Registry::in_memory`] is a plain in-memory SQLite database
//!   with the same DDL. Same SQL, so they cannot diverge.
//! - **One transaction per change.** [`Registry::write`] hands a [`RegistryTx`] to a
//!   closure; everything it writes commits together or not at all.
//! - **Validated at every write and every read.** Writes normalize and check each
//!   field (typed [`RegistryError::Invalid`]); reads re-run the same checks, so a
//!   tampered or corrupt row is [`RegistryError::CorruptRow`], never a panic and never
//!   a silently widened grant. The schema repeats what it can (CHECKs, foreign keys,
//!   uniqueness) so that not even a writer bypassing this crate can store it.
//! - **Stricter than the Go system where it was unsafe:** an empty tool list means
//!   only the mandatory tools (not all); a scoped owner grant is refused (not widened
//!   to global); a session is found under the mode it was created with (not
//!   recomputed under the requested one); every capability field is persisted.

mod access;
mod agent_groups;
mod destinations;
mod error;
mod members;
mod messaging_groups;
mod mint;
mod model;
mod reads;
mod registry;
mod roles;
mod rows;
mod schema;
mod sessions;
mod tx;
mod users;
mod validate;
mod wirings;

pub use error::RegistryError;
pub use model::{
    Access, AccessReason, AgentGroup, Destination, McpGrant, Member, MessagingGroup, MountGrant,
    Role, RoleGrant, Session, SessionStatus, User, Wiring, PROVIDERS, USER_KINDS,
};
pub use registry::Registry;
pub use schema::{REGISTRY_APPLICATION_ID, REGISTRY_DDL, REGISTRY_FILE, REGISTRY_VERSION};
pub use tx::RegistryTx;
pub use validate::{LIST_MAX, NAME_MAX_CHARS, PERSONA_MAX_BYTES};

#[cfg(test)]
mod tests;
