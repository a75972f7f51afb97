//! The sandbox's seccomp profile: deny by default (`EPERM`), allow only what the agent —
//! a static Rust binary using std, threads, unix sockets and SQLite (SQLCipher) — needs.
//!
//! What this module is for: the allowlist with the reason for every entry, and the list
//! of syscalls that must never be allowed (enforced by [`crate::spec::validate`]).
//! Not for: gVisor's own host-side filter (runsc installs that on the sentry itself).
//!
//! Where it applies: runsc loads this filter *inside* the sandbox — gVisor checks the
//! agent's syscalls to the gVisor kernel against it — only when started with
//! `--oci-seccomp`, which the isolator always passes. It is a second wall behind gVisor
//! itself: it shrinks the sentry surface an exploit in the agent can reach.
//!
//! How the list was made: measured, not guessed. `ironclaw-sandbox` was run under
//! `runsc --strace` through a full turn (startup checks, SQLCipher inbound read and
//! outbound commits, mock model calls over the proxy socket, heartbeat, workspace tools
//! offered, SIGTERM) and every syscall it issued is here (marked "measured"); the few
//! others name the code path that needs them. It then ran the same turn under this
//! profile with no refusal, and the live tests run the containment probe under it.
//! Anything else fails with `EPERM`, notably: `execve` (the agent never starts another
//! program; gVisor starts the agent itself, without an `execve` through this filter),
//! `bind`/`listen`/`accept` (the agent never serves), `ioctl` (std uses it only for
//! `isatty`, which then answers "not a terminal"), `prctl`, `tgkill` (a `panic = abort`
//! still ends the process), `mount`, `ptrace`, and every socket family but `AF_UNIX`.
//!
//! Only x86_64 is listed: the architecture the static agent is built and the list
//! measured for; a syscall through another ABI (x32, i386) is refused.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};
use oci_spec::OciSpecError;

/// One allowlist entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    pub name: &'static str,
    /// `Some((index, value))`: allowed only when argument `index` equals `value`.
    pub only_if_arg: Option<(usize, u64)>,
    /// Why the agent needs it.
    pub why: &'static str,
}

const fn any(name: &'static str, why: &'static str) -> Allowed {
    Allowed {
        name,
        only_if_arg: None,
        why,
    }
}

const fn arg(name: &'static str, index: usize, value: u64, why: &'static str) -> Allowed {
    Allowed {
        name,
        only_if_arg: Some((index, value)),
        why,
    }
}

const AF_UNIX: u64 = 1;

/// The allowlist, in profile order. "measured" = issued by `ironclaw-sandbox` (SQLCipher
/// queues, mock model calls over the proxy socket, heartbeat, SIGTERM) under
/// `runsc --strace`; the others name the code path that needs them.
pub const ALLOWLIST: &[Allowed] = &[
    // --- file I/O (queue files, key file, heartbeat, workspace, stdio)
    any("read", "measured: files, sockets"),
    any("write", "measured: files, sockets, stderr"),
    any("openat", "measured: glibc opens every file with openat"),
    any("close", "measured"),
    any("pread64", "measured: SQLite page reads"),
    any("pwrite64", "measured: SQLite page and journal writes"),
    any("fcntl", "measured: SQLite record locks, FD_CLOEXEC"),
    any("fsync", "measured: SQLite commits; std sync_all"),
    any(
        "ftruncate",
        "SQLite rollback shrinks a file a failed transaction grew; std set_len",
    ),
    // --- metadata and names
    any("newfstatat", "measured: stat/fstat/lstat (SQLite, std metadata, canonicalize)"),
    any("statx", "measured: std metadata tries statx first"),
    any("readlink", "measured: SQLite and canonicalize resolve symlinks"),
    any("getdents64", "workspace tool list_dir (read_dir)"),
    any("mkdir", "workspace tool write_file creates parent directories"),
    any("unlink", "measured: SQLite deletes its rollback journal"),
    any("rename", "measured: heartbeat and workspace writes replace atomically"),
    // --- memory
    any("brk", "measured: glibc malloc"),
    any("mmap", "measured: malloc arenas, thread stacks"),
    any("munmap", "measured"),
    any("mprotect", "measured: stack guard pages, RELRO"),
    any("madvise", "measured: glibc releases a finished thread's stack"),
    any("mlock", "measured: SQLCipher pins key material"),
    any("munlock", "measured: SQLCipher unpins key material"),
    // --- threads
    any("clone", "measured: thread creation"),
    any(
        "clone3",
        "measured: thread creation on glibc >= 2.34 (it falls back to clone only on ENOSYS)",
    ),
    any("futex", "measured: mutexes, condvars, join"),
    any("set_robust_list", "measured: glibc, per thread"),
    any("set_tid_address", "measured: glibc startup"),
    any("rseq", "measured: glibc registers restartable sequences per thread"),
    any("sched_getaffinity", "measured: std available_parallelism"),
    any("gettid", "measured"),
    any("getpid", "measured: SQLite fork detection"),
    any("arch_prctl", "measured: static glibc sets the TLS pointer"),
    arg(
        "prlimit64",
        2,
        0,
        "measured (new_limit == NULL only: reading, never raising, a limit): std reads RLIMIT_STACK",
    ),
    // --- signals
    any("rt_sigaction", "measured: SIGTERM handler, std's stack-overflow handler"),
    any("rt_sigprocmask", "measured: glibc masks signals around thread creation"),
    any("rt_sigreturn", "measured: return from the SIGTERM handler"),
    any("sigaltstack", "measured: std's stack-overflow handler stack"),
    any(
        "restart_syscall",
        "a sleep interrupted by a signal is resumed with it; EPERM would make std's sleep panic",
    ),
    // --- time and randomness
    any("clock_gettime", "measured: Instant, SystemTime"),
    any("clock_nanosleep", "measured: thread::sleep, SQLite busy waits"),
    any("getrandom", "measured: HashMap keys, SQLCipher salts and IVs"),
    // --- unix sockets to the host: connect only
    arg(
        "socket",
        0,
        AF_UNIX,
        "measured (AF_UNIX only): model proxy and doorbell; no other family exists here",
    ),
    any("connect", "measured: model.sock, doorbell.sock"),
    any("sendto", "measured: socket writes"),
    any("recvfrom", "measured: socket reads"),
    any("setsockopt", "measured: socket read/write timeouts"),
    any("poll", "measured: std checks fds 0-2 at startup"),
    // --- identity (read-only)
    any("geteuid", "measured: SQLite (fchown only as root)"),
    // --- exit
    any("exit", "measured: thread exit"),
    any("exit_group", "measured: process exit"),
];

/// Syscalls that give a way out of (or a lever against) the sandbox. The validator
/// refuses any profile that allows one of them, whatever else it says.
pub const NEVER_ALLOWED: &[&str] = &[
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "setns",
    "unshare",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "bpf",
    "perf_event_open",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "io_uring_setup",
    "open_by_handle_at",
    "name_to_handle_at",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setgroups",
    "capset",
    "execve",
    "execveat",
    "bind",
    "listen",
    "accept",
    "accept4",
    "seccomp",
];

/// The profile as it goes into `linux.seccomp`: default `SCMP_ACT_ERRNO` (EPERM), one
/// rule allowing every unconditional entry, then one rule per argument-filtered entry.
pub fn profile() -> Result<LinuxSeccomp, OciSpecError> {
    let mut rules = Vec::new();
    let plain: Vec<String> = ALLOWLIST
        .iter()
        .filter(|a| a.only_if_arg.is_none())
        .map(|a| a.name.to_owned())
        .collect();
    rules.push(rule(plain, None)?);
    for a in ALLOWLIST {
        if let Some((index, value)) = a.only_if_arg {
            rules.push(rule(vec![a.name.to_owned()], Some((index, value)))?);
        }
    }

    let mut s = LinuxSeccomp::default();
    s.set_default_action(LinuxSeccompAction::ScmpActErrno);
    // EPERM (1), stated rather than left to the runtime's convention.
    s.set_default_errno_ret(Some(1));
    s.set_architectures(Some(vec![Arch::ScmpArchX86_64]));
    s.set_flags(None);
    s.set_listener_path(None);
    s.set_listener_metadata(None);
    s.set_syscalls(Some(rules));
    Ok(s)
}

fn rule(names: Vec<String>, only_if: Option<(usize, u64)>) -> Result<LinuxSyscall, OciSpecError> {
    let mut r = LinuxSyscall::default();
    r.set_names(names);
    r.set_action(LinuxSeccompAction::ScmpActAllow);
    r.set_errno_ret(None);
    let args = match only_if {
        // Every field of the argument condition is given; `valueTwo` is only read by
        // SCMP_CMP_MASKED_EQ, which is not used.
        Some((index, value)) => Some(vec![LinuxSeccompArgBuilder::default()
            .index(index)
            .value(value)
            .op(LinuxSeccompOperator::ScmpCmpEq)
            .build()?]),
        None => None,
    };
    r.set_args(args);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_entry_says_why_and_none_is_forbidden() {
        for a in ALLOWLIST {
            assert!(!a.why.is_empty(), "{}", a.name);
            assert!(!NEVER_ALLOWED.contains(&a.name), "{}", a.name);
        }
    }

    #[test]
    fn unconditional_entries_are_unique() {
        let mut seen = HashSet::new();
        for a in ALLOWLIST.iter().filter(|a| a.only_if_arg.is_none()) {
            assert!(seen.insert(a.name), "{} listed twice", a.name);
        }
        // A name allowed unconditionally must not also be listed with a condition
        // (the condition would be meaningless).
        for a in ALLOWLIST.iter().filter(|a| a.only_if_arg.is_some()) {
            assert!(
                !seen.contains(a.name),
                "{} is both filtered and not",
                a.name
            );
        }
    }

    #[test]
    fn the_documentation_lists_every_allowed_syscall() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/isolation.md"),
        )
        .unwrap();
        let words: HashSet<&str> = doc
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        for a in ALLOWLIST {
            assert!(
                words.contains(a.name),
                "docs/isolation.md does not name {}",
                a.name
            );
        }
    }

    #[test]
    fn the_profile_denies_by_default_with_eperm() {
        let p = profile().unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        let socket = p
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r.names() == &["socket".to_owned()])
            .unwrap();
        let args = socket.args().as_ref().unwrap();
        assert_eq!((args[0].index(), args[0].value()), (0, AF_UNIX));
    }
}
