//! Session start time and density under gVisor (issue #5), next to a floor measured in
//! the same run.
//!
//! - **floor**: a bare `runsc --network=none run` of a trivial static binary (a C
//!   `return 0` built with `cc -static`) in a read-only rootfs, whole process: create,
//!   start, run, exit, delete;
//! - **warm start**: `SessionManager::ensure_running` of a new session with the image's
//!   rootfs already unpacked, from the call to the agent's first heartbeat
//!   (`<state>/sessions/<id>/heartbeat/heartbeat`, written at the first step of its
//!   loop, after its startup checks: key, both queues, model socket, tools). Includes
//!   everything a real launch does: queue files, key tmpfs, proxy and doorbell
//!   listeners, spec, `runsc create` + `start`, registry, launch receipt;
//! - **cold start**: the same, preceded by provisioning the signed OCI layout into an
//!   empty images directory (trust decision, every blob's digest, unpack). The layout's
//!   bytes are in the page cache (they were just built): this is "never unpacked", not
//!   "never read from disk";
//! - **idle memory** of one session a few seconds after its heartbeat: RSS summed over
//!   the container's host processes (the sentry, the gofer, and the sentry's children:
//!   the ptrace stubs that hold the agent's address space), and the same as PSS, which
//!   counts pages shared between them (the sentry's memory file is mapped into the
//!   stubs) once instead of in each;
//! - **density**: N sessions launched at once — p50/p99 of launch-to-heartbeat and the
//!   total RSS/PSS of all their processes once idle. A launch that fails is retried at
//!   once (its time includes the retry) and every failure is printed (concurrent
//!   launches used to fail when one launch's queue provisioning closed the shared
//!   `<state>/sessions` directory another launch's gofer had to traverse).
//!
//! Driven through the library as the daemon composes it (`runsc_world`), with the
//! production defaults for the agent (no extra flags). Every container is stopped and
//! deleted and every key tmpfs unmounted at the end, also on failure.
//!
//! `cargo bench -p ironclaw-e2e --bench sandbox_start` (as `bench/sandbox-start.sh`
//! runs it): 20 of each, 20 concurrent sessions, and the warm/floor target (≤ 1.5×) is
//! judged — the process exits 1 after reporting if it is missed. Under
//! `cargo test --benches` it runs 2 of each and judges nothing. Needs root, `runsc`,
//! `cc` and the static agent.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod runsc_world;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironclaw_contract::ids::SessionId;
use ironclaw_modelproxy::ProxyConfig;
use ironclaw_session::{LaunchOutcome, SessionManager};

use runsc_world::{static_agent, RunscWorld};

const WARM_OVER_FLOOR_TARGET: f64 = 1.5;
/// How long a session sits idle before its memory is read.
const SETTLE: Duration = Duration::from_secs(3);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (samples, concurrent) = if full { (20, 20) } else { (2, 2) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let met = rt.block_on(run(full, samples, concurrent));
    drop(rt);
    if full && !met {
        std::process::exit(1);
    }
}

/// Milliseconds since `t0`.
fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1000.0
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    // Nearest rank: with 20 samples p99 is the largest.
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

fn range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.0}–{max:.0}")
}

async fn run(full: bool, samples: usize, concurrent: usize) -> bool {
    let agent = static_agent();
    let world = RunscWorld::new(&agent, ProxyConfig::from_lookup(|_| None).unwrap());
    println!(
        "sandbox start and density under gVisor ({}; {samples} samples, {concurrent} concurrent; agent {})",
        runsc_version(),
        agent.display()
    );

    // The floor, measured first so nothing of ours is running beside it.
    let floor = floor_runs(&world, samples);

    // Warm: the rootfs is unpacked once, then every launch reuses it.
    let isolator = world.isolator();
    // For reading the launch figures: what one runsc CLI call costs (a launch makes
    // several: leftover checks, create, start).
    let cli = runsc_cli_calls(&world, samples);
    let rootfs = world.provision(&world.layout.images_dir());
    let (manager, _rung) = world.manager(world.runtime_with(isolator, &rootfs), &[]);
    let mut warm = Vec::new();
    let mut warm_call = Vec::new();
    for k in 0..samples {
        let sid = world.new_session(&format!("warm-{k}"));
        let (call, beat) = timed_launch(&manager, &sid, Instant::now()).await;
        warm_call.push(call);
        warm.push(beat);
        manager.end(&sid, "bench").await.unwrap();
    }

    // Cold: provision into an empty images dir, then launch from that rootfs.
    let mut cold = Vec::new();
    let mut cold_provision = Vec::new();
    for k in 0..samples {
        let sid = world.new_session(&format!("cold-{k}"));
        let images = world.state.join(format!("images-cold-{k}"));
        let isolator = world.isolator();
        let t0 = Instant::now();
        let rootfs = world.provision(&images);
        assert!(!rootfs.reused, "the cold rootfs came from a cache");
        cold_provision.push(ms(t0));
        let (manager, _rung) = world.manager(world.runtime_with(isolator, &rootfs), &[]);
        let (_, beat) = timed_launch(&manager, &sid, t0).await;
        cold.push(beat);
        manager.end(&sid, "bench").await.unwrap();
        std::fs::remove_dir_all(&images).unwrap();
    }

    // One idle session's memory.
    let sid = world.new_session("idle");
    timed_launch(&manager, &sid, Instant::now()).await;
    tokio::time::sleep(SETTLE).await;
    let one = Memory::of_container(&container_of(&sid));
    manager.end(&sid, "bench").await.unwrap();

    // Density: `concurrent` launches at once.
    let sids: Vec<SessionId> = (0..concurrent)
        .map(|k| world.new_session(&format!("dense-{k}")))
        .collect();
    let t0 = Instant::now();
    let tasks: Vec<_> = sids
        .iter()
        .map(|sid| {
            let (manager, sid) = (Arc::clone(&manager), sid.clone());
            tokio::spawn(async move { launch_retrying(&manager, &sid, t0).await })
        })
        .collect();
    let mut dense = Vec::new();
    let mut first_try = Vec::new();
    let mut failures = Vec::new();
    let mut retried = 0;
    for t in tasks {
        let (beat, failed) = t.await.unwrap();
        dense.push(beat);
        if failed.is_empty() {
            first_try.push(beat);
        } else {
            retried += 1;
        }
        failures.extend(failed);
    }
    let all_up = ms(t0);
    tokio::time::sleep(SETTLE).await;
    let total = Memory::of_root(&world.state.join("runsc"));
    let running = world.containers().len();
    let stops: Vec<_> = sids
        .iter()
        .map(|sid| {
            let (manager, sid) = (Arc::clone(&manager), sid.clone());
            tokio::spawn(async move { manager.end(&sid, "bench").await })
        })
        .collect();
    for s in stops {
        s.await.unwrap().unwrap();
    }
    assert!(world.containers().is_empty(), "{:?}", world.containers());

    let floor_ms = median(&floor);
    let warm_ms = median(&warm);
    let ratio = warm_ms / floor_ms;
    println!();
    println!("                                      median     range (ms)");
    println!(
        "  floor: bare `runsc run`, static true  {:>6.0} ms  {}",
        floor_ms,
        range(&floor)
    );
    println!(
        "  one runsc CLI call (`state` of none)  {:>6.0} ms  {}",
        median(&cli),
        range(&cli)
    );
    println!(
        "  warm start → first heartbeat          {:>6.0} ms  {}   ({ratio:.2}× floor; target ≤ {WARM_OVER_FLOOR_TARGET}×)",
        warm_ms,
        range(&warm)
    );
    println!(
        "    of which ensure_running returned at  {:>6.0} ms  {}",
        median(&warm_call),
        range(&warm_call)
    );
    let agent_start: Vec<f64> = warm.iter().zip(&warm_call).map(|(b, c)| b - c).collect();
    println!(
        "    then the agent's startup to heartbeat {:>5.0} ms  {}",
        median(&agent_start),
        range(&agent_start)
    );
    println!(
        "  cold start → first heartbeat          {:>6.0} ms  {}   ({:.2}× floor)",
        median(&cold),
        range(&cold),
        median(&cold) / floor_ms
    );
    println!(
        "    of which provisioning (verify+unpack) {:>5.0} ms  {}",
        median(&cold_provision),
        range(&cold_provision)
    );
    println!(
        "  idle session memory                   RSS {:.1} MiB (sum over {} processes), PSS {:.1} MiB",
        one.rss_kib as f64 / 1024.0,
        one.processes,
        one.pss_kib as f64 / 1024.0
    );
    println!(
        "  {concurrent} concurrent launches → heartbeat   p50 {:.0} ms, p99 {:.0} ms, all up {:.0} ms",
        percentile(&dense, 50.0),
        percentile(&dense, 99.0),
        all_up
    );
    if retried > 0 && !first_try.is_empty() {
        println!(
            "    the {} that succeeded first time        p50 {:.0} ms, p99 {:.0} ms",
            first_try.len(),
            percentile(&first_try, 50.0),
            percentile(&first_try, 99.0)
        );
    }
    println!(
        "  {concurrent} idle sessions ({running} containers)      RSS {:.1} MiB total ({:.1} MiB each), PSS {:.1} MiB total ({:.1} MiB each), {} processes",
        total.rss_kib as f64 / 1024.0,
        total.rss_kib as f64 / 1024.0 / concurrent as f64,
        total.pss_kib as f64 / 1024.0,
        total.pss_kib as f64 / 1024.0 / concurrent as f64,
        total.processes
    );
    if !failures.is_empty() {
        println!(
            "  {retried} of the {concurrent} concurrent launches failed and were retried ({} failures; their times include the retries):",
            failures.len()
        );
        for f in &failures {
            println!("    {f}");
        }
    }
    let met = ratio <= WARM_OVER_FLOOR_TARGET;
    if full {
        println!(
            "  warm/floor target {}",
            if met { "met" } else { "NOT MET" }
        );
    }
    met
}

/// Launches `sid` and waits for its first heartbeat. Returns (ms until
/// `ensure_running` returned, ms until the heartbeat file appeared), both from `t0`.
async fn timed_launch(manager: &SessionManager, sid: &SessionId, t0: Instant) -> (f64, f64) {
    match try_timed_launch(manager, sid, t0).await {
        Ok(t) => t,
        Err(e) => panic!("launch of {sid}: {e}"),
    }
}

/// For the concurrent launches: a launch that fails is retried at once (up to 3 times),
/// as the sweep would relaunch it (after its backoff). Returns the time to the
/// heartbeat, retries included, and the errors seen.
async fn launch_retrying(
    manager: &SessionManager,
    sid: &SessionId,
    t0: Instant,
) -> (f64, Vec<String>) {
    let mut failed = Vec::new();
    loop {
        match try_timed_launch(manager, sid, t0).await {
            Ok((_, beat)) => return (beat, failed),
            Err(e) if failed.len() < 3 => failed.push(format!("{sid}: {e}")),
            Err(e) => panic!("launch of {sid} failed 4 times: {e}; before: {failed:?}"),
        }
    }
}

async fn try_timed_launch(
    manager: &SessionManager,
    sid: &SessionId,
    t0: Instant,
) -> Result<(f64, f64), String> {
    let beat = manager.heartbeat_file(sid);
    let _ = std::fs::remove_file(&beat);
    match manager.ensure_running(sid).await {
        Ok(LaunchOutcome::Launched(_)) => {}
        Ok(LaunchOutcome::AlreadyRunning) => return Err("it was already running".into()),
        Err(e) => return Err(e.to_string()),
    }
    let call = ms(t0);
    let deadline = Instant::now() + HEARTBEAT_TIMEOUT;
    while !beat.exists() {
        assert!(
            Instant::now() < deadline,
            "no heartbeat from {sid}: {}",
            manager.last_output(sid).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok((call, ms(t0)))
}

fn container_of(sid: &SessionId) -> String {
    format!("ironclaw-{sid}")
}

fn runsc_version() -> String {
    Command::new("runsc")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("runsc")
                .to_owned()
        })
        .unwrap_or_else(|_| "runsc".into())
}

/// `samples` bare `runsc --network=none run`s of a static `return 0`, whole process.
fn floor_runs(world: &RunscWorld, samples: usize) -> Vec<f64> {
    let dir = world.state.join("floor");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let src = dir.join("true.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let bin = rootfs.join("true");
    let cc = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc (apt-get install -y gcc) builds the floor's static binary");
    assert!(cc.success(), "cc -static failed");
    std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The bare minimum: the binary alone in a read-only rootfs, no network, the
    // namespaces every container gets.
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/true"],
            "env": ["PATH=/"],
            "cwd": "/"
        },
        "root": {"path": rootfs, "readonly": true},
        "hostname": "floor",
        "linux": {"namespaces": [
            {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
            {"type": "uts"}, {"type": "mount"}
        ]}
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let root = dir.join("runsc-root");
    let mut times = Vec::new();
    // One unmeasured run warms the page cache for runsc itself.
    for k in 0..=samples {
        let id = format!("ironclaw-floor-{k}");
        let t0 = Instant::now();
        let out = Command::new("runsc")
            .arg("--root")
            .arg(&root)
            .args(["--network=none", "run", "--bundle"])
            .arg(&dir)
            .arg(&id)
            .output()
            .unwrap();
        let t = ms(t0);
        assert!(
            out.status.success(),
            "bare runsc run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if k > 0 {
            times.push(t);
        }
    }
    times
}

/// `samples` runs of `runsc state` for a container that does not exist.
fn runsc_cli_calls(world: &RunscWorld, samples: usize) -> Vec<f64> {
    (0..samples)
        .map(|_| {
            let t0 = Instant::now();
            let out = world.runsc(&["state", "ironclaw-absent"]);
            let t = ms(t0);
            assert!(!out.status.success(), "an absent container has a state");
            t
        })
        .collect()
}

/// Memory of a set of host processes.
#[derive(Debug, Default, Clone, Copy)]
struct Memory {
    processes: usize,
    rss_kib: u64,
    pss_kib: u64,
}

impl Memory {
    /// The runsc processes of one container: those naming it on their command line
    /// (sentry `boot`, `gofer`) and all their descendants (the ptrace stubs).
    fn of_container(container: &str) -> Memory {
        Self::of(|cmdline| cmdline.contains(container))
    }

    /// Every runsc process under one `--root`.
    fn of_root(root: &Path) -> Memory {
        let root = root.display().to_string();
        Self::of(move |cmdline| cmdline.contains(&root))
    }

    fn of(matches: impl Fn(&str) -> bool) -> Memory {
        let procs = processes();
        let mut chosen: Vec<u32> = procs
            .iter()
            .filter(|p| matches(&p.cmdline))
            .map(|p| p.pid)
            .collect();
        // Descendants (ptrace stubs are forked by the sentry).
        let mut i = 0;
        while i < chosen.len() {
            let parent = chosen[i];
            for p in &procs {
                if p.ppid == parent && !chosen.contains(&p.pid) {
                    chosen.push(p.pid);
                }
            }
            i += 1;
        }
        let mut m = Memory::default();
        for pid in chosen {
            m.processes += 1;
            m.rss_kib += kib_field(&format!("/proc/{pid}/status"), "VmRSS:");
            m.pss_kib += kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:");
        }
        m
    }
}

struct Proc {
    pid: u32,
    ppid: u32,
    cmdline: String,
}

fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let base = PathBuf::from("/proc").join(pid.to_string());
        let cmdline = std::fs::read(base.join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        // `stat`: "pid (comm) state ppid ..."; comm may contain spaces and parens.
        let ppid = std::fs::read_to_string(base.join("stat"))
            .ok()
            .and_then(|s| {
                let after = s.rsplit_once(')')?.1;
                after.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or(0);
        out.push(Proc { pid, ppid, cmdline });
    }
    out
}

fn kib_field(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
