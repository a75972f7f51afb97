//! `ironclaw-sandbox`: the agent inside a session's gVisor sandbox.
//!
//! Configuration comes only from flags whose defaults are the contract's in-sandbox path
//! table, so the OCI spec and the agent cannot disagree about where things are. No
//! environment variable is read and the session key is only ever a file. This binary
//! parses flags, runs the startup checks and hands over to `ironclaw_agent::runner`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ironclaw_agent::http::UnixHttp;
use ironclaw_agent::{
    Agent, AnthropicProvider, Exit, LoopConfig, OpenAiProvider, PollLoop, Provider, SocketDoorbell,
    ToolRegistry, Workspace,
};
use ironclaw_contract::db::Cipher;
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::paths::{sandbox, HEARTBEAT_FILE_NAME};
use ironclaw_contract::sandbox_queue::{EncryptedInboundReader, EncryptedOutboundWriter};

/// Exit codes, stable for the host's supervisor.
mod code {
    /// Stopped by SIGTERM/SIGINT after finishing the current step.
    pub const STOPPED: u8 = 0;
    /// Bad flags (clap's own code).
    pub const USAGE: u8 = 2;
    /// The session key file is missing or malformed.
    pub const KEY: u8 = 3;
    /// A queue file does not open with this key or is not a queue.
    pub const QUEUE: u8 = 4;
    /// Consecutive corrupt queue reads: relaunch on a fresh mount.
    pub const CORRUPT_QUEUE: u8 = 5;
    /// The model proxy socket does not accept connections.
    pub const MODEL_SOCKET: u8 = 6;
    /// Persona, workspace or tool configuration is invalid.
    pub const CONFIG: u8 = 7;
}

const MAX_PERSONA_BYTES: u64 = 64 * 1024;

/// Which model API the agent speaks through the proxy. The proxy decides whether the
/// provider is configured; the sandbox never holds a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProviderArg {
    /// The proxy's deterministic mock (Anthropic wire shape, no credential).
    Mock,
    Anthropic,
    #[value(name = "openai")]
    OpenAi,
    #[value(name = "openrouter")]
    OpenRouter,
    Ollama,
    #[value(name = "openai-compatible")]
    OpenAiCompatible,
}

/// The IronClaw agent: reads its session's encrypted inbound queue, answers through the
/// host model proxy, and appends to its encrypted outbound queue.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about = None,
    after_help = "EXIT CODES:\n  0  stopped by SIGTERM or SIGINT (the current step finished first)\n  2  bad flags\n  3  session key missing or malformed\n  4  a queue file does not open with this key, or is not a queue\n  5  the queue stayed corrupt across consecutive reads (relaunch on a fresh mount)\n  6  the model proxy socket does not accept connections\n  7  persona, workspace or enabled tools are invalid"
)]
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
    /// The doorbell unix socket (optional: without it the agent polls).
    #[arg(long, default_value = sandbox::DOORBELL_SOCKET)]
    doorbell_socket: PathBuf,
    /// Directory where the heartbeat file is replaced every loop.
    #[arg(long, default_value = sandbox::HEARTBEAT_DIR)]
    heartbeat_dir: PathBuf,
    /// The agent group's workspace, the only place the file tools reach.
    #[arg(long, default_value = sandbox::WORKSPACE)]
    workspace: PathBuf,
    /// The agent group's persona (absent means none).
    #[arg(long, default_value = sandbox::PERSONA_FILE)]
    persona_file: PathBuf,
    /// Model API to speak through the proxy.
    #[arg(long, value_enum, default_value = "mock")]
    provider: ProviderArg,
    /// Model id (required for every provider but mock).
    #[arg(long)]
    model: Option<String>,
    /// Optional tools the agent group enabled, comma-separated. The mandatory tools
    /// (request_capability_change, ask_user_question) are always offered.
    #[arg(long, value_delimiter = ',', default_value = "")]
    enabled_tools: Vec<String>,
    /// Model turns per engage before the agent gives up with a message.
    #[arg(long, default_value_t = ironclaw_agent::DEFAULT_MAX_TURNS)]
    max_turns: usize,
    /// Most due inbound messages handed to one engage; the rest follow in the next
    /// iteration at once. 1 answers every message on its own (one model call each).
    #[arg(long, default_value_t = ironclaw_agent::runner::DEFAULT_MAX_BATCH as u64, value_parser = clap::value_parser!(u64).range(1..=1000))]
    max_batch: u64,
    /// Fallback poll interval in milliseconds when the doorbell does not ring.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    poll_interval_ms: u64,
    /// Run the startup checks and exit.
    #[arg(long)]
    check: bool,
}

fn fail(code: u8, what: impl std::fmt::Display) -> ExitCode {
    eprintln!("ironclaw-sandbox: {what}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let key = match SessionKey::read_file(&args.key_file) {
        Ok(k) => k,
        Err(e) => return fail(code::KEY, e),
    };
    let cipher = Cipher::Key(key);
    // Outbound first: it is ours, and opening it creates its schema on first launch.
    let outbound = match EncryptedOutboundWriter::open(&args.outbound, &cipher) {
        Ok(w) => w,
        Err(e) => return fail(code::QUEUE, format_args!("outbound queue: {e}")),
    };
    let inbound = match EncryptedInboundReader::open(&args.inbound, cipher) {
        Ok(r) => r,
        Err(e) => return fail(code::QUEUE, format_args!("inbound queue: {e}")),
    };
    if let Err(e) = std::os::unix::net::UnixStream::connect(&args.model_socket) {
        return fail(
            code::MODEL_SOCKET,
            format_args!("model proxy socket {}: {e}", args.model_socket.display()),
        );
    }
    let tools = match ToolRegistry::for_group(&nonempty(&args.enabled_tools)) {
        Ok(t) => t,
        Err(e) => return fail(code::CONFIG, format_args!("enabled tools: {e}")),
    };
    let persona = match read_persona(&args.persona_file) {
        Ok(p) => p,
        Err(e) => return fail(code::CONFIG, e),
    };
    let workspace = match open_workspace(&args.workspace, &tools) {
        Ok(w) => w,
        Err(e) => return fail(code::CONFIG, e),
    };
    let provider = match provider(&args) {
        Ok(p) => p,
        Err(e) => return fail(code::USAGE, e),
    };
    if args.check {
        println!(
            "ironclaw-sandbox: key, queues, model socket and configuration ok ({} tools)",
            tools.names().len()
        );
        return ExitCode::from(code::STOPPED);
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            return fail(1, format_args!("install signal handler: {e}"));
        }
    }
    let poll = Duration::from_millis(args.poll_interval_ms);
    let mut agent = Agent::new(provider, tools);
    agent.persona = persona;
    agent.workspace = workspace;
    agent.max_turns = args.max_turns;
    let names = agent.tools.names().join(", ");
    let config = LoopConfig {
        poll_interval: poll,
        // At most 1000 (clap's range), so the conversion cannot truncate.
        max_batch: usize::try_from(args.max_batch)
            .unwrap_or(ironclaw_agent::runner::DEFAULT_MAX_BATCH),
        heartbeat: Some(args.heartbeat_dir.join(HEARTBEAT_FILE_NAME)),
        ..LoopConfig::default()
    };
    let doorbell = SocketDoorbell::new(&args.doorbell_socket, poll);
    let mut poll_loop = PollLoop::new(agent, inbound, outbound, doorbell, config);
    eprintln!(
        "ironclaw-sandbox: starting poll loop ({:?} provider; tools: {names})",
        args.provider
    );
    match poll_loop.run(&stop) {
        Exit::Stopped => {
            eprintln!("ironclaw-sandbox: stopped");
            ExitCode::from(code::STOPPED)
        }
        Exit::CorruptQueue { streak, last } => fail(
            code::CORRUPT_QUEUE,
            format_args!("queue corrupt on {streak} consecutive reads, exiting: {last}"),
        ),
    }
}

fn nonempty(list: &[String]) -> Vec<&str> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect()
}

fn read_persona(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(format!("persona {}: {e}", path.display())),
    };
    let mut buf = Vec::new();
    file.take(MAX_PERSONA_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("persona {}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_PERSONA_BYTES {
        return Err(format!(
            "persona {} is over {MAX_PERSONA_BYTES} bytes",
            path.display()
        ));
    }
    String::from_utf8(buf).map_err(|_| format!("persona {} is not UTF-8", path.display()))
}

/// The workspace is required only when a file tool is offered.
fn open_workspace(path: &Path, tools: &ToolRegistry) -> Result<Option<Workspace>, String> {
    let needs = ["read_file", "write_file", "list_dir"]
        .iter()
        .any(|t| tools.contains(t));
    match Workspace::open(path) {
        Ok(w) => Ok(Some(w)),
        Err(e) if needs => Err(format!("workspace {}: {e}", path.display())),
        Err(_) => Ok(None),
    }
}

fn provider(args: &Args) -> Result<Box<dyn Provider>, String> {
    let http = UnixHttp::new(&args.model_socket);
    let model = |default: Option<&str>| {
        args.model
            .clone()
            .or(default.map(str::to_owned))
            .ok_or_else(|| format!("--model is required with --provider {:?}", args.provider))
    };
    Ok(match args.provider {
        ProviderArg::Mock => Box::new(
            AnthropicProvider::new(http, model(Some("mock"))?).with_path("/mock/v1/messages"),
        ),
        ProviderArg::Anthropic => Box::new(AnthropicProvider::new(http, model(None)?)),
        ProviderArg::OpenAi => Box::new(OpenAiProvider::new(http, model(None)?)),
        ProviderArg::OpenRouter => Box::new(
            OpenAiProvider::new(http, model(None)?)
                .with_path("/openrouter/api/v1/chat/completions"),
        ),
        ProviderArg::Ollama => Box::new(
            OpenAiProvider::new(http, model(None)?).with_path("/ollama/v1/chat/completions"),
        ),
        ProviderArg::OpenAiCompatible => Box::new(
            OpenAiProvider::new(http, model(None)?)
                .with_path("/openai-compatible/v1/chat/completions"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_come_from_the_contract_path_table() {
        let a = Args::try_parse_from(["ironclaw-sandbox"]).unwrap();
        assert_eq!(a.inbound, Path::new(sandbox::INBOUND_DB));
        assert_eq!(a.outbound, Path::new(sandbox::OUTBOUND_DB));
        assert_eq!(a.key_file, Path::new(sandbox::KEY_FILE));
        assert_eq!(a.model_socket, Path::new(sandbox::MODEL_SOCKET));
        assert_eq!(a.doorbell_socket, Path::new(sandbox::DOORBELL_SOCKET));
        assert_eq!(a.heartbeat_dir, Path::new(sandbox::HEARTBEAT_DIR));
        assert_eq!(a.workspace, Path::new(sandbox::WORKSPACE));
        assert_eq!(a.persona_file, Path::new(sandbox::PERSONA_FILE));
        assert_eq!(a.provider, ProviderArg::Mock);
        assert!(nonempty(&a.enabled_tools).is_empty());
    }

    #[test]
    fn real_providers_need_a_model() {
        let a = Args::try_parse_from(["x", "--provider", "anthropic"]).unwrap();
        assert!(provider(&a).err().unwrap().contains("--model"));
        let a = Args::try_parse_from(["x", "--provider", "openai", "--model", "m"]).unwrap();
        assert!(provider(&a).is_ok());
        assert!(Args::try_parse_from(["x", "--provider", "vertex"]).is_err());
        assert!(Args::try_parse_from(["x", "--poll-interval-ms", "0"]).is_err());
    }
}
