//! The registry handle: one connection behind a mutex, two ways to open it.

use std::cell::RefCell;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use ironclaw_contract::db::{open_writer, Cipher};
use ironclaw_contract::enums::{SessionMode, UnknownSenderPolicy};
use ironclaw_contract::ids::{AgentGroupId, MessagingGroupId, SessionId, UserId};
use rusqlite::{Connection, TransactionBehavior};

use crate::error::RegistryError;
use crate::model::{
    AgentGroup, Destination, MessagingGroup, RoleGrant, Session, SessionStatus, User, Wiring,
};
use crate::reads::read_methods;
use crate::schema::{REGISTRY_APPLICATION_ID, REGISTRY_DDL, REGISTRY_FILE, REGISTRY_VERSION};
use crate::tx::RegistryTx;

type R<T> = Result<T, RegistryError>;

/// The host's registry. `Send + Sync`; share it behind an `Arc`.
///
/// All access goes through one connection, serialized by a mutex: the registry is
/// small and its transactions are short, and a single connection makes every write
/// transaction trivially serializable within the process. The durable file and the
/// in-memory database run the same SQL, so tests of one are tests of the other.
pub struct Registry {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry { .. }")
    }
}

thread_local! {
    /// Registries whose lock this thread holds (by address). Calling a registry from
    /// inside its own `write` closure would deadlock on the mutex; this turns it into
    /// a typed error instead.
    static HELD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// The connection, locked, and this thread's mark that it holds it.
struct Held<'a> {
    conn: MutexGuard<'a, Connection>,
    key: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(i) = h.iter().rposition(|k| *k == self.key) {
                h.swap_remove(i);
            }
        });
    }
}

impl Registry {
    /// Opens (creating on first use) the durable registry at `path`, encrypted with
    /// `cipher`, through the project's one SQLCipher builder: the key is verified, and
    /// so are the file kind ("registry") and schema version. A wrong key is
    /// `RegistryError::Db(DbError::WrongKey { .. })`.
    pub fn open(path: &Path, cipher: &Cipher) -> R<Self> {
        let conn = open_writer(path, cipher, &REGISTRY_FILE)?;
        Self::from_connection(conn)
    }

    /// A registry in memory, with the same schema and pragmas, for tests and
    /// embedding. Lost on drop.
    pub fn in_memory() -> Self {
        // Opening an in-memory database and running the constant DDL can only fail if
        // SQLite cannot allocate memory: the DDL itself is exercised by every test
        // that calls this function.
        #[allow(
            clippy::expect_used,
            reason = "only an allocation failure can fail an in-memory open with constant DDL"
        )]
        Self::try_in_memory().expect("in-memory SQLite database with the registry schema")
    }

    /// [`Registry::in_memory`], reporting instead of panicking.
    pub fn try_in_memory() -> R<Self> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(&format!(
            "BEGIN;\n{REGISTRY_DDL}\nPRAGMA user_version = {REGISTRY_VERSION};\n\
             PRAGMA application_id = {REGISTRY_APPLICATION_ID};\nCOMMIT;"
        ))?;
        Self::from_connection(conn)
    }

    fn from_connection(conn: Connection) -> R<Self> {
        // Foreign keys are per connection and off by default in SQLite; every
        // reference in the schema relies on them. Checked, not assumed: the pragma
        // is silently ignored inside a transaction or in a build without them.
        conn.execute_batch("PRAGMA foreign_keys = ON")?;
        let on: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
        if on != 1 {
            return Err(RegistryError::Invalid {
                field: "foreign_keys",
                reason: "SQLite refused to enable foreign keys".to_owned(),
            });
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` in one IMMEDIATE transaction: commits if it returns `Ok`, rolls back
    /// (leaving nothing visible) if it returns `Err` or panics. All effects of one
    /// gateway change belong in one call.
    ///
    /// Inside `f`, use the [`RegistryTx`] for reads too; calling this registry from
    /// inside `f` fails with `RegistryError::Reentrant`.
    pub fn write<T>(&self, f: impl FnOnce(&mut RegistryTx<'_>) -> R<T>) -> R<T> {
        let mut held = self.lock()?;
        let tx = held
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut rtx = RegistryTx { tx };
        match f(&mut rtx) {
            Ok(value) => {
                rtx.tx.commit()?;
                Ok(value)
            }
            Err(e) => {
                // The closure's error is the one that matters; a failed rollback
                // leaves the connection in a transaction, which the next `lock`
                // cleans up.
                let _ = rtx.tx.rollback();
                Err(e)
            }
        }
    }

    /// Runs a read in one deferred transaction, so a read made of several queries
    /// (such as [`Registry::access`]) sees one snapshot.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> R<T>) -> R<T> {
        let mut held = self.lock()?;
        let tx = held.conn.transaction()?;
        // Dropping the transaction rolls it back, which for a read is just its end.
        f(&tx)
    }

    fn lock(&self) -> R<Held<'_>> {
        let key = self as *const Self as usize;
        if HELD.with(|h| h.borrow().contains(&key)) {
            return Err(RegistryError::Reentrant);
        }
        // A panic while the lock was held can only have happened inside a closure
        // given to `write`; the transaction's drop rolled it back, so the connection is
        // consistent and the poison carries no information.
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        HELD.with(|h| h.borrow_mut().push(key));
        let held = Held { conn, key };
        if !held.conn.is_autocommit() {
            // A transaction left open by a failed rollback: end it before starting
            // another (BEGIN inside a transaction would fail every later call).
            held.conn.execute_batch("ROLLBACK")?;
        }
        Ok(held)
    }

    read_methods!();

    /// [`RegistryTx::create_agent_group`] in its own transaction.
    pub fn create_agent_group(&self, group: AgentGroup) -> R<AgentGroup> {
        self.write(|tx| tx.create_agent_group(group))
    }

    /// [`RegistryTx::put_agent_group`] in its own transaction.
    pub fn put_agent_group(&self, group: AgentGroup) -> R<AgentGroup> {
        self.write(|tx| tx.put_agent_group(group))
    }

    /// [`RegistryTx::update_agent_group`] in its own transaction.
    pub fn update_agent_group(
        &self,
        id: &AgentGroupId,
        f: impl FnOnce(&mut AgentGroup) -> R<()>,
    ) -> R<AgentGroup> {
        self.write(|tx| tx.update_agent_group(id, f))
    }

    /// [`RegistryTx::get_or_create_messaging_group`] in its own transaction.
    pub fn get_or_create_messaging_group(
        &self,
        channel_type: &str,
        platform_id: &str,
        instance: Option<&str>,
        is_group: bool,
        policy: UnknownSenderPolicy,
    ) -> R<MessagingGroup> {
        self.write(|tx| {
            tx.get_or_create_messaging_group(channel_type, platform_id, instance, is_group, policy)
        })
    }

    /// [`RegistryTx::put_wiring`] in its own transaction.
    pub fn put_wiring(&self, wiring: Wiring) -> R<Wiring> {
        self.write(|tx| tx.put_wiring(wiring))
    }

    /// [`RegistryTx::put_user`] in its own transaction.
    pub fn put_user(&self, user: User) -> R<User> {
        self.write(|tx| tx.put_user(user))
    }

    /// [`RegistryTx::grant_role`] in its own transaction.
    pub fn grant_role(&self, grant: &RoleGrant) -> R<bool> {
        self.write(|tx| tx.grant_role(grant))
    }

    /// [`RegistryTx::revoke_role`] in its own transaction.
    pub fn revoke_role(&self, grant: &RoleGrant) -> R<bool> {
        self.write(|tx| tx.revoke_role(grant))
    }

    /// [`RegistryTx::add_member`] in its own transaction.
    pub fn add_member(&self, user: &UserId, group: &AgentGroupId) -> R<bool> {
        self.write(|tx| tx.add_member(user, group))
    }

    /// [`RegistryTx::remove_member`] in its own transaction.
    pub fn remove_member(&self, user: &UserId, group: &AgentGroupId) -> R<bool> {
        self.write(|tx| tx.remove_member(user, group))
    }

    /// [`RegistryTx::add_destination`] in its own transaction.
    pub fn add_destination(&self, destination: Destination) -> R<bool> {
        self.write(|tx| tx.add_destination(destination))
    }

    /// [`RegistryTx::remove_destination`] in its own transaction.
    pub fn remove_destination(&self, destination: &Destination) -> R<bool> {
        self.write(|tx| tx.remove_destination(destination))
    }

    /// [`RegistryTx::resolve_session`] in its own transaction.
    pub fn resolve_session(
        &self,
        agent_group: &AgentGroupId,
        messaging_group: &MessagingGroupId,
        thread: Option<&str>,
        mode: SessionMode,
    ) -> R<Session> {
        self.write(|tx| tx.resolve_session(agent_group, messaging_group, thread, mode))
    }

    /// [`RegistryTx::set_session_status`] in its own transaction.
    pub fn set_session_status(&self, id: &SessionId, status: SessionStatus) -> R<()> {
        self.write(|tx| tx.set_session_status(id, status))
    }

    #[cfg(test)]
    pub(crate) fn raw<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let held = self.lock().unwrap_or_else(|e| panic!("{e}"));
        f(&held.conn)
    }
}
