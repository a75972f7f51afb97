//! One session's host side, composed as the daemon composes it, over a temp state dir:
//! the setup the session, sweep and delivery tests share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ironclaw_audit::AuditLog;
use ironclaw_contract::enums::{SessionMode, UnknownSenderPolicy};
use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_contract::paths::HostLayout;
use ironclaw_keys::KeyCustodian;
use ironclaw_modelproxy::{ModelProxy, ProxyConfig};
use ironclaw_registry::{AgentGroup, Registry};
use ironclaw_session::{
    DoorbellHub, ManagerConfig, Ownership, Runtime, SessionManager, UnsandboxedRuntime,
};
use tokio::sync::mpsc::UnboundedReceiver;

/// The workspace's agent binary (`ironclaw-sandbox`, next to the running test's
/// directory), built on demand so a crate's tests also work when run on their own
/// (`cargo test -p ironclaw-session`).
pub fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("the test binary sits in <target>/<profile>/deps");
    let bin = dir.join("ironclaw-sandbox");
    if !bin.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "ironclaw-sandbox"])
            .status()
            .expect("running cargo");
        assert!(status.success(), "building ironclaw-sandbox failed");
    }
    bin
}

/// A state dir with one agent group (`g1`, mock provider), one web conversation
/// (`web`/`c1`) wired to it with a shared session, and a [`SessionManager`] over an
/// unsandboxed runtime. Built by [`SessionWorld::builder`]; dropping it removes the dir.
pub struct SessionWorld {
    /// Holds the temp dir: the state dir is `root()/state`, and a test may put its own
    /// files beside it.
    pub dir: tempfile::TempDir,
    pub layout: HostLayout,
    /// The key custodian the manager holds. Outside `ironclaw-session` only a test that
    /// plays the sandbox's role (writing outbound as the agent would) takes a session
    /// key from it; everything else goes through the manager.
    pub keys: Arc<KeyCustodian>,
    pub audit: Arc<AuditLog>,
    pub registry: Arc<Registry>,
    pub manager: Arc<SessionManager>,
    /// The sessions whose agents rang their doorbell.
    pub rung: UnboundedReceiver<SessionId>,
    pub group: AgentGroupId,
    pub session: SessionId,
}

impl SessionWorld {
    /// Defaults: an agent that is never launched, no extra agent flags, no persona, no
    /// tools.
    pub fn builder() -> SessionWorldBuilder {
        SessionWorldBuilder::default()
    }

    /// The temp dir that holds the state dir.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// The knobs the session world's users differ in. See [`SessionWorld::builder`].
#[derive(Default)]
#[must_use = "call .build() for the SessionWorld"]
pub struct SessionWorldBuilder {
    runtime: Option<Arc<dyn Runtime>>,
    agent: Option<PathBuf>,
    agent_args: Vec<String>,
    persona: String,
    tools: Vec<String>,
}

impl SessionWorldBuilder {
    /// Launches this binary as the agent, unsandboxed (e.g. [`agent_binary`], or
    /// `/bin/false` for an agent that dies at once). Without it (and without
    /// [`runtime`](Self::runtime)) the agent is a path that does not exist: for tests
    /// that never launch.
    pub fn agent(mut self, binary: impl Into<PathBuf>) -> Self {
        self.agent = Some(binary.into());
        self
    }

    /// Launches through this runtime instead; takes precedence over [`agent`](Self::agent).
    pub fn runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Extra flags for every agent launch.
    pub fn agent_args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.agent_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The agent's fallback poll interval (`--poll-interval-ms`).
    pub fn poll_interval_ms(self, ms: u64) -> Self {
        self.agent_args(["--poll-interval-ms".to_owned(), ms.to_string()])
    }

    /// The agent group's persona.
    pub fn persona(mut self, persona: impl Into<String>) -> Self {
        self.persona = persona.into();
        self
    }

    /// The agent group's enabled tools.
    pub fn tools(mut self, tools: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tools = tools.into_iter().map(Into::into).collect();
        self
    }

    pub fn build(self) -> SessionWorld {
        let dir = tempfile::tempdir().expect("a temp dir");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("the state dir");
        let layout = HostLayout::new(&state);
        let (keys, _) = KeyCustodian::load(&layout.master_key(), &layout.sealed_keys())
            .expect("a fresh key custodian");
        let keys = Arc::new(keys);
        let audit = Arc::new(AuditLog::open(&layout.audit_log()).expect("the audit log"));
        let registry = Arc::new(Registry::in_memory());
        let group = AgentGroupId::new("g1").expect("a valid group id");
        let mg = registry
            .write(|tx| {
                let mut g = AgentGroup::new(group.clone(), "test", "mock", "");
                g.persona = self.persona;
                g.enabled_tools = self.tools;
                tx.create_agent_group(g)?;
                tx.get_or_create_messaging_group(
                    "web",
                    "c1",
                    None,
                    false,
                    UnknownSenderPolicy::Strict,
                )
            })
            .expect("the agent group and conversation");
        let session = registry
            .resolve_session(&group, &mg.id, None, SessionMode::Shared)
            .expect("the shared session")
            .id;
        let mut config = ProxyConfig::from_lookup(|_| None).expect("the default proxy config");
        config.enable_mock();
        let proxy = ModelProxy::new(config, Arc::clone(&audit)).expect("the model proxy");
        let (doorbells, rung) = DoorbellHub::new();
        let runtime = self.runtime.unwrap_or_else(|| {
            Arc::new(UnsandboxedRuntime::new(
                self.agent.unwrap_or_else(|| state.join("no-agent")),
            ))
        });
        let manager = Arc::new(SessionManager::new(
            ManagerConfig {
                layout: layout.clone(),
                model_proxy_base: state.join("modelproxy.sock"),
                ownership: Ownership::DaemonUid,
                extra_agent_args: self.agent_args,
            },
            Arc::clone(&registry),
            Arc::clone(&keys),
            Arc::clone(&audit),
            proxy,
            doorbells,
            runtime,
        ));
        SessionWorld {
            dir,
            layout,
            keys,
            audit,
            registry,
            manager,
            rung,
            group,
            session,
        }
    }
}
