//! `ironctl`: the IronClaw operator CLI, an HTTP client of the control plane's API,
//! plus the commands that work on this host's files (`image`, `audit verify
//! --state-dir`, `backup`, `restore`, and the local half of `doctor`).
//!
//! Exit codes: 0 success; 1 the control plane (or, for local commands, this machine)
//! refused or failed the request, or `doctor` found a FAIL; 2 bad usage or bad input;
//! 3 the control plane could not be reached; 4 `audit verify` found the chain broken.

mod backup;
mod chat;
mod client;
mod doctor;
mod image;
mod output;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use client::{CliError, Client};
use output::{s, table};

/// Drive an IronClaw control plane: review and decide change requests, read and verify
/// the audit chain, inspect the registry, manage operator tokens and sessions; build and
/// sign the sandbox image.
///
/// Exit codes: 0 ok, 1 refused or failed (by the control plane, or locally for `image`,
/// `backup`, `restore`; `doctor` found a FAIL), 2 usage or bad input, 3 unreachable,
/// 4 audit chain broken.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    /// Control-plane API address (the tailnet IP in production).
    #[arg(
        long,
        global = true,
        env = "IRONCLAW_ADDR",
        default_value = "http://127.0.0.1:8787"
    )]
    addr: String,
    /// Your operator token.
    #[arg(
        long,
        global = true,
        env = "IRONCLAW_API_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Change requests: submit, review, approve, reject.
    #[command(subcommand)]
    Change(ChangeCmd),
    /// Read the audit chain (`audit verify` checks it).
    Audit(AuditArgs),
    /// Inspect the registry.
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// Operator tokens (owners only).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Talk to an agent group over the web chat and print its answer.
    #[command(subcommand)]
    Chat(ChatCmd),
    /// Sessions: list, start without a message, stop, resume a parked one.
    #[command(subcommand)]
    Session(SessionCmd),
    /// The sandbox image: build and sign it, make a signing key (local; no daemon).
    ///
    /// The sandbox image is the static `ironclaw-sandbox` agent plus a minimal `/etc` and
    /// the empty mount points its runtime spec needs, as an OCI image layout. The daemon
    /// runs sessions from it (`--image DIR --trust-policy FILE`) only when its trust
    /// policy trusts it: a pinned manifest digest, or a cosign signature by a trusted key.
    /// docs/image-trust.md describes the format, the policy and how to check an image by
    /// hand.
    ///
    /// These commands work on local files only: --addr and --token are not used.
    #[command(subcommand)]
    Image(ImageCmd),
    /// The daemon's version, uptime, readiness, runtime, sessions (and which are parked),
    /// pending changes, channels on/off, model-proxy calls and refusals, audit head.
    Status,
    /// Who your token says you are, and your roles.
    Whoami,
    /// Check this host and the daemon: PASS, WARN or FAIL each, with a fix
    ///
    /// Read-only. Local checks: runsc present and able to start a sandbox
    /// (`runsc --network=none do true`), cgroups with the memory/cpu/pids controllers,
    /// the state dir and master key private and owned by root, the env file private.
    /// Checks of how ironctl reaches the daemon (--addr): a loopback or tailnet address
    /// (a private LAN address warns, a public one fails), TLS or tailnet. Checks that ask
    /// the daemon (with your token): reachable, a model provider configured (names only,
    /// never values), sessions able to run from a verified image, audit chain intact,
    /// clocks within 60 s (warn) / 5 min (fail) of each other.
    ///
    /// Exit codes: 0 no FAIL (warnings allowed); 1 at least one FAIL (an unreachable
    /// daemon is a FAIL, and so is every check that needed it).
    #[command(verbatim_doc_comment)]
    Doctor(DoctorArgs),
    /// Back up the state directory while the daemon runs (on its host, as root)
    ///
    /// Writes one tar file, mode 0600, never over an existing file. Every encrypted
    /// database is copied only as a committed state (retrying while commits overlap),
    /// then the audit log, then the key store; the copy is verified before the archive
    /// exists: every database passes SQLCipher's integrity check under its own key and
    /// the audit chain verifies. Caches (images/, bundles/, runsc/) and the session-key
    /// tmpfs mounts (keys/) are left out.
    ///
    /// The MASTER KEY is included unless --exclude-master-key: the archive then opens
    /// everything in it, so store it like the key itself. With --exclude-master-key,
    /// keep <state-dir>/master.key somewhere else; `restore` will need it.
    ///
    /// Exit codes: 0 written and verified; 2 refused (output exists, no state dir, a
    /// loose master key mode); 1 failed (nothing is left behind).
    #[command(verbatim_doc_comment)]
    Backup(BackupArgs),
    /// Restore a backup into a new or empty state directory, and verify it
    ///
    /// Checks every file against the manifest's SHA-256, restores modes (and owners, as
    /// root), then proves the result: the key store opens under the master key, every
    /// database passes its integrity check under its own key, and the audit chain
    /// verifies and ends exactly where it did at backup time. On any failure the
    /// directory is left as it was. Start the daemon on it with --state-dir DIR.
    ///
    /// Exit codes: 0 restored and verified; 2 refused (directory not empty, master key
    /// missing or not the backup's); 1 failed (damaged archive, verification failed).
    #[command(verbatim_doc_comment)]
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
struct DoctorArgs {
    /// The daemon's state directory.
    #[arg(long, env = "IRONCLAW_STATE_DIR", default_value = "/var/lib/ironclaw")]
    state_dir: PathBuf,
    /// The sandbox runtime binary (a name on PATH, or a path).
    #[arg(long, default_value = "runsc")]
    runtime: String,
    /// The daemon's env file: its mode is checked and its variable names (never values)
    /// are read [default: /etc/ironclaw/ironclaw.env, if it exists].
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct BackupArgs {
    /// The archive to write (must not exist).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The daemon's state directory.
    #[arg(long, env = "IRONCLAW_STATE_DIR", default_value = "/var/lib/ironclaw")]
    state_dir: PathBuf,
    /// Leave master.key out of the archive (keep it elsewhere; restore needs it).
    #[arg(long)]
    exclude_master_key: bool,
}

#[derive(Args, Debug)]
struct RestoreArgs {
    /// The archive `ironctl backup` wrote.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// Where to restore: a new or empty directory.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// The master key file, for a backup made with --exclude-master-key (checked
    /// against the fingerprint recorded in the backup).
    #[arg(long, value_name = "FILE")]
    master_key: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum ChangeCmd {
    /// Submit a change request; it is held for a human.
    Submit {
        /// persona, enabled_tools, packages, mounts, wiring, permissions, create_agent, …
        #[arg(long)]
        kind: String,
        /// The agent group it changes (for create_agent: the new group's id).
        #[arg(long)]
        group: String,
        /// The payload as JSON, or @FILE to read it from a file.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Your principal (must match your token; optional).
        #[arg(long)]
        by: Option<String>,
        /// Why the change is needed.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Changes waiting for a decision.
    Pending,
    /// One change in full.
    Show { id: String },
    /// Approve a pending change (you cannot approve your own).
    Approve {
        id: String,
        /// Your principal (must match your token; optional).
        #[arg(long)]
        by: Option<String>,
    },
    /// Reject a pending change.
    Reject {
        id: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Decided changes, newest first.
    History {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Apply an apply_failed change again.
    Retry { id: String },
}

#[derive(Args, Debug)]
struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCmd>,
    /// How many of the latest records to show.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Verify the hash chain: exits 0 if intact, 4 naming the first bad record if not.
    Verify {
        /// Verify <DIR>/audit.jsonl on this machine instead of asking the daemon.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum RegistryCmd {
    /// Agent groups (or one, with its capabilities).
    AgentGroups { id: Option<String> },
    /// Members of an agent group.
    Members { group: String },
    /// Permitted destinations of an agent group.
    Destinations { group: String },
    /// Show a messaging group, or create one with --channel and --platform-id.
    MessagingGroups {
        id: Option<String>,
        #[arg(long, requires = "platform_id")]
        channel: Option<String>,
        #[arg(long)]
        platform_id: Option<String>,
    },
    /// Wirings of a messaging group, by priority.
    Wirings { messaging_group: String },
    /// Show a user, or create/update one with --kind.
    Users {
        id: String,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// A user's roles; --grant/--revoke owner|admin (owners only).
    Roles {
        user: String,
        #[arg(long, conflicts_with = "revoke")]
        grant: Option<String>,
        #[arg(long)]
        revoke: Option<String>,
        /// Scope an admin role to one agent group.
        #[arg(long)]
        group: Option<String>,
    },
    /// Sessions (or one).
    Sessions { id: Option<String> },
    /// Whether a user may use an agent group, and why.
    Access {
        #[arg(long)]
        user: String,
        #[arg(long)]
        group: String,
    },
}

#[derive(Subcommand, Debug)]
enum ChatCmd {
    /// Send a message and wait for the agent's reply (exit 1 if none comes in time).
    Send {
        /// The message.
        text: String,
        /// The agent group to talk to.
        #[arg(long, default_value = "dev-agent")]
        group: String,
        /// Continue this conversation instead of starting one.
        #[arg(long)]
        conversation: Option<String>,
        /// How long to wait for the reply, in seconds.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
}

#[derive(Subcommand, Debug)]
enum SessionCmd {
    /// Every session: id, group, status, runtime, image digest, start time.
    List,
    /// Launch (or find running) an agent group's operator session.
    Start {
        /// The agent group.
        #[arg(long)]
        group: String,
    },
    /// Stop a session's agent (SIGTERM, grace, SIGKILL). Its key and queues stay.
    Stop { id: String },
    /// Un-park a session (budget or repeated failures) and launch it.
    Resume { id: String },
}

#[derive(Subcommand, Debug)]
enum ImageCmd {
    /// Build the sandbox image as an OCI layout, optionally signed
    ///
    /// Packs the statically linked agent binary into a new OCI image layout at --out and
    /// prints its manifest digest: the value a trust policy pins, and what a signature
    /// covers. The build is reproducible: the same binary always gives the same digest,
    /// so anyone can rebuild it and check the digest an operator pinned.
    ///
    /// --out must not exist or must be an empty directory; the layout is written beside
    /// it and renamed into place, so a failed build leaves nothing that looks like an
    /// image. A dynamically linked binary is refused (the image has no dynamic loader).
    /// Build the agent with:
    ///
    ///   RUSTFLAGS='-C target-feature=+crt-static' cargo build --release \
    ///       --target x86_64-unknown-linux-gnu -p ironclaw-sandbox
    ///
    /// With --sign-key, the layout also carries a cosign signature (ECDSA P-256, in the
    /// shape `cosign save` writes) by that private key. The key is checked before anything
    /// is written: it must be a regular file with mode 0600 or stricter holding an
    /// unencrypted PKCS#8 ECDSA P-256 key (what `ironctl image keygen` makes).
    ///
    /// Example:
    ///
    ///   ironctl image keygen --out /root/ironclaw-keys
    ///   ironctl image build --sandbox-bin target/x86_64-unknown-linux-gnu/release/ironclaw-sandbox \
    ///       --out /srv/ironclaw/image --sign-key /root/ironclaw-keys/image-signing.key
    ///
    /// Exit codes: 0 built; 2 bad input (binary missing or not static, --out not empty,
    /// key missing, unreadable by its mode, or not ECDSA P-256); 1 the build failed
    /// while writing.
    #[command(verbatim_doc_comment)]
    Build {
        /// The static `ironclaw-sandbox` binary to pack.
        #[arg(long, value_name = "PATH")]
        sandbox_bin: PathBuf,
        /// Where to write the OCI layout (must not exist, or be an empty directory).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Sign with this private key (PKCS#8 PEM, mode 0600; see `image keygen`).
        #[arg(long, value_name = "KEY")]
        sign_key: Option<PathBuf>,
    },
    /// Generate a cosign-compatible image signing key pair
    ///
    /// Writes a fresh ECDSA P-256 key pair (cosign's default algorithm) into --out,
    /// creating the directory 0700 if it does not exist:
    ///
    ///   image-signing.key  PKCS#8 PRIVATE KEY PEM, unencrypted, mode 0600
    ///   image-signing.pub  PUBLIC KEY PEM (the format of cosign.pub), mode 0644
    ///
    /// An existing key file is never overwritten: losing a signing key would orphan every
    /// image it signed. Keep the private key off the daemon's machine; put only the
    /// public key in the trust policy:
    ///
    ///   {"version": 1, "cosign_keys": [{"name": "release", "path": "image-signing.pub"}]}
    ///
    /// `cosign import-key-pair --key image-signing.key` converts the private key for the
    /// cosign CLI; signatures made with either verify with the same public key.
    ///
    /// Exit codes: 0 written; 2 a key file already exists in --out; 1 writing failed.
    #[command(verbatim_doc_comment)]
    Keygen {
        /// Directory for image-signing.key and image-signing.pub.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCmd {
    /// Mint a token for a new operator (shown once).
    Create {
        name: String,
        #[arg(long, value_parser = ["owner", "admin"])]
        role: String,
    },
    /// Operators and their tokens (no secrets).
    List,
    /// Revoke an operator's token.
    Revoke { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn run(cli: &Cli) -> Result<(), CliError> {
    let c = Client::new(&cli.addr, cli.token.clone());
    let show = |v: &Value, f: &dyn Fn(&Value)| if cli.json { output::json(v) } else { f(v) };
    match &cli.command {
        Command::Change(cmd) => change(&c, cli.json, cmd),
        Command::Audit(a) => audit(&c, cli.json, a),
        Command::Registry(cmd) => registry(&c, cli.json, cmd),
        Command::Token(cmd) => token(&c, cli.json, cmd),
        Command::Session(cmd) => session(&c, cli.json, cmd),
        Command::Chat(ChatCmd::Send {
            text,
            group,
            conversation,
            wait_secs,
        }) => chat::send(
            &c,
            cli.json,
            group,
            conversation.as_deref(),
            text,
            std::time::Duration::from_secs(*wait_secs),
        ),
        // Local: never talks to the daemon.
        Command::Image(ImageCmd::Build {
            sandbox_bin,
            out,
            sign_key,
        }) => image::build(sandbox_bin, out, sign_key.as_deref(), cli.json),
        Command::Image(ImageCmd::Keygen { out }) => image::keygen(out, cli.json),
        Command::Status => {
            let v = c.get("/v1/status")?;
            show(&v, &|v| {
                for line in status::render(v) {
                    println!("{line}");
                }
            });
            Ok(())
        }
        Command::Doctor(a) => {
            // A hung daemon is a finding, not a minute-long wait.
            let c = Client::with_timeout(
                &cli.addr,
                cli.token.clone(),
                std::time::Duration::from_secs(10),
            );
            doctor::run(
                &c,
                &doctor::DoctorOptions {
                    state_dir: &a.state_dir,
                    runtime: &a.runtime,
                    env_file: a.env_file.as_deref(),
                },
                cli.json,
            )
        }
        Command::Backup(a) => run_backup(a, cli.json),
        Command::Restore(a) => run_restore(a, cli.json),
        Command::Whoami => {
            let v = c.get("/v1/whoami")?;
            show(&v, &|v| {
                println!("{} ({})", s(v, "/user_id"), s(v, "/name"));
                for r in v
                    .pointer("/roles")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    println!(
                        "  {} {}",
                        s(r, "/role"),
                        r.pointer("/scope")
                            .and_then(Value::as_str)
                            .unwrap_or("(global)")
                    );
                }
            });
            Ok(())
        }
    }
}

fn backup_error(e: backup::BackupError) -> CliError {
    match e {
        backup::BackupError::Refused(m) => CliError::Usage(m),
        other => CliError::Failed(other.to_string()),
    }
}

fn run_backup(a: &BackupArgs, as_json: bool) -> Result<(), CliError> {
    let r = backup::backup(&backup::BackupOptions {
        state_dir: a.state_dir.clone(),
        out: a.out.clone(),
        include_master_key: !a.exclude_master_key,
    })
    .map_err(backup_error)?;
    if as_json {
        output::json(&json!(r));
    } else {
        println!(
            "backup written: {} ({} bytes, {} entries)",
            r.out.display(),
            r.bytes,
            r.entries
        );
        println!(
            "verified: {} databases pass their integrity checks under their own keys; audit chain intact ({} records, last seq {})",
            r.check.databases, r.check.audit_records, r.check.audit_last_seq
        );
        for l in &r.left_out {
            println!("left out: {l}");
        }
    }
    if r.master_key_included {
        eprintln!(
            "WARNING: {} CONTAINS THE MASTER KEY (fingerprint {}). Anyone who has this file can read every queue, the registry and the change store. Keep it offline and encrypted, or back up with --exclude-master-key and store master.key apart.",
            r.out.display(),
            r.master_key_fingerprint
        );
    } else {
        eprintln!(
            "note: the master key is NOT in {} (fingerprint {}); keep {} somewhere safe: restore needs it (--master-key).",
            r.out.display(),
            r.master_key_fingerprint,
            a.state_dir.join("master.key").display()
        );
    }
    Ok(())
}

fn run_restore(a: &RestoreArgs, as_json: bool) -> Result<(), CliError> {
    let r = backup::restore(&backup::RestoreOptions {
        from: a.from.clone(),
        state_dir: a.state_dir.clone(),
        master_key: a.master_key.clone(),
    })
    .map_err(backup_error)?;
    if as_json {
        output::json(&json!(r));
    } else {
        println!(
            "restored {} entries into {} (backup of {} taken {})",
            r.entries,
            r.state_dir.display(),
            r.source_state_dir,
            r.backup_created_at
        );
        println!(
            "verified: master key {} (from the {}); {} databases pass their integrity checks; audit chain intact ({} records, last seq {}, as recorded at backup time)",
            r.master_key_fingerprint,
            r.master_key_from,
            r.check.databases,
            r.check.audit_records,
            r.check.audit_last_seq
        );
        if !r.owners_restored {
            println!("owners not restored (not root): files belong to you");
        }
        println!(
            "next: ironclaw-controlplane --state-dir {} (stop any daemon still using the old directory first)",
            r.state_dir.display()
        );
    }
    Ok(())
}

fn read_payload(p: &str) -> Result<Value, CliError> {
    let text = match p.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("--payload @{path}: {e}")))?,
        None => p.to_owned(),
    };
    serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("--payload is not valid JSON: {e}")))
}

fn change(c: &Client, as_json: bool, cmd: &ChangeCmd) -> Result<(), CliError> {
    let list = |v: &Value| {
        let rows: Vec<Vec<String>> = v
            .pointer("/changes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|ch| {
                vec![
                    s(ch, "/request/id"),
                    s(ch, "/request/kind"),
                    s(ch, "/request/agent_group_id"),
                    s(ch, "/request/requested_by"),
                    s(ch, "/status"),
                    s(ch, "/request/created_at"),
                ]
            })
            .collect();
        table(
            &["id", "kind", "group", "requested by", "status", "created"],
            &rows,
        );
    };
    let out = |v: &Value, f: &dyn Fn(&Value)| if as_json { output::json(v) } else { f(v) };
    match cmd {
        ChangeCmd::Submit {
            kind,
            group,
            payload,
            by,
            reason,
        } => {
            let body = json!({
                "kind": kind, "agent_group_id": group, "payload": read_payload(payload)?,
                "requested_by": by, "reason": reason,
            });
            let v = c.send("POST", "/v1/changes", Some(&body))?;
            out(&v, &|v| println!("{}  {}", s(v, "/id"), s(v, "/status")));
        }
        ChangeCmd::Pending => out(&c.get("/v1/changes/pending")?, &list),
        ChangeCmd::History { limit } => out(
            &c.get(&format!("/v1/changes/history?limit={limit}"))?,
            &list,
        ),
        ChangeCmd::Show { id } => out(
            &c.get(&format!("/v1/changes/{}", enc(id)))?,
            &output::change,
        ),
        ChangeCmd::Approve { id, by } | ChangeCmd::Reject { id, by } => {
            let outcome = if matches!(cmd, ChangeCmd::Approve { .. }) {
                "approve"
            } else {
                "reject"
            };
            let v = c.send(
                "POST",
                &format!("/v1/changes/{}/decision", enc(id)),
                Some(&json!({"outcome": outcome, "decided_by": by})),
            )?;
            out(&v, &|v| {
                println!("{}  {}", s(v, "/request/id"), s(v, "/status"))
            });
        }
        ChangeCmd::Retry { id } => {
            let v = c.send("POST", &format!("/v1/changes/{}/retry", enc(id)), None)?;
            out(&v, &|v| {
                println!("{}  {}", s(v, "/request/id"), s(v, "/status"))
            });
        }
    }
    Ok(())
}

fn audit(c: &Client, as_json: bool, a: &AuditArgs) -> Result<(), CliError> {
    match &a.command {
        None => {
            let v = c.get(&format!("/v1/audit?limit={}", a.limit))?;
            if as_json {
                output::json(&v);
            } else {
                let rows: Vec<Vec<String>> = v
                    .pointer("/records")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        let ev = r.pointer("/event").cloned().unwrap_or_default();
                        let mut detail = ev.clone();
                        if let Some(o) = detail.as_object_mut() {
                            o.remove("type");
                        }
                        vec![
                            s(r, "/seq"),
                            s(r, "/time"),
                            s(&ev, "/type"),
                            detail.to_string(),
                        ]
                    })
                    .collect();
                table(&["seq", "time", "event", "detail"], &rows);
            }
            Ok(())
        }
        Some(AuditCmd::Verify {
            state_dir: Some(dir),
        }) => {
            let path = dir.join("audit.jsonl");
            match ironclaw_audit::verify(&path) {
                Ok(r) => {
                    println!(
                        "audit chain intact: {} records, last seq {}, last hash {}",
                        r.records, r.last_seq, r.last_hash
                    );
                    Ok(())
                }
                Err(e) => Err(CliError::AuditBroken(format!("{}: {e}", path.display()))),
            }
        }
        Some(AuditCmd::Verify { state_dir: None }) => {
            let v = c.get("/v1/audit/verify")?;
            if v.pointer("/ok") == Some(&Value::Bool(true)) {
                println!(
                    "audit chain intact: {} records, last seq {}",
                    s(&v, "/records"),
                    s(&v, "/last_seq")
                );
                Ok(())
            } else {
                Err(CliError::AuditBroken(s(&v, "/error")))
            }
        }
    }
}

fn session(c: &Client, as_json: bool, cmd: &SessionCmd) -> Result<(), CliError> {
    let launched = |v: &Value| {
        if as_json {
            return output::json(v);
        }
        match s(v, "/outcome").as_str() {
            "launched" => println!(
                "session {} launched ({} {}{})",
                s(v, "/id"),
                s(v, "/runtime"),
                s(v, "/runtime_version"),
                v.pointer("/image_digest")
                    .and_then(Value::as_str)
                    .map(|d| format!(", image {d}"))
                    .unwrap_or_default()
            ),
            _ => println!("session {} is already running", s(v, "/id")),
        }
    };
    match cmd {
        SessionCmd::List => {
            let v = c.get("/v1/sessions")?;
            if as_json {
                output::json(&v);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = v
                .pointer("/sessions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|r| {
                    vec![
                        s(r, "/id"),
                        s(r, "/agent_group_id"),
                        s(r, "/status"),
                        s(r, "/runtime"),
                        s(r, "/image_digest"),
                        s(r, "/started_at"),
                    ]
                })
                .collect();
            table(
                &["id", "group", "status", "runtime", "image", "started"],
                &rows,
            );
        }
        SessionCmd::Start { group } => launched(&c.send(
            "POST",
            "/v1/sessions",
            Some(&json!({"agent_group_id": group})),
        )?),
        SessionCmd::Stop { id } => {
            let v = c.send("POST", &format!("/v1/sessions/{}/stop", enc(id)), None)?;
            if as_json {
                output::json(&v);
            } else if v.pointer("/was_running") == Some(&Value::Bool(true)) {
                println!("session {id} stopped");
            } else {
                println!("session {id} was not running");
            }
        }
        SessionCmd::Resume { id } => {
            launched(&c.send("POST", &format!("/v1/sessions/{}/resume", enc(id)), None)?)
        }
    }
    Ok(())
}

fn registry(c: &Client, as_json: bool, cmd: &RegistryCmd) -> Result<(), CliError> {
    let out = |v: &Value, f: &dyn Fn(&Value)| if as_json { output::json(v) } else { f(v) };
    match cmd {
        RegistryCmd::AgentGroups { id: None } => out(&c.get("/v1/registry/agent-groups")?, &|v| {
            let rows: Vec<Vec<String>> = v
                .pointer("/agent_groups")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|g| {
                    vec![
                        s(g, "/id"),
                        s(g, "/name"),
                        s(g, "/provider"),
                        s(g, "/enabled_tools"),
                    ]
                })
                .collect();
            table(&["id", "name", "provider", "enabled tools"], &rows);
        }),
        RegistryCmd::AgentGroups { id: Some(id) } => out(
            &c.get(&format!("/v1/registry/agent-groups/{}", enc(id)))?,
            &output::json,
        ),
        RegistryCmd::Members { group } => out(
            &c.get(&format!("/v1/registry/agent-groups/{}/members", enc(group)))?,
            &output::json,
        ),
        RegistryCmd::Destinations { group } => out(
            &c.get(&format!(
                "/v1/registry/agent-groups/{}/destinations",
                enc(group)
            ))?,
            &output::json,
        ),
        RegistryCmd::MessagingGroups {
            id,
            channel,
            platform_id,
        } => match (id, channel, platform_id) {
            (Some(id), None, None) => out(
                &c.get(&format!("/v1/registry/messaging-groups/{}", enc(id)))?,
                &output::json,
            ),
            (None, Some(ch), Some(p)) => out(
                &c.send(
                    "POST",
                    "/v1/registry/messaging-groups",
                    Some(&json!({"channel_type": ch, "platform_id": p})),
                )?,
                &output::json,
            ),
            _ => {
                return Err(CliError::Usage(
                    "give a messaging group id, or --channel and --platform-id to create one"
                        .into(),
                ))
            }
        },
        RegistryCmd::Wirings { messaging_group } => out(
            &c.get(&format!(
                "/v1/registry/messaging-groups/{}/wirings",
                enc(messaging_group)
            ))?,
            &output::json,
        ),
        RegistryCmd::Users { id, kind: None, .. } => out(
            &c.get(&format!("/v1/registry/users/{}", enc(id)))?,
            &output::json,
        ),
        RegistryCmd::Users {
            id,
            kind: Some(kind),
            display_name,
        } => out(
            &c.send(
                "PUT",
                &format!("/v1/registry/users/{}", enc(id)),
                Some(&json!({"kind": kind, "display_name": display_name})),
            )?,
            &output::json,
        ),
        RegistryCmd::Roles {
            user,
            grant,
            revoke,
            group,
        } => {
            let body = |role: &str| json!({"user_id": user, "role": role, "agent_group_id": group});
            let v = match (grant, revoke) {
                (Some(r), _) => c.send("POST", "/v1/registry/roles", Some(&body(r)))?,
                (None, Some(r)) => c.send("POST", "/v1/registry/roles/revoke", Some(&body(r)))?,
                (None, None) => c.get(&format!("/v1/registry/roles?user_id={}", enc(user)))?,
            };
            out(&v, &output::json)
        }
        RegistryCmd::Sessions { id: None } => out(&c.get("/v1/registry/sessions")?, &|v| {
            let rows: Vec<Vec<String>> = v
                .pointer("/sessions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|x| {
                    vec![
                        s(x, "/id"),
                        s(x, "/agent_group_id"),
                        s(x, "/status"),
                        s(x, "/last_active"),
                    ]
                })
                .collect();
            table(&["id", "group", "status", "last active"], &rows);
        }),
        RegistryCmd::Sessions { id: Some(id) } => out(
            &c.get(&format!("/v1/registry/sessions/{}", enc(id)))?,
            &output::json,
        ),
        RegistryCmd::Access { user, group } => out(
            &c.get(&format!(
                "/v1/registry/access?user_id={}&agent_group_id={}",
                enc(user),
                enc(group)
            ))?,
            &|v| {
                println!(
                    "{} ({})",
                    if v.pointer("/allowed") == Some(&Value::Bool(true)) {
                        "allowed"
                    } else {
                        "denied"
                    },
                    s(v, "/reason")
                )
            },
        ),
    }
    Ok(())
}

fn token(c: &Client, as_json: bool, cmd: &TokenCmd) -> Result<(), CliError> {
    match cmd {
        TokenCmd::Create { name, role } => {
            let v = c.send(
                "POST",
                "/v1/tokens",
                Some(&json!({"name": name, "role": role})),
            )?;
            if as_json {
                output::json(&v);
            } else {
                println!(
                    "created {} ({}) as {}",
                    s(&v, "/name"),
                    s(&v, "/principal"),
                    s(&v, "/role")
                );
                println!("token (shown once): {}", s(&v, "/token"));
            }
        }
        TokenCmd::List => {
            let v = c.get("/v1/tokens")?;
            if as_json {
                output::json(&v);
            } else {
                let rows: Vec<Vec<String>> = v
                    .pointer("/tokens")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        let state = if t.pointer("/revoked_at").is_some_and(|r| !r.is_null()) {
                            "revoked"
                        } else {
                            "active"
                        };
                        vec![
                            s(t, "/name"),
                            s(t, "/principal"),
                            s(t, "/hash_prefix"),
                            state.into(),
                            s(t, "/created_at"),
                        ]
                    })
                    .collect();
                table(&["name", "principal", "hash", "state", "created"], &rows);
            }
        }
        TokenCmd::Revoke { name } => {
            let v = c.send("DELETE", &format!("/v1/tokens/{}", enc(name)), None)?;
            if as_json {
                output::json(&v);
            } else {
                println!("revoked {name}");
            }
        }
    }
    Ok(())
}
