//! Harness for end-to-end tests: start the real daemon on a free loopback port with its
//! own state dir, and run the real `ironctl` against it.
//!
//! The binaries are found next to the test executable's `deps/` directory, where
//! `cargo test --workspace` builds them (each binary's package has integration tests,
//! which makes cargo build the binary itself).

// Test support: a harness step that fails is a failed test, and says which one.
#![allow(clippy::expect_used)]

pub mod chat;
pub mod live;
pub mod platform;
pub mod webhook;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary built alongside the tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the tests with `cargo test --workspace` (it builds every binary)",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `ironclaw-controlplane`.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub state_dir: PathBuf,
    pub stdout_log: PathBuf,
    /// The model proxy's base socket (`<state_dir>.modelproxy.sock`, unless the extra
    /// flags name one): never the system default, which needs root.
    pub model_proxy_socket: PathBuf,
    extra: Vec<String>,
    port: u16,
}

impl Daemon {
    /// Starts `--dev` on a fresh port with `state_dir` and extra flags.
    pub fn start_dev(state_dir: &Path, extra: &[&str]) -> Daemon {
        Self::start(state_dir, true, extra)
    }

    pub fn start(state_dir: &Path, dev: bool, extra: &[&str]) -> Daemon {
        let port = free_port();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::spawn(state_dir, dev, port, extra)
    }

    fn spawn(state_dir: &Path, dev: bool, port: u16, extra: Vec<String>) -> Daemon {
        let stdout_log = state_dir.with_extension(format!("{port}.stdout"));
        let log = std::fs::File::create(&stdout_log).expect("stdout log");
        let mut cmd = Command::new(binary("ironclaw-controlplane"));
        cmd.arg("--state-dir")
            .arg(state_dir)
            .arg("--api-addr")
            .arg(format!("127.0.0.1:{port}"));
        if dev {
            cmd.arg("--dev");
        }
        let model_proxy_socket = match extra.iter().position(|a| a == "--model-proxy-socket") {
            Some(i) => PathBuf::from(extra.get(i + 1).expect("--model-proxy-socket PATH")),
            None => {
                let p = state_dir.with_extension("modelproxy.sock");
                cmd.arg("--model-proxy-socket").arg(&p);
                p
            }
        };
        // The daemon's model providers come from its environment; the tests decide them.
        for var in [
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "OPENROUTER_API_KEY",
            "OPENROUTER_BASE_URL",
            "OLLAMA_BASE_URL",
            "OLLAMA_API_KEY",
            "IRONCLAW_OPENAI_COMPAT_BASE_URL",
            "IRONCLAW_OPENAI_COMPAT_API_KEY",
            "IRONCLAW_MOCK_PROVIDER",
        ] {
            cmd.env_remove(var);
        }
        // The daemon's logs (stderr) go next to its stdout, for failing tests to show.
        let stderr = std::fs::File::create(state_dir.with_extension(format!("{port}.stderr")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        cmd.args(&extra)
            .env_remove("IRONCLAW_API_TOKEN")
            .stdout(log)
            .stderr(stderr);
        let child = cmd.spawn().expect("spawn ironclaw-controlplane");
        let d = Daemon {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            state_dir: state_dir.to_owned(),
            stdout_log,
            model_proxy_socket,
            extra,
            port,
        };
        d.wait_healthy();
        d
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if ureq::get(format!("{}/healthz", self.addr)).call().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon on {} did not become healthy", self.addr);
    }

    /// The dev operator's token (from `<state>/dev-token`).
    pub fn dev_token(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("dev-token"))
            .expect("dev-token")
            .trim()
            .to_owned()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(
            self.state_dir
                .with_extension(format!("{}.stderr", self.port)),
        )
        .unwrap_or_default()
    }

    /// Kills with SIGKILL (no cleanup at all) and waits.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops with SIGTERM and waits.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Kills with SIGKILL mid-whatever (no cleanup at all), then starts again on the
    /// same port, state dir and flags: a crash and a supervisor's restart.
    pub fn crash_and_restart(mut self, dev: bool) -> Daemon {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (state_dir, port, extra) = (self.state_dir.clone(), self.port, self.extra.clone());
        drop(self);
        Self::spawn(&state_dir, dev, port, extra)
    }

    /// Stops and starts again on the same port and state dir.
    pub fn restart(self, dev: bool) -> Daemon {
        let (state_dir, port, extra) = (self.state_dir.clone(), self.port, self.extra.clone());
        self.stop();
        Self::spawn(&state_dir, dev, port, extra)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The result of one `ironctl` run.
pub struct Ctl {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ctl {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `ironctl` against `addr` as the holder of `token`.
pub fn ironctl(addr: &str, token: Option<&str>, args: &[&str]) -> Ctl {
    let mut cmd = Command::new(binary("ironctl"));
    cmd.args(args)
        .env("IRONCLAW_ADDR", addr)
        .env_remove("IRONCLAW_API_TOKEN");
    if let Some(t) = token {
        cmd.env("IRONCLAW_API_TOKEN", t);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run ironctl");
    Ctl {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}
