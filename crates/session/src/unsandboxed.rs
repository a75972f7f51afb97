//! The plain-process runtime: `--dev` only, when `runsc` is not installed.
//!
//! It runs the agent binary as an ordinary child of the daemon, with the host paths of
//! the session's mount table passed as flags. **It is not a sandbox**: the agent has
//! the daemon's uid, network and view of the file system. It exists so a developer
//! without gVisor can see the message path work; the daemon labels it loudly (logs,
//! `/readyz`, `ironctl status`) and never constructs it outside `--dev`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ironclaw_contract::paths::{sandbox, SessionMount};

use crate::runtime::{
    container_id, LaunchPlan, Launched, Liveness, Runtime, RuntimeError, RuntimeKind,
};

pub struct UnsandboxedRuntime {
    agent_bin: PathBuf,
    children: Mutex<HashMap<String, Child>>,
}

impl UnsandboxedRuntime {
    pub fn new(agent_bin: impl Into<PathBuf>) -> Self {
        Self {
            agent_bin: agent_bin.into(),
            children: Mutex::default(),
        }
    }

    fn children(&self) -> MutexGuard<'_, HashMap<String, Child>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The host path that a sandbox path resolves to through the mount table.
pub fn host_path(mounts: &[SessionMount], sandbox_path: &str) -> Option<PathBuf> {
    mounts
        .iter()
        .filter_map(|m| {
            let rest = Path::new(sandbox_path).strip_prefix(m.sandbox).ok()?;
            // `join("")` would add a trailing slash, which breaks a socket path.
            let host = if rest.as_os_str().is_empty() {
                m.host.clone()
            } else {
                m.host.join(rest)
            };
            Some((m.sandbox.len(), host))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p)
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

impl Runtime for UnsandboxedRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Unsandboxed
    }

    fn launch(&self, plan: &LaunchPlan) -> Result<Launched, RuntimeError> {
        let id = container_id(&plan.session);
        let fail = |reason: String| RuntimeError::Launch {
            container: id.clone(),
            reason,
        };
        let path = |flag: &str, p: &str| -> Result<[String; 2], RuntimeError> {
            let host = host_path(&plan.mounts, p)
                .ok_or_else(|| fail(format!("the mount table has no entry for {p}")))?;
            Ok([flag.to_owned(), host.display().to_string()])
        };
        let mut args = Vec::new();
        for (flag, p) in [
            ("--inbound", sandbox::INBOUND_DB),
            ("--outbound", sandbox::OUTBOUND_DB),
            ("--key-file", sandbox::KEY_FILE),
            ("--model-socket", sandbox::MODEL_SOCKET),
            ("--doorbell-socket", sandbox::DOORBELL_SOCKET),
            ("--heartbeat-dir", sandbox::HEARTBEAT_DIR),
            ("--workspace", sandbox::WORKSPACE),
            ("--persona-file", sandbox::PERSONA_FILE),
        ] {
            args.extend(path(flag, p)?);
        }
        args.extend(plan.agent_args.iter().cloned());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&plan.log_file)
            .map_err(|e| fail(format!("open log {}: {e}", plan.log_file.display())))?;
        // A relaunch replaces a previous child of the same session.
        if let Some(mut old) = self.children().remove(&id) {
            let _ = old.kill();
            let _ = old.wait();
        }
        let child = Command::new(&self.agent_bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| fail(format!("spawn {}: {e}", self.agent_bin.display())))?;
        self.children().insert(id.clone(), child);
        Ok(Launched {
            container_id: id,
            runtime: RuntimeKind::Unsandboxed,
            runtime_version: "none (unsandboxed --dev process)".to_owned(),
            spec_sha256: None,
            image_digest: None,
        })
    }

    fn liveness(&self, container_id: &str) -> Result<Liveness, RuntimeError> {
        let mut children = self.children();
        let Some(child) = children.get_mut(container_id) else {
            return Ok(Liveness::Absent);
        };
        Ok(match child.try_wait() {
            Ok(None) => Liveness::Running,
            Ok(Some(_)) | Err(_) => Liveness::Stopped,
        })
    }

    fn stop(&self, container_id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let Some(mut child) = self.children().remove(container_id) else {
            return Ok(());
        };
        signal(child.id(), "-TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    fn reconcile(&self, keep: &[String]) -> Result<Vec<String>, RuntimeError> {
        // Children of an earlier daemon died with it (or were re-parented and are
        // unknown to us); only our own children can be reconciled.
        let stale: Vec<String> = self
            .children()
            .keys()
            .filter(|id| !keep.contains(id))
            .cloned()
            .collect();
        for id in &stale {
            self.stop(id, Duration::from_secs(2))?;
        }
        Ok(stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironclaw_contract::paths::{MountAccess, MountKind};

    fn mount(host: &str, sandbox: &'static str) -> SessionMount {
        SessionMount {
            host: PathBuf::from(host),
            sandbox,
            access: MountAccess::ReadOnly,
            kind: MountKind::Directory,
        }
    }

    #[test]
    fn sandbox_paths_resolve_through_the_longest_mount() {
        let mounts = [
            mount("/s/run", "/run/ironclaw"),
            mount("/s/in", "/run/ironclaw/queue/inbound"),
            mount("/s/model.sock", "/run/ironclaw/model.sock"),
        ];
        assert_eq!(
            host_path(&mounts, "/run/ironclaw/queue/inbound/inbound.db"),
            Some(PathBuf::from("/s/in/inbound.db"))
        );
        // A mount of the path itself: no trailing slash.
        assert_eq!(
            host_path(&mounts, "/run/ironclaw/model.sock"),
            Some(PathBuf::from("/s/model.sock"))
        );
        assert_eq!(host_path(&mounts, "/etc/passwd"), None);
        // A prefix must match whole components.
        assert_eq!(host_path(&mounts, "/run/ironclawx/y"), None);
    }
}
