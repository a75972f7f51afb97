//! Key custody against real files in temporary directories.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ironclaw_contract::ids::SessionId;
use ironclaw_contract::paths::HostLayout;
use ironclaw_keys::{recover_rotation, KeyCustodian, KeyError, MasterKey, Recovery, SessionKey};
use proptest::prelude::*;

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn write_with_mode(p: &Path, bytes: &[u8], m: u32) {
    let _ = fs::remove_file(p);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .unwrap();
    fs::write(p, bytes).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
}

fn next(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".next");
    PathBuf::from(s)
}

struct Host {
    _dir: tempfile::TempDir,
    layout: HostLayout,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(dir.path());
        Self { _dir: dir, layout }
    }
    fn master(&self) -> PathBuf {
        self.layout.master_key()
    }
    fn store(&self) -> PathBuf {
        self.layout.sealed_keys()
    }
    fn load(&self) -> Result<(KeyCustodian, bool), KeyError> {
        KeyCustodian::load(&self.master(), &self.store())
    }
    fn custodian(&self) -> KeyCustodian {
        self.load().unwrap().0
    }
    fn store_json(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.store()).unwrap()).unwrap()
    }
    fn write_store_json(&self, v: &serde_json::Value) {
        write_with_mode(&self.store(), &serde_json::to_vec(v).unwrap(), 0o600);
    }
    /// The dir holds nothing but these files (no `.tmp`, `.next`, `.new` left behind).
    fn assert_only(&self, names: &[&str]) {
        let mut found: Vec<String> = fs::read_dir(self.layout.state_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        found.sort();
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(found, want);
    }
}

// ---------------------------------------------------------------- master key

#[test]
fn master_key_is_created_once_then_loaded() {
    let h = Host::new();
    let (k1, created) = MasterKey::load_or_create(&h.master()).unwrap();
    assert!(created);
    assert_eq!(mode(&h.master()), 0o600);
    assert_eq!(fs::read(h.master()).unwrap().len(), 32);
    let (k2, created) = MasterKey::load_or_create(&h.master()).unwrap();
    assert!(!created);
    assert_eq!(k1.fingerprint(), k2.fingerprint());
    assert_eq!(k1.derive("registry-db"), k2.derive("registry-db"));
    h.assert_only(&["master.key"]);
    // A second host gets a different key.
    let other = Host::new();
    let (k3, _) = MasterKey::load_or_create(&other.master()).unwrap();
    assert_ne!(k1.fingerprint(), k3.fingerprint());
}

#[test]
fn leftover_staging_file_is_cleaned_up() {
    let h = Host::new();
    let staging = h.layout.state_dir().join("master.key.new");
    write_with_mode(&staging, &[1; 10], 0o600);
    let (_, created) = MasterKey::load_or_create(&h.master()).unwrap();
    assert!(created);
    h.assert_only(&["master.key"]);
}

#[test]
fn loose_master_key_is_refused_with_the_fix() {
    let h = Host::new();
    for m in [0o644, 0o640, 0o604, 0o660, 0o601, 0o610] {
        write_with_mode(&h.master(), &[5; 32], m);
        let err = MasterKey::load_or_create(&h.master()).unwrap_err();
        assert!(
            matches!(err, KeyError::LoosePermissions { mode, .. } if mode == m),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&format!("{m:04o}")), "{msg}");
        assert!(
            msg.contains(&format!("chmod 600 {}", h.master().display())),
            "{msg}"
        );
        // The bad file is left for the operator, not replaced.
        assert_eq!(fs::read(h.master()).unwrap(), [5; 32]);
        assert_eq!(mode(&h.master()), m);
    }
    // Owner-only modes are fine.
    for m in [0o600, 0o400] {
        fs::set_permissions(h.master(), fs::Permissions::from_mode(m)).unwrap();
        let (k, created) = MasterKey::load_or_create(&h.master()).unwrap();
        assert!(!created);
        assert_eq!(
            k.fingerprint(),
            MasterKey::from_bytes([5; 32]).fingerprint()
        );
    }
}

#[test]
fn symlinked_or_special_master_key_is_refused() {
    let h = Host::new();
    let real = h.layout.state_dir().join("real.key");
    write_with_mode(&real, &[1; 32], 0o600);
    std::os::unix::fs::symlink(&real, h.master()).unwrap();
    let err = MasterKey::load_or_create(&h.master()).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::NotRegularFile {
                found: "a symlink",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&h.master().display().to_string()));

    // A dangling symlink is not "missing": it must not be followed to create a key.
    fs::remove_file(h.master()).unwrap();
    std::os::unix::fs::symlink(h.layout.state_dir().join("nowhere"), h.master()).unwrap();
    assert!(matches!(
        MasterKey::load_or_create(&h.master()),
        Err(KeyError::NotRegularFile { .. })
    ));
    assert!(!h.layout.state_dir().join("nowhere").exists());

    fs::remove_file(h.master()).unwrap();
    fs::create_dir(h.master()).unwrap();
    assert!(matches!(
        MasterKey::load_or_create(&h.master()),
        Err(KeyError::NotRegularFile {
            found: "a directory",
            ..
        })
    ));
}

#[test]
fn wrong_length_master_key_is_refused() {
    let h = Host::new();
    for len in [0usize, 1, 31, 33, 64, 5000] {
        write_with_mode(&h.master(), &vec![0x42; len], 0o600);
        let err = MasterKey::load_or_create(&h.master()).unwrap_err();
        match err {
            KeyError::WrongLength { len: got, .. } => {
                // Read bounded: an oversized file is reported by its size on disk.
                assert_eq!(got, len as u64)
            }
            other => panic!("{len}: {other:?}"),
        }
    }
}

#[test]
fn derive_is_deterministic_and_purpose_separated() {
    let a = MasterKey::from_bytes([1; 32]);
    let a2 = MasterKey::from_bytes([1; 32]);
    let b = MasterKey::from_bytes([2; 32]);
    assert_eq!(a.derive("registry-db"), a2.derive("registry-db"));
    assert_ne!(a.derive("registry-db"), a.derive("change-store-db"));
    assert_ne!(a.derive("registry-db"), b.derive("registry-db"));
    assert_ne!(a.derive(""), a.derive("x"));
    assert_ne!(a.derive("registry-db").expose(), &[1; 32]);
    let fp = a.fingerprint();
    assert_eq!(fp.len(), 16);
    assert!(fp
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(fp, a2.fingerprint());
    assert_ne!(fp, b.fingerprint());
    assert_eq!(format!("{a:?}"), "MasterKey(<redacted>)");
}

// ---------------------------------------------------------------- custodian

#[test]
fn get_or_create_is_stable_and_per_session() {
    let h = Host::new();
    let (c, created) = h.load().unwrap();
    assert!(created);
    let (a, b) = (sid("ses_a"), sid("ses_b"));
    assert_eq!(c.get(&a).unwrap(), None);
    let ka = c.get_or_create(&a).unwrap();
    assert_eq!(c.get_or_create(&a).unwrap(), ka);
    assert_eq!(c.get(&a).unwrap(), Some(ka.clone()));
    let kb = c.get_or_create(&b).unwrap();
    assert_ne!(ka, kb);
    assert_eq!(c.sessions(), vec![a, b]);
    assert_eq!(mode(&h.store()), 0o600);
    h.assert_only(&["master.key", "sealed-keys"]);
}

#[test]
fn store_file_has_the_documented_shape() {
    let h = Host::new();
    let c = h.custodian();
    c.get_or_create(&sid("s1")).unwrap();
    let v = h.store_json();
    assert_eq!(v["version"], 1);
    assert_eq!(v["master_fingerprint"], c.master_fingerprint());
    let blob = v["keys"]["s1"].as_str().unwrap();
    // 12-byte nonce, 32-byte ciphertext, 16-byte tag.
    assert_eq!(blob.len(), 2 * (12 + 32 + 16));
    assert_eq!(v.as_object().unwrap().len(), 3);
}

#[test]
fn keys_survive_reopen() {
    let h = Host::new();
    let keys: Vec<(SessionId, SessionKey)> = {
        let c = h.custodian();
        (0..5)
            .map(|i| {
                let s = sid(&format!("ses_{i}"));
                let k = c.get_or_create(&s).unwrap();
                (s, k)
            })
            .collect()
    };
    let (c, created) = h.load().unwrap();
    assert!(!created);
    for (s, k) in &keys {
        assert_eq!(c.get(s).unwrap().as_ref(), Some(k));
        assert_eq!(&c.get_or_create(s).unwrap(), k);
    }
    assert_eq!(c.sessions().len(), 5);
}

#[test]
fn destroy_is_durable() {
    let h = Host::new();
    let (a, b) = (sid("a"), sid("b"));
    let kb = {
        let c = h.custodian();
        c.get_or_create(&a).unwrap();
        let kb = c.get_or_create(&b).unwrap();
        assert!(c.destroy(&a).unwrap());
        assert!(!c.destroy(&a).unwrap());
        assert!(!c.destroy(&sid("never")).unwrap());
        assert_eq!(c.get(&a).unwrap(), None);
        kb
    };
    let c = h.custodian();
    assert_eq!(c.get(&a).unwrap(), None);
    assert_eq!(c.sessions(), vec![b.clone()]);
    assert_eq!(c.get(&b).unwrap(), Some(kb));
    assert!(h.store_json()["keys"].get("a").is_none());
    // A destroyed session that starts again gets a new key.
    let fresh = c.get_or_create(&a).unwrap();
    assert_eq!(h.custodian().get(&a).unwrap(), Some(fresh));
}

#[test]
fn blob_moved_to_another_session_is_tampered() {
    let h = Host::new();
    {
        let c = h.custodian();
        c.get_or_create(&sid("victim")).unwrap();
        c.get_or_create(&sid("attacker")).unwrap();
    }
    let mut v = h.store_json();
    let blob = v["keys"]["victim"].clone();
    v["keys"]["attacker"] = blob.clone();
    v["keys"]["newcomer"] = blob;
    h.write_store_json(&v);
    let c = h.custodian();
    for s in ["attacker", "newcomer"] {
        let err = c.get(&sid(s)).unwrap_err();
        assert!(
            matches!(&err, KeyError::Tampered { session } if session.as_str() == s),
            "{err:?}"
        );
        // Never replaced by a fresh key either.
        assert!(matches!(
            c.get_or_create(&sid(s)),
            Err(KeyError::Tampered { .. })
        ));
    }
    assert!(c.get(&sid("victim")).unwrap().is_some());
}

#[test]
fn any_flipped_byte_is_tampered() {
    let h = Host::new();
    h.custodian().get_or_create(&sid("s")).unwrap();
    let original = h.store_json();
    let blob = original["keys"]["s"].as_str().unwrap().to_owned();
    let bytes: Vec<u8> = (0..blob.len() / 2)
        .map(|i| u8::from_str_radix(&blob[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    // Nonce, ciphertext and tag: every position is covered by the tag.
    for pos in 0..bytes.len() {
        let mut b = bytes.clone();
        b[pos] ^= 0x01;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let mut v = original.clone();
        v["keys"]["s"] = hex.into();
        h.write_store_json(&v);
        let c = h.custodian();
        assert!(
            matches!(c.get(&sid("s")), Err(KeyError::Tampered { .. })),
            "byte {pos}"
        );
    }
    // Malformed text (not hex, truncated) is also Tampered, for that session only.
    for bad in ["zz", "", &blob[..blob.len() - 2]] {
        let mut v = original.clone();
        v["keys"]["s"] = bad.into();
        v["keys"]["other"] = original["keys"]["s"].clone();
        h.write_store_json(&v);
        let c = h.custodian();
        assert!(matches!(c.get(&sid("s")), Err(KeyError::Tampered { .. })));
    }
}

#[test]
fn a_different_master_fails_closed() {
    let h = Host::new();
    let fp = {
        let c = h.custodian();
        c.get_or_create(&sid("s")).unwrap();
        c.master_fingerprint()
    };
    let other = MasterKey::from_bytes([9; 32]);
    let other_fp = other.fingerprint();
    let err = KeyCustodian::open(&h.store(), other).unwrap_err();
    match &err {
        KeyError::WrongMaster {
            store_fingerprint,
            master_fingerprint,
            ..
        } => {
            assert_eq!(store_fingerprint, &fp);
            assert_eq!(master_fingerprint, &other_fp);
        }
        e => panic!("{e:?}"),
    }
    // Replaced master file: refused, and the store is left as it was.
    let before = fs::read(h.store()).unwrap();
    write_with_mode(&h.master(), &[9; 32], 0o600);
    assert!(matches!(h.load(), Err(KeyError::WrongMaster { .. })));
    assert_eq!(fs::read(h.store()).unwrap(), before);
    // Deleted master file: not silently recreated.
    fs::remove_file(h.master()).unwrap();
    let err = h.load().unwrap_err();
    assert!(matches!(err, KeyError::MasterMissing { .. }), "{err:?}");
    assert!(!h.master().exists());
}

#[test]
fn unreadable_stores_are_typed_errors() {
    let h = Host::new();
    let fp = h.custodian().master_fingerprint();
    type Check = fn(&KeyError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (b"not json".to_vec(), |e| {
            matches!(e, KeyError::Corrupt { .. })
        }),
        (b"{}".to_vec(), |e| matches!(e, KeyError::Corrupt { .. })),
        (br#"{"version":2,"whatever":true}"#.to_vec(), |e| {
            matches!(e, KeyError::UnsupportedVersion { version: 2, .. })
        }),
        (
            format!(r#"{{"version":1,"master_fingerprint":"{fp}","keys":{{}},"extra":1}}"#)
                .into_bytes(),
            |e| matches!(e, KeyError::Corrupt { .. }),
        ),
        (
            format!(r#"{{"version":1,"master_fingerprint":"{fp}","keys":{{"../x":"00"}}}}"#)
                .into_bytes(),
            |e| matches!(e, KeyError::Corrupt { .. }),
        ),
    ];
    for (bytes, check) in cases {
        write_with_mode(&h.store(), &bytes, 0o600);
        let err = h.load().unwrap_err();
        assert!(check(&err), "{err:?}");
    }
    // The store is held to the master key's access rules.
    write_with_mode(
        &h.store(),
        format!(r#"{{"version":1,"master_fingerprint":"{fp}","keys":{{}}}}"#).as_bytes(),
        0o644,
    );
    assert!(matches!(
        h.load(),
        Err(KeyError::LoosePermissions { mode: 0o644, .. })
    ));
    fs::set_permissions(h.store(), fs::Permissions::from_mode(0o600)).unwrap();
    assert!(h.load().is_ok());
}

#[test]
fn concurrent_callers_agree() {
    let h = Host::new();
    let c = Arc::new(h.custodian());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                (0..8)
                    .map(|i| c.get_or_create(&sid(&format!("s{i}"))).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
    let reopened = h.custodian();
    for (i, k) in results[0].iter().enumerate() {
        assert_eq!(
            reopened.get(&sid(&format!("s{i}"))).unwrap().as_ref(),
            Some(k)
        );
    }
}

// ---------------------------------------------------------------- rotation

fn sessions_with_keys(c: &KeyCustodian, n: usize) -> Vec<(SessionId, SessionKey)> {
    (0..n)
        .map(|i| {
            let s = sid(&format!("ses_{i}"));
            let k = c.get_or_create(&s).unwrap();
            (s, k)
        })
        .collect()
}

fn assert_keys(c: &KeyCustodian, keys: &[(SessionId, SessionKey)]) {
    for (s, k) in keys {
        assert_eq!(c.get(s).unwrap().as_ref(), Some(k), "{s}");
    }
    assert_eq!(c.sessions().len(), keys.len());
}

#[test]
fn rotation_keeps_every_key_and_changes_the_fingerprint() {
    let h = Host::new();
    let c = h.custodian();
    let keys = sessions_with_keys(&c, 4);
    let old_fp = c.master_fingerprint();
    let old_master = fs::read(h.master()).unwrap();
    let old_derived = c.derive("registry-db");

    let new_fp = c.rotate_master(&h.master()).unwrap();
    assert_ne!(new_fp, old_fp);
    assert_eq!(c.master_fingerprint(), new_fp);
    assert_ne!(fs::read(h.master()).unwrap(), old_master);
    assert_ne!(c.derive("registry-db"), old_derived);
    assert_keys(&c, &keys);
    assert_eq!(mode(&h.master()), 0o600);
    assert_eq!(mode(&h.store()), 0o600);
    h.assert_only(&["master.key", "sealed-keys"]);
    assert_eq!(h.store_json()["master_fingerprint"], new_fp.as_str());

    // Writes after rotation are sealed under the new key and survive a reopen.
    let late = c.get_or_create(&sid("late")).unwrap();
    drop(c);
    let (c, created) = h.load().unwrap();
    assert!(!created);
    assert_eq!(c.master_fingerprint(), new_fp);
    assert_keys(&c, &[keys.clone(), vec![(sid("late"), late)]].concat());
    // The old master no longer opens the store.
    let old = MasterKey::from_bytes(old_master.try_into().unwrap());
    assert!(matches!(
        KeyCustodian::open(&h.store(), old),
        Err(KeyError::WrongMaster { .. })
    ));
    // Rotating twice in a row works too.
    let third = c.rotate_master(&h.master()).unwrap();
    assert_ne!(third, new_fp);
    assert_keys(
        &h.custodian(),
        &[
            keys,
            vec![(sid("late"), c.get(&sid("late")).unwrap().unwrap())],
        ]
        .concat(),
    );
}

#[test]
fn rotation_of_an_empty_store_works() {
    let h = Host::new();
    let c = h.custodian();
    let fp = c.rotate_master(&h.master()).unwrap();
    assert_eq!(h.custodian().master_fingerprint(), fp);
    assert!(h.custodian().sessions().is_empty());
}

#[test]
fn rotation_refuses_a_master_file_it_does_not_hold() {
    let h = Host::new();
    let c = h.custodian();
    sessions_with_keys(&c, 1);
    let elsewhere = h.layout.state_dir().join("other.key");
    MasterKey::load_or_create(&elsewhere).unwrap();
    let before = fs::read(h.store()).unwrap();
    let err = c.rotate_master(&elsewhere).unwrap_err();
    assert!(matches!(err, KeyError::MasterMismatch { .. }), "{err:?}");
    assert_eq!(fs::read(h.store()).unwrap(), before);
    assert!(!next(&elsewhere).exists());
}

#[test]
fn rotation_aborts_on_a_tampered_blob_before_writing() {
    let h = Host::new();
    let keys = sessions_with_keys(&h.custodian(), 2);
    let mut v = h.store_json();
    v["keys"]["ses_0"] = v["keys"]["ses_1"].clone();
    h.write_store_json(&v);
    let c = h.custodian();
    let store_before = fs::read(h.store()).unwrap();
    let master_before = fs::read(h.master()).unwrap();
    assert!(matches!(
        c.rotate_master(&h.master()),
        Err(KeyError::Tampered { .. })
    ));
    assert_eq!(fs::read(h.store()).unwrap(), store_before);
    assert_eq!(fs::read(h.master()).unwrap(), master_before);
    assert_eq!(c.get(&keys[1].0).unwrap().as_ref(), Some(&keys[1].1));
    h.assert_only(&["master.key", "sealed-keys"]);
}

/// The files of one host before and after a completed rotation, to build every
/// intermediate state by hand.
struct Rotation {
    keys: Vec<(SessionId, SessionKey)>,
    old_master: Vec<u8>,
    old_store: Vec<u8>,
    old_fp: String,
    new_master: Vec<u8>,
    new_store: Vec<u8>,
    new_fp: String,
}

fn rotation() -> Rotation {
    let h = Host::new();
    let c = h.custodian();
    let keys = sessions_with_keys(&c, 3);
    let old_master = fs::read(h.master()).unwrap();
    let old_store = fs::read(h.store()).unwrap();
    let old_fp = c.master_fingerprint();
    let new_fp = c.rotate_master(&h.master()).unwrap();
    Rotation {
        keys,
        old_master,
        old_store,
        old_fp,
        new_master: fs::read(h.master()).unwrap(),
        new_store: fs::read(h.store()).unwrap(),
        new_fp,
    }
}

#[derive(Clone, Copy)]
enum Side {
    Old,
    New,
}

#[test]
fn every_rotation_crash_point_recovers() {
    let r = rotation();
    type Files<'a> = (
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        Option<&'a [u8]>,
    );
    let half_store = &r.new_store[..r.new_store.len() / 2];
    // (name, master.key, master.key.next, sealed-keys, sealed-keys.next, expected recovery, expected side)
    let cases: Vec<(&str, Files, Recovery, Side)> = vec![
        (
            "before anything",
            (Some(&r.old_master), None, Some(&r.old_store), None),
            Recovery::Clean,
            Side::Old,
        ),
        (
            "master.next created empty",
            (Some(&r.old_master), Some(&[]), Some(&r.old_store), None),
            Recovery::RolledBack,
            Side::Old,
        ),
        (
            "master.next torn",
            (
                Some(&r.old_master),
                Some(&r.new_master[..10]),
                Some(&r.old_store),
                None,
            ),
            Recovery::RolledBack,
            Side::Old,
        ),
        (
            "master.next written",
            (
                Some(&r.old_master),
                Some(&r.new_master),
                Some(&r.old_store),
                None,
            ),
            Recovery::RolledBack,
            Side::Old,
        ),
        (
            "store.next torn",
            (
                Some(&r.old_master),
                Some(&r.new_master),
                Some(&r.old_store),
                Some(half_store),
            ),
            Recovery::RolledBack,
            Side::Old,
        ),
        (
            "store.next written",
            (
                Some(&r.old_master),
                Some(&r.new_master),
                Some(&r.old_store),
                Some(&r.new_store),
            ),
            Recovery::RolledBack,
            Side::Old,
        ),
        (
            "store renamed",
            (
                Some(&r.old_master),
                Some(&r.new_master),
                Some(&r.new_store),
                None,
            ),
            Recovery::RolledForward,
            Side::New,
        ),
        (
            "master renamed",
            (Some(&r.new_master), None, Some(&r.new_store), None),
            Recovery::Clean,
            Side::New,
        ),
        // An interrupted recovery: roll-back removed store.next but not master.next
        // (same as "master.next written"), or roll-back ran in the other order.
        (
            "rollback half done",
            (
                Some(&r.old_master),
                None,
                Some(&r.old_store),
                Some(&r.new_store),
            ),
            Recovery::RemovedOrphan,
            Side::Old,
        ),
        // The old master lost entirely after the store rename: still recoverable.
        (
            "store renamed, master gone",
            (None, Some(&r.new_master), Some(&r.new_store), None),
            Recovery::RolledForward,
            Side::New,
        ),
    ];
    for (name, (m, mn, s, sn), want_recovery, side) in cases {
        let h = Host::new();
        let put = |p: PathBuf, b: Option<&[u8]>| {
            if let Some(b) = b {
                write_with_mode(&p, b, 0o600);
            }
        };
        put(h.master(), m);
        put(next(&h.master()), mn);
        put(h.store(), s);
        put(next(&h.store()), sn);

        assert_eq!(
            recover_rotation(&h.master(), &h.store()).unwrap(),
            want_recovery,
            "{name}"
        );
        // Recovery is idempotent.
        assert_eq!(
            recover_rotation(&h.master(), &h.store()).unwrap(),
            Recovery::Clean,
            "{name}"
        );
        let (c, created) = h.load().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!created, "{name}");
        let fp = match side {
            Side::Old => &r.old_fp,
            Side::New => &r.new_fp,
        };
        assert_eq!(&c.master_fingerprint(), fp, "{name}");
        assert_keys(&c, &r.keys);
        h.assert_only(&["master.key", "sealed-keys"]);
        assert_eq!(mode(&h.master()), 0o600, "{name}");

        // The recovered host is fully usable: write, rotate, reopen.
        let extra = c.get_or_create(&sid("after")).unwrap();
        c.rotate_master(&h.master()).unwrap();
        drop(c);
        let c = h.custodian();
        assert_keys(&c, &[r.keys.clone(), vec![(sid("after"), extra)]].concat());
    }

    // A fresh load also recovers (it is what the control plane calls).
    let h = Host::new();
    write_with_mode(&h.master(), &r.old_master, 0o600);
    write_with_mode(&next(&h.master()), &r.new_master, 0o600);
    write_with_mode(&h.store(), &r.new_store, 0o600);
    let (c, _) = h.load().unwrap();
    assert_eq!(c.master_fingerprint(), r.new_fp);
    assert_keys(&c, &r.keys);
}

#[test]
fn unresolvable_rotation_state_touches_nothing() {
    let r = rotation();
    let h = Host::new();
    let stranger = [7u8; 32];
    write_with_mode(&h.master(), &r.old_master, 0o600);
    write_with_mode(&next(&h.master()), &stranger, 0o600);
    write_with_mode(&h.store(), &r.new_store, 0o600);
    let err = h.load().unwrap_err();
    assert!(
        matches!(err, KeyError::RotationUnresolved { .. }),
        "{err:?}"
    );
    assert_eq!(fs::read(next(&h.master())).unwrap(), stranger);
    assert_eq!(fs::read(h.master()).unwrap(), r.old_master);
    assert_eq!(fs::read(h.store()).unwrap(), r.new_store);
}

#[test]
fn open_alone_does_not_guess_across_a_rotation() {
    // Without the master path, `open` cannot finish a rotation; it fails closed and
    // says how to recover.
    let r = rotation();
    let h = Host::new();
    write_with_mode(&h.store(), &r.new_store, 0o600);
    let old = MasterKey::from_bytes(r.old_master.clone().try_into().unwrap());
    let err = KeyCustodian::open(&h.store(), old).unwrap_err();
    assert!(err.to_string().contains("KeyCustodian::load"), "{err}");
}

// ---------------------------------------------------------------- secrecy

const KNOWN: [u8; 32] = [0xab; 32];

fn assert_no_secret(text: &str, secret: &[u8; 32]) {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let dec = format!("{:?}", &secret[..4]);
    let dec = dec.trim_end_matches(']');
    assert!(!text.to_lowercase().contains(&hex[..16]), "{text}");
    assert!(!text.contains(dec), "{text}");
    assert!(!text.contains(&format!("{:?}", &secret[..])), "{text}");
}

fn check_error(e: &KeyError, secrets: &[&[u8; 32]]) {
    for s in secrets {
        assert_no_secret(&e.to_string(), s);
        assert_no_secret(&format!("{e:?}"), s);
        assert_no_secret(&format!("{e:#?}"), s);
    }
}

#[test]
fn no_key_material_in_any_message() {
    let h = Host::new();
    let mut errors = Vec::new();

    write_with_mode(&h.master(), &KNOWN, 0o644);
    errors.push(MasterKey::load_or_create(&h.master()).unwrap_err());
    write_with_mode(&h.master(), &KNOWN[..31], 0o600);
    errors.push(MasterKey::load_or_create(&h.master()).unwrap_err());
    write_with_mode(&h.master(), &[KNOWN, KNOWN].concat(), 0o600);
    errors.push(MasterKey::load_or_create(&h.master()).unwrap_err());

    write_with_mode(&h.master(), &KNOWN, 0o600);
    let c = h.custodian();
    let k = c.get_or_create(&sid("s1")).unwrap();
    let session_secret = *k.expose();
    c.get_or_create(&sid("s2")).unwrap();
    drop(c);

    let mut v = h.store_json();
    v["keys"]["s2"] = v["keys"]["s1"].clone();
    h.write_store_json(&v);
    let c = h.custodian();
    errors.push(c.get(&sid("s2")).unwrap_err());
    errors.push(c.rotate_master(&h.store()).unwrap_err());
    errors.push(KeyCustodian::open(&h.store(), MasterKey::from_bytes([1; 32])).unwrap_err());

    for e in &errors {
        check_error(e, &[&KNOWN, &session_secret]);
    }
    for text in [
        format!("{c:?}"),
        format!("{c:#?}"),
        format!("{:?}", MasterKey::from_bytes(KNOWN)),
        format!("{k:?}"),
        MasterKey::from_bytes(KNOWN).fingerprint(),
        fs::read_to_string(h.store()).unwrap(),
    ] {
        assert_no_secret(&text, &KNOWN);
        assert_no_secret(&text, &session_secret);
    }
}

// ---------------------------------------------------------------- robustness

fn open_bytes(bytes: &[u8]) -> Result<KeyCustodian, KeyError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sealed-keys");
    write_with_mode(&p, bytes, 0o600);
    KeyCustodian::open(&p, MasterKey::from_bytes([3; 32]))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_store_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(c) = open_bytes(&b) {
            for s in c.sessions() {
                let _ = c.get(&s);
            }
        }
    }

    #[test]
    fn arbitrary_blobs_are_tampered_not_panics(
        blob in "[0-9a-fA-F]{0,140}|\\PC{0,40}",
        id in "[a-z][a-z0-9_-]{0,20}",
    ) {
        let fp = MasterKey::from_bytes([3; 32]).fingerprint();
        let doc = serde_json::json!({"version": 1, "master_fingerprint": fp, "keys": {id.clone(): blob}});
        let c = open_bytes(&serde_json::to_vec(&doc).unwrap()).unwrap();
        let is_tampered = matches!(c.get(&sid(&id)), Err(KeyError::Tampered { .. }));
        prop_assert!(is_tampered);
    }
}
