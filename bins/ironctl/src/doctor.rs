//! `ironctl doctor`: read-only checks of this host and of the daemon it talks to, each
//! PASS, WARN or FAIL with a one-line fix.
//!
//! Structure: every check is a pure function from observed facts to a [`Check`] (the
//! unit tests below walk each branch); the probes that gather the facts are thin and
//! separate ([`gather`]). Doctor changes nothing: it writes no file, reads the master
//! key's metadata but never its bytes, and reports provider keys by name, never value.
//!
//! Checks that need the daemon ask it with the operator token; when it cannot be
//! reached, or refuses the token, those checks FAIL as "not checked" — an unknown state
//! of something critical is not reported as fine. Exit status: 1 if any check fails.
//!
//! Not for: fixing anything, or checking what only a live sandbox can show (the
//! containment probes of the end-to-end tests do that).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use ironclaw_contract::paths::HostLayout;
use serde::Serialize;
use serde_json::Value;

use crate::client::{CliError, Client};

/// The default env file of a deployed daemon (read for variable names only).
pub const DEFAULT_ENV_FILE: &str = "/etc/ironclaw/ironclaw.env";

/// Variables that give the model proxy a real provider (a key, or a local server).
const PROVIDER_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "OPENROUTER_API_KEY",
    "OLLAMA_BASE_URL",
    "IRONCLAW_OPENAI_COMPAT_BASE_URL",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    /// One line: what to do about it (absent for PASS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Pass,
        detail: detail.into(),
        fix: None,
    }
}

fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Warn,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// A daemon-dependent check that could not run.
fn not_checked(name: &'static str) -> Check {
    fail(
        name,
        "not checked: the daemon could not be asked",
        "fix the `daemon` check first",
    )
}

// ---------------------------------------------------------------------------------
// Facts and the pure checks over them.

/// What the daemon said.
#[derive(Debug, Clone)]
pub enum DaemonFacts {
    /// `/healthz` did not answer.
    Unreachable { addr: String, reason: String },
    /// It answered `/healthz` but `/v1/status` failed (no token, refused token, …).
    Refused {
        addr: String,
        status: u16,
        message: String,
        had_token: bool,
    },
    /// `/v1/status`.
    Up { addr: String, status: Value },
}

impl DaemonFacts {
    fn status(&self) -> Option<&Value> {
        match self {
            DaemonFacts::Up { status, .. } => Some(status),
            _ => None,
        }
    }
}

pub fn check_daemon(f: &DaemonFacts) -> Check {
    const N: &str = "daemon";
    match f {
        DaemonFacts::Unreachable { addr, reason } => fail(
            N,
            format!("cannot reach {addr}: {reason}"),
            "start it (systemctl start ironclaw-controlplane), or point --addr / IRONCLAW_ADDR at its API address",
        ),
        DaemonFacts::Refused {
            addr,
            status,
            message,
            had_token,
        } => {
            let fix = if *had_token {
                "the token was refused: set IRONCLAW_API_TOKEN (or --token) to a valid operator token (`ironctl token create` on the owner's side)"
            } else {
                "set IRONCLAW_API_TOKEN (or --token) to your operator token"
            };
            fail(
                N,
                format!("{addr} answers, but /v1/status says HTTP {status}: {message}"),
                fix,
            )
        }
        DaemonFacts::Up { addr, status } => {
            let uptime = status
                .pointer("/uptime_seconds")
                .and_then(Value::as_u64)
                .map(human_duration)
                .unwrap_or_else(|| "?".into());
            let version = status
                .pointer("/version")
                .and_then(Value::as_str)
                .unwrap_or("?");
            pass(
                N,
                format!("ironclaw-controlplane {version} at {addr}, up {uptime}"),
            )
        }
    }
}

/// `3d4h`, `2h5m`, `4m10s`, `12s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// The sandbox runtime binary.
#[derive(Debug, Clone)]
pub enum RunscFacts {
    NotFound {
        runtime: String,
    },
    Found {
        path: PathBuf,
        version: Option<String>,
        /// `runsc --network=none do true`.
        do_true: Result<(), String>,
    },
}

pub fn check_runsc(f: &RunscFacts) -> Check {
    const N: &str = "runsc";
    match f {
        RunscFacts::NotFound { runtime } => fail(
            N,
            format!("{runtime} is not on PATH: sessions cannot run sandboxed"),
            "apt-get install -y runsc (gVisor); outside --dev the daemon runs no session without it",
        ),
        RunscFacts::Found {
            path,
            version,
            do_true: Err(e),
        } => fail(
            N,
            format!(
                "{} ({}) cannot start a sandbox: `runsc --network=none do true` failed: {e}",
                path.display(),
                version.as_deref().unwrap_or("version unknown")
            ),
            "run doctor (and the daemon) as root; see RUNSC-NOTES for what this host must allow",
        ),
        RunscFacts::Found {
            path,
            version,
            do_true: Ok(()),
        } => pass(
            N,
            format!(
                "{} ({}); `runsc --network=none do true` works",
                path.display(),
                version.as_deref().unwrap_or("version unknown")
            ),
        ),
    }
}

/// The cgroup hierarchies mounted on this host.
#[derive(Debug, Clone, Default)]
pub struct CgroupFacts {
    /// Controllers of the cgroup v2 hierarchy when it is mounted at `/sys/fs/cgroup`.
    pub v2: Option<Vec<String>>,
    /// Controllers that have a cgroup v1 hierarchy mounted.
    pub v1: Vec<String>,
}

const NEEDED_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

pub fn check_cgroups(f: &CgroupFacts) -> Check {
    const N: &str = "cgroups";
    let missing = |have: &[String]| -> Vec<&str> {
        NEEDED_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| !have.iter().any(|h| h == c))
            .collect()
    };
    if let Some(v2) = &f.v2 {
        let m = missing(v2);
        return if m.is_empty() {
            pass(N, "cgroup v2 with the memory, cpu and pids controllers")
        } else {
            fail(
                N,
                format!(
                    "cgroup v2 without the {} controller(s): sandbox limits cannot be enforced",
                    m.join(", ")
                ),
                "enable them (check the kernel command line for cgroup_disable=, and the parent's cgroup.subtree_control)",
            )
        };
    }
    let m = missing(&f.v1);
    if m.is_empty() {
        warn(
            N,
            "cgroup v1 hierarchies for memory, cpu and pids (runsc enforces the limits on v1, but v2 is the supported setup)",
            "boot with systemd.unified_cgroup_hierarchy=1 to use cgroup v2",
        )
    } else {
        fail(
            N,
            format!(
                "no cgroup hierarchy for {}: sandboxes' memory, CPU and pid limits cannot be enforced",
                m.join(", ")
            ),
            "mount cgroup2 at /sys/fs/cgroup (systemd does this by default)",
        )
    }
}

/// What `lstat` says about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathFacts {
    pub mode: u32,
    pub uid: u32,
    pub is_dir: bool,
    pub is_file: bool,
    pub is_symlink: bool,
    pub len: u64,
}

impl PathFacts {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            mode: m.permissions().mode() & 0o7777,
            uid: m.uid(),
            is_dir: m.is_dir(),
            is_file: m.is_file(),
            is_symlink: m.file_type().is_symlink(),
            len: m.len(),
        }
    }
}

/// A path doctor looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Missing,
    /// Could not be looked at (usually: doctor is not root).
    Unreadable(String),
    Present(PathFacts),
}

fn observe(path: &Path) -> Seen {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Seen::Present(PathFacts::of(&m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Seen::Missing,
        Err(e) => Seen::Unreadable(e.to_string()),
    }
}

fn unreadable(name: &'static str, path: &Path, why: &str) -> Check {
    warn(
        name,
        format!("cannot look at {}: {why}", path.display()),
        "run doctor as root (or as the daemon's user)",
    )
}

pub fn check_state_dir(path: &Path, seen: &Seen) -> Check {
    const N: &str = "state dir";
    let p = path.display();
    match seen {
        Seen::Missing => fail(
            N,
            format!("no state directory at {p}"),
            "pass --state-dir (the daemon's --state-dir / IRONCLAW_STATE_DIR), or start the daemon once to create it",
        ),
        Seen::Unreadable(why) => unreadable(N, path, why),
        Seen::Present(f) if f.is_symlink || !f.is_dir => fail(
            N,
            format!("{p} is not a directory (a symlink or a file)"),
            "point --state-dir at the real directory",
        ),
        Seen::Present(f) if f.mode & 0o066 != 0 => fail(
            N,
            format!("{p} has mode {:o}: others can list or change it, and it holds the keys", f.mode),
            format!("chmod 700 {p}"),
        ),
        Seen::Present(f) if f.uid != 0 => warn(
            N,
            format!("{p} (mode {:o}) is owned by uid {}, not root", f.mode, f.uid),
            format!("chown root:root {p} (the daemon runs as root under runsc)"),
        ),
        Seen::Present(f) => pass(
            N,
            if f.mode & 0o011 != 0 {
                format!(
                    "{p}: mode {:o} (traversable for runsc's gofer, not listable), owner root",
                    f.mode
                )
            } else {
                format!("{p}: mode {:o}, owner root", f.mode)
            },
        ),
    }
}

pub fn check_master_key(path: &Path, key: &Seen, store: &Seen) -> Check {
    const N: &str = "master key";
    let p = path.display();
    match key {
        Seen::Missing if matches!(store, Seen::Present(_)) => fail(
            N,
            format!("{p} is missing but sealed-keys exists: nothing in the state dir can be decrypted"),
            "restore master.key from where you keep it (ironctl restore, or copy it back with mode 0600)",
        ),
        Seen::Missing => warn(
            N,
            format!("no master key at {p} yet"),
            "it is created at the daemon's first start; then back it up (see docs/operations.md)",
        ),
        Seen::Unreadable(why) => unreadable(N, path, why),
        Seen::Present(f) if f.is_symlink || !f.is_file => fail(
            N,
            format!("{p} is not a regular file"),
            "replace it with the real key file (the daemon refuses symlinks)",
        ),
        Seen::Present(f) if f.mode & 0o077 != 0 => fail(
            N,
            format!("{p} has mode {:o}: group or others can read the master key", f.mode),
            format!("chmod 600 {p}, and treat the key as exposed"),
        ),
        Seen::Present(f) if f.len != 32 => fail(
            N,
            format!("{p} is {} bytes long; a master key is 32", f.len),
            "restore the key from your backup",
        ),
        Seen::Present(f) if f.uid != 0 => warn(
            N,
            format!("{p} (mode {:o}) is owned by uid {}, not root", f.mode, f.uid),
            format!("chown root:root {p}"),
        ),
        Seen::Present(f) => pass(N, format!("{p}: mode {:o}, owner root, 32 bytes", f.mode)),
    }
}

/// The other private files of the state dir, by name.
pub fn check_state_files(files: &[(String, Seen)]) -> Check {
    const N: &str = "state files";
    let open: Vec<String> = files
        .iter()
        .filter_map(|(name, s)| match s {
            Seen::Present(f) if f.mode & 0o077 != 0 => Some(format!("{name} ({:o})", f.mode)),
            _ => None,
        })
        .collect();
    let unreadable: Vec<&str> = files
        .iter()
        .filter(|(_, s)| matches!(s, Seen::Unreadable(_)))
        .map(|(n, _)| n.as_str())
        .collect();
    let present = files
        .iter()
        .filter(|(_, s)| matches!(s, Seen::Present(_)))
        .count();
    if !open.is_empty() {
        let names: Vec<&str> = files
            .iter()
            .filter(|(_, s)| matches!(s, Seen::Present(f) if f.mode & 0o077 != 0))
            .map(|(n, _)| n.as_str())
            .collect();
        fail(
            N,
            format!("readable by group or others: {}", open.join(", ")),
            format!("chmod 600 {}", names.join(" ")),
        )
    } else if !unreadable.is_empty() {
        warn(
            N,
            format!("cannot look at {}", unreadable.join(", ")),
            "run doctor as root (or as the daemon's user)",
        )
    } else {
        pass(N, format!("{present} files, all owner-only"))
    }
}

/// Where an address points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AddrClass {
    Loopback,
    /// Tailscale's ranges, 100.64.0.0/10 or fd7a:115c:a1e0::/48, on a `tailscale*`
    /// interface of this host. [`classify`] says only "in the range";
    /// [`AddrFacts`] confirms it against the interfaces.
    Tailnet,
    /// In Tailscale's ranges but not on a `tailscale*` interface here: 100.64.0.0/10
    /// is also the shared address space of ISP and cloud carrier-grade NAT, so it may
    /// well be a network anyone on it can read.
    Shared,
    /// RFC 1918, IPv6 unique-local or link-local.
    Private,
    /// 0.0.0.0 / `::`: every interface.
    Unspecified,
    Public,
}

pub fn classify(ip: IpAddr) -> AddrClass {
    let v4 = |a: Ipv4Addr| {
        let o = a.octets();
        if a.is_loopback() {
            AddrClass::Loopback
        } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
            AddrClass::Tailnet
        } else if a.is_private() || a.is_link_local() {
            AddrClass::Private
        } else if a.is_unspecified() {
            AddrClass::Unspecified
        } else {
            AddrClass::Public
        }
    };
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => {
            if let Some(m) = a.to_ipv4_mapped() {
                return v4(m);
            }
            let s = a.segments();
            if a.is_loopback() {
                AddrClass::Loopback
            } else if s[0] == 0xfd7a && s[1] == 0x115c && s[2] == 0xa1e0 {
                AddrClass::Tailnet
            } else if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80 {
                AddrClass::Private
            } else if a == Ipv6Addr::UNSPECIFIED {
                AddrClass::Unspecified
            } else {
                AddrClass::Public
            }
        }
    }
}

/// The API address as ironctl reaches it, and the daemon's bind address if known.
#[derive(Debug, Clone)]
pub struct AddrFacts {
    pub url: String,
    pub https: bool,
    /// What the URL's host resolves to.
    pub resolved: Result<Vec<IpAddr>, String>,
    /// `IRONCLAW_API_ADDR` from the daemon's env file or this environment.
    pub bind: Option<String>,
    /// The addresses of this host's `tailscale*` interfaces.
    pub tailscale: Vec<IpAddr>,
}

impl AddrFacts {
    /// Where `ip` points, with a tailnet address confirmed against this host's
    /// `tailscale*` interfaces.
    fn class(&self, ip: IpAddr) -> AddrClass {
        match classify(ip) {
            AddrClass::Tailnet if !self.tailscale.contains(&ip) => AddrClass::Shared,
            c => c,
        }
    }

    /// The least private class among the resolved addresses.
    fn worst(&self) -> Option<AddrClass> {
        self.resolved
            .as_ref()
            .ok()
            .and_then(|ips| ips.iter().map(|ip| self.class(*ip)).max())
    }
}

const SHARED_FIX: &str = "use the address of this host's tailscale interface (ip -4 addr show tailscale0), or TLS; run doctor on the daemon's host";

pub fn check_address(f: &AddrFacts) -> Check {
    const N: &str = "api address";
    let fix_bind = "bind the daemon to its tailnet IP (--api-addr 100.x.y.z:8787) or 127.0.0.1, and firewall the port";
    // A bind address that is fine for the URL's check but not confirmed on its own.
    let mut bind_note = None;
    if let Some(bind) = &f.bind {
        match bind.parse::<SocketAddr>() {
            Ok(sa) => match f.class(sa.ip()) {
                AddrClass::Public => {
                    return fail(
                        N,
                        format!("the daemon binds {bind}, a public address"),
                        fix_bind,
                    )
                }
                AddrClass::Unspecified => {
                    return fail(
                        N,
                        format!("the daemon binds {bind}: every interface, public ones included"),
                        fix_bind,
                    )
                }
                AddrClass::Shared => {
                    bind_note = Some(warn(
                        N,
                        format!(
                            "the daemon binds {bind}, in 100.64.0.0/10 but not on a tailscale interface of this host: that range is also carrier-grade NAT space"
                        ),
                        SHARED_FIX,
                    ))
                }
                _ => {}
            },
            Err(e) => {
                return fail(
                    N,
                    format!("IRONCLAW_API_ADDR={bind} is not an address: {e}"),
                    "set it to IP:PORT",
                )
            }
        }
    }
    let ips = match &f.resolved {
        Ok(ips) if !ips.is_empty() => ips,
        Ok(_) => return fail(N, format!("{} resolves to nothing", f.url), "check --addr"),
        Err(e) => return fail(N, format!("{}: {e}", f.url), "check --addr / IRONCLAW_ADDR"),
    };
    let shown: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    let shown = shown.join(", ");
    match f.worst() {
        Some(AddrClass::Public) => fail(
            N,
            format!(
                "{} is a public address ({shown}): the API must not face the internet",
                f.url
            ),
            fix_bind,
        ),
        Some(AddrClass::Unspecified) => fail(
            N,
            format!("{} points at every interface ({shown})", f.url),
            fix_bind,
        ),
        Some(AddrClass::Private) => warn(
            N,
            format!(
                "{} is a private LAN address ({shown}): anyone on that network can reach the API",
                f.url
            ),
            "prefer the tailnet IP (100.64.0.0/10) or loopback",
        ),
        Some(AddrClass::Shared) => warn(
            N,
            format!(
                "{} is in Tailscale's range ({shown}) but not on a tailscale interface of this host: 100.64.0.0/10 is also ISP and cloud carrier-grade NAT space",
                f.url
            ),
            SHARED_FIX,
        ),
        _ if bind_note.is_some() => bind_note.unwrap_or_else(|| not_checked(N)),
        Some(AddrClass::Loopback) | None if f.bind.is_none() => warn(
            N,
            format!(
                "{} is loopback ({shown}), but the daemon's bind address is unknown: it may listen on other interfaces too",
                f.url
            ),
            "pass --env-file with the daemon's env file (or set IRONCLAW_API_ADDR to its --api-addr) so doctor can check it",
        ),
        Some(AddrClass::Tailnet) => pass(
            N,
            format!("{} is on this host's tailscale interface ({shown})", f.url),
        ),
        Some(AddrClass::Loopback) | None => pass(N, format!("{} is loopback ({shown})", f.url)),
    }
}

pub fn check_transport(f: &AddrFacts) -> Check {
    const N: &str = "tls or tailnet";
    if f.https {
        return pass(N, "HTTPS");
    }
    match f.worst() {
        Some(AddrClass::Loopback) => pass(N, "plain HTTP on loopback: it never leaves this host"),
        Some(AddrClass::Tailnet) => pass(
            N,
            "plain HTTP to this host's tailscale interface (WireGuard-encrypted)",
        ),
        Some(AddrClass::Shared) => warn(
            N,
            "plain HTTP to an address in 100.64.0.0/10 that is not on a tailscale interface of this host: it may cross carrier-grade NAT in clear text",
            SHARED_FIX,
        ),
        None => fail(
            N,
            "not checked: the address did not resolve",
            "fix the `api address` check first",
        ),
        Some(_) => fail(
            N,
            "plain HTTP across a network: operator tokens travel in clear text",
            "serve TLS (--tls-cert/--tls-key, then https://) or reach the daemon over the tailnet",
        ),
    }
}

/// The daemon's env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvFileFacts {
    /// Not there, and not asked for explicitly: nothing to check.
    Absent,
    /// Asked for with `--env-file` but not there.
    Missing(PathBuf),
    Unreadable(PathBuf, String),
    Present {
        path: PathBuf,
        facts: PathFacts,
        /// Variables set to a non-empty value (names only).
        names: Vec<String>,
    },
}

pub fn check_env_file(f: &EnvFileFacts) -> Option<Check> {
    const N: &str = "env file";
    Some(match f {
        EnvFileFacts::Absent => return None,
        EnvFileFacts::Missing(p) => fail(
            N,
            format!("{} does not exist", p.display()),
            "create it (mode 0600) or drop --env-file",
        ),
        EnvFileFacts::Unreadable(p, why) => unreadable(N, p, why),
        EnvFileFacts::Present { path, facts, .. } if facts.mode & 0o077 != 0 => fail(
            N,
            format!(
                "{} has mode {:o}: it holds provider keys and tokens",
                path.display(),
                facts.mode
            ),
            format!("chmod 600 {}, and rotate what it holds", path.display()),
        ),
        EnvFileFacts::Present { path, facts, .. } if facts.uid != 0 => warn(
            N,
            format!("{} is owned by uid {}, not root", path.display(), facts.uid),
            format!("chown root:root {}", path.display()),
        ),
        EnvFileFacts::Present { path, facts, .. } => pass(
            N,
            format!("{}: mode {:o}, owner root", path.display(), facts.mode),
        ),
    })
}

/// Which model providers exist.
#[derive(Debug, Clone)]
pub struct ProviderFacts {
    /// What the daemon reports (`/v1/status` → `model_proxy.providers`); authoritative.
    pub daemon: Option<Vec<String>>,
    /// Provider variables set in this environment or the env file (names only).
    pub configured: Vec<String>,
}

pub fn check_provider(f: &ProviderFacts) -> Check {
    const N: &str = "model provider";
    let fix = "set ANTHROPIC_API_KEY (or OPENAI_API_KEY, OPENROUTER_API_KEY, OLLAMA_BASE_URL, IRONCLAW_OPENAI_COMPAT_BASE_URL) in the daemon's env file and restart it";
    match &f.daemon {
        Some(list) => {
            let real: Vec<&str> = list
                .iter()
                .map(String::as_str)
                .filter(|p| *p != "mock")
                .collect();
            if !real.is_empty() {
                pass(N, format!("the daemon has: {}", real.join(", ")))
            } else if !list.is_empty() {
                warn(
                    N,
                    "the daemon has only the mock provider: agents give canned answers",
                    fix,
                )
            } else {
                fail(
                    N,
                    "the daemon has no model provider: agents cannot reach a model",
                    fix,
                )
            }
        }
        None if !f.configured.is_empty() => pass(
            N,
            format!(
                "set here (values not shown; the daemon was not asked): {}",
                f.configured.join(", ")
            ),
        ),
        None => fail(
            N,
            "no provider variable in this environment or the env file",
            fix,
        ),
    }
}

pub fn check_image(status: Option<&Value>) -> Check {
    const N: &str = "sandbox image";
    let Some(s) = status else {
        return not_checked(N);
    };
    if s.pointer("/ready") != Some(&Value::Bool(true)) {
        let reason = s
            .pointer("/not_ready_reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return fail(
            N,
            format!("the daemon is not ready: {reason}"),
            "build and sign the image (`ironctl image build`), start the daemon with --image and --trust-policy, and read its log",
        );
    }
    match s.pointer("/runtime").and_then(Value::as_str) {
        Some("runsc") => pass(
            N,
            "ready: sessions run under runsc from a verified, cached image",
        ),
        Some("unsandboxed") => warn(
            N,
            "sessions run UNSANDBOXED as plain host processes (--dev without runsc)",
            "install runsc (apt-get install -y runsc) and restart the daemon",
        ),
        Some(other) => warn(N, format!("unknown runtime {other}"), "upgrade ironctl"),
        None => warn(
            N,
            "the daemon runs no sessions",
            "start the daemon normally (not API-only)",
        ),
    }
}

/// `/v1/audit/verify`, or the offline check of the state dir's log when the daemon
/// cannot be asked.
#[derive(Debug, Clone)]
pub enum AuditFacts {
    Daemon(Value),
    Offline(PathBuf, Result<(u64, u64), String>),
    Unknown,
}

pub fn check_audit(f: &AuditFacts) -> Check {
    const N: &str = "audit chain";
    let fix = "do not restart over it: find the first bad record with `ironctl audit verify --state-dir DIR`, compare with a backup, and investigate who edited it";
    match f {
        AuditFacts::Daemon(v) if v.pointer("/ok") == Some(&Value::Bool(true)) => pass(
            N,
            format!(
                "intact: {} records, last seq {} (verified by the daemon)",
                v.pointer("/records").cloned().unwrap_or_default(),
                v.pointer("/last_seq").cloned().unwrap_or_default()
            ),
        ),
        AuditFacts::Daemon(v) => fail(
            N,
            format!(
                "BROKEN: {}",
                v.pointer("/error")
                    .and_then(Value::as_str)
                    .unwrap_or("the daemon says the chain does not verify")
            ),
            fix,
        ),
        AuditFacts::Offline(p, Ok((records, last))) => pass(
            N,
            format!(
                "intact: {records} records, last seq {last} ({} read directly; the daemon was not asked)",
                p.display()
            ),
        ),
        AuditFacts::Offline(p, Err(e)) => fail(N, format!("{}: {e}", p.display()), fix),
        AuditFacts::Unknown => not_checked(N),
    }
}

/// The daemon's clock against ours.
#[derive(Debug, Clone)]
pub enum ClockFacts {
    /// The daemon's `Date` header and the local clock before and after the request.
    Observed {
        date: Option<String>,
        before: SystemTime,
        after: SystemTime,
    },
    Unknown,
}

/// How far apart the clocks are, beyond what the measurement itself blurs: the header
/// has whole seconds, and the request took `after - before`.
pub fn clock_skew(date: SystemTime, before: SystemTime, after: SystemTime) -> Duration {
    let rtt = after.duration_since(before).unwrap_or_default();
    let mid = before + rtt / 2;
    let raw = match date.duration_since(mid) {
        Ok(ahead) => ahead,
        Err(behind) => behind.duration(),
    };
    raw.saturating_sub(Duration::from_secs(1) + rtt / 2)
}

pub fn check_clock(f: &ClockFacts) -> Check {
    const N: &str = "clock";
    let fix = "enable time sync on both hosts (timedatectl set-ntp true, or chrony): audit times and replay windows depend on it";
    let ClockFacts::Observed {
        date,
        before,
        after,
    } = f
    else {
        return not_checked(N);
    };
    let Some(date) = date else {
        return warn(N, "the daemon sent no Date header", "upgrade the daemon");
    };
    let Ok(theirs) = httpdate::parse_http_date(date) else {
        return warn(
            N,
            format!("unreadable Date header {date:?}"),
            "upgrade the daemon",
        );
    };
    let skew = clock_skew(theirs, *before, *after).as_secs();
    if skew > 300 {
        fail(
            N,
            format!("this host and the daemon differ by ~{skew} s (> 5 min)"),
            fix,
        )
    } else if skew > 60 {
        warn(
            N,
            format!("this host and the daemon differ by ~{skew} s (> 60 s)"),
            fix,
        )
    } else {
        pass(N, "within a second or so of the daemon")
    }
}

// ---------------------------------------------------------------------------------
// Probes.

pub struct DoctorOptions<'a> {
    pub state_dir: &'a Path,
    pub runtime: &'a str,
    /// `Some` when given explicitly (a missing file is then a finding).
    pub env_file: Option<&'a Path>,
}

fn find_on_path(bin: &str) -> Option<PathBuf> {
    if bin.contains('/') {
        let p = PathBuf::from(bin);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    })
}

/// Runs a command with a deadline; `Ok(stdout)` on exit 0, else why not.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", limit.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(format!("{} {}", out.status, last.trim()))
    }
}

fn probe_runsc(runtime: &str) -> RunscFacts {
    let Some(path) = find_on_path(runtime) else {
        return RunscFacts::NotFound {
            runtime: runtime.to_owned(),
        };
    };
    let version = run_with_timeout(Command::new(&path).arg("--version"), Duration::from_secs(5))
        .ok()
        .and_then(|o| o.lines().next().map(str::to_owned));
    let do_true = run_with_timeout(
        Command::new(&path).args(["--network=none", "do", "true"]),
        Duration::from_secs(30),
    )
    .map(|_| ());
    RunscFacts::Found {
        path,
        version,
        do_true,
    }
}

fn probe_cgroups() -> CgroupFacts {
    let mut f = CgroupFacts::default();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, point, kind, opts, ..] = fields.as_slice() else {
            continue;
        };
        if *kind == "cgroup2" && *point == "/sys/fs/cgroup" {
            let c =
                std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
            f.v2 = Some(c.split_whitespace().map(str::to_owned).collect());
        } else if *kind == "cgroup" {
            f.v1.extend(
                opts.split(',')
                    .filter(|o| NEEDED_CONTROLLERS.contains(o))
                    .map(str::to_owned),
            );
        }
    }
    f
}

/// Names (never values) of the variables an env file sets to something non-empty, and
/// `IRONCLAW_API_ADDR`'s value (an address, not a secret).
fn parse_env_file(text: &str) -> (Vec<String>, Option<String>) {
    let mut names = Vec::new();
    let mut bind = None;
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
        if v.is_empty() {
            continue;
        }
        let k = k.trim();
        if k == "IRONCLAW_API_ADDR" {
            bind = Some(v.to_owned());
        }
        names.push(k.to_owned());
    }
    (names, bind)
}

fn probe_env_file(explicit: Option<&Path>) -> (EnvFileFacts, Option<String>) {
    let path = explicit.unwrap_or(Path::new(DEFAULT_ENV_FILE));
    match observe(path) {
        Seen::Missing if explicit.is_some() => (EnvFileFacts::Missing(path.to_owned()), None),
        Seen::Missing => (EnvFileFacts::Absent, None),
        Seen::Unreadable(why) => (EnvFileFacts::Unreadable(path.to_owned(), why), None),
        Seen::Present(facts) => match std::fs::read_to_string(path) {
            Ok(text) => {
                let (names, bind) = parse_env_file(&text);
                (
                    EnvFileFacts::Present {
                        path: path.to_owned(),
                        facts,
                        names,
                    },
                    bind,
                )
            }
            Err(e) => (
                EnvFileFacts::Unreadable(path.to_owned(), e.to_string()),
                None,
            ),
        },
    }
}

/// The addresses of interfaces named `tailscale*`, from `ip -o addr show` (both
/// families), or for IPv6 alone from `/proc/net/if_inet6` when `ip` is missing.
fn probe_tailscale() -> Vec<IpAddr> {
    let ip = find_on_path("ip").or_else(|| {
        ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    });
    if let Some(ip) = ip {
        if let Ok(out) = run_with_timeout(
            Command::new(ip).args(["-o", "addr", "show"]),
            Duration::from_secs(5),
        ) {
            return parse_ip_addr(&out);
        }
    }
    std::fs::read_to_string("/proc/net/if_inet6")
        .map(|t| parse_if_inet6(&t))
        .unwrap_or_default()
}

fn tailscale_name(name: &str) -> bool {
    name.split('@')
        .next()
        .unwrap_or("")
        .starts_with("tailscale")
}

/// `ip -o addr show`: `3: tailscale0    inet 100.101.1.2/32 scope global …`.
fn parse_ip_addr(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _index = f.next()?;
            let name = f.next()?;
            let family = f.next()?;
            let addr = f.next()?;
            (tailscale_name(name) && (family == "inet" || family == "inet6"))
                .then(|| addr.split('/').next()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// `/proc/net/if_inet6`: `fd7a115ca1e0…0001 03 80 00 80 tailscale0`.
fn parse_if_inet6(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (hex, name) = (f.first()?, f.get(5)?);
            if !tailscale_name(name) || hex.len() != 32 {
                return None;
            }
            let n = u128::from_str_radix(hex, 16).ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(n)))
        })
        .collect()
}

fn probe_addr(addr: &str, bind: Option<String>) -> AddrFacts {
    let uri: Result<ureq::http::Uri, _> = addr.parse();
    let (https, resolved) = match uri {
        Ok(u) => {
            let https = u.scheme_str() == Some("https");
            let port = u.port_u16().unwrap_or(if https { 443 } else { 80 });
            let resolved = match u.host() {
                Some(h) => {
                    let h = h.trim_start_matches('[').trim_end_matches(']');
                    (h, port)
                        .to_socket_addrs()
                        .map(|it| it.map(|sa| sa.ip()).collect())
                        .map_err(|e| format!("cannot resolve {h}: {e}"))
                }
                None => Err("no host in the address".to_owned()),
            };
            (https, resolved)
        }
        Err(e) => (false, Err(format!("not a URL: {e}"))),
    };
    AddrFacts {
        url: addr.to_owned(),
        https,
        resolved,
        bind: bind.or_else(|| {
            std::env::var("IRONCLAW_API_ADDR")
                .ok()
                .filter(|v| !v.is_empty())
        }),
        tailscale: probe_tailscale(),
    }
}

fn probe_daemon(c: &Client) -> (DaemonFacts, ClockFacts) {
    let before = SystemTime::now();
    let health = c.get_with_date("/healthz");
    let after = SystemTime::now();
    let addr = c.addr().to_owned();
    let date = match health {
        Ok((_, date)) => date,
        Err(CliError::Api { status, .. }) if status != 404 => None,
        Err(e) => {
            let reason = match e {
                CliError::Unreachable { reason, .. } => reason,
                other => other.to_string(),
            };
            return (
                DaemonFacts::Unreachable { addr, reason },
                ClockFacts::Unknown,
            );
        }
    };
    let clock = ClockFacts::Observed {
        date,
        before,
        after,
    };
    let facts = match c.get("/v1/status") {
        Ok(status) => DaemonFacts::Up { addr, status },
        Err(CliError::Api {
            status, message, ..
        }) => DaemonFacts::Refused {
            addr,
            status,
            message,
            had_token: c.has_token(),
        },
        Err(e) => DaemonFacts::Unreachable {
            addr,
            reason: e.to_string(),
        },
    };
    (facts, clock)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir(mode: u32, uid: u32) -> Seen {
        Seen::Present(PathFacts {
            mode,
            uid,
            is_dir: true,
            is_file: false,
            is_symlink: false,
            len: 4096,
        })
    }

    fn file(mode: u32, uid: u32, len: u64) -> Seen {
        Seen::Present(PathFacts {
            mode,
            uid,
            is_dir: false,
            is_file: true,
            is_symlink: false,
            len,
        })
    }

    fn level(c: Check) -> Level {
        // Every non-PASS carries a fix; every PASS does not.
        assert_eq!(c.fix.is_some(), c.level != Level::Pass, "{c:?}");
        c.level
    }

    #[test]
    fn daemon_branches() {
        let addr = "http://127.0.0.1:8787".to_owned();
        let down = DaemonFacts::Unreachable {
            addr: addr.clone(),
            reason: "connection refused".into(),
        };
        assert_eq!(level(check_daemon(&down)), Level::Fail);
        for had_token in [true, false] {
            let refused = DaemonFacts::Refused {
                addr: addr.clone(),
                status: 401,
                message: "bad token".into(),
                had_token,
            };
            let c = check_daemon(&refused);
            assert_eq!(c.level, Level::Fail);
            assert_eq!(
                c.fix.as_deref().is_some_and(|f| f.contains("refused")),
                had_token
            );
        }
        let up = DaemonFacts::Up {
            addr,
            status: json!({"version": "0.1.0", "uptime_seconds": 3725}),
        };
        let c = check_daemon(&up);
        assert_eq!(level(c.clone()), Level::Pass);
        assert!(
            c.detail.contains("0.1.0") && c.detail.contains("1h2m"),
            "{c:?}"
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(65), "1m5s");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(2 * 86400 + 3600), "2d1h");
    }

    #[test]
    fn runsc_branches() {
        assert_eq!(
            level(check_runsc(&RunscFacts::NotFound {
                runtime: "runsc".into()
            })),
            Level::Fail
        );
        let found = |do_true| RunscFacts::Found {
            path: "/usr/bin/runsc".into(),
            version: Some("runsc version 1".into()),
            do_true,
        };
        assert_eq!(
            level(check_runsc(&found(Err("exit 1: permission denied".into())))),
            Level::Fail
        );
        assert_eq!(level(check_runsc(&found(Ok(())))), Level::Pass);
    }

    #[test]
    fn cgroup_branches() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let v2 = |c: &[&str]| CgroupFacts {
            v2: Some(s(c)),
            v1: vec![],
        };
        assert_eq!(
            level(check_cgroups(&v2(&[
                "cpuset", "cpu", "io", "memory", "pids"
            ]))),
            Level::Pass
        );
        let c = check_cgroups(&v2(&["cpu", "memory"]));
        assert_eq!(level(c.clone()), Level::Fail);
        assert!(c.detail.contains("pids"));
        let v1 = |c: &[&str]| CgroupFacts { v2: None, v1: s(c) };
        assert_eq!(
            level(check_cgroups(&v1(&["cpu", "memory", "pids"]))),
            Level::Warn
        );
        assert_eq!(level(check_cgroups(&v1(&["cpu"]))), Level::Fail);
        assert_eq!(level(check_cgroups(&CgroupFacts::default())), Level::Fail);
    }

    #[test]
    fn state_dir_branches() {
        let p = Path::new("/var/lib/ironclaw");
        assert_eq!(level(check_state_dir(p, &Seen::Missing)), Level::Fail);
        assert_eq!(
            level(check_state_dir(p, &Seen::Unreadable("EACCES".into()))),
            Level::Warn
        );
        assert_eq!(level(check_state_dir(p, &file(0o600, 0, 1))), Level::Fail);
        let mut link = PathFacts {
            mode: 0o777,
            uid: 0,
            is_dir: false,
            is_file: false,
            is_symlink: true,
            len: 0,
        };
        assert_eq!(level(check_state_dir(p, &Seen::Present(link))), Level::Fail);
        link.is_symlink = false;
        link.is_dir = true;
        link.mode = 0o755;
        assert_eq!(level(check_state_dir(p, &Seen::Present(link))), Level::Fail);
        assert_eq!(level(check_state_dir(p, &dir(0o700, 1000))), Level::Warn);
        assert_eq!(level(check_state_dir(p, &dir(0o700, 0))), Level::Pass);
        let c = check_state_dir(p, &dir(0o711, 0));
        assert_eq!(level(c.clone()), Level::Pass);
        assert!(c.detail.contains("gofer"));
    }

    #[test]
    fn master_key_branches() {
        let p = Path::new("/var/lib/ironclaw/master.key");
        let store = file(0o600, 0, 100);
        assert_eq!(
            level(check_master_key(p, &Seen::Missing, &store)),
            Level::Fail
        );
        assert_eq!(
            level(check_master_key(p, &Seen::Missing, &Seen::Missing)),
            Level::Warn
        );
        assert_eq!(
            level(check_master_key(p, &Seen::Unreadable("x".into()), &store)),
            Level::Warn
        );
        assert_eq!(
            level(check_master_key(p, &dir(0o700, 0), &store)),
            Level::Fail
        );
        assert_eq!(
            level(check_master_key(p, &file(0o644, 0, 32), &store)),
            Level::Fail
        );
        assert_eq!(
            level(check_master_key(p, &file(0o600, 0, 31), &store)),
            Level::Fail
        );
        assert_eq!(
            level(check_master_key(p, &file(0o600, 1000, 32), &store)),
            Level::Warn
        );
        assert_eq!(
            level(check_master_key(p, &file(0o600, 0, 32), &store)),
            Level::Pass
        );
        assert_eq!(
            level(check_master_key(p, &file(0o400, 0, 32), &store)),
            Level::Pass
        );
    }

    #[test]
    fn state_file_branches() {
        let ok = vec![
            ("tokens".to_owned(), file(0o600, 0, 10)),
            ("dev-token".to_owned(), Seen::Missing),
        ];
        assert_eq!(level(check_state_files(&ok)), Level::Pass);
        let mut open = ok.clone();
        open.push(("registry.db".into(), file(0o644, 0, 10)));
        let c = check_state_files(&open);
        assert_eq!(level(c.clone()), Level::Fail);
        assert_eq!(c.fix.as_deref(), Some("chmod 600 registry.db"));
        let mut hidden = ok;
        hidden.push(("audit.jsonl".into(), Seen::Unreadable("EACCES".into())));
        assert_eq!(level(check_state_files(&hidden)), Level::Warn);
    }

    #[test]
    fn addresses_are_classified() {
        let c = |s: &str| classify(s.parse().unwrap());
        assert_eq!(c("127.0.0.1"), AddrClass::Loopback);
        assert_eq!(c("::1"), AddrClass::Loopback);
        assert_eq!(c("100.64.0.1"), AddrClass::Tailnet);
        assert_eq!(c("100.127.255.254"), AddrClass::Tailnet);
        assert_eq!(c("100.128.0.1"), AddrClass::Public);
        assert_eq!(c("100.63.255.255"), AddrClass::Public);
        assert_eq!(c("fd7a:115c:a1e0::1"), AddrClass::Tailnet);
        assert_eq!(c("10.1.2.3"), AddrClass::Private);
        assert_eq!(c("172.16.0.1"), AddrClass::Private);
        assert_eq!(c("172.32.0.1"), AddrClass::Public);
        assert_eq!(c("192.168.1.1"), AddrClass::Private);
        assert_eq!(c("fd00::1"), AddrClass::Private);
        assert_eq!(c("fe80::1"), AddrClass::Private);
        assert_eq!(c("0.0.0.0"), AddrClass::Unspecified);
        assert_eq!(c("::"), AddrClass::Unspecified);
        assert_eq!(c("8.8.8.8"), AddrClass::Public);
        assert_eq!(c("2001:db8::1"), AddrClass::Public);
        assert_eq!(c("::ffff:127.0.0.1"), AddrClass::Loopback);
    }

    fn addr(url: &str, ips: &[&str], bind: Option<&str>) -> AddrFacts {
        AddrFacts {
            url: url.into(),
            https: url.starts_with("https:"),
            resolved: Ok(ips.iter().map(|s| s.parse().unwrap()).collect()),
            bind: bind.map(str::to_owned),
            tailscale: Vec::new(),
        }
    }

    /// `f` on a host whose tailscale interface has `ips`.
    fn on_tailscale(mut f: AddrFacts, ips: &[&str]) -> AddrFacts {
        f.tailscale = ips.iter().map(|s| s.parse().unwrap()).collect();
        f
    }

    #[test]
    fn address_branches() {
        let l = |f: AddrFacts| level(check_address(&f));
        assert_eq!(
            l(addr(
                "http://127.0.0.1:8787",
                &["127.0.0.1"],
                Some("127.0.0.1:8787")
            )),
            Level::Pass
        );
        // A loopback URL says nothing about where else the daemon listens.
        assert_eq!(
            l(addr("http://127.0.0.1:8787", &["127.0.0.1"], None)),
            Level::Warn
        );
        // 100.64.0.0/10 is a tailnet only on a tailscale interface; it is also CGNAT.
        assert_eq!(
            l(on_tailscale(
                addr("http://h:8787", &["100.100.1.2"], None),
                &["100.100.1.2"]
            )),
            Level::Pass
        );
        assert_eq!(
            l(addr("http://h:8787", &["100.100.1.2"], None)),
            Level::Warn
        );
        assert_eq!(
            l(on_tailscale(
                addr("http://h:8787", &["100.100.1.2"], None),
                &["100.100.9.9"]
            )),
            Level::Warn
        );
        assert_eq!(
            l(addr("http://h:8787", &["192.168.1.5"], None)),
            Level::Warn
        );
        assert_eq!(
            l(addr("http://h:8787", &["203.0.113.9"], None)),
            Level::Fail
        );
        // One public address among private ones is enough to fail.
        assert_eq!(
            l(addr("http://h:8787", &["10.0.0.1", "203.0.113.9"], None)),
            Level::Fail
        );
        assert_eq!(
            l(addr("http://0.0.0.0:8787", &["0.0.0.0"], None)),
            Level::Fail
        );
        // The daemon's own bind address, when known, counts too.
        assert_eq!(
            l(addr(
                "http://127.0.0.1:8787",
                &["127.0.0.1"],
                Some("0.0.0.0:8787")
            )),
            Level::Fail
        );
        assert_eq!(
            l(addr(
                "http://127.0.0.1:8787",
                &["127.0.0.1"],
                Some("8.8.8.8:8787")
            )),
            Level::Fail
        );
        assert_eq!(
            l(addr(
                "http://127.0.0.1:8787",
                &["127.0.0.1"],
                Some("nonsense")
            )),
            Level::Fail
        );
        assert_eq!(
            l(on_tailscale(
                addr(
                    "http://127.0.0.1:8787",
                    &["127.0.0.1"],
                    Some("100.70.0.1:8787")
                ),
                &["100.70.0.1"]
            )),
            Level::Pass
        );
        assert_eq!(
            l(addr(
                "http://127.0.0.1:8787",
                &["127.0.0.1"],
                Some("100.70.0.1:8787")
            )),
            Level::Warn
        );
        let mut unresolved = addr("http://nowhere:8787", &[], None);
        assert_eq!(l(unresolved.clone()), Level::Fail);
        unresolved.resolved = Err("cannot resolve".into());
        assert_eq!(l(unresolved), Level::Fail);
    }

    #[test]
    fn transport_branches() {
        let l = |f: AddrFacts| level(check_transport(&f));
        assert_eq!(
            l(addr("https://h:8787", &["203.0.113.9"], None)),
            Level::Pass
        );
        assert_eq!(
            l(addr("http://127.0.0.1:8787", &["127.0.0.1"], None)),
            Level::Pass
        );
        assert_eq!(
            l(on_tailscale(
                addr("http://h:8787", &["100.100.1.2"], None),
                &["100.100.1.2"]
            )),
            Level::Pass
        );
        // Plain HTTP to CGNAT space is not WireGuard-encrypted just by its range.
        assert_eq!(
            l(addr("http://h:8787", &["100.100.1.2"], None)),
            Level::Warn
        );
        assert_eq!(
            l(addr("http://h:8787", &["192.168.1.5"], None)),
            Level::Fail
        );
        assert_eq!(
            l(addr("http://h:8787", &["203.0.113.9"], None)),
            Level::Fail
        );
        let mut unresolved = addr("http://nowhere", &[], None);
        unresolved.resolved = Err("x".into());
        assert_eq!(l(unresolved), Level::Fail);
    }

    #[test]
    fn tailscale_interfaces_are_read() {
        let ip = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
3: tailscale0    inet 100.101.1.2/32 scope global tailscale0\\       valid_lft forever
3: tailscale0    inet6 fd7a:115c:a1e0::1/128 scope global \\       valid_lft forever
4: eth0@if9    inet 100.64.0.7/10 brd 100.127.255.255 scope global eth0
";
        let want: Vec<IpAddr> = vec![
            "100.101.1.2".parse().unwrap(),
            "fd7a:115c:a1e0::1".parse().unwrap(),
        ];
        assert_eq!(parse_ip_addr(ip), want);
        let proc = "00000000000000000000000000000001 01 80 10 80       lo
fd7a115ca1e000000000000000000001 03 80 00 80 tailscale0
fd7a115ca1e000000000000000000002 04 80 00 80     eth0
";
        assert_eq!(
            parse_if_inet6(proc),
            vec!["fd7a:115c:a1e0::1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn env_file_branches_and_parsing() {
        assert_eq!(check_env_file(&EnvFileFacts::Absent), None);
        let p = PathBuf::from("/etc/ironclaw/ironclaw.env");
        let l = |f: EnvFileFacts| level(check_env_file(&f).unwrap());
        assert_eq!(l(EnvFileFacts::Missing(p.clone())), Level::Fail);
        assert_eq!(
            l(EnvFileFacts::Unreadable(p.clone(), "EACCES".into())),
            Level::Warn
        );
        let present = |mode, uid| EnvFileFacts::Present {
            path: p.clone(),
            facts: PathFacts {
                mode,
                uid,
                is_dir: false,
                is_file: true,
                is_symlink: false,
                len: 10,
            },
            names: vec![],
        };
        assert_eq!(l(present(0o644, 0)), Level::Fail);
        assert_eq!(l(present(0o600, 1000)), Level::Warn);
        assert_eq!(l(present(0o600, 0)), Level::Pass);

        let (names, bind) = parse_env_file(
            "# comment\nANTHROPIC_API_KEY=sk-secret\nexport OPENAI_API_KEY=\"\"\nIRONCLAW_API_ADDR='100.70.0.1:8787'\nnot a line\n",
        );
        assert_eq!(names, ["ANTHROPIC_API_KEY", "IRONCLAW_API_ADDR"]);
        assert_eq!(bind.as_deref(), Some("100.70.0.1:8787"));
        assert!(!format!("{names:?}").contains("sk-secret"));
    }

    #[test]
    fn provider_branches() {
        let l = |daemon: Option<&[&str]>, configured: &[&str]| {
            level(check_provider(&ProviderFacts {
                daemon: daemon.map(|d| d.iter().map(|s| (*s).to_owned()).collect()),
                configured: configured.iter().map(|s| (*s).to_owned()).collect(),
            }))
        };
        assert_eq!(l(Some(&["anthropic", "mock"]), &[]), Level::Pass);
        assert_eq!(l(Some(&["mock"]), &["ANTHROPIC_API_KEY"]), Level::Warn);
        assert_eq!(l(Some(&[]), &["ANTHROPIC_API_KEY"]), Level::Fail);
        assert_eq!(l(None, &["ANTHROPIC_API_KEY"]), Level::Pass);
        assert_eq!(l(None, &[]), Level::Fail);
    }

    #[test]
    fn image_branches() {
        assert_eq!(level(check_image(None)), Level::Fail);
        let l = |v: Value| level(check_image(Some(&v)));
        assert_eq!(
            l(json!({"ready": false, "not_ready_reason": "sessions cannot run: image"})),
            Level::Fail
        );
        assert_eq!(l(json!({"ready": true, "runtime": "runsc"})), Level::Pass);
        assert_eq!(
            l(json!({"ready": true, "runtime": "unsandboxed"})),
            Level::Warn
        );
        assert_eq!(l(json!({"ready": true, "runtime": null})), Level::Warn);
        assert_eq!(l(json!({"ready": true, "runtime": "kata"})), Level::Warn);
    }

    #[test]
    fn audit_branches() {
        let l = |f: AuditFacts| level(check_audit(&f));
        assert_eq!(
            l(AuditFacts::Daemon(
                json!({"ok": true, "records": 5, "last_seq": 5})
            )),
            Level::Pass
        );
        assert_eq!(
            l(AuditFacts::Daemon(
                json!({"ok": false, "error": "seq 3: hash mismatch"})
            )),
            Level::Fail
        );
        let p = PathBuf::from("/var/lib/ironclaw/audit.jsonl");
        assert_eq!(l(AuditFacts::Offline(p.clone(), Ok((5, 5)))), Level::Pass);
        assert_eq!(
            l(AuditFacts::Offline(p, Err("seq 3: bad".into()))),
            Level::Fail
        );
        assert_eq!(l(AuditFacts::Unknown), Level::Fail);
    }

    #[test]
    fn clock_branches() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |offset: i64| {
            let t = if offset >= 0 {
                now + Duration::from_secs(offset as u64)
            } else {
                now - Duration::from_secs((-offset) as u64)
            };
            ClockFacts::Observed {
                date: Some(httpdate::fmt_http_date(t)),
                before: now,
                after: now + Duration::from_millis(20),
            }
        };
        let l = |f: ClockFacts| level(check_clock(&f));
        assert_eq!(l(at(0)), Level::Pass);
        assert_eq!(l(at(1)), Level::Pass);
        assert_eq!(l(at(-30)), Level::Pass);
        assert_eq!(l(at(90)), Level::Warn);
        assert_eq!(l(at(-90)), Level::Warn);
        assert_eq!(l(at(400)), Level::Fail);
        assert_eq!(l(at(-400)), Level::Fail);
        assert_eq!(
            l(ClockFacts::Observed {
                date: None,
                before: now,
                after: now
            }),
            Level::Warn
        );
        assert_eq!(
            l(ClockFacts::Observed {
                date: Some("yesterday".into()),
                before: now,
                after: now
            }),
            Level::Warn
        );
        assert_eq!(l(ClockFacts::Unknown), Level::Fail);
    }

    #[test]
    fn skew_discounts_the_measurement_blur() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let t1 = t0 + Duration::from_secs(4);
        // The request took 4 s: a Date 3 s after its midpoint is within the blur.
        assert_eq!(
            clock_skew(t0 + Duration::from_secs(5), t0, t1),
            Duration::ZERO
        );
        assert_eq!(
            clock_skew(t0 + Duration::from_secs(100), t0, t1),
            Duration::from_secs(95)
        );
    }
}
