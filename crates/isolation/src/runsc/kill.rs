//! `kill`: sends one signal to a container's agent with `runsc kill`.
//!
//! Not for: the stop escalation (SIGTERM, grace, SIGKILL, delete), which is
//! [`RunscIsolator::stop`].

use super::{RunscError, RunscIsolator};
use crate::container_id::ContainerId;

impl RunscIsolator {
    pub(super) fn kill(&self, id: &ContainerId, signal: &str) -> Result<(), RunscError> {
        self.run_ok(
            "kill",
            id.as_str(),
            &["kill".into(), id.as_str().into(), signal.into()],
        )
        .map(|_| ())
    }
}
