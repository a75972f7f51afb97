//! Fault injection, live (issue #7): the real daemon and `ironctl`, sessions under runsc.
//!
//! - Five SIGKILLs at random points of mixed traffic (signed webhook messages, web chat
//!   sends, changes submitted and approved by two operators): after each restart the
//!   audit chain verifies and a change submitted before the kill is still decidable;
//!   at the end every webhook message the daemon acknowledged with 200 has an agent
//!   reply (the webhook channel is durable; the web chat store is in memory by design
//!   and lost on restart, so web chat sends are checked for their status only), every
//!   acknowledged submission still exists and every acknowledged approval is applied.
//! - A full disk under the state dir (a small tmpfs): writes fail with a clear error,
//!   the daemon keeps running, `/readyz` says not ready and why, and it recovers once
//!   space is freed.
//! - A state dir the daemon cannot use: it exits non-zero naming the path and the fix,
//!   never a panic.
//!
//! Needs root, `runsc` and the static agent (`dev/test.sh` builds it); never skipped.
//! `FAULT_SEED=<n>` replays the kill points of an earlier run.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ironclaw_e2e::live::{static_agent, LiveDir};
use ironclaw_e2e::webhook;
use ironclaw_e2e::{binary, ironctl, Daemon};
use serde_json::{json, Value};

const SECRET: &str = "fault-secret-0123456789abcdef01234";
const INSTANCE: &str = "ci";
const KILLS: usize = 5;

/// One HTTP call: the status and the JSON body (`Null` if none), or the transport
/// error of a daemon that is down.
fn call(
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let auth = format!("Bearer {token}");
    let resp = match (method, body) {
        ("GET", _) => ureq::get(url)
            .header("Authorization", &auth)
            .config()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .call(),
        (_, b) => ureq::post(url)
            .header("Authorization", &auth)
            .config()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .send_json(b.cloned().unwrap_or(Value::Null)),
    };
    match resp {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let v = r.body_mut().read_json::<Value>().unwrap_or(Value::Null);
            Ok((status, v))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// xorshift64*: kill points from a printed seed, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn token_for(d: &Daemon, owner: &str, name: &str) -> String {
    let out = ironctl(
        &d.addr,
        Some(owner),
        &["--json", "token", "create", name, "--role", "admin"],
    );
    assert_eq!(
        out.code, 0,
        "token create {name}: {}{}",
        out.stdout, out.stderr
    );
    out.json()["token"].as_str().expect("a token").to_owned()
}

fn submit(addr: &str, token: &str, persona: &str) -> Result<(u16, Value), String> {
    call(
        "POST",
        &format!("{addr}/v1/changes"),
        token,
        Some(
            &json!({"kind": "persona", "agent_group_id": "dev-agent", "payload": {"persona": persona}}),
        ),
    )
}

fn approve(addr: &str, token: &str, id: &str) -> Result<(u16, Value), String> {
    call(
        "POST",
        &format!("{addr}/v1/changes/{id}/decision"),
        token,
        Some(&json!({"outcome": "approve"})),
    )
}

fn assert_chain_intact(d: &Daemon, owner: &str, when: &str) {
    let v = ironctl(&d.addr, Some(owner), &["audit", "verify"]);
    assert_eq!(
        v.code,
        0,
        "{when}: audit verify: {}{}\n{}",
        v.stdout,
        v.stderr,
        d.log()
    );
    assert!(v.stdout.contains("intact"), "{when}: {}", v.stdout);
}

/// What the traffic threads saw.
#[derive(Default)]
struct Seen {
    /// Webhook messages the daemon acknowledged with 200.
    acked: BTreeSet<u64>,
    /// Changes whose submission was acknowledged, and whether their approval was.
    changes: BTreeMap<String, bool>,
    /// Every status by route class.
    statuses: BTreeMap<String, BTreeMap<u16, u64>>,
    transport_errors: u64,
}

impl Seen {
    fn count(&mut self, route: &str, r: &Result<(u16, Value), String>) {
        match r {
            Ok((s, _)) => {
                *self
                    .statuses
                    .entry(route.into())
                    .or_default()
                    .entry(*s)
                    .or_default() += 1
            }
            Err(_) => self.transport_errors += 1,
        }
    }
}

#[test]
fn five_sigkills_during_mixed_traffic_lose_nothing_acknowledged() {
    let t0 = Instant::now();
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
                | 1
        });
    eprintln!("FAULT_SEED={seed}");
    let mut rng = Rng(seed);

    let live = LiveDir::new();
    let _mounts = UnmountBelow(live.state.clone());
    let (port, replies) = webhook::receiver();
    let channels = live.dir.path().join("channels.json");
    webhook::write_channels_file(
        &channels,
        INSTANCE,
        SECRET,
        &format!("http://127.0.0.1:{port}/replies"),
    );
    let mut d = live.start_dev(&[
        "--channels-file",
        channels.to_str().unwrap(),
        "--rate-limit-rps",
        "0",
    ]);
    let owner = d.dev_token();
    // Creates `alice` (an admin) and wires the conversation through the gateway.
    webhook::wire_public_conversation(&d, &owner, INSTANCE, "fault", "dev-agent");
    let bob = token_for(&d, &owner, "bob");
    let addr = d.addr.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let next_msg = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    // Signed webhook messages, one at a time.
    {
        let (stop, seen, next_msg, addr) =
            (stop.clone(), seen.clone(), next_msg.clone(), addr.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let i = next_msg.fetch_add(1, Ordering::SeqCst);
                let r = webhook::post(
                    &addr,
                    INSTANCE,
                    SECRET,
                    &webhook::numbered_message("fault", "fault", i),
                )
                .map(|s| (s, Value::Null));
                let mut s = seen.lock().unwrap();
                s.count("webhook", &r);
                if matches!(r, Ok((200, _))) {
                    s.acked.insert(i);
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(40));
            }
        }));
    }
    // Web chat sends (the store is in memory: statuses only).
    {
        let (stop, seen, addr, owner) = (stop.clone(), seen.clone(), addr.clone(), owner.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let r = call(
                    "POST",
                    &format!("{addr}/v1/chat/send"),
                    &owner,
                    Some(&json!({"agent_group_id": "dev-agent", "text": format!("chat {n}")})),
                );
                seen.lock().unwrap().count("chat", &r);
                std::thread::sleep(Duration::from_millis(60));
            }
        }));
    }
    // Changes: carol submits, bob approves every other one (the rest stay pending).
    {
        // (The wiring helper keeps alice's token to itself: carol submits here.)
        let carol = token_for(&d, &owner, "carol");
        let (stop, seen, addr, bob) = (stop.clone(), seen.clone(), addr.clone(), bob.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let r = submit(&addr, &carol, &format!("fault persona {n}"));
                seen.lock().unwrap().count("submit", &r);
                if let Ok((202, v)) = &r {
                    let id = v["id"].as_str().expect("an id").to_owned();
                    seen.lock().unwrap().changes.insert(id.clone(), false);
                    if n % 2 == 0 {
                        let a = approve(&addr, &bob, &id);
                        let mut s = seen.lock().unwrap();
                        s.count("decide", &a);
                        if matches!(a, Ok((200, _))) {
                            s.changes.insert(id, true);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        }));
    }

    // The changes held across each kill: dave submits, the owner decides.
    let dave = token_for(&d, &owner, "dave");
    for k in 1..=KILLS {
        let wait = rng.between(300, 2500);
        std::thread::sleep(Duration::from_millis(wait / 2));
        // A change submitted just before the kill, left pending.
        let (st, v) = submit(&d.addr, &dave, &format!("before kill {k}")).expect("daemon up");
        assert_eq!(st, 202, "submit before kill {k}: {v}");
        let held = v["id"].as_str().expect("an id").to_owned();
        std::thread::sleep(Duration::from_millis(wait / 2));
        let t = Instant::now();
        d = d.crash_and_restart(true);
        let restarted = t.elapsed();
        assert_chain_intact(&d, &owner, &format!("after kill {k}"));
        let (st, v) = approve(&d.addr, &owner, &held).expect("daemon up");
        assert_eq!(st, 200, "approve {held} after kill {k}: {v}\n{}", d.log());
        assert_eq!(v["status"], "applied", "after kill {k}: {v}");
        eprintln!(
            "kill {k}: after {wait} ms, healthy again in {} ms; chain intact; {held} approved and applied",
            restarted.as_millis()
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("traffic thread");
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!(
        "traffic: {:?}; {} transport errors (the kills)",
        seen.statuses, seen.transport_errors
    );
    for (route, by_status) in &seen.statuses {
        let server_errors: Vec<_> = by_status.iter().filter(|(s, _)| **s >= 500).collect();
        assert!(
            server_errors.is_empty(),
            "{route}: server errors {server_errors:?}\n{}",
            d.log()
        );
    }

    // Every acknowledged submission survived; every acknowledged approval is applied;
    // the ones left pending are still decidable.
    let mut left_pending = 0;
    for (id, approved) in &seen.changes {
        let (st, v) =
            call("GET", &format!("{}/v1/changes/{id}", d.addr), &owner, None).expect("up");
        assert_eq!(st, 200, "{id} lost: {v}");
        if *approved {
            assert_eq!(v["status"], "applied", "{id} approved but {v}");
        } else if v["status"] == "pending" {
            left_pending += 1;
            let (st, v) = approve(&d.addr, &owner, id).expect("up");
            assert_eq!(st, 200, "{id}: {v}");
            assert_eq!(v["status"], "applied", "{id}: {v}");
        }
    }
    assert!(!seen.changes.is_empty(), "no change was ever acknowledged");
    assert_chain_intact(&d, &owner, "at the end");

    // Every acknowledged webhook message gets a reply.
    let mut got: BTreeSet<u64> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !seen.acked.is_subset(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(r) = replies.recv_timeout(left) else {
            let missing: Vec<_> = seen.acked.difference(&got).take(20).collect();
            panic!(
                "{} of {} acknowledged messages never answered (first: {missing:?})\n{}",
                seen.acked.difference(&got).count(),
                seen.acked.len(),
                d.log()
            );
        };
        got.extend(webhook::numbers_answered(&r, "fault"));
    }
    eprintln!(
        "{KILLS} kills in {:.1} s: {} webhook messages acknowledged and answered, {} changes acknowledged ({} left pending, then approved)",
        t0.elapsed().as_secs_f64(),
        seen.acked.len(),
        seen.changes.len(),
        left_pending
    );
    d.stop();
}

/// On drop, lazily unmounts whatever is mounted below `path` (the session-key tmpfs
/// mounts a SIGKILLed daemon leaves behind), so the temp dir can go.
struct UnmountBelow(PathBuf);
impl Drop for UnmountBelow {
    fn drop(&mut self) {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(&self.0))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

/// A tmpfs mounted at `path`, unmounted (lazily, so a straggler cannot keep it) on drop.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mount -t tmpfs at {} (needs root)",
            path.display()
        );
        Tmpfs(path.to_owned())
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Session key tmpfs mounts may sit below; take them too.
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros into `path` until the filesystem refuses.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(_) => break,
        }
    }
    // Then byte by byte, so not even a page is left.
    while let Ok(1) = f.write(&[0]) {
        n += 1;
    }
    n
}

fn readyz(addr: &str) -> (u16, Value) {
    call("GET", &format!("{addr}/readyz"), "", None).expect("daemon up")
}

#[test]
fn a_full_disk_fails_writes_clearly_and_the_daemon_recovers() {
    let t0 = Instant::now();
    let live = LiveDir::new();
    // The state dir itself is the mount point of a small tmpfs (the sandbox image cache
    // lives there too, so it must hold the static agent's image).
    let _mount = Tmpfs::mount(&live.state, "96m");
    let d = live.start_dev(&["--rate-limit-rps", "0"]);
    let owner = d.dev_token();
    let alice = token_for(&d, &owner, "alice");
    let (st, v) = readyz(&d.addr);
    assert_eq!(st, 200, "ready before the disk fills: {v}");
    let (st, v) = submit(&d.addr, &alice, "before the disk filled").unwrap();
    assert_eq!(st, 202, "{v}");
    let pending = v["id"].as_str().unwrap().to_owned();

    let filler = live.state.join("filler.tmp");
    let filled = fill(&filler);
    eprintln!("filled the state dir's tmpfs with {} MiB", filled >> 20);

    // Writes fail, with an error that names the cause.
    let (st, v) = submit(&d.addr, &alice, "after the disk filled").unwrap();
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    eprintln!("submit on a full disk: {st} {v}");
    assert!(st == 507 || st == 503, "submit on a full disk: {st} {v}");
    assert!(
        msg.contains("space") || msg.contains("full"),
        "the error does not name the cause: {v}"
    );
    let (st, v) = approve(&d.addr, &owner, &pending).unwrap();
    eprintln!("approve on a full disk: {st} {v}");
    assert!(st == 507 || st == 503, "approve on a full disk: {st} {v}");
    let (st, v) = call(
        "POST",
        &format!("{}/v1/chat/send", d.addr),
        &owner,
        Some(&json!({"agent_group_id": "dev-agent", "text": "full disk"})),
    )
    .unwrap();
    eprintln!("chat send on a full disk: {st} {v}");
    assert!(st != 200 || v["engaged"].is_boolean(), "chat: {st} {v}");
    assert!(
        st < 500 || st == 503 || st == 507,
        "chat send on a full disk: {st} {v}"
    );

    // Still running, not ready (the probe's answer is reused for a second), and says why.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (st, v) = loop {
        let (st, v) = readyz(&d.addr);
        if st != 200 || Instant::now() > deadline {
            break (st, v);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("readyz on a full disk: {st} {v}");
    assert_eq!(st, 503, "{v}");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("space") && reason.contains(live.state.to_str().unwrap()),
        "{v}"
    );
    let (st, _) = call("GET", &format!("{}/healthz", d.addr), "", None).unwrap();
    assert_eq!(st, 200, "the daemon died on a full disk\n{}", d.log());
    let (st, v) = call("GET", &format!("{}/v1/status", d.addr), &owner, None).unwrap();
    assert_eq!(st, 200, "status on a full disk: {v}");

    // Space freed: ready again, writes work, nothing half-written.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, v) = readyz(&d.addr);
        if st == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready after space was freed: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (st, v) = approve(&d.addr, &owner, &pending).unwrap();
    assert_eq!(st, 200, "approve after recovery: {v}\n{}", d.log());
    assert_eq!(v["status"], "applied", "{v}");
    let (st, v) = submit(&d.addr, &alice, "after recovery").unwrap();
    assert_eq!(st, 202, "{v}");
    assert_chain_intact(&d, &owner, "after the disk was full");
    let chat = ironclaw_e2e::chat::ChatApi::new(&d.addr, &owner);
    let sent = chat.send("dev-agent", None, "after recovery");
    let conv = sent["conversation_id"]
        .as_str()
        .expect("a conversation")
        .to_owned();
    let after = sent["message_id"].as_u64().unwrap_or(0);
    assert!(
        chat.agent_reply(&conv, after, Duration::from_secs(60))
            .is_some(),
        "no agent reply after recovery\n{}",
        d.log()
    );
    d.stop();
    eprintln!(
        "disk full and recovery in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// Starts the daemon on `state` and waits for it to exit (it must, within 20 s).
fn start_refused(state: &Path) -> (i32, String) {
    let sock = state.with_extension("sock");
    let mut child = Command::new(binary("ironclaw-controlplane"))
        .arg("--dev")
        .arg("--state-dir")
        .arg(state)
        .arg("--api-addr")
        .arg(format!("127.0.0.1:{}", ironclaw_e2e::free_port()))
        .arg("--model-proxy-socket")
        .arg(&sock)
        .arg("--sandbox-bin")
        .arg(static_agent())
        .env_remove("IRONCLAW_API_TOKEN")
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the daemon");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "the daemon started on an unusable state dir {}:\n{}",
                state.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn assert_refused(state: &Path, names: &Path, fix: &[&str], case: &str) {
    let (code, out) = start_refused(state);
    eprintln!(
        "{case}: exit {code}: {}",
        out.lines().last().unwrap_or_default()
    );
    assert_ne!(code, 0, "{case}: started anyway\n{out}");
    assert!(
        !out.contains("panicked") && !out.contains("stack backtrace"),
        "{case}: a panic\n{out}"
    );
    assert!(
        out.contains(names.to_str().unwrap()),
        "{case}: does not name {}\n{out}",
        names.display()
    );
    assert!(
        fix.iter().all(|f| out.contains(f)),
        "{case}: no fix ({fix:?}) in\n{out}"
    );
}

#[test]
fn an_unusable_state_dir_is_refused_with_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();

    // A file where the state dir should be.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    assert_refused(
        &file,
        &file,
        &["not a directory", "--state-dir"],
        "state dir is a file",
    );

    // A state dir others can read.
    let loose = dir.path().join("loose");
    std::fs::create_dir(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_refused(&loose, &loose, &["chmod 700"], "state dir 0755");

    // A master key of the wrong size, and one readable by others.
    let garbage = dir.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = garbage.join("master.key");
    std::fs::write(&key, b"garbage").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_refused(
        &garbage,
        &key,
        &["exactly 32", "ironctl restore"],
        "master key garbage",
    );
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_refused(&garbage, &key, &["chmod 600"], "master key 0644");

    // An audit log that is not a log.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o700)).unwrap();
    let audit = broken.join("audit.jsonl");
    std::fs::write(&audit, b"{not json}\n").unwrap();
    std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_refused(
        &broken,
        &audit,
        &["ironctl audit verify", "ironctl restore"],
        "audit garbage",
    );
}
