//! What runsc knows about containers: `runsc state` (status and pid), `runsc list`
//! (every container in the private root), liveness, waiting for a container to stop, the
//! cheap "may it exist?" read of the state root, and the console tail the agent wrote.
//!
//! Not for: changing a container (the other verb files); nothing here signals or
//! deletes.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::command::lock;
use super::{RunscError, RunscIsolator};
use crate::container_id::ContainerId;

/// A container's status as runsc reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
    #[serde(other)]
    Unknown,
}

/// The fields of `runsc state` / `runsc list --format=json` this crate uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    /// As runsc reports it (not re-validated: `list` may show anything in the root).
    pub id: String,
    pub status: Status,
    /// The container's init process on the host (0 once stopped).
    #[serde(default)]
    pub pid: i64,
}

impl ContainerState {
    /// Running or about to run: what liveness means for a session.
    pub fn is_alive(&self) -> bool {
        matches!(
            self.status,
            Status::Creating | Status::Created | Status::Running | Status::Paused
        )
    }
}

impl RunscIsolator {
    /// `runsc state`: status and pid. [`RunscError::NotFound`] when runsc does not know
    /// the container.
    pub fn state(&self, id: &ContainerId) -> Result<ContainerState, RunscError> {
        let out = self.run_ok("state", id.as_str(), &["state".into(), id.as_str().into()])?;
        serde_json::from_slice(&out.stdout).map_err(|e| RunscError::BadOutput {
            op: "state",
            detail: e.to_string(),
        })
    }

    /// Liveness: `Ok(false)` when the container is stopped or unknown.
    pub fn is_alive(&self, id: &ContainerId) -> Result<bool, RunscError> {
        match self.state(id) {
            Ok(st) => Ok(st.is_alive()),
            Err(RunscError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `runsc list`: every container in this isolator's state root.
    pub fn list(&self) -> Result<Vec<ContainerState>, RunscError> {
        let out = self.run_ok("list", "", &["list".into(), "--format=json".into()])?;
        // runsc prints `null` for an empty root.
        let list: Option<Vec<ContainerState>> =
            serde_json::from_slice(&out.stdout).map_err(|e| RunscError::BadOutput {
                op: "list",
                detail: e.to_string(),
            })?;
        Ok(list.unwrap_or_default())
    }

    /// Whether runsc may know the container, from its state root alone — a directory
    /// read instead of a `runsc state` process (~25 ms each), which the launch path
    /// would otherwise pay twice per start for the usual case: no leftover container.
    ///
    /// Only a "no" is trusted, and only when the root looks exactly as measured
    /// (runsc keeps `<container>_sandbox:<sandbox>.state` and `.lock` files there):
    /// any entry of another shape, or an unreadable root, answers "maybe", so a runsc
    /// that lays its root out differently costs a `runsc state` call, never a missed
    /// container. Nothing but this isolator writes into its private root.
    pub fn may_exist(&self, id: &ContainerId) -> bool {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return true;
        };
        let ours = format!("{}_sandbox:", id.as_str());
        for entry in entries {
            let Ok(entry) = entry else { return true };
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return true;
            };
            if name.starts_with(&ours) {
                return true;
            }
            let known_shape =
                name.contains("_sandbox:") && (name.ends_with(".state") || name.ends_with(".lock"));
            if !known_shape {
                return true;
            }
        }
        false
    }

    /// Polls until the container is no longer running (or is gone), up to `timeout`.
    /// Returns whether it stopped in time.
    pub fn wait_stopped(&self, id: &ContainerId, timeout: Duration) -> Result<bool, RunscError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.state(id) {
                Ok(st) if st.is_alive() => {}
                Ok(_) | Err(RunscError::NotFound { .. }) => return Ok(true),
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The last [`CONSOLE_TAIL`] bytes the agent wrote to stderr, for diagnosing an
    /// early exit. `None` for a container this isolator did not create.
    pub fn console_tail(&self, id: &ContainerId) -> Option<String> {
        lock(&self.consoles).get(id).map(|t| lock(t).text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_json_parses() {
        let st: ContainerState = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","id":"ironclaw-a","status":"running","pid":42,"bundle":"/x"}"#,
        )
        .unwrap();
        assert_eq!(st.status, Status::Running);
        assert_eq!(st.pid, 42);
        assert!(st.is_alive());
        let st: ContainerState = serde_json::from_str(r#"{"id":"x","status":"weird"}"#).unwrap();
        assert_eq!(st.status, Status::Unknown);
        assert!(!st.is_alive());
    }
}
