//! The production runtime: each session's agent under gVisor, from a verified image.
//!
//! This adapts [`RunscIsolator`] to the manager's [`Runtime`] trait: the rootfs comes
//! from the image provisioner (verified against the trust policy before it was
//! unpacked; its manifest digest goes into every launch receipt), the spec from
//! `ironclaw_isolation::spec::build` (validated; its SHA-256 goes into the receipt).

use std::path::PathBuf;
use std::time::Duration;

use ironclaw_contract::paths::HostLayout;
use ironclaw_isolation::spec::{self, SandboxRequest, DEFAULT_ID_MAP_BASE};
use ironclaw_isolation::{ContainerId, Limits, RunscIsolator, StopOutcome};
use sha2::{Digest, Sha256};

use crate::runtime::{LaunchPlan, Launched, Liveness, Runtime, RuntimeError, RuntimeKind};

/// Where the agent binary is inside the image.
pub const AGENT_IN_ROOTFS: &str = "/ironclaw-sandbox";

pub struct RunscRuntime {
    isolator: RunscIsolator,
    layout: HostLayout,
    model_proxy_base: PathBuf,
    rootfs: PathBuf,
    image_digest: String,
    limits: Limits,
}

impl RunscRuntime {
    pub fn new(
        isolator: RunscIsolator,
        layout: HostLayout,
        model_proxy_base: PathBuf,
        rootfs: PathBuf,
        image_digest: String,
    ) -> Self {
        Self {
            isolator,
            layout,
            model_proxy_base,
            rootfs,
            image_digest,
            limits: Limits::default(),
        }
    }

    /// The host uid/gid the agent (container uid/gid 65532) is mapped to.
    pub fn agent_host_ids() -> (u32, u32) {
        let id = DEFAULT_ID_MAP_BASE + spec::SANDBOX_UID;
        (id, id)
    }

    pub fn image_digest(&self) -> &str {
        &self.image_digest
    }

    pub fn version(&self) -> &str {
        &self.isolator.version().raw
    }
}

fn id_of(raw: &str) -> Result<ContainerId, RuntimeError> {
    ContainerId::new(raw.to_owned()).map_err(|e| RuntimeError::Control {
        op: "parse",
        container: raw.to_owned(),
        reason: e.to_string(),
    })
}

impl Runtime for RunscRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Runsc
    }

    fn launch(&self, plan: &LaunchPlan) -> Result<Launched, RuntimeError> {
        let id = ContainerId::for_session(&plan.session);
        let fail = |reason: String| RuntimeError::Launch {
            container: id.to_string(),
            reason,
        };
        let mut args = vec![AGENT_IN_ROOTFS.to_owned()];
        args.extend(plan.agent_args.iter().cloned());
        let request = SandboxRequest {
            container_id: id.clone(),
            rootfs: self.rootfs.clone(),
            args,
            layout: self.layout.clone(),
            session: plan.session.clone(),
            group: plan.group.clone(),
            model_socket: self
                .layout
                .model_socket(&self.model_proxy_base, &plan.session),
            limits: self.limits,
            id_map_base: DEFAULT_ID_MAP_BASE,
        };
        let spec = spec::build(&request).map_err(|e| fail(format!("spec refused: {e}")))?;
        let json = spec.to_json().map_err(|e| fail(e.to_string()))?;
        let spec_sha256 = ironclaw_contract::hex::encode(&Sha256::digest(json.as_bytes()));
        // A container of the same session left by a crash is replaced.
        let _ = self.isolator.stop_with_grace(&id, Duration::from_secs(1));
        self.isolator
            .launch(&spec)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Launched {
            container_id: id.to_string(),
            runtime: RuntimeKind::Runsc,
            runtime_version: self.isolator.version().raw.clone(),
            spec_sha256: Some(spec_sha256),
            image_digest: Some(self.image_digest.clone()),
        })
    }

    fn liveness(&self, container_id: &str) -> Result<Liveness, RuntimeError> {
        let id = id_of(container_id)?;
        match self.isolator.state(&id) {
            Ok(st) if st.is_alive() => Ok(Liveness::Running),
            Ok(_) => Ok(Liveness::Stopped),
            Err(ironclaw_isolation::RunscError::NotFound { .. }) => Ok(Liveness::Absent),
            Err(e) => Err(RuntimeError::Control {
                op: "state",
                container: container_id.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    fn stop(&self, container_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let id = id_of(container_id)?;
        match self.isolator.stop_with_grace(&id, grace) {
            Ok(StopOutcome::Killed) => {
                tracing::warn!(container = %id, "agent ignored SIGTERM and was killed");
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(RuntimeError::Control {
                op: "stop",
                container: container_id.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    fn last_output(&self, container_id: &str) -> Option<String> {
        self.isolator.console_tail(&id_of(container_id).ok()?)
    }

    fn reconcile(&self, keep: &[String]) -> Result<Vec<String>, RuntimeError> {
        let report = self
            .isolator
            .reconcile(|id| keep.iter().any(|k| k == id.as_str()))
            .map_err(|e| RuntimeError::Control {
                op: "reconcile",
                container: "*".into(),
                reason: e.to_string(),
            })?;
        for (what, e) in &report.failed {
            tracing::warn!(container = %what, error = %e, "reconcile could not clean up");
        }
        Ok(report
            .stopped
            .iter()
            .map(|(id, _)| id.to_string())
            .collect())
    }
}
