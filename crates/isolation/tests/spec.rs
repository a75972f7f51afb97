//! The spec builder and validator, without runsc: the golden `config.json`, every
//! invariant the validator enforces (one mutation each, each refused with its own error),
//! the 0600 `config.json`, and the rootfs preflight.
//!
//! Regenerate the golden file after a deliberate change with
//! `UPDATE_GOLDEN=1 cargo test -p ironclaw-isolation --test spec` and review the diff.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ironclaw_contract::ids::{AgentGroupId, SessionId};
use ironclaw_contract::paths::{sandbox, HostLayout};
use ironclaw_isolation::spec::{self, Limits, SandboxRequest, DEFAULT_ID_MAP_BASE};
use ironclaw_isolation::{ContainerId, SpecError};
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

fn golden_request() -> SandboxRequest {
    let session = SessionId::new("ses_golden").unwrap();
    let layout = HostLayout::new("/var/lib/ironclaw");
    let model_socket = layout.model_socket(Path::new("/run/ironclaw/modelproxy.sock"), &session);
    SandboxRequest {
        container_id: ContainerId::for_session(&session),
        rootfs: PathBuf::from("/var/lib/ironclaw/images/sha256-0123/rootfs"),
        args: vec![
            "/ironclaw-sandbox".into(),
            "--provider".into(),
            "mock".into(),
        ],
        layout,
        session,
        group: AgentGroupId::new("g1").unwrap(),
        model_socket,
        limits: Limits::default(),
        id_map_base: DEFAULT_ID_MAP_BASE,
    }
}

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/config.json")
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_whole_spec_matches_the_golden_file() {
    let built = spec::build(&golden_request()).unwrap();
    let actual: Value = serde_json::from_str(&built.to_json().unwrap()).unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let mut text = serde_json::to_string_pretty(&actual).unwrap();
        text.push('\n');
        fs::write(golden_path(), text).unwrap();
    }
    let expected: Value = serde_json::from_str(&fs::read_to_string(golden_path()).unwrap())
        .expect("golden file is JSON");
    assert_eq!(
        actual,
        expected,
        "the spec changed; if deliberate, regenerate with UPDATE_GOLDEN=1 and review:\n{}",
        serde_json::to_string_pretty(&actual).unwrap()
    );
}

#[test]
fn the_spec_mounts_exactly_the_contract_table_after_the_fixed_three() {
    let req = golden_request();
    let built = spec::build(&req).unwrap();
    let mounts = built.oci().mounts().as_ref().unwrap();
    let dests: Vec<&str> = mounts
        .iter()
        .map(|m| m.destination().to_str().unwrap())
        .collect();
    let table = req.session_mounts();
    let mut expected = vec!["/proc", "/dev", "/tmp"];
    expected.extend(table.iter().map(|r| r.sandbox));
    assert_eq!(dests, expected);
    for (m, row) in mounts[3..].iter().zip(&table) {
        assert_eq!(m.source().as_deref(), Some(row.host.as_path()));
        let opts = m.options().as_ref().unwrap();
        let ro = opts.iter().any(|o| o == "ro");
        assert_eq!(
            ro,
            row.access == ironclaw_contract::paths::MountAccess::ReadOnly,
            "{}",
            row.sandbox
        );
    }
    // The contract's key paths are covered.
    for p in [
        sandbox::INBOUND_DIR,
        sandbox::OUTBOUND_DIR,
        sandbox::KEY_DIR,
        sandbox::MODEL_SOCKET,
        sandbox::DOORBELL_SOCKET,
        sandbox::HEARTBEAT_DIR,
        sandbox::WORKSPACE,
    ] {
        assert!(dests.contains(&p), "{p}");
    }
}

/// The golden spec as JSON, mutated by `f`, parsed back and validated.
fn validate_mutated(f: impl FnOnce(&mut Value)) -> Result<(), SpecError> {
    let req = golden_request();
    let built = spec::build(&req).unwrap();
    let mut v: Value = serde_json::to_value(built.oci()).unwrap();
    f(&mut v);
    let spec: Spec = serde_json::from_value(v).expect("mutated spec still parses");
    spec::validate(&spec, &req.session_mounts())
}

fn mount_index(v: &Value, dest: &str) -> usize {
    v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .position(|m| m["destination"] == dest)
        .unwrap()
}

#[test]
fn the_unmutated_spec_round_trips_and_validates() {
    validate_mutated(|_| {}).unwrap();
}

#[test]
fn every_invariant_is_enforced() {
    use SpecError as E;
    type Mutation = Box<dyn FnOnce(&mut Value)>;
    type Case = (&'static str, Mutation, fn(&SpecError) -> bool);
    let cases: Vec<Case> = vec![
        (
            "network namespace removed",
            Box::new(|v| {
                let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "network");
            }),
            |e| matches!(e, E::NetworkNamespaceMissing),
        ),
        (
            "network namespace joins the host's",
            Box::new(|v| {
                let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
                for n in ns.iter_mut().filter(|n| n["type"] == "network") {
                    n["path"] = json!("/proc/1/ns/net");
                }
            }),
            |e| matches!(e, E::NamespaceJoinsExisting { .. }),
        ),
        (
            "user namespace removed",
            Box::new(|v| {
                let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "user");
            }),
            |e| matches!(e, E::NamespaceMissing { .. }),
        ),
        (
            "a namespace the spec does not use",
            Box::new(|v| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "cgroup"}))
            }),
            |e| matches!(e, E::NamespaceUnexpected { .. }),
        ),
        (
            "a capability granted",
            Box::new(|v| v["process"]["capabilities"]["effective"] = json!(["CAP_SYS_ADMIN"])),
            |e| matches!(e, E::Capabilities { set: "effective" }),
        ),
        (
            "a capability set left to the runtime's default",
            Box::new(|v| {
                v["process"]["capabilities"]
                    .as_object_mut()
                    .unwrap()
                    .remove("bounding");
            }),
            |e| matches!(e, E::Capabilities { set: "bounding" }),
        ),
        (
            "runs as uid 0",
            Box::new(|v| v["process"]["user"]["uid"] = json!(0)),
            |e| matches!(e, E::RootUser { what: "uid" }),
        ),
        (
            "runs as gid 0",
            Box::new(|v| v["process"]["user"]["gid"] = json!(0)),
            |e| matches!(e, E::RootUser { what: "gid" }),
        ),
        (
            "extra groups",
            Box::new(|v| v["process"]["user"]["additionalGids"] = json!([0])),
            |e| matches!(e, E::AdditionalGroups(_)),
        ),
        (
            "writable rootfs",
            Box::new(|v| v["root"]["readonly"] = json!(false)),
            |e| matches!(e, E::RootfsWritable),
        ),
        (
            "rootfs readonly unset",
            Box::new(|v| {
                v["root"].as_object_mut().unwrap().remove("readonly");
            }),
            |e| matches!(e, E::RootfsWritable),
        ),
        (
            "new privileges allowed",
            Box::new(|v| v["process"]["noNewPrivileges"] = json!(false)),
            |e| matches!(e, E::NewPrivileges),
        ),
        (
            "a terminal",
            Box::new(|v| v["process"]["terminal"] = json!(true)),
            |e| matches!(e, E::Terminal),
        ),
        (
            "a secret in the environment",
            Box::new(|v| {
                v["process"]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("ANTHROPIC_API_KEY=sk-x"))
            }),
            |e| matches!(e, E::Environment(s) if s.starts_with("ANTHROPIC_API_KEY")),
        ),
        (
            "relative agent path",
            Box::new(|v| v["process"]["args"][0] = json!("ironclaw-sandbox")),
            |e| matches!(e, E::Args(_)),
        ),
        (
            "no args",
            Box::new(|v| v["process"]["args"] = json!([])),
            |e| matches!(e, E::Args(_)),
        ),
        (
            "container root mapped to host root",
            Box::new(|v| v["linux"]["uidMappings"][0]["hostID"] = json!(0)),
            |e| matches!(e, E::IdMapping(_)),
        ),
        (
            "container root unmapped",
            Box::new(|v| {
                v["linux"]["gidMappings"] =
                    json!([{"containerID": 65532, "hostID": 165532, "size": 1}])
            }),
            |e| matches!(e, E::IdMapping(_)),
        ),
        (
            "agent uid outside the mapping",
            Box::new(|v| v["linux"]["uidMappings"][0]["size"] = json!(1000)),
            |e| matches!(e, E::IdMapping(_)),
        ),
        (
            "inbound mounted writable",
            Box::new(|v| {
                let i = mount_index(v, sandbox::INBOUND_DIR);
                v["mounts"][i]["options"] = json!(["bind", "rw", "nosuid", "nodev", "noexec"]);
            }),
            |e| matches!(e, E::Mount { destination, .. } if destination == sandbox::INBOUND_DIR),
        ),
        (
            "key dir with both ro and rw",
            Box::new(|v| {
                let i = mount_index(v, sandbox::KEY_DIR);
                v["mounts"][i]["options"] =
                    json!(["bind", "ro", "rw", "nosuid", "nodev", "noexec"]);
            }),
            |e| matches!(e, E::Mount { destination, .. } if destination == sandbox::KEY_DIR),
        ),
        (
            "an extra rw bind mount not in the table",
            Box::new(|v| {
                v["mounts"].as_array_mut().unwrap().push(json!({
                    "destination": "/host", "type": "bind", "source": "/var/lib/ironclaw",
                    "options": ["bind", "rw", "nosuid", "nodev", "noexec"]
                }))
            }),
            |e| matches!(e, E::Mount { destination, .. } if destination == "/host"),
        ),
        (
            "an extra ro bind mount not in the table",
            Box::new(|v| {
                v["mounts"].as_array_mut().unwrap().push(json!({
                    "destination": "/keys", "type": "bind", "source": "/var/lib/ironclaw/keys",
                    "options": ["bind", "ro", "nosuid", "nodev", "noexec"]
                }))
            }),
            |e| matches!(e, E::Mount { destination, .. } if destination == "/keys"),
        ),
        (
            "a table mount from another session's directory",
            Box::new(|v| {
                let i = mount_index(v, sandbox::OUTBOUND_DIR);
                v["mounts"][i]["source"] = json!("/var/lib/ironclaw/sessions/other/outbound");
            }),
            |e| matches!(e, E::Mount { destination, .. } if destination == sandbox::OUTBOUND_DIR),
        ),
        (
            "a contract mount missing",
            Box::new(|v| {
                let i = mount_index(v, sandbox::HEARTBEAT_DIR);
                v["mounts"].as_array_mut().unwrap().remove(i);
            }),
            |e| matches!(e, E::MountMissing { destination } if destination == sandbox::HEARTBEAT_DIR),
        ),
        (
            "a mount twice",
            Box::new(|v| {
                let i = mount_index(v, sandbox::WORKSPACE);
                let dup = v["mounts"][i].clone();
                v["mounts"].as_array_mut().unwrap().push(dup);
            }),
            |e| matches!(e, E::Mount { destination, .. } if destination == sandbox::WORKSPACE),
        ),
        (
            "host sysfs",
            Box::new(|v| {
                v["mounts"].as_array_mut().unwrap().push(json!({
                    "destination": "/sys", "type": "sysfs", "source": "sysfs",
                    "options": ["nosuid", "noexec", "nodev", "ro"]
                }))
            }),
            |e| matches!(e, E::Mount { destination, .. } if destination == "/sys"),
        ),
        (
            "/tmp executable",
            Box::new(|v| {
                let i = mount_index(v, "/tmp");
                v["mounts"][i]["options"] = json!(["nosuid", "nodev", "size=1024"]);
            }),
            |e| matches!(e, E::Mount { destination, .. } if destination == "/tmp"),
        ),
        (
            "a bind mount allowing set-uid",
            Box::new(|v| {
                let i = mount_index(v, sandbox::WORKSPACE);
                v["mounts"][i]["options"] = json!(["bind", "rw", "nodev", "noexec"]);
            }),
            |e| matches!(e, E::Mount { destination, .. } if destination == sandbox::WORKSPACE),
        ),
        (
            "a masked path dropped",
            Box::new(|v| {
                let m = v["linux"]["maskedPaths"].as_array_mut().unwrap();
                m.retain(|p| p != "/proc/kcore");
            }),
            |e| matches!(e, E::MaskedPathMissing("/proc/kcore")),
        ),
        (
            "a read-only path dropped",
            Box::new(|v| {
                let m = v["linux"]["readonlyPaths"].as_array_mut().unwrap();
                m.retain(|p| p != "/proc/sys");
            }),
            |e| matches!(e, E::ReadonlyPathMissing("/proc/sys")),
        ),
        (
            "no memory limit",
            Box::new(|v| {
                v["linux"]["resources"]
                    .as_object_mut()
                    .unwrap()
                    .remove("memory");
            }),
            |e| matches!(e, E::Resources(_)),
        ),
        (
            "no pids limit",
            Box::new(|v| {
                v["linux"]["resources"]
                    .as_object_mut()
                    .unwrap()
                    .remove("pids");
            }),
            |e| matches!(e, E::Resources(_)),
        ),
        (
            "no cpu quota",
            Box::new(|v| {
                v["linux"]["resources"]["cpu"]
                    .as_object_mut()
                    .unwrap()
                    .remove("quota");
            }),
            |e| matches!(e, E::Resources(_)),
        ),
        (
            "no cgroups path",
            Box::new(|v| {
                v["linux"].as_object_mut().unwrap().remove("cgroupsPath");
            }),
            |e| matches!(e, E::Resources(_)),
        ),
        (
            "core dumps allowed",
            Box::new(|v| v["process"]["rlimits"][1]["soft"] = json!(1)),
            |e| matches!(e, E::Rlimits(_)),
        ),
        (
            "no NOFILE limit",
            Box::new(|v| {
                v["process"]["rlimits"].as_array_mut().unwrap().remove(0);
            }),
            |e| matches!(e, E::Rlimits(_)),
        ),
        (
            "no seccomp",
            Box::new(|v| {
                v["linux"].as_object_mut().unwrap().remove("seccomp");
            }),
            |e| matches!(e, E::Seccomp(_)),
        ),
        (
            "seccomp allow by default",
            Box::new(|v| v["linux"]["seccomp"]["defaultAction"] = json!("SCMP_ACT_ALLOW")),
            |e| matches!(e, E::Seccomp(_)),
        ),
        (
            "seccomp allows mount",
            Box::new(|v| {
                v["linux"]["seccomp"]["syscalls"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"names": ["mount"], "action": "SCMP_ACT_ALLOW"}))
            }),
            |e| matches!(e, E::Seccomp(s) if s.contains("mount")),
        ),
        (
            "seccomp allows execve",
            Box::new(|v| {
                v["linux"]["seccomp"]["syscalls"][0]["names"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("execve"))
            }),
            |e| matches!(e, E::Seccomp(s) if s.contains("execve")),
        ),
        (
            "a hook",
            Box::new(|v| v["hooks"] = json!({"prestart": [{"path": "/bin/sh"}]})),
            |e| matches!(e, E::Hooks),
        ),
        (
            "a flag-override annotation",
            Box::new(|v| v["annotations"] = json!({"dev.gvisor.flag.network": "host"})),
            |e| matches!(e, E::Annotations),
        ),
        (
            "a host device",
            Box::new(|v| {
                v["linux"]["devices"] =
                    json!([{"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232}])
            }),
            |e| matches!(e, E::NotEmpty("devices")),
        ),
        (
            "a sysctl",
            Box::new(|v| v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"})),
            |e| matches!(e, E::NotEmpty("sysctl")),
        ),
    ];
    let n = cases.len();
    for (name, mutation, expected) in cases {
        match validate_mutated(mutation) {
            Ok(()) => panic!("{name}: accepted"),
            Err(e) => assert!(expected(&e), "{name}: refused with the wrong error: {e}"),
        }
    }
    assert!(n >= 45);
}

#[test]
fn the_builder_refuses_bad_requests() {
    type Case = (&'static str, Box<dyn Fn(&mut SandboxRequest)>);
    let cases: Vec<Case> = vec![
        ("relative rootfs", Box::new(|r| r.rootfs = "rootfs".into())),
        (
            "relative model socket",
            Box::new(|r| r.model_socket = "m.sock".into()),
        ),
        (
            "relative state dir",
            Box::new(|r| r.layout = HostLayout::new("state")),
        ),
        ("zero memory", Box::new(|r| r.limits.memory_bytes = 0)),
        ("zero pids", Box::new(|r| r.limits.pids = 0)),
        ("zero period", Box::new(|r| r.limits.cpu_period_us = 0)),
        ("map base 0", Box::new(|r| r.id_map_base = 0)),
        ("map overflow", Box::new(|r| r.id_map_base = u32::MAX - 10)),
        ("no args", Box::new(|r| r.args.clear())),
        ("relative agent", Box::new(|r| r.args[0] = "sandbox".into())),
    ];
    for (name, f) in cases {
        let mut req = golden_request();
        f(&mut req);
        assert!(spec::build(&req).is_err(), "{name}: accepted");
    }
}

#[test]
fn limits_and_id_map_are_configurable() {
    let mut req = golden_request();
    req.limits.memory_bytes = 256 << 20;
    req.limits.pids = 64;
    req.limits.cpu_quota_us = 50_000;
    req.id_map_base = 200_000;
    let built = spec::build(&req).unwrap();
    let v = serde_json::to_value(built.oci()).unwrap();
    assert_eq!(v["linux"]["resources"]["memory"]["limit"], json!(256 << 20));
    assert_eq!(v["linux"]["resources"]["pids"]["limit"], json!(64));
    assert_eq!(v["linux"]["resources"]["cpu"]["quota"], json!(50_000));
    assert_eq!(v["linux"]["uidMappings"][0]["hostID"], json!(200_000));
    assert_eq!(v["linux"]["gidMappings"][0]["hostID"], json!(200_000));
    assert_eq!(
        v["linux"]["cgroupsPath"],
        json!("/ironclaw/ironclaw-ses_golden")
    );
}

#[test]
fn config_json_is_created_0600_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let built = spec::build(&golden_request()).unwrap();
    let path = built.write_config(dir.path()).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let back: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(back, serde_json::to_value(built.oci()).unwrap());
    assert!(matches!(
        built.write_config(dir.path()),
        Err(SpecError::Write { .. })
    ));
}

#[test]
fn preflight_names_a_missing_mount_point_and_an_untraversable_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let state = dir.path().join("state");
    let session = SessionId::new("ses_pre").unwrap();
    let layout = HostLayout::new(&state);
    let model_socket = dir.path().join("model.sock");
    let rootfs = dir.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    let mut req = golden_request();
    req.layout = layout.clone();
    req.session = session.clone();
    req.container_id = ContainerId::for_session(&session);
    req.model_socket = model_socket.clone();
    req.rootfs = rootfs.clone();
    let table = req.session_mounts();
    for row in &table {
        match row.kind {
            ironclaw_contract::paths::MountKind::Directory => {
                fs::create_dir_all(&row.host).unwrap()
            }
            ironclaw_contract::paths::MountKind::Socket => {
                fs::create_dir_all(row.host.parent().unwrap()).unwrap();
                drop(std::os::unix::net::UnixListener::bind(&row.host).unwrap());
                fs::set_permissions(&row.host, fs::Permissions::from_mode(0o666)).unwrap();
            }
        }
    }
    for d in [
        &state,
        &layout.sessions_dir(),
        &state.join("keys"),
        &state.join("groups"),
    ] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o711)).unwrap();
    }
    let built = spec::build(&req).unwrap();

    let err = built.preflight().unwrap_err();
    assert!(
        matches!(&err, SpecError::MountPointMissing(p) if p == Path::new(sandbox::INBOUND_DIR)),
        "{err}"
    );
    spec::create_mount_points(&rootfs, &table).unwrap();
    assert!(rootfs.join("run/ironclaw/model.sock").is_file());
    assert!(rootfs.join("workspace").is_dir());
    // Idempotent.
    spec::create_mount_points(&rootfs, &table).unwrap();

    // A root-owned 0700 ancestor cannot be traversed by the sandbox's root (host uid
    // 100000): the mistake that makes runsc fail with an opaque "EOF".
    fs::set_permissions(layout.sessions_dir(), fs::Permissions::from_mode(0o700)).unwrap();
    let err = built.preflight().unwrap_err();
    assert!(
        matches!(&err, SpecError::HostPathUnreachable { path, .. } if path == &layout.sessions_dir()),
        "{err}"
    );
    fs::set_permissions(layout.sessions_dir(), fs::Permissions::from_mode(0o711)).unwrap();
    built.preflight().unwrap();

    // A socket only root may connect to.
    fs::set_permissions(&model_socket, fs::Permissions::from_mode(0o755)).unwrap();
    let err = built.preflight().unwrap_err();
    assert!(
        matches!(&err, SpecError::HostPathUnreachable { path, .. } if path == &model_socket),
        "{err}"
    );
}

#[test]
fn create_mount_points_refuses_to_follow_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    let outside = dir.path().join("outside");
    fs::create_dir_all(&rootfs).unwrap();
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, rootfs.join("run")).unwrap();
    let req = golden_request();
    assert!(spec::create_mount_points(&rootfs, &req.session_mounts()).is_err());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}
