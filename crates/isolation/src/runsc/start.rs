//! `start`: runs the agent in a container [`create`](RunscIsolator::create) made, and
//! returns once it runs (detached).
//!
//! Not for: creating the container, or the one-process create-and-start
//! ([`RunscIsolator::launch`]).

use super::{RunscError, RunscIsolator};
use crate::container_id::ContainerId;

impl RunscIsolator {
    /// `runsc start`: runs the agent in a created container and returns (detached).
    pub fn start(&self, id: &ContainerId) -> Result<(), RunscError> {
        self.run_ok("start", id.as_str(), &["start".into(), id.as_str().into()])
            .map(|_| ())
    }
}
