//! The change gateway: nothing changes what an agent may do without a human.
//!
//! - [`payload`]: strict per-kind payload schemas, checked at submit;
//! - [`verify`]: the deterministic verifier chain, always ending in the human floor;
//! - [`store`]: the durable change store (SQLCipher), compare-and-set transitions;
//! - [`apply`]: the registry effects of each kind, one transaction per change;
//! - [`operators`]: minting and revoking operators' tokens with their roles, owners only;
//! - [`Gateway`]: submit → verify → decide (authenticated, never self, never a sandbox)
//!   → apply exactly the stored request → audit every step, failing closed.
//!
//! States: `pending → approved → applied | apply_failed`, `pending → rejected`;
//! `apply_failed → approved` on an operator's retry.
//!
//! Not here: authentication (the API maps tokens to principals) and the decision of
//! *who* is an owner or admin (the registry).

pub mod apply;
mod gateway;
pub mod operators;
pub mod payload;
pub mod store;
pub mod verify;

pub use gateway::{Gateway, GatewayError, GatewayStats, Submission};
pub use operators::{OperatorError, Operators};
pub use store::{request_hash, ChangeRecord, ChangeStore, StoreError, CHANGES_FILE};
pub use verify::Chain;
