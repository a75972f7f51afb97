//! `cargo bench -p ironclaw-modelproxy`: what the model proxy adds to a model call.
//!
//! A fake OpenAI-compatible provider on 127.0.0.1 answers every call with a small JSON
//! completion carrying `usage`. In the same run the benchmark measures:
//!
//! - **latency**: N sequential calls straight to the fake (TCP) and N through the
//!   proxy's session socket (unix socket → proxy → TCP), with the fake answering at
//!   once; median and p99 of each, and the added median (target ≤ 1 ms);
//! - **throughput**: concurrent clients, direct and through the proxy, and the ratio
//!   proxied/direct (target ≥ 0.7), twice: with the fake answering at once (C clients:
//!   every core is busy, so this compares the proxy's CPU cost per call with the fake's
//!   and the client's — a proxy that ends and re-opens HTTP, audits and accounts cannot
//!   be cheaper than the server plus client it sits between) and with the fake taking
//!   `IRONCLAW_BENCH_PROVIDER_MS` (default 10 ms, far less than any real model) per
//!   call (4×C clients: whether the proxy keeps up with many calls in flight).
//!
//! Both paths use the same blocking HTTP/1.1 client (one connection per call,
//! `Connection: close`, as the agent's `UnixHttp` does). The proxy runs as the daemon
//! runs it: real audit log (one fsync'd record per call), default size caps; rate caps
//! are off (they would measure the cap, not the proxy).
//!
//! `cargo test --benches` runs a quick unoptimized smoke version that judges nothing.
//! Set `IRONCLAW_BENCH_CALLS` / `IRONCLAW_BENCH_CLIENTS` / `IRONCLAW_BENCH_PROVIDER_MS`
//! to change the sizes.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use ironclaw_audit::AuditLog;
use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_modelproxy::{ModelProxy, ProxyConfig};

const KEY: &str = "sk-bench-0123456789abcdef";
const PATH: &str = "/v1/chat/completions";

/// The fake provider's answer: a typical short completion.
fn completion() -> String {
    serde_json::json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "model": "bench",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant",
            "content": "The quick brown fox jumps over the lazy dog. ".repeat(8),
        }}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 80, "total_tokens": 122}
    })
    .to_string()
}

fn request_body() -> Vec<u8> {
    serde_json::json!({
        "model": "bench", "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are a benchmark."},
            {"role": "user", "content": "Say something about foxes. ".repeat(16)},
        ],
    })
    .to_string()
    .into_bytes()
}

/// Header (forwarded by the proxy like any harmless header) asking the fake to take
/// that many milliseconds before answering.
const DELAY_HEADER: &str = "x-bench-delay-ms";

async fn fake(req: Request) -> Response {
    let delay = req
        .headers()
        .get(DELAY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    // Read the whole request, as a provider does.
    let _ = axum::body::to_bytes(req.into_body(), 1 << 20).await;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut resp = Response::new(Body::from(completion()));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// One `POST` over any stream; returns the body length. Panics on anything
/// unexpected: a benchmark of failing calls would measure nothing useful.
fn post<S: Read + Write>(mut s: S, path: &str, delay_ms: u64, body: &[u8]) -> usize {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         Accept-Encoding: identity\r\nConnection: close\r\n{DELAY_HEADER}: {delay_ms}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::with_capacity(2048);
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let status = &raw[9..12];
    assert_eq!(
        status,
        b"200",
        "{}",
        String::from_utf8_lossy(&raw[..raw.len().min(400)])
    );
    let body = &raw[end + 4..];
    assert!(
        body.windows(13).any(|w| w == b"prompt_tokens"),
        "no usage in the answer"
    );
    body.len()
}

#[derive(Clone)]
enum Target {
    Direct(std::net::SocketAddr),
    Proxy(PathBuf),
}

impl Target {
    fn call(&self, delay_ms: u64, body: &[u8]) -> usize {
        match self {
            Target::Direct(addr) => {
                let s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                post(s, PATH, delay_ms, body)
            }
            Target::Proxy(sock) => {
                let s = UnixStream::connect(sock).unwrap();
                post(s, &format!("/openai{PATH}"), delay_ms, body)
            }
        }
    }
}

struct Latency {
    median: Duration,
    p99: Duration,
}

fn latency(target: &Target, calls: usize, body: &[u8]) -> Latency {
    let mut samples: Vec<Duration> = (0..calls)
        .map(|_| {
            let start = Instant::now();
            target.call(0, body);
            start.elapsed()
        })
        .collect();
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    Latency {
        median: at(0.5),
        p99: at(0.99),
    }
}

/// Calls per second with `clients` threads making `per_client` calls each, the fake
/// taking `delay_ms` per call.
fn throughput(
    target: &Target,
    clients: usize,
    per_client: usize,
    delay_ms: u64,
    body: &[u8],
) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let target = target.clone();
            let body = body.to_vec();
            std::thread::spawn(move || {
                for _ in 0..per_client {
                    target.call(delay_ms, &body);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (clients * per_client) as f64 / start.elapsed().as_secs_f64()
}

/// Targets apply to the optimized `cargo bench` run, not to the quick smoke run that
/// `cargo test --benches` makes of an unoptimized build.
fn verdict(quick: bool, met: bool) -> &'static str {
    match (quick, met) {
        (true, _) => "not judged in a quick unoptimized run",
        (false, true) => "met",
        (false, false) => "MISSED",
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and only
    // wants to know the benchmark builds and runs.
    let quick = !std::env::args().any(|a| a == "--bench");
    let calls = env_usize("IRONCLAW_BENCH_CALLS", if quick { 50 } else { 2000 });
    let clients = env_usize("IRONCLAW_BENCH_CLIENTS", if quick { 4 } else { 8 });
    let delay_ms = env_usize("IRONCLAW_BENCH_PROVIDER_MS", 10) as u64;
    // Enough calls per client to run for about a second per measurement.
    let per_client = if quick { 10 } else { (calls / 2).max(1) };
    let slow_clients = clients * 4;
    let slow_per_client = if quick {
        2
    } else {
        (1000 / delay_ms.max(1)).max(10) as usize
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (addr, proxy, listener) = rt.block_on(async {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(tcp, axum::Router::new().fallback(fake))
                .await
                .unwrap();
        });
        let base = format!("http://{addr}");
        let mut cfg = ProxyConfig::from_lookup(|k| match k {
            "OPENAI_API_KEY" => Some(KEY.to_owned()),
            "OPENAI_BASE_URL" => Some(base.clone()),
            _ => None,
        })
        .unwrap();
        cfg.session_rate = None;
        cfg.group_rate = None;
        let audit = Arc::new(AuditLog::open(&dir.path().join("audit.jsonl")).unwrap());
        let proxy = ModelProxy::new(cfg, audit).unwrap();
        let sock = dir.path().join("modelproxy.sock.d").join("ses_bench.sock");
        let listener = proxy
            .listen(
                SessionId::new("ses_bench").unwrap(),
                AgentGroupId::new("bench").unwrap(),
                &sock,
            )
            .await
            .unwrap();
        (addr, proxy, listener)
    });
    let direct = Target::Direct(addr);
    let proxied = Target::Proxy(listener.path().to_owned());
    let body = request_body();

    // Warm up both paths (connection pool, allocator, page cache).
    let warmup = calls.min(200);
    for _ in 0..warmup {
        direct.call(0, &body);
        proxied.call(0, &body);
    }

    let d = latency(&direct, calls, &body);
    let p = latency(&proxied, calls, &body);
    let td = throughput(&direct, clients, per_client, 0, &body);
    let tp = throughput(&proxied, clients, per_client, 0, &body);
    let sd = throughput(&direct, slow_clients, slow_per_client, delay_ms, &body);
    let sp = throughput(&proxied, slow_clients, slow_per_client, delay_ms, &body);

    let added = p.median.saturating_sub(d.median);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "model proxy overhead: fake OpenAI-compatible provider on 127.0.0.1, {} request / {} response bytes, {cores} cores{}",
        body.len(),
        completion().len(),
        if quick { " (quick unoptimized run)" } else { "" }
    );
    println!(
        "  {:<44} {:>12} {:>12} {:>12}",
        "", "direct", "via proxy", "proxy adds"
    );
    println!(
        "  {:<44} {:>9.3} ms {:>9.3} ms {:>9.3} ms   (target added <= 1 ms: {})",
        format!("latency median, {calls} sequential calls"),
        ms(d.median),
        ms(p.median),
        ms(added),
        verdict(quick, added <= Duration::from_millis(1))
    );
    println!(
        "  {:<44} {:>9.3} ms {:>9.3} ms {:>9.3} ms",
        format!("latency p99, {calls} sequential calls"),
        ms(d.p99),
        ms(p.p99),
        ms(p.p99.saturating_sub(d.p99))
    );
    println!(
        "  {:<44} {:>12} {:>12} {:>12}",
        "", "direct", "via proxy", "ratio"
    );
    for (what, direct, proxied) in [
        (
            format!("throughput, {clients} clients, provider at once"),
            td,
            tp,
        ),
        (
            format!("throughput, {slow_clients} clients, provider {delay_ms} ms"),
            sd,
            sp,
        ),
    ] {
        let ratio = proxied / direct;
        println!(
            "  {what:<44} {direct:>10.0}/s {proxied:>10.0}/s {ratio:>12.2}   (target >= 0.70: {})",
            verdict(quick, ratio >= 0.7)
        );
    }

    // Every proxied call was counted and audited.
    proxy.flush_audit();
    let st = proxy.stats();
    let proxied_calls =
        (warmup + calls + clients * per_client + slow_clients * slow_per_client) as u64;
    assert_eq!(st.calls["openai"][&200], proxied_calls);
    assert_eq!(st.input_tokens, 42 * proxied_calls);
    rt.block_on(listener.shutdown());
}
