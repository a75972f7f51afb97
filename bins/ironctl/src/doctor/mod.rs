//! `ironctl doctor`: read-only checks of this host and of the daemon it talks to, each
//! PASS, WARN or FAIL with a one-line fix.
//!
//! Structure: every check is a pure function from observed facts to a [`Check`] (the
//! unit tests of each group walk every branch); the probes that gather the facts are
//! thin and separate ([`gather`]). Doctor changes nothing: it writes no file, reads the
//! master key's metadata but never its bytes, and reports provider keys by name, never
//! value.
//!
//! Checks that need the daemon ask it with the operator token; when it cannot be
//! reached, or refuses the token, those checks FAIL as "not checked" — an unknown state
//! of something critical is not reported as fine. Exit status: 1 if any check fails.
//!
//! Not for: fixing anything, or checking what only a live sandbox can show (the
//! containment probes of the end-to-end tests do that).
//!
//! Layout: this file gathers the facts and runs the checks in the order they are shown
//! ([`gather`]), and prints them ([`run`]). Each group of checks has its own file, with
//! its facts, its pure checks, its probes and its unit tests:
//! - [`daemon`] — `daemon`, `sandbox image`;
//! - [`runtime`] — `runsc`, `cgroups`;
//! - [`files`] — `state dir`, `master key`, `state files`;
//! - [`network`] — `api address`, `tls or tailnet`;
//! - [`env_file`] — `env file`;
//! - [`provider`] — `model provider`;
//! - [`audit`] — `audit chain`;
//! - [`clock`] — `clock`;
//! - [`finding`] — the [`Check`] every group returns; [`probe`] — shared process helpers.

mod audit;
mod clock;
mod daemon;
mod env_file;
mod files;
mod finding;
mod network;
mod probe;
mod provider;
mod runtime;

use std::path::Path;

use ironclaw_contract::paths::HostLayout;
use serde_json::Value;

use crate::client::{CliError, Client};

use audit::{check_audit, AuditFacts};
use clock::check_clock;
use daemon::{check_daemon, check_image, probe_daemon};
use env_file::{check_env_file, probe_env_file, EnvFileFacts};
use files::{check_master_key, check_state_dir, check_state_files, observe, Seen};
use finding::{Check, Level};
use network::{check_address, check_transport, probe_addr};
use provider::{check_provider, ProviderFacts, PROVIDER_VARS};
use runtime::{check_cgroups, check_runsc, probe_cgroups, probe_runsc};

pub use daemon::human_duration;

pub struct DoctorOptions<'a> {
    pub state_dir: &'a Path,
    pub runtime: &'a str,
    /// `Some` when given explicitly (a missing file is then a finding).
    pub env_file: Option<&'a Path>,
}

/// Gathers every fact and runs every check, in the order they are shown.
pub fn gather(c: &Client, opts: &DoctorOptions<'_>) -> Vec<Check> {
    let layout = HostLayout::new(opts.state_dir);
    let (daemon, clock) = probe_daemon(c);
    let (env_file, bind) = probe_env_file(opts.env_file);
    let addr = probe_addr(c.addr(), bind);
    let status = daemon.status();

    let mut checks = vec![
        check_daemon(&daemon),
        check_runsc(&probe_runsc(opts.runtime)),
        check_cgroups(&probe_cgroups()),
        check_state_dir(opts.state_dir, &observe(opts.state_dir)),
        check_master_key(
            &layout.master_key(),
            &observe(&layout.master_key()),
            &observe(&layout.sealed_keys()),
        ),
    ];
    let files: Vec<(String, Seen)> = [
        layout.sealed_keys(),
        layout.registry_db(),
        layout.changes_db(),
        layout.audit_log(),
        layout.tokens_file(),
        layout.dev_token(),
    ]
    .iter()
    .map(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (name, observe(p))
    })
    .collect();
    checks.push(check_state_files(&files));
    checks.push(check_address(&addr));
    checks.push(check_transport(&addr));
    checks.extend(check_env_file(&env_file));

    let mut configured: Vec<String> = PROVIDER_VARS
        .iter()
        .filter(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
        .map(|v| (*v).to_owned())
        .collect();
    if let EnvFileFacts::Present { names, .. } = &env_file {
        for n in names {
            if PROVIDER_VARS.contains(&n.as_str()) && !configured.contains(n) {
                configured.push(n.clone());
            }
        }
    }
    let daemon_providers = status.and_then(|s| {
        s.pointer("/model_proxy/providers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
    });
    checks.push(check_provider(&ProviderFacts {
        daemon: daemon_providers,
        configured,
    }));
    checks.push(check_image(status));
    let audit = if status.is_some() {
        match c.get("/v1/audit/verify") {
            Ok(v) => AuditFacts::Daemon(v),
            Err(_) => AuditFacts::Unknown,
        }
    } else {
        let log = layout.audit_log();
        match observe(&log) {
            Seen::Present(_) => AuditFacts::Offline(
                log.clone(),
                ironclaw_audit::verify(&log)
                    .map(|r| (r.records, r.last_seq))
                    .map_err(|e| e.to_string()),
            ),
            _ => AuditFacts::Unknown,
        }
    };
    checks.push(check_audit(&audit));
    checks.push(check_clock(&clock));
    checks
}

/// Prints the checks; fails (exit 1) if any failed.
pub fn run(c: &Client, opts: &DoctorOptions<'_>, as_json: bool) -> Result<(), CliError> {
    let checks = gather(c, opts);
    let count = |l: Level| checks.iter().filter(|c| c.level == l).count();
    let (p, w, f) = (count(Level::Pass), count(Level::Warn), count(Level::Fail));
    if as_json {
        crate::output::json(&serde_json::json!({
            "addr": c.addr(),
            "state_dir": opts.state_dir,
            "checks": checks,
            "summary": {"pass": p, "warn": w, "fail": f},
        }));
    } else {
        println!(
            "ironctl doctor: daemon {}, state dir {}",
            c.addr(),
            opts.state_dir.display()
        );
        for ch in &checks {
            println!("{}  {:<15} {}", ch.level.label(), ch.name, ch.detail);
            if let Some(fix) = &ch.fix {
                println!("      {:<15} fix: {fix}", "");
            }
        }
        println!("{} checks: {p} pass, {w} warn, {f} fail", checks.len());
    }
    if f > 0 {
        Err(CliError::Failed(format!("{f} check(s) failed")))
    } else {
        Ok(())
    }
}
