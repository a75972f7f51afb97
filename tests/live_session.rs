//! Live sessions under gVisor, from the real daemon (issue #5): `ironctl session start`
//! launches the agent in `runsc` from a signed dev image; the agent answers an inbound
//! message through the model proxy's mock; a sandbox killed from outside is relaunched
//! by the sweep; a daemon killed with SIGKILL leaves an orphaned container that the
//! next daemon reconciles.
//!
//! Needs root, `runsc` and the static agent (`.ci/run` builds it). Never skipped: a
//! machine without them fails here with the fix in the message.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ironclaw_contract::db::Cipher;
use ironclaw_contract::ids::SessionId;
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::queue::{InboundWriter, OutboundReader};
use ironclaw_contract::time::Timestamp;
use ironclaw_e2e::{ironctl, Daemon};
use ironclaw_keys::KeyCustodian;
use ironclaw_queue::QueueFactory;
use ironclaw_testkit::message_in;

fn static_agent() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap();
    let bin = target.join("x86_64-unknown-linux-gnu/release/ironclaw-sandbox");
    assert!(
        bin.exists(),
        "{} is missing: build it with RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox (.ci/run does)",
        bin.display()
    );
    bin
}

fn runsc(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new("runsc")
        .arg("--root")
        .arg(state.join("runsc"))
        .args(args)
        .output()
        .expect("runsc is installed (apt-get install -y runsc)")
}

fn containers(state: &Path) -> Vec<String> {
    let out = runsc(state, &["list", "--quiet"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

struct Live {
    dir: tempfile::TempDir,
    state: PathBuf,
}

impl Live {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // runsc's gofer runs as an unprivileged mapped uid: it must traverse down to
        // the session mounts.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        Self { dir, state }
    }

    fn start(&self) -> Daemon {
        let socket = self.state.join("modelproxy.sock");
        let bin = static_agent();
        Daemon::start_dev(
            &self.state,
            &[
                "--model-proxy-socket",
                socket.to_str().unwrap(),
                "--sandbox-bin",
                bin.to_str().unwrap(),
            ],
        )
    }

    fn layout(&self) -> HostLayout {
        HostLayout::new(&self.state)
    }

    /// The session's cipher, read from the daemon's key store (as an operator with the
    /// state dir could).
    fn cipher(&self, sid: &SessionId) -> Cipher {
        let l = self.layout();
        let (keys, _) = KeyCustodian::load(&l.master_key(), &l.sealed_keys()).unwrap();
        Cipher::Key(keys.get(sid).unwrap().expect("the session has a key"))
    }

    fn send(&self, sid: &SessionId, id: &str, text: &str) {
        let f = QueueFactory::new(self.layout());
        let mut w = f.inbound_writer(sid, &self.cipher(sid)).unwrap();
        w.write_message(&message_in(id, text).build()).unwrap();
    }

    fn replies(&self, sid: &SessionId) -> Vec<String> {
        let f = QueueFactory::new(self.layout());
        let mut r = f.outbound_reader(sid, self.cipher(sid)).unwrap();
        r.due_messages(Timestamp::now(), 0)
            .unwrap()
            .rows
            .into_iter()
            .map(|m| m.message.content)
            .collect()
    }

    fn launches(&self) -> usize {
        std::fs::read_to_string(self.layout().audit_log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"session_launched\""))
            .count()
    }
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool, log: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "timed out waiting for {what}\n--- daemon log ---\n{}",
        log()
    );
}

#[test]
fn a_live_runsc_session_answers_is_relaunched_by_the_sweep_and_reconciled_after_sigkill() {
    let live = Live::new();
    let d = live.start();
    let token = d.dev_token();
    let ctl = |args: &[&str]| ironctl(&d.addr, Some(&token), args);

    // Launch without a message.
    let out = ctl(&["--json", "session", "start", "--group", "dev-agent"]);
    assert_eq!(out.code, 0, "{}\n{}\n{}", out.stdout, out.stderr, d.log());
    let v = out.json();
    assert_eq!(v["outcome"], "launched", "{v}");
    assert_eq!(v["runtime"], "runsc", "{v}");
    assert!(
        v["image_digest"]
            .as_str()
            .unwrap_or("")
            .starts_with("sha256:"),
        "{v}"
    );
    let sid = SessionId::new(v["id"].as_str().unwrap()).unwrap();
    let container = format!("ironclaw-{sid}");
    assert!(containers(&live.state).contains(&container));

    // The agent inside answers through the proxy's mock.
    live.send(&sid, "m1", "hello from the host");
    wait_for(
        "the sandboxed agent's reply",
        Duration::from_secs(60),
        || {
            live.replies(&sid)
                .iter()
                .any(|r| r == "mock: hello from the host")
        },
        || d.log(),
    );

    // The launch receipt is in the audit chain.
    let audit = std::fs::read_to_string(live.layout().audit_log()).unwrap();
    let receipt = audit
        .lines()
        .find(|l| l.contains("\"session_launched\""))
        .unwrap();
    for needle in [
        "\"runtime\":\"runsc\"",
        "\"spec_hash\":\"",
        "sha256:",
        "/run/ironclaw/queue/inbound (ro)",
    ] {
        assert!(receipt.contains(needle), "{needle} not in {receipt}");
    }
    let list = ctl(&["--json", "session", "list"]).json();
    let row = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == sid.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["status"], "running");
    assert_eq!(row["runtime"], "runsc");

    // Killed from outside: the sweep relaunches it.
    let before = live.launches();
    let killed = runsc(&live.state, &["kill", &container, "KILL"]);
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    wait_for(
        "the sweep to relaunch the killed sandbox",
        Duration::from_secs(60),
        || live.launches() > before,
        || d.log(),
    );

    // SIGKILL the daemon: its container is orphaned; the next daemon reconciles it.
    let key_dir = HostLayout::new(&live.state).key_dir(&sid);
    let key_file = ironclaw_session::handoff::KeyHandoff::new(&key_dir, None).key_file();
    d.kill();
    assert!(
        containers(&live.state).contains(&container),
        "the container outlived its daemon"
    );
    assert!(
        key_file.exists(),
        "the killed daemon left the key handed out"
    );
    let d2 = live.start();
    wait_for(
        "the new daemon to reconcile the orphaned container",
        Duration::from_secs(30),
        || !containers(&live.state).contains(&container),
        || d2.log(),
    );
    // ... and withdrew the key the killed daemon had handed to it.
    assert!(!key_file.exists(), "a key outlived its sandbox");
    assert!(
        !ironclaw_session::handoff::is_tmpfs_mount(&key_dir),
        "the key tmpfs is still mounted"
    );
    let status = ironctl(
        &d2.addr,
        Some(&d2.dev_token()),
        &["--json", "session", "list"],
    )
    .json();
    let row = status["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == sid.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["status"], "stopped", "{row}");
    let _ = &live.dir;
    d2.stop();
}
