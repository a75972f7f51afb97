//! `ironclaw-controlplane`: the IronClaw daemon. Parses flags and composes the host
//! crates; all behaviour lives in them.

mod bootstrap;
mod dispatch;
mod error;
mod proxy_status;
mod sessions;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Run the IronClaw control plane: sandboxed agents, human-approved changes, a
/// tamper-evident audit chain, driven over an HTTP API by `ironctl`.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
pub struct Args {
    /// Address of the HTTP API. In production, the host's tailnet IP: the control plane
    /// should have no public port.
    #[arg(long, default_value = "127.0.0.1:8787", env = "IRONCLAW_API_ADDR")]
    api_addr: SocketAddr,
    /// Directory for keys, queues, registry, change store and audit chain (0700).
    /// Default: /var/lib/ironclaw, or ./.ironclaw-dev with --dev.
    #[arg(long, env = "IRONCLAW_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Base unix socket of the host model proxy (0600; `GET /healthz` and the mock
    /// provider); per-session sockets live beside it in `<PATH>.d/`. Default:
    /// /run/ironclaw/modelproxy.sock, or <state-dir>/modelproxy.sock with --dev.
    /// Providers come from the environment: ANTHROPIC_API_KEY, OPENAI_API_KEY,
    /// OPENROUTER_API_KEY, OLLAMA_BASE_URL, IRONCLAW_OPENAI_COMPAT_BASE_URL,
    /// IRONCLAW_MOCK_PROVIDER=1 (see docs/modelproxy.md).
    #[arg(long)]
    model_proxy_socket: Option<PathBuf>,
    /// Development mode: local state dir, the mock model provider, a seeded `dev-agent`
    /// group (mock provider) owned by the dev operator, whose token is
    /// IRONCLAW_API_TOKEN or is created and written to <state-dir>/dev-token.
    #[arg(long)]
    dev: bool,
    /// The static agent binary for `--dev` images and the unsandboxed dev runtime.
    /// Default: `ironclaw-sandbox` next to this executable, or this workspace's static
    /// build (`target/x86_64-unknown-linux-gnu/release/ironclaw-sandbox`).
    #[arg(long)]
    sandbox_bin: Option<PathBuf>,
    /// The sandbox image: an OCI layout made by `ironctl image build` (with
    /// --trust-policy). Required under runsc outside --dev.
    #[arg(long, requires = "trust_policy")]
    image: Option<PathBuf>,
    /// The image trust policy (pinned digests and/or cosign public keys; see
    /// docs/image-trust.md).
    #[arg(long, requires = "image")]
    trust_policy: Option<PathBuf>,
    /// Channel configuration file (JSON; see docs/channels.md). Channel credentials
    /// come from it and from the environment, never from the API.
    #[arg(long, env = "IRONCLAW_CHANNELS_FILE")]
    channels_file: Option<PathBuf>,
    /// Log format (stderr).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Sustained API requests per second allowed per client (0 = unlimited).
    #[arg(long, default_value_t = 50.0)]
    rate_limit_rps: f64,
    /// API request burst allowed per client.
    #[arg(long, default_value_t = 100)]
    rate_limit_burst: u32,
    /// Largest API request body, in bytes (larger → 413).
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Largest API request header section, in bytes (larger → 431).
    #[arg(long, default_value_t = 16 * 1024)]
    max_header_bytes: usize,
    /// API request timeout, in seconds (→ 408).
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,
    /// PEM certificate for HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    ironclaw_obs::init(
        match args.log_format {
            LogFormat::Text => ironclaw_obs::LogFormat::Text,
            LogFormat::Json => ironclaw_obs::LogFormat::Json,
        },
        "info",
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ironclaw-controlplane: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironclaw-controlplane: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), error::DaemonError> {
    let mut daemon = bootstrap::Daemon::open(&args)?;
    // Before the API: a daemon whose model proxy cannot serve fails at startup, not
    // when the first session needs it. (On an error below, dropping the daemon stops
    // the listener and removes its socket.)
    daemon.serve_model_proxy().await?;
    let limits = ironclaw_api::Limits {
        max_body_bytes: args.max_body_bytes,
        max_header_bytes: args.max_header_bytes,
        rate_limit_rps: args.rate_limit_rps,
        rate_limit_burst: args.rate_limit_burst,
        request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
    };
    daemon.start_sessions().await?;
    let telegram = match daemon.inbound_path() {
        Some((channels, ingest)) => ironclaw_channels::telegram::poll::start(channels, ingest)?,
        None => None,
    };
    let state = daemon.api_state(limits);
    let app = ironclaw_api::router(state.clone());
    let tls = match (args.tls_cert.clone(), args.tls_key.clone()) {
        (Some(cert), Some(key)) => Some(ironclaw_api::TlsConfig { cert, key }),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    state.set_not_ready(daemon.not_ready());
    ironclaw_api::serve(
        args.api_addr,
        app,
        tls,
        args.max_header_bytes,
        shutdown_signal(),
        Duration::from_secs(10),
        move |addr| tracing::info!(%addr, "API listening on {scheme}://{addr}"),
    )
    .await?;
    if let Some(t) = telegram {
        t.stop().await;
    }
    daemon.shutdown().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
}
