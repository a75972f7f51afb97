//! The runsc isolator: runs a validated [`SandboxSpec`] as a gVisor container and takes
//! it down again.
//!
//! What this module is for: the bundle on disk (`<state>/bundles/<id>/`, 0700, holding
//! the 0600 `config.json`), the runsc invocations and their lifecycle — `run --detach`
//! (or `create` → `start`) → `state` (liveness) → `kill SIGTERM` → grace → `kill
//! SIGKILL` → `delete --force` → bundle removed — and reconciling containers an earlier
//! daemon left in the state root.
//!
//! What it is not for: building or checking the spec ([`crate::spec`]), preparing the
//! rootfs or the session directories, or deciding when to launch, wake or stop a session.
//!
//! Security reasoning:
//! - Every invocation carries the same global flags, built in one place
//!   ([`RunscIsolator::global_args`]): a private `--root` (0700) so no other runsc user
//!   sees or touches these containers; `--network=none` (no NIC, whatever the spec says —
//!   the spec's empty network namespace is the second guard); `--host-uds=open` (the
//!   agent may *connect* to the host sockets bind-mounted by the contract table, never
//!   create one); `--oci-seccomp` (without it runsc ignores the spec's seccomp profile).
//!   The platform is runsc's default (`ptrace` on the supported hosts; `--platform=kvm`
//!   hangs there).
//! - A missing or too-old runsc is a typed error naming the fix, never a fallback
//!   (DESIGN §2.7). The feature check also asks runsc for the two flags we depend on.
//! - The container's lifetime is never tied to ours or to a request: `run --detach`
//!   (like `create` and `start`) returns once the container runs; the container's stdout goes to `/dev/null`
//!   and its stderr into a bounded in-memory tail (never an unbounded file an agent could
//!   use to fill the host's disk).
//! - runsc's own stderr is captured into errors, bounded ([`STDERR_TAIL`]).
//! - Every runsc call has a timeout; a hung runsc is killed and reported.
//!
//! Layout, one file per lifecycle verb (as youki's `container_*.rs`), each adding its
//! own `impl RunscIsolator` block:
//! - [`create`]: the bundle and `runsc create`, or `runsc run --detach`
//!   ([`RunscIsolator::launch`]);
//! - [`start`]: `runsc start`;
//! - [`state`]: `runsc state` / `runsc list`, liveness, the console tail;
//! - [`kill`]: `runsc kill` (one signal);
//! - [`stop`]: SIGTERM → grace → SIGKILL → delete, the escalation;
//! - [`delete`]: `runsc delete --force`;
//! - [`reconcile`]: stale containers and bundles at daemon start;
//! - [`version`]: which runsc is accepted (version and flags);
//! - [`command`]: running one runsc process (global flags, timeout, bounded output);
//! - [`bundle`]: the private directories and bundles on disk;
//! - [`error`]: the typed [`RunscError`].
//!
//! This file holds the configuration, the isolator and what every verb shares: its
//! paths and the global flags.

mod bundle;
mod command;
mod create;
mod delete;
mod error;
mod kill;
mod reconcile;
mod start;
mod state;
mod stop;
mod version;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::container_id::ContainerId;

pub use error::RunscError;
pub use reconcile::ReconcileReport;
pub use state::{ContainerState, Status};
pub use stop::StopOutcome;
pub use version::RunscVersion;

use bundle::private_dir;
use command::SharedTail;

/// The oldest runsc release known to work: the Debian package measured in
/// `RUNSC-NOTES.md` (`0.0~20221219.0`). It has `--host-uds=open` and `--oci-seccomp`.
pub const MIN_VERSION: u32 = 20221219;
/// What to tell an operator whose runsc is missing or too old.
pub const INSTALL_HINT: &str = "apt-get install -y runsc";
/// How much of runsc's stderr an error keeps (the end, where the reason is).
pub const STDERR_TAIL: usize = 4096;
/// How much of a container's stderr is kept in memory (the end).
pub const CONSOLE_TAIL: usize = 8192;

/// Configuration of a [`RunscIsolator`].
#[derive(Debug, Clone)]
pub struct RunscConfig {
    /// The runsc binary; a bare name is looked up in `PATH`.
    pub binary: PathBuf,
    /// The daemon's state directory: the runsc root is `<state_dir>/runsc`, bundles are
    /// `<state_dir>/bundles/<id>` (the contract's `HostLayout` names the same paths).
    pub state_dir: PathBuf,
    /// How long `stop` waits after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// Upper bound on one runsc invocation.
    pub command_timeout: Duration,
}

impl RunscConfig {
    /// Defaults: `runsc` from `PATH`, 10 s grace, 30 s per runsc call.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            binary: PathBuf::from("runsc"),
            state_dir: state_dir.into(),
            grace: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
        }
    }
}

/// Runs gVisor containers from validated specs. See the module docs.
#[derive(Debug)]
pub struct RunscIsolator {
    binary: PathBuf,
    root: PathBuf,
    bundles: PathBuf,
    version: RunscVersion,
    grace: Duration,
    timeout: Duration,
    consoles: Mutex<HashMap<ContainerId, SharedTail>>,
}

impl RunscIsolator {
    /// Checks runsc (present, new enough, has the flags we depend on) and creates the
    /// state root and bundle directory (0700).
    pub fn new(config: RunscConfig) -> Result<Self, RunscError> {
        let mut me = Self {
            binary: config.binary,
            root: config.state_dir.join("runsc"),
            bundles: config.state_dir.join("bundles"),
            version: RunscVersion {
                raw: String::new(),
                date: 0,
            },
            grace: config.grace,
            timeout: config.command_timeout,
            consoles: Mutex::new(HashMap::new()),
        };
        me.version = me.check_runtime()?;
        for dir in [&me.root, &me.bundles] {
            private_dir(dir)?;
        }
        Ok(me)
    }

    pub fn version(&self) -> &RunscVersion {
        &self.version
    }

    /// `<state>/runsc`.
    pub fn state_root(&self) -> &Path {
        &self.root
    }

    /// `<state>/bundles/<id>`.
    pub fn bundle_dir(&self, id: &ContainerId) -> PathBuf {
        self.bundles.join(id.as_str())
    }

    /// The flags every invocation carries, before the subcommand.
    pub fn global_args(&self) -> Vec<OsString> {
        let mut root = OsString::from("--root=");
        root.push(&self.root);
        vec![
            root,
            "--network=none".into(),
            "--host-uds=open".into(),
            "--oci-seccomp".into(),
        ]
    }
}
