//! The SessionManager: everything between "this session should run" and a running
//! agent, and back.
//!
//! Launch, under the session's own lock (concurrent wakes never double-launch):
//! 1. the queue files and per-session directories, with the ownership the runtime
//!    needs (see [`Ownership`]); the persona file from the agent group;
//! 2. the session key from the custodian, handed over on a tmpfs ([`KeyHandoff`]);
//! 3. the session's model-proxy listener and doorbell;
//! 4. the runtime's launch; then the registry status `running` and a launch receipt in
//!    the audit chain (runtime, version, spec hash, image digest, mounts).
//!
//! Stop reverses 4–2; [`SessionManager::end`] also destroys the key, so the queue files
//! become unreadable for good.
//!
//! Not here: deciding *when* to launch (the router and the sweep do), reading queues
//! (delivery does), or building OCI specs (the runtime does).

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ironclaw_audit::{AuditEvent, AuditLog};
use ironclaw_contract::db::{Cipher, DbError};
use ironclaw_contract::enums::{SessionMode, UnknownSenderPolicy};
use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::{
    HostLayout, MountAccess, SessionMount, HEARTBEAT_FILE_NAME, PERSONA_FILE_NAME,
};
use ironclaw_contract::queue::InboundWriter;
use ironclaw_contract::rows::SessionRouting;
use ironclaw_contract::sandbox_queue::EncryptedInboundReader;
use ironclaw_contract::time::Timestamp;
use ironclaw_keys::KeyCustodian;
use ironclaw_modelproxy::{ModelProxy, SessionListener};
use ironclaw_queue::{EncryptedInboundWriter, EncryptedOutboundReader, QueueFactory};
use ironclaw_registry::{AgentGroup, Registry, SessionStatus};

use crate::doorbell::DoorbellHub;
use crate::handoff::KeyHandoff;
use crate::runtime::{container_id, LaunchPlan, Launched, Liveness, Runtime, RuntimeKind};

/// How long a stopping agent gets to finish its step before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session {0} is not in the registry")]
    UnknownSession(SessionId),
    #[error("agent group {0} is not in the registry")]
    UnknownGroup(AgentGroupId),
    #[error("registry: {0}")]
    Registry(#[from] ironclaw_registry::RegistryError),
    #[error("queue files: {0}")]
    Provision(#[from] ironclaw_queue::ProvisionError),
    #[error("session key: {0}")]
    Key(#[from] ironclaw_keys::KeyError),
    #[error("key hand-off: {0}")]
    Handoff(#[from] crate::handoff::HandoffError),
    #[error("model proxy: {0}")]
    Proxy(#[from] ironclaw_modelproxy::ProxyError),
    #[error("doorbell: {0}")]
    Doorbell(#[from] crate::doorbell::DoorbellError),
    #[error("runtime: {0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("audit: {0}")]
    Audit(String),
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("session {0} is parked; an operator must resume it")]
    Parked(SessionId),
}

/// Why a session's queue could not be opened for the host.
#[derive(Debug, thiserror::Error)]
pub enum QueueAccessError {
    #[error("session key: {0}")]
    Key(#[from] ironclaw_keys::KeyError),
    #[error("queue files: {0}")]
    Provision(#[from] ironclaw_queue::ProvisionError),
    #[error(transparent)]
    Open(#[from] DbError),
}

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> SessionError {
    let path = path.to_owned();
    move |source| SessionError::Io { path, op, source }
}

/// Who owns what on the host.
///
/// A sandboxed agent runs as container uid 65532, which the user namespace maps to an
/// unprivileged host uid; runsc's gofer, which opens the mount sources on the
/// sandbox's behalf, runs as the namespace's root (another unprivileged host uid).
/// Host root is *not* mapped, so a root-owned file is "other" to both of them: every
/// mount source must be owned by the agent's host uid (the bind mount's `ro` flag, not
/// ownership, is what keeps the agent from writing inbound, config and key), and every
/// ancestor directory must be traversable (0711: traverse, not list).
/// An unsandboxed (`--dev`) agent is the daemon's own uid and needs none of this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    DaemonUid,
    Sandbox { uid: u32, gid: u32 },
}

impl Ownership {
    fn owner(self) -> Option<(u32, u32)> {
        match self {
            Ownership::DaemonUid => None,
            Ownership::Sandbox { uid, gid } => Some((uid, gid)),
        }
    }

    /// A mount source: the agent's own, nobody else's.
    fn for_agent(self, path: &Path, mode: u32) -> Result<(), SessionError> {
        if let Ownership::Sandbox { uid, gid } = self {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io(path, "chown"))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io(path, "chmod"))
    }

    /// An ancestor of mount sources: root's, traversable by the sandbox's uids.
    fn traversable(self, path: &Path) -> Result<(), SessionError> {
        let mode = match self {
            Ownership::DaemonUid => 0o700,
            Ownership::Sandbox { .. } => 0o711,
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io(path, "chmod"))
    }
}

/// Fixed settings of the manager.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub layout: HostLayout,
    /// The model proxy's base socket; per-session sockets live beside it.
    pub model_proxy_base: PathBuf,
    pub ownership: Ownership,
    /// Extra agent flags for every session (e.g. a shorter poll interval in tests).
    pub extra_agent_args: Vec<String>,
}

/// A running session as the manager knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub session: SessionId,
    pub group: AgentGroupId,
    pub launched: Launched,
    pub started_at: Timestamp,
}

/// What a call to [`SessionManager::ensure_running`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchOutcome {
    AlreadyRunning,
    Launched(LiveSession),
}

struct Slot {
    live: Option<LiveSession>,
    proxy: Option<SessionListener>,
}

pub struct SessionManager {
    config: ManagerConfig,
    factory: QueueFactory,
    registry: Arc<Registry>,
    keys: Arc<KeyCustodian>,
    audit: Arc<AuditLog>,
    proxy: Arc<ModelProxy>,
    doorbells: DoorbellHub,
    runtime: Arc<dyn Runtime>,
    /// One async lock per session: launch, stop and end of a session are serialized;
    /// different sessions proceed in parallel.
    slots: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<Slot>>>>,
    preparing: Mutex<()>,
}

impl SessionManager {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ManagerConfig,
        registry: Arc<Registry>,
        keys: Arc<KeyCustodian>,
        audit: Arc<AuditLog>,
        proxy: Arc<ModelProxy>,
        doorbells: DoorbellHub,
        runtime: Arc<dyn Runtime>,
    ) -> Self {
        Self {
            factory: QueueFactory::new(config.layout.clone()),
            config,
            registry,
            keys,
            audit,
            proxy,
            doorbells,
            runtime,
            slots: Mutex::default(),
            preparing: Mutex::new(()),
        }
    }

    pub fn runtime_kind(&self) -> RuntimeKind {
        self.runtime.kind()
    }

    pub fn doorbells(&self) -> &DoorbellHub {
        &self.doorbells
    }

    /// Where the sessions' files live on the host (paths only: opening a queue needs
    /// its key, which only the handles below use).
    pub fn layout(&self) -> &HostLayout {
        self.factory.layout()
    }

    /// The cipher of a session's queue files (creating its key on first use). Private:
    /// session keys never leave this crate; other crates get queue handles instead.
    fn cipher(&self, session: &SessionId) -> Result<Cipher, QueueAccessError> {
        Ok(Cipher::Key(self.keys.get_or_create(session)?))
    }

    /// Creates the session's queue files if they are missing (idempotent; existing
    /// rows are kept). A new session's files would otherwise not exist until its first
    /// launch, and a message routed to it must be durable before the sandbox starts.
    pub fn provision_queues(&self, session: &SessionId) -> Result<(), QueueAccessError> {
        if self.factory.layout().inbound_db(session).exists() {
            return Ok(());
        }
        let cipher = self.cipher(session)?;
        Ok(self.factory.provision(session, &cipher)?)
    }

    /// The host's writer of the session's inbound queue (the session's files must
    /// exist: [`SessionManager::provision_queues`]).
    pub fn inbound_writer(
        &self,
        session: &SessionId,
    ) -> Result<EncryptedInboundWriter, QueueAccessError> {
        let cipher = self.cipher(session)?;
        Ok(self.factory.inbound_writer(session, &cipher)?)
    }

    /// A read-only view of the session's inbound queue (due and scheduled rows).
    pub fn inbound_reader(
        &self,
        session: &SessionId,
    ) -> Result<EncryptedInboundReader, QueueAccessError> {
        let cipher = self.cipher(session)?;
        Ok(self.factory.inbound_reader(session, cipher)?)
    }

    /// The host's reader of the session's outbound queue.
    pub fn outbound_reader(
        &self,
        session: &SessionId,
    ) -> Result<EncryptedOutboundReader, QueueAccessError> {
        let cipher = self.cipher(session)?;
        Ok(self.factory.outbound_reader(session, cipher)?)
    }

    fn slot(&self, session: &SessionId) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(slots.entry(session.clone()).or_insert_with(|| {
            Arc::new(tokio::sync::Mutex::new(Slot {
                live: None,
                proxy: None,
            }))
        }))
    }

    fn sessions_lock(&self) -> MutexGuard<'_, HashMap<SessionId, Arc<tokio::sync::Mutex<Slot>>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sessions the manager launched and has not stopped.
    pub async fn live(&self) -> Vec<LiveSession> {
        let slots: Vec<_> = self.sessions_lock().values().cloned().collect();
        let mut out = Vec::new();
        for slot in slots {
            if let Some(l) = &slot.lock().await.live {
                out.push(l.clone());
            }
        }
        out
    }

    /// Whether the session's agent is running, per its runtime.
    pub async fn liveness(&self, session: &SessionId) -> Result<Liveness, SessionError> {
        let runtime = Arc::clone(&self.runtime);
        let id = container_id(session);
        Ok(tokio::task::spawn_blocking(move || runtime.liveness(&id))
            .await
            .map_err(|e| SessionError::Audit(format!("liveness task: {e}")))??)
    }

    /// The end of the agent's stderr, when the runtime keeps it.
    pub fn last_output(&self, session: &SessionId) -> Option<String> {
        self.runtime.last_output(&container_id(session))
    }

    /// Rings the session's agent; false when it is not connected.
    pub fn ring(&self, session: &SessionId) -> bool {
        self.doorbells.ring(session)
    }

    /// The session's heartbeat file on the host.
    pub fn heartbeat_file(&self, session: &SessionId) -> PathBuf {
        self.config
            .layout
            .heartbeat_dir(session)
            .join(HEARTBEAT_FILE_NAME)
    }

    /// Launches the session unless its agent is already running.
    pub async fn ensure_running(&self, session: &SessionId) -> Result<LaunchOutcome, SessionError> {
        let slot = self.slot(session);
        let mut slot = slot.lock().await;
        if let Some(live) = &slot.live {
            // The fast path of every routed message: an agent holding its doorbell
            // connection is up (the sandbox closes the connection when the agent
            // exits), so no `runsc state` process (~25-40 ms) is spawned per message.
            // A hung agent that keeps the connection is the sweep's to find, from the
            // heartbeat; the message waits durably in inbound either way.
            if self.doorbells.connected(session) {
                return Ok(LaunchOutcome::AlreadyRunning);
            }
            let runtime = Arc::clone(&self.runtime);
            let id = live.launched.container_id.clone();
            let alive = tokio::task::spawn_blocking(move || runtime.liveness(&id))
                .await
                .map_err(|e| SessionError::Audit(format!("liveness task: {e}")))??;
            if alive == Liveness::Running {
                return Ok(LaunchOutcome::AlreadyRunning);
            }
        }
        let record = self
            .registry
            .session(session)?
            .ok_or_else(|| SessionError::UnknownSession(session.clone()))?;
        if record.status == SessionStatus::Parked {
            return Err(SessionError::Parked(session.clone()));
        }
        let group = self
            .registry
            .agent_group(&record.agent_group_id)?
            .ok_or_else(|| SessionError::UnknownGroup(record.agent_group_id.clone()))?;

        let mounts = self.prepare(session, &group)?;
        let model_socket = self
            .config
            .layout
            .model_socket(&self.config.model_proxy_base, session);
        // A relaunch replaces the previous listener.
        if let Some(old) = slot.proxy.take() {
            old.shutdown().await;
        }
        let listener = self
            .proxy
            .listen(session.clone(), group.id.clone(), &model_socket)
            .await?;
        if let Some((uid, gid)) = self.config.ownership.owner() {
            std::os::unix::fs::chown(&model_socket, Some(uid), Some(gid))
                .map_err(io(&model_socket, "chown"))?;
            if let Some(dir) = model_socket.parent() {
                self.config.ownership.traversable(dir)?;
            }
        }
        slot.proxy = Some(listener);
        self.doorbells.listen(
            session,
            &self.config.layout.doorbell_socket(session),
            self.config.ownership.owner(),
        )?;

        let plan = LaunchPlan {
            session: session.clone(),
            group: group.id.clone(),
            mounts: mounts.clone(),
            agent_args: self.agent_args(&group),
            log_file: self.config.layout.session_dir(session).join("agent.log"),
        };
        let runtime = Arc::clone(&self.runtime);
        let launched = tokio::task::spawn_blocking(move || runtime.launch(&plan))
            .await
            .map_err(|e| SessionError::Audit(format!("launch task: {e}")))??;
        self.registry
            .set_session_status(session, SessionStatus::Running)?;
        self.audit
            .append(AuditEvent::SessionLaunched {
                session_id: session.clone(),
                agent_group_id: group.id.clone(),
                runtime: launched.runtime.as_str().to_owned(),
                spec_hash: launched.spec_sha256.clone().unwrap_or_default(),
                image_digest: launched.image_digest.clone().unwrap_or_default(),
                runtime_version: launched.runtime_version.clone(),
                mounts: mounts.iter().map(describe_mount).collect(),
            })
            .map_err(|e| SessionError::Audit(e.to_string()))?;
        if launched.runtime == RuntimeKind::Unsandboxed {
            tracing::warn!(session = %session, "session launched UNSANDBOXED (--dev without runsc): the agent runs as a plain host process");
        }
        let live = LiveSession {
            session: session.clone(),
            group: group.id,
            launched,
            started_at: Timestamp::now(),
        };
        slot.live = Some(live.clone());
        Ok(LaunchOutcome::Launched(live))
    }

    /// Launches (or finds running) the operator session of an agent group: the
    /// group's agent-shared session on the `operator` channel, so an operator can
    /// start an agent without a message.
    pub async fn start_for_group(
        &self,
        group: &AgentGroupId,
    ) -> Result<(SessionId, LaunchOutcome), SessionError> {
        if self.registry.agent_group(group)?.is_none() {
            return Err(SessionError::UnknownGroup(group.clone()));
        }
        let mg = self.registry.write(|tx| {
            tx.get_or_create_messaging_group(
                "operator",
                group.as_str(),
                None,
                false,
                UnknownSenderPolicy::Strict,
            )
        })?;
        let session =
            self.registry
                .resolve_session(group, &mg.id, None, SessionMode::AgentShared)?;
        let outcome = self.ensure_running(&session.id).await?;
        Ok((session.id, outcome))
    }

    /// Un-parks a session (budget or repeated failures) and launches it. The model
    /// proxy's budget park is lifted too, and the session's token count starts over.
    pub async fn resume(&self, session: &SessionId) -> Result<LaunchOutcome, SessionError> {
        let record = self
            .registry
            .session(session)?
            .ok_or_else(|| SessionError::UnknownSession(session.clone()))?;
        if record.status == SessionStatus::Parked {
            self.registry
                .set_session_status(session, SessionStatus::Stopped)?;
        }
        self.proxy.resume(session);
        self.ensure_running(session).await
    }

    /// Creates the session's directories and files with their ownership and returns
    /// its mount table.
    fn prepare(
        &self,
        session: &SessionId,
        group: &AgentGroup,
    ) -> Result<Vec<SessionMount>, SessionError> {
        // One preparation at a time: provisioning a session creates the shared
        // `sessions/` directory private (0700) and this function then opens it to
        // traversal (0711); interleaved, one launch's provisioning closed the directory
        // under another's runsc (found launching 20 sessions at once).
        let _one_at_a_time = self.preparing.lock().unwrap_or_else(|p| p.into_inner());
        let layout = &self.config.layout;
        let own = self.config.ownership;
        let key = self.keys.get_or_create(session)?;
        self.factory.provision(session, &Cipher::Key(key.clone()))?;
        let mk = |dir: &Path| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir, "create"))
        };
        // Ancestors are only traversed; their listings stay private.
        own.traversable(layout.state_dir())?;
        own.traversable(&layout.sessions_dir())?;
        own.traversable(&layout.session_dir(session))?;
        own.for_agent(&layout.inbound_dir(session), 0o700)?;
        own.for_agent(&layout.inbound_db(session), 0o600)?;
        own.for_agent(&layout.outbound_dir(session), 0o700)?;
        own.for_agent(&layout.outbound_db(session), 0o600)?;
        let heartbeat = layout.heartbeat_dir(session);
        mk(&heartbeat)?;
        own.for_agent(&heartbeat, 0o700)?;
        let config = layout.config_dir(session);
        mk(&config)?;
        own.for_agent(&config, 0o700)?;
        let persona = config.join(PERSONA_FILE_NAME);
        let _ = std::fs::remove_file(&persona);
        std::fs::write(&persona, group.persona.as_bytes()).map_err(io(&persona, "write"))?;
        own.for_agent(&persona, 0o400)?;
        let workspace = layout.workspace(&group.id);
        mk(&workspace)?;
        for dir in workspace.ancestors().skip(1) {
            if dir == layout.state_dir() {
                break;
            }
            own.traversable(dir)?;
        }
        own.for_agent(&workspace, 0o700)?;
        let key_dir = layout.key_dir(session);
        mk(&key_dir)?;
        if let Some(keys) = key_dir.parent() {
            own.traversable(keys)?;
        }
        KeyHandoff::new(layout.key_dir(session), own.owner()).place(&key)?;
        self.seed_routing(session, &key)?;
        let model_socket = layout.model_socket(&self.config.model_proxy_base, session);
        Ok(layout.session_mounts(session, &group.id, &model_socket))
    }

    /// Points the agent's default replies at the session's own conversation.
    fn seed_routing(&self, session: &SessionId, key: &SessionKey) -> Result<(), SessionError> {
        let Some(record) = self.registry.session(session)? else {
            return Err(SessionError::UnknownSession(session.clone()));
        };
        let Some(mg) = self.registry.messaging_group(&record.messaging_group_id)? else {
            return Ok(());
        };
        let mut w = self
            .factory
            .inbound_writer(session, &Cipher::Key(key.clone()))
            .map_err(|e| SessionError::Audit(format!("inbound writer: {e}")))?;
        w.set_session_routing(&SessionRouting {
            channel_type: mg.channel_type,
            platform_id: mg.platform_id,
            thread_id: record.thread_id,
        })
        .map_err(|e| SessionError::Audit(format!("session routing: {e}")))?;
        Ok(())
    }

    fn agent_args(&self, group: &AgentGroup) -> Vec<String> {
        let mut args = vec!["--provider".to_owned(), group.provider.clone()];
        if !group.model.is_empty() {
            args.extend(["--model".to_owned(), group.model.clone()]);
        }
        if !group.enabled_tools.is_empty() {
            args.extend(["--enabled-tools".to_owned(), group.enabled_tools.join(",")]);
        }
        args.extend(self.config.extra_agent_args.iter().cloned());
        args
    }

    /// Stops the session's agent (SIGTERM, grace, SIGKILL), closes its listeners and
    /// withdraws its key file. The key itself is kept: the session can be relaunched.
    pub async fn stop(&self, session: &SessionId, reason: &str) -> Result<bool, SessionError> {
        let slot = self.slot(session);
        let mut slot = slot.lock().await;
        let was_live = slot.live.take().is_some();
        let runtime = Arc::clone(&self.runtime);
        let id = container_id(session);
        tokio::task::spawn_blocking(move || runtime.stop(&id, STOP_GRACE))
            .await
            .map_err(|e| SessionError::Audit(format!("stop task: {e}")))??;
        if let Some(listener) = slot.proxy.take() {
            listener.shutdown().await;
        }
        self.doorbells.close(session);
        KeyHandoff::new(
            self.config.layout.key_dir(session),
            self.config.ownership.owner(),
        )
        .withdraw()?;
        if was_live {
            if let Ok(Some(s)) = self.registry.session(session) {
                if s.status == SessionStatus::Running {
                    self.registry
                        .set_session_status(session, SessionStatus::Stopped)?;
                }
            }
            self.audit
                .append(AuditEvent::SessionStopped {
                    session_id: session.clone(),
                    reason: reason.to_owned(),
                })
                .map_err(|e| SessionError::Audit(e.to_string()))?;
        }
        Ok(was_live)
    }

    /// Ends the session for good: stops it, destroys its key (its queue files can never
    /// be read again) and removes its directories.
    pub async fn end(&self, session: &SessionId, reason: &str) -> Result<(), SessionError> {
        self.stop(session, reason).await?;
        self.keys.destroy(session)?;
        self.proxy.forget_session(session);
        self.factory.remove(session)?;
        self.sessions_lock().remove(session);
        Ok(())
    }

    /// Stops every live session (daemon shutdown).
    pub async fn stop_all(&self, reason: &str) {
        let ids: Vec<SessionId> = self.sessions_lock().keys().cloned().collect();
        for id in ids {
            if let Err(e) = self.stop(&id, reason).await {
                tracing::warn!(session = %id, error = %e, "stopping session failed");
            }
        }
    }

    /// Removes containers an earlier daemon left behind (called once at start).
    pub async fn reconcile(&self) -> Result<Vec<String>, SessionError> {
        let runtime = Arc::clone(&self.runtime);
        let removed = tokio::task::spawn_blocking(move || runtime.reconcile(&[]))
            .await
            .map_err(|e| SessionError::Audit(format!("reconcile task: {e}")))??;
        for id in &removed {
            tracing::info!(container = %id, "removed a container left by an earlier daemon");
        }
        // Sessions the registry still calls running have no agent now, and no session
        // has one: a key an earlier daemon handed to a sandbox and never withdrew (it
        // was killed) must not outlive that sandbox on the host's tmpfs.
        for s in self.registry.sessions()? {
            if s.status == SessionStatus::Running {
                self.registry
                    .set_session_status(&s.id, SessionStatus::Stopped)?;
            }
            let handoff = KeyHandoff::new(
                self.config.layout.key_dir(&s.id),
                self.config.ownership.owner(),
            );
            if let Err(e) = handoff.withdraw() {
                tracing::warn!(session = %s.id, error = %e, "could not withdraw a key left by an earlier daemon");
            }
        }
        Ok(removed)
    }
}

fn describe_mount(m: &SessionMount) -> String {
    let access = match m.access {
        MountAccess::ReadOnly => "ro",
        MountAccess::ReadWrite => "rw",
    };
    format!("{} -> {} ({access})", m.host.display(), m.sandbox)
}
