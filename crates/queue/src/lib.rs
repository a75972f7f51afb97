//! Host side of the per-session encrypted queues.
//!
//! - [`QueueFactory`]: the per-session directories and files under
//!   `<state>/sessions/<id>/` (directories 0700, files 0600) and the host's handles on
//!   them;
//! - [`EncryptedInboundWriter`] / [`EncryptedOutboundReader`]: the durable SQLCipher
//!   implementations of the host's two queue traits;
//! - [`MemoryQueue`]: in-memory implementations of all four traits, for tests and
//!   embedding. They pass the same conformance suite as the durable ones
//!   (`tests/conformance.rs`), so code tested against them behaves the same on disk.
//!
//! Not here: the sandbox's handles (they are in `ironclaw-contract`, the only crate the
//! sandbox links) and anything about *when* to read or write (delivery, router, sweep).

mod factory;
mod inbound;
mod memory;
mod outbound;

pub use factory::{ProvisionError, QueueFactory};
pub use inbound::EncryptedInboundWriter;
pub use memory::MemoryQueue;
pub use outbound::EncryptedOutboundReader;
