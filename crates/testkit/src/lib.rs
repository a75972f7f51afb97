//! `ironclaw-testkit`: the fixtures the workspace's tests share, built once with
//! defaults so each test states only what it is about.
//!
//! - [`message`]: [`message_in`], a builder for the inbound row a host writes
//!   (`NewMessageIn`): an id and content, everything else a plain default;
//! - `world` (feature `sessions`): `SessionWorld`, a state dir, key custodian,
//!   audit log, in-memory registry with one agent group, one conversation and its shared
//!   session, the model proxy (mock provider) and a `SessionManager` over an
//!   unsandboxed runtime; and `agent_binary`, the workspace's agent built on demand.
//!
//! The message builder depends on the contract alone, so the in-sandbox agent's tests
//! use it without building a host crate; the session world sits behind `sessions`.
//!
//! Not here: assertions, or anything a shipped binary links. A test-only dev-dependency,
//! never published. Unit tests inside `ironclaw-contract` cannot use it (they would see
//! a second copy of the contract's types).

// Test support: a fixture that cannot be built is a failed test, and says which one.
#![allow(clippy::expect_used)]

pub mod message;
#[cfg(feature = "sessions")]
pub mod world;

pub use message::{message_in, MessageInBuilder};
#[cfg(feature = "sessions")]
pub use world::{agent_binary, SessionWorld, SessionWorldBuilder};
