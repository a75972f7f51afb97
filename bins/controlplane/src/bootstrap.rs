//! Opening the daemon's state, in dependency order, failing closed on anything wrong.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ironclaw_api::{ApiParts, ApiState, Limits};
use ironclaw_audit::{AuditEvent, AuditLog};
use ironclaw_channels::{Channels, ChannelsConfig};
use ironclaw_contract::db::Cipher;
use ironclaw_contract::ids::{AgentGroupId, UserId};
use ironclaw_contract::paths::HostLayout;
use ironclaw_delivery::{A2aLimits, Delivery};
use ironclaw_gateway::{Chain, ChangeStore, Gateway, OperatorError, Operators};
use ironclaw_identity::TokenStore;
use ironclaw_ingest::Ingest;
use ironclaw_keys::{HostFile, KeyCustodian};
use ironclaw_modelproxy::{ModelProxy, ProxyConfig, SessionListener};
use ironclaw_registry::{AgentGroup, Registry, Role, RoleGrant, User};
use ironclaw_router::{Router, RouterConfig};
use ironclaw_session::{DoorbellHub, ManagerConfig, SessionManager, SessionWaker};
use ironclaw_sweep::{Sweep, SweepConfig};

use crate::error::{DaemonError, SocketError, StateDirError};
use crate::Args;

pub struct Daemon {
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    tokens: Arc<TokenStore>,
    gateway: Arc<Gateway>,
    keys: Arc<KeyCustodian>,
    layout: HostLayout,
    /// The one model proxy of this daemon (providers, caps, budgets, parked sessions).
    /// The session manager (issue #5) gives each session its own listener with
    /// `ModelProxy::listen` at `HostLayout::model_socket(&model_proxy_socket, id)`.
    model_proxy: Arc<ModelProxy>,
    /// The base socket's absolute path; per-session sockets go in `<it>.d/`.
    model_proxy_socket: PathBuf,
    /// The base socket, once [`Daemon::serve_model_proxy`] has bound it.
    model_proxy_base: Option<SessionListener>,
    notices: Vec<String>,
    sessions: Option<Arc<SessionManager>>,
    /// Why sessions cannot run, if they cannot.
    sessions_unavailable: Option<String>,
    background: Vec<tokio::task::JoinHandle<()>>,
    dev: bool,
    sandbox_bin: Option<PathBuf>,
    image: Option<PathBuf>,
    trust_policy: Option<PathBuf>,
    channels: Arc<Channels>,
    /// Where verified messages go, once [`Daemon::start_sessions`] has run.
    ingest: Option<Ingest>,
}

impl Daemon {
    pub fn open(args: &Args) -> Result<Self, DaemonError> {
        let state_dir = args.state_dir.clone().unwrap_or_else(|| {
            if args.dev {
                PathBuf::from(".ironclaw-dev")
            } else {
                PathBuf::from("/var/lib/ironclaw")
            }
        });
        // Absolute: the state dir's paths become OCI mount sources and the rootfs path,
        // which runsc requires to be absolute.
        let state_dir =
            std::path::absolute(&state_dir).map_err(|source| StateDirError::Unreadable {
                path: state_dir.clone(),
                source,
            })?;
        private_dir(&state_dir)?;
        // A crash mid-write leaves the writer's temporary file (`.dev-token.tmp-…`, a
        // plaintext token) under a random name nothing writes over again.
        let stale = ironclaw_hostfs::remove_stale_temp_files(&state_dir)
            .map_err(DaemonError::part("removing stale temporary files"))?;
        tracing::info!(
            removed = stale.len(),
            "removed stale temporary files from the state dir"
        );
        let layout = HostLayout::new(&state_dir);
        tracing::info!(state_dir = %state_dir.display(), dev = args.dev, "opening state");

        let (keys, created) = KeyCustodian::load(&layout.master_key(), &layout.sealed_keys())
            .map_err(DaemonError::part("key custody"))?;
        if created {
            tracing::warn!(path = %layout.master_key().display(), "created a new master key; back it up with the state dir");
        }
        let host_key = |file: HostFile| {
            keys.host_file_key(file)
                .map(Cipher::Key)
                .map_err(DaemonError::part("key custody"))
        };
        let registry = Registry::open(&layout.registry_db(), &host_key(HostFile::Registry)?)
            .map_err(DaemonError::part("registry"))?;
        let store = ChangeStore::open(&layout.changes_db(), &host_key(HostFile::ChangeStore)?)
            .map_err(DaemonError::part("change store"))?;
        let audit =
            AuditLog::open(&layout.audit_log()).map_err(|source| DaemonError::AuditLog {
                path: layout.audit_log(),
                state_dir: state_dir.clone(),
                source,
            })?;
        audit
            .append(AuditEvent::DaemonStarted {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .map_err(DaemonError::part("audit log"))?;
        let tokens =
            TokenStore::open(&layout.tokens_file()).map_err(DaemonError::part("tokens"))?;

        let registry = Arc::new(registry);
        let audit = Arc::new(audit);
        let mut notices = Vec::new();
        if args.dev {
            dev_identity(&layout, &tokens, &registry, &audit)?;
            seed_dev_agent(&registry)?;
            notices.push("dev mode: embedded defaults, mock provider, local state".to_owned());
        } else if tokens.is_empty() {
            first_owner(&tokens, &registry, &audit)?;
        }

        let mount_prefix = state_dir.join("mounts");
        let gateway = Gateway::new(
            store,
            registry.clone(),
            audit.clone(),
            Chain::standard(mount_prefix),
        );
        let recovered = gateway
            .recover()
            .map_err(DaemonError::part("recovering approved changes"))?;
        if recovered > 0 {
            tracing::info!(recovered, "applied changes approved before a restart");
        }
        let channels_config = ChannelsConfig::load(args.channels_file.as_deref())
            .map_err(DaemonError::part("channels"))?;
        let channels =
            Channels::from_config(&channels_config).map_err(DaemonError::part("channels"))?;
        for st in channels.status() {
            tracing::info!(channel = %st, "channel adapter");
        }
        let model_proxy_socket = model_proxy_socket(args, &state_dir)?;
        let model_proxy = model_proxy(args.dev, &audit)?;
        Ok(Self {
            registry,
            audit,
            tokens: Arc::new(tokens),
            gateway: Arc::new(gateway),
            keys: Arc::new(keys),
            layout,
            model_proxy,
            model_proxy_socket,
            model_proxy_base: None,
            notices,
            sessions: None,
            sessions_unavailable: None,
            background: Vec::new(),
            dev: args.dev,
            sandbox_bin: args.sandbox_bin.clone(),
            image: args.image.clone(),
            trust_policy: args.trust_policy.clone(),
            channels: Arc::new(channels),
            ingest: None,
        })
    }

    /// Binds and serves the model proxy's base socket. Refuses to take over a socket
    /// another live process is serving; replaces a stale one (left by a crash).
    pub async fn serve_model_proxy(&mut self) -> Result<(), DaemonError> {
        let path = &self.model_proxy_socket;
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse { path: path.clone() }.into());
        }
        let listener = self
            .model_proxy
            .serve_base(path)
            .await
            .map_err(|source| SocketError::Bind { source })?;
        tracing::info!(
            socket = %path.display(),
            sessions = %session_dir(path).display(),
            "model proxy serving its base socket"
        );
        self.model_proxy_base = Some(listener);
        Ok(())
    }

    /// Chooses the runtime, builds the session manager, removes containers an earlier
    /// daemon left, and starts the sweep and the delivery loop.
    pub async fn start_sessions(&mut self) -> Result<(), DaemonError> {
        let choice = crate::sessions::choose(&crate::sessions::RuntimeInputs {
            dev: self.dev,
            layout: &self.layout,
            model_proxy_socket: &self.model_proxy_socket,
            sandbox_bin: self.sandbox_bin.as_deref(),
            image: self.image.as_deref(),
            trust_policy: self.trust_policy.as_deref(),
        });
        if let Some(n) = &choice.notice {
            self.notices.push(n.clone());
        }
        self.sessions_unavailable = choice.unavailable.clone();
        let (doorbells, rung) = DoorbellHub::new();
        let manager = Arc::new(SessionManager::new(
            ManagerConfig {
                layout: self.layout.clone(),
                model_proxy_base: self.model_proxy_socket.clone(),
                ownership: choice.ownership,
                extra_agent_args: Vec::new(),
            },
            self.registry.clone(),
            self.keys.clone(),
            self.audit.clone(),
            self.model_proxy.clone(),
            doorbells,
            choice.runtime,
        ));
        manager
            .reconcile()
            .await
            .map_err(DaemonError::part("reconciling sessions"))?;
        let sweep = Sweep::new(
            manager.clone(),
            self.registry.clone(),
            self.audit.clone(),
            SweepConfig::default(),
        );
        self.background.push(tokio::spawn(sweep.run()));
        let delivery = Arc::new(Delivery::new(
            manager.clone(),
            self.registry.clone(),
            self.gateway.clone(),
            Arc::new(crate::dispatch::ChannelDispatcher(self.channels.clone())),
            A2aLimits::default(),
        ));
        self.background.push(tokio::spawn(delivery.run(rung)));
        // One owner per inbound message: the router writes into the sessions' queues
        // and the session manager wakes them (both behind ingest's ports).
        let router = Router::new(
            self.gateway.clone(),
            manager.clone(),
            RouterConfig::default(),
        );
        self.ingest = Some(Ingest::new(
            Arc::new(router),
            Arc::new(SessionWaker::on_current_runtime(manager.clone())),
        ));
        self.sessions = Some(manager);
        Ok(())
    }

    /// The inbound path outside the API (Telegram long polling): the adapters and the
    /// ingest service, once [`Daemon::start_sessions`] has run.
    pub fn inbound_path(&self) -> Option<(&Channels, Ingest)> {
        Some((&self.channels, self.ingest.clone()?))
    }

    /// `None` when ready; otherwise why not (shown by `/readyz`).
    pub fn not_ready(&self) -> Option<String> {
        self.sessions_unavailable
            .as_ref()
            .map(|r| format!("sessions cannot run: {r}"))
    }

    /// Stops the base socket (removing it) and waits for queued audit records.
    pub async fn shutdown(mut self) {
        for task in self.background.drain(..) {
            task.abort();
        }
        if let Some(m) = &self.sessions {
            m.stop_all("daemon shutdown").await;
        }
        if let Some(base) = self.model_proxy_base.take() {
            base.shutdown().await;
        }
        self.model_proxy.flush_audit();
        let st = self.model_proxy.stats();
        let calls: u64 = st.calls.values().flat_map(|by| by.values()).sum();
        tracing::info!(
            calls,
            input_tokens = st.input_tokens,
            output_tokens = st.output_tokens,
            "model proxy stopped"
        );
    }

    pub fn api_state(&self, limits: Limits) -> ApiState {
        let state = ApiState::new(ApiParts {
            gateway: self.gateway.clone(),
            registry: self.registry.clone(),
            audit: self.audit.clone(),
            tokens: self.tokens.clone(),
            sessions: self.sessions.clone(),
            channels: Some(self.channels.clone()),
            ingest: self.ingest.clone(),
            limits,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        });
        for n in &self.notices {
            state.add_notice(n.clone());
        }
        state.set_model_proxy(Arc::new(crate::proxy_status::ProxyView(
            self.model_proxy.clone(),
        )));
        state
    }
}

/// The base socket: the flag, or `/run/ironclaw/modelproxy.sock`, or
/// `<state-dir>/modelproxy.sock` in --dev (so a dev daemon needs no root). Made absolute:
/// sandboxes get per-session sockets beside it by bind mount, which takes absolute
/// paths.
fn model_proxy_socket(args: &Args, state_dir: &Path) -> Result<PathBuf, SocketError> {
    let path = match &args.model_proxy_socket {
        Some(p) => p.clone(),
        None if args.dev => state_dir.join("modelproxy.sock"),
        None => PathBuf::from("/run/ironclaw/modelproxy.sock"),
    };
    if path.file_name().is_none() || path.as_os_str().is_empty() {
        return Err(SocketError::NoFileName { path });
    }
    std::path::absolute(&path).map_err(|source| SocketError::Path { path, source })
}

/// `<base>.d`, where per-session sockets go.
fn session_dir(base: &Path) -> PathBuf {
    let mut d = base.as_os_str().to_owned();
    d.push(".d");
    PathBuf::from(d)
}

/// The model proxy: providers from the environment (names logged, never keys), plus
/// the mock in --dev. A malformed provider setting fails startup (fail closed).
fn model_proxy(dev: bool, audit: &Arc<AuditLog>) -> Result<Arc<ModelProxy>, DaemonError> {
    let mut config = ProxyConfig::from_env()?;
    if dev {
        config.enable_mock();
    }
    let proxy = ModelProxy::new(config, audit.clone())?;
    let names: Vec<&str> = proxy.providers().iter().map(|p| p.prefix()).collect();
    if names.is_empty() {
        tracing::warn!(
            "model proxy: no provider configured; agents cannot reach a model (set ANTHROPIC_API_KEY, OPENAI_API_KEY, OPENROUTER_API_KEY, OLLAMA_BASE_URL or IRONCLAW_OPENAI_COMPAT_BASE_URL; IRONCLAW_MOCK_PROVIDER=1 for the mock)"
        );
    } else {
        tracing::info!(providers = %names.join(","), "model proxy providers configured");
    }
    Ok(proxy)
}

/// Creates the state dir 0700, or refuses one that others can read.
fn private_dir(dir: &Path) -> Result<(), StateDirError> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StateDirError::Create {
                path: dir.to_owned(),
                source,
            })?;
    }
    let meta = std::fs::metadata(dir).map_err(|source| StateDirError::Unreadable {
        path: dir.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(StateDirError::NotADirectory {
            path: dir.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    // 0711 is private too: others may traverse (runsc's unprivileged gofer must reach
    // the session mounts beneath it) but not list, read or write.
    if mode & 0o066 != 0 {
        return Err(StateDirError::NotPrivate {
            path: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn make_owner(name: &str, principal: &UserId, registry: &Registry) -> Result<(), DaemonError> {
    registry
        .put_user(User {
            id: principal.clone(),
            kind: "operator".into(),
            display_name: name.into(),
        })
        .and_then(|_| {
            registry.grant_role(&RoleGrant {
                user_id: principal.clone(),
                role: Role::Owner,
                scope: None,
            })
        })
        .map(|_| ())
        .map_err(DaemonError::part("registry"))
}

fn daemon_principal() -> UserId {
    UserId::new("daemon:bootstrap").unwrap_or_else(|_| unreachable!("constant id is valid"))
}

/// First start outside --dev: mint an owner token and print it once.
fn first_owner(
    tokens: &TokenStore,
    registry: &Registry,
    audit: &AuditLog,
) -> Result<(), DaemonError> {
    let operators = Operators {
        tokens,
        registry,
        audit,
    };
    let (_, secret) = operators
        .mint_first_owner(&daemon_principal())
        .map_err(|e| match e {
            OperatorError::Identity(e) => DaemonError::part("tokens")(e),
            OperatorError::Registry(e) => DaemonError::part("registry")(e),
            OperatorError::Audit(e) => DaemonError::part("audit log")(e),
            other => DaemonError::part("first owner")(other),
        })?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "First start: created the owner token (shown once, store it now):\n\n    {}\n\nexport IRONCLAW_API_TOKEN=<token> to use ironctl.",
        secret.expose()
    );
    Ok(())
}

/// --dev: the dev operator's token is IRONCLAW_API_TOKEN, or the one in
/// <state>/dev-token, or a new one written there (0600).
fn dev_identity(
    layout: &HostLayout,
    tokens: &TokenStore,
    registry: &Registry,
    audit: &AuditLog,
) -> Result<(), DaemonError> {
    let path = layout.dev_token();
    let active_dev = |t: &TokenStore| {
        t.list()
            .into_iter()
            .find(|r| r.name == "dev" && r.is_active())
            .map(|r| r.hash_prefix)
    };
    let before = active_dev(tokens);
    let from_env = std::env::var("IRONCLAW_API_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    let from_file = std::fs::read_to_string(&path)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let token = match from_env.or(from_file) {
        Some(t) => {
            tokens
                .adopt("dev", &t, None)
                .map_err(DaemonError::part("dev token"))?;
            t
        }
        None => {
            if tokens
                .list()
                .iter()
                .any(|r| r.name == "dev" && r.is_active())
            {
                tokens
                    .revoke("dev", &daemon_principal())
                    .map_err(DaemonError::part("dev token"))?;
            }
            let (_, secret) = tokens
                .create("dev", None)
                .map_err(DaemonError::part("dev token"))?;
            secret.expose().to_owned()
        }
    };
    ironclaw_hostfs::write_private(&path, token.as_bytes())
        .map_err(DaemonError::part("dev token"))?;
    let principal = UserId::new("operator:dev").map_err(DaemonError::part("dev operator"))?;
    make_owner("dev", &principal, registry)?;
    // Audit a new dev token, not every restart that finds the same one.
    if active_dev(tokens) != before {
        audit
            .append(AuditEvent::TokenCreated {
                name: "dev".into(),
                principal,
                created_by: daemon_principal(),
            })
            .map_err(DaemonError::part("audit log"))?;
    }
    eprintln!(
        "dev mode: the dev operator's token is in {} (export IRONCLAW_API_TOKEN=$(cat {}))",
        path.display(),
        path.display()
    );
    Ok(())
}

/// --dev: the `dev-agent` group with the mock provider and every optional tool.
fn seed_dev_agent(registry: &Registry) -> Result<(), DaemonError> {
    let id = AgentGroupId::new("dev-agent").map_err(DaemonError::part("seeding dev-agent"))?;
    if registry
        .agent_group(&id)
        .map_err(DaemonError::part("registry"))?
        .is_some()
    {
        return Ok(());
    }
    let mut g = AgentGroup::new(id, "Dev agent", "mock", "");
    g.persona = "You are the IronClaw development agent.".into();
    g.enabled_tools = ironclaw_contract::tools::OPTIONAL_TOOLS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    registry
        .create_agent_group(g)
        .map_err(DaemonError::part("seeding dev-agent"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, MetadataExt};

    use ironclaw_contract::key::SessionKey;

    use super::*;

    /// `--dev` wrote its token through `dev-token.tmp`, opened with O_CREAT|O_TRUNC, so a
    /// symlink planted there made the daemon write the operator token into whatever file
    /// it pointed at. The token now goes through the host's one private-file writer.
    #[test]
    fn the_dev_token_is_never_written_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        private_dir(&state).unwrap();
        let layout = HostLayout::new(&state);
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"not yours").unwrap();
        let planted = state.join("dev-token.tmp");
        symlink(&victim, &planted).unwrap();

        let tokens = TokenStore::open(&layout.tokens_file()).unwrap();
        let registry = Registry::open(
            &layout.registry_db(),
            &Cipher::Key(SessionKey::from_bytes([3; 32])),
        )
        .unwrap();
        let audit = AuditLog::open(&layout.audit_log()).unwrap();
        dev_identity(&layout, &tokens, &registry, &audit).unwrap();

        assert_eq!(std::fs::read(&victim).unwrap(), b"not yours");
        assert!(std::fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink());
        let meta = std::fs::symlink_metadata(layout.dev_token()).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.mode() & 0o7777, 0o600);
        let token = std::fs::read_to_string(layout.dev_token()).unwrap();
        assert_eq!(
            tokens.authenticate(token.trim()).map(|p| p.name),
            Some("dev".to_owned())
        );
    }
}
