//! Sandbox isolation for IronClaw (DESIGN §8): the hardened OCI runtime spec every agent
//! runs under, and the runsc isolator that runs it.
//!
//! - [`spec`]: builds `config.json` field by field with `oci-spec` (never its defaults),
//!   mounting exactly the contract's table ([`ironclaw_contract::paths`]), and
//!   [`spec::validate`] refuses any spec breaking an invariant. A [`SandboxSpec`] is only
//!   obtainable through [`spec::build`], which validates.
//! - [`seccomp`]: the deny-by-default syscall allowlist, each entry with its reason.
//! - [`runsc`]: [`RunscIsolator`] — bundles, `create` → `start` → `state` → `kill`
//!   (TERM, grace, KILL) → `delete`, and [`RunscIsolator::reconcile`] of stale containers
//!   at daemon start. Always `--network=none --host-uds=open --oci-seccomp`.
//! - [`container_id`]: the validated runsc container id.
//!
//! What this crate is not for: provisioning or verifying images (a rootfs path is an
//! input), creating session directories or key tmpfs (the session layer), or deciding
//! when to launch or stop (the session manager and sweep). It is synchronous
//! (`std::process`); callers on an async runtime use `spawn_blocking`.
//!
//! See `docs/isolation.md` for the model and what was measured.

pub mod container_id;
pub mod runsc;
pub mod seccomp;
pub mod spec;

pub use container_id::{ContainerId, ContainerIdError};
pub use runsc::{
    ContainerState, ReconcileReport, RunscConfig, RunscError, RunscIsolator, RunscVersion, Status,
    StopOutcome,
};
pub use spec::{Limits, SandboxRequest, SandboxSpec, SpecError};
