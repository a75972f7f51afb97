//! One registry write transaction.

use ironclaw_contract::enums::{SessionMode, UnknownSenderPolicy};
use ironclaw_contract::ids::{AgentGroupId, MessagingGroupId, SessionId, UserId};
use rusqlite::{Connection, Transaction};

use crate::error::RegistryError;
use crate::model::{
    AgentGroup, Destination, MessagingGroup, RoleGrant, Session, SessionStatus, User, Wiring,
};
use crate::reads::read_methods;
use crate::{
    agent_groups, destinations, members, messaging_groups, roles, sessions, users, wirings,
};

type R<T> = Result<T, RegistryError>;

/// An open `BEGIN IMMEDIATE` transaction on the registry, handed to the closure of
/// [`crate::Registry::write`]. Everything written through it commits together when
/// the closure returns `Ok`, and none of it is visible to anyone (this process or
/// another) if the closure returns `Err` or panics.
///
/// IMMEDIATE takes the write lock at the start, so a read-modify-write inside the
/// closure (such as [`RegistryTx::update_agent_group`]) cannot interleave with
/// another writer.
pub struct RegistryTx<'c> {
    pub(crate) tx: Transaction<'c>,
}

impl std::fmt::Debug for RegistryTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryTx { .. }")
    }
}

impl RegistryTx<'_> {
    fn read<T>(&self, f: impl FnOnce(&Connection) -> R<T>) -> R<T> {
        f(&self.tx)
    }

    read_methods!();

    /// Creates an agent group; `AlreadyExists` if the id is taken. Returns the group
    /// as stored (normalized).
    pub fn create_agent_group(&mut self, group: AgentGroup) -> R<AgentGroup> {
        agent_groups::create(&self.tx, group)
    }

    /// Inserts or wholly replaces an agent group, every capability field included.
    /// Capability changes are the gateway's to decide: call this from an applier of
    /// an approved change, not from an API handler.
    pub fn put_agent_group(&mut self, group: AgentGroup) -> R<AgentGroup> {
        agent_groups::put(&self.tx, group)
    }

    /// Read-modify-write of one agent group inside this transaction. `f` may fail,
    /// which fails (and so rolls back) the whole write. The id cannot be changed and
    /// `created_at` is kept.
    pub fn update_agent_group(
        &mut self,
        id: &AgentGroupId,
        f: impl FnOnce(&mut AgentGroup) -> R<()>,
    ) -> R<AgentGroup> {
        agent_groups::update(&self.tx, id, f)
    }

    /// Returns the messaging group of (`channel_type`, `platform_id`, `instance`),
    /// creating it if needed. `instance` `None` or empty means the channel type.
    /// `is_group` and `policy` apply only at creation; an existing group is returned
    /// unchanged.
    pub fn get_or_create_messaging_group(
        &mut self,
        channel_type: &str,
        platform_id: &str,
        instance: Option<&str>,
        is_group: bool,
        policy: UnknownSenderPolicy,
    ) -> R<MessagingGroup> {
        messaging_groups::get_or_create(
            &self.tx,
            channel_type,
            platform_id,
            instance,
            is_group,
            policy,
        )
    }

    /// Inserts or replaces a wiring, minting `wr_<16 hex>` if its id is empty. Both
    /// groups must exist (`NotFound` otherwise).
    pub fn put_wiring(&mut self, wiring: Wiring) -> R<Wiring> {
        wirings::put(&self.tx, wiring)
    }

    /// Inserts or replaces a user.
    pub fn put_user(&mut self, user: User) -> R<User> {
        users::put(&self.tx, user)
    }

    /// Grants a role; returns whether it was new. A scoped owner grant, a grant to a
    /// sandbox principal, or a scope naming an unknown group is refused.
    pub fn grant_role(&mut self, grant: &RoleGrant) -> R<bool> {
        roles::grant(&self.tx, grant)
    }

    /// Revokes exactly this grant; returns whether it existed.
    pub fn revoke_role(&mut self, grant: &RoleGrant) -> R<bool> {
        roles::revoke(&self.tx, grant)
    }

    /// Makes `user` a member of `group` (which must exist); returns whether it was new.
    pub fn add_member(&mut self, user: &UserId, group: &AgentGroupId) -> R<bool> {
        members::add(&self.tx, user, group)
    }

    /// Removes a membership; returns whether it existed.
    pub fn remove_member(&mut self, user: &UserId, group: &AgentGroupId) -> R<bool> {
        members::remove(&self.tx, user, group)
    }

    /// Permits a destination (its group must exist); returns whether it was new.
    pub fn add_destination(&mut self, destination: Destination) -> R<bool> {
        destinations::add(&self.tx, destination)
    }

    /// Withdraws a destination; returns whether it existed.
    pub fn remove_destination(&mut self, destination: &Destination) -> R<bool> {
        destinations::remove(&self.tx, destination)
    }

    /// Finds or creates the session for a message under `mode`, refreshing
    /// `last_active`. Both groups must exist.
    pub fn resolve_session(
        &mut self,
        agent_group: &AgentGroupId,
        messaging_group: &MessagingGroupId,
        thread: Option<&str>,
        mode: SessionMode,
    ) -> R<Session> {
        sessions::resolve(&self.tx, agent_group, messaging_group, thread, mode)
    }

    /// Sets a session's status; `NotFound` if there is no such session.
    pub fn set_session_status(&mut self, id: &SessionId, status: SessionStatus) -> R<()> {
        sessions::set_status(&self.tx, id, status)
    }
}
