//! `delete`: `runsc delete --force`, which ends whatever is left of a container and
//! forgets it. A container runsc does not know is already deleted.
//!
//! Not for: removing the bundle directory ([`super::bundle`]) or stopping the agent
//! gracefully first ([`RunscIsolator::stop`]).

use super::{RunscError, RunscIsolator};
use crate::container_id::ContainerId;

impl RunscIsolator {
    pub(super) fn delete(&self, id: &ContainerId) -> Result<(), RunscError> {
        match self.run_ok(
            "delete",
            id.as_str(),
            &["delete".into(), "--force".into(), id.as_str().into()],
        ) {
            Ok(_) | Err(RunscError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
