//! Choosing how sessions run, and composing the session manager, sweep and delivery.
//!
//! - `runsc` installed → every session under gVisor, from an image verified against the
//!   trust policy. With `--image DIR --trust-policy FILE` that image; in `--dev`
//!   without them, the static `ironclaw-sandbox` is packed into an image under the state
//!   dir, signed with a dev key created there, and exactly that key is trusted.
//! - no `runsc`, `--dev` → the unsandboxed plain-process runtime, labelled as such in
//!   logs, `/readyz` and `ironctl status`.
//! - no `runsc`, not `--dev` → no runtime: the daemon serves its API, `/readyz` says
//!   why sessions cannot run and how to fix it, and launches fail with that message.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ironclaw_contract::paths::HostLayout;
use ironclaw_image::{PublicKey, TrustPolicy};
use ironclaw_isolation::{RunscConfig, RunscIsolator};
use ironclaw_session::{
    LaunchPlan, Launched, Liveness, Ownership, RunscRuntime, Runtime, RuntimeError, RuntimeKind,
    UnsandboxedRuntime,
};

/// What the daemon will run sessions with.
pub struct RuntimeChoice {
    pub runtime: Arc<dyn Runtime>,
    pub ownership: Ownership,
    /// Shown in `/readyz` and `ironctl status`.
    pub notice: Option<String>,
    /// Set when sessions cannot run at all.
    pub unavailable: Option<String>,
}

/// Inputs of the choice.
pub struct RuntimeInputs<'a> {
    pub dev: bool,
    pub layout: &'a HostLayout,
    pub model_proxy_socket: &'a Path,
    pub sandbox_bin: Option<&'a Path>,
    pub image: Option<&'a Path>,
    pub trust_policy: Option<&'a Path>,
}

/// Why the sandboxed runtime could not be set up (sessions then cannot run; the
/// daemon still serves its API and says this in `/readyz`).
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("trust policy: {0}")]
    TrustPolicy(#[source] ironclaw_image::PolicyError),
    #[error("--image and --trust-policy go together")]
    HalfAnImage,
    #[error("no sandbox image: pass --image DIR (an OCI layout made by `ironctl image build`) and --trust-policy FILE")]
    NoImage,
    /// Boxed: a provisioning error is large, and this one happens once per start.
    #[error("sandbox image {}: {source}", dir.display())]
    Provision {
        dir: PathBuf,
        #[source]
        source: Box<ironclaw_image::ProvisionError>,
    },
    #[error("no static ironclaw-sandbox found for the dev image: build it with `RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox` or pass --sandbox-bin PATH")]
    NoStaticAgent,
    #[error("dev signing key: {0}")]
    DevSigningKey(#[source] ironclaw_image::KeyError),
    #[error("dev image from {}: {source}", bin.display())]
    DevImage {
        bin: PathBuf,
        #[source]
        source: ironclaw_image::BuildError,
    },
    #[error("dev key: {0}")]
    DevKey(#[source] ironclaw_image::KeyError),
    #[error("dev trust policy is empty")]
    EmptyDevPolicy,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Runs nothing; every launch explains why.
struct NoRuntime(String);

impl Runtime for NoRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Runsc
    }
    fn launch(&self, _: &LaunchPlan) -> Result<Launched, RuntimeError> {
        Err(RuntimeError::Unavailable(self.0.clone()))
    }
    fn liveness(&self, _: &str) -> Result<Liveness, RuntimeError> {
        Ok(Liveness::Absent)
    }
    fn stop(&self, _: &str, _: std::time::Duration) -> Result<(), RuntimeError> {
        Ok(())
    }
    fn reconcile(&self, _: &[String]) -> Result<Vec<String>, RuntimeError> {
        Ok(Vec::new())
    }
}

fn unavailable(reason: String) -> RuntimeChoice {
    tracing::error!(reason = %reason, "sessions cannot run");
    RuntimeChoice {
        runtime: Arc::new(NoRuntime(reason.clone())),
        ownership: Ownership::DaemonUid,
        notice: None,
        unavailable: Some(reason),
    }
}

pub fn choose(inputs: &RuntimeInputs<'_>) -> RuntimeChoice {
    let isolator = RunscIsolator::new(RunscConfig::new(inputs.layout.state_dir()));
    match isolator {
        Ok(isolator) => match sandboxed(inputs, isolator) {
            Ok(choice) => choice,
            Err(reason) => unavailable(reason.to_string()),
        },
        Err(e) if inputs.dev => {
            let Some(bin) = agent_binary(inputs.sandbox_bin, false) else {
                return unavailable(format!(
                    "runsc is not usable ({e}) and no ironclaw-sandbox binary was found next to the daemon; pass --sandbox-bin"
                ));
            };
            let notice = format!(
                "UNSANDBOXED: runsc is not usable ({e}); --dev runs agents as plain host processes ({}). Install gVisor (apt-get install -y runsc) for real isolation.",
                bin.display()
            );
            tracing::warn!("{notice}");
            RuntimeChoice {
                runtime: Arc::new(UnsandboxedRuntime::new(bin)),
                ownership: Ownership::DaemonUid,
                notice: Some(notice),
                unavailable: None,
            }
        }
        Err(e) => unavailable(format!("{e}")),
    }
}

/// The runsc runtime with a provisioned, verified rootfs.
fn sandboxed(
    inputs: &RuntimeInputs<'_>,
    isolator: RunscIsolator,
) -> Result<RuntimeChoice, SetupError> {
    let layout = inputs.layout;
    let images = layout.images_dir();
    std::fs::create_dir_all(&images).map_err(io(&images))?;
    let (image_dir, policy) = match (inputs.image, inputs.trust_policy) {
        (Some(image), Some(policy)) => (
            image.to_owned(),
            TrustPolicy::load(policy).map_err(SetupError::TrustPolicy)?,
        ),
        (Some(_), None) | (None, Some(_)) => return Err(SetupError::HalfAnImage),
        (None, None) if inputs.dev => dev_image(inputs, &images)?,
        (None, None) => return Err(SetupError::NoImage),
    };
    let rootfs = ironclaw_image::Provisioner::new(&images)
        .provision(&image_dir, &policy)
        .map_err(|source| SetupError::Provision {
            dir: image_dir.clone(),
            source: Box::new(source),
        })?;
    // runsc's gofer (an unprivileged mapped uid) must traverse to the rootfs.
    for dir in [
        layout.state_dir().to_owned(),
        images.clone(),
        images.join("rootfs"),
    ] {
        if dir.exists() {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
                .map_err(io(&dir))?;
        }
    }
    let digest = rootfs.manifest_digest.to_string();
    tracing::info!(image = %digest, runsc = %isolator.version().raw, trust = ?rootfs.trust, "sessions run under gVisor");
    let runtime = RunscRuntime::new(
        isolator,
        layout.clone(),
        inputs.model_proxy_socket.to_owned(),
        rootfs.path,
        digest,
    );
    let (uid, gid) = RunscRuntime::agent_host_ids();
    Ok(RuntimeChoice {
        runtime: Arc::new(runtime),
        ownership: Ownership::Sandbox { uid, gid },
        notice: None,
        unavailable: None,
    })
}

/// --dev: pack the static agent next to the daemon into a signed image and trust
/// exactly the dev key that signed it.
fn dev_image(
    inputs: &RuntimeInputs<'_>,
    images: &Path,
) -> Result<(PathBuf, TrustPolicy), SetupError> {
    let bin = agent_binary(inputs.sandbox_bin, true).ok_or(SetupError::NoStaticAgent)?;
    let key_dir = images.join("dev-key");
    let keys = if key_dir.join("image-signing.key").exists() {
        ironclaw_image::KeyFiles {
            private_key: key_dir.join("image-signing.key"),
            public_key: key_dir.join("image-signing.pub"),
        }
    } else {
        ironclaw_image::generate_signing_key(&key_dir).map_err(SetupError::DevSigningKey)?
    };
    // A fresh layout each start: the binary may have been rebuilt.
    let layout = images.join("dev-layout");
    if layout.exists() {
        std::fs::remove_dir_all(&layout).map_err(io(&layout))?;
    }
    let built = ironclaw_image::build_and_sign(&bin, &layout, Some(&keys.private_key)).map_err(
        |source| SetupError::DevImage {
            bin: bin.clone(),
            source,
        },
    )?;
    let public = PublicKey::load(&keys.public_key).map_err(SetupError::DevKey)?;
    let policy = TrustPolicy::from_parts([], [("dev".to_owned(), public)])
        .ok_or(SetupError::EmptyDevPolicy)?;
    tracing::info!(image = %built.manifest_digest, bin = %bin.display(), "dev image built and signed with the dev key");
    Ok((layout, policy))
}

fn is_static(bin: &Path) -> bool {
    std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.contains("statically linked") || text.contains("not a dynamic executable")
        })
        .unwrap_or(false)
}

/// The agent binary: the flag, else next to this executable, else the static build
/// output of this workspace. `need_static` skips dynamic candidates.
fn agent_binary(flag: Option<&Path>, need_static: bool) -> Option<PathBuf> {
    if let Some(p) = flag {
        return (p.is_file() && (!need_static || is_static(p))).then(|| p.to_owned());
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let candidates = [
        dir.join("ironclaw-sandbox"),
        dir.join("../x86_64-unknown-linux-gnu/release/ironclaw-sandbox"),
        dir.join("../../x86_64-unknown-linux-gnu/release/ironclaw-sandbox"),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_file() && (!need_static || is_static(p)))
}
