//! Containment probe: a test-only program that `ironclaw-isolation`'s live tests run as
//! the agent inside a real runsc sandbox. It checks, from the inside, what the OCI spec
//! and the runsc flags are supposed to guarantee, and writes one JSON line per check:
//!
//! ```text
//! {"check":"caps_empty","ok":true,"detail":"CapEff=0000000000000000 ..."}
//! ```
//!
//! It depends on `std` only, so it links statically (`-C target-feature=+crt-static`)
//! and runs as the only file of a rootfs. It never decides whether a *test* passes: it
//! reports what it observed, and the test asserts. Every check is written so that it can
//! fail — the live tests include negative controls (a spec or runsc invocation with one
//! guard relaxed) that must turn the matching check red.
//!
//! Not for: production. The real agent is `ironclaw-sandbox`.
//!
//! Usage (arguments are `key=value`, repeatable):
//!
//! ```text
//! ironclaw-isolation-probe report out=FILE [ro=DIR]... [rw=DIR]... [read=FILE]...
//!                                [sock=PATH]... [uid=N] [gid=N] [nofile=N]
//! ironclaw-isolation-probe sleep | sleep-ignore-term | show FILE...
//! ```
//!
//! `report` writes to `out` (inside a read-write mount) and to stdout. `sleep` sleeps
//! until a signal ends it (SIGTERM does: gVisor delivers a host-sent SIGTERM to PID 1
//! with its default action); `sleep-ignore-term` first sets SIGTERM to ignored, so only
//! SIGKILL ends it — what the isolator's stop escalation is tested against. `show`
//! prints files (a debugging aid).

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// One observation.
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

#[derive(Default)]
struct Args {
    out: Option<String>,
    ro: Vec<String>,
    rw: Vec<String>,
    read: Vec<String>,
    sock: Vec<String>,
    uid: Option<String>,
    gid: Option<String>,
    nofile: Option<String>,
}

fn parse_args(rest: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    for arg in rest {
        let (k, v) = arg
            .split_once('=')
            .ok_or_else(|| format!("argument {arg:?} is not key=value"))?;
        let v = v.to_owned();
        match k {
            "out" => a.out = Some(v),
            "ro" => a.ro.push(v),
            "rw" => a.rw.push(v),
            "read" => a.read.push(v),
            "sock" => a.sock.push(v),
            "uid" => a.uid = Some(v),
            "gid" => a.gid = Some(v),
            "nofile" => a.nofile = Some(v),
            _ => return Err(format!("unknown key {k:?}")),
        }
    }
    Ok(a)
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("sleep") => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        Some("sleep-ignore-term") => {
            let r = raw::ignore_sigterm();
            if r != 0 {
                eprintln!("probe: rt_sigaction(SIGTERM, SIG_IGN) = {r}");
                std::process::exit(4);
            }
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Some("show") => {
            for path in &argv[2..] {
                match fs::read_to_string(path) {
                    Ok(t) => println!("== {path}\n{t}"),
                    Err(e) => println!("== {path}: {e}"),
                }
            }
        }
        Some("report") => match parse_args(&argv[2..]) {
            Ok(args) => std::process::exit(report(&args)),
            Err(e) => {
                eprintln!("probe: {e}");
                std::process::exit(2);
            }
        },
        _ => {
            eprintln!("usage: ironclaw-isolation-probe report out=FILE ... | sleep");
            std::process::exit(2);
        }
    }
}

fn report(args: &Args) -> i32 {
    let mut checks = Vec::new();
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "<absent>".to_owned())
    };

    // Identity: every uid/gid slot (real, effective, saved, fs) is the configured
    // non-root user.
    let want_uid = args.uid.clone().unwrap_or_else(|| "65532".to_owned());
    let want_gid = args.gid.clone().unwrap_or_else(|| "65532".to_owned());
    let uid = field("Uid");
    let gid = field("Gid");
    checks.push(Check {
        name: "uid_nonroot".into(),
        ok: uid.split(' ').all(|u| u == want_uid) && uid.split(' ').count() == 4,
        detail: format!("Uid: {uid}"),
    });
    checks.push(Check {
        name: "gid_nonroot".into(),
        ok: gid.split(' ').all(|g| g == want_gid) && gid.split(' ').count() == 4,
        detail: format!("Gid: {gid}"),
    });

    // Capabilities: all five sets empty.
    let caps: Vec<(String, String)> = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .iter()
        .map(|c| (c.to_string(), field(c)))
        .collect();
    // gVisor's /proc/self/status has no CapAmb line (the ambient set is empty by
    // construction there); the other four must be present and zero.
    checks.push(Check {
        name: "caps_empty".into(),
        ok: caps.iter().all(|(k, v)| {
            (k == "CapAmb" && v == "<absent>") || (!v.is_empty() && v.chars().all(|c| c == '0'))
        }),
        detail: caps
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
    });

    // gVisor's /proc/self/status has no NoNewPrivs line, and prctl(PR_GET_NO_NEW_PRIVS)
    // is outside the seccomp allowlist, so the flag is checked from the spec side; here
    // the refusal of prctl itself is a seccomp check.
    let r = raw::prctl_get_no_new_privs();
    checks.push(Check {
        name: "seccomp_denies_prctl".into(),
        ok: r == -1,
        detail: format!("prctl(PR_GET_NO_NEW_PRIVS) = {r} (-1 is EPERM)"),
    });
    let seccomp = field("Seccomp");
    checks.push(Check {
        name: "seccomp_filter_mode".into(),
        ok: seccomp == "2",
        detail: format!("Seccomp: {seccomp}"),
    });

    // PID namespace: the agent is PID 1 of its own namespace.
    let pid = std::process::id();
    checks.push(Check {
        name: "pid_namespace".into(),
        ok: pid == 1,
        detail: format!("pid={pid}"),
    });

    // Network: no interface but loopback, seen two ways.
    let (ok, detail) = only_loopback_proc_net_dev();
    checks.push(Check {
        name: "net_only_lo_proc".into(),
        ok,
        detail,
    });
    let (ok, detail) = only_loopback_sys_class_net();
    checks.push(Check {
        name: "net_only_lo_sys".into(),
        ok,
        detail,
    });

    // Seccomp: an AF_INET socket is refused by the filter (socket() is allowed for
    // AF_UNIX only). Binding to loopback sends no traffic anywhere.
    let r = std::net::UdpSocket::bind("127.0.0.1:0");
    checks.push(Check {
        name: "seccomp_denies_inet_socket".into(),
        ok: matches!(&r, Err(e) if e.raw_os_error() == Some(1)),
        detail: describe(&r.map(|_| ())),
    });

    // Read-only root file system. The test makes the rootfs directory writable by the
    // sandbox user, so only `root.readonly` stands between the agent and this write.
    let r = fs::write("/probe-root-write", b"x");
    checks.push(Check {
        name: "rootfs_readonly".into(),
        ok: r.is_err(),
        detail: describe(&r),
    });

    // Environment: PATH from the spec, and HOME=/ which runsc adds when the spec has
    // none. Nothing else — in particular nothing secret.
    let env: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    checks.push(Check {
        name: "env_minimal".into(),
        ok: env
            .iter()
            .all(|(k, v)| k == "PATH" || (k == "HOME" && v == "/"))
            && env.iter().any(|(k, _)| k == "PATH"),
        detail: format!(
            "vars={:?}",
            env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()
        ),
    });

    // rlimits, read with prlimit64 (gVisor has no /proc/self/limits).
    let nofile = args.nofile.clone().unwrap_or_else(|| "1024".to_owned());
    let got = raw::getrlimit(raw::RLIMIT_NOFILE);
    checks.push(Check {
        name: "rlimit_nofile".into(),
        ok: got.map(|(s, h)| format!("{s} {h}")) == Some(format!("{nofile} {nofile}")),
        detail: format!("NOFILE (soft, hard) = {got:?}"),
    });
    let got = raw::getrlimit(raw::RLIMIT_CORE);
    checks.push(Check {
        name: "rlimit_core_zero".into(),
        ok: got == Some((0, 0)),
        detail: format!("CORE (soft, hard) = {got:?}"),
    });

    // /dev is gVisor's: the usual character devices work.
    let r = fs::write("/dev/null", b"x").and_then(|_| {
        let mut b = [0u8; 8];
        fs::File::open("/dev/urandom")?.read_exact(&mut b)
    });
    checks.push(Check {
        name: "dev_null_urandom".into(),
        ok: r.is_ok(),
        detail: describe(&r),
    });

    // Threads: what the agent's runtime needs (clone3, futex, robust lists, rseq).
    let r = std::thread::spawn(|| (0..1000u64).sum::<u64>()).join();
    checks.push(Check {
        name: "threads_work".into(),
        ok: matches!(r, Ok(499_500)),
        detail: format!("{r:?}"),
    });

    // Nothing of the host's file system is visible.
    let present: Vec<&str> = [
        "/etc/shadow",
        "/etc/passwd",
        "/home",
        "/var",
        "/root",
        "/usr",
    ]
    .into_iter()
    .filter(|p| Path::new(p).exists())
    .collect();
    checks.push(Check {
        name: "no_host_files".into(),
        ok: present.is_empty(),
        detail: format!("present={present:?}"),
    });

    // Kernel internals the spec masks: absent or empty. (runsc 20221219 does not apply
    // `maskedPaths`; gVisor's synthetic /proc and /sys simply have nothing there.)
    let exposed: Vec<&str> = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/latency_stats",
        "/sys/firmware",
    ]
    .into_iter()
    .filter(|p| match fs::metadata(p) {
        Ok(m) if m.is_dir() => fs::read_dir(p).is_ok_and(|mut d| d.next().is_some()),
        Ok(m) => m.len() > 0,
        Err(_) => false,
    })
    .collect();
    checks.push(Check {
        name: "kernel_internals_hidden".into(),
        ok: exposed.is_empty(),
        detail: format!("exposed={exposed:?}"),
    });

    // /tmp is a writable tmpfs.
    let r = fs::write("/tmp/probe", b"x").and_then(|_| fs::remove_file("/tmp/probe"));
    checks.push(Check {
        name: "tmp_writable".into(),
        ok: r.is_ok(),
        detail: describe(&r),
    });

    for dir in &args.ro {
        let r = fs::write(Path::new(dir).join("probe-write"), b"x");
        checks.push(Check {
            name: format!("ro_refuses_write:{dir}"),
            ok: r.is_err(),
            detail: describe(&r),
        });
    }
    for dir in &args.rw {
        let r = rw_cycle(Path::new(dir));
        checks.push(Check {
            name: format!("rw_allows_write:{dir}"),
            ok: r.is_ok(),
            detail: describe(&r),
        });
    }
    for file in &args.read {
        let r = fs::read(file);
        checks.push(Check {
            name: format!("readable:{file}"),
            ok: r.is_ok(),
            detail: match &r {
                Ok(b) => format!("{} bytes", b.len()),
                Err(e) => e.to_string(),
            },
        });
    }
    for sock in &args.sock {
        let r = ping(sock);
        checks.push(Check {
            name: format!("socket_reachable:{sock}"),
            ok: matches!(&r, Ok(reply) if reply == "pong"),
            detail: match &r {
                Ok(reply) => format!("reply={reply:?}"),
                Err(e) => e.to_string(),
            },
        });
    }

    // A syscall outside the allowlist entirely: linkat (hard links are never needed
    // by the agent). Done in the first rw directory, where the sandbox user could
    // otherwise create it.
    if let Some(dir) = args.rw.first() {
        let src = Path::new(dir).join("probe-link-src");
        let dst = Path::new(dir).join("probe-link-dst");
        let r = fs::write(&src, b"x").and_then(|_| fs::hard_link(&src, &dst));
        let _ = fs::remove_file(&dst);
        let _ = fs::remove_file(&src);
        checks.push(Check {
            name: "seccomp_denies_linkat".into(),
            ok: matches!(&r, Err(e) if e.raw_os_error() == Some(1)),
            detail: describe(&r),
        });
    }

    let mut out = String::new();
    for c in &checks {
        let _ = writeln!(
            out,
            "{{\"check\":{},\"ok\":{},\"detail\":{}}}",
            json_str(&c.name),
            c.ok,
            json_str(&c.detail)
        );
    }
    print!("{out}");
    let _ = io::stdout().flush();
    if let Some(path) = &args.out {
        if let Err(e) = write_report(Path::new(path), &out) {
            eprintln!("probe: write report {path}: {e}");
            return 3;
        }
    }
    // On stderr, which the isolator keeps a bounded tail of for diagnostics.
    eprintln!("probe: report done ({} checks)", checks.len());
    0
}

/// What SQLite's rollback journal does in the outbound directory: create, write, fsync,
/// rename, truncate, unlink.
fn rw_cycle(dir: &Path) -> io::Result<()> {
    let a = dir.join("probe-rw");
    let b = dir.join("probe-rw-renamed");
    let mut f = fs::File::create(&a)?;
    f.write_all(b"probe")?;
    f.sync_all()?;
    f.set_len(2)?;
    drop(f);
    fs::rename(&a, &b)?;
    fs::remove_file(&b)
}

fn write_report(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// Sends `ping\n` to a host listener and returns its trimmed reply.
fn ping(path: &str) -> io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"ping\n")?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
}

fn only_loopback_proc_net_dev() -> (bool, String) {
    match fs::read_to_string("/proc/net/dev") {
        // Two header lines, then `  name: counters...`.
        Ok(text) => {
            let names: Vec<String> = text
                .lines()
                .skip(2)
                .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_owned()))
                .collect();
            (names == ["lo"], format!("interfaces={names:?}"))
        }
        Err(e) => (false, format!("/proc/net/dev: {e}")),
    }
}

fn only_loopback_sys_class_net() -> (bool, String) {
    match fs::read_dir("/sys/class/net") {
        Ok(rd) => {
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            (
                names.iter().all(|n| n == "lo"),
                format!("interfaces={names:?}"),
            )
        }
        // No sysfs is mounted in the sandbox: nothing to see there.
        Err(e) if e.kind() == io::ErrorKind::NotFound => (true, "no /sys/class/net".into()),
        Err(e) => (false, format!("/sys/class/net: {e}")),
    }
}

fn describe(r: &io::Result<()>) -> String {
    match r {
        Ok(()) => "succeeded".to_owned(),
        Err(e) => format!("failed: {e}"),
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The two syscalls std does not wrap. Test-only code: the numbers are x86_64's, the
/// only architecture the probe (like the seccomp profile) is built for.
#[allow(unsafe_code)]
mod raw {
    pub const RLIMIT_CORE: usize = 4;
    pub const RLIMIT_NOFILE: usize = 7;
    const SYS_RT_SIGACTION: usize = 13;
    const SYS_PRCTL: usize = 157;
    const SYS_PRLIMIT64: usize = 302;
    const PR_GET_NO_NEW_PRIVS: usize = 39;

    #[cfg(target_arch = "x86_64")]
    fn syscall4(n: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> isize {
        let ret: isize;
        // SAFETY: a raw Linux syscall. The callers pass, besides integers, only pointers
        // to live locals of the size the kernel reads or writes: a writable [u64; 2]
        // (prlimit64's old_limit) and a readable 32-byte kernel_sigaction.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a1,
                in("rsi") a2,
                in("rdx") a3,
                in("r10") a4,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
        ret
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn syscall4(_: usize, _: usize, _: usize, _: usize, _: usize) -> isize {
        -38 // ENOSYS: not measured on other architectures.
    }

    /// prctl(PR_GET_NO_NEW_PRIVS): 0/1, or -errno (-1 = EPERM: refused by seccomp).
    pub fn prctl_get_no_new_privs() -> isize {
        syscall4(SYS_PRCTL, PR_GET_NO_NEW_PRIVS, 0, 0, 0)
    }

    /// rt_sigaction(SIGTERM, {SIG_IGN}, NULL, 8): 0 or -errno.
    pub fn ignore_sigterm() -> isize {
        // struct kernel_sigaction { handler, flags, restorer, mask } on x86_64.
        let act: [usize; 4] = [1 /* SIG_IGN */, 0, 0, 0];
        syscall4(SYS_RT_SIGACTION, 15, act.as_ptr() as usize, 0, 8)
    }

    /// (soft, hard) of `resource`, read without changing it.
    pub fn getrlimit(resource: usize) -> Option<(u64, u64)> {
        let mut out = [0u64; 2];
        let r = syscall4(SYS_PRLIMIT64, 0, resource, 0, out.as_mut_ptr() as usize);
        (r == 0).then_some((out[0], out[1]))
    }
}
