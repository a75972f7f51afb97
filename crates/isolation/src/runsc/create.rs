//! `create` and `launch`: check the host side of the spec, write the bundle, and run
//! `runsc create` (the container exists, its agent has not started) or `runsc run
//! --detach` (created and started by one runsc process). A stopped leftover with the
//! same id is deleted first, a live one refused; a failed or hung create takes down
//! whatever it got running, and the bundle. The container's stdout goes to `/dev/null`
//! and its stderr into a bounded console tail.
//!
//! Not for: building or validating the spec ([`crate::spec`]), or starting a created
//! container ([`super::start`]).

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::bundle::remove_bundle;
use super::command::{drain, lock, tail_of, Tail};
use super::{RunscError, RunscIsolator, CONSOLE_TAIL, STDERR_TAIL};
use crate::spec::SandboxSpec;

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

impl RunscIsolator {
    /// Checks the host side ([`SandboxSpec::preflight`]), writes the bundle and runs
    /// `runsc create`. The container exists afterwards but its agent has not started. A
    /// stopped leftover with the same id is deleted first; a live one is an error
    /// ([`RunscError::AlreadyRunning`]).
    pub fn create(&self, spec: &SandboxSpec) -> Result<(), RunscError> {
        self.create_or_run(spec, Subcommand::Create)
    }

    /// What [`create`](Self::create) then [`start`](Self::start) do, in one runsc
    /// process (`run --detach`): each runsc process costs 30-40 ms to load here, and
    /// the launch path is what a woken session waits for. If it fails, the container
    /// and its bundle are removed again.
    pub fn launch(&self, spec: &SandboxSpec) -> Result<(), RunscError> {
        self.create_or_run(spec, Subcommand::RunDetached)
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
}
