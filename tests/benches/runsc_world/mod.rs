//! A session manager on the real `runsc` runtime, composed from the library the way the
//! daemon composes it (`bins/controlplane/src/sessions.rs`), for the live queue stress
//! test (`tests/live_stress.rs`) and the start-time benchmark
//! (`tests/benches/sandbox_start.rs`).
//!
//! Why not the daemon: both need settings the daemon does not expose and should not
//! (agent flags such as `--max-batch 1` through `ManagerConfig::extra_agent_args`, no
//! model-proxy rate limit, several managers over fresh image caches), and the
//! benchmark times `SessionManager::ensure_running` itself, without HTTP in the way.
//! Everything that matters for isolation is the production code: the image is built,
//! signed and provisioned by `ironclaw-image` under a policy trusting only its key, the
//! spec is `ironclaw_isolation::spec::build`, the ownership is the user-namespace
//! mapping, the key goes on a tmpfs, and the agent is the static `ironclaw-sandbox`.
//!
//! Needs root, `runsc` and the static agent. [`RunscWorld`] deletes every container it
//! created and unmounts every key tmpfs when dropped, also after a failed assertion.
//!
//! (It lives under `benches/` in a directory, so cargo does not take it for a bench
//! target, and is included by path from the test.)

#![allow(dead_code)] // each includer uses part of it

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ironclaw_audit::AuditLog;
use ironclaw_contract::enums::{SessionMode, UnknownSenderPolicy};
use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_contract::paths::HostLayout;
use ironclaw_image::{PublicKey, Rootfs, TrustPolicy};
use ironclaw_isolation::{RunscConfig, RunscIsolator};
use ironclaw_keys::KeyCustodian;
use ironclaw_modelproxy::{ModelProxy, ProxyConfig};
use ironclaw_registry::{AgentGroup, Registry};
use ironclaw_session::{DoorbellHub, ManagerConfig, Ownership, RunscRuntime, SessionManager};

/// The static agent: `IRONCLAW_SANDBOX_BIN`, else this workspace's static build.
pub fn static_agent() -> PathBuf {
    if let Some(p) = std::env::var_os("IRONCLAW_SANDBOX_BIN") {
        return PathBuf::from(p);
    }
    // <target>/{debug,release}/deps/<exe> → <target>
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.ancestors().nth(3).expect("target dir");
    let bin = target.join("x86_64-unknown-linux-gnu/release/ironclaw-sandbox");
    assert!(
        bin.exists(),
        "{} is missing: build it with RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox (.ci/run does), or set IRONCLAW_SANDBOX_BIN",
        bin.display()
    );
    bin
}

/// Fails (never skips) without root and runsc, naming the fix.
pub fn require_root_and_runsc() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    assert_eq!(uid, "0", "live runsc sessions need root");
    let ok = Command::new("runsc")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "runsc is not usable: apt-get install -y runsc");
}

/// The group every session of a world belongs to: the proxy's mock, every optional tool.
pub const GROUP: &str = "live";

pub struct RunscWorld {
    pub state: PathBuf,
    pub layout: HostLayout,
    pub registry: Arc<Registry>,
    pub keys: Arc<KeyCustodian>,
    pub audit: Arc<AuditLog>,
    pub proxy: Arc<ModelProxy>,
    /// The signed OCI layout of the static agent.
    pub image: PathBuf,
    /// Trusts exactly the key that signed `image`.
    pub policy: TrustPolicy,
    pub group: AgentGroupId,
    pub model_proxy_base: PathBuf,
    /// Last: removed after `Drop::drop` has cleaned up containers and mounts.
    dir: tempfile::TempDir,
}

impl RunscWorld {
    /// A fresh state dir with a signed image of `agent` and an agent group on the mock.
    /// `proxy` is the model proxy's configuration (the mock is enabled on it). Must be
    /// called inside a tokio runtime (the proxy's listeners are tokio tasks).
    pub fn new(agent: &Path, mut proxy: ProxyConfig) -> Self {
        require_root_and_runsc();
        let dir = tempfile::tempdir().unwrap();
        // runsc's gofer runs as an unprivileged mapped uid: it must traverse down to the
        // session mounts and the rootfs.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let layout = HostLayout::new(&state);
        let (keys, _) = KeyCustodian::load(&layout.master_key(), &layout.sealed_keys()).unwrap();
        let audit = Arc::new(AuditLog::open(&layout.audit_log()).unwrap());

        // The image: built and signed as `ironctl image build --sign-key` does, trusted
        // by exactly its key.
        let signing = ironclaw_image::generate_signing_key(&dir.path().join("signing")).unwrap();
        let image = dir.path().join("image");
        ironclaw_image::build_and_sign(agent, &image, Some(&signing.private_key)).unwrap();
        let public = PublicKey::load(&signing.public_key).unwrap();
        let policy = TrustPolicy::from_parts([], [("live".to_owned(), public)]).unwrap();

        proxy.enable_mock();
        let proxy = ModelProxy::new(proxy, Arc::clone(&audit)).unwrap();
        let registry = Arc::new(Registry::in_memory());
        let group = AgentGroupId::new(GROUP).unwrap();
        registry
            .write(|tx| {
                let mut g = AgentGroup::new(group.clone(), "live", "mock", "");
                g.enabled_tools = vec!["send_message".into()];
                tx.create_agent_group(g)
            })
            .unwrap();
        let model_proxy_base = state.join("modelproxy.sock");
        Self {
            state,
            layout,
            registry,
            keys: Arc::new(keys),
            audit,
            proxy,
            image,
            policy,
            group,
            model_proxy_base,
            dir,
        }
    }

    /// Verifies and unpacks the image into `images_dir` (a cache hit if it is there).
    pub fn provision(&self, images_dir: &Path) -> Rootfs {
        let rootfs = ironclaw_image::Provisioner::new(images_dir)
            .provision(&self.image, &self.policy)
            .unwrap();
        // As the daemon does: the gofer must traverse to the rootfs.
        for d in [images_dir.to_owned(), images_dir.join("rootfs")] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        rootfs
    }

    /// The runsc isolator of this world (checks runsc's version and flags).
    pub fn isolator(&self) -> RunscIsolator {
        RunscIsolator::new(RunscConfig::new(&self.state)).unwrap()
    }

    /// The production runtime over `rootfs`.
    pub fn runtime(&self, rootfs: &Rootfs) -> RunscRuntime {
        self.runtime_with(self.isolator(), rootfs)
    }

    /// The production runtime over `rootfs`, with an isolator made earlier.
    pub fn runtime_with(&self, isolator: RunscIsolator, rootfs: &Rootfs) -> RunscRuntime {
        RunscRuntime::new(
            isolator,
            self.layout.clone(),
            self.model_proxy_base.clone(),
            rootfs.path.clone(),
            rootfs.manifest_digest.to_string(),
        )
    }

    /// A session manager over `runtime`, giving every agent `extra_agent_args`. Returns
    /// the doorbell receiver (agents ring it after writing outbound).
    pub fn manager(
        &self,
        runtime: RunscRuntime,
        extra_agent_args: &[&str],
    ) -> (
        Arc<SessionManager>,
        tokio::sync::mpsc::UnboundedReceiver<SessionId>,
    ) {
        let (uid, gid) = RunscRuntime::agent_host_ids();
        let (doorbells, rung) = DoorbellHub::new();
        let manager = SessionManager::new(
            ManagerConfig {
                layout: self.layout.clone(),
                model_proxy_base: self.model_proxy_base.clone(),
                ownership: Ownership::Sandbox { uid, gid },
                extra_agent_args: extra_agent_args.iter().map(|s| s.to_string()).collect(),
            },
            Arc::clone(&self.registry),
            Arc::clone(&self.keys),
            Arc::clone(&self.audit),
            Arc::clone(&self.proxy),
            doorbells,
            Arc::new(runtime),
        );
        (Arc::new(manager), rung)
    }

    /// A new session of the group (its own messaging group, so each call is new).
    pub fn new_session(&self, name: &str) -> SessionId {
        let mg = self
            .registry
            .get_or_create_messaging_group("web", name, None, false, UnknownSenderPolicy::Strict)
            .unwrap();
        self.registry
            .resolve_session(&self.group, &mg.id, None, SessionMode::Shared)
            .unwrap()
            .id
    }

    /// `runsc --root <state>/runsc <args>`.
    pub fn runsc(&self, args: &[&str]) -> std::process::Output {
        Command::new("runsc")
            .arg("--root")
            .arg(self.state.join("runsc"))
            .args(args)
            .output()
            .expect("run runsc")
    }

    /// Containers in this world's runsc root.
    pub fn containers(&self) -> Vec<String> {
        let out = self.runsc(&["list", "--quiet"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Deletes every container and unmounts every mount under the state dir. Safe to
    /// call more than once.
    pub fn cleanup(&self) {
        if self.state.join("runsc").exists() {
            for id in self.containers() {
                let _ = self.runsc(&["delete", "--force", &id]);
            }
        }
        // Key tmpfs mounts (normally unmounted by `SessionManager::stop`), deepest first.
        let Ok(canon) = self.dir.path().canonicalize() else {
            return;
        };
        let prefix = format!("{}/", canon.display());
        let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").arg(&p).status();
        }
    }
}

impl Drop for RunscWorld {
    fn drop(&mut self) {
        self.cleanup();
    }
}
