//! The runsc isolator: runs a validated [`SandboxSpec`] as a gVisor container and takes
//! it down again.
//!
//! What this module is for: the bundle on disk (`<state>/bundles/<id>/`, 0700, holding
//! the 0600 `config.json`), the runsc invocations and their lifecycle — `run --detach`
//! (or `create` → `start`) → `state` (liveness) → `kill SIGTERM` → grace → `kill
//! SIGKILL` → `delete --force` → bundle removed — and reconciling containers an earlier
//! daemon left in the state root.
//!
//! What it is not for: building or checking the spec ([`crate::spec`]), preparing the
//! rootfs or the session directories, or deciding when to launch, wake or stop a session.
//!
//! Security reasoning:
//! - Every invocation carries the same global flags, built in one place
//!   ([`RunscIsolator::global_args`]): a private `--root` (0700) so no other runsc user
//!   sees or touches these containers; `--network=none` (no NIC, whatever the spec says —
//!   the spec's empty network namespace is the second guard); `--host-uds=open` (the
//!   agent may *connect* to the host sockets bind-mounted by the contract table, never
//!   create one); `--oci-seccomp` (without it runsc ignores the spec's seccomp profile).
//!   The platform is runsc's default (`ptrace` on the supported hosts; `--platform=kvm`
//!   hangs there).
//! - A missing or too-old runsc is a typed error naming the fix, never a fallback
//!   (DESIGN §2.7). The feature check also asks runsc for the two flags we depend on.
//! - The container's lifetime is never tied to ours or to a request: `run --detach`
//!   (like `create` and `start`) returns once the container runs; the container's stdout goes to `/dev/null`
//!   and its stderr into a bounded in-memory tail (never an unbounded file an agent could
//!   use to fill the host's disk).
//! - runsc's own stderr is captured into errors, bounded ([`STDERR_TAIL`]).
//! - Every runsc call has a timeout; a hung runsc is killed and reported.

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::container_id::ContainerId;
use crate::spec::{SandboxSpec, SpecError};

/// The oldest runsc release known to work: the Debian package measured in
/// `RUNSC-NOTES.md` (`0.0~20221219.0`). It has `--host-uds=open` and `--oci-seccomp`.
pub const MIN_VERSION: u32 = 20221219;
/// What to tell an operator whose runsc is missing or too old.
pub const INSTALL_HINT: &str = "apt-get install -y runsc";
/// How much of runsc's stderr an error keeps (the end, where the reason is).
pub const STDERR_TAIL: usize = 4096;
/// How much of a container's stderr is kept in memory (the end).
pub const CONSOLE_TAIL: usize = 8192;
/// Upper bound on the stdout read from one runsc call (`list`, `state`).
const STDOUT_LIMIT: usize = 4 << 20;
/// How much of `runsc flags` is read when checking for the flags we depend on.
const FLAGS_LIMIT: usize = 256 << 10;
/// How long a container may take to disappear after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Configuration of a [`RunscIsolator`].
#[derive(Debug, Clone)]
pub struct RunscConfig {
    /// The runsc binary; a bare name is looked up in `PATH`.
    pub binary: PathBuf,
    /// The daemon's state directory: the runsc root is `<state_dir>/runsc`, bundles are
    /// `<state_dir>/bundles/<id>` (the contract's `HostLayout` names the same paths).
    pub state_dir: PathBuf,
    /// How long `stop` waits after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// Upper bound on one runsc invocation.
    pub command_timeout: Duration,
}

impl RunscConfig {
    /// Defaults: `runsc` from `PATH`, 10 s grace, 30 s per runsc call.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            binary: PathBuf::from("runsc"),
            state_dir: state_dir.into(),
            grace: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
        }
    }
}

/// The parsed `runsc --version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunscVersion {
    /// The first line, verbatim (recorded in launch receipts).
    pub raw: String,
    /// The release date as `YYYYMMDD`.
    pub date: u32,
}

impl RunscVersion {
    /// Parses `runsc version 0.0~20221219.0` or `runsc version release-20240513.0`:
    /// the first run of eight digits starting with `20` after `version`.
    pub fn parse(output: &str) -> Option<Self> {
        let line = output.lines().find(|l| l.contains("version"))?.trim();
        let after = &line[line.find("version")? + "version".len()..];
        let bytes = after.as_bytes();
        let date = (0..bytes.len().saturating_sub(7)).find_map(|i| {
            let window = &bytes[i..i + 8];
            let starts_run = i == 0 || !bytes[i - 1].is_ascii_digit();
            if !starts_run || !window.starts_with(b"20") || !window.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(window).ok()?.parse().ok()
        })?;
        Some(Self {
            raw: line.to_owned(),
            date,
        })
    }
}

/// A container's status as runsc reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
    #[serde(other)]
    Unknown,
}

/// The fields of `runsc state` / `runsc list --format=json` this crate uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    /// As runsc reports it (not re-validated: `list` may show anything in the root).
    pub id: String,
    pub status: Status,
    /// The container's init process on the host (0 once stopped).
    #[serde(default)]
    pub pid: i64,
}

impl ContainerState {
    /// Running or about to run: what liveness means for a session.
    pub fn is_alive(&self) -> bool {
        matches!(
            self.status,
            Status::Creating | Status::Created | Status::Running | Status::Paused
        )
    }
}

/// How a container ended when asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// runsc did not know the container; only leftovers (bundle) were removed.
    AlreadyGone,
    /// It was not running (created but never started, or already exited).
    NotRunning,
    /// It exited within the grace period after SIGTERM.
    ExitedOnTerm,
    /// It ignored SIGTERM for the whole grace period and was killed.
    Killed,
}

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

/// Why a runsc operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RunscError {
    #[error("runsc is not installed ({binary} not found); install gVisor's runtime: `{INSTALL_HINT}`", binary = .binary.display())]
    NotInstalled { binary: PathBuf },
    #[error("runsc {found} is too old: release {minimum} or newer is needed (for --host-uds=open and --oci-seccomp); upgrade it: `{INSTALL_HINT}`")]
    TooOld { found: String, minimum: u32 },
    #[error("runsc does not support --{flag}, which isolation depends on; install a current runsc: `{INSTALL_HINT}`")]
    MissingFeature { flag: &'static str },
    #[error("cannot parse the output of `runsc --version`: {output:?}")]
    UnparsableVersion { output: String },
    #[error("run {binary}: {source}", binary = .binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("runsc {op} {id} failed ({status}): {stderr}")]
    Failed {
        op: &'static str,
        id: String,
        status: String,
        stderr: String,
    },
    #[error("runsc {op} {id} did not finish within {after:?} and was killed")]
    Timeout {
        op: &'static str,
        id: String,
        after: Duration,
    },
    #[error("container {id} does not exist")]
    NotFound { id: String },
    #[error("container {id} is already running; stop it first")]
    AlreadyRunning { id: String },
    #[error("container {id} was still running {after:?} after SIGKILL")]
    StopTimeout { id: String, after: Duration },
    #[error("unexpected output of runsc {op}: {detail}")]
    BadOutput { op: &'static str, detail: String },
    #[error("{what} {path}: {source}", path = .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// The end of a byte stream, at most `cap` bytes.
#[derive(Debug)]
struct Tail {
    buf: VecDeque<u8>,
    cap: usize,
    closed: bool,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Self {
            buf: VecDeque::new(),
            cap,
            closed: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.cap)..];
        let overflow = (self.buf.len() + bytes.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow);
        self.buf.extend(bytes);
    }

    fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).trim().to_owned()
    }
}

type SharedTail = Arc<Mutex<Tail>>;

/// Reads `from` to its end on a thread, keeping the last `cap` bytes.
fn drain(from: impl Read + Send + 'static, cap: usize) -> SharedTail {
    let tail = Arc::new(Mutex::new(Tail::new(cap)));
    let t = Arc::clone(&tail);
    thread::spawn(move || {
        let mut from = from;
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => lock(&t).push(&buf[..n]),
            }
        }
        lock(&t).closed = true;
    });
    tail
}

/// A poisoned lock only means another thread panicked while appending bytes; the
/// buffer is still a valid tail, so it is used as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The output of one finished runsc call.
struct Captured {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// How a bundle is handed to runsc.
#[derive(Debug, Clone, Copy)]
enum Subcommand {
    /// `create`: the container exists, its process has not started.
    Create,
    /// `run --detach`: created and started, runsc returns once it runs.
    RunDetached,
}

impl Subcommand {
    fn op(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::RunDetached => "run",
        }
    }
}

/// Runs gVisor containers from validated specs. See the module docs.
#[derive(Debug)]
pub struct RunscIsolator {
    binary: PathBuf,
    root: PathBuf,
    bundles: PathBuf,
    version: RunscVersion,
    grace: Duration,
    timeout: Duration,
    consoles: Mutex<HashMap<ContainerId, SharedTail>>,
}

impl RunscIsolator {
    /// Checks runsc (present, new enough, has the flags we depend on) and creates the
    /// state root and bundle directory (0700).
    pub fn new(config: RunscConfig) -> Result<Self, RunscError> {
        let mut me = Self {
            binary: config.binary,
            root: config.state_dir.join("runsc"),
            bundles: config.state_dir.join("bundles"),
            version: RunscVersion {
                raw: String::new(),
                date: 0,
            },
            grace: config.grace,
            timeout: config.command_timeout,
            consoles: Mutex::new(HashMap::new()),
        };
        me.version = me.check_runtime()?;
        for dir in [&me.root, &me.bundles] {
            private_dir(dir)?;
        }
        Ok(me)
    }

    fn check_runtime(&self) -> Result<RunscVersion, RunscError> {
        let out = self.run_raw("--version", "", &[OsStr::new("--version")], STDERR_TAIL)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = RunscVersion::parse(&text).ok_or_else(|| RunscError::UnparsableVersion {
            output: text.trim().chars().take(200).collect(),
        })?;
        if version.date < MIN_VERSION {
            return Err(RunscError::TooOld {
                found: version.raw,
                minimum: MIN_VERSION,
            });
        }
        // `runsc flags` prints the flag list (to stderr on the measured release; ~8 KB).
        let out = self.run_raw("flags", "", &[OsStr::new("flags")], FLAGS_LIMIT)?;
        let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
        all.push_str(&out.stderr);
        for flag in ["host-uds", "oci-seccomp", "network"] {
            if !all.contains(&format!("-{flag}")) {
                return Err(RunscError::MissingFeature { flag });
            }
        }
        Ok(version)
    }

    pub fn version(&self) -> &RunscVersion {
        &self.version
    }

    /// `<state>/runsc`.
    pub fn state_root(&self) -> &Path {
        &self.root
    }

    /// `<state>/bundles/<id>`.
    pub fn bundle_dir(&self, id: &ContainerId) -> PathBuf {
        self.bundles.join(id.as_str())
    }

    /// The flags every invocation carries, before the subcommand.
    pub fn global_args(&self) -> Vec<OsString> {
        let mut root = OsString::from("--root=");
        root.push(&self.root);
        vec![
            root,
            "--network=none".into(),
            "--host-uds=open".into(),
            "--oci-seccomp".into(),
        ]
    }

    /// Checks the host side ([`SandboxSpec::preflight`]), writes the bundle and runs
    /// `runsc create`. The container exists afterwards but its agent has not started. A
    /// stopped leftover with the same id is deleted first; a live one is an error
    /// ([`RunscError::AlreadyRunning`]).
    pub fn create(&self, spec: &SandboxSpec) -> Result<(), RunscError> {
        self.create_or_run(spec, Subcommand::Create)
    }

    /// The bundle, then `runsc create` or `runsc run --detach` (create and start in
    /// one process).
    fn create_or_run(&self, spec: &SandboxSpec, sub: Subcommand) -> Result<(), RunscError> {
        let id = spec.container_id();
        spec.preflight()?;
        if self.may_exist(id) {
            match self.state(id) {
                Ok(st) if st.is_alive() => {
                    return Err(RunscError::AlreadyRunning { id: id.to_string() })
                }
                Ok(_) => self.delete(id)?,
                Err(RunscError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let bundle = self.bundle_dir(id);
        remove_bundle(&bundle)?;
        DirBuilder::new()
            .mode(0o700)
            .create(&bundle)
            .map_err(|source| RunscError::Io {
                what: "create bundle",
                path: bundle.clone(),
                source,
            })?;
        spec.write_config(&bundle)?;

        let mut args = self.global_args();
        match sub {
            Subcommand::Create => args.push("create".into()),
            Subcommand::RunDetached => args.extend(["run".into(), "--detach".into()]),
        }
        args.extend(["--bundle".into(), bundle.clone().into()]);
        args.push(id.as_str().into());
        let mut cmd = Command::new(&self.binary);
        // The sandbox inherits runsc create's stdio as the container's: stdout is
        // discarded, stderr (agent diagnostics and runsc's own errors) drained into a
        // bounded tail.
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let console = match child.stderr.take() {
            Some(stderr) => drain(stderr, CONSOLE_TAIL),
            None => Arc::new(Mutex::new(Tail::new(0))),
        };
        let status = match self.wait_child(&mut child, sub.op(), id.as_str()) {
            Ok(status) => status,
            Err(e) => {
                // A runsc that hung or vanished may have got the container far enough
                // to run: take it down, or it would run unmanaged and every later
                // launch of the session would find it "already running".
                let _ = self.delete(id);
                let _ = remove_bundle(&bundle);
                return Err(e);
            }
        };
        if !status.success() {
            // The sandbox did not come up, so nothing else holds the pipe: wait briefly
            // for the reader to see its end, then report what runsc said.
            let deadline = Instant::now() + Duration::from_secs(2);
            while !lock(&console).closed && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            let stderr = tail_of(&lock(&console).text(), STDERR_TAIL);
            let _ = self.delete(id);
            let _ = remove_bundle(&bundle);
            return Err(RunscError::Failed {
                op: sub.op(),
                id: id.to_string(),
                status: status.to_string(),
                stderr,
            });
        }
        lock(&self.consoles).insert(id.clone(), console);
        Ok(())
    }

    /// `runsc start`: runs the agent in a created container and returns (detached).
    pub fn start(&self, id: &ContainerId) -> Result<(), RunscError> {
        self.run_ok("start", id.as_str(), &["start".into(), id.as_str().into()])
            .map(|_| ())
    }

    /// What [`create`](Self::create) then [`start`](Self::start) do, in one runsc
    /// process (`run --detach`): each runsc process costs 30-40 ms to load here, and
    /// the launch path is what a woken session waits for. If it fails, the container
    /// and its bundle are removed again.
    pub fn launch(&self, spec: &SandboxSpec) -> Result<(), RunscError> {
        self.create_or_run(spec, Subcommand::RunDetached)
    }

    /// Whether runsc may know the container, from its state root alone — a directory
    /// read instead of a `runsc state` process (~25 ms each), which the launch path
    /// would otherwise pay twice per start for the usual case: no leftover container.
    ///
    /// Only a "no" is trusted, and only when the root looks exactly as measured
    /// (runsc keeps `<container>_sandbox:<sandbox>.state` and `.lock` files there):
    /// any entry of another shape, or an unreadable root, answers "maybe", so a runsc
    /// that lays its root out differently costs a `runsc state` call, never a missed
    /// container. Nothing but this isolator writes into its private root.
    pub fn may_exist(&self, id: &ContainerId) -> bool {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return true;
        };
        let ours = format!("{}_sandbox:", id.as_str());
        for entry in entries {
            let Ok(entry) = entry else { return true };
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return true;
            };
            if name.starts_with(&ours) {
                return true;
            }
            let known_shape =
                name.contains("_sandbox:") && (name.ends_with(".state") || name.ends_with(".lock"));
            if !known_shape {
                return true;
            }
        }
        false
    }

    /// `runsc state`: status and pid. [`RunscError::NotFound`] when runsc does not know
    /// the container.
    pub fn state(&self, id: &ContainerId) -> Result<ContainerState, RunscError> {
        let out = self.run_ok("state", id.as_str(), &["state".into(), id.as_str().into()])?;
        serde_json::from_slice(&out.stdout).map_err(|e| RunscError::BadOutput {
            op: "state",
            detail: e.to_string(),
        })
    }

    /// Liveness: `Ok(false)` when the container is stopped or unknown.
    pub fn is_alive(&self, id: &ContainerId) -> Result<bool, RunscError> {
        match self.state(id) {
            Ok(st) => Ok(st.is_alive()),
            Err(RunscError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The last [`CONSOLE_TAIL`] bytes the agent wrote to stderr, for diagnosing an
    /// early exit. `None` for a container this isolator did not create.
    pub fn console_tail(&self, id: &ContainerId) -> Option<String> {
        lock(&self.consoles).get(id).map(|t| lock(t).text())
    }

    /// Polls until the container is no longer running (or is gone), up to `timeout`.
    /// Returns whether it stopped in time.
    pub fn wait_stopped(&self, id: &ContainerId, timeout: Duration) -> Result<bool, RunscError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.state(id) {
                Ok(st) if st.is_alive() => {}
                Ok(_) | Err(RunscError::NotFound { .. }) => return Ok(true),
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops with the configured grace period; see [`stop_with_grace`](Self::stop_with_grace).
    pub fn stop(&self, id: &ContainerId) -> Result<StopOutcome, RunscError> {
        self.stop_with_grace(id, self.grace)
    }

    /// SIGTERM, up to `grace` for the agent to exit, SIGKILL, then `delete --force` and
    /// the bundle removed. Idempotent: an unknown container is [`StopOutcome::AlreadyGone`].
    pub fn stop_with_grace(
        &self,
        id: &ContainerId,
        grace: Duration,
    ) -> Result<StopOutcome, RunscError> {
        let known = if self.may_exist(id) {
            self.state(id)
        } else {
            Err(RunscError::NotFound { id: id.to_string() })
        };
        let outcome = match known {
            Err(RunscError::NotFound { .. }) => {
                remove_bundle(&self.bundle_dir(id))?;
                lock(&self.consoles).remove(id);
                return Ok(StopOutcome::AlreadyGone);
            }
            Err(e) => return Err(e),
            Ok(st) if st.status == Status::Running => {
                // A failed SIGTERM (the agent exited in between) is not an error: the
                // wait below sees the container stopped.
                let _ = self.kill(id, "SIGTERM");
                if self.wait_stopped(id, grace)? {
                    StopOutcome::ExitedOnTerm
                } else {
                    let _ = self.kill(id, "SIGKILL");
                    if !self.wait_stopped(id, KILL_WAIT)? {
                        return Err(RunscError::StopTimeout {
                            id: id.to_string(),
                            after: KILL_WAIT,
                        });
                    }
                    StopOutcome::Killed
                }
            }
            // Created, paused, stopped: `delete --force` ends whatever is left.
            Ok(_) => StopOutcome::NotRunning,
        };
        self.delete(id)?;
        remove_bundle(&self.bundle_dir(id))?;
        lock(&self.consoles).remove(id);
        Ok(outcome)
    }

    /// `runsc list`: every container in this isolator's state root.
    pub fn list(&self) -> Result<Vec<ContainerState>, RunscError> {
        let out = self.run_ok("list", "", &["list".into(), "--format=json".into()])?;
        // runsc prints `null` for an empty root.
        let list: Option<Vec<ContainerState>> =
            serde_json::from_slice(&out.stdout).map_err(|e| RunscError::BadOutput {
                op: "list",
                detail: e.to_string(),
            })?;
        Ok(list.unwrap_or_default())
    }

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

    fn kill(&self, id: &ContainerId, signal: &str) -> Result<(), RunscError> {
        self.run_ok(
            "kill",
            id.as_str(),
            &["kill".into(), id.as_str().into(), signal.into()],
        )
        .map(|_| ())
    }

    fn delete(&self, id: &ContainerId) -> Result<(), RunscError> {
        match self.run_ok(
            "delete",
            id.as_str(),
            &["delete".into(), "--force".into(), id.as_str().into()],
        ) {
            Ok(_) | Err(RunscError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs `runsc <global flags> <args>` and requires success. A failure whose stderr
    /// says the container does not exist becomes [`RunscError::NotFound`].
    fn run_ok(
        &self,
        op: &'static str,
        id: &str,
        args: &[OsString],
    ) -> Result<Captured, RunscError> {
        let mut all = self.global_args();
        all.extend(args.iter().cloned());
        let refs: Vec<&OsStr> = all.iter().map(OsString::as_os_str).collect();
        let out = self.run_raw(op, id, &refs, STDERR_TAIL)?;
        if out.status.success() {
            return Ok(out);
        }
        if out.stderr.contains("does not exist") || out.stderr.contains("not found") {
            return Err(RunscError::NotFound { id: id.to_owned() });
        }
        Err(RunscError::Failed {
            op,
            id: id.to_owned(),
            status: out.status.to_string(),
            stderr: out.stderr,
        })
    }

    /// Runs runsc with exactly `args`, with a timeout, capturing stdout (bounded) and
    /// the last `stderr_limit` bytes of stderr.
    fn run_raw(
        &self,
        op: &'static str,
        id: &str,
        args: &[&OsStr],
        stderr_limit: usize,
    ) -> Result<Captured, RunscError> {
        let mut child = Command::new(&self.binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let stdout = child.stdout.take().map(|out| {
            thread::spawn(move || {
                let mut v = Vec::new();
                let _ = out.take(STDOUT_LIMIT as u64).read_to_end(&mut v);
                v
            })
        });
        let stderr = child.stderr.take().map(|e| drain(e, stderr_limit));
        let status = self.wait_child(&mut child, op, id)?;
        let stdout = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = match stderr {
            Some(t) => {
                // The process has exited; its pipe closes with it unless it left a
                // child holding it (none of these subcommands does). Bounded wait.
                let deadline = Instant::now() + Duration::from_secs(1);
                while !lock(&t).closed && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(2));
                }
                let text = lock(&t).text();
                text
            }
            None => String::new(),
        };
        Ok(Captured {
            status,
            stdout,
            stderr,
        })
    }

    /// Waits for `child` up to the command timeout; kills it when the time is up.
    fn wait_child(
        &self,
        child: &mut Child,
        op: &'static str,
        id: &str,
    ) -> Result<ExitStatus, RunscError> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => {}
                Err(source) => {
                    return Err(RunscError::Spawn {
                        binary: self.binary.clone(),
                        source,
                    })
                }
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunscError::Timeout {
                    op,
                    id: id.to_owned(),
                    after: self.timeout,
                });
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    fn spawn_error(&self, source: io::Error) -> RunscError {
        if source.kind() == io::ErrorKind::NotFound {
            RunscError::NotInstalled {
                binary: self.binary.clone(),
            }
        } else {
            RunscError::Spawn {
                binary: self.binary.clone(),
                source,
            }
        }
    }
}

/// The last `max` bytes of `s`, on a character boundary.
fn tail_of(s: &str, max: usize) -> String {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

/// Creates `dir` (and parents) with mode 0700, or tightens an existing one to 0700.
fn private_dir(dir: &Path) -> Result<(), RunscError> {
    let io_err = |what, source| RunscError::Io {
        what,
        path: dir.to_owned(),
        source,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("create directory", e))?;
    let meta = fs::metadata(dir).map_err(|e| io_err("stat directory", e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("restrict directory", e))?;
    }
    Ok(())
}

fn remove_bundle(dir: &Path) -> Result<(), RunscError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RunscError::Io {
            what: "remove bundle",
            path: dir.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_and_upstream_versions() {
        let v = RunscVersion::parse("runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n").unwrap();
        assert_eq!(v.date, 20221219);
        assert_eq!(v.raw, "runsc version 0.0~20221219.0");
        let v = RunscVersion::parse("runsc version release-20240513.0\nspec: 1.1.0\n").unwrap();
        assert_eq!(v.date, 20240513);
        assert!(RunscVersion::parse("runsc version 1.2.3").is_none());
        assert!(RunscVersion::parse("").is_none());
        assert!(RunscVersion::parse("version 120221219").is_none());
        // Never panics on non-ASCII text around the digits.
        assert!(RunscVersion::parse("runsc version ééé20é").is_none());
        assert_eq!(
            RunscVersion::parse("runsc version é20221219").map(|v| v.date),
            Some(20221219)
        );
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::new(5);
        t.push(b"abc");
        t.push(b"defg");
        assert_eq!(t.text(), "cdefg");
        t.push(b"0123456789");
        assert_eq!(t.text(), "56789");
        assert_eq!(tail_of("héllo", 4), "llo");
    }

    #[test]
    fn state_json_parses() {
        let st: ContainerState = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","id":"ironclaw-a","status":"running","pid":42,"bundle":"/x"}"#,
        )
        .unwrap();
        assert_eq!(st.status, Status::Running);
        assert_eq!(st.pid, 42);
        assert!(st.is_alive());
        let st: ContainerState = serde_json::from_str(r#"{"id":"x","status":"weird"}"#).unwrap();
        assert_eq!(st.status, Status::Unknown);
        assert!(!st.is_alive());
    }

    /// Serialises the tests that spawn processes while another writes an executable:
    /// a child forked in between would inherit the write descriptor and make the exec
    /// fail with ETXTBSY.
    static SPAWN: Mutex<()> = Mutex::new(());

    #[test]
    fn a_missing_binary_names_the_fix() {
        let _g = lock(&SPAWN);
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RunscConfig::new(dir.path());
        cfg.binary = dir.path().join("no-such-runsc");
        let err = RunscIsolator::new(cfg).unwrap_err();
        assert!(matches!(err, RunscError::NotInstalled { .. }), "{err}");
        assert!(
            err.to_string().contains("apt-get install -y runsc"),
            "{err}"
        );
    }

    #[test]
    fn an_old_runsc_is_refused_with_the_fix() {
        let _g = lock(&SPAWN);
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("runsc");
        fs::write(&fake, "#!/bin/sh\necho 'runsc version 0.0~20200101.0'\n").unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        let mut cfg = RunscConfig::new(dir.path().join("state"));
        cfg.binary = fake;
        let err = RunscIsolator::new(cfg).unwrap_err();
        assert!(matches!(err, RunscError::TooOld { .. }), "{err}");
        assert!(
            err.to_string().contains("apt-get install -y runsc"),
            "{err}"
        );
    }

    #[test]
    fn a_runsc_without_the_needed_flags_is_refused() {
        let _g = lock(&SPAWN);
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("runsc");
        fs::write(
            &fake,
            "#!/bin/sh\ncase \"$1\" in --version) echo 'runsc version release-20240101.0';; \
             *) echo '  -network value';; esac\n",
        )
        .unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        let mut cfg = RunscConfig::new(dir.path().join("state"));
        cfg.binary = fake;
        let err = RunscIsolator::new(cfg).unwrap_err();
        assert!(
            matches!(err, RunscError::MissingFeature { flag: "host-uds" }),
            "{err}"
        );
    }
}
