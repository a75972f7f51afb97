//! `reconcile`: at daemon start, stops and deletes every container in the private state
//! root that the caller does not claim, and removes bundles that belong to no container
//! and no claim. Failures are collected in the [`ReconcileReport`], not fatal.
//!
//! Not for: deciding which sessions should be running (the caller's claim).

use std::fs;
use std::path::PathBuf;

use super::bundle::remove_bundle;
use super::{RunscError, RunscIsolator, StopOutcome};
use crate::container_id::ContainerId;

/// What [`RunscIsolator::reconcile`] did.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Unclaimed containers that were stopped and deleted.
    pub stopped: Vec<(ContainerId, StopOutcome)>,
    /// Containers the caller claimed; left alone.
    pub kept: Vec<ContainerId>,
    /// Bundle directories without a container, removed.
    pub bundles_removed: Vec<PathBuf>,
    /// What could not be cleaned up, and why.
    pub failed: Vec<(String, RunscError)>,
}

impl RunscIsolator {
    /// At daemon start: stops and deletes every container in the state root that
    /// `is_claimed` does not claim, and removes bundle directories that belong to no
    /// container and no claim. Failures are collected, not fatal: one stuck container
    /// must not keep the daemon from starting (it is reported, and the next reconcile
    /// tries again).
    pub fn reconcile(
        &self,
        is_claimed: impl Fn(&ContainerId) -> bool,
    ) -> Result<ReconcileReport, RunscError> {
        let mut report = ReconcileReport::default();
        let mut present = Vec::new();
        for st in self.list()? {
            let id = match ContainerId::new(st.id.clone()) {
                Ok(id) => id,
                Err(e) => {
                    // Nothing but this isolator writes into the private root, so this
                    // cannot come from us; leave it for an operator rather than pass an
                    // unvalidated id to runsc.
                    report.failed.push((
                        st.id.clone(),
                        RunscError::BadOutput {
                            op: "list",
                            detail: format!("container id {:?}: {e}", st.id),
                        },
                    ));
                    continue;
                }
            };
            present.push(id.clone());
            if is_claimed(&id) {
                report.kept.push(id);
                continue;
            }
            match self.stop(&id) {
                Ok(outcome) => report.stopped.push((id, outcome)),
                Err(e) => report.failed.push((id.to_string(), e)),
            }
        }
        let entries = match fs::read_dir(&self.bundles) {
            Ok(rd) => rd,
            Err(source) => {
                return Err(RunscError::Io {
                    what: "read bundles",
                    path: self.bundles.clone(),
                    source,
                })
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| ContainerId::new(n).ok()) else {
                continue;
            };
            if present.contains(&id) || is_claimed(&id) {
                continue;
            }
            let path = entry.path();
            match remove_bundle(&path) {
                Ok(()) => report.bundles_removed.push(path),
                Err(e) => report.failed.push((id.to_string(), e)),
            }
        }
        Ok(report)
    }
}
