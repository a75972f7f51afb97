//! The sandbox runtime on this host: `runsc` present and able to start a sandbox
//! (`runsc --network=none do true`), and the cgroup controllers (memory, cpu, pids) its
//! limits need.
//!
//! Not for: the daemon's own view of its runtime (`sandbox image`, [`super::daemon`]).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::finding::{fail, pass, warn, Check};
use super::probe::{find_on_path, run_with_timeout};

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

pub(super) fn probe_runsc(runtime: &str) -> RunscFacts {
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

pub(super) fn probe_cgroups() -> CgroupFacts {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::level;
    use crate::doctor::finding::Level;

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
}
