//! The hardened OCI runtime spec (`config.json`) every sandbox runs under, and the
//! validator that refuses any spec breaking an isolation invariant (DESIGN §2, §8).
//!
//! What this module is for: turning a [`SandboxRequest`] (which session, which rootfs,
//! which agent arguments, which limits) into a [`SandboxSpec`] — an `oci-spec` [`Spec`]
//! that has passed [`validate`] — and writing it to a bundle as `config.json`, mode 0600.
//!
//! What it is not for: running anything (that is [`crate::runsc`]), creating the host
//! directories it mounts (the session layer does that, owned by the mapped sandbox uid),
//! or deciding *which* paths exist (that is the contract's one table,
//! [`ironclaw_contract::paths`]; the spec mounts exactly [`HostLayout::session_mounts`]).
//!
//! Every field is set explicitly. `oci-spec`'s `Default` impls are *not* hardened (they
//! add capabilities, `TERM`, a cgroup namespace, `/sys/fs/cgroup`, a `youki` hostname…),
//! so no value here is left to them: each struct is started from `Default` and then every
//! one of its fields is overwritten, and the golden test (`tests/golden/config.json`)
//! pins the complete result.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_contract::paths::{sandbox, HostLayout, MountAccess, MountKind, SessionMount};
use oci_spec::runtime::{
    Capabilities, LinuxCapabilities, LinuxCpu, LinuxIdMapping, LinuxIdMappingBuilder, LinuxMemory,
    LinuxNamespace, LinuxNamespaceType, LinuxPids, LinuxResources, LinuxSeccompAction, Mount,
    PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User,
};
use oci_spec::OciSpecError;

use crate::container_id::ContainerId;
use crate::seccomp;

/// The runtime-spec version written. runsc on the supported hosts implements 1.0.2.
pub const OCI_VERSION: &str = "1.0.2";
/// The sandbox's hostname (its own UTS namespace; reveals nothing about the host).
pub const HOSTNAME: &str = "ironclaw-sandbox";
/// The agent's uid and gid inside the sandbox (distroless "nonroot").
pub const SANDBOX_UID: u32 = 65532;
/// See [`SANDBOX_UID`].
pub const SANDBOX_GID: u32 = 65532;
/// Size of the uid/gid range mapped into the user namespace. It covers container uid 0
/// (runsc refuses a mapping that leaves it unmapped: `RUNSC-NOTES.md`) and
/// [`SANDBOX_UID`].
pub const ID_MAP_SIZE: u32 = 65536;
/// Default first host uid/gid of the mapped range: container uid 0 is host uid 100000,
/// the agent (65532) is host uid 165532.
pub const DEFAULT_ID_MAP_BASE: u32 = 100_000;
/// The whole environment of the agent. Nothing else — in particular never a key or a
/// token: secrets reach the sandbox only as the 0400 key file (DESIGN §2.2).
pub const PATH_ENV: &str = "PATH=/usr/local/bin:/usr/bin:/bin";
/// Prefix of every sandbox's cgroup; the full path is `/ironclaw/<container-id>`.
pub const CGROUP_PARENT: &str = "/ironclaw";

/// Paths the runtime hides (a `/dev/null` or empty tmpfs over them). Measured: runsc
/// 20221219 does not apply `maskedPaths` (nor `readonlyPaths`), and gVisor's synthetic
/// `/proc` has none of these files in the first place (the live probe checks they are
/// absent). They stay as defence in depth for a runsc that does apply them, and so the
/// spec is never weaker than the usual runtime defaults.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Paths the runtime remounts read-only (see [`MASKED_PATHS`] on what runsc does with
/// them). In gVisor these are already not writable by the non-root agent.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The namespaces every sandbox gets, all new (no `path`: joining an existing namespace
/// would share it with whoever owns it). `network` is here on purpose: a path-less
/// network namespace is a new, empty one, and runsc is additionally run with
/// `--network=none` (DESIGN §2.1) — two independent guards.
pub const NAMESPACES: &[LinuxNamespaceType] = &[
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::User,
];

/// Resource limits of one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// cgroup memory limit, bytes.
    pub memory_bytes: i64,
    /// CPU bandwidth: `cpu_quota_us` of every `cpu_period_us` (100000/100000 = 1 CPU).
    pub cpu_quota_us: i64,
    pub cpu_period_us: u64,
    /// cgroup pids limit (threads count).
    pub pids: i64,
    /// `RLIMIT_NOFILE`, soft = hard.
    pub nofile: u64,
    /// Size of the `/tmp` tmpfs, bytes (it counts against the memory limit).
    pub tmp_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 * 1024 * 1024,
            cpu_quota_us: 100_000,
            cpu_period_us: 100_000,
            pids: 256,
            nofile: 1024,
            tmp_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Everything the builder needs to know about one sandbox.
#[derive(Debug, Clone)]
pub struct SandboxRequest {
    pub container_id: ContainerId,
    /// Absolute host path of the root file system (a directory holding the static agent).
    pub rootfs: PathBuf,
    /// `args[0]` is the absolute path of the agent binary *inside* the rootfs; the rest
    /// are its flags. Never put a secret here: args are visible in `config.json` and
    /// `/proc/<pid>/cmdline`.
    pub args: Vec<String>,
    /// The host layout, session and group whose row of the contract's mount table
    /// ([`HostLayout::session_mounts`]) is mounted.
    pub layout: HostLayout,
    pub session: SessionId,
    pub group: AgentGroupId,
    /// The session's model-proxy socket on the host.
    pub model_socket: PathBuf,
    pub limits: Limits,
    /// First host uid/gid of the mapped range (see [`DEFAULT_ID_MAP_BASE`]).
    pub id_map_base: u32,
}

impl SandboxRequest {
    /// The contract's mounts for this request, in mount order.
    pub fn session_mounts(&self) -> Vec<SessionMount> {
        self.layout
            .session_mounts(&self.session, &self.group, &self.model_socket)
    }
}

/// Why a request or a spec was refused. Every variant names the invariant it protects.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid sandbox request: {0}")]
    Request(String),
    #[error("spec has no {0} section")]
    Missing(&'static str),
    #[error("network namespace missing: the sandbox must get a new, empty one (DESIGN §2.1)")]
    NetworkNamespaceMissing,
    #[error("{kind} namespace missing")]
    NamespaceMissing { kind: String },
    #[error(
        "{kind} namespace joins an existing namespace at {path}; only new namespaces are allowed"
    )]
    NamespaceJoinsExisting { kind: String, path: PathBuf },
    #[error("unexpected {kind} namespace")]
    NamespaceUnexpected { kind: String },
    #[error("capability set {set} is missing or not empty; every set must be present and empty")]
    Capabilities { set: &'static str },
    #[error("the agent would run as {what} 0 (root)")]
    RootUser { what: &'static str },
    #[error("additional groups are not allowed: {0:?}")]
    AdditionalGroups(Vec<u32>),
    #[error("the root file system is writable; root.readonly must be true")]
    RootfsWritable,
    #[error("noNewPrivileges is not true")]
    NewPrivileges,
    #[error("a terminal is requested; the agent runs without one")]
    Terminal,
    #[error(
        "environment entry {0:?} is not allowed: the environment is PATH only (no secrets, ever)"
    )]
    Environment(String),
    #[error("process args: {0}")]
    Args(String),
    #[error("uid/gid mapping: {0}")]
    IdMapping(String),
    #[error("mount at {destination}: {reason}")]
    Mount { destination: String, reason: String },
    #[error("contract mount {destination} is missing from the spec")]
    MountMissing { destination: String },
    #[error("masked path {0} is missing")]
    MaskedPathMissing(&'static str),
    #[error("read-only path {0} is missing")]
    ReadonlyPathMissing(&'static str),
    #[error("resources: {0}")]
    Resources(String),
    #[error("rlimits: {0}")]
    Rlimits(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("hooks are not allowed (they run on the host, as root)")]
    Hooks,
    #[error("annotations are not allowed (runsc can read flag overrides from them)")]
    Annotations,
    #[error("linux.{0} must be empty")]
    NotEmpty(&'static str),
    #[error("the rootfs lacks the mount point {0} (runsc would try to create it in the host rootfs directory); create it when preparing the rootfs")]
    MountPointMissing(PathBuf),
    #[error("{path} is not reachable from the sandbox's gofer: {reason}")]
    HostPathUnreachable { path: PathBuf, reason: String },
    #[error("oci-spec refused a value: {0}")]
    Oci(#[from] OciSpecError),
    #[error("serialize spec: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A spec that has passed [`validate`]. The only way to get one is [`build`] (the
/// runsc isolator accepts nothing else), so holding one is proof it was checked.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    container_id: ContainerId,
    spec: Spec,
}

impl SandboxSpec {
    pub fn container_id(&self) -> &ContainerId {
        &self.container_id
    }

    /// The validated spec.
    pub fn oci(&self) -> &Spec {
        &self.spec
    }

    /// The spec as `config.json` text (pretty, stable field order): exactly the bytes
    /// [`write_config`](Self::write_config) writes, so a hash of it (for a launch
    /// receipt) is the hash of what runsc reads.
    pub fn to_json(&self) -> Result<String, SpecError> {
        Ok(serde_json::to_string_pretty(&self.spec)?)
    }

    /// Writes `<bundle_dir>/config.json`, created with mode 0600 (not chmod-ed after:
    /// there is no moment at which it is readable by others). Refuses to overwrite an
    /// existing file: every launch gets a fresh bundle directory.
    pub fn write_config(&self, bundle_dir: &Path) -> Result<PathBuf, SpecError> {
        let path = bundle_dir.join("config.json");
        let json = self.to_json()?;
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(json.as_bytes())?;
            f.sync_all()
        };
        write().map_err(|source| SpecError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

impl SandboxSpec {
    /// Host-side checks made just before `runsc create`, so that a mis-prepared host
    /// gets a precise error instead of runsc's "cannot read client sync file: EOF":
    ///
    /// - every bind mount's destination already exists in the rootfs (runsc's gofer
    ///   otherwise creates it *in the host rootfs directory*, which fails on a read-only
    ///   image, or silently modifies a writable one) and is not a symlink;
    /// - every bind source exists, and each of its ancestor directories can be traversed
    ///   by the gofer, which runs as the user namespace's root (host uid = the mapping
    ///   base): a directory owned by host root must have `o+x` (0711 is enough), one
    ///   owned by a mapped uid/gid is traversable through the namespace's capabilities;
    /// - every socket source can be connected to by that same user (owned by a mapped
    ///   uid/gid, or `o+w`).
    pub fn preflight(&self) -> Result<(), SpecError> {
        let rootfs = self
            .spec
            .root()
            .as_ref()
            .ok_or(SpecError::Missing("root"))?
            .path();
        let (base, size) = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.uid_mappings().as_ref())
            .and_then(|m| m.first())
            .map(|m| (m.host_id(), m.size()))
            .ok_or_else(|| SpecError::IdMapping("no uid mapping".into()))?;
        let mapped = |id: u32| id >= base && id - base < size;
        let unreachable = |path: &Path, reason: String| SpecError::HostPathUnreachable {
            path: path.to_owned(),
            reason,
        };
        for m in self.spec.mounts().as_deref().unwrap_or_default() {
            if m.typ().as_deref() != Some("bind") {
                continue;
            }
            let dest = m.destination();
            let inside = rootfs.join(dest.strip_prefix("/").unwrap_or(dest));
            match std::fs::symlink_metadata(&inside) {
                Ok(meta) if !meta.file_type().is_symlink() => {}
                _ => return Err(SpecError::MountPointMissing(dest.clone())),
            }
            let Some(source) = m.source() else {
                return Err(SpecError::Missing("mount source"));
            };
            let meta = std::fs::metadata(source)
                .map_err(|e| unreachable(source, format!("cannot stat: {e}")))?;
            if meta.file_type().is_socket()
                && !((mapped(meta.uid()) && mapped(meta.gid())) || meta.mode() & 0o002 != 0)
            {
                return Err(unreachable(
                    source,
                    format!(
                        "socket owned by {}:{} mode {:o}; chown it to the mapped range \
                         (e.g. {}) so the sandbox can connect",
                        meta.uid(),
                        meta.gid(),
                        meta.mode() & 0o7777,
                        base + SANDBOX_UID
                    ),
                ));
            }
            for dir in source.ancestors().skip(1) {
                if dir.as_os_str().is_empty() {
                    continue;
                }
                let meta = std::fs::metadata(dir)
                    .map_err(|e| unreachable(dir, format!("cannot stat: {e}")))?;
                let traversable = meta.mode() & 0o001 != 0
                    || (mapped(meta.uid()) && mapped(meta.gid()) && meta.mode() & 0o100 != 0);
                if !traversable {
                    return Err(unreachable(
                        dir,
                        format!(
                            "directory owned by {}:{} mode {:o} cannot be traversed by host uid \
                             {base} (the sandbox's root); give it o+x (0711)",
                            meta.uid(),
                            meta.gid(),
                            meta.mode() & 0o7777
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Creates, inside `rootfs`, the mount points of `table` that are missing: a directory
/// for a directory mount, an empty file for a socket mount (mode 0755 / 0644, owned by
/// whoever calls this — normally root). For whoever prepares a rootfs (the provisioner,
/// tests). Refuses to follow a symlink, so nothing is created outside `rootfs`.
pub fn create_mount_points(rootfs: &Path, table: &[SessionMount]) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    for row in table {
        let rel = Path::new(row.sandbox)
            .strip_prefix("/")
            .map_err(|_| Error::new(ErrorKind::InvalidInput, "relative sandbox path"))?;
        let mut at = rootfs.to_path_buf();
        let components: Vec<_> = rel.components().collect();
        for (i, c) in components.iter().enumerate() {
            at.push(c);
            let last = i + 1 == components.len();
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!("{} is a symlink", at.display()),
                    ))
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if last && row.kind == MountKind::Socket {
                        OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o644)
                            .open(&at)?;
                    } else {
                        std::fs::DirBuilder::new().mode(0o755).create(&at)?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Builds the spec for `req` field by field and validates it before returning.
pub fn build(req: &SandboxRequest) -> Result<SandboxSpec, SpecError> {
    check_request(req)?;
    let mounts = req.session_mounts();

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_owned());
    spec.set_root(Some(root(&req.rootfs)));
    spec.set_mounts(Some(oci_mounts(&mounts, &req.limits)));
    spec.set_process(Some(process(req)?));
    spec.set_hostname(Some(HOSTNAME.to_owned()));
    spec.set_domainname(None);
    spec.set_hooks(None);
    spec.set_annotations(None);
    spec.set_linux(Some(linux(req)?));
    spec.set_solaris(None);
    spec.set_windows(None);
    spec.set_vm(None);
    spec.set_zos(None);
    #[allow(deprecated)]
    {
        // Fields oci-spec carries on the top level by mistake (not in the runtime spec).
        spec.set_uid_mappings(None);
        spec.set_gid_mappings(None);
    }

    validate(&spec, &mounts)?;
    Ok(SandboxSpec {
        container_id: req.container_id.clone(),
        spec,
    })
}

fn check_request(req: &SandboxRequest) -> Result<(), SpecError> {
    let bad = |s: String| Err(SpecError::Request(s));
    if !req.rootfs.is_absolute() {
        return bad(format!(
            "rootfs {} is not an absolute path",
            req.rootfs.display()
        ));
    }
    if !req.model_socket.is_absolute() {
        return bad(format!(
            "model socket {} is not an absolute path",
            req.model_socket.display()
        ));
    }
    if !req.layout.state_dir().is_absolute() {
        return bad(format!(
            "state dir {} is not an absolute path",
            req.layout.state_dir().display()
        ));
    }
    let l = &req.limits;
    if l.memory_bytes <= 0
        || l.cpu_quota_us <= 0
        || l.cpu_period_us == 0
        || l.pids <= 0
        || l.nofile == 0
        || l.tmp_bytes == 0
    {
        return bad(format!("every limit must be positive: {l:?}"));
    }
    if req.id_map_base == 0 || req.id_map_base.checked_add(ID_MAP_SIZE).is_none() {
        return bad(format!(
            "uid/gid map base {} must be > 0 and leave room for {ID_MAP_SIZE} ids",
            req.id_map_base
        ));
    }
    Ok(())
}

fn root(rootfs: &Path) -> Root {
    let mut r = Root::default();
    r.set_path(rootfs.to_owned());
    r.set_readonly(Some(true));
    r
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn mount(destination: &str, typ: &str, source: &Path, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some(typ.to_owned()));
    m.set_source(Some(source.to_owned()));
    m.set_options(Some(options));
    m.set_uid_mappings(None);
    m.set_gid_mappings(None);
    m
}

/// Options of every bind mount from the contract table: no set-uid, no device nodes, no
/// executing anything from a host directory.
fn bind_options(access: MountAccess) -> Vec<String> {
    let rw = match access {
        MountAccess::ReadOnly => "ro",
        MountAccess::ReadWrite => "rw",
    };
    strings(&["bind", rw, "nosuid", "nodev", "noexec"])
}

fn oci_mounts(table: &[SessionMount], limits: &Limits) -> Vec<Mount> {
    let mut v = vec![
        // The sandbox's own procfs (gVisor's, synthetic; not the host's).
        mount(
            "/proc",
            "proc",
            Path::new("proc"),
            strings(&["nosuid", "noexec", "nodev"]),
        ),
        // gVisor serves /dev itself (a devtmpfs with null, zero, full, random, urandom,
        // tty, ptmx); no host device node is passed through and `linux.devices` is empty.
        mount(
            "/dev",
            "tmpfs",
            Path::new("tmpfs"),
            strings(&["nosuid", "noexec", "strictatime", "mode=755", "size=65536k"]),
        ),
        // Scratch space. Counts against the memory limit; nothing executes from it.
        mount(
            "/tmp",
            "tmpfs",
            Path::new("tmpfs"),
            vec![
                "nosuid".to_owned(),
                "nodev".to_owned(),
                "noexec".to_owned(),
                "mode=1777".to_owned(),
                format!("size={}", limits.tmp_bytes),
            ],
        ),
    ];
    // The contract's table, verbatim: directories and socket files alike are bind
    // mounts (a socket is connect-only under `--host-uds=open`).
    v.extend(
        table
            .iter()
            .map(|m| mount(m.sandbox, "bind", &m.host, bind_options(m.access))),
    );
    v
}

fn empty_caps() -> LinuxCapabilities {
    let none = || Some(Capabilities::from(HashSet::new()));
    let mut c = LinuxCapabilities::default();
    c.set_bounding(none());
    c.set_effective(none());
    c.set_inheritable(none());
    c.set_permitted(none());
    c.set_ambient(none());
    c
}

fn rlimit(typ: PosixRlimitType, value: u64) -> Result<PosixRlimit, OciSpecError> {
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(value)
        .hard(value)
        .build()
}

fn process(req: &SandboxRequest) -> Result<Process, OciSpecError> {
    let mut user = User::default();
    user.set_uid(SANDBOX_UID);
    user.set_gid(SANDBOX_GID);
    // Not set: runsc 20221219 ignores `user.umask` (measured: a file the agent created
    // was 0644). Privacy of what the agent writes comes from the host directories
    // (0700, owned by the agent's mapped uid) and SQLite copying the database's 0600.
    user.set_umask(None);
    user.set_additional_gids(Some(Vec::new()));
    user.set_username(None);

    let mut p = Process::default();
    p.set_terminal(Some(false));
    p.set_console_size(None);
    p.set_user(user);
    p.set_args(Some(req.args.clone()));
    p.set_command_line(None);
    p.set_env(Some(vec![PATH_ENV.to_owned()]));
    p.set_cwd(PathBuf::from(sandbox::WORKSPACE));
    p.set_capabilities(Some(empty_caps()));
    p.set_rlimits(Some(vec![
        rlimit(PosixRlimitType::RlimitNofile, req.limits.nofile)?,
        // No core dumps: a core of the agent would hold the session key.
        rlimit(PosixRlimitType::RlimitCore, 0)?,
    ]));
    p.set_no_new_privileges(Some(true));
    p.set_apparmor_profile(None);
    p.set_oom_score_adj(None);
    p.set_selinux_label(None);
    p.set_io_priority(None);
    p.set_scheduler(None);
    p.set_exec_cpu_affinity(None);
    Ok(p)
}

fn id_mapping(base: u32) -> Result<Vec<LinuxIdMapping>, OciSpecError> {
    Ok(vec![LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(base)
        .size(ID_MAP_SIZE)
        .build()?])
}

fn linux(req: &SandboxRequest) -> Result<oci_spec::runtime::Linux, OciSpecError> {
    let namespaces = NAMESPACES
        .iter()
        .map(|t| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(*t);
            ns.set_path(None);
            ns
        })
        .collect();

    let mut memory = LinuxMemory::default();
    memory.set_limit(Some(req.limits.memory_bytes));
    memory.set_reservation(None);
    memory.set_swap(None);
    memory.set_kernel(None);
    memory.set_kernel_tcp(None);
    memory.set_swappiness(None);
    memory.set_disable_oom_killer(None);
    memory.set_use_hierarchy(None);
    memory.set_check_before_update(None);

    let mut cpu = LinuxCpu::default();
    cpu.set_shares(None);
    cpu.set_quota(Some(req.limits.cpu_quota_us));
    cpu.set_idle(None);
    cpu.set_burst(None);
    cpu.set_period(Some(req.limits.cpu_period_us));
    cpu.set_realtime_runtime(None);
    cpu.set_realtime_period(None);
    cpu.set_cpus(None);
    cpu.set_mems(None);

    let mut pids = LinuxPids::default();
    pids.set_limit(req.limits.pids);

    let mut resources = LinuxResources::default();
    resources.set_devices(None);
    resources.set_memory(Some(memory));
    resources.set_cpu(Some(cpu));
    resources.set_pids(Some(pids));
    resources.set_block_io(None);
    resources.set_hugepage_limits(None);
    resources.set_network(None);
    resources.set_rdma(None);
    resources.set_unified(None);

    let mut l = oci_spec::runtime::Linux::default();
    l.set_net_devices(None);
    l.set_uid_mappings(Some(id_mapping(req.id_map_base)?));
    l.set_gid_mappings(Some(id_mapping(req.id_map_base)?));
    l.set_sysctl(None);
    l.set_resources(Some(resources));
    l.set_cgroups_path(Some(cgroups_path(&req.container_id)));
    l.set_namespaces(Some(namespaces));
    l.set_devices(Some(Vec::new()));
    l.set_seccomp(Some(seccomp::profile()?));
    l.set_rootfs_propagation(None);
    l.set_masked_paths(Some(strings(MASKED_PATHS)));
    l.set_readonly_paths(Some(strings(READONLY_PATHS)));
    l.set_mount_label(None);
    l.set_intel_rdt(None);
    l.set_memory_policy(None);
    l.set_personality(None);
    l.set_time_offsets(None);
    Ok(l)
}

/// `/ironclaw/<container-id>`: explicit, so the limits land where the operator can see
/// them and a missing cgroup controller fails the launch instead of being skipped.
pub fn cgroups_path(id: &ContainerId) -> PathBuf {
    Path::new(CGROUP_PARENT).join(id.as_str())
}

/// Refuses any spec that breaks an isolation invariant. `table` is the contract's mount
/// table for the session ([`SandboxRequest::session_mounts`]): the spec's bind mounts
/// must be exactly its rows, each with the table's access.
///
/// Checked: new pid/network/ipc/uts/mount/user namespaces (none joined, network
/// present); a uid/gid range mapping container uid 0 to a non-zero host uid and covering
/// the agent's uid; a non-root agent with every capability set present and empty,
/// `noNewPrivileges`, no terminal, PATH-only environment and an absolute `args[0]`;
/// a read-only rootfs; only `/proc`, `/dev`, `/tmp` besides the table's bind mounts, all
/// `nosuid`/`nodev` (and `noexec` where anything could be written); the masked and
/// read-only paths; memory, CPU and pids limits with an explicit cgroups path; NOFILE
/// and CORE=0 rlimits; a deny-by-default seccomp profile that allows none of
/// [`seccomp::NEVER_ALLOWED`]; no hooks, annotations, devices or sysctls.
pub fn validate(spec: &Spec, table: &[SessionMount]) -> Result<(), SpecError> {
    if spec.hooks().is_some() {
        return Err(SpecError::Hooks);
    }
    if spec.annotations().as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(SpecError::Annotations);
    }
    let root = spec.root().as_ref().ok_or(SpecError::Missing("root"))?;
    if root.readonly() != Some(true) {
        return Err(SpecError::RootfsWritable);
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or(SpecError::Missing("process"))?;
    let linux = spec.linux().as_ref().ok_or(SpecError::Missing("linux"))?;
    validate_process(process)?;
    validate_namespaces(linux)?;
    validate_id_mappings(linux, process.user().uid(), process.user().gid())?;
    validate_mounts(spec.mounts().as_deref().unwrap_or_default(), table)?;
    validate_paths(linux)?;
    validate_resources(linux)?;
    if linux.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(SpecError::NotEmpty("devices"));
    }
    if linux.sysctl().as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(SpecError::NotEmpty("sysctl"));
    }
    if linux.net_devices().as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(SpecError::NotEmpty("netDevices"));
    }
    validate_seccomp(linux)
}

fn validate_process(p: &Process) -> Result<(), SpecError> {
    if p.terminal() != Some(false) {
        return Err(SpecError::Terminal);
    }
    if p.user().uid() == 0 {
        return Err(SpecError::RootUser { what: "uid" });
    }
    if p.user().gid() == 0 {
        return Err(SpecError::RootUser { what: "gid" });
    }
    if let Some(g) = p.user().additional_gids() {
        if !g.is_empty() {
            return Err(SpecError::AdditionalGroups(g.clone()));
        }
    }
    if p.no_new_privileges() != Some(true) {
        return Err(SpecError::NewPrivileges);
    }
    let caps = p
        .capabilities()
        .as_ref()
        .ok_or(SpecError::Capabilities { set: "all" })?;
    for (set, value) in [
        ("bounding", caps.bounding()),
        ("effective", caps.effective()),
        ("inheritable", caps.inheritable()),
        ("permitted", caps.permitted()),
        ("ambient", caps.ambient()),
    ] {
        if !value.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(SpecError::Capabilities { set });
        }
    }
    for entry in p.env().as_deref().unwrap_or_default() {
        if !entry.starts_with("PATH=") {
            return Err(SpecError::Environment(entry.clone()));
        }
    }
    let args = p.args().as_deref().unwrap_or_default();
    match args.first() {
        None => return Err(SpecError::Args("empty".into())),
        Some(a0) if !a0.starts_with('/') => {
            return Err(SpecError::Args(format!("{a0:?} is not an absolute path")))
        }
        Some(_) => {}
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(SpecError::Args("an argument contains NUL".into()));
    }
    let rlimits = p.rlimits().as_deref().unwrap_or_default();
    let find = |t: PosixRlimitType| rlimits.iter().find(|r| r.typ() == t);
    match find(PosixRlimitType::RlimitNofile) {
        Some(r) if r.soft() > 0 && r.soft() <= r.hard() => {}
        _ => {
            return Err(SpecError::Rlimits(
                "RLIMIT_NOFILE missing or invalid".into(),
            ))
        }
    }
    match find(PosixRlimitType::RlimitCore) {
        Some(r) if r.soft() == 0 && r.hard() == 0 => {}
        _ => return Err(SpecError::Rlimits("RLIMIT_CORE must be 0/0".into())),
    }
    Ok(())
}

fn validate_namespaces(linux: &oci_spec::runtime::Linux) -> Result<(), SpecError> {
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    for ns in namespaces {
        if let Some(path) = ns.path() {
            return Err(SpecError::NamespaceJoinsExisting {
                kind: ns.typ().to_string(),
                path: path.clone(),
            });
        }
        if !NAMESPACES.contains(&ns.typ()) {
            return Err(SpecError::NamespaceUnexpected {
                kind: ns.typ().to_string(),
            });
        }
    }
    for want in NAMESPACES {
        if !namespaces.iter().any(|ns| ns.typ() == *want) {
            return Err(if *want == LinuxNamespaceType::Network {
                SpecError::NetworkNamespaceMissing
            } else {
                SpecError::NamespaceMissing {
                    kind: want.to_string(),
                }
            });
        }
    }
    Ok(())
}

fn validate_id_mappings(
    linux: &oci_spec::runtime::Linux,
    uid: u32,
    gid: u32,
) -> Result<(), SpecError> {
    for (what, maps, id) in [
        ("uid", linux.uid_mappings(), uid),
        ("gid", linux.gid_mappings(), gid),
    ] {
        let maps = maps.as_deref().unwrap_or_default();
        let [m] = maps else {
            return Err(SpecError::IdMapping(format!(
                "exactly one {what} mapping is required, found {}",
                maps.len()
            )));
        };
        if m.container_id() != 0 {
            return Err(SpecError::IdMapping(format!(
                "the {what} mapping must start at container id 0 (runsc refuses an unmapped root)"
            )));
        }
        // Container root must not be host root: the whole range lies above host id 0.
        if m.host_id() == 0 {
            return Err(SpecError::IdMapping(format!(
                "container {what} 0 maps to host {what} 0"
            )));
        }
        if m.host_id().checked_add(m.size()).is_none() {
            return Err(SpecError::IdMapping(format!("{what} range overflows")));
        }
        if id >= m.size() {
            return Err(SpecError::IdMapping(format!(
                "the agent's {what} {id} is outside the mapped range of {}",
                m.size()
            )));
        }
    }
    Ok(())
}

fn has(options: &[String], opt: &str) -> bool {
    options.iter().any(|o| o == opt)
}

fn validate_mounts(mounts: &[Mount], table: &[SessionMount]) -> Result<(), SpecError> {
    let err = |d: &Path, reason: String| SpecError::Mount {
        destination: d.display().to_string(),
        reason,
    };
    let mut seen: HashSet<&Path> = HashSet::new();
    for m in mounts {
        let dest = m.destination().as_path();
        if !seen.insert(dest) {
            return Err(err(dest, "mounted twice".into()));
        }
        let typ = m.typ().as_deref().unwrap_or_default();
        let options = m.options().as_deref().unwrap_or_default();
        let is_bind = typ == "bind" || has(options, "bind") || has(options, "rbind");
        for needed in ["nosuid", "nodev"] {
            // /dev is exempt from nodev only in name: gVisor replaces it with its own
            // devtmpfs of synthetic devices.
            let exempt = needed == "nodev" && dest == Path::new("/dev");
            if !exempt && !has(options, needed) {
                return Err(err(dest, format!("option {needed} missing")));
            }
        }
        if is_bind {
            let Some(row) = table.iter().find(|r| Path::new(r.sandbox) == dest) else {
                return Err(err(
                    dest,
                    "bind mount not in the contract's mount table".into(),
                ));
            };
            if m.source().as_deref() != Some(row.host.as_path()) {
                return Err(err(
                    dest,
                    format!("source is not the table's {}", row.host.display()),
                ));
            }
            if !has(options, "noexec") {
                return Err(err(dest, "option noexec missing".into()));
            }
            let ro = has(options, "ro") && !has(options, "rw");
            match row.access {
                MountAccess::ReadOnly if !ro => {
                    return Err(err(
                        dest,
                        "the table says read-only; mount is writable".into(),
                    ))
                }
                MountAccess::ReadWrite if !ro && !has(options, "rw") => {
                    return Err(err(dest, "neither ro nor rw given".into()))
                }
                _ => {}
            }
            if row.kind == MountKind::Socket && row.access == MountAccess::ReadOnly {
                // A read-only socket cannot be connected to; the table never says so.
                return Err(err(dest, "a socket mount must be connectable (rw)".into()));
            }
            continue;
        }
        match (dest.to_str(), typ) {
            (Some("/proc"), "proc") | (Some("/dev"), "tmpfs") => {}
            (Some("/tmp"), "tmpfs") => {
                if !has(options, "noexec") {
                    return Err(err(dest, "option noexec missing".into()));
                }
                if !options.iter().any(|o| o.starts_with("size=")) {
                    return Err(err(dest, "a tmpfs needs a size".into()));
                }
            }
            _ => {
                return Err(err(
                    dest,
                    format!("mount of type {typ:?} here is not allowed"),
                ))
            }
        }
    }
    for row in table {
        if !seen.contains(Path::new(row.sandbox)) {
            return Err(SpecError::MountMissing {
                destination: row.sandbox.to_owned(),
            });
        }
    }
    Ok(())
}

fn validate_paths(linux: &oci_spec::runtime::Linux) -> Result<(), SpecError> {
    let masked = linux.masked_paths().as_deref().unwrap_or_default();
    for p in MASKED_PATHS {
        if !masked.iter().any(|m| m == p) {
            return Err(SpecError::MaskedPathMissing(p));
        }
    }
    let ro = linux.readonly_paths().as_deref().unwrap_or_default();
    for p in READONLY_PATHS {
        if !ro.iter().any(|m| m == p) {
            return Err(SpecError::ReadonlyPathMissing(p));
        }
    }
    Ok(())
}

fn validate_resources(linux: &oci_spec::runtime::Linux) -> Result<(), SpecError> {
    let bad = |s: &str| Err(SpecError::Resources(s.to_owned()));
    match linux.cgroups_path() {
        Some(p) if p.is_absolute() => {}
        _ => return bad("an absolute cgroupsPath is required"),
    }
    let Some(r) = linux.resources() else {
        return bad("no resources section");
    };
    if r.memory()
        .as_ref()
        .and_then(|m| m.limit())
        .is_none_or(|l| l <= 0)
    {
        return bad("no memory limit");
    }
    if r.pids().as_ref().is_none_or(|p| p.limit() <= 0) {
        return bad("no pids limit");
    }
    let cpu_ok = r
        .cpu()
        .as_ref()
        .is_some_and(|c| c.quota().is_some_and(|q| q > 0) && c.period().is_some_and(|p| p > 0));
    if !cpu_ok {
        return bad("no CPU quota/period");
    }
    Ok(())
}

fn validate_seccomp(linux: &oci_spec::runtime::Linux) -> Result<(), SpecError> {
    let bad = |s: String| Err(SpecError::Seccomp(s));
    let Some(s) = linux.seccomp() else {
        return bad("no seccomp profile".into());
    };
    match s.default_action() {
        LinuxSeccompAction::ScmpActErrno
        | LinuxSeccompAction::ScmpActKill
        | LinuxSeccompAction::ScmpActKillProcess
        | LinuxSeccompAction::ScmpActKillThread
        | LinuxSeccompAction::ScmpActTrap => {}
        other => return bad(format!("default action {other} is not deny-by-default")),
    }
    for rule in s.syscalls().as_deref().unwrap_or_default() {
        if rule.action() != LinuxSeccompAction::ScmpActAllow {
            continue;
        }
        if let Some(name) = rule
            .names()
            .iter()
            .find(|n| seccomp::NEVER_ALLOWED.contains(&n.as_str()))
        {
            return bad(format!("{name} must never be allowed"));
        }
    }
    Ok(())
}
