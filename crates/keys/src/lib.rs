//! Key custody for the IronClaw host: the master key, the sealed store of per-session
//! keys, and master-key rotation.
//!
//! What this crate is for:
//!
//! - [`MasterKey`]: the host's 32-byte root secret in `<state>/master.key`
//!   ([`HostLayout::master_key`]). It is created once from the OS RNG, refused if its file
//!   is reachable by anyone but its owner, and used to seal session keys and to derive
//!   the keys of the host's other encrypted files ([`MasterKey::derive`]).
//! - [`KeyCustodian`]: the durable store of per-session queue keys in
//!   `<state>/sealed-keys` ([`HostLayout::sealed_keys`]), each sealed with AES-256-GCM
//!   under the master key. Open it with [`KeyCustodian::load`], which also finishes or
//!   rolls back a master rotation that a crash interrupted.
//! - [`KeyCustodian::rotate_master`]: replace the master key and re-seal every session
//!   key, crash-safely.
//!
//! What it is *not* for: handing a session key to a sandbox. Writing the 0400 key file
//! onto the session's tmpfs, mounting it and unmounting it belong to the session
//! manager; this crate only returns the [`SessionKey`] value. Nor does it rekey the
//! stores encrypted under [`MasterKey::derive`]d keys when the master rotates: rotation
//! changes every derived key, so their owners must rekey (derive the old key before
//! rotating, the new one after).
//!
//! One process owns a store at a time (the control plane); the crate does not lock the
//! files against a second writer.
//!
//! [`HostLayout::master_key`]: ironclaw_contract::paths::HostLayout::master_key
//! [`HostLayout::sealed_keys`]: ironclaw_contract::paths::HostLayout::sealed_keys

#![forbid(unsafe_code)]

mod custodian;
mod error;
mod fsio;
mod master;

pub use custodian::{recover_rotation, KeyCustodian, Recovery};
pub use error::KeyError;
pub use ironclaw_contract::key::SessionKey;
pub use master::{MasterKey, MASTER_KEY_LEN};

/// The names under which the daemon seals the random keys of its own encrypted
/// databases in the custodian's store. Reserved: sessions are minted `ses_…`, so no
/// session can take one. The daemon opens its files with them and `ironctl backup`
/// verifies a copy with them, so they are defined once, here.
pub mod host_files {
    /// The registry database.
    pub const REGISTRY_DB: &str = "host-registry-db";
    /// The gateway's change store.
    pub const CHANGE_STORE_DB: &str = "host-change-store-db";
}
