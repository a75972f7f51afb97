//! # FROZEN CONTRACT — changes need an RFC entry in `docs/contract.md`
//!
//! `ironclaw-contract` is the only crate that both the IronClaw host and the agent
//! inside each gVisor sandbox depend on. Everything the two sides must agree on lives
//! here and nowhere else:
//!
//! - [`ids`]: validated identifiers (a session id becomes a path, so it is checked once,
//!   here, before it can become one);
//! - [`enums`]: closed vocabularies with their exact wire strings;
//! - [`time`]: the one timestamp encoding used in every queue column;
//! - [`rows`]: the rows of the two queue files;
//! - [`schema`]: the DDL of `inbound.db` and `outbound.db` and their schema versions;
//! - [`db`]: the one SQLCipher connection builder, the key, and the lock-free read
//!   protocol both sides use (feature `db`);
//! - [`queue`]: the four queue traits — the sandbox is handed `InboundReader +
//!   OutboundWriter`, the host `InboundWriter + OutboundReader`;
//! - [`sandbox_queue`]: the sandbox's durable implementations of its two traits;
//! - [`actions`]: the system-action wire formats an agent writes into outbound;
//! - [`gateway`]: the change-request protocol types;
//! - [`paths`]: the table of in-sandbox paths and the host's state-dir layout.
//!
//! Why frozen: drift between host and sandbox does not fail the build; it fails at run
//! time as a file that will not decrypt or a row nobody understands. So a change here
//! lands only with an RFC entry in `docs/contract.md` and both sides updated in the same
//! commit.
//!
//! What this crate is *not* for: host policy (who may approve what, how a system action
//! is re-authorized) and host storage (registry, change store). Those live in host
//! crates, which the sandbox never links.

pub mod actions;
pub mod enums;
pub mod gateway;
pub mod hex;
pub mod ids;
pub mod key;
pub mod paths;
pub mod queue;
pub mod rows;
pub mod time;
pub mod tools;

#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "db")]
pub mod sandbox_queue;
#[cfg(feature = "db")]
pub mod schema;
