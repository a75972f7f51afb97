//! `ironclaw-session`: running one agent per session (DESIGN §8).
//!
//! - [`manager`]: the [`SessionManager`] — directories, key hand-off, listeners,
//!   launch/stop/end under a per-session lock, launch receipts;
//! - [`runtime`]: the [`Runtime`] trait the manager launches through, and
//!   its two implementations: [`sandboxed`] (gVisor, from a verified image) and
//!   [`unsandboxed`], the plain-process runtime only `--dev` may use;
//! - [`doorbell`]: the host side of each session's doorbell;
//! - [`handoff`]: the session key on a per-session tmpfs;
//! - [`ingest_ports`]: the manager as the ingest service's queue sink and waker.
//!
//! Not here: when to launch (router, sweep), what the agent reads and writes (the
//! contract), or how a sandbox is built (`ironclaw-isolation`).

pub mod doorbell;
pub mod handoff;
pub mod ingest_ports;
pub mod manager;
pub mod runtime;
pub mod sandboxed;
pub mod unsandboxed;

pub use doorbell::DoorbellHub;
pub use ingest_ports::SessionWaker;
pub use manager::{
    LaunchOutcome, LiveSession, ManagerConfig, Ownership, QueueAccessError, SessionError,
    SessionManager,
};
pub use runtime::{LaunchPlan, Launched, Liveness, Runtime, RuntimeError, RuntimeKind};
pub use sandboxed::RunscRuntime;
pub use unsandboxed::UnsandboxedRuntime;
