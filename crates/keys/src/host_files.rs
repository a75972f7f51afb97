//! The keys of the host's own encrypted databases.
//!
//! Each is a random 32-byte key, minted once and sealed in the custodian's store under
//! a reserved name ([`HostFile::key_name`]) next to the session keys, rather than
//! derived from the master key: rotating the master re-seals it with the session keys,
//! so the databases stay readable with no re-keying. The names are reserved because
//! sessions are minted `ses_…`, so no session can take one.
//!
//! The daemon opens its databases with [`KeyCustodian::host_file_key`], which mints a
//! key on first start; `ironctl backup` and `restore` check a copy with
//! [`KeyCustodian::existing_host_file_key`], which never creates one. The names are
//! defined here only.

use ironclaw_contract::ids::SessionId;

use crate::{KeyCustodian, KeyError, SessionKey};

/// One of the host's own encrypted databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostFile {
    /// The registry database (`registry.db`).
    Registry,
    /// The gateway's change store (`changes.db`).
    ChangeStore,
}

impl HostFile {
    /// Every host database, in the order the daemon opens them.
    pub const ALL: [HostFile; 2] = [HostFile::Registry, HostFile::ChangeStore];

    /// The reserved name its key is sealed under in the custodian's store. On disk:
    /// changing one orphans the key of every existing state dir.
    pub const fn key_name(self) -> &'static str {
        match self {
            HostFile::Registry => "host-registry-db",
            HostFile::ChangeStore => "host-change-store-db",
        }
    }

    /// The store entry's id.
    fn key_id(self) -> SessionId {
        SessionId::new(self.key_name())
            .unwrap_or_else(|_| unreachable!("the reserved key names are valid ids (tested)"))
    }
}

impl KeyCustodian {
    /// The key of `file`, minted from the OS RNG and stored durably the first time it is
    /// asked for; the same key every later time, across restarts and master rotations.
    ///
    /// # Errors
    /// As [`KeyCustodian::get_or_create`]: a sealed key that does not open is
    /// [`KeyError::Tampered`], never replaced (the database was made with it).
    pub fn host_file_key(&self, file: HostFile) -> Result<SessionKey, KeyError> {
        self.get_or_create(&file.key_id())
    }

    /// The key of `file` if one is stored; never creates one. For checking a copy of a
    /// state dir, where a missing key is a finding, not something to repair.
    ///
    /// # Errors
    /// [`KeyError::Tampered`] if its sealed key does not open.
    pub fn existing_host_file_key(&self, file: HostFile) -> Result<Option<SessionKey>, KeyError> {
        self.get(&file.key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_are_valid_distinct_and_never_a_session_name() {
        let mut seen = std::collections::HashSet::new();
        for f in HostFile::ALL {
            let id = f.key_id();
            assert_eq!(id.as_str(), f.key_name());
            assert!(!f.key_name().starts_with("ses_"), "{f:?}");
            assert!(seen.insert(f.key_name()), "{f:?}");
        }
        // The names existing state dirs were sealed under.
        assert_eq!(HostFile::Registry.key_name(), "host-registry-db");
        assert_eq!(HostFile::ChangeStore.key_name(), "host-change-store-db");
    }

    #[test]
    fn a_host_file_key_is_minted_once_and_found_after() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = KeyCustodian::load(
            &dir.path().join("master.key"),
            &dir.path().join("sealed-keys"),
        )
        .unwrap();
        assert!(keys
            .existing_host_file_key(HostFile::Registry)
            .unwrap()
            .is_none());
        let k = keys.host_file_key(HostFile::Registry).unwrap();
        assert_eq!(keys.host_file_key(HostFile::Registry).unwrap(), k);
        assert_eq!(
            keys.existing_host_file_key(HostFile::Registry).unwrap(),
            Some(k.clone())
        );
        // Sealed under its reserved name, separately from the other database's key.
        assert_eq!(
            keys.get(&SessionId::new("host-registry-db").unwrap())
                .unwrap(),
            Some(k.clone())
        );
        assert!(keys
            .existing_host_file_key(HostFile::ChangeStore)
            .unwrap()
            .is_none());
        assert_ne!(keys.host_file_key(HostFile::ChangeStore).unwrap(), k);
    }
}
