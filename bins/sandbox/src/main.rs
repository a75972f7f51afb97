//! `ironclaw-sandbox`: the agent inside a session's gVisor sandbox.
//!
//! Configuration comes only from flags whose defaults are the contract's in-sandbox path
//! table, so the OCI spec and the agent cannot disagree about where things are. This
//! build performs the agent's startup checks (key, inbound, outbound); the agent loop
//! itself is issue #4.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ironclaw_contract::db::Cipher;
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::sandbox;
use ironclaw_contract::sandbox_queue::{EncryptedInboundReader, EncryptedOutboundWriter};

/// The IronClaw agent: reads its session's encrypted inbound queue, answers through the
/// host model proxy, and appends to its encrypted outbound queue.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// The session's inbound queue (read-only).
    #[arg(long, default_value = sandbox::INBOUND_DB)]
    inbound: PathBuf,
    /// The session's outbound queue (this process is its only writer).
    #[arg(long, default_value = sandbox::OUTBOUND_DB)]
    outbound: PathBuf,
    /// The session key: 32 raw bytes or 64 hex digits.
    #[arg(long, default_value = sandbox::KEY_FILE)]
    key_file: PathBuf,
    /// The host model proxy's unix socket.
    #[arg(long, default_value = sandbox::MODEL_SOCKET)]
    model_socket: PathBuf,
    /// The doorbell unix socket.
    #[arg(long, default_value = sandbox::DOORBELL_SOCKET)]
    doorbell_socket: PathBuf,
    /// Directory where the heartbeat file is touched every loop.
    #[arg(long, default_value = sandbox::HEARTBEAT_DIR)]
    heartbeat_dir: PathBuf,
    /// The agent group's workspace.
    #[arg(long, default_value = sandbox::WORKSPACE)]
    workspace: PathBuf,
    /// The agent group's persona.
    #[arg(long, default_value = sandbox::PERSONA_FILE)]
    persona_file: PathBuf,
    /// Run the startup checks and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let key = match SessionKey::read_file(&args.key_file) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("ironclaw-sandbox: {e}");
            return ExitCode::from(3);
        }
    };
    let cipher = Cipher::Key(key);
    if let Err(e) = EncryptedInboundReader::open(&args.inbound, cipher.clone()) {
        eprintln!("ironclaw-sandbox: inbound queue: {e}");
        return ExitCode::from(4);
    }
    if let Err(e) = EncryptedOutboundWriter::open(&args.outbound, &cipher) {
        eprintln!("ironclaw-sandbox: outbound queue: {e}");
        return ExitCode::from(4);
    }
    if args.check {
        println!("ironclaw-sandbox: key, inbound and outbound queues ok");
        return ExitCode::SUCCESS;
    }
    eprintln!("ironclaw-sandbox: the agent loop is not built yet (issue #4); use --check");
    ExitCode::from(2)
}
