//! Access precedence: who may talk to, and who may decide for, an agent group.
//!
//! First match wins, in this order: owner → global admin → admin scoped to the group
//! → member → no access. The order only matters for the *reason* reported (every
//! match allows), but the reason is what audit records and what [`may_decide`]
//! distinguishes: members may use a group, never decide changes to it.

use ironclaw_contract::ids::{AgentGroupId, UserId};
use rusqlite::Connection;

use crate::error::RegistryError;
use crate::model::{Access, AccessReason, Role};
use crate::{members, roles};

type R<T> = Result<T, RegistryError>;

/// Whether `user` may use `group`, and why. The group need not exist: an owner's
/// access does not depend on it, and for anyone else an unknown group simply has no
/// scoped grants or members.
pub(crate) fn access(c: &Connection, user: &UserId, group: &AgentGroupId) -> R<Access> {
    let reason = if roles::holds(c, user, Role::Owner, None)? {
        AccessReason::Owner
    } else if roles::holds(c, user, Role::Admin, None)? {
        AccessReason::GlobalAdmin
    } else if roles::holds(c, user, Role::Admin, Some(group))? {
        AccessReason::ScopedAdmin
    } else if members::is_member(c, user, group)? {
        AccessReason::Member
    } else {
        AccessReason::NoAccess
    };
    Ok(Access {
        allowed: reason != AccessReason::NoAccess,
        reason,
    })
}

/// Whether `user` may approve or reject changes to `group`: an owner, a global admin,
/// or an admin scoped to that group. A sandbox principal never may, whatever rows
/// say (grants to them are refused at write; this holds even for a tampered file).
pub(crate) fn may_decide(c: &Connection, user: &UserId, group: &AgentGroupId) -> R<bool> {
    if user.is_sandbox() {
        return Ok(false);
    }
    Ok(matches!(
        access(c, user, group)?.reason,
        AccessReason::Owner | AccessReason::GlobalAdmin | AccessReason::ScopedAdmin
    ))
}

/// Owner or global admin: the principals that may act on groups that do not exist
/// yet (creating an agent).
pub(crate) fn is_owner_or_global_admin(c: &Connection, user: &UserId) -> R<bool> {
    if user.is_sandbox() {
        return Ok(false);
    }
    Ok(roles::holds(c, user, Role::Owner, None)? || roles::holds(c, user, Role::Admin, None)?)
}

pub(crate) fn is_owner(c: &Connection, user: &UserId) -> R<bool> {
    if user.is_sandbox() {
        return Ok(false);
    }
    roles::holds(c, user, Role::Owner, None)
}
