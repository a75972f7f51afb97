//! `ironclaw-controlplane`: the IronClaw daemon.
//!
//! This build parses the daemon's flags and, in `--dev`, runs the queue path end to
//! end on real encrypted files (provision a session, write inbound as the host, read it
//! back through the sandbox's reader). The API server, gateway and sandbox launch arrive
//! with issues #3–#6.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use ironclaw_contract::db::Cipher;
use ironclaw_contract::enums::{MessageKind, Provenance};
use ironclaw_contract::ids::{MessageId, SessionId};
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::queue::{InboundReader, InboundWriter};
use ironclaw_contract::rows::{NewMessageIn, Route};
use ironclaw_contract::time::Timestamp;
use ironclaw_queue::QueueFactory;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Run the IronClaw control plane: channels in, sandboxed agents, human-approved
/// changes, a tamper-evident audit chain.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Address of the HTTP API. In production, the host's tailnet IP: the control plane
    /// should have no public port.
    #[arg(long, default_value = "127.0.0.1:8787")]
    api_addr: SocketAddr,
    /// Directory holding keys, queues, registry and audit chain (created 0700).
    #[arg(long, default_value = "/var/lib/ironclaw")]
    state_dir: PathBuf,
    /// Base unix socket of the host model proxy; per-session sockets live beside it in
    /// `<PATH>.d/`.
    #[arg(long, default_value = "/run/ironclaw/modelproxy.sock")]
    model_proxy_socket: PathBuf,
    /// Development mode: embedded defaults, mock model provider, a seeded agent.
    #[arg(long)]
    dev: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.dev {
        eprintln!(
            "ironclaw-controlplane: the API server is not built yet (issue #3); only --dev's queue check runs"
        );
        return ExitCode::from(2);
    }
    match dev_queue_check(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironclaw-controlplane: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dev_queue_check(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| format!("OS random source: {e}"))?;
    let cipher = Cipher::Key(SessionKey::from_bytes(raw));
    raw.fill(0);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.state_dir)?;
    let factory = QueueFactory::new(HostLayout::new(&args.state_dir));
    let session = SessionId::new("dev-check")?;
    factory.provision(&session, &cipher)?;
    let mut writer = factory.inbound_writer(&session, &cipher)?;
    let id = MessageId::new(format!("in_{}", Timestamp::now().unix_nanos()))?;
    let seq = writer.write_message(&NewMessageIn {
        id: id.clone(),
        kind: MessageKind::Chat,
        timestamp: Timestamp::now(),
        process_after: None,
        recurrence: None,
        series_id: None,
        trigger: true,
        route: Route::default(),
        content: "hello".to_owned(),
        source_session_id: None,
        provenance: Provenance::Host,
    })?;
    let mut reader = factory.inbound_reader(&session, cipher)?;
    let found = reader
        .pending_messages(Timestamp::now())?
        .rows
        .into_iter()
        .any(|m| m.id() == &id);
    factory.remove(&session)?;
    if !found {
        return Err("the message written was not read back".into());
    }
    println!(
        "ironclaw-controlplane --dev: encrypted queue round trip ok (seq {seq}) under {}; \
         api {} and model proxy {} start with issue #3",
        args.state_dir.display(),
        args.api_addr,
        args.model_proxy_socket.display()
    );
    Ok(())
}
