//! What a session manager needs from whatever runs the agent: launch it with the
//! session's mounts, tell whether it still runs, stop it, and clean up what an earlier
//! daemon left behind.
//!
//! Two implementations exist: the `runsc` isolator (production; see
//! `ironclaw-isolation`) and [`crate::unsandboxed::UnsandboxedRuntime`], which only
//! `--dev` may construct when `runsc` is absent. The trait is blocking: callers on an
//! async runtime use `spawn_blocking`.

use std::path::PathBuf;
use std::time::Duration;

use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_contract::paths::SessionMount;

/// Everything needed to start one session's agent.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    pub session: SessionId,
    pub group: AgentGroupId,
    /// The contract's mount table for this session (host path → sandbox path).
    pub mounts: Vec<SessionMount>,
    /// Agent flags that are not paths (provider, model, tools, poll interval).
    pub agent_args: Vec<String>,
    /// Where the agent's stderr goes on the host.
    pub log_file: PathBuf,
}

/// Which kind of runtime launched a session; shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// gVisor `runsc`: the only kind outside `--dev`.
    Runsc,
    /// A plain host process: `--dev` without `runsc`. Not a sandbox.
    Unsandboxed,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Runsc => "runsc",
            RuntimeKind::Unsandboxed => "unsandboxed",
        }
    }
}

/// What a launch produced: the facts that go into the launch receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    pub container_id: String,
    pub runtime: RuntimeKind,
    pub runtime_version: String,
    /// SHA-256 of the exact OCI spec handed to the runtime (none when unsandboxed).
    pub spec_sha256: Option<String>,
    /// The image manifest digest the rootfs came from (none when unsandboxed).
    pub image_digest: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Running,
    /// Created but not started, or exited; either way not serving.
    Stopped,
    /// The runtime knows nothing of it.
    Absent,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("launch {container}: {reason}")]
    Launch { container: String, reason: String },
    #[error("{op} {container}: {reason}")]
    Control {
        op: &'static str,
        container: String,
        reason: String,
    },
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
}

pub trait Runtime: Send + Sync {
    fn kind(&self) -> RuntimeKind;
    fn launch(&self, plan: &LaunchPlan) -> Result<Launched, RuntimeError>;
    fn liveness(&self, container_id: &str) -> Result<Liveness, RuntimeError>;
    /// SIGTERM, up to `grace` for the agent to finish its step, then SIGKILL; removes
    /// the container. Stopping an absent container is not an error.
    fn stop(&self, container_id: &str, grace: Duration) -> Result<(), RuntimeError>;
    /// Stops and removes every container this runtime knows that is not in `keep`;
    /// returns the ids removed.
    fn reconcile(&self, keep: &[String]) -> Result<Vec<String>, RuntimeError>;
    /// The end of what the agent wrote to stderr, for diagnosing an early exit.
    fn last_output(&self, _container_id: &str) -> Option<String> {
        None
    }
}

/// The container id of a session: stable, so a relaunch replaces the old container and
/// reconciliation can map containers back to sessions.
pub fn container_id(session: &SessionId) -> String {
    ironclaw_isolation::ContainerId::for_session(session).to_string()
}
