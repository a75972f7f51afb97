//! `ironctl backup` / `ironctl restore` end to end: state made by a live daemon (changes
//! decided and pending, audit records, a chat answered from a runsc sandbox) is backed
//! up while the daemon runs and the agent keeps working, restored into a fresh
//! directory, and a daemon started on the copy has all of it: the audit chain verifies,
//! the changes are there and still decidable, and the session's encrypted queue still
//! holds the conversation.
//!
//! Needs root, `runsc` and the static agent (`.ci/run` builds it); never skipped.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use ironclaw_contract::db::{read_snapshot, Cipher, SnapshotPolicy};
use ironclaw_contract::ids::SessionId;
use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::schema::QueueFile;
use ironclaw_e2e::live::LiveDir;
use ironclaw_e2e::{ironctl, Ctl, Daemon};
use ironclaw_keys::KeyCustodian;

fn ok(out: Ctl) -> Ctl {
    assert_eq!(
        out.code, 0,
        "ironctl failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    out
}

/// `ironctl` without a daemon (backup and restore are local).
fn local(args: &[&str]) -> Ctl {
    ironctl("http://127.0.0.1:9", None, args)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

fn submit(d: &Daemon, token: &str, persona: &str) -> String {
    let payload = format!("{{\"persona\": \"{persona}\"}}");
    ok(ironctl(
        &d.addr,
        Some(token),
        &[
            "--json",
            "change",
            "submit",
            "--kind",
            "persona",
            "--group",
            "dev-agent",
            "--payload",
            &payload,
        ],
    ))
    .json()["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// The texts of the inbound messages in `session`'s queue under `state`, read with
/// the keys of that state dir.
fn inbound_texts(state: &Path, session: &str) -> Vec<String> {
    let layout = HostLayout::new(state);
    let (keys, created) = KeyCustodian::load(&layout.master_key(), &layout.sealed_keys())
        .expect("the restored keys open");
    assert!(!created, "a master key was minted instead of restored");
    let id = SessionId::new(session).unwrap();
    let key = keys
        .get(&id)
        .unwrap()
        .expect("the session's key was restored");
    read_snapshot(
        &layout.inbound_db(&id),
        &Cipher::Key(key),
        QueueFile::Inbound,
        SnapshotPolicy::default(),
        |c| {
            c.prepare("SELECT content FROM messages_in ORDER BY seq")?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect()
        },
    )
    .expect("the restored inbound queue reads")
}

#[test]
fn a_backup_taken_while_agents_work_restores_into_a_working_daemon() {
    let live = LiveDir::new();
    let d = live.start_dev(&[]);
    let owner = d.dev_token();
    let admin = ok(ironctl(
        &d.addr,
        Some(&owner),
        &["--json", "token", "create", "admin", "--role", "admin"],
    ))
    .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // State: one change applied, one pending, a conversation answered from the sandbox.
    let applied = submit(&d, &owner, "Answer briefly.");
    ok(ironctl(
        &d.addr,
        Some(&admin),
        &["change", "approve", &applied],
    ));
    let pending = submit(&d, &owner, "Answer at length.");
    let reply = ok(ironctl(
        &d.addr,
        Some(&owner),
        &[
            "chat",
            "send",
            "--group",
            "dev-agent",
            "remember the backup",
            "--wait-secs",
            "60",
        ],
    ));
    assert!(
        reply.stdout.contains("remember the backup"),
        "{}",
        reply.stdout
    );
    let sessions = ok(ironctl(
        &d.addr,
        Some(&owner),
        &["--json", "session", "list"],
    ))
    .json();
    let session = sessions["sessions"][0]["id"].as_str().unwrap().to_owned();

    // What an agent can leave in its workspace: a file, a symlink out of it, a FIFO,
    // a `*.db` beside a journal that never goes away. The backup copies the file,
    // keeps the symlink as a symlink (never its target's content), skips the FIFO
    // without hanging, and copies the `*.db` as the plain file it is.
    let workspace = live.state.join("groups/dev-agent/workspace");
    std::fs::write(workspace.join("notes.txt"), b"agent notes").unwrap();
    std::fs::write(workspace.join("trap.db"), b"not a database").unwrap();
    std::fs::write(workspace.join("trap.db-journal"), b"held forever").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", workspace.join("escape")).unwrap();
    assert!(Command::new("mkfifo")
        .arg(workspace.join("pipe"))
        .status()
        .unwrap()
        .success());

    // Back up while the agent keeps answering (its outbound queue is written across
    // the gVisor boundary during the copy).
    let chatter = {
        let (addr, token) = (d.addr.clone(), owner.clone());
        std::thread::spawn(move || {
            for i in 0..3 {
                let msg = format!("during the backup {i}");
                ironctl(
                    &addr,
                    Some(&token),
                    &[
                        "chat",
                        "send",
                        "--group",
                        "dev-agent",
                        &msg,
                        "--wait-secs",
                        "60",
                    ],
                );
            }
        })
    };
    let out = live.dir.path().join("state.tar");
    let mut taken = None;
    for i in 0..3 {
        let file = live.dir.path().join(format!("state-{i}.tar"));
        let b = ok(local(&[
            "--json",
            "backup",
            "--state-dir",
            path(&live.state),
            "--out",
            path(&file),
        ]));
        assert!(b.stderr.contains("CONTAINS THE MASTER KEY"), "{}", b.stderr);
        taken = Some(b.json());
        std::fs::rename(&file, &out).unwrap();
    }
    chatter.join().unwrap();
    let report = taken.unwrap();
    assert_eq!(report["master_key_included"], true);
    assert!(
        report["check"]["databases"].as_u64().unwrap() >= 4,
        "{report}"
    );
    let mode = std::fs::metadata(&out).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    // The archive never holds the session keys' plaintext tmpfs or the caches.
    let listing = Command::new("tar").arg("tf").arg(&out).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(listing.starts_with("ironclaw-backup.json\n"), "{listing}");
    for absent in ["keys/", "images/", "bundles/", "runsc/", "session.key"] {
        assert!(!listing.contains(absent), "{absent} archived:\n{listing}");
    }
    let raw = std::fs::read(&out).unwrap();
    assert!(
        !String::from_utf8_lossy(&raw).contains("root:x:0:0"),
        "a symlink was followed into the archive"
    );
    assert!(
        listing.contains("groups/dev-agent/workspace/escape"),
        "{listing}"
    );
    assert!(!listing.contains("workspace/pipe"), "{listing}");
    assert!(
        listing.contains("groups/dev-agent/workspace/trap.db\n"),
        "{listing}"
    );
    // The master key is archived from memory; no staging copy of it is left behind.
    assert!(listing.contains("\nmaster.key\n"), "{listing}");
    let staging_left: Vec<_> = std::fs::read_dir(live.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".staging-"))
        .collect();
    assert!(staging_left.is_empty(), "staging left behind");
    // A second backup never overwrites the first.
    let again = local(&[
        "backup",
        "--state-dir",
        path(&live.state),
        "--out",
        path(&out),
    ]);
    assert_eq!(again.code, 2, "{}", again.stderr);

    let audit_at_backup = report["check"]["audit_last_seq"].as_u64().unwrap();
    d.stop();

    // Restore into a fresh directory and start a daemon on it.
    let restored = LiveDir::new();
    let r = ok(local(&[
        "--json",
        "restore",
        "--from",
        path(&out),
        "--state-dir",
        path(&restored.state),
    ]))
    .json();
    assert_eq!(r["master_key_from"], "archive");
    assert_eq!(r["check"]["audit_last_seq"].as_u64(), Some(audit_at_backup));
    assert_eq!(
        r["master_key_fingerprint"], report["master_key_fingerprint"],
        "{r}"
    );
    assert!(
        inbound_texts(&restored.state, &session)
            .iter()
            .any(|t| t.contains("remember the backup")),
        "the conversation is not in the restored queue"
    );

    let ws = restored.state.join("groups/dev-agent/workspace");
    assert_eq!(std::fs::read(ws.join("notes.txt")).unwrap(), b"agent notes");
    assert_eq!(
        std::fs::read_link(ws.join("escape")).unwrap(),
        Path::new("/etc/passwd")
    );

    let d2 = restored.start_dev(&[]);
    // The dev token is state too: the same operators work on the copy.
    assert_eq!(d2.dev_token(), owner);
    let verify = ok(ironctl(&d2.addr, Some(&owner), &["audit", "verify"]));
    assert!(verify.stdout.contains("intact"), "{}", verify.stdout);
    let seq_now: u64 = ok(ironctl(&d2.addr, Some(&owner), &["--json", "status"])).json()
        ["audit_last_seq"]
        .as_u64()
        .unwrap();
    assert!(
        seq_now > audit_at_backup,
        "the restored daemon appends to the chain"
    );

    let history = ok(ironctl(
        &d2.addr,
        Some(&owner),
        &["--json", "change", "history"],
    ))
    .json();
    assert!(history.to_string().contains(&applied), "{history}");
    let group = ok(ironctl(
        &d2.addr,
        Some(&owner),
        &["--json", "registry", "agent-groups", "dev-agent"],
    ))
    .json();
    assert_eq!(group["persona"], "Answer briefly.");
    // The pending change survived and is still decidable, by the restored admin token.
    let p = ok(ironctl(&d2.addr, Some(&owner), &["change", "pending"]));
    assert!(p.stdout.contains(&pending), "{}", p.stdout);
    let decided = ok(ironctl(
        &d2.addr,
        Some(&admin),
        &["--json", "change", "approve", &pending],
    ))
    .json();
    assert_eq!(decided["status"], "applied");
    let listed = ok(ironctl(
        &d2.addr,
        Some(&owner),
        &["--json", "session", "list"],
    ))
    .json();
    assert!(listed.to_string().contains(&session), "{listed}");
    // And the agent still answers from a sandbox on the restored state.
    let again = ok(ironctl(
        &d2.addr,
        Some(&owner),
        &[
            "chat",
            "send",
            "--group",
            "dev-agent",
            "after the restore",
            "--wait-secs",
            "60",
        ],
    ));
    assert!(
        again.stdout.contains("after the restore"),
        "{}",
        again.stdout
    );
}

#[test]
fn without_the_master_key_a_backup_needs_it_to_restore_and_refuses_a_wrong_one() {
    let live = LiveDir::new();
    let d = live.start_dev(&[]);
    let token = d.dev_token();
    submit(&d, &token, "Kept apart.");
    let out = live.dir.path().join("nokey.tar");
    let b = ok(local(&[
        "backup",
        "--exclude-master-key",
        "--state-dir",
        path(&live.state),
        "--out",
        path(&out),
    ]));
    assert!(b.stderr.contains("NOT in"), "{}", b.stderr);
    d.stop();
    let listing = Command::new("tar").arg("tf").arg(&out).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&listing.stdout).contains("master.key"),
        "the master key was archived"
    );

    let target = live.dir.path().join("restored");
    let t = path(&target);
    let missing = local(&["restore", "--from", path(&out), "--state-dir", t]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("--master-key"),
        "{}",
        missing.stderr
    );
    assert!(!target.exists(), "a refused restore left a directory");

    let wrong = live.dir.path().join("wrong.key");
    std::fs::write(&wrong, [7u8; 32]).unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let refused = local(&[
        "restore",
        "--from",
        path(&out),
        "--state-dir",
        t,
        "--master-key",
        path(&wrong),
    ]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("fingerprint"), "{}", refused.stderr);

    let key = live.state.join("master.key");
    let r = ok(local(&[
        "--json",
        "restore",
        "--from",
        path(&out),
        "--state-dir",
        t,
        "--master-key",
        path(&key),
    ]))
    .json();
    assert_eq!(r["master_key_from"], "file");
    assert_eq!(
        std::fs::read(target.join("master.key")).unwrap(),
        std::fs::read(&key).unwrap()
    );
}

#[test]
fn restore_refuses_a_damaged_archive_a_foreign_tar_and_a_non_empty_directory() {
    let live = LiveDir::new();
    let d = live.start_dev(&[]);
    let out = live.dir.path().join("b.tar");
    ok(local(&[
        "backup",
        "--state-dir",
        path(&live.state),
        "--out",
        path(&out),
    ]));
    d.stop();

    // A non-empty target is refused before anything is read or written.
    let busy = live.dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep-me"), b"x").unwrap();
    let r = local(&["restore", "--from", path(&out), "--state-dir", path(&busy)]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(std::fs::read(busy.join("keep-me")).unwrap(), b"x");

    // One flipped byte inside the registry's data: the checksum catches it, and the
    // partial restore is removed.
    let mut bytes = std::fs::read(&out).unwrap();
    let at = find(&bytes, b"registry.db\0").expect("registry.db header") + 512 + 100;
    bytes[at] ^= 0xff;
    let damaged = live.dir.path().join("damaged.tar");
    std::fs::write(&damaged, &bytes).unwrap();
    let target = live.dir.path().join("from-damaged");
    let r = local(&[
        "restore",
        "--from",
        path(&damaged),
        "--state-dir",
        path(&target),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("checksum"), "{}", r.stderr);
    assert!(!target.exists(), "a failed restore left files behind");

    // A tar that is not a backup.
    let foreign = live.dir.path().join("foreign.tar");
    let made = Command::new("tar")
        .arg("cf")
        .arg(&foreign)
        .arg("-C")
        .arg(live.dir.path())
        .arg("busy")
        .status()
        .unwrap();
    assert!(made.success());
    let r = local(&[
        "restore",
        "--from",
        path(&foreign),
        "--state-dir",
        path(&target),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not an ironctl backup"), "{}", r.stderr);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
