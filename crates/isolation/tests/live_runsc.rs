//! Live tests: real `runsc` sandboxes, run as root, with the containment probe
//! (`crates/isolation/probe`) as the agent.
//!
//! - containment: every check the probe makes inside a sandbox launched by
//!   `RunscIsolator` passes (identity, capabilities, seccomp, no NIC, read-only rootfs
//!   and inbound/key/config mounts, writable outbound/heartbeat/workspace, host sockets
//!   reachable, rlimits, environment);
//! - negative controls: the same probe with one guard relaxed (rootfs writable; no
//!   network namespace and a host network; no `--oci-seccomp`) turns exactly the
//!   matching checks red — so the checks can fail — and `validate` refuses each relaxed
//!   spec;
//! - lifecycle: create → start → state → stop (SIGTERM, grace, SIGKILL, delete) and
//!   reconcile of containers an earlier isolator left behind.
//!
//! These tests FAIL when runsc or root is missing. On a machine that cannot run runsc
//! at all, set `IRONCLAW_SKIP_LIVE_RUNSC=1` to skip them explicitly (CI never does).
//!
//! The probe is built statically by the first test that needs it
//! (`cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-isolation-probe`
//! with `-C target-feature=+crt-static`, into `<target>/tmp/isolation-probe`), or taken
//! from `IRONCLAW_ISOLATION_PROBE` when that names a prebuilt binary.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use std::{env, fs, thread};

use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_contract::paths::{sandbox, HostLayout, MountKind, SessionMount};
use ironclaw_isolation::spec::{self, Limits, SandboxRequest, DEFAULT_ID_MAP_BASE, SANDBOX_UID};
use ironclaw_isolation::{
    ContainerId, RunscConfig, RunscError, RunscIsolator, SandboxSpec, SpecError, Status,
    StopOutcome,
};
use serde_json::Value;

const SKIP_VAR: &str = "IRONCLAW_SKIP_LIVE_RUNSC";
const PROBE_VAR: &str = "IRONCLAW_ISOLATION_PROBE";
/// The agent's uid as the host sees it: the mapping base plus 65532.
const HOST_UID: u32 = DEFAULT_ID_MAP_BASE + SANDBOX_UID;
const AGENT: &str = "/ironclaw-sandbox";

/// Whether to run; panics (fails the test) when the machine is not fit, unless the
/// skip variable says so explicitly.
fn live() -> bool {
    if env::var_os(SKIP_VAR).is_some() {
        eprintln!("SKIPPED: {SKIP_VAR} is set; this machine declared it cannot run runsc");
        return false;
    }
    let uid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(
        uid, 0,
        "the live runsc tests must run as root (runsc creates namespaces and cgroups); \
         set {SKIP_VAR}=1 only on a machine that cannot run them"
    );
    true
}

/// The static probe binary, built once per test process.
fn probe_binary() -> PathBuf {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            if let Some(p) = env::var_os(PROBE_VAR) {
                return PathBuf::from(p);
            }
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("isolation-probe");
            let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let t = Instant::now();
            let status = Command::new(cargo)
                .args([
                    "build",
                    "--release",
                    "--target",
                    "x86_64-unknown-linux-gnu",
                    "-p",
                    "ironclaw-isolation-probe",
                ])
                .current_dir(&workspace)
                .env("CARGO_TARGET_DIR", &target_dir)
                .env("RUSTFLAGS", "-C target-feature=+crt-static")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("CARGO_BUILD_RUSTFLAGS")
                .status()
                .expect("run cargo to build the probe");
            assert!(status.success(), "building the static probe failed");
            eprintln!("probe built in {:?}", t.elapsed());
            target_dir.join("x86_64-unknown-linux-gnu/release/ironclaw-isolation-probe")
        })
        .clone()
}

/// Deletes the containers it names when dropped, whatever happened in the test.
struct Cleanup {
    root: PathBuf,
    ids: Mutex<Vec<String>>,
}

impl Cleanup {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            ids: Mutex::new(Vec::new()),
        }
    }

    fn add(&self, id: &str) {
        self.ids.lock().unwrap().push(id.to_owned());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in self.ids.lock().unwrap().iter() {
            let _ = Command::new("runsc")
                .arg(format!("--root={}", self.root.display()))
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "live-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_agent(p: &Path) {
    std::os::unix::fs::chown(p, Some(HOST_UID), Some(HOST_UID)).unwrap();
}

/// Answers `pong` to every connection: the host side of a bind-mounted socket.
fn serve_pong(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 64];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"pong\n");
        }
    });
}

/// Lays out one session's host side the way the session layer must for runsc with a
/// user namespace (see docs/isolation.md, "Host layout"): every mounted directory owned
/// by the agent's mapped uid, 0700 (so a read-only mount's access mode is the only thing
/// that stops a write), sockets listening and owned by that uid, and an inbound file and
/// key file to read.
fn prepare_session(
    layout: &HostLayout,
    session: &SessionId,
    group: &AgentGroupId,
    model_socket: &Path,
) {
    for row in layout.session_mounts(session, group, model_socket) {
        let parent = row.host.parent().unwrap();
        fs::create_dir_all(parent).unwrap();
        match row.kind {
            MountKind::Directory => {
                // The group's workspace is shared by the group's sessions.
                if !row.host.exists() {
                    fs::create_dir(&row.host).unwrap();
                }
                chown_agent(&row.host);
                chmod(&row.host, 0o700);
            }
            MountKind::Socket => {
                serve_pong(&row.host);
                chown_agent(&row.host);
            }
        }
    }
    chown_agent(&layout.session_dir(session));
    chmod(&layout.session_dir(session), 0o700);
    for (file, mode) in [
        (layout.inbound_db(session), 0o600),
        (layout.key_dir(session).join("session.key"), 0o400),
    ] {
        fs::write(&file, b"probe data").unwrap();
        chown_agent(&file);
        chmod(&file, mode);
    }
}

/// A test's host side: state directory, one session, the rootfs.
struct Fixture {
    dir: tempfile::TempDir,
    state: PathBuf,
    layout: HostLayout,
    session: SessionId,
    group: AgentGroupId,
    model_socket: PathBuf,
    rootfs: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Ancestors of every mount source: traversable (not listable) by the gofer,
        // which runs as the namespace's root, host uid 100000.
        chmod(dir.path(), 0o711);
        let state = dir.path().join("state");
        let layout = HostLayout::new(&state);
        let session = SessionId::new(unique(tag)).unwrap();
        let group = AgentGroupId::new("g1").unwrap();
        let model_socket = layout.model_socket(&dir.path().join("modelproxy.sock"), &session);

        prepare_session(&layout, &session, &group, &model_socket);
        for d in [
            state.clone(),
            layout.sessions_dir(),
            state.join("keys"),
            state.join("groups"),
            layout.group_dir(&group),
            model_socket.parent().unwrap().to_owned(),
        ] {
            chmod(&d, 0o711);
        }
        let table = layout.session_mounts(&session, &group, &model_socket);

        // The rootfs: the probe as the agent, plus the mount points. The directory is
        // writable by the agent's uid on purpose: only `root.readonly` must stop it.
        let rootfs = dir.path().join("rootfs");
        fs::create_dir(&rootfs).unwrap();
        fs::copy(probe_binary(), rootfs.join(AGENT.trim_start_matches('/'))).unwrap();
        spec::create_mount_points(&rootfs, &table).unwrap();
        chown_agent(&rootfs);
        chmod(&rootfs, 0o755);

        Self {
            dir,
            state,
            layout,
            session,
            group,
            model_socket,
            rootfs,
        }
    }

    /// Another session in the same state directory and group.
    fn add_session(&self, tag: &str) -> SessionId {
        let s = SessionId::new(unique(tag)).unwrap();
        let model_socket = self
            .layout
            .model_socket(&self.dir.path().join("modelproxy.sock"), &s);
        prepare_session(&self.layout, &s, &self.group, &model_socket);
        s
    }

    fn table(&self) -> Vec<SessionMount> {
        self.layout
            .session_mounts(&self.session, &self.group, &self.model_socket)
    }

    fn config(&self) -> RunscConfig {
        let mut c = RunscConfig::new(&self.state);
        c.grace = Duration::from_secs(1);
        c
    }

    fn isolator(&self) -> RunscIsolator {
        match RunscIsolator::new(self.config()) {
            Ok(i) => i,
            Err(e) => panic!("runsc is required for the live tests: {e}"),
        }
    }

    fn request(&self, session: &SessionId, args: &[&str]) -> SandboxRequest {
        let model_socket = self
            .layout
            .model_socket(&self.dir.path().join("modelproxy.sock"), session);
        SandboxRequest {
            container_id: ContainerId::for_session(session),
            rootfs: self.rootfs.clone(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            layout: self.layout.clone(),
            session: session.clone(),
            group: self.group.clone(),
            model_socket,
            limits: Limits::default(),
            id_map_base: DEFAULT_ID_MAP_BASE,
        }
    }

    fn spec(&self, args: &[&str]) -> SandboxSpec {
        spec::build(&self.request(&self.session, args)).unwrap()
    }

    fn report_path(&self) -> PathBuf {
        self.layout.outbound_dir(&self.session).join("report.jsonl")
    }
}

/// The probe's `report` arguments, from the contract's path table.
fn report_args() -> Vec<String> {
    let mut v = vec![
        AGENT.to_owned(),
        "report".to_owned(),
        format!("out={}/report.jsonl", sandbox::OUTBOUND_DIR),
    ];
    for d in [sandbox::INBOUND_DIR, sandbox::KEY_DIR, sandbox::CONFIG_DIR] {
        v.push(format!("ro={d}"));
    }
    for d in [
        sandbox::OUTBOUND_DIR,
        sandbox::HEARTBEAT_DIR,
        sandbox::WORKSPACE,
    ] {
        v.push(format!("rw={d}"));
    }
    for f in [sandbox::INBOUND_DB, sandbox::KEY_FILE] {
        v.push(format!("read={f}"));
    }
    for s in [sandbox::MODEL_SOCKET, sandbox::DOORBELL_SOCKET] {
        v.push(format!("sock={s}"));
    }
    v
}

/// check name → (ok, detail).
fn parse_report(text: &str) -> BTreeMap<String, (bool, String)> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            (
                v["check"].as_str().unwrap().to_owned(),
                (
                    v["ok"].as_bool().unwrap(),
                    v["detail"].as_str().unwrap_or_default().to_owned(),
                ),
            )
        })
        .collect()
}

/// Every check the probe makes with [`report_args`].
fn expected_checks() -> Vec<String> {
    let mut v: Vec<String> = [
        "uid_nonroot",
        "gid_nonroot",
        "caps_empty",
        "seccomp_denies_prctl",
        "seccomp_filter_mode",
        "pid_namespace",
        "net_only_lo_proc",
        "net_only_lo_sys",
        "seccomp_denies_inet_socket",
        "rootfs_readonly",
        "env_minimal",
        "rlimit_nofile",
        "rlimit_core_zero",
        "dev_null_urandom",
        "threads_work",
        "no_host_files",
        "kernel_internals_hidden",
        "tmp_writable",
        "seccomp_denies_linkat",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for d in [sandbox::INBOUND_DIR, sandbox::KEY_DIR, sandbox::CONFIG_DIR] {
        v.push(format!("ro_refuses_write:{d}"));
    }
    for d in [
        sandbox::OUTBOUND_DIR,
        sandbox::HEARTBEAT_DIR,
        sandbox::WORKSPACE,
    ] {
        v.push(format!("rw_allows_write:{d}"));
    }
    for f in [sandbox::INBOUND_DB, sandbox::KEY_FILE] {
        v.push(format!("readable:{f}"));
    }
    for s in [sandbox::MODEL_SOCKET, sandbox::DOORBELL_SOCKET] {
        v.push(format!("socket_reachable:{s}"));
    }
    v
}

#[test]
fn containment_checks_pass_in_a_live_sandbox() {
    if !live() {
        return;
    }
    let f = Fixture::new("contain");
    let iso = f.isolator();
    let cleanup = Cleanup::new(iso.state_root());
    let args = report_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let spec = f.spec(&args);
    let id = spec.container_id().clone();
    cleanup.add(id.as_str());

    let t0 = Instant::now();
    iso.create(&spec).unwrap();
    let created = t0.elapsed();
    // The bundle as runsc sees it: private directory, private config.json.
    let bundle = iso.bundle_dir(&id);
    assert_eq!(fs::metadata(&bundle).unwrap().mode() & 0o777, 0o700);
    assert_eq!(
        fs::metadata(bundle.join("config.json")).unwrap().mode() & 0o777,
        0o600
    );
    assert_eq!(iso.state(&id).unwrap().status, Status::Created);
    iso.start(&id).unwrap();
    let started = t0.elapsed();
    assert!(
        iso.wait_stopped(&id, Duration::from_secs(30)).unwrap(),
        "the probe did not finish"
    );
    let finished = t0.elapsed();

    let text = fs::read_to_string(f.report_path())
        .unwrap_or_else(|e| panic!("no report ({e}); probe stderr: {:?}", iso.console_tail(&id)));
    let report = parse_report(&text);
    let mut failures = Vec::new();
    for name in expected_checks() {
        match report.get(&name) {
            Some((true, _)) => {}
            Some((false, detail)) => failures.push(format!("{name}: {detail}")),
            None => failures.push(format!("{name}: not reported")),
        }
    }
    assert!(
        failures.is_empty(),
        "containment checks failed:\n{}\nfull report:\n{text}",
        failures.join("\n")
    );
    // The agent's stderr reaches the isolator's bounded console tail.
    let console = iso.console_tail(&id).unwrap_or_default();
    assert!(
        console.contains("probe: report done"),
        "console: {console:?}"
    );
    // The probe wrote as the mapped agent uid, not as host root.
    assert_eq!(fs::metadata(f.report_path()).unwrap().uid(), HOST_UID);

    assert_eq!(iso.stop(&id).unwrap(), StopOutcome::NotRunning);
    assert!(!bundle.exists(), "stop removes the bundle");
    eprintln!(
        "measured: create {created:?}, create+start {started:?}, to probe exit {finished:?} \
         ({} checks)",
        report.len()
    );
}

/// Runs the probe's report in the foreground with a hand-made (relaxed) config.json and
/// the given runsc flags; returns the report from its stdout.
fn run_relaxed(
    f: &Fixture,
    iso: &RunscIsolator,
    cleanup: &Cleanup,
    config: &Value,
    flags: &[&str],
) -> BTreeMap<String, (bool, String)> {
    let id = unique("neg");
    cleanup.add(&id);
    let bundle = f.dir.path().join(format!("bundle-{id}"));
    fs::create_dir(&bundle).unwrap();
    chmod(&bundle, 0o700);
    fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(config).unwrap(),
    )
    .unwrap();
    let mut child = Command::new("runsc")
        .arg(format!("--root={}", iso.state_root().display()))
        .args(flags)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("relaxed probe run did not finish");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let text = reader.join().unwrap();
    assert!(status.success(), "runsc run failed: {status}: {err}");
    parse_report(&text)
}

fn assert_red(report: &BTreeMap<String, (bool, String)>, red: &[&str], green: &[&str]) {
    for name in red {
        let (ok, detail) = report
            .get(*name)
            .unwrap_or_else(|| panic!("{name} not reported: {report:?}"));
        assert!(!ok, "{name} stayed green with its guard relaxed: {detail}");
    }
    for name in green {
        let (ok, detail) = report
            .get(*name)
            .unwrap_or_else(|| panic!("{name} not reported: {report:?}"));
        assert!(ok, "{name} went red although its guard was kept: {detail}");
    }
}

#[test]
fn negative_controls_turn_the_matching_checks_red() {
    if !live() {
        return;
    }
    let f = Fixture::new("neg");
    let iso = f.isolator();
    let cleanup = Cleanup::new(iso.state_root());
    // The isolator itself never relaxes a flag.
    let global: Vec<String> = iso
        .global_args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    for flag in ["--network=none", "--host-uds=open", "--oci-seccomp"] {
        assert!(
            global.iter().any(|g| g == flag),
            "{flag} missing: {global:?}"
        );
    }
    let strict = ["--network=none", "--host-uds=open", "--oci-seccomp"];

    // Report to stdout only: the relaxed variants cannot all write the outbound dir.
    let args = [AGENT, "report"];
    let good = f.spec(&args);
    let good_json = serde_json::to_value(good.oci()).unwrap();
    let table = f.table();
    let reparse =
        |v: &Value| -> oci_spec::runtime::Spec { serde_json::from_value(v.clone()).unwrap() };

    // Control: the strict spec and flags keep every check green.
    let report = run_relaxed(&f, &iso, &cleanup, &good_json, &strict);
    assert_red(
        &report,
        &[],
        &[
            "rootfs_readonly",
            "net_only_lo_proc",
            "net_only_lo_sys",
            "seccomp_filter_mode",
            "seccomp_denies_inet_socket",
            "seccomp_denies_prctl",
            "uid_nonroot",
        ],
    );

    // 1. Writable rootfs.
    let mut v = good_json.clone();
    v["root"]["readonly"] = false.into();
    assert!(matches!(
        spec::validate(&reparse(&v), &table),
        Err(SpecError::RootfsWritable)
    ));
    let report = run_relaxed(&f, &iso, &cleanup, &v, &strict);
    assert_red(
        &report,
        &["rootfs_readonly"],
        &["net_only_lo_proc", "seccomp_filter_mode"],
    );

    // 2. No network namespace and the host's network. (runsc's host network cannot
    // be combined with a user namespace, so that goes too.) The probe only lists
    // interfaces; it sends nothing.
    let mut v = good_json.clone();
    let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "network" && n["type"] != "user");
    let linux = v["linux"].as_object_mut().unwrap();
    linux.remove("uidMappings");
    linux.remove("gidMappings");
    assert!(matches!(
        spec::validate(&reparse(&v), &table),
        Err(SpecError::NetworkNamespaceMissing)
    ));
    let report = run_relaxed(
        &f,
        &iso,
        &cleanup,
        &v,
        &["--network=host", "--host-uds=open", "--oci-seccomp"],
    );
    assert_red(
        &report,
        &["net_only_lo_proc", "net_only_lo_sys"],
        &["rootfs_readonly", "seccomp_filter_mode", "uid_nonroot"],
    );

    // 3. The spec's seccomp profile ignored (runsc without --oci-seccomp).
    let report = run_relaxed(
        &f,
        &iso,
        &cleanup,
        &good_json,
        &["--network=none", "--host-uds=open"],
    );
    assert_red(
        &report,
        &[
            "seccomp_filter_mode",
            "seccomp_denies_inet_socket",
            "seccomp_denies_prctl",
        ],
        &["rootfs_readonly", "net_only_lo_proc", "uid_nonroot"],
    );
}

/// (memory limit, pids limit, cpu quota) of the container's cgroup `/ironclaw/<id>`,
/// from cgroup v1 or v2; `None` when the cgroup does not exist.
fn cgroup_limits(id: &ContainerId) -> Option<(u64, u64, u64)> {
    let read =
        |p: String| -> Option<String> { fs::read_to_string(p).ok().map(|s| s.trim().to_owned()) };
    let num = |s: Option<String>| -> Option<u64> { s?.parse().ok() };
    let v1 = |ctl: &str, file: &str| read(format!("/sys/fs/cgroup/{ctl}/ironclaw/{id}/{file}"));
    if Path::new("/sys/fs/cgroup/memory").is_dir() {
        let memory = num(v1("memory", "memory.limit_in_bytes"))?;
        let pids = num(v1("pids", "pids.max"))?;
        let quota = num(v1("cpu", "cpu.cfs_quota_us"))?;
        return Some((memory, pids, quota));
    }
    let v2 = |file: &str| read(format!("/sys/fs/cgroup/ironclaw/{id}/{file}"));
    let memory = num(v2("memory.max"))?;
    let pids = num(v2("pids.max"))?;
    let quota = num(v2("cpu.max").and_then(|s| s.split_whitespace().next().map(str::to_owned)))?;
    Some((memory, pids, quota))
}

#[test]
fn stop_escalates_to_sigkill_and_deletes() {
    if !live() {
        return;
    }
    let f = Fixture::new("life");
    let iso = f.isolator();
    let cleanup = Cleanup::new(iso.state_root());
    let spec = f.spec(&[AGENT, "sleep-ignore-term"]);
    let id = spec.container_id().clone();
    cleanup.add(id.as_str());

    let t = Instant::now();
    iso.launch(&spec).unwrap();
    let launched = t.elapsed();
    let st = iso.state(&id).unwrap();
    assert_eq!(st.status, Status::Running);
    assert!(st.pid > 0);
    assert!(iso.is_alive(&id).unwrap());
    assert!(iso.list().unwrap().iter().any(|c| c.id == id.as_str()));
    // The launch path skips `runsc state` only when the state root rules the id out.
    assert!(
        iso.may_exist(&id),
        "a live container must be visible in the root"
    );
    // The limits are installed in the explicit cgroup, and go with the container.
    let limits = cgroup_limits(&id).expect("the container's cgroup exists");
    assert_eq!(limits, (512 << 20, 256, 100_000), "memory, pids, cpu quota");
    // A second launch of a live id is refused, and leaves the first one alone.
    assert!(matches!(
        iso.launch(&spec),
        Err(RunscError::AlreadyRunning { .. })
    ));
    assert!(iso.is_alive(&id).unwrap());

    // The probe ignores SIGTERM: only the escalation ends it.
    let grace = Duration::from_millis(1000);
    let t = Instant::now();
    let outcome = iso.stop_with_grace(&id, grace).unwrap();
    let took = t.elapsed();
    assert_eq!(outcome, StopOutcome::Killed);
    assert!(
        took >= grace,
        "killed before the grace period ended: {took:?}"
    );
    assert!(took < grace + Duration::from_secs(5), "stop took {took:?}");
    assert!(matches!(iso.state(&id), Err(RunscError::NotFound { .. })));
    assert!(!iso.is_alive(&id).unwrap());
    assert!(!iso.bundle_dir(&id).exists());
    assert!(!iso.list().unwrap().iter().any(|c| c.id == id.as_str()));
    assert_eq!(cgroup_limits(&id), None, "the cgroup is removed");
    assert!(
        !iso.may_exist(&id),
        "a deleted container leaves no state behind"
    );
    // Idempotent.
    assert_eq!(iso.stop(&id).unwrap(), StopOutcome::AlreadyGone);
    // An entry of a shape this isolator was not measured with means "maybe": the
    // launch path then asks runsc instead of trusting the directory.
    let stray = iso.state_root().join("unexpected-layout");
    fs::write(&stray, b"").unwrap();
    assert!(iso.may_exist(&id));
    fs::remove_file(&stray).unwrap();
    assert!(!iso.may_exist(&id));
    eprintln!("measured: launch (create+start) {launched:?}; SIGTERM ignored, stop with {grace:?} grace {took:?}");

    // An agent that honours SIGTERM (default action) is not killed.
    let other = f.add_session("term");
    let spec = spec::build(&f.request(&other, &[AGENT, "sleep"])).unwrap();
    let id = spec.container_id().clone();
    cleanup.add(id.as_str());
    iso.launch(&spec).unwrap();
    let t = Instant::now();
    assert_eq!(
        iso.stop_with_grace(&id, Duration::from_secs(10)).unwrap(),
        StopOutcome::ExitedOnTerm
    );
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert!(!iso.is_alive(&id).unwrap());
    eprintln!("measured: stop of an agent that exits on SIGTERM {took:?}");
}

#[test]
fn reconcile_removes_what_an_earlier_daemon_left() {
    if !live() {
        return;
    }
    let f = Fixture::new("recon");
    let earlier = f.isolator();
    let cleanup = Cleanup::new(earlier.state_root());
    let kept_session = f.add_session("kept");
    let stale_session = f.add_session("stale");
    let mut ids = Vec::new();
    for s in [&kept_session, &stale_session] {
        let spec = spec::build(&f.request(s, &[AGENT, "sleep"])).unwrap();
        cleanup.add(spec.container_id().as_str());
        earlier.launch(&spec).unwrap();
        ids.push(spec.container_id().clone());
    }
    let (kept, stale) = (ids[0].clone(), ids[1].clone());
    // A bundle whose container is gone.
    let orphan = ContainerId::new(unique("orphan")).unwrap();
    fs::create_dir(earlier.bundle_dir(&orphan)).unwrap();
    drop(earlier);

    // A new daemon on the same state directory.
    let mut config = f.config();
    config.grace = Duration::from_millis(200);
    let iso = RunscIsolator::new(config).unwrap();
    let report = iso.reconcile(|id| *id == kept).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.kept, vec![kept.clone()]);
    assert_eq!(report.stopped.len(), 1, "{:?}", report.stopped);
    assert_eq!(report.stopped[0].0, stale);
    assert_eq!(report.bundles_removed, vec![iso.bundle_dir(&orphan)]);
    let left: Vec<String> = iso.list().unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(left, vec![kept.to_string()]);
    assert!(iso.bundle_dir(&kept).exists());
    assert!(!iso.bundle_dir(&stale).exists());

    // Nothing claimed: everything goes.
    let report = iso.reconcile(|_| false).unwrap();
    assert_eq!(report.stopped.len(), 1);
    assert!(iso.list().unwrap().is_empty());
}

#[test]
fn an_unprepared_host_is_refused_before_runsc_runs() {
    if !live() {
        return;
    }
    let f = Fixture::new("pre");
    let iso = f.isolator();
    let cleanup = Cleanup::new(iso.state_root());
    let spec = f.spec(&[AGENT, "sleep"]);
    cleanup.add(spec.container_id().as_str());
    fs::remove_dir(f.rootfs.join("workspace")).unwrap();
    match iso.launch(&spec) {
        Err(RunscError::Spec(SpecError::MountPointMissing(p))) => {
            assert_eq!(p, Path::new(sandbox::WORKSPACE))
        }
        other => panic!("expected a missing mount point, got {other:?}"),
    }
    assert!(iso.list().unwrap().is_empty());
    assert!(!iso.bundle_dir(spec.container_id()).exists());
}

#[test]
fn a_launch_whose_runsc_hangs_is_taken_down_not_left_running() {
    if !live() {
        return;
    }
    let f = Fixture::new("hang");
    // runsc as a wrapper: everything passes through except `run`, which hangs after
    // starting nothing, and `delete`, which is recorded before it passes through.
    let deleted = f.dir.path().join("deleted");
    let fake = f.dir.path().join("runsc-hangs");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in run) exec sleep 30;; delete) echo \"$*\" >> {};; esac; done\nexec runsc \"$@\"\n",
            deleted.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = f.config();
    cfg.binary = fake;
    cfg.command_timeout = Duration::from_millis(500);
    let iso = RunscIsolator::new(cfg).unwrap();
    let spec = f.spec(&[AGENT, "sleep"]);
    let id = spec.container_id().clone();
    match iso.launch(&spec) {
        Err(RunscError::Timeout { op: "run", .. }) => {}
        other => panic!("expected a run timeout, got {other:?}"),
    }
    let log = fs::read_to_string(&deleted).unwrap_or_default();
    assert!(
        log.contains(id.as_str()),
        "the timed-out launch was not deleted: {log:?}"
    );
    assert!(!iso.bundle_dir(&id).exists(), "the bundle was left behind");
}
