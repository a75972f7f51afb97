//! `ironctl doctor` against a real daemon in `--dev` (sessions under runsc): the
//! checks that must pass on a healthy dev setup do, a loosened master key and a stopped
//! daemon are FAILs with their fixes, and the exit status follows the FAILs.
//!
//! Needs root, `runsc` and the static agent (`.ci/run` builds it); never skipped.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use ironclaw_e2e::live::LiveDir;
use ironclaw_e2e::{ironctl, Ctl};
use serde_json::Value;

fn doctor(addr: &str, token: Option<&str>, state: &std::path::Path) -> (Ctl, Value) {
    doctor_with(addr, token, state, &[])
}

fn doctor_with(
    addr: &str,
    token: Option<&str>,
    state: &std::path::Path,
    extra: &[&str],
) -> (Ctl, Value) {
    let mut args = vec!["--json", "doctor", "--state-dir", state.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = ironctl(addr, token, &args);
    let v = out.json();
    // Exit 1 exactly when something failed.
    let failed = v["summary"]["fail"].as_u64().unwrap();
    assert_eq!(
        out.code,
        if failed > 0 { 1 } else { 0 },
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    (out, v)
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {v}"))
}

fn level(v: &Value, name: &str) -> String {
    check(v, name)["level"].as_str().unwrap().to_owned()
}

#[test]
fn doctor_passes_a_healthy_dev_daemon_and_fails_what_is_broken() {
    let live = LiveDir::new();
    let d = live.start_dev(&[]);
    let token = d.dev_token();

    // The daemon's env file names its bind address: a loopback URL is then known to
    // be all there is.
    let env = live.dir.path().join("ironclaw.env");
    let bind = d.addr.trim_start_matches("http://").trim_end_matches('/');
    std::fs::write(&env, format!("IRONCLAW_API_ADDR={bind}\n")).unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (out, v) = doctor_with(
        &d.addr,
        Some(&token),
        &live.state,
        &["--env-file", env.to_str().unwrap()],
    );
    for name in [
        "daemon",
        "runsc",
        "state dir",
        "master key",
        "state files",
        "api address",
        "tls or tailnet",
        "env file",
        "sandbox image",
        "audit chain",
        "clock",
    ] {
        assert_eq!(level(&v, name), "pass", "{name}: {}", out.stdout);
    }
    // Without it, a loopback URL says nothing about what else the daemon listens on.
    let (_, v) = doctor(&d.addr, Some(&token), &live.state);
    // (Unless this host has a daemon env file, or the variable, of its own.)
    if std::fs::metadata("/etc/ironclaw/ironclaw.env").is_err()
        && std::env::var_os("IRONCLAW_API_ADDR").is_none()
    {
        assert_eq!(level(&v, "api address"), "warn", "{v}");
    }
    assert_eq!(level(&v, "tls or tailnet"), "pass");
    // --dev has only the mock provider: a warning, not a failure.
    assert_eq!(level(&v, "model provider"), "warn");
    assert!(check(&v, "model provider")["fix"]
        .as_str()
        .unwrap()
        .contains("ANTHROPIC_API_KEY"));
    // cgroups depend on the host; whatever they are, doctor says so with a reason.
    assert!(check(&v, "cgroups")["detail"]
        .as_str()
        .unwrap()
        .contains("cgroup"));

    // The human form says the same, one line per check.
    let text = ironctl(
        &d.addr,
        Some(&token),
        &["doctor", "--state-dir", live.state.to_str().unwrap()],
    );
    assert!(text.stdout.contains("PASS  master key"), "{}", text.stdout);
    assert!(text.stdout.contains("checks:"), "{}", text.stdout);

    // A master key others can read: FAIL with the chmod fix, exit 1.
    let key = live.state.join("master.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, v) = doctor(&d.addr, Some(&token), &live.state);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(out.code, 1);
    assert_eq!(level(&v, "master key"), "fail");
    assert!(check(&v, "master key")["fix"]
        .as_str()
        .unwrap()
        .starts_with("chmod 600"));

    // A wrong token: the daemon check fails and says why; the checks that need the
    // daemon are not passed on faith.
    let (_, v) = doctor(&d.addr, Some("not-a-token"), &live.state);
    assert_eq!(level(&v, "daemon"), "fail");
    assert!(check(&v, "daemon")["fix"]
        .as_str()
        .unwrap()
        .contains("refused"));
    assert_eq!(level(&v, "sandbox image"), "fail");
    // The clock needs no token (the open /healthz carries the Date header).
    assert_eq!(level(&v, "clock"), "pass");

    // The daemon stopped: FAIL with the fix; the audit log is then verified directly.
    let addr = d.addr.clone();
    d.stop();
    let (out, v) = doctor(&addr, Some(&token), &live.state);
    assert_eq!(out.code, 1);
    assert_eq!(level(&v, "daemon"), "fail");
    assert!(check(&v, "daemon")["fix"]
        .as_str()
        .unwrap()
        .contains("systemctl start"));
    assert_eq!(level(&v, "audit chain"), "pass");
    assert!(check(&v, "audit chain")["detail"]
        .as_str()
        .unwrap()
        .contains("read directly"));
    assert_eq!(level(&v, "clock"), "fail");
}
