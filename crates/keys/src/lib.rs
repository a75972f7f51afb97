//! Key custody for the IronClaw host: the master key, the sealed store of per-session
//! keys, and master-key rotation.
//!
//! What this crate is for:
//!
//! - [`MasterKey`]: the host's 32-byte root secret in `<state>/master.key`
//!   ([`HostLayout::master_key`]). It is created once from the OS RNG, refused if its file
//!   is reachable by anyone but its owner, and used to seal the keys in the store.
//! - [`KeyCustodian`]: the durable store of per-session queue keys in
//!   `<state>/sealed-keys` ([`HostLayout::sealed_keys`]), each sealed with AES-256-GCM
//!   under the master key. Open it with [`KeyCustodian::load`], which also finishes or
//!   rolls back a master rotation that a crash interrupted.
//! - [`HostFile`] and [`KeyCustodian::host_file_key`]: the keys of the host's own
//!   encrypted databases (registry, change store), random keys sealed in the same store
//!   under reserved names, so a master rotation re-seals them too. The daemon and
//!   `ironctl backup` both go through this one API.
//! - [`KeyCustodian::rotate_master`]: replace the master key and re-seal every key in
//!   the store, crash-safely.
//!
//! Key files are written through `ironclaw-hostfs` (private, atomic, never through a
//! link) and read here, refused when they are not private regular files.
//!
//! What it is *not* for: handing a session key to a sandbox. Writing the 0400 key file
//! onto the session's tmpfs, mounting it and unmounting it belong to the session
//! manager; this crate only returns the [`SessionKey`] value. Nor does it rekey anything
//! encrypted under a [`MasterKey::derive`]d key when the master rotates: rotation
//! changes every derived key, so its owner must rekey (derive the old key before
//! rotating, the new one after). No host file is keyed that way today.
//!
//! One process owns a store at a time (the control plane); the crate does not lock the
//! files against a second writer.
//!
//! [`HostLayout::master_key`]: ironclaw_contract::paths::HostLayout::master_key
//! [`HostLayout::sealed_keys`]: ironclaw_contract::paths::HostLayout::sealed_keys

mod custodian;
mod error;
mod fsio;
mod host_files;
mod master;

pub use custodian::{recover_rotation, KeyCustodian, Recovery};
pub use error::KeyError;
pub use host_files::HostFile;
pub use ironclaw_contract::key::SessionKey;
pub use master::{MasterKey, MASTER_KEY_LEN};
