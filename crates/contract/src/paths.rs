//! The one table of paths: where things are inside a sandbox, and where the host keeps
//! them. The OCI spec builder mounts exactly [`session_mounts`], and the sandbox's flag
//! defaults are the [`sandbox`] constants, so the two cannot disagree.
//!
//! Queue files are mounted as *directories*, not single files: SQLite's rollback journal
//! (`<db>-journal`) lives next to the database, the outbound writer must be able to
//! create it, and the inbound reader must be able to see it (the snapshot protocol in
//! [`crate::db`] checks for it).

use std::path::{Path, PathBuf};

use crate::ids::{AgentGroupId, SessionId};

/// Paths as the agent sees them inside its sandbox.
pub mod sandbox {
    /// Read-only: the host's `inbound/` directory.
    pub const INBOUND_DIR: &str = "/run/ironclaw/queue/inbound";
    pub const INBOUND_DB: &str = "/run/ironclaw/queue/inbound/inbound.db";
    /// Read-write: the session's `outbound/` directory (database and its journal).
    pub const OUTBOUND_DIR: &str = "/run/ironclaw/queue/outbound";
    pub const OUTBOUND_DB: &str = "/run/ironclaw/queue/outbound/outbound.db";
    /// Read-only per-session tmpfs holding the session key (0400).
    pub const KEY_DIR: &str = "/run/ironclaw/key";
    pub const KEY_FILE: &str = "/run/ironclaw/key/session.key";
    /// The session's model-proxy listener (a host unix socket).
    pub const MODEL_SOCKET: &str = "/run/ironclaw/model.sock";
    /// The session's doorbell listener (a host unix socket).
    pub const DOORBELL_SOCKET: &str = "/run/ironclaw/doorbell.sock";
    /// Read-write: the agent touches a file here every loop.
    pub const HEARTBEAT_DIR: &str = "/run/ironclaw/heartbeat";
    /// Read-only: the agent group's configuration (persona, enabled tools).
    pub const CONFIG_DIR: &str = "/run/ironclaw/config";
    pub const PERSONA_FILE: &str = "/run/ironclaw/config/persona.md";
    /// Read-write: the agent group's workspace.
    pub const WORKSPACE: &str = "/workspace";
}

/// File names inside the host's per-session directories.
pub const INBOUND_DB_NAME: &str = "inbound.db";
pub const OUTBOUND_DB_NAME: &str = "outbound.db";
pub const KEY_FILE_NAME: &str = "session.key";
pub const PERSONA_FILE_NAME: &str = "persona.md";
/// The file the agent replaces with the current time every loop, inside the heartbeat
/// directory; the host's sweep reads it to tell a live agent from a stuck one.
pub const HEARTBEAT_FILE_NAME: &str = "heartbeat";

/// How a path is mounted into the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountAccess {
    ReadOnly,
    ReadWrite,
}

/// What a mount carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A host directory bind-mounted into the sandbox.
    Directory,
    /// A host unix socket bind-mounted into the sandbox (connect only).
    Socket,
}

/// One row of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMount {
    pub host: PathBuf,
    pub sandbox: &'static str,
    pub access: MountAccess,
    pub kind: MountKind,
}

/// The host's layout under `--state-dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLayout {
    state_dir: PathBuf,
}

impl HostLayout {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn sessions_dir(&self) -> PathBuf {
        self.state_dir.join("sessions")
    }
    pub fn session_dir(&self, id: &SessionId) -> PathBuf {
        self.sessions_dir().join(id.as_str())
    }
    pub fn inbound_dir(&self, id: &SessionId) -> PathBuf {
        self.session_dir(id).join("inbound")
    }
    pub fn inbound_db(&self, id: &SessionId) -> PathBuf {
        self.inbound_dir(id).join(INBOUND_DB_NAME)
    }
    pub fn outbound_dir(&self, id: &SessionId) -> PathBuf {
        self.session_dir(id).join("outbound")
    }
    pub fn outbound_db(&self, id: &SessionId) -> PathBuf {
        self.outbound_dir(id).join(OUTBOUND_DB_NAME)
    }
    pub fn heartbeat_dir(&self, id: &SessionId) -> PathBuf {
        self.session_dir(id).join("heartbeat")
    }
    pub fn config_dir(&self, id: &SessionId) -> PathBuf {
        self.session_dir(id).join("config")
    }
    /// Mount point of the session's key tmpfs.
    pub fn key_dir(&self, id: &SessionId) -> PathBuf {
        self.state_dir.join("keys").join(id.as_str())
    }
    pub fn model_socket(&self, base: &Path, id: &SessionId) -> PathBuf {
        let mut dir = base.as_os_str().to_owned();
        dir.push(".d");
        PathBuf::from(dir).join(format!("{id}.sock"))
    }
    pub fn doorbell_socket(&self, id: &SessionId) -> PathBuf {
        self.session_dir(id).join("doorbell.sock")
    }
    pub fn group_dir(&self, group: &AgentGroupId) -> PathBuf {
        self.state_dir.join("groups").join(group.as_str())
    }
    pub fn workspace(&self, group: &AgentGroupId) -> PathBuf {
        self.group_dir(group).join("workspace")
    }
    pub fn audit_log(&self) -> PathBuf {
        self.state_dir.join("audit.jsonl")
    }
    pub fn master_key(&self) -> PathBuf {
        self.state_dir.join("master.key")
    }
    pub fn sealed_keys(&self) -> PathBuf {
        self.state_dir.join("sealed-keys")
    }
    pub fn tokens_file(&self) -> PathBuf {
        self.state_dir.join("tokens")
    }
    pub fn dev_token(&self) -> PathBuf {
        self.state_dir.join("dev-token")
    }
    pub fn registry_db(&self) -> PathBuf {
        self.state_dir.join("registry.db")
    }
    pub fn changes_db(&self) -> PathBuf {
        self.state_dir.join("changes.db")
    }
    pub fn runsc_root(&self) -> PathBuf {
        self.state_dir.join("runsc")
    }
    pub fn bundles_dir(&self) -> PathBuf {
        self.state_dir.join("bundles")
    }
    pub fn images_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }

    /// Every mount a session's sandbox gets, in mount order.
    pub fn session_mounts(
        &self,
        id: &SessionId,
        group: &AgentGroupId,
        model_socket: &Path,
    ) -> Vec<SessionMount> {
        use MountAccess::*;
        use MountKind::*;
        let m = |host: PathBuf, sandbox, access, kind| SessionMount {
            host,
            sandbox,
            access,
            kind,
        };
        vec![
            m(
                self.inbound_dir(id),
                sandbox::INBOUND_DIR,
                ReadOnly,
                Directory,
            ),
            m(
                self.outbound_dir(id),
                sandbox::OUTBOUND_DIR,
                ReadWrite,
                Directory,
            ),
            m(self.key_dir(id), sandbox::KEY_DIR, ReadOnly, Directory),
            m(
                self.config_dir(id),
                sandbox::CONFIG_DIR,
                ReadOnly,
                Directory,
            ),
            m(
                self.heartbeat_dir(id),
                sandbox::HEARTBEAT_DIR,
                ReadWrite,
                Directory,
            ),
            m(
                self.workspace(group),
                sandbox::WORKSPACE,
                ReadWrite,
                Directory,
            ),
            m(
                model_socket.to_owned(),
                sandbox::MODEL_SOCKET,
                ReadWrite,
                Socket,
            ),
            m(
                self.doorbell_socket(id),
                sandbox::DOORBELL_SOCKET,
                ReadWrite,
                Socket,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_design_table() {
        let l = HostLayout::new("/var/lib/ironclaw");
        let s = SessionId::new("ses_1").unwrap();
        let g = AgentGroupId::new("g1").unwrap();
        assert_eq!(
            l.inbound_db(&s),
            Path::new("/var/lib/ironclaw/sessions/ses_1/inbound/inbound.db")
        );
        assert_eq!(
            l.outbound_db(&s),
            Path::new("/var/lib/ironclaw/sessions/ses_1/outbound/outbound.db")
        );
        assert_eq!(
            l.workspace(&g),
            Path::new("/var/lib/ironclaw/groups/g1/workspace")
        );
        assert_eq!(
            l.model_socket(Path::new("/run/ironclaw/modelproxy.sock"), &s),
            Path::new("/run/ironclaw/modelproxy.sock.d/ses_1.sock")
        );
        let mounts = l.session_mounts(&s, &g, Path::new("/x.sock"));
        let inbound = mounts
            .iter()
            .find(|m| m.sandbox == sandbox::INBOUND_DIR)
            .unwrap();
        assert_eq!(inbound.access, MountAccess::ReadOnly);
        let outbound = mounts
            .iter()
            .find(|m| m.sandbox == sandbox::OUTBOUND_DIR)
            .unwrap();
        assert_eq!(outbound.access, MountAccess::ReadWrite);
        // The database constants live inside the mounted directories.
        assert!(sandbox::INBOUND_DB.starts_with(sandbox::INBOUND_DIR));
        assert!(sandbox::OUTBOUND_DB.starts_with(sandbox::OUTBOUND_DIR));
        assert!(sandbox::KEY_FILE.starts_with(sandbox::KEY_DIR));
        assert!(sandbox::PERSONA_FILE.starts_with(sandbox::CONFIG_DIR));
    }
}
