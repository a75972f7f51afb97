//! The sandbox agent's footprint: binary size and resident memory, idle and after
//! answering messages, next to a baseline process measured in the same run.
//!
//! `cargo bench -p ironclaw-e2e --bench sandbox_agent` measures the static release
//! binary that `bench/sandbox.sh` builds (or the one named by `IRONCLAW_SANDBOX_BIN`)
//! and judges the target (idle RSS ≤ 10 MiB). Under `cargo test --benches` it runs
//! the same steps briefly against whatever binary is there and judges nothing.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ironclaw_contract::db::Cipher;
use ironclaw_contract::enums::Status;
use ironclaw_contract::ids::SessionId;
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::queue::{InboundWriter, OutboundReader};
use ironclaw_contract::rows::NewMessageIn;
use ironclaw_queue::QueueFactory;
use ironclaw_testkit::message_in;

const IDLE_RSS_TARGET_KIB: u64 = 10 * 1024;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let bin = sandbox_binary(full);
    println!("sandbox agent footprint ({})", bin.display());
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!(
        "  binary size            {:>8.1} MiB",
        size as f64 / 1048576.0
    );

    let dir = tempfile::tempdir().unwrap();
    let layout = HostLayout::new(dir.path());
    let factory = QueueFactory::new(layout.clone());
    let sid = SessionId::new("bench").unwrap();
    let cipher = Cipher::Key(SessionKey::from_bytes([3; 32]));
    factory.provision(&sid, &cipher).unwrap();
    std::fs::create_dir_all(layout.heartbeat_dir(&sid)).unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, [3u8; 32]).unwrap();
    let sock = dir.path().join("model.sock");
    serve_fake_model(&sock);

    // Baseline: the smallest long-lived process on this machine, started the same way.
    let mut baseline = Command::new("sleep").arg("60").spawn().unwrap();
    let mut agent = Command::new(&bin)
        .arg("--inbound")
        .arg(layout.inbound_db(&sid))
        .arg("--outbound")
        .arg(layout.outbound_db(&sid))
        .arg("--key-file")
        .arg(&key)
        .arg("--model-socket")
        .arg(&sock)
        .arg("--heartbeat-dir")
        .arg(layout.heartbeat_dir(&sid))
        .arg("--doorbell-socket")
        .arg(dir.path().join("no-doorbell.sock"))
        .arg("--poll-interval-ms")
        .arg("100")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let settle = if full { 3 } else { 1 };
    std::thread::sleep(Duration::from_secs(settle));
    let idle = rss_kib(&agent);
    let base = rss_kib(&baseline);

    let messages = if full { 200 } else { 5 };
    let mut w = factory.inbound_writer(&sid, &cipher).unwrap();
    for i in 0..messages {
        w.write_message(&message(i)).unwrap();
    }
    let mut r = factory.outbound_reader(&sid, cipher.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while completed(&mut r) < messages {
        assert!(Instant::now() < deadline, "the agent did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let busy = rss_kib(&agent);
    let peak = status_kib(agent.id(), "VmHWM:");
    stop(&mut agent);
    stop(&mut baseline);

    println!("  baseline (sleep) RSS   {:>8} KiB", base);
    println!(
        "  agent idle RSS         {:>8} KiB  ({:.1}x baseline; target ≤ {} KiB)",
        idle,
        idle as f64 / base.max(1) as f64,
        IDLE_RSS_TARGET_KIB
    );
    println!(
        "  agent RSS after {messages:>4} msgs {:>6} KiB  (peak {} KiB)",
        busy, peak
    );
    if full {
        assert!(
            idle <= IDLE_RSS_TARGET_KIB,
            "idle RSS {idle} KiB is over the {IDLE_RSS_TARGET_KIB} KiB target"
        );
        println!("  target met");
    }
}

fn completed(r: &mut impl OutboundReader) -> usize {
    r.processing_acks(Status::Completed, None)
        .unwrap()
        .rows
        .len()
}

fn message(i: usize) -> NewMessageIn {
    message_in(format!("m{i}"), format!("message number {i}")).build()
}

fn sandbox_binary(full: bool) -> PathBuf {
    if let Some(p) = std::env::var_os("IRONCLAW_SANDBOX_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<bench> → target/
    let target = exe.ancestors().nth(3).unwrap().to_owned();
    let static_bin = target.join("x86_64-unknown-linux-gnu/release/ironclaw-sandbox");
    if static_bin.exists() {
        return static_bin;
    }
    assert!(
        !full,
        "{} is missing: run bench/sandbox.sh, which builds the static binary first",
        static_bin.display()
    );
    let dev = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("ironclaw-sandbox");
    assert!(dev.exists(), "{} is not built", dev.display());
    dev
}

fn rss_kib(child: &Child) -> u64 {
    status_kib(child.id(), "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Answers every request with a fixed Anthropic-shaped reply.
fn serve_fake_model(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn);
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 {
                    break;
                }
                if h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let reply = r#"{"content":[{"type":"text","text":"ok"}],"usage":{"input_tokens":1,"output_tokens":1}}"#;
            let mut conn = reader.into_inner();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
}
