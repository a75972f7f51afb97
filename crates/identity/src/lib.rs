//! Operator identity: named principals with hashed API tokens.
//!
//! Operators approve or refuse what untrusted agents ask for, so every call to the
//! control plane's HTTP API must come from an authenticated, *named* principal — never
//! from "whoever holds the shared secret". This crate answers exactly one question:
//! **who is presenting this bearer token?** It
//!
//! - mints per-operator tokens ([`SecretToken`], `icw_` + 64 hex digits from the OS
//!   RNG) that are shown to a human once and never stored;
//! - keeps only SHA-256 digests of them in a 0600 JSON file ([`TokenStore`]), rewritten
//!   atomically on every change and refused outright when it is loose, a symlink or
//!   unparseable (fail closed: a broken token file never means "no tokens");
//! - maps a presented token to a [`Principal`] (`operator:<name>`) with a
//!   constant-time scan ([`TokenStore::authenticate`]).
//!
//! What this crate is *not* for:
//!
//! - **Authorization.** Whether `operator:alice` is an owner or an admin, and what she
//!   may approve, is the registry's business. A valid token proves identity, nothing
//!   more.
//! - **Transport security.** TLS, header parsing (stripping `Bearer `), rate limiting
//!   and lock-out live in the API server. [`TokenStore::authenticate`] takes the bare
//!   token only.
//! - **Sandbox principals.** `sandbox:*` ids are derived from sessions in
//!   `ironclaw-contract`; agents never hold operator tokens.

#[cfg(not(unix))]
compile_error!("ironclaw-identity relies on Unix file modes to keep the token file private (0600)");

mod error;
mod name;
mod store;
mod token;

pub use error::IdentityError;
pub use name::{operator_user_id, validate_name, MAX_NAME_LEN, OPERATOR_NAMESPACE};
pub use store::{TokenRecord, TokenStore};
pub use token::{SecretToken, MAX_PRESENTED_LEN, MIN_ADOPTED_LEN, TOKEN_HEX_LEN, TOKEN_PREFIX};

use ironclaw_contract::ids::UserId;

/// An authenticated operator: the answer to "who is this".
///
/// Carries no role; look `user_id` up in the registry to decide what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The operator name, e.g. `alice`.
    pub name: String,
    /// `operator:<name>`, the id every other crate records (approvals, audit).
    pub user_id: UserId,
}
