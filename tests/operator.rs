//! The operator path end to end: the real daemon, driven by the real `ironctl`.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ironclaw_e2e::{ironctl, Ctl, Daemon};
use serde_json::Value;

/// Creates an operator with `role` using the owner's token; returns its token.
fn operator(d: &Daemon, owner: &str, name: &str, role: &str) -> String {
    let out = ironctl(
        &d.addr,
        Some(owner),
        &["--json", "token", "create", name, "--role", role],
    );
    assert_eq!(out.code, 0, "token create {name}: {}", out.stderr);
    out.json()["token"]
        .as_str()
        .expect("token in response")
        .to_owned()
}

fn ok(out: &Ctl) -> &Ctl {
    assert_eq!(out.code, 0, "ironctl failed: {}{}", out.stdout, out.stderr);
    out
}

fn submit_persona(d: &Daemon, token: &str, by: &str, persona: &str) -> String {
    let payload = format!("{{\"persona\": \"{persona}\"}}");
    let out = ironctl(
        &d.addr,
        Some(token),
        &[
            "--json",
            "change",
            "submit",
            "--kind",
            "persona",
            "--group",
            "dev-agent",
            "--by",
            by,
            "--payload",
            &payload,
        ],
    );
    ok(&out).json()["id"].as_str().expect("id").to_owned()
}

fn persona_of(d: &Daemon, token: &str) -> String {
    let out = ironctl(
        &d.addr,
        Some(token),
        &["--json", "registry", "agent-groups", "dev-agent"],
    );
    ok(&out).json()["persona"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn submit_pending_approve_reject_as_the_seed_describes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_dev(&dir.path().join("state"), &[]);
    let owner = d.dev_token();
    let alice = operator(&d, &owner, "alice", "admin");
    let admin = operator(&d, &owner, "admin", "admin");

    // Submit: held for a human.
    let id = submit_persona(&d, &alice, "operator:alice", "be terse");
    let pending = ok(&ironctl(&d.addr, Some(&admin), &["change", "pending"]))
        .stdout
        .clone();
    assert!(
        pending.contains(&id) && pending.contains("operator:alice"),
        "{pending}"
    );
    assert_ne!(
        persona_of(&d, &admin),
        "be terse",
        "applied before any decision"
    );

    // The requester cannot approve their own change.
    let own = ironctl(
        &d.addr,
        Some(&alice),
        &["change", "approve", &id, "--by", "operator:alice"],
    );
    assert_eq!(own.code, 1, "{}", own.stdout);
    assert!(
        own.stderr.contains("403") && own.stderr.contains("cannot decide"),
        "{}",
        own.stderr
    );
    // --by must be the authenticated principal.
    let spoof = ironctl(
        &d.addr,
        Some(&admin),
        &["change", "approve", &id, "--by", "slack:admin"],
    );
    assert_eq!(spoof.code, 1);
    assert!(
        spoof.stderr.contains("403") && spoof.stderr.contains("not the authenticated principal"),
        "{}",
        spoof.stderr
    );

    // Another admin approves: applied.
    let approved = ok(&ironctl(
        &d.addr,
        Some(&admin),
        &["--json", "change", "approve", &id, "--by", "operator:admin"],
    ))
    .json();
    assert_eq!(approved["status"], "applied");
    assert_eq!(approved["decision"]["decided_by"], "operator:admin");
    assert_eq!(persona_of(&d, &admin), "be terse");

    // A second decision on a decided change: 409.
    let again = ironctl(&d.addr, Some(&owner), &["change", "reject", &id]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("409"), "{}", again.stderr);

    // Reject flow: nothing applied.
    let id2 = submit_persona(&d, &alice, "operator:alice", "be loud");
    let rejected = ok(&ironctl(
        &d.addr,
        Some(&admin),
        &["--json", "change", "reject", &id2],
    ))
    .json();
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(persona_of(&d, &admin), "be terse");

    // Unknown id: 404.
    let missing = ironctl(
        &d.addr,
        Some(&admin),
        &["change", "approve", "chg_00000000000000000000000000000000"],
    );
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);

    // History shows both decisions; show prints the content hash.
    let history = ok(&ironctl(&d.addr, Some(&admin), &["change", "history"]))
        .stdout
        .clone();
    assert!(history.contains(&id) && history.contains(&id2), "{history}");
    let show = ok(&ironctl(&d.addr, Some(&admin), &["change", "show", &id]))
        .stdout
        .clone();
    assert!(
        show.contains("content hash") && show.contains("approve by operator:admin"),
        "{show}"
    );
}

#[test]
fn a_pending_change_survives_a_restart_and_is_then_applied() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_dev(&dir.path().join("state"), &[]);
    let owner = d.dev_token();
    let alice = operator(&d, &owner, "alice", "admin");
    let id = submit_persona(&d, &alice, "operator:alice", "survived a restart");

    let d = d.restart(true);
    let pending = ok(&ironctl(
        &d.addr,
        Some(&owner),
        &["--json", "change", "pending"],
    ))
    .json();
    assert_eq!(
        pending["changes"][0]["request"]["id"],
        Value::String(id.clone())
    );
    let approved = ok(&ironctl(
        &d.addr,
        Some(&owner),
        &["--json", "change", "approve", &id],
    ))
    .json();
    assert_eq!(approved["status"], "applied");
    assert_eq!(persona_of(&d, &owner), "survived a restart");
    // Tokens and roles survived too.
    ok(&ironctl(&d.addr, Some(&alice), &["whoami"]));
}

#[test]
fn audit_verify_passes_then_names_the_edited_record() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start_dev(&state, &[]);
    let owner = d.dev_token();
    let alice = operator(&d, &owner, "alice", "admin");
    let id = submit_persona(&d, &alice, "operator:alice", "audited");
    ok(&ironctl(&d.addr, Some(&owner), &["change", "approve", &id]));

    let online = ok(&ironctl(&d.addr, Some(&owner), &["audit", "verify"]))
        .stdout
        .clone();
    assert!(online.contains("intact"), "{online}");
    let offline = ironctl(
        &d.addr,
        None,
        &["audit", "verify", "--state-dir", state.to_str().unwrap()],
    );
    assert_eq!(offline.code, 0, "{}", offline.stderr);
    let records = ok(&ironctl(
        &d.addr,
        Some(&owner),
        &["--json", "audit", "--limit", "100"],
    ))
    .json();
    let types: Vec<&str> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"]["type"].as_str().unwrap())
        .collect();
    for t in [
        "daemon_started",
        "token_created",
        "change_submitted",
        "verdict_recorded",
        "decision_recorded",
        "change_applied",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    d.stop();

    // Edit one byte inside the third record.
    let path = state.join("audit.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let start: usize = text.split_inclusive('\n').take(2).map(str::len).sum();
    let mut bytes = text.into_bytes();
    let pos = start + 20;
    bytes[pos] = if bytes[pos] == b'1' { b'2' } else { b'1' };
    std::fs::write(&path, &bytes).unwrap();
    let broken = ironctl(
        "http://127.0.0.1:9",
        None,
        &["audit", "verify", "--state-dir", state.to_str().unwrap()],
    );
    assert_eq!(broken.code, 4, "{}{}", broken.stdout, broken.stderr);
    assert!(broken.stderr.contains("seq 3"), "{}", broken.stderr);
}

#[test]
fn authentication_limits_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_dev(
        &dir.path().join("state"),
        &["--rate-limit-rps", "1", "--rate-limit-burst", "3"],
    );
    let owner = d.dev_token();

    // 401 without a token, with a message that says what to do.
    let anon = ironctl(&d.addr, None, &["change", "pending"]);
    assert_eq!(anon.code, 1);
    assert!(
        anon.stderr.contains("401") && anon.stderr.contains("IRONCLAW_API_TOKEN"),
        "{}",
        anon.stderr
    );

    // 413 on a 2 MiB body: the daemon answers from the declared length without reading
    // the body, so send it raw and read the answer even if the write is cut short.
    let big = format!("{{\"kind\":\"persona\",\"agent_group_id\":\"dev-agent\",\"payload\":{{\"persona\":\"{}\"}}}}", "x".repeat(2 << 20));
    let status = raw_post(&d.addr, "/v1/changes", &owner, big.as_bytes());
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // Rate limit: the burst is 3 per client; more → 429 with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let r = ureq::get(format!("{}/v1/whoami", d.addr))
            .header("Authorization", &format!("Bearer {owner}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        if r.status().as_u16() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("no 429 under a burst of 3");
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry >= 1);
    // Health checks are never limited.
    for _ in 0..5 {
        assert_eq!(
            ureq::get(format!("{}/healthz", d.addr))
                .call()
                .unwrap()
                .status()
                .as_u16(),
            200
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(1100 * retry));

    // /metrics needs the token and is Prometheus text.
    let mut m = ureq::get(format!("{}/metrics", d.addr))
        .header("Authorization", &format!("Bearer {owner}"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(m.status().as_u16(), 200);
    let text = m.body_mut().read_to_string().unwrap();
    for line in text.lines() {
        let valid = line.starts_with("# HELP ")
            || line.starts_with("# TYPE ")
            || line
                .rsplit_once(' ')
                .is_some_and(|(name, v)| v.parse::<u64>().is_ok() && name.starts_with("ironclaw_"));
        assert!(valid, "not Prometheus text: {line:?}");
    }
    for name in [
        "ironclaw_changes_submitted_total",
        "ironclaw_change_decisions_total",
        "ironclaw_change_applies_total",
        "ironclaw_change_apply_failures_total",
        "ironclaw_api_requests_total{",
        "ironclaw_api_rate_limited_total",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(
        text.contains("status=\"429\""),
        "429s are counted by route:\n{text}"
    );
}

#[test]
fn first_start_prints_the_owner_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start(&state, false, &[]);
    let printed = std::fs::read_to_string(&d.stdout_log).unwrap();
    let token = printed
        .split_whitespace()
        .find(|w| w.starts_with("icw_"))
        .expect("owner token printed")
        .to_owned();
    let who = ok(&ironctl(&d.addr, Some(&token), &["--json", "whoami"])).json();
    assert_eq!(who["user_id"], "operator:owner");
    assert_eq!(who["roles"][0]["role"], "owner");
    // No dev agent outside --dev.
    let groups = ok(&ironctl(
        &d.addr,
        Some(&token),
        &["--json", "registry", "agent-groups"],
    ))
    .json();
    assert_eq!(groups["agent_groups"], Value::Array(vec![]));
    // A restart does not mint another one.
    let d = d.restart(false);
    let printed = std::fs::read_to_string(&d.stdout_log).unwrap();
    assert!(!printed.contains("icw_"), "token printed again: {printed}");
    ok(&ironctl(&d.addr, Some(&token), &["status"]));
    // The state dir and key files are private.
    use std::os::unix::fs::PermissionsExt;
    for p in [
        state.clone(),
        state.join("master.key"),
        state.join("tokens"),
        state.join("audit.jsonl"),
    ] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o077;
        assert_eq!(mode, 0, "{} is readable by others", p.display());
    }
}

#[test]
fn ironctl_names_the_address_it_could_not_reach() {
    let out = ironctl("http://127.0.0.1:9", Some("x"), &["change", "pending"]);
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("http://127.0.0.1:9") && out.stderr.contains("IRONCLAW_ADDR"),
        "{}",
        out.stderr
    );
}

/// Sends a POST over a plain socket; returns the response's status line.
fn raw_post(addr: &str, path: &str, token: &str, body: &[u8]) -> String {
    use std::io::{BufRead, BufReader, Write};
    let host = addr.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}

#[test]
fn rotating_the_master_key_keeps_every_store_readable() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start_dev(&state, &[]);
    let owner = d.dev_token();
    let alice = operator(&d, &owner, "alice", "admin");
    let id = submit_persona(&d, &alice, "operator:alice", "after rotation");
    d.stop();

    let (keys, _) =
        ironclaw_keys::KeyCustodian::load(&state.join("master.key"), &state.join("sealed-keys"))
            .unwrap();
    let before = keys.master_fingerprint();
    let after = keys.rotate_master(&state.join("master.key")).unwrap();
    assert_ne!(before, after);
    drop(keys);

    // Registry, change store, tokens and audit all still open under the new master.
    let d = Daemon::start_dev(&state, &[]);
    let pending = ok(&ironctl(
        &d.addr,
        Some(&owner),
        &["--json", "change", "pending"],
    ))
    .json();
    assert_eq!(
        pending["changes"][0]["request"]["id"],
        Value::String(id.clone())
    );
    assert_eq!(
        ok(&ironctl(
            &d.addr,
            Some(&owner),
            &["--json", "change", "approve", &id]
        ))
        .json()["status"],
        "applied"
    );
    ok(&ironctl(&d.addr, Some(&owner), &["audit", "verify"]));
}
