//! `stop`: SIGTERM, up to the grace period for the agent to exit, SIGKILL, then
//! `delete --force`, the bundle removed and the console tail dropped. Idempotent: a
//! container runsc does not know is [`StopOutcome::AlreadyGone`].
//!
//! Not for: deciding when a session stops (the session manager and sweep).

use std::time::Duration;

use super::bundle::remove_bundle;
use super::command::lock;
use super::{RunscError, RunscIsolator, Status};
use crate::container_id::ContainerId;

/// How long a container may take to disappear after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a container ended when asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// runsc did not know the container; only leftovers (bundle) were removed.
    AlreadyGone,
    /// It was not running (created but never started, or already exited).
    NotRunning,
    /// It exited within the grace period after SIGTERM.
    ExitedOnTerm,
    /// It ignored SIGTERM for the whole grace period and was killed.
    Killed,
}

impl RunscIsolator {
    /// Stops with the configured grace period; see [`stop_with_grace`](Self::stop_with_grace).
    pub fn stop(&self, id: &ContainerId) -> Result<StopOutcome, RunscError> {
        self.stop_with_grace(id, self.grace)
    }

    /// SIGTERM, up to `grace` for the agent to exit, SIGKILL, then `delete --force` and
    /// the bundle removed. Idempotent: an unknown container is [`StopOutcome::AlreadyGone`].
    pub fn stop_with_grace(
        &self,
        id: &ContainerId,
        grace: Duration,
    ) -> Result<StopOutcome, RunscError> {
        let known = if self.may_exist(id) {
            self.state(id)
        } else {
            Err(RunscError::NotFound { id: id.to_string() })
        };
        let outcome = match known {
            Err(RunscError::NotFound { .. }) => {
                remove_bundle(&self.bundle_dir(id))?;
                lock(&self.consoles).remove(id);
                return Ok(StopOutcome::AlreadyGone);
            }
            Err(e) => return Err(e),
            Ok(st) if st.status == Status::Running => {
                // A failed SIGTERM (the agent exited in between) is not an error: the
                // wait below sees the container stopped.
                let _ = self.kill(id, "SIGTERM");
                if self.wait_stopped(id, grace)? {
                    StopOutcome::ExitedOnTerm
                } else {
                    let _ = self.kill(id, "SIGKILL");
                    if !self.wait_stopped(id, KILL_WAIT)? {
                        return Err(RunscError::StopTimeout {
                            id: id.to_string(),
                            after: KILL_WAIT,
                        });
                    }
                    StopOutcome::Killed
                }
            }
            // Created, paused, stopped: `delete --force` ends whatever is left.
            Ok(_) => StopOutcome::NotRunning,
        };
        self.delete(id)?;
        remove_bundle(&self.bundle_dir(id))?;
        lock(&self.consoles).remove(id);
        Ok(outcome)
    }
}
