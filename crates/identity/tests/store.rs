//! The token store against real files, through the public API only.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ironclaw_contract::ids::UserId;
use ironclaw_identity::{IdentityError, Principal, TokenStore, MAX_PRESENTED_LEN};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sha2::{Digest, Sha256};

fn setup() -> (tempfile::TempDir, PathBuf, TokenStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    let store = TokenStore::open(&path).unwrap();
    (dir, path, store)
}

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn create_then_authenticate_names_the_operator() {
    let (_d, _p, store) = setup();
    assert!(store.is_empty());
    let root = uid("operator:root");
    let (rec, token) = store.create("alice", Some(&root)).unwrap();

    let t = token.expose();
    assert!(t.starts_with("icw_") && t.len() == 68, "{t}");
    assert_eq!(rec.name, "alice");
    assert_eq!(rec.principal.as_str(), "operator:alice");
    assert_eq!(rec.created_by, Some(root));
    assert!(rec.is_active());
    assert_eq!(rec.hash_prefix, sha256_hex(t)[..8]);

    assert_eq!(
        store.authenticate(t),
        Some(Principal {
            name: "alice".into(),
            user_id: uid("operator:alice"),
        })
    );
    assert!(!store.is_empty());
    assert_eq!(store.list(), vec![rec]);
}

#[test]
fn near_misses_do_not_authenticate() {
    let (_d, _p, store) = setup();
    let (_, token) = store.create("alice", None).unwrap();
    let t = token.expose();
    let (_, other_store_token) = setup().2.create("alice", None).unwrap();

    let overlong = format!("{t}{}", "a".repeat(MAX_PRESENTED_LEN));
    let candidates = [
        String::new(),
        format!("Bearer {t}"),
        format!("bearer {t}"),
        format!("{t} "),
        format!(" {t}"),
        format!("{t}\n"),
        t.to_uppercase(),
        t[..t.len() - 1].to_owned(),
        format!("{t}0"),
        t.strip_prefix("icw_").unwrap().to_owned(),
        sha256_hex(t),
        other_store_token.expose().to_owned(),
        overlong,
        "x".repeat(MAX_PRESENTED_LEN + 1),
    ];
    for c in &candidates {
        assert_eq!(store.authenticate(c), None, "{c:?}");
    }
    // The real one still works after all those attempts.
    assert!(store.authenticate(t).is_some());
}

#[test]
fn revoked_tokens_never_authenticate() {
    let (_d, path, store) = setup();
    let (_, alice) = store.create("alice", None).unwrap();
    let (_, bob) = store.create("bob", None).unwrap();
    let root = uid("operator:root");

    assert!(store.revoke("alice", &root).unwrap());
    assert_eq!(store.authenticate(alice.expose()), None);
    assert_eq!(store.authenticate(bob.expose()).unwrap().name, "bob");
    // Nothing left to revoke.
    assert!(!store.revoke("alice", &root).unwrap());
    assert!(!store.revoke("nobody", &root).unwrap());
    assert!(matches!(
        store.revoke("Not Valid", &root),
        Err(IdentityError::InvalidName { .. })
    ));

    let listed = store.list();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].revoked_at.is_some());
    assert_eq!(listed[0].revoked_by, Some(root.clone()));
    assert!(listed[1].is_active());

    assert!(store.revoke("bob", &root).unwrap());
    assert!(store.is_empty());

    // And revocation is durable.
    let reopened = TokenStore::open(&path).unwrap();
    assert_eq!(reopened.authenticate(alice.expose()), None);
    assert_eq!(reopened.authenticate(bob.expose()), None);
    assert!(reopened.is_empty());
    assert_eq!(reopened.list(), store.list());
}

#[test]
fn tokens_survive_reopen() {
    let (_d, path, store) = setup();
    let (_, alice) = store.create("alice", None).unwrap();
    let (_, bob) = store.create("bob", Some(&uid("operator:alice"))).unwrap();
    store.revoke("bob", &uid("operator:alice")).unwrap();
    let before = store.list();
    drop(store);

    let reopened = TokenStore::open(&path).unwrap();
    assert_eq!(reopened.list(), before);
    assert_eq!(
        reopened.authenticate(alice.expose()).unwrap().user_id,
        uid("operator:alice")
    );
    assert_eq!(reopened.authenticate(bob.expose()), None);
}

#[test]
fn duplicate_active_name_is_refused_until_revoked() {
    let (_d, _p, store) = setup();
    let (_, first) = store.create("alice", None).unwrap();
    let err = store.create("alice", None).unwrap_err();
    assert!(matches!(err, IdentityError::NameTaken { ref name } if name == "alice"));
    assert!(err.to_string().contains("alice"));
    assert_eq!(store.list().len(), 1);

    store.revoke("alice", &uid("operator:root")).unwrap();
    let (rec, second) = store.create("alice", None).unwrap();
    assert!(rec.is_active());
    assert_eq!(store.authenticate(first.expose()), None);
    assert_eq!(store.authenticate(second.expose()).unwrap().name, "alice");
    assert_eq!(store.list().len(), 2);
}

#[test]
fn invalid_names_are_refused_and_nothing_is_written() {
    let (_d, path, store) = setup();
    for bad in [
        "",
        "Alice",
        "-x",
        "a b",
        "operator:alice",
        &"a".repeat(33),
        "ä",
    ] {
        assert!(
            matches!(
                store.create(bad, None),
                Err(IdentityError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(!path.exists());
}

#[test]
fn rotate_replaces_the_token_in_one_step() {
    let (_d, path, store) = setup();
    let (_, old) = store.create("alice", None).unwrap();
    let by = uid("operator:alice");
    let new = store.rotate("alice", &by).unwrap();

    assert_ne!(old.expose(), new.expose());
    assert_eq!(store.authenticate(old.expose()), None);
    assert_eq!(store.authenticate(new.expose()).unwrap().name, "alice");
    let listed = store.list();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].revoked_by, Some(by.clone()));
    assert_eq!(listed[1].created_by, Some(by.clone()));
    assert_eq!(listed[0].revoked_at, Some(listed[1].created_at));

    assert!(matches!(
        store.rotate("bob", &by),
        Err(IdentityError::NoActiveToken { .. })
    ));

    let reopened = TokenStore::open(&path).unwrap();
    assert_eq!(reopened.authenticate(old.expose()), None);
    assert!(reopened.authenticate(new.expose()).is_some());
}

#[test]
fn adopt_is_idempotent_across_restarts() {
    let (_d, path, store) = setup();
    let dev_token = "dev-token-0123456789abcdefghijklmnop";
    let rec = store.adopt("dev", dev_token, None).unwrap();
    assert_eq!(store.authenticate(dev_token).unwrap().name, "dev");
    let bytes = fs::read(&path).unwrap();
    drop(store);

    // A restart adopts the same token again: same record, file untouched.
    let store = TokenStore::open(&path).unwrap();
    assert_eq!(store.adopt("dev", dev_token, None).unwrap(), rec);
    assert_eq!(fs::read(&path).unwrap(), bytes);
    assert_eq!(store.list().len(), 1);

    // A different token for the same name replaces the old one.
    let changed = "another-dev-token-0123456789abcdefghij";
    let rec2 = store.adopt("dev", changed, None).unwrap();
    assert_ne!(rec2.hash_prefix, rec.hash_prefix);
    assert_eq!(store.authenticate(dev_token), None);
    assert_eq!(store.authenticate(changed).unwrap().name, "dev");
    let listed = store.list();
    assert_eq!(listed.len(), 2);
    assert!(!listed[0].is_active() && listed[1].is_active());

    // One token must name one principal.
    assert!(matches!(
        store.adopt("other", changed, None),
        Err(IdentityError::TokenInUse { ref name }) if name == "dev"
    ));
    // The adopted name is an ordinary operator afterwards.
    assert!(matches!(
        store.create("dev", None),
        Err(IdentityError::NameTaken { .. })
    ));
}

#[test]
fn adopt_rejects_weak_tokens_without_writing() {
    let (_d, path, store) = setup();
    let weak = [
        "s3cr3t".to_owned(),
        "x".repeat(31),
        format!("{} ", "x".repeat(40)),
        format!("{}\ty", "x".repeat(40)),
        format!("{}\u{1b}[0m", "x".repeat(40)),
        format!("Bearer {}", "x".repeat(40)),
        "x".repeat(MAX_PRESENTED_LEN + 1),
    ];
    for t in &weak {
        let err = store.adopt("dev", t, None).unwrap_err();
        assert!(matches!(err, IdentityError::WeakToken { .. }), "{t:?}");
        assert!(!err.to_string().contains(t.as_str()));
    }
    assert!(matches!(
        store.adopt("Dev", &"x".repeat(40), None),
        Err(IdentityError::InvalidName { .. })
    ));
    assert!(!path.exists());
    assert!(store.is_empty());
}

#[test]
fn file_is_private_and_holds_no_plaintext() {
    let (dir, path, store) = setup();
    // Nothing is written until the first change.
    assert!(!path.exists());
    let (_, a) = store.create("alice", None).unwrap();
    let b = store.rotate("alice", &uid("operator:root")).unwrap();
    let adopted = "adopted-secret-0123456789abcdefghijkl";
    store.adopt("dev", adopted, None).unwrap();

    assert_eq!(mode(&path), 0o600);
    let raw = fs::read(&path).unwrap();
    let text = String::from_utf8(raw.clone()).unwrap();
    for secret in [a.expose(), b.expose(), adopted] {
        let needle = secret.as_bytes();
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
        // Not even the random part without its prefix.
        if let Some(hex) = secret.strip_prefix("icw_") {
            assert!(!text.contains(hex));
        }
        assert!(text.contains(&sha256_hex(secret)));
    }
    // Only the token file remains: no temporary files left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["tokens"]);

    // The documented layout.
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["version"], 1);
    let first = &v["tokens"][0];
    assert_eq!(first["name"], "alice");
    assert_eq!(first["principal"], "operator:alice");
    assert_eq!(first["token_sha256"], sha256_hex(a.expose()));
    assert!(first["created_at"].is_string());
    assert!(first["revoked_at"].is_string());
}

#[test]
fn loose_permissions_are_refused_with_the_fix() {
    let (_d, path, store) = setup();
    store.create("alice", None).unwrap();
    for loose in [0o644, 0o640, 0o604, 0o660, 0o666] {
        chmod(&path, loose);
        let err = TokenStore::open(&path).unwrap_err();
        assert!(
            matches!(err, IdentityError::InsecurePermissions { mode, .. } if mode == loose),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
        // An open store refuses to change a file that became loose, too.
        assert!(matches!(
            store.create("bob", None),
            Err(IdentityError::InsecurePermissions { .. })
        ));
    }
    chmod(&path, 0o400);
    assert!(TokenStore::open(&path).is_ok());
    chmod(&path, 0o600);
    assert!(TokenStore::open(&path).is_ok());
}

#[test]
fn symlinks_and_non_files_are_refused() {
    let (dir, path, store) = setup();
    store.create("alice", None).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert!(matches!(
        TokenStore::open(&link),
        Err(IdentityError::Symlink { .. })
    ));
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink(dir.path().join("missing"), &dangling).unwrap();
    assert!(matches!(
        TokenStore::open(&dangling),
        Err(IdentityError::Symlink { .. })
    ));
    assert!(matches!(
        TokenStore::open(dir.path()),
        Err(IdentityError::NotAFile { .. })
    ));
}

#[test]
fn corrupted_files_are_refused_not_treated_as_empty() {
    let (dir, path, store) = setup();
    let (rec, token) = store.create("alice", None).unwrap();
    let good = fs::read_to_string(&path).unwrap();
    let hash = sha256_hex(token.expose());
    let created = rec.created_at.to_string();
    let record = |name: &str, principal: &str, h: &str, extra: &str| {
        format!(
            r#"{{"name":"{name}","principal":"{principal}","token_sha256":"{h}","created_at":"{created}"{extra}}}"#
        )
    };
    let doc = |records: &[String]| format!(r#"{{"version":1,"tokens":[{}]}}"#, records.join(","));
    let alice = record("alice", "operator:alice", &hash, "");
    let other_hash = "ab".repeat(32);

    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("garbage", "not json at all".into()),
        ("truncated", good[..good.len() / 2].to_owned()),
        ("array", "[]".into()),
        ("array as struct", "[1,[]]".into()),
        ("no version", r#"{"tokens":[]}"#.into()),
        (
            "version as hash",
            format!(r#"{{"version":"{hash}","tokens":[]}}"#),
        ),
        ("no tokens", r#"{"version":1}"#.into()),
        (
            "unknown top field",
            r#"{"version":1,"tokens":[],"extra":1}"#.into(),
        ),
        (
            "unknown record field",
            doc(&[record(
                "alice",
                "operator:alice",
                &hash,
                r#","revoked":true"#,
            )]),
        ),
        (
            "bad name",
            doc(&[record("Alice", "operator:Alice", &hash, "")]),
        ),
        (
            "principal mismatch",
            doc(&[record("alice", "operator:bob", &hash, "")]),
        ),
        (
            "short hash",
            doc(&[record("alice", "operator:alice", &hash[..63], "")]),
        ),
        (
            "uppercase hash",
            doc(&[record("alice", "operator:alice", &hash.to_uppercase(), "")]),
        ),
        (
            "bad timestamp",
            doc(&[alice.replace(&created, "yesterday")]),
        ),
        (
            "two active tokens for one name",
            doc(&[
                alice.clone(),
                record("alice", "operator:alice", &other_hash, ""),
            ]),
        ),
        (
            "one token for two names",
            doc(&[alice.clone(), record("bob", "operator:bob", &hash, "")]),
        ),
        (
            "revoked_by without revoked_at",
            doc(&[record(
                "alice",
                "operator:alice",
                &hash,
                r#","revoked_by":"operator:x""#,
            )]),
        ),
    ];
    for (what, content) in &cases {
        fs::write(&path, content).unwrap();
        chmod(&path, 0o600);
        let err = TokenStore::open(&path).unwrap_err();
        assert!(
            matches!(err, IdentityError::Corrupt { .. }),
            "{what}: {err:?}"
        );
        let msg = err.to_string();
        assert!(!msg.contains(&hash), "{what}: {msg}");
        assert!(!msg.contains(&hash.to_uppercase()), "{what}: {msg}");
        assert!(!msg.contains(token.expose()), "{what}: {msg}");
        // The open store fails closed as well: no change lands on a corrupt file, and
        // the file is left exactly as found.
        assert!(store.create("bob", None).is_err(), "{what}");
        assert_eq!(&fs::read_to_string(&path).unwrap(), content, "{what}");
    }

    fs::write(&path, r#"{"version":2,"tokens":"whatever"}"#).unwrap();
    assert!(matches!(
        TokenStore::open(&path),
        Err(IdentityError::UnsupportedVersion { version: 2, .. })
    ));

    // The hand-written layout itself is accepted, with optional fields omitted.
    fs::write(&path, doc(std::slice::from_ref(&alice))).unwrap();
    let reopened = TokenStore::open(&path).unwrap();
    assert_eq!(reopened.authenticate(token.expose()).unwrap().name, "alice");
    drop(dir);
}

#[test]
fn changes_keep_records_written_by_another_process() {
    let (_d, path, daemon) = setup();
    let (_, alice) = daemon.create("alice", None).unwrap();
    // `ironctl` opens the same file and adds bob while the daemon runs.
    let ctl = TokenStore::open(&path).unwrap();
    let (_, bob) = ctl.create("bob", None).unwrap();
    // The daemon's cache does not see bob yet ...
    assert_eq!(daemon.authenticate(bob.expose()), None);
    // ... but its next change does not drop him, and a reload picks him up.
    daemon.revoke("alice", &uid("operator:root")).unwrap();
    assert_eq!(daemon.authenticate(bob.expose()).unwrap().name, "bob");
    let fresh = TokenStore::open(&path).unwrap();
    assert_eq!(fresh.authenticate(alice.expose()), None);
    assert!(fresh.authenticate(bob.expose()).is_some());

    let (_, carol) = ctl.create("carol", None).unwrap();
    assert_eq!(daemon.authenticate(carol.expose()), None);
    daemon.reload().unwrap();
    assert!(daemon.authenticate(carol.expose()).is_some());
}

#[test]
fn errors_and_debug_output_never_show_secrets() {
    let (_d, _p, store) = setup();
    let (rec, token) = store.create("alice", None).unwrap();
    let full = sha256_hex(token.expose());
    let outputs = [
        format!("{token:?}"),
        format!("{rec}"),
        format!("{rec:?}"),
        format!("{store:?}"),
        serde_json::to_string(&rec).unwrap(),
        store.create("alice", None).unwrap_err().to_string(),
    ];
    for out in outputs {
        assert!(!out.contains(token.expose()), "{out}");
        assert!(!out.contains(&token.expose()[4..20]), "{out}");
        assert!(!out.contains(&full[..16]), "{out}");
    }
}

#[test]
fn concurrent_readers_and_writers() {
    let (_d, _p, store) = setup();
    let store = Arc::new(store);
    let (_, alice) = store.create("alice", None).unwrap();
    let alice = Arc::new(alice);
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, alice) = (Arc::clone(&store), Arc::clone(&alice));
            std::thread::spawn(move || {
                for _ in 0..500 {
                    assert_eq!(store.authenticate(alice.expose()).unwrap().name, "alice");
                    assert_eq!(store.authenticate("icw_nope"), None);
                }
            })
        })
        .collect();
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for i in 0..10 {
                let name = format!("op{i}");
                store.create(&name, None).unwrap();
                store.revoke(&name, &uid("operator:alice")).unwrap();
            }
        })
    };
    for r in readers {
        r.join().unwrap();
    }
    writer.join().unwrap();
    assert_eq!(store.list().len(), 11);
    assert_eq!(store.list().iter().filter(|r| r.is_active()).count(), 1);
}

#[test]
fn missing_file_is_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    let store = TokenStore::open(&path).unwrap();
    assert!(store.is_empty());
    assert!(store.list().is_empty());
    assert_eq!(store.authenticate("icw_anything"), None);
    assert!(!store.revoke("alice", &uid("operator:root")).unwrap());
    assert!(!path.exists());
    // A missing directory surfaces on the first write, as an I/O error.
    let nowhere = TokenStore::open(&dir.path().join("no/such/dir/tokens")).unwrap();
    assert!(matches!(
        nowhere.create("alice", None),
        Err(IdentityError::Io { .. })
    ));
}

#[test]
fn authenticate_never_panics_nor_accepts_arbitrary_strings() {
    let (_d, _p, store) = setup();
    let (_, alice) = store.create("alice", None).unwrap();
    store
        .adopt("dev", "dev-token-0123456789abcdefghijklmnop", None)
        .unwrap();
    store.create("bob", None).unwrap();
    store.revoke("bob", &uid("operator:root")).unwrap();

    let mut runner = TestRunner::new(Config::with_cases(1024));
    let strategies = [
        "\\PC{0,300}".boxed(),
        "icw_[0-9a-f]{64}".boxed(),
        "[ -~]{30,260}".boxed(),
        proptest::collection::vec(any::<u8>(), 0..400)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
            .boxed(),
    ];
    for strategy in strategies {
        runner
            .run(&strategy, |s| {
                prop_assert_eq!(store.authenticate(&s), None);
                Ok(())
            })
            .unwrap();
    }
    assert!(store.authenticate(alice.expose()).is_some());
}
