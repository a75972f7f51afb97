//! `ironctl`: the IronClaw operator CLI, an HTTP client of the control plane's API.
//!
//! This build carries the global connection flags; the command set (changes, audit,
//! registry, tokens, sessions) arrives with the operator-path issue (#3).

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Drive an IronClaw control plane: review and decide change requests, read the audit
/// chain, manage the registry, tokens and sessions.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Control-plane address (use the tailnet IP in production).
    #[arg(
        long,
        global = true,
        env = "IRONCLAW_ADDR",
        default_value = "http://127.0.0.1:8787"
    )]
    addr: String,
    /// API token of the operator running this command.
    #[arg(
        long,
        global = true,
        env = "IRONCLAW_API_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the version of ironctl.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => {
            println!("ironctl {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        None => {
            let _ = Cli::command().print_help();
            ExitCode::from(2)
        }
    }
}
